"""Video decoding at 1 fps, InceptionV3 features, PCA + quantisation into frame-level records (§3.3)."""

import dataclasses
import multiprocessing
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

av = pytest.importorskip("av", reason="PyAV is not installed (pip install -e '.[video]' or '.[test]')")

from zoo.data import video_decode, yt8m, yt8m_extract  # noqa: E402
from zoo.data import yt8m_features as F  # noqa: E402

SIZE = 75  # InceptionV3's smallest input: keeps the random-weight network fast


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    video_decode.write_synthetic_video(str(folder / "a.mp4"), seconds=3.5, fps=10, seed=0)
    video_decode.write_synthetic_video(str(folder / "b.mkv"), seconds=2.0, fps=8, seed=1)
    return folder


@pytest.fixture(scope="module")
def network():
    tf.keras.utils.set_random_seed(0)
    return yt8m_extract.frame_network(weights=None, image_size=SIZE)


def test_decode_at_one_frame_per_second_to_the_expected_count(clips):
    frames = video_decode.decode_frames(str(clips / "a.mp4"), size=SIZE)  # 3.5 s: frames at 0, 1, 2, 3 s
    assert frames.shape == (4, SIZE, SIZE, 3) and frames.dtype == np.uint8
    assert len({f.tobytes() for f in frames}) == 4  # the shapes move: four different frames
    assert video_decode.decode_frames(str(clips / "a.mp4"), fps=2.0, size=32).shape[0] == 7  # 0, 0.5 .. 3
    assert video_decode.decode_frames(str(clips / "a.mp4"), max_frames=2, size=32).shape[0] == 2
    assert video_decode.decode_frames(str(clips / "b.mkv"), size=32).shape[0] == 2


def test_resize_keeps_the_aspect_and_crops_the_centre():
    image = np.zeros((60, 120, 3), np.uint8)
    image[:, :30, 0] = 255  # left quarter red, middle half green, right quarter blue
    image[:, 30:90, 1] = 255
    image[:, 90:, 2] = 255
    out = video_decode.resize_and_crop(av.VideoFrame.from_ndarray(image, format="rgb24"), 30)
    assert out.shape == (30, 30, 3)
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), [0, 255, 0], atol=4)  # centre: green only


def test_bad_video_files_give_an_error_naming_the_file(tmp_path, network):
    garbage, empty = tmp_path / "garbage.mp4", tmp_path / "empty.mp4"
    garbage.write_bytes(b"this is not a video" * 10)
    empty.write_bytes(b"")
    for path in (garbage, empty):
        with pytest.raises(video_decode.VideoDecodeError, match=f"video file {path}: "):
            video_decode.decode_frames(str(path))
    good = video_decode.write_synthetic_video(str(tmp_path / "good.mp4"), seconds=1.5, fps=10)
    items = yt8m_extract.items_from_directory(str(tmp_path), "", 5)
    options = yt8m_extract.ExtractOptions(weights=None, image_size=SIZE, pca_dim=2, num_classes=5)
    with pytest.raises(video_decode.VideoDecodeError, match="empty.mp4"):
        yt8m_extract.extract(items, str(tmp_path / "out"), options, network=network)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    skipping = yt8m_extract.ExtractOptions(**{**options.__dict__, "skip_bad_videos": True})
    out = yt8m_extract.extract(items, str(tmp_path / "out"), skipping, network=network)
    assert out["num_videos"] == 1 and len(out["skipped"]) == 2 and "garbage.mp4" in " ".join(out["skipped"])
    assert pathlib.Path(good).exists()


def _official_parse(path: str, dim: int) -> dict[str, tuple[list[int], np.ndarray]]:
    """The starter code's frame reader: parse_single_sequence_example, decode_raw to uint8, Dequantize."""
    out = {}
    for raw in tf.data.TFRecordDataset(path):
        context, lists = tf.io.parse_single_sequence_example(
            raw,
            context_features={
                "id": tf.io.FixedLenFeature([], tf.string),
                "labels": tf.io.VarLenFeature(tf.int64),
            },
            sequence_features={"rgb": tf.io.FixedLenSequenceFeature([], tf.string)},
        )
        codes = tf.reshape(tf.io.decode_raw(lists["rgb"], tf.uint8), [-1, dim]).numpy()
        out[context["id"].numpy().decode()] = (context["labels"].values.numpy().tolist(), F.dequantize(codes))
    return out


