"""A trainer's ``--model_dir``: its ``run.json``, its assets and its lock, for the trainer and the tools.

``run.json`` (:data:`RUN_FILE`) = ``{"model", "config" (the merged model config), "recipe" (the merged
recipe), "dataset", "data_dir", "assets"}``, made by :func:`describe_run`. Right after building the data
(before training) the trainer's chief writes it and each of the task's assets (e.g. the char-LM
``vocab.json``) with :func:`write_run_files`, each to a temporary file renamed into place. The exporter,
the sampler and the YouTube-8M eval/infer tools read it with :func:`read_run` (which validates it) and
rebuild the model with :func:`restore`, so none of them needs ``--model`` or ``--config`` repeated.

A rerun in a ``--model_dir`` that has a ``run.json`` must describe the same run (:func:`check_resume`):
another model, model config, recipe or dataset is refused, naming the keys; ``train_steps`` and
``eval_batch_size`` may change (:data:`RESUMABLE_RECIPE_KEYS`), and a moved ``--data_dir`` is allowed. An
asset name follows one rule, :func:`check_asset_name`, in the trainer and the exporter alike.

One trainer at a time: :func:`hold_lock` creates :data:`LOCK_FILE` exclusively (``O_EXCL``) holding the
process id, host, boot id and start time, and removes it when the block ends. A second trainer in the same
``--model_dir`` is refused with an error naming the holder; the lock of a process that no longer runs on
this host (killed, or the machine rebooted) is taken over.
"""

from __future__ import annotations

import ast
import contextlib
import datetime
import json
import os
import socket
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from zoo.io import atomic_write

__all__ = [
    "RUN_FILE",
    "LOCK_FILE",
    "RESUMABLE_RECIPE_KEYS",
    "RunDirError",
    "RunLockedError",
    "parse_overrides",
    "parse_value",
    "read_run",
    "restore",
    "describe_run",
    "check_resume",
    "write_run_files",
    "check_asset_name",
    "hold_lock",
]

#: The run description json in ``--model_dir``.
RUN_FILE = "run.json"
#: The trainer's lock in ``--model_dir`` (see :func:`hold_lock`).
LOCK_FILE = "trainer.lock"
#: Recipe keys that may change between a run and its resumption (to train longer, evaluate differently).
RESUMABLE_RECIPE_KEYS = ("train_steps", "eval_batch_size")


class RunDirError(ValueError):
    """A model_dir that cannot be restored (missing, no run.json naming a model, no checkpoint)."""


def parse_value(text: str) -> Any:
    """A ``--config key=value`` value: json or a Python literal (numbers, lists, booleans, None), else
    the string itself."""
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError):
            continue
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    return text


