"""Mixture density output for pen strokes (Graves 2013 §4.1-4.2, eq. 17-26; HyperNetworks §4.5, A.3.5).

The network's output ``ŷ_t`` (``6M + 1`` numbers, M = 20 in A.3.5) parameterises the distribution of the next
row ``x_{t+1} = (dx, dy, end_of_stroke)``: a mixture of ``M`` bivariate Gaussians for the pen offset and a
Bernoulli for the end-of-stroke bit. The layout of the last axis is

    [ê, π̂_1..M, μx_1..M, μy_1..M, σ̂x_1..M, σ̂y_1..M, ρ̂_1..M]

with Graves' transforms (eq. 18-22)

    e = sigmoid(ê),  π = softmax(π̂),  μ = μ̂,  σ = exp(σ̂),  ρ = tanh(ρ̂).

(Graves writes ``e = 1 / (1 + exp(ê))``, i.e. ``sigmoid(-ê)``; the sign is a convention the dense layer
learns.)

The loss (eq. 26) of one row is

    -log Σ_k π_k N(dx, dy | μ_k, σ_k, ρ_k)  -  log(e if end_of_stroke else 1 - e)

in nats; :func:`mixture_nll` computes it in log space from the raw ``ŷ``: ``log π`` by log-softmax,
``log σ = σ̂``, ``log(1 - ρ²) = -2 log cosh ρ̂`` without forming ``1 - tanh² ρ̂`` (which is 0 in float32 for
``|ρ̂| > 9``), the quadratic form as ``zx² + (zy - ρ zx)² / (1 - ρ²)`` (no cancellation of large terms),
log-sum-exp over the components, and the Bernoulli term from the logit (``softplus(ê) - end_of_stroke · ê``).
HyperNetworks Table 5 reports the sum over the points of a sequence (nats per sequence,
``reduction="sequence"``).

Sampling (:func:`sample_mixture`) follows Graves §5.4 for the bias ``b`` (eq. 61-62:
``σ = exp(σ̂ - b)``, ``π = softmax(π̂ (1 + b))``; ``b = 0`` is the model, larger ``b`` writes more neatly)
and sketch-rnn (Ha & Eck 2017, §3.3) for the temperature ``τ``: mixture and end-of-stroke logits divided by
``τ``, variances multiplied by ``τ`` (``τ = 1``: the model; ``τ → 0``: the most likely component's mean).
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

__all__ = [
    "NUM_MIXTURES",
    "NLL_REDUCTIONS",
    "mixture_size",
    "num_mixtures_of",
    "split_mixture",
    "mixture_params",
    "mixture_nll",
    "sample_mixture",
    "MixtureDensityHead",
]

#: mixture components (Graves 2013 §4.2, HyperNetworks A.3.5: 20 bivariate Gaussians).
NUM_MIXTURES = 20
#: ``reduction`` values of :func:`mixture_nll`.
NLL_REDUCTIONS = ("none", "sequence", "point", "mean_sequence")
_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)
_PARTS = ("pi", "mu_x", "mu_y", "log_sigma_x", "log_sigma_y", "rho_hat")


def mixture_size(num_mixtures: int) -> int:
    """``6M + 1``: the head's output width (121 for M = 20)."""
    if int(num_mixtures) < 1:
        raise ValueError(f"num_mixtures={num_mixtures!r} must be >= 1")
    return 6 * int(num_mixtures) + 1


def num_mixtures_of(y_hat: Any) -> int:
    """``M`` from the static width ``6M + 1`` of ``y_hat``'s last axis."""
    width = y_hat.shape[-1]
    if width is None or (int(width) - 1) % 6 or int(width) < 7:
        raise ValueError(f"mixture output width {width} is not 6M + 1 (e.g. 121 for 20 mixtures)")
    return (int(width) - 1) // 6


