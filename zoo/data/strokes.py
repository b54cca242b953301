"""Pen-stroke sequences for handwriting generation (Graves 2013 §4; HyperNetworks §4.5, appendix A.3.5).

Every source (the IAM-OnDB reader in :mod:`zoo.data.iam_ondb`, the embedded Hershey-font handwriting in
:mod:`zoo.data.hershey`) produces *lines*: a line is a list of strokes, a stroke a ``[n, 2]`` array of pen
positions ``(x, y)`` with ``y`` pointing **up** (readers of screen-oriented formats flip it). This module
turns lines into the one in-memory form the models see, a float32 ``[T, 3]`` array per line with rows

    (dx, dy, end_of_stroke)

(Graves 2013 §4.1): row ``t`` is the move from point ``t`` to point ``t + 1`` of the line (strokes
concatenated in writing order) and ``end_of_stroke = 1`` when point ``t + 1`` is the last point of its
stroke, i.e. the pen is lifted after it and row ``t + 1`` is a pen-up move. A line of ``N`` points gives
``T = N - 1`` rows (the absolute position of the first point is not modelled); the task feeds a start row
before the first one, as Graves does with a null first input.

:func:`prepare_splits` applies the same treatment to every source:

1. **outlier offsets capped**: each of ``dx, dy`` is clipped to ``[-max_offset, max_offset]`` in the source's
   raw units (Graves 2013 §4.1 removed recording errors, "steps whose length exceeded a certain threshold";
   clipping keeps the line's point count). The default :data:`MAX_OFFSET` = 500 units is about a word's width
   on the IAM-OnDB whiteboard (lines are ~6,000 units wide) and the limit the first author's public IAM-OnDB
   loader (``hardmaru/write-rnn-tensorflow``) clips at the same way; the Hershey source renders in the same
   units, so one default serves both;
2. **short lines dropped**: lines with fewer than ``min_length`` rows (A.3.5: 300) are removed;
3. **normalised with the training split's statistics**: ``dx, dy`` minus the training rows' mean, divided by
   their standard deviation (``end_of_stroke`` untouched). The statistics are a :class:`StrokeStats` that
   serialises to a small JSON object, to keep beside the run and the export (samples are denormalised with
   it).

:func:`scale_augment` is A.3.5's random scaling (±10%), applied to the raw offsets of a normalised line.
:func:`pad_batch` and :func:`batches` give fixed-shape numpy batches with a mask (tf.data-friendly:
``tf.data.Dataset.from_generator`` or ``from_tensor_slices`` on the padded arrays).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zoo.data.errors import MissingDataError
from zoo.io import atomic_write

__all__ = [
    "STROKE_FEATURES",
    "MIN_LENGTH",
    "MAX_OFFSET",
    "MAX_SCALE",
    "CROP_MODES",
    "strokes_to_offsets",
    "offsets_to_strokes",
    "cap_offsets",
    "StrokeStats",
    "StrokeSplits",
    "prepare_splits",
    "scale_augment",
    "pad_batch",
    "batches",
]

#: (dx, dy, end_of_stroke) per row (Graves 2013 §4.1; HyperNetworks A.3.5 N_x = 3).
STROKE_FEATURES = 3
#: lines with fewer rows are dropped (HyperNetworks A.3.5, "samples shorter than 300 removed").
MIN_LENGTH = 300
#: |dx|, |dy| are clipped to this many raw units (IAM-OnDB whiteboard units; see the module docstring).
MAX_OFFSET = 500.0
#: random scaling by up to ±10% (HyperNetworks A.3.5).
MAX_SCALE = 0.1
#: what :func:`batches` does with a line longer than ``length``.
CROP_MODES = ("error", "start", "random")


def strokes_to_offsets(strokes: Sequence[Any], source: str = "line") -> np.ndarray:
    """The ``[N - 1, 3]`` float32 rows ``(dx, dy, end_of_stroke)`` of a line of ``N`` points.

    Args:
      strokes: the line's strokes in writing order, each ``[n_i, 2]`` (``n_i >= 1``) positions, y up.
      source: named in errors (a file, a line id).

    Returns:
      ``[N - 1, 3]`` float32; ``end_of_stroke`` of row ``t`` is 1 when point ``t + 1`` ends its stroke.
      A line of fewer than 2 points gives ``[0, 3]``.
    """
    points, ends = [], []
    for k, stroke in enumerate(strokes):
        arr = np.asarray(stroke, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0:
            raise ValueError(f"{source}: stroke {k} has shape {arr.shape}; a stroke is [n >= 1, 2] (x, y)")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{source}: stroke {k} has a non-finite coordinate")
        points.append(arr)
        end = np.zeros(arr.shape[0], dtype=np.float64)
        end[-1] = 1.0
        ends.append(end)
    if not points:
        return np.zeros((0, STROKE_FEATURES), np.float32)
    xy = np.concatenate(points)
    eos = np.concatenate(ends)
    return np.concatenate([np.diff(xy, axis=0), eos[1:, None]], axis=1).astype(np.float32)


def offsets_to_strokes(offsets: Any, start: Sequence[float] = (0.0, 0.0)) -> list[np.ndarray]:
    """Inverse of :func:`strokes_to_offsets` (for drawing): absolute strokes from raw ``[T, 3]`` rows.

    The first point is ``start``; a stroke ends at every row whose ``end_of_stroke`` is >= 0.5. Pass
    denormalised offsets (:meth:`StrokeStats.denormalize`) to get the source's units.
    """
    arr = np.asarray(offsets, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != STROKE_FEATURES:
        raise ValueError(f"offsets have shape {arr.shape}; expected [T, {STROKE_FEATURES}]")
    xy = np.concatenate([np.asarray(start, np.float64)[None], np.asarray(start) + np.cumsum(arr[:, :2], 0)])
    ends = np.flatnonzero(arr[:, 2] >= 0.5) + 1  # point index that closes a stroke
    strokes, first = [], 0
    for end in ends:
        strokes.append(xy[first : end + 1])
        first = end + 1
    if first < len(xy):
        strokes.append(xy[first:])
    return strokes


def cap_offsets(offsets: np.ndarray, max_offset: float | None = MAX_OFFSET) -> np.ndarray:
    """``dx, dy`` clipped to ``[-max_offset, max_offset]`` (``None``: unchanged); a new array."""
    out = np.array(offsets, dtype=np.float32, copy=True)
    if max_offset is not None:
        if not max_offset > 0:
            raise ValueError(f"max_offset={max_offset!r} must be > 0 (or None for no cap)")
        np.clip(out[:, :2], -max_offset, max_offset, out=out[:, :2])
    return out


@dataclass(frozen=True)
class StrokeStats:
    """Mean and standard deviation of the training rows' ``(dx, dy)`` (raw units); serialisable.

    ``normalize`` maps raw rows to model rows, ``denormalize`` back; ``end_of_stroke`` is left as is.
    """

    mean: tuple[float, float]
    std: tuple[float, float]

    def __post_init__(self) -> None:
        mean = tuple(float(v) for v in self.mean)
        std = tuple(float(v) for v in self.std)
        if len(mean) != 2 or len(std) != 2:
            raise ValueError(f"StrokeStats holds (dx, dy) pairs; got mean={self.mean!r} std={self.std!r}")
        if not all(np.isfinite(mean)) or not all(np.isfinite(s) and s > 0 for s in std):
            raise ValueError(f"StrokeStats needs finite means and positive stds; got mean={mean} std={std}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @classmethod
    def from_sequences(cls, sequences: Sequence[np.ndarray], center: bool = True) -> StrokeStats:
        """Statistics over every row of raw ``[T, 3]`` ``sequences``; ``center=False`` keeps mean 0."""
        rows = [np.asarray(s, np.float64)[:, :2] for s in sequences if len(s)]
        if not rows:
            raise ValueError("no rows to compute stroke statistics from (is the training split empty?)")
        xy = np.concatenate(rows)
        mean = xy.mean(axis=0) if center else np.zeros(2)
        std = np.sqrt(np.mean(np.square(xy - mean), axis=0))
        if not np.all(std > 0):
            raise ValueError(
                f"the training rows' (dx, dy) have no spread (std {std.tolist()}); cannot normalise"
            )
        return cls(tuple(mean.tolist()), tuple(std.tolist()))

    def normalize(self, offsets: Any) -> np.ndarray:
        """Raw ``[..., 3]`` rows -> model rows (float32)."""
        out = np.array(offsets, dtype=np.float32, copy=True)
        out[..., :2] = (out[..., :2] - np.float32(self.mean)) / np.float32(self.std)
        return out

    def denormalize(self, offsets: Any) -> np.ndarray:
        """Model ``[..., 3]`` rows -> raw rows (float32)."""
        out = np.array(offsets, dtype=np.float32, copy=True)
        out[..., :2] = out[..., :2] * np.float32(self.std) + np.float32(self.mean)
        return out

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "stroke statistics") -> StrokeStats:
        try:
            return cls(tuple(data["mean"]), tuple(data["std"]))
        except (KeyError, TypeError) as e:
            raise ValueError(f"{source} is not {{'mean': [mx, my], 'std': [sx, sy]}}: {e!r}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "stroke statistics json") -> StrokeStats:
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ValueError(f"{source} is not JSON: {e}") from None
        return cls.from_dict(data, source)

    def save(self, path: str) -> None:
        """Writes the JSON atomically."""
        atomic_write(path, self.to_json())

    @classmethod
    def load(cls, path: str) -> StrokeStats:
        if not os.path.isfile(path):
            raise MissingDataError(f"stroke statistics file {path!r} does not exist")
        with open(path, encoding="utf-8") as f:
            return cls.from_json(f.read(), source=path)


@dataclass
class StrokeSplits:
    """Normalised lines of one dataset.

    Attributes:
      sequences: split name -> list of float32 ``[T, 3]`` normalised rows (``T >= min_length``).
      ids: split name -> the lines' ids, parallel to ``sequences``.
      stats: the training split's :class:`StrokeStats`.
      dropped: split name -> number of lines removed for being shorter than ``min_length``.
      missing: split name -> ids a source listed but could not find (IAM-OnDB line sets without files).
      source: where the lines came from (a directory, ``"hershey(seed=0)"``), for messages.
      config: the preprocessing values used (``min_length``, ``max_offset``, ``center``, source options).
    """

    sequences: dict[str, list[np.ndarray]]
    ids: dict[str, list[str]]
    stats: StrokeStats
    dropped: dict[str, int] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    def lengths(self, split: str) -> np.ndarray:
        """Row counts of ``split``'s lines."""
        return np.array([len(s) for s in self.sequences[split]], dtype=np.int64)

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={len(v)}" for k, v in self.sequences.items())
        return (
            f"StrokeSplits({self.source!r}: {counts}; dropped {self.dropped}; stats {self.stats.to_dict()})"
        )


