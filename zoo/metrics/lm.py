"""Bits per character (HyperNetworks §4.3-4.4, Tables 3-4).

bpc = (1 / N) Σ_t -log2 p(x_{t+1} | x_{≤t}) over the N next-character predictions of a split, i.e. the mean
cross-entropy in nats divided by ln 2. Over a whole split the model's recurrent state is carried from one
window to the next (:func:`split_bits_per_character`), as the paper evaluates its stateful models; a target
below 0 (:data:`zoo.data.text.PAD_TARGET`) marks a padded position that does not count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import keras
import numpy as np

__all__ = [
    "LN2",
    "masked_cross_entropy",
    "bits_per_character",
    "BitsPerCharacter",
    "split_bits_per_character",
]

LN2 = math.log(2.0)


def masked_cross_entropy(targets: Any, logits: Any) -> tuple[Any, Any]:
    """Per-position cross-entropy in nats and the 0/1 mask of real positions.

    ``targets`` int [..., T] (negative = padding), ``logits`` float [..., T, V]. Padded positions get loss 0.
    """
    targets = keras.ops.convert_to_tensor(targets)
    mask = keras.ops.cast(keras.ops.greater_equal(targets, 0), "float32")
    safe = keras.ops.maximum(targets, 0)
    ce = keras.ops.sparse_categorical_crossentropy(safe, keras.ops.cast(logits, "float32"), from_logits=True)
    return ce * mask, mask


def bits_per_character(total_nats: float, count: float) -> float:
    """Mean cross-entropy in bits of ``count`` predictions whose summed cross-entropy is ``total_nats``."""
    if count <= 0:
        raise ValueError(f"bits per character of {count} predictions is undefined")
    return float(total_nats) / float(count) / LN2


@keras.saving.register_keras_serializable(package="zoo")
class BitsPerCharacter(keras.metrics.Metric):
    """Streaming bits per character: Σ nats / Σ real positions / ln 2 over every update.

    ``update_state(targets, logits)`` with ``targets`` int ``[B, T]`` (negative = padding) and ``logits``
    ``[B, T, V]``.
    """

    def __init__(self, name: str = "bpc", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.total_nats = self.add_variable(shape=(), initializer="zeros", name="total_nats", dtype="float64")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count", dtype="float64")

    def update_state(self, targets: Any, logits: Any, sample_weight: Any = None) -> None:
        ce, mask = masked_cross_entropy(targets, logits)
        if sample_weight is not None:
            w = keras.ops.cast(sample_weight, "float32")
            while len(w.shape) < len(ce.shape):
                w = keras.ops.expand_dims(w, -1)
            ce, mask = ce * w, mask * w
        self.total_nats.assign_add(keras.ops.cast(keras.ops.sum(ce), "float64"))
        self.count.assign_add(keras.ops.cast(keras.ops.sum(mask), "float64"))

    def result(self) -> Any:
        return keras.ops.cast(keras.ops.divide_no_nan(self.total_nats, self.count) / LN2, "float32")

    def reset_state(self) -> None:
        self.total_nats.assign(0.0)
        self.count.assign(0.0)


def split_bits_per_character(
    step: Callable[[Any, Any, Any], tuple[Any, Any]],
    batches: Iterable[tuple[Any, Any]],
    initial_carry: Callable[[int], Any],
) -> dict[str, float]:
    """Bits per character over a whole split, carrying the recurrent state across batches.

    Args:
      step: ``step(ids, targets, carry) -> (nats, new_carry)`` where ``nats`` is the per-position
        cross-entropy ``[B, T]`` (0 at padded positions).
      batches: ``(ids [B, T], targets [B, T])`` in stream order (``zoo.data.text.eval_windows``).
      initial_carry: ``initial_carry(batch_size) -> carry`` for the first batch.

    Returns:
      ``{"bpc": ..., "nats_per_char": ..., "chars": N}`` with ``N`` the number of real (non-padded)
      predictions, summed in float64.
    """
    total, count, carry = 0.0, 0, None
    for ids, targets in batches:
        if carry is None:
            carry = initial_carry(int(np.shape(ids)[0]))
        nats, carry = step(ids, targets, carry)
        total += float(np.sum(np.asarray(nats, dtype=np.float64)))
        count += int(np.sum(np.asarray(targets) >= 0))
    if count == 0:
        raise ValueError("the split yielded no characters to evaluate")
    return {"bpc": bits_per_character(total, count), "nats_per_char": total / count, "chars": float(count)}


@keras.saving.register_keras_serializable(package="zoo")
class LogPerplexity(BitsPerCharacter):
    """Streaming log perplexity: Σ nats / Σ real positions (nats per token; GNMT's and HyperNetworks Table 6's
    "log perplexity"). Same updates as :class:`BitsPerCharacter`, without the ``/ ln 2``."""

    def __init__(self, name: str = "log_perplexity", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def result(self) -> Any:
        return keras.ops.cast(keras.ops.divide_no_nan(self.total_nats, self.count), "float32")
