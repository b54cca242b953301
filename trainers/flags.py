"""Trainer flags, their validation, and ``--config key=value`` parsing.

Every flag left unset takes its default from the model's training recipe (``ModelSpec.recipe``).
``--config`` (repeatable) overrides any model config key or recipe key: ``--config weight_decay=0.0005``,
``--config learning_rate=0.01``, ``--config 'learning_rate={"schedule": "exponential", ...}'``. A bare key
is looked up in the model config first, then in the recipe; ``model.KEY`` / ``recipe.KEY`` say which.
Values are Python/JSON literals (``1e-3``, ``true``, ``[1, 2]``, ``None``); anything else is a string.

:func:`resolve` turns flag values into a :class:`TrainOptions` and fails before any training with a
message naming the flag, the bad value and the valid choices.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from absl import flags

from trainers.strategy import STRATEGIES
from zoo.optim import OPTIMIZERS
from zoo.registry import ModelSpec, get_spec, merge_config
from zoo.run_dir import parse_value

__all__ = ["define_flags", "TrainOptions", "resolve", "parse_config_overrides", "RECIPE_KEYS"]

# Recipe keys the trainer and zoo.optim understand even when a spec's recipe omits them.
RECIPE_KEYS = (
    "dataset", "batch_size", "train_steps", "optimizer", "learning_rate", "momentum", "nesterov",
    "epsilon", "clip_norm", "clip_per_tensor", "augment", "eval_batch_size",
)  # fmt: skip


def define_flags() -> None:
    """Defines the trainer's absl flags (idempotent)."""
    if "model" in flags.FLAGS:
        return
    flags.DEFINE_string("model", None, "Registered model name (see zoo.list_models()).")
    flags.DEFINE_string("dataset", None, "Dataset of the model's task; default: the recipe's.")
    flags.DEFINE_string(
        "data_dir",
        None,
        "Where the dataset is: a directory, a file (char-LM text/enwik8) or a file pattern (YT8M); "
        "the task checks it. Not needed for embedded data.",
    )
    flags.DEFINE_string("model_dir", None, "Checkpoints and TensorBoard summaries; rerunning resumes.")
    flags.DEFINE_string("export_dir", None, "Base directory of the TF Serving export (BASE/<model>/<n>/).")
    flags.DEFINE_string(
        "serving_base_path", None, "BASE as the server sees it, for models.config (e.g. /models in docker)."
    )
    flags.DEFINE_integer("batch_size", None, "Global batch size (all replicas); default: the recipe's.")
    flags.DEFINE_integer("train_steps", None, "Training steps; default: the recipe's.")
    flags.DEFINE_float("epochs", None, "Train for this many passes over the train split (instead of steps).")
    flags.DEFINE_float("learning_rate", None, "Constant learning rate overriding the recipe's schedule.")
    flags.DEFINE_enum("optimizer", None, list(OPTIMIZERS), "Optimizer; default: the recipe's.")
    flags.DEFINE_multi_string("config", [], "key=value override of a model config or recipe key.")
    flags.DEFINE_enum("strategy", "default", list(STRATEGIES), "tf.distribute strategy.")
    flags.DEFINE_integer("num_devices", None, "Split the CPU into N logical devices (testing distribution).")
    flags.DEFINE_boolean("jit_compile", True, "Compile each replica's forward/backward with XLA.")
    flags.DEFINE_boolean(
        "mixed_precision", False, "Mixed precision: bfloat16 compute, float32 variables (no loss scaling)."
    )
    flags.DEFINE_integer("seed", 0, "Random seed (weights, shuffling, dropout).")
    flags.DEFINE_integer("checkpoint_every", 1000, "Save a checkpoint every N steps (and at the end).")
    flags.DEFINE_integer("eval_every", 0, "Evaluate on the eval split every N steps (0: only at the end).")
    flags.DEFINE_integer("log_every", 50, "Print progress every N steps.")


@dataclasses.dataclass
class TrainOptions:
    """Everything a training run needs, resolved and validated."""

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
    jit_compile: bool = True
    mixed_precision: bool = False
    seed: int = 0
    checkpoint_every: int = 1000
    eval_every: int = 0
    log_every: int = 50
    serving_base_path: str | None = None


