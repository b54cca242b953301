"""SavedModel export for TF Serving (exports/): layout, signatures, warmup, models.config, versions."""

import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import descriptor_pb2, message_factory, text_format, wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

import zoo
from exports import export, serving_config, warmup
from trainers import startup
from zoo.run_dir import RunDirError, check_asset_name
from zoo.tasks.image import TASK

MODEL = "hyper_conv_mnist"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    return env


@pytest.fixture(scope="module")
def model():
    import keras

    keras.utils.set_random_seed(1)
    return zoo.get(MODEL)


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("exported"))
    path = export.export_model(model, model_name=MODEL, task=TASK, config={}, base_dir=base)
    return base, path


def _raw(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28, 1), dtype=np.uint8)


def test_layout_and_first_version(exported):
    base, path = exported
    assert path == os.path.join(base, MODEL, "1")
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert os.path.isdir(os.path.join(path, "variables"))
    assert os.path.isfile(os.path.join(path, "assets.extra", "tf_serving_warmup_requests"))
    assert sorted(os.listdir(os.path.join(base, MODEL))) == ["1"]  # no temporary folder left behind


@pytest.mark.slow
def test_saved_model_cli_lists_signature(exported):
    _, path = exported
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    out = subprocess.run(
        [cli, "show", "--all", "--dir", path], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "signature_def['serving_default']" in text
    assert "inputs['images']" in text and "DT_UINT8" in text and "(-1, 28, 28, 1)" in text
    for name in ("probabilities", "classes", "logits"):
        assert f"outputs['{name}']" in text
    assert "tensorflow/serving/predict" in text


@pytest.mark.slow
def test_fresh_process_without_zoo_gives_keras_outputs(exported, model, tmp_path):
    _, path = exported
    raw = _raw(6, seed=3)
    np.save(tmp_path / "in.npy", raw)
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import tensorflow as tf
        loaded = tf.saved_model.load({path!r})
        out = loaded.signatures["serving_default"](images=tf.constant(np.load({str(tmp_path / "in.npy")!r})))
        np.savez({str(tmp_path / "out.npz")!r}, **{{k: v.numpy() for k, v in out.items()}})
        assert not any(m == "zoo" or m.startswith("zoo.") for m in sys.modules), "zoo was imported"
        print("ok")
        """
    )
    env = _env()
    env["PYTHONPATH"] = ""  # zoo cannot even be found from this process
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=180,
    )
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]
    got = np.load(tmp_path / "out.npz")
    want = model(raw.astype(np.float32) / 255.0, training=False).numpy()
    np.testing.assert_allclose(got["logits"], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["probabilities"], tf.nn.softmax(want).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got["classes"], np.argmax(want, axis=1))


def test_warmup_records_replay_against_signatures(exported, model):
    base, path = exported
    warm_path = os.path.join(path, "assets.extra", "tf_serving_warmup_requests")
    logs = warmup.read_requests(warm_path)
    assert 1 <= len(logs) <= 1000
    request = logs[0].predict_log.request
    assert request.model_spec.name == MODEL and request.model_spec.signature_name == "serving_default"
    assert list(request.inputs) == ["images"]
    loaded = tf.saved_model.load(path)
    results = warmup.replay(loaded.signatures, warm_path)
    assert [name for name, _ in results] == ["serving_default"]
    images = tf.make_ndarray(request.inputs["images"])
    assert images.dtype == np.uint8 and images.shape == (2, 28, 28, 1)
    want = model(images.astype(np.float32) / 255.0).numpy()
    np.testing.assert_allclose(results[0][1]["logits"], want, rtol=1e-5, atol=1e-5)
    # A record naming a signature the model lacks is caught (TF Serving would refuse the model).
    bad = warmup.build_requests(MODEL, {"predict_float": {"images": images}})
    bad_path = os.path.join(base, "bad_warmup")
    warmup.write_requests(bad_path, bad)
    with pytest.raises(warmup.WarmupError, match="unknown signature 'predict_float'"):
        warmup.replay(loaded.signatures, bad_path)


def test_evaluate_serving_matches_keras(exported, model):
    _, path = exported
    from zoo.data import images

    x, y = images.load("digits", "test")
    x, y = x[:100], y[:100]
    served = TASK.evaluate_serving(tf.saved_model.load(path), (x, y), batch_size=32)
    keras_acc = TASK.evaluate(model, images.eval_dataset(x, y, 32))["accuracy"]
    assert served["num_examples"] == 100
    assert served["accuracy"] == pytest.approx(keras_acc)
    # The task's own float pipeline is converted back to the exact uint8 pixels.
    served_float = TASK.evaluate_serving(tf.saved_model.load(path), images.eval_dataset(x, y, 32))
    assert served_float["accuracy"] == pytest.approx(keras_acc)


def test_models_config_parses_and_lists_every_model(exported, model):
    base, _ = exported
    with open(os.path.join(base, "models.config")) as f:
        config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    entries = {c.name: c for c in config.model_config_list.config}
    assert entries[MODEL].base_path == os.path.join(os.path.abspath(base), MODEL)
    assert entries[MODEL].model_platform == "tensorflow"
    # A second model, with the path the server sees inside a container.
    export.export_model(
        model, model_name="digits_net", task=TASK, config={}, base_dir=base, serving_base_path="/models"
    )
    with open(os.path.join(base, "models.config")) as f:
        config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    got = {c.name: c.base_path for c in config.model_config_list.config}
    assert got == {MODEL: f"/models/{MODEL}", "digits_net": "/models/digits_net"}
    assert not [n for n in os.listdir(base) if n.startswith(".")]  # no temporary config files
    # A later export without serving_base_path keeps the container root (a polling server keeps working).
    export.export_model(model, model_name="digits_net", task=TASK, config={}, base_dir=base, verify=False)
    with open(os.path.join(base, "models.config")) as f:
        config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    paths = {c.base_path for c in config.model_config_list.config}
    assert paths == {f"/models/{MODEL}", "/models/digits_net"}


def test_versions_are_next_free_and_explicit(model, tmp_path):
    base = str(tmp_path)
    kw = dict(model_name="m", task=TASK, config={}, base_dir=base, verify=False)
    assert os.path.basename(export.export_model(model, **kw)) == "1"
    assert os.path.basename(export.export_model(model, **kw, version=7)) == "7"
    assert os.path.basename(export.export_model(model, **kw)) == "8"  # after the largest, not in a gap
    with pytest.raises(export.ExportError, match="version 7 of 'm' already exists"):
        export.export_model(model, **kw, version=7)
    with pytest.raises(export.ExportError, match="model_name='a/b' is not valid"):
        export.export_model(model, **{**kw, "model_name": "a/b"})
    assert sorted(os.listdir(os.path.join(base, "m"))) == ["1", "7", "8"]
    assert serving_config.version_dirs(os.path.join(base, "m")) == [1, 7, 8]


def test_failed_export_leaves_nothing_visible(model, tmp_path, monkeypatch):
    base = str(tmp_path)
    export.export_model(model, model_name="m", task=TASK, config={}, base_dir=base, verify=False)
    with open(os.path.join(base, "models.config")) as f:
        before = f.read()
    real = export._write_saved_model

    def write_then_fail(m, functions, path, *resources):
        real(m, functions, path, *resources)  # a complete SavedModel in the temporary folder ...
        raise OSError("disk full")  # ... and then the export fails

    monkeypatch.setattr(export, "_write_saved_model", write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        export.export_model(model, model_name="m", task=TASK, config={}, base_dir=base)
    assert os.listdir(os.path.join(base, "m")) == ["1"]
    with open(os.path.join(base, "models.config")) as f:
        assert f.read() == before


class _BadWarmupTask:
    """The image task with a warmup request whose input key is wrong."""

    name = "image_classification"

    def serving_functions(self, model, config):
        return TASK.serving_functions(model, config)

    def warmup_inputs(self, model, config):
        return {"serving_default": {"pixels": np.zeros((1, 28, 28, 1), np.uint8)}}


def test_mismatched_warmup_is_rejected_before_writing(model, tmp_path):
    with pytest.raises(warmup.WarmupError, match=r"inputs \['pixels'\]; the signature takes \['images'\]"):
        export.export_model(model, model_name="m", task=_BadWarmupTask(), config={}, base_dir=str(tmp_path))
    assert not os.path.exists(tmp_path / "m") or os.listdir(tmp_path / "m") == []
    fn = TASK.serving_functions(model, {})["serving_default"].get_concrete_function()
    with pytest.raises(warmup.WarmupError, match="dtype float32; the signature takes uint8"):
        warmup.check_inputs("serving_default", fn, {"images": np.zeros((1, 28, 28, 1), np.float32)})
    with pytest.raises(warmup.WarmupError, match=r"shape \(1, 32, 32, 1\)"):
        warmup.check_inputs("serving_default", fn, {"images": np.zeros((1, 32, 32, 1), np.uint8)})


def _batching_parameters_class():
    """BatchingParameters (tensorflow_serving/servables/tensorflow/session_bundle_config.proto), rebuilt
    from its field numbers: the pip package does not ship that proto."""
    fdp = descriptor_pb2.FileDescriptorProto(
        name="zoo_test_batching.proto",
        package="zoo_test",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    msg = fdp.message_type.add(name="BatchingParameters")
    label, opt, rep = descriptor_pb2.FieldDescriptorProto, 1, 3
    for number, name in [
        (1, "max_batch_size"),
        (2, "batch_timeout_micros"),
        (3, "max_enqueued_batches"),
        (4, "num_batch_threads"),
    ]:
        msg.field.add(
            name=name,
            number=number,
            label=opt,
            type=label.TYPE_MESSAGE,
            type_name=".google.protobuf.Int64Value",
        )
    msg.field.add(name="allowed_batch_sizes", number=6, label=rep, type=label.TYPE_INT64)
    msg.field.add(name="pad_variable_length_inputs", number=7, label=opt, type=label.TYPE_BOOL)
    from google.protobuf import descriptor_pool

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("zoo_test.BatchingParameters"))


def test_batching_parameters_file(model, tmp_path):
    export.export_model(
        model,
        model_name="m",
        task=TASK,
        config={},
        base_dir=str(tmp_path),
        verify=False,
        batching_parameters={"max_batch_size": 32, "allowed_batch_sizes": [8, 16, 32]},
    )
    with open(tmp_path / "batching_parameters.txt") as f:
        params = text_format.Parse(f.read(), _batching_parameters_class()())
    assert params.max_batch_size.value == 32 and params.batch_timeout_micros.value == 1000
    assert params.num_batch_threads.value == 4 and list(params.allowed_batch_sizes) == [8, 16, 32]
    with pytest.raises(
        ValueError, match="must be positive, strictly increasing and end with max_batch_size=32"
    ):
        serving_config.batching_parameters_text(max_batch_size=32, allowed_batch_sizes=[8, 16])


@pytest.mark.slow
def test_command_line_exports_a_trainer_checkpoint(model, tmp_path, run_cli):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(run_dir), max_to_keep=1).save(10)
    (run_dir / "run.json").write_text(json.dumps({"model": MODEL, "config": {}, "assets": ["vocab.json"]}))
    (tmp_path / "elsewhere.json").write_text("{}")
    os.symlink(tmp_path / "elsewhere.json", run_dir / "vocab.json")
    out = tmp_path / "exported"
    command = [
        sys.executable,
        "-m",
        "exports.export",
        f"--model_dir={run_dir}",
        f"--export_dir={out}",
        "--serving_base_path=/models",
        "--batching",
        "--noverify",
    ]
    kw = dict(capture_output=True, text=True, env=_env(), cwd=REPO, timeout=300)
    done = run_cli(export._define_flags, export.main, ["zoo-export", *command[3:]])  # the refusal: in-process
    assert done.returncode == 2 and "vocab.json is a symbolic link" in done.stderr, done.stderr[-3000:]
    assert not out.exists()
    os.remove(run_dir / "vocab.json")
    (run_dir / "vocab.json").write_text('{"a": 0}')
    done = subprocess.run(command, **kw)
    assert done.returncode == 0, done.stderr[-3000:]
    if not startup.has_nvidia_driver():  # no CUDA start-up errors from zoo-export on a CPU machine
        assert "cuda" not in done.stderr.lower(), done.stderr[-3000:]
    assert (out / MODEL / "1" / "assets.extra" / "vocab.json").read_text() == '{"a": 0}'
    assert f"exported {MODEL} to {out / MODEL / '1'}" in done.stdout
    loaded = tf.saved_model.load(str(out / MODEL / "1"))
    raw = _raw(3, seed=9)
    got = loaded.signatures["serving_default"](images=tf.constant(raw))["logits"].numpy()
    np.testing.assert_allclose(got, model(raw.astype(np.float32) / 255.0).numpy(), rtol=1e-5, atol=1e-5)
    assert os.path.isfile(out / "batching_parameters.txt")
    assert f'base_path: "/models/{MODEL}"' in (out / "models.config").read_text()


def test_restore_for_export_errors(model, tmp_path):
    with pytest.raises(RunDirError, match="--model_dir=.*nope.* does not exist"):
        export.restore_for_export(str(tmp_path / "nope"))
    with pytest.raises(RunDirError, match=r"no run.json naming the model; pass --model"):
        export.restore_for_export(str(tmp_path))
    with pytest.raises(RunDirError, match="holds no checkpoint"):
        export.restore_for_export(str(tmp_path), model=MODEL)
    prefix = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    restored, name, task, config = export.restore_for_export(str(tmp_path), model=MODEL, checkpoint=prefix)
    assert name == MODEL and task is TASK and config["z_dim"] == 4
    for a, b in zip(restored.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_publish_never_overwrites_a_racing_export(tmp_path):
    model_dir = tmp_path / "m"
    (model_dir / "3").mkdir(parents=True)
    (model_dir / "3" / "saved_model.pb").write_bytes(b"other exporter")
    tmp = model_dir / ".tmp-export-x"
    tmp.mkdir()
    (tmp / "saved_model.pb").write_bytes(b"ours")
    with pytest.raises(export.ExportError, match="version 3 .* already exists"):
        export._publish(str(tmp), str(model_dir), 3)
    assert (model_dir / "3" / "saved_model.pb").read_bytes() == b"other exporter"
    assert export._publish(str(tmp), str(model_dir), None) == str(model_dir / "4")
    assert (model_dir / "4" / "saved_model.pb").read_bytes() == b"ours" and not tmp.exists()


# ------------------------------------------------------------------ issue 9.2: models.config after a move
def _config_paths(base):
    with open(os.path.join(base, "models.config")) as f:
        config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    return {c.name: c.base_path for c in config.model_config_list.config}


def test_models_config_follows_a_moved_export_folder(model, tmp_path):
    kw = dict(task=TASK, config={}, verify=False)
    old, new = tmp_path / "old", tmp_path / "new"
    export.export_model(model, model_name="a", base_dir=str(old), **kw)
    export.export_model(model, model_name="b", base_dir=str(old), **kw)
    os.rename(old, new)
    export.export_model(model, model_name="b", base_dir=str(new), **kw)
    paths = _config_paths(new)
    assert sorted(paths) == ["a", "b"]
    for name, path in paths.items():  # every entry is a folder the server can load from
        assert path == str(new / name) and serving_config.version_dirs(path), path
    # A chosen root (a container mount) is kept across a move and later exports ...
    mounted, moved = tmp_path / "mounted", tmp_path / "moved"
    export.export_model(model, model_name="a", base_dir=str(mounted), serving_base_path="/models", **kw)
    os.rename(mounted, moved)
    export.export_model(model, model_name="b", base_dir=str(moved), **kw)
    assert _config_paths(moved) == {"a": "/models/a", "b": "/models/b"}
    assert serving_config.recorded_serving_base_path(str(moved)) == "/models"
    # ... until another is given; the local folder given explicitly follows the folder when it moves.
    export.export_model(model, model_name="b", base_dir=str(moved), serving_base_path=str(moved), **kw)
    assert serving_config.recorded_serving_base_path(str(moved)) is None
    with pytest.raises(ValueError, match=r"serving_base_path='/models\\n' is not valid"):
        serving_config.models_config_text(str(moved), "/models\n")


# ------------------------------------------------------------------ issue 9.4 and 8.3: assets
@pytest.mark.parametrize(
    "name, problem",
    [
        ("my vocab.json", "contains ' '"),
        ("a/b.json", "contains '/'"),
        ("a\\b", "contains '\\\\'"),
        ("..", "starts with '.'"),
        (".vocab.json", "starts with '.'"),
        ("-vocab", "starts with '-'"),
        ("run.json", "is reserved"),
        ("Checkpoint", "is reserved"),
        ("ckpt-10.index", "is reserved"),
        ("CKPT-1.data-00000-of-00001", "is reserved"),
        ("train", "is reserved"),
        (warmup.WARMUP_FILE, "is reserved"),
        ("v" * 256, "is 256 characters long"),
        ("", "is empty"),
        (3, "is a int, not a string"),
    ],
)
def test_asset_name_rule_shared_by_trainer_and_exporter(name, problem):
    with pytest.raises(ValueError, match=re.escape(f"asset name {name!r} {problem}: an asset name is")):
        check_asset_name(name)


def test_good_asset_names_and_export_refuses_bad_ones(model, tmp_path):
    for name in ("vocab.json", "vocab_v2.txt", "ckpt.json", "3"):
        check_asset_name(name)
    with pytest.raises(export.ExportError, match="asset name 'my vocab.json' contains ' '"):
        export.export_model(
            model, model_name="m", task=TASK, config={}, base_dir=str(tmp_path), assets={"my vocab.json": b""}
        )
    assert not (tmp_path / "m").exists()


def _open_fifo_writer(path):
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:  # no reader is blocked on it
        pass


def _run_dir_with_assets(path, assets):
    path.mkdir()
    (path / "run.json").write_text(json.dumps({"model": MODEL, "config": {}, "assets": assets}))
    return path


def test_run_assets_are_checked_before_reading_and_only_regular_files_copied(tmp_path, monkeypatch):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not for the export")
    run = _run_dir_with_assets(tmp_path / "run", ["vocab.json", "../secret.txt"])
    (run / "vocab.json").write_bytes(b"{}")
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda p, *a, **k: opened.append(p) or real_open(p, *a, **k))
    with pytest.raises(ValueError, match=r"run.json lists an asset .*: asset name '../secret.txt' contains"):
        export.read_run_assets(str(run))
    assert opened == []  # refused before any asset file was opened
    monkeypatch.undo()
    run = _run_dir_with_assets(tmp_path / "linked", ["vocab.json"])
    os.symlink(secret, run / "vocab.json")
    with pytest.raises(export.ExportError, match="vocab.json is a symbolic link; only regular files"):
        export.read_run_assets(str(run))
    os.remove(run / "vocab.json")
    os.mkfifo(run / "vocab.json")  # would block a plain open() until a writer comes
    # Should the reader ever block, a writer comes after 10 s and the test fails instead of hanging.
    watchdog = threading.Timer(10, _open_fifo_writer, [str(run / "vocab.json")])
    watchdog.start()
    start = time.monotonic()
    try:
        with pytest.raises(export.ExportError, match="vocab.json is not a regular file"):
            export.read_run_assets(str(run))
    finally:
        watchdog.cancel()
    assert time.monotonic() - start < 5, "opening a pipe blocked until a writer came"
    os.remove(run / "vocab.json")
    with pytest.raises(export.ExportError, match="vocab.json does not exist"):
        export.read_run_assets(str(run))
    (run / "vocab.json").write_bytes(b'{"a": 0}')
    assert export.read_run_assets(str(run)) == {"vocab.json": b'{"a": 0}'}
    run = _run_dir_with_assets(tmp_path / "odd", "vocab.json")
    with pytest.raises(ValueError, match="run.json: 'assets' is 'vocab.json', not a json list"):
        export.read_run_assets(str(run))
    # A --asset path on the command line is the user's own choice: a link there is followed.
    os.symlink(secret, tmp_path / "link.txt")
    assert export.read_asset_file(str(tmp_path / "link.txt"), "--asset", follow_symlinks=True) == (
        b"not for the export"
    )


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporary_folders_of_killed_exports_are_removed_running_ones_kept(model, tmp_path, monkeypatch):
    base = str(tmp_path)
    model_dir = tmp_path / "m"
    # An export killed after writing its SavedModel (kill -9: no Python cleanup ran) ...
    dead = _dead_pid()
    monkeypatch.setattr(export.os, "getpid", lambda: dead)
    monkeypatch.setattr(export.shutil, "rmtree", lambda *a, **k: None)
    monkeypatch.setattr(export, "_verify", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        export.export_model(model, model_name="m", task=TASK, config={}, base_dir=base)
    monkeypatch.undo()
    (killed,) = os.listdir(model_dir)
    assert killed.startswith(".tmp-export-") and os.path.isfile(model_dir / killed / "saved_model.pb")
    # ... and folders of exports running now: another process on this machine, this process, another
    # machine, and an older naming; the last two only count as stale when a day old.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tag = export._owner_tag()
        keep = [
            f".tmp-export-{sleeper.pid}-{tag}-abc",
            os.path.basename(tempfile.mkdtemp(prefix=export._temp_prefix(), dir=model_dir)),
            ".tmp-export-42-otherhost-abc",
            ".tmp-export-k2j3h4",
        ]
        old = [".tmp-export-43-otherhost-abc", ".tmp-export-x9y8z7", f".tmp-export-{sleeper.pid}-{tag}-old"]
        for name in keep[:1] + keep[2:] + old:
            (model_dir / name).mkdir()
        day_ago = time.time() - export.STALE_TEMP_AGE_S - 60
        for name in old:
            os.utime(model_dir / name, (day_ago, day_ago))
        path = export.export_model(model, model_name="m", task=TASK, config={}, base_dir=base, verify=False)
        assert sorted(os.listdir(model_dir)) == sorted([os.path.basename(path), *keep])
    finally:
        sleeper.kill()
        sleeper.wait()
    # Once that other process has ended, its folder is stale too.
    assert export.remove_stale_temps(str(model_dir)) == [str(model_dir / keep[0])]


# ------------------------------------------------------------------ issue 8.2 / 9 item 3: module imports
def test_exports_modules_import_at_the_top():
    import ast

    local = []
    for name in sorted(os.listdir(os.path.join(REPO, "exports"))):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(REPO, "exports", name)) as f:
            tree = ast.parse(f.read())
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                local += [
                    f"{name}:{node.lineno}"
                    for node in ast.walk(fn)
                    if isinstance(node, ast.Import | ast.ImportFrom)
                ]
    assert local == []


# ------------------------------------------------------------------ warmup records are replayed verbatim
class _ExampleTask:
    """A task served from serialized tf.Examples whose labels are optional, like YouTube-8M's: warmup
    requests are label-less records, as inference traffic is."""

    name = "example_task"

    def serving_functions(self, model, config):
        spec = {
            "id": tf.io.FixedLenFeature([], tf.string),
            "x": tf.io.FixedLenFeature([4], tf.float32),
            "labels": tf.io.VarLenFeature(tf.int64),
        }

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="example_bytes")])
        def serving_default(example_bytes):
            parsed = tf.io.parse_example(example_bytes, spec)
            return {"video_id": parsed["id"], "scores": model(parsed["x"])}

        return {"serving_default": serving_default}

    def warmup_inputs(self, model, config):
        records = [
            tf.train.Example(
                features=tf.train.Features(
                    feature={
                        "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"warmup{i}".encode()])),
                        "x": tf.train.Feature(float_list=tf.train.FloatList(value=[i, 1.0, 2.0, 3.0])),
                    }
                )
            ).SerializeToString()
            for i in range(2)
        ]
        return {"serving_default": {"example_bytes": np.array(records, dtype=object)}}


def test_label_less_warmup_records_are_written_and_replayed_verbatim(tmp_path):
    import keras

    net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    task = _ExampleTask()
    path = export.export_model(net, model_name="ex", task=task, config={}, base_dir=str(tmp_path))
    warm_path = os.path.join(path, warmup.ASSETS_EXTRA, warmup.WARMUP_FILE)
    (log,) = warmup.read_requests(warm_path)
    sent = task.warmup_inputs(net, {})["serving_default"]["example_bytes"]
    assert list(tf.make_ndarray(log.predict_log.request.inputs["example_bytes"])) == list(sent)
    ((name, outputs),) = warmup.replay(tf.saved_model.load(path).signatures, warm_path)
    assert name == "serving_default" and list(outputs["video_id"]) == [b"warmup0", b"warmup1"]
