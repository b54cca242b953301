"""The ``video_classification`` task: YouTube-8M multi-label classification (Abu-El-Haija et al. 2016).

Data (``--dataset`` / ``--data_dir``):

- ``yt8m_frame``: frame-level SequenceExamples, read by ``zoo.data.yt8m.frame_dataset``;
  ``yt8m_packed``: the same videos as packed frame-level records (``zoo-yt8m-preprocess
  --output_format=packed``; the same batches, parsed several times faster, README Benchmarks) for the same
  frame-level models; ``yt8m_video``: video-level Examples, read by ``video_dataset``. The record layout
  (feature names and sizes, id and label keys, ``num_classes``, ``max_frames``) is a
  ``zoo.data.yt8m.RecordLayout`` made from the *model* config (``zoo.models.yt8m.record_layout``), so the
  exported signature parses exactly what the model trained on (the release's SequenceExamples, also
  after training on ``yt8m_packed``).
- ``--data_dir`` is a directory or a file pattern. A directory uses the official split names:
  ``train*.tfrecord`` for training and ``validate*.tfrecord`` for evaluation (eval and the final test
  report); a directory without ``train*`` files trains on all its ``*.tfrecord``. A pattern (glob, or
  comma-separated globs) is the training split only, without evaluation.
- Training batches drop the string ``id`` (the training step runs in XLA); evaluation batches keep it.
- Frame-level training batches carry the records' uint8 codes (``features`` ``[B, max_frames, D]`` and
  the ``feature_mask`` of ``frame_dataset(dequantize=False)``), not float features: the float block is
  ~4x larger and writing it cost the input pipeline more than parsing (README, Benchmarks). The step
  dequantises and L2-normalises them as its first op (:func:`model_inputs`, inside the XLA cluster, where
  it fuses with the model's first layer), giving the same float features the default pipeline gives
  (tests/test_video_task.py checks model outputs and losses of both). Models keep their float input,
  so exported models and both serving signatures are unchanged; evaluation batches stay float.
- Recipe keys (``--config key=value``): ``eval_batch_size``; ``skip_bad_records`` (default false): drop
  and count records that are corrupt or do not fit the layout instead of stopping with an error that
  names the file and record index (a truncated file loses its unreadable tail).

Loss: the model config's ``loss``, read from the config :meth:`VideoClassificationTask.build_data` (or
:meth:`~VideoClassificationTask.dataset_for`) is given: the official cross-entropy
(``zoo.losses.yt8m_cross_entropy``) on probabilities, or the hinge loss (``yt8m_hinge``, b = 1) on scores.
Training reports a streaming Hit@1; :meth:`VideoClassificationTask.evaluate` reports Hit@1, PERR, GAP and
mAP exactly as the official evaluation (``zoo.metrics.yt8m.Evaluator``, top 20 per video).

Serving signatures:

- ``serving_default``: ``example_bytes`` (string ``[N]``, serialized SequenceExamples for frame-level
  models, Examples for video-level ones; labels are ignored and may be absent) -> ``video_id`` ``[N]``,
  ``class_indexes`` int32 ``[N, 20]`` and ``predictions`` float32 ``[N, 20]`` (the top 20 classes, best
  first; probabilities, or scores for ``yt8m_hinge``);
- ``serving_features``: dense, already dequantised and L2-normalised ``features`` (``[N, max_frames, D]``
  with ``num_frames`` ``[N]``, or ``[N, D]``) -> ``class_indexes``, ``predictions`` and ``all_predictions``
  ``[N, num_classes]``.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from zoo.data import yt8m
from zoo.losses import yt8m_cross_entropy, yt8m_hinge
from zoo.metrics.yt8m import Evaluator
from zoo.models.yt8m import LOSSES, record_layout
from zoo.tasks.base import ForwardOutput, Task, TaskData

__all__ = ["VideoClassificationTask", "TASK", "TOP_K", "split_files", "model_input_names", "model_inputs"]

#: Classes per video in the serving outputs, the Kaggle CSV and GAP (official top_k = 20).
TOP_K = 20
#: Count records for ``TaskData.sizes`` only below this many bytes of input (a full pass otherwise).
_COUNT_LIMIT_BYTES = 512 << 20
_EVAL_PREFIXES = ("validate", "valid", "eval")
_LOSS_FUNCTIONS = {"cross_entropy": yt8m_cross_entropy, "hinge": yt8m_hinge}


def split_files(data_dir: str) -> dict[str, list[str]]:
    """``{"train": [...], "eval": [...]}`` from a directory (official split names) or a file pattern."""
    if tf.io.gfile.isdir(data_dir):
        records = sorted(tf.io.gfile.glob(os.path.join(data_dir, "*.tfrecord")))
        train = [f for f in records if os.path.basename(f).startswith("train")]
        evals = [f for f in records if os.path.basename(f).startswith(_EVAL_PREFIXES)]
        if not records:
            raise ValueError(f"--data_dir={data_dir!r} holds no *.tfrecord files")
        rest = [f for f in records if f not in evals]
        if not train and not rest:
            raise ValueError(
                f"--data_dir={data_dir!r} holds only evaluation files ({', '.join(_EVAL_PREFIXES)}*); "
                "training on them would score the model on its own training data: add train*.tfrecord files"
            )
        return {"train": train or rest, "eval": evals}
    try:
        return {"train": yt8m.list_files(data_dir), "eval": []}
    except FileNotFoundError as e:
        raise ValueError(f"--data_dir={data_dir!r}: {e}") from None


def model_input_names(model: Any) -> list[str]:
    """The model's input names (``features`` and, for frame-level models, ``num_frames``)."""
    inputs = model.input
    return sorted(inputs) if isinstance(inputs, Mapping) else [t.name for t in tf.nest.flatten(inputs)]