def parse_overrides(items: Sequence[str], flag: str = "--config") -> dict[str, Any]:
    """``["key=value", ...]`` -> ``{key: parsed value}``; an item without ``=`` names the flag."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise RunDirError(f"{flag}={item!r} is not key=value")
        out[key.strip()] = parse_value(text)
    return out


def read_run(model_dir: str) -> dict[str, Any]:
    """The ``run.json`` of ``model_dir`` as a dict (``{}`` when there is none)."""
    path = os.path.join(model_dir, RUN_FILE)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError) as e:
        raise RunDirError(f"{path} cannot be read as json: {e}") from e
    if not isinstance(info, dict):
        raise RunDirError(f"{path} is not a json object")
    _check_run(info, path)
    return info


def _check_run(info: Mapping[str, Any], path: str) -> None:
    """Raises :class:`RunDirError` naming the key if a ``run.json`` field has the wrong kind of value or
    lists an asset name that :func:`check_asset_name` refuses (checked before any asset path is used)."""
    kinds = {"model": str, "config": dict, "recipe": dict, "dataset": str, "data_dir": str, "assets": list}
    for key, kind in kinds.items():
        if info.get(key) is not None and not isinstance(info[key], kind):
            raise RunDirError(f"{path}: {key!r} is {info[key]!r}, not a json {kind.__name__}")
    for name in info.get("assets") or []:
        try:
            check_asset_name(name)
        except ValueError as e:
            raise RunDirError(f"{path} lists an asset that cannot be used: {e}") from e


def restore(
    model_dir: str,
    model: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    checkpoint: str | None = None,
) -> tuple[Any, str, dict[str, Any], dict[str, Any]]:
    """``(keras_model, registered name, full model config, run info)`` rebuilt from ``model_dir``.

    The model name and config come from ``run.json`` unless ``model`` / ``overrides`` say otherwise (a
    config recorded for another model is ignored); the weights from ``checkpoint`` or the latest
    ``tf.train.Checkpoint(model=...)`` in ``model_dir``. Every object the model holds must be restored.
    """
    import tensorflow as tf

    import zoo

    if not os.path.isdir(model_dir):
        raise RunDirError(f"--model_dir={model_dir!r} does not exist or is not a directory")
    info = read_run(model_dir)
    name = model or info.get("model")
    if not name:
        raise RunDirError(f"--model_dir={model_dir!r} has no {RUN_FILE} naming the model; pass --model")
    config = dict(info.get("config") or {}) if name == info.get("model") else {}
    config.update(overrides or {})
    spec = zoo.get_spec(name)
    keras_model = zoo.get(name, **config)
    path = checkpoint or tf.train.latest_checkpoint(model_dir)
    if path is None:
        raise RunDirError(f"--model_dir={model_dir!r} holds no checkpoint (no 'checkpoint' index file)")
    status = tf.train.Checkpoint(model=keras_model).restore(path)
    status.expect_partial()
    status.assert_existing_objects_matched()
    return keras_model, name, {**spec.default_config(), **config}, {**info, "checkpoint": path}


#: Names an asset may not take (compared case-insensitively): the trainer's and ``tf.train``'s own files
#: in ``--model_dir`` and TF Serving's warmup file in ``assets.extra/``. ``ckpt-*`` is reserved as well.
RESERVED_ASSET_NAMES = (RUN_FILE, LOCK_FILE, "checkpoint", "train", "tf_serving_warmup_requests")
_ASSET_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_MAX_ASSET_NAME = 255  # bytes in one path component on common file systems (NAME_MAX)


def check_asset_name(name: str) -> None:
    """Raises ValueError unless ``name`` may name an asset: a file the trainer writes into ``--model_dir``
    (``TaskData.assets``, listed in ``run.json``) and the exporter copies into ``assets.extra/`` of the
    SavedModel, e.g. ``vocab.json``. The trainer and the exporter share this one rule:

    - a plain file name of ASCII letters, digits, ``_``, ``.`` and ``-`` (the POSIX portable file name
      characters: no whitespace, no ``/`` or ``\\``, nothing a shell or a server config must quote);
    - not hidden and not ``.``/``..`` (no leading ``.``), no leading ``-`` (read as an option by tools);
    - at most 255 characters;
    - none of :data:`RESERVED_ASSET_NAMES` and not ``ckpt-*`` (checkpoint files), in any letter case, so
      that it cannot replace a file of the run on a case-insensitive file system either.
    """
    if not isinstance(name, str) or not name:
        problem = "is empty" if name == "" else f"is a {type(name).__name__}, not a string"
    elif bad := sorted(set(name) - _ASSET_NAME_CHARS):
        problem = f"contains {', '.join(repr(c) for c in bad)}"
    elif name[0] in ".-":
        problem = f"starts with {name[0]!r}"
    elif len(name) > _MAX_ASSET_NAME:
        problem = f"is {len(name)} characters long"
    elif name.lower() in RESERVED_ASSET_NAMES or name.lower().startswith("ckpt-"):
        problem = "is reserved"
    else:
        return
    raise ValueError(
        f"asset name {name!r} {problem}: an asset name is a plain file name of letters, digits, '_', '.' "
        f"and '-', not starting with '.' or '-', at most {_MAX_ASSET_NAME} characters, and none of "
        f"{', '.join(RESERVED_ASSET_NAMES)}, ckpt-*"
    )


# ---------------------------------------------------------------------------------------- run.json
def _json_value(value: Any) -> Any:
    """``value`` as json reads it back (tuples become lists), so recorded and new values compare equal."""
    return json.loads(json.dumps(value, allow_nan=False))


def _data_location(data_dir: str | None) -> str | None:
    """``data_dir`` made absolute (a local path or pattern), so the record works from any directory."""
    if data_dir is None or "://" in data_dir:
        return data_dir
    return os.path.abspath(os.path.expanduser(data_dir))


def describe_run(
    *,
    model: str,
    config: Mapping[str, Any],
    recipe: Mapping[str, Any],
    dataset: str,
    data_dir: str | None,
    assets: Sequence[str] = (),
) -> dict[str, Any]:
    """The ``run.json`` content of a run, as json reads it back; an asset name or a value json cannot
    hold raises :class:`RunDirError`."""
    for name in assets:
        check_asset_name(name)
    try:
        return _json_value(
            {
                "model": model,
                "config": dict(config),
                "recipe": dict(recipe),
                "dataset": dataset,
                "data_dir": _data_location(data_dir),
                "assets": sorted(assets),
            }
        )
    except (TypeError, ValueError) as e:
        raise RunDirError(f"the config or recipe of {model!r} cannot be written as json: {e}") from e


def _differences(old: Any, new: Any) -> list[str]:
    """``key: recorded -> new`` for each key whose value differs between two json objects."""
    old, new = dict(old or {}), dict(new or {})
    unset = "<unset>"
    keys = sorted(k for k in set(old) | set(new) if k not in old or k not in new or old[k] != new[k])
    return [f"{k}: {old.get(k, unset)!r} -> {new.get(k, unset)!r}" for k in keys]


def check_resume(model_dir: str, info: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``run.json`` already in ``model_dir`` (None if there is none), checked against ``info``.

    Raises :class:`RunDirError` when it names another model, or another model config, recipe (apart from
    :data:`RESUMABLE_RECIPE_KEYS`) or dataset; the message names the differing keys with the recorded and
    the new values.
    """
    path = os.path.join(model_dir, RUN_FILE)
    if not os.path.isfile(path):
        return None
    try:
        old = read_run(model_dir)
    except RunDirError as e:
        raise RunDirError(f"{e}; remove it or use another --model_dir") from e
    advice = f"rerun with the recorded values, or use another --model_dir (or remove {path})"
    if old.get("model") != info["model"]:
        raise RunDirError(
            f"--model={info['model']!r} but --model_dir={model_dir!r} holds a run of model "
            f"{old.get('model')!r} ({path}); {advice}"
        )
    problems = []
    for key, what in (("config", "model config"), ("recipe", "recipe")):
        recorded, wanted = dict(old.get(key) or {}), dict(info[key])
        if key == "recipe":
            for k in RESUMABLE_RECIPE_KEYS:
                recorded.pop(k, None)
                wanted.pop(k, None)
        diff = _differences(recorded, wanted)
        if diff:
            problems.append(f"{what} key(s) differ (recorded -> new): {'; '.join(diff)}")
    if old.get("dataset") != info["dataset"]:
        problems.append(f"--dataset: {old.get('dataset')!r} -> {info['dataset']!r}")
    if problems:
        raise RunDirError(
            f"--model_dir={model_dir!r} holds a run of {info['model']!r} with other settings ({path}): "
            f"{'; '.join(problems)}; {advice}"
        )
    return old


