"""YouTube-8M readers/writers: shapes, exact dequantisation, sampling, and errors naming file + record."""

import numpy as np
import pytest
import tensorflow as tf

from zoo.data import yt8m
from zoo.data import yt8m_features as F

SMALL = {"feature_names": ("rgb", "audio"), "feature_sizes": (6, 2), "num_classes": 5}


def _frames(rng, t, size):
    return rng.integers(0, 256, size=(t, size), dtype=np.uint8)


def _expected_frames(rgb, audio, max_frames):
    x = np.concatenate([F.dequantize(rgb), F.dequantize(audio)], axis=1)[:max_frames]
    x = F.l2_normalize(x.astype(np.float64), axis=1)
    out = np.zeros((max_frames, x.shape[1]))
    out[: x.shape[0]] = x
    return out


@pytest.fixture
def small_frame_file(tmp_path):
    rng = np.random.default_rng(0)
    videos = []
    for v, (t_rgb, t_audio, labels) in enumerate([(4, 4, [1, 3]), (9, 8, []), (2, 2, [4])]):
        videos.append((f"v{v}", labels, _frames(rng, t_rgb, 6), _frames(rng, t_audio, 2)))
    path = str(tmp_path / "small.tfrecord")
    yt8m.write_records(path, (yt8m.frame_example(i, lab, {"rgb": r, "audio": a}) for i, lab, r, a in videos))
    return path, videos


def test_synthetic_frame_level_reads_back_as_300_x_1152(tmp_path):
    paths = yt8m.write_synthetic(
        str(tmp_path / "train.tfrecord"), 10, True, num_classes=20, seed=0, num_shards=2, frames=(3, 12)
    )
    assert [p.rsplit("/", 1)[1] for p in paths] == [
        "train-00000-of-00002.tfrecord",
        "train-00001-of-00002.tfrecord",
    ]
    inputs, labels = next(iter(yt8m.frame_dataset(str(tmp_path), 4, num_classes=20)))
    assert inputs["features"].shape == (4, 300, 1152) and inputs["features"].dtype == tf.float32
    assert labels.shape == (4, 20) and inputs["num_frames"].dtype == tf.int32
    n = inputs["num_frames"].numpy()
    feats = inputs["features"].numpy()
    assert ((3 <= n) & (n <= 12)).all()
    np.testing.assert_allclose(np.linalg.norm(feats[0, : n[0]], axis=1), 1.0, rtol=1e-5)
    assert (feats[0, n[0] :] == 0).all()
    total = sum(int(x["id"].shape[0]) for x, _ in yt8m.frame_dataset(paths, 3, num_classes=20))
    assert total == 10


def test_exact_dequantisation_truncation_and_labels(small_frame_file):
    path, videos = small_frame_file
    ((inputs, labels),) = list(yt8m.frame_dataset(path, 3, max_frames=5, **SMALL))
    assert inputs["id"].numpy().tolist() == [b"v0", b"v1", b"v2"]
    assert inputs["num_frames"].numpy().tolist() == [4, 5, 2]  # min over features, capped at max_frames
    np.testing.assert_array_equal(labels.numpy(), [[0, 1, 0, 1, 0], [0] * 5, [0, 0, 0, 0, 1]])
    for b, (_, _, rgb, audio) in enumerate(videos):
        t = inputs["num_frames"].numpy()[b]
        expected = _expected_frames(rgb[:t], audio[:t], 5)
        np.testing.assert_allclose(inputs["features"].numpy()[b], expected, atol=1e-6)


def test_frame_sampling_uses_only_real_frames_and_is_seeded(small_frame_file):
    path, _ = small_frame_file
    kw = dict(max_frames=5, num_samples=16, seed=7, **SMALL)
    ((a, _),) = list(yt8m.frame_dataset(path, 3, **kw))
    ((b, _),) = list(yt8m.frame_dataset(path, 3, **kw))
    ((full, _),) = list(yt8m.frame_dataset(path, 3, max_frames=5, **SMALL))
    np.testing.assert_array_equal(a["features"].numpy(), b["features"].numpy())
    assert a["features"].shape == (3, 16, 8) and a["num_frames"].numpy().tolist() == [16] * 3
    for v in range(3):
        real = full["features"].numpy()[v, : full["num_frames"].numpy()[v]]
        for frame in a["features"].numpy()[v]:
            assert np.isclose(real, frame, atol=1e-6).all(axis=1).any()  # never a padded (zero) frame


