"""The task interface: what the trainer and the exporter dispatch on.

A :class:`ModelSpec` names its task (``spec.task``); ``zoo.tasks.get_task(name)`` returns the
task object. A task knows its datasets, its per-example loss, its metrics, its full-split
evaluation and its serving signatures. Adding a model never means editing the trainer; adding a
kind of problem means adding one task module.

The trainer's step, per replica (see ``trainers/loop.py``)::

    carry = task.initial_carry(model, per_replica_batch)        # () for stateless tasks
    out = task.forward(model, batch, carry, training=True)       # inside XLA (jit_compile)
    loss = sum(out.per_example_loss) / global_batch + sum(model.losses) / replicas
    grads -> optimizer (outside XLA); task.update_metrics(metrics, batch, out.outputs)
    carry = out.carry                                            # truncated BPTT state etc.

Batches are ``(inputs, targets)`` tuples: ``inputs`` matches the model's input structure
(a tensor or a dict keyed like ``spec.input_spec``), ``targets`` is whatever ``forward`` expects.

Recipe keys have one declaration: :data:`TRAINER_RECIPE_KEYS` (read by the trainer),
``zoo.optim.OPTIMIZER_RECIPE_KEYS`` (read by the optimizer) and each task's ``recipe_keys`` (read by its
``build_data``). :func:`recipe_keys` is their union: what a spec's recipe may hold and what the trainer's
``--config`` accepts besides the model config.
"""

from __future__ import annotations

import abc
import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from zoo.optim import OPTIMIZER_RECIPE_KEYS

__all__ = ["Task", "TaskData", "ForwardOutput", "TRAINER_RECIPE_KEYS", "named_function", "recipe_keys"]

#: Recipe keys the trainer reads for every task: the default ``--dataset``, ``--batch_size`` and
#: ``--train_steps``.
TRAINER_RECIPE_KEYS = ("dataset", "batch_size", "train_steps")


@dataclasses.dataclass
class TaskData:
    """Datasets for one run.

    Attributes:
      train: infinite (repeated), shuffled, batched with ``drop_remainder=True`` at the *global* batch
        size; yields ``(inputs, targets)``.
      eval: finite validation split (or ``None``), batched; used by ``--eval_every``.
      test: finite test split (or ``None``), batched; used for the final report.
      sizes: number of examples per split, e.g. ``{"train": 1347, "eval": 0, "test": 450}`` (for the
        start-up summary line and epoch -> step conversion: ``sizes["train"] / batch_size`` steps make
        one epoch, so ``sizes["train"]`` counts the units the global batch size counts).
      size_unit: what ``sizes`` counts, plural, for the start-up line (``"images"``, ``"videos"``,
        ``"windows of 100 characters"``).
      assets: files to copy into the SavedModel's ``assets.extra`` (e.g. a vocabulary), name -> bytes.
      info: anything else the task wants to remember (vocabulary, num_classes, ...).
      checkpoint_input: save the train iterator's position in checkpoints. tf.data saves the contents of
        its shuffle and prefetch buffers too, so a task whose batches are large (YouTube-8M frame batches
        are ~1.4 GB) sets False: a resumed run then restarts its (reshuffled) input stream.
    """

    train: Any
    eval: Any | None
    test: Any | None
    sizes: Mapping[str, int]
    assets: Mapping[str, bytes] = dataclasses.field(default_factory=dict)
    size_unit: str = "examples"
    info: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    checkpoint_input: bool = True


