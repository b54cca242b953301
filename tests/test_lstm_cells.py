"""LSTM baseline and Layer Norm LSTM cells (HyperNetworks A.2.2, Eq. 9-10, 13) against numpy references,
and the cell base they share (zoo/layers/rnn_base.py)."""

import doctest
import math

import keras
import numpy as np
import pytest
from keras import ops

import zoo.layers.lstm
import zoo.layers.rnn_base
from zoo.layers import RNN, BasicLSTMCell, BlockOrthogonal, ColumnBlocks, LayerNormLSTMCell, RecurrentCell


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _ln(x, gamma, beta, eps=1e-3):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _reference(cell, x, forget_bias):
    """Straightforward per-gate numpy LSTM (gate order i, g, f, o), optional per-gate LN and LN(c)."""
    n = cell.units
    w = {v.path.split("/")[-1]: np.asarray(v.numpy(), np.float64) for v in cell.weights}
    b, t = x.shape[:2]
    h, c = np.zeros((b, n)), np.zeros((b, n))
    hs = []
    for step in range(t):
        gates = {}
        for k, y in enumerate("igfo"):
            cols = slice(k * n, (k + 1) * n)
            pre = x[:, step] @ w["kernel"][:, cols] + h @ w["recurrent_kernel"][:, cols]
            if "bias" in w:
                pre = pre + w["bias"][cols]
            if cell.use_layer_norm:
                pre = _ln(pre, w["gate_gamma"][cols], w["gate_beta"][cols])
            gates[y] = pre
        c = _sigmoid(gates["f"] + forget_bias) * c + _sigmoid(gates["i"]) * np.tanh(gates["g"])
        c_out = _ln(c, w["cell_gamma"], w["cell_beta"]) if cell.use_layer_norm else c
        h = _sigmoid(gates["o"]) * np.tanh(c_out)
        hs.append(h)
    return np.stack(hs, 1), h, c


def _randomise(layer, rng):
    for v in layer.weights:
        if v.trainable:
            v.assign(rng.normal(0.0, 0.5, v.shape).astype("float32") + (1.0 if "gamma" in v.path else 0.0))


@pytest.mark.parametrize("cls", [BasicLSTMCell, LayerNormLSTMCell])
def test_matches_numpy_reference(cls):
    rng = np.random.default_rng(1)
    cell = cls(4, forget_bias=0.7)
    rnn = RNN(cell, return_sequences=True, return_state=True)
    x = rng.normal(size=(2, 5, 3)).astype("float32")
    rnn(x)
    _randomise(cell, rng)
    seq, h, c = (np.asarray(t) for t in rnn(x))
    ref_seq, ref_h, ref_c = _reference(cell, x.astype(np.float64), 0.7)
    np.testing.assert_allclose(seq, ref_seq, atol=2e-5)
    np.testing.assert_allclose(h, ref_h, atol=2e-5)
    np.testing.assert_allclose(c, ref_c, atol=2e-5)


def _shapes(cell):
    return {v.path.split("/")[-1]: tuple(v.shape) for v in cell.trainable_weights}


@pytest.mark.parametrize("cls", [BasicLSTMCell, LayerNormLSTMCell])
def test_weights_by_name_and_count(cls):
    n, n_x = 6, 5
    cell = cls(n)
    RNN(cell)(np.zeros((1, 2, n_x), "float32"))
    shapes = _shapes(cell)
    if cls is BasicLSTMCell:  # 4N(N_x + N) + 4N (docs/param_counts.md)
        assert shapes == {"kernel": (n_x, 4 * n), "recurrent_kernel": (n, 4 * n), "bias": (4 * n,)}
        expected = 4 * n * (n_x + n) + 4 * n
    else:  # 4N(N_x + N) + 10N: no gate bias, per-gate gain/shift 8N, norm on c 2N
        assert shapes == {
            "kernel": (n_x, 4 * n),
            "recurrent_kernel": (n, 4 * n),
            "gate_gamma": (4 * n,),
            "gate_beta": (4 * n,),
            "cell_gamma": (n,),
            "cell_beta": (n,),
        }
        expected = 4 * n * (n_x + n) + 10 * n
    assert sum(math.prod(s) for s in shapes.values()) == expected


