"""The trainer's checkpoints: one object that saves and restores a run's state in ``--model_dir``.

A :class:`Checkpointer` holds named trackables (the model, the optimizer, whose ``iterations`` is the step
counter, the train iterator where tf.data can save it, and the loop's own state such as the task's carry)
in a ``tf.train.CheckpointManager`` keeping the last three checkpoints.

- :meth:`Checkpointer.restore` restores the latest checkpoint of ``--model_dir`` into every trackable
  the checkpoint holds, and reports the ones it lacks (e.g. a run whose iterator could not be saved: its
  stream restarts).
- :meth:`Checkpointer.save` saves every trackable; when tf.data cannot save the iterator (a pipeline with
  a ``py_function``), it says so once and keeps saving the rest.
- Multi-worker: every worker must write its checkpoint (the save is collective), but only the chief
  writes to ``--model_dir``; the others write to a scratch directory that :meth:`close` removes.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

__all__ = ["Checkpointer", "ITERATOR"]

#: The name of the train iterator among the trackables (dropped when tf.data cannot save it).
ITERATOR = "iterator"
_KEEP = 3


def _saved_names(path: str) -> set[str]:
    """The names of the objects the checkpoint at ``path`` saved (its root's children). Variable keys
    do not tell: a variable shared by the model and the optimizer is saved under one of them only."""
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(tf.train.load_checkpoint(path).get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    return {child.local_name for child in graph.nodes[0].children}


class Checkpointer:
    """Saves and restores ``trackables`` (name -> trackable) in ``model_dir``.

    Args:
      model_dir: the run's directory; checkpoints are read from it.
      trackables: what a checkpoint holds, e.g. ``{"model": m, "optimizer": o, "iterator": it}``.
      chief: whether this process writes to ``model_dir``; other workers write to a scratch directory.
      say: prints one line (warnings).
    """

    def __init__(
        self,
        model_dir: str,
        trackables: Mapping[str, Any],
        *,
        chief: bool = True,
        say: Callable[[str], None] = print,
    ) -> None:
        self.model_dir = model_dir
        self.scratch = None if chief else tempfile.mkdtemp(prefix="zoo_worker_ckpt_")
        self._say = say
        self._trackables = dict(trackables)
        self._manager = self._new_manager()

    def _new_manager(self) -> tf.train.CheckpointManager:
        directory = self.scratch or self.model_dir
        return tf.train.CheckpointManager(tf.train.Checkpoint(**self._trackables), directory, _KEEP)

    @property
    def names(self) -> tuple[str, ...]:
        """The names of what a checkpoint saved now holds."""
        return tuple(self._trackables)

    @property
    def latest(self) -> str | None:
        """The newest checkpoint this process wrote or found (None if none yet)."""
        return self._manager.latest_checkpoint

    def restore(self) -> tuple[str | None, list[str]]:
        """Restores the latest checkpoint of ``model_dir``: ``(its path or None, names it lacked)``."""
        latest = tf.train.latest_checkpoint(self.model_dir)
        if not latest:
            return None, []
        saved = _saved_names(latest)
        present = {name: obj for name, obj in self._trackables.items() if name in saved}
        tf.train.Checkpoint(**present).restore(latest).assert_existing_objects_matched()
        return latest, sorted(set(self._trackables) - saved)

    def save(self, step: int) -> str:
        """Saves a checkpoint numbered ``step``; returns its path."""
        try:
            return self._manager.save(checkpoint_number=step)
        except (tf.errors.OpError, ValueError, TypeError) as e:
            if ITERATOR not in self._trackables:
                raise
            # tf.data cannot save every pipeline (e.g. one with a py_function): keep the rest.
            self._say(f"warning: cannot checkpoint the data iterator ({e}); saving the rest only")
            del self._trackables[ITERATOR]
            self._manager = self._new_manager()
            return self._manager.save(checkpoint_number=step)

    def close(self) -> None:
        """Removes this worker's scratch directory (a no-op on the chief)."""
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None
