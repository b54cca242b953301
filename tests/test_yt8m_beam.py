"""The YouTube-8M preprocessing job as an Apache Beam pipeline (DirectRunner) equals the single-process job.

How outputs are compared (both jobs write float32 features, nothing is quantised on the way out):

* the same video ids, each with the same labels (shards differ: Beam deals videos to shards in its own
  order, so records are matched by id across all shards);
* the statistics ([mean; std; top-K] per feature) to float32 round-off: the same function computes them;
* the fitted PCA (mean, eigenvalues, components) to float64 round-off, each component up to its sign: the
  combiner adds the float64 sums in another order, and an eigenvector is only defined up to sign;
* the ``pca`` feature of every video to float32 round-off after multiplying each coefficient by the sign
  of its component (a flipped component flips that coefficient in every video).
"""

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that

from trainers import yt8m_preprocess
from zoo.data import yt8m, yt8m_beam
from zoo.data import yt8m_features as F

LAYOUT = yt8m.RecordLayout(feature_sizes=(6, 3), num_classes=5, max_frames=10)


def _records(files: list[str]) -> dict[str, tuple[list[int], dict[str, np.ndarray]]]:
    """``{id: (label ids, {feature: float32 values})}`` of video-level Examples in ``files``."""
    out = {}
    for raw in tf.data.TFRecordDataset(files).as_numpy_iterator():
        fmap = tf.train.Example.FromString(raw).features.feature
        vid = fmap["id"].bytes_list.value[0].decode()
        assert vid not in out, f"video {vid} written twice"
        features = {
            k: np.asarray(v.float_list.value, np.float32) for k, v in fmap.items() if v.float_list.value
        }
        out[vid] = (list(fmap["labels"].int64_list.value), features)
    return out


def _component_signs(a: F.StreamingPCA, b: F.StreamingPCA) -> np.ndarray:
    """The sign s_j with ``b.components[:, j] = s_j a.components[:, j]`` (asserting that one exists):
    the same PCA up to the sign of each component."""
    np.testing.assert_allclose(b.mean, a.mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.eigenvalues, a.eigenvalues, rtol=1e-8, atol=1e-12)
    signs = np.sign(np.sum(a.components * b.components, axis=0))
    np.testing.assert_allclose(b.components, a.components * signs, atol=1e-8)
    return signs


def test_beam_pipeline_equals_the_single_process_job(tmp_path):
    src = yt8m.write_synthetic(str(tmp_path / "f.tfrecord"), 14, LAYOUT, frames=(1, 8), num_shards=2)
    # Statistics in the ReLU space (paper §4.2.1): the inverse PCA travels to the workers inside the
    # statistics function; the PCA of the video level reads the means only (columns that are not contiguous).
    rng = np.random.default_rng(0)
    relu = F.StreamingPCA(8)
    relu.update(np.maximum(rng.normal(size=(200, 8)) @ rng.normal(size=(8, 8)), 0.0))
    relu.fit(6)
    kw = dict(
        layout=LAYOUT,
        num_shards=2,
        top_k=3,
        batch_size=4,
        pca_dim=4,
        statistics_space="relu",
        inverse_pca=relu,
    )
    single = yt8m_preprocess.preprocess(
        ",".join(src), str(tmp_path / "single"), pca_path=str(tmp_path / "single.npz"), **kw
    )
    beamed = yt8m_preprocess.preprocess(
        ",".join(src),
        str(tmp_path / "beam"),
        pca_path=str(tmp_path / "beam.npz"),
        runner="DirectRunner",
        files_per_task=1,  # two units of work
        **kw,
    )
    assert beamed["layout"] == single["layout"] and beamed["num_videos"] == single["num_videos"] == 14
    assert beamed["files"] == [str(tmp_path / "beam" / f"video-0000{i}-of-00002.tfrecord") for i in range(2)]
    assert sorted(p.name for p in (tmp_path / "beam").iterdir()) == [
        "video-00000-of-00002.tfrecord",
        "video-00001-of-00002.tfrecord",
    ]  # no temporary files left behind
    signs = _component_signs(
        F.StreamingPCA.load(str(tmp_path / "single.npz")), F.load_pca(str(tmp_path / "beam.npz"))
    )
    ours, theirs = _records(beamed["files"]), _records(single["files"])
    assert sorted(ours) == sorted(theirs)
    names = single["layout"].feature_names
    assert names[0] == "mean_rgb" and names[-1] == "pca"
    for vid, (labels, features) in theirs.items():
        assert ours[vid][0] == labels, vid
        assert sorted(ours[vid][1]) == sorted(names), vid
        for name in names[:-1]:
            np.testing.assert_allclose(ours[vid][1][name], features[name], rtol=1e-6, atol=1e-7, err_msg=vid)
        np.testing.assert_allclose(ours[vid][1]["pca"], features["pca"] * signs, rtol=1e-5, atol=1e-5)


