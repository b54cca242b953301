"""YouTube-8M TFRecord readers and writers (Abu-El-Haija et al. 2016, §3; official starter code formats).

Formats (the official releases, and a packed frame level of ours):

* video level: ``tf.train.Example`` with ``id`` (bytes), ``labels`` (int64 list), ``mean_rgb`` (1024 floats)
  and ``mean_audio`` (128 floats);
* frame level: ``tf.train.SequenceExample`` with context ``id`` and ``labels`` and feature lists ``rgb`` and
  ``audio``: one uint8 byte string per frame (1024 and 128 bytes), 1 frame per second;
* packed frame level (optional, ``RecordLayout(packed=True)``, e.g. :data:`PACKED_FRAME_LEVEL`; written by
  ``zoo-yt8m-preprocess --output_format=packed`` with :func:`packed_records`): a ``tf.train.Example`` per
  video with the id and labels, ``num_frames`` and ``feature_frames`` (int64) and ``frames``, one bytes
  value holding the uint8 codes ``[num_frames, D]`` (see :func:`packed_example`). Parsing a
  SequenceExample costs about as much CPU as reading it (one string per frame and feature list); the
  packed record is one string, decoded and padded in one op, so the reader keeps up with the disk. The
  readers yield the same batches from both (tests/test_yt8m_packed.py).

What a record holds (feature names and sizes, id and labels keys, number of classes, frames kept, frame or
video level) is one :class:`RecordLayout`; readers, writers, the models' input spec and the video task all
take it. Presets: :data:`FRAME_LEVEL`, :data:`VIDEO_LEVEL` (current release) and :data:`PAPER_FRAME_LEVEL`,
:data:`PAPER_VIDEO_LEVEL` (the paper's release v1: ``video_id``, ``inc3`` / ``mean_inc3`` 1024, 4800 classes).

Processing follows the official reader (``readers.py``, ``utils.Dequantize``):

* frame bytes are dequantised bit-identically to the official float32 ``q * 4/255 + (4/512 - 2)``;
* ``num_frames`` is the frame count of the *first* feature list, capped at ``max_frames``. When the lists
  differ in length (the official data never does), a shorter list's missing frames are zeros in its
  columns and a longer list's extra frames are dropped, as the official ``resize_axis`` does per list
  (it keeps the extra frames in rows beyond ``num_frames``; here every row beyond ``num_frames`` is zero);
* a record whose feature lists are empty has 0 frames (``num_frames`` 0, all-zero features); a feature list
  that is *absent* is an error (the official parser requires every list);
* features are concatenated and L2-normalised per frame (frame level) or per video (video level), with
  frames beyond ``max_frames`` dropped and padded frames zero;
* labels are optional: a record without the labels key, or with an empty list, has no positive class.

Batches are ``(inputs, labels)`` with ``inputs = {"features", "num_frames", "id"}`` and ``labels``
multi-hot float32 ``[B, num_classes]``.

Pipelines stream: files are listed once, read with a parallel interleave, records batched *before*
parsing (batched parsing is several times faster than per-record parsing), never held in memory.

Bad data: a record that is not a valid proto, a label id outside ``[0, num_classes)``, a frame or feature
of the wrong size, a missing id or feature, and a TFRecord file whose framing is truncated or corrupt each
raise ``tf.errors.InvalidArgumentError`` whose message names the file and the record index (and, for a
missing key, the keys the record has); :func:`error_message` extracts that line. With
``skip_bad_records=True`` such records are dropped (with a logged warning) and counted in
``bad_record_counter`` (see :func:`make_bad_record_counter`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from zoo.data import yt8m_features
from zoo.data.yt8m_layout import (
    DEFAULT_MAX_FRAMES,
    DEFAULT_NUM_CLASSES,
    FRAME_LEVEL,
    PACKED_FRAME_LEVEL,
    PAPER_FRAME_LEVEL,
    PAPER_VIDEO_LEVEL,
    PRESETS,
    VIDEO_LEVEL,
    RecordLayout,
)

__all__ = [
    "RecordLayout",
    "FRAME_LEVEL",
    "VIDEO_LEVEL",
    "PAPER_FRAME_LEVEL",
    "PAPER_VIDEO_LEVEL",
    "PACKED_FRAME_LEVEL",
    "PRESETS",
    "DEFAULT_NUM_CLASSES",
    "DEFAULT_MAX_FRAMES",
    "PACKED_FRAMES_KEY",
    "PACKED_NUM_FRAMES_KEY",
    "PACKED_FEATURE_FRAMES_KEY",
    "list_files",
    "make_bad_record_counter",
    "count_records",
    "record_batches",
    "error_message",
    "dataset",
    "frame_dataset",
    "video_dataset",
    "parse_frame_batch",
    "parse_video_batch",
    "dequantize_frames",
    "frame_example",
    "packed_example",
    "packed_records",
    "video_example",
    "write_records",
    "write_synthetic",
    "quantize_frame_records",
]

_RECORD_OVERHEAD = 16  # TFRecord framing: length (8) + length CRC (4) + data CRC (4)
_AUTOTUNE = tf.data.AUTOTUNE
# tf.debugging.Assert's message in a graph (tf.data, tf.function) and eagerly.
_ASSERTION = re.compile(r"assertion failed: \[(.*)\]|Summarized data: b'(.*)'")
# TensorFlow's parser errors name the record (our example_names) as "Name: <name>, <what>" or
# "<what>, example id: <name>".
_PARSER_NAME = re.compile(r"Name: (.*?record \d+), (.+)")
_PARSER_ID = re.compile(r"([^:]+), example id: (.*?record \d+)")


# ----------------------------------------------------------------------------------------------- files
def list_files(file_pattern: str | Sequence[str]) -> list[str]:
    """Sorted files matching a glob, a comma-separated list of globs, a list, or a directory.

    Raises ``FileNotFoundError`` naming the pattern when nothing matches.
    """
    patterns = file_pattern.split(",") if isinstance(file_pattern, str) else list(file_pattern)
    files: list[str] = []
    for pattern in (p.strip() for p in patterns):
        if not pattern:
            continue
        if tf.io.gfile.isdir(pattern):
            pattern = os.path.join(pattern, "*.tfrecord")
        files.extend(f for f in tf.io.gfile.glob(pattern) if not tf.io.gfile.isdir(f))
    files = sorted(set(files))
    if not files:
        raise FileNotFoundError(
            f"no TFRecord files match {file_pattern!r} (a directory means <dir>/*.tfrecord)"
        )
    return files


def make_bad_record_counter() -> tf.Variable:
    """An int64 counter that ``skip_bad_records=True`` pipelines increment once per dropped record."""
    with tf.device("/cpu:0"):
        return tf.Variable(0, dtype=tf.int64, trainable=False, name="yt8m_bad_records")


_CHUNK = 32  # records per in-file chunk: framing is checked once per chunk, not once per record


def _file_records(filename: tf.Tensor, size: tf.Tensor, skip: bool, counter: tf.Variable | None):
    """(filename, record index, record) for each record of one file.

    Framing errors (truncated file, bad CRC) are detected by comparing the bytes read with the file size:
    TF's own error for them names neither the file nor the record. The bytes are counted per chunk of
    ``_CHUNK`` records (a per-record tf.data function costs more than reading the record; copying the
    records into and out of a chunk costs far less).
    """
    records = tf.data.TFRecordDataset(filename, buffer_size=1 << 20).ignore_errors().batch(_CHUNK)
    end = tf.data.Dataset.from_tensors(tf.zeros([0], tf.string))  # an empty chunk marks the end

    def step(state, chunk):
        nbytes, start = state
        count = tf.size(chunk, out_type=tf.int64)
        is_end = tf.equal(count, 0)
        nbytes = nbytes + tf.reduce_sum(tf.cast(tf.strings.length(chunk), tf.int64) + _RECORD_OVERHEAD)
        ok = tf.logical_or(tf.logical_not(is_end), tf.equal(nbytes, size))
        indices = start + tf.range(count)
        if skip:
            if counter is not None:
                counter.assign_add(tf.cast(tf.logical_not(ok), tf.int64))
        else:
            # The message is only built when the check fails (Assert evaluates its data eagerly).
            message = tf.cond(
                ok,
                lambda: tf.constant(""),
                lambda: tf.strings.join(
                    [
                        "TFRecord file ",
                        filename,
                        " is truncated or corrupt: record index ",
                        tf.strings.as_string(start),
                        " could not be read (read ",
                        tf.strings.as_string(nbytes),
                        " of ",
                        tf.strings.as_string(size),
                        " bytes)",
                    ]
                ),
            )
            with tf.control_dependencies([tf.debugging.Assert(ok, [message])]):
                indices = tf.identity(indices)
        return (nbytes, start + count), (tf.fill([count], filename), indices, chunk)

    init = (tf.constant(0, tf.int64), tf.constant(0, tf.int64))
    return records.concatenate(end).scan(init, step).unbatch()


def _record_stream(
    files: list[str],
    *,
    shuffle: bool,
    repeat: bool,
    seed: int | None,
    shuffle_buffer: int,
    skip: bool,
    counter: tf.Variable | None,
    num_shards: int,
    shard_index: int,
    cycle_length: int,
) -> tf.data.Dataset:
    sizes = [tf.io.gfile.stat(f).length for f in files]
    ds = tf.data.Dataset.from_tensor_slices((files, tf.constant(sizes, tf.int64)))
    if num_shards > 1:
        ds = ds.shard(num_shards, shard_index)
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.interleave(
        lambda f, size: _file_records(f, size, skip, counter),
        cycle_length=max(1, min(cycle_length, len(files))),
        block_length=1,
        num_parallel_calls=_AUTOTUNE,
        deterministic=True,
    )
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return ds


def _skip_invalid(ds: tf.data.Dataset, parse_one, counter: tf.Variable | None) -> tf.data.Dataset:
    """Drops records whose parse/validation raises; counts them (+1 before, -1 after a successful parse)."""

    def validate(filename, index, record):
        if counter is not None:
            counter.assign_add(1)
        parsed = tf.nest.flatten(parse_one(record[None], _record_names(filename, index)[None]))
        with tf.control_dependencies(parsed):
            if counter is not None:
                counter.assign_sub(1)
            return tf.identity(filename), tf.identity(index), tf.identity(record)

    return ds.map(validate, num_parallel_calls=_AUTOTUNE, deterministic=True).ignore_errors(log_warning=True)


def count_records(file_pattern: str | Sequence[str], *, skip_bad_records: bool = False) -> int:
    """Number of records in the files (framing checked, contents not parsed).

    Raises ``ValueError`` naming the file and the record index when a file is truncated or corrupt, unless
    ``skip_bad_records`` (then the readable records are counted).
    """
    files = list_files(file_pattern)
    sizes = tf.constant([tf.io.gfile.stat(f).length for f in files], tf.int64)
    ds = tf.data.Dataset.from_tensor_slices((files, sizes)).flat_map(
        lambda f, size: _file_records(f, size, skip_bad_records, None)
    )
    try:
        return int(ds.reduce(np.int64(0), lambda n, _: n + 1))
    except tf.errors.OpError as e:
        raise ValueError(error_message(e)) from None


def record_batches(
    file_pattern: str | Sequence[str],
    batch_size: int,
    *,
    skip_bad_records: bool = False,
    bad_record_counter: tf.Variable | None = None,
) -> tf.data.Dataset:
    """Batches ``(names, records)`` of serialized records in file order, framing checked: ``names`` are
    ``"<file> record <index>"`` (for error messages), ``records`` go unparsed to e.g. a SavedModel's
    ``serving_default``. A truncated or corrupt file raises as in :func:`frame_dataset` (or is skipped)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ds = _record_stream(
        list_files(file_pattern),
        shuffle=False,
        repeat=False,
        seed=None,
        shuffle_buffer=1,
        skip=skip_bad_records,
        counter=bad_record_counter,
        num_shards=1,
        shard_index=0,
        cycle_length=1,
    )
    return ds.batch(batch_size).map(lambda f, i, r: (_record_names(f, i), r))


