"""LSTM cells with the HyperNetworks paper's conventions: the LSTM baseline and the Layer Norm LSTM.

HyperNetworks (Ha, Dai, Le 2016), appendix A.2.2, Eq. 9 (basic LSTM) and Eq. 10/13 with the
hypernetwork removed (the "Layer Norm LSTM" baseline of Tables 3-4). Conventions shared with
:class:`zoo.layers.HyperLSTMCell` (they follow the authors' code; ``docs/hyperlstm_notes.md``):

- gate order ``i, g, f, o`` in every fused ``[..., 4 * units]`` tensor (:data:`zoo.layers.GATES`; the
  authors' ``i, j, f, o``; Keras' own ``LSTMCell`` uses ``i, f, c, o``);
- ``c_t = sigmoid(f + forget_bias) * c_{t-1} + sigmoid(i) * Dropout(tanh(g))`` with the forget bias
  a constant added every step (after the layer norm when there is one);
- ``h_t = sigmoid(o) * tanh(LN(c_t))``; the carried ``c_t`` is *not* normalised;
- recurrent dropout (Semeniuta et al. 2016, "Recurrent dropout without memory loss", paper Eq. 13)
  on ``tanh(g)`` only, only in training, a fresh mask at every step; ``recurrent_dropout`` is a drop
  *rate* (the authors' code takes a keep probability: ``rate = 1 - keep``);
- layer norm per gate: mean and variance within each gate's ``units`` values, epsilon 1e-3, gain
  init 1, shift init 0 (Ba et al. 2016; the authors' ``layer_norm_all``);
- input weights ``W_x`` Glorot-uniform over the whole ``[N_x, 4N]`` matrix, recurrent weights ``W_h``
  orthogonal per gate block (the authors' ``lstm_ortho_initializer``), biases 0.

The state of both cells is ``[h, c]`` (Keras' order), each ``[batch, units]``. Dropout, the zero initial
state and ``call`` come from :class:`zoo.layers.RecurrentCell`; run them in :class:`zoo.layers.RNN` (or
``keras.layers.RNN`` on TensorFlow) so that recurrent dropout draws a fresh mask per step on every backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from zoo.layers.rnn_base import BlockOrthogonal, RecurrentCell, check_drop_rate

__all__ = ["BasicLSTMCell", "LayerNormLSTMCell", "layer_norm_gates", "lstm_update"]

LAYER_NORM_EPSILON = 1e-3  # the authors' layer_norm_all / layer_norm default (docs/hyperlstm_notes.md)


def layer_norm_gates(
    x: Any, gamma: Any, beta: Any, num_gates: int, epsilon: float = LAYER_NORM_EPSILON
) -> Any:
    """Layer norm of ``x [..., num_gates * n]`` with statistics taken within each gate's ``n`` values.

    One fused computation for all gates (reshape to ``[..., num_gates, n]``); ``gamma``/``beta`` are
    ``[num_gates * n]``. ``num_gates = 1`` is ordinary layer norm (used on ``c``).
    """
    n = x.shape[-1] // num_gates
    xs = ops.reshape(x, (-1, num_gates, n))
    mean = ops.mean(xs, axis=-1, keepdims=True)
    centred = xs - mean
    var = ops.mean(ops.square(centred), axis=-1, keepdims=True)
    normed = ops.reshape(centred * ops.rsqrt(var + epsilon), ops.shape(x))
    return normed * gamma + beta


def lstm_update(
    pre: Any,
    c_prev: Any,
    *,
    forget_bias: float,
    dropout: Any = None,
    gate_norm: tuple[Any, Any] | None = None,
    cell_norm: tuple[Any, Any] | None = None,
) -> tuple[Any, Any, Any]:
    """Eq. 9/13 from fused gate pre-activations ``pre [B, 4n]`` (order i, g, f, o).

    ``gate_norm`` = ``(gamma [4n], beta [4n])`` layer-normalises each gate's pre-activation first (the
    forget bias is added after the norm); ``dropout`` (optional) maps ``tanh(g)`` to its dropped version;
    ``cell_norm`` = ``(gamma, beta)`` applies layer norm to ``c`` before the output tanh (the carried ``c``
    stays un-normalised). Returns ``(h, c, tanh_c)`` where ``tanh_c`` is the value multiplied by
    ``sigmoid(o)`` (``tanh(LN(c))`` or ``tanh(c)``; Figure 5's histograms).
    """
    if gate_norm is not None:
        pre = layer_norm_gates(pre, gate_norm[0], gate_norm[1], 4)
    i, g, f, o = ops.split(pre, 4, axis=-1)
    new_info = ops.tanh(g)
    if dropout is not None:
        new_info = dropout(new_info)
    c = ops.sigmoid(f + forget_bias) * c_prev + ops.sigmoid(i) * new_info
    c_out = c if cell_norm is None else layer_norm_gates(c, cell_norm[0], cell_norm[1], 1)
    tanh_c = ops.tanh(c_out)
    return ops.sigmoid(o) * tanh_c, c, tanh_c


@keras.saving.register_keras_serializable(package="zoo")
class BasicLSTMCell(RecurrentCell):
    """The LSTM of HyperNetworks Eq. 9 with Semeniuta recurrent dropout (the paper's LSTM baseline).

    ``[i, g, f, o] = W_x x_t + W_h h_{t-1} + b``;
    ``c_t = sigmoid(f + forget_bias) * c_{t-1} + sigmoid(i) * Dropout(tanh(g))``;
    ``h_t = sigmoid(o) * tanh(c_t)``. Trainable parameters: ``4N(N_x + N) + 4N``.

    Args:
      units: N, the number of hidden units.
      forget_bias: constant added to the forget gate's pre-activation every step (authors' code: 1.0).
      recurrent_dropout: drop rate on ``tanh(g)`` (training only, fresh mask every step).
      use_bias: whether the gates have a bias (init 0). The LSTM baseline has one; the Layer Norm LSTM
        does not (the norm's shift is the bias).
      seed: seed of the dropout masks' generator.
      **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).

    Weights: ``kernel [N_x, 4N]`` (``W_x``, Glorot-uniform as in the authors' code),
    ``recurrent_kernel [N, 4N]`` (``W_h``, orthogonal per gate block, the authors'
    ``lstm_ortho_initializer``), ``bias [4N]`` (zeros); gate order i, g, f, o.

    Call arguments:
      inputs: ``[batch, N_x]``, the input at one step.
      states: ``[h, c]``, each ``[batch, N]``.
      training: whether recurrent dropout is active.

    Returns:
      ``(h_t, [h_t, c_t])``. :meth:`step` returns ``{"h", "c", "tanh_c"}`` (``tanh_c`` is what
      ``sigmoid(o)`` scales: Figure 5's histograms); it is :meth:`step_projected` of
      :meth:`project_inputs` (``W_x x_t + b``, which ``zoo.layers.RNN`` computes for the whole window
      before the loop).

    Example:

    >>> from zoo.layers import RNN  # keras.layers.RNN that feeds per-step dropout noise (any backend)
    >>> cell = BasicLSTMCell(16, recurrent_dropout=0.1)
    >>> rnn = RNN(cell, return_sequences=True, return_state=True)
    >>> outputs, h, c = rnn(np.zeros((2, 10, 8), "float32"))
    >>> tuple(outputs.shape), tuple(c.shape)
    ((2, 10, 16), (2, 16))
    """

    state_keys = ("h", "c")
    use_layer_norm = False

    def __init__(
        self,
        units: int,
        forget_bias: float = 1.0,
        recurrent_dropout: float = 0.0,
        use_bias: bool = True,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(units, seed=seed, **kwargs)
        self.forget_bias = float(forget_bias)
        self.recurrent_dropout = check_drop_rate(type(self).__name__, "recurrent_dropout", recurrent_dropout)
        self.use_bias = bool(use_bias)
        self.state_size = [self.units, self.units]

    def build(self, input_shape: Sequence[int | None]) -> None:
        n = self.units
        self.kernel = self.add_weight(
            name="kernel", shape=(input_shape[-1], 4 * n), initializer="glorot_uniform"
        )
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel", shape=(n, 4 * n), initializer=BlockOrthogonal([n] * 4)
        )
        self.bias = (
            self.add_weight(name="bias", shape=(4 * n,), initializer="zeros") if self.use_bias else None
        )
        if self.use_layer_norm:
            self.gate_gamma = self.add_weight(name="gate_gamma", shape=(4 * n,), initializer="ones")
            self.gate_beta = self.add_weight(name="gate_beta", shape=(4 * n,), initializer="zeros")
            self.cell_gamma = self.add_weight(name="cell_gamma", shape=(n,), initializer="ones")
            self.cell_beta = self.add_weight(name="cell_beta", shape=(n,), initializer="zeros")

    def dropout_sites(self) -> list[tuple[float, int]]:
        return [(self.recurrent_dropout, self.units)]  # tanh(g)

    def recurrent_probe_width(self) -> int:
        return 0  # the gates are projected + recurrent_product(h): the product's gradient is projected's

    def project_inputs(self, inputs: Any) -> Any:
        """``W_x x_t + b`` ``[..., 4N]`` for inputs ``[..., N_x]``: everything of the gates that does not
        depend on ``h_{t-1}`` (``zoo.layers.RNN`` computes it for the whole window in one product)."""
        projected = ops.matmul(inputs, self.kernel)
        return projected if self.bias is None else projected + self.bias

    def step_projected(
        self, projected: Any, states: Sequence[Any], training: bool | None = None
    ) -> dict[str, Any]:
        """One step from ``project_inputs(x_t)`` with everything it computes: ``h``, ``c``, ``tanh_c``
        (what ``sigmoid(o)`` scales)."""
        h_prev, c_prev = states[0], states[1]
        pre = projected + self.recurrent_product(h_prev)
        ln = self.use_layer_norm
        h, c, tanh_c = lstm_update(
            pre,
            c_prev,
            forget_bias=self.forget_bias,
            dropout=self.dropout(self.recurrent_dropout, training),
            gate_norm=(self.gate_gamma, self.gate_beta) if ln else None,
            cell_norm=(self.cell_gamma, self.cell_beta) if ln else None,
        )
        return {"h": h, "c": c, "tanh_c": tanh_c}

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "forget_bias": self.forget_bias,
                "recurrent_dropout": self.recurrent_dropout,
                "use_bias": self.use_bias,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="zoo")
class LayerNormLSTMCell(BasicLSTMCell):
    """The Layer Norm LSTM baseline of HyperNetworks Tables 3-4 (Eq. 10 and 13 without the hypernetwork).

    ``y = LN_y(W_h^y h_{t-1} + W_x^y x_t)`` per gate y in {i, g, f, o} (statistics within each gate,
    epsilon 1e-3); the norm's shift ``gate_beta`` is the gate bias (no separate bias unless
    ``use_bias=True``); ``forget_bias`` is added after the norm; ``h_t = sigmoid(o) * tanh(LN(c_t))``
    while the carried ``c_t`` stays un-normalised. Trainable parameters: ``4N(N_x + N) + 10N``
    (8N per-gate gain/shift, 2N for the norm on c; ``docs/param_counts.md``).

    Args:
      units: N, the number of hidden units.
      forget_bias: constant added to the forget gate after the norm, every step (authors' code: 1.0).
      recurrent_dropout: drop rate on ``tanh(g)`` (training only, fresh mask every step).
      use_bias: adds a gate bias before the norm (off: the paper's counts have none).
      seed: seed of the dropout masks' generator.
      **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).

    Weights: ``kernel [N_x, 4N]`` (Glorot-uniform), ``recurrent_kernel [N, 4N]`` (orthogonal per gate),
    ``gate_gamma``/``gate_beta`` ``[4N]`` (init 1/0), ``cell_gamma``/``cell_beta`` ``[N]`` (init 1/0).

    Call arguments:
      inputs: ``[batch, N_x]``, the input at one step.
      states: ``[h, c]``, each ``[batch, N]``.
      training: whether recurrent dropout is active.

    Returns:
      ``(h_t, [h_t, c_t])``; :meth:`step` adds ``tanh_c = tanh(LN(c_t))``.

    Example:

    >>> from zoo.layers import RNN
    >>> rnn = RNN(LayerNormLSTMCell(16), return_sequences=True)
    >>> tuple(rnn(np.zeros((2, 10, 8), "float32")).shape)
    (2, 10, 16)
    """

    use_layer_norm = True

    def __init__(
        self,
        units: int,
        forget_bias: float = 1.0,
        recurrent_dropout: float = 0.0,
        use_bias: bool = False,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(
            units,
            forget_bias=forget_bias,
            recurrent_dropout=recurrent_dropout,
            use_bias=use_bias,
            seed=seed,
            **kwargs,
        )
