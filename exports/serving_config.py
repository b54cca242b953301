"""TF Serving configuration files beside the exported models.

``BASE/models.config``: a text ``ModelServerConfig`` with one ``model_config_list`` entry per model
folder under ``BASE`` (a folder holding at least one integer version with a ``saved_model.pb``).
Start the server with ``--model_config_file=<server path>/models.config``.

Each entry's ``base_path`` must be the path *the server* sees. It defaults to the absolute local path
of ``BASE``; when the server runs elsewhere (e.g. the TF Serving docker image with
``-v $PWD/exported:/models``) pass ``serving_base_path="/models"`` and the entries become
``/models/<model_name>``. The file records that choice in a comment line (text-format protos allow
``#`` comments), so every later export into ``BASE`` rewrites the file consistently: a chosen
``serving_base_path`` is kept until another one is given, and the default is recomputed from where
``BASE`` is *now*, so moving the export folder and exporting again leaves no entry pointing at the old
location. Entries list only the model folders present in ``BASE``.

``BASE/batching_parameters.txt`` (optional): a text ``BatchingParameters`` for
``--enable_batching --batching_parameters_file=<server path>/batching_parameters.txt``.

Both files are written to a temporary file and renamed into place, so a server polling the config
(``--model_config_file_poll_wait_seconds``) never reads half a file.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Sequence

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from zoo.io import atomic_write

__all__ = [
    "MODELS_CONFIG",
    "BATCHING_PARAMETERS",
    "SAVED_MODEL_FILE",
    "version_dirs",
    "discover_models",
    "models_config_text",
    "recorded_serving_base_path",
    "write_models_config",
    "batching_parameters_text",
    "write_batching_parameters",
]

MODELS_CONFIG = "models.config"
BATCHING_PARAMETERS = "batching_parameters.txt"
SAVED_MODEL_FILE = "saved_model.pb"
_VERSION = re.compile(r"^[0-9]+$")
#: The comment line of models.config that records the serving_base_path it was written for.
_RECORD_PREFIX = "# zoo-export serving_base_path: "


def version_dirs(model_dir: str) -> list[int]:
    """Sorted integer versions under ``model_dir`` that hold a complete SavedModel."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(
        int(name)
        for name in os.listdir(model_dir)
        if _VERSION.match(name) and os.path.isfile(os.path.join(model_dir, name, SAVED_MODEL_FILE))
    )


def discover_models(base_dir: str) -> list[str]:
    """Sorted names of the model folders under ``base_dir`` that hold at least one version."""
    if not os.path.isdir(base_dir):
        return []
    return sorted(
        name
        for name in os.listdir(base_dir)
        if not name.startswith(".") and version_dirs(os.path.join(base_dir, name))
    )


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check_serving_base_path(serving_base_path: str) -> None:
    if not serving_base_path.strip() or any(ord(c) < 32 or ord(c) == 127 for c in serving_base_path):
        raise ValueError(
            f"serving_base_path={serving_base_path!r} is not valid: give the folder (or URI, e.g. "
            "gs://bucket/models) where the server sees the export folder, without control characters"
        )