def test_video_level_and_paper_preset(tmp_path):
    path = str(tmp_path / "video.tfrecord")
    feats = {"mean_inc3": np.arange(1024, dtype=np.float32) / 1000}
    yt8m.write_records(path, [yt8m.video_example("a", [4799], feats, id_key="video_id")])
    ((x, y),) = list(yt8m.video_dataset(path, 2, **yt8m.PAPER_VIDEO_LEVEL))
    assert x["features"].shape == (1, 1024) and y.shape == (1, 4800) and y.numpy()[0, 4799] == 1
    np.testing.assert_allclose(x["features"].numpy()[0], F.l2_normalize(feats["mean_inc3"]), rtol=1e-5)
    assert x["id"].numpy().tolist() == [b"a"]
    synth = yt8m.write_synthetic(str(tmp_path / "v2.tfrecord"), 6, False, num_classes=9, seed=1)
    ((x, y),) = list(yt8m.video_dataset(synth, 8, num_classes=9))
    assert x["features"].shape == (6, 1152) and y.shape == (6, 9)


def _first_error(ds):
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        for _ in ds:
            pass
    return str(info.value)


def test_errors_name_file_record_and_keys(tmp_path, small_frame_file):
    path, _ = small_frame_file
    msg = _first_error(yt8m.frame_dataset(path, 3, **{**SMALL, "num_classes": 4}))
    assert f"{path} record 2: label id 4 is outside [0, 4)" in msg
    msg = _first_error(yt8m.frame_dataset(path, 3, **{**SMALL, "feature_sizes": (6, 3)}))
    assert f"{path} record 0: frame 0 of feature audio has 2 bytes, expected 3" in msg
    msg = _first_error(yt8m.frame_dataset(path, 3, **{**SMALL, "id_key": "video_id"}))
    assert f"{path} record 0: the id feature video_id is missing" in msg
    assert "context keys [" in msg and "feature lists [" in msg
    assert "id" in msg.split("context keys [")[1].split("]")[0]
    msg = _first_error(yt8m.frame_dataset(path, 3, **{**SMALL, "feature_names": ("inc3", "audio")}))
    assert "feature list inc3 is missing or empty" in msg and "rgb" in msg
    vpath = str(tmp_path / "v.tfrecord")
    yt8m.write_records(vpath, [yt8m.video_example("a", [1], {"mean_rgb": np.zeros(5)})] * 3)
    msg = _first_error(
        yt8m.video_dataset(vpath, 2, num_classes=3, feature_names=("mean_rgb",), feature_sizes=(4,))
    )
    assert f"{vpath} record 0: feature mean_rgb has 5 values, expected 4" in msg


def _corrupt_files(tmp_path, small_frame_file):
    path, videos = small_frame_file
    raw = [r for r in tf.data.TFRecordDataset(path).as_numpy_iterator()]
    bad_proto = str(tmp_path / "bad_proto.tfrecord")
    yt8m.write_records(bad_proto, [raw[0], b"\x0a\xff\xff not a proto", raw[2]])
    truncated = str(tmp_path / "truncated.tfrecord")
    data = open(path, "rb").read()
    with open(truncated, "wb") as f:
        f.write(data[:-7])
    return bad_proto, truncated


def test_corrupt_records_raise_or_are_skipped_and_counted(tmp_path, small_frame_file):
    bad_proto, truncated = _corrupt_files(tmp_path, small_frame_file)
    msg = _first_error(yt8m.frame_dataset(bad_proto, 3, **SMALL))
    assert f"{bad_proto} record 1" in msg
    msg = _first_error(yt8m.frame_dataset(truncated, 3, **SMALL))
    assert f"TFRecord file {truncated} is truncated or corrupt: record index 2 could not be read" in msg
    counter = yt8m.make_bad_record_counter()
    ds = yt8m.frame_dataset(
        [bad_proto, truncated],
        2,
        skip_bad_records=True,
        bad_record_counter=counter,
        **{**SMALL, "num_classes": 5},
    )
    ids = sorted(i for x, _ in ds for i in x["id"].numpy().tolist())
    assert ids == [b"v0", b"v0", b"v1", b"v2"]
    assert int(counter.numpy()) == 2  # the bad proto and the truncated tail


