"""Char-LM models of HyperNetworks Tables 3-4: exact parameter counts, the I/O contract, state carrying."""

import doctest
import math

import keras
import numpy as np
import pytest
from keras import ops

import zoo
import zoo.models.char_lm
from zoo.layers import BlockOrthogonal, HyperLSTMCell, LayerNormLSTMCell
from zoo.models.char_lm import build_char_lm, initial_state, recurrent_cells, trace, trainable_params

# docs/param_counts.md; the two rows whose printed count does not follow from the paper's description
# carry the count the description gives (printed: 5.06M and 18.78M).
EXPECTED = {
    "lstm_1000_ptb": 4_254_050,
    "lstm_1250_ptb": 6_567_550,
    "lstm_1000x2_ptb": 12_258_050,
    "ln_lstm_1000_ptb": 4_260_050,
    "hyper_lstm_1000_ptb": 4_911_874,
    "ln_hyper_lstm_1000_ptb": 4_923_154,
    "ln_hyper_lstm_1000_large_ptb": 5_085_682,
    "ln_hyper_lstm_1000x2_ptb": 14_407_714,
    "lstm_1800_enwik8": 14_812_405,
    "lstm_2000_enwik8": 18_058_205,
    "ln_lstm_1800_enwik8": 14_823_205,
    "hyper_lstm_1800_enwik8": 18_708_213,
    "ln_hyper_lstm_1800_enwik8": 18_728_773,
    "ln_hyper_lstm_2048_enwik8": 26_541_773,
}

TINY = {
    "vocab_size": 7,
    "units": 6,
    "num_layers": 2,
    "cell": "hyper_lstm",
    "use_layer_norm": True,
    "hyper_units": 4,
    "embedding_size": 2,
}


def test_registered_names_and_tasks():
    char_models = {n for n in zoo.list_models() if zoo.get_spec(n).task == "char_lm"}
    assert char_models == set(EXPECTED)


def test_exact_trainable_parameter_counts(monkeypatch):
    # Orthogonal init of 2000x2000 blocks dominates build time; counts only need shapes.
    monkeypatch.setattr(BlockOrthogonal, "__call__", lambda self, shape, dtype=None: ops.zeros(shape, dtype))
    for name, count in EXPECTED.items():
        model = zoo.get(name)
        assert trainable_params(model) == count, name
        spec = zoo.get_spec(name)
        assert {k: tuple(v.shape[1:]) for k, v in model.input.items()} == {
            k: tuple(s) for k, (s, _) in spec.input_spec.items()
        }, name
        keras.backend.clear_session()


def test_trainable_parameters_by_weight(monkeypatch):
    """ln_hyper_lstm_1000_ptb weight by weight, as docs/param_counts.md breaks it down."""
    monkeypatch.setattr(BlockOrthogonal, "__call__", lambda self, shape, dtype=None: ops.zeros(shape, dtype))
    model = zoo.get("ln_hyper_lstm_1000_ptb")
    sizes = {v.path: math.prod(v.shape) for v in model.trainable_weights}
    layer_norms = {
        f"rnn_0/cell_0/{name}": size
        for name, size in (
            ("gate_gamma", 4000),
            ("gate_beta", 4000),
            ("cell_gamma", 1000),
            ("cell_beta", 1000),
            ("hyper_gate_gamma", 512),
            ("hyper_gate_beta", 512),
            ("hyper_cell_gamma", 128),
            ("hyper_cell_beta", 128),
        )
    }
    assert sizes == {
        "rnn_0/cell_0/kernel": 50 * (4000 + 512),
        "rnn_0/cell_0/recurrent_kernel": 1000 * (4000 + 512),
        "rnn_0/cell_0/hyper_recurrent_kernel": 128 * 512,
        "rnn_0/cell_0/hyper_bias": 512,
        "rnn_0/cell_0/z_kernel": 128 * 32,
        "rnn_0/cell_0/z_bias": 32,
        "rnn_0/cell_0/z_b_kernel": 128 * 16,
        "rnn_0/cell_0/d_kernel": 8 * 4 * 1000,
        "rnn_0/cell_0/d_b_kernel": 4 * 4 * 1000,
        "rnn_0/cell_0/bias": 4000,
        **layer_norms,
        "logits/kernel": 1000 * 50,
        "logits/bias": 50,
    }
    assert sum(sizes.values()) == EXPECTED["ln_hyper_lstm_1000_ptb"]


def test_recipes_and_configs_follow_the_appendix():
    ptb = zoo.describe("hyper_lstm_1000_ptb")
    assert ptb["recipe"] | {"train_steps": 0} == {
        "dataset": "ptb_char",
        "batch_size": 128,
        "sequence_length": 100,
        "optimizer": "adam",
        "learning_rate": 1e-3,
        "clip_norm": 1.0,
        "train_steps": 0,
    }
    assert ptb["config"]["input_dropout"] == ptb["config"]["recurrent_dropout"] == pytest.approx(0.1)
    large = zoo.describe("ln_hyper_lstm_1000_large_ptb")["config"]
    assert large["embedding_size"] == 16 and large["output_dropout"] == pytest.approx(0.15)
    assert zoo.describe("ln_hyper_lstm_1000x2_ptb")["config"]["recurrent_dropout"] == pytest.approx(0.2)
    enwik = zoo.describe("ln_hyper_lstm_1800_enwik8")
    assert enwik["recipe"]["dataset"] == "enwik8" and enwik["recipe"]["sequence_length"] == 250
    assert enwik["config"]["input_dropout"] == enwik["config"]["output_dropout"] == 0.0
    assert enwik["config"]["recurrent_dropout"] == pytest.approx(0.1)
    big = zoo.describe("ln_hyper_lstm_2048_enwik8")
    assert big["recipe"]["sequence_length"] == 300
    assert big["config"]["hyper_recurrent_dropout"] == pytest.approx(0.15)


