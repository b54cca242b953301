"""zoo/models/yt8m.py: the seven registered YouTube-8M models at tiny sizes."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo.data import yt8m
from zoo.layers.video import FrameSampler
from zoo.models.yt8m import MODEL_NAMES, record_layout

C, D, T = 10, 8, 6
SMALL = {"num_classes": C, "feature_size": D, "feature_sizes": [6, 2]}
FRAME = {**SMALL, "max_frames": T}
TINY = {
    "yt8m_frame_logistic": FRAME,
    "yt8m_dbof": {**FRAME, "sample_frames": 4, "cluster_size": 16, "hidden_size": 8, "seed": 1},
    "yt8m_lstm": {**FRAME, "lstm_units": 8},
    "yt8m_logistic": SMALL,
    "yt8m_hinge": SMALL,
    "yt8m_moe": SMALL,
    "yt8m_moe_stats": {**FRAME, "top_k": 2},
}
FRAME_MODELS = ("yt8m_frame_logistic", "yt8m_dbof", "yt8m_lstm", "yt8m_moe_stats")

RNG = np.random.default_rng(0)
X = RNG.normal(size=(4, T, D)).astype("float32")
N = np.array([6, 3, 1, 0], dtype="int32")


def _inputs(name, x=X, n=N):
    return {"features": x, "num_frames": n} if name in FRAME_MODELS else {"features": x[:, 0]}


def test_the_seven_names_are_registered_for_the_video_task():
    assert set(MODEL_NAMES) <= set(zoo.list_models("yt8m_*"))  # zoo/models/yt8m_pooling.py adds more
    for name in MODEL_NAMES:
        spec = zoo.get_spec(name)
        assert spec.task == "video_classification"
        assert spec.recipe["dataset"] == ("yt8m_frame" if name in FRAME_MODELS else "yt8m_video")
        assert spec.config["num_classes"] == 3862 and spec.config["feature_size"] == 1152


def test_official_recipe():
    r = zoo.describe("yt8m_dbof")["recipe"]
    assert r["optimizer"] == "adam" and r["batch_size"] == 1024 and r["clip_per_tensor"] == 1.0
    lr = r["learning_rate"]
    assert lr == {
        "schedule": "exponential",
        "initial_learning_rate": 0.01,
        "decay_steps": 3906,  # 4M examples at batch 1024
        "decay_rate": 0.95,
        "staircase": True,
    }
    assert zoo.describe("yt8m_lstm")["recipe"]["learning_rate"]["initial_learning_rate"] == 0.001
    assert zoo.describe("yt8m_moe")["config"]["weight_decay"] == 1e-8
    assert zoo.describe("yt8m_hinge")["config"]["loss"] == "hinge"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_builds_outputs_and_ignores_padding(name):
    model = zoo.get(name, **TINY[name])
    out = np.asarray(model(_inputs(name), training=False))
    assert out.shape == (4, C)
    if name == "yt8m_hinge":
        assert out.min() < 0  # linear scores, not probabilities
    else:
        assert (out >= 0).all() and (out <= 1).all()
    assert len(model.losses) >= 1  # L2 on classifier weights
    if name in FRAME_MODELS:
        x = X.copy()
        x[1, 3:] = 123.0  # garbage in padded frames must not change anything
        x[2, 1:] = -7.0
        np.testing.assert_allclose(
            np.asarray(model(_inputs(name, x), training=False)), out, rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_keras_roundtrip(tmp_path, name):
    model = zoo.get(name, **TINY[name])
    model(_inputs(name), training=True)
    path = os.path.join(tmp_path, f"{name}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        np.asarray(loaded(_inputs(name), training=False)),
        np.asarray(model(_inputs(name), training=False)),
        rtol=1e-6,
        atol=1e-7,
    )


def test_frame_logistic_averages_per_frame_probabilities():
    model = zoo.get("yt8m_frame_logistic", **FRAME)
    head = model.get_layer("classifier")
    w, b = np.asarray(head.kernel), np.asarray(head.bias)
    probs = 1 / (1 + np.exp(-(X @ w + b)))
    out = np.asarray(model(_inputs("yt8m_frame_logistic")))
    for i, n in enumerate(N[:3]):
        np.testing.assert_allclose(out[i], probs[i, :n].mean(0), rtol=1e-5)


def test_dbof_eval_deterministic_training_samples():
    model = zoo.get("yt8m_dbof", **{**TINY["yt8m_dbof"], "batch_norm": False})
    inp = _inputs("yt8m_dbof", n=np.full(4, T, "int32"))
    a, b = (np.asarray(model(inp, training=False)) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    c, d = (np.asarray(model(inp, training=True)) for _ in range(2))
    assert not np.allclose(c, d)  # random frames in training


def test_lstm_uses_last_real_frame():
    cfg = TINY["yt8m_lstm"]
    long = zoo.get("yt8m_lstm", **cfg)
    short = zoo.get("yt8m_lstm", **{**cfg, "max_frames": 3})
    short.set_weights(long.get_weights())
    n3 = np.full(4, 3, "int32")
    want = np.asarray(short({"features": X[:, :3], "num_frames": n3}))
    got = np.asarray(long({"features": X, "num_frames": n3}))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_moe_stats_is_moe_on_numpy_statistics():
    model = zoo.get("yt8m_moe_stats", **TINY["yt8m_moe_stats"])
    n = np.array([6, 3, 2, 4], "int32")
    out = np.asarray(model({"features": X, "num_frames": n}))
    stats = []
    for b in range(4):
        real = X[b, : n[b]]
        srt = -np.sort(-real, axis=0)
        stats.append(np.concatenate([real.mean(0), real.std(0), srt[0], srt[1]]))
    want = np.asarray(model.get_layer("classifier")(np.stack(stats).astype("float32")))
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-6)


def test_parameter_counts():
    # logistic: D*C + C; MoE-2: D*C*3 (gate, no bias) + D*C*2 + C*2.
    assert zoo.get("yt8m_logistic", **SMALL).count_params() == D * C + C
    assert zoo.get("yt8m_moe", **SMALL).count_params() == D * C * 3 + D * C * 2 + C * 2
    dbof = zoo.get("yt8m_dbof", **TINY["yt8m_dbof"])
    # projection D*16+16, BN 4*16, hidden 16*8+8, MoE on 8.
    assert dbof.count_params() == D * 16 + 16 + 4 * 16 + 16 * 8 + 8 + 8 * C * 5 + C * 2


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="loss='mse'.*cross_entropy, hinge"):
        zoo.get("yt8m_logistic", **SMALL, loss="mse")
    with pytest.raises(ValueError, match="head='svm'"):
        zoo.get("yt8m_lstm", **TINY["yt8m_lstm"], head="svm")
    with pytest.raises(zoo.UnknownConfigKeyError, match="hidden_units"):
        zoo.get("yt8m_dbof", hidden_units=3)


def test_feature_layout_must_fit_feature_size():
    with pytest.raises(ValueError, match="feature_size=8 .*give feature_sizes"):
        zoo.get("yt8m_moe", num_classes=3, feature_size=8)
    with pytest.raises(ValueError, match=r"feature_sizes=\[6, 3\] do not fit feature_size=8"):
        zoo.get("yt8m_moe", num_classes=3, feature_size=8, feature_sizes=[6, 3])
    paper = zoo.get(
        "yt8m_logistic",
        num_classes=4800,
        feature_size=1024,
        feature_names=["mean_inc3"],
        feature_sizes=[1024],
        id_key="video_id",
    )
    assert paper.output.shape == (None, 4800)


def test_hinge_loss_is_refused_on_a_mixture_of_experts_head():
    with pytest.raises(ValueError, match="loss='hinge' needs a logistic head"):
        zoo.get("yt8m_moe", num_classes=4, feature_size=8, feature_sizes=[6, 2], loss="hinge")


def test_frame_sampler_never_reads_past_the_frame_axis():
    features = np.arange(2 * 5 * 1, dtype="float32").reshape(2, 5, 1)
    sampler = FrameSampler(4, seed=0)
    for training in (False, True):
        out = sampler([features, np.array([8, 5], "int32")], training=training)
        assert out.shape == (2, 4, 1)
        assert np.all(np.asarray(out)[0] < 5) and np.all(np.asarray(out)[1] >= 5)


@pytest.mark.parametrize("name", FRAME_MODELS)
def test_videos_with_zero_frames_give_finite_outputs_and_gradients(name):
    """The reader yields num_frames 0 and all-zero features for a record with empty feature lists."""
    model = zoo.get(name, **TINY[name])
    x = X.copy()
    x[0] = 0.0
    n = np.array([0, 3, 0, 6], "int32")
    for training in (False, True):
        with tf.GradientTape() as tape:
            out = model({"features": x, "num_frames": n}, training=training)
            loss = tf.reduce_sum(out)
        grads = tape.gradient(loss, model.trainable_variables)
        assert np.isfinite(np.asarray(out)).all(), training
        assert all(np.isfinite(np.asarray(g)).all() for g in grads if g is not None), training


def test_record_layout_of_a_model_config():
    frame = record_layout({**zoo.get_spec("yt8m_dbof").default_config(), **TINY["yt8m_dbof"]})
    assert frame == yt8m.RecordLayout(feature_sizes=(6, 2), num_classes=C, max_frames=T)
    video = record_layout(zoo.get_spec("yt8m_moe").default_config())
    assert video == yt8m.VIDEO_LEVEL
    paper = {**zoo.get_spec("yt8m_logistic").default_config(), "num_classes": 4800, "feature_size": 1024}
    paper.update(feature_names=["mean_inc3"], feature_sizes=[1024], id_key="video_id")
    assert record_layout(paper) == yt8m.PAPER_VIDEO_LEVEL
    assert zoo.get_spec("yt8m_lstm").input_spec["features"][0] == (300, 1152)