@pytest.mark.parametrize("cls", [BasicLSTMCell, LayerNormLSTMCell])
def test_init_follows_the_authors_glorot_w_x_orthogonal_w_h(cls):
    """W_x Glorot-uniform over the whole [N_x, 4N] matrix, W_h orthogonal per gate block, biases 0."""
    n, n_x = 16, 40
    cell = cls(n)
    RNN(cell)(np.zeros((1, 2, n_x), "float32"))
    w_x = cell.kernel.numpy()
    limit = math.sqrt(6.0 / (n_x + 4 * n))
    assert np.abs(w_x).max() <= limit
    assert abs(w_x.std() / (limit / math.sqrt(3.0)) - 1.0) < 0.1  # an orthogonal block would be ~1.3x
    w_h = cell.recurrent_kernel.numpy()
    for k in range(4):
        block = w_h[:, k * n : (k + 1) * n]
        np.testing.assert_allclose(block.T @ block, np.eye(n), atol=1e-5)
    assert not np.allclose(w_h[:, :n], w_h[:, n : 2 * n])
    for v in cell.trainable_weights:
        if "beta" in v.path or v.path.endswith("/bias"):
            assert not v.numpy().any(), v.path


def test_block_orthogonal_unequal_blocks_and_config():
    init = BlockOrthogonal([3, 5], seed=2)
    w = np.asarray(init((4, 8)))
    np.testing.assert_allclose(w[:, :3].T @ w[:, :3], np.eye(3), atol=1e-5)
    np.testing.assert_allclose(w[:, 3:] @ w[:, 3:].T, np.eye(4), atol=1e-5)  # wider than tall: rows
    again = BlockOrthogonal.from_config(init.get_config())
    np.testing.assert_allclose(np.asarray(again((4, 8))), w)
    with pytest.raises(ValueError, match=r"block_sizes \[3, 5\]"):
        init((4, 9))


def test_column_blocks_and_config():
    init = ColumnBlocks([3, 5], [BlockOrthogonal([3]), keras.initializers.Constant(0.25)])
    w = np.asarray(init((4, 8)))
    np.testing.assert_allclose(w[:, :3].T @ w[:, :3], np.eye(3), atol=1e-5)
    np.testing.assert_array_equal(w[:, 3:], 0.25)
    again = ColumnBlocks.from_config(init.get_config())
    np.testing.assert_array_equal(np.asarray(again((4, 8)))[:, 3:], 0.25)
    with pytest.raises(ValueError, match=r"widths \[3, 5\] \(sum 8\)"):
        init((4, 9))
    with pytest.raises(ValueError, match="2 widths"):
        ColumnBlocks([3, 5], ["zeros"])


def test_recurrent_dropout_and_units_are_checked():
    with pytest.raises(ValueError, match="LayerNormLSTMCell: recurrent_dropout=1.5 is a drop rate"):
        LayerNormLSTMCell(4, recurrent_dropout=1.5)
    with pytest.raises(ValueError, match="BasicLSTMCell: units=0 must be a positive integer"):
        BasicLSTMCell(0)


class _LeakyCell(RecurrentCell):
    """A cell written on the base: h_t = 0.5 h_{t-1} + Dropout(x_t) with the input dropped per step."""

    state_keys = ("h",)

    def __init__(self, units, rate=0.0, **kwargs):
        super().__init__(units, **kwargs)
        self.rate = rate
        self.state_size = [units]

    def dropout_sites(self):
        return [(self.rate, self.units)]

    def step(self, inputs, states, training=None):
        drop = self.dropout(self.rate, training)
        new = inputs if drop is None else drop(inputs)
        return {"h": 0.5 * states[0] + new}


def test_a_cell_on_the_base_gets_zero_state_call_and_per_step_dropout():
    cell = _LeakyCell(32, rate=0.5, seed=4)
    rnn = RNN(cell, return_sequences=True)
    x = np.ones((2, 5, 32), "float32")
    np.testing.assert_allclose(np.asarray(rnn(x))[:, -1], 2.0 * (1 - 0.5**5), rtol=1e-6)  # zeros at start
    assert [tuple(s.shape) for s in cell.get_initial_state(3)] == [(3, 32)]
    h = np.asarray(rnn(x, training=True))
    increments = h[:, 1:] - 0.5 * h[:, :-1]  # the dropped input of each step
    np.testing.assert_allclose(np.unique(np.round(increments, 5)), [0.0, 2.0])
    assert not np.array_equal(increments[:, 0] == 0, increments[:, 1] == 0)  # a fresh mask per step
    assert cell.get_config()["units"] == 32 and cell.get_config()["seed"] == 4


