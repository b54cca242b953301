"""Translation data: the number-names corpus, WMT-style file pairs, the SentencePiece vocabulary, BLEU."""

import math
import os

import numpy as np
import pytest
import tensorflow as tf
from num2words import num2words

from zoo.data import num2words_corpus as corpus
from zoo.data import parallel, subword
from zoo.data.errors import MissingDataError
from zoo.metrics import bleu

ACCENTED = ["quatre-vingt-dix-neuf", "soixante et onze", "deux cent quatre-vingts mille", "zwölf Ça coûte"]


# ---------------------------------------------------------------- number-names corpus
def test_known_pair_is_num2words_output():
    assert corpus.number_name(342017, "en") == "three hundred and forty-two thousand and seventeen"
    assert corpus.number_name(342017, "fr") == "trois cent quarante-deux mille dix-sept"
    assert corpus.number_name(71, "fr") == "soixante et onze"


@pytest.mark.parametrize("language", ["en", "fr", "de"])
def test_pairs_equal_num2words_itself(language):
    # the fast converter (trimmed word table) must write exactly what num2words writes
    numbers = corpus.split_numbers("valid", size=300, seed=3)
    pairs = corpus.number_pairs("valid", "en", language, size=300, seed=3)
    assert [t for _, t in pairs] == [num2words(n, lang=language) for n in numbers]
    assert [s for s, _ in pairs] == [num2words(n, lang="en") for n in numbers]


def test_corpus_is_deterministic_and_seeded():
    a = corpus.number_pairs("train", size=500, seed=0)
    assert a == corpus.number_pairs("train", size=500, seed=0)
    assert a != corpus.number_pairs("train", size=500, seed=1)
    assert len(set(corpus.split_numbers("train", size=500))) == 500  # without replacement


def test_splits_are_disjoint_whatever_the_seed():
    train = set(corpus.split_numbers("train", size=20_000, seed=0)) | set(
        corpus.split_numbers("train", 5000, 7)
    )
    valid = set(corpus.split_numbers("valid", seed=0)) | set(corpus.split_numbers("valid", seed=7))
    test = set(corpus.split_numbers("test", seed=0)) | set(corpus.split_numbers("test", seed=7))
    assert not train & valid and not train & test and not valid & test
    for split, numbers in (("train", train), ("valid", valid), ("test", test)):
        assert set(corpus.split_of(np.array(sorted(numbers))).tolist()) == {split}
    fractions = np.unique(corpus.split_of(np.arange(200_000)), return_counts=True)
    assert dict(zip(*fractions, strict=True)) == pytest.approx(
        {"test": 10_000, "train": 180_000, "valid": 10_000}, rel=0.05
    )


def test_numbers_span_the_magnitudes():
    numbers = corpus.split_numbers("train", size=7000)
    digits = np.bincount([len(str(n)) for n in numbers], minlength=8)[1:]
    assert digits[0] == 10  # all one-digit numbers belong to train; their unused share moves up
    assert digits[3:].min() >= 900 and max(numbers) <= corpus.MAX_NUMBER


def test_corpus_rejects_bad_arguments_by_name():
    with pytest.raises(ValueError, match=r"source_language='xx'.*valid: .*\ben\b.*\bfr\b"):
        corpus.number_pairs("train", "xx", "fr", size=2)
    with pytest.raises(ValueError, match=r"target_language='english'"):
        corpus.number_pairs("train", "en", "english", size=2)
    with pytest.raises(ValueError, match=r"split='dev'.*train, valid, test"):
        corpus.number_pairs("dev", size=2)
    with pytest.raises(ValueError, match=r"size=0"):
        corpus.number_pairs("test", size=0)


