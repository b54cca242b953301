"""Training-step time of HyperLSTM 900 against LSTM 900 on pen-stroke batches (HyperNetworks §4.5, Table 5).

One process; one training step = the handwriting task's forward (whole padded lines, mixture-density NLL,
``zoo/tasks/handwriting.py``) + backward (XLA, ``jit_compile=True``) + Adam update (A.3.5: lr 1e-4, clip 5.0),
on the registered ``lstm_900_iam`` and ``hyper_lstm_900_iam`` (dropout as registered: keep 0.95) with a batch
of 32 random stroke rows of ``T = 300`` points. Measurement rounds are interleaved across the models (so load
changes hit both) and the median step time per model is reported, with the ratio to the first.

    python bench/handwriting_step.py --batch_size=32 --length=300 --steps=3 --rounds=3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import zoo  # noqa: E402
from zoo.optim import build_optimizer, clip_gradients  # noqa: E402
from zoo.tasks.handwriting import TASK  # noqa: E402


def _step_fn(model: keras.Model, recipe: dict) -> tuple:
    optimizer = build_optimizer(recipe)
    optimizer.build(model.trainable_variables)

    @tf.function(jit_compile=True)
    def loss_and_grads(strokes: tf.Tensor, mask: tf.Tensor) -> tuple:
        with tf.GradientTape() as tape:
            out = TASK.forward(model, (strokes, mask), (), training=True)
            loss = tf.reduce_mean(out.per_example_loss)
        return loss, tape.gradient(loss, model.trainable_variables)

    @tf.function
    def step(strokes: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        loss, grads = loss_and_grads(strokes, mask)
        optimizer.apply(clip_gradients(grads, recipe["clip_norm"], None), model.trainable_variables)
        return loss

    return step


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--length", type=int, default=300, help="points per line (T)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds")
    parser.add_argument(
        "--models", default="lstm_900_iam,hyper_lstm_900_iam", help="the first is the reference"
    )
    args = parser.parse_args(argv)
    names = args.models.split(",")
    for name in names:
        if name not in zoo.list_models("*_iam"):
            parser.error(f"--models: {name!r} is not one of {', '.join(zoo.list_models('*_iam'))}")

    rng = np.random.default_rng(0)
    strokes = np.concatenate(
        [
            rng.normal(0.0, 20.0, (args.batch_size, args.length, 2)),
            rng.random((args.batch_size, args.length, 1)) < 0.05,
        ],
        axis=-1,
    ).astype(np.float32)
    strokes, mask = tf.constant(strokes), tf.ones((args.batch_size, args.length), tf.float32)
    steps = {}
    for name in names:
        keras.utils.set_random_seed(0)
        model = zoo.get(name)
        steps[name] = _step_fn(model, zoo.describe(name)["recipe"])
        start = time.perf_counter()
        float(steps[name](strokes, mask))  # trace + XLA compile
        params = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        print(
            f"{name:>20}: {params:,} params, compile+first step {time.perf_counter() - start:.1f} s",
            flush=True,
        )

    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            start = time.perf_counter()
            for _ in range(args.steps):
                loss = steps[name](strokes, mask)
            float(loss)  # wait for the device
            times[name].append((time.perf_counter() - start) / args.steps)

    ref = statistics.median(times[names[0]])
    print(
        f"\nbatch {args.batch_size}, T {args.length}, XLA on, {keras.backend.backend()} backend, "
        f"median of {args.rounds} rounds x {args.steps} steps"
    )
    ratios = {}
    for name in names:
        med = statistics.median(times[name])
        ratios[name] = med / ref
        print(f"{name:>20}: {1000 * med:9.1f} ms/step   {ratios[name]:.2f}x")
    return ratios


if __name__ == "__main__":
    main()
