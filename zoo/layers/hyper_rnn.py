"""Dynamic hypernetworks for recurrent networks: HyperLSTMCell (Eq. 10-13) and HyperRNNCell (Eq. 8).

HyperNetworks (Ha, Dai, Le 2016), §3.2 and appendices A.2.2-A.2.3. A small recurrent network (the
*hyper cell*) reads ``[x_t, h_{t-1}]`` and, at every step, emits embeddings ``z`` that are linearly
projected to *weight-scaling vectors* ``d`` scaling the rows of the main cell's weights (the
memory-efficient form, Eq. 8 and Eq. 12) and to a dynamic bias. As in the authors' code
(hardmaru/supercell; ``docs/hyperlstm_notes.md``), the hyper output at the *current* step drives the
main cell (the paper's Eq. 6 and 11 write ``t-1``).

Initialisers (Eq. 11-12 as the authors initialise them): ``z`` projections for the scaling vectors have
weights 0 and biases 1; ``d = W^d z`` has no bias and constant weights ``0.1 / embedding_size``, so every
scaling vector starts at exactly 0.1 (the recurrent-batch-norm trick); the bias embedding ``z_b`` has
weights N(0, 0.01) and no bias, its projection ``W_b^d`` starts at 0 and the fixed bias ``b_0`` at 0.
Input weights (the main cell's ``W_x`` and the hyper cell's weights on ``[x_t; h_{t-1}]``) are
Glorot-uniform, recurrent weights orthogonal per gate block (:mod:`zoo.layers.rnn_base`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from zoo.layers.lstm import lstm_update
from zoo.layers.rnn_base import (
    GATES,
    BlockOrthogonal,
    ColumnBlocks,
    RecurrentCell,
    check_drop_rate,
    check_positive,
    glorot_uniform_limit,
)

__all__ = ["HyperLSTMCell", "HyperRNNCell"]


def _hyper_input_init(fan_in: int, fan_out: int) -> keras.initializers.Initializer:
    """Uniform with the Glorot bound of the hyper cell's joint input matrix ``[fan_in, fan_out]``.

    The authors' hyper cell takes ``[x_t; h_{t-1}]`` as one input and draws one Glorot-uniform matrix
    ``[N_x + N, 4H]``; the fused kernels here hold its ``x`` rows and its ``h`` rows in two weights, each
    drawn i.i.d. from the same uniform, which is the same distribution.
    """
    limit = glorot_uniform_limit(fan_in, fan_out)
    return keras.initializers.RandomUniform(-limit, limit)


@keras.saving.register_keras_serializable(package="zoo")
class HyperLSTMCell(RecurrentCell):
    """HyperLSTM cell, HyperNetworks Eq. 10-13 in the memory-efficient form (Eq. 12).

    Per step, with ``x_t`` the input, ``(h, c)`` the main state (N units) and ``(ĥ, ĉ)`` the hyper
    state (H units):

    1. hyper cell: an LSTM (layer-normalised like :class:`LayerNormLSTMCell` when ``use_layer_norm``,
       but keeping its bias, as the paper's parameter counts require) over ``[x_t, h_{t-1}]`` -> ``ĥ_t``,
       with its own forget bias ``hyper_forget_bias`` (the authors fix it at 1.0 whatever the main
       cell's);
    2. Eq. 11: for each gate y in {i, g, f, o}: ``z_x^y = W_x^z ĥ_t + 1``-init bias,
       ``z_h^y`` likewise, ``z_b^y = W_b^z ĥ_t`` (no bias);
    3. Eq. 12: ``d_x^y = W_x^d z_x^y``, ``d_h^y = W_h^d z_h^y`` (no bias), ``b^y = W_b^d z_b^y + b_0^y``;
       ``y_t = LN(d_h^y ⊙ W_h^y h_{t-1} + d_x^y ⊙ W_x^y x_t + b^y)`` (LN only with ``use_layer_norm``);
    4. Eq. 13: ``c_t = σ(f + forget_bias) ⊙ c_{t-1} + σ(i) ⊙ Dropout(tanh(g))``,
       ``h_t = σ(o) ⊙ tanh(LN(c_t))`` (carried ``c_t`` un-normalised).

    Recurrent dropout (Semeniuta et al. 2016) acts on ``tanh(g)`` of the main cell
    (``recurrent_dropout``) and of the hyper cell (``hyper_recurrent_dropout``), only in training, with
    a fresh mask every step; both are drop *rates*.

    Args:
      units: N, the main cell's units.
      hyper_units: H, the hyper cell's units (paper: 128; 256 or 512 for enwik8).
      embedding_size: E, the size of each embedding ``z`` (paper: 4; 16 or 64 in some rows).
      use_layer_norm: layer norm per gate and on ``c`` in both cells (the "Layer Norm HyperLSTM").
      recurrent_dropout: drop rate on the main cell's ``tanh(g)``.
      hyper_recurrent_dropout: drop rate on the hyper cell's ``tanh(g)`` (A.3.4, 2048-unit model).
      forget_bias: constant added to the main cell's forget gate every step.
      hyper_forget_bias: constant added to the hyper cell's forget gate (default 1.0, as the authors).
      seed: seed of the dropout masks and of the ``z_b`` init.
      **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).

    Fused weights (the paper's footnote: the weight matrices concatenated for efficiency), so a step
    costs two large matmuls on ``x_t`` and ``h_{t-1}``, one on ``ĥ_{t-1}``, one on ``ĥ_t`` and two
    batched ``E x N`` products; the one on ``x_t`` (:meth:`project_inputs`, main and hyper columns
    together) does not depend on the recurrence, and ``zoo.layers.RNN`` computes it for the whole window
    in one product before the loop:

    - ``kernel [N_x, 4N + 4H]``: columns ``[W_x^i, W_x^g, W_x^f, W_x^o | hyper W_x̂^{i,g,f,o}]``; the
      main block Glorot-uniform over ``[N_x, 4N]``, the hyper block uniform with the Glorot bound of the
      hyper cell's joint ``[N_x + N, 4H]`` input matrix (the authors' init);
    - ``recurrent_kernel [N, 4N + 4H]``: ``[W_h^{i,g,f,o} | hyper's weights on h_{t-1}]``; the main block
      orthogonal per gate, the hyper block as the hyper block of ``kernel``;
    - ``hyper_recurrent_kernel [H, 4H]`` (orthogonal per gate), ``hyper_bias [4H]`` (zeros);
    - ``z_kernel [H, 8E]`` (init 0) and ``z_bias [8E]`` (init 1): ``[z_x^{i,g,f,o} | z_h^{i,g,f,o}]``;
    - ``z_b_kernel [H, 4E]`` (init N(0, 0.01)): ``z_b^{i,g,f,o}``;
    - ``d_kernel [8, E, N]`` (init 0.1/E), rows matching ``z_kernel``'s eight blocks;
    - ``d_b_kernel [4, E, N]`` (init 0), ``bias [4N]`` = ``b_0`` (init 0);
    - with layer norm: ``gate_gamma/gate_beta [4N]``, ``cell_gamma/cell_beta [N]`` and the hyper
      cell's ``hyper_gate_gamma/hyper_gate_beta [4H]``, ``hyper_cell_gamma/hyper_cell_beta [H]``.

    Trainable parameters: ``4N(N_x+N+1) + 4H(N_x+N+H+1) + 12HE + 8E + 12EN`` (+ ``10N + 10H`` with layer
    norm), which reproduces the paper's Tables 3-5 (``docs/param_counts.md``).

    Call arguments:
      inputs: ``[batch, N_x]``, the input at one step.
      states: ``[h, c, hyper_h, hyper_c]`` of sizes ``[N, N, H, H]`` (``state_size``).
      training: whether recurrent dropout is active.

    Returns:
      ``(h_t, [h_t, c_t, ĥ_t, ĉ_t])``. ``hyper_h`` of the *new* state is the hyper output ``ĥ_t`` that
      produced this step's scaling vectors, so ``cell.compute_scales(new_state[2])`` gives them.
      :meth:`step` returns every intermediate value.

    Example:

    >>> from zoo.layers import RNN
    >>> cell = HyperLSTMCell(32, hyper_units=16, embedding_size=4, recurrent_dropout=0.1)
    >>> rnn = RNN(cell, return_sequences=True, return_state=True)
    >>> outputs, h, c, hyper_h, hyper_c = rnn(np.zeros((2, 10, 8), "float32"))
    >>> tuple(outputs.shape), tuple(hyper_h.shape)
    ((2, 10, 32), (2, 16))
    >>> sorted(cell.compute_scales(hyper_h))[:3]
    ['b_f', 'b_g', 'b_i']
    """

    state_keys = ("h", "c", "hyper_h", "hyper_c")

    def __init__(
        self,
        units: int,
        hyper_units: int = 128,
        embedding_size: int = 4,
        use_layer_norm: bool = True,
        recurrent_dropout: float = 0.0,
        hyper_recurrent_dropout: float = 0.0,
        forget_bias: float = 1.0,
        hyper_forget_bias: float = 1.0,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(units, seed=seed, **kwargs)
        name = type(self).__name__
        self.hyper_units = check_positive(name, "hyper_units", hyper_units)
        self.embedding_size = check_positive(name, "embedding_size", embedding_size)
        self.use_layer_norm = bool(use_layer_norm)
        self.recurrent_dropout = check_drop_rate(name, "recurrent_dropout", recurrent_dropout)
        self.hyper_recurrent_dropout = check_drop_rate(
            name, "hyper_recurrent_dropout", hyper_recurrent_dropout
        )
        self.forget_bias = float(forget_bias)
        self.hyper_forget_bias = float(hyper_forget_bias)
        self.state_size = [self.units, self.units, self.hyper_units, self.hyper_units]

    def build(self, input_shape: Sequence[int | None]) -> None:
        n, hu, e = self.units, self.hyper_units, self.embedding_size
        n_x = int(input_shape[-1])
        widths = [4 * n, 4 * hu]
        self.kernel = self.add_weight(
            name="kernel",
            shape=(n_x, 4 * n + 4 * hu),
            initializer=ColumnBlocks(widths, ["glorot_uniform", _hyper_input_init(n_x + n, 4 * hu)]),
        )
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel",
            shape=(n, 4 * n + 4 * hu),
            initializer=ColumnBlocks(widths, [BlockOrthogonal([n] * 4), _hyper_input_init(n_x + n, 4 * hu)]),
        )
        self.hyper_recurrent_kernel = self.add_weight(
            name="hyper_recurrent_kernel", shape=(hu, 4 * hu), initializer=BlockOrthogonal([hu] * 4)
        )
        self.hyper_bias = self.add_weight(name="hyper_bias", shape=(4 * hu,), initializer="zeros")
        self.z_kernel = self.add_weight(name="z_kernel", shape=(hu, 8 * e), initializer="zeros")
        self.z_bias = self.add_weight(name="z_bias", shape=(8 * e,), initializer="ones")
        self.z_b_kernel = self.add_weight(
            name="z_b_kernel",
            shape=(hu, 4 * e),
            initializer=keras.initializers.RandomNormal(stddev=0.01, seed=self.seed),
        )
        self.d_kernel = self.add_weight(
            name="d_kernel", shape=(8, e, n), initializer=keras.initializers.Constant(0.1 / e)
        )
        self.d_b_kernel = self.add_weight(name="d_b_kernel", shape=(4, e, n), initializer="zeros")
        self.bias = self.add_weight(name="bias", shape=(4 * n,), initializer="zeros")
        if self.use_layer_norm:  # gain 1, shift 0 (Ba et al. 2016; the authors' layer_norm_all)
            self.gate_gamma = self.add_weight(name="gate_gamma", shape=(4 * n,), initializer="ones")
            self.gate_beta = self.add_weight(name="gate_beta", shape=(4 * n,), initializer="zeros")
            self.cell_gamma = self.add_weight(name="cell_gamma", shape=(n,), initializer="ones")
            self.cell_beta = self.add_weight(name="cell_beta", shape=(n,), initializer="zeros")
            self.hyper_gate_gamma = self.add_weight(
                name="hyper_gate_gamma", shape=(4 * hu,), initializer="ones"
            )
            self.hyper_gate_beta = self.add_weight(
                name="hyper_gate_beta", shape=(4 * hu,), initializer="zeros"
            )
            self.hyper_cell_gamma = self.add_weight(name="hyper_cell_gamma", shape=(hu,), initializer="ones")
            self.hyper_cell_beta = self.add_weight(name="hyper_cell_beta", shape=(hu,), initializer="zeros")

    # ------------------------------------------------------------------ the hypernetwork's outputs
    def window_constants(self) -> dict[str, Any]:
        """The weights of Eq. 11-12 fused once per window: ``z_kernel [H, 12E]`` and ``z_bias [12E]``
        (``z_x``, ``z_h`` and ``z_b``, which has no bias) and ``d_kernels [12, E, N]`` (``W_x^d``,
        ``W_h^d``, ``W_b^d`` for each gate)."""
        e = self.embedding_size
        return {
            "z_kernel": ops.concatenate([self.z_kernel, self.z_b_kernel], axis=-1),
            "z_bias": ops.concatenate([self.z_bias, ops.zeros((4 * e,), dtype=self.z_bias.dtype)], axis=0),
            "d_kernels": ops.concatenate([self.d_kernel, self.d_b_kernel], axis=0),
        }

    def _embeddings_to_vectors(self, hyper_output: Any) -> tuple[Any, Any, Any]:
        """``ĥ [B, H]`` -> ``(d_x [B, 4N], d_h [B, 4N], b [B, 4N])`` (Eq. 11-12).

        The twelve per-gate products ``z^k W^k`` (``d_x``, ``d_h``, ``b`` for each gate, ``[E] x [E, N]``)
        run as one batched product over the gate axis, ``[12, B, E] x [12, E, N]``; TensorFlow's oneDNN
        einsum of the same contraction (``bke,ken->bkn``) takes about 1.7x as long, forward and backward.
        """
        n, e = self.units, self.embedding_size
        fused = self.window()
        z = ops.matmul(hyper_output, fused["z_kernel"]) + fused["z_bias"]  # [B, 12E]: z_x, z_h, z_b
        zs = ops.transpose(ops.reshape(z, (-1, 12, e)), (1, 0, 2))
        vectors = ops.transpose(ops.matmul(zs, fused["d_kernels"]), (1, 0, 2))  # [B, 12, N]
        d_x, d_h, b = (ops.reshape(v, (-1, 4 * n)) for v in ops.split(vectors, 3, axis=1))
        return d_x, d_h, b + self.bias

    def compute_scales(self, hyper_output: Any) -> dict[str, Any]:
        """The vectors the main cell uses for hyper output ``ĥ [..., H]`` (any leading dimensions).

        Keys ``d_x_<y>`` and ``d_h_<y>`` (weight-scaling vectors of ``W_x^y`` and ``W_h^y``) and
        ``b_<y>`` (the full dynamic bias ``W_b^d z_b^y + b_0^y``) for y in ``GATES``; each ``[..., N]``.
        """
        hyper_output = ops.convert_to_tensor(hyper_output, dtype=self.compute_dtype)
        lead = tuple(ops.shape(hyper_output)[:-1])
        flat = ops.reshape(hyper_output, (-1, self.hyper_units))
        out = {}
        for prefix, value in zip(("d_x", "d_h", "b"), self._embeddings_to_vectors(flat), strict=True):
            for gate, part in zip(GATES, ops.split(value, 4, axis=-1), strict=True):
                out[f"{prefix}_{gate}"] = ops.reshape(part, lead + (self.units,))
        return out

    # ------------------------------------------------------------------ one step
    def dropout_sites(self) -> list[tuple[float, int]]:
        return [(self.hyper_recurrent_dropout, self.hyper_units), (self.recurrent_dropout, self.units)]

    def recurrent_probe_width(self) -> int:
        return 4 * self.units  # d_h scales the main block; the hyper block joins the projection unscaled

    def project_inputs(self, inputs: Any) -> Any:
        """``[W_x x_t | W_x̂ x_t + b̂]`` ``[..., 4N + 4H]`` for inputs ``[..., N_x]``: one product with the
        fused ``kernel``. Eq. 12 scales ``W_x x_t`` elementwise by ``d_x(z_t)`` *after* the product, so the
        main block is precomputable too (``zoo.layers.RNN`` does it for the whole window); the hyper
        block also carries the hyper cell's bias."""
        zeros = ops.zeros((4 * self.units,), dtype=self.hyper_bias.dtype)
        return ops.matmul(inputs, self.kernel) + ops.concatenate([zeros, self.hyper_bias], axis=0)

    def step_projected(
        self, projected: Any, states: Sequence[Any], training: bool | None = None
    ) -> dict[str, Any]:
        """One step from ``project_inputs(x_t)`` with every intermediate: ``h``, ``c``, ``tanh_c`` (what
        ``σ(o)`` scales, Figure 5), ``hyper_h``, ``hyper_c`` and the fused ``d_x``, ``d_h``, ``b``
        ``[B, 4N]`` (gate order i, g, f, o)."""
        h_prev, c_prev, hh_prev, hc_prev = states[0], states[1], states[2], states[3]
        n4 = 4 * self.units
        x_proj = projected  # [B, 4N + 4H]
        h_main, h_hyper = self.recurrent_product(h_prev, split=n4)  # [B, 4N], [B, 4H]

        # 1. the hyper cell over [x_t, h_{t-1}], with its own forget bias (b̂ is in x_proj)
        # a split, not slices: a split's gradient is one concat, a strided slice's a zero-filled copy
        x_main, x_hyper = ops.split(x_proj, [n4], axis=-1)
        hyper_pre = x_hyper + h_hyper + ops.matmul(hh_prev, self.hyper_recurrent_kernel)
        ln = self.use_layer_norm
        hyper_h, hyper_c, _ = lstm_update(
            hyper_pre,
            hc_prev,
            forget_bias=self.hyper_forget_bias,
            dropout=self.dropout(self.hyper_recurrent_dropout, training),
            gate_norm=(self.hyper_gate_gamma, self.hyper_gate_beta) if ln else None,
            cell_norm=(self.hyper_cell_gamma, self.hyper_cell_beta) if ln else None,
        )

        # 2-3. scaling vectors and dynamic bias from the current hyper output
        d_x, d_h, b = self._embeddings_to_vectors(hyper_h)
        pre = d_x * x_main + d_h * h_main + b

        # 4. the main LSTM update (layer norm per gate, then Eq. 13)
        h, c, tanh_c = lstm_update(
            pre,
            c_prev,
            forget_bias=self.forget_bias,
            dropout=self.dropout(self.recurrent_dropout, training),
            gate_norm=(self.gate_gamma, self.gate_beta) if ln else None,
            cell_norm=(self.cell_gamma, self.cell_beta) if ln else None,
        )
        return {
            "h": h,
            "c": c,
            "tanh_c": tanh_c,
            "hyper_h": hyper_h,
            "hyper_c": hyper_c,
            "d_x": d_x,
            "d_h": d_h,
            "b": b,
        }

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "hyper_units": self.hyper_units,
                "embedding_size": self.embedding_size,
                "use_layer_norm": self.use_layer_norm,
                "recurrent_dropout": self.recurrent_dropout,
                "hyper_recurrent_dropout": self.hyper_recurrent_dropout,
                "forget_bias": self.forget_bias,
                "hyper_forget_bias": self.hyper_forget_bias,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="zoo")
class HyperRNNCell(RecurrentCell):
    """HyperRNN cell, HyperNetworks §3.2 Eq. 6 (hyper cell) and Eq. 8 (memory-efficient main cell).

    Hyper cell (a basic RNN with H units): ``ĥ_t = tanh(W_ĥ ĥ_{t-1} + W_x̂ [x_t; h_{t-1}] + b̂)``;
    embeddings ``z_h = W_ĥh ĥ_t + b_ĥh``, ``z_x = W_ĥx ĥ_t + b_ĥx`` (weights 0, biases 1),
    ``z_b = W_ĥb ĥ_t`` (N(0, 0.01), no bias); main cell (Eq. 8):
    ``h_t = tanh(d_h(z_h) ⊙ W_h h_{t-1} + d_x(z_x) ⊙ W_x x_t + b(z_b))`` with ``d = W^d z`` (constant
    0.1/E, so d starts at 0.1) and ``b(z_b) = W_b^d z_b + b_0`` (both 0 at init). As in
    :class:`HyperLSTMCell` the hyper output of the current step is used (the paper's Eq. 6 writes t-1).

    Args:
      units: N, the main cell's units.
      hyper_units: H, the hyper cell's units.
      embedding_size: E, the size of each embedding ``z``.
      seed: seed of the ``z_b`` init (the cell has no dropout).
      **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).

    Weights: ``kernel [N_x, N + H]`` and ``recurrent_kernel [N, N + H]`` (main | hyper columns; the
    HyperLSTM's init by analogy: main ``W_x`` Glorot-uniform, main ``W_h`` orthogonal, the hyper columns
    uniform with the Glorot bound of the hyper cell's joint ``[N_x + N, H]`` matrix),
    ``hyper_recurrent_kernel [H, H]`` (orthogonal), ``hyper_bias [H]``, ``z_kernel [H, 2E]``,
    ``z_bias [2E]``, ``z_b_kernel [H, E]``, ``d_kernel [2, E, N]``, ``d_b_kernel [E, N]``, ``bias [N]``.
    Parameters: ``N(N_x + N + 1) + H(N_x + N + H + 1) + 3HE + 2E + 3EN``.

    Call arguments:
      inputs: ``[batch, N_x]``, the input at one step.
      states: ``[h, hyper_h]`` of sizes ``[N, H]``.
      training: unused (no dropout).

    Returns:
      ``(h_t, [h_t, ĥ_t])``; :meth:`step` adds ``d_x``, ``d_h`` and ``b``.

    Example:

    >>> from zoo.layers import RNN
    >>> rnn = RNN(HyperRNNCell(32, hyper_units=16, embedding_size=4), return_sequences=True)
    >>> tuple(rnn(np.zeros((2, 10, 8), "float32")).shape)
    (2, 10, 32)
    """

    state_keys = ("h", "hyper_h")

    def __init__(
        self,
        units: int,
        hyper_units: int = 128,
        embedding_size: int = 4,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(units, seed=seed, **kwargs)
        self.hyper_units = check_positive(type(self).__name__, "hyper_units", hyper_units)
        self.embedding_size = check_positive(type(self).__name__, "embedding_size", embedding_size)
        self.state_size = [self.units, self.hyper_units]

    def build(self, input_shape: Sequence[int | None]) -> None:
        n, hu, e = self.units, self.hyper_units, self.embedding_size
        n_x = int(input_shape[-1])
        self.kernel = self.add_weight(
            name="kernel",
            shape=(n_x, n + hu),
            initializer=ColumnBlocks([n, hu], ["glorot_uniform", _hyper_input_init(n_x + n, hu)]),
        )
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel",
            shape=(n, n + hu),
            initializer=ColumnBlocks([n, hu], ["orthogonal", _hyper_input_init(n_x + n, hu)]),
        )
        self.hyper_recurrent_kernel = self.add_weight(
            name="hyper_recurrent_kernel", shape=(hu, hu), initializer=keras.initializers.Orthogonal()
        )
        self.hyper_bias = self.add_weight(name="hyper_bias", shape=(hu,), initializer="zeros")
        self.z_kernel = self.add_weight(name="z_kernel", shape=(hu, 2 * e), initializer="zeros")
        self.z_bias = self.add_weight(name="z_bias", shape=(2 * e,), initializer="ones")
        self.z_b_kernel = self.add_weight(
            name="z_b_kernel",
            shape=(hu, e),
            initializer=keras.initializers.RandomNormal(stddev=0.01, seed=self.seed),
        )
        self.d_kernel = self.add_weight(
            name="d_kernel", shape=(2, e, n), initializer=keras.initializers.Constant(0.1 / e)
        )
        self.d_b_kernel = self.add_weight(name="d_b_kernel", shape=(e, n), initializer="zeros")
        self.bias = self.add_weight(name="bias", shape=(n,), initializer="zeros")

    def compute_scales(self, hyper_output: Any) -> dict[str, Any]:
        """``{"d_x", "d_h", "b"}`` (each ``[..., N]``) for hyper output ``ĥ [..., H]`` (Eq. 8)."""
        e = self.embedding_size
        z = ops.matmul(hyper_output, self.z_kernel) + self.z_bias
        d_x = ops.matmul(z[..., :e], self.d_kernel[0])
        d_h = ops.matmul(z[..., e:], self.d_kernel[1])
        b = ops.matmul(ops.matmul(hyper_output, self.z_b_kernel), self.d_b_kernel) + self.bias
        return {"d_x": d_x, "d_h": d_h, "b": b}

    def recurrent_probe_width(self) -> int:
        return self.units  # d_h scales the main block; the hyper block joins the projection unscaled

    def project_inputs(self, inputs: Any) -> Any:
        """``[W_x x_t | W_x̂ x_t + b̂]`` ``[..., N + H]`` for inputs ``[..., N_x]`` (one product; Eq. 8
        scales ``W_x x_t`` by ``d_x`` after it, so ``zoo.layers.RNN`` computes it for the whole window)."""
        zeros = ops.zeros((self.units,), dtype=self.hyper_bias.dtype)
        return ops.matmul(inputs, self.kernel) + ops.concatenate([zeros, self.hyper_bias], axis=0)

    def step_projected(
        self, projected: Any, states: Sequence[Any], training: bool | None = None
    ) -> dict[str, Any]:
        """One step from ``project_inputs(x_t)`` with its intermediates: ``h``, ``hyper_h``, ``d_x``,
        ``d_h``, ``b``."""
        h_prev, hh_prev = states[0], states[1]
        n = self.units
        x_proj = projected
        h_main, h_hyper = self.recurrent_product(h_prev, split=n)
        x_main, x_hyper = ops.split(x_proj, [n], axis=-1)
        hyper_h = ops.tanh(x_hyper + h_hyper + ops.matmul(hh_prev, self.hyper_recurrent_kernel))
        s = self.compute_scales(hyper_h)
        h = ops.tanh(s["d_h"] * h_main + s["d_x"] * x_main + s["b"])
        return {"h": h, "hyper_h": hyper_h, **s}

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"hyper_units": self.hyper_units, "embedding_size": self.embedding_size})
        return config
