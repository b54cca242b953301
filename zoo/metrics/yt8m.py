"""YouTube-8M benchmark metrics, exactly as the official evaluation computes them.

Abu-El-Haija et al. 2016, §4.4 defines Hit@k, PERR, GAP and mAP; the numbers the benchmark reports come
from the official starter code (google/youtube-8m ``eval_util.py``, ``average_precision_calculator.py``,
``mean_average_precision_calculator.py``), whose semantics differ from the paper's formulas in places.
This module reproduces the official semantics with vectorised numpy, in row chunks, so that 1M x 3862
prediction matrices (or memory-mapped arrays) are evaluated without per-video Python loops:

* ``hit_at_k`` (Hit@1 for ``k=1``): mean over *all* videos of "one of the top-k classes is a label";
  label-less videos count as misses.
* ``perr``: for a video with ``n`` labels, its top-``n`` classes; a class counts as a hit only if it is a
  label *and* its score is ``> 0``; precision = hits / n; averaged over *all* videos (label-less videos
  contribute 0 — the paper's formula excludes them, the official code does not).
* ``gap``: every video contributes its top-``top_k`` (score, label) pairs; all pairs are pooled, sorted by
  score (descending) and AP = (1/P) * sum_i precision@i * rel_i, with P the number of *all* positive labels
  in the ground truth (also those that never reached a top-``top_k``). 0 when P = 0.
* ``mean_average_precision``: the same AP per class, over the pairs of that class that made some video's
  top-``top_k``, divided by that class's total positives; averaged over classes that have positives
  (``empty_classes="skip"``, the official code) or over all classes (``"zero"``, TF Model Garden).

Ties: Hit@1 takes numpy's ``argmax`` (the first of tied maxima) and PERR takes each video's top-n classes
with ``np.argpartition(scores, -n)``, both exactly as the official code, so they equal the official
numbers also when scores tie (e.g. scores rounded to 0.01, or a model that outputs constants). For GAP
and mAP the official code shuffles the pooled pairs at random before sorting them; here their ties are
broken deterministically (earlier video first, then lower class index), so those two agree with the
official code exactly whenever scores are tie-free, and are reproducible otherwise.

Labels are 0/1 arrays ``[N, num_classes]``; predictions are scores ``[N, num_classes]`` (probabilities,
or hinge scores that may be negative).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = [
    "hit_at_k",
    "perr",
    "gap",
    "mean_average_precision",
    "evaluate",
    "Evaluator",
    "top_k_pairs",
]

#: Rows processed at once; 4096 x 3862 float64 is about 127 MB of temporaries.
DEFAULT_CHUNK_SIZE = 4096
_EMPTY_CLASSES = ("skip", "zero")


def _check_pair(predictions: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    if predictions.ndim != 2 or labels.shape != predictions.shape:
        raise ValueError(
            f"predictions and labels must both be [num_videos, num_classes]; got predictions "
            f"{predictions.shape} and labels {labels.shape}"
        )
    return predictions, labels


def _chunks(predictions: np.ndarray, labels: np.ndarray, chunk_size: int) -> Iterator[tuple[np.ndarray, ...]]:
    """Row chunks ``(scores, labels as bool)``; scores keep their float dtype (float32 stays float32)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    for start in range(0, predictions.shape[0], chunk_size):
        p = np.asarray(predictions[start : start + chunk_size])
        if p.dtype.kind != "f":
            p = p.astype(np.float64)
        y = np.asarray(labels[start : start + chunk_size])
        yb = y if y.dtype == bool else y != 0
        if y.dtype != bool and not np.all(y[yb] == 1):
            row, col = np.argwhere(yb & (y != 1))[0]
            raise ValueError(
                f"labels must be 0/1 (multi-hot); got {y[row, col]!r} at video {start + row}, class {col}"
            )
        yield p, yb


