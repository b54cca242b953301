"""Learnable pooling of frame features into one video vector (YouTube-8M challenge winners).

**NetVLAD family** (Miech, Laptev, Sivic 2017, "Learnable pooling with Context Gating for video
classification", arXiv 1706.06905, §3.1). Every frame ``x_i`` (``D`` values) is softly assigned to ``K``
learned clusters,

    a_k(x_i) = softmax_k(w_k^T x_i + b_k)                                   (soft assignment)

where, as in the authors' code, ``b`` is replaced by a batch normalisation of ``w^T x`` when
``batch_norm=True``. Then

- :class:`NetVLAD`: ``VLAD(j, k) = Σ_i a_k(x_i) (x_i(j) - c_k(j))`` with learned centres ``c_k``;
- :class:`NetRVLAD`: ``RVLAD(j, k) = Σ_i a_k(x_i) x_i(j)`` (no residuals, no centres);
- :class:`NetFV`: the first- and second-order Fisher vectors ``FV1(j, k) = Σ_i a_k(x_i) (x_i(j) - c_k(j)) /
  σ_k(j)`` and ``FV2(j, k) = Σ_i a_k(x_i) [((x_i(j) - c_k(j)) / σ_k(j))² - 1]`` with learned ``σ_k``;
- :class:`SoftDBoF`: the sum of the assignments ``Σ_i a_k(x_i)`` (a soft bag of visual words).

VLAD-type descriptors are intra-normalised (each cluster's ``D`` values to unit L2 norm) and then
L2-normalised as a whole (Arandjelović et al.'s NetVLAD, which §3.1 follows); FV2 is only L2-normalised
and SoftDBoF L2-normalised, as in the authors' code.

**NeXtVLAD** (Lin, Xiao, Fan 2018, "NeXtVLAD: An Efficient Neural Network to Aggregate Frame-level
Features for Large-scale Video Classification", arXiv 1811.05014, §3.2, Eq. 4-6): each frame is
expanded to ``λD`` values, split into ``G`` groups of ``λD/G``; each group is assigned to the ``K``
clusters shared by all groups and weighted by a per-group sigmoid attention ``α_g(x_i)``, and the
residuals of all groups are summed per cluster: ``VLAD(j, k) = Σ_i Σ_g α_g(x̃_i) a_gk(x̃_i) (x̃_ig(j) -
c_k(j))``, then intra-normalised. The output has ``K λD / G`` values (the paper's dimension reduction
compared with NetVLAD's ``K D``).

Inputs are ``(frames [B, T, D], num_frames [B])``: frames ``t >= num_frames`` are padding (as in
``zoo/layers/video.py``) and never change the output, also in training, where the batch norm of the
cluster scores takes its moments over the real frames only. A bare tensor ``[B, T, D]`` means every frame
is real (e.g. frames picked by :class:`zoo.layers.FrameSampler`). Output layouts are cluster-major:
``[B, K, D]`` flattened to ``[B, K * D]``.

Initialisers follow the authors' code: ``N(0, 1/sqrt(D))`` for the NetVLAD family (the covariances of NetFV
``N(1, 1/sqrt(D))`` before squaring), He normal (``slim.variance_scaling_initializer``) for NeXtVLAD.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from zoo.layers.batch_norm import sync_batch_norm
from zoo.layers.video import frame_mask

__all__ = ["NetVLAD", "NetRVLAD", "NetFV", "SoftDBoF", "NeXtVLAD", "l2_normalize"]


def l2_normalize(x: Any, axis: int = -1) -> Any:
    """``x / max(||x||, 1e-6)`` along ``axis`` (``tf.nn.l2_normalize``'s epsilon: 1e-12 on the squared norm);
    an all-zero vector stays zero with finite gradients."""
    return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=axis, keepdims=True), 1e-12))


def _split(inputs: Any) -> tuple[Any, Any]:
    """``(frames, bool mask [B, T] or None)`` from ``(frames, num_frames)`` or a bare frames tensor."""
    if isinstance(inputs, list | tuple):
        x, num_frames = inputs
        return x, frame_mask(num_frames, ops.shape(x)[1])
    return inputs, None


def _frames_shape(input_shape: Any) -> tuple:
    if isinstance(input_shape, list | tuple) and input_shape and isinstance(input_shape[0], list | tuple):
        return tuple(input_shape[0])
    return tuple(input_shape)


def _normal(stddev: float, mean: float = 0.0) -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(mean=mean, stddev=stddev)


class _SoftAssignment(keras.layers.Layer):
    """Shared part of the NetVLAD family: the soft assignment ``a_k(x_i)`` of every real frame."""

    def __init__(self, num_clusters: int, batch_norm: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(num_clusters) < 2:  # a softmax over one cluster is constant: nothing would train
            raise ValueError(f"{type(self).__name__}: num_clusters={num_clusters!r} must be >= 2")
        self.num_clusters = int(num_clusters)
        self.batch_norm = bool(batch_norm)
        self.bn = sync_batch_norm(name="cluster_bn") if self.batch_norm else None

    def build(self, input_shape: Any) -> None:
        d = int(_frames_shape(input_shape)[-1])
        self.feature_size = d
        std = 1.0 / math.sqrt(d)
        self.cluster_kernel = self.add_weight(
            name="cluster_kernel", shape=(d, self.num_clusters), initializer=_normal(std)
        )
        if self.bn is not None:
            self.bn.build((None, None, self.num_clusters))
        else:
            self.cluster_bias = self.add_weight(
                name="cluster_bias", shape=(self.num_clusters,), initializer=_normal(std)
            )
        self.build_descriptor(d)

    def build_descriptor(self, d: int) -> None:
        """Weights of the descriptor beyond the assignment (centres, covariances)."""

    def assign(self, x: Any, mask: Any, training: bool | None) -> Any:
        """``[B, T, K]`` soft assignments, zero on padded frames."""
        h = ops.matmul(x, self.cluster_kernel)
        if self.bn is not None:
            h = self.bn(h, training=training, mask=mask)
        else:
            h = h + self.cluster_bias
        a = ops.softmax(h, axis=-1)
        if mask is not None:
            a = a * ops.cast(mask, a.dtype)[:, :, None]
        return a

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_clusters": self.num_clusters, "batch_norm": self.batch_norm}


@keras.saving.register_keras_serializable(package="zoo")
class NetVLAD(_SoftAssignment):
    """NetVLAD pooling (Miech et al. 2017, §3.1): ``[B, T, D] -> [B, K * D]``.

    ``VLAD(j, k) = Σ_i a_k(x_i) (x_i(j) - c_k(j))`` over the real frames, intra-normalised per cluster,
    flattened cluster-major and L2-normalised.

    Args:
      num_clusters: K (the 2017 winner: 256 for rgb, 128 for audio).
      batch_norm: batch-normalise the cluster scores instead of adding a bias (authors' code: yes).
      **kwargs: base layer keyword arguments (``name``, ``dtype``).

    Call arguments:
      inputs: ``(frames [B, T, D], num_frames [B])``, or frames alone when all are real.
      training: batch norm uses batch moments over the real frames (``True``) or its moving averages.

    Returns:
      ``[B, K * D]``, unit L2 norm, each cluster's block of ``D`` values of equal norm ``1 / sqrt(K)``.

    Example:

    >>> vlad = NetVLAD(num_clusters=4)
    >>> out = vlad([np.ones((2, 5, 3), "float32"), np.array([5, 2], "int32")])
    >>> tuple(out.shape)
    (2, 12)
    """

    residual = True

    def build_descriptor(self, d: int) -> None:
        if self.residual:
            self.centers = self.add_weight(
                name="centers", shape=(self.num_clusters, d), initializer=_normal(1.0 / math.sqrt(d))
            )

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        x, mask = _split(inputs)
        a = self.assign(x, mask, training)
        v = ops.einsum("btk,btd->bkd", a, x)
        if self.residual:
            v = v - ops.sum(a, axis=1)[:, :, None] * self.centers
        v = l2_normalize(v, axis=-1)  # intra-normalisation
        return l2_normalize(ops.reshape(v, (-1, self.num_clusters * self.feature_size)))

    def compute_output_shape(self, input_shape: Any) -> tuple:
        b, _, d = _frames_shape(input_shape)
        return (b, self.num_clusters * int(d))


@keras.saving.register_keras_serializable(package="zoo")
class NetRVLAD(NetVLAD):
    """NetRVLAD ("residual-less" VLAD, Miech et al. 2017, §3.1): ``[B, T, D] -> [B, K * D]``.

    ``RVLAD(j, k) = Σ_i a_k(x_i) x_i(j)``: NetVLAD without cluster centres (fewer parameters, the
    authors' ``LightVLAD``), normalised like :class:`NetVLAD`.

    Args:
      num_clusters: K (the authors' gated NetRVLAD: 256 rgb, 128 audio).
      batch_norm: batch-normalise the cluster scores instead of adding a bias.
      **kwargs: base layer keyword arguments (``name``, ``dtype``).

    Call arguments:
      inputs: ``(frames [B, T, D], num_frames [B])``, or frames alone when all are real.
      training: batch norm mode.

    Returns:
      ``[B, K * D]``, intra- and L2-normalised.

    Example:

    >>> tuple(NetRVLAD(num_clusters=2)(np.ones((1, 3, 4), "float32")).shape)
    (1, 8)
    """

    residual = False


@keras.saving.register_keras_serializable(package="zoo")
class NetFV(_SoftAssignment):
    """NetFV pooling, first- and second-order Fisher vectors (Miech et al. 2017, §3.1): ``-> [B, 2 K D]``.

    With ``σ_k(j) = w_k(j)² + 1e-6`` (learned ``w``, as in the authors' code):
    ``FV1(j, k) = Σ_i a_k(x_i) (x_i(j) - c_k(j)) / σ_k(j)`` (intra-normalised, then L2-normalised) and
    ``FV2(j, k) = Σ_i a_k(x_i) [(x_i(j) - c_k(j))² / σ_k(j)² - 1]`` (L2-normalised), concatenated
    ``[FV1, FV2]``. The centres are not coupled to the assignment weights (``--fv_couple_weights=False``
    of the 2017 submission).

    Args:
      num_clusters: K (the authors' gated NetFV: 128 rgb, 64 audio).
      batch_norm: batch-normalise the cluster scores instead of adding a bias.
      **kwargs: base layer keyword arguments (``name``, ``dtype``).

    Call arguments:
      inputs: ``(frames [B, T, D], num_frames [B])``, or frames alone when all are real.
      training: batch norm mode.

    Returns:
      ``[B, 2 * K * D]``: ``FV1`` then ``FV2``, each of unit L2 norm.

    Example:

    >>> tuple(NetFV(num_clusters=2)(np.ones((1, 3, 4), "float32")).shape)
    (1, 16)
    """

    def build_descriptor(self, d: int) -> None:
        std = 1.0 / math.sqrt(d)
        self.centers = self.add_weight(name="centers", shape=(self.num_clusters, d), initializer=_normal(std))
        self.covariance = self.add_weight(
            name="covariance", shape=(self.num_clusters, d), initializer=_normal(std, mean=1.0)
        )

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        x, mask = _split(inputs)
        a = self.assign(x, mask, training)
        a_sum = ops.sum(a, axis=1)[:, :, None]  # [B, K, 1]
        s1 = ops.einsum("btk,btd->bkd", a, x)
        s2 = ops.einsum("btk,btd->bkd", a, ops.square(x))
        sigma = ops.square(self.covariance) + 1e-6
        c = self.centers
        fv1 = (s1 - a_sum * c) / sigma
        fv2 = (s2 - 2.0 * c * s1 + a_sum * ops.square(c)) / ops.square(sigma) - a_sum
        flat = self.num_clusters * self.feature_size
        fv1 = l2_normalize(ops.reshape(l2_normalize(fv1, axis=-1), (-1, flat)))
        fv2 = l2_normalize(ops.reshape(fv2, (-1, flat)))
        return ops.concatenate([fv1, fv2], axis=-1)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        b, _, d = _frames_shape(input_shape)
        return (b, 2 * self.num_clusters * int(d))


@keras.saving.register_keras_serializable(package="zoo")
class SoftDBoF(_SoftAssignment):
    """Soft Deep Bag of Frames (Miech et al. 2017, §3.1, "Soft-DBoW"): ``[B, T, D] -> [B, K]``.

    The sum over the real frames of the soft assignments, L2-normalised; with ``max_pool=True`` also their
    maximum, L2-normalised and appended (the authors' ``--softdbof_maxpool``, off in the submission).

    Args:
      num_clusters: K (the authors' Soft-DBoW: 8000 rgb, 1000 audio).
      max_pool: append the L2-normalised max over frames (output ``[B, 2K]``).
      batch_norm: batch-normalise the cluster scores instead of adding a bias.
      **kwargs: base layer keyword arguments (``name``, ``dtype``).

    Call arguments:
      inputs: ``(frames [B, T, D], num_frames [B])``, or frames alone when all are real.
      training: batch norm mode.

    Returns:
      ``[B, K]`` (or ``[B, 2K]``), each part of unit L2 norm.

    Example:

    >>> tuple(SoftDBoF(num_clusters=6)(np.ones((1, 3, 4), "float32")).shape)
    (1, 6)
    """

    def __init__(self, num_clusters: int, max_pool: bool = False, batch_norm: bool = True, **kwargs: Any):
        super().__init__(num_clusters, batch_norm, **kwargs)
        self.max_pool = bool(max_pool)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        x, mask = _split(inputs)
        a = self.assign(x, mask, training)
        out = l2_normalize(ops.sum(a, axis=1))
        if self.max_pool:  # padded frames have a = 0 <= every real assignment
            out = ops.concatenate([out, l2_normalize(ops.max(a, axis=1))], axis=-1)
        return out

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (_frames_shape(input_shape)[0], self.num_clusters * (2 if self.max_pool else 1))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "max_pool": self.max_pool}


@keras.saving.register_keras_serializable(package="zoo")
class NeXtVLAD(keras.layers.Layer):
    """NeXtVLAD pooling (Lin, Xiao, Fan 2018, §3.2, Eq. 4-6): ``[B, T, D] -> [B, K * λD / G]``.

    ``x̃ = x W_e + b_e`` expands each frame to ``λD`` values, split into ``G`` groups ``x̃_g`` of ``λD / G``;
    the group attention ``α_g = σ(x̃ W_a + b_a)`` (Eq. 4), the assignments ``a_gk = softmax_k(BN(x̃ W_c))``
    (cluster scores of every group from the full expanded frame, Eq. 5; batch norm instead of a bias as in
    the authors' code), and ``VLAD(j, k) = Σ_i Σ_g α_g a_gk (x̃_ig(j) - c_k(j))`` (Eq. 6), intra-normalised
    per cluster. The authors follow it with a batch norm rather than an L2 norm; that is the model's.

    Args:
      num_clusters: K (2018 single model: 128 rgb, 64 audio).
      groups: G (2018: 8 rgb, 4 audio); ``λD`` must be divisible by ``G``.
      expansion: λ (2018: 2).
      **kwargs: base layer keyword arguments (``name``, ``dtype``).

    Call arguments:
      inputs: ``(frames [B, T, D], num_frames [B])``, or frames alone when all are real.
      training: batch norm mode (moments over the real frames).

    Returns:
      ``[B, K * λD / G]``, each cluster's block intra-normalised.

    Example:

    >>> layer = NeXtVLAD(num_clusters=4, groups=2, expansion=2)
    >>> tuple(layer([np.ones((2, 5, 3), "float32"), np.array([5, 1], "int32")]).shape)
    (2, 12)
    """

    def __init__(self, num_clusters: int, groups: int = 8, expansion: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for key, value, low in (
            ("num_clusters", num_clusters, 2),
            ("groups", groups, 1),
            ("expansion", expansion, 1),
        ):
            if int(value) < low:
                raise ValueError(f"NeXtVLAD: {key}={value!r} must be >= {low}")
        self.num_clusters = int(num_clusters)
        self.groups = int(groups)
        self.expansion = int(expansion)
        self.bn = sync_batch_norm(name="cluster_bn")

    def build(self, input_shape: Any) -> None:
        d = int(_frames_shape(input_shape)[-1])
        wide = self.expansion * d
        if wide % self.groups:
            raise ValueError(
                f"NeXtVLAD: expansion * feature size = {self.expansion} * {d} = {wide} is not divisible "
                f"by groups={self.groups}"
            )
        self.group_size = wide // self.groups
        k, g = self.num_clusters, self.groups
        self.expand_kernel = self.add_weight(name="expand_kernel", shape=(d, wide), initializer="he_normal")
        self.expand_bias = self.add_weight(name="expand_bias", shape=(wide,), initializer="zeros")
        self.attention_kernel = self.add_weight(
            name="attention_kernel", shape=(wide, g), initializer="he_normal"
        )
        self.attention_bias = self.add_weight(name="attention_bias", shape=(g,), initializer="zeros")
        self.cluster_kernel = self.add_weight(
            name="cluster_kernel", shape=(wide, g * k), initializer="he_normal"
        )
        self.bn.build((None, None, g * k))
        self.centers = self.add_weight(name="centers", shape=(k, self.group_size), initializer="he_normal")

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        x, mask = _split(inputs)
        k, g = self.num_clusters, self.groups
        t = ops.shape(x)[1]
        wide = ops.matmul(x, self.expand_kernel) + self.expand_bias  # [B, T, λD]
        attention = ops.sigmoid(ops.matmul(wide, self.attention_kernel) + self.attention_bias)  # [B, T, G]
        if mask is not None:
            attention = attention * ops.cast(mask, attention.dtype)[:, :, None]
        scores = self.bn(ops.matmul(wide, self.cluster_kernel), training=training, mask=mask)
        a = ops.softmax(ops.reshape(scores, (-1, t, g, k)), axis=-1) * attention[:, :, :, None]
        grouped = ops.reshape(wide, (-1, t, g, self.group_size))
        v = ops.einsum("btgk,btgd->bkd", a, grouped)
        v = v - ops.sum(a, axis=(1, 2))[:, :, None] * self.centers
        v = l2_normalize(v, axis=-1)
        return ops.reshape(v, (-1, k * self.group_size))

    def compute_output_shape(self, input_shape: Any) -> tuple:
        b, _, d = _frames_shape(input_shape)
        return (b, self.num_clusters * self.expansion * int(d) // self.groups)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_clusters": self.num_clusters,
            "groups": self.groups,
            "expansion": self.expansion,
        }
