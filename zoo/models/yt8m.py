"""YouTube-8M baselines (Abu-El-Haija et al. 2016, §4, Table 3), registered for ``zoo.get``.

Frame-level models take ``{"features": [B, max_frames, D], "num_frames": [B]}`` (padded, L2-normalised
frames from ``zoo.data.yt8m.frame_dataset``); video-level models take ``{"features": [B, D]}`` (mean
features from ``video_dataset``). All output probabilities ``[B, num_classes]`` except ``yt8m_hinge``
(linear scores). The classifier layer is always named ``"classifier"`` so that ``zoo.transfer`` can swap it
when ``num_classes`` changes (§5.3-5.4).

=====================  ============  ===============================================================
name                   dataset       model (paper section; official starter-code differences)
=====================  ============  ===============================================================
yt8m_frame_logistic    yt8m_frame    per-frame logistic, probabilities averaged over real frames
                                     (§4.1.1; official ``FrameLevelLogisticModel`` averages features)
yt8m_dbof              yt8m_frame    k sampled frames -> 8192 ReLU up-projection -> BN -> max pool ->
                                     hidden 1024 ReLU -> MoE-2 (§4.1.2; official: BN before relu6/sigmoid,
                                     k = 30; the paper does not state k, we use the official 30)
yt8m_lstm              yt8m_frame    2 x LSTM(1024), masked, classifier on the last real frame's output
                                     of the top layer (§4.1.3; the paper's linearly increasing per-frame
                                     loss weights and 60-step unroll are not used, as in the official
                                     ``LstmModel``; head MoE-2 as official)
yt8m_logistic          yt8m_video    logistic regression on µ (§4.3)
yt8m_hinge             yt8m_video    linear scores trained with the hinge loss, b = 1 (§4.3)
yt8m_moe               yt8m_video    MoE, 2 experts + dummy state, bias-free softmax gate, on µ (§4.3.3)
yt8m_moe_stats         yt8m_frame    MoE-2 on [µ; σ; top-5] computed inside the model from the real frames
                                     (§4.2.1); taking frame features (rather than precomputed stats
                                     records) keeps one data format and lets the stats follow max_frames
=====================  ============  ===============================================================

Evaluation is deterministic: DBoF samples frames only with ``training=True`` (evenly spaced frames
otherwise, see :class:`zoo.layers.FrameSampler`).

Training recipe (default) is the official starter code's: Adam, learning rate 0.01 (LSTM: 0.001, as the
official README advises) decayed x0.95 every 4M examples as a staircase exponential schedule
(``decay_steps = 4e6 / 1024 = 3906`` steps at batch 1024), per-tensor gradient-norm clip 1.0, batch 1024,
cross-entropy summed over classes, L2 1e-8 on classifier weights; ``train_steps`` = 5 epochs (the
official ``num_epochs``) of the 3.9M-video train split. The paper's recipe is Adagrad: frame models lr 0.1
and weight decay 5e-4 (§4.1.2), video models lr 1.0 at batch 32 (§4.3), e.g.
``--config optimizer=adagrad --config learning_rate=0.1 --config batch_size=32``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras

from zoo.data.yt8m_layout import FRAME_LEVEL, VIDEO_LEVEL, RecordLayout
from zoo.layers.heads import LogisticClassifier, MixtureOfExperts
from zoo.layers.video import DBoFBlock, FrameMask, FrameSampler, FrameStatistics, MaskedPooling
from zoo.registry import ModelSpec, get, register_model

__all__ = ["MODEL_NAMES", "LOSSES", "HEADS", "build", "record_layout"]

MODEL_NAMES = (
    "yt8m_frame_logistic",
    "yt8m_dbof",
    "yt8m_lstm",
    "yt8m_logistic",
    "yt8m_hinge",
    "yt8m_moe",
    "yt8m_moe_stats",
)
LOSSES = ("cross_entropy", "hinge")
HEADS = ("moe", "logistic")

# Current release: 3862 classes, rgb (1024) + audio (128) = 1152 features, 300 frames (1 fps, §3.3).
# The record layout (feature_names / feature_sizes / id_key / labels_key / num_classes / max_frames) is part
# of the model config, so that the exported serving signature parses the same records the model was trained
# on; record_layout(config) turns it into the zoo.data.yt8m.RecordLayout that readers, writers and the video
# task take. feature_names / feature_sizes None mean the release's ("rgb", "audio" / "mean_rgb",
# "mean_audio") and (1024, 128). The paper-era release: feature_names=["inc3"] (frame) / ["mean_inc3"]
# (video), feature_sizes=[1024], feature_size=1024, id_key="video_id", num_classes=4800.
_COMMON = {
    "num_classes": VIDEO_LEVEL.num_classes,
    "feature_size": VIDEO_LEVEL.feature_size,
    "feature_names": None,
    "feature_sizes": None,
    "id_key": VIDEO_LEVEL.id_key,
    "labels_key": VIDEO_LEVEL.labels_key,
    "weight_decay": 1e-8,  # official L2 on classifier weights
    "loss": "cross_entropy",  # or "hinge" (§4.3, b = 1)
}
_FRAME = {**_COMMON, "max_frames": FRAME_LEVEL.max_frames}


def record_layout(config: Mapping[str, Any]) -> RecordLayout:
    """The :class:`zoo.data.yt8m.RecordLayout` of the records a model config reads.

    Frame-level models are those whose config has ``max_frames``. The feature sizes must sum to the
    config's ``feature_size`` (the width of the model's input).
    """
    preset = FRAME_LEVEL if "max_frames" in config else VIDEO_LEVEL
    names = tuple(config.get("feature_names") or preset.feature_names)
    sizes = config.get("feature_sizes")
    feature_size = config.get("feature_size", preset.feature_size)
    if sizes is None:
        if preset.feature_size != feature_size or len(names) != len(preset.feature_sizes):
            raise ValueError(
                f"config feature_size={feature_size} with feature_names={list(names)}: give "
                "feature_sizes (one per name, summing to feature_size); the default "
                f"{list(preset.feature_sizes)} only fits feature_size={preset.feature_size} with "
                f"{len(preset.feature_sizes)} names"
            )
        sizes = preset.feature_sizes
    if isinstance(sizes, str) or not isinstance(sizes, Sequence) or len(sizes) != len(names):
        raise ValueError(
            f"config feature_names={list(names)} / feature_sizes={sizes!r} do not fit feature_size="
            f"{feature_size} (one size per name, summing to feature_size)"
        )
    try:
        layout = preset.replace(
            feature_names=names,
            feature_sizes=tuple(sizes),
            num_classes=config.get("num_classes", preset.num_classes),
            max_frames=config.get("max_frames", preset.max_frames),
            id_key=config.get("id_key", preset.id_key),
            labels_key=config.get("labels_key", preset.labels_key),
        )
    except (TypeError, ValueError) as e:
        raise ValueError(f"config: {e}") from None
    if layout.feature_size != feature_size:
        raise ValueError(
            f"config feature_names={list(names)} / feature_sizes={list(layout.feature_sizes)} do not fit "
            f"feature_size={feature_size} (one size per name, summing to feature_size)"
        )
    return layout


_TRAIN_VIDEOS = 3_888_919  # 2018 train split (official); 5 epochs at batch 1024 ~ 18,990 steps.


def _recipe(dataset: str, learning_rate: float = 0.01) -> dict[str, Any]:
    batch = 1024
    return {
        "dataset": dataset,
        "batch_size": batch,
        "eval_batch_size": batch,
        "train_steps": 5 * _TRAIN_VIDEOS // batch,
        "optimizer": "adam",
        "learning_rate": {
            "schedule": "exponential",
            "initial_learning_rate": learning_rate,
            "decay_steps": int(4_000_000 // batch),
            "decay_rate": 0.95,
            "staircase": True,
        },
        "clip_norm": None,
        "clip_per_tensor": 1.0,
    }


def _check(config: dict[str, Any], name: str) -> None:
    if config["loss"] not in LOSSES:
        raise ValueError(f"model {name!r}: config loss={config['loss']!r}; valid: {', '.join(LOSSES)}")
    if "head" in config and config["head"] not in HEADS:
        raise ValueError(f"model {name!r}: config head={config['head']!r}; valid: {', '.join(HEADS)}")
    try:
        record_layout(config)  # also checks num_classes, max_frames and feature_size
    except ValueError as e:
        raise ValueError(f"model {name!r}: {e}") from None


def _head(config: dict[str, Any], kind: str) -> keras.layers.Layer:
    """The classifier; ``loss="hinge"`` on a logistic head gives linear scores (no sigmoid)."""
    if kind == "moe":
        if config["loss"] == "hinge":
            raise ValueError(
                "config loss='hinge' needs a logistic head (linear scores, §4.3); the mixture-of-experts "
                "head outputs probabilities"
            )
        return MixtureOfExperts(
            config["num_classes"],
            config["num_mixtures"],
            config["weight_decay"],
            name="classifier",
            dtype="float32",
        )
    activation = None if config["loss"] == "hinge" else "sigmoid"
    # float32 even under --mixed_precision: bfloat16 scores tie often, and GAP/mAP rank them.
    return LogisticClassifier(
        config["num_classes"], activation, config["weight_decay"], name="classifier", dtype="float32"
    )


def _frame_inputs(config: dict[str, Any]) -> tuple[Any, Any]:
    features = keras.Input((config["max_frames"], config["feature_size"]), name="features", dtype="float32")
    num_frames = keras.Input((), name="num_frames", dtype="int32")
    return features, num_frames


def _finish(name: str, inputs: dict[str, Any], outputs: Any) -> keras.Model:
    return keras.Model(inputs=inputs, outputs=outputs, name=name)


def build_frame_logistic(config: dict[str, Any]) -> keras.Model:
    _check(config, "yt8m_frame_logistic")
    features, num_frames = _frame_inputs(config)
    per_frame = _head(config, "logistic")(features)  # [B, T, C], one classifier shared by all frames
    out = MaskedPooling("mean", name="frame_average")([per_frame, num_frames])
    return _finish("yt8m_frame_logistic", {"features": features, "num_frames": num_frames}, out)


def build_dbof(config: dict[str, Any]) -> keras.Model:
    _check(config, "yt8m_dbof")
    features, num_frames = _frame_inputs(config)
    frames = FrameSampler(config["sample_frames"], seed=config["seed"], name="frame_sampler")(
        [features, num_frames]
    )
    pooled = DBoFBlock(config["cluster_size"], config["activation"], config["batch_norm"], name="dbof")(
        frames
    )
    hidden = keras.layers.Dense(config["hidden_size"], activation="relu", name="hidden")(pooled)
    out = _head(config, config["head"])(hidden)
    return _finish("yt8m_dbof", {"features": features, "num_frames": num_frames}, out)


def build_lstm(config: dict[str, Any]) -> keras.Model:
    _check(config, "yt8m_lstm")
    features, num_frames = _frame_inputs(config)
    mask = FrameMask(name="frame_mask")([features, num_frames])
    h = features
    layers = int(config["lstm_layers"])
    for i in range(layers):
        h = keras.layers.LSTM(config["lstm_units"], return_sequences=i < layers - 1, name=f"lstm_{i + 1}")(
            h, mask=mask
        )
    out = _head(config, config["head"])(h)
    return _finish("yt8m_lstm", {"features": features, "num_frames": num_frames}, out)


def _build_video(name: str, kind: str) -> Any:
    def builder(config: dict[str, Any]) -> keras.Model:
        _check(config, name)
        features = keras.Input((config["feature_size"],), name="features", dtype="float32")
        out = _head(config, kind)(features)
        return _finish(name, {"features": features}, out)

    return builder


def build_moe_stats(config: dict[str, Any]) -> keras.Model:
    _check(config, "yt8m_moe_stats")
    features, num_frames = _frame_inputs(config)
    stats = FrameStatistics(config["top_k"], name="frame_stats")([features, num_frames])
    out = _head(config, "moe")(stats)
    return _finish("yt8m_moe_stats", {"features": features, "num_frames": num_frames}, out)


def _input_spec(layout: RecordLayout) -> dict[str, tuple[tuple[int | None, ...], str]]:
    """The models' input spec for records of ``layout`` (frame level: padded frames and their count)."""
    if not layout.frame_level:
        return {"features": ((layout.feature_size,), "float32")}
    return {
        "features": ((layout.max_frames, layout.feature_size), "float32"),
        "num_frames": ((), "int32"),
    }


