"""The zoo trainer: ``python -m trainers.train --model=NAME ...`` (console script ``zoo-train``).

:func:`train` reads top to bottom as its steps:

1. :func:`setup`: the strategy (``trainers/strategy.py``), the task's data, ``run.json`` and the task's
   assets (``zoo/run_dir.py``), then the model, the optimizer and the XLA training loop
   (``trainers/loop.py``) in the strategy's scope. The trainer knows nothing about particular models or
   tasks: it dispatches on ``spec.task`` (``zoo/tasks/base.py``).
2. :func:`restore`: the latest checkpoint of ``--model_dir``, if any
   (:class:`trainers.checkpoint.Checkpointer`).
3. :func:`fit`: training steps with progress lines, TensorBoard scalars, checkpoints and evaluations.
4. :func:`finish`: the validation and test evaluation, the SavedModel export and the test accuracy
   measured through the exported SavedModel.

``--model_dir``: while a trainer runs, it holds the directory's lock (``zoo.run_dir.hold_lock``): a second
trainer in the same directory is refused, naming the first (pid, host, start time); the lock of a killed
trainer is taken over. Right after building the data the chief writes ``run.json`` (model, merged config
and recipe, dataset, data_dir, asset names) and the assets; the exporter, ``trainers.sample`` and the
YouTube-8M tools read them, so they need only ``--model_dir``. A rerun must describe the same run (other
model, config, recipe or dataset is refused, naming the keys); a moved ``--data_dir`` is allowed.

Checkpoints every ``--checkpoint_every`` steps and at the end hold the model, the optimizer (its
``iterations`` is the step counter), the train iterator's position where tf.data can save it, and the
loop's own state (``TrainLoop.checkpoint_state``). Rerunning the same command resumes from the latest
checkpoint and says so; rerunning a finished one says it is already at step N and evaluates again.

A non-finite loss stops training with an error naming the step; no checkpoint is written after it, so the
latest checkpoint is the last good one. A batch that does not fit in memory stops with an error that says
so and suggests a smaller ``--batch_size``. Bad input exits with status 2 and one ``error:`` line, a
non-finite loss with status 3.

Multi-worker (``--strategy=multi_worker`` with ``TF_CONFIG``): every worker runs the same command; the chief
(worker 0) holds the lock and writes checkpoints, summaries and the export under the real paths, the
others write their (mandatory) checkpoint copies to a per-worker scratch directory removed at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from absl import app, flags, logging

from trainers import flags as flags_lib
from trainers.checkpoint import ITERATOR, Checkpointer
from zoo import run_dir
from zoo.run_dir import RUN_FILE, check_resume, write_run_files

__all__ = [
    "train",
    "setup",
    "restore",
    "fit",
    "finish",
    "main",
    "run",
    "Run",
    "NonFiniteLossError",
    "SetupError",
    "OutOfMemoryError",
    "RUN_FILE",
    "run_description",
    "check_resume",
    "write_run_files",
]

Say = Callable[[str], None]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or Inf."""


class SetupError(ValueError):
    """A bad value found before training (devices, dataset, data_dir, model_dir); the message names it."""


class OutOfMemoryError(SetupError):
    """A batch (train or eval) did not fit in the device's memory."""


def _say(message: str) -> None:
    print(message, flush=True)


def _fmt(values: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in values.items())


def run_description(options: flags_lib.TrainOptions, assets: Any = ()) -> dict[str, Any]:
    """The ``run.json`` content of a run (``zoo.run_dir.describe_run`` of the options)."""
    return run_dir.describe_run(
        model=options.model,
        config=options.config,
        recipe=options.recipe,
        dataset=options.dataset,
        data_dir=options.data_dir,
        assets=list(assets),
    )


@dataclasses.dataclass
class Run:
    """What :func:`setup` builds for the later steps."""

    options: flags_lib.TrainOptions
    task: Any
    strategy: Any
    data: Any
    model: Any
    optimizer: Any
    loop: Any
    iterator: Any
    train_steps: int
    chief: bool


