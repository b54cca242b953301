"""Frame-level building blocks for YouTube-8M video models (Abu-El-Haija et al. 2016, §4.1-4.2).

Every layer here takes padded frame features ``[B, T, D]`` together with ``num_frames`` ``[B]`` (the
number of real frames of each video; frames ``t >= num_frames`` are padding, as written by
``zoo.data.yt8m``) and never lets a padded frame influence its output:

- :class:`FrameMask` turns ``num_frames`` into a boolean ``[B, T]`` mask (for masked LSTMs).
- :class:`FrameSampler` picks ``k`` frames per video uniformly *with replacement among the real frames*
  (DBoF, §4.1.2: "k randomly selected frames"; the official starter code samples the same way). Sampling
  happens only with ``training=True``; evaluation uses ``k`` evenly spaced real frames, so predictions
  are deterministic.
- :class:`MaskedPooling` is the mean or max over the real frames (frame logistic averages per-frame
  probabilities, Eq. 1 of §4.1.1; mean features µ of §4.2).
- :class:`FrameStatistics` is the video-level vector [µ; σ; top-K per dimension] of §4.2.1 (K = 5).
- :class:`DBoFBlock` is the shared up-projection + ReLU + batch norm + max pool of §4.1.2 (Figure 7).

Videos with ``num_frames == 0`` are legal input (an empty record): pooled outputs are zeros and the
sampler returns frame 0 (a padded, all-zero frame in our readers).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from zoo.layers.batch_norm import sync_batch_norm

__all__ = ["FrameMask", "FrameSampler", "MaskedPooling", "FrameStatistics", "DBoFBlock", "frame_mask"]


def frame_mask(num_frames: Any, max_frames: Any, dtype: str = "bool") -> Any:
    """``[B, T]`` mask, true where ``t < num_frames[b]``.

    Args:
      num_frames: int ``[B]``, real frames per video.
      max_frames: T, the length of the frame axis.
      dtype: ``"bool"``, or a float dtype for a 0/1 mask.

    Returns:
      ``[B, T]`` tensor of ``dtype``.

    Example:

    >>> keras.ops.convert_to_numpy(frame_mask(np.array([2, 0]), 3)).tolist()
    [[True, True, False], [False, False, False]]
    """
    t = ops.arange(max_frames, dtype="int32")
    mask = ops.expand_dims(t, 0) < ops.expand_dims(ops.cast(num_frames, "int32"), 1)
    return mask if dtype == "bool" else ops.cast(mask, dtype)


@keras.saving.register_keras_serializable(package="zoo")
class FrameMask(keras.layers.Layer):
    """Boolean ``[B, T]`` mask of the real frames, for masked recurrent layers (LSTM model, §4.1.3).

    Args:
      **kwargs: base layer keyword arguments (``name``, ``dtype``).

    Call arguments:
      inputs: a pair ``(features, num_frames)``: padded frames ``[B, T, D]`` (only the shape is used)
        and int ``[B]`` real frames per video.

    Returns:
      bool ``[B, T]``, true where ``t < num_frames[b]``.

    Example:

    >>> x = np.zeros((2, 4, 3), "float32")
    >>> mask = FrameMask()([x, np.array([4, 1], "int32")])
    >>> keras.ops.convert_to_numpy(mask).sum(axis=1).tolist()
    [4, 1]
    """

    def call(self, inputs: Any) -> Any:
        features, num_frames = inputs
        return frame_mask(num_frames, ops.shape(features)[1])

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return tuple(input_shape[0][:2])


@keras.saving.register_keras_serializable(package="zoo")
class FrameSampler(keras.layers.Layer):
    """Picks ``num_samples`` frames per video among its real frames (DBoF input, §4.1.2).

    Training: indices ``floor(u * num_frames)`` with ``u ~ U[0, 1)`` i.i.d., i.e. uniform sampling with
    replacement that never picks a padded frame (as the official ``SampleRandomFrames``).
    Inference: the deterministic, evenly spaced indices ``floor((i + 0.5) * num_frames / k)``,
    ``i = 0..k-1`` (the official code samples randomly at evaluation too; we do not, so that evaluation
    is reproducible). ``sample_at_inference=True`` samples at random at inference too, as the official
    ``DbofModel`` does (``yt8m_dbof_official``).

    Args:
      num_samples: k, frames per video (official default 30).
      seed: seed of the layer's ``keras.random.SeedGenerator``.
      sample_at_inference: draw random frames also with ``training=False`` (official starter code).
      **kwargs: base layer keyword arguments (``name``, ``dtype``).

    Call arguments:
      inputs: a pair ``(features, num_frames)``: padded frames ``[B, T, D]`` and int ``[B]`` real frames
        per video (clipped to ``[1, T]``: a video without frames yields frame 0, a zero padding frame).
      training: sample at random (``True``) or take the evenly spaced frames (``False``, default; random
        too with ``sample_at_inference``).

    Returns:
      ``[B, num_samples, D]``: the chosen frames.

    Example:

    >>> x = np.arange(2 * 6, dtype="float32").reshape(2, 6, 1)
    >>> frames = FrameSampler(3)([x, np.array([6, 2], "int32")])
    >>> keras.ops.convert_to_numpy(frames)[..., 0].tolist()
    [[1.0, 3.0, 5.0], [6.0, 7.0, 7.0]]
    """

    def __init__(
        self, num_samples: int, seed: int | None = None, sample_at_inference: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if int(num_samples) < 1:
            raise ValueError(f"FrameSampler: num_samples={num_samples!r} must be >= 1")
        self.num_samples = int(num_samples)
        self.seed = seed
        self.sample_at_inference = bool(sample_at_inference)
        self._seed_generator = keras.random.SeedGenerator(seed)

    def indices(self, num_frames: Any, training: bool = False, max_frames: Any = None) -> Any:
        """int32 ``[B, k]`` frame indices (see the class docstring). ``num_frames`` is clipped to
        ``[1, max_frames]`` (the frame axis' length), so a client that sends a video's full length with
        frames truncated to ``max_frames`` still only samples frames that exist."""
        n = ops.maximum(ops.cast(num_frames, "int32"), 1)
        if max_frames is not None:
            n = ops.minimum(n, ops.cast(max_frames, "int32"))
        n = ops.cast(n, "float32")
        n = ops.expand_dims(n, 1)
        batch = ops.shape(n)[0]
        if training:
            u = keras.random.uniform((batch, self.num_samples), seed=self._seed_generator)
        else:
            u = (ops.arange(self.num_samples, dtype="float32") + 0.5) / float(self.num_samples)
            u = ops.broadcast_to(ops.expand_dims(u, 0), (batch, self.num_samples))
        idx = ops.cast(ops.floor(u * n), "int32")
        return ops.minimum(idx, ops.cast(n, "int32") - 1)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        features, num_frames = inputs
        random = bool(training) or self.sample_at_inference
        idx = self.indices(num_frames, training=random, max_frames=ops.shape(features)[1])
        return ops.take_along_axis(features, ops.expand_dims(idx, -1), axis=1)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        b, _, d = input_shape[0]
        return (b, self.num_samples, d)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_samples": self.num_samples,
            "seed": self.seed,
            "sample_at_inference": self.sample_at_inference,
        }


@keras.saving.register_keras_serializable(package="zoo")
class MaskedPooling(keras.layers.Layer):
    """Mean or max over the real frames: ``(x [B, T, C], num_frames [B]) -> [B, C]``.

    ``mode="mean"``: Σ_{t < F_v} x_t / F_v (Eq. 1 of §4.1.1 when ``x`` are per-frame probabilities; µ of
    §4.2 when ``x`` are features). ``mode="max"``: max over real frames. Empty videos give zeros.

    Args:
      mode: ``"mean"`` or ``"max"``.
      **kwargs: base layer keyword arguments (``name``, ``dtype``).

    Call arguments:
      inputs: a pair ``(x, num_frames)``: per-frame values ``[B, T, C]`` and int ``[B]`` real frames.

    Returns:
      ``[B, C]``: the pooled values (zeros for a video with ``num_frames == 0``).

    Example:

    >>> x = np.array([[[1.0], [3.0], [100.0]], [[5.0], [6.0], [7.0]]], "float32")
    >>> pooled = MaskedPooling("mean")([x, np.array([2, 0], "int32")])
    >>> keras.ops.convert_to_numpy(pooled).tolist()
    [[2.0], [0.0]]
    """

    MODES = ("mean", "max")

    def __init__(self, mode: str = "mean", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"MaskedPooling: mode={mode!r}; valid: {', '.join(self.MODES)}")
        self.mode = mode

    def call(self, inputs: Any) -> Any:
        x, num_frames = inputs
        mask = frame_mask(num_frames, ops.shape(x)[1], dtype=x.dtype)[:, :, None]
        count = ops.sum(mask, axis=1)
        if self.mode == "mean":
            return ops.sum(x * mask, axis=1) / ops.maximum(count, 1.0)
        neg = ops.convert_to_tensor(-3.0e38, dtype=x.dtype)
        pooled = ops.max(ops.where(mask > 0, x, neg), axis=1)
        return ops.where(count > 0, pooled, ops.zeros_like(pooled))

    def compute_output_shape(self, input_shape: Any) -> tuple:
        b, _, c = input_shape[0]
        return (b, c)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="zoo")
class FrameStatistics(keras.layers.Layer):
    """Video-level statistics [µ; σ; top-K] over the real frames (§4.2.1): ``[B, T, D] -> [B, (2+K)*D]``.

    Layout: ``[mean (D), std (D), top_1 (D), ..., top_K (D)]`` where ``top_j`` holds, per dimension, the
    j-th largest value over the real frames (the population std, divided by ``F_v``). A video with fewer
    than K real frames gets 0 in the missing ranks, an empty video all zeros: the same vector as the
    preprocessing job's ``zoo.data.yt8m_features.video_statistics``.
    The paper PCA-whitens and L2-normalises before this step (§3.3, §4.2): our readers give L2-normalised
    frames, and no further normalisation is applied here.

    Args:
      top_k: K, ordinal statistics per dimension (paper: 5); 0 gives [µ; σ] only.
      **kwargs: base layer keyword arguments (``name``, ``dtype``).

    Call arguments:
      inputs: a pair ``(x, num_frames)``: padded frames ``[B, T, D]`` and int ``[B]`` real frames.

    Returns:
      ``[B, (2 + top_k) * D]``.

    Example:

    >>> x = np.array([[[1.0], [3.0], [-9.0]]], "float32")
    >>> stats = FrameStatistics(top_k=2)([x, np.array([2], "int32")])
    >>> keras.ops.convert_to_numpy(stats).tolist()  # mean, std, largest, second largest
    [[2.0, 1.0, 3.0, 1.0]]
    """

    def __init__(self, top_k: int = 5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(top_k) < 0:
            raise ValueError(f"FrameStatistics: top_k={top_k!r} must be >= 0")
        self.top_k = int(top_k)

    def call(self, inputs: Any) -> Any:
        x, num_frames = inputs
        t = ops.shape(x)[1]
        mask = frame_mask(num_frames, t, dtype=x.dtype)[:, :, None]
        count = ops.maximum(ops.sum(mask, axis=1), 1.0)
        mean = ops.sum(x * mask, axis=1) / count
        var = ops.sum(ops.square(x - mean[:, None, :]) * mask, axis=1) / count
        std = ops.sqrt(ops.maximum(var, 1e-12)) * ops.cast(var > 1e-12, x.dtype)
        parts = [mean, std]
        if self.top_k:
            neg = ops.convert_to_tensor(-3.0e38, dtype=x.dtype)
            masked = ops.where(mask > 0, x, neg)
            k = self.top_k
            # Pad the time axis so that top_k is defined when T < K.
            masked = ops.pad(masked, [[0, 0], [0, k], [0, 0]], constant_values=-3.0e38)
            top = ops.top_k(ops.transpose(masked, (0, 2, 1)), k, sorted=True)[0]  # [B, D, K]
            # Ranks beyond the real frames are 0 (as zoo.data.yt8m_features.video_statistics).
            top = ops.where(top > -1.0e38, top, ops.zeros_like(top))
            parts.append(ops.reshape(ops.transpose(top, (0, 2, 1)), (-1, k * ops.shape(x)[2])))
        return ops.concatenate(parts, axis=-1)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        b, _, d = input_shape[0]
        return (b, None if d is None else (2 + self.top_k) * d)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "top_k": self.top_k}


@keras.saving.register_keras_serializable(package="zoo")
class DBoFBlock(keras.layers.Layer):
    """Deep Bag of Frames pooling (§4.1.2, Figure 7): ``[B, k, N] -> [B, M]``.

    Each frame goes through the *shared* up-projection ``relu(x W + b)`` (M units, M > N gives a sparse
    code), then batch normalisation "before pooling to improve stability", then max pooling over the k
    frames. Order ReLU -> BN -> max pool follows the paper's text; the official starter code applies BN
    before its activation (relu6, sigmoid since 2019) and has no projection bias when BN is on
    (``batch_norm_first=True``).

    Initializers: ``W`` glorot-uniform, ``b`` zeros (Keras defaults; the paper gives none). The official
    starter code differs beyond the activation: ``W ~ N(0, 1/sqrt(feature_size))``, a batch norm on the
    input frames, and a hidden layer of batch norm + activation without bias (ours: ``Dense(relu)`` with
    bias); ``yt8m_dbof_official`` (``zoo/models/yt8m_official.py``) builds that model.
    BN is synchronized on the TensorFlow backend (``zoo/layers/batch_norm.py``) so that replicas under
    MirroredStrategy share moving statistics; its
    statistics are taken over the batch and the k frames.

    Args:
      cluster_size: M, projection units (paper: 8192).
      activation: "relu" (paper) or "relu6" / "sigmoid" (official starter code).
      batch_norm: apply BN before pooling (paper: yes).
      weight_decay: L2 coefficient on ``W`` as ``weight_decay * sum(W**2) / 2`` (``tf.nn.l2_loss``).
      batch_norm_first: the official order, ``act(BN(x W))``: BN before the activation and no projection
        bias (BN's offset takes its place), as the starter code's ``DbofModel`` with BN on. Default
        ``False``: the paper's ``BN(act(x W + b))``. Without ``batch_norm`` it changes nothing.
      momentum: BN moving-average momentum (Keras semantics, ``moving = momentum * moving + (1 -
        momentum) * batch``, the same as TF1's ``decay``; Keras default 0.99, slim's 0.999).
      kernel_initializer: initializer of ``W`` (default glorot-uniform; the starter code's
        ``N(0, 1/sqrt(N))`` is ``VarianceScaling(1.0, "fan_in", "untruncated_normal")``).
      **kwargs: base layer keyword arguments (``name``, ``dtype``).

    Call arguments:
      frames: ``[B, k, N]``, e.g. the output of :class:`FrameSampler` (all frames real).
      training: batch normalisation uses the batch statistics (``True``) or its moving averages.

    Returns:
      ``[B, cluster_size]``: the max-pooled sparse code.

    Example:

    >>> block = DBoFBlock(cluster_size=16)
    >>> tuple(block(np.ones((2, 5, 8), "float32")).shape)
    (2, 16)
    """

    ACTIVATIONS = ("relu", "relu6", "sigmoid")

    def __init__(
        self,
        cluster_size: int = 8192,
        activation: str = "relu",
        batch_norm: bool = True,
        weight_decay: float = 0.0,
        batch_norm_first: bool = False,
        momentum: float = 0.99,
        kernel_initializer: Any = "glorot_uniform",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"DBoFBlock: activation={activation!r}; valid: {', '.join(self.ACTIVATIONS)}")
        self.cluster_size = int(cluster_size)
        self.activation = activation
        self.batch_norm = bool(batch_norm)
        self.weight_decay = float(weight_decay)
        self.batch_norm_first = bool(batch_norm_first) and self.batch_norm
        self.momentum = float(momentum)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bn = sync_batch_norm(momentum=self.momentum, name="batch_norm") if self.batch_norm else None

    def build(self, input_shape: Any) -> None:
        n = int(input_shape[-1])
        reg = keras.regularizers.L2(self.weight_decay / 2.0) if self.weight_decay else None
        self.kernel = self.add_weight(
            name="kernel", shape=(n, self.cluster_size), initializer=self.kernel_initializer, regularizer=reg
        )
        self.bias = None
        if not self.batch_norm_first:
            self.bias = self.add_weight(name="bias", shape=(self.cluster_size,), initializer="zeros")
        if self.bn is not None:
            self.bn.build((input_shape[0], input_shape[1], self.cluster_size))

    def call(self, frames: Any, training: bool | None = None) -> Any:
        h = ops.matmul(frames, self.kernel)
        activation = {"relu": ops.relu, "relu6": ops.relu6, "sigmoid": ops.sigmoid}[self.activation]
        if self.batch_norm_first:  # starter code: act(BN(x W))
            return ops.max(activation(self.bn(h, training=training)), axis=1)
        h = activation(h + self.bias)
        if self.bn is not None:
            h = self.bn(h, training=training)
        return ops.max(h, axis=1)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (input_shape[0], self.cluster_size)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "cluster_size": self.cluster_size,
            "activation": self.activation,
            "batch_norm": self.batch_norm,
            "weight_decay": self.weight_decay,
            "batch_norm_first": self.batch_norm_first,
            "momentum": self.momentum,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }
