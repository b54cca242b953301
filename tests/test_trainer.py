"""Trainer: flag validation, optimizer/schedule/clipping, and an in-process single-device training run."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from trainer_helpers import TINY_SPEC, CountingTask, TinyTask, tiny_data

from exports import export as export_lib
from trainers import flags as flags_lib
from trainers import sample as sample_lib
from trainers import train as train_lib
from trainers.loop import TrainLoop
from zoo import optim, run_dir
from zoo.data.text import Vocabulary
from zoo.tasks import get_task


def _resolve(**values):
    base = {"strategy": "default", "jit_compile": True, "config": []}
    base.update(values)
    if "model" in values:
        return flags_lib.resolve(base)
    return flags_lib.resolve(base, spec=TINY_SPEC, task=TinyTask())


# ---------------------------------------------------------------------- flags
def test_defaults_come_from_the_recipe():
    opts = _resolve()
    assert (opts.batch_size, opts.train_steps, opts.dataset) == (16, 20, "tiny")
    assert opts.recipe["optimizer"] == "sgd" and opts.recipe["learning_rate"] == 0.1
    assert opts.config == {"units": 8, "weight_decay": 1e-3, "dropout": 0.0, "batch_norm": True}


def test_config_overrides_split_between_model_and_recipe():
    opts = _resolve(
        config=["units=16", "learning_rate=0.5", "recipe.clip_per_tensor=1.0", "model.weight_decay=0"],
        optimizer="adam",
    )
    assert opts.config["units"] == 16 and opts.config["weight_decay"] == 0
    assert opts.recipe["learning_rate"] == 0.5 and opts.recipe["clip_per_tensor"] == 1.0
    assert opts.recipe["optimizer"] == "adam"
    sched = _resolve(
        config=['learning_rate={"schedule": "piecewise_constant", "boundaries": [5], "values": [0.1, 0.01]}']
    )
    assert sched.recipe["learning_rate"]["values"] == [0.1, 0.01]


@pytest.mark.parametrize(
    "values, message",
    [
        ({"model": "hyper_conv_mnst"}, "unknown model 'hyper_conv_mnst'; closest: hyper_conv_mnist"),
        ({"config": ["unitz=3"]}, "unknown key 'unitz'"),
        ({"config": ["units"]}, "expected key=value"),
        ({"batch_size": -4}, "--batch_size=-4 must be a positive number"),
        ({"train_steps": 0}, "--train_steps=0 must be a positive number"),
        ({"train_steps": 5, "epochs": 1.0}, "give only one"),
        ({"data_dir": ""}, "--data_dir='' must be a non-empty path or file pattern"),
        ({"strategy": "tpu"}, "--strategy='tpu' is unknown; valid: default, mirrored, multi_worker"),
        ({"num_devices": 0}, "--num_devices=0 must be >= 1"),
        (
            {"config": ["optimizer=lamb"]},
            "optimizer 'lamb' (from the recipe of 'tiny_mlp' with --config) is "
            "unknown; valid: adam, sgd, adagrad, rmsprop",
        ),
        (
            {"config": ['learning_rate={"schedule": "cosine"}']},
            "learning_rate schedule 'cosine' (from the recipe "
            "of 'tiny_mlp' with --config) is unknown; valid: piecewise_constant, exponential",
        ),
        (
            {"config": ["units=abc"]},
            "model 'tiny_mlp': units='abc' (from --config) must be a whole number >= 1, like its default 8",
        ),
        ({"config": ["dropout=[1]"]}, "dropout=[1] (from --config) must be a finite number"),
        (
            {"config": ["clip_norm=-1"]},
            "clip_norm=-1 (from the recipe of 'tiny_mlp' with --config) must be a",
        ),
    ],
)
def test_bad_values_fail_before_training_naming_the_flag(values, message):
    with pytest.raises((ValueError, KeyError)) as err:
        _resolve(**values)
    assert message in str(err.value)


def test_task_check_data_rejects_an_unknown_dataset():
    with pytest.raises(ValueError, match="--dataset='mnist' is not a dataset of task 'tiny_classification'"):
        train_lib.train(_resolve(dataset="mnist"), task=TinyTask(), say=lambda s: None)


def test_data_dir_may_be_a_file_or_a_pattern_the_task_checks_it(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("abc abc\n", encoding="utf-8")
    enwik8 = tmp_path / "enwik8"
    enwik8.write_bytes(b"<mediawiki>x</mediawiki>")
    (tmp_path / "train-0.tfrecord").write_bytes(b"")
    pattern = str(tmp_path / "train-*.tfrecord")
    for model, dataset, data_dir in [
        ("lstm_1000_ptb", "text", str(text)),  # --dataset=text --data_dir=<a text file>
        ("lstm_1800_enwik8", "enwik8", str(enwik8)),  # the enwik8 file itself
        ("yt8m_lstm", "yt8m_frame", pattern),  # a file pattern, not a path that exists
        ("yt8m_lstm", "yt8m_frame", str(tmp_path)),  # a directory of *.tfrecord
    ]:
        opts = flags_lib.resolve({"model": model, "dataset": dataset, "data_dir": data_dir, "config": []})
        assert (opts.dataset, opts.data_dir) == (dataset, data_dir)
        get_task(opts.spec.task).check_data(opts.dataset, opts.data_dir)  # raises if the task rejects it
    # What a dataset cannot use is the task's error, raised by the trainer before any data is built.
    with pytest.raises(ValueError, match="dataset 'text' expects a file"):
        get_task("char_lm").check_data("text", str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="no TFRecord files match"):
        get_task("video_classification").check_data("yt8m_frame", str(tmp_path / "validate*.tfrecord"))
    opts = flags_lib.resolve({"model": "conv_mnist", "data_dir": str(text), "config": []})
    with pytest.raises(train_lib.SetupError, match="--data_dir=.*corpus.txt' does not exist or is not a dir"):
        train_lib.train(opts, say=lambda s: None)


# ---------------------------------------------------------------------- optim
def test_learning_rate_schedules():
    pw = optim.learning_rate_from_recipe(
        {"schedule": "piecewise_constant", "boundaries": [10, 20], "values": [1.0, 0.1, 0.01]}
    )
    assert [float(pw(s)) for s in (0, 10, 11, 21)] == pytest.approx([1.0, 1.0, 0.1, 0.01])
    ex = optim.learning_rate_from_recipe(
        {
            "schedule": "exponential",
            "initial_learning_rate": 1.0,
            "decay_steps": 10,
            "decay_rate": 0.5,
            "staircase": True,
        }
    )
    assert [float(ex(s)) for s in (0, 9, 10, 25)] == pytest.approx([1.0, 1.0, 0.5, 0.25])
    with pytest.raises(ValueError, match="len\\(values\\) == len\\(boundaries\\) \\+ 1"):
        optim.learning_rate_from_recipe(
            {"schedule": "piecewise_constant", "boundaries": [1], "values": [1.0]}
        )
    with pytest.raises(ValueError, match="schedule 'cosine'.*valid: piecewise_constant, exponential"):
        optim.learning_rate_from_recipe({"schedule": "cosine"})


def test_build_optimizer_reads_the_recipe():
    sgd = optim.build_optimizer({"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "learning_rate": 0.1})
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.momentum == 0.9 and sgd.nesterov
    adam = optim.build_optimizer({"optimizer": "adam", "learning_rate": 1e-3, "epsilon": 1e-8})
    assert isinstance(adam, keras.optimizers.Adam) and adam.epsilon == 1e-8
    assert isinstance(optim.build_optimizer({"optimizer": "rmsprop"}), keras.optimizers.RMSprop)


def test_clip_gradients_matches_tf_clipping_and_uses_norm_source():
    rng = np.random.default_rng(0)
    grads = [tf.constant(rng.normal(size=(3, 4)) * 5, tf.float32), None, tf.constant(rng.normal(size=(7,)))]
    grads[2] = tf.cast(grads[2], tf.float32)
    per = [tf.clip_by_norm(grads[0], 2.0), None, tf.clip_by_norm(grads[2], 2.0)]
    ref, _ = tf.clip_by_global_norm([per[0], per[2]], 1.5)
    got = optim.clip_gradients(grads, clip_norm=1.5, clip_per_tensor=2.0)
    assert got[1] is None
    np.testing.assert_allclose(got[0].numpy(), ref[0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(got[2].numpy(), ref[1].numpy(), rtol=1e-6)
    # Two "replicas" holding halves of a gradient: scaling each by factors from the sum clips the sum.
    half = [g / 2 for g in grads if g is not None]
    parts = optim.clip_gradients(half, clip_norm=1.5, clip_per_tensor=2.0, norm_source=[g * 2 for g in half])
    np.testing.assert_allclose((parts[0] * 2).numpy(), ref[0].numpy(), rtol=1e-6)


# ---------------------------------------------------------------------- loop and train()
def test_loop_compiles_with_xla_and_loss_is_the_batch_mean():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    task = TinyTask()
    loop = TrainLoop(
        strategy=tf.distribute.get_strategy(),
        model=model,
        task=task,
        optimizer=optim.build_optimizer({"optimizer": "sgd", "learning_rate": 0.1}),
        global_batch_size=8,
    )
    x, y = tiny_data(8, 3)
    batch = (tf.constant(x), tf.constant(y))
    hlo = loop.loss_and_grads.experimental_get_compiler_ir(batch, ())(stage="hlo")
    assert "HloModule" in hlo and "dot(" in hlo  # the forward+backward was lowered to XLA HLO
    expected = keras.losses.sparse_categorical_crossentropy(y, model(x), from_logits=True).numpy().mean()
    loss = loop.step(iter([batch]))
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)


def test_train_runs_checkpoints_summaries_and_exports(tmp_path):
    lines: list[str] = []
    opts = _resolve(
        train_steps=60,
        model_dir=str(tmp_path / "run"),
        export_dir=str(tmp_path / "export"),
        checkpoint_every=25,
        eval_every=30,
        log_every=20,
        config=["dropout=0.1"],
    )
    summary = train_lib.train(opts, task=TinyTask(), say=lines.append)
    head = lines[0]
    for part in (
        "model=tiny_mlp",
        "strategy=default replicas=1 jit_compile=True",
        "params=83",
        "train=256",
        "test=96",
    ):
        assert part in head
    progress = [s for s in lines if s.startswith("step ")]
    assert [s.split()[1] for s in progress] == ["20/60", "40/60", "60/60"]
    assert all("steps/s=" in s and "eta=" in s and "accuracy=" in s for s in progress)
    first, last = (float(s.split("loss=")[1].split()[0]) for s in (progress[0], progress[-1]))
    assert last < first
    assert summary["test"]["accuracy"] > 0.8
    # The exported SavedModel scores the same as the Keras model (same weights, same data).
    assert summary["serving_test"]["accuracy"] == pytest.approx(summary["test"]["accuracy"], abs=1e-6)
    assert summary["export_path"] == str(tmp_path / "export" / "tiny_mlp" / "1")
    assert os.path.exists(tmp_path / "export" / "models.config")
    ckpts = sorted(
        int(p.split("-")[-1].split(".")[0]) for p in glob.glob(str(tmp_path / "run" / "ckpt-*.index"))
    )
    assert ckpts == [25, 50, 60]
    tags = set()
    for event_file in glob.glob(str(tmp_path / "run" / "train" / "events.*")):
        for event in tf.compat.v1.train.summary_iterator(event_file):
            tags.update(v.tag for v in event.summary.value)
    assert {"loss", "learning_rate", "steps_per_sec", "accuracy", "eval/accuracy", "test/accuracy"} <= tags


def test_mixed_precision_bfloat16_trains(tmp_path):
    try:
        summary = train_lib.train(
            _resolve(train_steps=10, mixed_precision=True, config=["batch_norm=false"]),
            task=TinyTask(),
            say=lambda s: None,
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.isfinite(summary["loss"])


def test_carry_is_passed_between_steps():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    loop = TrainLoop(
        strategy=tf.distribute.get_strategy(), model=model, task=CountingTask(),
        optimizer=optim.build_optimizer({"optimizer": "sgd", "learning_rate": 0.1}), global_batch_size=8,
    )  # fmt: skip
    x, y = tiny_data(24, 3)
    it = iter(tf.data.Dataset.from_tensor_slices((x, y)).batch(8))
    for _ in range(3):
        loop.step(it)
    np.testing.assert_array_equal(np.asarray(loop.carry), np.full((8, 1), 3.0))


def test_epochs_convert_to_steps():
    summary = train_lib.train(_resolve(epochs=0.5, log_every=1000), task=TinyTask(), say=lambda s: None)
    assert summary["step"] == 8  # ceil(0.5 * 256 train examples / batch 16)


# ---------------------------------------------------------------------- run.json, assets, resume
class AssetTask(TinyTask):
    """TinyTask whose data carries an asset (as the char-LM task's vocab.json)."""

    def __init__(self, labels: bytes = b"a\nb\nc\n", name: str = "labels.txt"):
        super().__init__()
        self.labels, self.asset = labels, name

    def build_data(self, *args) -> object:
        return dataclasses.replace(super().build_data(*args), assets={self.asset: self.labels})


def test_run_json_and_assets_are_written_before_training_and_checked_on_resume(tmp_path):
    model_dir = tmp_path / "run"
    run_json = model_dir / "run.json"
    seen: list[tuple[str, bool]] = []

    def say(line: str) -> None:
        seen.append((line, run_json.is_file() and (model_dir / "labels.txt").is_file()))

    values = {"train_steps": 4, "model_dir": str(model_dir), "log_every": 2, "config": ["units=6"]}
    train_lib.train(_resolve(**values), task=AssetTask(), say=say)
    assert seen[0][0].startswith("zoo-train ") and seen[0][1]  # written before the first step
    info = json.loads(run_json.read_text())
    assert info == {
        "model": "tiny_mlp",
        "config": {"units": 6, "weight_decay": 1e-3, "dropout": 0.0, "batch_norm": True},
        "recipe": json.loads(json.dumps(_resolve().recipe)),
        "dataset": "tiny",
        "data_dir": None,
        "assets": ["labels.txt"],
    }
    assert info["recipe"]["learning_rate"] == 0.1 and info["recipe"]["optimizer"] == "sgd"
    assert (model_dir / "labels.txt").read_bytes() == b"a\nb\nc\n"
    assert not [n for n in os.listdir(model_dir) if n.startswith(".tmp")]  # renamed into place

    # The same command resumes.
    lines: list[str] = []
    summary = train_lib.train(_resolve(**{**values, "train_steps": 6}), task=AssetTask(), say=lines.append)
    assert summary["step"] == 6 and any(s.startswith("resumed from step 4") for s in lines)

    # Another model, model config, recipe or asset is refused, naming what differs.
    other = dataclasses.replace(TINY_SPEC, name="tiny_mlp_v2")
    with pytest.raises(train_lib.SetupError, match="--model='tiny_mlp_v2' but --model_dir=.* holds a run of "
                       "model 'tiny_mlp'"):  # fmt: skip
        train_lib.train(flags_lib.resolve(values, spec=other), task=AssetTask(), say=lambda s: None)
    with pytest.raises(train_lib.SetupError) as err:
        bad = {**values, "config": ["units=7", "dropout=0.5", "momentum=0.5"]}
        train_lib.train(_resolve(**bad), task=AssetTask(), say=lambda s: None)
    message = str(err.value)
    assert "model config key(s) differ (recorded -> new): dropout: 0.0 -> 0.5; units: 6 -> 7" in message
    assert "recipe key(s) differ (recorded -> new): momentum: 0.9 -> 0.5" in message
    with pytest.raises(train_lib.SetupError, match="the data now gives other labels.txt"):
        train_lib.train(_resolve(**values), task=AssetTask(b"x\n"), say=lambda s: None)
    assert json.loads(run_json.read_text()) == info  # a refused rerun leaves the record as it was
    assert (model_dir / "labels.txt").read_bytes() == b"a\nb\nc\n"


def test_asset_names_follow_the_exporters_rule(tmp_path):
    # One rule (zoo.run_dir.check_asset_name) for the trainer and the exporter: a name with a space used
    # to pass the trainer and fail at export.
    for name in ("../x", "run.json", "trainer.lock", "my vocab.json"):
        with pytest.raises(train_lib.SetupError, match=f"asset name '{re.escape(name)}'.*task 'tiny_classif"):
            train_lib.train(
                _resolve(train_steps=1, model_dir=str(tmp_path)),
                task=AssetTask(name=name),
                say=lambda s: None,
            )
    assert not (tmp_path / "run.json").exists()


CHAR_CONFIG = [
    "units=8", "embedding_size=4", "vocab_size=28", "input_dropout=0.0", "output_dropout=0.0",
    "recurrent_dropout=0.0", "sequence_length=10", "eval_batch_size=2",
]  # fmt: skip


def test_char_lm_model_dir_serves_export_and_sample_without_model_flags(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 20, encoding="utf-8")
    model_dir = str(tmp_path / "run")
    values = {"model": "lstm_1000_ptb", "dataset": "text", "data_dir": str(corpus), "model_dir": model_dir,
              "batch_size": 4, "train_steps": 3, "log_every": 1000, "config": CHAR_CONFIG}  # fmt: skip
    opts = flags_lib.resolve(values)
    small = flags_lib.resolve({**values, "config": [*CHAR_CONFIG, "vocab_size=20"]})
    with pytest.raises(train_lib.SetupError, match="has 28 symbols but the model's vocab_size is 20; pass"):
        train_lib.train(small, say=lambda s: None)  # a data/config mismatch is a setup error, not a crash
    assert not os.path.exists(os.path.join(model_dir, "run.json"))
    summary = train_lib.train(opts, say=lambda s: None)
    info = json.loads(open(os.path.join(model_dir, "run.json")).read())
    assert info["model"] == "lstm_1000_ptb" and info["dataset"] == "text"
    assert info["data_dir"] == str(corpus) and info["assets"] == ["vocab.json"]
    assert info["config"]["units"] == 8 and info["recipe"]["sequence_length"] == 10
    vocab = Vocabulary.load(os.path.join(model_dir, "vocab.json"))
    assert len(vocab) == 28

    # exports.export (the CLI's restore step): the model and its config come from run.json.
    model, name, task, config = export_lib.restore_for_export(model_dir)
    assert (name, task.name, config["units"], config["vocab_size"]) == ("lstm_1000_ptb", "char_lm", 8, 28)
    checksum = float(sum(np.sum(np.asarray(w, np.float64)) for w in model.get_weights()))
    assert checksum == pytest.approx(summary["weights_checksum"], rel=1e-12)

    # trainers.sample: model, config and vocab.json from the model_dir.
    net, restored_vocab, run = sample_lib.load_run(model_dir)
    assert restored_vocab == vocab and run["model"] == "lstm_1000_ptb" and run["config"]["units"] == 8
    for a, b in zip(net.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    text = sample_lib.generate(net, restored_vocab, "the ", 12, temperature=0.0)["text"]
    assert text.startswith("the ") and len(text) == 16 and set(text) <= set(vocab.symbols)


def test_resume_may_train_longer_but_not_change_the_recipe(tmp_path):
    info = {
        "model": "tiny",
        "config": {"units": 8},
        "recipe": {"train_steps": 10, "learning_rate": 0.001},
        "dataset": "toy",
        "data_dir": str(tmp_path),
    }
    run_dir.write_run_files(str(tmp_path), info, {})
    longer = {**info, "recipe": {"train_steps": 20, "learning_rate": 0.001}}
    assert run_dir.check_resume(str(tmp_path), longer)["recipe"]["train_steps"] == 10
    faster = {**info, "recipe": {"train_steps": 10, "learning_rate": 0.1}}
    with pytest.raises(run_dir.RunDirError, match="learning_rate: 0.001 -> 0.1"):
        run_dir.check_resume(str(tmp_path), faster)


def test_batch_size_is_recorded_and_bad_step_counts_are_refused():
    opts = _resolve(batch_size=8)
    assert opts.recipe["batch_size"] == 8  # the batch actually used is part of run.json
    for flag, value in (("checkpoint_every", 0), ("log_every", 0), ("batch_size", 10.5)):
        with pytest.raises(ValueError, match=f"--{flag}={value}"):
            _resolve(**{flag: value})


# ---------------------------------------------------------------------- issue 8/9: keys, lock, messages
def test_char_lm_recipe_keys_pass_through_config_and_unknown_keys_name_the_valid_ones():
    opts = flags_lib.resolve(
        {"model": "lstm_1000_ptb", "config": ["split_sizes=[900, 50, 50]", "eval_sequence_length=250"]}
    )
    assert opts.recipe["split_sizes"] == [900, 50, 50] and opts.recipe["eval_sequence_length"] == 250
    assert (
        flags_lib.resolve({"model": "lstm_1000_ptb", "config": ["recipe.split_sizes=None"]}).recipe[
            "split_sizes"
        ]
        is None
    )
    with pytest.raises(ValueError) as err:
        flags_lib.resolve({"model": "lstm_1000_ptb", "config": ["eval_seq_len=250"]})
    message = str(err.value)
    assert "unknown key 'eval_seq_len' for model 'lstm_1000_ptb'" in message
    for key in (
        "split_sizes",
        "eval_sequence_length",
        "sequence_length",
        "clip_norm",
        "train_steps",
        "units",
    ):
        assert key in message
    assert "augment" not in message  # another task's key


def test_non_chief_workers_do_not_take_the_model_dir_lock(tmp_path, monkeypatch):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = tmp_path / run_dir.LOCK_FILE
        lock.write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": "then"}))
        opts = _resolve(train_steps=2, model_dir=str(tmp_path))
        with pytest.raises(train_lib.SetupError, match=f"in use by another trainer \\(pid {holder.pid} "):
            train_lib.train(opts, task=TinyTask(), say=lambda s: None)
        worker1 = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
        monkeypatch.setenv("TF_CONFIG", json.dumps(worker1))
        assert train_lib.train(opts, task=TinyTask(), say=lambda s: None)["step"] == 2
        assert json.loads(lock.read_text())["pid"] == holder.pid  # untouched
        assert not (tmp_path / "run.json").exists() and not glob.glob(str(tmp_path / "ckpt-*"))
    finally:
        holder.kill()
        holder.wait()


def test_rerunning_a_finished_run_says_so_and_reports_no_nan(tmp_path):
    opts = _resolve(train_steps=3, model_dir=str(tmp_path), log_every=1000)
    assert train_lib.train(opts, task=TinyTask(), say=lambda s: None)["loss"] > 0
    lines: list[str] = []
    summary = train_lib.train(opts, task=TinyTask(), say=lines.append)
    assert "already at step 3 (train_steps=3); nothing to train" in lines
    assert summary["loss"] is None and summary["step"] == 3
    assert not (tmp_path / run_dir.LOCK_FILE).exists()


def test_the_validation_split_is_evaluated_at_the_end_with_eval_every_0():
    lines: list[str] = []
    summary = train_lib.train(_resolve(train_steps=4, eval_every=0), task=TinyTask(), say=lines.append)
    assert [s for s in lines if s.startswith("eval step")] == [
        f"eval step 4: {train_lib._fmt(summary['eval'])}"
    ]
    lines.clear()
    summary = train_lib.train(_resolve(train_steps=4, eval_every=2), task=TinyTask(), say=lines.append)
    assert [s.split(":")[0] for s in lines if s.startswith("eval step")] == ["eval step 2", "eval step 4"]
    assert "accuracy" in summary["eval"]


class _SlowEvalTask(TinyTask):
    def evaluate(self, model, dataset):
        time.sleep(0.5)
        return super().evaluate(model, dataset)


def test_steps_per_second_leave_out_evaluation_time():
    lines: list[str] = []
    opts = _resolve(train_steps=20, eval_every=5, log_every=10)
    train_lib.train(opts, task=_SlowEvalTask(), say=lines.append)
    second = [s for s in lines if s.startswith("step 20/20")][0]  # the first interval also compiles
    # Two 0.5 s evaluations fall in the interval: counting them would give < 10 steps / 1 s.
    assert float(second.split("steps/s=")[1].split()[0]) > 10


def test_batch_size_note_only_when_step_counts_change_meaning():
    assert _resolve(batch_size=8, train_steps=5).notes == []  # constant lr, steps given
    assert "train_steps=20" in _resolve(batch_size=8).notes[0]  # the recipe's train_steps
    schedule = 'learning_rate={"schedule": "piecewise_constant", "boundaries": [5], "values": [0.1, 0.01]}'
    note = _resolve(batch_size=8, train_steps=5, config=[schedule]).notes[0]
    assert "--batch_size=8 differs from the recipe's 16" in note and "learning_rate boundaries=[5]" in note
    quickstart = flags_lib.resolve(
        {"model": "hyper_conv_mnist", "dataset": "digits", "train_steps": 300, "batch_size": 64, "config": []}
    )
    assert quickstart.notes == []


def test_jit_compile_defaults_to_xla_on_accelerators_only(monkeypatch):
    from trainers import strategy as strategy_lib

    assert _resolve(jit_compile=None).jit_compile is None  # unset: decided from the devices at start-up
    assert _resolve(jit_compile=False).jit_compile is False
    assert strategy_lib.default_jit_compile() is False  # this machine: CPUs only
    assert [strategy_lib.resolve_jit_compile(v) for v in (None, "auto", True, "true", False, "false")] == [
        False, False, True, True, False, False
    ]  # fmt: skip
    with pytest.raises(ValueError, match="jit_compile='yes': expected auto, true or false"):
        strategy_lib.resolve_jit_compile("yes")
    lines: list[str] = []
    train_lib.train(_resolve(jit_compile=None, train_steps=2), task=TinyTask(), say=lines.append)
    assert "jit_compile=False (the device default)" in lines[0]
    for kind in ("GPU", "TPU"):
        fake = {kind: [f"/device:{kind}:0"]}
        config = strategy_lib.tf.config
        monkeypatch.setattr(config, "list_logical_devices", lambda k, fake=fake: fake.get(k, []))
        assert strategy_lib.default_jit_compile() is True


def test_start_up_line_names_the_units_of_the_sizes():
    lines: list[str] = []
    train_lib.train(_resolve(train_steps=1), task=TinyTask(), say=lines.append)
    assert lines[0].endswith(" sizes[train=256 eval=96 test=96] in examples")


def test_a_batch_that_does_not_fit_in_memory_is_one_line_suggesting_a_smaller_batch(monkeypatch, capsys):
    def oom(self, iterator):
        raise tf.errors.ResourceExhaustedError(
            None, None, "OOM when allocating tensor with shape[16,8]\nmore"
        )

    monkeypatch.setattr(TrainLoop, "step", oom)
    with pytest.raises(train_lib.OutOfMemoryError) as err:
        train_lib.train(_resolve(train_steps=2), task=TinyTask(), say=lambda s: None)
    message = str(err.value)
    assert "out of memory with --batch_size=16" in message and "OOM when allocating" in message
    assert "try a smaller --batch_size, e.g. --batch_size=8" in message and "\n" not in message


def test_builder_errors_and_bad_config_values_are_setup_errors():
    with pytest.raises(train_lib.SetupError, match="model 'tiny_mlp': the config is not valid: .*rate"):
        train_lib.train(_resolve(train_steps=1, config=["dropout=1.5"]), task=TinyTask(), say=lambda s: None)


def test_importing_the_trainer_defines_no_flags():
    from absl import flags

    assert train_lib.run and "checkpoint_every" not in flags.FLAGS


def test_resume_restores_every_saved_object_and_names_what_a_checkpoint_lacks(tmp_path):
    # Variables shared by the model and the optimizer are saved under one of them only: without
    # BatchNorm no variable key starts with "model/", yet the checkpoint holds the model.
    values = {"model_dir": str(tmp_path), "log_every": 1000, "config": ["batch_norm=false"]}
    first = train_lib.train(_resolve(train_steps=2, **values), task=TinyTask(), say=lambda s: None)
    lines: list[str] = []
    train_lib.train(_resolve(train_steps=2, **values), task=TinyTask(), say=lines.append)
    assert f"resumed from step 2 ({tmp_path / 'ckpt-2'})" in lines
    assert first["step"] == 2
