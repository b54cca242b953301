"""Checkpoints and faults: a killed trainer resumes where it stopped; a NaN loss stops training."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from trainer_helpers import TINY_SPEC, TinyTask

from trainers import flags as flags_lib
from trainers import train as train_lib
from zoo import run_dir

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LOG_EVERY = 500


def _command(model_dir: str, steps: int) -> list[str]:
    return [
        sys.executable,
        os.path.join(HERE, "trainer_helpers.py"),
        "--model=tiny_mlp",
        f"--train_steps={steps}",
        "--checkpoint_every=100",
        f"--log_every={LOG_EVERY}",
        f"--model_dir={model_dir}",
    ]


@pytest.fixture
def tiny_train(zoo_train, monkeypatch):
    """``trainer_helpers.py ARGS`` in this process: ``zoo-train`` with ``tiny_mlp`` registered for the test
    only (other tests enumerate the registry) and TinyTask as its task."""
    from zoo import registry

    monkeypatch.setitem(registry._REGISTRY, TINY_SPEC.name, TINY_SPEC)
    return lambda args: zoo_train(args, task=TinyTask())


def _summary(stdout: str) -> dict:
    lines = [s for s in stdout.splitlines() if s.startswith("summary ")]
    assert lines, stdout[-3000:]
    return json.loads(lines[-1][len("summary ") :])


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tmp_path, tiny_train):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    steps = 1500
    killed_dir = str(tmp_path / "killed")
    proc = subprocess.Popen(
        _command(killed_dir, steps), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.time() + 240
    # The CheckpointManager's state file is written (atomically) after the checkpoint's files.
    while not os.path.exists(os.path.join(killed_dir, "checkpoint")):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert "summary " not in out.decode()  # it really died mid-run

    resumed = subprocess.run(
        _command(killed_dir, steps), env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    line = next(s for s in resumed.stdout.splitlines() if s.startswith("resumed from step "))
    start = int(line.split()[3])
    assert 100 <= start < steps and start % 100 == 0
    first_progress = next(s for s in resumed.stdout.splitlines() if s.startswith("step "))
    assert first_progress.startswith(f"step {(start // LOG_EVERY + 1) * LOG_EVERY}/{steps}")
    got = _summary(resumed.stdout)
    assert got["step"] == steps

    # Weights, optimizer state and the data iterator's position were restored: the resumed run ends with
    # the same weights as an uninterrupted one (the same command, run in this process).
    full = tiny_train(_command(str(tmp_path / "full"), steps)[2:])
    assert full.returncode == 0, full.stderr[-3000:]
    want = _summary(full.stdout)
    assert got["weights_checksum"] == pytest.approx(want["weights_checksum"], rel=1e-6, abs=1e-6)
    assert got["test"]["accuracy"] == pytest.approx(want["test"]["accuracy"], abs=1e-6)
    # Rerunning a finished run: test_trainer.py::test_rerunning_a_finished_run_says_so_and_reports_no_nan.


@pytest.mark.slow
def test_second_trainer_in_a_model_dir_is_refused_and_a_killed_ones_lock_is_taken_over(tmp_path, tiny_train):
    # The first trainer is another process (its pid in the lock); the second and third run in this one.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    model_dir = str(tmp_path / "run")
    lock = os.path.join(model_dir, run_dir.LOCK_FILE)
    first = subprocess.Popen(
        _command(model_dir, 10**7), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.time() + 240
        while not os.path.exists(os.path.join(model_dir, "run.json")):  # written while holding the lock
            assert first.poll() is None, first.communicate()[1][-3000:]
            assert time.time() < deadline, "the first trainer never wrote run.json"
            time.sleep(0.05)
        second = tiny_train(_command(model_dir, 10)[2:])
        assert second.returncode == 2, second.stderr[-3000:]
        errors = [s for s in second.stderr.splitlines() if s.startswith("error: ")]
        assert len(errors) == 1 and "Traceback" not in second.stderr
        assert (
            f"is in use by another trainer (pid {first.pid} on host {socket.gethostname()}, started "
            in errors[0]
        )
        assert first.poll() is None  # the first one keeps training
    finally:
        first.kill()
        first.communicate()
    assert os.path.exists(lock)  # a killed trainer leaves its lock behind ...
    third = tiny_train(_command(model_dir, 5)[2:])
    assert third.returncode == 0, third.stderr[-3000:]  # ... which the next trainer takes over
    assert "took over the lock of a trainer that no longer runs" in third.stderr
    assert not os.path.exists(lock)  # and removes when it ends


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    opts = flags_lib.resolve(
        {
            "model": "tiny_mlp",
            "train_steps": 20,
            "checkpoint_every": 5,
            "model_dir": str(tmp_path),
            "config": ["nan_at_batch=7"],
            "jit_compile": True,
        },
        spec=TINY_SPEC,
        task=TinyTask(),
    )
    with pytest.raises(
        train_lib.NonFiniteLossError, match=r"non-finite loss nan at step 8; training stopped"
    ):
        train_lib.train(opts, task=TinyTask(), say=lambda s: None)
    latest = tf.train.latest_checkpoint(str(tmp_path))
    assert latest.endswith("ckpt-5")
    reader = tf.train.load_checkpoint(latest)
    floats = [n for n, dt in reader.get_variable_to_dtype_map().items() if dt.is_floating]
    assert floats and all(np.all(np.isfinite(reader.get_tensor(n))) for n in floats)


class _PyFunctionTask(TinyTask):
    """A train pipeline with a py_function, whose iterator state tf.data cannot save."""

    def build_data(self, *args, **kwargs):
        data = super().build_data(*args, **kwargs)
        data.train = data.train.map(lambda x, y: (tf.py_function(lambda t: t, [x], tf.float32), y)).map(
            lambda x, y: (tf.ensure_shape(x, [16, 4]), y)
        )
        return data


def test_unsaveable_iterator_falls_back_to_model_and_optimizer(tmp_path):
    def run(steps):
        lines = []
        opts = flags_lib.resolve(
            {"model": "tiny_mlp", "train_steps": steps, "checkpoint_every": 5, "model_dir": str(tmp_path)},
            spec=TINY_SPEC,
        )
        summary = train_lib.train(opts, task=_PyFunctionTask(), say=lines.append)
        return summary, lines

    summary, lines = run(10)
    assert summary["step"] == 10
    assert any(s.startswith("warning: cannot checkpoint the data iterator") for s in lines)
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-10")
    summary, lines = run(12)
    assert "resumed from step 10" in "\n".join(lines) and summary["step"] == 12
