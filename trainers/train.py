"""The zoo trainer: ``python -m trainers.train --model=NAME ...`` (console script ``zoo-train``).

flags -> options (``trainers/flags.py``) -> strategy (``trainers/strategy.py``) -> task data -> model and
optimizer in the strategy's scope -> the XLA training loop (``trainers/loop.py``) with checkpoints,
TensorBoard scalars and progress lines -> test evaluation -> SavedModel export -> the test accuracy
measured through the exported SavedModel. The trainer knows nothing about particular models or tasks: it
dispatches on ``spec.task`` (``zoo/tasks/base.py``).

Checkpoints: ``tf.train.CheckpointManager`` in ``--model_dir`` every ``--checkpoint_every`` steps and at the
end, holding the model, the optimizer (its ``iterations`` is the step counter) and, where tf.data can save
it, the train iterator's position. Rerunning the same command resumes from the latest checkpoint and says
so. The task's carry (e.g. LSTM state) is not checkpointed: a resumed run starts from the initial carry.

A non-finite loss stops training with an error naming the step; no checkpoint is written after it, so the
latest checkpoint is the last good one.

Multi-worker (``--strategy=multi_worker`` with ``TF_CONFIG``): every worker runs the same command; the chief
(worker 0) writes checkpoints, summaries and the export under the real paths, the others write their
(mandatory) checkpoint copies to a per-worker temporary directory that is deleted at the end.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from absl import app, flags

from trainers import flags as flags_lib

__all__ = ["train", "main", "run", "NonFiniteLossError", "SetupError"]

flags_lib.define_flags()
FLAGS = flags.FLAGS


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or Inf."""


class SetupError(ValueError):
    """A bad value found before training (devices, dataset, data_dir); the message names it."""


def _say(message: str) -> None:
    print(message, flush=True)


def _fmt(values: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in values.items())


def _current_lr(optimizer: Any) -> float:
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    lr = inner.learning_rate
    return float(lr.numpy() if hasattr(lr, "numpy") else lr)


