"""Every registered model builds, runs and trains under the current Keras backend.

The library half (``zoo.layers``, ``zoo.models``, ``zoo.losses``) is pure ``keras.ops``. This file runs in
the normal (TensorFlow) pass and again under ``KERAS_BACKEND=jax`` in ``.ci/run``; by hand also under
``KERAS_BACKEND=torch`` (``pip install 'zoo[torch]'``). Each model is built small through ``zoo.get``
overrides, run forward, and fitted for two steps with ``model.fit`` on random data (XLA through
``jit_compile=True`` on TensorFlow and JAX; PyTorch runs eagerly, see README "Other backends").
"""

import keras
import numpy as np
import pytest

import zoo
from zoo.losses import YT8MCrossEntropy, YT8MHinge

BACKEND = keras.backend.backend()

# Small sizes for every config key that sets one (a key is overridden only where the model has it).
TINY = {
    "depth": 10,  # WRN: N = 1 block per group
    "width": 1,
    "filters": 4,
    "z_dim": 4,
    "units": 8,
    "hyper_units": 8,
    "embedding_size": 4,
    "vocab_size": 7,
    "num_classes": 5,
    "max_frames": 6,
    "sample_frames": 3,
    "cluster_size": 8,
    "hidden_size": 8,
    "lstm_units": 8,
    "lstm_layers": 1,
    "top_k": 2,
}
BATCH = 4
SEQUENCE = 5


def tiny_overrides(name: str) -> dict:
    config = zoo.get_spec(name).config
    return {k: v for k, v in TINY.items() if k in config}


def random_inputs(model: keras.Model, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One random batch for every input of ``model`` (ids below the vocabulary, frames counts valid)."""
    out = {}
    for tensor in model.inputs:
        name = tensor.name
        shape = [BATCH] + [SEQUENCE if d is None else int(d) for d in tensor.shape[1:]]
        if name == "ids":
            out[name] = rng.integers(0, model.outputs[0].shape[-1], size=shape).astype("int32")
        elif name == "num_frames":
            frames = int(model.get_layer(name="features").output.shape[1])
            out[name] = rng.integers(1, frames + 1, size=shape).astype("int32")
        else:
            out[name] = rng.uniform(size=shape).astype(str(tensor.dtype))
    return out


def training_setup(name: str, model: keras.Model, rng: np.random.Generator):
    """``(trainable model with one output, loss, random targets)`` for the model's task."""
    spec = zoo.get_spec(name)
    out = model.outputs[0]
    if spec.task == "char_lm":  # first output: logits [B, T, V]; the others are the carried states
        single = keras.Model(model.inputs, out)
        targets = rng.integers(0, out.shape[-1], size=(BATCH, SEQUENCE)).astype("int32")
        return single, keras.losses.SparseCategoricalCrossentropy(from_logits=True), targets
    if spec.task == "image_classification":
        targets = rng.integers(0, out.shape[-1], size=(BATCH,)).astype("int32")
        return model, keras.losses.SparseCategoricalCrossentropy(from_logits=True), targets
    targets = (rng.uniform(size=(BATCH, out.shape[-1])) < 0.3).astype("float32")
    loss = YT8MHinge() if zoo.get_spec(name).config.get("loss") == "hinge" else YT8MCrossEntropy()
    return model, loss, targets


@pytest.mark.parametrize("name", zoo.list_models())
def test_model_builds_runs_and_trains(name):
    rng = np.random.default_rng(0)
    model = zoo.get(name, **tiny_overrides(name))
    x = random_inputs(model, rng)
    outputs = keras.tree.flatten(model(x, training=False))
    assert all(np.isfinite(keras.ops.convert_to_numpy(o)).all() for o in outputs), name

    trained, loss, y = training_setup(name, model, rng)
    trained.compile(
        optimizer=keras.optimizers.Adam(1e-2), loss=loss, jit_compile=BACKEND in ("tensorflow", "jax")
    )
    before = [keras.ops.convert_to_numpy(w).copy() for w in trained.trainable_weights]
    history = trained.fit(x, y, batch_size=BATCH, epochs=2, verbose=0)
    losses = history.history["loss"]
    assert len(losses) == 2 and np.isfinite(losses).all(), (name, losses)
    after = [keras.ops.convert_to_numpy(w) for w in trained.trainable_weights]
    changed = sum(not np.array_equal(a, b) for a, b in zip(after, before, strict=True))
    assert changed == len(before), f"{name}: {len(before) - changed} of {len(before)} weights did not train"


def test_batch_norm_is_synchronized_only_on_tensorflow():
    model = zoo.get("wrn_40_1", **tiny_overrides("wrn_40_1"))
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns and all(bn.synchronized == (BACKEND == "tensorflow") for bn in bns)
