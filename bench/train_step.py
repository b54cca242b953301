"""Training-step time: hyper vs plain WRN, and MirroredStrategy (2 logical devices) vs one device.

    python bench/train_step.py --batch_size=16 --rounds=7
    python bench/train_step.py --hyper=hyper_wrn_40_2 --plain=wrn_40_2 --mirrored_model=wrn_40_2

Each configuration runs the trainer's own step (``trainers.loop.TrainLoop``: per-replica forward/backward,
compiled as the trainer compiles it on this machine unless ``--jit_compile`` says otherwise; all-reduce,
optimizer) on a fixed synthetic batch of the model's input shape.

Method (the bench host is shared, so load changes from second to second): every configuration is built
and warmed up first (``--warmup`` untimed steps: tracing + XLA compilation), then ``--rounds`` rounds each
time one step of every configuration, in turn. Timing the configurations *interleaved* exposes them to
the same load; timing one configuration's steps after the other's (as this bench first did) let a burst of
other work land on one side only and produced hyper/plain ratios anywhere from 0.8 to 2.1 for the same
code. Per step both the wall time and the CPU time of this process (``time.process_time``, all threads)
are taken; medians over rounds are reported.

Printed ratios:
- ``hyper/plain`` (HyperNetworks target: <= 1.10), from CPU time (the work a step costs, nearly
  independent of what else runs on the host) and from wall time.
- ``mirrored/single`` from wall time (on one CPU split into 2 logical devices both replicas share the
  same cores, so > 1 is expected there; the number that matters on real multi-device hosts is the
  per-example throughput).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from trainers.strategy import configure_devices  # noqa: E402

flags.DEFINE_string("hyper", "hyper_wrn_40_2", "Hypernetwork model.")
flags.DEFINE_string("plain", "wrn_40_2", "Plain model with the same architecture.")
flags.DEFINE_string("mirrored_model", "wrn_40_2", "Model for the mirrored vs single-device comparison.")
flags.DEFINE_integer("batch_size", 16, "Global batch size.")
flags.DEFINE_integer("rounds", 7, "Timed rounds; each times one step of every configuration.")
flags.DEFINE_integer("warmup", 2, "Untimed steps per configuration (tracing, XLA compilation).")
flags.DEFINE_boolean(
    "jit_compile", None, "XLA per replica; default: the trainer's on this machine (XLA on GPU/TPU only)."
)
FLAGS = flags.FLAGS


def _make_step(model_name: str, strategy: Any, batch_size: int, jit: bool) -> Any:
    """A zero-argument callable running one ``TrainLoop`` step of ``model_name`` on a fixed batch."""
    import numpy as np
    import tensorflow as tf

    import zoo
    from trainers.loop import TrainLoop
    from zoo.optim import build_optimizer
    from zoo.tasks import get_task

    spec = zoo.get_spec(model_name)
    ((shape, _),) = spec.input_spec.values()
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(batch_size, *shape)).astype("float32")
    labels = rng.integers(0, 10, size=(batch_size,)).astype("int32")
    batch = (tf.constant(images), tf.constant(labels))
    with strategy.scope():
        model = zoo.get(model_name)
        optimizer = build_optimizer({"optimizer": "sgd", "momentum": 0.9, "learning_rate": 0.01})
    loop = TrainLoop(
        strategy=strategy,
        model=model,
        task=get_task(spec.task),
        optimizer=optimizer,
        global_batch_size=batch_size,
        jit_compile=jit,
    )
    data = iter(tf.data.Dataset.from_tensors(batch).repeat())
    return lambda: float(loop.step(data))


def time_interleaved(steps: dict[str, Any], rounds: int, warmup: int) -> dict[str, tuple[float, float]]:
    """``{name: (median wall s, median process CPU s)}`` over ``rounds`` rounds of one step of each."""
    if rounds < 1:
        raise ValueError(f"--rounds={rounds} must be >= 1")
    for step in steps.values():
        for _ in range(warmup):
            step()
    wall: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            w0, c0 = time.perf_counter(), time.process_time()
            step()
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in steps}


def main(argv: list[str]) -> None:
    del argv
    configure_devices(2)
    import tensorflow as tf

    from trainers.strategy import make_strategy

    single = tf.distribute.get_strategy()
    mirrored = make_strategy("mirrored", num_devices=2)
    from trainers.strategy import default_jit_compile

    jit = default_jit_compile() if FLAGS.jit_compile is None else FLAGS.jit_compile
    args = (FLAGS.batch_size, jit)
    configs = {
        "hyper": (FLAGS.hyper, single),
        "plain": (FLAGS.plain, single),
        "mirrored": (FLAGS.mirrored_model, mirrored),
    }
    if FLAGS.mirrored_model != FLAGS.plain:
        configs["single"] = (FLAGS.mirrored_model, single)
    steps = {key: _make_step(name, strategy, *args) for key, (name, strategy) in configs.items()}
    t = time_interleaved(steps, FLAGS.rounds, FLAGS.warmup)
    t.setdefault("single", t["plain"])

    def ms(key: str) -> str:
        return f"{t[key][0] * 1e3:.1f} ms wall, {t[key][1] * 1e3:.1f} ms CPU"

    print(f"batch_size={FLAGS.batch_size} jit_compile={jit} median of {FLAGS.rounds} interleaved rounds")
    print(f"{FLAGS.hyper}: {ms('hyper')}   {FLAGS.plain}: {ms('plain')}")
    print(
        f"hyper/plain = {t['hyper'][1] / t['plain'][1]:.3f} CPU, "
        f"{t['hyper'][0] / t['plain'][0]:.3f} wall  (target <= 1.10)"
    )
    print(f"{FLAGS.mirrored_model} mirrored x2: {ms('mirrored')}   single: {ms('single')}")
    print(f"mirrored/single = {t['mirrored'][0] / t['single'][0]:.3f} wall")


if __name__ == "__main__":
    app.run(main)
