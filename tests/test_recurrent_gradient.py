"""The recurrent weight's gradient formed after the loop (issue 12): in training, ``zoo.layers.RNN`` holds
``recurrent_kernel`` constant inside the loop and forms its gradient as one ``H_prev^T G`` product after it
(``zoo.layers.recurrent_gradient``). Every gradient (that weight, every other weight, the initial states)
equals the step-by-step loop of ``keras.layers.RNN`` to 1e-5; the path is taken exactly where it applies.
Backend-neutral: CI runs this file under JAX too."""

import keras
import numpy as np
import pytest
from keras import ops

import zoo.layers.rnn_base as rnn_base
from zoo.layers import RNN, BasicLSTMCell, HyperLSTMCell, HyperRNNCell, LayerNormLSTMCell, RecurrentCell
from zoo.layers.recurrent_gradient import constant_kernel_matmul

B, T, NX, N = 3, 5, 4, 6
CELLS = {
    "lstm": lambda: BasicLSTMCell(N, seed=1),  # probe width 0: the gradient is read off the projection
    "ln_lstm": lambda: LayerNormLSTMCell(N, seed=1),
    "ln_hyper_lstm": lambda: HyperLSTMCell(N, 5, 3, use_layer_norm=True, seed=1),  # probe on 4N of 4N + 4H
    "hyper_rnn": lambda: HyperRNNCell(N, 5, 3, seed=1),
}
if keras.backend.backend() == "jax":  # keep the JAX pass short: one cell without a probe, one with
    CELLS = {k: CELLS[k] for k in ("lstm", "ln_hyper_lstm")}


def _model(key, wrapper):
    """``x -> RNN -> [last h, every final state]`` with the initial state computed from a second input by a
    Dense layer, so that the gradient reaching the initial state shows in that layer's weights."""
    cell = CELLS[key]()
    x, s = keras.Input((T, NX)), keras.Input((3,))
    init = [keras.layers.Dense(size, name=f"init{i}")(s) for i, size in enumerate(cell.state_size)]
    out = wrapper(cell, return_state=True)(x, initial_state=init)
    model = keras.Model([x, s], ops.concatenate(list(out), axis=-1))
    rng = np.random.default_rng(0)
    for v in model.trainable_weights:
        v.assign(rng.normal(0.0, 0.4, v.shape).astype("float32") + (1.0 if "gamma" in v.path else 0.0))
    return model


def _data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(B, T, NX)).astype("float32")
    s = rng.normal(size=(B, 3)).astype("float32")
    return [x, s]


@pytest.mark.parametrize("key", list(CELLS))
def test_gradients_equal_the_step_by_step_loop(key):
    """One SGD step at learning rate 1 (the update is the gradient) on a loss of the last output and every
    final state: identical for ``zoo.layers.RNN`` (hoisted) and ``keras.layers.RNN`` (step by step)."""
    data = _data()
    updates = []
    for wrapper in (RNN, keras.layers.RNN):
        model = _model(key, wrapper)
        y = np.random.default_rng(2).normal(size=(B, model.output.shape[-1])).astype("float32")
        model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
        before = [np.array(v) for v in model.trainable_weights]
        model.train_on_batch(data, y)
        updates.append([np.array(v) - b for v, b in zip(model.trainable_weights, before, strict=True)])
    names = [v.path for v in model.trainable_weights]
    for name, ours, ref in zip(names, *updates, strict=True):
        assert np.abs(ref).max() > 1e-4, f"{name} got no gradient"  # every weight is exercised
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5, err_msg=name)