def prepare_splits(
    raw: Mapping[str, Sequence[tuple[str, np.ndarray]]],
    *,
    min_length: int = MIN_LENGTH,
    max_offset: float | None = MAX_OFFSET,
    center: bool = True,
    stats_split: str = "train",
    stats: StrokeStats | None = None,
    source: str = "",
    config: Mapping[str, Any] | None = None,
) -> StrokeSplits:
    """Caps, filters and normalises raw lines (the module docstring's steps 1-3).

    Args:
      raw: split name -> ``(line_id, raw [T, 3] rows)`` pairs (from :func:`strokes_to_offsets`).
      min_length: lines with fewer rows are dropped (A.3.5: 300); 0 keeps all non-empty lines.
      max_offset: cap on ``|dx|``, ``|dy|`` in raw units, or ``None``.
      center: subtract the mean (``False``: divide by the std only).
      stats_split: the split whose kept lines give the statistics.
      stats: use these statistics instead (e.g. the ones saved with a run, to evaluate new data).
      source, config: recorded on the result.

    Returns:
      A :class:`StrokeSplits`.
    """
    if int(min_length) < 0:
        raise ValueError(f"min_length={min_length!r} must be >= 0")
    kept: dict[str, list[tuple[str, np.ndarray]]] = {}
    dropped: dict[str, int] = {}
    for split, lines in raw.items():
        kept[split], dropped[split] = [], 0
        for line_id, rows in lines:
            rows = np.asarray(rows)
            if rows.ndim != 2 or rows.shape[1] != STROKE_FEATURES:
                raise ValueError(f"{source} line {line_id!r}: rows have shape {rows.shape}, expected [T, 3]")
            if len(rows) == 0 or len(rows) < min_length:
                dropped[split] += 1
                continue
            kept[split].append((line_id, cap_offsets(rows, max_offset)))
    if stats is None:
        if stats_split not in kept:
            raise ValueError(f"stats_split={stats_split!r} is not one of the splits {sorted(kept)}")
        if not kept[stats_split]:
            raise ValueError(
                f"{source}: no {stats_split!r} line has >= {min_length} points "
                f"({dropped[stats_split]} dropped as shorter); lower min_length or check the data"
            )
        stats = StrokeStats.from_sequences([rows for _, rows in kept[stats_split]], center=center)
    return StrokeSplits(
        sequences={split: [stats.normalize(rows) for _, rows in lines] for split, lines in kept.items()},
        ids={split: [line_id for line_id, _ in lines] for split, lines in kept.items()},
        stats=stats,
        dropped=dropped,
        source=source,
        config={
            "min_length": int(min_length),
            "max_offset": max_offset,
            "center": bool(center),
            **(config or {}),
        },
    )


