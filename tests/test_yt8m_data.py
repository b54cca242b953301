"""YouTube-8M readers/writers: shapes, exact dequantisation, sampling, and errors naming file + record."""

import numpy as np
import pytest
import tensorflow as tf

from zoo.data import yt8m
from zoo.data import yt8m_features as F

SMALL = yt8m.RecordLayout(feature_sizes=(6, 2), num_classes=5)
SMALL5 = SMALL.replace(max_frames=5)


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
    yt8m.write_records(
        path, (yt8m.frame_example(i, lab, {"rgb": r, "audio": a}, SMALL) for i, lab, r, a in videos)
    )
    return path, videos


def test_synthetic_frame_level_reads_back_as_300_x_1152(tmp_path):
    layout = yt8m.FRAME_LEVEL.replace(num_classes=20)
    paths = yt8m.write_synthetic(str(tmp_path / "train.tfrecord"), 10, layout, num_shards=2, frames=(3, 12))
    assert [p.rsplit("/", 1)[1] for p in paths] == [
        "train-00000-of-00002.tfrecord",
        "train-00001-of-00002.tfrecord",
    ]
    inputs, labels = next(iter(yt8m.frame_dataset(str(tmp_path), 4, layout)))
    assert inputs["features"].shape == (4, 300, 1152) and inputs["features"].dtype == tf.float32
    assert labels.shape == (4, 20) and inputs["num_frames"].dtype == tf.int32
    n = inputs["num_frames"].numpy()
    feats = inputs["features"].numpy()
    assert ((3 <= n) & (n <= 12)).all()
    np.testing.assert_allclose(np.linalg.norm(feats[0, : n[0]], axis=1), 1.0, rtol=1e-5)
    assert (feats[0, n[0] :] == 0).all()
    total = sum(int(x["id"].shape[0]) for x, _ in yt8m.frame_dataset(paths, 3, layout))
    assert total == 10


def test_exact_dequantisation_truncation_and_labels(small_frame_file):
    path, videos = small_frame_file
    ((inputs, labels),) = list(yt8m.frame_dataset(path, 3, SMALL5))
    assert inputs["id"].numpy().tolist() == [b"v0", b"v1", b"v2"]
    assert inputs["num_frames"].numpy().tolist() == [4, 5, 2]  # rgb's count, capped at max_frames
    np.testing.assert_array_equal(labels.numpy(), [[0, 1, 0, 1, 0], [0] * 5, [0, 0, 0, 0, 1]])
    for b, (_, _, rgb, audio) in enumerate(videos):
        t = inputs["num_frames"].numpy()[b]
        expected = _expected_frames(rgb[:t], audio[:t], 5)
        np.testing.assert_allclose(inputs["features"].numpy()[b], expected, atol=1e-6)


def test_frame_sampling_uses_only_real_frames_and_is_seeded(small_frame_file):
    path, _ = small_frame_file
    kw = dict(num_samples=16, seed=7)
    ((a, _),) = list(yt8m.frame_dataset(path, 3, SMALL5, **kw))
    ((b, _),) = list(yt8m.frame_dataset(path, 3, SMALL5, **kw))
    ((full, _),) = list(yt8m.frame_dataset(path, 3, SMALL5))
    np.testing.assert_array_equal(a["features"].numpy(), b["features"].numpy())
    assert a["features"].shape == (3, 16, 8) and a["num_frames"].numpy().tolist() == [16] * 3
    for v in range(3):
        real = full["features"].numpy()[v, : full["num_frames"].numpy()[v]]
        for frame in a["features"].numpy()[v]:
            assert np.isclose(real, frame, atol=1e-6).all(axis=1).any()  # never a padded (zero) frame