def _top_k_indices(p: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores of each row, sorted by score descending (ties: lower index first).

    Faster than ``argpartition`` for k << num_classes: split each row into ``nb >= k`` blocks; the k-th
    largest block maximum t is a lower bound of the row's k-th largest score (k blocks each hold a score
    >= t), so the top k are among the (few) scores >= t, which are then sorted exactly.
    """
    n, num_classes = p.shape
    k = min(k, num_classes)
    num_blocks = max(2 * k, 32)
    block = num_classes // num_blocks
    if block < 4 or n == 0:
        part = np.argsort(-p, axis=1, kind="stable")[:, :k]
        return part
    full = num_blocks * block
    block_max = p[:, :full].reshape(n, num_blocks, block).max(axis=2)
    if full < num_classes:
        block_max[:, -1] = np.maximum(block_max[:, -1], p[:, full:].max(axis=1))
    threshold = np.partition(block_max, num_blocks - k, axis=1)[:, num_blocks - k]
    rows, cols = np.nonzero(p >= threshold[:, None])
    scores = p[rows, cols]
    order = np.lexsort((cols, -scores, rows))
    rows, cols = rows[order], cols[order]
    starts = np.searchsorted(rows, np.arange(n))
    keep = (np.arange(rows.size) - starts[rows]) < k
    return cols[keep].reshape(n, k)


class _ChunkSummary:
    """Everything the four metrics need from one row chunk: Hit@1, the PERR sum, the positives per class
    and each video's top-``top_k`` (class, score, label) triples."""

    def __init__(self, p: np.ndarray, y: np.ndarray, top_k: int) -> None:
        top = _top_k_indices(p, top_k)  # [n, min(top_k, C)], score-descending
        # Hit@1 as the official calculate_hit_at_one: numpy argmax (first index among tied maxima).
        self.hits = float(np.take_along_axis(y, np.argmax(p, axis=1)[:, None], axis=1).sum())
        self.perr = _perr_sum(p, y, y.sum(axis=1))
        self.positives = y.sum(axis=0).astype(np.float64)
        self.classes = top.astype(np.int32).ravel()
        self.scores = np.take_along_axis(p, top, axis=1).astype(np.float64).ravel()
        self.labels = np.take_along_axis(y, top, axis=1).ravel()


def _perr_sum(p: np.ndarray, y: np.ndarray, num_labels: np.ndarray) -> float:
    """Sum over the videos of their precision at equal recall rate, as the official
    ``calculate_precision_at_equal_recall_rate``: a video with n labels takes the n classes
    ``np.argpartition(scores, -n)[-n:]`` (so ties fall exactly as there) and counts those that are labels
    *and* have a score > 0. One ``argpartition`` per distinct n, over all rows with that n at once."""
    total = 0.0
    for n in np.unique(num_labels[num_labels > 0]):
        rows = np.flatnonzero(num_labels == n)
        top = np.argpartition(p[rows], -int(n), axis=1)[:, -int(n) :]
        hit = np.take_along_axis(y[rows], top, axis=1) & (np.take_along_axis(p[rows], top, axis=1) > 0)
        total += float(hit.sum(axis=1).sum()) / float(n)
    return total


def _chunk_hits(p: np.ndarray, y: np.ndarray, k: int) -> float:
    # k = 1 is the official ``calculate_hit_at_one``: numpy argmax (first index among tied maxima).
    top = np.argmax(p, axis=1)[:, None] if k == 1 else _top_k_indices(p, k)
    return float(np.take_along_axis(y, top, axis=1).any(axis=1).sum())