def train(options: flags_lib.TrainOptions, task: Any = None, say: Callable[[str], None] = _say) -> dict:
    """Runs one training job described by ``options``; returns a summary dict.

    ``task`` overrides the spec's task object (tests use a tiny task); by default it is
    ``zoo.tasks.get_task(spec.task)``.
    """
    from trainers.strategy import is_chief, make_strategy, worker_index

    # Devices first: logical CPU devices can only be set before TensorFlow initialises.
    try:
        strategy = make_strategy(options.strategy, options.num_devices)
    except ValueError as e:
        raise SetupError(str(e)) from e

    import keras
    import tensorflow as tf

    tf.get_logger().setLevel("WARNING")  # MirroredStrategy logs every reduction at INFO

    from trainers.loop import TrainLoop
    from zoo.optim import build_optimizer
    from zoo.tasks import get_task

    spec = options.spec
    task = task if task is not None else get_task(spec.task)
    try:
        task.check_data(options.dataset, options.data_dir)
    except ValueError as e:
        raise SetupError(str(e)) from e
    keras.utils.set_random_seed(options.seed)
    float16 = False
    if options.mixed_precision:
        # bfloat16 on CPU (float32's exponent range: no loss scaling needed); float16 + loss scaling on GPU.
        float16 = bool(tf.config.list_physical_devices("GPU"))
        keras.mixed_precision.set_global_policy("mixed_float16" if float16 else "mixed_bfloat16")

    data = task.build_data(
        options.dataset, options.data_dir, options.batch_size, options.config, options.recipe, options.seed
    )
    train_steps = options.train_steps
    if train_steps is None:
        train_steps = max(1, math.ceil(options.epochs * data.sizes.get("train", 0) / options.batch_size))

    with strategy.scope():
        model = spec.builder(dict(options.config))
        optimizer = build_optimizer(options.recipe, loss_scale=float16, source=f"recipe of {options.model!r}")
    loop = TrainLoop(
        strategy=strategy,
        model=model,
        task=task,
        optimizer=optimizer,
        global_batch_size=options.batch_size,
        jit_compile=options.jit_compile,
        clip_norm=options.recipe.get("clip_norm"),
        clip_per_tensor=options.recipe.get("clip_per_tensor"),
    )
    iterator = loop.distribute(data.train)
    inner_opt = getattr(optimizer, "inner_optimizer", optimizer)
    params = int(sum(math.prod(v.shape) for v in model.trainable_variables))
    sizes = " ".join(f"{k}={v}" for k, v in data.sizes.items())
    say(
        f"zoo-train model={options.model} task={task.name} dataset={options.dataset} "
        f"strategy={options.strategy} replicas={strategy.num_replicas_in_sync} "
        f"jit_compile={options.jit_compile} params={params} sizes[{sizes}] batch_size={options.batch_size} "
        f"train_steps={train_steps} mixed_precision={keras.mixed_precision.global_policy().name}"
    )

    # ------------------------------------------------------------------ checkpoints and summaries
    chief = is_chief()
    manager = None
    writer = tf.summary.create_noop_writer()
    scratch = None
    if options.model_dir:
        ckpt_dir = options.model_dir
        if not chief:
            scratch = tempfile.mkdtemp(prefix=f"zoo_worker{worker_index()}_")
            ckpt_dir = scratch
        else:
            os.makedirs(options.model_dir, exist_ok=True)
            writer = tf.summary.create_file_writer(os.path.join(options.model_dir, "train"))
        trackables = {"model": model, "optimizer": optimizer, "iterator": iterator}
        checkpoint = tf.train.Checkpoint(**trackables)
        manager = tf.train.CheckpointManager(checkpoint, ckpt_dir, max_to_keep=3)
        latest = tf.train.latest_checkpoint(options.model_dir)
        if latest:
            saved = tf.train.load_checkpoint(latest).get_variable_to_shape_map()
            if any(k.startswith("iterator/") for k in saved):
                checkpoint.restore(latest).assert_existing_objects_matched()
                where = ""
            else:  # saved by the fallback below: the data stream restarts
                tf.train.Checkpoint(model=model, optimizer=optimizer).restore(
                    latest
                ).assert_existing_objects_matched()
                where = "; the data iterator's position was not saved, its stream restarts"
            say(f"resumed from step {int(inner_opt.iterations.numpy())} ({latest}{where})")

    managers = [manager]

    def save(step: int) -> None:
        if managers[0] is None:
            return
        try:
            managers[0].save(checkpoint_number=step)
        except (tf.errors.OpError, ValueError, TypeError) as e:
            # tf.data cannot save every pipeline (e.g. one with a py_function): keep model + optimizer.
            say(f"warning: cannot checkpoint the data iterator ({e}); saving model and optimizer only")
            managers[0] = tf.train.CheckpointManager(
                tf.train.Checkpoint(model=model, optimizer=optimizer), managers[0].directory, max_to_keep=3
            )
            managers[0].save(checkpoint_number=step)

    # ------------------------------------------------------------------ training
    step = int(inner_opt.iterations.numpy())
    start_step = step
    loss_value = float("nan")
    t_interval, steps_interval, loss_sum = time.perf_counter(), 0, 0.0
    while step < train_steps:
        loss = loop.step(iterator)
        step += 1
        steps_interval += 1
        loss_value = float(loss)
        if not math.isfinite(loss_value):
            last = managers[0].latest_checkpoint if managers[0] is not None else None
            raise NonFiniteLossError(
                f"non-finite loss {loss_value} at step {step}; training stopped. "
                f"Last good checkpoint: {last or 'none (no --model_dir or none saved yet)'}"
            )
        loss_sum += loss_value
        if step % options.log_every == 0 or step == train_steps:
            elapsed = time.perf_counter() - t_interval
            rate = steps_interval / elapsed if elapsed > 0 else float("nan")
            metrics = loop.metric_results()
            lr = _current_lr(optimizer)
            eta = (train_steps - step) / rate if rate > 0 else float("nan")
            mean_loss = loss_sum / steps_interval
            say(
                f"step {step}/{train_steps} loss={mean_loss:.4f} {_fmt(metrics)} lr={lr:.3g} "
                f"steps/s={rate:.2f} eta={eta:.0f}s"
            )
            with writer.as_default(step=step):
                tf.summary.scalar("loss", mean_loss)
                tf.summary.scalar("learning_rate", lr)
                tf.summary.scalar("steps_per_sec", rate)
                for k, v in metrics.items():
                    tf.summary.scalar(k, v)
            loop.reset_metrics()
            t_interval, steps_interval, loss_sum = time.perf_counter(), 0, 0.0
        if step % options.checkpoint_every == 0:
            save(step)
        if options.eval_every and step % options.eval_every == 0 and data.eval is not None:
            results = task.evaluate(model, data.eval)
            say(f"eval step {step}: {_fmt(results)}")
            with writer.as_default(step=step):
                for k, v in results.items():
                    tf.summary.scalar(f"eval/{k}", v)
                task.write_summaries(model, step)
    if step > start_step and step % options.checkpoint_every != 0:
        save(step)
    if start_step >= train_steps:
        say(f"already trained to step {step} (train_steps={train_steps}); skipping training")

    # ------------------------------------------------------------------ test, export, serving check
    import numpy as np

    # A fingerprint of the final weights (compares runs: resumed vs uninterrupted, worker vs worker).
    checksum = float(sum(np.sum(np.asarray(w, np.float64)) for w in model.get_weights()))
    summary: dict[str, Any] = {
        "model": options.model,
        "step": step,
        "loss": loss_value,
        "weights_checksum": checksum,
    }
    if data.test is not None:
        summary["test"] = task.evaluate(model, data.test)
        say(f"test: {_fmt(summary['test'])}")
        with writer.as_default(step=step):
            for k, v in summary["test"].items():
                tf.summary.scalar(f"test/{k}", v)
            task.write_summaries(model, step)
    writer.flush()
    if options.export_dir and chief:
        from exports.export import export_model

        # Export a plain float32 copy (no distributed variables, no mixed-precision casts).
        keras.mixed_precision.set_global_policy("float32")
        plain = spec.builder(dict(options.config))
        plain.set_weights(model.get_weights())
        path = export_model(
            plain,
            model_name=options.model,
            task=task,
            config=dict(options.config),
            base_dir=options.export_dir,
            assets=dict(data.assets),
        )
        summary["export_path"] = path
        say(f"exported {path}")
        if data.test is not None:
            served = task.evaluate_serving(tf.saved_model.load(path), data.test)
            summary["serving_test"] = served
            say(f"serving test (through the exported SavedModel): {_fmt(served)}")
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
    return summary


def main(argv: list[str], task: Any = None) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        options = flags_lib.resolve(flags_lib.values_from_flags(FLAGS))
    except (ValueError, KeyError) as e:  # bad flag/config values: fail before anything is built
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    try:
        summary = train(options, task=task)
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(3)
    except SetupError as e:  # bad devices, dataset or data_dir, found before training
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    _say("summary " + json.dumps(summary, default=str, sort_keys=True))


def run() -> None:
    """Entry point of the ``zoo-train`` console script."""
    app.run(main)


if __name__ == "__main__":
    run()
