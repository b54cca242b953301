"""The zoo trainer: ``python -m trainers.train --model=NAME ...`` (console script ``zoo-train``).

flags -> options (``trainers/flags.py``) -> strategy (``trainers/strategy.py``) -> task data -> model and
optimizer in the strategy's scope -> the XLA training loop (``trainers/loop.py``) with checkpoints,
TensorBoard scalars and progress lines -> test evaluation -> SavedModel export -> the test accuracy
measured through the exported SavedModel. The trainer knows nothing about particular models or tasks: it
dispatches on ``spec.task`` (``zoo/tasks/base.py``).

Run description: right after building the data (before training) the chief writes ``--model_dir/run.json``
(:data:`RUN_FILE`) = ``{"model", "config" (the merged model config), "recipe" (the merged recipe), "dataset",
"data_dir", "assets"}`` and each of the task's ``TaskData.assets`` (e.g. the char-LM ``vocab.json``) as
``--model_dir/<name>``, each to a temporary file renamed into place. ``exports.export``, ``trainers.sample``,
``trainers.yt8m_eval`` and ``trainers.yt8m_infer`` read them, so they need only ``--model_dir``. A rerun
in a ``--model_dir`` that has a ``run.json`` must describe the same run: another model, model config,
recipe or dataset is refused (the message names the keys) before any data is built; a moved
``--data_dir`` is allowed and recorded.

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
from zoo.io import atomic_write
from zoo.run_dir import RUN_FILE, RunDirError, read_run

__all__ = [
    "train",
    "main",
    "run",
    "NonFiniteLossError",
    "SetupError",
    "RUN_FILE",
    "run_description",
    "check_resume",
    "write_run_files",
]

# Names an asset may not take: they are the trainer's or tf.train's own files in --model_dir.
_RESERVED = (RUN_FILE, "checkpoint", "train")

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


def _json_value(value: Any) -> Any:
    """``value`` as json reads it back (tuples become lists), so recorded and new values compare equal."""
    return json.loads(json.dumps(value))


def _data_location(data_dir: str | None) -> str | None:
    """``data_dir`` made absolute (a local path or pattern), so the record works from any directory."""
    if data_dir is None or "://" in data_dir:
        return data_dir
    return os.path.abspath(os.path.expanduser(data_dir))


def run_description(options: flags_lib.TrainOptions, assets: Any = ()) -> dict[str, Any]:
    """The ``run.json`` content of a run (keys read by exports.export, trainers.sample, trainers.yt8m_*)."""
    try:
        return _json_value(
            {
                "model": options.model,
                "config": dict(options.config),
                "recipe": dict(options.recipe),
                "dataset": options.dataset,
                "data_dir": _data_location(options.data_dir),
                "assets": sorted(assets),
            }
        )
    except (TypeError, ValueError) as e:
        raise SetupError(f"the config or recipe of {options.model!r} cannot be written as json: {e}") from e


def _differences(old: Any, new: Any) -> list[str]:
    """``key: recorded -> new`` for each key whose value differs between two json objects."""
    old, new = dict(old or {}), dict(new or {})
    unset = "<unset>"
    keys = sorted(k for k in set(old) | set(new) if k not in old or k not in new or old[k] != new[k])
    return [f"{k}: {old.get(k, unset)!r} -> {new.get(k, unset)!r}" for k in keys]


# Recipe keys that may change between a run and its resumption (e.g. to train longer).
_RESUMABLE_RECIPE_KEYS = ("train_steps", "eval_batch_size")


def check_resume(model_dir: str, info: dict[str, Any]) -> dict[str, Any] | None:
    """The ``run.json`` already in ``model_dir`` (None if there is none), checked against ``info``.

    Raises :class:`SetupError` when it names another model, or another model config, recipe or dataset;
    the message names the differing keys with the recorded and the new values.
    """
    path = os.path.join(model_dir, RUN_FILE)
    if not os.path.isfile(path):
        return None
    try:
        old = read_run(model_dir)
    except RunDirError as e:
        raise SetupError(f"{e}; remove it or use another --model_dir") from e
    advice = f"rerun with the recorded values, or use another --model_dir (or remove {path})"
    if old.get("model") != info["model"]:
        raise SetupError(
            f"--model={info['model']!r} but --model_dir={model_dir!r} holds a run of model "
            f"{old.get('model')!r} ({path}); {advice}"
        )
    problems = []
    for key, what in (("config", "model config"), ("recipe", "recipe")):
        recorded, wanted = dict(old.get(key) or {}), dict(info[key])
        if key == "recipe":
            # Training longer (or evaluating differently) continues the same run.
            for k in _RESUMABLE_RECIPE_KEYS:
                recorded.pop(k, None)
                wanted.pop(k, None)
        diff = _differences(recorded, wanted)
        if diff:
            problems.append(f"{what} key(s) differ (recorded -> new): {'; '.join(diff)}")
    if old.get("dataset") != info["dataset"]:
        problems.append(f"--dataset: {old.get('dataset')!r} -> {info['dataset']!r}")
    if problems:
        raise SetupError(
            f"--model_dir={model_dir!r} holds a run of {info['model']!r} with other settings ({path}): "
            f"{'; '.join(problems)}; {advice}"
        )
    return old


def _check_asset_names(assets: Any, task_name: str) -> None:
    for name in assets:
        if (
            not isinstance(name, str)
            or not name
            or name != os.path.basename(name)
            or name.startswith(".")
            or name in _RESERVED
            or name.startswith("ckpt-")
        ):
            raise SetupError(
                f"asset name {name!r} of task {task_name!r} (TaskData.assets) cannot be a file in "
                f"--model_dir: it must be a plain file name, not hidden, not one of {', '.join(_RESERVED)} "
                "or ckpt-*"
            )


def write_run_files(
    model_dir: str, info: dict[str, Any], assets: Any, previous: dict[str, Any] | None = None
) -> None:
    """Writes ``run.json`` (``info``) and each asset (name -> bytes) into ``model_dir``, atomically.

    With ``previous`` (a resumed run), an asset that differs from the one the earlier run wrote (e.g. a
    vocabulary built from changed data) is refused: the checkpoint's weights belong to the old one.
    """
    os.makedirs(model_dir, exist_ok=True)
    if previous is not None:
        changed = []
        for name, data in assets.items():
            path = os.path.join(model_dir, name)
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    if f.read() != bytes(data):
                        changed.append(name)
        if changed:
            raise SetupError(
                f"--model_dir={model_dir!r}: the data now gives other {', '.join(changed)} than the run "
                f"being resumed wrote (was --data_dir changed? recorded: {previous.get('data_dir')!r}, "
                f"now: {info.get('data_dir')!r}); use another --model_dir"
            )
    for name, data in assets.items():
        atomic_write(os.path.join(model_dir, name), bytes(data))
    text = json.dumps(info, indent=2, sort_keys=True) + "\n"
    atomic_write(os.path.join(model_dir, RUN_FILE), text.encode("utf-8"))


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
    if options.batch_size % strategy.num_replicas_in_sync:
        raise SetupError(
            f"--batch_size={options.batch_size} is not divisible by the {strategy.num_replicas_in_sync} "
            f"replicas of --strategy={options.strategy}"
        )

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
    chief = is_chief()
    previous_run = None
    if options.model_dir:  # a rerun must describe the same run: refuse before building anything
        previous_run = check_resume(options.model_dir, run_description(options))
    keras.utils.set_random_seed(options.seed)
    if options.mixed_precision:
        # bfloat16 compute, float32 variables: bfloat16 has float32's exponent range, so no loss scaling
        # (CPUs, TPUs and GPUs from Ampere on compute it natively; float16 is deliberately not offered).
        keras.mixed_precision.set_global_policy("mixed_bfloat16")

    try:
        data = task.build_data(
            options.dataset,
            options.data_dir,
            options.batch_size,
            options.config,
            options.recipe,
            options.seed,
        )
    except ValueError as e:  # e.g. more symbols in the data than the model's vocab_size: a setup error
        raise SetupError(str(e)) from e
    if options.model_dir:
        _check_asset_names(data.assets, task.name)
        info = run_description(options, data.assets)
        if previous_run is not None and previous_run.get("data_dir") != info["data_dir"]:
            say(f"note: --data_dir was {previous_run.get('data_dir')!r} in the run being resumed")
        if chief:
            write_run_files(options.model_dir, info, data.assets, previous_run)
    train_steps = options.train_steps
    if train_steps is None:
        if not data.sizes.get("train"):
            raise SetupError(
                f"--epochs={options.epochs} needs the size of the train split, which the "
                f"{task.name!r} task did not count for --data_dir={options.data_dir!r} (large splits are "
                "not counted); pass --train_steps instead"
            )
        train_steps = max(1, math.ceil(options.epochs * data.sizes["train"] / options.batch_size))

    with strategy.scope():
        model = spec.builder(dict(options.config))
        optimizer = build_optimizer(options.recipe, source=f"recipe of {options.model!r}")
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
        trackables = {"model": model, "optimizer": optimizer}
        if data.checkpoint_input:
            trackables["iterator"] = iterator
        else:
            say(f"note: the {task.name!r} task's input position is not checkpointed; a resume restarts it")
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
        # A finite loss can still come with non-finite gradients: never save poisoned weights as "good".
        if not all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in model.trainable_variables):
            last = managers[0].latest_checkpoint
            raise NonFiniteLossError(
                f"non-finite weights after step {step} (non-finite gradients); training stopped without "
                f"saving. Last good checkpoint: {last or 'none saved yet'}"
            )
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
            serving_base_path=options.serving_base_path,
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
