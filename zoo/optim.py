"""Optimizers, learning-rate schedules and gradient clipping from a training recipe.

A recipe is plain data (``ModelSpec.recipe``, see ``zoo/registry.py``). This module turns its optimizer
keys into a Keras optimizer:

- ``optimizer``: ``"adam"`` | ``"sgd"`` | ``"adagrad"`` | ``"rmsprop"``; ``momentum`` and ``nesterov``
  (sgd), ``epsilon`` (optional, adam/adagrad/rmsprop).
- ``learning_rate``: a float, or ``{"schedule": "piecewise_constant", "boundaries": [...],
  "values": [...]}`` (the step schedules of HyperNetworks Tables 8 and 9), or ``{"schedule":
  "exponential", "initial_learning_rate": x, "decay_steps": n, "decay_rate": r, "staircase": bool}``.
- ``clip_norm`` (clip by the global norm of all gradients) and ``clip_per_tensor`` (clip each
  gradient tensor by its own norm). Clipping is *not* delegated to the Keras optimizer: under
  ``tf.distribute`` Keras clips each replica's gradients before they are summed, while the trainer
  must clip the summed (global-batch) gradient; ``trainers/loop.py`` calls :func:`clip_gradients` after
  its all-reduce.

Errors name the bad value, the valid choices and where the value came from (``source``);
:func:`check_optimizer_recipe` runs the same checks without building anything (the trainer calls it while
it validates its flags, before any TensorFlow state exists).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "OPTIMIZER_RECIPE_KEYS",
    "STEP_SCHEDULE_KEYS",
    "learning_rate_from_recipe",
    "check_optimizer_recipe",
    "build_optimizer",
    "clip_gradients",
]

OPTIMIZERS = ("adam", "sgd", "adagrad", "rmsprop")
SCHEDULES = ("piecewise_constant", "exponential")
#: The recipe keys this module reads (every task's recipe may set them; see zoo.tasks.base.recipe_keys).
OPTIMIZER_RECIPE_KEYS = (
    "optimizer", "learning_rate", "momentum", "nesterov", "epsilon", "clip_norm", "clip_per_tensor",
)  # fmt: skip
#: Keys of a ``learning_rate`` schedule that count optimizer steps (their meaning depends on the batch size).
STEP_SCHEDULE_KEYS = ("boundaries", "decay_steps")


def _check_positive(value: Any, what: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{what}={value!r} (from {source}) must be a positive number")
    return float(value)


def learning_rate_from_recipe(
    learning_rate: float | Mapping[str, Any], source: str = "recipe"
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """A float learning rate or a Keras schedule built from the recipe's ``learning_rate`` value."""
    if not isinstance(learning_rate, Mapping):
        return _check_positive(learning_rate, "learning_rate", source)
    kind = learning_rate.get("schedule")
    if kind == "piecewise_constant":
        expected = {"schedule", "boundaries", "values"}
    elif kind == "exponential":
        expected = {"schedule", "initial_learning_rate", "decay_steps", "decay_rate", "staircase"}
    else:
        raise ValueError(
            f"learning_rate schedule {kind!r} (from {source}) is unknown; valid: {', '.join(SCHEDULES)}"
        )
    unknown = sorted(set(learning_rate) - expected)
    if unknown:
        raise ValueError(
            f"learning_rate schedule {kind!r} (from {source}): unknown key(s) {unknown}; "
            f"valid keys: {sorted(expected)}"
        )
    if kind == "piecewise_constant":
        boundaries = learning_rate.get("boundaries", [])
        if not isinstance(boundaries, list | tuple) or not all(
            isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in boundaries
        ):
            raise ValueError(
                f"piecewise_constant boundaries {boundaries!r} (from {source}) must be a list of positive "
                "whole step numbers"
            )
        boundaries = [int(b) for b in boundaries]
        values = [_check_positive(v, "learning_rate value", source) for v in learning_rate.get("values", [])]
        if len(values) != len(boundaries) + 1:
            raise ValueError(
                f"piecewise_constant learning_rate (from {source}) needs len(values) == len(boundaries) + 1;"
                f" got {len(boundaries)} boundaries and {len(values)} values"
            )
        if boundaries != sorted(boundaries):
            raise ValueError(f"piecewise_constant boundaries {boundaries} (from {source}) must be increasing")
        if not boundaries:
            return values[0]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    return keras.optimizers.schedules.ExponentialDecay(
        initial_learning_rate=_check_positive(
            learning_rate.get("initial_learning_rate"), "initial_learning_rate", source
        ),
        decay_steps=int(_check_positive(learning_rate.get("decay_steps"), "decay_steps", source)),
        decay_rate=_check_positive(learning_rate.get("decay_rate"), "decay_rate", source),
        staircase=bool(learning_rate.get("staircase", False)),
    )


