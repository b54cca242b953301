"""The model registry: names -> ModelSpec -> built ``keras.Model``.

A :class:`ModelSpec` is data: the builder, the task it belongs to, where it comes from in the
paper, its default config (paper values), its default training recipe, and the input spec.
``zoo.get(name, **overrides)`` merges overrides into the default config (unknown keys are an
error naming the valid ones), calls the builder and returns a built model.

Config values are checked against the kind of their default before the builder runs
(:func:`check_config_value`): a whole-number default takes whole numbers (at least 1 where the default
is positive: counts and sizes; at least 0 where it is 0), a float default takes finite numbers, a
bool/str/sequence/mapping default takes the same kind, a ``None`` default takes anything. What the
builder itself rejects (e.g. a dropout rate outside [0, 1)) surfaces as a :class:`ConfigValueError` too.

Style follows ``timm``: ``@register_model`` on a function that returns a :class:`ModelSpec`.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import fnmatch
import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "ModelSpec",
    "UnknownModelError",
    "UnknownConfigKeyError",
    "ConfigValueError",
    "register_model",
    "get",
    "get_spec",
    "list_models",
    "describe",
    "merge_config",
    "check_config_value",
]

# Tasks a spec may name; each has a zoo.tasks module that the trainer and exporter dispatch on.
TASKS = ("image_classification", "char_lm", "video_classification", "handwriting", "translation")


class UnknownModelError(KeyError):
    """A model name that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0])


class UnknownConfigKeyError(ValueError):
    """An override key that the model's config does not have."""


class ConfigValueError(ValueError):
    """A config value of another kind than its default, or one the model's builder rejects."""


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything the zoo knows about one registered model.

    Attributes:
      name: registry name, e.g. ``"hyper_wrn_40_2"``.
      builder: ``builder(config: dict) -> keras.Model``; receives the merged config.
      task: one of :data:`TASKS`; the trainer and exporter dispatch on it.
      paper: where the model comes from, e.g. ``"HyperNetworks §4.2, Table 2 row 'Hyper WRN 40-2'"``.
      config: default config (the paper's values), every key overridable through ``zoo.get``.
      recipe: default training recipe as data (optimizer, learning-rate schedule, batch size, ...).
        Common keys understood by ``zoo.optim`` and the trainer: ``dataset``, ``batch_size``,
        ``train_steps``, ``optimizer``, ``learning_rate`` (a float or a schedule dict),
        ``momentum``, ``nesterov``, ``clip_norm``, ``clip_per_tensor``. A task may add its own keys.
      input_spec: ``{input_name: (shape_without_batch, dtype)}`` of the built model.
      description: one line for ``list_models`` tables and the README.
      paper_params: the parameter count the paper prints, where it prints one (for the README table).
    """

    name: str
    builder: Callable[[dict[str, Any]], Any]
    task: str
    paper: str
    config: Mapping[str, Any]
    recipe: Mapping[str, Any]
    input_spec: Mapping[str, tuple[tuple[int | None, ...], str]]
    description: str = ""
    paper_params: int | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(
                f"ModelSpec {self.name!r}: unknown task {self.task!r}; valid tasks: {', '.join(TASKS)}"
            )

    def default_config(self) -> dict[str, Any]:
        return copy.deepcopy(dict(self.config))

    def default_recipe(self) -> dict[str, Any]:
        return copy.deepcopy(dict(self.recipe))

    def build(self, config: Mapping[str, Any]) -> Any:
        """The builder's model for the full ``config``; a ``ValueError`` of the builder becomes a one-line
        :class:`ConfigValueError` naming the model."""
        try:
            model = self.builder(dict(config))
        except ValueError as e:
            message = " ".join(str(e).split())
            raise ConfigValueError(f"model {self.name!r}: the config is not valid: {message}") from e
        if not model.built:
            raise RuntimeError(f"builder of {self.name!r} returned an unbuilt model")
        return model


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(fn: Callable[[], ModelSpec] | ModelSpec) -> Callable[[], ModelSpec] | ModelSpec:
    """Registers a spec. Use as a decorator on a zero-argument function returning a ModelSpec,
    or call with a ModelSpec directly. Registering a name twice is an error."""
    spec = fn() if callable(fn) and not isinstance(fn, ModelSpec) else fn
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"register_model expects a ModelSpec (or a function returning one), got {spec!r}")
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is already registered (by {_REGISTRY[spec.name].paper!r})")
    _REGISTRY[spec.name] = spec
    return fn


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted registered names, optionally filtered by an fnmatch pattern such as ``"hyper_*"``."""
    names = sorted(_REGISTRY)
    if pattern is None:
        return names
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def get_spec(name: str) -> ModelSpec:
    """The spec registered under ``name``; an unknown name lists the closest registered ones."""
    if not isinstance(name, str):
        raise UnknownModelError(
            f"a model name must be a string, got {name!r}; registered: {', '.join(sorted(_REGISTRY))}"
        )
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.4)
        hint = f"closest: {', '.join(close)}" if close else f"registered: {', '.join(sorted(_REGISTRY))}"
        raise UnknownModelError(f"unknown model {name!r}; {hint}") from None


