"""zoo/tasks/video.py: data checks, pipelines, loss, metrics, evaluation and serving signatures."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from exports import export, warmup
from zoo.data import yt8m
from zoo.losses import yt8m_cross_entropy
from zoo.metrics.yt8m import evaluate as reference_evaluate
from zoo.models.yt8m import record_layout
from zoo.tasks import get_task
from zoo.tasks.video import TASK, split_files

C = 10
LAYOUT = {"num_classes": C, "feature_size": 8, "feature_sizes": [6, 2]}
MODELS = {
    "frame": (
        "yt8m_dbof",
        {**LAYOUT, "max_frames": 6, "sample_frames": 4, "cluster_size": 16, "hidden_size": 8},
    ),
    "video": ("yt8m_hinge", LAYOUT),
}


def write_splits(directory, frame_level, num_videos=60, seed=0):
    """train-*/validate-* shards of one synthetic data set (shared class prototypes)."""
    preset = yt8m.FRAME_LEVEL if frame_level else yt8m.VIDEO_LEVEL
    layout = preset.replace(num_classes=C, feature_sizes=(6, 2))
    paths = yt8m.write_synthetic(
        os.path.join(directory, ".all.tfrecord"), num_videos, layout, seed=seed, num_shards=3, frames=(1, 9)
    )
    for i, p in enumerate(sorted(paths)):
        os.replace(p, os.path.join(directory, f"train-{i}.tfrecord" if i < 2 else "validate-0.tfrecord"))
    return directory


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("yt8m")
    return {level: write_splits(str(root / level), level == "frame") for level in ("frame", "video")}


def _setup(level, data_dirs, batch=8):
    name, over = MODELS[level]
    config = {**zoo.get_spec(name).default_config(), **over}
    model = zoo.get(name, **over)
    data = TASK.build_data(f"yt8m_{level}", data_dirs[level], batch, config, {"eval_batch_size": 7}, seed=0)
    return model, config, data


def test_registered_task_and_data_checks(data_dirs, tmp_path):
    assert get_task("video_classification") is TASK
    with pytest.raises(ValueError, match="--dataset='mnist'.*yt8m_frame, yt8m_video"):
        TASK.check_data("mnist", data_dirs["frame"])
    with pytest.raises(ValueError, match="--data_dir is required"):
        TASK.check_data("yt8m_frame", None)
    with pytest.raises(ValueError, match=r"--data_dir='.*nothing-\*\.tfrecord'.*no TFRecord files match"):
        TASK.check_data("yt8m_frame", str(tmp_path / "nothing-*.tfrecord"))
    with pytest.raises(ValueError, match="holds no \\*.tfrecord files"):
        TASK.check_data("yt8m_frame", str(tmp_path))
    files = split_files(data_dirs["frame"])
    assert [os.path.basename(f) for f in files["train"]] == ["train-0.tfrecord", "train-1.tfrecord"]
    assert [os.path.basename(f) for f in files["eval"]] == ["validate-0.tfrecord"]
    pattern = split_files(os.path.join(data_dirs["frame"], "train-*.tfrecord"))
    assert len(pattern["train"]) == 2 and pattern["eval"] == []


def test_build_data_batches(data_dirs):
    model, config, data = _setup("frame", data_dirs)
    assert data.sizes == {"train": 40, "eval": 20}
    inputs, labels = next(iter(data.train))
    # no string id in the XLA training step; uint8 codes (dequantised by the step) and their mask
    assert set(inputs) == {"features", "num_frames", "feature_mask"}
    assert inputs["features"].shape == (8, 6, 8) and labels.shape == (8, C) and labels.dtype == tf.float32
    assert inputs["features"].dtype == tf.uint8 and inputs["feature_mask"].shape == (8, 6, 2)
    assert int(tf.reduce_max(inputs["num_frames"])) <= 6
    ev_inputs, _ = next(iter(data.eval))
    assert ev_inputs["id"].dtype == tf.string and ev_inputs["features"].shape[0] == 7
    with pytest.raises(
        ValueError, match="--dataset='yt8m_video' does not fit a frame-level model; use 'yt8m_frame'"
    ):
        TASK.build_data("yt8m_video", data_dirs["video"], 8, config, {}, 0)


EQUIVALENCE_MODELS = {
    "yt8m_frame_logistic": {},
    "yt8m_dbof": {"sample_frames": 4, "cluster_size": 16, "hidden_size": 8, "seed": 3},
    "yt8m_lstm": {"lstm_units": 4, "lstm_layers": 1},
    "yt8m_moe_stats": {"top_k": 2},
}


def test_uint8_training_batches_give_the_float_pipelines_outputs_and_losses(tmp_path):
    # The training split carries uint8 codes that the step dequantises: every frame-level model gives the
    # outputs and losses of the float pipeline (same batches), eagerly and in XLA, with the same sampling
    # seed in training mode. Records with lists of unequal length, no frames and too many frames included.
    write_splits(str(tmp_path), frame_level=True, num_videos=30, seed=1)
    layout = yt8m.FRAME_LEVEL.replace(num_classes=C, feature_sizes=(6, 2), max_frames=6)
    rng = np.random.default_rng(0)

    def codes(t, d):
        return rng.integers(0, 256, (t, d), dtype=np.uint8)

    odd = [("unequal", codes(4, 6), codes(2, 2)), ("empty", codes(0, 6), codes(0, 2))]
    odd += [("long", codes(9, 6), codes(9, 2)), ("audio_longer", codes(1, 6), codes(5, 2))]
    yt8m.write_records(
        str(tmp_path / "train-9.tfrecord"),
        [yt8m.frame_example(i, [1], {"rgb": r, "audio": a}, layout) for i, r, a in odd],
    )
    for name, over in EQUIVALENCE_MODELS.items():
        over = {**LAYOUT, "max_frames": 6, **over}
        config = {**zoo.get_spec(name).default_config(), **over}
        data = TASK.build_data("yt8m_frame", str(tmp_path), 8, config, {}, seed=0)
        floats = yt8m.dataset(
            split_files(str(tmp_path))["train"],
            8,
            layout,
            shuffle=True,
            repeat=True,
            drop_remainder=True,
            seed=0,
        )
        models = []
        for _ in range(2):  # the same weights and sampling seed
            keras.utils.set_random_seed(0)
            models.append(zoo.get(name, **over))
        xla_forward = tf.function(
            lambda m, b, t: TASK.forward(m, b, (), training=t).per_example_loss, jit_compile=True
        )
        for (codes_in, labels), (float_in, float_labels) in zip(
            data.train.take(5), floats.take(5), strict=True
        ):
            np.testing.assert_array_equal(labels, float_labels)
            assert codes_in["features"].dtype == tf.uint8
            for training in (False, True):
                out = TASK.forward(models[0], (codes_in, labels), (), training=training)
                want = models[1]({k: float_in[k] for k in ("features", "num_frames")}, training=training)
                np.testing.assert_allclose(out.outputs["predictions"], want, atol=1e-6, err_msg=name)
                want_loss = TASK._loss_fn()(labels, tf.cast(want, tf.float32))
                np.testing.assert_allclose(
                    out.per_example_loss, want_loss, rtol=1e-6, atol=1e-6, err_msg=name
                )
                if not training and name == "yt8m_dbof":  # the XLA step (the trainer's on GPUs and TPUs)
                    xla = xla_forward(models[0], (codes_in, labels), False)
                    np.testing.assert_allclose(xla, want_loss, rtol=1e-6, atol=1e-6, err_msg=name)


def test_forward_losses_and_training_metric(data_dirs):
    for level in ("frame", "video"):
        model, _, data = _setup(level, data_dirs)
        batch = next(iter(data.train))
        out = TASK.forward(model, batch, (), training=False)
        preds = np.asarray(out.outputs["predictions"], np.float64)
        y = np.asarray(batch[1], np.float64)
        if level == "video":  # yt8m_hinge: sum_c max(0, 1 - (2y - 1) s)
            want = np.maximum(0, 1 - (2 * y - 1) * preds).sum(1)
        else:
            want = -(y * np.log(preds + 1e-5) + (1 - y) * np.log(1 - preds + 1e-5)).sum(1)
        np.testing.assert_allclose(np.asarray(out.per_example_loss), want, rtol=1e-5)
        metrics = TASK.metrics()
        TASK.update_metrics(metrics, batch, out.outputs)
        hits = y[np.arange(len(y)), preds.argmax(1)].mean()
        assert float(metrics["hit_at_one"].result()) == pytest.approx(hits)


def _all_predictions(model, dataset):
    preds, labels, ids = [], [], []
    for inputs, y in dataset:
        preds.append(np.asarray(model({k: inputs[k] for k in model.input}, training=False)))
        labels.append(y.numpy())
        ids.append(inputs["id"].numpy())
    return np.concatenate(preds), np.concatenate(labels), np.concatenate(ids)


@pytest.mark.parametrize("level", ["frame", "video"])
def test_evaluate_matches_reference_metrics(data_dirs, level):
    model, _, data = _setup(level, data_dirs)
    got = TASK.evaluate(model, data.eval)
    preds, labels, _ = _all_predictions(model, data.eval)
    want = reference_evaluate(preds, labels)
    for key in ("hit_at_one", "perr", "gap", "map"):
        assert got[key] == pytest.approx(want[key], abs=1e-12)
    assert got["num_examples"] == 20
    if level == "frame":
        assert got["loss"] == pytest.approx(float(np.mean(yt8m_cross_entropy(labels, preds))), rel=1e-5)


@pytest.mark.parametrize("level", ["frame", "video"])
def test_serving_signatures_in_a_saved_model(data_dirs, level, tmp_path):
    model, config, data = _setup(level, data_dirs)
    fns = TASK.serving_functions(model, config)
    assert set(fns) == {"serving_default", "serving_features"}
    archive = keras.export.ExportArchive()  # what exports.export does
    archive.track(model)
    for name, fn in fns.items():
        archive.add_endpoint(name, fn)
    path = str(tmp_path / "sm")
    archive.write_out(path, verbose=False)
    loaded = tf.saved_model.load(path)

    preds, labels, ids = _all_predictions(model, data.eval)
    records = [r.numpy() for r in tf.data.TFRecordDataset(split_files(data_dirs[level])["eval"])]
    out = loaded.signatures["serving_default"](example_bytes=tf.constant(records))
    assert out["video_id"].numpy().tolist() == ids.tolist()
    assert out["class_indexes"].shape == (20, C) and out["class_indexes"].dtype == tf.int32
    order = np.argsort(-preds, axis=1, kind="stable")
    np.testing.assert_allclose(
        out["predictions"].numpy(), np.take_along_axis(preds, order, 1), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(out["class_indexes"].numpy()[:, 0], order[:, 0])

    served = TASK.evaluate_serving(loaded, data.eval)
    direct = TASK.evaluate(model, data.eval)
    for key in ("hit_at_one", "perr", "gap", "map"):
        assert served[key] == pytest.approx(direct[key], abs=1e-6)

    warm = TASK.warmup_inputs(model, config)
    assert set(warm) == set(fns)
    for name, request in warm.items():
        result = loaded.signatures[name](**{k: tf.constant(v) for k, v in request.items()})
        assert result["predictions"].shape == (2, C)
    assert [
        v.decode()
        for v in loaded.signatures["serving_default"](
            example_bytes=tf.constant(warm["serving_default"]["example_bytes"])
        )["video_id"].numpy()
    ] == ["warmup0", "warmup1"]


def test_a_directory_of_evaluation_files_only_is_not_trained_on(tmp_path):
    (tmp_path / "validate-00000-of-00001.tfrecord").write_bytes(b"")
    with pytest.raises(ValueError, match="holds only evaluation files"):
        split_files(str(tmp_path))


def _inference_records(layout, rng):
    """Records as inference traffic sends them: no labels key, an empty list, and one with labels."""
    if layout.frame_level:

        def make(vid, labels, frames):
            feats = {
                n: rng.integers(0, 256, (frames, s), dtype=np.uint8)
                for n, s in zip(layout.feature_names, layout.feature_sizes, strict=True)
            }
            return yt8m.frame_example(vid, labels, feats, layout)

    else:

        def make(vid, labels, frames):
            feats = {
                n: rng.normal(size=s) for n, s in zip(layout.feature_names, layout.feature_sizes, strict=True)
            }
            return yt8m.video_example(vid, labels, feats, layout)

    return {"none": make("a", None, 3), "empty": make("b", [], 2), "labelled": make("c", [1, C + 5], 4)}


@pytest.mark.parametrize("level", ["frame", "video"])
def test_exported_serving_default_serves_records_without_labels(data_dirs, level, tmp_path):
    model, config, _ = _setup(level, data_dirs)
    layout = record_layout(config)
    path = export.export_model(
        model, model_name=MODELS[level][0], task=TASK, config=config, base_dir=str(tmp_path)
    )
    serve = tf.saved_model.load(path).signatures["serving_default"]
    records = _inference_records(layout, np.random.default_rng(0))
    for batch in (["none"], ["empty"], ["none", "empty"], ["none", "labelled", "empty"]):
        out = serve(example_bytes=tf.constant([records[k] for k in batch]))
        assert out["video_id"].numpy().tolist() == [
            {"none": b"a", "empty": b"b", "labelled": b"c"}[k] for k in batch
        ]
        assert out["class_indexes"].shape == (len(batch), C)  # labels (even one >= num_classes) are ignored
    # Warmup requests look like inference traffic: no labels.
    logs = warmup.read_requests(os.path.join(path, "assets.extra", "tf_serving_warmup_requests"))
    default = [log for log in logs if log.predict_log.request.model_spec.signature_name == "serving_default"]
    assert default
    for log in default:
        for raw in tf.make_ndarray(log.predict_log.request.inputs["example_bytes"]).ravel():
            if level == "frame":
                context = tf.train.SequenceExample.FromString(raw).context.feature
            else:
                context = tf.train.Example.FromString(raw).features.feature
            assert layout.labels_key not in context and layout.id_key in context


def test_the_loss_is_the_config_value(data_dirs):
    model, config, data = _setup("video", data_dirs)  # yt8m_hinge
    assert not hasattr(model, "zoo_loss")
    batch = next(iter(data.train))
    y = np.asarray(batch[1], np.float64)
    probs = zoo.get("yt8m_logistic", **LAYOUT)  # a sigmoid head, trained with whatever the config says
    preds = np.asarray(probs({"features": batch[0]["features"]}), np.float64)
    TASK.build_data("yt8m_video", data_dirs["video"], 8, {**config, "loss": "hinge"}, {}, seed=0)
    hinge = np.asarray(TASK.forward(probs, batch, (), training=False).per_example_loss)
    np.testing.assert_allclose(hinge, np.maximum(0, 1 - (2 * y - 1) * preds).sum(1), rtol=1e-5)
    TASK.build_data("yt8m_video", data_dirs["video"], 8, {**config, "loss": "cross_entropy"}, {}, seed=0)
    ce = np.asarray(TASK.forward(probs, batch, (), training=False).per_example_loss)
    want = -(y * np.log(preds + 1e-5) + (1 - y) * np.log(1 - preds + 1e-5)).sum(1)
    np.testing.assert_allclose(ce, want, rtol=1e-5)
    with pytest.raises(ValueError, match="loss='mse'; valid: cross_entropy, hinge"):
        TASK.build_data("yt8m_video", data_dirs["video"], 8, {**config, "loss": "mse"}, {}, seed=0)
    with pytest.raises(ValueError, match="must be the model's full config"):
        TASK.serving_functions(model, {})


def test_a_truncated_shard_is_named_or_skipped_with_the_recipe_key(tmp_path):
    directory = write_splits(str(tmp_path), frame_level=False)
    shard = os.path.join(directory, "train-1.tfrecord")
    data = open(shard, "rb").read()
    with open(shard, "wb") as f:
        f.write(data[:-7])
    name, over = MODELS["video"]
    config = {**zoo.get_spec(name).default_config(), **over}
    with pytest.raises(ValueError, match=rf"TFRecord file {shard} is truncated or corrupt: record index \d+"):
        TASK.build_data("yt8m_video", directory, 8, config, {}, seed=0)
    assert "skip_bad_records" in TASK.recipe_keys
    data = TASK.build_data("yt8m_video", directory, 8, config, {"skip_bad_records": True}, seed=0)
    assert 0 < data.sizes["train"] < 40 and data.size_unit == "videos"
    for _ in data.train.take(6):  # more than one pass over the readable records
        pass
    assert int(data.info["bad_record_counter"].numpy()) >= 1
    with pytest.raises(ValueError, match="skip_bad_records='yes' must be true or false"):
        TASK.build_data("yt8m_video", directory, 8, config, {"skip_bad_records": "yes"}, seed=0)
