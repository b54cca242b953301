"""The starter code's baselines (zoo/models/yt8m_official.py): counts, structure, sampling, training."""

import keras
import numpy as np
import pytest

import zoo
from zoo.layers.video import DBoFBlock, FrameSampler
from zoo.losses import YT8MCrossEntropy, YT8MHinge
from zoo.models.yt8m_official import MODEL_NAMES, OFFICIAL_DBOF_PARAMS

C, D, T = 5, 8, 6
SMALL = {"num_classes": C, "feature_size": D, "feature_sizes": [6, 2]}
TINY = {
    "yt8m_dbof_official": {
        **SMALL,
        "max_frames": T,
        "sample_frames": 4,
        "cluster_size": 16,
        "hidden_size": 8,
    },
    "yt8m_frame_logistic_official": {**SMALL, "max_frames": T},
    "yt8m_hinge_official": SMALL,
}


def _trainable(model: keras.Model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _frames(rng: np.random.Generator, batch: int = 4) -> dict[str, np.ndarray]:
    x = rng.normal(size=(batch, T, D)).astype("float32")
    n = rng.integers(1, T + 1, size=batch).astype("int32")
    x[np.arange(T)[None, :] >= n[:, None]] = 0.0  # zero padding, as the readers write it
    return {"features": x, "num_frames": n}


def test_registered_beside_the_paper_models():
    assert set(MODEL_NAMES) <= set(zoo.list_models("yt8m_*"))
    for name in ("yt8m_dbof", "yt8m_frame_logistic", "yt8m_hinge"):
        assert name in zoo.list_models("yt8m_*")


def test_dbof_parameter_count_at_the_default_flags():
    model = zoo.get("yt8m_dbof_official")
    assert _trainable(model) == OFFICIAL_DBOF_PARAMS == 37_627_692
    bn = 1152 + 8192 + 1024  # input, cluster and hidden batch norms: moving mean and variance
    assert sum(int(np.prod(w.shape)) for w in model.non_trainable_weights) == 2 * bn
    del model
    assert _trainable(zoo.get("yt8m_dbof")) == 37_632_556  # the paper variant is unchanged


def test_logistic_parameter_counts():
    for name in ("yt8m_frame_logistic_official", "yt8m_hinge_official"):
        assert _trainable(zoo.get(name)) == 1152 * 3862 + 3862


def test_dbof_structure():
    model = zoo.get("yt8m_dbof_official", **TINY["yt8m_dbof_official"])
    block = model.get_layer("dbof")
    assert [w.name for w in block.trainable_weights if "batch_norm" not in w.path] == ["kernel"]  # no bias
    assert block.batch_norm_first and block.activation == "sigmoid"
    hidden = model.get_layer("hidden")
    assert not hidden.use_bias and hidden.bias is None
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert {layer.name for layer in bns} == {"input_bn", "hidden_bn"}
    assert all(layer.momentum == 0.999 for layer in [*bns, block.bn])
    assert model.get_layer("input_bn").output.shape[1:] == (4, D)  # on the sampled frames
    assert model.get_layer("hidden_activation").get_config()["activation"] == "sigmoid"
    assert model.get_layer("frame_sampler").sample_at_inference


def test_dbof_block_batch_norm_first_is_act_of_bn_of_projection():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 4)).astype("float32")
    official = DBoFBlock(6, "sigmoid", batch_norm_first=True, momentum=0.999)
    paper = DBoFBlock(6, "sigmoid")
    got, _ = official(x), paper(x)
    paper.kernel.assign(official.kernel)
    w = keras.ops.convert_to_numpy(official.kernel)
    eps = official.bn.epsilon  # inference: moving mean 0, variance 1, gamma 1, beta 0
    want = (1.0 / (1.0 + np.exp(-(x @ w) / np.sqrt(1.0 + eps)))).max(axis=1)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), want, rtol=1e-5, atol=1e-6)
    paper_want = (1.0 / (1.0 + np.exp(-(x @ w)))).max(axis=1) / np.sqrt(1.0 + eps)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(paper(x)), paper_want, rtol=1e-5, atol=1e-6)
    clone = DBoFBlock.from_config(official.get_config())
    assert (clone.batch_norm_first, clone.momentum) == (True, 0.999)
    assert clone.get_config()["kernel_initializer"] == official.get_config()["kernel_initializer"]


