"""Trainer flags, their validation, and ``--config key=value`` parsing.

Every flag left unset takes its default from the model's training recipe (``ModelSpec.recipe``), or from
:class:`TrainOptions` (the one place each run-setting default is written; :func:`define_flags` shows the
same values in ``--help``). ``--config`` (repeatable) overrides any model config key or recipe key:
``--config weight_decay=0.0005``, ``--config learning_rate=0.01``,
``--config 'learning_rate={"schedule": "exponential", ...}'``, ``--config eval_sequence_length=1000``.
The recipe keys a run accepts are declared once, by the trainer, the optimizer and the model's task
(``zoo.tasks.base.recipe_keys``). A bare key is looked up in the model config first, then in the recipe;
``model.KEY`` / ``recipe.KEY`` say which. Values are Python/JSON literals (``1e-3``, ``true``, ``[1, 2]``,
``None``); anything else is a string. Model config values must be of the kind of their default
(``zoo.registry.check_config_value``).

:func:`resolve` turns flag values into a :class:`TrainOptions` and fails before any training with a
message naming the flag, the bad value and the valid choices. It defines no flags and imports nothing
that initialises TensorFlow's devices; :func:`define_flags` is called by the trainer's entry point.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from absl import flags

from trainers.strategy import STRATEGIES
from zoo.optim import OPTIMIZERS, STEP_SCHEDULE_KEYS, check_optimizer_recipe
from zoo.registry import ModelSpec, get_spec, merge_config
from zoo.run_dir import parse_value
from zoo.tasks import Task, get_task, recipe_keys

__all__ = ["define_flags", "values_from_flags", "TrainOptions", "resolve", "parse_config_overrides"]


@dataclasses.dataclass
class TrainOptions:
    """Everything a training run needs, resolved and validated. The defaults here are the flags'."""

    model: str
    spec: ModelSpec
    config: dict[str, Any]
    recipe: dict[str, Any]
    dataset: str
    data_dir: str | None
    model_dir: str | None
    export_dir: str | None
    batch_size: int
    train_steps: int | None
    epochs: float | None
    strategy: str = "default"
    num_devices: int | None = None
    #: XLA per replica; None: the device's default (:func:`trainers.strategy.default_jit_compile`).
    jit_compile: bool | None = None
    mixed_precision: bool = False
    seed: int = 0
    checkpoint_every: int = 1000
    eval_every: int = 0
    log_every: int = 50
    serving_base_path: str | None = None
    #: lines the trainer prints before it starts (e.g. what a changed --batch_size means).
    notes: list[str] = dataclasses.field(default_factory=list)


_DEFAULTS = {
    f.name: f.default for f in dataclasses.fields(TrainOptions) if f.default is not dataclasses.MISSING
}


def define_flags() -> None:
    """Defines the trainer's absl flags (idempotent); the trainer's entry point calls it."""
    if "model" in flags.FLAGS:
        return
    d = _DEFAULTS
    flags.DEFINE_string("model", None, "Registered model name (see zoo.list_models()).")
    flags.DEFINE_string("dataset", None, "Dataset of the model's task; default: the recipe's.")
    flags.DEFINE_string(
        "data_dir",
        None,
        "Where the dataset is: a directory, a file (char-LM text/enwik8) or a file pattern (YT8M); "
        "the task checks it. Not needed for embedded data.",
    )
    flags.DEFINE_string(
        "model_dir", None, "Checkpoints, run.json and TensorBoard summaries; rerunning resumes."
    )
    flags.DEFINE_string("export_dir", None, "Base directory of the TF Serving export (BASE/<model>/<n>/).")
    flags.DEFINE_string(
        "serving_base_path",
        d["serving_base_path"],
        "BASE as the server sees it, for models.config (e.g. /models in docker).",
    )
    flags.DEFINE_integer("batch_size", None, "Global batch size (all replicas); default: the recipe's.")
    flags.DEFINE_integer("train_steps", None, "Training steps; default: the recipe's.")
    flags.DEFINE_float("epochs", None, "Train for this many passes over the train split (instead of steps).")
    flags.DEFINE_float("learning_rate", None, "Constant learning rate overriding the recipe's schedule.")
    flags.DEFINE_enum("optimizer", None, list(OPTIMIZERS), "Optimizer; default: the recipe's.")
    flags.DEFINE_multi_string(
        "config", [], "key=value override of a model config or recipe key (repeatable)."
    )
    flags.DEFINE_enum("strategy", d["strategy"], list(STRATEGIES), "tf.distribute strategy.")
    flags.DEFINE_integer(
        "num_devices", d["num_devices"], "Split the CPU into N logical devices (testing distribution)."
    )
    flags.DEFINE_boolean(
        "jit_compile",
        d["jit_compile"],
        "Compile each replica's forward/backward with XLA. Default: on where the replicas are GPUs or TPUs, "
        "off on CPUs (measured slower there for every model family; see trainers/strategy.py).",
    )
    flags.DEFINE_boolean(
        "mixed_precision",
        d["mixed_precision"],
        "Mixed precision: bfloat16 compute, float32 variables (no loss scaling).",
    )
    flags.DEFINE_integer("seed", d["seed"], "Random seed (weights, shuffling, dropout).")
    flags.DEFINE_integer(
        "checkpoint_every", d["checkpoint_every"], "Save a checkpoint every N steps (and at the end)."
    )
    flags.DEFINE_integer(
        "eval_every",
        d["eval_every"],
        "Evaluate the validation split every N steps and after the last step; 0: only after the last "
        "step. Datasets without a validation split (e.g. digits) skip it. The test split is evaluated "
        "once, at the end.",
    )
    flags.DEFINE_integer(
        "log_every", d["log_every"], "Print progress every N steps (steps/s leaves out eval and checkpoints)."
    )


