"""The distributed training step: XLA per replica under any ``tf.distribute`` strategy.

Keras 3 refuses ``compile(jit_compile=True)`` under tf.distribute (keras-team/keras#19005), so the
trainer runs its own step. One step, for a global batch of ``B`` examples over ``R`` replicas:

1. A plain tf.data iterator yields the global batch (its position is checkpointable); in
   ``strategy.run`` every replica takes its contiguous ``B / R`` slice.
2. Per replica, a ``tf.function(jit_compile=True)`` (the XLA cluster) runs ``task.forward`` and returns
   ``loss = sum(per_example_loss) / B + sum(model.losses) / R`` (this replica's share of the global loss),
   its gradients, the task's outputs (for metrics) and its carry (per-replica state such as LSTM states).
   Variable assignments of the forward pass (BatchNorm moving statistics, dropout seed states) touch only
   this replica's copies.
3. Outside XLA, still per replica: clipping factors are computed from the gradient summed over replicas
   (global/per-tensor norm, :func:`zoo.optim.clip_gradients`) and applied to the local gradients; the
   Keras optimizer then all-reduces (sums) them and updates every copy; the float non-trainable variables
   (BatchNorm moving statistics) are averaged over replicas; the task's metrics are updated.
4. In cross-replica context the averaged statistics are assigned to every copy, so replicas stay
   identical (dropout seed states advance identically everywhere), and the reported loss is
   ``strategy.reduce(SUM, loss)``: the true mean loss of the global batch plus the regularization.

The carry (``Task.initial_carry``/``ForwardOutput.carry``: tensors whose first axis is the batch) lives in
variables that hold the *global* batch's rows, ``TrainLoop.carry_checkpoint``: every replica reads its
contiguous ``B / R`` rows (the rows of its slice of the batch), and after the step the replicas' new
carries are gathered in replica order (``strategy.gather``, across workers too) and assigned back. So the
carry is checkpointed with the model (``TrainLoop.checkpoint_state``), a resumed run continues its streams
exactly, and a resume with another number of replicas still finds each stream's state.

Synchronized BatchNorm and XLA: ``BatchNormalization(synchronized=True)`` all-reduces the batch moments
through ``ReplicaContext.all_reduce``; on CPU (and any non-all-GPU) MirroredStrategy implements it with
``merge_call``, which cannot run inside a nested XLA function ("merge_call called while defining a new
graph or a tf.function"). Inside the XLA cluster the trainer therefore computes batch moments per replica
(each replica normalises with its own ``B / R`` examples, like per-core BatchNorm on TPUs) and
synchronises the *moving* statistics by averaging them across replicas after every step (step 3). The
moving mean is then exactly the synchronized one (the mean of equal-sized replica means is the global
mean); the moving variance is the mean of the replica variances (it omits the spread between replica
means). With one replica nothing changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import keras
import tensorflow as tf

from zoo.optim import clip_gradients
from zoo.tasks.base import Task

__all__ = ["TrainLoop", "replica_local_batch_norm"]


@contextlib.contextmanager
def replica_local_batch_norm(model: keras.Model) -> Iterator[None]:
    """While tracing, makes synchronized BatchNorm layers of ``model`` use replica-local batch moments
    (see the module docstring); restores ``synchronized=True`` afterwards."""
    layers = [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization) and layer.synchronized
    ]
    for layer in layers:
        layer.synchronized = False  # read by BatchNormalization.call while the XLA function is traced
    try:
        yield
    finally:
        for layer in layers:
            layer.synchronized = True


def _assign(var: tf.Variable, value: tf.Tensor) -> Any:
    return var.assign(tf.cast(value, var.dtype))


class TrainLoop:
    """One training step of ``task`` on ``model`` under ``strategy`` (model/optimizer built in its scope).

    Args:
      strategy: the ``tf.distribute`` strategy whose scope holds the model's and optimizer's variables.
      model: a built keras.Model.
      task: the model's :class:`zoo.tasks.base.Task`.
      optimizer: a Keras optimizer built from the recipe (:func:`zoo.optim.build_optimizer`).
      global_batch_size: examples per step over all replicas (what ``per_example_loss`` sums divide by).
      jit_compile: compile the per-replica forward/backward with XLA.
      clip_norm / clip_per_tensor: gradient clipping of the summed gradient (None: off).
    """

    def __init__(
        self,
        *,
        strategy: tf.distribute.Strategy,
        model: keras.Model,
        task: Task,
        optimizer: keras.optimizers.Optimizer,
        global_batch_size: int,
        jit_compile: bool = True,
        clip_norm: float | None = None,
        clip_per_tensor: float | None = None,
    ) -> None:
        self.strategy = strategy
        self.model = model
        self.task = task
        self.optimizer = optimizer
        self.global_batch_size = int(global_batch_size)
        self.num_replicas = int(strategy.num_replicas_in_sync)
        if self.global_batch_size % self.num_replicas:
            raise ValueError(
                f"--batch_size={global_batch_size} is not divisible by the {self.num_replicas} replicas"
            )
        self.per_replica_batch_size = self.global_batch_size // self.num_replicas
        self.jit_compile = bool(jit_compile)
        self.clip_norm = clip_norm
        self.clip_per_tensor = clip_per_tensor
        with strategy.scope():
            self.metrics: dict[str, Any] = dict(task.metrics())
            optimizer.build(model.trainable_variables)
        # Float non-trainable state (BatchNorm moving statistics) is averaged over replicas every step;
        # integer state (dropout seed generators) advances identically on every replica.
        self._sync_vars = [v for v in model.non_trainable_variables if "float" in str(v.dtype)]
        # The XLA cluster: forward + loss + gradients of one replica.
        self.loss_and_grads = tf.function(self._loss_and_grads, jit_compile=self.jit_compile)
        self._train_step = tf.function(self._step)
        # The carry's home (module docstring): variables of the global batch's rows, created in the
        # strategy's scope (mirrored: every replica reads its local copy; assigned in cross-replica context).
        self._carry_structure = task.initial_carry(model, self.global_batch_size)
        self.carry_checkpoint = tf.Module(name="carry")
        with strategy.scope():
            self.carry_checkpoint.states = [
                tf.Variable(t, trainable=False, name=f"carry_{i}")
                for i, t in enumerate(tf.nest.flatten(self._carry_structure))
            ]

    # ------------------------------------------------------------------ per replica
    def _loss_and_grads(self, batch: Any, carry: Any) -> tuple[Any, ...]:
        model = self.model
        with replica_local_batch_norm(model), tf.GradientTape() as tape:
            out = self.task.forward(model, batch, carry, training=True)
            loss = tf.reduce_sum(tf.cast(out.per_example_loss, tf.float32)) / self.global_batch_size
            extra = model.losses
            if extra:
                loss += tf.add_n([tf.cast(x, tf.float32) for x in extra]) / self.num_replicas
        grads = tape.gradient(loss, model.trainable_variables)
        return loss, grads, out.carry, dict(out.outputs)

    def _local_slice(self, batch: Any) -> Any:
        """This replica's contiguous ``B / R`` slice of the global batch."""
        if self.num_replicas == 1:
            return batch
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        static = tf.get_static_value(replica)
        size = self.per_replica_batch_size

        def take(t: tf.Tensor) -> tf.Tensor:
            if static is not None:
                return t[int(static) * size : (int(static) + 1) * size]
            return tf.gather(
                tf.reshape(t, tf.concat([[self.num_replicas, size], tf.shape(t)[1:]], 0)), replica
            )

        return tf.nest.map_structure(take, batch)

    def _replica_step(self, batch: Any) -> tuple[Any, ...]:
        batch = self._local_slice(batch)
        carry = self._local_slice(self._read_carry())
        loss, grads, carry, outputs = self.loss_and_grads(batch, carry)
        ctx = tf.distribute.get_replica_context()
        variables = self.model.trainable_variables
        pairs = [(g, v) for g, v in zip(grads, variables, strict=True) if g is not None]
        grads, variables = [g for g, _ in pairs], [v for _, v in pairs]
        if self.clip_norm is not None or self.clip_per_tensor is not None:
            # Clip factors come from the global-batch gradient (the sum over replicas); each replica
            # scales its own gradients, so the optimizer's sum is the clipped global gradient.
            summed = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads) if self.num_replicas > 1 else grads
            grads = clip_gradients(grads, self.clip_norm, self.clip_per_tensor, norm_source=summed)
        # In replica context the Keras optimizer sums the gradients over replicas, then updates every copy.
        self.optimizer.apply(grads, variables)
        # The forward pass updated this replica's copy of the BatchNorm moving statistics (replica-local
        # moments); average them over replicas, to be assigned to every copy in cross-replica context.
        means = []
        if self._sync_vars and self.num_replicas > 1:
            # tf.identity places the read on this replica's device (all_reduce sends to the values' devices).
            local = [tf.identity(v.value) for v in self._sync_vars]
            means = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, local)
        self.task.update_metrics(self.metrics, batch, outputs)
        return loss, means, carry

    # ------------------------------------------------------------------ cross replica
    def _step(self, iterator: Any) -> Any:
        batch = next(iterator)
        # In the strategy's scope, so that this is the strategy's cross-replica context.
        with self.strategy.scope():
            loss, means, carry = self.strategy.run(self._replica_step, args=(batch,))
            for var, value in zip(self._sync_vars if means else [], means, strict=True):
                self.strategy.extended.update(var.value, _assign, args=(value,), group=False)
            states = self.carry_checkpoint.states
            for var, value in zip(states, tf.nest.flatten(carry) if states else [], strict=True):
                var.assign(tf.cast(self.strategy.gather(value, axis=0), var.dtype))  # replica order
            total = self.strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
        return total

    def _read_carry(self) -> Any:
        return tf.nest.pack_sequence_as(
            self._carry_structure, [v.read_value() for v in self.carry_checkpoint.states]
        )

    # ------------------------------------------------------------------ public
    @property
    def carry(self) -> Any:
        """The carry the next step starts from, for the global batch (rows in batch order; ``()`` for
        stateless tasks)."""
        return self._read_carry()

    def distribute(self, dataset: tf.data.Dataset) -> Iterator[Any]:
        """An iterator over ``dataset`` (global batches) that the step splits across replicas.

        A plain tf.data iterator, not ``experimental_distribute_dataset``: its position can be saved in a
        ``tf.train.Checkpoint`` (a ``DistributedIterator`` is not trackable). Each step reads one global
        batch on the host and every replica takes its contiguous ``B / R`` slice (by its replica id in
        the sync group, so under MultiWorkerMirroredStrategy every worker runs the same deterministic
        pipeline and the replicas still see disjoint examples).
        """
        return iter(dataset)

    def step(self, iterator: Iterator[Any]) -> tf.Tensor:
        """Runs one training step; returns the global-batch loss (a scalar tensor)."""
        return self._train_step(iterator)

    def checkpoint_state(self) -> dict[str, Any]:
        """Trackables of the loop's own state that a checkpoint holds beside the model and optimizer,
        name -> trackable (the trainer's ``Checkpointer`` saves and restores them; a checkpoint without
        one restores the rest and that state starts afresh): ``{"carry": carry_checkpoint}`` for a task
        with a carry, so a resumed run continues its streams."""
        return {"carry": self.carry_checkpoint} if self.carry_checkpoint.states else {}

    def metric_results(self) -> dict[str, float]:
        out = {}
        for name, metric in self.metrics.items():
            value = metric.result()
            if isinstance(value, Mapping):
                out.update({f"{name}/{k}": float(v) for k, v in value.items()})
            else:
                out[name] = float(value)
        return out

    def reset_metrics(self) -> None:
        for metric in self.metrics.values():
            metric.reset_state()