def write_run_files(
    model_dir: str,
    info: Mapping[str, Any],
    assets: Mapping[str, bytes],
    previous: Mapping[str, Any] | None = None,
) -> None:
    """Writes ``run.json`` (``info``) and each asset (name -> bytes) into ``model_dir``, atomically.

    With ``previous`` (a resumed run), an asset that differs from the one the earlier run wrote (e.g. a
    vocabulary built from changed data) is refused: the checkpoint's weights belong to the old one.
    """
    for name in assets:
        check_asset_name(name)
    os.makedirs(model_dir, exist_ok=True)
    if previous is not None:
        changed = []
        for name, data in assets.items():
            path = os.path.join(model_dir, name)
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    if f.read() != bytes(data):
                        changed.append(name)
        if changed:
            raise RunDirError(
                f"--model_dir={model_dir!r}: the data now gives other {', '.join(changed)} than the run "
                f"being resumed wrote (was --data_dir changed? recorded: {previous.get('data_dir')!r}, "
                f"now: {info.get('data_dir')!r}); use another --model_dir"
            )
    for name, data in assets.items():
        atomic_write(os.path.join(model_dir, name), bytes(data))
    text = json.dumps(dict(info), indent=2, sort_keys=True) + "\n"
    atomic_write(os.path.join(model_dir, RUN_FILE), text.encode("utf-8"))


