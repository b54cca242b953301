"""The ``video_classification`` task: YouTube-8M multi-label classification (Abu-El-Haija et al. 2016).

Data (``--dataset`` / ``--data_dir``):

- ``yt8m_frame``: frame-level SequenceExamples, read by ``zoo.data.yt8m.frame_dataset``;
  ``yt8m_video``: video-level Examples, read by ``video_dataset``. The record layout (feature names and
  sizes, id and label keys, ``num_classes``, ``max_frames``) comes from the *model* config (see
  ``zoo.models.yt8m.feature_spec``), so the exported signature parses exactly what the model trained on.
- ``--data_dir`` is a directory or a file pattern. A directory uses the official split names:
  ``train*.tfrecord`` for training and ``validate*.tfrecord`` for evaluation (eval and the final test
  report); a directory without ``train*`` files trains on all its ``*.tfrecord``. A pattern (glob, or
  comma-separated globs) is the training split only, without evaluation.
- Training batches drop the string ``id`` (the training step runs in XLA); evaluation batches keep it.

Loss: the official cross-entropy (``zoo.losses.yt8m_cross_entropy``) on probabilities, or the hinge loss
(``yt8m_hinge``, b = 1) on scores, chosen by the model config ``loss``. Training reports a streaming
Hit@1; :meth:`VideoClassificationTask.evaluate` reports Hit@1, PERR, GAP and mAP exactly as the official
evaluation (``zoo.metrics.yt8m.Evaluator``, top 20 per video).

Serving signatures:

- ``serving_default``: ``example_bytes`` (string ``[N]``, serialized SequenceExamples for frame-level
  models, Examples for video-level ones; labels may be absent) -> ``video_id`` ``[N]``, ``class_indexes``
  int32 ``[N, 20]`` and ``predictions`` float32 ``[N, 20]`` (the top 20 classes, best first; probabilities,
  or scores for ``yt8m_hinge``);
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

from zoo.tasks.base import ForwardOutput, Task, TaskData

__all__ = ["VideoClassificationTask", "TASK", "TOP_K", "split_files", "model_config", "model_input_names"]

#: Classes per video in the serving outputs, the Kaggle CSV and GAP (official top_k = 20).
TOP_K = 20
#: Count records for ``TaskData.sizes`` only below this many bytes of input (a full pass otherwise).
_COUNT_LIMIT_BYTES = 512 << 20
_EVAL_PREFIXES = ("validate", "valid", "eval")


def split_files(data_dir: str) -> dict[str, list[str]]:
    """``{"train": [...], "eval": [...]}`` from a directory (official split names) or a file pattern."""
    from zoo.data import yt8m

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


def model_config(model: Any, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The full config of a YouTube-8M model: its spec's defaults updated with ``config``."""
    import zoo

    try:
        defaults = zoo.get_spec(model.name).default_config()
    except KeyError:
        defaults = {}
    return {**defaults, **dict(config or {})}


def model_input_names(model: Any) -> list[str]:
    """The model's input names (``features`` and, for frame-level models, ``num_frames``)."""
    inputs = model.input
    return sorted(inputs) if isinstance(inputs, Mapping) else [t.name for t in tf.nest.flatten(inputs)]


def _count_records(files: list[str]) -> int | None:
    if sum(tf.io.gfile.stat(f).length for f in files) > _COUNT_LIMIT_BYTES:
        return None
    return int(tf.data.TFRecordDataset(files).reduce(np.int64(0), lambda n, _: n + 1))


def _loss_name(model: Any) -> str:
    name = getattr(model, "zoo_loss", None)
    if name:
        return name
    head = model.get_layer("classifier") if "classifier" in [la.name for la in model.layers] else None
    return "hinge" if head is not None and getattr(head, "activation", "sigmoid") is None else "cross_entropy"


