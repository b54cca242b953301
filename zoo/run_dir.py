"""A trainer's ``--model_dir`` as the other tools read it.

The trainer (``trainers/train.py``) writes ``run.json`` = ``{"model", "config", "recipe", "dataset",
"data_dir", "assets"}`` and the task's assets (e.g. ``vocab.json``) beside its checkpoints. The exporter,
the sampler and the YouTube-8M eval/infer tools rebuild the model from it with :func:`restore`, so none of
them needs ``--model`` or ``--config`` repeated.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["RUN_FILE", "RunDirError", "parse_overrides", "parse_value", "read_run", "restore"]

#: The run description json in ``--model_dir``.
RUN_FILE = "run.json"


class RunDirError(ValueError):
    """A model_dir that cannot be restored (missing, no run.json naming a model, no checkpoint)."""


def parse_value(text: str) -> Any:
    """A ``--config key=value`` value: json or a Python literal (numbers, lists, booleans, None), else
    the string itself."""
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError):
            continue
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    return text


def parse_overrides(items: Sequence[str], flag: str = "--config") -> dict[str, Any]:
    """``["key=value", ...]`` -> ``{key: parsed value}``; an item without ``=`` names the flag."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise RunDirError(f"{flag}={item!r} is not key=value")
        out[key.strip()] = parse_value(text)
    return out


def read_run(model_dir: str) -> dict[str, Any]:
    """The ``run.json`` of ``model_dir`` as a dict (``{}`` when there is none)."""
    path = os.path.join(model_dir, RUN_FILE)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError) as e:
        raise RunDirError(f"{path} cannot be read as json: {e}") from e
    if not isinstance(info, dict):
        raise RunDirError(f"{path} is not a json object")
    return info


def restore(
    model_dir: str,
    model: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    checkpoint: str | None = None,
) -> tuple[Any, str, dict[str, Any], dict[str, Any]]:
    """``(keras_model, registered name, full model config, run info)`` rebuilt from ``model_dir``.

    The model name and config come from ``run.json`` unless ``model`` / ``overrides`` say otherwise (a
    config recorded for another model is ignored); the weights from ``checkpoint`` or the latest
    ``tf.train.Checkpoint(model=...)`` in ``model_dir``. Every object the model holds must be restored.
    """
    import tensorflow as tf

    import zoo

    if not os.path.isdir(model_dir):
        raise RunDirError(f"--model_dir={model_dir!r} does not exist or is not a directory")
    info = read_run(model_dir)
    name = model or info.get("model")
    if not name:
        raise RunDirError(f"--model_dir={model_dir!r} has no {RUN_FILE} naming the model; pass --model")
    config = dict(info.get("config") or {}) if name == info.get("model") else {}
    config.update(overrides or {})
    spec = zoo.get_spec(name)
    keras_model = zoo.get(name, **config)
    path = checkpoint or tf.train.latest_checkpoint(model_dir)
    if path is None:
        raise RunDirError(f"--model_dir={model_dir!r} holds no checkpoint (no 'checkpoint' index file)")
    status = tf.train.Checkpoint(model=keras_model).restore(path)
    status.expect_partial()
    status.assert_existing_objects_matched()
    return keras_model, name, {**spec.default_config(), **config}, {**info, "checkpoint": path}
