"""YouTube-8M TFRecord readers and writers (Abu-El-Haija et al. 2016, §3; official starter code formats).

Formats (official releases):

* video level: ``tf.train.Example`` with ``id`` (bytes), ``labels`` (int64 list), ``mean_rgb`` (1024 floats)
  and ``mean_audio`` (128 floats);
* frame level: ``tf.train.SequenceExample`` with context ``id`` and ``labels`` and feature lists ``rgb`` and
  ``audio``: one uint8 byte string per frame (1024 and 128 bytes), 1 frame per second.

The paper's release (v1) used ``video_id``, ``mean_inc3`` / ``inc3`` (1024 features) and 4800 classes:
pass ``**PAPER_FRAME_LEVEL`` / ``**PAPER_VIDEO_LEVEL``.

Processing is the official one: frame bytes are dequantised (``x = q * 4/255 + 4/512 - 2``), the features
are concatenated, frames beyond ``max_frames`` are dropped and ``num_frames`` is kept (the minimum over the
feature lists), padded frames are zeros, and the concatenated vector is L2-normalised per frame (frame
level) or per video (video level). Batches are ``(inputs, labels)`` with ``inputs = {"features",
"num_frames", "id"}`` and ``labels`` multi-hot float32 ``[B, num_classes]``.

Pipelines stream: files are listed once, read with a parallel interleave, records batched *before*
parsing (batched parsing is several times faster than per-record parsing), never held in memory.

Bad data: a record that is not a valid proto, a label id outside ``[0, num_classes)``, a frame or feature
of the wrong size, a missing id or feature, and a TFRecord file whose framing is truncated or corrupt each
raise ``tf.errors.InvalidArgumentError`` whose message names the file and the record index (and, for a
missing key, the keys the record has). With ``skip_bad_records=True`` such records are dropped (with a
logged warning) and counted in ``bad_record_counter`` (see :func:`make_bad_record_counter`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from zoo.data import yt8m_features

__all__ = [
    "FRAME_LEVEL",
    "VIDEO_LEVEL",
    "PAPER_FRAME_LEVEL",
    "PAPER_VIDEO_LEVEL",
    "PRESETS",
    "DEFAULT_NUM_CLASSES",
    "DEFAULT_MAX_FRAMES",
    "list_files",
    "make_bad_record_counter",
    "frame_dataset",
    "video_dataset",
    "parse_frame_batch",
    "parse_video_batch",
    "dequantize_frames",
    "frame_example",
    "video_example",
    "write_records",
    "write_synthetic",
    "quantize_frame_records",
]

DEFAULT_NUM_CLASSES = 3862  # current release (2018+)
DEFAULT_MAX_FRAMES = 300  # official reader

#: Current release, frame level (official defaults).
FRAME_LEVEL: dict[str, Any] = {
    "num_classes": 3862,
    "feature_names": ("rgb", "audio"),
    "feature_sizes": (1024, 128),
    "id_key": "id",
    "labels_key": "labels",
}
#: Current release, video level.
VIDEO_LEVEL: dict[str, Any] = {**FRAME_LEVEL, "feature_names": ("mean_rgb", "mean_audio")}
#: The paper's release (v1, 2016): Inception features only, 4800 classes, ``video_id``.
PAPER_FRAME_LEVEL: dict[str, Any] = {
    "num_classes": 4800,
    "feature_names": ("inc3",),
    "feature_sizes": (1024,),
    "id_key": "video_id",
    "labels_key": "labels",
}
PAPER_VIDEO_LEVEL: dict[str, Any] = {**PAPER_FRAME_LEVEL, "feature_names": ("mean_inc3",)}
PRESETS: dict[str, dict[str, Any]] = {
    "frame": FRAME_LEVEL,
    "video": VIDEO_LEVEL,
    "paper_frame": PAPER_FRAME_LEVEL,
    "paper_video": PAPER_VIDEO_LEVEL,
}

_RECORD_OVERHEAD = 16  # TFRecord framing: length (8) + length CRC (4) + data CRC (4)
_AUTOTUNE = tf.data.AUTOTUNE


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


# ------------------------------------------------------------------------------------------- checking
def _keys_of(record: tf.Tensor, sequence: bool) -> tf.Tensor:
    """'context keys [a, b]; feature lists [c]' (or 'keys [...]') of one serialized record, in-graph."""

    def entries(serialized, message, field, entry_type):
        msgs = tf.io.decode_proto(tf.reshape(serialized, [-1]), message, [field], [tf.string]).values[0]
        keys = tf.io.decode_proto(tf.reshape(msgs, [-1]), entry_type, ["key"], [tf.string]).values[0]
        return tf.strings.reduce_join(tf.reshape(keys, [-1]), separator=", ")

    if sequence:
        parts = tf.io.decode_proto(
            record[None], "tensorflow.SequenceExample", ["context", "feature_lists"], [tf.string, tf.string]
        ).values
        ctx = entries(parts[0], "tensorflow.Features", "feature", "tensorflow.Features.FeatureEntry")
        fl = entries(
            parts[1], "tensorflow.FeatureLists", "feature_list", "tensorflow.FeatureLists.FeatureListEntry"
        )
        return tf.strings.join(["the record has context keys [", ctx, "] and feature lists [", fl, "]"])
    feats = tf.io.decode_proto(record[None], "tensorflow.Example", ["features"], [tf.string]).values[0]
    keys = entries(feats, "tensorflow.Features", "feature", "tensorflow.Features.FeatureEntry")
    return tf.strings.join(["the record has keys [", keys, "]"])


def _assert_rows(bad: tf.Tensor, message_fn) -> tf.Operation:
    """Asserts no row of ``bad [B]`` is set; the message (built lazily) describes the first bad row."""
    any_bad = tf.reduce_any(bad)
    first = tf.cast(tf.argmax(tf.cast(bad, tf.int32)), tf.int32)
    message = tf.cond(any_bad, lambda: message_fn(first), lambda: tf.constant(""))
    return tf.debugging.Assert(tf.logical_not(any_bad), [message], summarize=1)


def _row_counts(sparse: tf.SparseTensor, batch: tf.Tensor) -> tf.Tensor:
    return tf.math.bincount(tf.cast(sparse.indices[:, 0], tf.int32), minlength=batch, maxlength=batch)


def _ids_and_labels(context, records, names, batch, *, id_key, labels_key, num_classes, sequence, hint):
    """Validates the id and labels of a batch; returns ids [B] and multi-hot labels [B, C] plus assertions."""
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
                    hint,
                ]
            ),
        )
    ]
    labels = context[labels_key]
    bad_value = tf.logical_or(labels.values < 0, labels.values >= num_classes)
    bad_row = (
        tf.math.unsorted_segment_max(
            tf.cast(bad_value, tf.int32), tf.cast(labels.indices[:, 0], tf.int32), batch
        )
        > 0
    )
    first_value = tf.gather(labels.values, tf.argmax(tf.cast(bad_value, tf.int32)))
    checks.append(
        _assert_rows(
            bad_row,
            lambda i: tf.strings.join(
                [
                    names[i],
                    ": label id ",
                    tf.strings.as_string(first_value),
                    " is outside [0, ",
                    str(num_classes),
                    ") (num_classes=",
                    str(num_classes),
                    ")",
                ]
            ),
        )
    )
    with tf.control_dependencies(checks):
        in_range = tf.sparse.retain(labels, tf.logical_not(bad_value))
        dense = tf.sparse.to_indicator(in_range, num_classes)
        return tf.identity(ids), tf.cast(dense, tf.float32)


def _record_names(filenames: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
    return tf.strings.join([filenames, " record ", tf.strings.as_string(indices)])


def _default_names(serialized: tf.Tensor) -> tf.Tensor:
    return tf.strings.join(["record ", tf.strings.as_string(tf.range(tf.shape(serialized)[0]))])


_PAPER_HINT = (
    " (the paper-era release uses video_id, inc3 / mean_inc3 and 4800 classes: pass "
    "**zoo.data.yt8m.PAPER_FRAME_LEVEL or PAPER_VIDEO_LEVEL)"
)


# --------------------------------------------------------------------------------------------- parsing
def parse_frame_batch(
    serialized: tf.Tensor,
    names: tf.Tensor | None = None,
    *,
    max_frames: int = DEFAULT_MAX_FRAMES,
    num_classes: int = DEFAULT_NUM_CLASSES,
    feature_names: Sequence[str] = ("rgb", "audio"),
    feature_sizes: Sequence[int] = (1024, 128),
    id_key: str = "id",
    labels_key: str = "labels",
    num_samples: int | None = None,
    sample_seed: tf.Tensor | None = None,
    normalize: bool = True,
    dequantize: bool = True,
    jit_compile: bool = False,
) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    """Parses a batch of serialized frame-level SequenceExamples (also usable in serving signatures).

    Returns ``({"features": [B, T, D], "num_frames": int32 [B], "id": string [B]}, labels [B, C])`` with
    ``T = max_frames`` (or ``num_samples`` when sampling) and ``D = sum(feature_sizes)``.

    Args:
      names: ``[B]`` strings used in error messages (default ``"record <i>"``).
      num_samples: if set, each video's frames are replaced by ``num_samples`` frames drawn uniformly with
        replacement from its real frames (official ``SampleRandomFrames``); ``num_frames`` becomes
        ``num_samples`` (0 stays 0). Needs ``sample_seed`` (an int32 ``[2]`` stateless seed).
      normalize: L2-normalise each frame (official); ``False`` returns dequantised raw features.
      dequantize: ``False`` returns the uint8 codes (padding frames are code 0) so that
        :func:`dequantize_frames` can run on the accelerator, inside the model: the float output is ~6x
        larger than the records and writing it dominates CPU input cost.
      jit_compile: dequantise + normalise with XLA (one fused pass; ``frame_dataset`` does). Off by default
        for serving signatures.
    """
    _check_feature_spec(feature_names, feature_sizes)
    serialized = tf.reshape(tf.convert_to_tensor(serialized, tf.string), [-1])
    names = _default_names(serialized) if names is None else tf.reshape(names, [-1])
    batch = tf.shape(serialized)[0]
    # Ragged string features: one string per real frame (dense string lists would add a padding string
    # per missing frame and a copy of every frame when sliced).
    context, lists, _ = tf.io.parse_sequence_example(
        serialized,
        context_features={id_key: tf.io.VarLenFeature(tf.string), labels_key: tf.io.VarLenFeature(tf.int64)},
        sequence_features={n: tf.io.RaggedFeature(tf.string) for n in feature_names},
        example_names=names,
    )
    ids, labels = _ids_and_labels(
        context,
        serialized,
        names,
        batch,
        id_key=id_key,
        labels_key=labels_key,
        num_classes=num_classes,
        sequence=True,
        hint=_PAPER_HINT,
    )
    checks = []
    lengths = [tf.cast(lists[name].row_lengths(), tf.int32) for name in feature_names]
    for name, length in zip(feature_names, lengths, strict=True):
        checks.append(
            _assert_rows(
                tf.equal(length, 0),
                lambda i, name=name: tf.strings.join(
                    [
                        names[i],
                        ": feature list ",
                        name,
                        " is missing or empty; ",
                        _keys_of(serialized[i], True),
                        _PAPER_HINT,
                    ]
                ),
            )
        )
    for name, size in zip(feature_names, feature_sizes, strict=True):
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
    total = sum(feature_sizes)
    with tf.control_dependencies(checks):
        # num_frames: the minimum over the feature lists; frames are stored [sum(num_frames), D].
        codes, num_frames = _concat_frames(lists, feature_names, feature_sizes, lengths)
    ragged = tf.RaggedTensor.from_row_lengths(codes, num_frames, validate=False)
    # One pass: truncates to max_frames and pads with code 0.
    quantized = ragged.to_tensor(shape=[None, max_frames, total])
    num_frames = tf.minimum(num_frames, max_frames)
    if num_samples is None:
        length_out = max_frames
        valid = tf.sequence_mask(num_frames, max_frames)
    else:
        if sample_seed is None:
            raise ValueError("parse_frame_batch: num_samples needs a sample_seed (int32 [2])")
        length_out = num_samples
        valid = tf.broadcast_to((num_frames > 0)[:, None], [batch, num_samples])
        # Official SampleRandomFrames: floor(U[0, 1) * num_frames), so only real frames are drawn.
        u = tf.random.stateless_uniform([batch, num_samples], seed=sample_seed)
        index = tf.cast(tf.floor(u * tf.cast(num_frames, tf.float32)[:, None]), tf.int32)
        index = tf.clip_by_value(index, 0, tf.maximum(num_frames[:, None] - 1, 0))
        quantized = tf.gather(quantized, index, batch_dims=1)
        num_frames = tf.where(num_frames > 0, num_samples, 0)
    if not dequantize:
        features = quantized
    else:
        dequantize_fn = _dequantize_frames_xla if jit_compile else _dequantize_frames
        features = dequantize_fn(quantized, valid, normalize)
    features = tf.ensure_shape(features, [None, length_out, total])
    return {"features": features, "num_frames": num_frames, "id": ids}, labels


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


def _concat_frames(lists, feature_names, feature_sizes, lengths) -> tuple[tf.Tensor, tf.Tensor]:
    """uint8 ``[sum(num_frames), D]`` (the features of each real frame, concatenated) and ``num_frames``
    (the minimum frame count over the feature lists). When the lists are of different lengths, the frames
    beyond the shortest are dropped (one gather, only then)."""
    decoded = [
        tf.io.decode_raw(lists[name].flat_values, tf.uint8, fixed_length=size)
        for name, size in zip(feature_names, feature_sizes, strict=True)
    ]
    num_frames = lengths[0]
    for length in lengths[1:]:
        num_frames = tf.minimum(num_frames, length)
    if len(decoded) == 1:
        return decoded[0], num_frames

    def same():
        return tf.concat(decoded, axis=-1)

    def trimmed():
        # Flat index of frame j of record b in each feature: row_start[b] + j, for j < num_frames[b].
        keep = tf.RaggedTensor.from_row_lengths(tf.range(tf.reduce_sum(num_frames)), num_frames)
        offsets = keep.flat_values - tf.gather(keep.row_starts(), keep.value_rowids())
        parts = []
        for name, frames in zip(feature_names, decoded, strict=True):
            starts = tf.cast(lists[name].row_starts(), tf.int32)
            parts.append(tf.gather(frames, tf.gather(starts, keep.value_rowids()) + offsets))
        return tf.concat(parts, axis=-1)

    equal = tf.reduce_all([tf.reduce_all(tf.equal(length, num_frames)) for length in lengths])
    return tf.cond(equal, same, trimmed), num_frames


def parse_video_batch(
    serialized: tf.Tensor,
    names: tf.Tensor | None = None,
    *,
    num_classes: int = DEFAULT_NUM_CLASSES,
    feature_names: Sequence[str] = ("mean_rgb", "mean_audio"),
    feature_sizes: Sequence[int] = (1024, 128),
    id_key: str = "id",
    labels_key: str = "labels",
    normalize: bool = True,
) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    """Parses a batch of serialized video-level Examples (also usable in serving signatures).

    Returns ``({"features": [B, D], "num_frames": int32 [B] (all 1), "id": string [B]}, labels [B, C])``;
    ``features`` is the concatenation of ``feature_names``, L2-normalised per video when ``normalize``.
    """
    _check_feature_spec(feature_names, feature_sizes)
    serialized = tf.reshape(tf.convert_to_tensor(serialized, tf.string), [-1])
    names = _default_names(serialized) if names is None else tf.reshape(names, [-1])
    batch = tf.shape(serialized)[0]
    spec = {id_key: tf.io.VarLenFeature(tf.string), labels_key: tf.io.VarLenFeature(tf.int64)}
    spec.update({n: tf.io.RaggedFeature(tf.float32) for n in feature_names})
    parsed = tf.io.parse_example(serialized, spec, example_names=names)
    ids, labels = _ids_and_labels(
        parsed,
        serialized,
        names,
        batch,
        id_key=id_key,
        labels_key=labels_key,
        num_classes=num_classes,
        sequence=False,
        hint=_PAPER_HINT,
    )
    checks, parts = [], []
    for name, size in zip(feature_names, feature_sizes, strict=True):
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
            tf.reshape(p.flat_values, [batch, size]) for p, size in zip(parts, feature_sizes, strict=True)
        ]
    features = tf.concat(dense, axis=-1) if len(dense) > 1 else dense[0]
    if normalize:
        features = tf.math.l2_normalize(features, axis=-1)
    features = tf.ensure_shape(features, [None, sum(feature_sizes)])
    return {"features": features, "num_frames": tf.ones([batch], tf.int32), "id": ids}, labels


def dequantize_frames(quantized: tf.Tensor, num_frames: tf.Tensor, normalize: bool = True) -> tf.Tensor:
    """uint8 codes ``[B, T, D]`` (from ``dequantize=False``) -> the float features the default pipeline
    yields: dequantised, zero beyond ``num_frames``, L2-normalised per frame. Pure TF ops, so it also runs
    on a GPU inside a model or a ``tf.function``."""
    valid = tf.sequence_mask(num_frames, tf.shape(quantized)[1])
    return _dequantize_frames(quantized, valid, normalize)


def _dequantize_frames(quantized: tf.Tensor, valid: tf.Tensor, normalize: bool) -> tf.Tensor:
    """uint8 ``[B, T, D]`` -> dequantised (official formula), zero where ``valid`` is False, optionally
    L2-normalised per frame (as ``tf.math.l2_normalize``), with as few passes over the float output as
    possible (it is ~6x larger than the records).

    x = a q + b = a (q - c) with c = -b / a, so ||x||^2 = a^2 sum((q - c)^2): no cancellation.
    """
    a, b = yt8m_features.dequantization_coefficients()
    centred = tf.cast(quantized, tf.float32) - (-b / a)
    mask = tf.cast(valid, tf.float32)
    if normalize:
        sum_sq = (a * a) * tf.reduce_sum(tf.square(centred), axis=-1)
        mask = mask * tf.math.rsqrt(tf.maximum(sum_sq, 1e-12))
    return centred * (a * mask)[..., None]


# XLA fuses the cast, the norm and the scaling into two loops over the [B, T, D] block: the float output is
# written once instead of four times (it is ~6x larger than the records, and on CPU each pass costs about
# as much as parsing). Compiled once per input shape (in tf.data: full batches, then the last one). Kept
# out of serving signatures (``jit_compile=False`` there): not every model server has the XLA JIT.
_dequantize_frames_xla = tf.function(_dequantize_frames, jit_compile=True, reduce_retracing=False)


def _check_feature_spec(feature_names: Sequence[str], feature_sizes: Sequence[int]) -> None:
    if isinstance(feature_names, str) or isinstance(feature_sizes, int):
        raise TypeError(
            f"feature_names and feature_sizes must be sequences, got {feature_names!r}, {feature_sizes!r}"
        )
    if len(feature_names) != len(feature_sizes) or not feature_names:
        raise ValueError(
            f"feature_names {tuple(feature_names)} and feature_sizes {tuple(feature_sizes)} must "
            "be non-empty and of the same length"
        )


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
    max_frames: int = DEFAULT_MAX_FRAMES,
    num_classes: int = DEFAULT_NUM_CLASSES,
    feature_names: Sequence[str] = ("rgb", "audio"),
    feature_sizes: Sequence[int] = (1024, 128),
    id_key: str = "id",
    labels_key: str = "labels",
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

    ``T = max_frames`` (official 300), or ``num_samples`` when frames are sampled with replacement from the
    real frames (training only; deterministic given ``seed``: the stateless seed is ``(seed, batch index)``).
    ``file_pattern``: glob, comma-separated globs, list, or directory (``<dir>/*.tfrecord``).
    ``num_shards`` / ``shard_index`` shard the *files* (multi-worker input). See the module docstring for
    errors and ``skip_bad_records``. ``dequantize=False`` yields uint8 codes for
    :func:`dequantize_frames` on the accelerator (see :func:`parse_frame_batch`).
    """
    if max_frames < 1 or (num_samples is not None and num_samples < 1):
        raise ValueError(f"max_frames and num_samples must be >= 1, got {max_frames}, {num_samples}")

    def parse(records, names, sample_seed):
        return parse_frame_batch(
            records,
            names,
            max_frames=max_frames,
            num_classes=num_classes,
            feature_names=feature_names,
            feature_sizes=feature_sizes,
            id_key=id_key,
            labels_key=labels_key,
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
    num_classes: int = DEFAULT_NUM_CLASSES,
    feature_names: Sequence[str] = ("mean_rgb", "mean_audio"),
    feature_sizes: Sequence[int] = (1024, 128),
    id_key: str = "id",
    labels_key: str = "labels",
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
    """Batches of video-level Examples: ``({"features" [B, D], "num_frames" (ones), "id"}, labels)``."""

    def parse(records, names, sample_seed):
        del sample_seed
        return parse_video_batch(
            records,
            names,
            num_classes=num_classes,
            feature_names=feature_names,
            feature_sizes=feature_sizes,
            id_key=id_key,
            labels_key=labels_key,
            normalize=normalize,
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


# --------------------------------------------------------------------------------------------- writing
def _bytes_feature(values: Iterable[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _context(video_id: str | bytes, labels: Iterable[int], id_key: str, labels_key: str) -> dict:
    vid = video_id.encode() if isinstance(video_id, str) else bytes(video_id)
    return {
        id_key: _bytes_feature([vid]),
        labels_key: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(x) for x in labels])),
    }


def frame_example(
    video_id: str | bytes,
    labels: Iterable[int],
    features: Mapping[str, Any],
    id_key: str = "id",
    labels_key: str = "labels",
) -> bytes:
    """A serialized frame-level SequenceExample. ``features[name]`` is ``[T, size]``: uint8 codes are
    written as they are, floats are quantised with :func:`zoo.data.yt8m_features.quantize` (the converter
    for users bringing their own float features)."""
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
        context=tf.train.Features(feature=_context(video_id, labels, id_key, labels_key)),
        feature_lists=tf.train.FeatureLists(feature_list=lists),
    )
    return example.SerializeToString()