def error_message(error: BaseException) -> str:
    """The one line that names the file and record of a reader error (an ``InvalidArgumentError`` raised
    while iterating a pipeline of this module), without TensorFlow's op and graph context."""
    text = str(getattr(error, "message", None) or error).strip()
    match = _ASSERTION.search(text)
    if match:
        return match.group(1) or match.group(2)
    first = text.splitlines()[0] if text else type(error).__name__
    first = re.sub(r"\{\{[^}]*\}\}\s*", "", first)  # TensorFlow's "{{function_node ...}}" prefix
    match = _PARSER_NAME.search(first)
    if match:
        return f"{match.group(1)}: {' '.join(match.group(2).split())}"
    match = _PARSER_ID.search(first)
    if match:
        return f"{match.group(2)}: {match.group(1).strip()}"
    return first


# ------------------------------------------------------------------------------------------- checking
def _entry_keys(serialized: tf.Tensor, message: str, field: str, entry_type: str) -> tf.Tensor:
    """``[N, E]`` keys of the map ``field`` of each serialized ``message`` in ``serialized [N]`` (padded
    with ``""``)."""
    maps = tf.io.decode_proto(serialized, message, [field], [tf.string])
    entries = maps.values[0]  # [N, E]
    shape = tf.shape(entries)
    keys = tf.io.decode_proto(tf.reshape(entries, [-1]), entry_type, ["key"], [tf.string]).values[0]
    keys = tf.reshape(tf.pad(keys, [[0, 0], [0, 1]])[:, :1], shape)  # a padding entry has no key
    present = tf.sequence_mask(maps.sizes[:, 0], shape[1])
    return tf.where(present, keys, "")


def _sub_message(serialized: tf.Tensor, message: str, field: str) -> tf.Tensor:
    """``[N]`` serialized singular sub-message ``field`` of each ``message`` (``""`` when absent)."""
    parts = tf.io.decode_proto(serialized, message, [field], [tf.string]).values[0]  # [N, 0 or 1]
    return tf.pad(parts, [[0, 0], [0, 1]])[:, 0]