# ---------------------------------------------------------------- WMT-style file pairs
def test_parallel_round_trip_keeps_alignment(tmp_path):
    sources = ["Hello world.", "", "tab\tand\u2028line separator", "  spaced  "]
    targets = ["Bonjour le monde.", "vide", "é\x85è", "  espacé  "]
    paths = parallel.write_parallel(str(tmp_path), "newstest2014", "en", "fr", sources, targets)
    assert [os.path.basename(p) for p in paths] == ["newstest2014.en", "newstest2014.fr"]
    assert parallel.read_parallel(str(tmp_path), "newstest2014", "en", "fr") == (sources, targets)
    assert parallel.read_parallel(str(tmp_path), "newstest2014", "en", "fr", max_lines=2) == (
        sources[:2],
        targets[:2],
    )
    assert parallel.count_empty_pairs(sources, targets) == 1
    kept = parallel.read_parallel(str(tmp_path), "newstest2014", "en", "fr", drop_empty=True)
    assert kept == ([sources[0], *sources[2:]], [targets[0], *targets[2:]])


def test_parallel_reads_crlf_and_bom(tmp_path):
    (tmp_path / "t.en").write_bytes(b"\xef\xbb\xbfone\r\ntwo")
    (tmp_path / "t.fr").write_bytes(b"un\r\ndeux\n")
    assert parallel.read_parallel(str(tmp_path), "t", "en", "fr") == (["one", "two"], ["un", "deux"])


