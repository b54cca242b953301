"""YouTube-8M learnable-pooling models of the 2017 and 2018 challenges, registered for ``zoo.get``.

Frame-level models of the ``video_classification`` task: inputs ``{"features": [B, max_frames, D],
"num_frames": [B]}`` as the baselines of ``zoo/models/yt8m.py`` (same record layout, losses, heads and
helpers), output probabilities ``[B, num_classes]``; the classifier layer is named ``"classifier"``.

Every feature of the record layout (rgb, then audio) is pooled by its own layer and the descriptors are
concatenated: the first feature with ``cluster_size`` clusters, the others with ``cluster_size //
audio_cluster_divisor`` (the authors' code hard-codes 1024 rgb + 128 audio; we slice by ``feature_sizes``).

===================  ======================================================================================
name                 model (paper; sizes from the authors' training commands)
===================  ======================================================================================
yt8m_netvlad         gated NetVLAD, the 2017 winner's best single model (Miech, Laptev, Sivic 2017, arXiv
                     1706.06905, §3-4): 300 frames sampled, input BN, NetVLAD 256 rgb / 128 audio, hidden
                     1024 (linear, bias), context gating, gated MoE-2
yt8m_netrvlad        the same with NetRVLAD (no residuals)
yt8m_netfv           gated NetFV 128 rgb / 64 audio, hidden 1024, context gating, gated MoE-2
yt8m_softdbof        Soft-DBoW 8000 rgb / 1000 audio, hidden 1024, MoE-2 (no gating, as the authors' run)
yt8m_nextvlad        NeXtVLAD, the best single model of 2018 (Lin, Xiao, Fan 2018, arXiv 1811.05014, §3-4):
                     all real frames, NeXtVLAD (λ = 2; G = 8, K = 128 rgb; G = 4, K = 64 audio), BN,
                     dropout 0.5, hidden 2048 (no bias, BN), SE context gating (r = 8), logistic
===================  ======================================================================================

Frame sampling (``sample_frames``, 2017 models): ``FrameSampler`` draws k frames with replacement among
the real ones in training (the authors' ``--iterations=300`` random frames) and takes k evenly spaced
real frames at evaluation (theirs samples at random there too). NeXtVLAD pools every real frame under a
mask, as its code does.

Recipes are the authors' commands: Adam, learning rate 2e-4, batch 80, decayed x0.8 every 4M examples
(2017; staircase as the starter code) or every 2M examples (2018, batch 2 x 80 = 160 on two GPUs),
per-tensor gradient clipping 1.0 (starter code); L2 1e-6 on the MoE (2017 ``--moe_l2``) or 1e-5 on the
logistic classifier (2018 ``--l2_penalty``); ``train_steps`` = the commands' ``--max_step``. The 2017
challenge had 4716 classes; the defaults here are the current release's 3862.
"""

from __future__ import annotations

from typing import Any

import keras

from zoo.data.yt8m_layout import FRAME_LEVEL
from zoo.layers.batch_norm import sync_batch_norm
from zoo.layers.gating import ContextGating, GatedMixtureOfExperts
from zoo.layers.pooling import NetFV, NetRVLAD, NetVLAD, NeXtVLAD, SoftDBoF
from zoo.layers.video import FrameSampler
from zoo.models.yt8m import _FRAME, _check, _frame_inputs, _head, _input_spec, _recipe, record_layout
from zoo.registry import ModelSpec, register_model

__all__ = ["MODEL_NAMES", "POOLING_HEADS", "pooling_recipe"]

MODEL_NAMES = ("yt8m_netvlad", "yt8m_netrvlad", "yt8m_netfv", "yt8m_softdbof", "yt8m_nextvlad")
POOLING_HEADS = ("gated_moe", "moe", "logistic")
POOLINGS = ("netvlad", "netrvlad", "netfv", "softdbof", "nextvlad")

_POOLING = {"netvlad": NetVLAD, "netrvlad": NetRVLAD, "netfv": NetFV}