# ---------------------------------------------------------------------------------------------- setup
def _data(options: flags_lib.TrainOptions, task: Any, chief: bool, say: Say) -> tuple[Any, int]:
    """The task's data (``run.json`` and assets written by the chief), and the number of train steps."""
    previous = None
    try:
        if options.model_dir:  # a rerun must describe the same run: refuse before building anything
            previous = check_resume(options.model_dir, run_description(options))
        data = task.build_data(
            options.dataset,
            options.data_dir,
            options.batch_size,
            options.config,
            options.recipe,
            options.seed,
        )
    except ValueError as e:  # e.g. more symbols in the data than the model's vocab_size
        raise SetupError(str(e)) from e
    for name in data.assets:  # the exporter's rule: a name it would refuse fails here, before training
        try:
            run_dir.check_asset_name(name)
        except ValueError as e:
            raise SetupError(f"{e} (from TaskData.assets of task {task.name!r})") from e
    if options.model_dir:
        info = run_description(options, data.assets)
        if previous is not None and previous.get("data_dir") != info["data_dir"]:
            say(f"note: --data_dir was {previous.get('data_dir')!r} in the run being resumed")
        if chief:
            try:
                write_run_files(options.model_dir, info, data.assets, previous)
            except ValueError as e:  # an asset that differs from the resumed run's
                raise SetupError(str(e)) from e
    if options.train_steps is not None:
        return data, options.train_steps
    if not data.sizes.get("train"):
        raise SetupError(
            f"--epochs={options.epochs} needs the size of the train split, which the {task.name!r} task "
            f"did not count for --data_dir={options.data_dir!r} (large splits are not counted); pass "
            "--train_steps instead"
        )
    return data, max(1, math.ceil(options.epochs * data.sizes["train"] / options.batch_size))


def setup(options: flags_lib.TrainOptions, task: Any, chief: bool, say: Say) -> Run:
    """Strategy, data, run files, model, optimizer and training loop; says the start-up line."""
    from trainers.strategy import make_strategy, resolve_jit_compile

    # Devices first: logical CPU devices can only be set before TensorFlow initialises.
    try:
        strategy = make_strategy(options.strategy, options.num_devices)
    except ValueError as e:
        raise SetupError(str(e)) from e
    replicas = strategy.num_replicas_in_sync
    if options.batch_size % replicas:
        raise SetupError(
            f"--batch_size={options.batch_size} is not divisible by the {replicas} replicas of "
            f"--strategy={options.strategy}"
        )
    import keras

    from trainers.loop import TrainLoop
    from zoo.optim import build_optimizer

    keras.utils.set_random_seed(options.seed)
    if options.mixed_precision:
        # bfloat16 compute, float32 variables: bfloat16 has float32's exponent range, so no loss scaling
        # (CPUs, TPUs and GPUs from Ampere on compute it natively; float16 is deliberately not offered).
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    data, train_steps = _data(options, task, chief, say)
    with strategy.scope():
        try:
            model = options.spec.build(options.config)
            task.prepare_model(model, data)  # e.g. the image task checks the model fits the data
        except ValueError as e:
            raise SetupError(str(e)) from e
        optimizer = build_optimizer(options.recipe, source=f"recipe of {options.model!r}")
    jit_compile = resolve_jit_compile(options.jit_compile)
    loop = TrainLoop(
        strategy=strategy,
        model=model,
        task=task,
        optimizer=optimizer,
        global_batch_size=options.batch_size,
        jit_compile=jit_compile,
        clip_norm=options.recipe.get("clip_norm"),
        clip_per_tensor=options.recipe.get("clip_per_tensor"),
    )
    run = Run(
        options, task, strategy, data, model, optimizer, loop, loop.distribute(data.train), train_steps, chief
    )
    params = int(sum(math.prod(v.shape) for v in model.trainable_variables))
    sizes = " ".join(f"{k}={v}" for k, v in data.sizes.items())
    say(
        f"zoo-train model={options.model} task={task.name} dataset={options.dataset} "
        f"strategy={options.strategy} replicas={replicas} jit_compile={jit_compile}"
        f"{' (the device default)' if options.jit_compile is None else ''} params={params} "
        f"batch_size={options.batch_size} train_steps={train_steps} "
        f"mixed_precision={keras.mixed_precision.global_policy().name} sizes[{sizes}] in {data.size_unit}"
    )
    return run


