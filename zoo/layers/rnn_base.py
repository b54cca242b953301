"""What every recurrent cell of the zoo shares: the role Keras' ``DropoutRNNCell`` plays for its cells.

:class:`RecurrentCell` is the base of :class:`BasicLSTMCell`, :class:`LayerNormLSTMCell`,
:class:`HyperLSTMCell` and :class:`HyperRNNCell` (and of any new cell). It owns, once:

- the seed and the generator of the dropout masks, and :meth:`RecurrentCell.dropout`: recurrent dropout
  with a *fresh mask at every step*, only in training (Semeniuta et al. 2016, "Recurrent dropout without
  memory loss"; HyperNetworks Eq. 13 drops ``tanh(g)``). Keras' ``DropoutRNNCell`` instead keeps one mask
  per sequence on ``h``; that is a different regulariser. A cell lists the dropouts of one step in
  :meth:`RecurrentCell.dropout_sites`;
- the step contract: :meth:`RecurrentCell.step` returns a dict of everything a step computes, with ``"h"``
  and one key per entry of ``state_keys``; ``call`` returns ``(h, [step[k] for k in state_keys])``, so
  figures and samplers read intermediates from the same code that trains;
- the split of a step into what depends on ``x_t`` alone and what depends on the recurrence:
  :meth:`RecurrentCell.project_inputs` maps inputs of any leading shape ``[..., N_x]`` to their projection
  ``[..., P]`` and :meth:`RecurrentCell.step_projected` is the rest of the step, so that
  ``step(x, s) == step_projected(project_inputs(x), s)``. In an LSTM the input projection ``W_x x_t + b``
  does not depend on ``h_{t-1}``, so it can be computed for a whole window in one large product before the
  loop (what cuDNN does); only ``W_h h_{t-1}`` stays inside. A cell that implements only :meth:`step` gets
  the identity projection;
- ``get_initial_state`` (zeros of ``state_size``) and the ``units``/``seed`` part of ``get_config``.

:class:`RNN` is ``keras.layers.RNN`` that projects the inputs of the whole window before the loop (one
:meth:`RecurrentCell.project_inputs` call on ``[batch, time, N_x]``; the loop runs
:meth:`RecurrentCell.step_projected`), forms the gradient of the cell's ``recurrent_kernel`` after the loop
in one large product in training (:meth:`RecurrentCell.recurrent_product`,
:mod:`zoo.layers.recurrent_gradient`; what cuDNN does) and draws the uniform noise of every step's
dropout *before* the loop (one draw of ``[batch, time, width]``) and hands each step its slice, so the
loop itself is stateless.
That is what makes per-step masks work on every backend: JAX runs the loop as ``lax.scan``, where a
``SeedGenerator`` advanced inside the step is not carried from one step to the next (the same mask at
every step eagerly, an ``UnexpectedTracerError`` under ``jit``). With plain ``keras.layers.RNN`` or when
calling :meth:`RecurrentCell.step` in a Python loop, each step draws from the seed generator instead
(correct on TensorFlow and in Python loops on every backend).

Module-level helpers: :data:`GATES` (the gate order of every fused ``[..., 4 * units]`` tensor),
:func:`check_drop_rate`, :func:`check_positive`, and the initialisers of fused weights:
:class:`BlockOrthogonal` (orthogonal per gate block, the authors' ``lstm_ortho_initializer``) and
:class:`ColumnBlocks` (different initialisers side by side in one fused matrix).

Initialisation convention of every cell (the authors' HyperLSTM code, hardmaru/supercell; details in
``docs/hyperlstm_notes.md``): input weights ``W_x`` Glorot-uniform over the whole ``[N_x, 4N]`` matrix,
recurrent weights ``W_h`` orthogonal per gate block, biases 0.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import keras
from keras import ops

from zoo.layers.recurrent_gradient import (
    constant_kernel_matmul,
    hoisted_weight_recurrence,
    supports_hoisted_gradient,
)

__all__ = [
    "GATES",
    "RNN",
    "BlockOrthogonal",
    "ColumnBlocks",
    "RecurrentCell",
    "check_drop_rate",
    "check_positive",
    "glorot_uniform_limit",
]

#: gate order of every fused ``[..., 4 * units]`` tensor: the authors' ``i, j, f, o`` (``j`` is the
#: candidate ``g``). Keras' own ``LSTMCell`` uses ``i, f, c, o``.
GATES = ("i", "g", "f", "o")


def check_drop_rate(owner: str, name: str, value: float) -> float:
    """``value`` as a float if it is a drop rate in [0, 1); else a ValueError naming ``owner``, ``name``."""
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(
            f"{owner}: {name}={value!r} is a drop rate and must be in [0, 1) "
            "(the paper's keep probability k is rate 1 - k)"
        )
    return float(value)


def check_positive(owner: str, name: str, value: int) -> int:
    """``value`` as an int if it is >= 1, else a ValueError naming ``owner`` and ``name``."""
    if int(value) < 1:
        raise ValueError(f"{owner}: {name}={value!r} must be a positive integer")
    return int(value)


def glorot_uniform_limit(fan_in: int, fan_out: int) -> float:
    """``sqrt(6 / (fan_in + fan_out))``, the Glorot-uniform bound of a ``[fan_in, fan_out]`` matrix."""
    return math.sqrt(6.0 / (fan_in + fan_out))


@keras.saving.register_keras_serializable(package="zoo")
class BlockOrthogonal(keras.initializers.Initializer):
    """Orthogonal init applied independently to column blocks of a 2-D weight.

    ``block_sizes`` splits the last axis (e.g. ``[units] * 4`` for the four gates of an LSTM); each
    ``[fan_in, block]`` slice is an independent (semi-)orthogonal matrix times ``gain``. This is the
    authors' ``lstm_ortho_initializer`` (per-gate orthogonal, used for ``W_h``), generalised to unequal
    blocks.

    Args:
      block_sizes: widths of the column blocks; they must sum to the last axis of the shape.
      gain: multiplier of every block.
      seed: block ``k`` uses ``seed + k``; ``None`` draws unseeded.

    Example:

    >>> init = BlockOrthogonal([4, 4, 4, 4])
    >>> w = init((4, 16))  # four independent 4x4 orthogonal matrices side by side
    """

    def __init__(self, block_sizes: Sequence[int], gain: float = 1.0, seed: int | None = None):
        self.block_sizes = [int(b) for b in block_sizes]
        self.gain = float(gain)
        self.seed = seed

    def __call__(self, shape: Sequence[int], dtype: Any = None) -> Any:
        shape = tuple(int(s) for s in shape)
        if len(shape) != 2 or sum(self.block_sizes) != shape[-1]:
            raise ValueError(
                f"BlockOrthogonal: block_sizes {self.block_sizes} (sum {sum(self.block_sizes)}) must split "
                f"the last axis of a 2-D shape; got shape {shape}"
            )
        blocks = []
        for k, size in enumerate(self.block_sizes):
            seed = None if self.seed is None else self.seed + k
            init = keras.initializers.Orthogonal(gain=self.gain, seed=seed)
            blocks.append(init((shape[0], size), dtype=dtype))
        return ops.concatenate(blocks, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {"block_sizes": list(self.block_sizes), "gain": self.gain, "seed": self.seed}


@keras.saving.register_keras_serializable(package="zoo")
class ColumnBlocks(keras.initializers.Initializer):
    """Several initialisers side by side along the last axis of one fused 2-D weight.

    Block ``k`` is ``initializers[k]((rows, widths[k]))``, so each initialiser sees the shape of its own
    block (a Glorot initialiser computes its fans from that block). The fused kernels of
    :class:`HyperLSTMCell` hold the main cell's ``W_x`` (Glorot-uniform) next to the hyper cell's
    weights (uniform with the bound of the hyper cell's own ``[N_x + N, 4H]`` matrix).

    Args:
      widths: widths of the blocks; they must sum to the last axis of the shape.
      initializers: one initialiser (object, name or config) per block.

    Example:

    >>> init = ColumnBlocks([8, 3], ["glorot_uniform", keras.initializers.RandomUniform(-0.1, 0.1)])
    >>> w = init((5, 11))
    """

    def __init__(self, widths: Sequence[int], initializers: Sequence[Any]):
        if len(widths) != len(initializers):
            raise ValueError(
                f"ColumnBlocks: {len(widths)} widths {list(widths)} but {len(initializers)} initializers"
            )
        self.widths = [int(w) for w in widths]
        self.initializers = [keras.initializers.get(i) for i in initializers]

    def __call__(self, shape: Sequence[int], dtype: Any = None) -> Any:
        shape = tuple(int(s) for s in shape)
        if len(shape) != 2 or sum(self.widths) != shape[-1]:
            raise ValueError(
                f"ColumnBlocks: widths {self.widths} (sum {sum(self.widths)}) must split the last axis of a "
                f"2-D shape; got shape {shape}"
            )
        blocks = [
            init((shape[0], w), dtype=dtype) for w, init in zip(self.widths, self.initializers, strict=True)
        ]
        return ops.concatenate(blocks, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {
            "widths": list(self.widths),
            "initializers": [keras.initializers.serialize(i) for i in self.initializers],
        }


class RecurrentCell(keras.layers.Layer):
    """Base of the zoo's recurrent cells: seed, per-step dropout, zero state, ``call`` from ``step``.

    A subclass sets ``state_keys`` (names of its state tensors, in ``state_size`` order), sets
    ``self.state_size`` in ``__init__``, makes its weights in ``build``, implements either :meth:`step` or
    (to have its input projection computed once per window by :class:`RNN`) :meth:`project_inputs` and
    :meth:`step_projected`, calling :meth:`dropout` for each dropout of the step, and lists those dropouts
    in :meth:`dropout_sites`.

    Args:
      units: N, the number of units (``output_size``).
      seed: seed of the dropout masks' generator (and of any seeded initialiser of the subclass).
      **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).
    """

    #: names of the state tensors in ``state_size`` order; :meth:`step` returns each of them.
    state_keys: tuple[str, ...] = ("h",)

    def __init__(self, units: int, seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.units = check_positive(type(self).__name__, "units", units)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.output_size = self.units
        # set by RNN while it feeds extras after each step's own input ([input | probe | noise]): the
        # width of the input, of the gradient probe (see recurrent_product) and the pre-drawn noise
        self._noise_split: int | None = None
        self._probe_width = 0
        self._inputs_projected = False  # set by RNN while it feeds project_inputs() of the window
        self._hoisting = False  # set by RNN while recurrent_kernel is a constant of the loop
        self._kernel_t: Any = None  # its transpose then, on TensorFlow
        self._step_noise: Any = None
        self._step_probe: Any = None
        self._noise_used = 0
        self._product_used = False
        self._window: dict[str, Any] | None = None  # set by RNN for the duration of a window

    def dropout_sites(self) -> list[tuple[float, int]]:
        """``(rate, width)`` of every dropout one step applies, in the order :meth:`step` applies them."""
        return []

    def dropout_noise_width(self, training: bool | None) -> int:
        """Uniform numbers one step consumes: the widths of the active sites (0 outside training)."""
        if not training:
            return 0
        return sum(width for rate, width in self.dropout_sites() if rate > 0.0)

    def dropout(self, rate: float, training: bool | None) -> Callable[[Any], Any] | None:
        """A function dropping its input at ``rate`` with a fresh mask per step, or ``None`` when inactive.

        Active only when ``training`` is true and ``rate > 0``; an element is kept where a uniform number
        is ``>= rate`` and then scaled by ``1 / (1 - rate)``. Inside :class:`RNN` the numbers are this
        step's slice of the noise drawn before the loop; otherwise they come from the seed generator.
        """
        if not (training and rate > 0.0):
            return None

        def drop(t: Any) -> Any:
            width = int(t.shape[-1])
            if self._step_noise is None:
                u = keras.random.uniform(ops.shape(t), dtype=t.dtype, seed=self.seed_generator)
            else:
                u = self._step_noise[..., self._noise_used : self._noise_used + width]
                self._noise_used += width
            return ops.where(u >= rate, t / (1.0 - rate), ops.zeros_like(t))

        return drop

    def recurrent_product(self, h_prev: Any, split: int | None = None) -> Any:
        """``h_{t-1} W_h``: ``matmul(h_prev, self.recurrent_kernel)``, the one product of a step with the
        recurrent weight (``h_prev`` is ``states[0]``, the cell's previous output); with ``split``, the two
        parts ``ops.split(product, [split], axis=-1)``.

        A cell that computes its recurrent product here lets :class:`RNN` form the gradient of
        ``recurrent_kernel`` after the loop in one large product (:mod:`zoo.layers.recurrent_gradient`).
        Inside that loop the kernel is a constant, and the first :meth:`recurrent_probe_width` columns of
        the product get a zero "probe" ``e_t`` added, whose gradient is the gradient of those columns (a
        ``split`` must then equal that width, so the probe is added to the first part).
        """
        kernel = self.recurrent_kernel
        if self._hoisting:
            self._product_used = True
            product = constant_kernel_matmul(h_prev, kernel, self._kernel_t)
        else:
            product = ops.matmul(h_prev, kernel)
        probe = self._step_probe
        width = None if probe is None else int(probe.shape[-1])
        if split is not None:
            first, rest = ops.split(product, [split], axis=-1)  # a split's gradient is one concat
            if probe is None:
                return first, rest
            if width != split:
                raise ValueError(
                    f"{type(self).__name__}: recurrent_product(split={split}) but the probe covers the "
                    f"first {width} columns (recurrent_probe_width()); they must be equal"
                )
            return first + probe, rest
        if probe is None:
            return product
        if width == int(product.shape[-1]):
            return product + probe
        probed, rest = ops.split(product, [width], axis=-1)
        return ops.concatenate([probed + probe, rest], axis=-1)

    def recurrent_probe_width(self) -> int:
        """How many leading columns of :meth:`recurrent_product` need a gradient probe: the step adds the
        columns after them, unscaled, to the same columns of :meth:`step_projected`'s ``projected``, so
        their gradient is that of ``projected``. Here all of them (always correct); a cell whose whole
        product is added to its projection (the LSTM's ``W_x x_t + W_h h_{t-1} + b``) returns 0."""
        return int(self.recurrent_kernel.shape[-1])

    def window_constants(self) -> dict[str, Any]:
        """Values computed from the weights alone that every step uses (fused or stacked weights), made
        once per window by :class:`RNN` (inside its loop's differentiation) and read with :meth:`window`.
        None here."""
        return {}

    def window(self) -> dict[str, Any]:
        """:meth:`window_constants`: those :class:`RNN` made for this window, else made now."""
        return self._window if self._window is not None else self.window_constants()

    def project_inputs(self, inputs: Any) -> Any:
        """The part of a step that depends on the input alone, for inputs ``[..., N_x]`` of any leading shape
        (one step ``[B, N_x]`` or a window ``[B, T, N_x]``, one product for all of it). Identity here."""
        return inputs

    def step_projected(
        self, projected: Any, states: Sequence[Any], training: bool | None = None
    ) -> dict[str, Any]:
        """:meth:`step` from ``projected = project_inputs(inputs)`` (``[B, P]``); the same dict."""
        if type(self).step is RecurrentCell.step:
            raise NotImplementedError(
                f"{type(self).__name__} must implement step() or project_inputs() and step_projected()"
            )
        return self.step(projected, states, training=training)  # the identity projection

    def step(self, inputs: Any, states: Sequence[Any], training: bool | None = None) -> dict[str, Any]:
        """One step: a dict with ``"h"``, every key of ``state_keys`` and any intermediate worth reading.

        ``step_projected(project_inputs(inputs), states)``; a cell may implement this instead of the two.
        """
        return self.step_projected(self.project_inputs(inputs), states, training=training)

    def call(self, inputs: Any, states: Sequence[Any], training: bool | None = None) -> tuple[Any, list]:
        step = self.step_projected if self._inputs_projected else self.step
        if self._noise_split is None:
            out = step(inputs, states, training=training)
        else:  # inside RNN: after the input come this step's gradient probe and its dropout noise
            split, probe = self._noise_split, self._probe_width
            # one split into the parts there are (its gradient is one concat; a strided slice's is a
            # zero-filled copy of the whole input)
            widths = [split, probe, int(inputs.shape[-1]) - split - probe]
            present = [w for w in widths if w]
            cuts = list(itertools.accumulate(present[:-1]))
            parts = iter(ops.split(inputs, cuts, axis=-1) if cuts else [inputs])
            own = next(parts)
            self._step_probe = next(parts) if probe else None
            self._step_noise = next(parts) if widths[2] else None
            noise_width = widths[2]
            self._noise_used, self._product_used = 0, False
            try:
                out = step(own, states, training=training)
                if self._noise_used != noise_width:
                    raise ValueError(
                        f"{type(self).__name__}: step() used {self._noise_used} dropout numbers but "
                        f"dropout_sites() declares {noise_width}"
                    )
                if self._hoisting and not self._product_used:
                    raise ValueError(
                        f"{type(self).__name__} has a recurrent_kernel but its step did not compute "
                        "matmul(h_prev, recurrent_kernel) through recurrent_product(); the RNN forms that "
                        "weight's gradient after the loop"
                    )
            finally:
                self._step_noise = self._step_probe = None
        return out["h"], [out[k] for k in self.state_keys]

    def get_initial_state(self, batch_size: int | None = None) -> list[Any]:
        """Zeros ``[batch_size, size]`` for every entry of ``state_size``."""
        return [ops.zeros((batch_size, s), dtype=self.compute_dtype) for s in self.state_size]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"units": self.units, "seed": self.seed})
        return config


