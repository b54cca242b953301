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

A truncated or corrupt file, or a record that does not fit (a bad proto, a label id outside the classes),
stops the tool with one line naming the file and record index; ``--skip_bad_records`` drops and counts
such records instead (``bad_records`` in the metrics).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import tensorflow as tf
from absl import app, flags

from zoo import run_dir
from zoo.data import yt8m
from zoo.io import atomic_write
from zoo.metrics.yt8m import Evaluator
from zoo.tasks.video import TASK, model_input_names

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
    flags.DEFINE_string(
        "labels_key",
        "labels",
        "Labels key of the records (--saved_model; the SavedModel itself reads the ids).",
    )
    flags.DEFINE_bool(
        "skip_bad_records",
        False,
        "Drop and count corrupt records (and a truncated file's unreadable tail) instead of stopping.",
    )


class Predictions:
    """One batch: ``ids`` (bytes ``[B]``), ``scores`` ``[B, C]`` (classes outside a SavedModel's top k
    hold :data:`NOT_IN_TOP_K`), ``labels`` multi-hot ``[B, C]``."""

    def __init__(self, ids: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> None:
        self.ids, self.scores, self.labels = ids, scores, labels


def _from_model_dir(
    model_dir: str,
    model: str | None,
    overrides: Mapping[str, Any],
    pattern: str,
    batch_size: int,
    counter: tf.Variable | None,
) -> Iterator[Predictions]:
    keras_model, _, config, _ = run_dir.restore(model_dir, model, dict(overrides))
    names = model_input_names(keras_model)
    predict = tf.function(lambda inputs: keras_model({k: inputs[k] for k in names}, training=False))
    options = {"skip_bad_records": counter is not None, "bad_record_counter": counter}
    for inputs, labels in _named_errors(TASK.dataset_for(config, pattern, batch_size, **options)):
        scores = predict(inputs).numpy().astype(np.float32)
        yield Predictions(inputs["id"].numpy(), scores, labels.numpy())


def _named_errors(batches: Any) -> Iterator[Any]:
    """Iterates ``batches``; a reader error becomes a ``ValueError`` naming the file and record index."""
    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except tf.errors.OpError as e:
            raise ValueError(yt8m.error_message(e)) from None
        yield batch


class _SavedModelBatch:
    """Serves records through a SavedModel's ``serving_default`` and parses their labels in the tool."""

    def __init__(self, path: str, labels_key: str, counter: tf.Variable | None) -> None:
        loaded = tf.saved_model.load(path)
        self.serve = loaded.signatures["serving_default"]
        dense = loaded.signatures["serving_features"]
        self.num_classes = int(dense.structured_outputs["all_predictions"].shape[-1])
        self.frame = "num_frames" in dense.structured_input_signature[1]
        self.labels_key = labels_key
        self.counter = counter

    def __call__(self, names: tf.Tensor, records: tf.Tensor) -> Predictions | None:
        try:
            return self._run(names, records)
        except (tf.errors.InvalidArgumentError, ValueError):
            pass
        # Some record of the batch is bad: find it (and any other) one by one, name it, or skip it.
        good = []
        for i in range(int(records.shape[0])):
            try:
                self._run(names[i : i + 1], records[i : i + 1])
            except (tf.errors.InvalidArgumentError, ValueError) as e:
                name = names[i].numpy().decode()
                # The SavedModel names the record "record 0" (its batch of one), the tool knows the file.
                message = re.sub(r"^record 0: ", "", yt8m.error_message(e))
                where = message if message.startswith(name) else f"{name}: {message}"
                if self.counter is None:
                    raise ValueError(where) from None
                print(f"yt8m_eval: skipping a bad record: {where}", file=sys.stderr)
                self.counter.assign_add(1)
                continue
            good.append(i)
        return self._run(tf.gather(names, good), tf.gather(records, good)) if good else None

    def _run(self, names: tf.Tensor, records: tf.Tensor) -> Predictions:
        spec = {self.labels_key: tf.io.VarLenFeature(tf.int64)}
        if self.frame:
            context, _, _ = tf.io.parse_sequence_example(records, context_features=spec, example_names=names)
        else:
            context = tf.io.parse_example(records, spec, example_names=names)
        sparse = context[self.labels_key]
        rows, values = sparse.indices[:, 0].numpy(), sparse.values.numpy()
        bad = (values < 0) | (values >= self.num_classes)
        if bad.any():
            raise ValueError(
                f"{names[int(rows[bad][0])].numpy().decode()}: label id {int(values[bad][0])} is outside "
                f"[0, {self.num_classes}) (the SavedModel's classes)"
            )
        out = self.serve(example_bytes=records)
        n = int(records.shape[0])
        labels = np.zeros((n, self.num_classes), np.float32)
        labels[rows, values] = 1.0
        scores = np.full((n, self.num_classes), NOT_IN_TOP_K, np.float32)
        np.put_along_axis(
            scores, out["class_indexes"].numpy().astype(np.int64), out["predictions"].numpy(), axis=1
        )
        return Predictions(out["video_id"].numpy(), scores, labels)


def _from_saved_model(
    path: str, pattern: str, batch_size: int, labels_key: str, counter: tf.Variable | None
) -> Iterator[Predictions]:
    try:
        files = yt8m.list_files(pattern)
    except FileNotFoundError as e:
        raise ValueError(f"--data_pattern: {e}") from None
    run = _SavedModelBatch(path, labels_key, counter)
    options = {"skip_bad_records": counter is not None, "bad_record_counter": counter}
    for names, records in _named_errors(yt8m.record_batches(files, batch_size, **options)):
        batch = run(names, records)
        if batch is not None:
            yield batch


def iterate_predictions(
    values: Mapping[str, Any], bad_record_counter: tf.Variable | None = None
) -> Iterator[Predictions]:
    """Batches of predictions from ``--model_dir`` or ``--saved_model`` over ``--data_pattern``.

    With ``--skip_bad_records``, pass a ``bad_record_counter`` (``zoo.data.yt8m.make_bad_record_counter``)
    to learn how many records were dropped; errors are ``ValueError`` naming the file and record index.
    """
    if bool(values.get("model_dir")) == bool(values.get("saved_model")):
        raise ValueError("give exactly one of --model_dir and --saved_model")
    if not values.get("data_pattern"):
        raise ValueError("--data_pattern is required (TFRecord files of the split)")
    counter = None
    if values.get("skip_bad_records"):
        counter = bad_record_counter if bad_record_counter is not None else yt8m.make_bad_record_counter()
    if values["model_dir"]:
        return _from_model_dir(
            values["model_dir"],
            values.get("model"),
            run_dir.parse_overrides(values.get("config", [])),
            values["data_pattern"],
            int(values["batch_size"]),
            counter,
        )
    return _from_saved_model(
        values["saved_model"],
        values["data_pattern"],
        int(values["batch_size"]),
        values.get("labels_key", "labels"),
        counter,
    )


def evaluate(values: Mapping[str, Any]) -> dict[str, float]:
    """``{"hit_at_one", "perr", "gap", "map", "num_videos"}`` over the split (and ``bad_records`` with
    ``--skip_bad_records``)."""
    counter = yt8m.make_bad_record_counter() if values.get("skip_bad_records") else None
    evaluator = None
    for batch in iterate_predictions(values, counter):
        if evaluator is None:
            evaluator = Evaluator(
                batch.scores.shape[1], top_k=20, empty_classes=values.get("empty_classes", "skip")
            )
        evaluator.update(batch.scores, batch.labels)
    if evaluator is None:
        raise ValueError(f"--data_pattern={values['data_pattern']!r} yielded no videos")
    result = evaluator.result()
    if counter is not None:
        result["bad_records"] = int(counter.numpy())
    return result


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
