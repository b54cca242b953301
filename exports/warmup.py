"""TF Serving warmup requests: ``<version>/assets.extra/tf_serving_warmup_requests``.

TF Serving replays these ``PredictionLog`` records (TFRecord file, at most 1,000 records) when it loads a
model, so the first real request does not pay for graph initialisation. A record that does not match a
signature (unknown signature, wrong input key, dtype or shape) makes the server refuse the whole model,
so :func:`check_inputs` validates every request against the signature before it is written and the
tests replay the file against the saved signatures with :func:`replay`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from zoo.io import atomic_path

__all__ = [
    "ASSETS_EXTRA",
    "WARMUP_FILE",
    "MAX_WARMUP_RECORDS",
    "WarmupError",
    "input_specs",
    "check_inputs",
    "build_requests",
    "write_requests",
    "read_requests",
    "replay",
]

ASSETS_EXTRA = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving reads at most this many warmup records.


class WarmupError(ValueError):
    """A warmup request that does not match the signature it names."""


def input_specs(concrete_fn: Any) -> dict[str, tf.TensorSpec]:
    """``{input key: TensorSpec}`` of a concrete (signature) function, keyed as TF Serving sees them."""
    args, kwargs = concrete_fn.structured_input_signature
    specs: dict[str, tf.TensorSpec] = dict(kwargs)
    for spec in args:
        specs[spec.name] = spec
    return specs


def check_inputs(signature_name: str, concrete_fn: Any, inputs: Mapping[str, Any]) -> None:
    """Raises :class:`WarmupError` unless ``inputs`` has exactly the signature's keys, dtypes and
    compatible shapes."""
    specs = input_specs(concrete_fn)
    if set(inputs) != set(specs):
        raise WarmupError(
            f"warmup request for signature {signature_name!r} has inputs {sorted(inputs)}; "
            f"the signature takes {sorted(specs)}"
        )
    for key, spec in specs.items():
        value = np.asarray(inputs[key])
        if tf.as_dtype(value.dtype) != spec.dtype:
            raise WarmupError(
                f"warmup input {signature_name!r}/{key!r} has dtype {value.dtype}; "
                f"the signature takes {spec.dtype.name}"
            )
        if not spec.shape.is_compatible_with(value.shape):
            raise WarmupError(
                f"warmup input {signature_name!r}/{key!r} has shape {value.shape}; "
                f"the signature takes {spec.shape}"
            )


def build_requests(
    model_name: str, inputs_by_signature: Mapping[str, Mapping[str, Any]], records_per_signature: int = 1
) -> list[prediction_log_pb2.PredictionLog]:
    """One ``PredictionLog`` (a ``PredictRequest`` naming model and signature) per signature, repeated
    ``records_per_signature`` times."""
    logs = []
    for signature_name, inputs in inputs_by_signature.items():
        request = predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name)
        )
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
        log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
        logs.extend([log] * records_per_signature)
    if len(logs) > MAX_WARMUP_RECORDS:
        raise WarmupError(f"{len(logs)} warmup records; TF Serving reads at most {MAX_WARMUP_RECORDS}")
    return logs


def write_requests(path: str, logs: list[prediction_log_pb2.PredictionLog]) -> None:
    """Writes ``logs`` as a TFRecord file at ``path`` (temporary file, then rename)."""
    if len(logs) > MAX_WARMUP_RECORDS:
        raise WarmupError(f"{len(logs)} warmup records; TF Serving reads at most {MAX_WARMUP_RECORDS}")
    with atomic_path(path) as tmp, tf.io.TFRecordWriter(tmp) as writer:
        for log in logs:
            writer.write(log.SerializeToString())


def read_requests(path: str) -> list[prediction_log_pb2.PredictionLog]:
    """The ``PredictionLog`` records of a warmup file."""
    logs = []
    for record in tf.data.TFRecordDataset(path):
        logs.append(prediction_log_pb2.PredictionLog.FromString(record.numpy()))
    return logs


def replay(signatures: Mapping[str, Any], path: str) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Calls ``signatures[name](**inputs)`` for every record of the warmup file at ``path`` (as TF
    Serving does at load time); returns ``[(signature name, outputs)]``. ``signatures`` is e.g.
    ``tf.saved_model.load(dir).signatures``."""
    results = []
    for index, log in enumerate(read_requests(path)):
        if log.WhichOneof("log_type") != "predict_log":
            raise WarmupError(
                f"{path} record {index}: {log.WhichOneof('log_type')!r}, expected 'predict_log'"
            )
        request = log.predict_log.request
        name = request.model_spec.signature_name or "serving_default"
        if name not in signatures:
            raise WarmupError(f"{path} record {index}: unknown signature {name!r}; have {sorted(signatures)}")
        fn = signatures[name]
        inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
        try:
            check_inputs(name, fn, inputs)
        except WarmupError as e:
            raise WarmupError(f"{path} record {index}: {e}") from None
        outputs = fn(**{key: tf.constant(value) for key, value in inputs.items()})
        results.append((name, {key: value.numpy() for key, value in outputs.items()}))
    return results
