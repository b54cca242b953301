"""Wide residual networks and their hypernetwork versions (HyperNetworks §4.2, Table 1-2, A.3.2).

Pre-activation WRN-``depth``-``width`` of Zagoruyko & Komodakis (2016), as in Table 1 of the paper:
conv1 3x3x16; groups conv2/conv3/conv4 of ``N = (depth - 4) / 6`` blocks at 32/16/8 px with widths
16k/32k/64k (``k = width``; strides 1/2/2); each block is ``BN-ReLU-conv3x3-BN-ReLU-conv3x3`` plus a shortcut;
then BN-ReLU, 8x8 global average pooling and a dense classifier.

Conventions the paper leaves open (ours, following Zagoruyko & Komodakis' reference code):
- Shortcut: identity when a block keeps its channel count, otherwise a 1x1 convolution (no bias) with the
  block's stride applied to the *pre-activated* input ``ReLU(BN(x))`` (WRN 40-1: two of them, WRN 40-2:
  three). Those 1x1 kernels are ordinary weights in the hyper versions too (the generator makes 3x3 kernels).
- Batch norm: scale and offset (2 trainable parameters per channel), momentum 0.9 and epsilon 1e-5 (torch's
  defaults, used by the WRN code), synchronized on the TensorFlow backend so moving statistics agree
  across replicas under ``MirroredStrategy`` (``zoo/layers/batch_norm.py``; plain BN on JAX and PyTorch,
  which train on one device). Convolutions have no bias.
- L2 (A.3.2: 5e-4 "on kernels and generated kernels"): ``weight_decay * sum(W^2) / 2`` on every ordinary
  conv kernel, the dense kernel, and every generated kernel; none on BN parameters, biases, embeddings
  or generator weights directly.
- Input normalisation: per-channel CIFAR-10 training-set mean/std (``input_mean``/``input_std``).

Hyper versions (§4.2): one :class:`KernelGenerator` (N_z = 64, d = 64, basic kernel 3x3x16x16, 75,920
parameters) generates every 3x3 kernel of conv2-conv4 (``6N`` layers: 36 at depth 40); a ``C_in x C_out``
kernel uses ``(C_in/16)(C_out/16)`` embeddings: 242 for 40-1, 966 for 40-2. conv1 (3 input channels) stays
an ordinary kernel. BN is unchanged.

Trainable parameters (ours vs Table 2): WRN 40-1 563,930 (0.563M), WRN 40-2 2,243,546 (2.236M),
Hyper 40-1 97,770 (0.097M), Hyper 40-2 155,626 (0.148M). See ``docs/param_counts.md``.

Initialisers: ordinary kernels He-normal (``fan_in``, as in the WRN reference code), dense glorot-uniform,
BN gamma 1 / beta 0; generated kernels start at He scale (``zoo/layers/hyper_conv.py``).
"""

from __future__ import annotations

from typing import Any

import keras

from zoo.layers.batch_norm import sync_batch_norm
from zoo.layers.hyper_conv import HyperConv2D, KernelGenerator
from zoo.registry import ModelSpec, register_model

__all__ = ["build_wrn", "WRN_RECIPE", "HYPER_WRN_RECIPE", "wrn_config"]

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def wrn_config(depth: int, width: int, hyper: bool) -> dict[str, Any]:
    """Default config of WRN-``depth``-``width`` (§4.2, Table 1; A.3.2)."""
    config: dict[str, Any] = {
        "num_classes": 10,
        "input_shape": (32, 32, 3),
        "depth": depth,  # 6N + 4 (Table 1)
        "width": width,  # widening factor k (Table 1)
        "weight_decay": 5e-4,  # A.3.2, L2 on kernels and generated kernels
        "bn_momentum": 0.9,
        "bn_epsilon": 1e-5,
        "input_mean": CIFAR10_MEAN,
        "input_std": CIFAR10_STD,
    }
    if hyper:
        config.update(
            z_dim=64,  # N_z (§4.2)
            hidden_size=None,  # d; None means d = N_z (§3.1)
            basic_channels=16,  # basic kernel 16x16 (§3.1)
        )
    return config


