"""Classifier heads for multi-label video classification (Abu-El-Haija et al. 2016, §4.3).

- :class:`LogisticClassifier`: one-vs-all logistic regression ``σ(x W + b)`` per class (§4.3, "logistic
  regression"), or, with ``activation=None``, the linear scores ``x W + b`` trained with the hinge loss
  (§4.3, b = 1).
- :class:`MixtureOfExperts`: §4.3.3, for every class e

      p(e | x) = Σ_{h=1..|H|} p(h | x) σ(u_h^T x),   p(h | x) = softmax_h(w_h^T x) over |H| + 1 states,

  where the extra (dummy) state predicts "e absent" with probability 1 and so contributes nothing to
  the sum. The gate has no bias (as in the official starter code's ``MoeModel``); the experts have one.

Weights: glorot-uniform kernels (slim's default xavier initializer in the official code; the paper does
not say), zero biases. ``weight_decay`` is the official L2 on classifier weights (default there 1e-8),
applied as ``weight_decay * sum(W**2) / 2`` (``tf.nn.l2_loss``, what ``slim.l2_regularizer`` computes) and
collected in ``model.losses``.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

__all__ = ["LogisticClassifier", "MixtureOfExperts"]


def _l2(weight_decay: float) -> keras.regularizers.Regularizer | None:
    return keras.regularizers.L2(weight_decay / 2.0) if weight_decay else None


@keras.saving.register_keras_serializable(package="zoo")
class LogisticClassifier(keras.layers.Layer):
    """One-vs-all logistic regression (§4.3): ``σ(x W + b)``, or the linear scores ``x W + b``.

    Args:
      num_classes: C, output units.
      activation: ``"sigmoid"`` (probabilities, cross-entropy loss) or ``None`` (scores for the hinge
        loss, §4.3, b = 1).
      weight_decay: L2 coefficient on ``W`` as ``weight_decay * sum(W**2) / 2`` (official 1e-8).
      **kwargs: base layer keyword arguments (``name``, ``dtype``).

    Call arguments:
      x: ``[..., D]`` features (video level ``[B, D]``, or per frame ``[B, T, D]``).

    Returns:
      ``[..., C]`` probabilities or scores.

    Example:

    >>> head = LogisticClassifier(num_classes=4)
    >>> probs = keras.ops.convert_to_numpy(head(np.ones((2, 8), "float32")))
    >>> probs.shape, bool(((probs > 0) & (probs < 1)).all())
    ((2, 4), True)
    """

    ACTIVATIONS = ("sigmoid", None)

    def __init__(
        self, num_classes: int, activation: str | None = "sigmoid", weight_decay: float = 0.0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"LogisticClassifier: activation={activation!r}; valid: 'sigmoid', None")
        self.num_classes = int(num_classes)
        self.activation = activation
        self.weight_decay = float(weight_decay)

    def build(self, input_shape: Any) -> None:
        d = int(input_shape[-1])
        self.kernel = self.add_weight(
            name="kernel",
            shape=(d, self.num_classes),
            initializer="glorot_uniform",
            regularizer=_l2(self.weight_decay),
        )
        self.bias = self.add_weight(name="bias", shape=(self.num_classes,), initializer="zeros")

    def call(self, x: Any) -> Any:
        logits = ops.matmul(x, self.kernel) + self.bias
        return ops.sigmoid(logits) if self.activation == "sigmoid" else logits

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (*input_shape[:-1], self.num_classes)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "activation": self.activation,
            "weight_decay": self.weight_decay,
        }


@keras.saving.register_keras_serializable(package="zoo")
class MixtureOfExperts(keras.layers.Layer):
    """Mixture of ``num_mixtures`` logistic experts per class with a dummy "no" state (§4.3.3).

    ``[B, D] -> [B, C]`` probabilities. Weight layout is the official ``MoeModel``'s (its reshape of the
    gate and expert activations): ``gate_kernel`` ``[D, C * (H + 1)]`` (no bias) and ``expert_kernel``
    ``[D, C * H]`` + ``expert_bias``; class c's states are columns ``c*(H+1) .. c*(H+1)+H`` (the last
    one is the dummy state).

    Args:
      num_classes: C, output units.
      num_mixtures: |H|, experts per class (paper and official default: 2).
      weight_decay: L2 coefficient on the gate and expert kernels, ``weight_decay * sum(W**2) / 2``.
      **kwargs: base layer keyword arguments (``name``, ``dtype``).

    Call arguments:
      x: ``[B, D]`` features.

    Returns:
      ``[B, C]`` probabilities ``p(e | x)``; below 1 since the dummy state takes part of the gate.

    Example:

    >>> moe = MixtureOfExperts(num_classes=3, num_mixtures=2)
    >>> probs = keras.ops.convert_to_numpy(moe(np.zeros((1, 5), "float32")))
    >>> [round(float(p), 4) for p in probs[0]]  # zero input: gate 1/3 per state, experts 0.5: 2 * 1/3 * 0.5
    [0.3333, 0.3333, 0.3333]
    """

    def __init__(self, num_classes: int, num_mixtures: int = 2, weight_decay: float = 0.0, **kwargs: Any):
        super().__init__(**kwargs)
        if int(num_mixtures) < 1:
            raise ValueError(f"MixtureOfExperts: num_mixtures={num_mixtures!r} must be >= 1")
        self.num_classes = int(num_classes)
        self.num_mixtures = int(num_mixtures)
        self.weight_decay = float(weight_decay)

    def build(self, input_shape: Any) -> None:
        d = int(input_shape[-1])
        c, h = self.num_classes, self.num_mixtures
        self.gate_kernel = self.add_weight(
            name="gate_kernel",
            shape=(d, c * (h + 1)),
            initializer="glorot_uniform",
            regularizer=_l2(self.weight_decay),
        )
        self.expert_kernel = self.add_weight(
            name="expert_kernel",
            shape=(d, c * h),
            initializer="glorot_uniform",
            regularizer=_l2(self.weight_decay),
        )
        self.expert_bias = self.add_weight(name="expert_bias", shape=(c * h,), initializer="zeros")

    def call(self, x: Any) -> Any:
        c, h = self.num_classes, self.num_mixtures
        gate = ops.softmax(ops.reshape(ops.matmul(x, self.gate_kernel), (-1, c, h + 1)), axis=-1)
        experts = ops.sigmoid(ops.reshape(ops.matmul(x, self.expert_kernel) + self.expert_bias, (-1, c, h)))
        return ops.sum(gate[:, :, :h] * experts, axis=-1)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (input_shape[0], self.num_classes)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "num_mixtures": self.num_mixtures,
            "weight_decay": self.weight_decay,
        }