def test_the_hoisted_path_runs_in_training_without_mask_only(monkeypatch):
    calls = []
    hoisted = rnn_base.hoisted_weight_recurrence
    monkeypatch.setattr(
        rnn_base, "hoisted_weight_recurrence", lambda *a, **k: calls.append(1) or hoisted(*a, **k)
    )
    rnn = RNN(BasicLSTMCell(N), return_sequences=True)
    x = _data()[0]
    rnn(x, training=True)
    assert len(calls) == 1
    rnn(x, training=False)  # inference: no gradient to form
    rnn(x, training=True, mask=np.ones((B, T), bool))  # masks keep Keras' loop
    RNN(BasicLSTMCell(N), go_backwards=True)(x, training=True)
    frozen = BasicLSTMCell(N)
    frozen.trainable = False
    RNN(frozen)(x, training=True)
    assert len(calls) == 1


def test_a_cell_that_bypasses_recurrent_product_is_told_so():
    class Bypass(BasicLSTMCell):
        def step_projected(self, projected, states, training=None):
            h = ops.tanh(projected[:, :N] + ops.matmul(states[0], self.recurrent_kernel)[:, :N])
            return {"h": h, "c": states[1]}

    with pytest.raises(ValueError, match=r"Bypass has a recurrent_kernel but its step did not compute"):
        RNN(Bypass(N))(_data()[0], training=True)


def test_constant_kernel_matmul_uses_the_given_transpose():
    """The value is ``h @ kernel`` and the gradient for ``h`` is ``g @ kernel_t``: with the true transpose
    it is the matmul's gradient; with another matrix the gradient follows that matrix (it is used)."""
    rng = np.random.default_rng(3)
    h, kernel, other = (
        ops.convert_to_tensor(rng.normal(size=s).astype("float32")) for s in [(2, 3), (3, 4), (4, 3)]
    )
    upstream = rng.normal(size=(2, 4)).astype("float32")

    def grad_of(kernel_t):
        if keras.backend.backend() == "jax":
            import jax

            value, back = jax.vjp(lambda a: constant_kernel_matmul(a, kernel, kernel_t), h)
            return value, back(upstream)[0]
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(h)
            value = constant_kernel_matmul(h, kernel, kernel_t)
        return value, tape.gradient(value, h, output_gradients=upstream)

    value, grad = grad_of(ops.transpose(kernel))
    np.testing.assert_allclose(np.asarray(value), np.asarray(h) @ np.asarray(kernel), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(grad), upstream @ np.asarray(kernel).T, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(grad_of(other)[1]), upstream @ np.asarray(other), rtol=1e-5)


def test_recurrent_probe_width_defaults_to_every_column():
    class Plain(RecurrentCell):
        def build(self, input_shape):
            self.recurrent_kernel = self.add_weight(shape=(N, 7), name="recurrent_kernel")

    cell = Plain(N)
    cell.build((None, NX))
    assert cell.recurrent_probe_width() == 7
    assert BasicLSTMCell(N).recurrent_probe_width() == 0
    assert HyperLSTMCell(N, 5, 3).recurrent_probe_width() == 4 * N
    assert HyperRNNCell(N, 5, 3).recurrent_probe_width() == N


def test_a_split_other_than_the_probe_width_is_refused():
    class Wider(HyperLSTMCell):
        def recurrent_probe_width(self):
            return 4 * N + 1  # the step splits the product at 4N

    with pytest.raises(ValueError, match=r"recurrent_product\(split=24\) but the probe covers the first 25"):
        RNN(Wider(N, 5, 3))(_data()[0], training=True)


def test_a_stateful_layer_trains_eagerly_as_keras_rnn():
    """A stateful layer's states are variables: called eagerly in training, the hoisted loop (whose
    gradient tape needs tensors) gives Keras' outputs at two consecutive calls (the state carried over)."""
    x = _data()[0]
    outs = []
    for wrapper in (RNN, keras.layers.RNN):
        keras.utils.set_random_seed(0)
        layer = wrapper(BasicLSTMCell(N), stateful=True, return_sequences=True)
        layer.build((B, T, NX))
        outs.append([np.asarray(layer(x, training=True)) for _ in range(2)])
    assert np.abs(outs[0][1] - outs[0][0]).max() > 1e-4  # the second call starts from the carried state
    for ours, ref in zip(*outs, strict=True):
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)
