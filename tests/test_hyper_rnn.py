"""HyperLSTMCell (HyperNetworks Eq. 10-13) and HyperRNNCell (Eq. 6, 8) against numpy references."""

import doctest
import math

import keras
import numpy as np
import pytest

import zoo.layers.hyper_rnn
from zoo.layers import GATES, RNN, HyperLSTMCell, HyperRNNCell

N, H, E, NX = 6, 5, 3, 4
IGFO = ("i", "g", "f", "o")  # the documented gate order, written out (not read from the code under test)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _ln(x, gamma, beta, eps=1e-3):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _weights(layer):
    return {v.path.split("/")[-1]: np.asarray(v.numpy(), np.float64) for v in layer.weights if v.trainable}


def _randomise(layer, rng, scale=0.5):
    for v in layer.weights:
        if v.trainable:
            v.assign(rng.normal(0.0, scale, v.shape).astype("float32") + (1.0 if "gamma" in v.path else 0.0))


def _hyper_lstm_reference(w, x, use_ln, forget_bias=1.0, hyper_forget_bias=1.0):
    """Eq. 10-13 gate by gate, slicing the fused weights by the documented column layout; the hyper cell
    has its own forget bias (the authors fix it at 1.0)."""
    b, t = x.shape[:2]
    h, c, hh, hc = np.zeros((b, N)), np.zeros((b, N)), np.zeros((b, H)), np.zeros((b, H))
    outs, scales = [], []
    for step in range(t):
        xt = x[:, step]
        # hyper LSTM over [x_t, h_{t-1}] (keeps its bias; LN per gate when use_ln)
        hyper_gates = {}
        for k, y in enumerate(IGFO):
            cols = slice(4 * N + k * H, 4 * N + (k + 1) * H)
            pre = xt @ w["kernel"][:, cols] + h @ w["recurrent_kernel"][:, cols]
            pre = (
                pre
                + hh @ w["hyper_recurrent_kernel"][:, k * H : (k + 1) * H]
                + w["hyper_bias"][k * H : (k + 1) * H]
            )
            if use_ln:
                pre = _ln(
                    pre, w["hyper_gate_gamma"][k * H : (k + 1) * H], w["hyper_gate_beta"][k * H : (k + 1) * H]
                )
            hyper_gates[y] = pre
        hc = _sigmoid(hyper_gates["f"] + hyper_forget_bias) * hc + _sigmoid(hyper_gates["i"]) * np.tanh(
            hyper_gates["g"]
        )
        hc_out = _ln(hc, w["hyper_cell_gamma"], w["hyper_cell_beta"]) if use_ln else hc
        hh = _sigmoid(hyper_gates["o"]) * np.tanh(hc_out)
        # Eq. 11-12 with the hyper output of the current step, then Eq. 10 per gate
        gates, step_scales = {}, {}
        for k, y in enumerate(IGFO):
            z_x = hh @ w["z_kernel"][:, k * E : (k + 1) * E] + w["z_bias"][k * E : (k + 1) * E]
            z_h = hh @ w["z_kernel"][:, (4 + k) * E : (5 + k) * E] + w["z_bias"][(4 + k) * E : (5 + k) * E]
            z_b = hh @ w["z_b_kernel"][:, k * E : (k + 1) * E]
            d_x = z_x @ w["d_kernel"][k]
            d_h = z_h @ w["d_kernel"][4 + k]
            bias = z_b @ w["d_b_kernel"][k] + w["bias"][k * N : (k + 1) * N]
            cols = slice(k * N, (k + 1) * N)
            pre = d_h * (h @ w["recurrent_kernel"][:, cols]) + d_x * (xt @ w["kernel"][:, cols]) + bias
            if use_ln:
                pre = _ln(pre, w["gate_gamma"][cols], w["gate_beta"][cols])
            gates[y] = pre
            step_scales.update({f"d_x_{y}": d_x, f"d_h_{y}": d_h, f"b_{y}": bias})
        c = _sigmoid(gates["f"] + forget_bias) * c + _sigmoid(gates["i"]) * np.tanh(gates["g"])
        c_out = _ln(c, w["cell_gamma"], w["cell_beta"]) if use_ln else c
        h = _sigmoid(gates["o"]) * np.tanh(c_out)
        outs.append(h)
        scales.append(step_scales)
    return np.stack(outs, 1), [h, c, hh, hc], scales


def _build(cell, x):
    rnn = RNN(cell, return_sequences=True, return_state=True)
    rnn(x)
    return rnn


def hyper_lstm_params(nx, n, h, e, ln):
    return (
        4 * n * (nx + n + 1)
        + 4 * h * (nx + n + h + 1)
        + 12 * h * e
        + 8 * e
        + 12 * e * n
        + (10 * n + 10 * h) * ln
    )


@pytest.mark.parametrize("use_ln", [False, True])
def test_hyper_lstm_matches_numpy_reference(use_ln):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, NX)).astype("float32")
    cell = HyperLSTMCell(N, hyper_units=H, embedding_size=E, use_layer_norm=use_ln, forget_bias=0.8)
    rnn = _build(cell, x)
    _randomise(cell, rng)
    seq, *states = (np.asarray(t) for t in rnn(x))
    ref_seq, ref_states, ref_scales = _hyper_lstm_reference(_weights(cell), x.astype(np.float64), use_ln, 0.8)
    np.testing.assert_allclose(seq, ref_seq, atol=3e-5)
    for got, want in zip(states, ref_states, strict=True):
        np.testing.assert_allclose(got, want, atol=3e-5)
    # compute_scales on the final hyper output (state 2) gives the last step's vectors
    scales = {k: np.asarray(v) for k, v in cell.compute_scales(states[2]).items()}
    assert sorted(scales) == sorted(ref_scales[-1])
    for key, value in ref_scales[-1].items():
        np.testing.assert_allclose(scales[key], value, atol=3e-5, err_msg=key)


@pytest.mark.parametrize("use_ln", [False, True])
def test_hyper_lstm_weights_by_name_and_count(use_ln):
    """Each term of the count (docs/param_counts.md) is the named weights it says."""
    cell = HyperLSTMCell(N, hyper_units=H, embedding_size=E, use_layer_norm=use_ln)
    _build(cell, np.zeros((1, 2, NX), "float32"))
    shapes = {v.path.split("/")[-1]: tuple(v.shape) for v in cell.trainable_weights}
    expected = {
        "kernel": (NX, 4 * N + 4 * H),  # W_x^{i,g,f,o} | the hyper cell's weights on x
        "recurrent_kernel": (N, 4 * N + 4 * H),  # W_h^{i,g,f,o} | the hyper cell's weights on h
        "bias": (4 * N,),  # b_0
        "hyper_recurrent_kernel": (H, 4 * H),
        "hyper_bias": (4 * H,),
        "z_kernel": (H, 8 * E),  # z_x, z_h of four gates
        "z_bias": (8 * E,),
        "z_b_kernel": (H, 4 * E),
        "d_kernel": (8, E, N),
        "d_b_kernel": (4, E, N),
    }
    if use_ln:
        expected |= {
            "gate_gamma": (4 * N,),
            "gate_beta": (4 * N,),
            "cell_gamma": (N,),
            "cell_beta": (N,),
            "hyper_gate_gamma": (4 * H,),
            "hyper_gate_beta": (4 * H,),
            "hyper_cell_gamma": (H,),
            "hyper_cell_beta": (H,),
        }
    assert shapes == expected
    size = {k: math.prod(v) for k, v in shapes.items()}
    assert size["kernel"] + size["recurrent_kernel"] + size["bias"] == 4 * N * (NX + N + 1) + 4 * H * (NX + N)
    assert size["hyper_recurrent_kernel"] + size["hyper_bias"] == 4 * H * (H + 1)
    assert size["z_kernel"] + size["z_b_kernel"] == 12 * H * E and size["z_bias"] == 8 * E
    assert size["d_kernel"] + size["d_b_kernel"] == 12 * E * N
    assert sum(size.values()) == hyper_lstm_params(NX, N, H, E, use_ln)
    assert cell.state_size == [N, N, H, H]