def _keys_of(record: tf.Tensor, sequence: bool) -> tf.Tensor:
    """'context keys [a, b]; feature lists [c]' (or 'keys [...]') of one serialized record, in-graph."""

    def joined(keys):
        keys = tf.boolean_mask(keys[0], tf.not_equal(keys[0], ""))
        return tf.strings.reduce_join(keys, separator=", ")

    features = "tensorflow.Features", "feature", "tensorflow.Features.FeatureEntry"
    if sequence:
        ctx = _entry_keys(_sub_message(record[None], "tensorflow.SequenceExample", "context"), *features)
        fl = _entry_keys(
            _sub_message(record[None], "tensorflow.SequenceExample", "feature_lists"),
            "tensorflow.FeatureLists",
            "feature_list",
            "tensorflow.FeatureLists.FeatureListEntry",
        )
        return tf.strings.join(
            ["the record has context keys [", joined(ctx), "] and feature lists [", joined(fl), "]"]
        )
    keys = _entry_keys(_sub_message(record[None], "tensorflow.Example", "features"), *features)
    return tf.strings.join(["the record has keys [", joined(keys), "]"])


def _absent_lists(serialized: tf.Tensor, name: str, length: tf.Tensor) -> tf.Tensor:
    """bool ``[B]``: the record has no feature list ``name`` at all (an *empty* list is 0 frames, legal).

    Parsing cannot tell the two apart; only records with 0 frames are decoded again to look for the key.
    """
    empty = tf.equal(length, 0)

    def look() -> tf.Tensor:
        rows = tf.where(empty)[:, 0]
        lists = _sub_message(tf.gather(serialized, rows), "tensorflow.SequenceExample", "feature_lists")
        keys = _entry_keys(
            lists, "tensorflow.FeatureLists", "feature_list", "tensorflow.FeatureLists.FeatureListEntry"
        )
        absent = tf.logical_not(tf.reduce_any(tf.equal(keys, name), axis=1))
        return tf.scatter_nd(rows[:, None], absent, tf.shape(empty, out_type=tf.int64))

    return tf.cond(tf.reduce_any(empty), look, lambda: tf.zeros_like(empty))


def _assert_rows(bad: tf.Tensor, message_fn) -> tf.Operation:
    """Asserts no row of ``bad [B]`` is set; the message (built only when one is) describes the first."""
    any_bad = tf.reduce_any(bad)

    def message() -> tf.Tensor:
        return message_fn(tf.cast(tf.argmax(tf.cast(bad, tf.int32)), tf.int32))

    text = tf.cond(any_bad, message, lambda: tf.constant(""))
    return tf.debugging.Assert(tf.logical_not(any_bad), [text], summarize=1)


def _row_counts(sparse: tf.SparseTensor, batch: tf.Tensor) -> tf.Tensor:
    return tf.math.bincount(tf.cast(sparse.indices[:, 0], tf.int32), minlength=batch, maxlength=batch)


def _context_spec(layout: RecordLayout, with_labels: bool) -> dict[str, Any]:
    spec = {layout.id_key: tf.io.VarLenFeature(tf.string)}
    if with_labels:
        spec[layout.labels_key] = tf.io.VarLenFeature(tf.int64)
    return spec


def _ids_and_labels(context, records, names, batch, layout: RecordLayout, sequence: bool, with_labels: bool):
    """Validates the ids and labels of a batch; returns ids ``[B]`` and multi-hot labels ``[B, C]`` (or
    ``None`` without labels). A record without labels, or with an empty list, has an all-zero row."""
    id_key, num_classes = layout.id_key, layout.num_classes
    id_sparse = context[id_key]
    id_count = _row_counts(id_sparse, batch)
    ids = tf.pad(tf.sparse.to_dense(id_sparse, default_value=""), [[0, 0], [0, 1]])[:, 0]
    checks = [
        _assert_rows(
            tf.not_equal(id_count, 1),
            lambda i: tf.strings.join(
                [
                    names[i],
                    ": the id feature ",
                    id_key,
                    " is missing or has ",
                    tf.strings.as_string(id_count[i]),
                    " values (expected 1); ",
                    _keys_of(records[i], sequence),
                    _PAPER_HINT,
                ]
            ),
        )
    ]
    if not with_labels:
        with tf.control_dependencies(checks):
            return tf.identity(ids), None
    labels = context[layout.labels_key]
    bad_value = tf.logical_or(labels.values < 0, labels.values >= num_classes)
    row_of_value = tf.cast(labels.indices[:, 0], tf.int32)
    bad_row = tf.math.unsorted_segment_max(tf.cast(bad_value, tf.int32), row_of_value, batch) > 0

    def label_message(i):
        # Only built when some row is bad, so bad_value is not empty; rows are in order, so the first bad
        # value belongs to the first bad row.
        value = tf.gather(labels.values, tf.argmax(tf.cast(bad_value, tf.int32)))
        return tf.strings.join(
            [
                names[i],
                ": label id ",
                tf.strings.as_string(value),
                f" is outside [0, {num_classes}) (num_classes={num_classes})",
            ]
        )

    checks.append(_assert_rows(bad_row, label_message))
    with tf.control_dependencies(checks):
        indices = tf.stack([row_of_value, tf.cast(labels.values, tf.int32)], axis=1)
        in_range = tf.boolean_mask(indices, tf.logical_not(bad_value))
        dense = tf.scatter_nd(in_range, tf.ones([tf.shape(in_range)[0]], tf.float32), [batch, num_classes])
        return tf.identity(ids), tf.minimum(dense, 1.0)  # a label listed twice is still 1