def test_parallel_errors_name_file_flags_and_line(tmp_path):
    d = str(tmp_path)
    parallel.write_parallel(d, "train", "en", "fr", ["a", "b", "c"], ["x", "y", "z"])
    with pytest.raises(MissingDataError, match=r"train\.de.*--data_dir=.*--config train_prefix='train'"):
        parallel.read_parallel(d, "train", "en", "de", prefix_flag="--config train_prefix")
    (tmp_path / "train.fr").write_text("x\ny\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"train\.en' has 3 lines.*train\.fr' has 2"):
        parallel.read_parallel(d, "train", "en", "fr")
    (tmp_path / "train.fr").write_bytes(b"x\ny\nz\xff\n")
    with pytest.raises(ValueError, match=r"train\.fr' line 3 is not UTF-8"):
        parallel.read_parallel(d, "train", "en", "fr")
    with pytest.raises(ValueError, match=r"sentence 1"):
        parallel.write_parallel(d, "bad", "en", "fr", ["a", "b\nc"], ["x", "y"])


# ---------------------------------------------------------------- subword vocabulary
@pytest.fixture(scope="module")
def model_bytes():
    pairs = corpus.number_pairs("train", "en", "fr", size=600)
    return subword.train_subword_model([s for pair in pairs for s in pair] + ACCENTED, vocab_size=200)


def test_subword_training_is_deterministic_with_the_task_ids(model_bytes):
    pairs = corpus.number_pairs("train", "en", "fr", size=600)
    again = subword.train_subword_model([s for pair in pairs for s in pair] + ACCENTED, vocab_size=200)
    assert again == model_bytes
    tok = subword.SubwordTokenizer.from_bytes(model_bytes)
    assert [tok.id_to_piece(i) for i in range(4)] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert 4 < tok.vocab_size <= 200
    assert subword.SubwordTokenizer.from_bytes(tok.to_bytes()).encode(ACCENTED) == tok.encode(ACCENTED)


def test_subword_vocabulary_may_be_smaller_than_asked():
    tok = subword.SubwordTokenizer(subword.train_subword_model(["un deux trois", "one two three"], 5000))
    assert tok.vocab_size < 5000
    with pytest.raises(ValueError, match=r"vocab_size=6"):
        subword.train_subword_model(["un deux trois quatre cinq six"], vocab_size=6)
    with pytest.raises(ValueError, match=r"model_type='wordpiece'"):
        subword.train_subword_model(["a"], 100, model_type="wordpiece")


def test_decode_stops_at_eos_and_drops_pad_bos(model_bytes):
    tok = subword.SubwordTokenizer(model_bytes)
    ids = tok.encode(ACCENTED)
    assert tok.decode(ids) == ACCENTED
    with_eos = tok.encode(ACCENTED, add_bos=True, add_eos=True)
    assert with_eos[0][0] == subword.BOS_ID and with_eos[0][-1] == subword.EOS_ID
    row = [subword.BOS_ID, *ids[0], subword.EOS_ID, *ids[1], subword.PAD_ID]
    assert tok.decode([row, [subword.PAD_ID, *ids[1], subword.PAD_ID]]) == [ACCENTED[0], ACCENTED[1]]
    assert tok.decode([[ids[1][0], 10**6]]) == tok.decode([[ids[1][0], subword.UNK_ID]])


def _dense(rows, width):
    return np.array([r + [0] * (width - len(r)) for r in rows], np.int32)


def test_tf_text_ops_match_python(model_bytes):
    tok = subword.SubwordTokenizer(model_bytes)
    tf_tok = subword.tf_tokenizer(model_bytes)
    sentences = [*ACCENTED, "three hundred and forty-two thousand and seventeen", "ünknown ∑ symbols"]
    ids = tok.encode(sentences)
    assert tf_tok.tokenize(tf.constant(sentences)).to_list() == ids
    assert [s.decode() for s in tf_tok.detokenize(tf.ragged.constant(ids)).numpy()] == tok.decode(ids)
    # beam-search-like rows: BOS, ids, EOS, then junk after EOS and padding; an id outside the vocabulary
    rows = [[subword.BOS_ID, *ids[0], subword.EOS_ID, *ids[1]], [*ids[2], 10**6, subword.PAD_ID], ids[3]]
    dense = _dense(rows, max(map(len, rows)) + 2)
    decoded = [s.decode() for s in subword.tf_decode(tf_tok, tf.constant(dense)).numpy()]
    assert decoded == tok.decode(dense.tolist())
    assert decoded[0] == ACCENTED[0]


def test_tf_tokenizer_survives_saved_model(model_bytes, tmp_path):
    tok = subword.SubwordTokenizer(model_bytes)

    class Module(tf.Module):
        def __init__(self):
            super().__init__()
            self.tokenizer = subword.tf_tokenizer(model_bytes, add_eos=True)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def round_trip(self, text):
            ids = self.tokenizer.tokenize(text)
            return {"ids": ids.to_tensor(), "text": subword.tf_decode(self.tokenizer, ids.to_tensor())}

    path = str(tmp_path / "saved")
    tf.saved_model.save(Module(), path)
    loaded = tf.saved_model.load(path)
    out = loaded.round_trip(tf.constant(ACCENTED))
    expected = tok.encode(ACCENTED, add_eos=True)
    assert out["ids"].numpy().tolist() == _dense(expected, max(map(len, expected))).tolist()
    assert [s.decode() for s in out["text"].numpy()] == ACCENTED


def test_subword_model_file_round_trip_and_errors(model_bytes, tmp_path):
    path = subword.SubwordTokenizer(model_bytes).save(str(tmp_path / subword.SUBWORD_ASSET))
    assert subword.SubwordTokenizer.load(path).to_bytes() == model_bytes
    with pytest.raises(MissingDataError, match="nope.model"):
        subword.SubwordTokenizer.load(str(tmp_path / "nope.model"))
    with pytest.raises(ValueError, match="not a SentencePiece model"):
        subword.SubwordTokenizer(b"garbage")


# ---------------------------------------------------------------- BLEU and log perplexity
def test_bleu_on_known_strings():
    assert bleu.corpus_bleu(["Hello, world!"], ["Hello, world!"]) == pytest.approx(100.0)
    # equal lengths (BP = 1); clipped n-gram precisions 5/6, 3/5, 2/4, 1/3 -> (1/12)^(1/4)
    score = bleu.corpus_bleu(["the cat sat on the mat"], ["the cat sat on a mat"])
    assert score == pytest.approx(100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25)
    assert bleu.corpus_bleu(["", ""], ["un deux", "trois"]) == 0.0
    # 13a tokenisation splits punctuation off: "world!" and "world !" are the same hypothesis
    assert bleu.corpus_bleu(["Hello , world !"], ["Hello, world!"]) == pytest.approx(100.0)
    assert "tok:13a" in bleu.bleu_signature() and "nrefs:1" in bleu.bleu_signature()
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        bleu.corpus_bleu(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="0 sentences"):
        bleu.corpus_bleu([], [])


def test_log_perplexity():
    assert bleu.log_perplexity(2.0 * math.log(4.0), 2) == pytest.approx(math.log(4.0))
    with pytest.raises(ValueError, match="0 tokens"):
        bleu.log_perplexity(1.0, 0)