def test_skip_counts_out_of_range_labels(small_frame_file):
    path, _ = small_frame_file
    counter = yt8m.make_bad_record_counter()
    ds = yt8m.frame_dataset(
        path, 2, skip_bad_records=True, bad_record_counter=counter, **{**SMALL, "num_classes": 4}
    )
    assert [i for x, _ in ds for i in x["id"].numpy().tolist()] == [b"v0", b"v1"]
    assert int(counter.numpy()) == 1


def test_converter_quantises_float_features(tmp_path):
    rng = np.random.default_rng(3)
    rgb = rng.uniform(-2, 2, size=(3, 6)).astype(np.float32)
    example = tf.train.SequenceExample()
    example.context.feature["id"].bytes_list.value.append(b"x")
    example.context.feature["labels"].int64_list.value.append(2)
    for name, arr in (("rgb", rgb), ("audio", rgb[:, :2])):
        for row in arr:
            example.feature_lists.feature_list[name].feature.add().float_list.value.extend(row.tolist())
    src = yt8m.write_records(str(tmp_path / "float.tfrecord"), [example.SerializeToString()])
    out = yt8m.quantize_frame_records(src, str(tmp_path / "q.tfrecord"))
    ((x, y),) = list(yt8m.frame_dataset(out, 1, max_frames=4, **SMALL))
    expected = _expected_frames(F.quantize(rgb), F.quantize(rgb[:, :2]), 4)
    np.testing.assert_allclose(x["features"].numpy()[0], expected, atol=1e-6)
    assert x["num_frames"].numpy().tolist() == [3] and y.numpy()[0, 2] == 1


def test_list_files_errors_and_sharding(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        yt8m.list_files(str(tmp_path / "nothing_here*"))
    paths = yt8m.write_synthetic(str(tmp_path / "s.tfrecord"), 6, False, num_classes=4, seed=2, num_shards=3)
    assert yt8m.list_files(",".join(paths[:2])) == paths[:2]
    shard0 = [
        i
        for x, _ in yt8m.video_dataset(paths, 4, num_classes=4, num_shards=3, shard_index=0)
        for i in x["id"].numpy()
    ]
    assert shard0 == [b"synth0000000", b"synth0000003"]


def test_uint8_output_then_dequantize_frames_equals_float_pipeline(small_frame_file):
    path, _ = small_frame_file
    ((codes, _),) = list(yt8m.frame_dataset(path, 3, max_frames=5, dequantize=False, **SMALL))
    ((floats, _),) = list(yt8m.frame_dataset(path, 3, max_frames=5, **SMALL))
    assert codes["features"].dtype == tf.uint8 and codes["features"].shape == (3, 5, 8)
    got = yt8m.dequantize_frames(codes["features"], codes["num_frames"]).numpy()
    np.testing.assert_allclose(got, floats["features"].numpy(), atol=1e-6)


def test_record_indices_errors_and_skips_past_the_first_framing_chunk(tmp_path):
    """Framing is checked per chunk of records: indices, errors and counts must still be per record."""
    rng = np.random.default_rng(5)
    n = yt8m._CHUNK + 8
    records = [
        yt8m.frame_example(
            f"v{i}", [9 if i == n - 3 else 1], {"rgb": _frames(rng, 2, 6), "audio": _frames(rng, 2, 2)}
        )
        for i in range(n)
    ]
    path = yt8m.write_records(str(tmp_path / "long.tfrecord"), records)
    msg = _first_error(yt8m.frame_dataset(path, 16, **SMALL))
    assert f"{path} record {n - 3}: label id 9 is outside [0, 5)" in msg
    truncated = str(tmp_path / "long_truncated.tfrecord")
    with open(truncated, "wb") as f:
        f.write(open(path, "rb").read()[:-5])
    msg = _first_error(yt8m.frame_dataset(truncated, 16, **{**SMALL, "num_classes": 10}))
    assert f"TFRecord file {truncated} is truncated or corrupt: record index {n - 1} could not be read" in msg
    counter = yt8m.make_bad_record_counter()
    ds = yt8m.frame_dataset(truncated, 16, skip_bad_records=True, bad_record_counter=counter, **SMALL)
    ids = [i.decode() for x, _ in ds for i in x["id"].numpy().tolist()]
    assert ids == [f"v{i}" for i in range(n - 3)] + ["v" + str(n - 2)]
    assert int(counter.numpy()) == 2  # the out-of-range label and the truncated tail