def test_docstring_examples_run():
    for module in (zoo.layers.rnn_base, zoo.layers.lstm):
        result = doctest.testmod(module, extraglobs={"np": np, "keras": keras, "ops": ops})
        assert result.attempted > 0 and result.failed == 0, module.__name__


def _mask_probe(cls, rate, rnn_cls=RNN):
    """A cell with c_t = mask_t * tanh(1) / (1 - rate): h_t is zero (LN: negative) exactly where tanh(g)
    was dropped."""
    cell = cls(64, recurrent_dropout=rate, forget_bias=-100.0, use_bias=True, seed=3)
    rnn = rnn_cls(cell, return_sequences=True)
    x = np.zeros((2, 6, 1), "float32")
    rnn(x)
    cell.kernel.assign(np.zeros_like(cell.kernel.numpy()))
    cell.recurrent_kernel.assign(np.zeros_like(cell.recurrent_kernel.numpy()))
    bias = np.zeros(4 * 64, "float32")
    bias[:64] = 100.0  # i: sigmoid -> 1
    bias[64:128] = 1.0  # g: tanh(1)
    bias[192:] = 100.0  # o: sigmoid -> 1
    cell.bias.assign(bias)
    if cell.use_layer_norm:  # keep the bias pattern through the gate norm: gamma 0, beta = bias
        cell.gate_gamma.assign(np.zeros(4 * 64, "float32"))
        cell.gate_beta.assign(bias)
    return rnn, x


_ON_TF = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="plain keras.layers.RNN draws per-step masks inside the loop: TensorFlow only (zoo.layers.RNN)",
)


@pytest.mark.parametrize("rnn_cls", [RNN, pytest.param(keras.layers.RNN, marks=_ON_TF)])
@pytest.mark.parametrize("cls", [BasicLSTMCell, LayerNormLSTMCell])
def test_recurrent_dropout_only_in_training_fresh_mask_each_step(cls, rnn_cls, compiled_training_call):
    rnn, x = _mask_probe(cls, 0.5, rnn_cls)
    inference = np.asarray(rnn(x, training=False))
    # no dropout at inference: the same value everywhere (LN of a constant c is 0)
    np.testing.assert_allclose(inference, np.tanh(np.tanh(1.0)) if cls is BasicLSTMCell else 0.0, atol=1e-5)
    jitted = compiled_training_call(rnn)
    for out in (np.asarray(rnn(x, training=True)), jitted(x)):
        dropped = out < 0.0 if cls is LayerNormLSTMCell else out == 0.0  # LN(c) < 0 where c was dropped
        assert 0.3 < dropped.mean() < 0.7
        # a fresh mask at every step: masks of different steps differ
        assert all(not np.array_equal(dropped[:, 0], dropped[:, t]) for t in range(1, 6))
        if cls is BasicLSTMCell:  # kept values are scaled by 1 / (1 - rate)
            np.testing.assert_allclose(out[~dropped], np.tanh(np.tanh(1.0) / 0.5), rtol=1e-5)


@pytest.mark.parametrize("cls", [BasicLSTMCell, LayerNormLSTMCell])
def test_keras_round_trip(cls, tmp_path):
    inp = keras.Input((None, 3))
    out = RNN(cls(5, recurrent_dropout=0.1, forget_bias=0.5), return_sequences=True)(inp)
    model = keras.Model(inp, out)
    _randomise(model.layers[1].cell, np.random.default_rng(0))
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(1).normal(size=(2, 4, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(loaded(x)))
    assert loaded.layers[1].cell.get_config() == model.layers[1].cell.get_config()


def _delayed_copy_data(n=64, t=8, vocab=4, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, size=(n, t))
    x = np.eye(vocab, dtype="float32")[ids]
    y = np.roll(ids, 1, axis=1)
    y[:, 0] = 0
    return x, y


@pytest.mark.parametrize("cls", [BasicLSTMCell, LayerNormLSTMCell])
def test_trains_under_xla(cls):
    x, y = _delayed_copy_data()
    inp = keras.Input((8, 4))
    h = RNN(cls(16, recurrent_dropout=0.1), return_sequences=True)(inp)
    model = keras.Model(inp, keras.layers.Dense(4)(h))
    model.compile(
        optimizer=keras.optimizers.Adam(0.02),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    history = model.fit(x, y, batch_size=32, epochs=15, verbose=0).history["loss"]
    assert history[-1] < 0.6 * history[0], history
