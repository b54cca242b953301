"""Character data: PTB character files, enwik8 bytes, any text, the vocabulary and stream batching."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from zoo.data import text

SENTENCES = {
    "train": ["the cat sat", "a dog ran far", "the end"],
    "valid": ["a cat ran"],
    "test": ["the dog sat"],
}


@pytest.fixture
def ptb_dir(tmp_path):
    text.write_ptb_char_files(str(tmp_path), SENTENCES)
    return str(tmp_path)


def test_ptb_file_format_is_read_back_with_a_newline_per_sentence(ptb_dir):
    with open(os.path.join(ptb_dir, "ptb.char.train.txt"), encoding="utf-8") as f:
        first = f.readline()
    assert first.split() == list("the_cat_sat")  # space-separated characters, '_' between words
    splits = text.read_ptb_char(ptb_dir)
    vocab = splits.vocab
    assert vocab.kind == "ptb_char"
    assert vocab.decode_text(splits.ids["train"]) == "the cat sat\na dog ran far\nthe end\n"
    assert vocab.decode_text(splits.ids["valid"]) == "a cat ran\n"
    # the vocabulary is the sorted union of the three files' symbols
    expected = sorted(set("".join(s.replace(" ", "_") + "\n" for v in SENTENCES.values() for s in v)))
    assert vocab.symbols == expected
    assert len(splits.ids["train"]) == len("the_cat_sat\na_dog_ran_far\nthe_end\n")


def test_ptb_errors_name_the_missing_file_and_bad_token(tmp_path, ptb_dir):
    os.remove(os.path.join(ptb_dir, "ptb.char.test.txt"))
    with pytest.raises(FileNotFoundError, match="ptb.char.test.txt"):
        text.read_ptb_char(ptb_dir)
    bad = tmp_path / "bad"
    bad.mkdir()
    text.write_ptb_char_files(str(bad), {"valid": ["a b"], "test": ["a"]})
    (bad / "ptb.char.train.txt").write_text("a b\nt h <unk> e\n")
    with pytest.raises(ValueError, match=r"ptb.char.train.txt:2: token '<unk>'"):
        text.read_ptb_char(str(bad))


def test_enwik8_standard_split_is_proportional_for_small_files(tmp_path):
    rng = np.random.default_rng(0)
    data = bytes(rng.choice([65, 66, 67, 10, 200, 32], size=2000).astype(np.uint8))
    path = text.write_bytes_file(str(tmp_path / "enwik8"), data)
    splits = text.read_enwik8(str(tmp_path))  # a directory holding 'enwik8' ...
    assert text.read_enwik8(path).vocab == splits.vocab  # ... or the file itself
    assert splits.vocab.kind == "bytes" and splits.vocab.symbols == [10, 32, 65, 66, 67, 200]
    assert [len(splits.ids[s]) for s in ("train", "valid", "test")] == [1800, 100, 100]
    joined = np.concatenate([splits.ids[s] for s in ("train", "valid", "test")])
    assert bytes(splits.vocab.decode(joined)) == data
    assert text.split_sizes_for(100_000_000) == (90_000_000, 5_000_000, 5_000_000)
    assert text.split_sizes_for(10**8 + 5) == text.ENWIK8_SPLIT
    custom = text.read_enwik8(path, split_sizes=[1000, 500, 400])
    assert [len(custom.ids[s]) for s in ("train", "valid", "test")] == [1000, 500, 400]
    with pytest.raises(ValueError, match="split_sizes"):
        text.read_enwik8(path, split_sizes=[1000, 1000, 1000])
    with pytest.raises(FileNotFoundError, match="has no file 'enwik8'"):
        text.read_enwik8(str(tmp_path / "elsewhere"))


def test_text_files_utf8_chars_or_bytes(tmp_path):
    path = tmp_path / "poem.txt"
    path.write_text("héllo wörld\n" * 20, encoding="utf-8")
    splits = text.read_text(str(path))
    assert splits.vocab.kind == "chars" and "é" in splits.vocab.symbols
    assert sum(len(v) for v in splits.ids.values()) == len("héllo wörld\n" * 20)
    binary = tmp_path / "blob.bin"
    binary.write_bytes(bytes([0xFF, 0xFE, 0x41] * 50))
    assert text.read_text(str(binary)).vocab.kind == "bytes"
    with pytest.raises(FileNotFoundError, match=r"directory with 2 files \(blob.bin, poem.txt\)"):
        text.read_text(str(tmp_path))
    only = tmp_path / "only"
    only.mkdir()
    (only / "a.txt").write_text("abcabc" * 20)
    assert text.read_text(str(only)).source == str(only / "a.txt")  # a directory holding one file
    with pytest.raises(FileNotFoundError, match="does not exist"):
        text.read_text(str(tmp_path / "nope.txt"))


def test_vocabulary_round_trip_and_unknown_characters(tmp_path):
    vocab = text.Vocabulary.from_symbols("hello_world\n", kind="ptb_char")
    path = str(tmp_path / "sub" / "vocab.json")
    vocab.save(path)
    assert text.Vocabulary.load(path) == vocab
    assert os.listdir(os.path.dirname(path)) == ["vocab.json"]  # no temporary left behind
    ids = vocab.encode_text("hello world")  # a space is a word boundary '_' in PTB format
    assert vocab.decode(ids)[5] == "_" and vocab.decode_text(ids) == "hello world"
    with pytest.raises(ValueError, match=r"unknown character 'z' at position 2 of --prime"):
        vocab.encode_text("hez", source="--prime")
    chars = text.Vocabulary.from_symbols("abc")
    np.testing.assert_array_equal(chars.encode_text("cab"), [2, 0, 1])
    assert chars.decode_text([0, 1, 2]) == "abc"
    by = text.Vocabulary([65, 66, 195, 169], kind="bytes")
    assert by.decode_text(by.encode_text("ABé")) == "ABé"
    with pytest.raises(ValueError, match="is not a zoo vocabulary"):
        text.Vocabulary.from_json('{"symbols": ["a"]}')
    with pytest.raises(FileNotFoundError, match="does not exist"):
        text.Vocabulary.load(str(tmp_path / "none.json"))


def test_stream_windows_continue_from_one_batch_to_the_next():
    ids = np.arange(103)
    inputs, targets = text.stream_windows(ids, batch_size=4, sequence_length=5)
    # 4 streams of 25 symbols (the tail 100..102 dropped); (25 - 1) // 5 = 4 windows
    assert inputs.shape == targets.shape == (4, 4, 5)
    np.testing.assert_array_equal(inputs[0, 1], [25, 26, 27, 28, 29])  # stream 1 starts at 25
    np.testing.assert_array_equal(targets[0, 1], [26, 27, 28, 29, 30])
    for k in range(3):
        for b in range(4):
            assert inputs[k + 1, b, 0] == inputs[k, b, -1] + 1  # window k+1 follows window k
            assert inputs[k + 1, b, 0] == targets[k, b, -1]  # the last target is the next input
    np.testing.assert_array_equal(targets, inputs + 1)
    with pytest.raises(ValueError, match="too short"):
        text.stream_windows(np.arange(10), batch_size=4, sequence_length=5)


def test_eval_windows_cover_every_prediction_once():
    ids = np.arange(1, 24)  # 23 symbols -> 22 predictions
    inputs, targets = text.eval_windows(ids, batch_size=3, sequence_length=4)
    assert inputs.shape == (2, 3, 4)  # ceil(22 / 3) = 8 per stream = 2 windows of 4
    real = targets >= 0
    assert real.sum() == 22
    pairs = sorted(zip(inputs[real].tolist(), targets[real].tolist(), strict=True))
    assert pairs == [(i, i + 1) for i in range(1, 23)]
    assert (targets[~real] == text.PAD_TARGET).all()
    # stream 2 holds predictions 16..21: its second window has 2 real positions then padding
    np.testing.assert_array_equal(targets[1, 2], [22, 23, -1, -1])


def test_windows_dataset_batches_rows_in_stream_order():
    inputs, targets = text.eval_windows(np.arange(1, 24), batch_size=3, sequence_length=4)
    ds = text.windows_dataset(inputs, targets)
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == 2
    for k, (x, y) in enumerate(batches):
        assert x.dtype == np.int32 and y.dtype == np.int32 and x.shape == (3, 4)
        np.testing.assert_array_equal(x, inputs[k])
        np.testing.assert_array_equal(y, targets[k])  # padding (-1) survives the uint8 storage


def test_stream_dataset_resets_each_stream_at_every_epoch_start():
    inputs, targets = text.stream_windows(np.arange(300) % 7, 2, 10)  # 14 windows per epoch
    batches = list(text.stream_dataset(inputs, targets).take(30).as_numpy_iterator())
    for k, (x, y, reset) in enumerate(batches):
        np.testing.assert_array_equal(x, inputs[k % 14])  # it wraps after 14 windows
        np.testing.assert_array_equal(y, targets[k % 14])
        assert reset.dtype == bool and reset.shape == (2,)
        assert reset.tolist() == [k % 14 == 0] * 2, k  # the zero state at every epoch start, only there


def test_stream_dataset_random_resets_are_seeded_per_window_and_stream(tmp_path):
    inputs, targets = text.stream_windows(np.arange(20_000) % 7, 8, 4)  # 624 windows per epoch

    def flags(probability, seed, count=400):
        ds = text.stream_dataset(inputs, targets, reset_probability=probability, seed=seed)
        return np.stack([r for _, _, r in ds.take(count).as_numpy_iterator()])

    a = flags(0.1, seed=3)
    assert a[0].all() and 0.07 < a[1:].mean() < 0.13  # epoch start, then about 10% of the windows
    assert 0 < a[1:].sum(axis=1).max() < 8  # drawn per stream, not per batch
    np.testing.assert_array_equal(a, flags(0.1, seed=3))  # the same flags for the same seed and position
    assert not np.array_equal(a, flags(0.1, seed=4))
    # a resumed iterator (batch index restored) draws the same flags as an uninterrupted one
    ds = text.stream_dataset(inputs, targets, reset_probability=0.1, seed=3)
    it = iter(ds)
    for _ in range(150):
        next(it)
    ckpt = tf.train.Checkpoint(iterator=it)
    path = ckpt.save(str(tmp_path / "it"))
    fresh = iter(ds)
    tf.train.Checkpoint(iterator=fresh).restore(path).assert_consumed()
    np.testing.assert_array_equal(np.stack([next(fresh)[2].numpy() for _ in range(50)]), a[150:200])
    assert not flags(0.0, seed=3)[1:].any()
    with pytest.raises(ValueError, match=r"state_reset_probability=1.0 must be a number in \[0, 1\)"):
        text.stream_dataset(inputs, targets, reset_probability=1.0)


DISTRIBUTED_CHECK = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from zoo.data import text
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
ds = text.windows_dataset(*text.stream_windows(np.arange(4 * 41) % 251, 4, 5))
rows = [[], []]
for batch in strategy.experimental_distribute_dataset(ds):
    for r, x in enumerate(strategy.experimental_local_results(batch[0])):
        rows[r].append(x.numpy())
for r in range(2):
    assert all(x.shape == (2, 5) for x in rows[r])
    for a, b in zip(rows[r], rows[r][1:]):
        assert (b[:, 0] == a[:, -1] + 1).all(), (r, a, b)  # each replica keeps its own streams
    assert rows[r][0][0, 0] == 41 * 2 * r  # replica r owns streams 2r and 2r + 1
print("ok")
"""


@pytest.mark.slow
def test_each_replica_keeps_its_streams_under_mirrored_strategy():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": repo}
    proc = subprocess.run(
        [sys.executable, "-c", DISTRIBUTED_CHECK],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
