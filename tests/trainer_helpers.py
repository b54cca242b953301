"""A tiny task and model for the trainer tests, and a script entry point for subprocess tests.

Run as a script (``python tests/trainer_helpers.py --model=tiny_mlp ...``) it is the trainer with
:class:`TinyTask` substituted for the spec's task, so distribution, resume and fault tests can start
real trainer processes on 2 logical CPU devices without depending on the image data.

TinyTask: 4 features -> 3 classes, labels from a fixed linear rule; the recipe key ``nan_at_batch``
(default -1: never) makes the train stream yield a batch of NaN features at that index (fault tests).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from zoo.registry import ModelSpec, get_spec, register_model  # noqa: E402
from zoo.tasks.base import ForwardOutput, Task, TaskData  # noqa: E402

NUM_FEATURES, NUM_CLASSES = 4, 3


def tiny_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, NUM_FEATURES)).astype("float32")
    w = np.array([[1.0, -1.0, 0.5], [0.5, 1.0, -1.0], [-1.0, 0.5, 1.0], [0.3, 0.3, 0.3]], "float32")
    y = np.argmax(x @ w, axis=1).astype("int32")
    return x, y


class TinyTask(Task):
    name = "tiny_classification"
    datasets = ("tiny",)
    recipe_keys = ("nan_at_batch",)

    def build_data(self, dataset, data_dir, global_batch_size, config, recipe, seed) -> TaskData:
        x, y = tiny_data(256, 1)
        xt, yt = tiny_data(96, 2)
        train = tf.data.Dataset.from_tensor_slices((x, y)).repeat().shuffle(64, seed=seed)
        train = train.batch(global_batch_size, drop_remainder=True)
        nan_at = int(recipe.get("nan_at_batch", -1))
        if nan_at >= 0:
            train = train.enumerate().map(
                lambda i, b: (tf.where(i == nan_at, b[0] * np.float32("nan"), b[0]), b[1])
            )
        test = tf.data.Dataset.from_tensor_slices((xt, yt)).batch(32)
        return TaskData(train=train, eval=test, test=test, sizes={"train": 256, "eval": 96, "test": 96})

    def forward(self, model, batch, carry, training) -> ForwardOutput:
        x, y = batch
        logits = model(x, training=training)
        loss = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        return ForwardOutput(per_example_loss=loss, carry=carry, outputs={"logits": logits})

    def metrics(self) -> dict[str, Any]:
        return {"accuracy": keras.metrics.SparseCategoricalAccuracy(name="accuracy")}

    def update_metrics(self, metrics: Mapping[str, Any], batch, outputs) -> None:
        metrics["accuracy"].update_state(batch[1], outputs["logits"])

    def evaluate(self, model, dataset) -> dict[str, float]:
        acc = keras.metrics.SparseCategoricalAccuracy()
        for x, y in dataset:
            acc.update_state(y, model(x, training=False))
        return {"accuracy": float(acc.result())}

    def serving_functions(self, model, config):
        @tf.function(input_signature=[tf.TensorSpec([None, NUM_FEATURES], tf.float32, name="features")])
        def serve(features):
            logits = model(features, training=False)
            return {"logits": logits, "probabilities": tf.nn.softmax(logits)}

        return {"serving_default": serve}

    def evaluate_serving(self, loaded, dataset) -> dict[str, float]:
        serve = loaded.signatures["serving_default"]
        correct = total = 0
        for x, y in dataset:
            pred = np.argmax(serve(features=x)["logits"].numpy(), axis=1)
            correct += int(np.sum(pred == y.numpy()))
            total += len(pred)
        return {"accuracy": correct / total}

    def warmup_inputs(self, model, config):
        return {"serving_default": {"features": np.zeros((1, NUM_FEATURES), "float32")}}


class CountingTask(TinyTask):
    """TinyTask with a per-replica carry: a [batch, 1] counter that every step increments."""

    def initial_carry(self, model, batch_size):
        return tf.zeros([batch_size, 1])

    def forward(self, model, batch, carry, training) -> ForwardOutput:
        out = super().forward(model, batch, carry, training)
        return ForwardOutput(per_example_loss=out.per_example_loss, carry=carry + 1.0, outputs=out.outputs)


def build_tiny_mlp(config: dict[str, Any]) -> keras.Model:
    reg = keras.regularizers.L2(config["weight_decay"]) if config["weight_decay"] else None
    inputs = keras.Input((NUM_FEATURES,), name="features")
    h = keras.layers.Dense(config["units"], kernel_regularizer=reg, name="dense")(inputs)
    if config["batch_norm"]:
        h = keras.layers.BatchNormalization(synchronized=True, name="bn")(h)
    h = keras.layers.Activation("relu")(h)
    if config["dropout"]:
        h = keras.layers.Dropout(config["dropout"], seed=1)(h)
    outputs = keras.layers.Dense(NUM_CLASSES, kernel_regularizer=reg, name="logits")(h)
    return keras.Model(inputs, outputs, name="tiny_mlp")


TINY_SPEC = ModelSpec(
    name="tiny_mlp",
    builder=build_tiny_mlp,
    task="image_classification",  # the tests pass TinyTask explicitly
    paper="test model",
    config={"units": 8, "weight_decay": 1e-3, "dropout": 0.0, "batch_norm": True},
    recipe={
        "dataset": "tiny",
        "batch_size": 16,
        "train_steps": 20,
        "optimizer": "sgd",
        "momentum": 0.9,
        "learning_rate": 0.1,
        "clip_norm": 5.0,
        "nan_at_batch": -1,
    },  # fmt: skip
    input_spec={"features": ((NUM_FEATURES,), "float32")},
)


def register_tiny() -> None:
    """Registers ``tiny_mlp`` (script mode only: in-process tests pass TINY_SPEC to ``flags.resolve`` so
    that the registry other tests enumerate stays unchanged)."""
    try:
        get_spec("tiny_mlp")
    except KeyError:
        register_model(TINY_SPEC)


if __name__ == "__main__":
    from trainers import train

    register_tiny()
    train.run(task=TinyTask())
