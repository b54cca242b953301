"""The mixture-density head (Graves 2013 eq. 17-26): layout, NLL against a density reference, sampling."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from zoo.layers import MixtureDensityHead, mixture_nll, mixture_params, sample_mixture
from zoo.layers.mdn import mixture_size, num_mixtures_of

BACKEND = keras.backend.backend()


def pack(eos_logit, pi, mu_x, mu_y, log_sx, log_sy, rho_hat):
    """ŷ [..., 6M+1] from its parts (the layout the head documents)."""
    parts = [np.asarray(eos_logit)[..., None]] + [
        np.asarray(p) for p in (pi, mu_x, mu_y, log_sx, log_sy, rho_hat)
    ]
    return np.concatenate(parts, axis=-1).astype(np.float32)


def reference_nll(targets, y_hat):
    """-log p(x, y, eos) straight from the densities (float64, no log-space tricks)."""
    t = np.asarray(targets, np.float64)
    y = np.asarray(y_hat, np.float64)
    m = (y.shape[-1] - 1) // 6
    e_hat = y[..., 0]
    pi_hat, mu_x, mu_y, s_x, s_y, r = (y[..., 1 + k * m : 1 + (k + 1) * m] for k in range(6))
    pi = np.exp(pi_hat) / np.sum(np.exp(pi_hat), axis=-1, keepdims=True)
    sigma_x, sigma_y, rho = np.exp(s_x), np.exp(s_y), np.tanh(r)
    dx = t[..., :1] - mu_x
    dy = t[..., 1:2] - mu_y
    z = (dx / sigma_x) ** 2 + (dy / sigma_y) ** 2 - 2 * rho * dx * dy / (sigma_x * sigma_y)
    density = np.exp(-z / (2 * (1 - rho**2))) / (2 * np.pi * sigma_x * sigma_y * np.sqrt(1 - rho**2))
    p_offset = np.sum(pi * density, axis=-1)
    e = 1 / (1 + np.exp(-e_hat))
    p_eos = np.where(t[..., 2] > 0.5, e, 1 - e)
    return -np.log(p_offset) - np.log(p_eos)


def random_case(rng, batch=3, steps=8, m=5, degenerate=True, rho_hats=(4.0, 6.0, 7.0)):
    """Random mixtures; targets drawn from one component (so the float64 densities do not underflow).

    With ``degenerate``, component 0 has ρ̂ = ±``rho_hats`` (7: ρ = 1 - 1.7e-6) and component 1 has σ down to
    e^-9 (1.2e-4).
    """
    shape = (batch, steps, m)
    pi = rng.normal(0, 2, shape)
    mu_x, mu_y = rng.normal(0, 1, shape), rng.normal(0, 1, shape)
    log_sx, log_sy = rng.uniform(-1.5, 0.5, shape), rng.uniform(-1.5, 0.5, shape)
    rho_hat = rng.normal(0, 1, shape)
    if degenerate:
        rho_hat[..., 0] = rng.choice(rho_hats, size=shape[:2]) * rng.choice([-1.0, 1.0], size=shape[:2])
        log_sx[..., 1] = rng.choice([-9.0, -6.0], size=shape[:2])
        log_sy[..., 1] = rng.choice([-9.0, -6.0], size=shape[:2])
        pi[..., :2] += 2.0  # the degenerate components carry weight
    eos_logit = rng.normal(0, 3, shape[:2])
    y_hat = pack(eos_logit, pi, mu_x, mu_y, log_sx, log_sy, rho_hat)
    # targets: from component k, at 1.5 standard deviations on average
    k = rng.integers(0, m, size=shape[:2])
    take = lambda a: np.take_along_axis(a, k[..., None], -1)[..., 0]  # noqa: E731
    sx, sy, rho = np.exp(take(log_sx)), np.exp(take(log_sy)), np.tanh(take(rho_hat))
    z1, z2 = rng.normal(0, 1.5, shape[:2]), rng.normal(0, 1.5, shape[:2])
    dx = take(mu_x) + sx * z1
    dy = take(mu_y) + sy * (rho * z1 + np.sqrt(1 - rho**2) * z2)
    eos = (rng.uniform(size=shape[:2]) < 0.3).astype(np.float64)
    targets = np.stack([dx, dy, eos], axis=-1).astype(np.float32)
    return targets, y_hat


def grad_of(fn, x):
    """d sum(fn(x)) / dx on the current backend."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = tf.reduce_sum(fn(x))
        return np.asarray(tape.gradient(total, x))
    if BACKEND == "jax":
        import jax

        return np.asarray(jax.grad(lambda v: fn(v).sum())(x))
    pytest.skip(f"no gradient helper for backend {BACKEND}")


