"""The shared subword vocabulary of the translation task: a SentencePiece model, in Python and as graph ops.

GNMT (Wu et al. 2016, §4) translates sequences of wordpieces from one vocabulary shared by the source and the
target language; HyperNetworks §4.6 keeps that setup (32k pieces). Here the pieces come from SentencePiece
(Kudo & Richardson 2018), learned from the training text of both languages by :func:`train_subword_model`,
and the same model runs

- in Python (:class:`SubwordTokenizer`: data pipelines, the translate command, BLEU on decoded text), and
- as graph ops (:func:`tf_tokenizer`, TensorFlow Text's ``SentencepieceTokenizer``; :func:`tf_decode`), so
  that an exported SavedModel takes raw ``string [N]`` sentences and returns strings. The model proto is a
  constant of that graph; loading such a SavedModel in Python needs ``import tensorflow_text`` first (it
  registers the SentencePiece kernels).

Both give the same ids for the same text and the same text for the same ids (tested). A run stores the
model bytes in the file :data:`SUBWORD_ASSET` (:meth:`SubwordTokenizer.save`).

Special ids (the same in every part of the task): ``PAD_ID = 0`` pads sequences at the end, ``UNK_ID = 1``
stands for text the model cannot spell (decoded as " ⁇ "), ``BOS_ID = 2`` starts the decoder input and
``EOS_ID = 3`` ends a sentence. Decoding a row of ids (:meth:`SubwordTokenizer.decode`, :func:`tf_decode`)
stops at the first EOS, drops PAD and BOS, and reads an id outside the vocabulary as UNK (a model's output
layer may be wider than the learned vocabulary, see below).

Training (:func:`train_subword_model`) is deterministic: one thread, no input shuffling unless a sample is
asked for, and SentencePiece's random generator seeded. ``hard_vocab_limit=False``: on a small corpus the
learned vocabulary may be smaller than ``vocab_size`` (the number-names corpus has a few hundred pieces);
``character_coverage=1.0`` keeps every character of the training text; text is normalised with
SentencePiece's ``nmt_nfkc`` rule (NFKC plus whitespace clean-up), so decoding gives the normalised text.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from typing import Any

import sentencepiece as spm

from zoo.data.errors import MissingDataError
from zoo.io import atomic_write

__all__ = [
    "PAD_ID",
    "UNK_ID",
    "BOS_ID",
    "EOS_ID",
    "SUBWORD_ASSET",
    "MODEL_TYPES",
    "train_subword_model",
    "SubwordTokenizer",
    "tf_tokenizer",
    "tf_decode",
]

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
#: File name of the SentencePiece model in a run directory and in an export's ``assets/``.
SUBWORD_ASSET = "subword.model"
MODEL_TYPES = ("unigram", "bpe", "char", "word")


def train_subword_model(
    lines: Iterable[str],
    vocab_size: int,
    model_type: str = "unigram",
    seed: int = 0,
    max_sentences: int | None = None,
) -> bytes:
    """Learns a SentencePiece model from ``lines`` (source and target text together) in memory and returns
    its serialized proto.

    ``vocab_size`` is an upper bound (``hard_vocab_limit=False``); it must at least hold the 4 special
    pieces and every character of the text. ``max_sentences`` trains on a seeded random sample of that many
    lines (large WMT corpora); by default every line is used.
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type={model_type!r} is not a SentencePiece model type; valid: {MODEL_TYPES}")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 5:
        raise ValueError(f"vocab_size={vocab_size!r} must be an integer >= 5 (4 special ids + pieces)")
    if max_sentences is not None and (not isinstance(max_sentences, int) or max_sentences < 1):
        raise ValueError(f"max_sentences={max_sentences!r} must be None or a positive integer")
    writer = io.BytesIO()
    spm.set_random_generator_seed(int(seed))
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=writer,
            vocab_size=vocab_size,
            model_type=model_type,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            hard_vocab_limit=False,
            character_coverage=1.0,
            normalization_rule_name="nmt_nfkc",
            num_threads=1,
            input_sentence_size=max_sentences or 0,
            shuffle_input_sentence=max_sentences is not None,
            minloglevel=2,
        )
    except RuntimeError as e:
        raise ValueError(
            f"SentencePiece could not learn a {model_type} model with vocab_size={vocab_size}: {e}"
        ) from None
    return writer.getvalue()