def video_example(
    video_id: str | bytes,
    labels: Iterable[int],
    features: Mapping[str, Any],
    id_key: str = "id",
    labels_key: str = "labels",
) -> bytes:
    """A serialized video-level Example with float features (e.g. ``mean_rgb`` [1024])."""
    feature = _context(video_id, labels, id_key, labels_key)
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
    frame_level: bool,
    num_classes: int = DEFAULT_NUM_CLASSES,
    seed: int = 0,
    *,
    num_shards: int = 1,
    feature_names: Sequence[str] | None = None,
    feature_sizes: Sequence[int] | None = None,
    id_key: str = "id",
    labels_key: str = "labels",
    frames: tuple[int, int] = (20, 120),
    max_labels: int = 3,
    unlabeled_fraction: float = 0.05,
    signal: float = 0.15,
    noise: float = 0.5,
) -> list[str]:
    """Writes a synthetic YouTube-8M data set with learnable class structure; returns the shard paths.

    Each class c has a random prototype direction ``p_c`` (entries ``N(0, signal^2)`` in the concatenated
    raw feature space). A video gets 1..``max_labels`` labels drawn from a skewed (Zipf-like) class
    distribution (a fraction ``unlabeled_fraction`` gets none), a centre ``sum_c p_c + N(0, (noise/2)^2)``
    and, at frame level, ``T ~ U[frames]`` frames ``centre + N(0, noise^2)``, quantised to uint8 as in the
    release. Video-level records hold the means of the dequantised frames (``mean_<name>``) like the
    release. With ``num_shards > 1`` the files are ``<stem>-00000-of-0000N.tfrecord``.
    """
    if frame_level:
        names = tuple(feature_names or ("rgb", "audio"))
    else:
        names = tuple(feature_names or ("mean_rgb", "mean_audio"))
    sizes = tuple(feature_sizes or (1024, 128))
    _check_feature_spec(names, sizes)
    if num_videos < 0 or num_shards < 1 or not 1 <= frames[0] <= frames[1]:
        raise ValueError(
            f"bad write_synthetic arguments: num_videos={num_videos}, num_shards={num_shards}, "
            f"frames={frames}"
        )
    rng = np.random.default_rng(seed)
    dim = sum(sizes)
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
            if frame_level:
                feats = dict(zip(names, np.split(codes, splits, axis=1), strict=True))
                yield frame_example(vid, labels, feats, id_key=id_key, labels_key=labels_key)
            else:
                mean = yt8m_features.dequantize(codes).mean(axis=0)
                feats = dict(zip(names, np.split(mean, splits), strict=True))
                yield video_example(vid, labels, feats, id_key=id_key, labels_key=labels_key)

    return [write_records(p, videos(i)) for i, p in enumerate(paths)]