# ------------------------------------------------------------------------------------- layout and size
def test_output_width_and_parameter_count():
    head = MixtureDensityHead(num_mixtures=20)
    out = head(np.zeros((2, 7, 900), np.float32))
    assert tuple(out.shape) == (2, 7, 121)
    assert head.count_params() == 900 * 121 + 121 == 109_021
    assert mixture_size(20) == 121 and num_mixtures_of(out) == 20


def test_head_with_an_lstm_900_gives_the_paper_count():
    """lstm_900_iam: LSTM(900) over (dx, dy, eos) + the head = 3,363,421 (HyperNetworks Table 5)."""
    inputs = keras.Input((None, 3))
    hidden = keras.layers.LSTM(900, return_sequences=True)(inputs)
    model = keras.Model(inputs, MixtureDensityHead(20)(hidden))
    assert model.count_params() == 3_363_421


def test_width_that_is_not_6m_plus_1_is_refused():
    with pytest.raises(ValueError, match="6M \\+ 1"):
        mixture_nll(np.zeros((2, 3), np.float32), np.zeros((2, 120), np.float32))
    with pytest.raises(ValueError, match="num_mixtures=0"):
        MixtureDensityHead(num_mixtures=0)
    with pytest.raises(ValueError, match="reduction='mean'"):
        mixture_nll(np.zeros((2, 3), np.float32), np.zeros((2, 121), np.float32), reduction="mean")


def test_params_apply_graves_transforms():
    rng = np.random.default_rng(1)
    y_hat = rng.normal(0, 1, (4, 13)).astype(np.float32)  # M = 2
    p = {k: np.asarray(v) for k, v in mixture_params(y_hat).items()}
    np.testing.assert_allclose(p["eos"], 1 / (1 + np.exp(-y_hat[:, 0])), rtol=1e-6)
    np.testing.assert_allclose(
        p["pi"], np.exp(y_hat[:, 1:3]) / np.exp(y_hat[:, 1:3]).sum(-1, keepdims=True), 1e-6
    )
    np.testing.assert_allclose(p["mu_x"], y_hat[:, 3:5])
    np.testing.assert_allclose(p["mu_y"], y_hat[:, 5:7])
    np.testing.assert_allclose(p["sigma_x"], np.exp(y_hat[:, 7:9]), rtol=1e-6)
    np.testing.assert_allclose(p["sigma_y"], np.exp(y_hat[:, 9:11]), rtol=1e-6)
    np.testing.assert_allclose(p["rho"], np.tanh(y_hat[:, 11:13]), rtol=1e-6)
    biased = {k: np.asarray(v) for k, v in mixture_params(y_hat, bias=2.0).items()}
    np.testing.assert_allclose(biased["sigma_x"], np.exp(y_hat[:, 7:9] - 2.0), rtol=1e-6)  # Graves eq. 61
    pi3 = np.exp(3 * y_hat[:, 1:3]) / np.exp(3 * y_hat[:, 1:3]).sum(-1, keepdims=True)  # eq. 62, 1 + b = 3
    np.testing.assert_allclose(biased["pi"], pi3, rtol=1e-5)


# ------------------------------------------------------------------------------------------------ the NLL
def test_nll_equals_the_density_reference_on_random_mixtures():
    targets, y_hat = random_case(np.random.default_rng(0), degenerate=False)
    ours = np.asarray(mixture_nll(targets, y_hat))
    np.testing.assert_allclose(ours, reference_nll(targets, y_hat), rtol=1e-5, atol=1e-4)


def test_nll_equals_the_reference_with_near_degenerate_rho_and_tiny_sigma():
    targets, y_hat = random_case(np.random.default_rng(1), batch=4, steps=16)
    reference = reference_nll(targets, y_hat)
    assert np.all(np.isfinite(reference))
    ours = np.asarray(mixture_nll(targets, y_hat))
    assert np.all(np.isfinite(ours))
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=2e-3)


def test_nll_where_float32_rho_is_exactly_one():
    """ρ̂ = ±10: tanh rounds to 1 in float32, so 1 - ρ² = 0 there, yet the NLL is finite and right.

    The tolerance is looser: with 1 - ρ² = 8e-9 the float32 rounding of the targets themselves moves the
    conditional residual (zy - ρ zx) by about 1e-3 of its size.
    """
    targets, y_hat = random_case(np.random.default_rng(4), batch=4, steps=16, rho_hats=(10.0,))
    assert np.all(np.tanh(np.float32(10.0)) == np.float32(1.0))
    ours = np.asarray(mixture_nll(targets, y_hat))
    np.testing.assert_allclose(ours, reference_nll(targets, y_hat), rtol=1e-3, atol=3e-2)