def test_init_follows_the_authors():
    """Main W_x Glorot-uniform over [N_x, 4N]; the hyper cell's weights on [x; h] uniform with the Glorot
    bound of its joint [N_x + N, 4H] matrix; W_h and the hyper W_h orthogonal per gate; biases 0."""
    n, hu, n_x = 24, 16, 40
    cell = HyperLSTMCell(n, hyper_units=hu, embedding_size=4)
    _build(cell, np.zeros((1, 2, n_x), "float32"))
    kernel, recurrent = cell.kernel.numpy(), cell.recurrent_kernel.numpy()
    main_limit = math.sqrt(6.0 / (n_x + 4 * n))
    hyper_limit = math.sqrt(6.0 / (n_x + n + 4 * hu))
    for block, limit in (
        (kernel[:, : 4 * n], main_limit),
        (kernel[:, 4 * n :], hyper_limit),
        (recurrent[:, 4 * n :], hyper_limit),
    ):
        assert np.abs(block).max() <= limit
        assert abs(block.std() / (limit / math.sqrt(3.0)) - 1.0) < 0.1, (block.shape, block.std(), limit)
    for w, units in ((recurrent[:, : 4 * n], n), (cell.hyper_recurrent_kernel.numpy(), hu)):
        for k in range(4):
            block = w[:, k * units : (k + 1) * units]
            np.testing.assert_allclose(block.T @ block, np.eye(units), atol=1e-5)
    assert not cell.bias.numpy().any() and not cell.hyper_bias.numpy().any()


def _saturated(cell, forget_pre):
    """Zero every weight, then set the main and hyper biases so that each cell computes
    ``c_t = σ(forget_pre + forget bias) c_{t-1} + Dropout(tanh(1))`` (i and o saturated at 1, g = 1)."""
    cell.build((None, 1))
    for v in cell.trainable_weights:
        v.assign(np.zeros(v.shape, "float32"))

    def pattern(k):
        return np.concatenate([np.full(k, 100.0), np.ones(k), np.full(k, forget_pre), np.full(k, 100.0)])

    cell.bias.assign(pattern(cell.units).astype("float32"))  # d = 0 (z = 0), so the main pre-act. is b_0
    cell.hyper_bias.assign(pattern(cell.hyper_units).astype("float32"))
    return cell


def _run_steps(cell, steps, training):
    x = np.zeros((2, 1), "float32")
    states = cell.get_initial_state(2)
    out = []
    for _ in range(steps):
        step = cell.step(x, states, training=training)
        states = [step[k] for k in ("h", "c", "hyper_h", "hyper_c")]
        out.append({k: np.asarray(v) for k, v in step.items()})
    return out


@pytest.mark.parametrize("main_rate, hyper_rate", [(0.5, 0.0), (0.0, 0.5)])
def test_recurrent_dropout_drops_the_candidate_of_each_cell(main_rate, hyper_rate):
    """With i = f = o = 1 and g = 1 a cell accumulates c_t = c_{t-1} + Dropout(tanh(1)): each increment is
    0 or tanh(1) / (1 - rate) when tanh(g) is dropped. Dropout on h (or on c) instead gives increments of
    exactly tanh(1) (or negative ones); dropout leaking into the other cell gives mixed increments there."""
    cell = _saturated(
        HyperLSTMCell(
            64,
            hyper_units=64,
            embedding_size=2,
            use_layer_norm=False,
            recurrent_dropout=main_rate,
            hyper_recurrent_dropout=hyper_rate,
            seed=7,
        ),
        forget_pre=100.0,
    )
    steps = _run_steps(cell, 6, training=True)
    for key, rate in (("c", main_rate), ("hyper_c", hyper_rate)):
        c = np.stack([s[key] for s in steps])
        increments = np.diff(np.concatenate([np.zeros_like(c[:1]), c]), axis=0)
        if rate:
            kept = np.tanh(1.0) / (1.0 - rate)
            dropped = np.isclose(increments, 0.0, atol=1e-6)
            assert np.all(dropped | np.isclose(increments, kept, rtol=1e-5)), key
            assert 0.3 < dropped.mean() < 0.7, key
            assert not np.array_equal(dropped[0], dropped[1]), key  # a fresh mask every step
        else:
            np.testing.assert_allclose(increments, np.tanh(1.0), rtol=1e-5, err_msg=key)
    for s in steps:  # h = σ(o) tanh(c) with σ(o) = 1: nothing dropped after the cell update
        np.testing.assert_allclose(s["h"], np.tanh(s["c"]), rtol=1e-5)
        np.testing.assert_allclose(s["hyper_h"], np.tanh(s["hyper_c"]), rtol=1e-5)
    inference = _run_steps(cell, 2, training=False)
    np.testing.assert_allclose(inference[1]["c"], 2 * np.tanh(1.0), rtol=1e-5)


