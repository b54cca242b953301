"""Context gating (Miech, Laptev, Sivic 2017, arXiv 1706.06905, §3.2, Eq. 2) and the gated MoE head.

- :class:`ContextGating`: ``Y = σ(W X + b) ∘ X``, a learned per-dimension gate in ``(0, 1)`` that
  re-weights features by their context. As in the authors' code, ``b`` is replaced by a batch
  normalisation of ``W X`` when ``batch_norm=True``. With ``reduction=r > 1`` the gate is the
  squeeze-and-excitation bottleneck of NeXtVLAD (Lin, Xiao, Fan 2018, arXiv 1811.05014, §3.3, Fig. 3):
  ``σ(W_2 relu(BN(W_1 X)))`` with ``W_1: D -> D/r`` and ``W_2: D/r -> D`` (no bias, as their code).
- :class:`GatedMixtureOfExperts`: the existing mixture-of-experts head
  (:class:`zoo.layers.MixtureOfExperts`) whose class probabilities go through a context gating (§3.2,
  "gated MoE": the gate is computed from the probabilities themselves, the authors' ``moe_prob_gating``).
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from zoo.layers.batch_norm import sync_batch_norm
from zoo.layers.heads import MixtureOfExperts

__all__ = ["ContextGating", "GatedMixtureOfExperts"]


@keras.saving.register_keras_serializable(package="zoo")
class ContextGating(keras.layers.Layer):
    """Context gating ``y = σ(W x + b) ⊙ x`` (Miech et al. 2017, Eq. 2): ``[B, D] -> [B, D]``.

    Kernels are drawn from ``N(0, 1/sqrt(fan_in))`` (the authors' code) unless ``kernel_initializer`` is
    given (NeXtVLAD's code: He normal).

    Args:
      batch_norm: replace ``b`` by a batch norm of ``W x`` (authors' code: yes).
      reduction: 1 for one ``D x D`` kernel (Eq. 2); ``r > 1`` for the SE bottleneck ``D -> D/r -> D``
        (NeXtVLAD, r = 8).
      kernel_initializer: a Keras initializer name or ``None`` for ``N(0, 1/sqrt(fan_in))``.
      **kwargs: base layer keyword arguments (``name``, ``dtype``).

    Call arguments:
      x: ``[B, D]`` features.
      training: batch norm mode.

    Returns:
      ``[B, D]``: ``x`` times the gate (:meth:`gate` gives the gate alone).

    Example:

    >>> cg = ContextGating(batch_norm=False)
    >>> x = np.ones((2, 4), "float32")
    >>> g = keras.ops.convert_to_numpy(cg.gate(x))
    >>> bool(((g > 0) & (g < 1)).all()), tuple(cg(x).shape)
    (True, (2, 4))
    """

    def __init__(
        self,
        batch_norm: bool = True,
        reduction: int = 1,
        kernel_initializer: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(reduction) < 1:
            raise ValueError(f"ContextGating: reduction={reduction!r} must be >= 1")
        self.batch_norm = bool(batch_norm)
        self.reduction = int(reduction)
        self.kernel_initializer = kernel_initializer
        self.bn = sync_batch_norm(name="gating_bn") if self.batch_norm else None

    def _init(self, fan_in: int) -> Any:
        if self.kernel_initializer is not None:
            return keras.initializers.get(self.kernel_initializer)
        return keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(fan_in))

    def build(self, input_shape: Any) -> None:
        d = int(input_shape[-1])
        inner = d // self.reduction
        if inner < 1:
            raise ValueError(f"ContextGating: reduction={self.reduction} exceeds the feature size {d}")
        self.kernel = self.add_weight(name="kernel", shape=(d, inner), initializer=self._init(d))
        if self.bn is not None:
            self.bn.build((None, inner))
        else:
            self.bias = self.add_weight(name="bias", shape=(inner,), initializer="zeros")
        if self.reduction > 1:
            self.kernel_2 = self.add_weight(name="kernel_2", shape=(inner, d), initializer=self._init(inner))

    def gate(self, x: Any, training: bool | None = None) -> Any:
        """The gate ``σ(...)`` in ``(0, 1)``, ``[B, D]`` (builds the layer on first use)."""
        if not self.built:
            self.build(tuple(x.shape))
            self.built = True
        h = ops.matmul(x, self.kernel)
        h = self.bn(h, training=training) if self.bn is not None else h + self.bias
        if self.reduction > 1:
            h = ops.matmul(ops.relu(h), self.kernel_2)
        return ops.sigmoid(h)

    def call(self, x: Any, training: bool | None = None) -> Any:
        return x * self.gate(x, training=training)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "batch_norm": self.batch_norm,
            "reduction": self.reduction,
            "kernel_initializer": self.kernel_initializer,
        }


@keras.saving.register_keras_serializable(package="zoo")
class GatedMixtureOfExperts(keras.layers.Layer):
    """Mixture of experts followed by context gating of its probabilities (Miech et al. 2017, §3.2).

    ``p = MoE(x)`` (:class:`zoo.layers.MixtureOfExperts`, §4.3.3 of the YouTube-8M paper), then
    ``p ⊙ σ(BN(p W))`` with ``W`` ``[C, C]``: the gate lets class scores suppress or raise each other
    (the authors' ``--moe_prob_gating``). The output stays in ``[0, 1]``.

    Args:
      num_classes: C.
      num_mixtures: experts per class (2017 winner: 2).
      weight_decay: L2 on the MoE kernels (2017 winner: ``--moe_l2=1e-6``); the gate has none.
      **kwargs: base layer keyword arguments (``name``, ``dtype``).

    Call arguments:
      x: ``[B, D]`` features.
      training: batch norm mode of the gate.

    Returns:
      ``[B, C]`` gated probabilities.

    Example:

    >>> head = GatedMixtureOfExperts(num_classes=3)
    >>> probs = keras.ops.convert_to_numpy(head(np.ones((2, 5), "float32")))
    >>> probs.shape, bool(((probs >= 0) & (probs <= 1)).all())
    ((2, 3), True)
    """

    def __init__(self, num_classes: int, num_mixtures: int = 2, weight_decay: float = 0.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.num_mixtures = int(num_mixtures)
        self.weight_decay = float(weight_decay)
        self.moe = MixtureOfExperts(
            self.num_classes, self.num_mixtures, self.weight_decay, name="moe", dtype=self.dtype_policy
        )
        self.gating = ContextGating(batch_norm=True, name="gating", dtype=self.dtype_policy)

    def build(self, input_shape: Any) -> None:
        self.moe.build(input_shape)
        self.gating.build((input_shape[0], self.num_classes))

    def call(self, x: Any, training: bool | None = None) -> Any:
        return self.gating(self.moe(x), training=training)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (input_shape[0], self.num_classes)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "num_mixtures": self.num_mixtures,
            "weight_decay": self.weight_decay,
        }