def _record_names(filenames: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
    return tf.strings.join([filenames, " record ", tf.strings.as_string(indices)])


def _default_names(serialized: tf.Tensor) -> tf.Tensor:
    return tf.strings.join(["record ", tf.strings.as_string(tf.range(tf.shape(serialized)[0]))])


_PAPER_HINT = (
    " (the paper-era release uses video_id, inc3 / mean_inc3 and 4800 classes: "
    "layout=zoo.data.yt8m.PAPER_FRAME_LEVEL or PAPER_VIDEO_LEVEL)"
)


def _check_level(layout: RecordLayout, frame_level: bool, where: str) -> None:
    if not isinstance(layout, RecordLayout):
        raise TypeError(f"{where}: layout must be a zoo.data.yt8m.RecordLayout, got {layout!r}")
    if layout.frame_level != frame_level:
        other = "video" if frame_level else "frame"
        raise ValueError(
            f"{where} reads {'frame' if frame_level else 'video'}-level records, but the layout is "
            f"{other}-level ({layout}); use the {other}-level reader"
        )


# --------------------------------------------------------------------------------------------- parsing
def parse_frame_batch(
    serialized: tf.Tensor,
    names: tf.Tensor | None = None,
    *,
    layout: RecordLayout = FRAME_LEVEL,
    with_labels: bool = True,
    num_samples: int | None = None,
    sample_seed: tf.Tensor | None = None,
    normalize: bool = True,
    dequantize: bool = True,
    jit_compile: bool = False,
) -> tuple[dict[str, tf.Tensor], tf.Tensor | None]:
    """Parses a batch of serialized frame-level records (also usable in serving signatures): the release's
    SequenceExamples, or the packed Examples of ``zoo-yt8m-preprocess --output_format=packed`` when
    ``layout.packed`` (the same batches from the same videos).

    Returns ``({"features": [B, T, D], "num_frames": int32 [B], "id": string [B]}, labels [B, C])`` with
    ``T = layout.max_frames`` (or ``num_samples`` when sampling) and ``D = layout.feature_size``.

    Args:
      serialized: string ``[B]`` (or any shape, flattened).
      names: ``[B]`` strings used in error messages (default ``"record <i>"``).
      layout: the record layout (frame level).
      with_labels: parse and check the labels; ``False`` (serving) ignores them and returns ``None``.
      num_samples: if set, each video's frames are replaced by ``num_samples`` frames drawn uniformly with
        replacement from its real frames (official ``SampleRandomFrames``); ``num_frames`` becomes
        ``num_samples`` (0 stays 0). Needs ``sample_seed`` (an int32 ``[2]`` stateless seed). The frame
        indices are drawn first and only the drawn frames are decoded (DBoF's 30 of up to 300).
      normalize: L2-normalise each frame (the concatenated features); ``False`` returns dequantised raw
        features, bit-identical to the official reader's.
      dequantize: ``False`` returns the uint8 codes (padding frames are code 0) and ``"feature_mask"``
        (bool ``[B, T, F]``: which codes are real, per frame and feature list) so that
        :func:`dequantize_frames` can run on the accelerator, inside the model: the float output is ~6x
        larger than the records and writing it dominates CPU input cost.
      jit_compile: dequantise + normalise with XLA (one fused pass; ``frame_dataset`` does). Off by default
        for serving signatures.
    """
    _check_level(layout, True, "parse_frame_batch")
    if num_samples is not None and sample_seed is None:
        raise ValueError("parse_frame_batch: num_samples needs a sample_seed (int32 [2])")
    serialized = tf.reshape(tf.convert_to_tensor(serialized, tf.string), [-1])
    names = _default_names(serialized) if names is None else tf.reshape(names, [-1])
    batch = tf.shape(serialized)[0]
    parse = _packed_frames if layout.packed else _sequence_frames
    ids, labels, frames = parse(serialized, names, batch, layout, with_labels)
    num_frames = frames.num_frames
    if num_samples is None:
        length_out = layout.max_frames
        quantized = frames.codes(None)
        position = tf.range(length_out)[None, :, None]
    else:
        length_out = num_samples
        index = _sample_frames(num_frames, num_samples, sample_seed)
        quantized = frames.codes(index)
        position = index[:, :, None]  # an empty video draws frame 0, which is not valid
        num_frames = tf.where(num_frames > 0, num_samples, 0)
    valid = position < frames.feature_frames[:, None, :]  # [B, T, F]
    inputs = {"num_frames": num_frames, "id": ids}
    if not dequantize:
        inputs["features"] = tf.ensure_shape(quantized, [None, length_out, layout.feature_size])
        inputs["feature_mask"] = valid
    else:
        dequantize_fn = _dequantize_frames_xla if jit_compile else _dequantize_frames
        features = dequantize_fn(quantized, valid, layout.feature_sizes, normalize)
        inputs["features"] = tf.ensure_shape(features, [None, length_out, layout.feature_size])
    return inputs, labels


def _sample_frames(num_frames: tf.Tensor, num_samples: int, seed: tf.Tensor) -> tf.Tensor:
    """int32 ``[B, num_samples]`` frame indices drawn uniformly with replacement from each video's
    ``num_frames`` real frames (official ``SampleRandomFrames``: ``floor(U[0, 1) * num_frames)``); 0 for a
    video without frames."""
    u = tf.random.stateless_uniform([tf.shape(num_frames)[0], num_samples], seed=seed)
    index = tf.cast(tf.floor(u * tf.cast(num_frames, tf.float32)[:, None]), tf.int32)
    return tf.clip_by_value(index, 0, tf.maximum(num_frames[:, None] - 1, 0))


class _Frames(NamedTuple):
    """A parsed batch's frames, not yet materialised.

    ``num_frames`` int32 ``[B]`` (capped at ``max_frames``); ``feature_frames`` int32 ``[B, F]``: frames of
    each feature list kept, ``min(length of that list, num_frames)``; ``codes(index)``: uint8 ``[B, S, D]``
    codes of the frames ``index`` int32 ``[B, S]`` (each ``< max(num_frames, 1)``), or of frames
    ``0 .. max_frames - 1`` for ``None``; code 0 where a feature list has no such frame.
    """

    num_frames: tf.Tensor
    feature_frames: tf.Tensor
    codes: Callable[[tf.Tensor | None], tf.Tensor]


def _sequence_frames(serialized, names, batch, layout: RecordLayout, with_labels: bool):
    """ids, labels and :class:`_Frames` of release SequenceExamples (one byte string per frame)."""
    max_frames = layout.max_frames
    # Ragged string features: one string per real frame (dense string lists would add a padding string
    # per missing frame and a copy of every frame when sliced).
    context, lists, _ = tf.io.parse_sequence_example(
        serialized,
        context_features=_context_spec(layout, with_labels),
        sequence_features={n: tf.io.RaggedFeature(tf.string) for n in layout.feature_names},
        example_names=names,
    )
    ids, labels = _ids_and_labels(context, serialized, names, batch, layout, True, with_labels)
    checks = []
    lengths = [tf.cast(lists[name].row_lengths(), tf.int32) for name in layout.feature_names]
    for name, length in zip(layout.feature_names, lengths, strict=True):
        checks.append(
            _assert_rows(
                _absent_lists(serialized, name, length),
                lambda i, name=name: tf.strings.join(
                    [
                        names[i],
                        ": feature list ",
                        name,
                        " is missing; ",
                        _keys_of(serialized[i], True),
                        _PAPER_HINT,
                    ]
                ),
            )
        )
    for name, size in zip(layout.feature_names, layout.feature_sizes, strict=True):
        frames = lists[name]
        bad = tf.not_equal(tf.strings.length(frames.flat_values), size)  # one check per frame, vectorised
        checks.append(
            _assert_rows(
                tf.math.unsorted_segment_max(tf.cast(bad, tf.int32), frames.value_rowids(), batch) > 0,
                lambda i, frames=frames, bad=bad, name=name, size=size: _bad_frame_message(
                    names[i], frames[i], bad, frames.row_splits[i], name, size
                ),
            )
        )
    # Official: num_frames is the first feature list's frame count, capped at max_frames.
    num_frames = tf.minimum(lengths[0], max_frames)
    feature_frames = tf.stack([tf.minimum(length, num_frames) for length in lengths], axis=1)

    def codes(index: tf.Tensor | None) -> tf.Tensor:
        with tf.control_dependencies(checks):
            if index is None:
                return _padded_codes(lists, layout, lengths, feature_frames)
            return _codes_at(lists, layout, feature_frames, index)

    return ids, labels, _Frames(num_frames, feature_frames, codes)


def _bad_frame_message(name_of_record, row, bad, row_start, feature, size) -> tf.Tensor:
    """'<record>: frame f of feature <feature> has n bytes, expected <size>' for the first bad frame of
    ``row`` (that record's frame strings; ``bad`` is the flat per-frame mask of the whole batch)."""
    start = tf.cast(row_start, tf.int32)
    row_bad = bad[start : start + tf.shape(row)[0]]
    frame = tf.argmax(tf.cast(row_bad, tf.int32), output_type=tf.int32)
    return tf.strings.join(
        [
            name_of_record,
            ": frame ",
            tf.strings.as_string(frame),
            " of feature ",
            feature,
            " has ",
            tf.strings.as_string(tf.strings.length(row[frame])),
            " bytes, expected ",
            str(size),
        ]
    )


def _padded_codes(lists, layout: RecordLayout, lengths, feature_frames) -> tf.Tensor:
    """uint8 ``[B, max_frames, D]`` codes (code 0 where no frame). When every list has ``num_frames``
    frames (the official data), one concatenation of the flat frames and one padding pass; otherwise each
    list is padded or cut to its ``feature_frames`` on its own, as the official ``resize_axis`` does.
    (Measured alternatives, all slower: padding each list then concatenating, joining the frame strings
    before decoding, padding the strings and decoding with ``fixed_length``.)"""
    max_frames = layout.max_frames
    decoded = [
        tf.io.decode_raw(lists[name].flat_values, tf.uint8, fixed_length=size)
        for name, size in zip(layout.feature_names, layout.feature_sizes, strict=True)
    ]

    def padded(codes, length, size):
        ragged = tf.RaggedTensor.from_row_lengths(codes, length, validate=False)
        return ragged.to_tensor(shape=[None, max_frames, size])  # truncates to max_frames, pads code 0

    if len(decoded) == 1:
        return padded(decoded[0], lengths[0], layout.feature_sizes[0])

    def same():
        return padded(tf.concat(decoded, axis=-1), lengths[0], layout.feature_size)

    def each():
        parts = []
        for f, (codes, length, size) in enumerate(zip(decoded, lengths, layout.feature_sizes, strict=True)):
            keep = tf.range(max_frames)[None, :] < feature_frames[:, f : f + 1]
            parts.append(padded(codes, length, size) * tf.cast(keep, tf.uint8)[:, :, None])
        return tf.concat(parts, axis=-1)

    equal = tf.reduce_all([tf.reduce_all(tf.equal(length, lengths[0])) for length in lengths[1:]])
    return tf.cond(equal, same, each)


def _codes_at(lists, layout: RecordLayout, feature_frames, index) -> tf.Tensor:
    """uint8 ``[B, S, D]`` codes of frames ``index [B, S]``: only these ``B * S`` frame strings of each list
    are gathered and decoded (code 0 where the list has no such frame), the values
    :func:`_padded_codes` has at ``index``."""
    parts = []
    for f, (name, size) in enumerate(zip(layout.feature_names, layout.feature_sizes, strict=True)):
        frames = lists[name]
        keep = index < feature_frames[:, f : f + 1]
        flat = frames.row_splits[:-1, None] + tf.cast(index, frames.row_splits.dtype)
        strings = frames.flat_values

        def taken(strings=strings, flat=flat, keep=keep):
            return tf.where(keep, tf.gather(strings, tf.where(keep, flat, 0)), "")

        # An empty batch of frames has nothing to gather from; "" decodes to code 0 (fixed_length pads).
        strings = tf.cond(tf.size(strings) > 0, taken, lambda keep=keep: tf.fill(tf.shape(keep), ""))
        parts.append(tf.io.decode_raw(strings, tf.uint8, fixed_length=size))
    return tf.concat(parts, axis=-1) if len(parts) > 1 else parts[0]


#: Feature keys of a packed frame-level record (``layout.packed``), beside the layout's id and labels keys.
PACKED_FRAMES_KEY = "frames"
PACKED_NUM_FRAMES_KEY = "num_frames"
PACKED_FEATURE_FRAMES_KEY = "feature_frames"
_PACKED_HINT = (
    " (packed frame-level records are written by zoo-yt8m-preprocess --output_format=packed; "
    "the release's SequenceExamples need a layout with packed=False)"
)


def _packed_frames(serialized, names, batch, layout: RecordLayout, with_labels: bool):
    """ids, labels and :class:`_Frames` of packed Examples (see :func:`packed_example`): one
    ``parse_example`` of a few features per video, and the frames decoded with ``decode_raw``
    (``fixed_length`` pads with code 0 and cuts at ``max_frames`` in the same pass)."""
    dim, num_lists = layout.feature_size, len(layout.feature_names)
    spec = _context_spec(layout, with_labels)
    spec[PACKED_FRAMES_KEY] = tf.io.RaggedFeature(tf.string)
    spec[PACKED_NUM_FRAMES_KEY] = tf.io.RaggedFeature(tf.int64)
    spec[PACKED_FEATURE_FRAMES_KEY] = tf.io.RaggedFeature(tf.int64)
    parsed = tf.io.parse_example(serialized, spec, example_names=names)
    ids, labels = _ids_and_labels(parsed, serialized, names, batch, layout, False, with_labels)
    checks = []
    for key, expected in (
        (PACKED_FRAMES_KEY, 1),
        (PACKED_NUM_FRAMES_KEY, 1),
        (PACKED_FEATURE_FRAMES_KEY, num_lists),
    ):
        count = tf.cast(parsed[key].row_lengths(), tf.int32)
        checks.append(
            _assert_rows(
                tf.not_equal(count, expected),
                lambda i, key=key, expected=expected, count=count: tf.strings.join(
                    [
                        names[i],
                        ": packed feature ",
                        key,
                        " is missing or has ",
                        tf.strings.as_string(count[i]),
                        f" values (expected {expected}); ",
                        _keys_of(serialized[i], False),
                        _PACKED_HINT,
                    ]
                ),
            )
        )
    with tf.control_dependencies(checks):  # the flat values are [B] and [B, F] only when the counts are
        frames = tf.identity(parsed[PACKED_FRAMES_KEY].flat_values)
        stored = tf.identity(parsed[PACKED_NUM_FRAMES_KEY].flat_values)
        lists = tf.reshape(parsed[PACKED_FEATURE_FRAMES_KEY].flat_values, [batch, num_lists])
    nbytes = tf.cast(tf.strings.length(frames), tf.int64)
    checks.append(
        _assert_rows(
            tf.not_equal(nbytes, stored * dim),
            lambda i: tf.strings.join(
                [
                    names[i],
                    ": packed frames hold ",
                    tf.strings.as_string(nbytes[i]),
                    " bytes, but num_frames=",
                    tf.strings.as_string(stored[i]),
                    f" frames of {dim} codes (feature_sizes {list(layout.feature_sizes)}) need ",
                    tf.strings.as_string(stored[i] * dim),
                ]
            ),
        )
    )
    bad_lists = tf.logical_or(
        tf.reduce_any(tf.logical_or(lists < 0, lists > stored[:, None]), axis=1),
        tf.not_equal(lists[:, 0], stored),
    )
    checks.append(
        _assert_rows(
            bad_lists,
            lambda i: tf.strings.join(
                [
                    names[i],
                    ": packed feature_frames [",
                    tf.strings.reduce_join(tf.strings.as_string(lists[i]), separator=", "),
                    "] must lie in [0, num_frames] with the first equal to num_frames=",
                    tf.strings.as_string(stored[i]),
                    f" (one per feature list {list(layout.feature_names)})",
                ]
            ),
        )
    )
    max_frames = layout.max_frames
    num_frames = tf.cast(tf.minimum(stored, max_frames), tf.int32)
    feature_frames = tf.cast(tf.minimum(lists, max_frames), tf.int32)

    def codes(index: tf.Tensor | None) -> tf.Tensor:
        with tf.control_dependencies(checks):
            if index is None:
                flat = tf.io.decode_raw(frames, tf.uint8, fixed_length=max_frames * dim)
                return tf.reshape(flat, [batch, max_frames, dim])
            # Each drawn frame is a substring (an empty video's "" stays "": code 0 after decoding).
            strings = tf.strings.substr(frames[:, None], index * dim, tf.fill(tf.shape(index), dim))
            return tf.io.decode_raw(strings, tf.uint8, fixed_length=dim)

    return ids, labels, _Frames(num_frames, feature_frames, codes)


def parse_video_batch(
    serialized: tf.Tensor,
    names: tf.Tensor | None = None,
    *,
    layout: RecordLayout = VIDEO_LEVEL,
    with_labels: bool = True,
    normalize: bool = True,
) -> tuple[dict[str, tf.Tensor], tf.Tensor | None]:
    """Parses a batch of serialized video-level Examples (also usable in serving signatures).

    Returns ``({"features": [B, D], "num_frames": int32 [B] (all 1), "id": string [B]}, labels [B, C])``;
    ``features`` is the concatenation of ``layout.feature_names``, L2-normalised per video when
    ``normalize``. ``with_labels=False`` (serving) ignores the labels and returns ``None`` for them.
    """
    _check_level(layout, False, "parse_video_batch")
    serialized = tf.reshape(tf.convert_to_tensor(serialized, tf.string), [-1])
    names = _default_names(serialized) if names is None else tf.reshape(names, [-1])
    batch = tf.shape(serialized)[0]
    spec = _context_spec(layout, with_labels)
    spec.update({n: tf.io.RaggedFeature(tf.float32) for n in layout.feature_names})
    parsed = tf.io.parse_example(serialized, spec, example_names=names)
    ids, labels = _ids_and_labels(parsed, serialized, names, batch, layout, False, with_labels)
    checks, parts = [], []
    for name, size in zip(layout.feature_names, layout.feature_sizes, strict=True):
        values = parsed[name]
        count = tf.cast(values.row_lengths(), tf.int32)
        checks.append(
            _assert_rows(
                tf.not_equal(count, size),
                lambda i, name=name, size=size, count=count: tf.strings.join(
                    [
                        names[i],
                        ": feature ",
                        name,
                        " has ",
                        tf.strings.as_string(count[i]),
                        " values, expected ",
                        str(size),
                        " (0 means missing; ",
                        _keys_of(serialized[i], False),
                        ")",
                    ]
                ),
            )
        )
        parts.append(values)
    with tf.control_dependencies(checks):
        dense = [
            tf.reshape(p.flat_values, [batch, size])
            for p, size in zip(parts, layout.feature_sizes, strict=True)
        ]
    features = tf.concat(dense, axis=-1) if len(dense) > 1 else dense[0]
    if normalize:
        features = tf.math.l2_normalize(features, axis=-1)
    features = tf.ensure_shape(features, [None, layout.feature_size])
    return {"features": features, "num_frames": tf.ones([batch], tf.int32), "id": ids}, labels


def dequantize_frames(
    quantized: tf.Tensor,
    num_frames: tf.Tensor,
    normalize: bool = True,
    *,
    feature_mask: tf.Tensor | None = None,
    layout: RecordLayout | None = None,
) -> tf.Tensor:
    """uint8 codes ``[B, T, D]`` (from ``dequantize=False``) -> the float features the default pipeline
    yields: dequantised, zero beyond ``num_frames``, L2-normalised per frame. Pure TF ops, so it also runs
    on a GPU inside a model or a ``tf.function``.

    Pass the pipeline's ``feature_mask`` (bool ``[B, T, F]``) with its ``layout`` to zero the frames a
    shorter feature list lacks; without it every feature is taken as ``num_frames`` long.
    """
    if feature_mask is None:
        valid = tf.sequence_mask(num_frames, tf.shape(quantized)[1])[:, :, None]
        return _dequantize_frames(quantized, valid, (int(quantized.shape[-1]),), normalize)
    if layout is None:
        raise ValueError("dequantize_frames: feature_mask needs the layout (its feature_sizes)")
    return _dequantize_frames(quantized, feature_mask, layout.feature_sizes, normalize)


def _dequantize_frames(
    quantized: tf.Tensor, valid: tf.Tensor, feature_sizes: Sequence[int], normalize: bool
) -> tf.Tensor:
    """uint8 ``[B, T, D]`` -> official dequantisation (a lookup: bit-identical, see
    :func:`zoo.data.yt8m_features.dequantization_table`), zero where ``valid [B, T, F]`` is False (F
    feature lists of ``feature_sizes``), optionally L2-normalised per frame (as ``tf.math.l2_normalize``).

    When every feature list has the same frames (the official data) one frame mask serves all columns;
    the per-column mask (a gather over ``[B, T, D]``) is built only otherwise: it costs ~50% more.
    """
    table = tf.constant(yt8m_features.dequantization_table())

    def run(mask: tf.Tensor) -> tf.Tensor:
        x = tf.where(mask, tf.gather(table, tf.cast(quantized, tf.int32)), 0.0)
        if normalize:
            x = x * tf.math.rsqrt(tf.maximum(tf.reduce_sum(tf.square(x), axis=-1, keepdims=True), 1e-12))
        return x

    if len(feature_sizes) == 1:
        return run(valid)
    columns = np.repeat(np.arange(len(feature_sizes)), feature_sizes)  # feature list of each column
    same = tf.reduce_all(tf.equal(valid, valid[..., :1]))
    return tf.cond(same, lambda: run(valid[..., :1]), lambda: run(tf.gather(valid, columns, axis=2)))


# XLA fuses the lookup, the mask and the norm into two loops over the [B, T, D] block: the float output is
# written once instead of several times (it is ~6x larger than the records, and on CPU each pass costs
# about as much as parsing). Compiled once per input shape (in tf.data: full batches, then the last one).
# Kept out of serving signatures (``jit_compile=False`` there): not every model server has the XLA JIT.
_dequantize_frames_xla = tf.function(_dequantize_frames, jit_compile=True, reduce_retracing=False)


# -------------------------------------------------------------------------------------------- datasets
def _dataset(
    file_pattern,
    batch_size,
    parse,
    *,
    shuffle,
    repeat,
    drop_remainder,
    seed,
    shuffle_buffer,
    skip_bad_records,
    bad_record_counter,
    num_shards,
    shard_index,
    cycle_length,
    prefetch,
):
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    files = list_files(file_pattern)
    counter = bad_record_counter
    ds = _record_stream(
        files,
        shuffle=shuffle,
        repeat=repeat,
        seed=seed,
        shuffle_buffer=shuffle_buffer,
        skip=skip_bad_records,
        counter=counter,
        num_shards=num_shards,
        shard_index=shard_index,
        cycle_length=cycle_length,
    )
    if skip_bad_records:
        ds = _skip_invalid(ds, lambda r, n: parse(r, n, tf.constant([0, 0], tf.int32)), counter)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder).enumerate()
    base = 0 if seed is None else int(seed)

    def parse_batch(step, batch):
        filenames, indices, records = batch
        names = _record_names(filenames, indices)
        sample_seed = tf.stack([tf.constant(base, tf.int32), tf.cast(step % (2**31 - 1), tf.int32)])
        return parse(records, names, sample_seed)

    ds = ds.map(parse_batch, num_parallel_calls=_AUTOTUNE, deterministic=True)
    return ds.prefetch(prefetch)


