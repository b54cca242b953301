"""SavedModel export for TF Serving: ``BASE/<model_name>/<version>/``.

``export_model`` traces the task's serving functions (``task.serving_functions``) into a SavedModel
with ``keras.export.ExportArchive``, so the custom layers become plain TF graph ops and the SavedModel
loads in a process that never imports ``zoo`` (TF Serving runs no Python at all). Layout::

    BASE/models.config                         text ModelServerConfig listing every model under BASE
    BASE/batching_parameters.txt               optional, for --enable_batching
    BASE/<model_name>/<version>/saved_model.pb
    BASE/<model_name>/<version>/variables/
    BASE/<model_name>/<version>/assets.extra/tf_serving_warmup_requests
    BASE/<model_name>/<version>/assets.extra/<task assets, e.g. a vocabulary>

The version is an integer, by default one more than the largest existing one (TF Serving serves the
largest). Everything is written into a hidden temporary folder
``BASE/<model_name>/.tmp-export-<pid>-<host>-*`` (TF Serving only looks at integer folder names) and
renamed into place in one step, so a polling server never sees a half-written version; on failure the
temporary folder is removed, and one left by a killed export is removed by the next export (see
:func:`remove_stale_temps`).

Assets (``assets.extra/`` files other than the warmup records) are checked with
:func:`zoo.run_dir.check_asset_name`, the rule the trainer uses for the files it lists in ``run.json``;
the command line copies only regular files from ``--model_dir`` (a symbolic link there is refused).

Command line (export the last checkpoint of a trainer ``--model_dir``)::

    python -m exports.export --model_dir=/tmp/run --export_dir=exported [--serving_base_path=/models]
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

from exports import serving_config, warmup
from zoo import run_dir
from zoo.registry import get_spec
from zoo.tasks import get_task

__all__ = [
    "ExportError",
    "STALE_TEMP_AGE_S",
    "export_model",
    "next_version",
    "read_asset_file",
    "read_run_assets",
    "remove_stale_temps",
    "restore_for_export",
    "run",
    "main",
]

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TEMP_PREFIX = ".tmp-export-"
#: ``.tmp-export-<pid>-<owner tag>-<mkdtemp suffix>``; the tag and the suffix hold no "-".
_TEMP_NAME = re.compile(r"^\.tmp-export-([0-9]+)-([A-Za-z0-9._]+)-[A-Za-z0-9_]+$")
#: A temporary export folder older than this is stale whoever made it (its owner on another machine
#: cannot be asked; a pid can be reused). No export takes that long; a live one is never this old.
STALE_TEMP_AGE_S = 24 * 3600


class ExportError(ValueError):
    """An export that cannot be written as asked (bad name, taken version, mismatched warmup)."""


def next_version(model_dir: str) -> int:
    """One more than the largest integer folder name under ``model_dir`` (1 when there is none)."""
    if not os.path.isdir(model_dir):
        return 1
    taken = [int(n) for n in os.listdir(model_dir) if n.isdigit()]
    return max(taken, default=0) + 1


def _check_assets(assets: Mapping[str, bytes]) -> None:
    for name, data in assets.items():
        try:
            run_dir.check_asset_name(name)  # also reserves warmup.WARMUP_FILE
        except ValueError as e:
            raise ExportError(str(e)) from None
        if not isinstance(data, bytes | bytearray):
            raise ExportError(f"asset {name!r} must be bytes, got {type(data).__name__}")


# ------------------------------------------------------------------------------------ asset files
def read_asset_file(path: str, what: str, *, follow_symlinks: bool = False) -> bytes:
    """The bytes of the regular file at ``path``; ``what`` names it in errors (e.g. ``--asset=...``).

    Without ``follow_symlinks`` a symbolic link is refused (opened with ``O_NOFOLLOW``, so a link swapped
    in after the check is refused too). Folders, pipes and devices are refused either way (a pipe is
    opened non-blocking, so it cannot hang the export).
    """
    mode = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    symlink = ExportError(
        f"{what}: {path} is a symbolic link; only regular files are copied into the export (replace the "
        "link by a copy of the file)"
    )
    if not follow_symlinks:
        if os.path.islink(path):
            raise symlink
        mode |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, mode)
    except FileNotFoundError:
        raise ExportError(f"{what}: {path} does not exist") from None
    except OSError as e:
        if e.errno == errno.ELOOP and not follow_symlinks:
            raise symlink from None
        raise ExportError(f"{what}: {path} cannot be read ({e.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ExportError(f"{what}: {path} is not a regular file")
        return f.read()


def read_run_assets(model_dir: str) -> dict[str, bytes]:
    """``{name: bytes}`` of the assets the ``run.json`` of ``model_dir`` lists (e.g. a char LM's
    ``vocab.json``). :func:`zoo.run_dir.read_run` checks every name (:func:`zoo.run_dir.check_asset_name`)
    before any path is opened; only regular files inside ``model_dir`` are read (a link is refused)."""
    source = os.path.join(model_dir, run_dir.RUN_FILE)
    return {
        name: read_asset_file(os.path.join(model_dir, name), f"asset {name!r} listed in {source}")
        for name in run_dir.read_run(model_dir).get("assets") or []
    }


# ------------------------------------------------------------------------------------ temporary folders
def _owner_tag() -> str:
    """This process's machine as a name part: host name, plus the pid namespace where one is readable
    (two containers sharing a volume and a host name have distinct ones)."""
    host = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())[:64] or "localhost"
    try:
        namespace = re.sub(r"[^0-9]", "", os.readlink("/proc/self/ns/pid"))
    except OSError:
        namespace = ""
    return f"{host}_{namespace}" if namespace else host


def _temp_prefix() -> str:
    return f"{_TEMP_PREFIX}{os.getpid()}-{_owner_tag()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists (another user's)
        return True
    return True


def _temp_is_stale(name: str, mtime: float, now: float, max_age_s: float) -> bool:
    if now - mtime > max_age_s:
        return True
    owner = _TEMP_NAME.match(name)
    if owner is None or os.name != "posix" or owner.group(2) != _owner_tag():
        return False  # no owner this machine can ask: only the age counts
    pid = int(owner.group(1))
    return 0 < pid < 2**22 and not _pid_alive(pid)


def remove_stale_temps(model_dir: str, max_age_s: float = STALE_TEMP_AGE_S) -> list[str]:
    """Removes the temporary export folders (``.tmp-export-*``) under ``model_dir`` that no running
    export owns; returns their paths.

    A folder is stale when the process that made it on this machine (pid and machine are in its name)
    has ended, or when it is older than ``max_age_s`` (a folder made on another machine, or by an export
    older than this naming). A running export's folder, in this process or another, is kept.
    """
    removed = []
    now = time.time()
    try:
        names = os.listdir(model_dir)
    except FileNotFoundError:
        return removed
    for name in names:
        if not name.startswith(_TEMP_PREFIX):
            continue
        path = os.path.join(model_dir, name)
        try:
            info = os.lstat(path)
        except FileNotFoundError:  # another export removed it first
            continue
        if stat.S_ISDIR(info.st_mode) and _temp_is_stale(name, info.st_mtime, now, max_age_s):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _signature_functions(task: Any, fns: Mapping[str, Any]) -> dict[str, Any]:
    if "serving_default" not in fns:
        raise ExportError(
            f"task {task.name!r} returned signatures {sorted(fns)}; 'serving_default' is required"
        )
    concrete = {}
    for name, fn in fns.items():
        try:
            concrete[name] = fn.get_concrete_function()
        except (TypeError, ValueError, AttributeError) as e:
            raise ExportError(
                f"serving function {name!r} of task {task.name!r} must be a tf.function with a full "
                f"input_signature ({e})"
            ) from e
    return concrete


def _warmup_inputs(task: Any, model: Any, config: Mapping[str, Any], concrete: Mapping[str, Any]) -> dict:
    inputs = task.warmup_inputs(model, config)
    if set(inputs) != set(concrete):
        raise ExportError(
            f"task {task.name!r}: warmup requests for signatures {sorted(inputs)} but the SavedModel has "
            f"signatures {sorted(concrete)}; give exactly one request per signature"
        )
    for name, request in inputs.items():
        warmup.check_inputs(name, concrete[name], request)
    return inputs


def _write_saved_model(model: Any, functions: Mapping[str, Any], path: str, resources: Any = ()) -> None:
    archive = keras.export.ExportArchive()
    archive.track(model)
    for resource in resources:  # e.g. a tokenizer the serving functions call (Task.serving_resources)
        archive.track(resource)
    for name, fn in functions.items():
        archive.add_endpoint(name, fn)
    archive.write_out(path, verbose=False)


def _max_diff(got: Any, want: np.ndarray) -> str:
    if got is None:
        return "missing"
    if np.shape(got) != np.shape(want):
        return f"shape {np.shape(got)} vs {np.shape(want)}"
    if want.dtype.kind in "OSU":
        return "string values differ"
    return f"{np.max(np.abs(np.asarray(got, np.float64) - want)):.3g}"


def _same(got: Any, want: np.ndarray) -> bool:
    """Numeric outputs match to float tolerance; string outputs (e.g. video ids) exactly."""
    if got is None or got.shape != want.shape:
        return False
    if want.dtype.kind in "OSU":
        return bool(np.array_equal(got, want))
    return bool(np.allclose(got, want, rtol=1e-4, atol=1e-5))


def _verify(path: str, expected: Mapping[str, Mapping[str, np.ndarray]], warmup_path: str) -> None:
    """Loads the written SavedModel and replays its warmup file; outputs must match the in-memory model."""
    loaded = tf.saved_model.load(path)
    for name, outputs in warmup.replay(loaded.signatures, warmup_path):
        for key, value in expected[name].items():
            got = outputs.get(key)
            if not _same(got, value):
                raise ExportError(
                    f"exported signature {name!r} output {key!r} differs from the model's "
                    f"(max abs diff {_max_diff(got, value)})"
                )


def export_model(
    model: Any,
    *,
    model_name: str,
    task: Any,
    config: Mapping[str, Any],
    base_dir: str,
    assets: Mapping[str, bytes] | None = None,
    version: int | None = None,
    serving_base_path: str | None = None,
    batching_parameters: Mapping[str, Any] | None = None,
    verify: bool = True,
) -> str:
    """Writes ``model`` as ``base_dir/<model_name>/<version>/`` for TF Serving; returns that path.

    Args:
      model: a built Keras model.
      model_name: the TF Serving model name (and folder name), e.g. ``"hyper_conv_mnist"``.
      task: a :class:`zoo.tasks.base.Task`; supplies ``serving_functions`` and ``warmup_inputs``.
      config: the model config (passed to the task).
      base_dir: the export base folder (``--export_dir``).
      assets: extra files for ``assets.extra/`` (name -> bytes), e.g. a vocabulary.
      version: integer version; default the next free number. An existing version is an error.
      serving_base_path: where the *server* sees ``base_dir`` (e.g. ``/models`` inside the TF Serving
        container); written into ``models.config``. Default: the absolute local ``base_dir``.
      batching_parameters: when given, also writes ``base_dir/batching_parameters.txt`` from these
        keyword arguments of :func:`exports.serving_config.batching_parameters_text` (``{}`` = defaults).
      verify: reload the written SavedModel and replay the warmup requests before publishing it.
    """
    if not _MODEL_NAME.match(model_name or ""):
        raise ExportError(f"model_name={model_name!r} is not valid: letters, digits, '_', '.', '-' only")
    if version is not None and (not isinstance(version, int) or version <= 0):
        raise ExportError(f"version={version!r} must be a positive integer")
    assets = dict(assets or {})
    _check_assets(assets)
    model_dir = os.path.join(base_dir, model_name)
    if version is not None and os.path.exists(os.path.join(model_dir, str(version))):
        raise ExportError(
            f"version {version} of {model_name!r} already exists at {os.path.join(model_dir, str(version))}; "
            f"pass another version or omit it for the next free one ({next_version(model_dir)})"
        )
    if hasattr(task, "bind_assets"):  # Task's hooks; a duck-typed task without them binds nothing
        task.bind_assets(model, assets)
    functions = dict(task.serving_functions(model, config))
    concrete = _signature_functions(task, functions)
    requests = _warmup_inputs(task, model, config, concrete)
    expected = {
        name: {k: v.numpy() for k, v in functions[name](**request).items()}
        for name, request in requests.items()
    }

    os.makedirs(model_dir, exist_ok=True)
    remove_stale_temps(model_dir)
    tmp = tempfile.mkdtemp(prefix=_temp_prefix(), dir=model_dir)
    try:
        _write_saved_model(model, functions, tmp, getattr(task, "serving_resources", lambda m: [])(model))
        extra = os.path.join(tmp, warmup.ASSETS_EXTRA)
        os.makedirs(extra, exist_ok=True)
        warmup_path = os.path.join(extra, warmup.WARMUP_FILE)
        warmup.write_requests(warmup_path, warmup.build_requests(model_name, requests))
        for name, data in assets.items():
            with open(os.path.join(extra, name), "wb") as f:
                f.write(data)
        if verify:
            _verify(tmp, expected, warmup_path)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the server may run as another user.
        final = _publish(tmp, model_dir, version)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    serving_config.write_models_config(base_dir, serving_base_path)
    if batching_parameters is not None:
        serving_config.write_batching_parameters(base_dir, **batching_parameters)
    return final


def _publish(tmp: str, model_dir: str, version: int | None) -> str:
    """Renames ``tmp`` to ``model_dir/<version>``; with ``version=None`` takes the next free number,
    moving on if another exporter takes it first.

    ``rename(2)`` of a folder is atomic and fails when the target is a non-empty folder, so the version
    appears complete or not at all, and two exporters racing for one number cannot overwrite each other.
    (No empty placeholder folder is ever created: a polling server would try to load it.)"""
    for _ in range(1000):
        v = version if version is not None else next_version(model_dir)
        final = os.path.join(model_dir, str(v))
        if os.path.exists(final) and version is None:
            continue
        try:
            os.rename(tmp, final)
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR):
                raise
            if version is not None:
                raise ExportError(f"version {version} of {model_dir!r} already exists at {final}") from None
            continue
        return final
    raise ExportError(f"could not find a free version under {model_dir!r}")


# ------------------------------------------------------------------------------------ command line
def _define_flags() -> None:
    flags.DEFINE_string("model_dir", None, "Trainer --model_dir holding the checkpoints and the run config.")
    flags.DEFINE_string("export_dir", None, "Export base folder: writes <export_dir>/<model>/<version>/.")
    flags.DEFINE_string("model", None, "Registered model name; default: the one recorded in --model_dir.")
    flags.DEFINE_string("model_name", None, "TF Serving model name (folder); default: the registered name.")
    flags.DEFINE_integer("version", None, "Integer version; default: the next free number.")
    flags.DEFINE_string(
        "serving_base_path",
        None,
        "Where the server sees --export_dir (e.g. /models in the TF Serving "
        "container); written into models.config. Default: the absolute local --export_dir.",
    )
    flags.DEFINE_bool("batching", False, "Also write batching_parameters.txt (for --enable_batching).")
    flags.DEFINE_integer("max_batch_size", 64, "Batching: max_batch_size.")
    flags.DEFINE_integer("batch_timeout_micros", 1000, "Batching: batch_timeout_micros.")
    flags.DEFINE_integer("num_batch_threads", 4, "Batching: num_batch_threads.")
    flags.DEFINE_multi_string("config", [], "Model config override key=value (on top of the run json's).")
    flags.DEFINE_string("checkpoint", None, "A checkpoint prefix (default: the latest in --model_dir).")
    flags.DEFINE_multi_string("asset", [], "name=path: a file to copy into assets.extra/ (repeatable).")
    flags.DEFINE_bool(
        "verify", True, "Reload the SavedModel and replay the warmup requests before publishing."
    )
    flags.mark_flags_as_required(["model_dir", "export_dir"])


def restore_for_export(
    model_dir: str,
    model: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    checkpoint: str | None = None,
) -> tuple[Any, str, Any, dict[str, Any]]:
    """``(model, registered name, task, config)`` rebuilt from a trainer ``model_dir``
    (:func:`zoo.run_dir.restore`: name and config from its ``run.json``, weights from its checkpoint)."""
    keras_model, name, config, _ = run_dir.restore(model_dir, model, overrides, checkpoint)
    return keras_model, name, get_task(get_spec(name).task), config


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {' '.join(argv[1:])}")
    f = flags.FLAGS
    try:
        # The run's own assets (e.g. a char LM's vocab.json) travel with the model, unless --asset
        # names a replacement. Names are checked before any file is read, and before the restore.
        assets = read_run_assets(f.model_dir) if os.path.isdir(f.model_dir) else {}
        for item in f.asset:
            key, sep, path = item.partition("=")
            if not sep:
                raise ExportError(f"--asset={item!r}: expected name=path of an existing file")
            try:
                run_dir.check_asset_name(key)
            except ValueError as e:
                raise ExportError(f"--asset={item!r}: {e}") from None
            # A path given on the command line is the user's choice: a link there is followed.
            assets[key] = read_asset_file(path, f"--asset={item!r}", follow_symlinks=True)
        model, name, task, config = restore_for_export(
            f.model_dir, f.model, run_dir.parse_overrides(f.config), f.checkpoint
        )
        batching = None
        if f.batching:
            batching = {
                "max_batch_size": f.max_batch_size,
                "batch_timeout_micros": f.batch_timeout_micros,
                "num_batch_threads": f.num_batch_threads,
            }
        path = export_model(
            model,
            model_name=f.model_name or name,
            task=task,
            config=config,
            base_dir=f.export_dir,
            assets=assets,
            version=f.version,
            serving_base_path=f.serving_base_path,
            batching_parameters=batching,
            verify=f.verify,
        )
    except (ExportError, ValueError, KeyError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    config_path = os.path.join(f.export_dir, serving_config.MODELS_CONFIG)
    print(f"exported {name} to {path}; models.config: {config_path}")


def run() -> None:
    """Console-script entry point (``zoo-export``)."""
    _define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
