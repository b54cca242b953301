"""GNMT (Wu et al. 2016) with LSTM, Layer Norm LSTM, HyperLSTM or LN-HyperLSTM cells: HyperNetworks §4.6.

HyperNetworks §4.6 / A.3.6 / Table 6: "the same wordpiece model architecture [as GNMT] with a vocabulary
size of 32k, but we replace the LSTM cells with [Layer Norm] HyperLSTM cells" of the same size, with
H 128, E 32, trained with Adam only. The architecture (GNMT §3, Figure 1):

- **Vocabulary**: one wordpiece (here SentencePiece) vocabulary shared by source and target (GNMT §4.1),
  ids ``PAD=0, UNK=1, BOS=2, EOS=3``. The source and the target have *separate* embedding tables of
  ``embedding_dim`` (GNMT does not say that it ties them; tf-nmt ties them only on request), so the
  encoder and decoder can give one wordpiece different vectors in the two languages.
- **Encoder** (§3.2, Figure 3): layer 1 is bidirectional: a forward RNN over the sentence and a backward
  RNN over the *valid part* of each padded sentence (the reversal is within each sentence's length, so
  the padding at the end never reaches the backward direction); their outputs are concatenated (2N wide).
  Layers 2..L are unidirectional. From layer ``residual_start`` (GNMT: 3) up the layers are residual:
  ``x_l = RNN_l(x_{l-1}) + x_{l-1}`` (§3.1, Eq. 6). Padding is at the end of each sentence and every
  forward recurrence is causal, so the valid positions never see it; padded outputs are masked out by
  the attention.
- **Attention** (§3, Eq. 4): normalised additive attention
  (:class:`zoo.layers.NormalizedBahdanauAttention`) over the top encoder layer's outputs ``x_t``; the query
  at decoder step ``i`` is the *bottom* decoder layer's output at step ``i - 1`` (zeros at ``i = 0``), the
  context is ``a_i = Σ_t p_t x_t``.
- **Decoder** (§3): L layers; ``a_i`` is concatenated to the input of *every* layer at step ``i`` (bottom:
  ``[emb(y_{i-1}); a_i]``, layer l: ``[y^{l-1}_i; a_i]``); residual from ``residual_start`` up adds the
  layer-below output only (not the context); a softmax (dense layer with bias) over the top output.
  The decoder's initial states are zeros (GNMT does not pass the encoder's final states to the decoder).
- **Dropout** (§8, 0.2 for En->Fr) on the input of every recurrent layer (the bottom decoder layer's input
  includes the context), not on the recurrent connections; the cells' own ``recurrent_dropout`` (on
  ``tanh(g)``, HyperNetworks Eq. 13) is 0 by default and supported everywhere. Residuals add the input
  before dropout.
- **Initialisation**: embeddings, attention and softmax from ``U(-0.04, 0.04)`` (GNMT §8); the recurrent
  cells keep the zoo's (the HyperLSTM authors') initialisation (``zoo/layers/rnn_base.py``).

Every layer runs as a whole-sequence :class:`zoo.layers.RNN` (input projections hoisted out of the loop,
dropout noise drawn before it, so per-step masks are fresh on every backend and the loop compiles with
XLA). The bottom decoder layer and the attention are one recurrence (the attention at step ``i`` needs the
bottom output of step ``i - 1``): an :class:`zoo.layers.AttentiveCell` around the bottom cell; its per-step
attention weights are recomputed for all steps at once for the ``attention`` output.

Model I/O (the ``translation`` task contract):

- ``model({"source": int32 [B, S], "target_in": int32 [B, T]}, training=...) -> {"logits": [B, T, V],
  "attention": [B, T, S]}`` (teacher forcing; ``target_in`` = BOS + target; ``source`` padded with PAD at
  the end);
- ``model.encode(source) -> {"memory": [B, S, M], "keys": [B, S, A], "mask": bool [B, S]}``;
- ``model.initial_decoder_state(encoded) -> tuple`` of ``[B, size]`` zeros (every decoder layer's cell
  states, bottom first; beam search tiles and gathers them along axis 0);
- ``model.decode_step(tokens [B], state, encoded) -> (logits [B, V], new_state, attention [B, S])``,
  inference mode, the same computation as step ``i`` of the training call.

``model.config`` holds the full config, including the decoding settings the task reads (``beam_width``,
``length_penalty_alpha``, ``coverage_penalty_beta``, ``max_decode_length_factor``; GNMT §7).
Trainable parameter counts: :func:`param_count` (formula, ``docs/param_counts.md``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
from keras import ops

from zoo.layers.attention import AttentiveCell, NormalizedBahdanauAttention, masked_softmax
from zoo.layers.rnn_base import RNN, RecurrentCell, check_drop_rate, check_positive
from zoo.models.char_lm import CELLS, make_cell, stack_description
from zoo.registry import ModelSpec, register_model

__all__ = [
    "DECODING_KEYS",
    "DEFAULT_CONFIG",
    "GNMT",
    "GNMTDecoder",
    "GNMTEncoder",
    "PAD_ID",
    "build_gnmt",
    "cell_param_count",
    "param_count",
]

#: the padding id of the shared subword vocabulary (``PAD=0, UNK=1, BOS=2, EOS=3``).
PAD_ID = 0

#: every config key, with the paper-size values: GNMT WPM-32K (Wu et al. 2016) with LSTM cells.
DEFAULT_CONFIG: dict[str, Any] = {
    "vocab_size": 32000,  # shared wordpiece vocabulary (GNMT §4.1, "WPM-32K" in Table 6)
    "units": 1024,  # N of every recurrent layer (GNMT §8; A.3.6: HyperLSTM cells "of the same size")
    "encoder_layers": 8,  # GNMT §3: 8 encoder layers (the first bidirectional)
    "decoder_layers": 8,
    "cell": "lstm",  # one of zoo.models.char_lm.CELLS
    "use_layer_norm": False,  # LN per gate + LN on c (and in the hyper cell for hyper_lstm)
    "hyper_units": 128,  # H (A.3.6)
    "embedding_size": 32,  # E, the hypernetwork's embedding (A.3.6)
    "embedding_dim": 1024,  # word embeddings (tf-nmt's GNMT: num_units)
    "attention_units": 1024,  # A, the attention network's hidden layer
    "dropout": 0.2,  # on every recurrent layer's input (GNMT §8: 0.2 for En->Fr, 0.3 for En->De)
    "recurrent_dropout": 0.0,  # Semeniuta dropout on tanh(g) of every cell (GNMT and A.3.6 use none)
    "residual_start": 3,  # residual connections from the 3rd layer up, encoder and decoder (GNMT §3.1)
    "forget_bias": 1.0,
    "seed": None,  # seed of the dropout masks
    # decoding (GNMT §7), read by the translation task's beam search
    "beam_width": 10,  # tf-nmt's GNMT recipes decode with 10 beams
    "length_penalty_alpha": 0.2,  # GNMT §7, Table 2: α = 0.2, β = 0.2 gave the best BLEU (+1.1)
    "coverage_penalty_beta": 0.2,
    "max_decode_length_factor": 2.0,  # output at most factor * |source| + 10 tokens (tf-nmt's factor 2)
}

#: the decoding settings among the config keys (GNMT §7; read by the translation task's beam search).
DECODING_KEYS = ("beam_width", "length_penalty_alpha", "coverage_penalty_beta", "max_decode_length_factor")

# U(-0.04, 0.04) for every non-recurrent parameter (GNMT §8 "uniformly between [-0.04, 0.04]").
_INIT_SCALE = 0.04


def _uniform() -> keras.initializers.Initializer:
    return keras.initializers.RandomUniform(-_INIT_SCALE, _INIT_SCALE)


def _check_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` merged over :data:`DEFAULT_CONFIG` and checked; errors name the key and valid values."""
    unknown = sorted(set(config) - set(DEFAULT_CONFIG))
    if unknown:
        raise ValueError(f"GNMT config: unknown key(s) {unknown}; valid keys: {sorted(DEFAULT_CONFIG)}")
    config = {**DEFAULT_CONFIG, **config}
    if config["cell"] not in CELLS:
        raise ValueError(f"GNMT config: cell={config['cell']!r}; valid: {', '.join(CELLS)}")
    for key in (
        "vocab_size", "units", "encoder_layers", "decoder_layers", "hyper_units", "embedding_size",
        "embedding_dim", "attention_units", "beam_width",
    ):  # fmt: skip
        check_positive("GNMT config", key, config[key])
    for key in ("dropout", "recurrent_dropout"):
        check_drop_rate("GNMT config", key, config[key])
    if int(config["residual_start"]) < 3:
        raise ValueError(
            f"GNMT config: residual_start={config['residual_start']!r} must be >= 3: encoder layer 2 reads "
            "the 2N-wide bidirectional output of layer 1, so it cannot be residual (GNMT §3.1 starts at 3)"
        )
    if float(config["max_decode_length_factor"]) <= 0:
        raise ValueError(
            f"GNMT config: max_decode_length_factor={config['max_decode_length_factor']!r} must be > 0"
        )
    return config


