"""The official YouTube-8M starter code's baselines (google/youtube-8m) at its default flags.

The models of ``zoo/models/yt8m.py`` follow the paper (Abu-El-Haija et al. 2016, §4); the starter code
that users compare against builds some of them differently, in ways no config of the paper models
reaches. These variants rebuild the starter code's models (``frame_level_models.py``,
``video_level_models.py``) with its default flags, on the records of the current release (rgb 1024 +
audio 128, as its README's training commands ``--feature_names=rgb,audio``; ``train.py`` alone defaults
to ``mean_rgb`` only). Same task, inputs, record layout, recipe (``train.py`` defaults: Adam 0.01, x0.95
every 4M examples, batch 1024, clip 1.0) and classifier layer name ``"classifier"`` as the paper models.

Where each differs from the paper model of ``zoo/models/yt8m.py``:

- ``yt8m_dbof_official``, the starter code's ``DbofModel`` at ``--iterations=30 --dbof_cluster_size=8192
  --dbof_hidden_size=1024 --dbof_activation=sigmoid --dbof_add_batch_norm`` with ``MoeModel`` (2
  mixtures), against ``yt8m_dbof`` (§4.1.2): batch norm on the input frames; projection ``act(BN(x W))``
  without bias (paper: ``BN(relu(x W + b))``); hidden layer ``act(BN(h W))`` without bias (``yt8m_dbof``:
  ``relu(h W + b)``); activation sigmoid (relu6 before 2019; paper ReLU); every batch norm with momentum
  0.999 (slim's ``decay``; Keras' default 0.99); ``W ~ N(0, 1/sqrt(fan_in))`` (ours glorot-uniform);
  random frames also at evaluation (``yt8m_dbof``: evenly spaced there). 37,627,692 trainable parameters
  (``yt8m_dbof``: 37,632,556).
- ``yt8m_frame_logistic_official``, the starter code's ``FrameLevelLogisticModel``, against
  ``yt8m_frame_logistic`` (§4.1.1, Eq. 1, per-frame probabilities averaged): one logistic classifier on the
  features averaged over the real frames. Same weights; a video without frames gets σ(b) (the starter
  code divides by zero).
- ``yt8m_hinge_official``, the starter code's ``LogisticModel`` with ``--label_loss=HingeLoss``, against
  ``yt8m_hinge`` (§4.3, the hinge loss on linear scores): the hinge loss (b = 1) is taken on the sigmoid's
  probabilities.

Each has one config key the paper model lacks, so that it can be switched back to the paper's choice
(``frame_sampling``, ``average``, ``output_activation``).
"""

from __future__ import annotations

from typing import Any

import keras

from zoo.data.yt8m_layout import FRAME_LEVEL, VIDEO_LEVEL
from zoo.layers.batch_norm import sync_batch_norm
from zoo.layers.heads import LogisticClassifier
from zoo.layers.video import DBoFBlock, FrameSampler, MaskedPooling
from zoo.models.yt8m import _COMMON, _FRAME, _check, _frame_inputs, _head, _input_spec, _recipe
from zoo.registry import ModelSpec, register_model

__all__ = ["MODEL_NAMES", "OFFICIAL_DBOF_PARAMS"]

MODEL_NAMES = ("yt8m_dbof_official", "yt8m_frame_logistic_official", "yt8m_hinge_official")
#: Trainable parameters of the starter code's ``DbofModel`` at its default flags (1152 features, 3862
#: classes): input BN 2·1152 + W 1152·8192 + BN 2·8192 + hidden 8192·1024 + BN 2·1024 + MoE-2 gate
#: 1024·3·3862 + experts 1024·2·3862 + 2·3862.
OFFICIAL_DBOF_PARAMS = 37_627_692

FRAME_SAMPLING = ("random", "training")  # random at evaluation too (official) / evenly spaced (ours)
AVERAGES = ("features", "probabilities")
OUTPUT_ACTIVATIONS = ("sigmoid", "linear")
DBOF_ACTIVATIONS = ("sigmoid", "relu6")  # the starter code's ACT_FN_MAP

# slim.batch_norm's defaults (decay 0.999, epsilon 0.001, center and scale); Keras' momentum is the same
# quantity as TF1's decay: moving = momentum * moving + (1 - momentum) * batch.
_BN_MOMENTUM = 0.999


def _fan_in_normal() -> keras.initializers.Initializer:
    """``N(0, 1/sqrt(fan_in))``, the starter code's ``random_normal_initializer(1 / sqrt(fan_in))``."""
    return keras.initializers.VarianceScaling(1.0, mode="fan_in", distribution="untruncated_normal")


def _choice(config: dict[str, Any], key: str, valid: tuple[str, ...], name: str) -> str:
    if config[key] not in valid:
        raise ValueError(f"model {name!r}: config {key}={config[key]!r}; valid: {', '.join(valid)}")
    return config[key]


