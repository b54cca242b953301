"""The handwriting task: data checks, bucketed batches, NLL, training, SavedModel signatures, end to end."""

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
from zoo.data.iam_ondb import write_line_strokes, write_task_file
from zoo.data.strokes import StrokeStats
from zoo.layers.mdn import mixture_nll
from zoo.models.handwriting import set_stroke_stats, stroke_stats
from zoo.tasks import get_task, recipe_keys
from zoo.tasks.handwriting import STATS_ASSET, TASK, bucket_length, eval_dataset, train_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"units": 16, "hyper_units": 8, "recurrent_dropout": 0.0, "output_dropout": 0.0}


def _lines(n, seed=0, low=40, high=90):
    """Raw lines: random-walk offsets with a pen lift every ~15 rows."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        t = int(rng.integers(low, high))
        rows = np.concatenate([rng.normal(3.0, 10.0, (t, 2)), (rng.random((t, 1)) < 0.07)], axis=1)
        out.append(rows.astype(np.float32))
    return out


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)


def test_task_is_registered_and_checks_its_data(tmp_path):
    assert get_task("handwriting") is TASK
    assert TASK.datasets == ("iam_ondb", "hershey")
    assert {"max_scale", "max_length", "bucket_lengths", "num_lines"} <= set(recipe_keys(TASK))
    with pytest.raises(ValueError, match="--dataset='digits'.*valid: iam_ondb, hershey"):
        TASK.check_data("digits", None)
    with pytest.raises(ValueError, match="hershey is embedded.*leave it out"):
        TASK.check_data("hershey", str(tmp_path))
    with pytest.raises(ValueError, match="needs --data_dir"):
        TASK.check_data("iam_ondb", None)
    with pytest.raises(FileNotFoundError, match="no lineStrokes/ directory"):
        TASK.check_data("iam_ondb", str(tmp_path))
    TASK.check_data("hershey", None)


def test_train_batches_are_bucketed_masked_scaled_and_deterministic():
    lines = _lines(12)
    ds = train_dataset(lines, 4, buckets=(50, 70), max_length=80, max_scale=0.0, seed=3)
    lengths = {len(x) for x in lines}
    seen = []
    for strokes, mask in ds.take(8):
        strokes, mask = strokes.numpy(), mask.numpy()
        assert strokes.shape[0] == 4 and strokes.shape[1] in (50, 70, 80)
        real = mask.sum(axis=1).astype(int)
        assert set(real) <= lengths | {80}  # whole lines, or an 80-row window of a longer one
        assert np.all(real <= strokes.shape[1]) and np.all(real > (0 if strokes.shape[1] == 50 else 50))
        for row, n in zip(strokes, real, strict=True):
            assert not row[n:].any()  # zero padding after the line
        seen.append(strokes)
    again = [
        s.numpy()
        for s, _ in train_dataset(lines, 4, buckets=(50, 70), max_length=80, max_scale=0.0, seed=3).take(8)
    ]
    for a, b in zip(seen, again, strict=True):
        np.testing.assert_array_equal(a, b)
    # ±10% scaling (A.3.5): each line's offsets times one factor per axis in [0.9, 1.1]; pen bits untouched
    short = [x[:30] for x in lines[:4]]
    (scaled, mask), *_ = train_dataset(short, 4, buckets=(30,), max_length=30, max_scale=0.1, seed=0).take(1)
    scaled = scaled.numpy()
    for row in scaled:
        match = [
            x
            for x in short
            if np.array_equal(x[:, 2], row[:, 2])
            and np.allclose(x[:, :2] / row[:, :2], (x[0, :2] / row[0, :2]), rtol=1e-4)
        ]
        assert match, "a scaled row is not a per-axis multiple of an input line"
        factor = row[0, :2] / match[0][0, :2]
        assert np.all(np.abs(factor - 1.0) <= 0.1 + 1e-6) and not np.allclose(factor, 1.0)


def test_eval_batches_cover_every_line_once():
    lines = _lines(7)
    batches = list(eval_dataset(lines, 3, buckets=(60, 100)))
    assert len(batches) == 3
    real = sorted(int(n) for _, m in batches for n in m.numpy().sum(axis=1) if n > 0)
    assert real == sorted(len(x) for x in lines)
    assert bucket_length(61, (60, 100)) == 100 and bucket_length(300, (60, 100)) == 512


STATS = StrokeStats((3.0, 3.0), (10.0, 10.0))


def _model(name="hyper_lstm_900_iam"):
    keras.utils.set_random_seed(0)
    model = zoo.get(name, **TINY)
    set_stroke_stats(model, STATS)
    return model


def test_evaluate_is_the_exact_nll_per_line():
    """Padding, masking and batching do not change a line's NLL: it equals the NLL of the line run alone."""
    lines = _lines(5)
    model = _model()
    result = TASK.evaluate(model, eval_dataset(lines, 2, buckets=(100,)))
    norm = model.get_layer("normalize")
    per_line = []
    for x in lines:
        start = norm.denormalize(np.array([[0.0, 0.0, 1.0]], np.float32))
        inputs = np.concatenate([np.asarray(start), x[:-1]])[None]
        zeros = {f"state_{k}": np.zeros((1, s), "float32") for k, s in enumerate([16, 16, 8, 8])}
        y = model({"strokes": inputs, **zeros})["mixture"]
        per_line.append(float(mixture_nll(norm.normalize(x[None]), y, reduction="sequence")[0]))
    assert result["nll"] == pytest.approx(np.mean(per_line), rel=1e-4)
    assert result["nll_per_point"] == pytest.approx(np.sum(per_line) / sum(len(x) for x in lines), rel=1e-4)


