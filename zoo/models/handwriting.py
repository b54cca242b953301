"""Handwriting generation models of HyperNetworks §4.5 (Table 5), registered by name.

Architecture (Graves 2013 §4.2; HyperNetworks appendix A.3.5): pen offsets ``(dx, dy, end_of_stroke)``
(``N_x = 3``) -> :class:`StrokeNormalization` (the training split's offset statistics, non-trainable) ->
one or more recurrent layers (LSTM, Layer Norm LSTM, HyperLSTM, LN-HyperLSTM with H 128, E 4; recurrent
dropout on ``tanh(g)``) stacked plainly (each layer reads the one below; no skip connections) ->
output dropout -> :class:`zoo.layers.mdn.MixtureDensityHead` (``6M + 1 = 121`` raw mixture parameters,
M = 20). Trainable parameter counts equal Table 5 (the normalisation statistics are not trainable); the
formulas are the char LMs' with ``V`` replaced by the head's ``6M + 1``.

Model I/O (the ``handwriting`` task contract, like the char LMs' ``zoo/models/char_lm.py``): a functional
``keras.Model`` with inputs ``strokes`` (float32 ``[B, T, 3]``, **raw** offsets in the data's units) and
``state_0``, ``state_1``, ... (float32 ``[B, size]``, zeros at the start of a line), outputs
``{"mixture": [B, T, 6M+1], "state_0": ..., ...}``. The mixture parameterises the *normalised* next row
(:func:`zoo.layers.mdn.mixture_nll` of the normalised targets, :meth:`StrokeNormalization.normalize`). State
layout per layer: ``[h, c]`` (LSTM) or ``[h, c, hyper_h, hyper_c]`` (HyperLSTM). The cells are the char
LMs' (built by ``zoo.models.char_lm.make_cell`` from the same config keys).

The statistics live in the model so that checkpoints, the SavedModel and the sampler carry them: the task
sets them from the training split before training (:func:`set_stroke_stats`, via ``Task.prepare_model``);
a freshly built model has mean 0 and std 1.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from zoo.data.strokes import STROKE_FEATURES, StrokeStats
from zoo.layers.mdn import NUM_MIXTURES, MixtureDensityHead
from zoo.layers.rnn_base import check_drop_rate, check_positive
from zoo.models.char_lm import CELLS, stack_description, state_sizes, stateful_stack
from zoo.registry import ModelSpec, register_model

__all__ = [
    "DEFAULT_CONFIG",
    "RECIPE",
    "StrokeNormalization",
    "build_handwriting",
    "normalizer",
    "set_stroke_stats",
    "stroke_stats",
]

#: every config key with A.3.5's values; registered models override ``units``, ``num_layers``, the cell.
DEFAULT_CONFIG: dict[str, Any] = {
    "units": 900,  # N, main cell units
    "num_layers": 1,
    "cell": "lstm",  # one of zoo.models.char_lm.CELLS
    "use_layer_norm": False,
    "hyper_units": 128,  # H (A.3.5)
    "embedding_size": 4,  # E (A.3.5)
    "num_mixtures": NUM_MIXTURES,  # M = 20 bivariate Gaussians (Graves 2013 §4.2)
    "output_dropout": 0.05,  # keep 0.95 (A.3.5)
    "recurrent_dropout": 0.05,  # keep 0.95 (A.3.5), Semeniuta dropout on tanh(g)
    "hyper_recurrent_dropout": 0.0,
    "forget_bias": 1.0,
    "seed": None,  # seed of the dropout masks
}

#: A.3.5 as data. ``train_steps`` is not printed; Figure 6 (right) plots about 100k steps.
RECIPE: dict[str, Any] = {
    "dataset": "iam_ondb",
    "batch_size": 32,
    "optimizer": "adam",
    "learning_rate": 1e-4,
    "clip_norm": 5.0,
    "max_scale": 0.1,  # random scaling by up to ±10%
    "train_steps": 100_000,
}


@keras.saving.register_keras_serializable(package="zoo")
class StrokeNormalization(keras.layers.Layer):
    """``(dx, dy, eos) -> ((dx - mean_x) / std_x, (dy - mean_y) / std_y, eos)`` with stored statistics.

    The statistics are non-trainable weights ``mean [2]`` (init 0) and ``std [2]`` (init 1), set from the
    training split (:meth:`set_stats`, :class:`zoo.data.strokes.StrokeStats`), like ``keras.layers.
    Normalization`` after ``adapt``. :meth:`denormalize` is the inverse (for sampling).

    Call arguments:
      inputs: ``[..., 3]`` raw rows.

    Returns:
      ``[..., 3]`` normalised rows.
    """

    def build(self, input_shape: Any) -> None:
        if input_shape[-1] != STROKE_FEATURES:
            raise ValueError(f"StrokeNormalization takes [..., {STROKE_FEATURES}] rows, got {input_shape}")
        self.mean = self.add_weight(name="mean", shape=(2,), initializer="zeros", trainable=False)
        self.std = self.add_weight(name="std", shape=(2,), initializer="ones", trainable=False)

    def call(self, inputs: Any) -> Any:
        return self.normalize(inputs)

    def normalize(self, rows: Any) -> Any:
        rows = ops.cast(rows, "float32")
        return ops.concatenate([(rows[..., :2] - self.mean) / self.std, rows[..., 2:]], axis=-1)

    def denormalize(self, rows: Any) -> Any:
        rows = ops.cast(rows, "float32")
        return ops.concatenate([rows[..., :2] * self.std + self.mean, rows[..., 2:]], axis=-1)

    def set_stats(self, stats: StrokeStats) -> None:
        self.mean.assign(ops.convert_to_tensor(stats.mean, "float32"))
        self.std.assign(ops.convert_to_tensor(stats.std, "float32"))

    def stats(self) -> StrokeStats:
        return StrokeStats(
            tuple(ops.convert_to_numpy(self.mean).tolist()), tuple(ops.convert_to_numpy(self.std).tolist())
        )

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


def _check_config(config: dict[str, Any]) -> None:
    if config["cell"] not in CELLS:
        raise ValueError(f"handwriting config: cell={config['cell']!r}; valid: {', '.join(CELLS)}")
    for key in ("units", "num_layers", "hyper_units", "embedding_size", "num_mixtures"):
        check_positive("handwriting config", key, config[key])
    for key in ("output_dropout", "recurrent_dropout", "hyper_recurrent_dropout"):
        check_drop_rate("handwriting config", key, config[key])


def build_handwriting(config: dict[str, Any], name: str = "handwriting") -> keras.Model:
    """Builds a handwriting model from a full config (keys of :data:`DEFAULT_CONFIG`; missing keys default).

    Layers: ``normalize`` (:class:`StrokeNormalization`), ``rnn_<k>`` (:class:`zoo.layers.RNN` around cell
    ``cell_<k>``), ``output_dropout``, ``mixture`` (:class:`MixtureDensityHead`).
    """
    unknown = sorted(set(config) - set(DEFAULT_CONFIG))
    if unknown:
        raise ValueError(
            f"handwriting config: unknown key(s) {unknown}; valid keys: {sorted(DEFAULT_CONFIG)}"
        )
    config = {**DEFAULT_CONFIG, **config}
    _check_config(config)
    strokes = keras.Input(shape=(None, STROKE_FEATURES), dtype="float32", name="strokes")
    x = StrokeNormalization(name="normalize", dtype="float32")(strokes)
    x, state_inputs, state_outputs = stateful_stack(x, config)
    x = keras.layers.Dropout(float(config["output_dropout"]), name="output_dropout")(x)
    mixture = MixtureDensityHead(int(config["num_mixtures"]), name="mixture", dtype="float32")(x)
    outputs = {"mixture": mixture}
    outputs.update({f"state_{k}": s for k, s in enumerate(state_outputs)})
    inputs = {"strokes": strokes, **{t.name: t for t in state_inputs}}
    return keras.Model(inputs=inputs, outputs=outputs, name=name)


def normalizer(model: keras.Model) -> StrokeNormalization:
    """The model's :class:`StrokeNormalization` layer (``normalize``)."""
    layer = model.get_layer("normalize")
    if not isinstance(layer, StrokeNormalization):
        raise ValueError(f"model {model.name!r} has no StrokeNormalization layer named 'normalize'")
    return layer