def split_mixture(y_hat: Any) -> dict[str, Any]:
    """The raw parts of ``ŷ [..., 6M+1]``: ``eos_logit [...]`` and ``pi``, ``mu_x``, ``mu_y``,
    ``log_sigma_x``, ``log_sigma_y``, ``rho_hat`` (each ``[..., M]``; ``pi`` holds the logits ``π̂``)."""
    m = num_mixtures_of(y_hat)
    parts = {"eos_logit": y_hat[..., 0]}
    for k, name in enumerate(_PARTS):
        parts[name] = y_hat[..., 1 + k * m : 1 + (k + 1) * m]
    return parts


def mixture_params(y_hat: Any, bias: Any = 0.0) -> dict[str, Any]:
    """Graves' eq. 18-22 (with the sampling bias of eq. 61-62): ``eos`` (probability), ``pi``, ``mu_x``,
    ``mu_y``, ``sigma_x``, ``sigma_y``, ``rho``."""
    y_hat = ops.convert_to_tensor(y_hat)
    p = split_mixture(y_hat)
    return {
        "eos": ops.sigmoid(p["eos_logit"]),
        "pi": ops.softmax(p["pi"] * (1.0 + bias), axis=-1),
        "mu_x": p["mu_x"],
        "mu_y": p["mu_y"],
        "sigma_x": ops.exp(p["log_sigma_x"] - bias),
        "sigma_y": ops.exp(p["log_sigma_y"] - bias),
        "rho": ops.tanh(p["rho_hat"]),
    }


def _log_one_minus_tanh2(r: Any) -> Any:
    """``log(1 - tanh(r)^2) = -2 log cosh r = 2 (log 2 - |r| - softplus(-2|r|))``, finite for every ``r``."""
    a = ops.abs(r)
    return 2.0 * (_LOG_2 - a - ops.softplus(-2.0 * a))


def mixture_nll(targets: Any, y_hat: Any, mask: Any = None, reduction: str = "none") -> Any:
    """Negative log-likelihood (nats) of rows ``targets [..., T, 3]`` under ``ŷ [..., T, 6M+1]`` (eq. 26).

    Args:
      targets: ``(dx, dy, end_of_stroke)`` rows the model predicts (normalised like its inputs).
      y_hat: the head's raw output at the same positions (cast to float32).
      mask: ``[..., T]``, 1 on real points and 0 on padding (padded points contribute 0); None: all real.
      reduction: ``"none"``: per point ``[..., T]``; ``"sequence"``: summed over the points of each sequence
        ``[...]`` (nats per sequence, HyperNetworks Table 5); ``"point"``: scalar mean over the real points
        (nats per point); ``"mean_sequence"``: scalar mean of the per-sequence sums.

    Returns:
      The NLL, reduced as asked.
    """
    if reduction not in NLL_REDUCTIONS:
        raise ValueError(f"reduction={reduction!r}; valid: {', '.join(NLL_REDUCTIONS)}")
    y_hat = ops.cast(y_hat, "float32")
    targets = ops.cast(targets, "float32")
    p = split_mixture(y_hat)
    x = ops.expand_dims(targets[..., 0], -1)
    y = ops.expand_dims(targets[..., 1], -1)
    eos = targets[..., 2]
    zx = (x - p["mu_x"]) * ops.exp(-p["log_sigma_x"])
    zy = (y - p["mu_y"]) * ops.exp(-p["log_sigma_y"])
    rho = ops.tanh(p["rho_hat"])
    log_one_minus_rho2 = _log_one_minus_tanh2(p["rho_hat"])
    # Z / (1 - ρ²) with Z = zx² + zy² - 2ρ zx zy (Graves eq. 25), written as the conditional of y given x
    quadratic = ops.square(zx) + ops.square(zy - rho * zx) * ops.exp(-log_one_minus_rho2)
    log_normal = -_LOG_2PI - p["log_sigma_x"] - p["log_sigma_y"] - 0.5 * log_one_minus_rho2 - 0.5 * quadratic
    log_pi = ops.log_softmax(p["pi"], axis=-1)
    offset_nll = -ops.logsumexp(log_pi + log_normal, axis=-1)
    eos_nll = ops.softplus(p["eos_logit"]) - eos * p["eos_logit"]
    nll = offset_nll + eos_nll
    if mask is not None:
        mask = ops.cast(mask, "float32")
        nll = nll * mask
    if reduction == "none":
        return nll
    per_sequence = ops.sum(nll, axis=-1)
    if reduction == "sequence":
        return per_sequence
    if reduction == "mean_sequence":
        return ops.mean(per_sequence)
    count = ops.cast(ops.size(nll), "float32") if mask is None else ops.sum(mask)
    return ops.sum(nll) / ops.maximum(count, 1.0)