def pooling_recipe(
    batch: int, decay_examples: int, train_steps: int, learning_rate: float = 2e-4, decay_rate: float = 0.8
) -> dict[str, Any]:
    """The authors' recipe: Adam, staircase exponential decay every ``decay_examples`` examples."""
    recipe = _recipe("yt8m_frame", learning_rate)
    recipe.update(batch_size=batch, eval_batch_size=batch, train_steps=train_steps)
    recipe["learning_rate"].update(decay_steps=decay_examples // batch, decay_rate=decay_rate)
    return recipe


def _pool(config: dict[str, Any], index: int, label: str) -> keras.layers.Layer:
    """Pooling of feature ``index`` (at least 2 clusters: a softmax over one cluster is constant)."""
    divisor = 1 if index == 0 else config["audio_cluster_divisor"]
    clusters = max(2, config["cluster_size"] // divisor)
    layer_name = f"{label}_pooling"
    kind = config["pooling"]
    if kind == "nextvlad":
        groups = config["groups"] if index == 0 else max(1, config["groups"] // 2)
        return NeXtVLAD(clusters, groups, config["expansion"], name=layer_name)
    if kind == "softdbof":
        return SoftDBoF(clusters, batch_norm=config["cluster_batch_norm"], name=layer_name)
    return _POOLING[kind](clusters, batch_norm=config["cluster_batch_norm"], name=layer_name)


def _builder(name: str) -> Any:
    def build(config: dict[str, Any]) -> keras.Model:
        allowed = POOLINGS[4:] if "groups" in config else POOLINGS[:4]  # NeXtVLAD has its own keys
        if config["pooling"] not in allowed:
            raise ValueError(
                f"model {name!r}: config pooling={config['pooling']!r}; valid: {', '.join(allowed)}"
            )
        if config["head"] not in POOLING_HEADS:
            raise ValueError(
                f"model {name!r}: config head={config['head']!r}; valid: {', '.join(POOLING_HEADS)}"
            )
        _check({k: v for k, v in config.items() if k != "head"}, name)
        layout = record_layout(config)
        features, num_frames = _frame_inputs(config)
        k = config.get("sample_frames")
        if k:  # every sampled frame is real: the pooling layers take them without a count
            frames = FrameSampler(k, seed=config["seed"], name="frame_sampler")([features, num_frames])
        else:
            frames = features
        if config["input_batch_norm"]:
            frames = sync_batch_norm(name="input_bn")(frames)
        parts, start = [], 0
        for i, (label, size) in enumerate(zip(layout.feature_names, layout.feature_sizes, strict=True)):
            x = frames[:, :, start : start + size]
            start += size
            parts.append(_pool(config, i, label)(x if k else [x, num_frames]))
        h = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="descriptor")(parts)
        if config["descriptor_batch_norm"]:
            h = sync_batch_norm(name="descriptor_bn")(h)
        if config["dropout"]:
            h = keras.layers.Dropout(config["dropout"], name="dropout")(h)
        h = keras.layers.Dense(
            config["hidden_size"], use_bias=not config["hidden_batch_norm"], name="hidden"
        )(h)
        if config["hidden_batch_norm"]:
            h = sync_batch_norm(name="hidden_bn")(h)
        if config["context_gating"]:
            h = ContextGating(
                batch_norm=True,
                reduction=config["gating_reduction"],
                kernel_initializer="he_normal" if config["pooling"] == "nextvlad" else None,
                name="context_gating",
            )(h)
        if config["head"] == "gated_moe":
            head = GatedMixtureOfExperts(
                config["num_classes"],
                config["num_mixtures"],
                config["weight_decay"],
                name="classifier",
                dtype="float32",
            )
        else:
            head = _head(config, config["head"])
        out = head(h)
        return keras.Model({"features": features, "num_frames": num_frames}, out, name=name)

    return build


# The 2017 winner's flags (Miech et al. 2017 code, README commands): --netvlad_relu=False (hidden layer
# linear with a bias, no BN), --gating=True, --moe_prob_gating=True, --moe_l2=1e-6, --iterations=300.
_WILLOW = {
    **_FRAME,
    "sample_frames": 300,
    "seed": None,
    "input_batch_norm": True,
    "cluster_size": 256,
    "audio_cluster_divisor": 2,
    "cluster_batch_norm": True,
    "descriptor_batch_norm": False,
    "dropout": 0.0,
    "hidden_size": 1024,
    "hidden_batch_norm": False,
    "context_gating": True,
    "gating_reduction": 1,
    "head": "gated_moe",
    "num_mixtures": 2,
    "weight_decay": 1e-6,
}
_M2017 = "Miech, Laptev, Sivic 2017 (arXiv 1706.06905)"
_M2018 = "Lin, Xiao, Fan 2018 (arXiv 1811.05014)"

_SPECS = [
    ModelSpec(
        name="yt8m_netvlad",
        builder=_builder("yt8m_netvlad"),
        task="video_classification",
        paper=f"{_M2017} §3, Table 1 'Gated NetVLAD' (1st place, YouTube-8M 2017)",
        config={**_WILLOW, "pooling": "netvlad"},
        recipe=pooling_recipe(80, 4_000_000, 300_000),
        input_spec=_input_spec(FRAME_LEVEL),
        description="gated NetVLAD (256 rgb / 128 audio clusters), hidden 1024, context gating, gated MoE",
    ),
    ModelSpec(
        name="yt8m_netrvlad",
        builder=_builder("yt8m_netrvlad"),
        task="video_classification",
        paper=f"{_M2017} §3.1, Table 1 'Gated NetRVLAD'",
        config={**_WILLOW, "pooling": "netrvlad"},
        recipe=pooling_recipe(80, 4_000_000, 600_000),
        input_spec=_input_spec(FRAME_LEVEL),
        description="gated NetRVLAD (no residuals; 256 / 128 clusters), hidden 1024, gating, gated MoE",
    ),
    ModelSpec(
        name="yt8m_netfv",
        builder=_builder("yt8m_netfv"),
        task="video_classification",
        paper=f"{_M2017} §3.1, Table 1 'Gated NetFV'",
        config={**_WILLOW, "pooling": "netfv", "cluster_size": 128},
        recipe=pooling_recipe(80, 4_000_000, 600_000),
        input_spec=_input_spec(FRAME_LEVEL),
        description="gated NetFV (128 rgb / 64 audio clusters, first and second order), gated MoE",
    ),
    ModelSpec(
        name="yt8m_softdbof",
        builder=_builder("yt8m_softdbof"),
        task="video_classification",
        paper=f"{_M2017} §3.1, Table 1 'Soft-DBoW'",
        config={
            **_WILLOW,
            "pooling": "softdbof",
            "cluster_size": 8000,
            "audio_cluster_divisor": 8,
            "context_gating": False,
            "head": "moe",
            "weight_decay": 1e-8,
        },
        recipe=pooling_recipe(80, 4_000_000, 800_000, decay_rate=0.9),
        input_spec=_input_spec(FRAME_LEVEL),
        description="Soft-DBoW (8000 rgb / 1000 audio clusters), hidden 1024, MoE",
    ),
    ModelSpec(
        name="yt8m_nextvlad",
        builder=_builder("yt8m_nextvlad"),
        task="video_classification",
        paper=f"{_M2018} §3-4, the best single model of the YouTube-8M 2018 challenge",
        config={
            **_FRAME,
            "pooling": "nextvlad",
            "input_batch_norm": False,
            "cluster_size": 128,
            "audio_cluster_divisor": 2,
            "groups": 8,
            "expansion": 2,
            "descriptor_batch_norm": True,
            "dropout": 0.5,
            "hidden_size": 2048,
            "hidden_batch_norm": True,
            "context_gating": True,
            "gating_reduction": 8,
            "head": "logistic",
            "weight_decay": 1e-5,
        },
        recipe=pooling_recipe(160, 2_000_000, 700_000),
        input_spec=_input_spec(FRAME_LEVEL),
        description="NeXtVLAD (lambda 2; G 8, K 128 rgb; G 4, K 64 audio), dropout 0.5, hidden 2048, SE gate",
    ),
]

for _spec in _SPECS:
    register_model(_spec)
