"""Handwriting models (HyperNetworks §4.5, Table 5): exact parameter counts, statistics layer, sampling."""

import math

import keras
import numpy as np
import pytest

import zoo
from zoo.data.strokes import StrokeStats
from zoo.layers.mdn import sample_mixture
from zoo.models.char_lm import trainable_params
from zoo.models.handwriting import StrokeNormalization, set_stroke_stats, stroke_stats

TABLE5 = {
    "lstm_900_iam": 3_363_421,
    "lstm_1000_iam": 4_137_121,
    "lstm_400x3_iam": 3_258_121,
    "lstm_650x2_iam": 5_161_771,
    "ln_lstm_900_iam": 3_368_821,
    "ln_lstm_1000_iam": 4_143_121,
    "hyper_lstm_900_iam": 3_941_181,
    "ln_hyper_lstm_900_iam": 3_951_461,
}
TINY = {"units": 16, "hyper_units": 8, "recurrent_dropout": 0.0, "output_dropout": 0.0}


def _breakdown(model):
    return {w.path: int(np.prod(w.shape)) for w in model.trainable_weights}


def test_the_eight_models_have_table5_counts():
    assert zoo.list_models("*_iam") == sorted(TABLE5)
    for name, count in TABLE5.items():
        model = zoo.get(name)
        assert trainable_params(model) == count, name
        assert zoo.describe(name)["paper_params"] == count
        assert zoo.describe(name)["task"] == "handwriting"
        assert tuple(model.input["strokes"].shape) == (None, None, 3)
        assert model.output["mixture"].shape[-1] == 121  # 6M + 1, M = 20


def test_per_weight_breakdown_lstm_900_and_hyper_lstm_900():
    n, h, e, nx, head = 900, 128, 4, 3, 121
    assert _breakdown(zoo.get("lstm_900_iam")) == {
        "rnn_0/cell_0/kernel": nx * 4 * n,  # W_x
        "rnn_0/cell_0/recurrent_kernel": n * 4 * n,  # W_h
        "rnn_0/cell_0/bias": 4 * n,
        "mixture/kernel": n * head,
        "mixture/bias": head,
    }
    assert _breakdown(zoo.get("hyper_lstm_900_iam")) == {
        "rnn_0/cell_0/kernel": nx * (4 * n + 4 * h),  # main W_x | hyper cell's x rows
        "rnn_0/cell_0/recurrent_kernel": n * (4 * n + 4 * h),  # main W_h | hyper cell's h rows
        "rnn_0/cell_0/hyper_recurrent_kernel": h * 4 * h,
        "rnn_0/cell_0/hyper_bias": 4 * h,
        "rnn_0/cell_0/z_kernel": h * 8 * e,
        "rnn_0/cell_0/z_bias": 8 * e,
        "rnn_0/cell_0/z_b_kernel": h * 4 * e,
        "rnn_0/cell_0/d_kernel": 8 * e * n,
        "rnn_0/cell_0/d_b_kernel": 4 * e * n,
        "rnn_0/cell_0/bias": 4 * n,
        "mixture/kernel": n * head,
        "mixture/bias": head,
    }
    stack = _breakdown(zoo.get("lstm_400x3_iam"))  # plain stack: each layer reads the one below
    assert (
        stack["rnn_0/cell_0/kernel"] == 3 * 1600
        and stack["rnn_1/cell_1/kernel"] == stack["rnn_2/cell_2/kernel"] == 400 * 1600
    )
    assert stack["mixture/kernel"] == 400 * 121


def test_recipe_is_a35():
    recipe = zoo.describe("hyper_lstm_900_iam")["recipe"]
    assert recipe["batch_size"] == 32 and recipe["optimizer"] == "adam" and recipe["learning_rate"] == 1e-4
    assert recipe["clip_norm"] == 5.0 and recipe["max_scale"] == 0.1
    config = zoo.describe("hyper_lstm_900_iam")["config"]
    assert config["recurrent_dropout"] == config["output_dropout"] == pytest.approx(0.05)  # keep 0.95
    assert (config["hyper_units"], config["embedding_size"], config["num_mixtures"]) == (128, 4, 20)