def _seeds(seed: Any) -> tuple[Any, Any, Any]:
    """Three independent seeds for the component, the offset and the pen draws."""
    if seed is None or isinstance(seed, keras.random.SeedGenerator):
        return seed, seed, seed
    seed = int(seed)
    return seed, seed + 1, seed + 2


def sample_mixture(
    y_hat: Any, temperature: Any = 1.0, bias: Any = 0.0, seed: Any = None, noise: Any = None
) -> Any:
    """One row ``(dx, dy, end_of_stroke) [B, 3]`` drawn from ``ŷ [B, 6M+1]`` (float32).

    Args:
      y_hat: the head's raw output for one step.
      temperature: ``τ > 0``: mixture and end-of-stroke logits ``/ τ``, variances ``· τ`` (1: the model).
      bias: Graves' sampling bias ``b >= 0``: ``π̂ (1 + b)``, ``σ̂ - b`` (0: the model).
      seed: an int (three derived stateless seeds: the same draw every call), a
        ``keras.random.SeedGenerator`` (advances: use one in a generation loop), or None (Keras' global one).
      noise: instead of ``seed``, the draw's randomness as ``[B, 4]`` uniform numbers in (0, 1): the
        component (inverse CDF of π), two for the offset (Box-Muller) and the pen. For stateless sampling
        with a seed tensor (``tf.random.stateless_uniform``), e.g. inside a SavedModel signature.

    Returns:
      ``[B, 3]``: the offset and a 0/1 end-of-stroke bit.
    """
    if isinstance(temperature, int | float) and not temperature > 0:
        raise ValueError(f"temperature={temperature!r} must be > 0")
    if isinstance(bias, int | float) and bias < 0:
        raise ValueError(f"bias={bias!r} must be >= 0 (Graves §5.4)")
    y_hat = ops.cast(y_hat, "float32")
    if len(y_hat.shape) != 2:
        raise ValueError(f"sample_mixture takes one step [batch, 6M+1]; got shape {tuple(y_hat.shape)}")
    m = num_mixtures_of(y_hat)
    p = split_mixture(y_hat)
    seed_pi, seed_xy, seed_eos = _seeds(seed)
    logits = p["pi"] * (1.0 + bias) / temperature
    if noise is None:
        component = keras.random.categorical(logits, 1, seed=seed_pi)[:, 0]
        z = keras.random.normal(ops.shape(logits)[:1] + (2,), seed=seed_xy)
    else:
        noise = ops.cast(noise, "float32")
        cdf = ops.cumsum(ops.softmax(logits, axis=-1), axis=-1)
        component = ops.minimum(ops.sum(ops.cast(cdf < noise[:, :1], "int32"), axis=-1), m - 1)
        radius = ops.sqrt(-2.0 * ops.log(ops.maximum(noise[:, 1], 1e-12)))
        angle = 2.0 * math.pi * noise[:, 2]
        z = ops.stack([radius * ops.cos(angle), radius * ops.sin(angle)], axis=-1)
    pick = ops.one_hot(component, m, dtype="float32")

    def chosen(v: Any) -> Any:
        return ops.sum(pick * v, axis=-1)

    scale = ops.sqrt(ops.cast(temperature, "float32"))
    sigma_x = ops.exp(chosen(p["log_sigma_x"]) - bias) * scale
    sigma_y = ops.exp(chosen(p["log_sigma_y"]) - bias) * scale
    rho_hat = chosen(p["rho_hat"])
    dx = chosen(p["mu_x"]) + sigma_x * z[:, 0]
    conditional = ops.tanh(rho_hat) * z[:, 0] + ops.exp(0.5 * _log_one_minus_tanh2(rho_hat)) * z[:, 1]
    dy = chosen(p["mu_y"]) + sigma_y * conditional
    u = keras.random.uniform(ops.shape(dx), seed=seed_eos) if noise is None else noise[:, 3]
    pen = ops.cast(u < ops.sigmoid(p["eos_logit"] / temperature), "float32")
    return ops.stack([dx, dy, pen], axis=-1)


