"""Character streams for the language models of HyperNetworks §4.3-4.4 (Penn Treebank, enwik8, any text).

Three on-disk formats, one in-memory form (a 1-D array of symbol ids plus a :class:`Vocabulary`):

- ``ptb_char``: Mikolov's character-level Penn Treebank, ``ptb.char.{train,valid,test}.txt`` in one
  directory. Each line is one sentence of space-separated characters with ``_`` between words. A line maps
  to its characters followed by one ``"\\n"`` symbol (the end of the sentence is predicted like any other
  character), so the stream of a file is ``sentence_1 \\n sentence_2 \\n ...``. Every token must be a single
  character (a longer token is an error naming the file and line). The vocabulary is the sorted union of
  the symbols of the three files (50 symbols on the real data, HyperNetworks Table 3's V = 50).
- ``enwik8``: the first 10^8 bytes of the English Wikipedia dump (Hutter prize), read as raw bytes; the
  standard split (HyperNetworks A.3.4) is the first 90M bytes for training, the next 5M for validation and
  the next 5M for test. A file shorter than 10^8 bytes (a test fixture, a prefix) is split in the same
  90% / 5% / 5% proportions; ``split_sizes`` overrides both. The vocabulary is the sorted set of byte values
  that occur in the file (205 on the real data).
- ``text``: any file (or a directory holding exactly one file). If it decodes as UTF-8 it is a stream of
  Unicode characters, otherwise of bytes. It is split like enwik8 (90% / 5% / 5% unless ``split_sizes`` is
  given); the vocabulary is every symbol of the file.

Batching for truncated backpropagation through time (:func:`stream_windows`): a split is cut into ``B``
equally long, contiguous streams; batch ``k`` holds window ``k`` of every stream, row ``b`` being stream
``b``. A training window is ``T + 1`` characters (inputs are the first ``T``, targets the last ``T``) and
window ``k + 1`` starts where window ``k``'s inputs end, so the state a model carries out of batch ``k`` row
``b`` is exactly the state that batch ``k + 1`` row ``b`` needs. Under a ``tf.distribute`` strategy with
``R`` replicas each global batch of ``B`` rows is split into ``R`` contiguous blocks of ``B / R`` rows in
replica order, the same rows at every step (``trainers/loop.py`` slices each global batch by replica id, on
every worker; ``experimental_distribute_dataset`` on one machine does the same), so replica ``r`` always
owns streams ``r*B/R .. (r+1)*B/R - 1`` and its carried state stays aligned (``B`` must be divisible by
``R``). The training stream is not shuffled (shuffling would break the carried state).

Carried state and resets (:func:`stream_dataset`), the policy of char-rnn practice: a training batch is
``(ids, targets, reset)`` with ``reset`` a bool ``[B]`` flag per stream saying "start this window from the
zero state". It is set on the first window of every epoch (at the wrap the streams start over at the
beginning of their text, so the state carried out of the last window belongs to other text; it also keeps
the zero state a state the model is trained from, which is how it is evaluated) and, with a small
``reset_probability``, on any other window of a stream (drawn from a stateless generator keyed by the seed
and the batch index, so a resumed run draws the same flags). The task zeroes the carried state of the
flagged rows before the window (``zoo/tasks/char_lm.py``).

Evaluation windows (:func:`eval_windows`) cover a whole split: every one of its ``N - 1`` next-character
predictions appears exactly once; the streams' last window is padded, with target ``-1`` marking a padded
position that losses and metrics ignore. With ``B`` evaluation streams each stream starts from the zero
state, so ``B = 1`` is the exact sequential bits per character of the split.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from zoo.data.errors import MissingDataError
from zoo.io import atomic_write

__all__ = [
    "MissingDataError",
    "PAD_TARGET",
    "ENWIK8_SPLIT",
    "PTB_FILES",
    "Vocabulary",
    "CharSplits",
    "read_ptb_char",
    "read_ptb_char_file",
    "read_enwik8",
    "read_text",
    "text_file",
    "split_sizes_for",
    "stream_windows",
    "eval_windows",
    "windows_dataset",
    "stream_dataset",
    "write_ptb_char_files",
    "write_bytes_file",
]


#: target id of a padded position (ignored by losses and bits-per-character).
PAD_TARGET = -1
#: the standard enwik8 split in bytes (HyperNetworks A.3.4; Hutter prize convention).
ENWIK8_SPLIT = (90_000_000, 5_000_000, 5_000_000)
#: split name -> file name of the character-level Penn Treebank.
PTB_FILES = {"train": "ptb.char.train.txt", "valid": "ptb.char.valid.txt", "test": "ptb.char.test.txt"}
#: the end-of-sentence symbol a PTB line ends with.
PTB_EOS = "\n"
_KINDS = ("chars", "bytes", "ptb_char")


class Vocabulary:
    """An ordered set of symbols; id ``i`` is ``symbols[i]``.

    ``kind`` says how text maps to symbols:
      - ``"chars"``: Unicode characters;
      - ``"bytes"``: byte values 0-255 (text is encoded as UTF-8 first; decoded text uses
        ``errors="replace"``);
      - ``"ptb_char"``: characters of the PTB character format, where a word boundary is ``_`` and a
        sentence ends with ``"\\n"``; :meth:`encode_text` maps a space to ``_`` and :meth:`decode_text`
        maps ``_`` back to a space.
    """

    def __init__(self, symbols: Sequence[Any], kind: str = "chars") -> None:
        if kind not in _KINDS:
            raise ValueError(f"vocabulary kind {kind!r} is not one of {', '.join(_KINDS)}")
        symbols = list(symbols)
        if len(set(symbols)) != len(symbols):
            dupes = sorted({s for s in symbols if symbols.count(s) > 1}, key=repr)
            raise ValueError(f"vocabulary has duplicate symbols: {dupes!r}")
        if kind == "bytes" and any(not isinstance(s, int) or not 0 <= s < 256 for s in symbols):
            raise ValueError("a 'bytes' vocabulary holds integers 0..255")
        if kind != "bytes" and any(not isinstance(s, str) or len(s) != 1 for s in symbols):
            raise ValueError(f"a {kind!r} vocabulary holds single characters")
        self.kind = kind
        self.symbols = symbols
        self._index = {s: i for i, s in enumerate(symbols)}

    # ------------------------------------------------------------ building
    @classmethod
    def from_symbols(cls, symbols: Iterable[Any], kind: str = "chars") -> Vocabulary:
        """The sorted set of ``symbols`` (deterministic ids)."""
        return cls(sorted(set(symbols)), kind)

    def __len__(self) -> int:
        return len(self.symbols)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and (self.kind, self.symbols) == (other.kind, other.symbols)

    def __repr__(self) -> str:
        return f"Vocabulary(kind={self.kind!r}, size={len(self)})"

    # ------------------------------------------------------------ encoding
    def encode(self, symbols: Sequence[Any], source: str = "input") -> np.ndarray:
        """Ids of a sequence of symbols (characters for chars/ptb_char, ints for bytes) as int32.

        An unknown symbol raises ``ValueError`` naming it, its position and ``source``.
        """
        index = self._index
        try:
            return np.fromiter((index[s] for s in symbols), dtype=np.int32, count=len(symbols))
        except KeyError:
            for pos, s in enumerate(symbols):
                if s not in index:
                    shown = "".join(repr(x)[1:-1] for x in self.symbols[:60] if isinstance(x, str))
                    if self.kind == "bytes":
                        shown = f"{len(self)} byte values"
                    raise ValueError(
                        f"unknown {'byte' if self.kind == 'bytes' else 'character'} {s!r} at position {pos} "
                        f"of {source}; the vocabulary ({self.kind}, {len(self)} symbols) has: {shown}"
                    ) from None
            raise

    def encode_text(self, text: str, source: str = "text") -> np.ndarray:
        """Ids of a human-written string (e.g. a sampling prime), following :attr:`kind`."""
        if self.kind == "bytes":
            return self.encode(list(text.encode("utf-8")), source)
        if self.kind == "ptb_char":
            text = text.replace(" ", "_")
        return self.encode(list(text), source)

    def decode(self, ids: Iterable[int]) -> list[Any]:
        """The symbols of ``ids``."""
        return [self.symbols[int(i)] for i in ids]

    def decode_text(self, ids: Iterable[int]) -> str:
        """A readable string for ``ids`` (inverse of :meth:`encode_text`)."""
        symbols = self.decode(ids)
        if self.kind == "bytes":
            return bytes(symbols).decode("utf-8", errors="replace")
        text = "".join(symbols)
        return text.replace("_", " ") if self.kind == "ptb_char" else text

    # ------------------------------------------------------------ storage
    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "size": len(self), "symbols": self.symbols}, ensure_ascii=True)

    def to_bytes(self) -> bytes:
        return self.to_json().encode("utf-8")

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "vocabulary json") -> Vocabulary:
        try:
            data = json.loads(text)
            vocab = cls(data["symbols"], data["kind"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{source} is not a zoo vocabulary ({{'kind', 'symbols'}}): {e}") from None
        if "size" in data and data["size"] != len(vocab):
            raise ValueError(f"{source}: 'size' is {data['size']} but it lists {len(vocab)} symbols")
        return vocab

    def save(self, path: str) -> None:
        """Writes the json atomically (temporary file in the same directory, then rename)."""
        atomic_write(path, self.to_json())

    @classmethod
    def load(cls, path: str) -> Vocabulary:
        if not os.path.isfile(path):
            raise MissingDataError(f"vocabulary file {path!r} does not exist")
        with open(path, encoding="utf-8") as f:
            return cls.from_json(f.read(), source=path)


class CharSplits:
    """Encoded splits of one dataset: ``ids[split]`` is a 1-D int32 array; ``vocab`` encodes them."""

    def __init__(self, ids: dict[str, np.ndarray], vocab: Vocabulary, source: str) -> None:
        self.ids = ids
        self.vocab = vocab
        self.source = source

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.ids.items())
        return f"CharSplits({self.source!r}, {self.vocab!r}, {sizes})"


# ---------------------------------------------------------------- readers
def read_ptb_char_file(path: str) -> list[str]:
    """The symbols of one PTB character file: each line's characters, then ``"\\n"``."""
    if not os.path.isfile(path):
        raise MissingDataError(f"PTB character file {path!r} does not exist")
    out: list[str] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            tokens = line.split()
            if not tokens:
                continue
            for tok in tokens:
                if len(tok) != 1:
                    raise ValueError(
                        f"{path}:{lineno}: token {tok!r} is not one character; the PTB character format "
                        "is space-separated single characters with '_' between words"
                    )
            out.extend(tokens)
            out.append(PTB_EOS)
    if not out:
        raise ValueError(f"PTB character file {path!r} holds no characters")
    return out


