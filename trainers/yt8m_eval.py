"""Evaluate a YouTube-8M model on a split: Hit@1, PERR, GAP, mAP (official definitions, top 20 per video).

From a trainer ``--model_dir`` (its latest checkpoint; the model name and config come from the run json the
trainer writes, or from ``--model`` / ``--config``)::

    python -m trainers.yt8m_eval --model_dir=/tmp/dbof --data_pattern='/data/yt8m/frame/validate*.tfrecord'

or from an exported SavedModel (no zoo model code needed: records go through its ``serving_default``
signature, exactly as a TF Serving client would send them)::

    python -m trainers.yt8m_eval --saved_model=exported/yt8m_dbof/1 --data_pattern=/data/validate*.tfrecord

Through a SavedModel only each video's top 20 classes are known; Hit@1, GAP and mAP need nothing more,
PERR is exact for videos with at most 20 labels (classes beyond the top 20 count as misses).
Prints one ``metrics {json}`` line; ``--output_json`` also writes it (to a temporary file, then renamed).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from absl import app, flags

from zoo import run_dir
from zoo.io import atomic_write

__all__ = ["define_flags", "Predictions", "iterate_predictions", "evaluate", "main", "run"]

#: Score given to classes outside a SavedModel's top 20 (below any real score, finite for numpy sorts).
NOT_IN_TOP_K = -1e30


def define_flags() -> None:
    """Flags shared by ``yt8m_eval`` and ``yt8m_infer``."""
    flags.DEFINE_string("model_dir", None, "Trainer model_dir (its latest checkpoint is used).")
    flags.DEFINE_string("saved_model", None, "Exported SavedModel directory (BASE/<model>/<version>).")
    flags.DEFINE_string(
        "model", None, "Registered model name (with --model_dir, when the run json lacks it)."
    )
    flags.DEFINE_multi_string("config", [], "key=value model config override (with --model_dir).")
    flags.DEFINE_string(
        "data_pattern", None, "TFRecord file pattern, comma-separated patterns, or directory."
    )
    flags.DEFINE_integer("batch_size", 256, "Videos per batch.")
    flags.DEFINE_string("id_key", "id", "Video id key of the records (--saved_model; paper-era: video_id).")
    flags.DEFINE_string("labels_key", "labels", "Labels key of the records (--saved_model).")


class Predictions:
    """One batch: ``ids`` (bytes ``[B]``), ``scores`` ``[B, C]`` (classes outside a SavedModel's top k
    hold :data:`NOT_IN_TOP_K`), ``labels`` multi-hot ``[B, C]``."""

    def __init__(self, ids: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> None:
        self.ids, self.scores, self.labels = ids, scores, labels


def _from_model_dir(
    model_dir: str, model: str | None, overrides: Mapping[str, Any], pattern: str, batch_size: int
) -> Iterator[Predictions]:
    import tensorflow as tf

    from exports.export import restore_for_export
    from zoo.tasks.video import TASK, model_input_names

    keras_model, _, _, config = restore_for_export(model_dir, model, dict(overrides))
    names = model_input_names(keras_model)
    predict = tf.function(lambda inputs: keras_model({k: inputs[k] for k in names}, training=False))
    for inputs, labels in TASK.dataset_for(config, pattern, batch_size):
        scores = predict(inputs).numpy().astype(np.float32)
        yield Predictions(inputs["id"].numpy(), scores, labels.numpy())


def _from_saved_model(
    path: str, pattern: str, batch_size: int, id_key: str, labels_key: str
) -> Iterator[Predictions]:
    import tensorflow as tf

    from zoo.data import yt8m

    loaded = tf.saved_model.load(path)
    serve = loaded.signatures["serving_default"]
    dense = loaded.signatures["serving_features"]
    num_classes = int(dense.structured_outputs["all_predictions"].shape[-1])
    frame = "num_frames" in dense.structured_input_signature[1]
    try:
        files = yt8m.list_files(pattern)
    except FileNotFoundError as e:
        raise ValueError(f"--data_pattern: {e}") from None
    spec = {labels_key: tf.io.VarLenFeature(tf.int64)}
    for records in tf.data.TFRecordDataset(files).batch(batch_size):
        out = serve(example_bytes=records)
        if frame:
            context, _, _ = tf.io.parse_sequence_example(records, context_features=spec)
        else:
            context = tf.io.parse_example(records, spec)
        sparse = context[labels_key]
        labels = np.zeros((int(records.shape[0]), num_classes), np.float32)
        labels[sparse.indices[:, 0].numpy(), sparse.values.numpy()] = 1.0
        scores = np.full((int(records.shape[0]), num_classes), NOT_IN_TOP_K, np.float32)
        np.put_along_axis(
            scores, out["class_indexes"].numpy().astype(np.int64), out["predictions"].numpy(), axis=1
        )
        yield Predictions(out["video_id"].numpy(), scores, labels)


def iterate_predictions(values: Mapping[str, Any]) -> Iterator[Predictions]:
    """Batches of predictions from ``--model_dir`` or ``--saved_model`` over ``--data_pattern``."""
    if bool(values.get("model_dir")) == bool(values.get("saved_model")):
        raise ValueError("give exactly one of --model_dir and --saved_model")
    if not values.get("data_pattern"):
        raise ValueError("--data_pattern is required (TFRecord files of the split)")
    if values["model_dir"]:
        return _from_model_dir(
            values["model_dir"],
            values.get("model"),
            run_dir.parse_overrides(values.get("config", [])),
            values["data_pattern"],
            int(values["batch_size"]),
        )
    return _from_saved_model(
        values["saved_model"],
        values["data_pattern"],
        int(values["batch_size"]),
        values.get("id_key", "id"),
        values.get("labels_key", "labels"),
    )


def evaluate(values: Mapping[str, Any]) -> dict[str, float]:
    """``{"hit_at_one", "perr", "gap", "map", "num_videos"}`` over the split."""
    from zoo.metrics.yt8m import Evaluator

    evaluator = None
    for batch in iterate_predictions(values):
        if evaluator is None:
            evaluator = Evaluator(
                batch.scores.shape[1], top_k=20, empty_classes=values.get("empty_classes", "skip")
            )
        evaluator.update(batch.scores, batch.labels)
    if evaluator is None:
        raise ValueError(f"--data_pattern={values['data_pattern']!r} yielded no videos")
    return evaluator.result()


def main(argv: list[str]) -> None:
    del argv
    values = {name: flags.FLAGS[name].value for name in flags.FLAGS}
    try:
        metrics = evaluate(values)
    except (ValueError, FileNotFoundError) as e:
        print(f"yt8m_eval: error: {e}", file=sys.stderr)
        sys.exit(2)
    line = json.dumps(metrics, sort_keys=True)
    print(f"metrics {line}", flush=True)
    if values.get("output_json"):
        atomic_write(values["output_json"], line + "\n")


def run() -> None:
    define_flags()
    flags.DEFINE_string("output_json", None, "Also write the metrics here (json).")
    flags.DEFINE_enum(
        "empty_classes",
        "skip",
        ["skip", "zero"],
        "mAP over classes with positives (official) or over all classes (TF Model Garden).",
    )
    app.run(main)


if __name__ == "__main__":
    run()
