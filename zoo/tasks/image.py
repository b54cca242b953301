"""Image classification (HyperNetworks §4.1 MNIST, §4.2 CIFAR-10): data, loss, accuracy, serving.

Models of this task take one input ``images``, float32 ``[B, H, W, C]`` in [0, 1], and return logits
``[B, num_classes]``. Batches are ``(images, int32 labels [B])`` from :mod:`zoo.data.images`.

Recipe keys this task reads (besides the common ones):
  ``augment``: ``"mnist_pad_crop"`` | ``"cifar_pad_crop_flip"`` | ``None`` (HyperNetworks A.3.1, A.3.2);
  ``eval_batch_size``: batch size of the validation/test pipelines (default: the training batch size);
  ``validation_size``: examples carved from the end of the training files for validation (default the
  paper's 5,000 for MNIST and CIFAR-10; ignored for ``digits``, which has a fixed train/test split and
  no validation examples).

Serving: ``serving_default`` takes raw ``uint8 [N, H, W, C]`` images under the input key ``images``
(what a client has after decoding a PNG) and returns ``probabilities`` (float32 ``[N, K]``, softmax),
``classes`` (int64 ``[N]``, argmax) and ``logits`` (float32 ``[N, K]``).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from zoo.data import images as image_data
from zoo.tasks.base import ForwardOutput, Task, TaskData

__all__ = ["ImageClassificationTask", "TASK", "image_shape"]

SERVING_INPUT = "images"


def image_shape(model: Any) -> tuple[int, int, int]:
    """``(H, W, C)`` of the model's single ``images`` input; an error names what was found."""
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) != 1:
        raise ValueError(
            f"image_classification expects a model with exactly one input 'images' [B, H, W, C]; "
            f"model {getattr(model, 'name', model)!r} has inputs {[getattr(t, 'name', t) for t in inputs]}"
        )
    shape = tuple(inputs[0].shape[1:])
    if len(shape) != 3 or any(d is None for d in shape):
        raise ValueError(
            f"image_classification needs a fully defined image input [B, H, W, C]; model "
            f"{getattr(model, 'name', model)!r} has input shape {tuple(inputs[0].shape)}"
        )
    return tuple(int(d) for d in shape)


def check_fits(
    dataset: str,
    image_shape: tuple[int, ...] | None,
    num_classes: int | None,
    labels: Mapping[str, np.ndarray],
    source: str,
) -> None:
    """Raises ``ValueError`` before training when a model does not fit ``dataset``: its input image shape
    differs from the dataset's (:data:`zoo.data.images.IMAGE_SHAPES`), or a label of a split (``labels``:
    split -> int labels) lies outside ``[0, num_classes)``. ``None`` skips a check; ``source`` names where
    the model's values came from."""
    want = tuple(image_data.IMAGE_SHAPES[dataset])
    if image_shape is not None and tuple(int(d) for d in image_shape) != want:
        from zoo.registry import get_spec, list_models

        fitting = [
            n
            for n in list_models()
            if get_spec(n).task == "image_classification"
            and tuple(get_spec(n).input_spec.get("images", ((), ""))[0]) == want
        ]
        raise ValueError(
            f"--model takes images of shape {tuple(int(d) for d in image_shape)} ({source}) but --dataset="
            f"{dataset!r} has {want}; models for {want} images: {', '.join(fitting) or 'none registered'}"
        )
    if num_classes is None:
        return
    k = int(num_classes)
    for split, values in labels.items():
        if len(values) and (int(np.min(values)) < 0 or int(np.max(values)) >= k):
            low, high = int(np.min(values)), int(np.max(values))
            raise ValueError(
                f"--dataset={dataset!r} has label {high if high >= k else low} in its {split} split (labels "
                f"{low}..{high}) but --model has num_classes={k} ({source}): labels must lie in [0, {k}); "
                f"this dataset needs --config num_classes={high + 1} or more"
            )


def _output_classes(model: Any) -> int | None:
    outputs = getattr(model, "outputs", None) or []
    return int(outputs[0].shape[-1]) if len(outputs) == 1 and outputs[0].shape[-1] is not None else None


