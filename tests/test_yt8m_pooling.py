"""zoo/layers/pooling.py, zoo/layers/gating.py and zoo/models/yt8m_pooling.py at tiny sizes."""

import doctest
import os

import keras
import numpy as np
import pytest

import zoo
import zoo.layers.gating
import zoo.layers.pooling
from zoo.layers.gating import ContextGating, GatedMixtureOfExperts
from zoo.layers.pooling import NetFV, NetRVLAD, NetVLAD, NeXtVLAD, SoftDBoF
from zoo.losses import YT8MCrossEntropy
from zoo.models.yt8m_pooling import MODEL_NAMES

RNG = np.random.default_rng(0)
B, T, D, K = 3, 5, 4, 3
X = RNG.normal(size=(B, T, D)).astype("float32")
N = np.array([5, 2, 1], "int32")
BN_SCALE = 1.0 / np.sqrt(1.0 + 1e-3)  # a fresh batch norm at inference: x / sqrt(1 + epsilon)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _softmax(h):
    e = np.exp(h - h.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _l2(v, axis=-1):
    return v / np.maximum(np.linalg.norm(v, axis=axis, keepdims=True), 1e-6)


def _assign(layer, x):
    w = _np(layer.cluster_kernel)
    h = x @ w
    h = h * BN_SCALE if layer.batch_norm else h + _np(layer.cluster_bias)
    return _softmax(h)


def _reference(layer, x, n):
    """NumPy pooling of each video's real frames (Miech et al. 2017 §3.1; Lin et al. 2018 Eq. 4-6)."""
    out = []
    for b in range(len(x)):
        xb = x[b, : n[b]]
        if isinstance(layer, NeXtVLAD):
            wide = xb @ _np(layer.expand_kernel) + _np(layer.expand_bias)
            att = 1 / (1 + np.exp(-(wide @ _np(layer.attention_kernel) + _np(layer.attention_bias))))
            g, k = layer.groups, layer.num_clusters
            a = _softmax((wide @ _np(layer.cluster_kernel) * BN_SCALE).reshape(-1, g, k)) * att[:, :, None]
            grouped = wide.reshape(-1, g, layer.group_size)
            v = np.einsum("tgk,tgd->kd", a, grouped) - a.sum((0, 1))[:, None] * _np(layer.centers)
            out.append(_l2(v).reshape(-1))
            continue
        a = _assign(layer, xb)  # [t, K]
        if isinstance(layer, SoftDBoF):
            out.append(_l2(a.sum(0)))
            continue
        s1 = a.T @ xb
        if isinstance(layer, NetFV):
            c, sigma = _np(layer.centers), _np(layer.covariance) ** 2 + 1e-6
            s2 = a.T @ xb**2
            fv1 = (s1 - a.sum(0)[:, None] * c) / sigma
            fv2 = (s2 - 2 * c * s1 + a.sum(0)[:, None] * c**2) / sigma**2 - a.sum(0)[:, None]
            out.append(np.concatenate([_l2(_l2(fv1).reshape(-1)), _l2(fv2.reshape(-1))]))
            continue
        if layer.residual:
            s1 = s1 - a.sum(0)[:, None] * _np(layer.centers)
        out.append(_l2(_l2(s1).reshape(-1)))
    return np.stack(out)


LAYERS = {
    "netvlad": lambda bn: NetVLAD(K, batch_norm=bn),
    "netrvlad": lambda bn: NetRVLAD(K, batch_norm=bn),
    "netfv": lambda bn: NetFV(K, batch_norm=bn),
    "softdbof": lambda bn: SoftDBoF(K, batch_norm=bn),
    "nextvlad": lambda bn: NeXtVLAD(K, groups=2, expansion=2),
}


@pytest.mark.parametrize("bn", [False, True], ids=["bias", "bn"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_pooling_matches_numpy_on_the_real_frames(name, bn):
    layer = LAYERS[name](bn)
    got = _np(layer([X, N], training=False))
    np.testing.assert_allclose(got, _reference(layer, X, N), rtol=2e-4, atol=2e-6)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_padded_frames_change_nothing_also_in_training(name):
    layer = LAYERS[name](True)
    garbage = X.copy()
    garbage[1, 2:] = 50.0
    garbage[2, 1:] = -9.0
    for training in (False, True):
        a, b = _np(layer([X, N], training=training)), _np(layer([garbage, N], training=training))
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f"training={training}")


def test_bare_frames_mean_all_real_and_empty_videos_are_finite():
    layer = NetVLAD(K)
    full = np.full(B, T, "int32")
    np.testing.assert_allclose(_np(layer(X)), _np(layer([X, full])), rtol=1e-6)
    out = _np(NeXtVLAD(K, groups=2)([X, np.array([0, 2, 0], "int32")]))
    assert np.isfinite(out).all() and np.allclose(out[0], 0.0)


def test_netvlad_is_intra_and_l2_normalised():
    out = _np(NetVLAD(K)([X, N])).reshape(B, K, D)
    np.testing.assert_allclose(np.linalg.norm(out.reshape(B, -1), axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out, axis=2), 1.0 / np.sqrt(K), rtol=1e-5)


def test_context_gating_gate_is_in_open_unit_interval_and_matches_numpy():
    x = RNG.normal(size=(4, 6)).astype("float32") * 5
    cg = ContextGating(batch_norm=False)
    gate = _np(cg.gate(x))
    assert ((gate > 0) & (gate < 1)).all()
    want = 1 / (1 + np.exp(-(x @ _np(cg.kernel) + _np(cg.bias))))
    np.testing.assert_allclose(gate, want, rtol=1e-5)
    np.testing.assert_allclose(_np(cg(x)), x * want, rtol=1e-5, atol=1e-6)
    se = ContextGating(batch_norm=True, reduction=3)
    g = _np(se.gate(x, training=False))
    h = np.maximum(x @ _np(se.kernel) * BN_SCALE, 0.0) @ _np(se.kernel_2)
    np.testing.assert_allclose(g, 1 / (1 + np.exp(-h)), rtol=1e-4)
    assert se.kernel.shape == (6, 2) and se.kernel_2.shape == (2, 6)


def test_gated_moe_is_the_moe_head_times_a_gate_of_its_probabilities():
    head = GatedMixtureOfExperts(num_classes=4, num_mixtures=2)
    x = RNG.normal(size=(3, 5)).astype("float32")
    out = _np(head(x, training=False))
    p = _np(head.moe(x))
    gate = 1 / (1 + np.exp(-(p @ _np(head.gating.kernel) * BN_SCALE)))
    np.testing.assert_allclose(out, p * gate, rtol=1e-5)
    assert ((out >= 0) & (out <= 1)).all()


def test_nextvlad_refuses_groups_that_do_not_divide():
    with pytest.raises(ValueError, match="2 \\* 3 = 6 is not divisible by groups=4"):
        NeXtVLAD(2, groups=4, expansion=2)(np.ones((1, 2, 3), "float32"))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_keras_roundtrip(tmp_path, name):
    inp = keras.Input((T, D))
    model = keras.Model(inp, LAYERS[name](True)(inp))
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(_np(loaded(X)), _np(model(X)), rtol=1e-6)


@pytest.mark.parametrize("module", [zoo.layers.pooling, zoo.layers.gating], ids=["pooling", "gating"])
def test_docstring_examples(module):
    result = doctest.testmod(module, extraglobs={"np": np, "keras": keras})
    assert result.attempted > 0 and result.failed == 0


# --- models ---------------------------------------------------------------------------------------

C, F = 6, [6, 2]
SMALL = {"num_classes": C, "feature_size": sum(F), "feature_sizes": F, "max_frames": T}
TINY = {
    "yt8m_netvlad": {**SMALL, "sample_frames": 4, "seed": 1, "cluster_size": 4, "hidden_size": 8},
    "yt8m_netrvlad": {**SMALL, "sample_frames": 4, "seed": 1, "cluster_size": 4, "hidden_size": 8},
    "yt8m_netfv": {**SMALL, "sample_frames": 4, "seed": 1, "cluster_size": 4, "hidden_size": 8},
    "yt8m_softdbof": {**SMALL, "sample_frames": 4, "seed": 1, "cluster_size": 16, "hidden_size": 8},
    "yt8m_nextvlad": {**SMALL, "cluster_size": 4, "groups": 2, "hidden_size": 8, "gating_reduction": 2},
}
XM = RNG.normal(size=(4, T, sum(F))).astype("float32")
NM = np.array([5, 3, 1, 0], "int32")


def willow_params(kind, feats, k, divisor, hidden, c, gating=True, head="gated_moe", mixtures=2):
    """Trainable parameters of the 2017 models (input BN, pooling per feature, hidden with bias, ...)."""
    n, out = 2 * sum(feats), 0
    for i, d in enumerate(feats):
        kk = k if i == 0 else max(1, k // divisor)
        n += d * kk + 2 * kk  # assignment kernel + its batch norm
        extra, width = {
            "netvlad": (kk * d, kk * d),
            "netrvlad": (0, kk * d),
            "netfv": (2 * kk * d, 2 * kk * d),
        }.get(kind, (0, kk))
        n, out = n + extra, out + width
    n += out * hidden + hidden + (hidden * hidden + 2 * hidden if gating else 0)
    n += hidden * c * (2 * mixtures + 1) + mixtures * c  # MoE: gate (no bias) + experts
    return n + (c * c + 2 * c if head == "gated_moe" else 0)


def nextvlad_params(feats, k, g, lam, hidden, c, r):
    """Trainable parameters of NeXtVLAD (Lin et al. 2018 Eq. 9 plus biases and batch norms)."""
    n = out = 0
    for i, d in enumerate(feats):
        kk, gg, w = (k, g, lam * d) if i == 0 else (k // 2, max(1, g // 2), lam * d)
        n += d * w + w + w * gg + gg + w * gg * kk + 2 * gg * kk + kk * w // gg
        out += kk * w // gg
    n += 2 * out + out * hidden + 2 * hidden  # descriptor BN, hidden (no bias), hidden BN
    n += 2 * hidden * (hidden // r) + 2 * (hidden // r)  # SE gating
    return n + hidden * c + c  # logistic


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_registered_for_the_video_task_with_the_authors_recipes():
    assert set(MODEL_NAMES) <= set(zoo.list_models("yt8m_*"))
    for name in MODEL_NAMES:
        spec = zoo.get_spec(name)
        assert spec.task == "video_classification" and spec.recipe["dataset"] == "yt8m_frame"
        r = spec.recipe
        assert r["optimizer"] == "adam" and r["learning_rate"]["initial_learning_rate"] == 2e-4
    vlad = zoo.describe("yt8m_netvlad")
    assert vlad["recipe"]["batch_size"] == 80 and vlad["recipe"]["learning_rate"]["decay_steps"] == 50_000
    assert vlad["recipe"]["learning_rate"]["decay_rate"] == 0.8 and vlad["config"]["sample_frames"] == 300
    assert vlad["config"]["weight_decay"] == 1e-6 and vlad["config"]["cluster_size"] == 256
    nx = zoo.describe("yt8m_nextvlad")
    assert nx["recipe"]["batch_size"] == 160 and nx["recipe"]["learning_rate"]["decay_steps"] == 12_500
    assert nx["config"]["dropout"] == 0.5 and nx["config"]["weight_decay"] == 1e-5
    assert (nx["config"]["groups"], nx["config"]["expansion"], nx["config"]["cluster_size"]) == (8, 2, 128)


def test_parameter_counts():
    f = [1024, 128]
    # Default sizes (3862 classes), from the counting functions checked against built models below.
    assert willow_params("netvlad", f, 256, 2, 1024, 3862) == 321_528_380
    assert willow_params("netrvlad", f, 256, 2, 1024, 3862) == 321_249_852
    assert willow_params("netfv", f, 128, 2, 1024, 3862) == 321_388_732
    assert willow_params("softdbof", f, 8000, 8, 1024, 3862, gating=False, head="moe") == 37_338_492
    # Lin et al. 2018 Table 1 prints 89M for NeXtVLAD (8G, 0.5drop, 128K, 2048H).
    assert nextvlad_params(f, 128, 8, 2, 2048, 3862, 8) == 88_889_378
    for name in ("yt8m_netvlad", "yt8m_netrvlad", "yt8m_netfv"):
        model = zoo.get(name, **TINY[name])
        assert _trainable(model) == willow_params(name[5:], F, 4, 2, 8, C), name
    softdbof = zoo.get("yt8m_softdbof", **TINY["yt8m_softdbof"])
    assert _trainable(softdbof) == willow_params("softdbof", F, 16, 8, 8, C, gating=False, head="moe")
    nextvlad = zoo.get("yt8m_nextvlad", **TINY["yt8m_nextvlad"])
    assert _trainable(nextvlad) == nextvlad_params(F, 4, 2, 2, 8, C, 2)
    assert _trainable(zoo.get("yt8m_netvlad", **TINY["yt8m_netvlad"])) == 696  # 16+56+12+232+80+252+48


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_outputs_probabilities_ignores_padding_and_round_trips(tmp_path, name):
    model = zoo.get(name, **TINY[name])
    inputs = {"features": XM, "num_frames": NM}
    out = _np(model(inputs, training=False))
    assert out.shape == (4, C) and ((out >= 0) & (out <= 1)).all() and np.isfinite(out).all()
    garbage = XM.copy()
    garbage[1, 3:] = 77.0
    garbage[2, 1:] = -5.0
    np.testing.assert_allclose(
        _np(model({"features": garbage, "num_frames": NM}, training=False)), out, atol=1e-6
    )
    path = os.path.join(tmp_path, f"{name}.keras")
    model.save(path)
    np.testing.assert_allclose(_np(keras.saving.load_model(path)(inputs, training=False)), out, atol=1e-6)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_a_few_training_steps_lower_the_loss(name):
    keras.utils.set_random_seed(0)
    model = zoo.get(name, **TINY[name])
    rng = np.random.default_rng(1)
    x = {
        "features": rng.normal(size=(16, T, sum(F))).astype("float32"),
        "num_frames": rng.integers(1, T + 1, 16),
    }
    x["num_frames"] = x["num_frames"].astype("int32")
    y = (rng.uniform(size=(16, C)) < 0.3).astype("float32")
    loss = YT8MCrossEntropy()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    before = float(_np(loss(y, model(x, training=False))))
    for _ in range(15):
        model.train_on_batch(x, y)
    after = float(_np(loss(y, model(x, training=False))))
    assert after < before, (name, before, after)


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="head='svm'; valid: gated_moe, moe, logistic"):
        zoo.get("yt8m_netvlad", **TINY["yt8m_netvlad"], head="svm")
    with pytest.raises(ValueError, match="pooling='nextvlad'; valid: netvlad, netrvlad, netfv, softdbof"):
        zoo.get("yt8m_netvlad", **TINY["yt8m_netvlad"], pooling="nextvlad")
    with pytest.raises(ValueError, match="num_clusters=1 must be >= 2"):
        NetVLAD(1)
    with pytest.raises(ValueError, match="not divisible by groups=5"):
        zoo.get("yt8m_nextvlad", **{**TINY["yt8m_nextvlad"], "groups": 5})