@keras.saving.register_keras_serializable(package="zoo")
class RNN(keras.layers.RNN):
    """``keras.layers.RNN`` that hoists the input projection of a :class:`RecurrentCell` out of the loop and
    draws its per-step dropout noise before the loop.

    The cell's :meth:`RecurrentCell.project_inputs` runs once on the whole ``[batch, time, N_x]`` window
    (one large product instead of one small one per step, and one for its gradient) and the loop runs
    :meth:`RecurrentCell.step_projected` on each step's slice; masking and ``go_backwards`` act on the
    projected sequence exactly as on the inputs (the projection is per step). In training, when the cell
    has active dropout sites, one ``keras.random.uniform`` draw of ``[batch, time, width]`` (from the
    cell's seed generator) is appended to the projected features and each step's cell call takes its slice
    off again; the cell's weights never see it. The loop is then stateless, so per-step masks are fresh at
    every step on every backend (JAX included) and compile with XLA. For other cells this is
    ``keras.layers.RNN``.

    In training on TensorFlow and JAX, for a cell whose trainable ``recurrent_kernel`` enters each step
    through :meth:`RecurrentCell.recurrent_product`, without a mask, ``go_backwards`` or ``unroll``, the
    loop holds that kernel constant and its gradient is formed after the loop as one
    ``[N, batch * time] x [batch * time, K]`` product (:mod:`zoo.layers.recurrent_gradient`) instead of
    ``time`` rank-``batch`` updates inside the loop's gradient; on TensorFlow each step's gradient for
    ``h_{t-1}`` also multiplies by a transposed copy of the kernel made once. Values are the same; the
    gradients are the same sums in another order (``tests/test_recurrent_gradient.py``: 1e-5).

    Args:
      cell: the recurrent cell (any cell ``keras.layers.RNN`` takes).
      **kwargs: ``keras.layers.RNN`` arguments (``return_sequences``, ``return_state``, ``name``, ...).

    Call arguments and returns: as ``keras.layers.RNN``.

    Example:

    >>> from zoo.layers import BasicLSTMCell
    >>> rnn = RNN(BasicLSTMCell(16, recurrent_dropout=0.1), return_sequences=True)
    >>> tuple(rnn(np.zeros((2, 10, 8), "float32"), training=True).shape)
    (2, 10, 16)
    """

    def inner_loop(self, sequences: Any, initial_state: Any, mask: Any, training: bool | None = False) -> Any:
        cell = self.cell
        if not isinstance(cell, RecurrentCell):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        sequences = cell.project_inputs(sequences)
        width = cell.dropout_noise_width(training)
        noise = None
        if width:
            shape = ops.shape(sequences)
            noise = keras.random.uniform(
                (shape[0], shape[1], width), dtype=sequences.dtype, seed=cell.seed_generator
            )
        if self._hoists_weight_gradient(mask, training):
            return self._hoisted_loop(sequences, noise, list(initial_state), training)
        if noise is not None:
            cell._noise_split = int(sequences.shape[-1])
            sequences = ops.concatenate([sequences, noise], axis=-1)
        cell._inputs_projected, cell._window = True, cell.window_constants()
        try:
            return super().inner_loop(sequences, initial_state, mask, training=training)
        finally:
            cell._noise_split, cell._inputs_projected, cell._window = None, False, None

    def _hoists_weight_gradient(self, mask: Any, training: bool | None) -> bool:
        """Whether the loop forms ``recurrent_kernel``'s gradient after the loop (:meth:`_hoisted_loop`):
        in training, on TensorFlow or JAX, for a cell with a trainable ``recurrent_kernel``, without a mask,
        ``go_backwards`` or ``unroll`` (those keep Keras' loop and its step-by-step gradient)."""
        kernel = getattr(self.cell, "recurrent_kernel", None)
        return bool(
            training
            and mask is None
            and not self.go_backwards
            and not self.unroll
            and supports_hoisted_gradient()
            and any(kernel is v for v in self.cell.trainable_variables)
        )

    def _hoisted_loop(
        self, projected: Any, noise: Any, initial_state: list[Any], training: bool | None
    ) -> Any:
        """Keras' loop over ``[projected | probe | noise]`` with ``recurrent_kernel`` a constant inside and
        its gradient formed after the loop (:func:`zoo.layers.recurrent_gradient.hoisted_weight_recurrence`).

        The cell's other weights are handed to the loop as tensors (``keras.StatelessScope``), so that the
        loop's gradient reaches them through the backend's own differentiation; every output is kept
        (``return_sequences`` only for the duration of the loop) because ``H_prev`` needs them.
        """
        cell = self.cell
        kernel = cell.recurrent_kernel
        weights = [v for v in cell.trainable_variables if v is not kernel]
        n_states = len(initial_state)
        split = int(projected.shape[-1])
        # ops.copy: tensors (a stateful layer's states and the weights are Keras variables, and on
        # TensorFlow convert_to_tensor of one is still a variable)
        initial_state = [ops.copy(s) for s in initial_state]
        extras = [*initial_state, *([] if noise is None else [noise]), *(ops.copy(v) for v in weights)]

        def loop(kernel_value: Any, projected: Any, probe: Any, *extras: Any) -> list[Any]:
            states, rest = list(extras[:n_states]), extras[n_states:]
            feed = [projected] + ([] if probe is None else [probe]) + ([] if noise is None else [rest[0]])
            values = rest if noise is None else rest[1:]
            mapping = [(kernel, kernel_value), *zip(weights, values, strict=True)]
            cell._noise_split, cell._probe_width = split, 0 if probe is None else int(probe.shape[-1])
            cell._hoisting = cell._inputs_projected = True
            if keras.backend.backend() == "tensorflow":
                cell._kernel_t = ops.transpose(kernel_value)
            return_sequences, self.return_sequences = self.return_sequences, True
            try:
                with keras.StatelessScope(state_mapping=mapping):
                    cell._window = cell.window_constants()
                    last, outputs, states = super(RNN, self).inner_loop(
                        ops.concatenate(feed, axis=-1) if len(feed) > 1 else projected,
                        states,
                        None,
                        training=training,
                    )
            finally:
                self.return_sequences = return_sequences
                cell._noise_split, cell._probe_width, cell._kernel_t, cell._window = None, 0, None, None
                cell._hoisting = cell._inputs_projected = False
            return [last, outputs, *states]

        out = hoisted_weight_recurrence(
            loop, ops.copy(kernel), projected, extras, cell.recurrent_probe_width()
        )
        return out[0], out[1], out[2:]
