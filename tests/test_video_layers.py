"""zoo/layers/video.py and zoo/layers/heads.py: masking, sampling, statistics, DBoF, MoE, round trips."""

import doctest
import os

import keras
import numpy as np
import pytest

from zoo.layers import (
    DBoFBlock,
    FrameMask,
    FrameSampler,
    FrameStatistics,
    LogisticClassifier,
    MaskedPooling,
    MixtureOfExperts,
    heads,
    video,
)

RNG = np.random.default_rng(0)
X = RNG.normal(size=(4, 6, 3)).astype("float32")
N = np.array([6, 3, 1, 0], dtype="int32")


def _roundtrip(layer_out_fn, inputs, tmp_path, name):
    """Builds a functional model around a layer, saves as .keras, reloads, compares outputs."""
    model = layer_out_fn()
    before = np.asarray(model(inputs, training=False))
    path = os.path.join(tmp_path, f"{name}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(before, np.asarray(loaded(inputs, training=False)))
    return loaded


def _frame_model(layer):
    f = keras.Input((6, 3), name="features")
    n = keras.Input((), dtype="int32", name="num_frames")
    return keras.Model({"features": f, "num_frames": n}, layer([f, n]))


def test_frame_mask():
    mask = np.asarray(FrameMask()([X, N]))
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask.sum(1), N)
    assert mask[1].tolist() == [True, True, True, False, False, False]


def test_masked_mean_and_max_ignore_padding():
    x = X.copy()
    x[1, 3:] = 1e6  # padding must never leak into the result
    mean = np.asarray(MaskedPooling("mean")([x, N]))
    mx = np.asarray(MaskedPooling("max")([x, N]))
    for b, n in enumerate(N):
        if n == 0:
            np.testing.assert_array_equal(mean[b], 0.0)
            np.testing.assert_array_equal(mx[b], 0.0)
        else:
            np.testing.assert_allclose(mean[b], x[b, :n].mean(0), rtol=1e-6)
            np.testing.assert_allclose(mx[b], x[b, :n].max(0), rtol=1e-6)
    with pytest.raises(ValueError, match="mode='median'"):
        MaskedPooling("median")


def test_frame_statistics_against_numpy():
    out = np.asarray(FrameStatistics(top_k=2)([X, N]))
    assert out.shape == (4, 4 * 3)
    for b, n in enumerate(N):
        real = X[b, :n]
        if n == 0:
            np.testing.assert_array_equal(out[b], 0.0)
            continue
        srt = -np.sort(-real, axis=0)
        top = np.stack([srt[j] if j < n else np.zeros(3) for j in range(2)])  # fewer than K frames: 0
        want = np.concatenate([real.mean(0), real.std(0), top.reshape(-1)])
        np.testing.assert_allclose(out[b], want, rtol=1e-5, atol=1e-6)


def test_sampler_never_picks_padding_and_eval_is_deterministic():
    sampler = FrameSampler(50, seed=3)
    n = np.array([6, 3, 1, 2], dtype="int32")
    idx = np.asarray(sampler.indices(n, training=True))
    assert idx.shape == (4, 50)
    assert (idx >= 0).all() and (idx < n[:, None]).all()
    assert set(idx[0].tolist()) == set(range(6))  # with replacement, uniform: all 6 frames show up
    ev1 = np.asarray(sampler.indices(n, training=False))
    ev2 = np.asarray(sampler.indices(n, training=False))
    np.testing.assert_array_equal(ev1, ev2)
    np.testing.assert_array_equal(FrameSampler(3).indices(np.array([6]), training=False), [[1, 3, 5]])
    # Gathered frames are the frames at those indices.
    x = np.arange(4 * 6, dtype="float32").reshape(4, 6, 1)
    got = np.asarray(FrameSampler(4)([x, n], training=False))[..., 0]
    want = np.take_along_axis(x[..., 0], np.asarray(FrameSampler(4).indices(n)), axis=1)
    np.testing.assert_array_equal(got, want)
    # Empty video: frame 0 (padding), no crash.
    assert np.asarray(FrameSampler(2).indices(np.array([0]), training=True)).tolist() == [[0, 0]]


