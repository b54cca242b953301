"""GNMT (zoo/models/nmt.py) and its attention (zoo/layers/attention.py): the structure of Wu et al. 2016 §3
by construction, the inference API against the training call, XLA training, saving, parameter counts.

Backend-neutral: runs under TensorFlow and under ``KERAS_BACKEND=jax``."""

import doctest

import keras
import numpy as np
import pytest
from keras import ops

import zoo
import zoo.layers.attention
import zoo.models.nmt
from zoo.layers.attention import NormalizedBahdanauAttention, masked_softmax
from zoo.models.nmt import GNMT, GNMTEncoder, param_count
from zoo.registry import ConfigValueError

BACKEND = keras.backend.backend()
TINY = {
    "vocab_size": 13,
    "units": 8,
    "encoder_layers": 3,
    "decoder_layers": 3,
    "embedding_dim": 6,
    "attention_units": 5,
    "hyper_units": 4,
    "embedding_size": 3,
    "dropout": 0.0,
}
CELLS = {
    "lstm": {"cell": "lstm", "use_layer_norm": False},
    "ln_lstm": {"cell": "lstm", "use_layer_norm": True},
    "hyper_lstm": {"cell": "hyper_lstm", "use_layer_norm": False},
    "ln_hyper_lstm": {"cell": "hyper_lstm", "use_layer_norm": True},
}
# source ids (PAD=0 at the end, EOS=3 last) and BOS-prefixed targets of different lengths
SOURCE = np.array([[5, 6, 7, 8, 3, 0, 0], [9, 3, 0, 0, 0, 0, 0], [4, 10, 11, 12, 5, 6, 3]], "int32")
TARGET_IN = np.array([[2, 9, 10, 11, 0], [2, 12, 0, 0, 0], [2, 4, 5, 6, 7]], "int32")


def np_(x):
    return np.asarray(ops.convert_to_numpy(x))


def tiny(**overrides):
    keras.utils.set_random_seed(0)
    return GNMT({**TINY, **overrides})


def trainable_count(model):
    return int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))


def zero_weights(layer):
    layer.set_weights([np.zeros(w.shape, "float32") for w in layer.get_weights()])


# ------------------------------------------------------------------------------------------ attention
def test_attention_is_a_masked_normalised_additive_score():
    rng = np.random.default_rng(0)
    attention = NormalizedBahdanauAttention(5)
    query = rng.normal(size=(3, 4)).astype("float32")
    memory = rng.normal(size=(3, 6, 7)).astype("float32")
    mask = np.arange(6)[None, :] < np.array([[6], [2], [1]])
    context, weights = attention(query, None, memory, mask)
    context, weights = np_(context), np_(weights)
    # Eq. 4 with weight normalisation: g * v / ||v|| . tanh(W_k x_t + W_q y + b)
    w_q, w_k, b, v, g = (np_(w) for w in attention.weights)
    assert float(g) == pytest.approx(np.sqrt(1 / 5))
    hidden = np.tanh(memory @ w_k + (query @ w_q)[:, None, :] + b)
    scores = np.where(mask, hidden @ (g * v / np.linalg.norm(v)), -np.inf)
    want = np.exp(scores - scores.max(-1, keepdims=True))
    want /= want.sum(-1, keepdims=True)
    np.testing.assert_allclose(weights, want, atol=1e-6)
    assert np.all(weights[~mask] == 0.0)  # exactly 0 at padding
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(context, np.einsum("bs,bsm->bm", want, memory), atol=1e-5)
    # padded memory (and its keys) can be anything: same context and weights
    noisy = np.where(mask[..., None], memory, 100.0 * rng.normal(size=memory.shape)).astype("float32")
    context2, weights2 = attention(query, attention.keys(noisy), noisy, mask)
    np.testing.assert_array_equal(np_(weights2), weights)
    np.testing.assert_allclose(np_(context2), context, atol=1e-6)


def test_masked_softmax_of_an_empty_row_is_zero():
    weights = np_(
        masked_softmax(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[True, False], [False, False]]))
    )
    np.testing.assert_array_equal(weights, [[1.0, 0.0], [0.0, 0.0]])