def memory_width(config: Mapping[str, Any]) -> int:
    """M, the width of the top encoder layer's outputs: 2N when the encoder is only the bidirectional
    layer, else N."""
    return 2 * int(config["units"]) if int(config["encoder_layers"]) == 1 else int(config["units"])


def _cell(config: Mapping[str, Any], index: int) -> RecurrentCell:
    """The recurrent cell number ``index`` of the model (encoder forward, encoder backward, encoder 2..L,
    decoder 1..L): :func:`zoo.models.char_lm.make_cell` (name ``cell_<index>``, dropout seed + index)."""
    return make_cell({**config, "hyper_recurrent_dropout": 0.0}, index)


def _reverse_valid(x: Any, lengths: Any) -> Any:
    """``x [B, S, D]`` with each row's first ``lengths[b]`` positions reversed and the rest (the padding)
    left in place. Its own inverse."""
    t = ops.expand_dims(ops.arange(ops.shape(x)[1], dtype="int32"), 0)  # [1, S]
    length = ops.expand_dims(lengths, 1)  # [B, 1]
    order = ops.where(t < length, length - 1 - t, t)  # [B, S]
    return ops.take_along_axis(x, ops.expand_dims(order, -1), axis=1)


@keras.saving.register_keras_serializable(package="zoo")
class GNMTEncoder(keras.layers.Layer):
    """GNMT's encoder (§3.2, Figure 3): source embedding, bidirectional layer 1, residual layers from
    ``residual_start``; see the module docstring.

    Args:
      config: a GNMT config (keys of :data:`DEFAULT_CONFIG`; missing keys default).
      **kwargs: ``keras.layers.Layer`` arguments (``name``, ...).

    Sublayers: ``source_embedding``, ``forward_rnn`` and ``backward_rnn`` (layer 1, cells ``cell_0`` and
    ``cell_1``), ``rnn_<l>`` (layer l >= 2, cell ``cell_<l>``), ``dropout_<l>`` (input of layer l); the lists
    ``rnns`` and ``dropouts`` in layer order.

    Call arguments:
      source: int ``[B, S]``, padded with ``PAD_ID`` at the end.
      training: whether dropout is active.

    Returns:
      ``{"memory": [B, S, M], "mask": bool [B, S]}``: the top layer's outputs and the valid positions.
    """

    def __init__(self, config: Mapping[str, Any], **kwargs: Any):
        super().__init__(**kwargs)
        self.config = _check_config(config)
        c = self.config
        self.residual_start = int(c["residual_start"])
        seed = c["seed"]
        self.source_embedding = keras.layers.Embedding(
            int(c["vocab_size"]),
            int(c["embedding_dim"]),
            embeddings_initializer=_uniform(),
            name="source_embedding",
        )
        self.forward_rnn = RNN(_cell(c, 0), return_sequences=True, name="encoder_1_forward")
        self.backward_rnn = RNN(_cell(c, 1), return_sequences=True, name="encoder_1_backward")
        # one attribute per layer: tf.train.Checkpoint (the trainer's) does not follow lists of layers
        self.num_layers = int(c["encoder_layers"])
        for layer in range(2, self.num_layers + 1):
            setattr(
                self, f"rnn_{layer}", RNN(_cell(c, layer), return_sequences=True, name=f"encoder_{layer}")
            )
        for layer in range(1, self.num_layers + 1):
            dropout_seed = None if seed is None else int(seed) + 1000 + layer
            setattr(
                self,
                f"dropout_{layer}",
                keras.layers.Dropout(float(c["dropout"]), seed=dropout_seed, name=f"encoder_dropout_{layer}"),
            )

    @property
    def rnns(self) -> list[RNN]:
        """The unidirectional layers 2..L."""
        return [getattr(self, f"rnn_{layer}") for layer in range(2, self.num_layers + 1)]

    @property
    def dropouts(self) -> list[keras.layers.Dropout]:
        """The input dropouts of layers 1..L."""
        return [getattr(self, f"dropout_{layer}") for layer in range(1, self.num_layers + 1)]

    def build(self, source_shape: Sequence[int | None]) -> None:
        d, n = int(self.config["embedding_dim"]), int(self.config["units"])
        self.source_embedding.build((None, None))
        self.forward_rnn.build((None, None, d))
        self.backward_rnn.build((None, None, d))
        width = 2 * n
        for rnn in self.rnns:
            rnn.build((None, None, width))
            width = n

    def call(self, source: Any, training: bool | None = None) -> dict[str, Any]:
        source = ops.cast(source, "int32")
        mask = ops.not_equal(source, PAD_ID)
        lengths = ops.sum(ops.cast(mask, "int32"), axis=1)
        x = self.dropouts[0](self.source_embedding(source), training=training)
        forward = self.forward_rnn(x, training=training)
        backward = _reverse_valid(self.backward_rnn(_reverse_valid(x, lengths), training=training), lengths)
        x = ops.concatenate([forward, backward], axis=-1)
        for layer, (drop, rnn) in enumerate(zip(self.dropouts[1:], self.rnns, strict=True), start=2):
            y = rnn(drop(x, training=training), training=training)
            x = y + x if layer >= self.residual_start else y
        return {"memory": x, "mask": mask}

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["config"] = dict(self.config)
        return config