# ---------------------------------------------------------------------------------------------- restore
def restore(run: Run, say: Say) -> Checkpointer | None:
    """The run's :class:`Checkpointer` (None without ``--model_dir``), restored from the latest checkpoint."""
    if not run.options.model_dir:
        return None
    trackables = {"model": run.model, "optimizer": run.optimizer}
    if run.data.checkpoint_input:
        trackables[ITERATOR] = run.iterator
    else:
        say(f"note: the {run.task.name!r} task's input position is not checkpointed; a resume restarts it")
    trackables.update(run.loop.checkpoint_state())
    checkpointer = Checkpointer(run.options.model_dir, trackables, chief=run.chief, say=say)
    latest, missing = checkpointer.restore()
    if latest:
        lacked = f"; it holds no {' or '.join(missing)}: starting that afresh" if missing else ""
        say(f"resumed from step {_step(run)} ({latest}{lacked})")
    return checkpointer


def _step(run: Run) -> int:
    inner = getattr(run.optimizer, "inner_optimizer", run.optimizer)
    return int(inner.iterations.numpy())


def _current_lr(optimizer: Any) -> float:
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    lr = inner.learning_rate
    return float(lr.numpy() if hasattr(lr, "numpy") else lr)


# ---------------------------------------------------------------------------------------------- fit
class _Progress:
    """Mean loss and steps/s since the last progress line; time spent evaluating or checkpointing (marked
    with :meth:`paused`) is left out of steps/s."""

    def __init__(self) -> None:
        self.start, self.steps, self.loss_sum, self.excluded = time.perf_counter(), 0, 0.0, 0.0

    def add(self, loss: float) -> None:
        self.steps += 1
        self.loss_sum += loss

    @contextlib.contextmanager
    def paused(self) -> Any:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.excluded += time.perf_counter() - t0

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start - self.excluded
        return self.steps / elapsed if elapsed > 0 else float("nan")


def _log_progress(run: Run, step: int, progress: _Progress, writer: Any, say: Say) -> None:
    import tensorflow as tf

    rate, mean_loss = progress.rate(), progress.loss_sum / progress.steps
    metrics = run.loop.metric_results()
    lr = _current_lr(run.optimizer)
    eta = (run.train_steps - step) / rate if rate > 0 else float("nan")
    say(
        f"step {step}/{run.train_steps} loss={mean_loss:.4f} {_fmt(metrics)} lr={lr:.3g} "
        f"steps/s={rate:.2f} eta={eta:.0f}s"
    )
    with writer.as_default(step=step):
        tf.summary.scalar("loss", mean_loss)
        tf.summary.scalar("learning_rate", lr)
        tf.summary.scalar("steps_per_sec", rate)
        for k, v in metrics.items():
            tf.summary.scalar(k, v)
    run.loop.reset_metrics()


def _save(run: Run, checkpointer: Checkpointer | None, step: int) -> None:
    import tensorflow as tf

    if checkpointer is None:
        return
    # A finite loss can still come with non-finite gradients: never save poisoned weights as "good".
    if not all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in run.model.trainable_variables):
        raise NonFiniteLossError(
            f"non-finite weights after step {step} (non-finite gradients); training stopped without "
            f"saving. Last good checkpoint: {checkpointer.latest or 'none saved yet'}"
        )
    checkpointer.save(step)


