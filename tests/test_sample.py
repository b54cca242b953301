"""The sampler (trainers/sample.py) and the dynamics figures (zoo/viz/dynamics.py, HyperNetworks Fig. 4-5)."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from trainers import sample as sampler
from zoo.data.text import Vocabulary
from zoo.models.char_lm import trace
from zoo.tasks.char_lm import TASK
from zoo.viz import dynamics

CORPUS = "the quick brown fox jumps over the lazy dog. " * 30
NO_DROPOUT = {"input_dropout": 0.0, "output_dropout": 0.0, "recurrent_dropout": 0.0}
HYPER = {"units": 16, "hyper_units": 8, "embedding_size": 4, **NO_DROPOUT}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_model_dir(path, name, vocab, steps=0, **config):
    """A model_dir as the trainer leaves it: checkpoints (model + optimizer), run.json and vocab.json."""
    config = {"vocab_size": len(vocab), **config}
    model = zoo.get(name, **config)
    optimizer = keras.optimizers.Adam(1e-2)
    if steps:
        ids = vocab.encode_text(CORPUS)
        x = ids[: 4 * 31].reshape(4, 31)
        carry = TASK.initial_carry(model, 4)

        @tf.function
        def train_step(batch, carry):
            with tf.GradientTape() as tape:
                out = TASK.forward(model, batch, carry, training=True)
                loss = tf.reduce_mean(out.per_example_loss)
            optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
            return loss

        for _ in range(steps):
            train_step((x[:, :-1], x[:, 1:]), carry)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    tf.train.CheckpointManager(checkpoint, str(path), max_to_keep=3).save(checkpoint_number=max(steps, 1))
    with open(os.path.join(path, "run.json"), "w", encoding="utf-8") as f:
        json.dump({"model": name, "config": config}, f)
    vocab.save(os.path.join(path, "vocab.json"))
    return model


@pytest.fixture(scope="module")
def vocab():
    return Vocabulary.from_symbols(CORPUS)


@pytest.fixture(scope="module")
def hyper_dir(tmp_path_factory, vocab):
    path = tmp_path_factory.mktemp("ln_hyper")
    model = make_model_dir(path, "ln_hyper_lstm_1000_ptb", vocab, steps=4, **HYPER)
    return str(path), model


def test_restores_the_checkpoint_and_generates_reproducibly(hyper_dir, vocab):
    path, trained = hyper_dir
    model, restored_vocab, info = sampler.load_run(path)
    assert restored_vocab == vocab and info["model"] == "ln_hyper_lstm_1000_ptb"
    for a, b in zip(model.get_weights(), trained.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    fresh = zoo.get("ln_hyper_lstm_1000_ptb", vocab_size=len(vocab), **HYPER)
    assert not np.array_equal(
        fresh.get_layer("logits").get_weights()[0], model.get_layer("logits").get_weights()[0]
    )
    out = sampler.generate(model, vocab, "the ", 40, temperature=1.0, seed=3)
    assert out["text"].startswith("the ") and len(out["ids"]) == 44 and out["num_prime"] == 4
    assert set(out["generated"]) <= set(CORPUS)
    assert sampler.generate(model, vocab, "the ", 40, temperature=1.0, seed=3)["text"] == out["text"]
    assert sampler.generate(model, vocab, "the ", 40, temperature=1.0, seed=4)["text"] != out["text"]
    # greedy: every generated id is the argmax of the model run on the whole sequence so far
    greedy = sampler.generate(model, vocab, "the ", 12, temperature=0.0)
    ids = np.array([greedy["ids"]], np.int32)
    logits = model(
        {
            "ids": tf.constant(ids),
            **dict(
                zip(["state_0", "state_1", "state_2", "state_3"], TASK.initial_carry(model, 1), strict=True)
            ),
        }
    )["logits"]
    np.testing.assert_array_equal(np.argmax(logits[0, 3:-1], axis=-1), greedy["ids"][4:])
    with pytest.raises(ValueError, match=r"unknown character 'Z' at position 1 of --prime"):
        sampler.generate(model, vocab, "tZe", 5)
    with pytest.raises(ValueError, match="does not exist"):
        sampler.load_run(os.path.join(path, "missing"))


def test_trace_matches_the_models_own_step_by_step_trace(hyper_dir, vocab):
    model, _, _ = sampler.load_run(hyper_dir[0])
    out = sampler.generate(model, vocab, "the lazy", 10, temperature=0.7, seed=1, trace=True)
    ref = trace(model, np.array([out["ids"]]))["layers"][0]
    steps, n = len(out["ids"]), 16
    assert out["tanh_c"].shape == (steps, n) and out["d_x"].shape == out["d_h"].shape == (steps, 4 * n)
    np.testing.assert_allclose(out["tanh_c"], ref["tanh_c"][0], atol=1e-5)
    for k, gate in enumerate("igfo"):
        np.testing.assert_allclose(out["d_x"][:, k * n : (k + 1) * n], ref[f"d_x_{gate}"][0], atol=1e-5)
        np.testing.assert_allclose(out["d_h"][:, k * n : (k + 1) * n], ref[f"d_h_{gate}"][0], atol=1e-5)


def test_scale_change_norms_by_hand():
    d_h = np.array(
        [[1.0, 0, 0, 0, 0, 0, 0, 0], [4.0, 4, 0, 0, 0, 0, 0, 0]]
    )  # N = 2, gate i changes by (3, 4)
    d_x = np.zeros((2, 8))
    d_x[1, 6:] = [1.0, 1.0]  # gate o changes by (1, 1)
    changes, labels = dynamics.scale_change_norms(d_x, d_h)
    assert labels == ["W_h^i", "W_h^g", "W_h^f", "W_h^o", "W_x^i", "W_x^g", "W_x^f", "W_x^o"]
    expected = np.zeros((8, 2))
    expected[0, 1], expected[7, 1] = 5.0, np.sqrt(2.0)
    np.testing.assert_allclose(changes, expected)
    with pytest.raises(ValueError, match=r"must be \[T, 4 \* N\]"):
        dynamics.scale_change_norms(np.zeros((2, 7)), np.zeros((2, 8)))


def _image_stats(path):
    import matplotlib.image

    image = matplotlib.image.imread(path)
    return image.shape, float(np.std(image[..., :3]))


def test_sampler_writes_text_and_both_figures(tmp_path, hyper_dir, vocab):
    lstm_dir = tmp_path / "lstm"
    lstm_dir.mkdir()
    make_model_dir(lstm_dir, "lstm_1000_ptb", vocab, units=16, **NO_DROPOUT)
    lines = []
    out = sampler.sample(
        hyper_dir[0],
        prime="the ",
        length=70,
        temperature=0.8,
        seed=2,
        figures_dir=str(tmp_path / "figs"),
        histogram_model_dirs=[str(lstm_dir)],
        output=str(tmp_path / "sample.txt"),
        say=lines.append,
    )
    assert lines[1] == out["text"] and (tmp_path / "sample.txt").read_text(encoding="utf-8") == out["text"]
    assert set(out["figures"]) == {"fig4", "fig5"}
    for name in ("fig4", "fig5"):
        path = out["figures"][name]
        assert os.path.basename(path) in ("fig4_weight_dynamics.png", "fig5_tanh_c_histograms.png")
        assert os.path.getsize(path) > 10_000
        shape, spread = _image_stats(path)
        assert shape[0] > 100 and shape[1] > 300 and spread > 0.05  # a drawn figure, not a blank canvas
    assert sorted(os.listdir(tmp_path / "figs")) == ["fig4_weight_dynamics.png", "fig5_tanh_c_histograms.png"]
    # the changes plotted under the text are not all zero: the hypernetwork moves the scaling vectors
    changes, _ = dynamics.scale_change_norms(out["d_x"], out["d_h"])
    assert changes[:, 1:].min() >= 0 and changes[:, 1:].max() > 0
    # an LSTM model has no scaling vectors: figure 5 only
    plain = sampler.sample(
        str(lstm_dir), prime="the", length=5, figures_dir=str(tmp_path / "f2"), say=lines.append
    )
    assert set(plain["figures"]) == {"fig5"} and "figure 4 skipped" in " ".join(lines)


def test_histogram_figure_has_one_panel_per_model(tmp_path):
    rng = np.random.default_rng(0)
    values = {"LSTM": np.tanh(rng.normal(0, 3, 500)), "Layer Norm LSTM": np.tanh(rng.normal(0, 0.5, 500))}
    path = dynamics.plot_tanh_c_histograms(values, str(tmp_path / "h.png"))
    shape, spread = _image_stats(path)
    assert shape[1] > 1.5 * shape[0] and spread > 0.05
    with pytest.raises(ValueError, match="no tanh"):
        dynamics.plot_tanh_c_histograms({"empty": []}, str(tmp_path / "e.png"))
    assert sorted(os.listdir(tmp_path)) == ["h.png"]  # the failed figure left no temporary file


@pytest.mark.slow
def test_sample_command_line(hyper_dir, run_cli):
    cmd = [
        sys.executable,
        "-m",
        "trainers.sample",
        f"--model_dir={hyper_dir[0]}",
        "--prime=the ",
        "--length=30",
        "--temperature=0.5",
        "--seed=7",
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    model, vocab, _ = sampler.load_run(hyper_dir[0])
    expected = sampler.generate(model, vocab, "the ", 30, temperature=0.5, seed=7)["text"]
    assert expected in proc.stdout
    bad = run_cli(sampler.define_flags, sampler.main, ["zoo-sample", *cmd[3:], "--prime=Q"])  # in-process
    assert bad.returncode == 2 and "unknown character 'Q'" in bad.stderr


@pytest.mark.slow
def test_trainer_to_sampler_end_to_end(tmp_path, zoo_train, run_cli):
    """trainers.train on a small text lowers bpc, exports, and trainers.sample draws from its model_dir.

    Both tools run in this process (their subprocess tests: test_distribution.py and the one above)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "corpus.txt").write_text(CORPUS * 2, encoding="utf-8")
    config = [
        "units=32",
        "hyper_units=8",
        "embedding_size=4",
        "vocab_size=28",
        "input_dropout=0.0",
        "output_dropout=0.0",
        "recurrent_dropout=0.0",
    ]
    args = [
        "--model=ln_hyper_lstm_1000_ptb",
        "--dataset=text",
        f"--data_dir={data}",
        f"--model_dir={tmp_path / 'run'}",
        f"--export_dir={tmp_path / 'export'}",
        "--batch_size=8",
        "--train_steps=60",
        "--checkpoint_every=30",
        "--learning_rate=0.01",
        "--config=sequence_length=20",
        "--config=eval_batch_size=2",
        *[f"--config={c}" for c in config],
    ]
    proc = zoo_train(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.split("summary ", 1)[1].splitlines()[0])
    assert summary["test"]["bpc"] < 3.0  # from about log2(28) = 4.8 untrained
    assert summary["serving_test"]["bpc"] == pytest.approx(summary["test"]["bpc"], rel=1e-4)
    vocab_path = os.path.join(summary["export_path"], "assets.extra", "vocab.json")
    assert Vocabulary.load(vocab_path) == Vocabulary.load(str(tmp_path / "run" / "vocab.json"))
    assert len(Vocabulary.load(vocab_path)) == 28
    argv = [
        "zoo-sample",
        f"--model_dir={tmp_path / 'run'}",  # model, config and vocab.json: from the trainer's run.json
        "--prime=the ",
        "--length=60",
        "--temperature=0.5",
        f"--figures_dir={tmp_path / 'figs'}",
    ]
    proc = run_cli(sampler.define_flags, sampler.main, argv)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout.splitlines()[1]
    assert text.startswith("the ") and len(text) == 64 and set(text) <= set(CORPUS)
    assert sorted(os.listdir(tmp_path / "figs")) == ["fig4_weight_dynamics.png", "fig5_tanh_c_histograms.png"]