def test_a_few_training_steps_lower_the_nll():
    lines = _lines(8, seed=1)
    model = _model("lstm_900_iam")
    batch = next(iter(train_dataset(lines, 8, buckets=(90,), max_length=90, max_scale=0.0)))
    optimizer = keras.optimizers.Adam(1e-2)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(TASK.forward(model, batch, (), training=True).per_example_loss)
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    losses = [float(step()) for _ in range(25)]
    assert losses[-1] < losses[0] - 0.3, losses


def test_prepare_model_stores_the_training_statistics():
    data = TASK.build_data("hershey", None, 4, {}, {"num_lines": 12, "min_length": 10}, seed=0)
    stats = data.info["stats"]
    assert json.loads(data.assets[STATS_ASSET]) == stats.to_dict()
    assert data.size_unit == "lines" and data.sizes["train"] + data.sizes["eval"] + data.sizes["test"] == 12
    model = zoo.get("lstm_900_iam", **TINY)
    TASK.prepare_model(model, data)
    got = stroke_stats(model)  # float32 weights
    np.testing.assert_allclose(got.mean + got.std, stats.mean + stats.std, rtol=1e-6)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from exports.export import export_model

    model = _model()
    base = str(tmp_path_factory.mktemp("exported"))
    path = export_model(
        model, model_name="hw", task=TASK, config={}, base_dir=base, assets={STATS_ASSET: b"{}"}
    )
    return model, path


def test_exported_signatures_in_a_process_without_zoo(exported, tmp_path):
    model, path = exported
    fns = TASK.serving_functions(model, {})
    want_step = {
        k: v.numpy()
        for k, v in fns["serving_default"](**TASK.warmup_inputs(model, {})["serving_default"]).items()
    }
    np.savez(tmp_path / "want.npz", **want_step)
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import tensorflow as tf
        m = tf.saved_model.load({path!r})
        assert sorted(m.signatures) == ["initial_state", "sample", "score", "serving_default"]
        init = m.signatures["initial_state"](batch_size=tf.constant(1))
        states = {{k: v for k, v in init.items() if k.startswith("state_")}}
        step = m.signatures["serving_default"](offsets=init["start"], **states)
        want = np.load({str(tmp_path / "want.npz")!r})
        for k in want.files:
            np.testing.assert_allclose(step[k].numpy(), want[k], rtol=1e-4, atol=1e-5)
        assert abs(float(tf.reduce_sum(step["pi"])) - 1.0) < 1e-4 and bool(tf.reduce_all(step["sigma_x"] > 0))
        args = dict(batch_size=tf.constant(2), num_points=tf.constant(37), temperature=tf.constant(0.7),
                    bias=tf.constant(0.5), seed=tf.constant(4))
        a = m.signatures["sample"](**args)["strokes"].numpy()
        b = m.signatures["sample"](**args)["strokes"].numpy()
        assert a.shape == (2, 37, 3) and np.isfinite(a).all(), a.shape
        assert set(np.unique(a[..., 2])) <= {{0.0, 1.0}}
        np.testing.assert_array_equal(a, b)  # same seed, same line
        c = m.signatures["sample"](**{{**args, "seed": tf.constant(5)}})["strokes"].numpy()
        assert not np.array_equal(a, c)
        nll = m.signatures["score"](strokes=tf.constant(a), mask=tf.ones((2, 37)))["nll"].numpy()
        assert nll.shape == (2,) and np.isfinite(nll).all()
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


