"""Character-level language models of HyperNetworks §4.3-4.4 (Tables 3-4), registered by name.

Architecture (appendix A.3.3-A.3.4): one-hot characters (no embedding layer) -> input dropout ->
one or more recurrent layers (LSTM, Layer Norm LSTM, HyperLSTM, LN-HyperLSTM; recurrent dropout on
``tanh(g)``) -> output dropout -> dense softmax head with bias (the model outputs *logits*).
Trainable parameter counts equal the paper's tables (formulas in ``docs/param_counts.md``).

Model I/O (the ``char_lm`` task contract): a functional ``keras.Model`` with inputs ``ids`` (int32
``[B, T]``, T may be None) and ``state_0``, ``state_1``, ... (float32 ``[B, size]``, zeros at the start
of a stream), outputs ``{"logits": [B, T, V], "state_0": ..., ...}`` (the new states in the same
order). The states are the layers' cell states concatenated in layer order: ``[h, c]`` per LSTM
layer and ``[h, c, hyper_h, hyper_c]`` per HyperLSTM layer. Dropout is active only with
``training=True``.

Helpers: :func:`initial_state` (zero states for a batch), :func:`build_char_lm` (any config),
:func:`recurrent_cells` (the cells of a built model) and :func:`trace` (run a model step by step and
collect, per layer and step, ``c``, ``tanh_c`` and for HyperLSTM layers the hyper output and the
scaling vectors: Figures 4 and 5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from zoo.layers.hyper_rnn import HyperLSTMCell
from zoo.layers.lstm import BasicLSTMCell, LayerNormLSTMCell
from zoo.layers.rnn_base import RNN, check_drop_rate, check_positive
from zoo.registry import ModelSpec, register_model

__all__ = [
    "CELLS",
    "OneHot",
    "DEFAULT_CONFIG",
    "build_char_lm",
    "initial_state",
    "recurrent_cells",
    "trace",
    "trainable_params",
]

#: valid values of the ``cell`` config key (layer norm is the separate ``use_layer_norm`` key).
CELLS = ("lstm", "hyper_lstm")

#: every config key with the paper's PTB values (A.3.3); registered models override some of them.
DEFAULT_CONFIG: dict[str, Any] = {
    "vocab_size": 50,  # PTB characters; enwik8 uses 205 bytes
    "units": 1000,  # N, main cell units
    "num_layers": 1,
    "cell": "lstm",  # one of CELLS
    "use_layer_norm": False,  # LN per gate + LN on c (and in the hyper cell for hyper_lstm)
    "hyper_units": 128,  # H (A.3.3)
    "embedding_size": 4,  # E (A.3.3; "large embedding" rows use 16, enwik8 64)
    "input_dropout": 0.1,  # drop rate = 1 - keep 0.9 (A.3.3)
    "output_dropout": 0.1,
    "recurrent_dropout": 0.1,  # Semeniuta dropout on tanh(g)
    "hyper_recurrent_dropout": 0.0,  # only the enwik8 2048 model uses it (keep 0.85)
    "forget_bias": 1.0,
    "seed": None,  # seed of the dropout masks
}


@keras.saving.register_keras_serializable(package="zoo")
class OneHot(keras.layers.Layer):
    """Integer ids ``[B, T]`` -> one-hot float ``[B, T, depth]`` (the paper feeds one-hot characters, A.3.3).

    Args:
      depth: the vocabulary size V; ids outside ``[0, depth)`` give all-zero rows.
      **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).

    Call arguments:
      ids: integer ``[B, T]`` (any integer dtype; cast to int32).

    Returns:
      ``[B, T, depth]`` in the layer's compute dtype.

    Example:

    >>> tuple(OneHot(5)(np.array([[0, 4, 2]])).shape)
    (1, 3, 5)
    """

    def __init__(self, depth: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.depth = int(depth)

    def call(self, ids: Any) -> Any:
        return ops.one_hot(ops.cast(ids, "int32"), self.depth, dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple[int | None, ...]:
        return tuple(input_shape) + (self.depth,)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["depth"] = self.depth
        return config


def _check_config(config: dict[str, Any]) -> None:
    if config["cell"] not in CELLS:
        raise ValueError(f"char LM config: cell={config['cell']!r}; valid: {', '.join(CELLS)}")
    for key in ("vocab_size", "units", "num_layers", "hyper_units", "embedding_size"):
        check_positive("char LM config", key, config[key])
    for key in ("input_dropout", "output_dropout", "recurrent_dropout", "hyper_recurrent_dropout"):
        check_drop_rate("char LM config", key, config[key])


def make_cell(config: dict[str, Any], layer: int) -> keras.layers.Layer:
    """The recurrent cell of layer ``layer`` (0-based) from a model config (keys ``cell``, ``units``,
    ``use_layer_norm``, ``forget_bias``, ``recurrent_dropout``, ``seed`` and for HyperLSTM ``hyper_units``,
    ``embedding_size``, ``hyper_recurrent_dropout``); shared by the char LMs and the handwriting models."""
    seed = None if config["seed"] is None else int(config["seed"]) + layer
    common = {
        "forget_bias": float(config["forget_bias"]),
        "recurrent_dropout": float(config["recurrent_dropout"]),
        "seed": seed,
        "name": f"cell_{layer}",
    }
    if config["cell"] == "hyper_lstm":
        return HyperLSTMCell(
            int(config["units"]),
            hyper_units=int(config["hyper_units"]),
            embedding_size=int(config["embedding_size"]),
            use_layer_norm=bool(config["use_layer_norm"]),
            hyper_recurrent_dropout=float(config["hyper_recurrent_dropout"]),
            **common,
        )
    cls = LayerNormLSTMCell if config["use_layer_norm"] else BasicLSTMCell
    return cls(int(config["units"]), **common)


def build_char_lm(config: dict[str, Any], name: str = "char_lm") -> keras.Model:
    """Builds a char LM from a full config (keys of :data:`DEFAULT_CONFIG`; missing keys default).

    Layers are named ``one_hot``, ``input_dropout``, ``rnn_<k>`` (:class:`zoo.layers.RNN` around cell
    ``cell_<k>``), ``output_dropout``, ``logits``.
    """
    unknown = sorted(set(config) - set(DEFAULT_CONFIG))
    if unknown:
        raise ValueError(f"char LM config: unknown key(s) {unknown}; valid keys: {sorted(DEFAULT_CONFIG)}")
    config = {**DEFAULT_CONFIG, **config}
    _check_config(config)
    vocab = int(config["vocab_size"])
    ids = keras.Input(shape=(None,), dtype="int32", name="ids")
    x = OneHot(vocab, name="one_hot")(ids)
    x = keras.layers.Dropout(float(config["input_dropout"]), name="input_dropout")(x)
    x, state_inputs, state_outputs = stateful_stack(x, config)
    x = keras.layers.Dropout(float(config["output_dropout"]), name="output_dropout")(x)
    logits = keras.layers.Dense(vocab, name="logits")(x)
    outputs = {"logits": logits}
    outputs.update({f"state_{k}": s for k, s in enumerate(state_outputs)})
    return keras.Model(inputs={"ids": ids, **{t.name: t for t in state_inputs}}, outputs=outputs, name=name)


def stateful_stack(x: Any, config: Mapping[str, Any]) -> tuple[Any, list[Any], list[Any]]:
    """``config["num_layers"]`` recurrent layers (cells from :func:`make_cell`, each in ``zoo.layers.RNN``
    named ``rnn_<k>``) over the symbolic sequence ``x``, with every state exposed: returns ``(outputs,
    state_inputs, state_outputs)``, the state inputs being ``keras.Input`` s named ``state_0, state_1, ...``
    in layer order (the layout :func:`state_sizes` describes). Shared by the char LMs and the handwriting
    models, so carried-state training and stateful serving see one layout."""
    state_inputs: list[Any] = []
    state_outputs: list[Any] = []
    for layer in range(int(config["num_layers"])):
        cell = make_cell(dict(config), layer)
        layer_states = [
            keras.Input(shape=(size,), dtype="float32", name=f"state_{len(state_inputs) + k}")
            for k, size in enumerate(cell.state_size)
        ]
        state_inputs += layer_states
        rnn = RNN(cell, return_sequences=True, return_state=True, name=f"rnn_{layer}")
        x, *new_states = rnn(x, initial_state=layer_states)
        state_outputs += new_states
    return x, state_inputs, state_outputs


def _state_inputs(model: keras.Model) -> list[Any]:
    inputs = model.input if isinstance(model.input, dict) else {t.name: t for t in model.inputs}
    names = sorted((k for k in inputs if k.startswith("state_")), key=lambda k: int(k.split("_")[1]))
    return [inputs[k] for k in names]


def initial_state(model: keras.Model, batch_size: int) -> list[Any]:
    """Zero tensors ``[batch_size, size]`` (float32), one per ``state_k`` input of ``model``, in order."""
    return [ops.zeros((int(batch_size), int(t.shape[-1])), dtype="float32") for t in _state_inputs(model)]


def recurrent_cells(model: keras.Model) -> list[keras.layers.Layer]:
    """The recurrent cells of a char LM built by :func:`build_char_lm`, bottom layer first."""
    rnns = sorted(
        (layer for layer in model.layers if isinstance(layer, keras.layers.RNN)),
        key=lambda layer: int(layer.name.rsplit("_", 1)[1]),
    )
    return [rnn.cell for rnn in rnns]


def trace(model: keras.Model, ids: Any, states: Sequence[Any] | None = None) -> dict[str, Any]:
    """Runs ``model`` on ``ids [B, T]`` one step at a time (eager, inference mode) and records everything.

    Returns ``{"logits": [B, T, V], "states": [new state tensors], "layers": [per layer dict]}``; each
    layer dict holds ``[B, T, N]`` numpy arrays ``h``, ``c`` (the carried, un-normalised cell) and
    ``tanh_c`` (``tanh(LN(c))`` or ``tanh(c)``: what ``sigmoid(o)`` multiplies; Figure 5), and for
    HyperLSTM layers ``hyper_h [B, T, H]`` and the scaling vectors of :meth:`HyperLSTMCell.compute_scales`
    (``d_x_i`` ... ``b_o``, each ``[B, T, N]``; Figure 4). The logits equal ``model(...)["logits"]``.
    For figures and sampling; training uses the compiled model.
    """
    ids = np.asarray(ids, dtype="int32")
    batch, steps = ids.shape
    states = list(initial_state(model, batch) if states is None else states)
    cells = recurrent_cells(model)
    x_all = model.get_layer("one_hot")(ids)
    head = model.get_layer("logits")
    records: list[dict[str, list]] = [{} for _ in cells]
    logits = []
    for t in range(steps):
        x = x_all[:, t]
        offset = 0
        for k, cell in enumerate(cells):
            n_states = len(cell.state_size)
            out = cell.step(x, states[offset : offset + n_states], training=False)
            extra = {}
            if isinstance(cell, HyperLSTMCell):
                extra = {"hyper_h": out["hyper_h"], **cell.compute_scales(out["hyper_h"])}
            states[offset : offset + n_states] = [out[key] for key in cell.state_keys]
            offset += n_states
            for key, value in {"h": out["h"], "c": out["c"], "tanh_c": out["tanh_c"], **extra}.items():
                records[k].setdefault(key, []).append(ops.convert_to_numpy(value))
            x = out["h"]
        logits.append(ops.convert_to_numpy(head(x)))
    layers = [{key: np.stack(vals, axis=1) for key, vals in rec.items()} for rec in records]
    return {"logits": np.stack(logits, axis=1), "states": states, "layers": layers}


def trainable_params(model: keras.Model) -> int:
    """Number of trainable scalars (what the paper's tables count)."""
    return int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))


