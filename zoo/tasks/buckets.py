"""Fixed length buckets for padded sequence batches: XLA compiles one program per bucket instead of one per
length. Shared by the handwriting task (stroke lines) and the translation task (sentence pairs)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

__all__ = ["check_buckets", "bucket_index"]


def check_buckets(buckets: Any, max_length: int, low: int = 1) -> tuple[int, ...]:
    """The recipe's ``bucket_lengths`` below ``max_length``, plus ``max_length`` itself, sorted; a ValueError
    naming the recipe key when ``buckets`` is not a list of whole numbers >= ``low``."""
    if not isinstance(buckets, list | tuple) or not all(
        isinstance(b, int) and not isinstance(b, bool) and b >= low for b in buckets
    ):
        raise ValueError(f"recipe key bucket_lengths={buckets!r} must be a list of whole numbers >= {low}")
    return tuple(sorted({int(b) for b in buckets if b < max_length} | {int(max_length)}))


def bucket_index(bounds: Any, length: Any) -> Any:
    """In-graph index of the smallest bucket in ``bounds`` (sorted int64 tensor) holding ``length``; the
    last bucket must hold every length (:func:`check_buckets` makes it ``max_length``)."""
    return tf.argmax(tf.cast(tf.cast(length, tf.int64) <= bounds, tf.int64))