def test_video_level_and_paper_preset(tmp_path):
    path = str(tmp_path / "video.tfrecord")
    feats = {"mean_inc3": np.arange(1024, dtype=np.float32) / 1000}
    yt8m.write_records(path, [yt8m.video_example("a", [4799], feats, yt8m.PAPER_VIDEO_LEVEL)])
    ((x, y),) = list(yt8m.video_dataset(path, 2, yt8m.PAPER_VIDEO_LEVEL))
    assert x["features"].shape == (1, 1024) and y.shape == (1, 4800) and y.numpy()[0, 4799] == 1
    np.testing.assert_allclose(x["features"].numpy()[0], F.l2_normalize(feats["mean_inc3"]), rtol=1e-5)
    assert x["id"].numpy().tolist() == [b"a"]
    layout = yt8m.VIDEO_LEVEL.replace(num_classes=9)
    synth = yt8m.write_synthetic(str(tmp_path / "v2.tfrecord"), 6, layout, seed=1)
    ((x, y),) = list(yt8m.video_dataset(synth, 8, layout))
    assert x["features"].shape == (6, 1152) and y.shape == (6, 9)


def _first_error(ds):
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        for _ in ds:
            pass
    return str(info.value)


def test_errors_name_file_record_and_keys(tmp_path, small_frame_file):
    path, _ = small_frame_file
    msg = _first_error(yt8m.frame_dataset(path, 3, SMALL.replace(num_classes=4)))
    assert f"{path} record 2: label id 4 is outside [0, 4)" in msg
    msg = _first_error(yt8m.frame_dataset(path, 3, SMALL.replace(feature_sizes=(6, 3))))
    assert f"{path} record 0: frame 0 of feature audio has 2 bytes, expected 3" in msg
    msg = _first_error(yt8m.frame_dataset(path, 3, SMALL.replace(id_key="video_id")))
    assert f"{path} record 0: the id feature video_id is missing" in msg
    assert "context keys [" in msg and "feature lists [" in msg
    assert "id" in msg.split("context keys [")[1].split("]")[0]
    msg = _first_error(yt8m.frame_dataset(path, 3, SMALL.replace(feature_names=("inc3", "audio"))))
    assert "feature list inc3 is missing" in msg and "rgb" in msg
    vpath = str(tmp_path / "v.tfrecord")
    yt8m.write_records(vpath, [yt8m.video_example("a", [1], {"mean_rgb": np.zeros(5)})] * 3)
    vlayout = yt8m.VIDEO_LEVEL.replace(num_classes=3, feature_names=("mean_rgb",), feature_sizes=(4,))
    msg = _first_error(yt8m.video_dataset(vpath, 2, vlayout))
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
    msg = _first_error(yt8m.frame_dataset(bad_proto, 3, SMALL))
    assert f"{bad_proto} record 1" in msg
    msg = _first_error(yt8m.frame_dataset(truncated, 3, SMALL))
    assert f"TFRecord file {truncated} is truncated or corrupt: record index 2 could not be read" in msg
    counter = yt8m.make_bad_record_counter()
    ds = yt8m.frame_dataset(
        [bad_proto, truncated], 2, SMALL, skip_bad_records=True, bad_record_counter=counter
    )
    ids = sorted(i for x, _ in ds for i in x["id"].numpy().tolist())
    assert ids == [b"v0", b"v0", b"v1", b"v2"]
    assert int(counter.numpy()) == 2  # the bad proto and the truncated tail