@keras.saving.register_keras_serializable(package="zoo")
class GNMTDecoder(keras.layers.Layer):
    """GNMT's decoder (§3, Figure 1) with its attention; see the module docstring.

    Args:
      config: a GNMT config (keys of :data:`DEFAULT_CONFIG`; missing keys default).
      **kwargs: ``keras.layers.Layer`` arguments (``name``, ...).

    Sublayers: ``target_embedding``; ``bottom`` (layer 1: :class:`zoo.layers.RNN` around an
    :class:`zoo.layers.AttentiveCell` holding the bottom cell and the :class:`NormalizedBahdanauAttention`
    ``attention``; its input dropout is the layer's); ``rnn_<l>`` (layer l >= 2) with input dropout
    ``dropout_<l>`` (the lists ``rnns`` and ``dropouts`` in layer order); ``softmax`` (dense, with bias).

    Call arguments:
      target_in: int ``[B, T]``: BOS followed by the target (teacher forcing).
      memory: ``[B, S, M]``, the encoder's top outputs.
      mask: bool ``[B, S]``, the valid source positions.
      training: whether dropout is active.

    Returns:
      ``{"logits": float32 [B, T, V], "attention": float32 [B, T, S]}``.
    """

    def __init__(self, config: Mapping[str, Any], **kwargs: Any):
        super().__init__(**kwargs)
        self.config = _check_config(config)
        c = self.config
        self.residual_start = int(c["residual_start"])
        self.units = int(c["units"])
        rate, seed = float(c["dropout"]), c["seed"]
        first = int(c["encoder_layers"]) + 1  # cell numbers continue after the encoder's
        self.target_embedding = keras.layers.Embedding(
            int(c["vocab_size"]),
            int(c["embedding_dim"]),
            embeddings_initializer=_uniform(),
            name="target_embedding",
        )
        attention = NormalizedBahdanauAttention(
            int(c["attention_units"]), kernel_initializer=_uniform(), name="attention"
        )
        bottom_cell = AttentiveCell(
            _cell(c, first),
            attention,
            memory_size=memory_width(c),
            input_dropout=rate,
            seed=None if seed is None else int(seed) + 2001,
            name="attentive_cell",
        )
        self.bottom = RNN(bottom_cell, return_sequences=True, name="decoder_1")
        self.num_layers = int(c["decoder_layers"])
        for layer in range(2, self.num_layers + 1):
            setattr(
                self,
                f"rnn_{layer}",
                RNN(_cell(c, first + layer - 1), return_sequences=True, name=f"decoder_{layer}"),
            )
            dropout_seed = None if seed is None else int(seed) + 2000 + layer
            setattr(
                self,
                f"dropout_{layer}",
                keras.layers.Dropout(rate, seed=dropout_seed, name=f"decoder_dropout_{layer}"),
            )
        self.softmax = keras.layers.Dense(int(c["vocab_size"]), kernel_initializer=_uniform(), name="softmax")

    @property
    def attention(self) -> NormalizedBahdanauAttention:
        return self.bottom.cell.attention

    @property
    def rnns(self) -> list[RNN]:
        """Layers 2..L."""
        return [getattr(self, f"rnn_{layer}") for layer in range(2, self.num_layers + 1)]

    @property
    def dropouts(self) -> list[keras.layers.Dropout]:
        """The input dropouts of layers 2..L."""
        return [getattr(self, f"dropout_{layer}") for layer in range(2, self.num_layers + 1)]

    def build(self, target_in_shape: Sequence[int | None], memory_shape: Sequence[int | None]) -> None:
        d, n, m = int(self.config["embedding_dim"]), self.units, int(memory_shape[-1])
        self.target_embedding.build((None, None))
        self.bottom.build((None, None, d))
        for rnn in self.rnns:
            rnn.build((None, None, n + m))
        self.softmax.build((None, None, n))

    def cells(self) -> list[RecurrentCell]:
        """The decoder's recurrent cells, bottom layer (its :class:`AttentiveCell`) first."""
        return [self.bottom.cell, *(rnn.cell for rnn in self.rnns)]

    def initial_state(self, batch_size: Any) -> tuple[Any, ...]:
        """Zero states ``[batch_size, size]`` of every decoder layer's cell, bottom layer first."""
        return tuple(s for cell in self.cells() for s in cell.get_initial_state(batch_size))

    def call(self, target_in: Any, memory: Any, mask: Any, training: bool | None = None) -> dict[str, Any]:
        encoded = {"memory": memory, "keys": self.attention.keys(memory), "mask": mask}
        embedded = self.target_embedding(ops.cast(target_in, "int32"))
        with self.bottom.cell.attending(encoded):
            bottom = self.bottom(embedded, training=training)  # [h_i; a_i] for every step
        x, contexts = bottom[..., : self.units], bottom[..., self.units :]
        # the attention weights of every step at once: step i's query is h_{i-1} (zeros at i = 0)
        queries = ops.concatenate([ops.zeros_like(x[:, :1]), x[:, :-1]], axis=1)
        weights = masked_softmax(self.attention.scores(queries, encoded["keys"]), ops.expand_dims(mask, 1))
        for layer, (drop, rnn) in enumerate(zip(self.dropouts, self.rnns, strict=True), start=2):
            y = rnn(drop(ops.concatenate([x, contexts], axis=-1), training=training), training=training)
            x = y + x if layer >= self.residual_start else y
        return {"logits": ops.cast(self.softmax(x), "float32"), "attention": weights}

    def step(
        self, tokens: Any, state: Sequence[Any], encoded: Mapping[str, Any]
    ) -> tuple[Any, tuple[Any, ...], Any]:
        """One inference step: ``(logits float32 [B, V], new_state, attention [B, S])`` for the previous
        tokens ``[B]`` and the state of :meth:`initial_state` (or of the last step)."""
        state = tuple(state)
        bottom = self.bottom.cell
        size = len(bottom.state_size)
        embedded = self.target_embedding(ops.cast(tokens, "int32"))
        out = bottom.step(embedded, state[:size], training=False, encoded=encoded)
        x, context = out["cell_h"], out["context"]
        new_state = tuple(out[key] for key in bottom.state_keys)
        offset = size
        for layer, rnn in enumerate(self.rnns, start=2):
            size = len(rnn.cell.state_size)
            y, states = rnn.cell(
                ops.concatenate([x, context], axis=-1), list(state[offset : offset + size]), training=False
            )
            new_state += tuple(states)
            offset += size
            x = y + x if layer >= self.residual_start else y
        return ops.cast(self.softmax(x), "float32"), new_state, out["weights"]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["config"] = dict(self.config)
        return config