def test_pca_combiner_merges_partial_sums_into_the_one_pass_fit():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 5)) @ rng.normal(size=(5, 5)) + 2.0
    one_pass = F.StreamingPCA(5)
    one_pass.update(x)
    one_pass.fit(3)
    combiner = yt8m_beam.PCASums(5)
    parts = []
    for rows in (x[:7], x[7:30], x[30:]):  # three workers' accumulators, each fed batches of rows
        acc = combiner.create_accumulator()
        for start in range(0, len(rows), 4):
            acc = combiner.add_input(acc, list(rows[start : start + 4]))
        parts.append(acc)
    merged = combiner.extract_output(combiner.merge_accumulators(parts))
    assert merged.count == 60
    _component_signs(one_pass, merged.fit(3))
    flipped = F.StreamingPCA.from_arrays(
        one_pass.mean, one_pass.eigenvalues, one_pass.components * [1, -1, 1]
    )
    assert _component_signs(one_pass, flipped).tolist() == [1, -1, 1]
    part = F.StreamingPCA(5)
    part.update(x[:30])
    with pytest.raises(AssertionError):  # a different PCA is not "equal up to sign"
        _component_signs(one_pass, part.fit(3))
    with pytest.raises(ValueError, match="dim 4 into one of dim 5"):
        F.StreamingPCA(5).merge(F.StreamingPCA(4))


def test_fit_pca_transform_in_a_pipeline_and_on_no_input():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 4)) @ rng.normal(size=(4, 4))
    reference = F.StreamingPCA(4)
    reference.update(x)
    reference.fit(2)

    def check(fitted):
        (pca,) = fitted
        _component_signs(reference, pca)

    with beam.Pipeline(yt8m_beam.pipeline_runner("DirectRunner")) as p:
        assert_that(p | beam.Create(list(x)) | yt8m_beam.FitPCA(4, 2), check)
    with pytest.raises(ValueError, match="no videos read from 'frames/x'"):
        with beam.Pipeline(yt8m_beam.pipeline_runner("DirectRunner")) as p:
            _ = (
                p
                | beam.Create([np.zeros(4)])
                | beam.Filter(lambda v: False)
                | yt8m_beam.FitPCA(4, 2, source="frames/x")
            )


def test_beam_job_names_a_truncated_file_or_skips_its_tail(tmp_path):
    src = yt8m.write_synthetic(str(tmp_path / "f.tfrecord"), 4, LAYOUT, frames=(1, 3))[0]
    truncated = str(tmp_path / "t.tfrecord")
    with open(truncated, "wb") as f:
        f.write(open(src, "rb").read()[:-3])
    kw = dict(layout=LAYOUT, batch_size=2, runner="DirectRunner")
    with pytest.raises(
        ValueError, match=rf"^TFRecord file {truncated} is truncated or corrupt: record index 3"
    ) as error:
        yt8m_preprocess.preprocess(truncated, str(tmp_path / "out"), **kw)
    assert "while running" not in str(error.value)  # the single-process job's line, without Beam's context
    assert sorted((tmp_path / "out").iterdir()) == []  # neither shards nor the sink's temporary folder
    out = yt8m_preprocess.preprocess(truncated, str(tmp_path / "out"), skip_bad_records=True, **kw)
    assert out["num_videos"] == 3 and out["bad_records"] == 1
    assert len(_records(out["files"])) == 3


