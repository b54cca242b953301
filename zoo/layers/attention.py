"""Additive attention with weight normalisation: GNMT's attention function (Wu et al. 2016, §3).

Bahdanau, Cho, Bengio (2015), "Neural machine translation by jointly learning to align and translate",
appendix A.1.2: the score of source position ``t`` for a query ``y`` is a one-hidden-layer network
``v · tanh(W_k x_t + W_q y)``; the weights are ``p_t = softmax_t(score_t)`` and the context is
``a = Σ_t p_t x_t``. GNMT (Wu et al. 2016, §3, Eq. 4) uses this attention function between the bottom
decoder layer and the top encoder layer. The scoring vector is weight-normalised (Salimans & Kingma 2016):
``v = g · v̂ / ||v̂||`` with a scalar gain ``g`` (initial value ``sqrt(1 / A)``) and a bias ``b`` inside the
tanh (initial 0), as in the TensorFlow NMT tutorial's ``normed_bahdanau`` attention that reproduces GNMT.

- :func:`masked_softmax`: the softmax over valid positions only (exact zeros at padding);
- :class:`NormalizedBahdanauAttention`: the attention function (keys precomputed once per sentence);
- :class:`AttentiveCell`: a recurrent cell whose input at every step is extended by the attention context
  of its own previous output (GNMT's bottom decoder layer), to run in :class:`zoo.layers.RNN`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import keras
from keras import ops

from zoo.layers.rnn_base import RecurrentCell, check_drop_rate, check_positive

__all__ = ["AttentiveCell", "NormalizedBahdanauAttention", "masked_softmax"]

#: score given to padded positions before the softmax (exp underflows to exactly 0 in float32).
_MASKED_SCORE = -1e9


def masked_softmax(scores: Any, mask: Any) -> Any:
    """``softmax`` over the last axis of ``scores [..., S]`` restricted to ``mask [..., S]`` (bool).

    Weights are exactly 0 where ``mask`` is false and sum to 1 over the valid positions; a row with no
    valid position gets all-zero weights (and hence a zero context). Computed in float32.
    """
    scores = ops.cast(scores, "float32")
    mask = ops.cast(mask, "bool")
    weights = ops.softmax(ops.where(mask, scores, ops.full_like(scores, _MASKED_SCORE)), axis=-1)
    return ops.where(mask, weights, ops.zeros_like(weights))


@keras.saving.register_keras_serializable(package="zoo")
class NormalizedBahdanauAttention(keras.layers.Layer):
    """Normalised additive (Bahdanau) attention, GNMT §3 Eq. 4.

    ``score_t = g · (v / ||v||) · tanh(W_k x_t + W_q y + b)``, ``p = masked softmax(score)``,
    ``context = Σ_t p_t x_t``. The keys ``W_k x_t`` depend only on the memory, so a decoder computes them
    once per sentence (:meth:`keys`) and passes them to every step.

    Args:
      units: A, the width of the hidden layer of the attention network.
      kernel_initializer: initialiser of ``W_q``, ``W_k`` and ``v`` (GNMT §8 draws every parameter from
        ``U(-0.04, 0.04)``; the default is Keras' Glorot-uniform).
      **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).

    Weights: ``query_kernel [Q, A]`` (``W_q``, no bias), ``memory_kernel [M, A]`` (``W_k``, no bias),
    ``score_bias [A]`` (``b``, zeros), ``score_vector [A]`` (``v``), ``score_scale []`` (``g``,
    ``sqrt(1 / A)``). Trainable parameters: ``A(Q + M) + 2A + 1``.

    Call arguments:
      query: ``[B, Q]``, e.g. the bottom decoder layer's previous output.
      keys: ``[B, S, A]`` from :meth:`keys` (``None``: computed here from ``memory``).
      memory: ``[B, S, M]``, e.g. the top encoder layer's outputs.
      mask: bool ``[B, S]``, true at the valid (non-padding) source positions.

    Returns:
      ``(context [B, M], weights [B, S])``; ``weights`` are float32, exactly 0 at padding, summing to 1
      over the valid positions.

    Example:

    >>> attention = NormalizedBahdanauAttention(8)
    >>> memory = np.random.default_rng(0).normal(size=(2, 5, 6)).astype("float32")
    >>> mask = np.array([[True] * 5, [True, True, False, False, False]])
    >>> context, weights = attention(np.zeros((2, 4), "float32"), None, memory, mask)
    >>> tuple(context.shape), np.asarray(weights)[1, 2:].tolist()
    ((2, 6), [0.0, 0.0, 0.0])
    """

    def __init__(self, units: int, kernel_initializer: Any = "glorot_uniform", **kwargs: Any):
        super().__init__(**kwargs)
        self.units = check_positive(type(self).__name__, "units", units)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, query_shape: Sequence[int | None], memory_shape: Sequence[int | None]) -> None:
        a = self.units
        self.query_kernel = self.add_weight(
            name="query_kernel", shape=(int(query_shape[-1]), a), initializer=self.kernel_initializer
        )
        self.memory_kernel = self.add_weight(
            name="memory_kernel", shape=(int(memory_shape[-1]), a), initializer=self.kernel_initializer
        )
        self.score_bias = self.add_weight(name="score_bias", shape=(a,), initializer="zeros")
        self.score_vector = self.add_weight(
            name="score_vector", shape=(a,), initializer=self.kernel_initializer
        )
        self.score_scale = self.add_weight(
            name="score_scale", shape=(), initializer=keras.initializers.Constant(math.sqrt(1.0 / a))
        )

    def keys(self, memory: Any) -> Any:
        """``W_k x_t`` for every memory position: ``[B, S, M] -> [B, S, A]`` (once per sentence)."""
        return ops.matmul(ops.cast(memory, self.compute_dtype), self.memory_kernel)

    def scores(self, query: Any, keys: Any) -> Any:
        """Unmasked scores of ``query [B, Q]`` against ``keys [B, S, A]``: ``[B, S]``; or of the queries of
        all steps ``[B, T, Q]`` at once: ``[B, T, S]``."""
        processed = ops.expand_dims(ops.matmul(ops.cast(query, self.compute_dtype), self.query_kernel), -2)
        if len(query.shape) == 3:
            keys = ops.expand_dims(keys, 1)  # [B, 1, S, A]
        v = self.score_vector * ops.rsqrt(ops.sum(ops.square(self.score_vector)))
        return ops.sum(self.score_scale * v * ops.tanh(keys + processed + self.score_bias), axis=-1)

    def call(self, query: Any, keys: Any, memory: Any, mask: Any) -> tuple[Any, Any]:
        if keys is None:
            keys = self.keys(memory)
        weights = masked_softmax(self.scores(query, keys), mask)
        context = ops.einsum("bs,bsm->bm", ops.cast(weights, memory.dtype), memory)
        return context, weights

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {"units": self.units, "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}
        )
        return config


@keras.saving.register_keras_serializable(package="zoo")
class AttentiveCell(RecurrentCell):
    """A recurrent cell whose input at every step is extended by the attention context of its previous output.

    GNMT's bottom decoder layer (Wu et al. 2016, §3): at step ``i`` the query is the cell's output
    ``h_{i-1}`` (zeros at ``i = 0``), ``a_i = Σ_t p_t x_t`` over the memory, and the cell reads
    ``Dropout([x_i; a_i])``. Because ``a_i`` needs ``h_{i-1}``, attention and cell are one recurrence; run
    it in :class:`zoo.layers.RNN` inside ``with cell.attending(encoded):`` (the memory of the batch), which
    also feeds this step's pre-drawn dropout numbers (input dropout, then the wrapped cell's recurrent
    dropout), so masks are fresh at every step on every backend.

    Args:
      cell: the wrapped :class:`RecurrentCell` (its state ``"h"`` is the query).
      attention: the :class:`NormalizedBahdanauAttention` (built here for queries of ``cell.units`` and
        memories of ``memory_size``).
      memory_size: M, the width of the memory.
      input_dropout: drop rate on ``[x_i; a_i]`` (training only, a fresh mask every step).
      seed: seed of the input-dropout masks' generator.
      **kwargs: ``keras.layers.Layer`` arguments (``name``, ...).

    Call arguments:
      inputs: ``[batch, N_x]``, the input at one step.
      states: the wrapped cell's states.
      training: whether dropout is active.

    Returns:
      ``([h_i; a_i], new states)``: the output is ``N + M`` wide. :meth:`step` returns ``"h"`` (that
      concatenation), ``"cell_h"`` (the wrapped cell's output), ``"context"`` ``[B, M]``, ``"weights"``
      ``[B, S]`` and the new states as ``"cell_<key>"``.

    Example:

    >>> from zoo.layers import RNN, BasicLSTMCell
    >>> cell = AttentiveCell(BasicLSTMCell(8), NormalizedBahdanauAttention(4), memory_size=6)
    >>> rnn = RNN(cell, return_sequences=True)
    >>> memory = np.ones((2, 5, 6), "float32")
    >>> encoded = {"memory": memory, "keys": None, "mask": np.ones((2, 5), bool)}
    >>> rnn.build((None, None, 3))
    >>> with cell.attending({**encoded, "keys": cell.attention.keys(memory)}):
    ...     outputs = rnn(np.zeros((2, 7, 3), "float32"))
    >>> tuple(outputs.shape)
    (2, 7, 14)
    """

    def __init__(
        self,
        cell: RecurrentCell,
        attention: NormalizedBahdanauAttention,
        memory_size: int,
        input_dropout: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ):
        if not isinstance(cell, RecurrentCell):
            raise TypeError(f"AttentiveCell wraps a zoo RecurrentCell, got {type(cell).__name__}")
        super().__init__(cell.units, seed=seed, **kwargs)
        self.cell = cell
        self.attention = attention
        self.memory_size = check_positive(type(self).__name__, "memory_size", memory_size)
        self.input_dropout = check_drop_rate(type(self).__name__, "input_dropout", input_dropout)
        self.state_size = list(cell.state_size)
        self.state_keys = tuple(f"cell_{key}" for key in cell.state_keys)
        self.output_size = cell.units + self.memory_size
        self._query_index = cell.state_keys.index("h")
        self._input_width: int | None = None
        self._encoded: tuple[Any, Any, Any] | None = None  # (memory, keys, mask) while attending

    def build(self, input_shape: Sequence[int | None]) -> None:
        self._input_width = int(input_shape[-1]) + self.memory_size
        self.attention.build(query_shape=(None, self.cell.units), memory_shape=(None, None, self.memory_size))
        self.cell.build((None, self._input_width))

    @contextlib.contextmanager
    def attending(self, encoded: Mapping[str, Any]) -> Iterator[None]:
        """Within this block, steps attend over ``encoded = {"memory", "keys", "mask"}`` (``keys`` from
        ``attention.keys(memory)``)."""
        self._encoded = (encoded["memory"], encoded["keys"], encoded["mask"])
        try:
            yield
        finally:
            self._encoded = None

    def dropout_sites(self) -> list[tuple[float, int]]:
        if self._input_width is None:
            raise ValueError("AttentiveCell: build the cell before asking for its dropout sites")
        return [(self.input_dropout, self._input_width), *self.cell.dropout_sites()]

    def step(
        self,
        inputs: Any,
        states: Sequence[Any],
        training: bool | None = None,
        encoded: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One step over ``encoded`` (default: the memory of :meth:`attending`)."""
        if encoded is not None:
            memory, keys, mask = encoded["memory"], encoded["keys"], encoded["mask"]
        elif self._encoded is not None:
            memory, keys, mask = self._encoded
        else:
            raise ValueError("AttentiveCell: run it inside `with cell.attending(encoded):` or pass encoded")
        context, weights = self.attention(states[self._query_index], keys, memory, mask)
        x = ops.concatenate([inputs, context], axis=-1)
        drop = self.dropout(self.input_dropout, training)
        if drop is not None:
            x = drop(x)
        width = self.cell.dropout_noise_width(training)
        if width and self._step_noise is not None:  # hand the wrapped cell its part of this step's numbers
            x = ops.concatenate([x, self._step_noise[..., self._noise_used : self._noise_used + width]], -1)
            self._noise_used += width
            self.cell._noise_split = self._input_width
        try:
            h, new_states = self.cell(x, list(states), training=training)
        finally:
            self.cell._noise_split = None
        out = {
            "h": ops.concatenate([h, context], axis=-1),
            "cell_h": h,
            "context": context,
            "weights": weights,
        }
        out.update(zip(self.state_keys, new_states, strict=True))
        return out

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("units")
        config.update(
            {
                "cell": keras.layers.serialize(self.cell),
                "attention": keras.layers.serialize(self.attention),
                "memory_size": self.memory_size,
                "input_dropout": self.input_dropout,
            }
        )
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> AttentiveCell:
        config = dict(config)
        config["cell"] = keras.layers.deserialize(config["cell"])
        config["attention"] = keras.layers.deserialize(config["attention"])
        return cls(**config)