def _resolve_file(data_dir: str, name: str, flag: str = "--data_dir") -> str:
    """``data_dir`` itself if it is the file ``name``, else ``data_dir/name``; an error otherwise."""
    if os.path.isfile(data_dir):
        return data_dir
    path = os.path.join(data_dir, name)
    if not os.path.isfile(path):
        what = "directory" if os.path.isdir(data_dir) else "path (missing)"
        raise MissingDataError(f"{flag}={data_dir!r}: {what} has no file {name!r}")
    return path


def read_ptb_char(data_dir: str, vocab: Vocabulary | None = None) -> CharSplits:
    """The three PTB character splits in ``data_dir`` (see the module docstring)."""
    if not os.path.isdir(data_dir):
        raise MissingDataError(
            f"--data_dir={data_dir!r} is not a directory; ptb_char expects one holding "
            f"{', '.join(PTB_FILES.values())}"
        )
    missing = [n for n in PTB_FILES.values() if not os.path.isfile(os.path.join(data_dir, n))]
    if missing:
        raise MissingDataError(f"--data_dir={data_dir!r} lacks {', '.join(missing)} (dataset ptb_char)")
    symbols = {s: read_ptb_char_file(os.path.join(data_dir, n)) for s, n in PTB_FILES.items()}
    if vocab is None:
        vocab = Vocabulary.from_symbols((c for seq in symbols.values() for c in seq), kind="ptb_char")
    ids = {s: vocab.encode(seq, source=os.path.join(data_dir, PTB_FILES[s])) for s, seq in symbols.items()}
    return CharSplits(ids, vocab, data_dir)