def frame_dataset(
    file_pattern: str | Sequence[str],
    batch_size: int,
    layout: RecordLayout = FRAME_LEVEL,
    *,
    num_samples: int | None = None,
    shuffle: bool = False,
    repeat: bool = False,
    drop_remainder: bool = False,
    seed: int | None = None,
    skip_bad_records: bool = False,
    bad_record_counter: tf.Variable | None = None,
    normalize: bool = True,
    dequantize: bool = True,
    shuffle_buffer: int = 1024,
    num_shards: int = 1,
    shard_index: int = 0,
    cycle_length: int = 8,
    prefetch: int = _AUTOTUNE,
) -> tf.data.Dataset:
    """Batches of frame-level SequenceExamples: ``({"features" [B, T, D], "num_frames", "id"}, labels)``.

    ``T = layout.max_frames`` (official 300), or ``num_samples`` when frames are sampled with replacement
    from the real frames (training only; deterministic given ``seed``: the stateless seed is ``(seed, batch
    index)``). ``file_pattern``: glob, comma-separated globs, list, or directory (``<dir>/*.tfrecord``).
    ``num_shards`` / ``shard_index`` shard the *files* (multi-worker input). See the module docstring for
    errors and ``skip_bad_records``. ``dequantize=False`` yields uint8 codes and a ``feature_mask`` for
    :func:`dequantize_frames` on the accelerator (see :func:`parse_frame_batch`).
    """
    _check_level(layout, True, "frame_dataset")
    if num_samples is not None and num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")

    def parse(records, names, sample_seed):
        return parse_frame_batch(
            records,
            names,
            layout=layout,
            num_samples=num_samples,
            sample_seed=sample_seed if num_samples else None,
            normalize=normalize,
            dequantize=dequantize,
            jit_compile=True,
        )

    return _dataset(
        file_pattern,
        batch_size,
        parse,
        shuffle=shuffle,
        repeat=repeat,
        drop_remainder=drop_remainder,
        seed=seed,
        shuffle_buffer=shuffle_buffer,
        skip_bad_records=skip_bad_records,
        bad_record_counter=bad_record_counter,
        num_shards=num_shards,
        shard_index=shard_index,
        cycle_length=cycle_length,
        prefetch=prefetch,
    )