def test_docstring_examples():
    for module in (zoo.layers.attention, zoo.models.nmt):
        result = doctest.testmod(module, extraglobs={"np": np, "keras": keras})
        assert result.failed == 0, module.__name__


# ------------------------------------------------------------------------------------------ encoder
def test_first_encoder_layer_is_bidirectional_within_each_sentence():
    model = tiny(encoder_layers=1)  # memory = [forward; backward] of layer 1
    n = TINY["units"]
    memory = np_(model.encode(SOURCE)["memory"])
    assert memory.shape == (3, 7, 2 * n)
    # the first position's backward half depends on the last valid token, its forward half does not
    changed = SOURCE.copy()
    changed[0, 3] = 12  # last token before EOS of sentence 0
    other = np_(model.encode(changed)["memory"])
    np.testing.assert_array_equal(other[0, :3, :n], memory[0, :3, :n])
    assert np.abs(other[0, 0, n:] - memory[0, 0, n:]).max() > 1e-4
    np.testing.assert_array_equal(other[1:], memory[1:])
    # the backward direction of a padded sentence equals that of the sentence alone (padding never reaches it)
    alone = np_(model.encode(SOURCE[1:2, :2])["memory"])
    np.testing.assert_allclose(memory[1, :2], alone[0], atol=1e-6)
    more_padding = np_(model.encode(np.pad(SOURCE, ((0, 0), (0, 4))))["memory"])
    valid = SOURCE != 0
    np.testing.assert_allclose(more_padding[:, :7][valid], memory[valid], atol=1e-6)


def _encoder_prefix(encoder, layers):
    """A fresh encoder of ``layers`` layers holding the first layers' weights of ``encoder``."""
    shorter = GNMTEncoder({**encoder.config, "encoder_layers": layers})
    shorter.build((None, None))
    for name in ("source_embedding", "forward_rnn", "backward_rnn"):
        getattr(shorter, name).set_weights(getattr(encoder, name).get_weights())
    for mine, theirs in zip(shorter.rnns, encoder.rnns, strict=False):
        mine.set_weights(theirs.get_weights())
    return shorter


def test_residual_connections_start_at_the_third_layer():
    model = tiny(encoder_layers=3, decoder_layers=3)
    encoder, decoder = model.encoder, model.decoder
    # encoder layer 3 with all weights 0 outputs 0: the residual makes it the identity
    zero_weights(encoder.rnns[1])
    two_layers = np_(_encoder_prefix(encoder, 2)(SOURCE)["memory"])
    np.testing.assert_allclose(np_(encoder(SOURCE)["memory"]), two_layers, atol=1e-6)
    # encoder layer 2 is not residual: with weights 0 its output (the memory of 2 layers) is 0
    zero_weights(encoder.rnns[0])
    np.testing.assert_array_equal(np_(_encoder_prefix(encoder, 2)(SOURCE)["memory"]), 0.0)
    # decoder: a zeroed layer 3 is the identity, so the logits are those of layer 2's output
    logits = np_(model({"source": SOURCE, "target_in": TARGET_IN})["logits"])
    zero_weights(decoder.rnns[1])
    logits_identity = np_(model({"source": SOURCE, "target_in": TARGET_IN})["logits"])
    zero_weights(decoder.rnns[0])  # layer 2 is not residual: now the top output is 0
    logits_zero = np_(model({"source": SOURCE, "target_in": TARGET_IN})["logits"])
    bias = np_(decoder.softmax.bias)
    np.testing.assert_allclose(logits_zero, np.broadcast_to(bias, logits_zero.shape), atol=1e-6)
    assert (
        np.abs(logits_identity - logits_zero).max() > 1e-4 and np.abs(logits - logits_identity).max() > 1e-4
    )


def test_residual_start_below_three_is_rejected():
    with pytest.raises(ConfigValueError, match="residual_start=2 must be >= 3"):
        zoo.get("gnmt_lstm_small", **{**TINY, "residual_start": 2})
    with pytest.raises(ConfigValueError, match="cell='gru'; valid: lstm, hyper_lstm"):
        zoo.get("gnmt_lstm_small", **{**TINY, "cell": "gru"})