class SubwordTokenizer:
    """A SentencePiece model in Python: text to ids and back, with the task's special ids.

    ``encode(["soixante et onze"]) -> [[...]]``; ``decode`` inverts it (on normalised text).
    """

    def __init__(self, model_bytes: bytes, source: str = "model bytes") -> None:
        processor = spm.SentencePieceProcessor()
        try:
            processor.LoadFromSerializedProto(bytes(model_bytes))
        except (RuntimeError, TypeError, OSError) as e:
            raise ValueError(f"{source} is not a SentencePiece model: {e}") from None
        specials = {
            "pad_id": processor.pad_id(),
            "unk_id": processor.unk_id(),
            "bos_id": processor.bos_id(),
            "eos_id": processor.eos_id(),
        }
        expected = {"pad_id": PAD_ID, "unk_id": UNK_ID, "bos_id": BOS_ID, "eos_id": EOS_ID}
        if specials != expected:
            raise ValueError(
                f"{source} has special ids {specials}; the translation task needs {expected} "
                "(train it with train_subword_model)"
            )
        self._processor = processor
        self._bytes = bytes(model_bytes)

    @classmethod
    def from_bytes(cls, model_bytes: bytes) -> SubwordTokenizer:
        return cls(model_bytes)

    def to_bytes(self) -> bytes:
        """The serialized SentencePiece model (what :data:`SUBWORD_ASSET` holds)."""
        return self._bytes

    @classmethod
    def load(cls, path: str) -> SubwordTokenizer:
        """Reads a model file (``<model_dir>/subword.model``)."""
        if not os.path.isfile(path):
            raise MissingDataError(f"subword model file {path!r} does not exist")
        with open(path, "rb") as f:
            return cls(f.read(), source=f"subword model file {path!r}")

    def save(self, path: str) -> str:
        """Writes the model bytes to ``path`` atomically; returns ``path``."""
        atomic_write(path, self._bytes)
        return path

    @property
    def vocab_size(self) -> int:
        """Number of pieces, special ids included (ids are ``0 .. vocab_size - 1``)."""
        return self._processor.get_piece_size()

    def id_to_piece(self, token_id: int) -> str:
        return self._processor.id_to_piece(int(token_id))

    def encode(self, texts: Sequence[str], add_bos: bool = False, add_eos: bool = False) -> list[list[int]]:
        """Ids of each text (no padding); ``add_bos``/``add_eos`` put BOS first / EOS last."""
        if isinstance(texts, str):
            raise TypeError("encode takes a list of sentences, got one string")
        return self._processor.encode(list(texts), out_type=int, add_bos=add_bos, add_eos=add_eos)

    def decode(self, ids: Iterable[Iterable[int]]) -> list[str]:
        """Text of each row of ids: up to the first EOS, PAD and BOS dropped, unknown ids read as UNK."""
        size = self.vocab_size
        rows = []
        for row in ids:
            kept = []
            for token in row:
                token = int(token)
                if token == EOS_ID:
                    break
                if token in (PAD_ID, BOS_ID):
                    continue
                kept.append(token if 0 <= token < size else UNK_ID)
            rows.append(kept)
        return self._processor.decode(rows)


def tf_tokenizer(model_bytes: bytes, add_bos: bool = False, add_eos: bool = False) -> Any:
    """The model as TensorFlow Text graph ops: ``tokenizer.tokenize(string [N]) -> ragged int32 [N, None]``
    (the ids of :meth:`SubwordTokenizer.encode`), ``tokenizer.detokenize(ids) -> string [N]``.

    Keep it as an attribute of a ``tf.Module`` / ``keras.Model`` to export it: the model bytes become a
    constant of the SavedModel. For ids with EOS and padding (beam search output) use :func:`tf_decode`.
    """
    import tensorflow as tf
    import tensorflow_text as tf_text

    SubwordTokenizer(model_bytes)  # checks the special ids
    return tf_text.SentencepieceTokenizer(
        model=bytes(model_bytes), out_type=tf.int32, add_bos=add_bos, add_eos=add_eos
    )


def tf_decode(tokenizer: Any, ids: Any) -> Any:
    """Graph version of :meth:`SubwordTokenizer.decode`: ``ids`` int ``[N, L]`` (dense, e.g. beam search
    tokens, or ragged) -> ``string [N]``, reading each row up to its first EOS, dropping PAD and BOS and
    reading ids outside the vocabulary as UNK."""
    import tensorflow as tf

    if isinstance(ids, tf.RaggedTensor):
        ids = ids.to_tensor(default_value=PAD_ID)
    ids = tf.cast(ids, tf.int32)
    before_eos = tf.equal(tf.cumsum(tf.cast(tf.equal(ids, EOS_ID), tf.int32), axis=-1), 0)
    keep = before_eos & tf.not_equal(ids, PAD_ID) & tf.not_equal(ids, BOS_ID)
    known = (ids >= 0) & (ids < tf.cast(tokenizer.vocab_size(), tf.int32))
    ids = tf.where(known, ids, tf.constant(UNK_ID, tf.int32))
    return tokenizer.detokenize(tf.ragged.boolean_mask(ids, keep))
