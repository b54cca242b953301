"""Training-step time: hyper vs plain WRN (XLA on), and MirroredStrategy (2 logical devices) vs one device.

    python bench/train_step.py --batch_size=16 --steps=5
    python bench/train_step.py --hyper=hyper_wrn_40_2 --plain=wrn_40_2 --mirrored_model=wrn_40_2

Each configuration runs the trainer's own step (``trainers.loop.TrainLoop``: per-replica XLA
forward/backward, all-reduce, optimizer) on a fixed synthetic batch of the model's input shape; the first
``--warmup`` steps (tracing + XLA compilation) are not timed; the median of ``--steps`` timed steps is
reported. Printed ratios: ``hyper/plain`` (HyperNetworks target: <= 1.10) and ``mirrored/single``
(on one CPU split into 2 logical devices both replicas share the same cores, so > 1 is expected there;
the number that matters on real multi-device hosts is the per-example throughput).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from trainers.strategy import configure_devices  # noqa: E402

flags.DEFINE_string("hyper", "hyper_wrn_40_2", "Hypernetwork model.")
flags.DEFINE_string("plain", "wrn_40_2", "Plain model with the same architecture.")
flags.DEFINE_string("mirrored_model", "wrn_40_2", "Model for the mirrored vs single-device comparison.")
flags.DEFINE_integer("batch_size", 16, "Global batch size.")
flags.DEFINE_integer("steps", 5, "Timed steps.")
flags.DEFINE_integer("warmup", 2, "Untimed steps (tracing, XLA compilation).")
flags.DEFINE_boolean("jit_compile", True, "XLA per replica.")
FLAGS = flags.FLAGS


def _time_steps(model_name: str, strategy, batch_size: int, steps: int, warmup: int, jit: bool) -> float:
    import numpy as np
    import tensorflow as tf

    import zoo
    from trainers.loop import TrainLoop
    from zoo.optim import build_optimizer
    from zoo.tasks import get_task

    spec = zoo.get_spec(model_name)
    task = get_task(spec.task)
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
        task=task,
        optimizer=optimizer,
        global_batch_size=batch_size,
        jit_compile=jit,
    )
    data = iter(tf.data.Dataset.from_tensors(batch).repeat())
    for _ in range(warmup):
        float(loop.step(data))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        float(loop.step(data))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str]) -> None:
    del argv
    configure_devices(2)
    import tensorflow as tf

    from trainers.strategy import make_strategy

    single = tf.distribute.get_strategy()
    mirrored = make_strategy("mirrored", num_devices=2)
    args = (FLAGS.batch_size, FLAGS.steps, FLAGS.warmup, FLAGS.jit_compile)
    t_hyper = _time_steps(FLAGS.hyper, single, *args)
    t_plain = _time_steps(FLAGS.plain, single, *args)
    t_mirror = _time_steps(FLAGS.mirrored_model, mirrored, *args)
    t_single = (
        t_plain if FLAGS.mirrored_model == FLAGS.plain else _time_steps(FLAGS.mirrored_model, single, *args)
    )
    print(f"batch_size={FLAGS.batch_size} jit_compile={FLAGS.jit_compile} median of {FLAGS.steps} steps")
    print(f"{FLAGS.hyper}: {t_hyper * 1e3:.1f} ms/step   {FLAGS.plain}: {t_plain * 1e3:.1f} ms/step")
    print(f"hyper/plain = {t_hyper / t_plain:.3f}  (target <= 1.10)")
    print(
        f"{FLAGS.mirrored_model} mirrored x2: {t_mirror * 1e3:.1f} ms/step   "
        f"single: {t_single * 1e3:.1f} ms/step"
    )
    print(f"mirrored/single = {t_mirror / t_single:.3f}")


if __name__ == "__main__":
    app.run(main)