# ---------------------------------------------------------------------------------------- the lock
class RunLockedError(RunDirError):
    """Another trainer holds ``--model_dir`` (the message names its process, host and start time)."""


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return ""


def _proc_field(path: str) -> str | None:
    text = _read_text(path)
    return text.strip() if text else None


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux ``/proc``; None elsewhere)."""
    stat = _proc_field(f"/proc/{pid}/stat")
    if not stat or ")" not in stat:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] if len(fields) > 19 else None  # field 22 of proc(5), counted after "pid (comm)"


def _holder_record() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "boot_id": _proc_field("/proc/sys/kernel/random/boot_id"),
        "pid_start": _process_start(os.getpid()),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(sys.argv)[:1000],
    }


def _holder_gone(holder: Mapping[str, Any]) -> bool:
    """True when the lock's process surely no longer runs: same host and either another boot, no such
    process, or a process with that id that started at another time (the id was reused)."""
    if holder.get("host") != socket.gethostname():
        return False  # another machine (a shared file system): it cannot be checked from here
    boot = _proc_field("/proc/sys/kernel/random/boot_id")
    if holder.get("boot_id") and boot and holder["boot_id"] != boot:
        return True
    pid = holder.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, owned by another user
    start = holder.get("pid_start")
    return bool(start) and _process_start(pid) not in (None, start)


def _describe_holder(holder: Mapping[str, Any]) -> str:
    return (
        f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started "
        f"{holder.get('started', '?')}"
    )


def _read_holder(path: str, grace_s: float) -> dict[str, Any] | None:
    """The lock's record; None if the lock vanished. A lock without a readable record (a process died
    between creating and writing it) counts as gone once it is ``grace_s`` old."""
    text = _read_text(path)
    if text is None:
        return None
    try:
        holder = json.loads(text)
        if isinstance(holder, dict):
            return holder
    except ValueError:
        pass
    try:
        age = time.time() - os.path.getmtime(path)
    except OSError:
        return None
    return {"unreadable": True, "gone": age > grace_s}


def _take_over(path: str, text_seen: str | None) -> bool:
    """Removes the stale lock at ``path`` unless another process replaced it meanwhile; True if done."""
    private = f"{path}.stale-{os.getpid()}"
    try:
        os.rename(path, private)
    except FileNotFoundError:
        return True  # someone else removed it
    if _read_text(private) != text_seen:  # not the lock we judged stale: put it back
        with contextlib.suppress(OSError):
            os.link(private, path)
        os.remove(private)
        return False
    os.remove(private)
    return True


def _acquire(model_dir: str, grace_s: float) -> tuple[str, str]:
    path = os.path.join(model_dir, LOCK_FILE)
    record = json.dumps(_holder_record(), sort_keys=True)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            text = _read_text(path)
            holder = _read_holder(path, grace_s)
            if holder is None:
                continue
            gone = holder["gone"] if holder.get("unreadable") else _holder_gone(holder)
            if not gone:
                who = "a trainer that is starting" if holder.get("unreadable") else _describe_holder(holder)
                raise RunLockedError(
                    f"--model_dir={model_dir!r} is in use by another trainer ({who}; lock {path}); wait for "
                    f"it to finish or use another --model_dir (if that process is gone, remove {path})"
                ) from None
            if _take_over(path, text):
                print(f"note: took over the lock of a trainer that no longer runs ({path})", file=sys.stderr)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(record)
            f.flush()
            os.fsync(f.fileno())
        return path, record
    raise RunLockedError(f"--model_dir={model_dir!r}: could not take the lock {path}; try again")


@contextlib.contextmanager
def hold_lock(model_dir: str, grace_s: float = 10.0) -> Iterator[str]:
    """Holds ``model_dir``'s trainer lock (:data:`LOCK_FILE`) for the block; yields its path.

    Raises :class:`RunLockedError` naming the holder (pid, host, start time) while a live process holds
    it. A lock whose process no longer runs on this host is taken over; a lock written by another host
    (a shared file system) is never judged stale. The lock is removed when the block ends, also on error.
    """
    os.makedirs(model_dir, exist_ok=True)
    path, record = _acquire(model_dir, grace_s)
    try:
        yield path
    finally:
        if _read_text(path) == record:  # still ours
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