def split_sizes_for(total: int, split_sizes: Sequence[int] | None = None) -> tuple[int, int, int]:
    """Train/valid/test sizes of a stream of ``total`` symbols.

    ``split_sizes`` if given (must fit in ``total``); the enwik8 standard 90M/5M/5M when ``total`` is at
    least 10^8; otherwise 90% / 5% / 5% (valid and test at least 2 symbols each, train the rest).
    """
    if split_sizes is not None:
        sizes = tuple(int(s) for s in split_sizes)
        if len(sizes) != 3 or min(sizes) < 0 or sum(sizes) > total:
            raise ValueError(
                f"split_sizes={list(split_sizes)!r} must be 3 non-negative sizes (train, valid, test) "
                f"summing to at most the {total} symbols of the file"
            )
        return sizes  # type: ignore[return-value]
    if total >= sum(ENWIK8_SPLIT):
        return ENWIK8_SPLIT
    held = max(2, int(total * 0.05))
    if total - 2 * held < 2:
        raise ValueError(f"a file of {total} symbols is too short to split into train/valid/test")
    return total - 2 * held, held, held


def _split(seq: np.ndarray, sizes: tuple[int, int, int]) -> dict[str, np.ndarray]:
    a, b, c = sizes
    return {"train": seq[:a], "valid": seq[a : a + b], "test": seq[a + b : a + b + c]}