@pytest.mark.parametrize("hyper_forget_bias", [None, 0.25])
def test_hyper_cell_has_its_own_forget_bias(hyper_forget_bias):
    """Forget pre-activations 0: after two steps c = (σ(forget bias) + 1) tanh(1) in each cell. The hyper
    cell's forget bias is 1.0 (the authors') or its own argument, never the main cell's."""
    kwargs = {} if hyper_forget_bias is None else {"hyper_forget_bias": hyper_forget_bias}
    cell = _saturated(
        HyperLSTMCell(8, hyper_units=4, embedding_size=2, use_layer_norm=False, forget_bias=-3.0, **kwargs),
        forget_pre=0.0,
    )
    second = _run_steps(cell, 2, training=False)[1]
    hyper_bias = 1.0 if hyper_forget_bias is None else hyper_forget_bias
    np.testing.assert_allclose(second["c"], (_sigmoid(-3.0) + 1.0) * np.tanh(1.0), rtol=1e-5)
    np.testing.assert_allclose(second["hyper_c"], (_sigmoid(hyper_bias) + 1.0) * np.tanh(1.0), rtol=1e-5)
    assert cell.get_config()["hyper_forget_bias"] == hyper_bias


def test_scaling_vectors_are_exactly_point_one_at_init():
    cell = HyperLSTMCell(N, hyper_units=H, embedding_size=4)
    x = np.random.default_rng(0).normal(size=(3, 4, NX)).astype("float32")
    rnn = _build(cell, x)
    _, *states = rnn(x)
    assert np.abs(np.asarray(states[2])).max() > 0.01  # a non-trivial hyper output
    scales = cell.compute_scales(states[2])
    assert GATES == IGFO
    assert sorted(scales) == sorted(f"{p}_{y}" for p in ("d_x", "d_h", "b") for y in IGFO)
    for key, value in scales.items():
        want = 0.0 if key.startswith("b_") else np.float32(0.1)
        np.testing.assert_allclose(np.asarray(value), want, rtol=1e-6, atol=0, err_msg=key)
        assert value.shape == (3, N)
    # z_b starts N(0, 0.01), d_b and b_0 at 0
    assert 0.003 < cell.z_b_kernel.numpy().std() < 0.03
    assert not cell.d_b_kernel.numpy().any() and not cell.bias.numpy().any()


def test_scales_over_a_sequence_match_each_step():
    rng = np.random.default_rng(2)
    cell = HyperLSTMCell(N, hyper_units=H, embedding_size=E)
    x = rng.normal(size=(2, 4, NX)).astype("float32")
    _build(cell, x)
    _randomise(cell, rng)
    states = cell.get_initial_state(2)
    hyper_hs, d_x_f = [], []
    for t in range(4):
        out = cell.step(x[:, t], states)
        states = [out["h"], out["c"], out["hyper_h"], out["hyper_c"]]
        hyper_hs.append(np.asarray(out["hyper_h"]))
        d_x_f.append(np.asarray(out["d_x"])[:, 2 * N : 3 * N])
    over = cell.compute_scales(np.stack(hyper_hs, 1))
    assert over["d_x_f"].shape == (2, 4, N)
    np.testing.assert_allclose(np.asarray(over["d_x_f"]), np.stack(d_x_f, 1), atol=1e-6)


def _hyper_rnn_reference(w, x):
    b, t = x.shape[:2]
    h, hh = np.zeros((b, N)), np.zeros((b, H))
    outs = []
    for step in range(t):
        xt = x[:, step]
        hh = np.tanh(
            xt @ w["kernel"][:, N:]
            + h @ w["recurrent_kernel"][:, N:]
            + hh @ w["hyper_recurrent_kernel"]
            + w["hyper_bias"]
        )
        z_x = hh @ w["z_kernel"][:, :E] + w["z_bias"][:E]
        z_h = hh @ w["z_kernel"][:, E:] + w["z_bias"][E:]
        z_b = hh @ w["z_b_kernel"]
        d_x, d_h = z_x @ w["d_kernel"][0], z_h @ w["d_kernel"][1]
        bias = z_b @ w["d_b_kernel"] + w["bias"]
        h = np.tanh(d_h * (h @ w["recurrent_kernel"][:, :N]) + d_x * (xt @ w["kernel"][:, :N]) + bias)
        outs.append(h)
    return np.stack(outs, 1)


