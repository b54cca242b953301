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
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from bench.image_step import make_step, time_interleaved  # noqa: E402
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


def main(argv: list[str]) -> None:
    del argv
    configure_devices(2)
    import tensorflow as tf

    from trainers.strategy import make_strategy

    single = tf.distribute.get_strategy()
    mirrored = make_strategy("mirrored", num_devices=2)
    from trainers.strategy import resolve_jit_compile

    jit = resolve_jit_compile(FLAGS.jit_compile)
    args = (FLAGS.batch_size, jit)
    configs = {
        "hyper": (FLAGS.hyper, single),
        "plain": (FLAGS.plain, single),
        "mirrored": (FLAGS.mirrored_model, mirrored),
    }
    if FLAGS.mirrored_model != FLAGS.plain:
        configs["single"] = (FLAGS.mirrored_model, single)
    steps = {key: make_step(name, strategy, *args) for key, (name, strategy) in configs.items()}
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