class ImageClassificationTask(Task):
    """Softmax classification of images; accuracy as the metric (HyperNetworks Tables 2 and 7)."""

    name = "image_classification"
    datasets = image_data.DATASETS
    recipe_keys = ("augment", "eval_batch_size", "validation_size")

    def __init__(self) -> None:
        # model -> compiled eval step, so repeated evaluations do not retrace.
        self._eval_steps: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    # ----------------------------------------------------------------- data
    def check_data(self, dataset: str, data_dir: str | None) -> None:
        super().check_data(dataset, data_dir)
        image_data.check_data_dir(dataset, data_dir)

    def build_data(
        self,
        dataset: str,
        data_dir: str | None,
        global_batch_size: int,
        config: Mapping[str, Any],
        recipe: Mapping[str, Any],
        seed: int,
    ) -> TaskData:
        self.check_data(dataset, data_dir)
        augment = recipe.get("augment")
        if augment is not None and augment not in image_data.AUGMENTATIONS:
            raise ValueError(
                f"recipe key augment={augment!r} is not valid; choices: None, "
                f"{', '.join(image_data.AUGMENTATIONS)}"
            )
        eval_batch_size = int(recipe.get("eval_batch_size") or global_batch_size)
        # ``digits`` has a fixed train/test split: the MNIST recipes' validation_size does not apply to it.
        validation_size = None if dataset == "digits" else recipe.get("validation_size")
        splits = {
            s: image_data.load(dataset, s, data_dir, validation_size=validation_size)
            for s in image_data.SPLITS
        }
        shape = splits["train"][0].shape[1:]
        # Refuse a model that cannot train on this data before anything is built (its config says what
        # it will take; prepare_model checks the built model again).
        input_shape = config.get("input_shape")
        check_fits(
            dataset,
            None if input_shape is None else tuple(input_shape),
            config.get("num_classes"),
            {s: splits[s][1] for s in image_data.SPLITS},
            source="its config",
        )
        train = image_data.train_dataset(*splits["train"], global_batch_size, augment=augment, seed=seed)
        val_images, val_labels = splits["validation"]
        eval_ds = (
            image_data.eval_dataset(val_images, val_labels, eval_batch_size) if len(val_labels) else None
        )
        test = image_data.eval_dataset(*splits["test"], eval_batch_size)
        sizes = {"train": len(splits["train"][1]), "eval": len(val_labels), "test": len(splits["test"][1])}
        return TaskData(
            train=train,
            eval=eval_ds,
            test=test,
            sizes=sizes,
            size_unit="images",
            info={
                "image_shape": tuple(int(d) for d in shape),
                "num_classes": image_data.NUM_CLASSES[dataset],
                "dataset": dataset,
                "label_range": (
                    min(int(np.min(y)) for _, y in splits.values() if len(y)),
                    max(int(np.max(y)) for _, y in splits.values() if len(y)),
                ),
            },
        )

    def prepare_model(self, model: Any, data: TaskData) -> None:
        """Checks the built model against the data (:func:`check_fits`): its ``images`` input shape and its
        number of logits against the labels of every split."""
        dataset, label_range = data.info.get("dataset"), data.info.get("label_range")
        if dataset is None or label_range is None:  # TaskData not made by build_data
            return
        check_fits(
            dataset,
            image_shape(model),
            _output_classes(model),
            {"train/validation/test": np.asarray(label_range)},
            source=f"model {getattr(model, 'name', model)!r}",
        )

    # ----------------------------------------------------------------- step
    def forward(self, model: Any, batch: Any, carry: Any, training: bool) -> ForwardOutput:
        images, labels = batch
        logits = keras.ops.cast(model(images, training=training), "float32")
        loss = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        return ForwardOutput(per_example_loss=loss, carry=carry, outputs={"logits": logits})

    def metrics(self) -> dict[str, Any]:
        return {"accuracy": keras.metrics.SparseCategoricalAccuracy(name="accuracy")}

    def update_metrics(self, metrics: Mapping[str, Any], batch: Any, outputs: Mapping[str, Any]) -> None:
        metrics["accuracy"].update_state(batch[1], outputs["logits"])

    def _eval_step(self, model: Any) -> Any:
        step = self._eval_steps.get(model)
        if step is None:

            @tf.function
            def step(images: Any, labels: Any) -> Any:
                logits = tf.cast(model(images, training=False), tf.float32)
                loss = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
                correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
                return tf.reduce_sum(loss), tf.reduce_sum(correct)

            self._eval_steps[model] = step
        return step

    def evaluate(self, model: Any, dataset: Any) -> dict[str, float]:
        """``{"accuracy", "loss", "num_examples"}`` over one pass of a finite ``(images, labels)`` split."""
        step = self._eval_step(model)
        total_loss, correct, count = 0.0, 0.0, 0
        for images, labels in dataset:
            loss, right = step(images, tf.cast(labels, tf.int32))
            total_loss += float(loss)
            correct += float(right)
            count += int(labels.shape[0])
        if count == 0:
            raise ValueError("evaluate: the dataset yielded no examples")
        return {"accuracy": correct / count, "loss": total_loss / count, "num_examples": float(count)}

    # -------------------------------------------------------------- serving
    def serving_functions(self, model: Any, config: Mapping[str, Any]) -> dict[str, Any]:
        h, w, c = image_shape(model)

        @tf.function(input_signature=[tf.TensorSpec([None, h, w, c], tf.uint8, name=SERVING_INPUT)])
        def serving_default(images: Any) -> dict[str, Any]:
            x = tf.cast(images, tf.float32) * (1.0 / 255.0)
            logits = tf.cast(model(x, training=False), tf.float32)
            return {
                "probabilities": tf.nn.softmax(logits, axis=-1),
                "classes": tf.argmax(logits, axis=-1, output_type=tf.int64),
                "logits": logits,
            }

        return {"serving_default": serving_default}

    def warmup_inputs(self, model: Any, config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        h, w, c = image_shape(model)
        images = np.random.default_rng(0).integers(0, 256, size=(2, h, w, c), dtype=np.uint8)
        return {"serving_default": {SERVING_INPUT: images}}

    def evaluate_serving(self, loaded: Any, dataset: Any, batch_size: int = 256) -> dict[str, float]:
        """Accuracy through ``loaded.signatures["serving_default"]`` fed uint8 images.

        ``dataset`` is either this task's float pipeline (``(float32 images in [0, 1], labels)`` batches,
        converted back to the exact uint8 values) or a numpy pair ``(uint8 images, labels)`` such as
        ``zoo.data.images.load("digits", "test")``.
        """
        serve = loaded.signatures["serving_default"]
        if isinstance(dataset, tuple) and len(dataset) == 2 and isinstance(dataset[0], np.ndarray):
            all_images, all_labels = dataset
            batches = [
                (all_images[i : i + batch_size], all_labels[i : i + batch_size])
                for i in range(0, len(all_labels), batch_size)
            ]
        else:
            batches = dataset
        correct, count = 0, 0
        for batch_images, labels in batches:
            raw = np.asarray(batch_images)
            if raw.dtype != np.uint8:
                raw = np.clip(np.rint(raw.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
            classes = serve(**{SERVING_INPUT: tf.constant(raw)})["classes"].numpy()
            correct += int(np.sum(classes == np.asarray(labels)))
            count += len(classes)
        if count == 0:
            raise ValueError("evaluate_serving: the dataset yielded no examples")
        return {"accuracy": correct / count, "num_examples": float(count)}

    # -------------------------------------------------------------- summaries
    def write_summaries(self, model: Any, step: int) -> None:
        """Image summaries of the kernels generated by every HyperConv2D layer (HyperNetworks Fig. 2,
        12, 13); nothing for models without one."""
        from zoo.viz.kernels import write_kernel_summaries

        write_kernel_summaries(model, step)


TASK = ImageClassificationTask()
