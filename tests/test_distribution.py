"""MirroredStrategy with XLA on 2 logical CPU devices, against a single-device run on the same data.

Logical devices must be configured before TensorFlow initialises, which pytest (and other tests in the
same worker) may already have done; so the measurements run once in a fresh subprocess (this file run
as a script) that writes a JSON report, and the tests assert on it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from trainers import startup

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STEPS = 6
GLOBAL_BATCH = 16


def _child(report_path: str) -> None:
    sys.path.insert(0, HERE)
    sys.path.insert(0, ROOT)
    from trainers.strategy import make_strategy

    mirrored = make_strategy("mirrored", num_devices=2)  # before TF initialises

    import keras
    import tensorflow as tf
    from trainer_helpers import CountingTask, TinyTask, build_tiny_mlp, tiny_data

    from trainers.loop import TrainLoop
    from zoo.optim import build_optimizer

    x, y = tiny_data(GLOBAL_BATCH * STEPS, 5)
    config = {"units": 8, "weight_decay": 1e-3, "dropout": 0.0, "batch_norm": False}
    keras.utils.set_random_seed(0)
    init = {k: build_tiny_mlp({**config, "batch_norm": k}).get_weights() for k in (False, True)}

    def run(strategy, cfg, steps, clip_norm=None):
        with strategy.scope():
            model = build_tiny_mlp(cfg)
            model.set_weights(init[cfg["batch_norm"]])
            opt = build_optimizer({"optimizer": "sgd", "momentum": 0.9, "learning_rate": 0.1})
        loop = TrainLoop(
            strategy=strategy,
            model=model,
            task=TinyTask(),
            optimizer=opt,
            global_batch_size=GLOBAL_BATCH,
            jit_compile=True,
            clip_norm=clip_norm,
        )
        it = iter(tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH))
        losses = [float(loop.step(it)) for _ in range(steps)]
        return model, loop, losses

    def replica_spread(strategy, model, opt):
        """Max |replica 1 - replica 0| over every model and optimizer variable."""
        worst = 0.0
        for v in list(model.weights) + list(opt.variables):
            parts = [np.asarray(t) for t in strategy.experimental_local_results(v.value)]
            assert len(parts) == strategy.num_replicas_in_sync, (v.path, len(parts))
            worst = max(worst, max(float(np.max(np.abs(p - parts[0]))) for p in parts))
        return worst

    single = tf.distribute.get_strategy()
    report = {"replicas": mirrored.num_replicas_in_sync}
    # 1. No BatchNorm: the mirrored run must reproduce the single-device run (with L2 and global clipping).
    m_single, _, l_single = run(single, config, STEPS, clip_norm=0.5)
    m_mirror, loop, l_mirror = run(mirrored, config, STEPS, clip_norm=0.5)
    report["losses_single"], report["losses_mirrored"] = l_single, l_mirror
    report["weights_max_diff"] = max(
        float(np.max(np.abs(a - b)))
        for a, b in zip(m_single.get_weights(), m_mirror.get_weights(), strict=True)
    )
    report["spread_plain"] = replica_spread(mirrored, m_mirror, loop.optimizer)
    # 2. Synchronized BatchNorm + dropout: replicas (weights, moving statistics, seeds) stay identical.
    bn_cfg = {**config, "batch_norm": True, "dropout": 0.2}
    m_bn, loop_bn, l_bn = run(mirrored, bn_cfg, STEPS)
    report["spread_bn"] = replica_spread(mirrored, m_bn, loop_bn.optimizer)
    report["losses_bn"] = l_bn
    mm = m_bn.get_layer("bn").moving_mean
    report["bn_moving_mean_changed"] = float(np.max(np.abs(np.asarray(mm.numpy()) - init[True][4])))
    # 3. One step from the same weights: the averaged moving mean equals the single-device one.
    one_cfg = {**config, "batch_norm": True}
    s1, _, _ = run(single, one_cfg, 1)
    r1, _, _ = run(mirrored, one_cfg, 1)
    bn_s, bn_r = s1.get_layer("bn"), r1.get_layer("bn")
    report["moving_mean_diff"] = float(np.max(np.abs(bn_s.moving_mean.numpy() - bn_r.moving_mean.numpy())))
    report["moving_var_rel_diff"] = float(
        np.max(
            np.abs(bn_s.moving_variance.numpy() - bn_r.moving_variance.numpy()) / bn_s.moving_variance.numpy()
        )
    )
    # 4. The carry is per replica: each replica's [B / R, 1] counter advanced once per step.
    with mirrored.scope():
        m_c = build_tiny_mlp(config)
        opt_c = build_optimizer({"optimizer": "sgd", "learning_rate": 0.1})
    loop_c = TrainLoop(strategy=mirrored, model=m_c, task=CountingTask(), optimizer=opt_c,
                       global_batch_size=GLOBAL_BATCH)  # fmt: skip
    it = iter(tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH))
    for _ in range(3):
        loop_c.step(it)
    report["carry"] = [t.tolist() for t in np.split(np.asarray(loop_c.carry), mirrored.num_replicas_in_sync)]
    # 5. The trainer on a char LM: recurrent dropout inside keras.layers.RNN's while loop and a per-replica
    # LSTM-state carry, under XLA (zoo-train's options; its command line: test_hyper_conv_mnist_... below).
    from trainers import flags as flags_lib
    from trainers import train as train_lib

    rng = np.random.default_rng(0)
    words = np.array(["the", "cat", "sat", "on", "a", "mat", "dog", "ran"])
    corpus = os.path.join(os.path.dirname(report_path), "corpus.txt")
    with open(corpus, "w") as f:
        f.write(" ".join(rng.choice(words, size=4000)))
    options = flags_lib.resolve(
        {
            "model": "lstm_1000_ptb",  # recurrent dropout 0.1 (XLA on the hyper cells: test_hyper_rnn.py)
            "dataset": "text",
            "data_dir": corpus,
            "config": ["units=16", "sequence_length=10"],
            "batch_size": 8,
            "train_steps": 20,
            "log_every": 10,
            "strategy": "mirrored",
            "num_devices": 2,
            "jit_compile": True,
        }
    )
    lines: list[str] = []
    summary = train_lib.train(options, say=lines.append)
    report["char_lm"] = {"lines": lines, "summary": summary}
    with open(report_path, "w") as f:
        json.dump(report, f)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    dump = tmp / "xla_dump"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", XLA_FLAGS=f"--xla_dump_to={dump}", PYTHONPATH=ROOT)
    proc = subprocess.run(
        [sys.executable, __file__, str(tmp / "report.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    with open(tmp / "report.json") as f:
        result = json.load(f)
    result["xla_modules"] = sorted(os.listdir(dump)) if dump.exists() else []
    return result


def test_two_replicas(report):
    assert report["replicas"] == 2


def test_losses_and_weights_match_single_device(report):
    np.testing.assert_allclose(report["losses_mirrored"], report["losses_single"], rtol=1e-5, atol=1e-6)
    assert report["losses_single"][-1] < report["losses_single"][0]
    assert report["weights_max_diff"] < 1e-5


def test_replicas_stay_identical(report):
    assert report["spread_plain"] == 0.0
    assert report["spread_bn"] == 0.0  # incl. BatchNorm moving statistics and dropout seed state
    assert report["bn_moving_mean_changed"] > 1e-4  # the statistics did move
    assert all(np.isfinite(report["losses_bn"]))


def test_batch_norm_moving_statistics_are_synchronized(report):
    # Mean of equal-sized replica means == global mean; the variance omits the spread of replica means.
    assert report["moving_mean_diff"] < 1e-6
    assert report["moving_var_rel_diff"] < 0.05


def test_carry_is_per_replica(report):
    half = GLOBAL_BATCH // 2
    assert report["carry"] == [[[3.0]] * half, [[3.0]] * half]


def test_xla_compiled_the_per_replica_step(report):
    compiled = [n for n in report["xla_modules"] if "loss_and_grads" in n]
    assert compiled, f"no XLA module for the per-replica step among {report['xla_modules'][:20]}"


@pytest.mark.slow
def test_hyper_conv_mnist_trains_mirrored_with_xla_and_exports(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user runs it
    cmd = [
        sys.executable, "-m", "trainers.train", "--model=hyper_conv_mnist", "--dataset=digits",
        "--train_steps=60", "--batch_size=32", "--log_every=30", "--strategy=mirrored", "--num_devices=2",
        "--jit_compile=true", f"--model_dir={tmp_path / 'run'}", f"--export_dir={tmp_path / 'export'}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    if not startup.has_nvidia_driver():  # no CUDA start-up errors on a CPU-only machine
        assert "cuda" not in proc.stderr.lower(), proc.stderr[-4000:]
    out = proc.stdout
    assert "model=hyper_conv_mnist" in out and "strategy=mirrored replicas=2 jit_compile=True" in out
    assert "step 30/60" in out and "step 60/60" in out
    summary = json.loads(next(s for s in out.splitlines() if s.startswith("summary "))[len("summary ") :])
    assert summary["test"]["accuracy"] > 0.6  # 60 steps; the quickstart's 300 steps reach ~0.98
    assert summary["serving_test"]["accuracy"] == pytest.approx(summary["test"]["accuracy"], abs=1e-6)
    version = tmp_path / "export" / "hyper_conv_mnist" / "1"
    assert (version / "saved_model.pb").exists()
    assert (version / "assets.extra" / "tf_serving_warmup_requests").exists()


@pytest.mark.slow
def test_char_lm_with_recurrent_dropout_and_carry_trains_mirrored(report):
    # Dropout inside keras.layers.RNN's while loop and a per-replica LSTM-state carry, under XLA (trained in
    # the report's process, which has the 2 logical devices).
    lines, summary = report["char_lm"]["lines"], report["char_lm"]["summary"]
    assert any("strategy=mirrored replicas=2 jit_compile=True" in line for line in lines), lines
    assert summary["step"] == 20 and np.isfinite(summary["loss"])
    assert summary["test"]["bpc"] < np.log2(50)  # better than uniform over the vocabulary


if __name__ == "__main__":
    _child(sys.argv[1])
