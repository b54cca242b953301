"""Tasks: the unit the trainer and exporter dispatch on (see ``zoo/tasks/base.py``)."""

from __future__ import annotations

import importlib

from zoo.tasks.base import ForwardOutput, Task, TaskData, recipe_keys

__all__ = ["Task", "TaskData", "ForwardOutput", "get_task", "recipe_keys"]

# task name -> module defining ``TASK`` (an instance of a Task subclass).
_MODULES = {
    "image_classification": "zoo.tasks.image",
    "char_lm": "zoo.tasks.char_lm",
    "video_classification": "zoo.tasks.video",
    "handwriting": "zoo.tasks.handwriting",
    "translation": "zoo.tasks.translation",
}


def get_task(name: str) -> Task:
    """The task object for ``name`` (a ``ModelSpec.task``)."""
    if name not in _MODULES:
        raise ValueError(f"unknown task {name!r}; valid: {', '.join(sorted(_MODULES))}")
    return importlib.import_module(_MODULES[name]).TASK