class VideoClassificationTask(Task):
    """YouTube-8M frame- and video-level classification (see the module docstring)."""

    name = "video_classification"
    datasets = ("yt8m_frame", "yt8m_video")

    def __init__(self) -> None:
        self._eval_steps: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

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
        from zoo.models.yt8m import feature_spec, is_frame_level

        self.check_data(dataset, data_dir)
        frame = is_frame_level(config)
        if frame != (dataset == "yt8m_frame"):
            want = "yt8m_frame" if frame else "yt8m_video"
            raise ValueError(
                f"--dataset={dataset!r} does not fit a {'frame' if frame else 'video'}-level model; "
                f"use {want!r}"
            )
        files = split_files(data_dir)
        reader = self._reader(config)
        train = reader(
            files["train"], global_batch_size, shuffle=True, repeat=True, drop_remainder=True, seed=seed
        )
        train = train.map(lambda inputs, labels: ({k: v for k, v in inputs.items() if k != "id"}, labels))
        eval_batch = int(recipe.get("eval_batch_size") or global_batch_size)
        evals = reader(files["eval"], eval_batch) if files["eval"] else None
        sizes = {}
        for split, fs in (("train", files["train"]), ("eval", files["eval"])):
            n = _count_records(fs) if fs else 0
            if n is not None:
                sizes[split] = n
        names, feature_sizes = feature_spec(dict(config))
        return TaskData(
            checkpoint_input=False,  # parsed frame batches would make every checkpoint gigabytes
            train=train,
            eval=evals,
            test=evals,
            sizes=sizes,
            info={
                "num_classes": int(config["num_classes"]),
                "feature_names": names,
                "feature_sizes": feature_sizes,
                "files": {k: len(v) for k, v in files.items()},
                "level": "frame" if frame else "video",
            },
        )

    @staticmethod
    def _reader(config: Mapping[str, Any]) -> Any:
        """``reader(files, batch_size, **options)`` for the model's record layout."""
        from zoo.data import yt8m
        from zoo.models.yt8m import feature_spec, is_frame_level

        names, sizes = feature_spec(dict(config))
        common = {
            "num_classes": int(config["num_classes"]),
            "feature_names": names,
            "feature_sizes": sizes,
            "id_key": config.get("id_key", "id"),
            "labels_key": config.get("labels_key", "labels"),
        }
        if is_frame_level(config):
            return lambda files, batch, **kw: yt8m.frame_dataset(
                files, batch, max_frames=int(config["max_frames"]), **common, **kw
            )
        return lambda files, batch, **kw: yt8m.video_dataset(files, batch, **common, **kw)

    def dataset_for(self, config: Mapping[str, Any], file_pattern: str, batch_size: int) -> tf.data.Dataset:
        """A finite, ordered evaluation/inference pipeline over ``file_pattern`` for a model config."""
        from zoo.data import yt8m

        try:
            files = yt8m.list_files(file_pattern)
        except FileNotFoundError as e:
            raise ValueError(str(e)) from None
        return self._reader(config)(files, batch_size)

    # ----------------------------------------------------------------- step
    def forward(self, model: Any, batch: Any, carry: Any, training: bool) -> ForwardOutput:
        from zoo.losses import yt8m_cross_entropy, yt8m_hinge

        inputs, labels = batch
        preds = keras.ops.cast(
            model({k: inputs[k] for k in model_input_names(model)}, training=training), "float32"
        )
        labels = keras.ops.cast(labels, "float32")
        if _loss_name(model) == "hinge":
            loss = yt8m_hinge(labels, preds)
        else:
            loss = yt8m_cross_entropy(labels, preds)
        return ForwardOutput(per_example_loss=loss, carry=carry, outputs={"predictions": preds})

    def metrics(self) -> dict[str, Any]:
        return {"hit_at_one": keras.metrics.Mean(name="hit_at_one")}

    def update_metrics(self, metrics: Mapping[str, Any], batch: Any, outputs: Mapping[str, Any]) -> None:
        labels = tf.cast(batch[1], tf.float32)
        top = tf.argmax(outputs["predictions"], axis=-1, output_type=tf.int32)
        metrics["hit_at_one"].update_state(tf.gather(labels, top, axis=1, batch_dims=1))

    def _eval_step(self, model: Any) -> Any:
        step = self._eval_steps.get(model)
        if step is None:
            names = model_input_names(model)
            hinge = _loss_name(model) == "hinge"

            @tf.function
            def step(inputs: Any, labels: Any) -> Any:
                from zoo.losses import yt8m_cross_entropy, yt8m_hinge

                preds = tf.cast(model({k: inputs[k] for k in names}, training=False), tf.float32)
                labels = tf.cast(labels, tf.float32)
                loss = yt8m_hinge(labels, preds) if hinge else yt8m_cross_entropy(labels, preds)
                return preds, tf.reduce_sum(loss)

            self._eval_steps[model] = step
        return step

    def evaluate(self, model: Any, dataset: Any) -> dict[str, float]:
        """``{"hit_at_one", "perr", "gap", "map", "loss", "num_examples"}`` over a finite split (official
        definitions, top 20 per video, mAP over classes with positives)."""
        from zoo.metrics.yt8m import Evaluator

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
        from zoo.data import yt8m
        from zoo.models.yt8m import feature_spec, is_frame_level

        cfg = model_config(model, config)
        names, sizes = feature_spec(cfg)
        num_classes = int(model.output.shape[-1])
        k = min(TOP_K, num_classes)
        frame = is_frame_level(cfg)
        dim = int(sum(sizes))
        keys = {"id_key": cfg.get("id_key", "id"), "labels_key": cfg.get("labels_key", "labels")}

        def top(preds: Any) -> dict[str, Any]:
            values, indexes = tf.math.top_k(preds, k=k)
            return {"class_indexes": tf.cast(indexes, tf.int32), "predictions": values}

        if frame:
            max_frames = int(cfg["max_frames"])

            @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="example_bytes")])
            def serving_default(example_bytes: Any) -> dict[str, Any]:
                inputs, _ = yt8m.parse_frame_batch(
                    example_bytes,
                    max_frames=max_frames,
                    num_classes=num_classes,
                    feature_names=names,
                    feature_sizes=sizes,
                    **keys,
                )
                preds = tf.cast(
                    model(
                        {"features": inputs["features"], "num_frames": inputs["num_frames"]}, training=False
                    ),
                    tf.float32,
                )
                return {"video_id": inputs["id"], **top(preds)}

            @tf.function(
                input_signature=[
                    tf.TensorSpec([None, max_frames, dim], tf.float32, name="features"),
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
                inputs, _ = yt8m.parse_video_batch(
                    example_bytes, num_classes=num_classes, feature_names=names, feature_sizes=sizes, **keys
                )
                preds = tf.cast(model({"features": inputs["features"]}, training=False), tf.float32)
                return {"video_id": inputs["id"], **top(preds)}

            @tf.function(input_signature=[tf.TensorSpec([None, dim], tf.float32, name="features")])
            def serving_features(features: Any) -> dict[str, Any]:
                preds = tf.cast(model({"features": features}, training=False), tf.float32)
                return {**top(preds), "all_predictions": preds}

        return {"serving_default": serving_default, "serving_features": serving_features}

    def warmup_inputs(self, model: Any, config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Two synthetic videos per signature: serialized records (quantised, 3 and 1 frames) and the
        matching dense features."""
        from zoo.data import yt8m
        from zoo.models.yt8m import feature_spec, is_frame_level

        cfg = model_config(model, config)
        names, sizes = feature_spec(cfg)
        rng = np.random.default_rng(0)
        keys = {"id_key": cfg.get("id_key", "id"), "labels_key": cfg.get("labels_key", "labels")}
        dim = int(sum(sizes))
        if is_frame_level(cfg):
            records = [
                yt8m.frame_example(
                    f"warmup{i}",
                    [0],
                    {
                        n: rng.integers(0, 256, (t, s), dtype=np.uint8)
                        for n, s in zip(names, sizes, strict=True)
                    },
                    **keys,
                )
                for i, t in enumerate((3, 1))
            ]
            max_frames = int(cfg["max_frames"])
            features = np.zeros((2, max_frames, dim), np.float32)
            features[0, : min(3, max_frames)] = rng.normal(size=(min(3, max_frames), dim)) / np.sqrt(dim)
            features[1, 0] = rng.normal(size=dim) / np.sqrt(dim)
            dense = {"features": features, "num_frames": np.array([min(3, max_frames), 1], np.int32)}
        else:
            records = [
                yt8m.video_example(
                    f"warmup{i}",
                    [0],
                    {n: rng.normal(size=s).astype(np.float32) for n, s in zip(names, sizes, strict=True)},
                    **keys,
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
        from zoo.metrics.yt8m import Evaluator

        serve = loaded.signatures["serving_features"]
        wanted = set(serve.structured_input_signature[1])
        evaluator = None
        for inputs, labels in dataset:
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