def video_dataset(
    file_pattern: str | Sequence[str],
    batch_size: int,
    layout: RecordLayout = VIDEO_LEVEL,
    *,
    shuffle: bool = False,
    repeat: bool = False,
    drop_remainder: bool = False,
    seed: int | None = None,
    skip_bad_records: bool = False,
    bad_record_counter: tf.Variable | None = None,
    normalize: bool = True,
    shuffle_buffer: int = 4096,
    num_shards: int = 1,
    shard_index: int = 0,
    cycle_length: int = 8,
    prefetch: int = _AUTOTUNE,
) -> tf.data.Dataset:
    """Batches of video-level Examples: ``({"features" [B, D], "num_frames" (ones), "id"}, labels)``;
    options as :func:`frame_dataset`."""
    _check_level(layout, False, "video_dataset")

    def parse(records, names, sample_seed):
        del sample_seed
        return parse_video_batch(records, names, layout=layout, normalize=normalize)

    return _dataset(
        file_pattern,
        batch_size,
        parse,
        shuffle=shuffle,
        repeat=repeat,
        drop_remainder=drop_remainder,
        seed=seed,
        shuffle_buffer=shuffle_buffer,
        skip_bad_records=skip_bad_records,
        bad_record_counter=bad_record_counter,
        num_shards=num_shards,
        shard_index=shard_index,
        cycle_length=cycle_length,
        prefetch=prefetch,
    )