def test_config_errors_name_the_value_and_choices():
    with pytest.raises(ValueError, match="cell='gru'; valid: lstm, hyper_lstm"):
        build_char_lm({**TINY, "cell": "gru"})
    with pytest.raises(ValueError, match=r"input_dropout=1.0 is a drop rate"):
        zoo.get("lstm_1000_ptb", units=4, input_dropout=1.0)
    with pytest.raises(ValueError, match="unknown key"):
        build_char_lm({**TINY, "keep_prob": 0.9})


def _inputs(model, ids, states):
    return {"ids": ops.convert_to_tensor(ids), **{f"state_{k}": s for k, s in enumerate(states)}}


def test_io_contract_and_layer_order():
    model = build_char_lm(TINY)
    states = initial_state(model, 3)
    assert [tuple(s.shape) for s in states] == [(3, 6), (3, 6), (3, 4), (3, 4)] * 2
    assert all(not np.asarray(s).any() for s in states)
    ids = np.random.default_rng(0).integers(0, 7, size=(3, 5)).astype("int32")
    out = model(_inputs(model, ids, states))
    assert sorted(out) == ["logits"] + [f"state_{k}" for k in range(8)]
    assert tuple(out["logits"].shape) == (3, 5, 7)
    assert [type(c) for c in recurrent_cells(model)] == [HyperLSTMCell, HyperLSTMCell]


@pytest.mark.parametrize("cell,ln", [("hyper_lstm", True), ("lstm", True), ("lstm", False)])
def test_feeding_two_halves_with_carried_state_equals_the_whole(cell, ln):
    model = build_char_lm({**TINY, "cell": cell, "use_layer_norm": ln})
    ids = np.random.default_rng(1).integers(0, 7, size=(2, 8)).astype("int32")
    whole = model(_inputs(model, ids, initial_state(model, 2)))
    first = model(_inputs(model, ids[:, :3], initial_state(model, 2)))
    carried = [first[f"state_{k}"] for k in range(len(initial_state(model, 2)))]
    second = model(_inputs(model, ids[:, 3:], carried))
    joined = np.concatenate([np.asarray(first["logits"]), np.asarray(second["logits"])], axis=1)
    np.testing.assert_allclose(joined, np.asarray(whole["logits"]), atol=1e-5)
    for k in range(len(carried)):
        np.testing.assert_allclose(
            np.asarray(second[f"state_{k}"]), np.asarray(whole[f"state_{k}"]), atol=1e-5
        )
    if ln and cell == "lstm":
        assert isinstance(recurrent_cells(model)[0], LayerNormLSTMCell)


def test_trace_matches_the_model_and_exposes_figure_values():
    model = build_char_lm(TINY)
    ids = np.random.default_rng(2).integers(0, 7, size=(2, 4)).astype("int32")
    out = model(_inputs(model, ids, initial_state(model, 2)))
    tr = trace(model, ids)
    np.testing.assert_allclose(tr["logits"], np.asarray(out["logits"]), atol=1e-5)
    for k, s in enumerate(tr["states"]):
        np.testing.assert_allclose(np.asarray(s), np.asarray(out[f"state_{k}"]), atol=1e-5)
    layer = tr["layers"][0]
    assert layer["tanh_c"].shape == layer["c"].shape == (2, 4, 6)
    assert layer["hyper_h"].shape == (2, 4, 4)
    assert layer["d_h_f"].shape == (2, 4, 6)
    np.testing.assert_allclose(layer["d_x_i"], 0.1, rtol=1e-6)  # untrained: scaling vectors at 0.1
    # tanh_c is tanh(LN(c)) for the LN cell: per step and example, LN(c) has mean ~beta = 0
    np.testing.assert_allclose(np.arctanh(layer["tanh_c"]).mean(-1), 0.0, atol=1e-4)


def test_dropout_only_in_training():
    model = build_char_lm({**TINY, "input_dropout": 0.3, "output_dropout": 0.3, "recurrent_dropout": 0.3})
    ids = np.random.default_rng(3).integers(0, 7, size=(2, 6)).astype("int32")
    inputs = _inputs(model, ids, initial_state(model, 2))
    a, b = model(inputs, training=False)["logits"], model(inputs, training=False)["logits"]
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    c, d = model(inputs, training=True)["logits"], model(inputs, training=True)["logits"]
    assert not np.allclose(np.asarray(c), np.asarray(a)) and not np.allclose(np.asarray(c), np.asarray(d))


def test_keras_round_trip(tmp_path):
    model = build_char_lm({**TINY, "recurrent_dropout": 0.2}, name="tiny")
    rng = np.random.default_rng(4)
    for v in model.trainable_weights:
        v.assign(v.numpy() + rng.normal(0, 0.1, v.shape).astype("float32"))
    path = str(tmp_path / "lm.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    ids = rng.integers(0, 7, size=(2, 5)).astype("int32")
    inputs = _inputs(model, ids, initial_state(model, 2))
    want, got = model(inputs), loaded(inputs)
    for key in want:
        np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(want[key]))


def test_docstring_examples_run():
    result = doctest.testmod(zoo.models.char_lm, extraglobs={"np": np})
    assert result.attempted > 0 and result.failed == 0