# ------------------------------------------------------------------------------------------ decoder
@pytest.mark.parametrize("cell", ["lstm", "ln_hyper_lstm"])
def test_training_call_equals_a_loop_of_decode_steps(cell):
    model = tiny(**CELLS[cell])
    out = model({"source": SOURCE, "target_in": TARGET_IN}, training=False)
    encoded = model.encode(SOURCE)
    assert np_(encoded["mask"]).dtype == bool and np_(encoded["keys"]).shape == (
        3,
        7,
        TINY["attention_units"],
    )
    state = model.initial_decoder_state(encoded)
    assert all(np_(s).shape[0] == 3 and not np_(s).any() for s in state)
    logits, attention = [], []
    for i in range(TARGET_IN.shape[1]):
        step_logits, state, weights = model.decode_step(TARGET_IN[:, i], state, encoded)
        logits.append(np_(step_logits))
        attention.append(np_(weights))
    np.testing.assert_allclose(np.stack(logits, 1), np_(out["logits"]), atol=1e-5)
    np.testing.assert_allclose(np.stack(attention, 1), np_(out["attention"]), atol=1e-5)
    # the first step's query is zero and the attention ignores padding
    assert np.all(np_(out["attention"])[~np.broadcast_to((SOURCE != 0)[:, None, :], (3, 5, 7))] == 0.0)


def test_attention_query_is_the_previous_bottom_output():
    """Step i's attention reads target tokens before i (through the bottom output of step i - 1) only."""
    model = tiny()
    attention = model.decoder.attention  # large weights: the small initial outputs then move the scores
    attention.query_kernel.assign(300.0 * attention.query_kernel)
    attention.memory_kernel.assign(30.0 * attention.memory_kernel)
    attention.score_scale.assign(20.0)
    base = np_(model({"source": SOURCE, "target_in": TARGET_IN})["attention"])
    changed = TARGET_IN.copy()
    changed[:, 2] = 7
    other = np_(model({"source": SOURCE, "target_in": changed})["attention"])
    np.testing.assert_array_equal(other[:, :3], base[:, :3])  # steps 0, 1, 2 have not read token 2 yet
    assert np.abs(other[:, 3] - base[:, 3]).max() > 1e-5


def _compiled_decode(model):
    def run(source, target_in):
        encoded = model.encode(source)
        state = model.initial_decoder_state(encoded)
        logits = []
        for i in range(TARGET_IN.shape[1]):
            step_logits, state, _ = model.decode_step(target_in[:, i], state, encoded)
            logits.append(step_logits)
        return ops.stack(logits, axis=1)

    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(run, jit_compile=True)
    import jax

    return jax.jit(run)


def test_inference_api_compiles_with_xla():
    model = tiny(**CELLS["ln_hyper_lstm"], encoder_layers=1, decoder_layers=2)
    want = np_(model({"source": SOURCE, "target_in": TARGET_IN})["logits"])
    got = np_(_compiled_decode(model)(ops.convert_to_tensor(SOURCE), ops.convert_to_tensor(TARGET_IN)))
    np.testing.assert_allclose(got, want, atol=1e-5)


# ------------------------------------------------------------------------------------------ training
def _copy_task(rng, batch=32, length=5, vocab=13):
    tokens = rng.integers(4, vocab, size=(batch, length)).astype("int32")
    source = np.concatenate([tokens, np.full((batch, 1), 3, "int32")], axis=1)
    target_in = np.concatenate([np.full((batch, 1), 2, "int32"), tokens], axis=1)
    return {"source": source, "target_in": target_in}, source  # target_out = tokens + EOS


