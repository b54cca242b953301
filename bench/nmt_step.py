"""GNMT training step and beam search: LN HyperLSTM cells against LSTM cells (HyperNetworks §4.6, Table 6).

One process. A training step is the translation task's forward (teacher forcing, summed cross-entropy,
``zoo/tasks/translation.py``) + backward (compiled as the trainer compiles it on this machine,
``--jit_compile=auto``: ``trainers.strategy.default_jit_compile``, no XLA on CPUs; ``true``/``false`` force
it) + the registered recipe's optimizer
update with its ``clip_norm``, on random subword batches of ``--batch_size`` pairs of ``--length`` tokens.
Beam search runs the task's ``translate_ids`` (GNMT §7 scoring, the model's beam width) on ``--beam_batch``
random sources of ``--length`` tokens; an untrained model rarely stops before the length cap
(``2 * length + 10``), so sentences per second here are a lower bound for trained models. Measurement
rounds are interleaved across the models and medians reported, with ratios to the first model.

    python bench/nmt_step.py --batch_size=64 --length=24 --steps=3 --rounds=3
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
from trainers.strategy import resolve_jit_compile  # noqa: E402
from zoo.optim import build_optimizer, clip_gradients  # noqa: E402
from zoo.tasks.translation import TASK, translate_ids  # noqa: E402


def _train_step(model: keras.Model, recipe: dict, jit: bool) -> tf.types.experimental.GenericFunction:
    optimizer = build_optimizer(recipe)
    optimizer.build(model.trainable_variables)

    @tf.function(jit_compile=jit)
    def loss_and_grads(inputs: dict, target_out: tf.Tensor) -> tuple:
        with tf.GradientTape() as tape:
            out = TASK.forward(model, (inputs, target_out), (), training=True)
            loss = tf.reduce_mean(out.per_example_loss)
        return loss, tape.gradient(loss, model.trainable_variables)

    @tf.function
    def step(inputs: dict, target_out: tf.Tensor) -> tf.Tensor:
        loss, grads = loss_and_grads(inputs, target_out)
        optimizer.apply(clip_gradients(grads, recipe.get("clip_norm"), None), model.trainable_variables)
        return loss

    return step


def _timed(fn, *args, repeats: int) -> float:  # noqa: ANN001
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn(*args)
    tf.nest.map_structure(lambda t: t.numpy(), out)  # wait for the device
    return (time.perf_counter() - start) / repeats


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--length", type=int, default=24, help="subword tokens per source and target")
    parser.add_argument("--beam_batch", type=int, default=32, help="sentences per beam search call")
    parser.add_argument("--steps", type=int, default=3, help="timed calls per model per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds")
    parser.add_argument(
        "--models", default="gnmt_lstm_small,gnmt_ln_hyper_lstm_small", help="first: reference"
    )
    parser.add_argument(
        "--jit_compile",
        default="auto",
        choices=("auto", "true", "false"),
        help="XLA for the training step; auto: the trainer's default on this machine",
    )
    args = parser.parse_args(argv)
    jit = resolve_jit_compile(args.jit_compile)
    names = args.models.split(",")
    valid = zoo.list_models("gnmt_*")
    for name in names:
        if name not in valid:
            parser.error(f"--models: {name!r} is not one of {', '.join(valid)}")

    rng = np.random.default_rng(0)
    runs = {}
    for name in names:
        keras.utils.set_random_seed(0)
        model = zoo.get(name)
        vocab = int(model.config["vocab_size"])
        shape = (args.batch_size, args.length)
        inputs = {k: tf.constant(rng.integers(4, vocab, shape), tf.int32) for k in ("source", "target_in")}
        target_out = tf.constant(rng.integers(4, vocab, shape), tf.int32)
        source = tf.constant(rng.integers(4, vocab, (args.beam_batch, args.length)), tf.int32)
        train = _train_step(model, zoo.describe(name)["recipe"], jit)
        search = tf.function(lambda s, m=model: translate_ids(m, s).tokens)
        start = time.perf_counter()
        float(train(inputs, target_out))
        search(source).numpy()
        params = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        print(
            f"{name:>26}: {params:,} params, compile + first calls {time.perf_counter() - start:.1f} s",
            flush=True,
        )
        runs[name] = (train, (inputs, target_out), search, (source,))

    step_times: dict[str, list[float]] = {n: [] for n in names}
    search_times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.rounds):
        for name in names:
            train, train_args, search, search_args = runs[name]
            step_times[name].append(_timed(train, *train_args, repeats=args.steps))
            search_times[name].append(_timed(search, *search_args, repeats=1))

    print(
        f"\ntraining: batch {args.batch_size} pairs of {args.length} tokens, XLA {'on' if jit else 'off'}; "
        f"beam search: "
        f"{args.beam_batch} sentences of {args.length} tokens, output cap {2 * args.length + 10}; "
        f"{keras.backend.backend()} backend, medians of {args.rounds} rounds"
    )
    ref_step, ref_search = statistics.median(step_times[names[0]]), statistics.median(search_times[names[0]])
    results = {}
    for name in names:
        step, search = statistics.median(step_times[name]), statistics.median(search_times[name])
        results[name] = {
            "step_ms": 1000 * step,
            "step_ratio": step / ref_step,
            "sentences_per_s": args.beam_batch / search,
        }
        print(
            f"{name:>26}: train step {1000 * step:8.1f} ms ({step / ref_step:.2f}x)   "
            f"beam search {args.beam_batch / search:7.1f} sentences/s ({search / ref_search:.2f}x time)"
        )
    return results


if __name__ == "__main__":
    main()
