"""Task losses that Keras lacks: the YouTube-8M cross-entropy and hinge losses.

Both follow the official YouTube-8M starter code (google/youtube-8m ``losses.py``), which the paper's
benchmark numbers (Abu-El-Haija et al. 2016, §4) were trained with:

* cross-entropy: per example, the sum over classes of
  ``-(y * log(p + eps) + (1 - y) * log(1 - p + eps))`` with ``eps = 1e-5`` inside the logs (the official
  ``epsilon = 10e-6``); the official training loss is its mean over the batch.
* hinge (paper §4.2, "hinge loss" with b = 1): per example, the sum over classes of
  ``max(0, b - (2y - 1) * p)``; mean over the batch.

The functions return the per-example loss ``[B]`` (what ``Task.forward`` and Keras' loss reduction
expect); ``reduction="mean"`` / ``"sum"`` give the scalar. The ``keras.losses.Loss`` subclasses use Keras'
reductions (default ``"sum_over_batch_size"``, i.e. the official mean over the batch).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

__all__ = [
    "yt8m_cross_entropy",
    "yt8m_hinge",
    "YT8MCrossEntropy",
    "YT8MHinge",
    "CROSS_ENTROPY_EPSILON",
]

#: Official ``epsilon = 10e-6`` (= 1e-5) inside both logs of the cross-entropy.
CROSS_ENTROPY_EPSILON = 1e-5
_REDUCTIONS = ("none", "mean", "sum")


def _reduce(per_example: Any, reduction: str) -> Any:
    if reduction == "none":
        return per_example
    if reduction == "mean":
        return ops.mean(per_example)
    if reduction == "sum":
        return ops.sum(per_example)
    raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def yt8m_cross_entropy(
    y_true: Any, y_pred: Any, epsilon: float = CROSS_ENTROPY_EPSILON, reduction: str = "none"
) -> Any:
    """Official YouTube-8M cross-entropy on probabilities.

    Args:
      y_true: multi-hot labels ``[B, C]`` (any numeric dtype).
      y_pred: probabilities ``[B, C]`` (sigmoid or mixture-of-experts outputs, not logits).
      epsilon: added inside both logs (official 1e-5).
      reduction: ``"none"`` -> ``[B]`` (sum over classes); ``"mean"`` -> official training loss (mean over
        the batch); ``"sum"``.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(y_true, y_pred.dtype)
    per_class = -(y_true * ops.log(y_pred + epsilon) + (1.0 - y_true) * ops.log(1.0 - y_pred + epsilon))
    return _reduce(ops.sum(per_class, axis=-1), reduction)


def yt8m_hinge(y_true: Any, y_pred: Any, b: float = 1.0, reduction: str = "none") -> Any:
    """Hinge loss ``sum_c max(0, b - (2y - 1) * p)`` on scores (paper §4.2, official ``HingeLoss``, b = 1).

    Args:
      y_true: multi-hot labels ``[B, C]``.
      y_pred: real-valued scores ``[B, C]`` (the hinge model's linear outputs).
      b: the margin (paper and official code: 1.0).
      reduction: ``"none"`` -> ``[B]``; ``"mean"`` (official); ``"sum"``.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(y_true, y_pred.dtype)
    per_class = ops.maximum(0.0, b - (2.0 * y_true - 1.0) * y_pred)
    return _reduce(ops.sum(per_class, axis=-1), reduction)


@keras.saving.register_keras_serializable(package="zoo")
class YT8MCrossEntropy(keras.losses.Loss):
    """``keras.losses.Loss`` wrapper of :func:`yt8m_cross_entropy` (default reduction = official mean)."""

    def __init__(
        self,
        epsilon: float = CROSS_ENTROPY_EPSILON,
        reduction: str = "sum_over_batch_size",
        name: str = "yt8m_cross_entropy",
        **kwargs: Any,
    ) -> None:
        super().__init__(reduction=reduction, name=name, **kwargs)
        self.epsilon = epsilon

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return yt8m_cross_entropy(y_true, y_pred, epsilon=self.epsilon)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="zoo")
class YT8MHinge(keras.losses.Loss):
    """``keras.losses.Loss`` wrapper of :func:`yt8m_hinge` (default reduction = official mean)."""

    def __init__(
        self, b: float = 1.0, reduction: str = "sum_over_batch_size", name: str = "yt8m_hinge", **kwargs: Any
    ) -> None:
        super().__init__(reduction=reduction, name=name, **kwargs)
        self.b = b

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return yt8m_hinge(y_true, y_pred, b=self.b)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "b": self.b}