def test_pipeline_options_pass_beam_flags_and_reject_unknown_ones():
    options = yt8m_beam.pipeline_options(
        ["--project=my-project", "--region", "europe-west4", "--temp_location=gs://b/tmp"], "DataflowRunner"
    )
    everything = options.get_all_options()
    assert everything["runner"] == "DataflowRunner" and everything["project"] == "my-project"
    assert everything["region"] == "europe-west4" and everything["temp_location"] == "gs://b/tmp"
    flink = yt8m_beam.pipeline_options(["--flink_master=localhost:8081"], "FlinkRunner").get_all_options()
    assert flink["runner"] == "FlinkRunner" and flink["flink_master"] == "localhost:8081"
    with pytest.raises(ValueError, match=r"unknown arguments \['--num_shard'\]"):
        yt8m_beam.pipeline_options(["--num_shard=2"])
    # DirectRunner: Beam's in-process runner, never the Prism binary Beam's DirectRunner would download
    assert isinstance(yt8m_beam.pipeline_runner("DirectRunner"), FnApiRunner)
    assert yt8m_beam.pipeline_runner("DataflowRunner") is None


@pytest.mark.slow
def test_beam_command_line(tmp_path, run_cli):
    # zoo-yt8m-preprocess's main in this process (its subprocess test: test_yt8m_features.py)
    layout = yt8m.RecordLayout(feature_sizes=(8, 4), num_classes=7)
    src = yt8m.write_synthetic(str(tmp_path / "f.tfrecord"), 5, layout, frames=(2, 6))
    pca = F.StreamingPCA(12)  # an existing --pca_path is loaded, not fitted: reaches the workers as is
    pca.update(np.random.default_rng(3).normal(size=(30, 12)))
    pca.fit(2).save(str(tmp_path / "pca.npz"))
    args = ["zoo-yt8m-preprocess", f"--input={src[0]}", "--num_classes=7"]
    args += ["--feature_sizes=8,4", "--top_k=2", "--pca_dim=2", f"--pca_path={tmp_path}/pca.npz"]
    args += ["--runner=DirectRunner", "--direct_num_workers=1"]  # a Beam option beside the job's flags
    result = run_cli(
        yt8m_preprocess._define_flags,
        yt8m_preprocess.main,
        [*args, f"--output_dir={tmp_path}/o"],
        yt8m_preprocess._parse_flags,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "wrote 5 videos to 1 files" in result.stdout
    ((x, _),) = yt8m.video_dataset(
        f"{tmp_path}/o/*.tfrecord",
        8,
        layout.replace(
            frame_level=False, feature_names=("mean_rgb", "mean_audio", "pca"), feature_sizes=(8, 4, 2)
        ),
        normalize=False,
    )
    expected = pca.transform(x["features"].numpy()[:, :12], normalize=False)
    np.testing.assert_allclose(x["features"].numpy()[:, 12:], expected, rtol=1e-5, atol=1e-5)


def test_packed_output_of_beam_equals_the_single_process_job(tmp_path):
    src = yt8m.write_synthetic(str(tmp_path / "f.tfrecord"), 9, LAYOUT, frames=(1, 14), num_shards=2)
    kw = dict(layout=LAYOUT, num_shards=2, batch_size=4, output_format="packed")
    single = yt8m_preprocess.preprocess(",".join(src), str(tmp_path / "single"), **kw)
    beamed = yt8m_preprocess.preprocess(
        ",".join(src), str(tmp_path / "beam"), runner="DirectRunner", files_per_task=1, **kw
    )
    assert beamed["layout"] == single["layout"] == LAYOUT.replace(packed=True)
    assert beamed["num_videos"] == single["num_videos"] == 9

    def by_id(files):
        records = [r.numpy() for r in tf.data.TFRecordDataset(files)]
        ids = [tf.train.Example.FromString(r).features.feature["id"].bytes_list.value[0] for r in records]
        return dict(zip(ids, records, strict=True))

    ours, theirs = by_id(beamed["files"]), by_id(single["files"])
    assert len(theirs) == 9 and ours == theirs  # the same encoder: the same bytes per video
    with pytest.raises(ValueError, match="--output_format=packed writes frames, not statistics: --pca_dim=2"):
        yt8m_preprocess.preprocess(src[0], str(tmp_path / "x"), pca_dim=2, **kw)
    with pytest.raises(
        ValueError, match=r"--output_format must be one of \('stats', 'packed'\), got 'dense'"
    ):
        yt8m_preprocess.preprocess(src[0], str(tmp_path / "x"), layout=LAYOUT, output_format="dense")