def dataset(
    file_pattern: str | Sequence[str], batch_size: int, layout: RecordLayout, **options: Any
) -> tf.data.Dataset:
    """:func:`frame_dataset` or :func:`video_dataset`, as ``layout.frame_level`` says."""
    reader = frame_dataset if layout.frame_level else video_dataset
    return reader(file_pattern, batch_size, layout, **options)


# --------------------------------------------------------------------------------------------- writing
def _bytes_feature(values: Iterable[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _context(video_id: str | bytes, labels: Iterable[int] | None, layout: RecordLayout) -> dict:
    vid = video_id.encode() if isinstance(video_id, str) else bytes(video_id)
    context = {layout.id_key: _bytes_feature([vid])}
    if labels is not None:
        values = [int(x) for x in labels]
        context[layout.labels_key] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    return context


def frame_example(
    video_id: str | bytes,
    labels: Iterable[int] | None,
    features: Mapping[str, Any],
    layout: RecordLayout = FRAME_LEVEL,
) -> bytes:
    """A serialized frame-level SequenceExample with ``layout``'s id and labels keys (``labels=None``
    writes no labels key: an inference request). ``features[name]`` is ``[T, size]`` (T may be 0): uint8
    codes are written as they are, floats are quantised with :func:`zoo.data.yt8m_features.quantize` (the
    converter for users bringing their own float features). Contents are not checked against the layout,
    so tests can write bad records."""
    lists = {}
    for name, frames in features.items():
        frames = np.asarray(frames)
        if frames.ndim != 2:
            raise ValueError(
                f"feature {name!r} of video {video_id!r} must be [frames, size], got {frames.shape}"
            )
        codes = frames if frames.dtype == np.uint8 else yt8m_features.quantize(frames)
        lists[name] = tf.train.FeatureList(feature=[_bytes_feature([row.tobytes()]) for row in codes])
    example = tf.train.SequenceExample(
        context=tf.train.Features(feature=_context(video_id, labels, layout)),
        feature_lists=tf.train.FeatureLists(feature_list=lists),
    )
    return example.SerializeToString()


def packed_example(
    video_id: str | bytes,
    labels: Iterable[int] | None,
    codes: np.ndarray,
    layout: RecordLayout = FRAME_LEVEL,
    feature_frames: Sequence[int] | None = None,
) -> bytes:
    """A serialized *packed* frame-level record (``layout.packed``): a ``tf.train.Example`` with the
    layout's id and labels keys, ``num_frames`` (int64, ``T``), ``feature_frames`` (int64, one per feature
    list: frames of that list, ``<= T``; default all ``T``) and ``frames``: ONE bytes value, the uint8
    codes ``[T, D]`` (features concatenated in layout order, frame after frame; code 0 where a shorter
    list has no frame), not padded to ``max_frames``. Contents are not checked against the layout, so
    tests can write bad records."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.dtype != np.uint8:
        raise ValueError(
            f"codes of video {video_id!r} must be uint8 [frames, size], got {codes.dtype} {codes.shape}"
        )
    frames = codes.shape[0]
    counts = (
        [frames] * len(layout.feature_names) if feature_frames is None else [int(n) for n in feature_frames]
    )
    feature = _context(video_id, labels, layout)
    feature[PACKED_NUM_FRAMES_KEY] = tf.train.Feature(int64_list=tf.train.Int64List(value=[frames]))
    feature[PACKED_FEATURE_FRAMES_KEY] = tf.train.Feature(int64_list=tf.train.Int64List(value=counts))
    feature[PACKED_FRAMES_KEY] = _bytes_feature([np.ascontiguousarray(codes).tobytes()])
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def packed_records(inputs: Mapping[str, Any], labels: Any, layout: RecordLayout) -> list[bytes]:
    """The packed records (:func:`packed_example`) of a batch of :func:`frame_dataset` with
    ``dequantize=False`` (``features`` uint8 ``[B, T, D]``, ``feature_mask``, ``num_frames``, ``id``;
    ``labels`` multi-hot): the encoder of ``zoo-yt8m-preprocess --output_format=packed``, in one process
    and on Beam. Reading them back with ``layout.replace(packed=True)`` gives the same batches."""
    codes = np.asarray(inputs["features"])
    if codes.dtype != np.uint8:
        raise ValueError(
            f"packed_records needs uint8 codes (frame_dataset(dequantize=False)), got {codes.dtype}"
        )
    num_frames = np.asarray(inputs["num_frames"])
    feature_frames = np.asarray(inputs["feature_mask"]).sum(axis=1)  # [B, F]: the masks are prefixes
    ids, labels = np.asarray(inputs["id"]), np.asarray(labels)
    return [
        packed_example(
            ids[b], np.flatnonzero(labels[b]), codes[b, : num_frames[b]], layout, feature_frames[b]
        )
        for b in range(ids.shape[0])
    ]


def video_example(
    video_id: str | bytes,
    labels: Iterable[int] | None,
    features: Mapping[str, Any],
    layout: RecordLayout = VIDEO_LEVEL,
) -> bytes:
    """A serialized video-level Example with float features (e.g. ``mean_rgb`` [1024]) and ``layout``'s
    id and labels keys (``labels=None``: no labels key)."""
    feature = _context(video_id, labels, layout)
    for name, values in features.items():
        flat = np.asarray(values, dtype=np.float32).reshape(-1)
        feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=flat.tolist()))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_records(path: str, records: Iterable[bytes]) -> str:
    """Writes serialized records to ``path`` via a temporary file renamed into place; returns ``path``."""
    directory = os.path.dirname(path)
    if directory:
        tf.io.gfile.makedirs(directory)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with tf.io.TFRecordWriter(tmp) as writer:
            for record in records:
                writer.write(record)
        tf.io.gfile.rename(tmp, path, overwrite=True)
    except BaseException:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.remove(tmp)
        raise
    return path


def _shard_paths(path: str, num_shards: int) -> list[str]:
    if num_shards == 1:
        return [path]
    stem, ext = (path[: -len(".tfrecord")], ".tfrecord") if path.endswith(".tfrecord") else (path, "")
    return [f"{stem}-{i:05d}-of-{num_shards:05d}{ext}" for i in range(num_shards)]


def write_synthetic(
    path: str,
    num_videos: int,
    layout: RecordLayout = FRAME_LEVEL,
    seed: int = 0,
    *,
    num_shards: int = 1,
    frames: tuple[int, int] = (20, 120),
    max_labels: int = 3,
    unlabeled_fraction: float = 0.05,
    signal: float = 0.15,
    noise: float = 0.5,
) -> list[str]:
    """Writes a synthetic YouTube-8M data set in ``layout`` with learnable class structure; returns the
    shard paths.

    Each class c has a random prototype direction ``p_c`` (entries ``N(0, signal^2)`` in the concatenated
    raw feature space). A video gets 1..``max_labels`` labels drawn from a skewed (Zipf-like) class
    distribution (a fraction ``unlabeled_fraction`` gets none), a centre ``sum_c p_c + N(0, (noise/2)^2)``
    and, at frame level, ``T ~ U[frames]`` frames ``centre + N(0, noise^2)``, quantised to uint8 as in the
    release. Video-level records hold the means of the dequantised frames like the release. With
    ``num_shards > 1`` the files are ``<stem>-00000-of-0000N.tfrecord``.
    """
    if num_videos < 0 or num_shards < 1 or not 1 <= frames[0] <= frames[1]:
        raise ValueError(
            f"bad write_synthetic arguments: num_videos={num_videos}, num_shards={num_shards}, "
            f"frames={frames}"
        )
    rng = np.random.default_rng(seed)
    num_classes, sizes = layout.num_classes, layout.feature_sizes
    dim = layout.feature_size
    prototypes = rng.normal(0.0, signal, size=(num_classes, dim)).astype(np.float32)
    popularity = 1.0 / np.sqrt(np.arange(1, num_classes + 1))
    popularity /= popularity.sum()
    splits = np.cumsum(sizes)[:-1]
    paths = _shard_paths(path, num_shards)

    def videos(shard: int):
        for v in range(shard, num_videos, num_shards):
            if rng.random() < unlabeled_fraction:
                labels = np.zeros(0, np.int64)
            else:
                k = int(rng.integers(1, max_labels + 1))
                labels = np.sort(
                    rng.choice(num_classes, size=min(k, num_classes), replace=False, p=popularity)
                )
            centre = prototypes[labels].sum(axis=0) + rng.normal(0.0, noise / 2, size=dim).astype(np.float32)
            t = int(rng.integers(frames[0], frames[1] + 1))
            codes = yt8m_features.quantize(centre[None, :] + rng.normal(0.0, noise, size=(t, dim)))
            vid = f"synth{v:07d}"
            if layout.frame_level:
                feats = dict(zip(layout.feature_names, np.split(codes, splits, axis=1), strict=True))
                yield frame_example(vid, labels, feats, layout)
            else:
                mean = yt8m_features.dequantize(codes).mean(axis=0)
                feats = dict(zip(layout.feature_names, np.split(mean, splits), strict=True))
                yield video_example(vid, labels, feats, layout)

    return [write_records(p, videos(i)) for i, p in enumerate(paths)]


def quantize_frame_records(
    input_pattern: str | Sequence[str],
    output_path: str,
    layout: RecordLayout = FRAME_LEVEL,
    min_value: float = yt8m_features.QUANT_MIN,
    max_value: float = yt8m_features.QUANT_MAX,
) -> str:
    """Converter: frame-level SequenceExamples whose feature lists (``layout.feature_names``) hold *float*
    lists per frame -> the release's quantised format (one uint8 byte string per frame). Other keys are
    copied unchanged. Streams record by record; writes ``output_path`` atomically. Errors (also a truncated
    or corrupt input file) name the file and record index."""

    def converted():
        for filename in list_files(input_pattern):
            for names, records in record_batches(filename, 64).as_numpy_iterator():
                for name_of_record, raw in zip(names, records, strict=True):
                    yield _quantized(name_of_record.decode(), raw, layout, min_value, max_value)

    try:
        return write_records(output_path, converted())
    except tf.errors.OpError as e:
        raise ValueError(error_message(e)) from None


def _quantized(name_of_record: str, raw: bytes, layout: RecordLayout, min_value, max_value) -> bytes:
    try:
        example = tf.train.SequenceExample.FromString(raw)
    except Exception as e:  # protobuf's DecodeError
        raise ValueError(f"{name_of_record}: not a SequenceExample ({e})") from None
    for name in layout.feature_names:
        if name not in example.feature_lists.feature_list:
            raise ValueError(
                f"{name_of_record}: feature list {name!r} not found; the record has "
                f"{sorted(example.feature_lists.feature_list)}"
            )
        flist = example.feature_lists.feature_list[name]
        if any(f.WhichOneof("kind") != "float_list" for f in flist.feature):
            raise ValueError(f"{name_of_record}: feature list {name!r} is not float lists")
        rows = [np.asarray(f.float_list.value, np.float32) for f in flist.feature]
        codes = yt8m_features.quantize(np.stack(rows), min_value, max_value) if rows else []
        del flist.feature[:]
        for row in codes:
            flist.feature.add().bytes_list.value.append(row.tobytes())
    return example.SerializeToString()