# A.3.2: batch 128, pad to 36 + random 32 crop + random flip, 45k/5k/10k split. Table 8 (normal net):
# Nesterov SGD, momentum 0.9, lr 0.1 / 0.02 / 0.004 / 0.0008 / 0.00016 ending at steps 28k / 56k / 84k /
# 112k / 140k (we read each printed step as where its rate ends, so training stops at 140k).
WRN_RECIPE: dict[str, Any] = {
    "dataset": "cifar10",
    "batch_size": 128,
    "train_steps": 140_000,
    "optimizer": "sgd",
    "momentum": 0.9,
    "nesterov": True,
    "learning_rate": {
        "schedule": "piecewise_constant",
        "boundaries": [28_000, 56_000, 84_000, 112_000],
        "values": [0.1, 0.02, 0.004, 0.0008, 0.00016],
    },
    "clip_norm": None,
    "clip_per_tensor": None,
    "augment": "cifar_pad_crop_flip",
    "validation_size": 5000,
}

# Table 9 (hyper net): Adam, lr 0.002 / 0.001 / 0.0002 / 0.00005 ending at 168k / 336k / 504k / 672k.
HYPER_WRN_RECIPE: dict[str, Any] = {
    **WRN_RECIPE,
    "train_steps": 672_000,
    "optimizer": "adam",
    "learning_rate": {
        "schedule": "piecewise_constant",
        "boundaries": [168_000, 336_000, 504_000],
        "values": [0.002, 0.001, 0.0002, 0.00005],
    },
}
del HYPER_WRN_RECIPE["momentum"], HYPER_WRN_RECIPE["nesterov"]


def _blocks_per_group(depth: int) -> int:
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"WRN: depth={depth!r} must be 6N + 4 with N >= 1 (e.g. 10, 16, 28, 40)")
    return (depth - 4) // 6