def test_xla_training_with_dropout_lowers_the_loss():
    """``jit_compile=True`` training (XLA on TF and JAX) with dropout and the cells' recurrent dropout,
    whose per-step masks in the bottom decoder loop are drawn before the loop."""
    model = tiny(
        **CELLS["lstm"], encoder_layers=1, decoder_layers=2, units=16, dropout=0.1, recurrent_dropout=0.1
    )
    x, y = _copy_task(np.random.default_rng(0))
    out = model(x, training=True)
    assert np.abs(np_(out["logits"]) - np_(model(x)["logits"])).max() > 1e-4  # dropout is active
    model.compile(
        optimizer=keras.optimizers.Adam(2e-2, clipnorm=5.0),
        loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True), "attention": None},
        jit_compile=True,
    )
    losses = [float(model.train_on_batch(x, {"logits": y})) for _ in range(30)]
    assert np.isfinite(losses).all() and losses[-1] < 0.85 * losses[0], losses


def test_keras_save_and_load_round_trip(tmp_path):
    model = tiny(**CELLS["ln_hyper_lstm"])
    path = str(tmp_path / "gnmt.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, GNMT) and loaded.config == model.config
    inputs = {"source": SOURCE, "target_in": TARGET_IN}
    np.testing.assert_array_equal(np_(loaded(inputs)["logits"]), np_(model(inputs)["logits"]))
    encoded = loaded.encode(SOURCE)
    logits, _, _ = loaded.decode_step(TARGET_IN[:, 0], loaded.initial_decoder_state(encoded), encoded)
    np.testing.assert_allclose(np_(logits), np_(model(inputs)["logits"])[:, 0], atol=1e-5)


@pytest.mark.skipif(
    BACKEND != "tensorflow", reason="the trainer's checkpoints are tf.train.Checkpoint (TensorFlow)"
)
def test_tf_checkpoint_restores_every_weight(tmp_path):
    import tensorflow as tf

    model = tiny(**CELLS["ln_hyper_lstm"])
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    keras.utils.set_random_seed(1)
    restored = GNMT(dict(model.config))
    tf.train.Checkpoint(model=restored).restore(path).assert_existing_objects_matched()
    inputs = {"source": SOURCE, "target_in": TARGET_IN}
    np.testing.assert_array_equal(np_(restored(inputs)["logits"]), np_(model(inputs)["logits"]))


# ------------------------------------------------------------------------------------------ parameter counts
@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("encoder_layers", [1, 3])
def test_param_count_formula_equals_the_built_model(cell, encoder_layers):
    config = {**TINY, **CELLS[cell], "encoder_layers": encoder_layers, "units": 32, "embedding_dim": 24}
    config.update(attention_units=20, vocab_size=50, hyper_units=16, embedding_size=4)
    assert trainable_count(tiny(**config)) == param_count(config)


#: trainable parameters of the registered models: the small ones built, the paper-size ones by formula
#: (``docs/param_counts.md``; the formula equals the built model above).
SMALL_COUNTS = {
    "gnmt_lstm_small": 4_313_577,
    "gnmt_ln_lstm_small": 4_321_257,
    "gnmt_ln_hyper_lstm_small": 5_572_585,
}
WMT_COUNTS = {
    "gnmt_lstm_wmt": 280_859_905,
    "gnmt_ln_lstm_wmt": 280_964_353,
    "gnmt_ln_hyper_lstm_wmt": 312_247_553,
}


def test_small_models_parameter_counts():
    for name, count in SMALL_COUNTS.items():
        assert param_count(zoo.get_spec(name).default_config()) == count, name
    for name in ("gnmt_lstm_small", "gnmt_ln_hyper_lstm_small"):  # built (the formula is tested above)
        assert trainable_count(zoo.get(name)) == SMALL_COUNTS[name], name


def test_paper_size_models_parameter_counts_and_configs():
    for name, count in WMT_COUNTS.items():
        spec = zoo.get_spec(name)
        config = spec.default_config()
        assert (config["encoder_layers"], config["decoder_layers"], config["units"]) == (8, 8, 1024), name
        assert (config["vocab_size"], config["residual_start"], spec.task) == (32000, 3, "translation"), name
        assert param_count(config) == count, name
    config = zoo.get_spec("gnmt_ln_hyper_lstm_wmt").default_config()
    assert (config["cell"], config["use_layer_norm"], config["hyper_units"], config["embedding_size"]) == (
        "hyper_lstm",
        True,
        128,
        32,
    )