@dataclasses.dataclass
class ForwardOutput:
    """What ``Task.forward`` returns.

    Attributes:
      per_example_loss: float32 ``[B]`` loss of each example in the (per-replica) batch, *not* averaged;
        the trainer divides the sum by the global batch size.
      carry: state to feed into the next step's ``forward`` (``()`` for stateless tasks).
      outputs: tensors ``update_metrics`` needs (e.g. ``{"logits": ...}``).
    """

    per_example_loss: Any
    carry: Any = ()
    outputs: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class Task(abc.ABC):
    """Base class for tasks. Subclasses set ``name`` and ``datasets`` and implement the methods."""

    #: task name, as used in ``ModelSpec.task``.
    name: str = ""
    #: dataset names this task can load (``--dataset``), first is the default.
    datasets: tuple[str, ...] = ()
    #: recipe keys this task reads (in ``build_data`` etc.) beyond the trainer's and the optimizer's.
    recipe_keys: tuple[str, ...] = ()

    # ----------------------------------------------------------------- data
    def check_data(self, dataset: str, data_dir: str | None) -> None:
        """Raises ``ValueError`` before training if ``dataset`` is unknown for this task, or
        ``data_dir`` does not exist or holds no files of the expected format. The message names the
        value, the valid choices and the flag it came from."""
        if dataset not in self.datasets:
            raise ValueError(
                f"--dataset={dataset!r} is not a dataset of task {self.name!r}; "
                f"valid: {', '.join(self.datasets)}"
            )

    @abc.abstractmethod
    def build_data(
        self,
        dataset: str,
        data_dir: str | None,
        global_batch_size: int,
        config: Mapping[str, Any],
        recipe: Mapping[str, Any],
        seed: int,
    ) -> TaskData:
        """Builds the tf.data pipelines for ``dataset`` (see :class:`TaskData`)."""

    def prepare_model(self, model: Any, data: TaskData) -> None:
        """Adapts a freshly built ``model`` to the run's ``data`` before training, like a Keras
        ``Normalization`` layer's ``adapt`` (the handwriting task stores the training split's offset
        statistics in the model). A restored checkpoint then overwrites what it set. Default: nothing."""
        return None

    # ----------------------------------------------------------------- step
    def initial_carry(self, model: Any, batch_size: int) -> Any:
        """State carried between training steps for ``batch_size`` examples; ``()`` by default."""
        return ()

    @abc.abstractmethod
    def forward(self, model: Any, batch: Any, carry: Any, training: bool) -> ForwardOutput:
        """Runs the model on one batch; pure (XLA-compilable), no Python side effects."""

    def metrics(self) -> dict[str, Any]:
        """Fresh streaming keras metrics reported during training, name -> metric."""
        return {}

    def update_metrics(self, metrics: Mapping[str, Any], batch: Any, outputs: Mapping[str, Any]) -> None:
        """Updates ``metrics`` (from :meth:`metrics`) with one batch's ``outputs``; default none."""
        return None

    def evaluate(self, model: Any, dataset: Any) -> dict[str, float]:
        """Full pass over a finite split; returns named scalars (e.g. accuracy, bits per character)."""
        return {}

    # -------------------------------------------------------------- serving
    def bind_assets(self, model: Any, assets: Mapping[str, bytes]) -> None:
        """Gives the task the run's ``assets`` (``TaskData.assets``, or the files a ``model_dir`` lists) for
        ``model`` before :meth:`serving_functions` or :meth:`evaluate` use them: the translation task's
        subword model becomes its tokenizer. The exporter and the tools call it with what the run wrote;
        the trainer with ``TaskData.assets``. Default: nothing."""
        return None

    def serving_resources(self, model: Any) -> list[Any]:
        """TensorFlow resources the serving functions of ``model`` use besides the model's own variables
        (e.g. a tokenizer's op state); the exporter tracks them so the SavedModel holds them. Default: none.
        """
        return []

    @abc.abstractmethod
    def serving_functions(self, model: Any, config: Mapping[str, Any]) -> dict[str, Any]:
        """``{signature_name: tf.function with a full input_signature}``; must include
        ``"serving_default"``. Each returns a dict of named outputs."""

    @abc.abstractmethod
    def warmup_inputs(self, model: Any, config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """``{signature_name: {input_name: numpy array}}``: one small, valid request per signature,
        written as TF Serving warmup records."""

    def evaluate_serving(self, loaded: Any, dataset: Any) -> dict[str, float]:
        """Scores an exported SavedModel (``tf.saved_model.load`` result, no zoo code needed to run
        it) on a finite split through its ``serving_default`` signature; used after export to print
        the accuracy a TF Serving client would see. Default: nothing to report."""
        return {}

    # -------------------------------------------------------------- summaries
    def write_summaries(self, model: Any, step: int) -> None:
        """Extra TensorBoard summaries at eval time (e.g. generated kernels); default none.
        Called inside the trainer's default summary writer context."""
        return None


def recipe_keys(task: Task) -> tuple[str, ...]:
    """Every recipe key a run of ``task`` reads, sorted: the trainer's (:data:`TRAINER_RECIPE_KEYS`), the
    optimizer's (``zoo.optim.OPTIMIZER_RECIPE_KEYS``) and the task's own (``task.recipe_keys``)."""
    return tuple(sorted({*TRAINER_RECIPE_KEYS, *OPTIMIZER_RECIPE_KEYS, *task.recipe_keys}))


def named_function(fn: Any, specs: list[Any]) -> Any:
    """A serving signature: ``tf.function(fn)`` whose parameters are named after ``specs`` (``fn`` may take
    ``*states``), so the concrete function accepts keyword inputs ``ids=..., state_0=...`` like the SavedModel
    signature (TF Serving clients address inputs by these names)."""
    params = [inspect.Parameter(s.name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for s in specs]

    def named(*args: Any) -> Any:
        return fn(*args)

    named.__name__ = fn.__name__
    named.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return tf.function(named, input_signature=specs)