def build_wrn(config: dict[str, Any], hyper: bool, name: str = "wrn") -> keras.Model:
    """Builds WRN-depth-width from ``config`` (see :func:`wrn_config`); ``hyper`` generates conv2-4."""
    n = _blocks_per_group(int(config["depth"]))
    k = int(config["width"])
    if k < 1:
        raise ValueError(f"WRN: width={config['width']!r} must be a positive integer")
    wd = float(config["weight_decay"])
    reg = keras.regularizers.L2(wd / 2.0) if wd else None  # weight_decay * sum(W^2) / 2
    he = "he_normal"

    generator = None
    if hyper:
        basic = int(config["basic_channels"])
        generator = KernelGenerator(
            embedding_size=int(config["z_dim"]),
            kernel_size=3,
            in_channels=basic,
            out_channels=basic,
            hidden_size=config["hidden_size"],
            name="hypernetwork",
        )
        for w in (16 * k, 32 * k, 64 * k):
            if w % basic:
                raise ValueError(
                    f"{name}: width {w} (16k/32k/64k with width={k}) is not a multiple of "
                    f"basic_channels={basic}"
                )

    def bn(label: str) -> keras.layers.BatchNormalization:
        momentum, epsilon = float(config["bn_momentum"]), float(config["bn_epsilon"])
        return sync_batch_norm(momentum=momentum, epsilon=epsilon, name=label)

    def conv3x3(filters: int, strides: int, label: str) -> keras.layers.Layer:
        if generator is not None:
            return HyperConv2D(
                filters, 3, generator=generator, strides=strides, use_bias=False, weight_decay=wd, name=label
            )
        return keras.layers.Conv2D(
            filters, 3, strides=strides, padding="same", use_bias=False,
            kernel_initializer=he, kernel_regularizer=reg, name=label,
        )  # fmt: skip

    channels = int(config["input_shape"][-1])
    images = keras.Input(shape=tuple(config["input_shape"]), name="images", dtype="float32")
    mean, std = list(config["input_mean"]), list(config["input_std"])
    if len(mean) != channels or len(std) != channels:
        raise ValueError(
            f"{name}: input_mean/input_std need {channels} values (input_shape[-1]), got {mean}/{std}"
        )
    x = keras.layers.Normalization(mean=mean, variance=[s * s for s in std], name="normalize")(images)
    x = keras.layers.Conv2D(
        16, 3, padding="same", use_bias=False, kernel_initializer=he, kernel_regularizer=reg, name="conv1"
    )(x)
    in_ch = 16
    for g, (width, stride) in enumerate(((16 * k, 1), (32 * k, 2), (64 * k, 2)), start=2):
        for b in range(n):
            s = stride if b == 0 else 1
            p = f"conv{g}_block{b + 1}"
            pre = keras.layers.ReLU(name=f"{p}_relu1")(bn(f"{p}_bn1")(x))
            y = conv3x3(width, s, f"{p}_conv1")(pre)
            y = keras.layers.ReLU(name=f"{p}_relu2")(bn(f"{p}_bn2")(y))
            y = conv3x3(width, 1, f"{p}_conv2")(y)
            if in_ch != width or s != 1:
                shortcut = keras.layers.Conv2D(
                    width, 1, strides=s, padding="same", use_bias=False,
                    kernel_initializer=he, kernel_regularizer=reg, name=f"{p}_shortcut",
                )(pre)  # fmt: skip
            else:
                shortcut = x
            x = keras.layers.Add(name=f"{p}_add")([shortcut, y])
            in_ch = width
    x = keras.layers.ReLU(name="final_relu")(bn("final_bn")(x))
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    logits = keras.layers.Dense(int(config["num_classes"]), kernel_regularizer=reg, name="logits")(x)
    return keras.Model(images, logits, name=name)


# name -> (depth, width, hyper, Table 2 row, Table 2 parameter count)
_VARIANTS = {
    "wrn_40_1": (40, 1, False, "'Wide Residual Network 40-1' (ours, 6.73%)", 563_000),
    "wrn_40_2": (40, 2, False, "'Wide Residual Network 40-2' (ours, 5.66%)", 2_236_000),
    "wrn_28_10": (28, 10, False, "'Wide Residual Network 28-10' (Zagoruyko & Komodakis, 4.17%)", 36_500_000),
    "hyper_wrn_40_1": (40, 1, True, "'Hyper Residual Network 40-1' (8.02%)", 97_000),
    "hyper_wrn_40_2": (40, 2, True, "'Hyper Residual Network 40-2' (7.23%)", 148_000),
    "hyper_wrn_28_10": (28, 10, True, None, None),  # no row in Table 2; built like Hyper 40-k
}


def _spec(name: str) -> ModelSpec:
    depth, width, hyper, row, params = _VARIANTS[name]
    return ModelSpec(
        name=name,
        builder=lambda cfg: build_wrn(cfg, hyper=hyper, name=name),
        task="image_classification",
        paper=(
            f"HyperNetworks §4.2, A.3.2, Table 2 row {row}"
            if row
            else "HyperNetworks §4.2, A.3.2 (no Table 2 row; same construction as Hyper 40-k)"
        ),
        config=wrn_config(depth, width, hyper),
        recipe=dict(HYPER_WRN_RECIPE if hyper else WRN_RECIPE),
        input_spec={"images": ((32, 32, 3), "float32")},
        description=(
            f"{'Hyper ' if hyper else ''}WRN-{depth}-{width} on CIFAR-10"
            + (": every 3x3 kernel of conv2-4 from one shared generator" if hyper else "")
        ),
        paper_params=params,
    )


for _name in _VARIANTS:
    register_model(_spec(_name))
