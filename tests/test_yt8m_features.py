"""Quantisation, video-level statistics, streaming PCA, the preprocessing job."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from trainers import yt8m_preprocess
from zoo.data import yt8m
from zoo.data import yt8m_features as F


def test_dequantize_matches_official_constants():
    q = np.array([0, 1, 128, 255], np.uint8)
    expected = q * (4 / 255) + (4 / 512 - 2)
    np.testing.assert_allclose(F.dequantize(q), expected, atol=2e-7)
    assert F.dequantize(np.uint8(0)) == pytest.approx(-1.9921875)
    assert F.dequantize(np.uint8(255)) == pytest.approx(2.0078125)
    np.testing.assert_allclose(F.tf_dequantize(tf.constant(q)).numpy(), expected, atol=2e-7)


def test_quantize_roundtrip_error_is_at_most_one_bin():
    x = np.random.default_rng(0).uniform(-2, 2, size=1000)
    back = F.dequantize(F.quantize(x))
    assert np.abs(back - x).max() <= 4 / 255 + 1e-6
    assert F.quantize(np.array([-5.0, 5.0])).tolist() == [0, 255]  # clipped


def test_video_statistics_numpy_and_tf_agree():
    rng = np.random.default_rng(1)
    frames = rng.normal(size=(2, 9, 4)).astype(np.float32)
    num = np.array([9, 3], np.int32)
    got = F.tf_video_statistics(tf.constant(frames), tf.constant(num), top_k=5).numpy()
    for b in range(2):
        ref = F.video_statistics(frames[b], num[b], top_k=5)
        np.testing.assert_allclose(got[b], ref, rtol=1e-5, atol=1e-6)
    real = frames[0]
    np.testing.assert_allclose(got[0, :4], real.mean(0), rtol=1e-5)
    np.testing.assert_allclose(got[0, 4:8], real.std(0), rtol=1e-5)
    np.testing.assert_allclose(got[0, 8:12], real.max(0), rtol=1e-6)
    # video 1 has 3 real frames: order statistics 4 and 5 are 0, padded frames never count
    top = got[1, 8:].reshape(5, 4)
    np.testing.assert_allclose(top[:3], -np.sort(-frames[1, :3], axis=0), rtol=1e-6)
    assert (top[3:] == 0).all()


def test_streaming_pca_matches_batch_pca_and_whitens():
    rng = np.random.default_rng(2)
    mix = rng.normal(size=(6, 6))
    x = rng.normal(size=(500, 6)) @ mix + 3.0
    pca = F.StreamingPCA(6)
    for s in range(0, 500, 64):
        pca.update(x[s : s + 64])
    pca.fit(3)
    cov = np.cov(x, rowvar=False)
    eig = np.sort(np.linalg.eigvalsh(cov))[::-1][:3]
    np.testing.assert_allclose(pca.eigenvalues, eig, rtol=1e-8)
    y = pca.transform(x, epsilon=0.0, normalize=False)
    np.testing.assert_allclose(np.cov(y, rowvar=False), np.eye(3), atol=1e-5)
    z = pca.transform(x)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)


def test_pca_save_load_and_errors(tmp_path):
    pca = F.StreamingPCA(3)
    with pytest.raises(ValueError, match="before fit"):
        pca.transform(np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        pca.update(np.zeros((2, 4)))
    pca.update(np.random.default_rng(3).normal(size=(20, 3)))
    pca.fit(2).save(str(tmp_path / "pca.npz"))
    loaded = F.StreamingPCA.load(str(tmp_path / "pca.npz"))
    x = np.random.default_rng(4).normal(size=(4, 3))
    np.testing.assert_array_equal(loaded.transform(x), pca.transform(x))


def test_l2_normalize_keeps_zero_rows():
    out = F.l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])


def test_preprocess_job_writes_stats_and_pca(tmp_path):
    layout = yt8m.RecordLayout(feature_sizes=(4, 2), num_classes=3)
    rng = np.random.default_rng(5)
    videos = [
        (
            f"v{i}",
            [i % 3],
            rng.integers(0, 256, (t, 4), dtype=np.uint8),
            rng.integers(0, 256, (t, 2), dtype=np.uint8),
        )
        for i, t in enumerate([3, 7, 2, 9, 5, 6])
    ]
    src = yt8m.write_records(
        str(tmp_path / "frames.tfrecord"),
        (yt8m.frame_example(v, lab, {"rgb": r, "audio": a}, layout) for v, lab, r, a in videos),
    )
    kw = dict(layout=layout, top_k=3, batch_size=4)
    out = yt8m_preprocess.preprocess(
        src, str(tmp_path / "out"), num_shards=2, pca_dim=3, pca_path=str(tmp_path / "out" / "pca.npz"), **kw
    )
    assert out["num_videos"] == 6 and len(out["files"]) == 2
    stats = yt8m_preprocess.stats_layout(layout, 3)
    assert stats.feature_names[:3] == ("mean_rgb", "std_rgb", "top3_rgb") and stats.feature_sizes[:3] == (
        4,
        4,
        12,
    )
    assert out["layout"] == stats.replace(
        feature_names=(*stats.feature_names, "pca"), feature_sizes=(*stats.feature_sizes, 3)
    )
    ds = yt8m.video_dataset(out["files"], 8, stats, normalize=False)
    ((x, y),) = list(ds)
    by_id = {vid.decode(): i for i, vid in enumerate(x["id"].numpy())}
    for vid, lab, rgb, audio in videos:
        row = x["features"].numpy()[by_id[vid]]
        expected = np.concatenate(
            [F.video_statistics(F.dequantize(rgb), top_k=3), F.video_statistics(F.dequantize(audio), top_k=3)]
        )
        np.testing.assert_allclose(row, expected, rtol=1e-5, atol=1e-6)
        assert y.numpy()[by_id[vid]].tolist() == [float(c == lab[0]) for c in range(3)]
    pca = stats.replace(feature_names=("pca",), feature_sizes=(3,))
    ((p, _),) = list(yt8m.video_dataset(out["files"], 8, pca))
    np.testing.assert_allclose(np.linalg.norm(p["features"].numpy(), axis=1), 1.0, rtol=1e-5)
    # a second run reuses the saved PCA and gives the same projection
    again = yt8m_preprocess.preprocess(
        src, str(tmp_path / "again"), pca_dim=3, pca_path=str(tmp_path / "out" / "pca.npz"), **kw
    )
    ((q, _),) = list(yt8m.video_dataset(again["files"], 8, pca))
    order = np.argsort(q["id"].numpy())
    np.testing.assert_allclose(
        q["features"].numpy()[order], p["features"].numpy()[np.argsort(p["id"].numpy())], rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="pca_input"):
        yt8m_preprocess.preprocess(src, str(tmp_path / "bad"), pca_input="median", **kw)


@pytest.mark.slow
def test_preprocess_command_line(tmp_path, run_cli):
    layout = yt8m.RecordLayout(feature_sizes=(8, 4), num_classes=7)
    src = yt8m.write_synthetic(str(tmp_path / "f.tfrecord"), 5, layout, frames=(2, 6))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainers.yt8m_preprocess",
            f"--input={src[0]}",
            f"--output_dir={tmp_path}/o",
            "--num_classes=7",
            "--feature_sizes=8,4",
            "--top_k=2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(pathlib.Path(__file__).parents[1]),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "wrote 5 videos to 1 files" in result.stdout
    truncated = str(tmp_path / "t.tfrecord")
    with open(truncated, "wb") as f:
        f.write(open(src[0], "rb").read()[:-3])
    args = ["zoo-yt8m-preprocess", f"--input={truncated}", f"--output_dir={tmp_path}/t"]
    args += ["--num_classes=7", "--feature_sizes=8,4"]
    # The error exit in this process (the tool's main as the command runs it).
    result = run_cli(yt8m_preprocess._define_flags, yt8m_preprocess.main, args, yt8m_preprocess._parse_flags)
    assert result.returncode == 2
    assert (
        f"yt8m_preprocess: error: TFRecord file {truncated} is truncated or corrupt: record index 4"
        in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_preprocess_names_a_truncated_file_or_skips_its_tail(tmp_path):
    layout = yt8m.RecordLayout(feature_sizes=(4, 2), num_classes=3)
    src = yt8m.write_synthetic(str(tmp_path / "f.tfrecord"), 4, layout, frames=(1, 3))[0]
    truncated = str(tmp_path / "t.tfrecord")
    with open(truncated, "wb") as f:
        f.write(open(src, "rb").read()[:-3])
    with pytest.raises(
        ValueError, match=rf"TFRecord file {truncated} is truncated or corrupt: record index 3"
    ):
        yt8m_preprocess.preprocess(truncated, str(tmp_path / "out"), layout=layout, batch_size=2)
    assert sorted((tmp_path / "out").iterdir()) == []  # nothing half-written left behind
    out = yt8m_preprocess.preprocess(
        truncated, str(tmp_path / "out"), layout=layout, batch_size=2, skip_bad_records=True
    )
    assert out["num_videos"] == 3 and out["bad_records"] == 1


def _fitted_pca(dim: int, k: int, seed: int = 6) -> tuple[F.StreamingPCA, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.normal(size=(300, dim)) @ rng.normal(size=(dim, dim)), 0.0)  # ReLU-like activations
    pca = F.StreamingPCA(dim)
    pca.update(x)
    return pca.fit(k), x


def test_inverse_pca_of_a_pca_vector_returns_it_when_no_dimension_is_dropped():
    pca, x = _fitted_pca(6, 6)
    y = pca.transform(x[:10], normalize=False)
    np.testing.assert_allclose(pca.inverse_transform(y), x[:10], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pca.tf_inverse_transform(tf.constant(y)).numpy(), x[:10], rtol=1e-4, atol=1e-4)
    unwhitened = pca.transform(x[:10], whiten=False, normalize=False)
    np.testing.assert_allclose(pca.inverse_transform(unwhitened, whiten=False), x[:10], atol=1e-5)
    dropped, _ = _fitted_pca(6, 3)  # 3 of 6 components kept: no longer the identity
    assert np.abs(dropped.inverse_transform(dropped.transform(x[:10], normalize=False)) - x[:10]).max() > 1e-2


def test_pca_and_quantisation_round_trip_within_one_quantisation_step():
    pca, x = _fitted_pca(8, 4)
    y = pca.transform(x, normalize=False)
    inside = np.abs(y) <= 2.0
    back = F.dequantize(F.quantize(y))
    assert inside.mean() > 0.9
    assert np.abs(back - y)[inside].max() <= 4 / 255 + 1e-6


def test_load_pca_reads_the_release_files_as_the_starter_code(tmp_path):
    pca, x = _fitted_pca(6, 6)
    np.save(tmp_path / "mean.npy", pca.mean[:, None])  # [D, 1]
    np.save(tmp_path / "eigenvals.npy", pca.eigenvalues[:, None])  # [D, 1]
    np.save(tmp_path / "eigenvecs.npy", pca.components.T)  # one eigenvector per row
    loaded = F.load_pca(str(tmp_path), num_components=4)
    assert loaded.num_components == 4
    ref = (x[:3] - pca.mean) @ pca.components[:, :4] / np.sqrt(pca.eigenvalues[:4] + 1e-4)
    np.testing.assert_allclose(loaded.transform(x[:3], normalize=False), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="eigenvecs.npy"):
        (tmp_path / "eigenvecs.npy").unlink()
        F.load_pca(str(tmp_path))


def test_preprocess_relu_space_statistics_match_numpy_reference(tmp_path):
    pca, _ = _fitted_pca(6, 4)
    layout = yt8m.RecordLayout(feature_sizes=(4, 2), num_classes=3)
    rng = np.random.default_rng(7)
    videos = [
        (
            f"v{i}",
            [i % 3],
            rng.integers(0, 256, (t, 4), dtype=np.uint8),
            rng.integers(0, 256, (t, 2), np.uint8),
        )
        for i, t in enumerate([3, 7, 1])
    ]
    src = yt8m.write_records(
        str(tmp_path / "frames.tfrecord"),
        (yt8m.frame_example(v, lab, {"rgb": r, "audio": a}, layout) for v, lab, r, a in videos),
    )
    pca.save(str(tmp_path / "pca.npz"))
    out = yt8m_preprocess.preprocess(
        src,
        str(tmp_path / "out"),
        layout=layout,
        top_k=2,
        statistics_space="relu",
        inverse_pca=str(tmp_path / "pca.npz"),
    )
    stats = yt8m_preprocess.stats_layout(layout, 2, {"rgb": 6})
    assert out["layout"] == stats and stats.feature_sizes == (6, 6, 12, 2, 2, 4)
    ((x, _),) = list(yt8m.video_dataset(out["files"], 8, stats, normalize=False))
    by_id = {vid.decode(): i for i, vid in enumerate(x["id"].numpy())}
    for vid, _, rgb, audio in videos:
        relu = pca.inverse_transform(F.dequantize(rgb))  # de-quantise, then invert the whitened PCA
        expected = np.concatenate(
            [F.video_statistics(relu, top_k=2), F.video_statistics(F.dequantize(audio), top_k=2)]
        )
        np.testing.assert_allclose(x["features"].numpy()[by_id[vid]], expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="needs --inverse_pca"):
        yt8m_preprocess.preprocess(src, str(tmp_path / "b"), layout=layout, statistics_space="relu")
    with pytest.raises(ValueError, match="statistics_space"):
        yt8m_preprocess.preprocess(src, str(tmp_path / "b"), layout=layout, statistics_space="raw")
    with pytest.raises(ValueError, match="6 components, feature 'audio' has 2"):
        yt8m_preprocess.preprocess(
            src,
            str(tmp_path / "b"),
            layout=layout,
            statistics_space="relu",
            inverse_pca=F.StreamingPCA.from_arrays(pca.mean, np.ones(6), np.eye(6)),
            relu_features=["audio"],
        )