def top_k_pairs(predictions: Any, labels: Any, top_k: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each video's top-``top_k`` classes as flat arrays ``(class_index int32, score float64, label bool)``.

    This is the official ``top_k_by_class`` filter (``eval_util.py``), flattened: video-major, and within a
    video by score descending.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    p, y = _check_pair(predictions, labels)
    cls, sc, lab = [], [], []
    for pc, yc in _chunks(p, y, DEFAULT_CHUNK_SIZE):
        top = _top_k_indices(pc, top_k)
        cls.append(top.astype(np.int32).ravel())
        sc.append(np.take_along_axis(pc, top, axis=1).astype(np.float64).ravel())
        lab.append(np.take_along_axis(yc, top, axis=1).ravel())
    if not cls:
        return np.zeros(0, np.int32), np.zeros(0, np.float64), np.zeros(0, bool)
    return np.concatenate(cls), np.concatenate(sc), np.concatenate(lab)


def _score_order(scores: np.ndarray) -> np.ndarray:
    """Stable order by score descending (ties keep their input order: earlier video, then lower class)."""
    return np.argsort(-scores, kind="stable")


def _average_precision(sorted_labels: np.ndarray, num_positives: float) -> float:
    if num_positives <= 0 or sorted_labels.size == 0:
        return 0.0
    rel = sorted_labels.astype(np.float64)
    precision = np.cumsum(rel) / np.arange(1, rel.size + 1)
    return float((precision * rel).sum() / num_positives)


def _gap_from_pairs(scores: np.ndarray, pair_labels: np.ndarray, total_positives: float) -> float:
    return _average_precision(pair_labels[_score_order(scores)], total_positives)


def _class_aps(
    classes: np.ndarray, scores: np.ndarray, pair_labels: np.ndarray, positives: np.ndarray
) -> np.ndarray:
    """AP of every class from the pooled top-k pairs; ``positives[c]`` is class c's total positives."""
    num_classes = positives.shape[0]
    order = _score_order(scores)
    order = order[np.argsort(classes[order], kind="stable")]  # by class, score-descending within class
    cls = classes[order]
    rel = pair_labels[order].astype(np.float64)
    counts = np.bincount(cls, minlength=num_classes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(cls.size) - starts[cls] + 1
    cum = np.cumsum(rel)
    cum_before = np.concatenate([[0.0], cum])[starts]  # positives before each class's block
    within = cum - cum_before[cls]
    sums = np.bincount(cls, weights=rel * within / rank, minlength=num_classes)
    aps = np.zeros(num_classes, np.float64)
    has = positives > 0
    aps[has] = sums[has] / positives[has]
    return aps


def _reduce_aps(aps: np.ndarray, positives: np.ndarray, empty_classes: str) -> float:
    if empty_classes not in _EMPTY_CLASSES:
        raise ValueError(f"empty_classes must be one of {_EMPTY_CLASSES}, got {empty_classes!r}")
    if empty_classes == "zero":
        return float(aps.sum() / aps.size) if aps.size else 0.0
    has = positives > 0
    return float(aps[has].mean()) if has.any() else 0.0


def hit_at_k(predictions: Any, labels: Any, k: int = 1, chunk_size: int = DEFAULT_CHUNK_SIZE) -> float:
    """Fraction of *all* videos with a true label among their top-``k`` classes (Hit@1 for ``k=1``)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    p, y = _check_pair(predictions, labels)
    if p.shape[0] == 0:
        return 0.0
    return sum(_chunk_hits(pc, yc, k) for pc, yc in _chunks(p, y, chunk_size)) / p.shape[0]


def perr(predictions: Any, labels: Any, chunk_size: int = DEFAULT_CHUNK_SIZE) -> float:
    """Precision at equal recall rate, averaged over *all* videos (official semantics, see module doc)."""
    p, y = _check_pair(predictions, labels)
    if p.shape[0] == 0:
        return 0.0
    return sum(_ChunkSummary(pc, yc, 1).perr for pc, yc in _chunks(p, y, chunk_size)) / p.shape[0]


def gap(predictions: Any, labels: Any, top_k: int = 20) -> float:
    """Global average precision over the pooled top-``top_k`` pairs of every video (official GAP)."""
    p, y = _check_pair(predictions, labels)
    _, scores, pair_labels = top_k_pairs(p, y, top_k)
    return _gap_from_pairs(scores, pair_labels, float(np.count_nonzero(y)))


def mean_average_precision(
    predictions: Any, labels: Any, top_k: int = 20, empty_classes: str = "skip"
) -> float:
    """Mean over classes of the per-class AP on the top-``top_k``-filtered pairs (official mAP).

    Args:
      empty_classes: ``"skip"`` averages over classes with at least one positive (official
        google/youtube-8m); ``"zero"`` divides by ``num_classes`` (TF Model Garden).
    """
    p, y = _check_pair(predictions, labels)
    classes, scores, pair_labels = top_k_pairs(p, y, top_k)
    positives = np.count_nonzero(y, axis=0).astype(np.float64)
    return _reduce_aps(_class_aps(classes, scores, pair_labels, positives), positives, empty_classes)


class Evaluator:
    """Streaming evaluation: ``update`` batch by batch, ``result()`` equals ``evaluate`` on the concatenation.

    Memory is O(num_videos * top_k) for the retained (class, score, label) triples, as in the official
    ``AveragePrecisionCalculator`` (about 260 bytes per video at ``top_k=20``).
    """

    def __init__(self, num_classes: int, top_k: int = 20, empty_classes: str = "skip") -> None:
        if num_classes < 1 or top_k < 1:
            raise ValueError(f"num_classes and top_k must be >= 1, got {num_classes}, {top_k}")
        if empty_classes not in _EMPTY_CLASSES:
            raise ValueError(f"empty_classes must be one of {_EMPTY_CLASSES}, got {empty_classes!r}")
        self.num_classes = num_classes
        self.top_k = top_k
        self.empty_classes = empty_classes
        self.reset()

    def reset(self) -> None:
        self.num_videos = 0
        self._hits = 0.0
        self._perr = 0.0
        self._positives = np.zeros(self.num_classes, np.float64)
        self._classes: list[np.ndarray] = []
        self._scores: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []

    def update(self, predictions: Any, labels: Any) -> None:
        p, y = _check_pair(predictions, labels)
        if p.shape[1] != self.num_classes:
            raise ValueError(f"expected {self.num_classes} classes, got predictions of shape {p.shape}")
        for pc, yc in _chunks(p, y, DEFAULT_CHUNK_SIZE):
            summary = _ChunkSummary(pc, yc, self.top_k)
            self._hits += summary.hits
            self._perr += summary.perr
            self._positives += summary.positives
            self._classes.append(summary.classes)
            self._scores.append(summary.scores)
            self._labels.append(summary.labels)
        self.num_videos += p.shape[0]

    def result(self) -> dict[str, float]:
        """``{"hit_at_one", "perr", "gap", "map", "num_videos"}`` over everything seen so far."""
        if self.num_videos == 0:
            return {"hit_at_one": 0.0, "perr": 0.0, "gap": 0.0, "map": 0.0, "num_videos": 0}
        classes = np.concatenate(self._classes)
        scores = np.concatenate(self._scores)
        pair_labels = np.concatenate(self._labels)
        aps = _class_aps(classes, scores, pair_labels, self._positives)
        return {
            "hit_at_one": self._hits / self.num_videos,
            "perr": self._perr / self.num_videos,
            "gap": _gap_from_pairs(scores, pair_labels, float(self._positives.sum())),
            "map": _reduce_aps(aps, self._positives, self.empty_classes),
            "num_videos": self.num_videos,
        }


def evaluate(predictions: Any, labels: Any, top_k: int = 20, empty_classes: str = "skip") -> dict[str, float]:
    """All four benchmark metrics: ``{"hit_at_one", "perr", "gap", "map"}``."""
    p, y = _check_pair(predictions, labels)
    ev = Evaluator(p.shape[1], top_k=top_k, empty_classes=empty_classes)
    ev.update(p, y)
    out = ev.result()
    out.pop("num_videos")
    return out
