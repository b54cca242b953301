"""The input projection hoisted out of the recurrence (issue 12): ``zoo.layers.RNN`` computes
``project_inputs`` for the whole window before the loop and the loop runs ``step_projected``; outputs,
states and gradients equal the step-by-step form (the cell called on raw inputs, one step at a time) to
1e-5, in inference and in training with the same dropout masks, with masking and ``go_backwards``."""

import keras
import numpy as np
import pytest
from keras import ops

from zoo.layers import RNN, BasicLSTMCell, HyperLSTMCell, HyperRNNCell, LayerNormLSTMCell, RecurrentCell

B, T, NX, N = 3, 4, 5, 8
CELLS = {
    "lstm": lambda: BasicLSTMCell(N, recurrent_dropout=0.4, seed=3),
    "ln_lstm": lambda: LayerNormLSTMCell(N, recurrent_dropout=0.4, seed=3),
    "hyper_lstm": lambda: HyperLSTMCell(
        N, 6, 3, use_layer_norm=False, recurrent_dropout=0.4, hyper_recurrent_dropout=0.3, seed=3
    ),
    "ln_hyper_lstm": lambda: HyperLSTMCell(
        N, 6, 3, use_layer_norm=True, recurrent_dropout=0.4, hyper_recurrent_dropout=0.3, seed=3
    ),
    "hyper_rnn": lambda: HyperRNNCell(N, 6, 3, seed=3),
}
DROPOUT_CELLS = [k for k in CELLS if k != "hyper_rnn"]


def _randomise(cell, seed=0):
    rng = np.random.default_rng(seed)
    for v in cell.trainable_weights:
        v.assign(rng.normal(0.0, 0.4, v.shape).astype("float32") + (1.0 if "gamma" in v.path else 0.0))


class _StepByStep(keras.layers.Layer):
    """The reference: the cell called on the raw input of each step in a Python loop (its ``call`` runs
    ``step``, which projects that one step), with the dropout noise drawn before the loop from the cell's
    generator and appended to each step's input, as ``zoo.layers.RNN`` hands it over. Returns
    ``[outputs [B, T, N], *final states]``."""

    def __init__(self, cell, **kwargs):
        super().__init__(**kwargs)
        self.cell = cell

    def build(self, input_shape):
        self.cell.build((None, input_shape[-1]))

    def call(self, x, training=None):
        cell = self.cell
        states = cell.get_initial_state(ops.shape(x)[0])
        width = cell.dropout_noise_width(training)
        if width:
            noise = keras.random.uniform((ops.shape(x)[0], T, width), dtype=x.dtype, seed=cell.seed_generator)
            cell._noise_split = int(x.shape[-1])
        outputs = []
        try:
            for t in range(T):
                inp = x[:, t] if not width else ops.concatenate([x[:, t], noise[:, t]], axis=-1)
                h, states = cell(inp, states, training=training)
                outputs.append(h)
        finally:
            cell._noise_split = None
        return [ops.stack(outputs, axis=1), *states]


def _pair(key):
    """Two models with identical weights and dropout generators: the hoisted ``zoo.layers.RNN`` one and the
    step-by-step reference."""
    models = []
    for layer_fn in (lambda c: RNN(c, return_sequences=True, return_state=True), _StepByStep):
        inp = keras.Input((T, NX))
        cell = CELLS[key]()
        models.append(keras.Model(inp, layer_fn(cell)(inp)))
        _randomise(cell)
    return models


def _close(a, b):
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-5)


def _x(seed=1):
    return np.random.default_rng(seed).normal(size=(B, T, NX)).astype("float32")


@pytest.mark.parametrize("key", list(CELLS))
def test_hoisted_equals_step_by_step_in_inference(key):
    hoisted, reference = _pair(key)
    _close(hoisted(_x(), training=False), reference(_x(), training=False))


@pytest.mark.parametrize("key", DROPOUT_CELLS)
def test_hoisted_equals_step_by_step_in_training_with_the_same_masks(key):
    hoisted, reference = _pair(key)
    out = hoisted(_x(), training=True)
    _close(out, reference(_x(), training=True))
    assert not np.allclose(np.asarray(out[0]), np.asarray(hoisted(_x(), training=False)[0]), atol=1e-3)


@pytest.mark.parametrize("key", list(CELLS))
def test_gradients_equal_step_by_step(key):
    """One SGD step (learning rate 1, so the update is the gradient) in training mode gives the same
    weights; dropout masks drawn by both from identical generators."""
    y = np.random.default_rng(2).normal(size=(B, T, N)).astype("float32")
    updated = []
    for model in _pair(key):
        seq_model = keras.Model(model.input, model.output[0])
        seq_model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
        before = [np.array(v) for v in seq_model.trainable_weights]
        seq_model.train_on_batch(_x(), y)
        after = [np.array(v) for v in seq_model.trainable_weights]
        assert all(np.abs(a - b).max() > 1e-6 for a, b in zip(after, before, strict=True) if a.ndim == 2)
        updated.append(after)
    _close(*updated)


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("key", ["lstm", "ln_hyper_lstm"])
def test_mask_and_go_backwards_as_in_keras_rnn(key, go_backwards):
    """``keras.layers.RNN`` runs the cell on raw inputs step by step; masked steps keep the state."""
    cell = CELLS[key]()
    kwargs = {"return_sequences": True, "return_state": True, "go_backwards": go_backwards}
    hoisted, plain = RNN(cell, **kwargs), keras.layers.RNN(cell, **kwargs)
    hoisted(_x())
    _randomise(cell)
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 1, 0]], bool)
    out = hoisted(_x(), mask=mask)
    _close(out, plain(_x(), mask=mask))
    unmasked = hoisted(_x())
    assert not np.allclose(np.asarray(out[1])[1], np.asarray(unmasked[1])[1])  # the mask mattered


def test_rnn_projects_the_whole_window_once(monkeypatch):
    """Inside ``zoo.layers.RNN`` the projection sees ``[B, T, N_x]`` (one product), never a single step."""
    cell = CELLS["ln_hyper_lstm"]()
    rnn = RNN(cell, return_sequences=True)
    rnn(_x())
    seen = []
    project = cell.project_inputs
    monkeypatch.setattr(cell, "project_inputs", lambda x: seen.append(tuple(x.shape)) or project(x))
    rnn(_x(), training=True)
    assert seen == [(B, T, NX)]
    seen.clear()
    cell(_x()[:, 0], cell.get_initial_state(B))  # called directly: the raw step projects its own input
    assert seen == [(B, NX)]


def test_direct_step_equals_projected_step():
    cell = CELLS["ln_lstm"]()
    cell.build((None, NX))
    _randomise(cell)
    states = [ops.ones((B, N)) * 0.3, ops.ones((B, N)) * -0.2]
    direct = cell.step(_x()[:, 0], states)
    projected = cell.step_projected(cell.project_inputs(_x()[:, 0]), states)
    assert direct.keys() == projected.keys() == {"h", "c", "tanh_c"}
    _close(direct.values(), projected.values())


def test_a_cell_without_step_says_what_to_implement():
    class Empty(RecurrentCell):
        state_size = [2]

    with pytest.raises(NotImplementedError, match=r"Empty must implement step\(\) or project_inputs\(\)"):
        Empty(2).step(np.zeros((1, 2), "float32"), [np.zeros((1, 2), "float32")])