def _optimizer_arguments(recipe: Mapping[str, Any], source: str) -> tuple[str, dict[str, Any]]:
    """``(optimizer name, keyword arguments)`` from the recipe, every value checked."""
    name = recipe.get("optimizer", "adam")
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer {name!r} (from {source}) is unknown; valid: {', '.join(OPTIMIZERS)}")
    for key in ("clip_norm", "clip_per_tensor"):
        if recipe.get(key) is not None:
            _check_positive(recipe[key], key, source)
    learning_rate = learning_rate_from_recipe(recipe.get("learning_rate", 1e-3), source)
    kwargs: dict[str, Any] = {"learning_rate": learning_rate}
    if recipe.get("epsilon") is not None and name != "sgd":
        kwargs["epsilon"] = _check_positive(recipe["epsilon"], "epsilon", source)
    if name == "sgd":
        momentum = recipe.get("momentum") or 0.0
        if isinstance(momentum, bool) or not isinstance(momentum, int | float) or not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum={momentum!r} (from {source}) must be a number in [0, 1)")
        nesterov = recipe.get("nesterov", False)
        if not isinstance(nesterov, bool):
            raise ValueError(f"nesterov={nesterov!r} (from {source}) must be true or false")
        kwargs.update(momentum=float(momentum), nesterov=nesterov)
    return name, kwargs


def check_optimizer_recipe(recipe: Mapping[str, Any], *, source: str = "recipe") -> None:
    """Raises ``ValueError`` (naming the key, the value and ``source``) if :func:`build_optimizer` would
    fail on ``recipe``; creates no TensorFlow state, so it may run before the devices are configured."""
    _optimizer_arguments(recipe, source)


def build_optimizer(recipe: Mapping[str, Any], *, source: str = "recipe") -> keras.optimizers.Optimizer:
    """The Keras optimizer the recipe describes (without clipping; see :func:`clip_gradients`).

    Mixed precision in the zoo is bfloat16 (float32's exponent range), so no loss scaling is needed.
    """
    name, kwargs = _optimizer_arguments(recipe, source)
    if name == "adam":
        opt = keras.optimizers.Adam(**kwargs)
    elif name == "sgd":
        opt = keras.optimizers.SGD(**kwargs)
    elif name == "adagrad":
        opt = keras.optimizers.Adagrad(**kwargs)
    else:
        opt = keras.optimizers.RMSprop(**kwargs)
    return opt


def clip_gradients(
    grads: Sequence[Any],
    clip_norm: float | None = None,
    clip_per_tensor: float | None = None,
    norm_source: Sequence[Any] | None = None,
) -> list[Any]:
    """Clips each gradient to norm ``clip_per_tensor``, then all of them to global norm ``clip_norm``.

    Same arithmetic as ``tf.clip_by_norm`` then ``tf.clip_by_global_norm`` (``t * c / max(norm, c)``).
    Clipping only rescales, so the factors may be computed from other tensors than the ones scaled:
    ``norm_source`` (same structure as ``grads``) supplies the norms. The trainer passes the gradients
    summed over replicas as ``norm_source`` and scales each replica's own gradients, whose sum (taken by
    the optimizer) is then exactly the clipped global-batch gradient. ``None`` gradients pass through;
    either threshold may be ``None`` (no clipping of that kind).
    """
    grads = list(grads)
    source = list(norm_source) if norm_source is not None else list(grads)
    if len(source) != len(grads):
        raise ValueError(f"norm_source has {len(source)} tensors, grads has {len(grads)}")
    present = [i for i, g in enumerate(grads) if g is not None]
    if clip_per_tensor is not None:
        for i in present:
            norm = tf.norm(tf.cast(source[i], tf.float32))
            factor = clip_per_tensor / tf.maximum(norm, clip_per_tensor)
            grads[i] = grads[i] * tf.cast(factor, grads[i].dtype)
            source[i] = source[i] * tf.cast(factor, source[i].dtype)
    if clip_norm is not None and present:
        norm = tf.linalg.global_norm([tf.cast(source[i], tf.float32) for i in present])
        factor = clip_norm / tf.maximum(norm, clip_norm)
        for i in present:
            grads[i] = grads[i] * tf.cast(factor, grads[i].dtype)
    return grads
