"""The trainer's ``hyper_wrn_40_1`` step: images/s and GFLOP/s beside the model's FLOP count (issue 12).

    python bench/wrn_step.py                       # hyper_wrn_40_1, batch 128, SGD momentum
    python bench/wrn_step.py --model=wrn_40_1 --rounds=9

Every configuration runs ``trainers.loop.TrainLoop``'s step (forward, backward, optimizer update, batch-norm
statistics) on one fixed synthetic batch, the way ``bench/train_step.py`` does:

- ``default``        what ``zoo-train`` does on this machine: ``--jit_compile`` from
                     ``trainers.strategy.default_jit_compile`` (no XLA on CPUs) and the zoo's batch norm
                     (TensorFlow's fused kernel, ``zoo/layers/batch_norm.py``);
- ``xla``            the same with XLA (the trainer's default before: XLA everywhere);
- ``xla_keras_bn``   XLA and Keras' unfused batch norm: the trainer's step as it was before issue 12;
- ``keras_bn``       no XLA and Keras' unfused batch norm.

All configurations are built and warmed up first, then ``--rounds`` rounds each time one step of every
configuration in turn (interleaved, so load changes hit all of them), plus one ``--matmul_size``^3 fp32
product (TensorFlow's own kernel) as the machine's reference rate; medians are reported.

FLOPs: the convolutions and the dense layer, ``2 H' W' k k C_in C_out`` and ``2 C_in C_out`` per image
(a multiply-add is 2); a training step is 3x the forward (forward, input gradient, weight gradient) except
the first convolution, whose input needs no gradient (2x); plus the hypernetwork's generator (Eq. 2),
forward and backward, once per step. Batch norm, ReLU, the loss and the update are not counted, so
GFLOP/s is the rate of the useful convolution work. The issue compares with the PyTorch peer
(g1910/HyperNetworks, same 36 generated kernels) at batch 128 on the same machine; PyTorch is not
installable here, so the peer is not run: compare images/s with its own on your machine.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import zoo  # noqa: E402
from bench.image_step import make_step, time_interleaved  # noqa: E402
from bench.matmul_rate import compiled_matmul  # noqa: E402
from trainers.strategy import default_jit_compile  # noqa: E402
from zoo.layers.hyper_conv import HyperConv2D  # noqa: E402

CONFIGS = ("default", "xla", "xla_keras_bn", "keras_bn")
MATMUL = "matmul"


def training_flops(model: keras.Model, batch_size: int) -> tuple[int, int]:
    """``(forward FLOPs per image, training FLOPs per step)`` of the convolutions, dense layers and
    hypernetwork generator (see the module docstring)."""
    forward, step = 0, 0
    first = True
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, (keras.layers.Conv2D, HyperConv2D)):
            kh, kw = layer.kernel_size
            _, h, w, c_out = layer.output.shape
            flops = 2 * h * w * kh * kw * layer.input.shape[-1] * c_out
            step += (2 if first else 3) * flops * batch_size
            first = False
        elif isinstance(layer, keras.layers.Dense):
            flops = 2 * layer.input.shape[-1] * layer.units
            step += 3 * flops * batch_size
        else:
            continue
        forward += flops
        if isinstance(layer, HyperConv2D):
            gen = layer.generator
            size = gen.kernel_size**2 * gen.out_channels
            # Eq. 2 for T embeddings: [T, N_z] x [N_in, N_z, d], then [T N_in, d] x [d, f f N_out]
            rows = layer.embeddings.shape[0] * gen.in_channels
            step += 3 * 2 * rows * (gen.embedding_size * gen.d + gen.d * size)
    return forward, step


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default="hyper_wrn_40_1", help="a registered image model")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timed rounds (medians)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per configuration")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"subset of {','.join(CONFIGS)}")
    parser.add_argument("--matmul_size", type=int, default=2048, help="side of the reference product")
    args = parser.parse_args(argv)
    configs = [c for c in args.configs.split(",") if c]
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown or not configs:
        parser.error(f"--configs={args.configs!r}: unknown {unknown}; valid: {', '.join(CONFIGS)}")
    if args.rounds < 1 or args.batch_size < 1:
        parser.error(f"--rounds={args.rounds} and --batch_size={args.batch_size} must be >= 1")

    default_jit = default_jit_compile()
    settings = {
        "default": (default_jit, True),
        "xla": (True, True),
        "xla_keras_bn": (True, False),
        "keras_bn": (False, False),
    }
    strategy = tf.distribute.get_strategy()
    steps = {c: make_step(args.model, strategy, args.batch_size, *settings[c]) for c in configs}
    steps[MATMUL] = compiled_matmul(args.matmul_size, jit=False)  # TensorFlow's own kernel (oneDNN)
    median = {name: wall for name, (wall, _) in time_interleaved(steps, args.rounds, args.warmup).items()}

    forward, per_step = training_flops(zoo.get(args.model), args.batch_size)
    matmul_rate = 2 * args.matmul_size**3 / median[MATMUL] / 1e9
    print(
        f"{args.model}: {forward / 1e6:.1f} MFLOP forward per image; training step at batch "
        f"{args.batch_size}: {per_step / 1e9:.2f} GFLOP (convolutions, dense, generator)"
    )
    print(f"medians of {args.rounds} interleaved rounds; default jit_compile on this machine: {default_jit}")
    result: dict[str, Any] = {"forward_flops": forward, "step_flops": per_step, "matmul_gflops": matmul_rate}
    for name in configs:
        jit, fused = settings[name]
        rate = per_step / median[name] / 1e9
        print(
            f"{name:>13} (XLA {'on ' if jit else 'off'}, {'fused' if fused else 'Keras'} BN): "
            f"{median[name] * 1e3:7.1f} ms/step {args.batch_size / median[name]:7.1f} images/s "
            f"{rate:6.1f} GFLOP/s ({rate / matmul_rate:.0%} of matmul)"
        )
        result[name] = median[name]
    print(f"{'fp32 matmul ' + str(args.matmul_size) + '^3':>36}: {matmul_rate:.1f} GFLOP/s")
    if "default" in median and "xla_keras_bn" in median:
        print(f"default / before issue 12 (XLA, Keras BN) = {median['default'] / median['xla_keras_bn']:.2f}")
    if "default" in median and "keras_bn" in median:
        print(f"default / no XLA with Keras BN = {median['default'] / median['keras_bn']:.2f}")
    return result


if __name__ == "__main__":
    main()