def test_extraction_writes_records_both_readers_parse_identically(clips, network, tmp_path):
    options = yt8m_extract.ExtractOptions(
        weights=None, image_size=SIZE, pca_dim=6, num_classes=5, batch_size=3
    )
    items = yt8m_extract.items_from_directory(str(clips), "1;3", 5)
    out = yt8m_extract.extract(items, str(tmp_path / "out"), options, network=network, pca_save_path=None)
    assert out["num_videos"] == 2 and out["num_frames"] == 6
    layout = out["layout"]
    assert layout.feature_names == ("rgb",) and layout.feature_sizes == (6,)
    # the frame features by hand: decode, InceptionV3, PCA (whitened, not normalised), quantise
    expected = {}
    for item in items:
        feats = yt8m_extract.frame_features(network, video_decode.decode_frames(item.path, size=SIZE), 3)
        expected[item.video_id] = F.quantize(out["pca"].transform(feats, normalize=False))
    official = _official_parse(out["files"][0], 6)
    ((x, y),) = list(yt8m.frame_dataset(out["files"], 4, layout, normalize=False))
    for row, vid in enumerate(x["id"].numpy()):
        labels, frames = official[vid.decode()]
        n = int(x["num_frames"][row])
        assert labels == [1, 3] and y.numpy()[row].tolist() == [0, 1, 0, 1, 0]
        np.testing.assert_array_equal(x["features"].numpy()[row, :n], frames)
        np.testing.assert_array_equal(frames, F.dequantize(expected[vid.decode()]))
    # the same PCA given as the release's files reproduces the records
    pca = out["pca"]
    np.save(tmp_path / "mean.npy", pca.mean[:, None])
    np.save(tmp_path / "eigenvals.npy", pca.eigenvalues[:, None])
    np.save(tmp_path / "eigenvecs.npy", pca.components.T)
    again = yt8m_extract.extract(items, str(tmp_path / "again"), options, network=network, pca=str(tmp_path))
    assert _official_parse(again["files"][0], 6).keys() == official.keys()
    for vid, (_, frames) in _official_parse(again["files"][0], 6).items():
        np.testing.assert_array_equal(frames, official[vid][1])


def test_video_csv_and_label_errors(tmp_path):
    csv = tmp_path / "videos.csv"
    csv.write_text("a.mp4,3;1\n\nsub/b.mkv,\n")
    items = yt8m_extract.read_video_csv(str(csv), 4)
    assert [(i.video_id, i.labels) for i in items] == [("a", (1, 3)), ("b", ())]
    assert items[1].path == str(tmp_path / "sub" / "b.mkv")
    csv.write_text("a.mp4,3;9\n")
    with pytest.raises(ValueError, match=r"videos.csv:1: labels \[9\] are outside \[0, 4\)"):
        yt8m_extract.read_video_csv(str(csv), 4)
    with pytest.raises(ValueError, match="image_size must be >= 75"):
        yt8m_extract.frame_network(None, 32)


@pytest.mark.slow
def test_extract_command_line(clips, tmp_path, run_cli):
    args = [
        sys.executable,
        "-m",
        "trainers.yt8m_extract",
        f"--videos={clips}",
        "--labels=2",
        "--num_classes=4",
        f"--output_dir={tmp_path}/out",
        "--weights=none",
        f"--image_size={SIZE}",
        "--pca_dim=4",
        f"--pca_save={tmp_path}/pca.npz",
    ]
    cwd = str(pathlib.Path(__file__).parents[1])
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=cwd)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "wrote 2 videos (6 frames) to 1 files" in result.stdout
    assert F.load_pca(f"{tmp_path}/pca.npz").num_components == 4
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.mp4").write_bytes(b"junk")
    args[3] = f"--videos={tmp_path}/bad"  # (from a worker process: test_worker_pool_... and ..._crash_...)
    from trainers import yt8m_extract as tool  # the error exit: the tool's main in this process

    result = run_cli(tool._define_flags, tool.main, ["zoo-yt8m-extract", *args[3:]])
    assert result.returncode == 2 and f"yt8m_extract: error: video file {tmp_path}/bad/x.mp4" in result.stderr
    assert "Traceback" not in result.stderr