def read_enwik8(
    data_dir: str, vocab: Vocabulary | None = None, split_sizes: Sequence[int] | None = None
) -> CharSplits:
    """enwik8 as raw bytes (``data_dir`` is the file ``enwik8`` or a directory holding it)."""
    path = _resolve_file(data_dir, "enwik8")
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0:
        raise ValueError(f"enwik8 file {path!r} is empty")
    if vocab is None:
        vocab = Vocabulary(np.unique(raw).tolist(), kind="bytes")
    ids = _encode_bytes(raw, vocab, path)
    return CharSplits(_split(ids, split_sizes_for(ids.size, split_sizes)), vocab, path)


def _encode_bytes(raw: np.ndarray, vocab: Vocabulary, source: str) -> np.ndarray:
    if vocab.kind != "bytes":
        raise ValueError(f"{source} is read as bytes but the vocabulary is of kind {vocab.kind!r}")
    table = np.full(256, -1, dtype=np.int16)  # int16 ids: enwik8's 10^8 bytes stay 200 MB
    table[np.asarray(vocab.symbols, dtype=np.int64)] = np.arange(len(vocab), dtype=np.int16)
    ids = table[raw]
    bad = np.flatnonzero(ids < 0)
    if bad.size:
        raise ValueError(
            f"unknown byte {int(raw[bad[0]])} at position {int(bad[0])} of {source}; "
            f"the vocabulary has {len(vocab)} byte values"
        )
    return ids


def text_file(data_dir: str) -> str:
    """The file of dataset ``text``: ``data_dir`` itself, or the only (non-hidden) file in that directory."""
    if os.path.isfile(data_dir):
        return data_dir
    if not os.path.isdir(data_dir):
        raise MissingDataError(f"--data_dir={data_dir!r} does not exist; dataset 'text' expects a file")
    files = sorted(
        n for n in os.listdir(data_dir) if not n.startswith(".") and os.path.isfile(os.path.join(data_dir, n))
    )
    if len(files) != 1:
        raise MissingDataError(
            f"--data_dir={data_dir!r} is a directory with {len(files)} files ({', '.join(files[:5])}); "
            "dataset 'text' expects a file, or a directory holding exactly one"
        )
    return os.path.join(data_dir, files[0])


def read_text(
    path: str, vocab: Vocabulary | None = None, split_sizes: Sequence[int] | None = None
) -> CharSplits:
    """Any file: UTF-8 characters if it decodes, else bytes; split 90/5/5 (see :func:`split_sizes_for`).

    ``path`` may also be a directory holding exactly one file (:func:`text_file`).
    """
    path = text_file(path)
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise ValueError(f"text file {path!r} is empty")
    kind = vocab.kind if vocab is not None else None
    if kind != "bytes":
        try:
            chars = list(data.decode("utf-8"))
        except UnicodeDecodeError:
            if kind is not None:
                raise ValueError(f"{path!r} is not UTF-8 but the vocabulary is of kind {kind!r}") from None
            kind = "bytes"
        else:
            vocab = vocab or Vocabulary.from_symbols(chars, kind="chars")
            ids = vocab.encode(chars, source=path)
            return CharSplits(_split(ids, split_sizes_for(ids.size, split_sizes)), vocab, path)
    raw = np.frombuffer(data, dtype=np.uint8)
    vocab = vocab or Vocabulary(np.unique(raw).tolist(), kind="bytes")
    ids = _encode_bytes(raw, vocab, path)
    return CharSplits(_split(ids, split_sizes_for(ids.size, split_sizes)), vocab, path)