_PAPER = "YouTube-8M (Abu-El-Haija et al. 2016)"

_SPECS = [
    ModelSpec(
        name="yt8m_frame_logistic",
        builder=build_frame_logistic,
        task="video_classification",
        paper=f"{_PAPER} §4.1.1, Table 3 row 'Logistic + Average'",
        config=dict(_FRAME),
        recipe=_recipe("yt8m_frame"),
        input_spec=_input_spec(FRAME_LEVEL),
        description="per-frame logistic classifier, probabilities averaged over the real frames",
    ),
    ModelSpec(
        name="yt8m_dbof",
        builder=build_dbof,
        task="video_classification",
        paper=f"{_PAPER} §4.1.2, Table 3 row 'Deep Bag of Frames'",
        config={
            **_FRAME,
            "sample_frames": 30,  # k; official default (the paper does not state it)
            "cluster_size": 8192,  # §4.1.2: "We used 8192 for all datasets"
            "activation": "relu",  # §4.1.2 (official: relu6, later sigmoid)
            "batch_norm": True,  # §4.1.2: BN before pooling
            "hidden_size": 1024,  # §4.1.2: one hidden layer of 1024
            "head": "moe",  # official default classifier (paper: "Logistic or Softmax")
            "num_mixtures": 2,
            "seed": None,  # frame sampler seed
        },
        recipe=_recipe("yt8m_frame"),
        input_spec=_input_spec(FRAME_LEVEL),
        description="Deep Bag of Frames: k frames, 8192 ReLU up-projection, BN, max pool, hidden 1024, MoE",
    ),
    ModelSpec(
        name="yt8m_lstm",
        builder=build_lstm,
        task="video_classification",
        paper=f"{_PAPER} §4.1.3, Table 3 row 'LSTM'",
        config={**_FRAME, "lstm_units": 1024, "lstm_layers": 2, "head": "moe", "num_mixtures": 2},
        recipe=_recipe("yt8m_frame", learning_rate=0.001),
        input_spec=_input_spec(FRAME_LEVEL),
        description="2 stacked masked LSTMs of 1024, classifier on the last real frame's output",
    ),
    ModelSpec(
        name="yt8m_logistic",
        builder=_build_video("yt8m_logistic", "logistic"),
        task="video_classification",
        paper=f"{_PAPER} §4.3, Table 3 row 'Logistic Regression (µ)'",
        config=dict(_COMMON),
        recipe=_recipe("yt8m_video"),
        input_spec=_input_spec(VIDEO_LEVEL),
        description="one-vs-all logistic regression on mean features",
    ),
    ModelSpec(
        name="yt8m_hinge",
        builder=_build_video("yt8m_hinge", "logistic"),
        task="video_classification",
        paper=f"{_PAPER} §4.3, Table 3 row 'Hinge loss (µ)'",
        config={**_COMMON, "loss": "hinge"},
        recipe=_recipe("yt8m_video"),
        input_spec=_input_spec(VIDEO_LEVEL),
        description="linear one-vs-all scores trained with the hinge loss (b = 1) on mean features",
    ),
    ModelSpec(
        name="yt8m_moe",
        builder=_build_video("yt8m_moe", "moe"),
        task="video_classification",
        paper=f"{_PAPER} §4.3.3, Table 3 row 'Mixture-of-2-Experts (µ)'",
        config={**_COMMON, "num_mixtures": 2},
        recipe=_recipe("yt8m_video"),
        input_spec=_input_spec(VIDEO_LEVEL),
        description="mixture of 2 logistic experts + dummy state on mean features",
    ),
    ModelSpec(
        name="yt8m_moe_stats",
        builder=build_moe_stats,
        task="video_classification",
        paper=f"{_PAPER} §4.2.1/§4.3.3, Table 3 row 'Mixture-of-2-Experts ([µ; σ; Top5])'",
        config={**_FRAME, "num_mixtures": 2, "top_k": 5},
        recipe=_recipe("yt8m_frame"),
        input_spec=_input_spec(FRAME_LEVEL),
        description="mixture of 2 experts on [mean; std; top-5] of the real frames",
    ),
]

for _spec in _SPECS:
    register_model(_spec)


def build(name: str, **overrides: Any) -> keras.Model:
    """Shortcut for ``zoo.get(name, **overrides)`` restricted to the YouTube-8M models."""
    if name not in MODEL_NAMES:
        raise ValueError(f"{name!r} is not a YouTube-8M model; valid: {', '.join(MODEL_NAMES)}")
    return get(name, **overrides)