def test_random_weight_networks_are_the_same_for_the_same_seed(network):
    # Separate extraction runs (train and validate) with --weights=none must embed with one network.
    keras_seeded = yt8m_extract.frame_network(weights=None, image_size=SIZE, seed=0)
    other = yt8m_extract.frame_network(weights=None, image_size=SIZE, seed=1)
    first = network.get_weights()[0]
    np.testing.assert_array_equal(keras_seeded.get_weights()[0], first)
    assert not np.array_equal(other.get_weights()[0], first)


def _record_bytes(out) -> list[bytes]:
    return [pathlib.Path(f).read_bytes() for f in out["files"]]


@pytest.mark.slow
def test_worker_pool_writes_the_same_records_in_input_order(clips, network, tmp_path):
    # Decoding in 2 spawned processes: byte-identical files, bad videos skipped and counted in input order.
    (tmp_path / "c_garbage.mp4").write_bytes(b"not a video" * 10)
    a, b = yt8m_extract.items_from_directory(str(clips), "1", 5)
    bad = yt8m_extract.VideoItem(str(tmp_path / "c_garbage.mp4"), "bad")
    items = [dataclasses.replace(a, video_id="first"), bad, b, dataclasses.replace(a, video_id="last")]
    options = yt8m_extract.ExtractOptions(
        weights=None, image_size=SIZE, pca_dim=3, num_classes=5, skip_bad_videos=True
    )
    pooled = yt8m_extract.ExtractOptions(**{**options.__dict__, "num_workers": 2})
    one = yt8m_extract.extract(items, str(tmp_path / "one"), options, network=network, num_shards=2)
    two = yt8m_extract.extract(items, str(tmp_path / "two"), pooled, network=network, num_shards=2)
    assert one["num_videos"] == two["num_videos"] == 3 and one["num_frames"] == two["num_frames"] == 10
    assert two["skipped"] == one["skipped"] and "c_garbage.mp4" in two["skipped"][0]
    assert _record_bytes(two) == _record_bytes(one)
    ids = [
        tf.train.SequenceExample.FromString(r.numpy()).context.feature["id"].bytes_list.value[0]
        for f in two["files"]
        for r in tf.data.TFRecordDataset(f)
    ]
    assert ids == [b"first", b"last", b"b"]  # input order, round robin: first, last to shard 0; b to 1
    zero = yt8m_extract.ExtractOptions(**{**options.__dict__, "num_workers": 0})
    with pytest.raises(ValueError, match="--num_workers must be >= 1.*got 0"):
        yt8m_extract.extract(items, str(tmp_path / "x"), zero, network=network)


@pytest.mark.slow
def test_worker_crash_or_interrupt_leaves_no_output_files(clips, network, tmp_path, monkeypatch):
    # A worker that dies: an error naming the video file, no output (not even a temporary file).
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "crashing_decoder.py").write_text(
        textwrap.dedent("""
        import os
        from zoo.data import video_decode

        _decode = video_decode.decode_frames

        def decode_frames(path, *args):
            if path.endswith("crash.mp4"):
                os._exit(3)  # the worker process dies, as when FFmpeg crashes or the OOM killer strikes
            return _decode(path, *args)
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))  # spawned workers get this sys.path
    import crashing_decoder

    monkeypatch.setattr(video_decode, "decode_frames", crashing_decoder.decode_frames)
    items = yt8m_extract.items_from_directory(str(clips), "", 5)
    items = [yt8m_extract.VideoItem(str(tmp_path / "crash.mp4"), "crash"), *items]
    options = yt8m_extract.ExtractOptions(
        weights=None, image_size=SIZE, pca_dim=3, num_classes=5, skip_bad_videos=True, num_workers=2
    )
    pca = yt8m_extract.extract(items[1:], str(tmp_path / "fit"), options, network=network)["pca"]
    with pytest.raises(
        yt8m_extract.DecodeWorkerError, match=f"video file {tmp_path}/crash.mp4: a decoding worker"
    ):
        yt8m_extract.extract(items, str(tmp_path / "out"), options, network=network, pca=pca)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    # Ctrl-C after the first video is written: the staged files are removed and the workers are gone.

    def interrupt(message: str) -> None:
        if message.startswith("wrote "):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        yt8m_extract.extract(
            items[1:], str(tmp_path / "out"), options, network=network, pca=pca, log=interrupt
        )
    assert not list((tmp_path / "out").iterdir())
    assert not multiprocessing.active_children()
