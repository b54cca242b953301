"""Training-step time of the recurrent cells, as ratios to ``keras.layers.LSTM`` (issue 4's benchmark).

One process, one training step = forward + backward + Adam update on a char-LM-shaped model
(one-hot input of ``--input_size`` -> recurrent layer of ``--units`` over ``--sequence_length`` steps
-> dense softmax head), compiled with XLA (``jit_compile=True``). Models:

- ``keras.layers.LSTM``        the reference (Keras' fused LSTM layer)
- ``LayerNormLSTMCell``        in ``keras.layers.RNN``
- ``HyperLSTMCell``            without layer norm (H ``--hyper_units``, E ``--embedding_size``)
- ``LN-HyperLSTMCell``         with layer norm

Measurement rounds are interleaved across the models (so load changes hit all of them) and the median
step time per model is reported. Targets (issue 4): HyperLSTM <= 1.30x, LayerNormLSTM <= 1.15x.

    python bench/rnn_step.py --batch_size=16 --steps=5 --rounds=3
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

from zoo.layers import HyperLSTMCell, LayerNormLSTMCell  # noqa: E402


def _model(kind: str, args: argparse.Namespace) -> keras.Model:
    inp = keras.Input((args.sequence_length, args.input_size))
    if kind == "keras.layers.LSTM":
        h = keras.layers.LSTM(args.units, return_sequences=True)(inp)
    else:
        if kind == "LayerNormLSTMCell":
            cell = LayerNormLSTMCell(args.units, recurrent_dropout=args.recurrent_dropout)
        else:
            cell = HyperLSTMCell(
                args.units,
                hyper_units=args.hyper_units,
                embedding_size=args.embedding_size,
                use_layer_norm=kind.startswith("LN-"),
                recurrent_dropout=args.recurrent_dropout,
            )
        h = keras.layers.RNN(cell, return_sequences=True)(inp)
    model = keras.Model(inp, keras.layers.Dense(args.input_size)(h), name=kind.replace(".", "_"))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    return model


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--sequence_length", type=int, default=100)
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--input_size", type=int, default=50, help="one-hot vocabulary (PTB: 50)")
    parser.add_argument("--hyper_units", type=int, default=128)
    parser.add_argument("--embedding_size", type=int, default=4)
    parser.add_argument(
        "--recurrent_dropout", type=float, default=0.0, help="drop rate in our cells (Keras LSTM: none)"
    )
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds")
    parser.add_argument(
        "--models",
        default="keras.layers.LSTM,LayerNormLSTMCell,HyperLSTMCell,LN-HyperLSTMCell",
        help="comma-separated subset; the first is the reference",
    )
    args = parser.parse_args(argv)
    kinds = args.models.split(",")
    valid = ("keras.layers.LSTM", "LayerNormLSTMCell", "HyperLSTMCell", "LN-HyperLSTMCell")
    for kind in kinds:
        if kind not in valid:
            parser.error(f"--models: unknown model {kind!r}; valid: {', '.join(valid)}")

    rng = np.random.default_rng(0)
    ids = rng.integers(0, args.input_size, size=(args.batch_size, args.sequence_length + 1))
    x = np.eye(args.input_size, dtype="float32")[ids[:, :-1]]
    y = ids[:, 1:]
    models = {}
    for kind in kinds:
        keras.utils.set_random_seed(0)
        models[kind] = _model(kind, args)
        start = time.perf_counter()
        models[kind].train_on_batch(x, y)  # trace + XLA compile
        print(
            f"{kind:>20}: {models[kind].count_params():,} params, compile+first step "
            f"{time.perf_counter() - start:.1f} s",
            flush=True,
        )

    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(args.rounds):
        for kind in kinds:
            start = time.perf_counter()
            for _ in range(args.steps):
                loss = models[kind].train_on_batch(x, y)
            float(np.asarray(loss))  # wait for the device
            times[kind].append((time.perf_counter() - start) / args.steps)

    ref = statistics.median(times[kinds[0]])
    print(
        f"\nbatch {args.batch_size}, sequence {args.sequence_length}, units {args.units}, "
        f"input {args.input_size}, H {args.hyper_units}, E {args.embedding_size}, "
        f"XLA on, {keras.backend.backend()} backend, "
        f"median of {args.rounds} rounds x {args.steps} steps"
    )
    ratios = {}
    for kind in kinds:
        med = statistics.median(times[kind])
        ratios[kind] = med / ref
        print(f"{kind:>20}: {1000 * med:9.1f} ms/step   {ratios[kind]:.2f}x")
    return ratios


if __name__ == "__main__":
    main()