def quantize_frame_records(
    input_pattern: str | Sequence[str],
    output_path: str,
    feature_names: Sequence[str] = ("rgb", "audio"),
    min_value: float = yt8m_features.QUANT_MIN,
    max_value: float = yt8m_features.QUANT_MAX,
) -> str:
    """Converter: frame-level SequenceExamples whose feature lists hold *float* lists per frame -> the
    release's quantised format (one uint8 byte string per frame). Other keys are copied unchanged.
    Streams record by record; writes ``output_path`` atomically. Errors name the file and record index."""

    def converted():
        for filename in list_files(input_pattern):
            for index, raw in enumerate(tf.data.TFRecordDataset(filename).as_numpy_iterator()):
                example = tf.train.SequenceExample.FromString(raw)
                for name in feature_names:
                    if name not in example.feature_lists.feature_list:
                        raise ValueError(
                            f"{filename} record {index}: feature list {name!r} not found; the record has "
                            f"{sorted(example.feature_lists.feature_list)}"
                        )
                    flist = example.feature_lists.feature_list[name]
                    rows = [np.asarray(f.float_list.value, np.float32) for f in flist.feature]
                    if any(f.WhichOneof("kind") != "float_list" for f in flist.feature):
                        raise ValueError(
                            f"{filename} record {index}: feature list {name!r} is not float lists"
                        )
                    codes = yt8m_features.quantize(np.stack(rows), min_value, max_value) if rows else []
                    del flist.feature[:]
                    for row in codes:
                        flist.feature.add().bytes_list.value.append(row.tobytes())
                yield example.SerializeToString()

    return write_records(output_path, converted())