@keras.saving.register_keras_serializable(package="zoo")
class GNMT(keras.Model):
    """GNMT (Wu et al. 2016) with the cells of HyperNetworks §4.6; a functional model with the inference API
    of the ``translation`` task (see the module docstring).

    Args:
      config: a GNMT config (keys of :data:`DEFAULT_CONFIG`; missing keys default).
      name: the model's name.

    Layers: ``encoder`` (:class:`GNMTEncoder`) and ``decoder`` (:class:`GNMTDecoder`).

    Example:

    >>> model = GNMT({"vocab_size": 20, "units": 8, "encoder_layers": 2, "decoder_layers": 2,
    ...               "embedding_dim": 8, "attention_units": 8})
    >>> out = model({"source": np.array([[5, 6, 3, 0]]), "target_in": np.array([[2, 7, 8]])})
    >>> tuple(out["logits"].shape), tuple(out["attention"].shape)
    ((1, 3, 20), (1, 3, 4))
    """

    def __init__(self, config: Mapping[str, Any] | None = None, name: str = "gnmt", **kwargs: Any):
        config = _check_config(dict(config or {}))
        source = keras.Input(shape=(None,), dtype="int32", name="source")
        target_in = keras.Input(shape=(None,), dtype="int32", name="target_in")
        encoded = GNMTEncoder(config, name="encoder")(source)
        out = GNMTDecoder(config, name="decoder")(target_in, encoded["memory"], encoded["mask"])
        super().__init__(
            inputs={"source": source, "target_in": target_in},
            outputs={"logits": out["logits"], "attention": out["attention"]},
            name=name,
            **kwargs,
        )
        self.config = config

    @property
    def encoder(self) -> GNMTEncoder:
        return self.get_layer("encoder")

    @property
    def decoder(self) -> GNMTDecoder:
        return self.get_layer("decoder")

    def encode(self, source: Any, training: bool = False) -> dict[str, Any]:
        """``{"memory": [B, S, M], "keys": [B, S, A], "mask": bool [B, S]}`` for ``source`` ids ``[B, S]``."""
        encoded = self.encoder(source, training=training)
        return {
            "memory": encoded["memory"],
            "keys": self.decoder.attention.keys(encoded["memory"]),
            "mask": encoded["mask"],
        }

    def initial_decoder_state(self, encoded: Mapping[str, Any]) -> tuple[Any, ...]:
        """Zeros ``[B, size]`` for every decoder layer's cell state, bottom layer first."""
        return self.decoder.initial_state(ops.shape(encoded["memory"])[0])

    def decode_step(
        self, tokens: Any, state: Sequence[Any], encoded: Mapping[str, Any]
    ) -> tuple[Any, tuple[Any, ...], Any]:
        """``(logits float32 [B, V], new_state, attention float32 [B, S])`` after the previous tokens
        ``[B]`` (BOS at the first step); inference mode, the training call's computation at one step."""
        return self.decoder.step(tokens, state, encoded)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "config": dict(self.config)}