def test_state_inputs_and_outputs_like_the_char_lms():
    model = zoo.get("hyper_lstm_900_iam", **TINY)
    spec = zoo.describe("hyper_lstm_900_iam")["input_spec"]
    assert list(spec) == ["strokes", "state_0", "state_1", "state_2", "state_3"]
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    zeros = {f"state_{k}": np.zeros((2, s), "float32") for k, s in enumerate([16, 16, 8, 8])}
    whole = model({"strokes": x, **zeros})
    first = model({"strokes": x[:, :3], **zeros})
    rest = model({"strokes": x[:, 3:], **{k: np.asarray(first[k]) for k in zeros}})
    np.testing.assert_allclose(rest["mixture"], whole["mixture"][:, 3:], atol=1e-5)  # state carries


def test_stroke_normalization_holds_the_statistics_and_round_trips(tmp_path):
    model = zoo.get("lstm_900_iam", **TINY)
    assert stroke_stats(model) == StrokeStats((0.0, 0.0), (1.0, 1.0))
    stats = StrokeStats((2.0, -1.0), (10.0, 5.0))
    set_stroke_stats(model, stats)
    assert stroke_stats(model) == stats
    assert trainable_params(model) == sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    layer = model.get_layer("normalize")
    assert not layer.trainable_weights and len(layer.non_trainable_weights) == 2
    rows = np.array([[12.0, 4.0, 1.0]], "float32")
    np.testing.assert_allclose(layer.normalize(rows), [[1.0, 1.0, 1.0]])
    np.testing.assert_allclose(layer.denormalize(layer.normalize(rows)), rows, atol=1e-6)
    x = np.random.default_rng(1).normal(size=(1, 4, 3)).astype("float32")
    zeros = {"state_0": np.zeros((1, 16), "float32"), "state_1": np.zeros((1, 16), "float32")}
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("normalize"), StrokeNormalization)
    assert stroke_stats(loaded) == stats
    np.testing.assert_allclose(
        loaded({"strokes": x, **zeros})["mixture"], model({"strokes": x, **zeros})["mixture"]
    )


def test_noise_driven_samples_have_the_mixtures_mean_and_covariance():
    """sample_mixture(noise=...) (the SavedModel's stateless path) draws from the mixture it is given."""
    pi = np.array([0.3, 0.7])
    mu = np.array([[-2.0, 1.0], [1.5, -0.5]])
    sigma = np.array([[0.5, 1.2], [0.8, 0.4]])
    rho = np.array([0.6, -0.3])
    y = np.concatenate(
        [[0.0], np.log(pi), mu[:, 0], mu[:, 1], np.log(sigma[:, 0]), np.log(sigma[:, 1]), np.arctanh(rho)]
    )
    n = 20000
    noise = np.random.default_rng(0).random((n, 4)).astype("float32")
    rows = np.asarray(sample_mixture(np.tile(y, (n, 1)).astype("float32"), noise=noise))
    mean = (pi[:, None] * mu).sum(0)
    cov = -np.outer(mean, mean)
    for k in range(2):
        s = np.array(
            [
                [sigma[k, 0] ** 2, rho[k] * sigma[k, 0] * sigma[k, 1]],
                [rho[k] * sigma[k, 0] * sigma[k, 1], sigma[k, 1] ** 2],
            ]
        )
        cov += pi[k] * (s + np.outer(mu[k], mu[k]))
    np.testing.assert_allclose(rows[:, :2].mean(0), mean, atol=0.05)
    np.testing.assert_allclose(np.cov(rows[:, :2].T), cov, atol=0.08)
    assert abs(rows[:, 2].mean() - 0.5) < 0.02  # eos logit 0: pen up half the time
    # the same noise gives the same rows (what makes the SavedModel's seeded sampling reproducible)
    again = np.asarray(sample_mixture(np.tile(y, (n, 1)).astype("float32"), noise=noise))
    np.testing.assert_array_equal(rows, again)
    assert math.isfinite(float(rows.sum()))
