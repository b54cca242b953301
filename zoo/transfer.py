"""Transfer learning: pretrained weights into a model with another head, and feature extractors.

YouTube-8M §5.3-5.4 reuses a model trained on YouTube-8M on another label set (Sports-1M, ActivityNet):
either as a fixed feature extractor (the LSTM's output at the last frame, DBoF's hidden layer) with a new
classifier on top, or fine-tuned end to end with a new softmax. Here:

- :func:`load_weights` copies every layer whose name and weight shapes match from a saved model into
  ``model`` and leaves the others (typically ``"classifier"`` after a ``num_classes`` change) with their
  fresh initialisation, logging what was loaded and what was skipped and why. ``zoo.get(name,
  num_classes=..., weights=path)`` calls it.
- :func:`feature_extractor` returns a model that outputs a named layer's activations.

Sources ``load_weights`` understands:

- a ``.keras`` file (``model.save``): layers are matched by *name* (read from the file's config);
- a ``.weights.h5`` file (``model.save_weights``): the file holds no layer names, only Keras' per-class
  keys (``dense``, ``dense_1``, ...), so layers are matched by those keys, i.e. by architecture position;
- a TF checkpoint (``tf.train.Checkpoint(model=...)``, e.g. the trainer's ``model_dir``, or a checkpoint
  prefix): matched by layer position in ``model.layers``;
- a directory: its latest TF checkpoint (also in ``checkpoints/`` or ``ckpt/`` below it), else its
  newest ``.keras`` / ``.weights.h5`` file.

A layer is loaded only if *all* its variables are present in the source with identical shapes; it is
never partially loaded.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
import os
import re
import shutil
import tempfile
import zipfile
from typing import Any

import h5py
import keras
import numpy as np
import tensorflow as tf

__all__ = ["TransferReport", "load_weights", "feature_extractor", "resolve_source"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TransferReport:
    """What :func:`load_weights` did: ``loaded`` layer names, ``skipped`` layer name -> reason."""

    source: str
    kind: str
    loaded: list[str] = dataclasses.field(default_factory=list)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)

    def summary(self) -> str:
        lines = [
            f"transfer from {self.source} ({self.kind}): loaded {len(self.loaded)} layer(s), "
            f"skipped {len(self.skipped)}"
        ]
        lines += [f"  loaded  {name}" for name in self.loaded]
        lines += [f"  skipped {name}: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)


def _snake(name: str) -> str:
    # Keras' naming.to_snake_case, which names the groups of .weights.h5 files.
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _h5_keys(class_names: list[str]) -> list[str]:
    """The ``layers/<key>`` group Keras gives each layer of a functional model, in order."""
    used: dict[str, int] = {}
    keys = []
    for cls in class_names:
        key = _snake(cls)
        if key in used:
            used[key] += 1
            key = f"{key}_{used[key]}"
        else:
            used[key] = 0
        keys.append(f"layers/{key}")
    return keys


def _read_group(f: h5py.File, key: str) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if key not in f:
        return out
    group = f[key]

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            out[name] = obj[()]

    group.visititems(visit)
    return out


def resolve_source(path: str) -> tuple[str, str]:
    """``(kind, file)`` for ``path``: kind is ``"keras"``, ``"h5"`` or ``"checkpoint"``."""
    if os.path.isdir(path):
        for d in (path, os.path.join(path, "checkpoints"), os.path.join(path, "ckpt")):
            if os.path.isdir(d):
                ckpt = tf.train.latest_checkpoint(d)
                if ckpt:
                    return "checkpoint", ckpt
        files = glob.glob(os.path.join(path, "*.keras")) + glob.glob(os.path.join(path, "*.weights.h5"))
        if files:
            return resolve_source(max(files, key=os.path.getmtime))
        raise FileNotFoundError(
            f"weights={path!r}: the directory holds no TF checkpoint (also looked in checkpoints/, ckpt/) "
            "and "
            "no .keras / .weights.h5 file"
        )
    if path.endswith(".keras") and os.path.isfile(path):
        return "keras", path
    if path.endswith(".h5") and os.path.isfile(path):
        return "h5", path
    if tf.io.gfile.exists(path + ".index"):
        return "checkpoint", path
    raise FileNotFoundError(
        f"weights={path!r} is not a .keras file, a .weights.h5 file, a TF checkpoint prefix or a directory"
    )


def load_weights(model: keras.Model, path: str) -> TransferReport:
    """Loads the layers of ``path`` whose names (or positions, see the module docstring) and weight shapes
    match into ``model``; returns and logs a :class:`TransferReport`. Raises if nothing could be loaded."""
    kind, file = resolve_source(path)
    report = TransferReport(source=file, kind=kind)
    if kind == "checkpoint":
        _load_checkpoint(model, file, report)
    else:
        _load_h5(model, file, kind, report)
    log.info("%s", report.summary())
    if not report.loaded:
        raise ValueError(
            f"weights={path!r}: no layer of model {model.name!r} matched the source; {report.summary()}"
        )
    return report


def _load_h5(model: keras.Model, file: str, kind: str, report: TransferReport) -> None:
    tmp = tempfile.mkdtemp(prefix="zoo_transfer_")
    try:
        if kind == "keras":
            with zipfile.ZipFile(file) as z:
                config = json.loads(z.read("config.json"))
                z.extract("model.weights.h5", tmp)
            src_file = os.path.join(tmp, "model.weights.h5")
            layers = config.get("config", {}).get("layers", [])
            names = [entry["config"]["name"] for entry in layers]
            src_keys = dict(zip(names, _h5_keys([entry["class_name"] for entry in layers]), strict=True))
        else:
            src_file, src_keys = file, None
        target_file = os.path.join(tmp, "target.weights.h5")
        model.save_weights(target_file)
        tgt_keys = _h5_keys([type(layer).__name__ for layer in model.layers])
        with h5py.File(src_file, "r") as src, h5py.File(target_file, "r+") as tgt:
            for layer, key in zip(model.layers, tgt_keys, strict=True):
                if not layer.weights:
                    continue
                want = _read_group(tgt, key)
                skey = key if src_keys is None else src_keys.get(layer.name)
                have = _read_group(src, skey) if skey else {}
                why = _mismatch(want, have)
                if why:
                    report.skipped[layer.name] = why
                    continue
                for rel, value in have.items():
                    tgt[f"{key}/{rel}"][...] = value
                report.loaded.append(layer.name)
        model.load_weights(target_file)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _mismatch(want: dict[str, np.ndarray], have: dict[str, np.ndarray]) -> str:
    if not have:
        return "not in the source"
    for rel, value in want.items():
        if rel not in have:
            return f"variable {rel} not in the source"
        if have[rel].shape != value.shape:
            return f"shape {tuple(have[rel].shape)} in the source vs {tuple(value.shape)} here"
    return ""


def _resolve(obj: Any, attr_path: str) -> Any:
    for part in attr_path.split("/"):
        obj = obj[int(part)] if part.isdigit() and isinstance(obj, list | tuple) else getattr(obj, part)
    return obj


def _load_checkpoint(model: keras.Model, file: str, report: TransferReport) -> None:
    reader = tf.train.load_checkpoint(file)
    shapes = reader.get_variable_to_shape_map()
    pattern = re.compile(r"^(.*?)_operations/(\d+)/(.+)/\.ATTRIBUTES/VARIABLE_VALUE$")
    per_layer: dict[int, dict[str, str]] = {}
    prefixes: dict[str, int] = {}
    for key in shapes:
        m = pattern.match(key)
        if m and "OPTIMIZER_SLOT" not in key:
            prefixes[m.group(1)] = prefixes.get(m.group(1), 0) + 1
    if not prefixes:
        raise ValueError(f"checkpoint {file!r} holds no Keras model variables (no '_operations/' keys)")
    prefix = max(prefixes, key=prefixes.get)  # the model's root in the checkpoint, e.g. "model/"
    for key in shapes:
        m = pattern.match(key)
        if m and m.group(1) == prefix:
            per_layer.setdefault(int(m.group(2)), {})[m.group(3)] = key
    for index, layer in enumerate(model.layers):
        if not layer.weights:
            continue
        entries = per_layer.get(index, {})
        if not entries:
            report.skipped[layer.name] = f"no variables at position {index} in the checkpoint"
            continue
        pairs, why = [], ""
        for attr_path, key in entries.items():
            try:
                var = _resolve(layer, attr_path)
            except (AttributeError, IndexError):
                why = f"variable {attr_path} has no counterpart here"
                break
            if tuple(var.shape) != tuple(shapes[key]):
                why = f"{attr_path}: shape {tuple(shapes[key])} in the source vs {tuple(var.shape)} here"
                break
            pairs.append((var, key))
        if not why and len(pairs) != len(layer.weights):
            why = f"{len(pairs)} variables in the source vs {len(layer.weights)} here"
        if why:
            report.skipped[layer.name] = why
            continue
        for var, key in pairs:
            var.assign(reader.get_tensor(key))
        report.loaded.append(layer.name)


def feature_extractor(model: keras.Model, layer_name: str) -> keras.Model:
    """A model with ``model``'s inputs whose output is layer ``layer_name``'s output, sharing weights.

    E.g. ``feature_extractor(zoo.get("yt8m_lstm", weights=...), "lstm_2")`` gives the top LSTM's output at
    the last real frame (§5.3); ``"hidden"`` of ``yt8m_dbof`` gives the DBoF hidden layer.
    """
    names = [layer.name for layer in model.layers]
    if layer_name not in names:
        raise ValueError(
            f"layer_name={layer_name!r} is not a layer of {model.name!r}; layers: {', '.join(names)}"
        )
    return keras.Model(model.input, model.get_layer(layer_name).output, name=f"{model.name}_{layer_name}")
