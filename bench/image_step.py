"""The trainer's step of an image model on a fixed synthetic batch, and interleaved timing of such steps.

Shared by ``bench/train_step.py`` (hyper vs plain WRN, mirrored vs single) and ``bench/wrn_step.py``
(compile and batch-norm modes).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

__all__ = ["make_step", "time_interleaved"]


def make_step(model_name: str, strategy: Any, batch_size: int, jit: bool, fused_bn: bool = True) -> Callable:
    """A zero-argument callable running one ``trainers.loop.TrainLoop`` step of ``model_name`` (forward,
    backward, SGD momentum update, batch-norm statistics) on a fixed random batch; returns the loss.
    ``fused_bn=False`` makes the zoo's batch norm layers take Keras' own (unfused) path."""
    import keras
    import numpy as np
    import tensorflow as tf

    import zoo
    from trainers.loop import TrainLoop
    from zoo.layers.batch_norm import BatchNormalization
    from zoo.optim import build_optimizer
    from zoo.tasks import get_task

    spec = zoo.get_spec(model_name)
    ((shape, _),) = spec.input_spec.values()
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(batch_size, *shape)).astype("float32")
    labels = rng.integers(0, 10, size=(batch_size,)).astype("int32")
    batch = (tf.constant(images), tf.constant(labels))
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = zoo.get(model_name)
        optimizer = build_optimizer({"optimizer": "sgd", "momentum": 0.9, "learning_rate": 0.01})
    if not fused_bn:
        for layer in model._flatten_layers(include_self=False):
            if isinstance(layer, BatchNormalization):
                layer._fused_applies = lambda *args: False
    loop = TrainLoop(
        strategy=strategy,
        model=model,
        task=get_task(spec.task),
        optimizer=optimizer,
        global_batch_size=batch_size,
        jit_compile=jit,
    )
    data = iter(tf.data.Dataset.from_tensors(batch).repeat())
    return lambda: float(loop.step(data))


def time_interleaved(steps: dict[str, Callable], rounds: int, warmup: int) -> dict[str, tuple[float, float]]:
    """``{name: (median wall s, median process CPU s)}`` over ``rounds`` rounds of one call of each, after
    ``warmup`` untimed calls of each (tracing, compilation). Interleaving exposes every configuration to
    the same machine load."""
    if rounds < 1:
        raise ValueError(f"--rounds={rounds} must be >= 1")
    for step in steps.values():
        for _ in range(warmup):
            step()
    wall: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            w0, c0 = time.perf_counter(), time.process_time()
            step()
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in steps}
