"""trainers/yt8m_eval.py, yt8m_infer.py, yt8m_synthetic.py: metrics and the Kaggle CSV."""

import csv
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from trainers import flags as trainer_flags
from trainers import train as trainer
from trainers import yt8m_eval, yt8m_infer
from zoo.data import yt8m
from zoo.tasks.video import TASK

C = 10
OVER = {"num_classes": C, "feature_size": 8, "feature_sizes": [6, 2], "max_frames": 6, "lstm_units": 4}
CONFIG_FLAGS = [f"{k}={v}" for k, v in OVER.items()]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("tools")
    layout = yt8m.FRAME_LEVEL.replace(num_classes=C, feature_sizes=(6, 2))
    pattern = yt8m.write_synthetic(str(root / "validate.tfrecord"), 25, layout, seed=3, frames=(1, 9))[0]
    keras.utils.set_random_seed(4)
    model = zoo.get("yt8m_lstm", **OVER)
    model_dir = str(root / "run")
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model), model_dir, max_to_keep=1).save(
        checkpoint_number=5
    )
    # The run.json the trainer writes for --model=yt8m_lstm --config=...: the tools need no --model/--config.
    options = trainer_flags.resolve({"model": "yt8m_lstm", "config": CONFIG_FLAGS, "data_dir": pattern})
    trainer.write_run_files(model_dir, trainer.run_description(options), {})
    config = {**zoo.get_spec("yt8m_lstm").default_config(), **OVER}
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, fn in TASK.serving_functions(model, config).items():
        archive.add_endpoint(name, fn)
    saved = str(root / "sm")
    archive.write_out(saved, verbose=False)
    want = TASK.evaluate(model, TASK.dataset_for(config, pattern, 8))
    return {
        "root": root,
        "pattern": pattern,
        "model_dir": model_dir,
        "saved": saved,
        "want": want,
        "model": model,
        "config": config,
    }


def _values(setup, source):
    base = {
        "data_pattern": setup["pattern"],
        "batch_size": 8,
        "model": None,
        "config": [],
        "model_dir": None,
        "saved_model": None,
    }
    if source == "model_dir":
        return {**base, "model_dir": setup["model_dir"]}
    return {**base, "saved_model": setup["saved"]}


@pytest.mark.parametrize("source", ["model_dir", "saved_model"])
def test_eval_from_checkpoint_and_saved_model(setup, source):
    got = yt8m_eval.evaluate(_values(setup, source))
    assert got["num_videos"] == 25
    for key in ("hit_at_one", "perr", "gap", "map"):  # C <= 20: the SavedModel's top 20 is every class
        assert got[key] == pytest.approx(setup["want"][key], abs=1e-6), key


def test_eval_argument_errors(setup):
    with pytest.raises(ValueError, match="exactly one of --model_dir and --saved_model"):
        yt8m_eval.evaluate({"model_dir": None, "saved_model": None, "data_pattern": "x"})
    with pytest.raises(ValueError, match="no TFRecord files match"):
        yt8m_eval.evaluate(
            {**_values(setup, "saved_model"), "data_pattern": str(setup["root"] / "none*.tfrecord")}
        )


def official_lines(ids, predictions, top_k):
    """inference.format_lines: argpartition, a stable sort by score, "%i %g"."""
    for vid, row in zip(ids, predictions, strict=True):
        top = np.argpartition(row, -top_k)[-top_k:]
        line = sorted([(c, row[c]) for c in top], key=lambda pair: -pair[1])
        yield vid.decode() + "," + " ".join("%i %g" % (c, s) for c, s in line)  # noqa: UP031


def test_format_rows_top_k_and_order():
    scores = np.array([[0.1, 0.9, 0.5], [0.3, 0.2, yt8m_eval.NOT_IN_TOP_K]], np.float32)
    rows = yt8m_infer.format_rows(np.array([b"a", b"b"]), scores, top_k=2)
    assert rows == ["a,1 0.9 2 0.5", "b,0 0.3 1 0.2"]
    rows = yt8m_infer.format_rows(np.array([b"b"]), scores[1:], top_k=3)
    assert rows == ["b,0 0.3 1 0.2"]  # classes outside a SavedModel's top k are not written