def build_dbof_official(config: dict[str, Any]) -> keras.Model:
    """The starter code's ``DbofModel``: sample -> [input BN] -> act(BN(x W)) -> max -> act(BN(h W)) -> head.

    With ``batch_norm=False`` (``--nodbof_add_batch_norm``) the projection and hidden layer get biases
    instead of the batch norms and the input is not normalised (biases start at zero here, at
    ``N(0, 1/sqrt(N))`` / ``N(0, 0.01)`` there).
    """
    name = "yt8m_dbof_official"
    _check(config, name)
    activation = _choice(config, "activation", DBOF_ACTIVATIONS, name)
    sampling = _choice(config, "frame_sampling", FRAME_SAMPLING, name)
    bn = bool(config["batch_norm"])
    momentum = float(config["batch_norm_momentum"])
    features, num_frames = _frame_inputs(config)
    frames = FrameSampler(
        config["sample_frames"],
        seed=config["seed"],
        sample_at_inference=sampling == "random",
        name="frame_sampler",
    )([features, num_frames])
    if bn:
        frames = sync_batch_norm(momentum=momentum, name="input_bn")(frames)
    pooled = DBoFBlock(
        config["cluster_size"],
        activation,
        batch_norm=bn,
        batch_norm_first=True,
        momentum=momentum,
        kernel_initializer=_fan_in_normal(),
        name="dbof",
    )(frames)
    hidden = keras.layers.Dense(
        config["hidden_size"],
        use_bias=not bn,
        kernel_initializer=_fan_in_normal(),
        bias_initializer=keras.initializers.RandomNormal(stddev=0.01),
        name="hidden",
    )(pooled)
    if bn:
        hidden = sync_batch_norm(momentum=momentum, name="hidden_bn")(hidden)
    hidden = keras.layers.Activation(activation, name="hidden_activation")(hidden)
    out = _head(config, config["head"])(hidden)
    return keras.Model({"features": features, "num_frames": num_frames}, out, name=name)


def build_frame_logistic_official(config: dict[str, Any]) -> keras.Model:
    """The starter code's ``FrameLevelLogisticModel``: σ(mean of the real frames' features · W + b)."""
    name = "yt8m_frame_logistic_official"
    _check(config, name)
    average = _choice(config, "average", AVERAGES, name)
    features, num_frames = _frame_inputs(config)
    head = _head(config, "logistic")
    if average == "features":
        out = head(MaskedPooling("mean", name="feature_average")([features, num_frames]))
    else:  # the paper's Eq. 1: per-frame probabilities averaged
        out = MaskedPooling("mean", name="frame_average")([head(features), num_frames])
    return keras.Model({"features": features, "num_frames": num_frames}, out, name=name)


def build_hinge_official(config: dict[str, Any]) -> keras.Model:
    """The starter code's ``LogisticModel`` trained with ``HingeLoss``: σ(x W + b), hinge on probabilities."""
    name = "yt8m_hinge_official"
    _check(config, name)
    output = _choice(config, "output_activation", OUTPUT_ACTIVATIONS, name)
    if output == "linear" and config["loss"] != "hinge":
        raise ValueError(
            f"model {name!r}: config output_activation='linear' needs loss='hinge' (the cross-entropy "
            f"takes probabilities), got loss={config['loss']!r}"
        )
    features = keras.Input((config["feature_size"],), name="features", dtype="float32")
    out = LogisticClassifier(
        config["num_classes"],
        "sigmoid" if output == "sigmoid" else None,
        config["weight_decay"],
        name="classifier",
        dtype="float32",
    )(features)
    return keras.Model({"features": features}, out, name=name)


_STARTER = "google/youtube-8m starter code"
_PAPER = "YouTube-8M (Abu-El-Haija et al. 2016)"

_SPECS = [
    ModelSpec(
        name="yt8m_dbof_official",
        builder=build_dbof_official,
        task="video_classification",
        paper=f"{_STARTER} DbofModel, default flags (the paper's {_PAPER} §4.1.2 model is yt8m_dbof)",
        config={
            **_FRAME,
            "sample_frames": 30,  # --iterations
            "frame_sampling": "random",  # random frames at evaluation too; "training": evenly spaced there
            "cluster_size": 8192,  # --dbof_cluster_size
            "hidden_size": 1024,  # --dbof_hidden_size
            "activation": "sigmoid",  # --dbof_activation (relu6 before 2019)
            "batch_norm": True,  # --dbof_add_batch_norm
            "batch_norm_momentum": _BN_MOMENTUM,  # slim.batch_norm decay
            "head": "moe",  # --video_level_classifier_model=MoeModel
            "num_mixtures": 2,  # --moe_num_mixtures
            "seed": None,  # frame sampler seed
        },
        recipe=_recipe("yt8m_frame"),
        input_spec=_input_spec(FRAME_LEVEL),
        description="starter-code DBoF: input BN, sigmoid(BN(xW)) 8192, max, sigmoid(BN(hW)) 1024, MoE-2",
    ),
    ModelSpec(
        name="yt8m_frame_logistic_official",
        builder=build_frame_logistic_official,
        task="video_classification",
        paper=f"{_STARTER} FrameLevelLogisticModel (the paper's {_PAPER} §4.1.1 model: yt8m_frame_logistic)",
        config={**_FRAME, "average": "features"},
        recipe=_recipe("yt8m_frame"),
        input_spec=_input_spec(FRAME_LEVEL),
        description="starter-code frame logistic: features averaged over the real frames, then logistic",
    ),
    ModelSpec(
        name="yt8m_hinge_official",
        builder=build_hinge_official,
        task="video_classification",
        paper=f"{_STARTER} LogisticModel + HingeLoss (the paper's {_PAPER} §4.3 model is yt8m_hinge)",
        config={**_COMMON, "loss": "hinge", "output_activation": "sigmoid"},
        recipe=_recipe("yt8m_video"),
        input_spec=_input_spec(VIDEO_LEVEL),
        description="starter-code hinge model: logistic probabilities trained with the hinge loss (b = 1)",
    ),
]

for _spec in _SPECS:
    register_model(_spec)