def evaluate(run: Run, split: str, step: int, writer: Any, say: Say) -> dict[str, float]:
    """Evaluates ``split`` (``"eval"``: validation, or ``"test"``) and writes its summaries."""
    import tensorflow as tf

    results = run.task.evaluate(run.model, getattr(run.data, split))
    say(f"{split} step {step}: {_fmt(results)}" if split == "eval" else f"test: {_fmt(results)}")
    with writer.as_default(step=step):
        for k, v in results.items():
            tf.summary.scalar(f"{split}/{k}", v)
        run.task.write_summaries(run.model, step)
    return results


def fit(run: Run, checkpointer: Checkpointer | None, writer: Any, say: Say) -> dict[str, Any]:
    """Trains from the restored step to ``train_steps``; returns ``{"step", "loss", "eval"?}`` where
    ``loss`` is the last step's loss (None when no step ran) and ``eval`` the last validation results."""
    options, data = run.options, run.data
    step = start = _step(run)
    out: dict[str, Any] = {"loss": None}
    progress = _Progress()
    while step < run.train_steps:
        loss = float(run.loop.step(run.iterator))
        step += 1
        if not math.isfinite(loss):
            last = checkpointer.latest if checkpointer is not None else None
            raise NonFiniteLossError(
                f"non-finite loss {loss} at step {step}; training stopped. "
                f"Last good checkpoint: {last or 'none (no --model_dir or none saved yet)'}"
            )
        out["loss"] = loss
        progress.add(loss)
        if step % options.log_every == 0 or step == run.train_steps:
            _log_progress(run, step, progress, writer, say)
            progress = _Progress()
        with progress.paused():
            if step % options.checkpoint_every == 0:
                _save(run, checkpointer, step)
            if options.eval_every and step % options.eval_every == 0 and data.eval is not None:
                out["eval"] = evaluate(run, "eval", step, writer, say)
                out["eval_step"] = step
    if step > start and step % options.checkpoint_every != 0:
        _save(run, checkpointer, step)
    if start >= run.train_steps:
        say(f"already at step {step} (train_steps={run.train_steps}); nothing to train")
    out["step"] = step
    return out


# ---------------------------------------------------------------------------------------------- finish
def _export(run: Run, summary: dict[str, Any], say: Say) -> None:
    import keras
    import tensorflow as tf

    from exports.export import ExportError, export_model

    options = run.options
    # Export a plain float32 copy (no distributed variables, no mixed-precision casts).
    keras.mixed_precision.set_global_policy("float32")
    plain = options.spec.build(options.config)
    plain.set_weights(run.model.get_weights())
    try:
        path = export_model(
            plain,
            model_name=options.model,
            task=run.task,
            config=dict(options.config),
            base_dir=options.export_dir,
            assets=dict(run.data.assets),
            serving_base_path=options.serving_base_path,
        )
    except ExportError as e:
        raise SetupError(f"trained to step {summary['step']}, but the export failed: {e}") from e
    summary["export_path"] = path
    say(f"exported {path}")
    if run.data.test is not None:
        served = run.task.evaluate_serving(tf.saved_model.load(path), run.data.test)
        summary["serving_test"] = served
        say(f"serving test (through the exported SavedModel): {_fmt(served)}")


def finish(run: Run, fitted: dict[str, Any], writer: Any, say: Say) -> dict[str, Any]:
    """The run's summary: validation (unless just done) and test results, export, weights checksum."""
    import numpy as np

    step = fitted["step"]
    # A fingerprint of the final weights (compares runs: resumed vs uninterrupted, worker vs worker).
    checksum = float(sum(np.sum(np.asarray(w, np.float64)) for w in run.model.get_weights()))
    summary: dict[str, Any] = {
        "model": run.options.model,
        "step": step,
        "loss": fitted["loss"],
        "weights_checksum": checksum,
    }
    if run.data.eval is not None:
        done = fitted.get("eval_step") == step
        summary["eval"] = fitted["eval"] if done else evaluate(run, "eval", step, writer, say)
    if run.data.test is not None:
        summary["test"] = evaluate(run, "test", step, writer, say)
    writer.flush()
    if run.options.export_dir and run.chief:
        _export(run, summary, say)
    return summary


