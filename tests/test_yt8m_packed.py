"""Packed frame-level records (``RecordLayout(packed=True)``) give the SequenceExample reader's batches, and
frames sampled before decoding are the frames the padded batch has at the drawn indices."""

import numpy as np
import pytest
import tensorflow as tf

from trainers import yt8m_preprocess
from zoo.data import yt8m
from zoo.tasks.video import TASK

SMALL5 = yt8m.RecordLayout(feature_sizes=(6, 2), num_classes=5, max_frames=5)
PACKED5 = SMALL5.replace(packed=True)


def _codes(rng, t, size):
    return rng.integers(1, 256, size=(t, size), dtype=np.uint8)  # no code 0: padding stays visible


# (id, labels, rgb frames, audio frames): equal lists, longer than max_frames, a shorter audio list, a
# longer audio list, no frames, no labels key.
VIDEOS = [("a", [1, 3], 4, 4), ("b", [], 9, 9), ("c", [4], 4, 2), ("d", [0], 2, 4), ("e", [2], 0, 0)]
VIDEOS += [("f", None, 3, 3), ("g", [1], 1, 1)]


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """The same videos as release SequenceExamples and as packed records (written by the job's encoder)."""
    root = tmp_path_factory.mktemp("packed")
    rng = np.random.default_rng(0)
    records = [
        yt8m.frame_example(v, labels, {"rgb": _codes(rng, t, 6), "audio": _codes(rng, a, 2)}, SMALL5)
        for v, labels, t, a in VIDEOS
    ]
    seq = yt8m.write_records(str(root / "seq.tfrecord"), records)
    out = yt8m_preprocess.preprocess(
        seq, str(root / "out"), layout=SMALL5, batch_size=3, output_format="packed"
    )
    assert out["num_videos"] == len(VIDEOS) and out["layout"] == PACKED5
    return seq, out["files"][0]


def _batches(path, layout, **kw):
    return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in yt8m.frame_dataset(path, 4, layout, **kw)]


def _assert_same(ours, theirs):
    assert len(ours) == len(theirs)
    for (x, y), (xr, yr) in zip(ours, theirs, strict=True):
        assert sorted(x) == sorted(xr)
        for key in x:
            np.testing.assert_array_equal(x[key], xr[key], err_msg=key)
        np.testing.assert_array_equal(y, yr)


@pytest.mark.parametrize(
    "options",
    [dict(dequantize=False), dict(), dict(normalize=False), dict(dequantize=False, num_samples=6, seed=3)],
    ids=["uint8", "float", "raw_float", "sampled"],
)
def test_packed_records_read_as_the_sequence_examples(both, options):
    seq, packed = both
    _assert_same(_batches(packed, PACKED5, **options), _batches(seq, SMALL5, **options))


def test_packed_bytes_are_the_codes_and_longer_videos_are_cut_at_max_frames(both, tmp_path):
    _, packed = both
    example = tf.train.Example.FromString(next(iter(tf.data.TFRecordDataset(packed))).numpy())
    fmap = example.features.feature
    assert fmap["num_frames"].int64_list.value == [4] and fmap["feature_frames"].int64_list.value == [4, 4]
    assert len(fmap["frames"].bytes_list.value[0]) == 4 * 8  # not padded to max_frames on disk
    rng = np.random.default_rng(1)
    codes = _codes(rng, 7, 8)
    path = yt8m.write_records(
        str(tmp_path / "long.tfrecord"), [yt8m.packed_example("x", [1], codes, PACKED5)]
    )
    ((x, _),) = _batches(path, PACKED5, dequantize=False)
    assert x["num_frames"].tolist() == [5]
    np.testing.assert_array_equal(x["features"][0], codes[:5])
    assert x["feature_mask"].all()


def _first_error(ds):
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        for _ in ds:
            pass
    return yt8m.error_message(info.value)


def test_bad_packed_records_are_named(both, tmp_path):
    seq, _ = both
    good = np.ones((2, 8), np.uint8)

    def error(record):
        path = yt8m.write_records(
            str(tmp_path / "bad.tfrecord"), [yt8m.packed_example("ok", [1], good, PACKED5), record]
        )
        return _first_error(yt8m.frame_dataset(path, 2, PACKED5))

    short = yt8m.packed_example("x", [1], good, PACKED5)
    example = tf.train.Example.FromString(short)
    example.features.feature["frames"].bytes_list.value[0] = b"\x01" * 15
    msg = error(example.SerializeToString())
    assert msg.endswith(
        "record 1: packed frames hold 15 bytes, but num_frames=2 frames of 8 codes "
        "(feature_sizes [6, 2]) need 16"
    )
    example.features.feature["frames"].bytes_list.value[0] = b"\x01" * 16
    example.features.feature["num_frames"].int64_list.value[0] = 3
    assert "record 1: packed frames hold 16 bytes, but num_frames=3" in error(example.SerializeToString())
    msg = error(yt8m.packed_example("x", [1], good, PACKED5, feature_frames=[2, 3]))
    assert "record 1: packed feature_frames [2, 3] must lie in [0, num_frames]" in msg
    msg = error(yt8m.packed_example("x", [1], good, PACKED5, feature_frames=[1, 1]))
    assert "with the first equal to num_frames=2" in msg
    del example.features.feature["frames"]
    msg = error(example.SerializeToString())
    assert "record 1: packed feature frames is missing or has 0 values (expected 1)" in msg
    assert "the record has keys [" in msg and "--output_format=packed" in msg
    # The release's SequenceExamples read as packed records, and packed records read as SequenceExamples.
    assert f"{seq} record 0: packed feature frames is missing" in _first_error(
        yt8m.frame_dataset(seq, 2, PACKED5)
    )
    _, packed = both
    assert f"{packed} record 0: feature list rgb is missing" in _first_error(
        yt8m.frame_dataset(packed, 2, SMALL5)
    )


