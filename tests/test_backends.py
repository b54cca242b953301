"""Every registered model builds, runs and trains under the current Keras backend.

The library half (``zoo.layers``, ``zoo.models``, ``zoo.losses``) is pure ``keras.ops``. This file runs in
the normal (TensorFlow) pass and again under ``KERAS_BACKEND=jax`` in ``.ci/run``; by hand also under
``KERAS_BACKEND=torch`` (``pip install 'zoo[torch]'``). Every registered model is built small through
``zoo.get`` overrides; registered names that build the same architecture at those sizes are grouped, and
one of each group runs forward and, on JAX and PyTorch, is fitted for two steps with ``model.fit`` on random
data (XLA through ``jit_compile=True`` on JAX; PyTorch runs eagerly, see README "Other backends"). On
TensorFlow, where the trainer, distribution and family tests train models, that pass only builds and runs
them (the suite's time budget).
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import zoo
from zoo.losses import YT8MCrossEntropy, YT8MHinge

BACKEND = keras.backend.backend()
# XLA on TensorFlow and JAX; PyTorch's jit_compile=True means torch.compile, which needs a C++ toolchain on
# CPU and minutes per model, so it runs eagerly here.
JIT = BACKEND in ("tensorflow", "jax")

# Small sizes for every config key that sets one (a key is overridden only where the model has it).
TINY = {
    "depth": 10,  # WRN: N = 1 block per group
    "width": 1,
    "filters": 4,
    "z_dim": 4,
    "units": 8,
    "num_layers": 2,  # stacked cells (1-layer models run the same code once)
    "hyper_units": 8,
    "embedding_size": 4,
    "vocab_size": 7,
    "input_dropout": 0.1,
    "output_dropout": 0.1,
    "recurrent_dropout": 0.1,
    "hyper_recurrent_dropout": 0.1,
    "num_classes": 5,
    "max_frames": 6,
    "sample_frames": 3,
    "cluster_size": 8,
    "hidden_size": 8,
    "lstm_units": 8,
    "lstm_layers": 1,
    "top_k": 2,
    "num_mixtures": 2,
    "feature_size": 12,  # YouTube-8M: 8 "rgb" + 4 "audio" values per frame (not 1024 + 128)
    "feature_sizes": (8, 4),
    "groups": 2,  # NeXtVLAD
    "encoder_layers": 3,  # GNMT: 3 + 3 layers still has a bidirectional bottom layer and a residual layer 3
    "decoder_layers": 3,
    "embedding_dim": 8,
    "attention_units": 8,
    "dropout": 0.1,
    "beam_width": 2,
}
BATCH = 4
SEQUENCE = 5


def tiny_overrides(name: str) -> dict:
    config = zoo.get_spec(name).config
    return {k: v for k, v in TINY.items() if k in config}


def architectures() -> dict[str, list[str]]:
    """Registered names grouped by the model they build at :data:`TINY` sizes (e.g. ``wrn_40_1``,
    ``wrn_40_2`` and ``wrn_28_10`` differ only in depth and width): one fit per architecture."""
    groups: dict[str, list[str]] = {}
    for name in zoo.list_models():
        spec = zoo.get_spec(name)
        key = json.dumps([spec.task, {**spec.default_config(), **tiny_overrides(name)}], sort_keys=True)
        groups.setdefault(key, []).append(name)
    return {names[0]: names for names in groups.values()}


ARCHITECTURES = architectures()


def random_inputs(model: keras.Model, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One random batch for every input of ``model`` (ids below the vocabulary, valid frame counts)."""
    out = {}
    for tensor in model.inputs:
        name = tensor.name
        shape = [BATCH] + [SEQUENCE if d is None else int(d) for d in tensor.shape[1:]]
        if name == "ids":
            out[name] = rng.integers(0, TINY["vocab_size"], size=shape).astype("int32")
        elif name == "num_frames":
            frames = int(model.get_layer(name="features").output.shape[1])
            out[name] = rng.integers(1, frames + 1, size=shape).astype("int32")
        elif str(tensor.dtype).startswith("int"):  # other token ids (translation: source, target_in)
            out[name] = rng.integers(0, TINY["vocab_size"], size=shape).astype(str(tensor.dtype))
        else:
            out[name] = rng.uniform(size=shape).astype(str(tensor.dtype))
    return out


