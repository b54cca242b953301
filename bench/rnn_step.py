"""Training-step time and GFLOP/s of the recurrent cells beside the machine's fp32 matmul rate (issue 12).

One process, one training step = forward + backward + Adam update on a char-LM-shaped model
(one-hot input of ``--input_size`` -> recurrent layer of ``--units`` over ``--sequence_length`` steps
-> dense softmax head), compiled as the trainer compiles it on this machine (``--jit_compile=auto``:
``trainers.strategy.default_jit_compile``, no XLA on CPUs; ``true``/``false`` force it). Models:

- ``keras.layers.LSTM``        the reference (Keras' fused LSTM layer)
- ``BasicLSTMCell``            the paper's LSTM baseline (Eq. 9)
- ``LayerNormLSTMCell``        the Layer Norm LSTM
- ``HyperLSTMCell``            without layer norm (H ``--hyper_units``, E ``--embedding_size``)
- ``LN-HyperLSTMCell``         with layer norm

The zoo cells run in ``zoo.layers.RNN`` (what the char-LM and handwriting models use; it computes the input
projection of the whole window before the loop), or in plain ``keras.layers.RNN`` with ``--wrapper=keras``
(the step-by-step form, each step projecting its own input), or both side by side with ``--wrapper=both``
(the second copy named ``<cell>@keras.layers.RNN``). GFLOP/s counts the matrix products only
(``2 M K N`` each; a training step is 3x the forward products: forward, input gradient, weight gradient);
"of matmul" divides it by the rate of one ``--matmul_size``^3 fp32 product compiled the same way by the same
backend and measured in the same rounds.

Measurement rounds are interleaved across the models and the matmul (so load changes hit all of them) and
the median per model is reported. Target (issue 12): >= 50% of the matmul rate for LSTM, LN-LSTM and
HyperLSTM at units 1000, batch 32, T 100.

    python bench/rnn_step.py --steps=3 --rounds=3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from bench.matmul_rate import compiled_matmul  # noqa: E402
from zoo.layers import RNN, BasicLSTMCell, HyperLSTMCell, LayerNormLSTMCell  # noqa: E402

MODELS = ("keras.layers.LSTM", "BasicLSTMCell", "LayerNormLSTMCell", "HyperLSTMCell", "LN-HyperLSTMCell")
MATMUL = "matmul"
KERAS_RNN = "keras.layers.RNN"


def forward_matmul_flops(kind: str, args: argparse.Namespace) -> int:
    """FLOPs of the matrix products of one forward pass of the ``kind`` model (``2 M K N`` each)."""
    rows = args.batch_size * args.sequence_length  # M of every per-step product, summed over the steps
    n, n_x, hu, e = args.units, args.input_size, args.hyper_units, args.embedding_size
    if kind.endswith("HyperLSTMCell"):
        width = 4 * n + 4 * hu  # fused kernels [N_x, 4N + 4H], [N, 4N + 4H]
        cell = n_x * width + n * width + hu * 4 * hu + hu * 12 * e + 12 * e * n  # + z, z_b, d, d_b
    else:
        cell = (n_x + n) * 4 * n
    head = n * args.input_size
    return 2 * rows * (cell + head)


def _jit(args: argparse.Namespace) -> bool:
    """``--jit_compile`` as a bool; ``auto`` is the trainer's choice (XLA on accelerators; JAX: always)."""
    if keras.backend.backend() != "tensorflow":
        return args.jit_compile == "true" or (args.jit_compile == "auto" and keras.backend.backend() == "jax")
    from trainers.strategy import resolve_jit_compile

    return resolve_jit_compile(args.jit_compile)