def _float_features(inputs: Mapping[str, Any], layout: yt8m.RecordLayout | None) -> Any:
    features = inputs["features"]
    if features.dtype != tf.uint8:
        return features
    mask = inputs.get("feature_mask")
    if mask is not None and layout is None:
        raise ValueError("video_classification: uint8 features with a feature_mask need the record layout")
    return yt8m.dequantize_frames(features, inputs["num_frames"], feature_mask=mask, layout=layout)


def model_inputs(
    model: Any, inputs: Mapping[str, Any], layout: yt8m.RecordLayout | None = None
) -> dict[str, Any]:
    """The model's inputs taken from a batch's ``inputs``. uint8 frame codes (frame-level training
    batches, with their ``feature_mask``; ``layout`` gives the feature sizes) are dequantised and
    L2-normalised first, with :func:`zoo.data.yt8m.dequantize_frames`: the features the default float
    pipeline yields, to float round-off."""
    features = _float_features(inputs, layout)
    return {k: features if k == "features" else inputs[k] for k in model_input_names(model)}


def _layout(config: Mapping[str, Any], model: Any = None) -> yt8m.RecordLayout:
    """The record layout of a full model config; with ``model``, checked against the model's shapes."""
    if "loss" not in config or "num_classes" not in config:
        raise ValueError(
            "video_classification: the config must be the model's full config "
            "(zoo.get_spec(name).default_config() updated with the overrides), got keys "
            f"{sorted(config)}"
        )
    layout = record_layout(config)
    if model is not None:
        classes = int(model.output.shape[-1])
        width = int(model.input["features"].shape[-1])
        if classes != layout.num_classes or width != layout.feature_size:
            raise ValueError(
                f"video_classification: model {model.name!r} has {classes} classes and {width} input "
                f"features, its config says num_classes={layout.num_classes} and feature_sizes="
                f"{list(layout.feature_sizes)}"
            )
    return layout