@keras.saving.register_keras_serializable(package="zoo")
class MixtureDensityHead(keras.layers.Layer):
    """Dense layer to the ``6M + 1`` raw parameters of a Gaussian-mixture pen model (Graves 2013 eq. 17).

    ``[..., N] -> [..., 6M+1]``: ``ŷ = h W + b`` with ``W [N, 6M+1]`` and ``b [6M+1]``, so ``N (6M+1) + 6M+1``
    parameters (109,021 for N = 900, M = 20). The output is *raw* (the transforms of eq. 18-22 are applied by
    :meth:`params`, :meth:`nll` and :meth:`sample`, so the loss stays in log space); see the module docstring
    for the layout. Weights: glorot-uniform kernel, zero bias (Keras' ``Dense`` defaults; Graves and the
    HyperNetworks paper do not say).

    Args:
      num_mixtures: ``M``, the number of bivariate Gaussians (A.3.5: 20).
      kernel_initializer, bias_initializer: Keras initializers.
      **kwargs: base ``Layer`` arguments (``name``, ``dtype``: pass ``"float32"`` under mixed precision).

    Call arguments:
      inputs: ``[..., N]`` features (an RNN's outputs ``[B, T, N]`` or one step ``[B, N]``).

    Returns:
      ``[..., 6M + 1]`` raw mixture parameters ``ŷ``.

    Example:

    >>> head = MixtureDensityHead(num_mixtures=20)
    >>> y_hat = head(keras.random.normal((2, 5, 900)))  # an RNN's outputs -> [2, 5, 121]
    >>> targets = keras.ops.zeros((2, 5, 3))  # (dx, dy, end_of_stroke) of the next points
    >>> mask = keras.ops.ones((2, 5))
    >>> nats = head.nll(targets, y_hat, mask, reduction="sequence")  # [2]: nats per sequence
    >>> seed = keras.random.SeedGenerator(0)
    >>> row = head.sample(y_hat[:, -1], temperature=0.8, bias=1.0, seed=seed)  # [2, 3]
    """

    def __init__(
        self,
        num_mixtures: int = NUM_MIXTURES,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.output_size = mixture_size(num_mixtures)
        self.num_mixtures = int(num_mixtures)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape: Any) -> None:
        units = input_shape[-1]
        if units is None:
            raise ValueError(
                f"MixtureDensityHead needs a known last input dimension; got shape {input_shape}"
            )
        self.kernel = self.add_weight(
            name="kernel", shape=(int(units), self.output_size), initializer=self.kernel_initializer
        )
        self.bias = self.add_weight(name="bias", shape=(self.output_size,), initializer=self.bias_initializer)

    def call(self, inputs: Any) -> Any:
        return ops.matmul(inputs, self.kernel) + self.bias

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (*input_shape[:-1], self.output_size)

    def params(self, y_hat: Any, bias: Any = 0.0) -> dict[str, Any]:
        """:func:`mixture_params` of this head's output."""
        return mixture_params(y_hat, bias)

    def nll(self, targets: Any, y_hat: Any, mask: Any = None, reduction: str = "none") -> Any:
        """:func:`mixture_nll` of this head's output."""
        return mixture_nll(targets, y_hat, mask, reduction)

    def sample(
        self, y_hat: Any, temperature: Any = 1.0, bias: Any = 0.0, seed: Any = None, noise: Any = None
    ) -> Any:
        """:func:`sample_mixture` from this head's output for one step."""
        return sample_mixture(y_hat, temperature, bias, seed, noise)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_mixtures": self.num_mixtures,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }
