"""The translation task: data checks, bucketed batches, loss, training, text-in/text-out serving, e2e."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo.data import num2words_corpus, subword
from zoo.optim import build_optimizer
from zoo.tasks import get_task, recipe_keys
from zoo.tasks.translation import (
    BOS,
    EOS,
    PAD,
    TASK,
    Pairs,
    eval_dataset,
    train_dataset,
    translate_ids,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"units": 16, "attention_units": 16, "embedding_dim": 16, "vocab_size": 160, "dropout": 0.0,
        "beam_width": 2, "max_decode_length_factor": 1.0}  # fmt: skip


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)


class _Chars:
    """A character tokenizer with the subword model's interface (ids 4.. for 'a'..)."""

    def encode(self, lines):
        return [[4 + ord(c) - ord("a") for c in line] for line in lines]


@pytest.fixture(scope="module")
def corpus():
    """A small real num2words corpus and its learned subword model (shared by the tests below)."""

    def split(name, size):
        pairs = num2words_corpus.number_pairs(name, "en", "fr", size=size)
        return [p[0] for p in pairs], [p[1] for p in pairs]

    train, valid = split("train", 300), split("valid", 40)
    model_bytes = subword.train_subword_model([*train[0], *train[1]], vocab_size=TINY["vocab_size"])
    return train, valid, model_bytes, subword.SubwordTokenizer.from_bytes(model_bytes)


def test_task_is_registered_and_checks_its_data(tmp_path):
    assert get_task("translation") is TASK
    for name in ("gnmt_lstm_wmt", "gnmt_ln_hyper_lstm_wmt", "gnmt_lstm_small", "gnmt_ln_hyper_lstm_small"):
        assert zoo.get_spec(name).task == "translation"
        assert set(zoo.describe(name)["recipe"]) <= set(recipe_keys(TASK)), name
    with pytest.raises(ValueError, match="--dataset='wmt'.*num2words, parallel"):
        TASK.check_data("wmt", None)
    with pytest.raises(ValueError, match="takes no --data_dir"):
        TASK.check_data("num2words", str(tmp_path))
    with pytest.raises(ValueError, match="--dataset=parallel needs --data_dir"):
        TASK.check_data("parallel", None)


def test_train_batches_are_bucketed_with_specials_and_masks():
    pairs = Pairs(["abc", "a", "abcdefgh", "ab"] * 4, ["xy", "xyzw", "x", ""] * 4, _Chars())
    assert pairs.keep(max_length=8) == 4  # "abcdefgh" + EOS is 9 tokens
    ds = train_dataset(pairs, batch_size=3, buckets=(4, 8), seed=0)
    seen = set()
    for inputs, target_out in ds.take(8):
        src, t_in, t_out = inputs["source"].numpy(), inputs["target_in"].numpy(), target_out.numpy()
        assert src.shape == t_in.shape == t_out.shape and src.shape[0] == 3 and src.shape[1] in (4, 8)
        for s, ti, to in zip(src, t_in, t_out, strict=True):
            n_src = int(np.sum(s != PAD))
            assert s[n_src - 1] == EOS and np.all(s[n_src:] == PAD)
            n_tgt = int(np.sum(to >= 0))
            assert ti[0] == BOS and to[n_tgt - 1] == EOS and np.all(to[n_tgt:] == -1)
            np.testing.assert_array_equal(ti[1:n_tgt], to[: n_tgt - 1])  # shifted by one
            seen.add(tuple(s[:n_src]))
            # each pair's bucket is the smallest that fits its longer side
            assert (4 if max(n_src, n_tgt) <= 4 else 8) == src.shape[1]
    assert len(seen) == 3  # the kept source sentences all appear


def test_eval_batches_cover_every_pair_once_with_text():
    pairs = Pairs(["abc", "a", "ab"], ["x", "yy", "zzz"], _Chars())
    batches = list(eval_dataset(pairs, batch_size=2))
    assert [b[0]["source"].shape[0] for b in batches] == [2, 1]
    refs = [r.decode() for b in batches for r in b[2]["reference"].numpy()]
    assert refs == ["x", "yy", "zzz"]
    assert [s.decode() for b in batches for s in b[2]["source_text"].numpy()] == ["abc", "a", "ab"]


def _model(name="gnmt_ln_hyper_lstm_small", **overrides):
    keras.utils.set_random_seed(0)
    return zoo.get(name, **{**TINY, "hyper_units": 8, **overrides})


def test_loss_is_the_summed_cross_entropy_of_real_target_tokens():
    model = _model("gnmt_lstm_small")
    inputs = {
        "source": tf.constant([[5, 6, EOS, 0], [7, EOS, 0, 0]]),
        "target_in": tf.constant([[BOS, 9, 0], [BOS, 8, 9]]),
    }
    target_out = tf.constant([[9, EOS, -1], [8, 9, EOS]])
    out = TASK.forward(model, (inputs, target_out), (), training=False)
    logits = model(inputs, training=False)["logits"].numpy()
    logp = logits - np.log(np.sum(np.exp(logits), -1, keepdims=True))
    want = [-(logp[0, 0, 9] + logp[0, 1, EOS]), -(logp[1, 0, 8] + logp[1, 1, 9] + logp[1, 2, EOS])]
    np.testing.assert_allclose(out.per_example_loss.numpy(), want, rtol=1e-5)


def test_a_few_training_steps_lower_the_loss_on_the_embedded_corpus(corpus):
    train, _, model_bytes, tokenizer = corpus
    model = _model("gnmt_lstm_small")
    pairs = Pairs(*train, tokenizer)
    pairs.keep(40)
    batch = next(iter(train_dataset(pairs, batch_size=16, buckets=(40,), seed=0)))
    optimizer = build_optimizer({"optimizer": "adam", "learning_rate": 0.01})

    @tf.function(jit_compile=True)
    def step(batch):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(TASK.forward(model, batch, (), training=True).per_example_loss)
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    losses = [float(step(batch)) for _ in range(25)]
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.fixture(scope="module")
def exported(corpus, tmp_path_factory):
    from exports.export import export_model

    *_, model_bytes, _ = corpus
    model = _model()
    base = str(tmp_path_factory.mktemp("exported"))
    path = export_model(
        model,
        model_name="nmt",
        task=TASK,
        config={},
        base_dir=base,
        assets={subword.SUBWORD_ASSET: model_bytes},
    )
    return model, path


def test_serving_translates_text_as_the_in_process_model(corpus, exported):
    _, valid, _, tokenizer = corpus
    model, path = exported
    sources = valid[0][:3] + [""]
    ids = tokenizer.encode(sources)
    width = max(len(r) for r in ids) + 1
    padded = np.zeros((len(ids), width), np.int32)
    for row, r in enumerate(ids):
        padded[row, : len(r) + 1] = [*r, EOS]
    result = translate_ids(model, tf.constant(padded))
    want = tokenizer.decode(result.tokens[:, 0, :].numpy().tolist())
    served = tf.saved_model.load(path).signatures["serving_default"](source=tf.constant(sources))
    assert [t.decode() for t in served["translation"].numpy()] == want
    np.testing.assert_allclose(served["score"].numpy(), result.scores[:, 0].numpy(), rtol=1e-4, atol=1e-5)


def test_exported_model_translates_in_a_process_without_zoo(exported, tmp_path):
    model, path = exported
    want = TASK.serving_functions(model, {})["serving_default"](source=tf.constant(["one", "forty-two"]))
    np.save(tmp_path / "want.npy", want["translation"].numpy())
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import tensorflow as tf
        import tensorflow_text  # registers the SentencePiece ops (TF Serving links them in)
        m = tf.saved_model.load({path!r})
        assert sorted(m.signatures) == ["score", "serving_default"], sorted(m.signatures)
        out = m.signatures["serving_default"](source=tf.constant(["one", "forty-two"]))
        assert out["translation"].dtype == tf.string and out["translation"].shape == (2,)
        want = np.load({str(tmp_path / "want.npy")!r}, allow_pickle=True)
        np.testing.assert_array_equal(out["translation"].numpy(), want)
        s = m.signatures["score"](source=tf.constant(["one"]), target=tf.constant(["un"]))
        assert s["nats"].shape == (1,) and float(s["nats"][0]) > 0 and int(s["tokens"][0]) >= 2
        assert not any(k == "zoo" or k.startswith("zoo.") for k in sys.modules), "zoo was imported"
        print("ok")
        """
    )
    env = _env()
    env["PYTHONPATH"] = ""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=300,
    )
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]


@pytest.mark.slow
def test_zoo_train_on_num2words_exports_and_zoo_translate_agrees(tmp_path, zoo_train):
    # zoo-train in this process (its own subprocess test: test_distribution.py); zoo-translate as a command.
    run, exp = str(tmp_path / "run"), str(tmp_path / "exp")
    flags = [f"--config={k}={v}" for k, v in TINY.items()]
    done = zoo_train(["--model=gnmt_lstm_small", "--dataset=num2words", "--config=corpus_size=200",
                      "--config=eval_corpus_size=8", "--batch_size=8", "--train_steps=2", "--log_every=1",
                      *flags, f"--model_dir={run}", f"--export_dir={exp}"])  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.split("summary ", 1)[1])
    assert summary["step"] == 2 and np.isfinite(summary["test"]["log_perplexity"])
    # the trainer's TASK.evaluate of the model and TASK.evaluate_serving of its SavedModel on the test split
    local, served = summary["test"], summary["serving_test"]
    assert served["sentences"] == local["sentences"] == 8
    assert served["log_perplexity"] == pytest.approx(local["log_perplexity"], rel=1e-4)
    assert served["bleu"] == pytest.approx(local["bleu"], abs=1e-6)
    assert os.path.isfile(os.path.join(run, subword.SUBWORD_ASSET))
    saved = os.path.join(exp, "gnmt_lstm_small", "1")
    assert os.path.isfile(os.path.join(saved, "assets.extra", subword.SUBWORD_ASSET))
    lines = ["one", "forty-two", "", "seven hundred"]
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "trainers.translate", f"--model_dir={run}", f"--input={tmp_path / 'in.txt'}",
           f"--output={tmp_path / 'out.txt'}"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = (tmp_path / "out.txt").read_text(encoding="utf-8").split("\n")
    import tensorflow_text  # noqa: F401  (registers the SentencePiece ops the SavedModel uses)

    served = tf.saved_model.load(saved).signatures["serving_default"](source=tf.constant(lines))
    assert got == [t.decode() for t in served["translation"].numpy()] + [""]  # checkpoint == export


def test_translate_tool_refuses_ambiguous_sources():
    from trainers.translate import translator

    with pytest.raises(ValueError, match="exactly one of --model_dir and --saved_model"):
        translator(None, None)
    with pytest.raises(ValueError, match="exactly one"):
        translator("a", "b")


def test_a_checkpoint_restores_every_weight_of_a_deep_model(tmp_path):
    """Resuming, zoo-translate and zoo-export rebuild the model and restore tf.train.Checkpoint(model=...):
    every layer of a 3 + 3 layer GNMT (the upper layers included) must be in the checkpoint."""
    deep = {"encoder_layers": 3, "decoder_layers": 3}
    trained = _model(**deep)
    keras.utils.set_random_seed(1)
    fresh = zoo.get("gnmt_ln_hyper_lstm_small", **{**TINY, "hyper_units": 8, **deep})
    path = tf.train.Checkpoint(model=trained).save(str(tmp_path / "ckpt"))
    tf.train.Checkpoint(model=fresh).restore(path).assert_existing_objects_matched()
    assert len(fresh.weights) == len(trained.weights)
    for a, b in zip(trained.weights, fresh.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