def test_format_rows_are_the_official_csv_lines():
    rng = np.random.default_rng(0)
    scores = rng.uniform(size=(30, 50)).astype(np.float32) ** 3
    scores[:10] = np.round(scores[:10], 2)  # ties
    scores[10, :] = 0.25  # all tied
    scores[11, :3] = [1e-7, 123456.7, 0.000123456]  # %g switches notation
    ids = np.array([f"v{i}".encode() for i in range(30)])
    assert yt8m_infer.format_rows(ids, scores, top_k=20) == list(official_lines(ids, scores, 20))


@pytest.mark.parametrize("source", ["model_dir", "saved_model"])
def test_infer_csv(setup, source, tmp_path):
    out = str(tmp_path / "sub" / "predictions.csv")
    n = yt8m_infer.write_csv(out, yt8m_eval.iterate_predictions(_values(setup, source)), top_k=20)
    assert n == 25 and sorted(os.listdir(tmp_path / "sub")) == ["predictions.csv"]  # no temporary left
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["VideoId", "LabelConfidencePairs"] and len(rows) == 26
    model = setup["model"]
    inputs, _ = next(iter(TASK.dataset_for(setup["config"], setup["pattern"], 25)))
    preds = np.asarray(model({"features": inputs["features"], "num_frames": inputs["num_frames"]}))
    for row, vid, p in zip(rows[1:], inputs["id"].numpy(), preds, strict=True):
        assert row[0] == vid.decode()
        fields = row[1].split()
        classes, conf = [int(c) for c in fields[::2]], [float(x) for x in fields[1::2]]
        assert len(classes) == C and classes[0] == int(np.argmax(p))
        np.testing.assert_allclose(conf, np.sort(p)[::-1], atol=1e-5)


@pytest.mark.parametrize("source", ["model_dir", "saved_model"])
def test_a_corrupt_shard_is_named_or_skipped(setup, source, tmp_path):
    records = [r.numpy() for r in tf.data.TFRecordDataset(setup["pattern"])]
    truncated = str(tmp_path / "truncated.tfrecord")
    yt8m.write_records(truncated, records[:4])
    with open(truncated, "r+b") as f:
        f.truncate(os.path.getsize(truncated) - 5)
    bad_proto = yt8m.write_records(
        str(tmp_path / "bad.tfrecord"), [records[0], b"\x0a\xff\xff junk", records[1]]
    )
    values = {**_values(setup, source), "data_pattern": f"{truncated},{bad_proto}"}
    with pytest.raises(
        ValueError, match=rf"^TFRecord file {truncated} is truncated or corrupt: record index 3"
    ):
        yt8m_eval.evaluate(values)
    with pytest.raises(ValueError, match=rf"^{bad_proto} record 1: Invalid protocol message input$"):
        yt8m_eval.evaluate({**values, "data_pattern": bad_proto})
    got = yt8m_eval.evaluate({**values, "skip_bad_records": True})
    assert got["num_videos"] == 5 and got["bad_records"] == 2


def test_write_csv_leaves_nothing_on_failure(tmp_path):
    def broken():
        yield yt8m_eval.Predictions(np.array([b"a"]), np.ones((1, 3), np.float32), np.zeros((1, 3)))
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        yt8m_infer.write_csv(str(tmp_path / "p.csv"), broken())
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_command_lines(setup, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ROOT}
    data = str(tmp_path / "data")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "trainers.yt8m_synthetic",
            f"--output_dir={data}",
            "--level=video",
            "--num_classes=5",
            "--feature_sizes=3,2",
            "--num_videos=12",
            "--num_shards=3",
        ],
        check=True,
        env=env,
        cwd=ROOT,
        capture_output=True,
    )
    assert sorted(os.listdir(data)) == [
        "train-00000-of-00002.tfrecord",
        "train-00001-of-00002.tfrecord",
        "validate-00000-of-00001.tfrecord",
    ]
    out = str(tmp_path / "m.json")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainers.yt8m_eval",
            f"--saved_model={setup['saved']}",
            f"--data_pattern={setup['pattern']}",
            f"--output_json={out}",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "metrics {" in r.stdout and os.path.exists(out)
    csv_path = str(tmp_path / "p.csv")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainers.yt8m_infer",
            f"--model_dir={setup['model_dir']}",
            f"--data_pattern={setup['pattern']}",
            f"--output_file={csv_path}",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "wrote 25 videos" in r.stdout