# ---------------------------------------------------------------- batching
def _check_batch(ids: np.ndarray, batch_size: int, sequence_length: int) -> None:
    if batch_size < 1 or sequence_length < 1:
        raise ValueError(f"batch_size={batch_size} and sequence_length={sequence_length} must be >= 1")
    if ids.ndim != 1:
        raise ValueError(f"a character stream is 1-D, got shape {ids.shape}")


def stream_windows(ids: np.ndarray, batch_size: int, sequence_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Training windows for truncated BPTT: ``inputs, targets``, each ``[K, B, T]`` (dtype of ``ids``).

    The stream is cut into ``B`` contiguous streams of ``L = len(ids) // B`` symbols (the tail is dropped);
    ``K = (L - 1) // T`` windows of ``T + 1`` symbols per stream; ``inputs[k, b] = s_b[kT : kT + T]``,
    ``targets[k, b] = s_b[kT + 1 : kT + T + 1]``, so ``inputs[k + 1, b]`` continues ``inputs[k, b]``.
    """
    ids = np.asarray(ids)
    _check_batch(ids, batch_size, sequence_length)
    stream_len = ids.size // batch_size
    num_windows = (stream_len - 1) // sequence_length if stream_len else 0
    if num_windows < 1:
        raise ValueError(
            f"a split of {ids.size} symbols gives {batch_size} streams of {stream_len}, too short for one "
            f"window of sequence_length + 1 = {sequence_length + 1}; lower the batch size or sequence_length"
        )
    streams = ids[: stream_len * batch_size].reshape(batch_size, stream_len)
    used = num_windows * sequence_length
    inputs = streams[:, :used].reshape(batch_size, num_windows, sequence_length).transpose(1, 0, 2)
    targets = streams[:, 1 : used + 1].reshape(batch_size, num_windows, sequence_length).transpose(1, 0, 2)
    return np.ascontiguousarray(inputs), np.ascontiguousarray(targets)


def eval_windows(ids: np.ndarray, batch_size: int, sequence_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation windows covering every prediction of a split once: ``inputs, targets`` ``[K, B, T]``.

    The ``N - 1`` (input, next symbol) pairs are cut into ``B`` contiguous streams of ``ceil((N-1)/B)``
    pairs, each split into ``K`` windows of ``T``; positions past the end are padded with input 0 and
    target :data:`PAD_TARGET`.
    """
    ids = np.asarray(ids)
    _check_batch(ids, batch_size, sequence_length)
    pairs = ids.size - 1
    if pairs < 1:
        raise ValueError(f"a split of {ids.size} symbols has no next-symbol prediction to evaluate")
    per_stream = -(-pairs // batch_size)
    num_windows = -(-per_stream // sequence_length)
    padded = num_windows * sequence_length
    inputs = np.zeros((batch_size, padded), np.int32)
    targets = np.full((batch_size, padded), PAD_TARGET, np.int32)
    for b in range(batch_size):
        lo, hi = b * per_stream, min((b + 1) * per_stream, pairs)
        if lo >= hi:
            break
        inputs[b, : hi - lo] = ids[lo:hi]
        targets[b, : hi - lo] = ids[lo + 1 : hi + 1]
    shape = (batch_size, num_windows, sequence_length)
    return (
        np.ascontiguousarray(inputs.reshape(shape).transpose(1, 0, 2)),
        np.ascontiguousarray(targets.reshape(shape).transpose(1, 0, 2)),
    )


def _batches(inputs: np.ndarray, targets: np.ndarray, repeat: bool) -> tf.data.Dataset:
    """``(ids [B, T], targets [B, T])`` int32 batches of ``[K, B, T]`` windows, in window order."""
    num_windows, batch_size, seq_len = inputs.shape
    small = max(int(inputs.max(initial=0)), int(targets.max(initial=0))) < 255
    dtype = np.uint8 if small else np.int32
    flat_in = inputs.reshape(num_windows * batch_size, seq_len).astype(dtype)
    flat_tg = targets.reshape(num_windows * batch_size, seq_len)
    flat_tg = np.where(flat_tg < 0, 255, flat_tg).astype(dtype) if small else flat_tg.astype(np.int32)

    def to_int(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x = tf.cast(x, tf.int32)
        y = tf.cast(y, tf.int32)
        if small:
            y = tf.where(y == 255, tf.constant(PAD_TARGET, tf.int32), y)
        return x, y

    ds = tf.data.Dataset.from_tensor_slices((flat_in, flat_tg))
    if repeat:
        ds = ds.repeat()
    return ds.batch(batch_size, drop_remainder=True).map(to_int, num_parallel_calls=tf.data.AUTOTUNE)


def windows_dataset(inputs: np.ndarray, targets: np.ndarray) -> tf.data.Dataset:
    """A finite ``tf.data.Dataset`` of ``(ids [B, T], targets [B, T])`` int32 batches from ``[K, B, T]``
    windows (evaluation, :func:`eval_windows`): batch ``k`` is window ``k`` of every stream.

    Rows are laid out window-major and re-batched with ``batch(B, drop_remainder=True)`` so that
    ``tf.distribute`` sees an ordinary batched dataset (and splits each batch by rows, see the module
    docstring). Symbols are stored as uint8 when they fit (enwik8's 90M training bytes stay 90 MB).
    """
    return _batches(inputs, targets, repeat=False).prefetch(tf.data.AUTOTUNE)


def stream_dataset(
    inputs: np.ndarray, targets: np.ndarray, reset_probability: float = 0.0, seed: int = 0
) -> tf.data.Dataset:
    """The training stream: ``(ids [B, T], targets [B, T], reset [B] bool)`` batches of the ``[K, B, T]``
    windows of :func:`stream_windows`, repeated forever (epoch after epoch, in the same order).

    ``reset[b]`` is True on the first window of every epoch and otherwise with probability
    ``reset_probability``, independently per stream and window, from ``stateless_uniform`` keyed by
    ``(seed, batch index)`` (the batch index is part of the iterator's checkpointed position). See the
    module docstring for why.
    """
    if (
        isinstance(reset_probability, bool)
        or not isinstance(reset_probability, (int, float))
        or not 0.0 <= reset_probability < 1.0
    ):
        raise ValueError(
            f"recipe key state_reset_probability={reset_probability!r} must be a number in [0, 1) (the "
            "probability that a training window starts from the zero state)"
        )
    num_windows, batch_size, _ = inputs.shape
    probability = float(reset_probability)

    def with_reset(index: tf.Tensor, batch: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, ...]:
        reset = tf.fill([batch_size], tf.equal(index % num_windows, 0))
        if probability > 0.0:
            key = tf.stack([tf.constant(seed, tf.int64), index])
            reset = reset | (tf.random.stateless_uniform([batch_size], seed=key) < probability)
        return (*batch, reset)

    ds = _batches(inputs, targets, repeat=True).enumerate().map(with_reset)
    return ds.prefetch(tf.data.AUTOTUNE)


# ---------------------------------------------------------------- writers (tests, examples)
def write_ptb_char_files(directory: str, splits: dict[str, Sequence[str]]) -> dict[str, str]:
    """Writes sentences (plain strings, words separated by spaces) in the PTB character format.

    ``splits`` maps ``"train"``/``"valid"``/``"test"`` to a list of sentences; returns split -> path.
    """
    paths = {}
    for split, sentences in splits.items():
        if split not in PTB_FILES:
            raise ValueError(f"unknown PTB split {split!r}; valid: {', '.join(PTB_FILES)}")
        lines = [" ".join(s.strip().replace(" ", "_")) for s in sentences]
        paths[split] = os.path.join(directory, PTB_FILES[split])
        atomic_write(paths[split], ("\n".join(f" {line} " for line in lines) + "\n").encode("utf-8"))
    return paths


def write_bytes_file(path: str, data: bytes) -> str:
    """Writes ``data`` atomically (an enwik8-like fixture); returns ``path``."""
    atomic_write(path, data)
    return path
