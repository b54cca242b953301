"""zoo.run_dir: run.json validation and the trainer's lock on --model_dir (one trainer at a time)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from zoo import run_dir


def _write_lock(model_dir, **fields) -> str:
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, run_dir.LOCK_FILE)
    holder = {"pid": 1, "host": socket.gethostname(), "started": "2026-01-01T00:00:00+00:00", **fields}
    with open(path, "w") as f:
        json.dump(holder, f)
    return path


@pytest.fixture
def sleeper():
    """Another live process on this host (a lock holder)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_second_holder_is_refused_naming_the_first_and_the_lock_goes_at_the_end(tmp_path):
    lock = tmp_path / run_dir.LOCK_FILE
    with run_dir.hold_lock(str(tmp_path)) as path:
        assert path == str(lock)
        holder = json.loads(lock.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(run_dir.RunLockedError) as err:
            with run_dir.hold_lock(str(tmp_path)):
                pass
        message = str(err.value)
        assert f"is in use by another trainer (pid {os.getpid()} on host {socket.gethostname()}, " in message
        assert f"started {holder['started']}" in message and str(lock) in message
        assert lock.exists()  # the refused one left the holder's lock alone
    assert not lock.exists()
    with pytest.raises(RuntimeError), run_dir.hold_lock(str(tmp_path)):
        raise RuntimeError("training failed")
    assert not lock.exists()  # removed on error too


def test_the_lock_of_a_live_process_holds_and_a_dead_ones_is_taken_over(tmp_path, sleeper):
    _write_lock(tmp_path, pid=sleeper.pid)
    with pytest.raises(run_dir.RunLockedError, match=f"pid {sleeper.pid} on host"):
        with run_dir.hold_lock(str(tmp_path)):
            pass
    sleeper.kill()
    sleeper.wait()
    with run_dir.hold_lock(str(tmp_path)) as path:
        assert json.loads(open(path).read())["pid"] == os.getpid()


def test_stale_locks_reused_pid_other_boot_and_half_written(tmp_path, sleeper):
    # A live process whose start time differs from the recorded one: the pid was reused.
    _write_lock(tmp_path / "a", pid=sleeper.pid, pid_start="1")
    with run_dir.hold_lock(str(tmp_path / "a")):
        pass
    # Written before the machine rebooted.
    _write_lock(tmp_path / "b", pid=sleeper.pid, boot_id="another-boot")
    if os.path.exists("/proc/sys/kernel/random/boot_id"):
        with run_dir.hold_lock(str(tmp_path / "b")):
            pass
    # A lock without a record: held while young (a trainer is starting), stale once old.
    os.makedirs(tmp_path / "c")
    empty = tmp_path / "c" / run_dir.LOCK_FILE
    empty.write_text("")
    with pytest.raises(run_dir.RunLockedError, match="a trainer that is starting"):
        with run_dir.hold_lock(str(tmp_path / "c")):
            pass
    old = time.time() - 3600
    os.utime(empty, (old, old))
    with run_dir.hold_lock(str(tmp_path / "c")):
        pass


def test_a_lock_from_another_host_is_never_judged_stale(tmp_path):
    _write_lock(tmp_path, pid=2**22 + 12345, host="some-other-host")  # no such pid here
    with pytest.raises(run_dir.RunLockedError, match="pid 4206649 on host some-other-host"):
        with run_dir.hold_lock(str(tmp_path)):
            pass


def test_read_run_validates_before_any_path_is_used(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"model": "m", "assets": ["../../etc/passwd"]}))
    with pytest.raises(
        run_dir.RunDirError, match="lists an asset that cannot be used: asset name '../../etc"
    ):
        run_dir.read_run(str(tmp_path))
    (tmp_path / "run.json").write_text(json.dumps({"model": "m", "config": [1]}))
    with pytest.raises(run_dir.RunDirError, match="'config' is \\[1\\], not a json dict"):
        run_dir.read_run(str(tmp_path))


def test_describe_run_is_json_as_read_back_and_refuses_bad_names():
    info = run_dir.describe_run(
        model="m", config={"shape": (1, 2)}, recipe={}, dataset="d", data_dir="x", assets=["b", "a"]
    )
    assert info["config"]["shape"] == [1, 2] and info["assets"] == ["a", "b"]
    assert info["data_dir"] == os.path.abspath("x")
    with pytest.raises(ValueError, match="asset name 'my vocab.json' contains ' '"):
        run_dir.describe_run(
            model="m", config={}, recipe={}, dataset="d", data_dir=None, assets=["my vocab.json"]
        )
    with pytest.raises(run_dir.RunDirError, match="cannot be written as json"):
        run_dir.describe_run(model="m", config={"x": float("nan")}, recipe={}, dataset="d", data_dir=None)