def set_stroke_stats(model: keras.Model, stats: StrokeStats) -> None:
    """Stores the training split's offset statistics in the model (checkpointed and exported with it)."""
    normalizer(model).set_stats(stats)


def stroke_stats(model: keras.Model) -> StrokeStats:
    """The offset statistics stored in the model."""
    return normalizer(model).stats()


# --------------------------------------------------------------------------- registered models
_HYPER = {"cell": "hyper_lstm"}
_LN = {"use_layer_norm": True}

# name: (Table 5 row, config overrides, parameter count)
_ROWS: dict[str, tuple[str, dict[str, Any], int]] = {
    "lstm_900_iam": ("'LSTM, 900 units'", {}, 3_363_421),
    "lstm_1000_iam": ("'LSTM, 1000 units'", {"units": 1000}, 4_137_121),
    "lstm_400x3_iam": ("'3-Layer LSTM, 400 units'", {"units": 400, "num_layers": 3}, 3_258_121),
    "lstm_650x2_iam": ("'2-Layer LSTM, 650 units'", {"units": 650, "num_layers": 2}, 5_161_771),
    "ln_lstm_900_iam": ("'Layer Norm LSTM, 900 units'", {**_LN}, 3_368_821),
    "ln_lstm_1000_iam": ("'Layer Norm LSTM, 1000 units'", {**_LN, "units": 1000}, 4_143_121),
    "hyper_lstm_900_iam": ("'HyperLSTM, 900 units' (H 128, E 4)", {**_HYPER}, 3_941_181),
    "ln_hyper_lstm_900_iam": ("'Layer Norm HyperLSTM, 900 units' (H 128, E 4)", {**_HYPER, **_LN}, 3_951_461),
}


def _description(config: dict[str, Any]) -> str:
    return f"handwriting: {stack_description(config)}, {config['num_mixtures']} mixtures"


def _input_spec(config: dict[str, Any]) -> dict[str, tuple[tuple[int | None, ...], str]]:
    spec: dict[str, tuple[tuple[int | None, ...], str]] = {"strokes": ((None, STROKE_FEATURES), "float32")}
    spec.update({f"state_{k}": ((size,), "float32") for k, size in enumerate(state_sizes(config))})
    return spec


def _register(name: str, paper: str, overrides: dict[str, Any], printed: int) -> None:
    config = {**DEFAULT_CONFIG, **overrides}
    register_model(
        ModelSpec(
            name=name,
            builder=lambda cfg, _name=name: build_handwriting(cfg, name=_name),
            task="handwriting",
            paper=f"HyperNetworks §4.5, Table 5 {paper}",
            config=config,
            recipe=dict(RECIPE),
            input_spec=_input_spec(config),
            description=_description(config),
            paper_params=printed,
        )
    )


for _name, (_paper, _overrides, _printed) in _ROWS.items():
    _register(_name, _paper, _overrides, _printed)