def _loss_name(config: Mapping[str, Any]) -> str:
    loss = config["loss"]
    if loss not in LOSSES:
        raise ValueError(f"config loss={loss!r}; valid: {', '.join(LOSSES)}")
    return loss


def _skip_bad_records(recipe: Mapping[str, Any]) -> bool:
    value = recipe.get("skip_bad_records", False)
    if not isinstance(value, bool):
        raise ValueError(f"recipe key skip_bad_records={value!r} must be true or false (--config)")
    return value


class VideoClassificationTask(Task):
    """YouTube-8M frame- and video-level classification (see the module docstring)."""

    name = "video_classification"
    datasets = ("yt8m_frame", "yt8m_video", "yt8m_packed")
    recipe_keys = ("eval_batch_size", "skip_bad_records")

    def __init__(self) -> None:
        self._eval_steps: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._loss: str | None = None  # the model config's loss, from build_data / dataset_for
        self._layout: yt8m.RecordLayout | None = None  # feature sizes of uint8 training batches

    # ----------------------------------------------------------------- data
    def check_data(self, dataset: str, data_dir: str | None) -> None:
        super().check_data(dataset, data_dir)
        if not data_dir:
            raise ValueError(
                f"--data_dir is required for --dataset={dataset!r}: a directory of train*/validate*.tfrecord "
                "files or a file pattern (python -m trainers.yt8m_synthetic writes a synthetic one)"
            )
        split_files(data_dir)

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
        layout = _layout(config)
        if layout.frame_level != (dataset != "yt8m_video"):
            want = "'yt8m_frame' or 'yt8m_packed'" if layout.frame_level else "'yt8m_video'"
            raise ValueError(f"--dataset={dataset!r} does not fit a {layout.level}-level model; use {want}")
        layout = layout.replace(packed=dataset == "yt8m_packed")
        self._loss = _loss_name(config)
        self._layout = layout
        skip = _skip_bad_records(recipe)
        counter = yt8m.make_bad_record_counter() if skip else None
        options = {"skip_bad_records": skip, "bad_record_counter": counter}
        files = split_files(data_dir)
        train = yt8m.dataset(
            files["train"],
            global_batch_size,
            layout,
            shuffle=True,
            repeat=True,
            drop_remainder=True,
            seed=seed,
            **options,
            **({"dequantize": False} if layout.frame_level else {}),  # uint8 codes: see the docstring
        )
        train = train.map(lambda inputs, labels: ({k: v for k, v in inputs.items() if k != "id"}, labels))
        eval_batch = int(recipe.get("eval_batch_size") or global_batch_size)
        evals = yt8m.dataset(files["eval"], eval_batch, layout, **options) if files["eval"] else None
        sizes = {}
        for split, fs in (("train", files["train"]), ("eval", files["eval"])):
            if not fs:
                sizes[split] = 0
            elif sum(tf.io.gfile.stat(f).length for f in fs) <= _COUNT_LIMIT_BYTES:
                sizes[split] = yt8m.count_records(fs, skip_bad_records=skip)  # names a corrupt file
        return TaskData(
            checkpoint_input=False,  # parsed frame batches would make every checkpoint gigabytes
            train=train,
            eval=evals,
            test=evals,
            sizes=sizes,
            size_unit="videos",
            info={
                "layout": layout,
                "files": {k: len(v) for k, v in files.items()},
                "bad_record_counter": counter,
            },
        )

    def dataset_for(
        self,
        config: Mapping[str, Any],
        file_pattern: str,
        batch_size: int,
        *,
        skip_bad_records: bool = False,
        bad_record_counter: tf.Variable | None = None,
    ) -> tf.data.Dataset:
        """A finite, ordered evaluation/inference pipeline over ``file_pattern`` for a full model config
        (its loss is the one :meth:`evaluate` then reports)."""
        layout = _layout(config)
        self._loss = _loss_name(config)
        try:
            files = yt8m.list_files(file_pattern)
        except FileNotFoundError as e:
            raise ValueError(str(e)) from None
        return yt8m.dataset(
            files,
            batch_size,
            layout,
            skip_bad_records=skip_bad_records,
            bad_record_counter=bad_record_counter,
        )

    # ----------------------------------------------------------------- step
    def _loss_fn(self) -> Any:
        if self._loss is None:
            raise ValueError(
                "video_classification: no loss yet; build_data (or dataset_for) reads it from the model "
                "config"
            )
        return _LOSS_FUNCTIONS[self._loss]

    def forward(self, model: Any, batch: Any, carry: Any, training: bool) -> ForwardOutput:
        inputs, labels = batch
        preds = keras.ops.cast(model(model_inputs(model, inputs, self._layout), training=training), "float32")
        loss = self._loss_fn()(keras.ops.cast(labels, "float32"), preds)
        return ForwardOutput(per_example_loss=loss, carry=carry, outputs={"predictions": preds})

    def metrics(self) -> dict[str, Any]:
        return {"hit_at_one": keras.metrics.Mean(name="hit_at_one")}

    def update_metrics(self, metrics: Mapping[str, Any], batch: Any, outputs: Mapping[str, Any]) -> None:
        labels = tf.cast(batch[1], tf.float32)
        top = tf.argmax(outputs["predictions"], axis=-1, output_type=tf.int32)
        metrics["hit_at_one"].update_state(tf.gather(labels, top, axis=1, batch_dims=1))

    def _eval_step(self, model: Any) -> Any:
        loss_fn = self._loss_fn()
        cached = self._eval_steps.get(model)
        if cached is None or cached[0] is not loss_fn:
            layout = self._layout

            @tf.function
            def step(inputs: Any, labels: Any) -> Any:
                preds = tf.cast(model(model_inputs(model, inputs, layout), training=False), tf.float32)
                return preds, tf.reduce_sum(loss_fn(tf.cast(labels, tf.float32), preds))

            cached = self._eval_steps[model] = (loss_fn, step)
        return cached[1]

    def evaluate(self, model: Any, dataset: Any) -> dict[str, float]:
        """``{"hit_at_one", "perr", "gap", "map", "loss", "num_examples"}`` over a finite split (official
        definitions, top 20 per video, mAP over classes with positives)."""
        step = self._eval_step(model)
        evaluator = Evaluator(int(model.output.shape[-1]), top_k=TOP_K)
        total = 0.0
        for inputs, labels in dataset:
            preds, loss = step(inputs, labels)
            evaluator.update(preds.numpy(), labels.numpy())
            total += float(loss)
        if evaluator.num_videos == 0:
            raise ValueError("evaluate: the dataset yielded no videos")
        out = evaluator.result()
        n = out.pop("num_videos")
        return {**{k: float(v) for k, v in out.items()}, "loss": total / n, "num_examples": float(n)}

    # -------------------------------------------------------------- serving
    def serving_functions(self, model: Any, config: Mapping[str, Any]) -> dict[str, Any]:
        layout = _layout(config, model)
        k = min(TOP_K, layout.num_classes)
        dim = layout.feature_size

        def top(preds: Any) -> dict[str, Any]:
            values, indexes = tf.math.top_k(preds, k=k)
            return {"class_indexes": tf.cast(indexes, tf.int32), "predictions": values}

        if layout.frame_level:

            @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="example_bytes")])
            def serving_default(example_bytes: Any) -> dict[str, Any]:
                # Inference traffic carries no labels: they are not parsed (nor checked).
                inputs, _ = yt8m.parse_frame_batch(example_bytes, layout=layout, with_labels=False)
                preds = tf.cast(
                    model(
                        {"features": inputs["features"], "num_frames": inputs["num_frames"]}, training=False
                    ),
                    tf.float32,
                )
                return {"video_id": inputs["id"], **top(preds)}

            @tf.function(
                input_signature=[
                    tf.TensorSpec([None, layout.max_frames, dim], tf.float32, name="features"),
                    tf.TensorSpec([None], tf.int32, name="num_frames"),
                ]
            )
            def serving_features(features: Any, num_frames: Any) -> dict[str, Any]:
                preds = tf.cast(
                    model({"features": features, "num_frames": num_frames}, training=False), tf.float32
                )
                return {**top(preds), "all_predictions": preds}

        else:

            @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="example_bytes")])
            def serving_default(example_bytes: Any) -> dict[str, Any]:
                inputs, _ = yt8m.parse_video_batch(example_bytes, layout=layout, with_labels=False)
                preds = tf.cast(model({"features": inputs["features"]}, training=False), tf.float32)
                return {"video_id": inputs["id"], **top(preds)}

            @tf.function(input_signature=[tf.TensorSpec([None, dim], tf.float32, name="features")])
            def serving_features(features: Any) -> dict[str, Any]:
                preds = tf.cast(model({"features": features}, training=False), tf.float32)
                return {**top(preds), "all_predictions": preds}

        return {"serving_default": serving_default, "serving_features": serving_features}

    def warmup_inputs(self, model: Any, config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Two synthetic videos per signature, shaped like real inference requests: serialized records
        without labels (quantised, 3 and 1 frames) and the matching dense features."""
        layout = _layout(config, model)
        rng = np.random.default_rng(0)
        dim = layout.feature_size
        if layout.frame_level:
            records = [
                yt8m.frame_example(
                    f"warmup{i}",
                    None,
                    {
                        n: rng.integers(0, 256, (t, s), dtype=np.uint8)
                        for n, s in zip(layout.feature_names, layout.feature_sizes, strict=True)
                    },
                    layout,
                )
                for i, t in enumerate((3, 1))
            ]
            frames = min(3, layout.max_frames)
            features = np.zeros((2, layout.max_frames, dim), np.float32)
            features[0, :frames] = rng.normal(size=(frames, dim)) / np.sqrt(dim)
            features[1, 0] = rng.normal(size=dim) / np.sqrt(dim)
            dense = {"features": features, "num_frames": np.array([frames, 1], np.int32)}
        else:
            records = [
                yt8m.video_example(
                    f"warmup{i}",
                    None,
                    {
                        n: rng.normal(size=s).astype(np.float32)
                        for n, s in zip(layout.feature_names, layout.feature_sizes, strict=True)
                    },
                    layout,
                )
                for i in range(2)
            ]
            dense = {"features": (rng.normal(size=(2, dim)) / np.sqrt(dim)).astype(np.float32)}
        return {
            "serving_default": {"example_bytes": np.array(records, dtype=object)},
            "serving_features": dense,
        }

    def evaluate_serving(self, loaded: Any, dataset: Any) -> dict[str, float]:
        """Hit@1, PERR, GAP, mAP of an exported SavedModel through its ``serving_features`` signature
        (no zoo code needed to run it) on a finite ``(inputs, labels)`` split."""
        serve = loaded.signatures["serving_features"]
        wanted = set(serve.structured_input_signature[1])
        evaluator = None
        for inputs, labels in dataset:
            if inputs["features"].dtype == tf.uint8:  # a training split: codes, dequantised for the signature
                inputs = {**inputs, "features": _float_features(inputs, self._layout)}
            out = serve(**{k: v for k, v in inputs.items() if k in wanted})["all_predictions"].numpy()
            if evaluator is None:
                evaluator = Evaluator(out.shape[1], top_k=TOP_K)
            evaluator.update(out, np.asarray(labels))
        if evaluator is None:
            raise ValueError("evaluate_serving: the dataset yielded no videos")
        result = evaluator.result()
        n = result.pop("num_videos")
        return {**{k: float(v) for k, v in result.items()}, "num_examples": float(n)}


TASK = VideoClassificationTask()