# --------------------------------------------------------------------------- registered models
_PTB_RECIPE: dict[str, Any] = {  # A.3.3
    "dataset": "ptb_char",
    "batch_size": 128,
    "sequence_length": 100,
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "clip_norm": 1.0,
    "train_steps": 20_000,  # not printed in the paper; about 50 epochs of PTB's 5M training characters
}
_ENWIK8_RECIPE: dict[str, Any] = {  # A.3.4: "otherwise as PTB"
    **_PTB_RECIPE,
    "dataset": "enwik8",
    "sequence_length": 250,
    "train_steps": 80_000,  # Figure 6 (left) plots about 80k steps
}

_PTB = {"vocab_size": 50}
_ENWIK8 = {  # A.3.4: no input/output dropout, recurrent keep 0.9
    "vocab_size": 205,
    "input_dropout": 0.0,
    "output_dropout": 0.0,
    "recurrent_dropout": 0.1,
}
_HYPER = {"cell": "hyper_lstm"}
_LN = {"use_layer_norm": True}

# name: (paper row, config overrides, recipe overrides, printed parameter count)
_ROWS: dict[str, tuple[str, dict[str, Any], dict[str, Any], int]] = {
    "lstm_1000_ptb": ("Table 3 'LSTM, 1000 units'", {**_PTB}, {}, 4_254_050),
    "lstm_1250_ptb": ("Table 3 'LSTM, 1250 units'", {**_PTB, "units": 1250}, {}, 6_567_550),
    "lstm_1000x2_ptb": ("Table 3 '2-Layer LSTM, 1000 units'", {**_PTB, "num_layers": 2}, {}, 12_258_050),
    "ln_lstm_1000_ptb": ("Table 3 'Layer Norm LSTM, 1000 units'", {**_PTB, **_LN}, {}, 4_260_050),
    "hyper_lstm_1000_ptb": ("Table 3 'HyperLSTM, 1000 units'", {**_PTB, **_HYPER}, {}, 4_911_874),
    "ln_hyper_lstm_1000_ptb": (
        "Table 3 'Layer Norm HyperLSTM, 1000 units'",
        {**_PTB, **_HYPER, **_LN},
        {},
        4_923_154,
    ),
    "ln_hyper_lstm_1000_large_ptb": (
        "Table 3 'Layer Norm HyperLSTM, 1000 units, Large Embedding' (A.3.3: E 16, keep 0.85)",
        {
            **_PTB,
            **_HYPER,
            **_LN,
            "embedding_size": 16,
            "input_dropout": 0.15,
            "output_dropout": 0.15,
            "recurrent_dropout": 0.15,
        },
        {},
        5_060_000,  # printed "5.06M"; the description gives 5,085,682 (docs/param_counts.md)
    ),
    "ln_hyper_lstm_1000x2_ptb": (
        "Table 3 '2-Layer Norm HyperLSTM, 1000 units' (A.3.3: E 16, keep 0.80)",
        {
            **_PTB,
            **_HYPER,
            **_LN,
            "num_layers": 2,
            "embedding_size": 16,
            "input_dropout": 0.2,
            "output_dropout": 0.2,
            "recurrent_dropout": 0.2,
        },
        {},
        14_407_714,
    ),
    "lstm_1800_enwik8": ("Table 4 'LSTM, 1800 units'", {**_ENWIK8, "units": 1800}, {}, 14_812_405),
    "lstm_2000_enwik8": ("Table 4 'LSTM, 2000 units'", {**_ENWIK8, "units": 2000}, {}, 18_058_205),
    "ln_lstm_1800_enwik8": (
        "Table 4 'Layer Norm LSTM, 1800 units'",
        {**_ENWIK8, **_LN, "units": 1800},
        {},
        14_823_205,
    ),
    "hyper_lstm_1800_enwik8": (
        "Table 4 'HyperLSTM, 1800 units' (A.3.4: H 256, E 64)",
        {**_ENWIK8, **_HYPER, "units": 1800, "hyper_units": 256, "embedding_size": 64},
        {},
        18_708_213,
    ),
    "ln_hyper_lstm_1800_enwik8": (
        "Table 4 'Layer Norm HyperLSTM, 1800 units' (A.3.4: H 256, E 64)",
        {**_ENWIK8, **_HYPER, **_LN, "units": 1800, "hyper_units": 256, "embedding_size": 64},
        {},
        18_780_000,  # printed "18.78M"; the description gives 18,728,773 (docs/param_counts.md)
    ),
    "ln_hyper_lstm_2048_enwik8": (
        "Table 4 'Layer Norm HyperLSTM, 2048 units' (A.3.4: H 512, E 64, hyper keep 0.85, sequence 300)",
        {
            **_ENWIK8,
            **_HYPER,
            **_LN,
            "units": 2048,
            "hyper_units": 512,
            "embedding_size": 64,
            "hyper_recurrent_dropout": 0.15,
        },
        {"sequence_length": 300},
        26_541_773,
    ),
}