def scale_augment(
    offsets: np.ndarray,
    stats: StrokeStats,
    rng: np.random.Generator,
    max_scale: float = MAX_SCALE,
    independent_axes: bool = True,
) -> np.ndarray:
    """A.3.5's random scaling of one normalised line: raw ``dx`` (and ``dy``) times ``U(1 - s, 1 + s)``.

    The scaling acts on the raw offsets (``denormalize -> scale -> normalize``), so a centred line scales
    about the true zero move. ``independent_axes`` draws one factor per axis (the HyperNetworks authors'
    sketch code scales x and y independently); ``False`` draws one factor for both. ``max_scale = 0``
    returns a copy.
    """
    if not 0 <= max_scale < 1:
        raise ValueError(f"max_scale={max_scale!r} must be in [0, 1) (A.3.5 uses 0.1)")
    factors = rng.uniform(1.0 - max_scale, 1.0 + max_scale, size=2 if independent_axes else 1)
    factors = np.broadcast_to(factors, (2,)).astype(np.float32)
    mean, std = np.float32(stats.mean), np.float32(stats.std)
    out = np.array(offsets, dtype=np.float32, copy=True)
    out[:, :2] = ((out[:, :2] * std + mean) * factors - mean) / std
    return out


def pad_batch(sequences: Sequence[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rows [B, length, 3], mask [B, length])`` float32: lines padded with zero rows, mask 1 on real rows.

    A line longer than ``length`` is an error naming its index (crop first, see :func:`batches`).
    """
    out = np.zeros((len(sequences), int(length), STROKE_FEATURES), np.float32)
    mask = np.zeros((len(sequences), int(length)), np.float32)
    for i, seq in enumerate(sequences):
        n = len(seq)
        if n > length:
            raise ValueError(f"line {i} has {n} rows, more than the padded length {length}")
        out[i, :n] = seq
        mask[i, :n] = 1.0
    return out, mask


def batches(
    sequences: Sequence[np.ndarray],
    batch_size: int,
    length: int,
    *,
    seed: int = 0,
    shuffle: bool = True,
    epochs: int | None = None,
    stats: StrokeStats | None = None,
    max_scale: float = 0.0,
    crop: str = "error",
    drop_remainder: bool = True,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yields :func:`pad_batch` batches ``(rows [B, length, 3], mask [B, length])`` for ``epochs`` epochs.

    Args:
      sequences: normalised lines (``StrokeSplits.sequences[split]``).
      batch_size, length: batch shape; every batch has exactly ``length`` steps (one XLA compilation).
      seed: seeds the shuffle, the crops and the augmentation (deterministic stream).
      shuffle: a new permutation every epoch.
      stats, max_scale: with ``max_scale > 0`` each line is scaled by :func:`scale_augment` (needs ``stats``).
      crop: a line longer than ``length``: ``"error"``, keep its ``"start"``, or a ``"random"`` window.
      epochs: number of passes; None: forever.
      drop_remainder: skip the last partial batch of an epoch (else it is yielded smaller).
    """
    if crop not in CROP_MODES:
        raise ValueError(f"crop={crop!r}; valid: {', '.join(CROP_MODES)}")
    if batch_size < 1 or length < 1:
        raise ValueError(f"batch_size={batch_size} and length={length} must be >= 1")
    if max_scale and stats is None:
        raise ValueError("augmentation (max_scale > 0) needs the StrokeStats the lines were normalised with")
    if drop_remainder and len(sequences) < batch_size:
        raise ValueError(
            f"{len(sequences)} lines cannot fill one batch of {batch_size} (drop_remainder=True)"
        )
    rng = np.random.default_rng(seed)
    epoch = 0
    while epochs is None or epoch < epochs:
        order = rng.permutation(len(sequences)) if shuffle else np.arange(len(sequences))
        stop = len(order) - (len(order) % batch_size if drop_remainder else 0)
        for first in range(0, stop, batch_size):
            chosen = []
            for i in order[first : first + batch_size]:
                seq = sequences[i]
                if len(seq) > length:
                    if crop == "error":
                        raise ValueError(
                            f"line {i} has {len(seq)} rows, more than length={length} (crop='error')"
                        )
                    start = int(rng.integers(0, len(seq) - length + 1)) if crop == "random" else 0
                    seq = seq[start : start + length]
                if max_scale:
                    seq = scale_augment(seq, stats, rng, max_scale)
                chosen.append(seq)
            yield pad_batch(chosen, length)
        epoch += 1