def merge_config(
    defaults: Mapping[str, Any], overrides: Mapping[str, Any], what: str, source: str = "zoo.get"
) -> dict[str, Any]:
    """``defaults`` updated with ``overrides``; an unknown key is an error naming the valid keys."""
    merged = copy.deepcopy(dict(defaults))
    unknown = sorted(set(overrides) - set(merged))
    if unknown:
        raise UnknownConfigKeyError(
            f"{what}: unknown key(s) {', '.join(map(repr, unknown))} (from {source}); "
            f"valid keys: {', '.join(sorted(merged))}"
        )
    for key, value in overrides.items():
        check_config_value(key, value, merged[key], what, source)
    merged.update(overrides)
    return merged


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_config_value(key: str, value: Any, default: Any, what: str, source: str = "zoo.get") -> None:
    """Raises :class:`ConfigValueError` unless ``value`` is of the kind of ``default`` (see the module
    docstring); the message names the key, the value, where it came from and what is expected."""
    if default is None:
        return
    if isinstance(default, bool):
        ok, expected = isinstance(value, bool), "true or false"
    elif _whole(default):
        low = 1 if default > 0 else (0 if default == 0 else None)
        ok = _whole(value) and (low is None or value >= low)
        expected = "a whole number" + (f" >= {low}" if low is not None else "")
    elif isinstance(default, float):
        ok, expected = _number(value), "a finite number"
    elif isinstance(default, str):
        ok, expected = isinstance(value, str), "a string"
    elif isinstance(default, list | tuple):
        ok, expected = isinstance(value, list | tuple), "a list"
    elif isinstance(default, Mapping):
        ok, expected = isinstance(value, Mapping), "a mapping"
    else:
        return
    if not ok:
        raise ConfigValueError(
            f"{what}: {key}={value!r} (from {source}) must be {expected}, like its default {default!r}"
        )


def describe(name: str) -> dict[str, Any]:
    """The spec as plain data: task, paper row, default config and recipe, input spec."""
    spec = get_spec(name)
    return {
        "name": spec.name,
        "task": spec.task,
        "paper": spec.paper,
        "description": spec.description,
        "paper_params": spec.paper_params,
        "config": spec.default_config(),
        "recipe": spec.default_recipe(),
        "input_spec": {k: (tuple(s), d) for k, (s, d) in spec.input_spec.items()},
    }


def get(name: str, weights: str | None = None, **overrides: Any) -> Any:
    """Builds the registered model ``name`` with config ``overrides``; returns a built keras.Model.

    ``weights`` (optional) is a path to a ``.keras``/``.weights.h5`` file or a trainer ``model_dir``;
    loading is delegated to the builder's spec through ``zoo.transfer.load_weights`` so that a model
    whose head changed (e.g. another ``num_classes``) keeps its backbone and gets a fresh head.
    """
    spec = get_spec(name)
    config = merge_config(spec.config, overrides, what=f"model {name!r}")
    model = spec.build(config)
    if weights is not None:
        from zoo.transfer import load_weights

        load_weights(model, weights)
    return model