def build_gnmt(config: Mapping[str, Any], name: str = "gnmt") -> GNMT:
    """Builds a :class:`GNMT` from a config (keys of :data:`DEFAULT_CONFIG`; missing keys default)."""
    return GNMT(config, name=name)


# --------------------------------------------------------------------------- parameter counts
def cell_param_count(config: Mapping[str, Any], input_size: int) -> int:
    """Trainable parameters of one cell of ``config`` reading ``input_size`` features (the formulas of
    ``docs/param_counts.md``): LSTM ``4N(N_x + N) + 4N``, Layer Norm LSTM ``4N(N_x + N) + 10N``, HyperLSTM
    ``4N(N_x+N+1) + 4H(N_x+N+H+1) + 12HE + 8E + 12EN`` (+ ``10N + 10H`` with layer norm)."""
    n, x = int(config["units"]), int(input_size)
    ln = bool(config["use_layer_norm"])
    if config["cell"] == "lstm":
        return 4 * n * (x + n) + (10 * n if ln else 4 * n)
    h, e = int(config["hyper_units"]), int(config["embedding_size"])
    count = 4 * n * (x + n + 1) + 4 * h * (x + n + h + 1) + 12 * h * e + 8 * e + 12 * e * n
    return count + (10 * n + 10 * h if ln else 0)