def models_config_text(base_dir: str, serving_base_path: str | None = None) -> str:
    """Text ``ModelServerConfig`` listing every model under ``base_dir``; ``base_path`` of each entry is
    ``serving_base_path/<name>`` (default: the absolute local ``base_dir``). A comment line records
    ``serving_base_path`` (read back by :func:`recorded_serving_base_path`)."""
    models = discover_models(base_dir)
    if not models:
        raise ValueError(
            f"no exported models under {base_dir!r} (expected <model_name>/<version>/{SAVED_MODEL_FILE})"
        )
    local = os.path.abspath(base_dir)
    if serving_base_path:
        _check_serving_base_path(serving_base_path)
    if serving_base_path == local:
        serving_base_path = None  # the local folder itself: follow it when it moves
    root = serving_base_path or local
    join = posixpath.join if root.startswith("/") or serving_base_path else os.path.join
    recorded = "none (this folder's absolute path, recomputed at every export)"
    if serving_base_path:
        recorded = json.dumps(serving_base_path)
    lines = [
        "# TF Serving model config written by zoo-export (exports/serving_config.py); each export into",
        "# this folder rewrites it from the model folders present.",
        f"{_RECORD_PREFIX}{recorded}",
        "model_config_list {",
    ]
    for name in models:
        lines += [
            "  config {",
            f"    name: {_quote(name)}",
            f"    base_path: {_quote(join(root, name))}",
            '    model_platform: "tensorflow"',
            "  }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def recorded_serving_base_path(base_dir: str) -> str | None:
    """The ``serving_base_path`` the current ``base_dir/models.config`` was written for, or None (no
    config, or one written for this folder's local path).

    A config without the record line (written before it existed, or by hand) counts as chosen when all
    its entries share one folder other than the local ``base_dir``: that may be a container mount
    (``/models``) as well as an old location, so pass ``serving_base_path`` once to replace it.
    """
    path = os.path.join(base_dir, MODELS_CONFIG)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return None
    for line in text.splitlines():
        if line.startswith(_RECORD_PREFIX):
            value = line[len(_RECORD_PREFIX) :].strip()
            try:
                chosen = json.loads(value) if value.startswith('"') else None
            except ValueError:
                chosen = None
            return chosen if isinstance(chosen, str) and chosen else None
    try:
        config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError:
        return None
    roots = {posixpath.dirname(c.base_path) for c in config.model_config_list.config if c.base_path}
    root = roots.pop() if len(roots) == 1 else None
    return None if root == os.path.abspath(base_dir) else root


def write_models_config(base_dir: str, serving_base_path: str | None = None) -> str:
    """Rewrites ``base_dir/models.config`` (atomically); returns its path.

    Without ``serving_base_path`` the one recorded in the existing config is kept, so that exporting one
    more model does not turn a config written for a container mount (``/models``) back into host paths
    that a polling server would fail to load; with none recorded, entries point at where ``base_dir`` is
    now (so a moved export folder gets a correct config at its next export).
    """
    path = os.path.join(base_dir, MODELS_CONFIG)
    root = serving_base_path or recorded_serving_base_path(base_dir)
    atomic_write(path, models_config_text(base_dir, root))
    return path


def batching_parameters_text(
    *,
    max_batch_size: int = 64,
    batch_timeout_micros: int = 1000,
    max_enqueued_batches: int = 100,
    num_batch_threads: int = 4,
    allowed_batch_sizes: Sequence[int] = (),
    pad_variable_length_inputs: bool = False,
) -> str:
    """Text ``BatchingParameters`` (tensorflow_serving/servables/tensorflow/session_bundle_config.proto).

    ``allowed_batch_sizes``, when given, must increase and end with ``max_batch_size`` (the server's
    rule); batches are padded up to the next allowed size.
    """
    for name, value in (
        ("max_batch_size", max_batch_size),
        ("max_enqueued_batches", max_enqueued_batches),
        ("num_batch_threads", num_batch_threads),
    ):
        if value <= 0:
            raise ValueError(f"batching parameter {name}={value} must be positive")
    if batch_timeout_micros < 0:
        raise ValueError(f"batching parameter batch_timeout_micros={batch_timeout_micros} must be >= 0")
    sizes = [int(s) for s in allowed_batch_sizes]
    if sizes and (sorted(set(sizes)) != sizes or sizes[-1] != max_batch_size or sizes[0] <= 0):
        raise ValueError(
            f"allowed_batch_sizes={sizes} must be positive, strictly increasing and end with "
            f"max_batch_size={max_batch_size}"
        )
    lines = [
        f"max_batch_size {{ value: {max_batch_size} }}",
        f"batch_timeout_micros {{ value: {batch_timeout_micros} }}",
        f"max_enqueued_batches {{ value: {max_enqueued_batches} }}",
        f"num_batch_threads {{ value: {num_batch_threads} }}",
    ]
    lines += [f"allowed_batch_sizes: {s}" for s in sizes]
    if pad_variable_length_inputs:
        lines.append("pad_variable_length_inputs: true")
    return "\n".join(lines) + "\n"


def write_batching_parameters(base_dir: str, **parameters: int | bool | Sequence[int]) -> str:
    """Writes ``base_dir/batching_parameters.txt`` (atomically) from :func:`batching_parameters_text`
    keyword arguments; returns its path."""
    path = os.path.join(base_dir, BATCHING_PARAMETERS)
    atomic_write(path, batching_parameters_text(**parameters))
    return path