def main_output(model: keras.Model):
    """The model's prediction; the other outputs of a recurrent model are its carried states."""
    if isinstance(model.output, dict):
        return next(v for k, v in model.output.items() if not k.startswith("state_"))
    return model.outputs[0]


def training_setup(name: str, model: keras.Model, rng: np.random.Generator):
    """``(model with one output, its loss, random targets)``: the task's loss where it is a Keras loss,
    else mean squared error (this file checks that the backend trains the architecture)."""
    spec = zoo.get_spec(name)
    out = main_output(model)
    single = model if len(model.outputs) == 1 else keras.Model(model.inputs, out)
    shape = (BATCH, *[SEQUENCE if d is None else int(d) for d in out.shape[1:]])
    if spec.task in ("char_lm", "image_classification"):  # logits [B, T, V] or [B, K]
        targets = rng.integers(0, shape[-1], size=shape[:-1]).astype("int32")
        return single, keras.losses.SparseCategoricalCrossentropy(from_logits=True), targets
    if spec.task == "video_classification":
        targets = (rng.uniform(size=shape) < 0.3).astype("float32")
        return single, YT8MHinge() if spec.config.get("loss") == "hinge" else YT8MCrossEntropy(), targets
    return single, keras.losses.MeanSquaredError(), rng.normal(size=shape).astype("float32")


def fit_two_steps(name: str, model: keras.Model) -> None:
    rng = np.random.default_rng(1)
    x = random_inputs(model, rng)
    trained, loss, y = training_setup(name, model, rng)
    trained.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss, jit_compile=JIT)
    before = [keras.ops.convert_to_numpy(w).copy() for w in trained.trainable_weights]
    history = trained.fit(x, y, batch_size=BATCH, epochs=2, verbose=0)
    losses = history.history["loss"]
    assert len(losses) == 2 and np.isfinite(losses).all(), (name, losses)
    after = [keras.ops.convert_to_numpy(w) for w in trained.trainable_weights]
    frozen = [
        w.path
        for w, a, b in zip(trained.trainable_weights, after, before, strict=True)
        if np.array_equal(a, b)
    ]
    assert not frozen, f"{name}: weights that did not train: {frozen}"


def weight_shapes(model: keras.Model) -> list[tuple[str, tuple[int, ...]]]:
    return [(w.path.split("/", 1)[-1], tuple(w.shape)) for w in model.weights]


@pytest.mark.parametrize("name", sorted(ARCHITECTURES), ids=lambda n: "+".join(ARCHITECTURES[n]))
def test_models_build_run_and_train(name):
    model = zoo.get(name, **tiny_overrides(name))
    for other in ARCHITECTURES[name][1:]:  # same architecture at TINY sizes: its forward and fit are these
        assert weight_shapes(zoo.get(other, **tiny_overrides(other))) == weight_shapes(model), other
    outputs = keras.tree.flatten(model(random_inputs(model, np.random.default_rng(0)), training=False))
    assert outputs and all(np.isfinite(keras.ops.convert_to_numpy(o)).all() for o in outputs), name
    if BACKEND != "tensorflow":
        # Fitting is what the other backends must show; on TensorFlow (the trainer's XLA loop, the
        # distribution and family tests train models there) this pass only builds and runs each model.
        fit_two_steps(name, model)


def test_batch_norm_is_synchronized_only_on_tensorflow():
    model = zoo.get("wrn_40_1", **tiny_overrides("wrn_40_1"))
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns and all(bn.synchronized == (BACKEND == "tensorflow") for bn in bns)


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "tensorflow", reason="backend-independent subprocess; runs in the TF pass")
def test_import_zoo_on_jax_does_not_import_tensorflow():
    """``import zoo`` (the registry, layers and models) needs no TensorFlow on another backend; tf.data,
    the tasks, the trainer and the exporter import it when used."""
    code = (
        "import sys, zoo; zoo.get('hyper_conv_mnist'); "
        "print(sorted(m for m in sys.modules if m.startswith('tensorflow'))[:3])"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