def test_skip_counts_out_of_range_labels(small_frame_file):
    path, _ = small_frame_file
    counter = yt8m.make_bad_record_counter()
    ds = yt8m.frame_dataset(
        path, 2, SMALL.replace(num_classes=4), skip_bad_records=True, bad_record_counter=counter
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
    ((x, y),) = list(yt8m.frame_dataset(out, 1, SMALL.replace(max_frames=4)))
    expected = _expected_frames(F.quantize(rgb), F.quantize(rgb[:, :2]), 4)
    np.testing.assert_allclose(x["features"].numpy()[0], expected, atol=1e-6)
    assert x["num_frames"].numpy().tolist() == [3] and y.numpy()[0, 2] == 1


def test_list_files_errors_and_sharding(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        yt8m.list_files(str(tmp_path / "nothing_here*"))
    layout = yt8m.VIDEO_LEVEL.replace(num_classes=4)
    paths = yt8m.write_synthetic(str(tmp_path / "s.tfrecord"), 6, layout, seed=2, num_shards=3)
    assert yt8m.list_files(",".join(paths[:2])) == paths[:2]
    shard0 = [
        i
        for x, _ in yt8m.video_dataset(paths, 4, layout, num_shards=3, shard_index=0)
        for i in x["id"].numpy()
    ]
    assert shard0 == [b"synth0000000", b"synth0000003"]


def test_uint8_output_then_dequantize_frames_equals_float_pipeline(small_frame_file):
    path, _ = small_frame_file
    ((codes, _),) = list(yt8m.frame_dataset(path, 3, SMALL5, dequantize=False))
    ((floats, _),) = list(yt8m.frame_dataset(path, 3, SMALL5))
    assert codes["features"].dtype == tf.uint8 and codes["features"].shape == (3, 5, 8)
    got = yt8m.dequantize_frames(codes["features"], codes["num_frames"]).numpy()
    np.testing.assert_allclose(got, floats["features"].numpy(), atol=1e-6)


def test_record_indices_errors_and_skips_past_the_first_framing_chunk(tmp_path):
    """Framing is checked per chunk of records: indices, errors and counts must still be per record."""
    rng = np.random.default_rng(5)
    n = yt8m._CHUNK + 8
    records = [
        yt8m.frame_example(
            f"v{i}", [9 if i == n - 3 else 1], {"rgb": _frames(rng, 2, 6), "audio": _frames(rng, 2, 2)}, SMALL
        )
        for i in range(n)
    ]
    path = yt8m.write_records(str(tmp_path / "long.tfrecord"), records)
    msg = _first_error(yt8m.frame_dataset(path, 16, SMALL))
    assert f"{path} record {n - 3}: label id 9 is outside [0, 5)" in msg
    truncated = str(tmp_path / "long_truncated.tfrecord")
    with open(truncated, "wb") as f:
        f.write(open(path, "rb").read()[:-5])
    msg = _first_error(yt8m.frame_dataset(truncated, 16, SMALL.replace(num_classes=10)))
    assert f"TFRecord file {truncated} is truncated or corrupt: record index {n - 1} could not be read" in msg
    counter = yt8m.make_bad_record_counter()
    ds = yt8m.frame_dataset(truncated, 16, SMALL, skip_bad_records=True, bad_record_counter=counter)
    ids = [i.decode() for x, _ in ds for i in x["id"].numpy().tolist()]
    assert ids == [f"v{i}" for i in range(n - 3)] + ["v" + str(n - 2)]
    assert int(counter.numpy()) == 2  # the out-of-range label and the truncated tail


# ------------------------------------------------------------------ the official reader's edge cases
def _official_dequantize(q):
    """utils.Dequantize as the official reader evaluates it: float32 tensor * python float + python float,
    each constant converted to float32, one rounding per operation."""
    scalar, bias = 4 / 255.0, 4 / 512.0 + -2
    return np.asarray(q).astype(np.float32) * np.float32(scalar) + np.float32(bias)


def test_dequantisation_is_bit_identical_to_the_official_formula_for_all_256_codes():
    codes = np.arange(256, dtype=np.uint8)
    want = _official_dequantize(codes).view(np.uint32)
    assert np.array_equal(F.dequantize(codes).view(np.uint32), want)
    assert np.array_equal(F.tf_dequantize(tf.constant(codes)).numpy().view(np.uint32), want)
    xla = tf.function(F.tf_dequantize, jit_compile=True)  # XLA on CPU would fuse q * a + b into an FMA
    assert np.array_equal(xla(tf.constant(codes)).numpy().view(np.uint32), want)
    # Through the reader: one frame holding every code, normalize=False, with and without XLA.
    layout = yt8m.RecordLayout(feature_names=("rgb",), feature_sizes=(256,), num_classes=2, max_frames=2)
    record = yt8m.frame_example("all", [], {"rgb": codes[None]}, layout)
    for jit in (False, True):
        inputs, _ = yt8m.parse_frame_batch(
            tf.constant([record]), layout=layout, normalize=False, jit_compile=jit
        )
        got = inputs["features"].numpy()
        assert np.array_equal(got[0, 0].view(np.uint32), want), jit
        assert np.array_equal(got[0, 1], np.zeros(256, np.float32))  # padding


def test_a_record_with_zero_frames_is_accepted(tmp_path):
    empty = {"rgb": np.zeros((0, 6), np.uint8), "audio": np.zeros((0, 2), np.uint8)}
    rng = np.random.default_rng(1)
    full = {"rgb": _frames(rng, 3, 6), "audio": _frames(rng, 3, 2)}
    path = yt8m.write_records(
        str(tmp_path / "empty.tfrecord"),
        [yt8m.frame_example("e", [1], empty, SMALL), yt8m.frame_example("f", [2], full, SMALL)],
    )
    ((x, y),) = list(yt8m.frame_dataset(path, 2, SMALL5))
    assert x["num_frames"].numpy().tolist() == [0, 3]
    assert np.all(x["features"].numpy()[0] == 0) and np.isfinite(x["features"].numpy()).all()
    assert y.numpy()[0].tolist() == [0, 1, 0, 0, 0]
    ((s, _),) = list(yt8m.frame_dataset(path, 2, SMALL5, num_samples=4, seed=0))
    assert s["num_frames"].numpy().tolist() == [0, 4] and np.all(s["features"].numpy()[0] == 0)
    ((codes, _),) = list(yt8m.frame_dataset(path, 2, SMALL5, dequantize=False))
    again = yt8m.dequantize_frames(
        codes["features"], codes["num_frames"], feature_mask=codes["feature_mask"], layout=SMALL5
    )
    np.testing.assert_array_equal(again.numpy(), x["features"].numpy())
    # An *absent* feature list is still an error (the official parser requires every list).
    missing = yt8m.write_records(
        str(tmp_path / "missing.tfrecord"), [yt8m.frame_example("m", [1], {"rgb": full["rgb"]}, SMALL)]
    )
    assert f"{missing} record 0: feature list audio is missing" in _first_error(
        yt8m.frame_dataset(missing, 2, SMALL5)
    )


def test_feature_lists_of_different_lengths_follow_the_official_reader(tmp_path):
    """num_frames is the first list's count; a shorter list is zero-filled, a longer one cut."""
    rng = np.random.default_rng(2)
    short_audio = {"rgb": _frames(rng, 4, 6), "audio": _frames(rng, 2, 2)}
    long_audio = {"rgb": _frames(rng, 2, 6), "audio": _frames(rng, 4, 2)}
    path = yt8m.write_records(
        str(tmp_path / "uneven.tfrecord"),
        [yt8m.frame_example("s", [1], short_audio, SMALL), yt8m.frame_example("l", [1], long_audio, SMALL)],
    )
    ((x, _),) = list(yt8m.frame_dataset(path, 2, SMALL5))
    assert x["num_frames"].numpy().tolist() == [4, 2]
    for b, feats in enumerate((short_audio, long_audio)):
        n = len(feats["rgb"])
        official = np.zeros((5, 8), np.float32)  # resize_axis per list, then concatenation
        official[:n, :6] = _official_dequantize(feats["rgb"])
        a = min(n, len(feats["audio"]))
        official[:a, 6:] = _official_dequantize(feats["audio"][:a])
        np.testing.assert_allclose(x["features"].numpy()[b], F.l2_normalize(official, axis=1), atol=1e-6)
    ((codes, _),) = list(yt8m.frame_dataset(path, 2, SMALL5, dequantize=False))
    got = yt8m.dequantize_frames(
        codes["features"], codes["num_frames"], feature_mask=codes["feature_mask"], layout=SMALL5
    )
    np.testing.assert_allclose(got.numpy(), x["features"].numpy(), atol=1e-7)


def test_records_without_labels_read_as_all_zero_rows(tmp_path):
    """Inference data: no labels key, or an empty list, in every record of a batch or in some."""
    rng = np.random.default_rng(3)

    def record(vid, labels):
        return yt8m.frame_example(
            vid, labels, {"rgb": _frames(rng, 2, 6), "audio": _frames(rng, 2, 2)}, SMALL
        )

    unlabeled = yt8m.write_records(str(tmp_path / "u.tfrecord"), [record("a", None), record("b", [])])
    ((x, y),) = list(yt8m.frame_dataset(unlabeled, 4, SMALL))
    assert x["id"].numpy().tolist() == [b"a", b"b"] and not y.numpy().any()
    # Outside tf.data (eagerly, or in a serving signature) nothing prunes an unused op on empty labels.
    _, y = yt8m.parse_frame_batch(tf.constant([record("a", None), record("b", [])]), layout=SMALL)
    assert y.shape == (2, 5) and not y.numpy().any()
    mixed = yt8m.write_records(str(tmp_path / "m.tfrecord"), [record("a", None), record("b", [3, 3])])
    ((_, y),) = list(yt8m.frame_dataset(mixed, 4, SMALL))
    assert y.numpy().tolist() == [[0] * 5, [0, 0, 0, 1, 0]]
    vlayout = yt8m.VIDEO_LEVEL.replace(num_classes=3, feature_sizes=(2, 1))
    feats = {"mean_rgb": [0.1, 0.2], "mean_audio": [0.3]}
    vpath = yt8m.write_records(
        str(tmp_path / "v.tfrecord"),
        [yt8m.video_example("a", None, feats, vlayout), yt8m.video_example("b", [], feats, vlayout)],
    )
    ((_, y),) = list(yt8m.video_dataset(vpath, 4, vlayout))
    assert y.shape == (2, 3) and not y.numpy().any()
    _, y = yt8m.parse_video_batch(
        tf.constant([yt8m.video_example("a", None, feats, vlayout)]), layout=vlayout
    )
    assert y.shape == (1, 3) and not y.numpy().any()


def test_count_records_names_a_truncated_file(tmp_path, small_frame_file):
    path, _ = small_frame_file
    _, truncated = _corrupt_files(tmp_path, small_frame_file)
    assert yt8m.count_records([path]) == 3
    with pytest.raises(ValueError) as info:
        yt8m.count_records([path, truncated])
    want = f"TFRecord file {truncated} is truncated or corrupt: record index 2 could not be read"
    assert str(info.value).startswith(want)
    assert "\n" not in str(info.value)
    assert yt8m.count_records([path, truncated], skip_bad_records=True) == 5


def test_layouts_are_checked_and_levels_not_mixed():
    with pytest.raises(ValueError, match=r"feature_names \('rgb',\) and feature_sizes \(1, 2\)"):
        yt8m.RecordLayout(feature_names=("rgb",), feature_sizes=(1, 2))
    with pytest.raises(ValueError, match="num_classes must hold integers >= 1, got 0"):
        yt8m.FRAME_LEVEL.replace(num_classes=0)
    with pytest.raises(ValueError, match="frame_dataset reads frame-level records, but the layout is video"):
        yt8m.frame_dataset("x*.tfrecord", 2, yt8m.VIDEO_LEVEL)
    assert yt8m.PAPER_FRAME_LEVEL.feature_names == ("inc3",) and yt8m.PAPER_FRAME_LEVEL.num_classes == 4800
    assert yt8m.PRESETS["paper_video"].id_key == "video_id"