def param_count(config: Mapping[str, Any]) -> int:
    """Trainable parameters of the GNMT of ``config`` by formula (no model is built):
    two embedding tables ``2VD``; encoder layer 1 two cells on D, layer 2 on 2N, layers 3.. on N; decoder
    layer 1 on ``D + M``, layers 2.. on ``N + M``; attention ``A(N + M) + 2A + 1``; softmax ``NV + V``."""
    c = _check_config(config)
    v, n, d, a = (int(c[k]) for k in ("vocab_size", "units", "embedding_dim", "attention_units"))
    m = memory_width(c)
    enc, dec = int(c["encoder_layers"]), int(c["decoder_layers"])
    count = 2 * v * d + 2 * cell_param_count(c, d)
    count += sum(cell_param_count(c, 2 * n if layer == 2 else n) for layer in range(2, enc + 1))
    count += cell_param_count(c, d + m) + (dec - 1) * cell_param_count(c, n + m)
    return count + a * (n + m) + 2 * a + 1 + n * v + v


# --------------------------------------------------------------------------- registered models
_WMT_RECIPE: dict[str, Any] = {
    "dataset": "parallel",  # WMT'14 En->Fr file pairs (HyperNetworks §4.6, GNMT §8.1)
    "source_language": "en",
    "target_language": "fr",
    "train_prefix": "train",
    "valid_prefix": "newstest2013",  # GNMT §8.1 develops on newstest2012 + newstest2013
    "test_prefix": "newstest2014",  # Table 6's test set
    "batch_size": 128,  # GNMT §8: 128 sentence pairs per replica
    "optimizer": "adam",  # A.3.6: Adam only (GNMT §8 switches from Adam to SGD after 60k steps)
    "learning_rate": 2e-4,  # GNMT §8's Adam learning rate
    "clip_norm": 5.0,  # GNMT §8 / tf-nmt's max_gradient_norm
    "train_steps": 340_000,  # not printed in either paper; tf-nmt's 8-layer WMT GNMT recipe
    "max_length": 50,  # training pairs up to 50 subwords per side (tf-nmt's src/tgt_max_len)
}
_SMALL_RECIPE: dict[str, Any] = {
    "dataset": "num2words",  # the embedded en->fr number-names corpus; trains on a CPU in minutes
    "source_language": "en",
    "target_language": "fr",
    "batch_size": 64,
    "optimizer": "adam",
    # 10x GNMT's Adam rate for a small model and few steps; measured on num2words (gnmt_lstm_small, 300
    # steps, eval log perplexity): 1e-3 2.80, 2e-3 2.49, 5e-3 2.35 (longer runs not compared)
    "learning_rate": 2e-3,
    "clip_norm": 5.0,
    "train_steps": 600,
    "max_length": 40,
}
_SMALL: dict[str, Any] = {  # 2 + 2 layers of 256 (not in the paper): CPU-sized, same architecture
    "vocab_size": 1000,
    "units": 256,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "embedding_dim": 256,
    "attention_units": 256,
    "hyper_units": 64,  # H = N / 4 (paper: 128 for N 1024)
    "embedding_size": 16,  # E = H / 4, as the paper's E 32 for H 128
    "dropout": 0.1,
    "beam_width": 4,
}
# Registered cells. HyperLSTM cells *without* layer norm are not registered (nor in Table 6): their
# scaling vectors start at 0.1 (HyperNetworks Eq. 12 init), which without a norm shrinks every layer's
# signal about tenfold at initialisation, so in a deep stack the encoder's gradients start near zero.
# ``zoo.get("gnmt_ln_hyper_lstm_small", use_layer_norm=False)`` builds one.
_CELL_ROWS: dict[str, tuple[dict[str, Any], str]] = {
    "lstm": ({"cell": "lstm", "use_layer_norm": False}, "Table 6 'GNMT WPM-32K, LSTM' (Wu et al. 2016)"),
    "ln_lstm": (
        {"cell": "lstm", "use_layer_norm": True},
        "Layer Norm LSTM cells (not in Table 6: the layer-norm baseline of Tables 3-5)",
    ),
    "ln_hyper_lstm": (
        {"cell": "hyper_lstm", "use_layer_norm": True},
        "Table 6 'GNMT WPM-32K, HyperLSTM' (A.3.6: LayerNorm HyperLSTM cells, H 128, E 32, Adam only)",
    ),
}