def _model(kind: str, args: argparse.Namespace, wrapper: type[keras.layers.RNN]) -> keras.Model:
    inp = keras.Input((args.sequence_length, args.input_size))
    if kind == "keras.layers.LSTM":
        h = keras.layers.LSTM(args.units, return_sequences=True)(inp)
    else:
        drop = args.recurrent_dropout
        if kind == "BasicLSTMCell":
            cell = BasicLSTMCell(args.units, recurrent_dropout=drop)
        elif kind == "LayerNormLSTMCell":
            cell = LayerNormLSTMCell(args.units, recurrent_dropout=drop)
        else:
            cell = HyperLSTMCell(
                args.units,
                hyper_units=args.hyper_units,
                embedding_size=args.embedding_size,
                use_layer_norm=kind.startswith("LN-"),
                recurrent_dropout=drop,
            )
        h = wrapper(cell, return_sequences=True)(inp)
    model = keras.Model(inp, keras.layers.Dense(args.input_size)(h), name=kind.replace(".", "_"))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=_jit(args),
    )
    return model


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--sequence_length", type=int, default=100)
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--input_size", type=int, default=50, help="one-hot vocabulary (PTB: 50)")
    parser.add_argument("--hyper_units", type=int, default=128)
    parser.add_argument("--embedding_size", type=int, default=4)
    parser.add_argument(
        "--recurrent_dropout", type=float, default=0.0, help="drop rate in our cells (Keras LSTM: none)"
    )
    parser.add_argument(
        "--wrapper",
        default="zoo",
        choices=("zoo", "keras", "both"),
        help="run the cells in zoo.layers.RNN, keras.layers.RNN or both",
    )
    parser.add_argument("--matmul_size", type=int, default=2048, help="side of the reference product")
    parser.add_argument(
        "--jit_compile",
        default="auto",
        choices=("auto", "true", "false"),
        help="XLA for the models and the matmul; auto: the trainer's default on this machine",
    )
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds")
    parser.add_argument(
        "--models", default=",".join(MODELS), help="comma-separated subset; the first is the reference"
    )
    args = parser.parse_args(argv)
    kinds = args.models.split(",")
    for kind in kinds:
        if kind not in MODELS:
            parser.error(f"--models: unknown model {kind!r}; valid: {', '.join(MODELS)}")

    rng = np.random.default_rng(0)
    ids = rng.integers(0, args.input_size, size=(args.batch_size, args.sequence_length + 1))
    x = np.eye(args.input_size, dtype="float32")[ids[:, :-1]]
    y = ids[:, 1:]
    steps: dict[str, Callable[[], float]] = {}
    matmul = compiled_matmul(args.matmul_size, _jit(args))
    matmul()  # compile
    steps[MATMUL] = matmul
    wrappers = {"zoo": [("", RNN)], "keras": [("", keras.layers.RNN)]}
    wrappers["both"] = [("", RNN), (f"@{KERAS_RNN}", keras.layers.RNN)]
    variants = [
        (kind + suffix, kind, wrapper)
        for kind in kinds
        for suffix, wrapper in (wrappers[args.wrapper] if kind != kinds[0] else [("", None)])
    ]
    for name, kind, wrapper in variants:
        keras.utils.set_random_seed(0)
        model = _model(kind, args, wrapper)
        start = time.perf_counter()
        model.train_on_batch(x, y)  # trace (+ XLA compile)
        print(
            f"{name:>36}: {model.count_params():,} params, compile+first step "
            f"{time.perf_counter() - start:.1f} s",
            flush=True,
        )
        steps[name] = lambda model=model: float(np.asarray(model.train_on_batch(x, y)))

    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, fn in steps.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                fn()
            times[name].append((time.perf_counter() - start) / args.steps)

    matmul_rate = 2 * args.matmul_size**3 / statistics.median(times[MATMUL]) / 1e9
    ref = statistics.median(times[kinds[0]])
    wrapper_names = {"zoo": "zoo.layers.RNN", "keras": KERAS_RNN, "both": f"zoo.layers.RNN and {KERAS_RNN}"}
    print(
        f"\nbatch {args.batch_size}, sequence {args.sequence_length}, units {args.units}, "
        f"input {args.input_size}, H {args.hyper_units}, E {args.embedding_size}, "
        f"cells in {wrapper_names[args.wrapper]}, XLA {'on' if _jit(args) else 'off'}, "
        f"{keras.backend.backend()} backend, "
        f"median of {args.rounds} interleaved rounds x {args.steps} steps"
    )
    print(f"{'fp32 matmul ' + str(args.matmul_size) + '^3':>36}: {matmul_rate:7.1f} GFLOP/s")
    result = {"matmul_gflops": matmul_rate}
    for name, kind, _ in variants:
        med = statistics.median(times[name])
        gflops = 3 * forward_matmul_flops(kind, args) / med / 1e9
        print(
            f"{name:>36}: {1000 * med:8.1f} ms/step  {med / ref:5.2f}x  {gflops:6.1f} GFLOP/s  "
            f"{gflops / matmul_rate:5.1%} of matmul"
        )
        result[name] = gflops / matmul_rate
    return result


if __name__ == "__main__":
    main()