def test_frames_are_sampled_at_random_at_evaluation_too():
    rng = np.random.default_rng(1)
    x = np.arange(3 * 50, dtype="float32").reshape(1, 150, 1)
    n = np.array([150], "int32")
    picks = [
        keras.ops.convert_to_numpy(FrameSampler(8, seed=s, sample_at_inference=True)([x, n], training=False))
        for s in (1, 2)
    ]
    assert not np.array_equal(*picks)
    default = FrameSampler(8, seed=1)
    assert np.array_equal(default([x, n]), default([x, n]))  # paper variant: evenly spaced, fixed
    config = FrameSampler(8, sample_at_inference=True).get_config()
    assert FrameSampler.from_config(config).sample_at_inference
    inputs = _frames(rng)
    model = zoo.get("yt8m_dbof_official", **TINY["yt8m_dbof_official"], seed=3)
    one, two = (keras.ops.convert_to_numpy(model(inputs, training=False)) for _ in range(2))
    assert not np.allclose(one, two)
    fixed = zoo.get("yt8m_dbof_official", **TINY["yt8m_dbof_official"], frame_sampling="training")
    np.testing.assert_array_equal(fixed(inputs, training=False), fixed(inputs, training=False))


def test_frame_logistic_averages_features_over_real_frames():
    rng = np.random.default_rng(2)
    inputs = _frames(rng)
    model = zoo.get("yt8m_frame_logistic_official", **TINY["yt8m_frame_logistic_official"])
    head = model.get_layer("classifier")
    w, b = (keras.ops.convert_to_numpy(v) for v in (head.kernel, head.bias))
    garbage = inputs["features"].copy()
    garbage[np.arange(T)[None, :] >= inputs["num_frames"][:, None]] = 7.0  # padding must not count
    mean = inputs["features"].sum(axis=1) / inputs["num_frames"][:, None]
    want = 1.0 / (1.0 + np.exp(-(mean @ w + b)))
    got = model({**inputs, "features": garbage})
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), want, rtol=1e-5, atol=1e-6)
    paper = zoo.get("yt8m_frame_logistic", **TINY["yt8m_frame_logistic_official"])
    paper.set_weights(model.get_weights())
    assert not np.allclose(keras.ops.convert_to_numpy(paper(inputs)), want, atol=1e-4)


def test_hinge_model_keeps_the_sigmoid():
    model = zoo.get("yt8m_hinge_official", **SMALL)
    assert zoo.get_spec("yt8m_hinge_official").config["loss"] == "hinge"
    assert model.get_layer("classifier").activation == "sigmoid"
    x = {"features": np.random.default_rng(4).normal(size=(3, D)).astype("float32")}
    linear = zoo.get("yt8m_hinge_official", **SMALL, output_activation="linear")
    assert linear.get_layer("classifier").activation is None
    linear.set_weights(model.get_weights())
    scores = keras.ops.convert_to_numpy(linear(x))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), 1.0 / (1.0 + np.exp(-scores)), rtol=1e-5)


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="frame_sampling='always'; valid: random, training"):
        zoo.get("yt8m_dbof_official", **TINY["yt8m_dbof_official"], frame_sampling="always")
    with pytest.raises(ValueError, match="activation='relu'; valid: sigmoid, relu6"):
        zoo.get("yt8m_dbof_official", **TINY["yt8m_dbof_official"], activation="relu")
    with pytest.raises(ValueError, match="average='max'; valid: features, probabilities"):
        zoo.get("yt8m_frame_logistic_official", **TINY["yt8m_frame_logistic_official"], average="max")
    with pytest.raises(ValueError, match="output_activation='linear' needs loss='hinge'"):
        zoo.get("yt8m_hinge_official", **SMALL, output_activation="linear", loss="cross_entropy")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_a_few_training_steps_lower_the_loss(name):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(3)
    batch = 16
    if name == "yt8m_hinge_official":
        x = {"features": rng.normal(size=(batch, D)).astype("float32")}
    else:
        x = _frames(rng, batch)
    y = (rng.uniform(size=(batch, C)) < 0.3).astype("float32")
    model = zoo.get(name, **TINY[name], **({"seed": 0} if "dbof" in name else {}))
    loss = YT8MHinge() if zoo.get_spec(name).config["loss"] == "hinge" else YT8MCrossEntropy()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    history = model.fit(x, y, batch_size=batch, epochs=8, verbose=0).history["loss"]
    assert np.isfinite(history).all() and history[-1] < 0.95 * history[0], history