def test_nll_gradients_are_finite_where_the_density_degenerates():
    targets, y_hat = random_case(np.random.default_rng(2))
    y_hat[0, 0, 1 + 5 * 5 : 1 + 6 * 5] = 30.0  # ρ̂ = 30 on every component: tanh is exactly 1 in float32
    y_hat[0, 1, 1 + 3 * 5 : 1 + 5 * 5] = -12.0  # σ = 6e-6 on every component
    targets[0, 2, :2] = 1e3  # a point thousands of σ from every component: every density underflows
    grad = grad_of(lambda v: mixture_nll(targets, v), y_hat)
    assert np.all(np.isfinite(grad))
    assert np.all(np.isfinite(np.asarray(mixture_nll(targets, y_hat))))


def test_nll_far_from_a_single_gaussian_is_its_closed_form():
    """M = 1, a target 40 σ away (density 0 in float64): the log-space NLL is the analytic -log N."""
    y_hat = pack([0.0], [[0.0]], [[0.0]], [[0.0]], [[np.log(0.5)]], [[0.0]], [[np.arctanh(0.6)]])
    targets = np.array([[20.0, -10.0, 0.0]], np.float32)
    z = (20 / 0.5) ** 2 + 10**2 - 2 * 0.6 * (20 / 0.5) * (-10)
    analytic = np.log(2 * np.pi * 0.5 * np.sqrt(1 - 0.36)) + z / (2 * (1 - 0.36)) + np.log(2)  # + -log(1 - e)
    np.testing.assert_allclose(np.asarray(mixture_nll(targets, y_hat)), [analytic], rtol=1e-5)


def test_mask_and_reductions():
    targets, y_hat = random_case(np.random.default_rng(3), batch=2, steps=5, degenerate=False)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.float32)
    per_point = reference_nll(targets, y_hat) * mask
    ours = np.asarray(mixture_nll(targets, y_hat, mask))
    np.testing.assert_allclose(ours, per_point, rtol=1e-5, atol=1e-5)
    assert np.all(ours[0, 3:] == 0)
    np.testing.assert_allclose(mixture_nll(targets, y_hat, mask, "sequence"), per_point.sum(1), rtol=1e-5)
    np.testing.assert_allclose(mixture_nll(targets, y_hat, mask, "point"), per_point.sum() / 8, rtol=1e-5)
    np.testing.assert_allclose(
        mixture_nll(targets, y_hat, mask, "mean_sequence"), per_point.sum() / 2, rtol=1e-5
    )
    changed = targets.copy()
    changed[0, 3:] = 7.0  # what padded points hold does not matter
    np.testing.assert_allclose(mixture_nll(changed, y_hat, mask, "sequence"), per_point.sum(1), rtol=1e-5)
    np.testing.assert_allclose(
        mixture_nll(targets, y_hat, None, "point"), reference_nll(targets, y_hat).mean(), 1e-5
    )


# ------------------------------------------------------------------------------------------------ sampling
MIXTURE = {  # three components, well apart
    "pi": [0.5, 0.3, 0.2],
    "mu_x": [0.0, 8.0, -6.0],
    "mu_y": [0.0, 2.0, 8.0],
    "sigma_x": [1.0, 0.5, 0.8],
    "sigma_y": [0.7, 1.2, 0.4],
    "rho": [0.6, -0.3, 0.0],
    "eos": 0.2,
}


def fixed_mixture(n, mix=MIXTURE):
    m = len(mix["pi"])
    row = pack(
        math.log(mix["eos"] / (1 - mix["eos"])),
        np.log(mix["pi"]),
        mix["mu_x"],
        mix["mu_y"],
        np.log(mix["sigma_x"]),
        np.log(mix["sigma_y"]),
        np.arctanh(mix["rho"]),
    )
    assert row.shape == (6 * m + 1,)
    return np.tile(row, (n, 1))


def mixture_moments(mix):
    pi, mx, my = map(np.asarray, (mix["pi"], mix["mu_x"], mix["mu_y"]))
    sx, sy, r = map(np.asarray, (mix["sigma_x"], mix["sigma_y"], mix["rho"]))
    mean = np.array([pi @ mx, pi @ my])
    second = np.zeros((2, 2))
    for k in range(len(pi)):
        cov_k = np.array([[sx[k] ** 2, r[k] * sx[k] * sy[k]], [r[k] * sx[k] * sy[k], sy[k] ** 2]])
        mu_k = np.array([mx[k], my[k]])
        second += pi[k] * (cov_k + np.outer(mu_k, mu_k))
    return mean, second - np.outer(mean, mean)


def test_samples_have_the_mixture_mean_and_covariance():
    n = 40_000
    rows = np.asarray(sample_mixture(fixed_mixture(n), seed=3))
    mean, cov = mixture_moments(MIXTURE)
    assert np.all(np.abs(rows[:, :2].mean(0) - mean) < 4 * np.sqrt(np.diag(cov) / n))  # 4 standard errors
    np.testing.assert_allclose(np.cov(rows[:, :2].T), cov, atol=0.12)
    assert set(np.unique(rows[:, 2])) <= {0.0, 1.0}
    assert abs(rows[:, 2].mean() - 0.2) < 4 * np.sqrt(0.16 / n)


