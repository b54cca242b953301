"""MultiWorkerMirroredStrategy from TF_CONFIG: two worker processes on localhost train in lock-step."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.mark.slow
def test_two_workers_train_to_identical_weights(tmp_path):
    workers = [f"localhost:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT, TF_CONFIG=json.dumps(tf_config))
        cmd = [
            sys.executable,
            os.path.join(HERE, "trainer_helpers.py"),
            "--model=tiny_mlp",
            "--strategy=multi_worker",
            "--jit_compile=true",  # XLA per replica with collectives across processes
            "--train_steps=30",
            "--batch_size=16",
            "--checkpoint_every=10",
            "--log_every=10",
            "--config=dropout=0.2",
            f"--model_dir={tmp_path / 'run'}",
        ]
        procs.append(
            subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    outputs = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        assert proc.returncode == 0, err[-4000:]
        outputs.append(out)
    summaries = []
    for out in outputs:
        assert "strategy=multi_worker replicas=2 jit_compile=True" in out
        assert "step 30/30" in out
        summaries.append(json.loads(next(s for s in out.splitlines() if s.startswith("summary "))[8:]))
    assert summaries[0]["step"] == summaries[1]["step"] == 30
    assert summaries[0]["weights_checksum"] == summaries[1]["weights_checksum"]
    assert summaries[0]["loss"] == summaries[1]["loss"]
    # Only the chief writes to --model_dir; worker 1's checkpoint copies went to a scratch dir.
    assert os.path.exists(tmp_path / "run" / "ckpt-30.index")
    assert os.path.isdir(tmp_path / "run" / "train")
    assert not os.path.exists(tmp_path / "run" / "trainer.lock")  # the chief's lock went with it