def stack_description(config: Mapping[str, Any]) -> str:
    """The recurrent stack in the paper's words, e.g. ``"2 x Layer Norm HyperLSTM 1000, H 128, E 16"``."""
    cell = {"lstm": "LSTM", "hyper_lstm": "HyperLSTM"}[config["cell"]]
    if config["use_layer_norm"]:
        cell = "Layer Norm " + cell
    layers = f"{config['num_layers']} x " if config["num_layers"] > 1 else ""
    extra = (
        f", H {config['hyper_units']}, E {config['embedding_size']}" if config["cell"] == "hyper_lstm" else ""
    )
    return f"{layers}{cell} {config['units']}{extra}"


def _description(config: dict[str, Any]) -> str:
    return f"char LM: {stack_description(config)}, vocabulary {config['vocab_size']}"


def state_sizes(config: Mapping[str, Any]) -> list[int]:
    """Sizes of the model's state inputs ``state_0, state_1, ...`` from a config alone (no cell is built,
    so registering a model creates no variables and leaves TensorFlow uninitialised): per layer
    ``[h, c]`` of ``units`` for an LSTM, plus ``[hyper_h, hyper_c]`` of ``hyper_units`` for a HyperLSTM."""
    per_layer = [int(config["units"])] * 2
    if config["cell"] == "hyper_lstm":
        per_layer += [int(config["hyper_units"])] * 2
    return per_layer * int(config["num_layers"])


def _input_spec(config: dict[str, Any]) -> dict[str, tuple[tuple[int | None, ...], str]]:
    sizes = state_sizes(config)
    spec: dict[str, tuple[tuple[int | None, ...], str]] = {"ids": ((None,), "int32")}
    spec.update({f"state_{k}": ((int(s),), "float32") for k, s in enumerate(sizes)})
    return spec


def _register(name: str, paper: str, overrides: dict[str, Any], recipe: dict[str, Any], printed: int) -> None:
    config = {**DEFAULT_CONFIG, **overrides}
    base_recipe = _ENWIK8_RECIPE if config["vocab_size"] == 205 else _PTB_RECIPE
    register_model(
        ModelSpec(
            name=name,
            builder=lambda cfg, _name=name: build_char_lm(cfg, name=_name),
            task="char_lm",
            paper=f"HyperNetworks {'§4.4' if config['vocab_size'] == 205 else '§4.3'}, {paper}",
            config=config,
            recipe={**base_recipe, **recipe},
            input_spec=_input_spec(config),
            description=_description(config),
            paper_params=printed,
        )
    )


for _name, (_paper, _overrides, _recipe, _printed) in _ROWS.items():
    _register(_name, _paper, _overrides, _recipe, _printed)