def values_from_flags(flag_values: flags.FlagValues | None = None) -> dict[str, Any]:
    """The trainer flags' current values as a plain dict (input of :func:`resolve`)."""
    fv = flag_values or flags.FLAGS
    names = (
        "model", "dataset", "data_dir", "model_dir", "export_dir", "batch_size", "train_steps", "epochs",
        "learning_rate", "optimizer", "config", "strategy", "num_devices", "jit_compile", "mixed_precision",
        "seed", "checkpoint_every", "eval_every", "log_every", "serving_base_path",
    )  # fmt: skip
    return {n: fv[n].value for n in names}


def parse_config_overrides(
    items: Sequence[str], config: Mapping[str, Any], known_recipe_keys: Sequence[str], model: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Splits ``--config key=value`` items into (model config overrides, recipe overrides).

    ``known_recipe_keys`` are the recipe keys the run reads (``zoo.tasks.base.recipe_keys(task)``); any
    other key is an error naming the valid ones.
    """
    model_over: dict[str, Any] = {}
    recipe_over: dict[str, Any] = {}
    known = set(known_recipe_keys)
    for item in items:
        if "=" not in item:
            raise ValueError(f"--config {item!r}: expected key=value")
        key, text = item.split("=", 1)
        key = key.strip()
        value = parse_value(text)
        if key.startswith("model."):
            key = key[len("model.") :]
            where = "model" if key in config else None
        elif key.startswith("recipe."):
            key = key[len("recipe.") :]
            where = "recipe" if key in known else None
        else:
            where = "model" if key in config else ("recipe" if key in known else None)
        if where is None:
            raise ValueError(
                f"--config {item!r}: unknown key {key!r} for model {model!r}; "
                f"model config keys: {', '.join(sorted(config))}; recipe keys: {', '.join(sorted(known))}"
            )
        (model_over if where == "model" else recipe_over)[key] = value
    return model_over, recipe_over


def _positive(value: Any, flag: str, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"--{flag}={value!r} must be a positive number")


def _setting(values: Mapping[str, Any], name: str) -> Any:
    """The flag value ``name``, or its :class:`TrainOptions` default when unset (None)."""
    value = values.get(name)
    return _DEFAULTS.get(name) if value is None else value


def _config_and_recipe(
    values: Mapping[str, Any], spec: ModelSpec, task: Task, model: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The merged model config and recipe: the spec's, ``--config``, ``--learning_rate``, ``--optimizer``."""
    config = spec.default_config()
    recipe = spec.default_recipe()
    model_over, recipe_over = parse_config_overrides(
        values.get("config") or [], config, recipe_keys(task), model
    )
    config = merge_config(config, model_over, what=f"model {model!r}", source="--config")
    recipe.update(recipe_over)
    if values.get("learning_rate") is not None:
        _positive(values["learning_rate"], "learning_rate")
        recipe["learning_rate"] = float(values["learning_rate"])
    if values.get("optimizer") is not None:
        recipe["optimizer"] = values["optimizer"]
    check_optimizer_recipe(recipe, source=f"the recipe of {model!r} with --config")
    return config, recipe


def _step_counts(recipe: Mapping[str, Any], steps_from_recipe: bool) -> list[str]:
    """The recipe's values that count optimizer steps (their meaning changes with the batch size)."""
    counts = [f"train_steps={recipe['train_steps']}"] if steps_from_recipe else []
    schedule = recipe.get("learning_rate")
    if isinstance(schedule, Mapping):
        counts += [f"learning_rate {k}={schedule[k]}" for k in STEP_SCHEDULE_KEYS if schedule.get(k)]
    return counts


def _batch_and_steps(
    values: Mapping[str, Any], recipe: dict[str, Any], model: str
) -> tuple[int, int | None, float | None, list[str]]:
    """``(batch_size, train_steps, epochs, notes)``; records the batch actually used in ``recipe``."""
    batch_size = values.get("batch_size")
    if batch_size is None:
        batch_size = recipe.get("batch_size")
    if batch_size is None:
        raise ValueError(f"--batch_size is required: the recipe of {model!r} has no batch_size")
    _positive(batch_size, "batch_size", allow_none=False)
    if int(batch_size) != batch_size:
        raise ValueError(f"--batch_size={batch_size!r} must be a whole number")
    train_steps, epochs = values.get("train_steps"), values.get("epochs")
    if train_steps is not None and epochs is not None:
        raise ValueError(f"--train_steps={train_steps} and --epochs={epochs}: give only one")
    _positive(train_steps, "train_steps")
    _positive(epochs, "epochs")
    steps_from_recipe = train_steps is None and epochs is None
    if steps_from_recipe:
        train_steps = recipe.get("train_steps")
        if train_steps is None:
            raise ValueError(f"--train_steps or --epochs is required: the recipe of {model!r} has neither")
    notes = []
    recipe_batch = recipe.get("batch_size")
    counts = _step_counts(recipe, steps_from_recipe)
    if recipe_batch is not None and recipe_batch != batch_size and counts:
        notes.append(
            f"note: --batch_size={batch_size} differs from the recipe's {recipe_batch}; the recipe's step "
            f"counts ({', '.join(counts)}) are kept as they are, so they now cover a different number of "
            "examples"
        )
    # The batch actually used is part of the run (recorded in run.json; a resume with another is refused).
    recipe["batch_size"] = int(batch_size)
    return int(batch_size), train_steps, epochs, notes


def _run_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """The run settings that do not depend on the model (strategy, devices, intervals, seed)."""
    num_devices = _setting(values, "num_devices")
    if num_devices is not None and num_devices < 1:
        raise ValueError(f"--num_devices={num_devices} must be >= 1")
    strategy = _setting(values, "strategy")
    if strategy not in STRATEGIES:
        raise ValueError(f"--strategy={strategy!r} is unknown; valid: {', '.join(STRATEGIES)}")
    for name in ("checkpoint_every", "log_every"):
        _positive(_setting(values, name), name, allow_none=False)
    eval_every = _setting(values, "eval_every")
    jit_compile = _setting(values, "jit_compile")  # None: the device decides (trainers.strategy)
    if eval_every < 0:
        raise ValueError(f"--eval_every={eval_every} must be >= 0")
    return {
        "strategy": strategy,
        "num_devices": num_devices,
        "jit_compile": None if jit_compile is None else bool(jit_compile),
        "mixed_precision": bool(_setting(values, "mixed_precision")),
        "seed": int(_setting(values, "seed")),
        "checkpoint_every": int(_setting(values, "checkpoint_every")),
        "eval_every": int(eval_every),
        "log_every": int(_setting(values, "log_every")),
        "serving_base_path": _setting(values, "serving_base_path"),
    }


def resolve(
    values: Mapping[str, Any], spec: ModelSpec | None = None, task: Task | None = None
) -> TrainOptions:
    """Validates flag values (a mapping flag name -> value) into :class:`TrainOptions`.

    ``spec`` supplies the model's spec directly (e.g. a test model that is not registered); by default
    it is looked up by ``--model`` in the registry. ``task`` is the task whose recipe keys ``--config``
    accepts; by default ``zoo.tasks.get_task(spec.task)``.

    Data checks (dataset known to the task; ``--data_dir`` exists and is what the dataset needs: a
    directory, a file, a file pattern) are the task's (``Task.check_data``), done by the trainer once it
    has the task; here ``--data_dir`` only has to be a non-empty string.
    """
    model = values.get("model") or (spec.name if spec is not None else None)
    if not model:
        raise ValueError("--model is required (see zoo.list_models())")
    if spec is None:
        spec = get_spec(model)  # UnknownModelError names the closest registered models
    task = task if task is not None else get_task(spec.task)
    config, recipe = _config_and_recipe(values, spec, task, model)
    batch_size, train_steps, epochs, notes = _batch_and_steps(values, recipe, model)
    dataset = values.get("dataset") or recipe.get("dataset")
    if not dataset:
        raise ValueError(f"--dataset is required: the recipe of {model!r} names none")
    data_dir = values.get("data_dir")
    if data_dir is not None and (not isinstance(data_dir, str) or not data_dir.strip()):
        raise ValueError(f"--data_dir={data_dir!r} must be a non-empty path or file pattern")
    return TrainOptions(
        model=model,
        spec=spec,
        config=config,
        recipe=recipe,
        dataset=dataset,
        data_dir=data_dir,
        model_dir=values.get("model_dir"),
        export_dir=values.get("export_dir"),
        batch_size=batch_size,
        train_steps=None if train_steps is None else int(train_steps),
        epochs=None if epochs is None else float(epochs),
        notes=notes,
        **_run_settings(values),
    )