def test_bad_packed_records_are_skipped_and_counted(both, tmp_path):
    _, packed = both
    bad = yt8m.packed_example("bad", [1], np.ones((2, 8), np.uint8), PACKED5, feature_frames=[3, 3])
    raw = [r.numpy() for r in tf.data.TFRecordDataset(packed)]
    path = yt8m.write_records(str(tmp_path / "mixed.tfrecord"), [raw[0], bad, raw[1]])
    counter = yt8m.make_bad_record_counter()
    ds = yt8m.frame_dataset(path, 2, PACKED5, skip_bad_records=True, bad_record_counter=counter)
    assert [i for x, _ in ds for i in x["id"].numpy().tolist()] == [b"a", b"b"]
    assert int(counter.numpy()) == 1


def test_sampling_before_decoding_equals_sampling_the_padded_batch(both):
    """The frames drawn first and decoded alone are the padded batch's frames at the same stateless draw
    (official SampleRandomFrames, as the reader drew them when it sampled after padding)."""
    seq, packed = both
    serialized = tf.constant([r.numpy() for r in tf.data.TFRecordDataset(seq)])
    full, _ = yt8m.parse_frame_batch(serialized, layout=SMALL5, dequantize=False)
    packed_serialized = tf.constant([r.numpy() for r in tf.data.TFRecordDataset(packed)])
    for seed in ([0, 0], [5, 1], [7, 123]):
        seed = tf.constant(seed, tf.int32)
        u = tf.random.stateless_uniform([len(VIDEOS), 11], seed=seed)
        n = full["num_frames"]
        index = tf.cast(tf.floor(u * tf.cast(n, tf.float32)[:, None]), tf.int32)
        index = tf.clip_by_value(index, 0, tf.maximum(n[:, None] - 1, 0))
        for layout, records in ((SMALL5, serialized), (PACKED5, packed_serialized)):
            kw = dict(layout=layout, num_samples=11, sample_seed=seed)
            got, _ = yt8m.parse_frame_batch(records, dequantize=False, **kw)
            np.testing.assert_array_equal(got["features"], tf.gather(full["features"], index, batch_dims=1))
            np.testing.assert_array_equal(
                got["feature_mask"], tf.gather(full["feature_mask"], index, batch_dims=1)
            )
            assert got["num_frames"].numpy().tolist() == [11, 11, 11, 11, 0, 11, 11]
            floats, _ = yt8m.parse_frame_batch(records, **kw)
            expected = yt8m.dequantize_frames(
                got["features"], got["num_frames"], feature_mask=got["feature_mask"], layout=SMALL5
            )
            np.testing.assert_array_equal(floats["features"], expected)


def test_video_task_trains_on_packed_records(both, tmp_path):
    seq, packed = both
    config = {"loss": "cross_entropy", "num_classes": 5, "feature_sizes": [6, 2], "max_frames": 5}
    config.update(
        {"feature_names": ["rgb", "audio"], "feature_size": 8, "id_key": "id", "labels_key": "labels"}
    )
    batches = {}
    for dataset, path in (("yt8m_frame", seq), ("yt8m_packed", packed)):
        data = TASK.build_data(dataset, path, 4, config, {}, seed=0)
        batches[dataset] = [tf.nest.map_structure(lambda t: t.numpy(), b) for b in data.train.take(3)]
        assert data.info["layout"].packed == (dataset == "yt8m_packed")
    _assert_same(batches["yt8m_packed"], batches["yt8m_frame"])
    with pytest.raises(ValueError, match="use 'yt8m_video'"):
        video_config = {k: v for k, v in config.items() if k != "max_frames"}  # a video-level model's
        TASK.build_data("yt8m_packed", packed, 4, video_config, {}, seed=0)


def test_layout_packed_is_frame_level_only():
    assert yt8m.PRESETS["packed_frame"] == yt8m.FRAME_LEVEL.replace(packed=True)
    with pytest.raises(ValueError, match="packed=True is a frame-level layout"):
        yt8m.VIDEO_LEVEL.replace(packed=True)


@pytest.mark.slow
def test_preprocess_command_line_writes_packed_records(both, tmp_path, run_cli):
    # zoo-yt8m-preprocess's main in this process (its subprocess test: test_yt8m_features.py)
    seq, _ = both
    args = ["zoo-yt8m-preprocess", f"--input={seq}", f"--output_dir={tmp_path}/p"]
    args += [
        "--output_format=packed",
        "--feature_sizes=6,2",
        "--num_classes=5",
        "--max_frames=5",
        "--num_shards=2",
    ]
    result = run_cli(yt8m_preprocess._define_flags, yt8m_preprocess.main, args, yt8m_preprocess._parse_flags)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"wrote {len(VIDEOS)} packed videos to 2 files" in result.stdout
    ours = _batches(f"{tmp_path}/p/video-*.tfrecord", PACKED5, dequantize=False)
    theirs = _batches(seq, SMALL5, dequantize=False)
    assert sorted(i for x, _ in ours for i in x["id"]) == sorted(i for x, _ in theirs for i in x["id"])