def test_dbof_block_matches_numpy_and_trains_bn():
    block = DBoFBlock(cluster_size=5, activation="relu", batch_norm=False)
    frames = X[:, :4]
    out = np.asarray(block(frames))
    k, b = (np.asarray(w) for w in block.weights)
    np.testing.assert_allclose(out, np.maximum(frames @ k + b, 0).max(1), rtol=1e-5, atol=1e-6)
    bn_block = DBoFBlock(cluster_size=5)
    bn_block(frames, training=True)
    names = sorted(w.path for w in bn_block.weights)
    assert any("moving_mean" in n for n in names) and bn_block.bn.synchronized
    moving = np.asarray(bn_block.bn.moving_mean)
    assert not np.allclose(moving, 0.0)  # training step updated the moving statistics
    with pytest.raises(ValueError, match="activation='tanh'"):
        DBoFBlock(activation="tanh")


def test_moe_matches_formula_and_dummy_state():
    moe = MixtureOfExperts(num_classes=3, num_mixtures=2)
    x = X[:, 0]
    p = np.asarray(moe(x))
    g, e, eb = (np.asarray(w) for w in (moe.gate_kernel, moe.expert_kernel, moe.expert_bias))
    gate = (x @ g).reshape(4, 3, 3)
    gate = np.exp(gate - gate.max(-1, keepdims=True))
    gate /= gate.sum(-1, keepdims=True)
    expert = 1 / (1 + np.exp(-(x @ e + eb).reshape(4, 3, 2)))
    np.testing.assert_allclose(p, (gate[..., :2] * expert).sum(-1), rtol=1e-5)
    # The dummy state takes probability mass: p < 1 even when every expert says yes.
    moe.expert_bias.assign(np.full((6,), 50.0, "float32"))
    p = np.asarray(moe(x))
    np.testing.assert_allclose(p, 1.0 - gate[..., 2], rtol=1e-5)
    assert moe.gate_kernel.shape == (3, 9) and len(moe.weights) == 3  # gate has no bias


def test_heads_weight_decay_is_l2_loss():
    head = LogisticClassifier(4, weight_decay=1e-2)
    head(X[:, 0])
    want = 1e-2 * np.sum(np.asarray(head.kernel) ** 2) / 2
    np.testing.assert_allclose(float(sum(head.losses)), want, rtol=1e-5)
    scores = LogisticClassifier(4, activation=None)
    s = np.asarray(scores(X[:, 0]))
    np.testing.assert_allclose(s, X[:, 0] @ np.asarray(scores.kernel), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "name,layer",
    [
        ("mean", lambda: MaskedPooling("mean")),
        ("max", lambda: MaskedPooling("max")),
        ("stats", lambda: FrameStatistics(3)),
    ],
)
def test_frame_layer_roundtrip(tmp_path, name, layer):
    loaded = _roundtrip(lambda: _frame_model(layer()), {"features": X, "num_frames": N}, tmp_path, name)
    assert loaded.layers[-1].get_config()["name"] == loaded.layers[-1].name


def test_sampler_dbof_heads_roundtrip(tmp_path):
    def build():
        f = keras.Input((6, 3), name="features")
        n = keras.Input((), dtype="int32", name="num_frames")
        s = FrameSampler(4, seed=1)([f, n])
        h = DBoFBlock(cluster_size=8, activation="relu6")(s)
        return keras.Model(
            {"features": f, "num_frames": n},
            [MixtureOfExperts(3, 3, weight_decay=1e-3)(h), LogisticClassifier(3, None)(h)],
        )

    model = build()
    model({"features": X, "num_frames": N}, training=True)  # move BN statistics off their init
    loaded = _roundtrip(lambda: model, {"features": X, "num_frames": N}, tmp_path, "dbof")
    cfg = loaded.get_layer(model.layers[-2].name).get_config()
    assert cfg["num_mixtures"] == 3 and cfg["weight_decay"] == 1e-3


@pytest.mark.parametrize("module", [video, heads], ids=["video", "heads"])
def test_docstring_examples_hold(module):
    """Every public layer documents Args, Call arguments, Returns and an Example, and the example is true."""
    for name in module.__all__:
        obj = getattr(module, name)
        if isinstance(obj, type):
            for section in ("Args:", "Call arguments:", "Returns:", "Example:"):
                assert section in obj.__doc__, f"{name} lacks {section}"
    keras.utils.set_random_seed(0)
    result = doctest.testmod(module, extraglobs={"np": np, "keras": keras}, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 6 and result.failed == 0