def test_warmup_requests_replay_and_serving_score_matches_evaluate(exported):
    from exports import warmup

    model, path = exported
    loaded = tf.saved_model.load(path)
    names = [
        name
        for name, _ in warmup.replay(
            loaded.signatures, os.path.join(path, "assets.extra", warmup.WARMUP_FILE)
        )
    ]
    assert sorted(names) == ["initial_state", "sample", "score", "serving_default"]
    data = eval_dataset(_lines(3), 2, buckets=(100,))
    served = TASK.evaluate_serving(loaded, data)
    assert served["nll"] == pytest.approx(TASK.evaluate(model, data)["nll"], rel=1e-4)


TINY_FLAGS = [
    "--config=units=16",
    "--config=hyper_units=8",
    "--config=max_length=120",
    "--config=bucket_lengths=[120]",
    "--batch_size=4",
    "--train_steps=3",
    "--log_every=1",
]


@pytest.mark.slow
def test_zoo_train_on_embedded_hershey_exports_and_samples(tmp_path, zoo_train, run_cli):
    # zoo-train and zoo-sample in this process (their subprocess tests: test_distribution.py, test_sample.py)
    from trainers import sample

    run, exp, figs = str(tmp_path / "run"), str(tmp_path / "exp"), str(tmp_path / "figs")
    done = zoo_train(
        [
            "--model=hyper_lstm_900_iam",
            "--dataset=hershey",
            "--config=num_lines=12",
            "--config=min_length=100",
            *TINY_FLAGS,
            f"--model_dir={run}",
            f"--export_dir={exp}",
        ]  # fmt: skip
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.split("summary ", 1)[1])
    assert np.isfinite(summary["eval"]["nll"]) and summary["step"] == 3
    assert summary["serving_test"]["nll"] == pytest.approx(summary["test"]["nll"], rel=1e-3)
    assert os.path.isfile(os.path.join(run, STATS_ASSET))
    assert os.path.isfile(os.path.join(exp, "hyper_lstm_900_iam", "1", "assets.extra", STATS_ASSET))
    argv = ["zoo-sample", f"--model_dir={run}", "--length=40", f"--figures_dir={figs}",
            f"--histogram_model_dirs={run}"]  # fmt: skip
    done = run_cli(sample.define_flags, sample.main, argv)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in (
        "sample_seed0.svg",
        "sample_seed0.png",
        "fig7_handwriting_dynamics.png",
        "table5_nll_curves.png",
    ):
        assert os.path.getsize(os.path.join(figs, name)) > 500, name


@pytest.mark.slow
def test_iam_ondb_files_in_the_real_layout_train_with_the_same_command(tmp_path, zoo_train):
    data = tmp_path / "iam"
    sets = {"trainset": ["a01-000u", "a01-001"], "testset_v": ["b02-010x"], "testset_t": ["c03-003a"],
            "testset_f": ["d04-012"]}  # fmt: skip
    rng = np.random.default_rng(0)
    for task_file, line_sets in sets.items():
        write_task_file(str(data / f"{task_file}.txt"), line_sets)
        for line_set in line_sets:
            writer, number = line_set.split("-")[0], line_set.split("-")[1][:3]
            for k in range(1, 4):
                strokes = [
                    np.cumsum(rng.normal(4.0, 8.0, (int(rng.integers(10, 30)), 2)), 0) + 1000
                    for _ in range(5)
                ]
                path = data / "lineStrokes" / writer / f"{writer}-{number}" / f"{line_set}-{k:02d}.xml"
                write_line_strokes(str(path), strokes)
    run = str(tmp_path / "run")
    done = zoo_train(
        [
            "--model=lstm_900_iam",
            "--dataset=iam_ondb",
            f"--data_dir={data}",
            "--config=min_length=40",
            *TINY_FLAGS,
            f"--model_dir={run}",
        ]  # fmt: skip
    )
    assert done.returncode == 0, done.stderr[-3000:]
    start = next(line for line in done.stdout.splitlines() if line.startswith("zoo-train "))
    assert "task=handwriting dataset=iam_ondb" in start and "[train=12 eval=3 test=0]" in start, start
    summary = json.loads(done.stdout.split("summary ", 1)[1])
    assert np.isfinite(summary["eval"]["nll"])
    assert StrokeStats.load(os.path.join(run, STATS_ASSET)).std[0] > 0