def _description(config: Mapping[str, Any]) -> str:
    cells = stack_description({**config, "num_layers": 1})
    return (
        f"GNMT {config['encoder_layers']}+{config['decoder_layers']} layers of {cells}, "
        f"attention {config['attention_units']}, vocabulary {config['vocab_size']}"
    )


def _register(name: str, config: dict[str, Any], recipe: dict[str, Any], paper: str) -> None:
    register_model(
        ModelSpec(
            name=name,
            builder=lambda cfg, _name=name: build_gnmt(cfg, name=_name),
            task="translation",
            paper=paper,
            config=config,
            recipe=dict(recipe),
            input_spec={"source": ((None,), "int32"), "target_in": ((None,), "int32")},
            description=_description(config),
            paper_params=None,  # neither paper prints a parameter count for GNMT
        )
    )


for _cell_name, (_cell_config, _row) in _CELL_ROWS.items():
    _register(
        f"gnmt_{_cell_name}_wmt",
        {**DEFAULT_CONFIG, **_cell_config},
        _WMT_RECIPE,
        f"HyperNetworks §4.6, {_row}",
    )
    _register(
        f"gnmt_{_cell_name}_small",
        {**DEFAULT_CONFIG, **_SMALL, **_cell_config},
        _SMALL_RECIPE,
        f"HyperNetworks §4.6 architecture at CPU size (2+2 layers of 256, not in the paper), {_cell_name}",
    )