def parse_config_overrides(
    items: Sequence[str], config: Mapping[str, Any], recipe: Mapping[str, Any], model: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Splits ``--config key=value`` items into (model config overrides, recipe overrides)."""
    model_over: dict[str, Any] = {}
    recipe_over: dict[str, Any] = {}
    recipe_keys = set(recipe) | set(RECIPE_KEYS)
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
            where = "recipe" if key in recipe_keys else None
        else:
            where = "model" if key in config else ("recipe" if key in recipe_keys else None)
        if where is None:
            raise ValueError(
                f"--config {item!r}: unknown key {key!r} for model {model!r}; "
                f"model config keys: {', '.join(sorted(config))}; "
                f"recipe keys: {', '.join(sorted(recipe_keys))}"
            )
        (model_over if where == "model" else recipe_over)[key] = value
    return model_over, recipe_over


def _positive(value: Any, flag: str, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"--{flag}={value!r} must be a positive number")


def resolve(values: Mapping[str, Any], spec: ModelSpec | None = None) -> TrainOptions:
    """Validates flag values (a mapping flag name -> value) into :class:`TrainOptions`.

    ``spec`` supplies the model's spec directly (e.g. a test model that is not registered); by default
    it is looked up by ``--model`` in the registry.

    Data checks (dataset known to the task; ``--data_dir`` exists and is what the dataset needs: a
    directory, a file, a file pattern) are the task's (``Task.check_data``), done by the trainer once it
    has the task; here ``--data_dir`` only has to be a non-empty string.
    """
    model = values.get("model") or (spec.name if spec is not None else None)
    if not model:
        raise ValueError("--model is required (see zoo.list_models())")
    if spec is None:
        spec = get_spec(model)  # UnknownModelError names the closest registered models
    config = spec.default_config()
    recipe = spec.default_recipe()
    model_over, recipe_over = parse_config_overrides(values.get("config") or [], config, recipe, model)
    config = merge_config(config, model_over, what=f"model {model!r}", source="--config")
    recipe.update(recipe_over)
    if values.get("learning_rate") is not None:
        _positive(values["learning_rate"], "learning_rate")
        recipe["learning_rate"] = float(values["learning_rate"])
    if values.get("optimizer") is not None:
        recipe["optimizer"] = values["optimizer"]
    if recipe.get("optimizer", "adam") not in OPTIMIZERS:
        raise ValueError(f"optimizer {recipe['optimizer']!r} is unknown; valid: {', '.join(OPTIMIZERS)}")
    for key in ("clip_norm", "clip_per_tensor"):
        _positive(recipe.get(key), f"config {key}")

    batch_size = values.get("batch_size")
    if batch_size is None:
        batch_size = recipe.get("batch_size")
    if batch_size is None:
        raise ValueError(f"--batch_size is required: the recipe of {model!r} has no batch_size")
    _positive(batch_size, "batch_size", allow_none=False)
    if int(batch_size) != batch_size:
        raise ValueError(f"--batch_size={batch_size!r} must be a whole number")
    recipe_batch = recipe.get("batch_size")
    if recipe_batch is not None and recipe_batch != batch_size:
        print(
            f"note: --batch_size={batch_size} differs from the recipe's {recipe_batch}; the recipe's step "
            "counts (train_steps, schedule boundaries, decay_steps) are kept as they are, so they now "
            "cover a different number of examples",
            flush=True,
        )
    # The batch actually used is part of the run (recorded in run.json; a resume with another is refused).
    recipe["batch_size"] = int(batch_size)
    train_steps = values.get("train_steps")
    epochs = values.get("epochs")
    if train_steps is not None and epochs is not None:
        raise ValueError(f"--train_steps={train_steps} and --epochs={epochs}: give only one")
    _positive(train_steps, "train_steps")
    _positive(epochs, "epochs")
    if train_steps is None and epochs is None:
        train_steps = recipe.get("train_steps")
        if train_steps is None:
            raise ValueError(f"--train_steps or --epochs is required: the recipe of {model!r} has neither")

    dataset = values.get("dataset") or recipe.get("dataset")
    if not dataset:
        raise ValueError(f"--dataset is required: the recipe of {model!r} names none")
    data_dir = values.get("data_dir")
    # Only generic checks here: whether data_dir exists and what it must be (a directory, a file, a file
    # pattern) is the task's to check (Task.check_data, called by the trainer before building the data).
    if data_dir is not None and (not isinstance(data_dir, str) or not data_dir.strip()):
        raise ValueError(f"--data_dir={data_dir!r} must be a non-empty path or file pattern")

    num_devices = values.get("num_devices")
    if num_devices is not None and num_devices < 1:
        raise ValueError(f"--num_devices={num_devices} must be >= 1")
    strategy = values.get("strategy") or "default"
    if strategy not in STRATEGIES:
        raise ValueError(f"--strategy={strategy!r} is unknown; valid: {', '.join(STRATEGIES)}")
    checkpoint_every = 1000 if values.get("checkpoint_every") is None else values["checkpoint_every"]
    _positive(checkpoint_every, "checkpoint_every", allow_none=False)
    eval_every = values.get("eval_every") or 0
    if eval_every < 0:
        raise ValueError(f"--eval_every={eval_every} must be >= 0")
    log_every = 50 if values.get("log_every") is None else values["log_every"]
    _positive(log_every, "log_every", allow_none=False)
    return TrainOptions(
        model=model,
        spec=spec,
        config=config,
        recipe=recipe,
        dataset=dataset,
        data_dir=data_dir,
        model_dir=values.get("model_dir"),
        export_dir=values.get("export_dir"),
        serving_base_path=values.get("serving_base_path"),
        batch_size=int(batch_size),
        train_steps=None if train_steps is None else int(train_steps),
        epochs=None if epochs is None else float(epochs),
        strategy=strategy,
        num_devices=num_devices,
        jit_compile=bool(values.get("jit_compile", True)),
        mixed_precision=bool(values.get("mixed_precision", False)),
        seed=int(values.get("seed") or 0),
        checkpoint_every=int(checkpoint_every),
        eval_every=int(eval_every),
        log_every=int(log_every),
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