def test_hyper_rnn_matches_numpy_reference_and_count():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 5, NX)).astype("float32")
    cell = HyperRNNCell(N, hyper_units=H, embedding_size=E)
    rnn = _build(cell, x)
    count = sum(int(np.prod(v.shape)) for v in cell.trainable_weights)
    assert count == N * (NX + N + 1) + H * (NX + N + H + 1) + 3 * H * E + 2 * E + 3 * E * N
    init_scales = cell.compute_scales(np.asarray(rnn(x)[2]))
    np.testing.assert_allclose(np.asarray(init_scales["d_h"]), np.float32(0.1), rtol=1e-6, atol=0)
    _randomise(cell, rng)
    np.testing.assert_allclose(
        np.asarray(rnn(x)[0]), _hyper_rnn_reference(_weights(cell), x.astype(float)), atol=3e-5
    )


def test_arguments_are_validated():
    with pytest.raises(ValueError, match="HyperLSTMCell: hyper_recurrent_dropout=1.0 is a drop rate"):
        HyperLSTMCell(8, hyper_recurrent_dropout=1.0)
    with pytest.raises(ValueError, match="HyperLSTMCell: embedding_size=0 must be a positive integer"):
        HyperLSTMCell(8, embedding_size=0)
    with pytest.raises(ValueError, match="HyperRNNCell: hyper_units=0 must be a positive integer"):
        HyperRNNCell(8, hyper_units=0)


@pytest.mark.parametrize("rates", [(0.5, 0.0), (0.0, 0.5)])
def test_dropout_only_in_training(rates, compiled_training_call):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 6, NX)).astype("float32")
    dropped = HyperLSTMCell(N, H, E, recurrent_dropout=rates[0], hyper_recurrent_dropout=rates[1], seed=1)
    plain = HyperLSTMCell(N, H, E)
    rnn_d, rnn_p = _build(dropped, x), _build(plain, x)
    _randomise(dropped, rng)
    for a, b in zip(dropped.trainable_weights, plain.trainable_weights, strict=True):
        b.assign(np.array(a))  # a copy: JAX's compiled predict may donate (delete) the buffers of rnn_d
    np.testing.assert_array_equal(np.asarray(rnn_d(x, training=False)[0]), np.asarray(rnn_p(x)[0]))
    jitted = compiled_training_call(rnn_d, index=0)
    first, second = jitted(x), jitted(x)
    assert not np.allclose(first, np.asarray(rnn_p(x)[0]), atol=1e-3)
    assert not np.array_equal(first, second)  # new masks on every call


@pytest.mark.parametrize(
    "make",
    [
        lambda: HyperLSTMCell(N, H, E, recurrent_dropout=0.1),
        lambda: HyperLSTMCell(N, H, E, False, forget_bias=0.5, hyper_forget_bias=0.7),
        lambda: HyperRNNCell(N, H, E),
    ],
)
def test_keras_round_trip(make, tmp_path):
    inp = keras.Input((None, NX))
    model = keras.Model(inp, RNN(make(), return_sequences=True)(inp))
    _randomise(model.layers[1].cell, np.random.default_rng(5), scale=0.3)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(6).normal(size=(2, 4, NX)).astype("float32")
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(loaded(x)))
    assert loaded.layers[1].cell.get_config() == model.layers[1].cell.get_config()


@pytest.mark.parametrize(
    "make",
    [
        lambda: HyperLSTMCell(16, 8, 4, recurrent_dropout=0.1, hyper_recurrent_dropout=0.1),
        lambda: HyperRNNCell(16, 8, 4),
    ],
)
def test_trains_under_xla(make):
    """XLA compiles the step (no Python loop over time) and the loss falls (no-LN numerics: the reference)."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 4, size=(64, 8))
    x = np.eye(4, dtype="float32")[ids]
    y = np.roll(ids, 1, axis=1)
    y[:, 0] = 0
    inp = keras.Input((8, 4))
    model = keras.Model(inp, keras.layers.Dense(4)(RNN(make(), return_sequences=True)(inp)))
    model.compile(
        optimizer=keras.optimizers.Adam(0.02),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    history = model.fit(x, y, batch_size=32, epochs=15, verbose=0).history["loss"]
    assert history[-1] < 0.6 * history[0], history


def test_docstring_examples_run():
    result = doctest.testmod(zoo.layers.hyper_rnn, extraglobs={"np": np, "keras": keras})
    assert result.attempted > 0 and result.failed == 0