def test_temperature_and_bias_as_documented():
    n = 40_000
    one = {
        "pi": [1.0],
        "mu_x": [1.0],
        "mu_y": [-2.0],
        "sigma_x": [2.0],
        "sigma_y": [1.0],
        "rho": [0.5],
        "eos": 0.3,
    }
    _, cov = mixture_moments(one)
    cold = np.asarray(sample_mixture(fixed_mixture(n, one), temperature=0.25, seed=4))
    np.testing.assert_allclose(cold[:, :2].mean(0), [1.0, -2.0], atol=0.02)
    np.testing.assert_allclose(np.cov(cold[:, :2].T), 0.25 * cov, rtol=0.05, atol=0.01)  # variances · τ
    p_cold = 1 / (1 + np.exp(-np.log(0.3 / 0.7) / 0.25))  # end-of-stroke logit / τ
    assert abs(cold[:, 2].mean() - p_cold) < 4 * np.sqrt(p_cold * (1 - p_cold) / n)
    biased = np.asarray(sample_mixture(fixed_mixture(n, one), bias=1.0, seed=5))
    np.testing.assert_allclose(np.cov(biased[:, :2].T), np.exp(-2.0) * cov, rtol=0.05, atol=0.01)  # σ e^-b
    assert abs(biased[:, 2].mean() - 0.3) < 4 * np.sqrt(0.21 / n)  # the bias leaves the pen alone
    # component choice: π ∝ π^((1 + b) / τ); the three components are far apart, so the nearest mean tells
    mix_rows = fixed_mixture(n)
    centres = np.stack([MIXTURE["mu_x"], MIXTURE["mu_y"]], 1)
    for temperature, bias in [(1.0, 0.0), (0.5, 0.0), (1.0, 1.0), (2.0, 0.5)]:
        rows = np.asarray(sample_mixture(mix_rows, temperature=temperature, bias=bias, seed=6))
        nearest = np.argmin(((rows[:, None, :2] - centres[None]) ** 2).sum(-1), axis=1)
        weights = np.asarray(MIXTURE["pi"]) ** ((1 + bias) / temperature)
        expected = weights / weights.sum()
        np.testing.assert_allclose(np.bincount(nearest, minlength=3) / n, expected, atol=0.015)


def test_sampling_seeds_and_argument_checks():
    y_hat = fixed_mixture(8)
    a = np.asarray(sample_mixture(y_hat, seed=11))
    np.testing.assert_array_equal(a, np.asarray(sample_mixture(y_hat, seed=11)))  # int seed: stateless
    generator = keras.random.SeedGenerator(0)
    first = np.asarray(sample_mixture(y_hat, seed=generator))
    # a generator advances
    assert not np.array_equal(first, np.asarray(sample_mixture(y_hat, seed=generator)))
    # one int seed gives three independent draws: the pen bit does not depend on the offset's noise
    even = {
        "pi": [1.0],
        "mu_x": [0.0],
        "mu_y": [0.0],
        "sigma_x": [1.0],
        "sigma_y": [1.0],
        "rho": [0.0],
        "eos": 0.5,
    }
    rows = np.asarray(sample_mixture(fixed_mixture(20_000, even), seed=12))
    assert abs(np.corrcoef(rows[:, 0], rows[:, 2])[0, 1]) < 0.04
    assert abs(np.corrcoef(rows[:, 1], rows[:, 2])[0, 1]) < 0.04
    with pytest.raises(ValueError, match="temperature=0"):
        sample_mixture(y_hat, temperature=0)
    with pytest.raises(ValueError, match="bias=-1"):
        sample_mixture(y_hat, bias=-1)
    with pytest.raises(ValueError, match="one step"):
        sample_mixture(y_hat[None], seed=1)


# --------------------------------------------------------------------------------------------- the layer
def test_keras_round_trip(tmp_path):
    inputs = keras.Input((None, 16))
    model = keras.Model(inputs, MixtureDensityHead(num_mixtures=3, name="mdn")(inputs))
    x = np.random.default_rng(0).normal(size=(2, 4, 16)).astype(np.float32)
    path = str(tmp_path / "mdn.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))
    head = loaded.get_layer("mdn")
    assert isinstance(head, MixtureDensityHead) and head.num_mixtures == 3
    assert head.get_config()["num_mixtures"] == 3
    targets = np.zeros((2, 4, 3), np.float32)
    np.testing.assert_allclose(
        np.asarray(head.nll(targets, loaded(x), reduction="sequence")),
        reference_nll(targets, np.asarray(model(x))).sum(1),
        rtol=1e-5,
    )
    assert tuple(ops.shape(head.sample(loaded(x)[:, -1], seed=0))) == (2, 3)
