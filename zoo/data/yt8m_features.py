"""YouTube-8M feature processing (Abu-El-Haija et al. 2016, §3.3 and §4.2).

* 8-bit quantisation and its inverse, exactly as the official starter code (google/youtube-8m
  ``utils.Dequantize`` and the feature extractor's ``quantize``): with range [-2, 2],
  ``q = round((clip(x, -2, 2) + 2) * 255 / 4)`` and ``x = q * 4/255 + (4/512 - 2)``
  (q = 0 -> -1.9921875, q = 255 -> 2.0078125). The official code evaluates the inverse in float32, one
  rounding after the product and one after the sum; :func:`dequantization_table` holds those 256 values
  and every dequantiser here looks codes up in it, so the result is bit-identical on any backend (XLA on
  CPU fuses ``q * a + b`` into one fused multiply-add, which rounds once and differs by one ulp on 157 of
  the 256 codes).
* Video-level statistics over the *real* frames of a video: [mean; std; top-K per dimension] (§4.2, K = 5).
* PCA with whitening, fitted by streaming over the training set (§3.3 / §4.2), then L2 normalisation;
  its inverse (§4.2.1 computes statistics "in the original ReLU activation space" after de-quantising and
  reversing the PCA), and the released PCA files (``mean.npy``, ``eigenvals.npy``, ``eigenvecs.npy``, as
  the starter code's feature extractor reads them) via :func:`load_pca`.

NumPy versions serve preprocessing jobs; :func:`tf_dequantize` and :func:`tf_video_statistics` run inside
tf.data pipelines.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from zoo.io import atomic_path

__all__ = [
    "QUANT_MIN",
    "QUANT_MAX",
    "quantize",
    "dequantize",
    "dequantization_coefficients",
    "dequantization_table",
    "tf_dequantize",
    "l2_normalize",
    "video_statistics",
    "tf_video_statistics",
    "StreamingPCA",
    "WHITEN_EPSILON",
    "load_pca",
]

#: The whitening constant of the released features: ``y / sqrt(lambda + 1e-4)`` (starter code's extractor).
WHITEN_EPSILON = 1e-4

#: Official quantisation range of the released features.
QUANT_MIN = -2.0
QUANT_MAX = 2.0


def dequantization_coefficients(
    min_value: float = QUANT_MIN, max_value: float = QUANT_MAX
) -> tuple[float, float]:
    """``(a, b)`` with ``x = a * q + b``: ``a = (max - min)/255``, ``b = (max - min)/512 + min``."""
    value_range = max_value - min_value
    return value_range / 255.0, value_range / 512.0 + min_value


def quantize(x: Any, min_value: float = QUANT_MIN, max_value: float = QUANT_MAX) -> np.ndarray:
    """Floats -> uint8 codes: ``round((clip(x) - min) * 255 / (max - min))`` (official feature extractor)."""
    x = np.clip(np.asarray(x, dtype=np.float64), min_value, max_value)
    return np.round((x - min_value) * (255.0 / (max_value - min_value))).astype(np.uint8)


def dequantization_table(min_value: float = QUANT_MIN, max_value: float = QUANT_MAX) -> np.ndarray:
    """float32 ``[256]``: the official ``Dequantize`` of every code, evaluated as the official code does
    (``float32(q) * float32(a)``, rounded to float32, ``+ float32(b)``, rounded to float32)."""
    scale, bias = dequantization_coefficients(min_value, max_value)
    product = np.arange(256, dtype=np.float32) * np.float32(scale)
    return (product + np.float32(bias)).astype(np.float32)


def dequantize(q: Any, min_value: float = QUANT_MIN, max_value: float = QUANT_MAX) -> np.ndarray:
    """uint8 codes -> float32: ``q * (max - min)/255 + ((max - min)/512 + min)`` (official ``Dequantize``,
    bit-identical: a lookup in :func:`dequantization_table`)."""
    q = np.asarray(q)
    if q.dtype.kind not in "iu" or (q.size and (q.min() < 0 or q.max() > 255)):
        raise ValueError(f"dequantize expects integer codes in [0, 255], got dtype {q.dtype}")
    return dequantization_table(min_value, max_value)[q]


def tf_dequantize(q: tf.Tensor, min_value: float = QUANT_MIN, max_value: float = QUANT_MAX) -> tf.Tensor:
    """TF version of :func:`dequantize` (uint8 codes of any shape; returns float32, bit-identical to the
    official formula also under XLA)."""
    table = tf.constant(dequantization_table(min_value, max_value))
    return tf.gather(table, tf.cast(q, tf.int32))


def l2_normalize(x: Any, axis: int = -1, epsilon: float = 1e-12) -> np.ndarray:
    """``x / sqrt(max(sum(x^2), epsilon))`` along ``axis`` (same as ``tf.nn.l2_normalize``; zeros stay 0)."""
    x = np.asarray(x)
    sq = np.sum(np.square(x, dtype=np.float64), axis=axis, keepdims=True)
    return (x / np.sqrt(np.maximum(sq, epsilon))).astype(x.dtype if x.dtype.kind == "f" else np.float64)


def video_statistics(frames: Any, num_frames: int | None = None, top_k: int = 5) -> np.ndarray:
    """[mean; std; top-K] per dimension over the first ``num_frames`` (real) frames of ``frames [T, D]``.

    ``std`` is the population standard deviation. Top-K values are sorted descending per dimension
    (``[K, D]`` flattened K-major, i.e. the first D values are the per-dimension maxima); a video with fewer
    than K frames gets 0 for the missing order statistics. Returns float32 ``[(2 + K) * D]``.
    """
    frames = np.asarray(frames, dtype=np.float64)
    n = frames.shape[0] if num_frames is None else int(num_frames)
    real = frames[:n]
    d = frames.shape[1]
    if n == 0:
        return np.zeros((2 + top_k) * d, np.float32)
    mean = real.mean(axis=0)
    std = real.std(axis=0)
    top = -np.sort(-real, axis=0)[:top_k]
    if top.shape[0] < top_k:
        top = np.concatenate([top, np.zeros((top_k - top.shape[0], d))], axis=0)
    return np.concatenate([mean, std, top.reshape(-1)]).astype(np.float32)


def tf_video_statistics(frames: tf.Tensor, num_frames: tf.Tensor, top_k: int = 5) -> tf.Tensor:
    """Batched TF version of :func:`video_statistics`: ``[B, T, D]``, ``[B]`` -> ``[B, (2 + K) * D]``."""
    frames = tf.convert_to_tensor(frames, tf.float32)
    d = frames.shape[-1]
    t = tf.shape(frames)[1]
    mask = tf.sequence_mask(num_frames, t, dtype=tf.float32)[:, :, None]  # [B, T, 1]
    n = tf.maximum(tf.cast(num_frames, tf.float32), 1.0)[:, None]
    mean = tf.reduce_sum(frames * mask, axis=1) / n
    var = tf.reduce_sum(tf.square(frames - mean[:, None, :]) * mask, axis=1) / n
    std = tf.sqrt(tf.maximum(var, 0.0))
    pad = max(0, top_k)
    masked = tf.where(mask > 0, frames, tf.fill(tf.shape(frames), -np.inf))
    masked = tf.pad(masked, [[0, 0], [0, pad], [0, 0]], constant_values=-np.inf)  # at least K rows
    top = tf.math.top_k(tf.transpose(masked, [0, 2, 1]), k=top_k, sorted=True).values  # [B, D, K]
    top = tf.where(tf.math.is_inf(top), 0.0, top)
    top = tf.reshape(tf.transpose(top, [0, 2, 1]), [-1, top_k * d])
    return tf.concat([mean, std, top], axis=1)


class StreamingPCA:
    """PCA with whitening, fitted in one streaming pass (float64 sums of x and x x^T).

    ``update(x)`` with batches ``[N, D]``; ``fit(num_components)``; ``transform(x)`` returns
    ``(x - mean) V_k / sqrt(lambda_k + epsilon)`` (whitened; paper §3.3 reduces 2048 -> 1024 this way),
    optionally L2-normalised. Memory is O(D^2).
    """

    def __init__(self, dim: int) -> None:
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = dim
        self.count = 0
        self._sum = np.zeros(dim, np.float64)
        self._outer = np.zeros((dim, dim), np.float64)
        self.mean: np.ndarray | None = None
        self.components: np.ndarray | None = None  # [D, k], columns sorted by eigenvalue descending
        self.eigenvalues: np.ndarray | None = None  # [k]

    def update(self, x: Any) -> None:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected a batch [N, {self.dim}], got shape {x.shape}")
        self.count += x.shape[0]
        self._sum += x.sum(axis=0)
        self._outer += x.T @ x

    def merge(self, other: StreamingPCA) -> StreamingPCA:
        """Adds ``other``'s sums (n, sum of x, sum of x x^T) to this one's and returns ``self``: fitting
        the merged sums fits both inputs together, to float round-off (a Beam combiner's merge step)."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge a StreamingPCA of dim {other.dim} into one of dim {self.dim}")
        self.count += other.count
        self._sum += other._sum
        self._outer += other._outer
        return self

    def fit(self, num_components: int) -> StreamingPCA:
        if not 1 <= num_components <= self.dim:
            raise ValueError(f"num_components must be in [1, {self.dim}], got {num_components}")
        if self.count < 2:
            raise ValueError(f"PCA needs at least 2 examples, got {self.count}")
        mean = self._sum / self.count
        cov = (self._outer - self.count * np.outer(mean, mean)) / (self.count - 1)
        eigenvalues, vectors = np.linalg.eigh((cov + cov.T) / 2)
        order = np.argsort(eigenvalues)[::-1][:num_components]
        self.mean = mean
        self.eigenvalues = np.maximum(eigenvalues[order], 0.0)
        self.components = vectors[:, order]
        return self

    @classmethod
    def from_arrays(cls, mean: Any, eigenvalues: Any, components: Any) -> StreamingPCA:
        """A fitted PCA from its parts: ``mean [D]``, ``eigenvalues [k]``, ``components [D, k]``."""
        mean = np.asarray(mean, np.float64).reshape(-1)
        eigenvalues = np.asarray(eigenvalues, np.float64).reshape(-1)
        components = np.asarray(components, np.float64)
        if components.shape != (mean.shape[0], eigenvalues.shape[0]):
            raise ValueError(
                f"PCA parts do not fit: mean [{mean.shape[0]}], eigenvalues [{eigenvalues.shape[0]}], "
                f"components {list(components.shape)} (expected [{mean.shape[0]}, {eigenvalues.shape[0]}])"
            )
        pca = cls(mean.shape[0])
        pca.mean, pca.eigenvalues, pca.components = mean, eigenvalues, components
        return pca

    @property
    def num_components(self) -> int:
        if self.components is None:
            raise ValueError("StreamingPCA.num_components read before fit()")
        return int(self.components.shape[1])

    def transform(
        self, x: Any, whiten: bool = True, epsilon: float = WHITEN_EPSILON, normalize: bool = True
    ) -> np.ndarray:
        """Project ``x [N, D]`` on the components (whitened), then L2-normalise each row if ``normalize``."""
        if self.components is None:
            raise ValueError("StreamingPCA.transform called before fit()")
        y = (np.asarray(x, dtype=np.float64) - self.mean) @ self.components
        if whiten:
            y = y / np.sqrt(self.eigenvalues + epsilon)
        if normalize:
            y = l2_normalize(y, axis=-1)
        return y.astype(np.float32)

    def inverse_transform(self, y: Any, whiten: bool = True, epsilon: float = WHITEN_EPSILON) -> np.ndarray:
        """Back to the input space: ``x = (y * sqrt(lambda_k + epsilon)) V_k^T + mean`` for ``y [N, k]``
        (not L2-normalised). Exact (to float round-off) when no component was dropped (``k = D``);
        otherwise the projection of ``x`` on the kept components (paper §4.2.1)."""
        if self.components is None:
            raise ValueError("StreamingPCA.inverse_transform called before fit()")
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 2 or y.shape[1] != self.num_components:
            raise ValueError(f"expected a batch [N, {self.num_components}], got shape {y.shape}")
        if whiten:
            y = y * np.sqrt(self.eigenvalues + epsilon)
        return (y @ self.components.T + self.mean).astype(np.float32)

    def tf_inverse_transform(
        self, y: tf.Tensor, whiten: bool = True, epsilon: float = WHITEN_EPSILON
    ) -> tf.Tensor:
        """TF version of :func:`inverse_transform` for ``y [..., k]`` (float32; tf.data, tf.function)."""
        if self.components is None:
            raise ValueError("StreamingPCA.tf_inverse_transform called before fit()")
        scale = np.sqrt(self.eigenvalues + epsilon) if whiten else np.ones_like(self.eigenvalues)
        basis = tf.constant((scale[:, None] * self.components.T).astype(np.float32))  # [k, D]
        y = tf.convert_to_tensor(y, tf.float32)
        return tf.tensordot(y, basis, axes=1) + tf.constant(self.mean.astype(np.float32))

    def save(self, path: str) -> None:
        """Writes the fitted PCA to ``path`` (``.npz``) via a temporary file renamed into place."""
        if self.components is None:
            raise ValueError("StreamingPCA.save called before fit()")
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(
                tmp,
                mean=self.mean,
                components=self.components,
                eigenvalues=self.eigenvalues,
                count=self.count,
            )

    @classmethod
    def load(cls, path: str) -> StreamingPCA:
        with np.load(path) as data:
            pca = cls(int(data["mean"].shape[0]))
            pca.mean = data["mean"]
            pca.components = data["components"]
            pca.eigenvalues = data["eigenvalues"]
            pca.count = int(data["count"])
        return pca


def load_pca(path: str, num_components: int | None = None) -> StreamingPCA:
    """A fitted PCA from ``path``: a :meth:`StreamingPCA.save` ``.npz`` file, or a directory holding the
    official release's ``mean.npy`` ``[D, 1]``, ``eigenvals.npy`` ``[D, 1]`` and ``eigenvecs.npy`` (one
    eigenvector per *row*), read as the starter code's feature extractor reads them (the first
    ``num_components`` components; 1,024 for the release). ``num_components`` also truncates an ``.npz``."""
    if tf.io.gfile.isdir(path):
        parts = {}
        for name in ("mean", "eigenvals", "eigenvecs"):
            file = f"{path.rstrip('/')}/{name}.npy"
            if not tf.io.gfile.exists(file):
                raise FileNotFoundError(
                    f"PCA directory {path} lacks {name}.npy (release files: mean.npy, "
                    "eigenvals.npy, eigenvecs.npy)"
                )
            with tf.io.gfile.GFile(file, "rb") as f:
                parts[name] = np.load(f)
        k = num_components or 1024
        pca = StreamingPCA.from_arrays(
            parts["mean"].reshape(-1), parts["eigenvals"].reshape(-1)[:k], parts["eigenvecs"].T[:, :k]
        )
    else:
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(f"PCA file {path} not found (a StreamingPCA .npz or a release directory)")
        pca = StreamingPCA.load(path)
        if num_components:
            pca = StreamingPCA.from_arrays(
                pca.mean, pca.eigenvalues[:num_components], pca.components[:, :num_components]
            )
    if num_components and pca.num_components != num_components:
        raise ValueError(f"PCA {path} has {pca.num_components} components, fewer than {num_components}")
    return pca