# ---------------------------------------------------------------------------------------------- train
def _out_of_memory(options: flags_lib.TrainOptions, error: Exception) -> OutOfMemoryError:
    first = str(getattr(error, "message", error)).strip().splitlines()[0][:300]
    smaller = max(1, options.batch_size // 2)
    return OutOfMemoryError(
        f"out of memory with --batch_size={options.batch_size} (model {options.model!r}): {first}; "
        f"try a smaller --batch_size, e.g. --batch_size={smaller} (or a smaller eval_batch_size with "
        f"--config eval_batch_size=N if it happened while evaluating)"
    )


def train(options: flags_lib.TrainOptions, task: Any = None, say: Say = _say) -> dict[str, Any]:
    """Runs one training job described by ``options``; returns a summary dict.

    ``task`` overrides the spec's task object (tests use a tiny task); by default it is
    ``zoo.tasks.get_task(spec.task)``.
    """
    import keras
    import tensorflow as tf

    from trainers.strategy import is_chief
    from zoo.tasks import get_task

    tf.get_logger().setLevel("WARNING")  # MirroredStrategy logs every reduction at INFO
    task = task if task is not None else get_task(options.spec.task)
    try:
        task.check_data(options.dataset, options.data_dir)
    except ValueError as e:
        raise SetupError(str(e)) from e
    for note in options.notes:
        say(note)
    chief, policy = is_chief(), keras.mixed_precision.global_policy()
    with contextlib.ExitStack() as stack:
        if options.model_dir and chief:
            try:
                stack.enter_context(run_dir.hold_lock(options.model_dir))
            except run_dir.RunDirError as e:
                raise SetupError(str(e)) from e
        stack.callback(keras.mixed_precision.set_global_policy, policy)
        run = setup(options, task, chief, say)
        writer = tf.summary.create_noop_writer()
        if options.model_dir and chief:
            writer = tf.summary.create_file_writer(os.path.join(options.model_dir, "train"))
            stack.callback(writer.close)
        try:
            checkpointer = restore(run, say)
            if checkpointer is not None:
                stack.callback(checkpointer.close)
            fitted = fit(run, checkpointer, writer, say)
            return finish(run, fitted, writer, say)
        except tf.errors.ResourceExhaustedError as e:
            raise _out_of_memory(options, e) from e


def _json_safe(value: Any) -> Any:
    """``value`` with NaN/Inf floats replaced by None, so the summary line is strict json."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _fail(message: Any, code: int) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def main(argv: list[str], task: Any = None) -> None:
    """The absl main of ``zoo-train``: flags -> :func:`train` -> one ``summary {json}`` line."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:  # TensorFlow's INFO lines (SavedModel writing) are noise here
        logging.set_verbosity(logging.WARNING)
    try:
        options = flags_lib.resolve(flags_lib.values_from_flags(flags.FLAGS), task=task)
    except (ValueError, KeyError) as e:  # bad flag/config values: fail before anything is built
        _fail(e, 2)
    try:
        summary = train(options, task=task)
    except NonFiniteLossError as e:
        _fail(e, 3)
    except SetupError as e:  # bad devices, dataset, data_dir or model_dir; out of memory
        _fail(e, 2)
    _say("summary " + json.dumps(_json_safe(summary), default=str, sort_keys=True, allow_nan=False))


def run(task: Any = None) -> None:
    """Entry point of the ``zoo-train`` console script (``task``: a test task replacing the spec's)."""
    flags_lib.define_flags()
    app.run(functools.partial(main, task=task))


if __name__ == "__main__":
    run()
