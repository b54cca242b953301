"""Frame-level YouTube-8M TFRecords -> video-level TFRecords with [mean; std; top-K] and optional PCA, or
-> packed frame-level TFRecords (``--output_format=packed``).

Paper §4.2 (Abu-El-Haija et al. 2016): video-level features are statistics of the frame features over the
real frames (mean µ, standard deviation σ and the top-K ordinal statistics per dimension, K = 5), and
"PCA-whitened then L2-normalised". For every input video this job writes a ``tf.train.Example`` with
``id``, ``labels`` and, per frame feature ``f`` (e.g. ``rgb``, ``audio``): ``mean_f`` [size],
``std_f`` [size] and ``top<K>_f`` [K * size] (K-major: the first ``size`` values are the maxima) of the
*dequantised* (not L2-normalised) frames. With ``--pca_dim`` it also writes ``pca`` [pca_dim]: the
whitened projection of the concatenated ``--pca_input`` statistics, fitted by streaming over this input
(or loaded from ``--pca_path`` when that file exists, e.g. fitted on the training split). The job returns
the output's ``zoo.data.yt8m.RecordLayout`` (``layout.replace(feature_names=("pca",),
feature_sizes=(pca_dim,))`` reads the projection alone); ``video_dataset`` L2-normalises what it reads.

Statistics space (``--statistics_space``):

* ``pca`` (default): the statistics of the dequantised frame features as stored, i.e. of the PCA-whitened
  coefficients (what the zoo computed before, and what the official starter code's video-level release
  holds for ``mean_rgb``).
* ``relu``: paper §4.2.1, "in the original ReLU activation space": the frames of ``--relu_features``
  (default ``rgb``) are dequantised, then the whitened PCA is inverted with ``--inverse_pca`` (the
  release's ``mean.npy`` / ``eigenvals.npy`` / ``eigenvecs.npy`` directory, or the ``.npz`` that
  ``zoo-yt8m-extract`` fitted) before mean, std and top-K are taken, so ``mean_rgb`` etc. are 2,048 wide.
  Other features keep the ``pca`` space (no PCA matrix of the audio features is released). As the paper
  does next, ``--pca_dim`` with ``--pca_input=stats`` PCA-whitens the resulting video-level vector.

Packed frame level (``--output_format=packed``): instead of statistics, every video is rewritten as one
packed frame-level record (``zoo.data.yt8m.packed_example``: id, labels, ``num_frames``,
``feature_frames`` and ONE bytes value holding its uint8 codes ``[num_frames, D]``, at most
``--max_frames`` frames, not padded). The readers give the same batches from it
(``layout.replace(packed=True)``, the video task's ``--dataset=yt8m_packed``) at several times the parse
speed of the release's SequenceExamples (README, Benchmarks); it is the same size on disk. The job returns
the packed layout.

    python -m trainers.yt8m_preprocess --input='frames/train*.tfrecord' --output_dir=packed \\
        --output_format=packed --num_shards=16 --prefix=train

A truncated or corrupt input file, or a record that does not fit the layout, stops the job with one line
naming the file and record index; ``--skip_bad_records`` drops and counts such records instead.

    python -m trainers.yt8m_preprocess --input='frames/train*.tfrecord' --output_dir=video_stats \\
        --num_shards=4 --pca_dim=1024 --pca_path=video_stats/pca.npz
    python -m trainers.yt8m_preprocess --input='frames/train*.tfrecord' --output_dir=relu_stats \\
        --statistics_space=relu --inverse_pca=yt8m_pca/ --pca_input=stats --pca_dim=1024

Output files are ``<output_dir>/<prefix>-0000i-of-0000N.tfrecord``, each written to a temporary file and
renamed into place.

Apache Beam (``--runner``; needs the ``beam`` extra): the same job as a Beam pipeline
(:mod:`zoo.data.yt8m_beam`), equal to the single-process output (same statistics, same PCA up to the sign
of each component): ``--files_per_task`` whole files per unit of work, the PCA fitted by a combiner of
streaming float64 sums, the projection in a second pass with the fitted PCA as a side input, the shards
written by Beam's file sink (temporary files renamed into place at the end). ``--runner=DirectRunner``
runs it in this process (Beam's FnApiRunner, never a download of Beam's Prism binary); any
other runner takes the standard Beam pipeline options, passed on the same command line: every argument
that is not a flag of this job goes to Beam's ``PipelineOptions`` (write them as ``--name=value``; an
argument neither side knows is an error)::

    python -m trainers.yt8m_preprocess --input='frames/train*.tfrecord' --output_dir=video_stats \\
        --num_shards=4 --pca_dim=1024 --runner=DirectRunner
    zoo-yt8m-preprocess --input='gs://bucket/frames/train*.tfrecord' --output_dir=gs://bucket/video \\
        --num_shards=256 --pca_dim=1024 --pca_path=gs://bucket/video/pca.npz --runner=DataflowRunner \\
        --project=my-project --region=us-central1 --temp_location=gs://bucket/tmp --setup_file=./setup.py
"""

from __future__ import annotations

import functools
import io
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from zoo.data import yt8m, yt8m_features

__all__ = ["preprocess", "stats_layout", "run", "main", "OUTPUT_FORMATS"]

_PCA_INPUTS = ("mean", "stats")
OUTPUT_FORMATS = ("stats", "packed")
STATISTICS_SPACES = ("pca", "relu")
# What Beam appends to an error raised inside a transform.
_BEAM_CONTEXT = re.compile(r"\s*\[while running '[^']*'\]")


def stats_layout(
    layout: yt8m.RecordLayout, top_k: int = 5, space_sizes: dict[str, int] | None = None
) -> yt8m.RecordLayout:
    """The video-level layout this job writes for frame-level input of ``layout``, features in order.

    E.g. ``("mean_rgb", "std_rgb", "top5_rgb", "mean_audio", ...)``, ``(1024, 1024, 5120, 128, ...)``.
    ``space_sizes`` maps a feature whose statistics are taken in another space (``relu``) to that width.
    """
    names, sizes = [], []
    for name, size in zip(layout.feature_names, layout.feature_sizes, strict=True):
        size = (space_sizes or {}).get(name, size)
        names += [f"mean_{name}", f"std_{name}", f"top{top_k}_{name}"]
        sizes += [size, size, top_k * size]
    return layout.replace(frame_level=False, feature_names=tuple(names), feature_sizes=tuple(sizes))


def _split_stats(stats: np.ndarray, size: int, top_k: int) -> dict[str, np.ndarray]:
    return {"mean": stats[:, :size], "std": stats[:, size : 2 * size], "top": stats[:, 2 * size :]}


def preprocess(
    input_pattern: str,
    output_dir: str,
    *,
    layout: yt8m.RecordLayout = yt8m.FRAME_LEVEL,
    num_shards: int = 1,
    prefix: str = "video",
    batch_size: int = 64,
    top_k: int = 5,
    pca_dim: int = 0,
    pca_input: str = "mean",
    pca_path: str | None = None,
    pca_whiten: bool = True,
    skip_bad_records: bool = False,
    statistics_space: str = "pca",
    inverse_pca: str | yt8m_features.StreamingPCA | None = None,
    relu_features: Sequence[str] | None = None,
    runner: str | None = None,
    beam_args: Sequence[str] = (),
    files_per_task: int = 4,
    output_format: str = "stats",
) -> dict[str, Any]:
    """Runs the job on frame-level records of ``layout``; returns ``{"files", "num_videos", "layout",
    "bad_records"}`` (``layout``: the video-level layout of the output, ``pca`` last when written).

    Raises ``ValueError`` naming the file and record index for a corrupt file or a bad record (unless
    ``skip_bad_records``).

    ``statistics_space="relu"`` (paper §4.2.1) inverts ``inverse_pca`` (a path for
    :func:`zoo.data.yt8m_features.load_pca`, or a fitted ``StreamingPCA``; whitened as released) on the
    dequantised frames of ``relu_features`` (default: the layout's first feature) before the statistics.

    ``runner`` (e.g. ``"DirectRunner"``, ``"DataflowRunner"``) runs the job as an Apache Beam pipeline with
    the Beam pipeline options ``beam_args`` (``["--project=...", ...]``); same arguments, same output.
    Each unit of its work reads ``files_per_task`` whole input files.

    ``output_format="packed"`` writes packed frame-level records instead of statistics (module docstring);
    the returned ``layout`` is then ``layout.replace(packed=True)``.
    """
    _check_args(num_shards, top_k, pca_dim, pca_input)
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"--output_format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
    if output_format == "packed":
        if pca_dim or statistics_space != "pca":
            raise ValueError(
                f"--output_format=packed writes frames, not statistics: --pca_dim={pca_dim} and "
                f"--statistics_space={statistics_space} apply to --output_format=stats only"
            )
        options = dict(num_shards=num_shards, prefix=prefix, batch_size=batch_size)
        if runner:
            return _preprocess_beam(
                input_pattern,
                output_dir,
                layout=layout,
                out_layout=layout.replace(packed=True),
                statistics=None,
                pca_columns=np.zeros(0, np.int64),
                fitted=None,
                pca_dim=0,
                pca_path=None,
                pca_whiten=False,
                skip_bad_records=skip_bad_records,
                runner=runner,
                beam_args=beam_args,
                files_per_task=files_per_task,
                **options,
            )
        return _preprocess_packed(
            input_pattern, output_dir, layout, skip_bad_records=skip_bad_records, **options
        )
    relu = _relu_inversions(layout, statistics_space, inverse_pca, relu_features)
    out_layout = stats_layout(layout, top_k, {n: p.dim for n, p in relu.items()})
    pca_names = _pca_names(out_layout, pca_input)
    fitted, streaming = _pca_to_use(out_layout, pca_names, pca_dim, pca_path)
    if runner:
        return _preprocess_beam(
            input_pattern,
            output_dir,
            layout=layout,
            out_layout=out_layout,
            statistics=functools.partial(_statistics_fn, layout, relu, top_k),
            pca_columns=_columns(out_layout, pca_names),
            fitted=fitted,
            num_shards=num_shards,
            prefix=prefix,
            batch_size=batch_size,
            pca_dim=pca_dim,
            pca_path=pca_path,
            pca_whiten=pca_whiten,
            skip_bad_records=skip_bad_records,
            runner=runner,
            beam_args=beam_args,
            files_per_task=files_per_task,
        )
    tf.io.gfile.makedirs(output_dir)
    ds, counter = _frame_input(input_pattern, batch_size, layout, skip_bad_records, normalize=False)
    paths = _shard_paths(output_dir, prefix, num_shards)
    stage = [f"{p}.stats-{os.getpid()}" for p in paths]
    videos = _video_statistics(ds, _statistics_fn(layout, relu, top_k), layout, relu, top_k)
    num_videos = _write_staged(videos, stage, out_layout, streaming, pca_names)
    if num_videos == 0:
        raise ValueError(f"no videos read from {input_pattern!r}")
    if streaming is not None:
        fitted = streaming.fit(pca_dim)
        if pca_path:
            fitted.save(pca_path)
    if fitted is not None:
        out_layout = _with_pca_feature(out_layout, pca_dim)
    _publish(stage, paths, fitted, pca_names, pca_whiten)
    bad = int(counter.numpy()) if counter is not None else 0
    logging.info(
        "wrote %d videos to %d files in %s (bad records skipped: %d)", num_videos, num_shards, output_dir, bad
    )
    return {"files": paths, "num_videos": num_videos, "layout": out_layout, "bad_records": bad}


def _preprocess_packed(
    input_pattern: str,
    output_dir: str,
    layout: yt8m.RecordLayout,
    *,
    num_shards: int,
    prefix: str,
    batch_size: int,
    skip_bad_records: bool,
) -> dict[str, Any]:
    """The single-process ``--output_format=packed`` job: uint8 batches of the zoo's reader, re-encoded by
    :func:`zoo.data.yt8m.packed_records` and dealt round-robin to staged shards renamed into place."""
    tf.io.gfile.makedirs(output_dir)
    ds, counter = _frame_input(input_pattern, batch_size, layout, skip_bad_records, dequantize=False)
    paths = _shard_paths(output_dir, prefix, num_shards)
    stage = [f"{p}.packed-{os.getpid()}" for p in paths]
    records = (r for inputs, labels in _batches(ds) for r in yt8m.packed_records(inputs, labels, layout))
    num_videos = _write_round_robin(records, stage)
    if num_videos == 0:
        raise ValueError(f"no videos read from {input_pattern!r}")
    for src, dst in zip(stage, paths, strict=True):
        tf.io.gfile.rename(src, dst, overwrite=True)
    bad = int(counter.numpy()) if counter is not None else 0
    logging.info(
        "wrote %d packed videos to %d files in %s (bad records skipped: %d)",
        num_videos,
        num_shards,
        output_dir,
        bad,
    )
    return {
        "files": paths,
        "num_videos": num_videos,
        "layout": layout.replace(packed=True),
        "bad_records": bad,
    }


def _preprocess_beam(
    input_pattern: str,
    output_dir: str,
    *,
    layout: yt8m.RecordLayout,
    out_layout: yt8m.RecordLayout,
    statistics: Callable[[], Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] | None,
    pca_columns: np.ndarray,
    fitted: yt8m_features.StreamingPCA | None,
    num_shards: int,
    prefix: str,
    batch_size: int,
    pca_dim: int,
    pca_path: str | None,
    pca_whiten: bool,
    skip_bad_records: bool,
    runner: str,
    beam_args: Sequence[str],
    files_per_task: int,
) -> dict[str, Any]:
    """:func:`preprocess` as an Apache Beam pipeline on ``runner`` (see :mod:`zoo.data.yt8m_beam`);
    ``out_layout.packed``: packed frame-level records (``statistics`` unused)."""
    try:
        import apache_beam as beam

        from zoo.data import yt8m_beam
    except ImportError as e:
        raise ValueError(
            f"--runner={runner} needs Apache Beam ({e}); install the extra: pip install -e '.[beam]'"
        ) from None
    if files_per_task < 1:
        raise ValueError(f"--files_per_task must be >= 1, got {files_per_task}")
    options = yt8m_beam.pipeline_options(beam_args, runner)
    files = yt8m.list_files(input_pattern)
    groups = [files[i : i + files_per_task] for i in range(0, len(files), files_per_task)]
    pipeline = beam.Pipeline(runner=yt8m_beam.pipeline_runner(runner), options=options)
    work = pipeline | "Files" >> beam.Create(groups) | "Distribute" >> beam.Reshuffle()
    if out_layout.packed:
        records = work | "Pack" >> beam.ParDo(yt8m_beam.PackedRecords(layout, batch_size, skip_bad_records))
    else:
        videos = work | "Statistics" >> beam.ParDo(
            yt8m_beam.VideoStatistics(layout, statistics, batch_size, skip_bad_records)
        )
        if pca_dim:
            if fitted is None:
                pca = (
                    videos
                    | "PCAInput" >> beam.Map(yt8m_beam.pca_input, pca_columns)
                    | "PCA"
                    >> yt8m_beam.FitPCA(len(pca_columns), pca_dim, save_path=pca_path, source=input_pattern)
                )
            else:
                pca = pipeline | "LoadedPCA" >> beam.Create([fitted])
            whitened = dict(pca=beam.pvalue.AsSingleton(pca), pca_columns=pca_columns, whiten=pca_whiten)
            records = videos | "Records" >> beam.Map(yt8m_beam.video_record, out_layout, **whitened)
            out_layout = _with_pca_feature(out_layout, pca_dim)
        else:
            records = videos | "Records" >> beam.Map(yt8m_beam.video_record, out_layout)
    _ = records | "Write" >> yt8m_beam.WriteShards(output_dir, prefix, num_shards)
    temporary = os.path.join(output_dir, f"beam-temp-{prefix}-*")
    before = set(tf.io.gfile.glob(temporary)) if tf.io.gfile.isdir(output_dir) else set()
    try:
        result = pipeline.run()
        result.wait_until_finish()
    except Exception as e:
        for leftover in set(tf.io.gfile.glob(temporary)) - before:  # the sink's, when the job failed
            tf.io.gfile.rmtree(leftover)
        if isinstance(e, ValueError):
            raise ValueError(_BEAM_CONTEXT.sub("", str(e)).strip()) from None
        raise
    paths = _shard_paths(output_dir, prefix, num_shards)
    num_videos = yt8m_beam.run_count(result, "videos")
    if num_videos == 0:
        for path in paths:
            if tf.io.gfile.exists(path):
                tf.io.gfile.remove(path)
        raise ValueError(f"no videos read from {input_pattern!r}")
    bad = yt8m_beam.run_count(result, "bad_records")
    logging.info(
        "Beam (%s): wrote %d videos to %d files in %s (bad records skipped: %d)",
        runner,
        num_videos,
        num_shards,
        output_dir,
        bad,
    )
    return {"files": paths, "num_videos": num_videos, "layout": out_layout, "bad_records": bad}


def _with_pca_feature(out_layout: yt8m.RecordLayout, pca_dim: int) -> yt8m.RecordLayout:
    names, sizes = out_layout.feature_names, out_layout.feature_sizes
    return out_layout.replace(feature_names=(*names, "pca"), feature_sizes=(*sizes, pca_dim))


def _columns(out_layout: yt8m.RecordLayout, names: Sequence[str]) -> np.ndarray:
    """Indices of the features ``names`` (in that order) in a statistics row of ``out_layout``."""
    starts = np.cumsum([0, *out_layout.feature_sizes])
    where = {n: (int(starts[i]), int(starts[i + 1])) for i, n in enumerate(out_layout.feature_names)}
    return np.concatenate([np.arange(*where[n]) for n in names]).astype(np.int64)


def _frame_input(
    input_pattern: str, batch_size: int, layout: yt8m.RecordLayout, skip_bad_records: bool, **reader: Any
) -> tuple[Any, Any]:
    """The zoo's frame-level reader over ``input_pattern`` (``reader``: its output options) and the counter
    of skipped bad records (None unless ``skip_bad_records``)."""
    counter = yt8m.make_bad_record_counter() if skip_bad_records else None
    ds = yt8m.frame_dataset(
        input_pattern,
        batch_size,
        layout,
        skip_bad_records=skip_bad_records,
        bad_record_counter=counter,
        **reader,
    )
    return ds, counter


def _shard_paths(output_dir: str, prefix: str, num_shards: int) -> list[str]:
    return [
        os.path.join(output_dir, f"{prefix}-{i:05d}-of-{num_shards:05d}.tfrecord") for i in range(num_shards)
    ]


def _check_args(num_shards: int, top_k: int, pca_dim: int, pca_input: str) -> None:
    """Rejects out-of-range sizes and an unknown ``--pca_input``, naming the values."""
    if num_shards < 1 or top_k < 1 or pca_dim < 0:
        raise ValueError(
            f"num_shards and top_k must be >= 1 and pca_dim >= 0; got {num_shards}, {top_k}, {pca_dim}"
        )
    if pca_input not in _PCA_INPUTS:
        raise ValueError(f"--pca_input must be one of {_PCA_INPUTS}, got {pca_input!r}")


def _pca_names(out_layout: yt8m.RecordLayout, pca_input: str) -> list[str]:
    """The output features the PCA reads, in order: the means (``pca_input="mean"``) or all statistics."""
    names = out_layout.feature_names
    return [n for n in names if n.startswith("mean_")] if pca_input == "mean" else list(names)


def _pca_to_use(
    out_layout: yt8m.RecordLayout, pca_names: Sequence[str], pca_dim: int, pca_path: str | None
) -> tuple[yt8m_features.StreamingPCA | None, yt8m_features.StreamingPCA | None]:
    """``(fitted, streaming)``: the PCA loaded from an existing ``pca_path`` (checked against the widths
    this job needs), else a ``StreamingPCA`` to fit over the input; both ``None`` without ``pca_dim``."""
    sizes = dict(zip(out_layout.feature_names, out_layout.feature_sizes, strict=True))
    pca_width = sum(sizes[n] for n in pca_names)
    fitted = None
    if pca_dim and pca_path and tf.io.gfile.exists(pca_path):
        with tf.io.gfile.GFile(pca_path, "rb") as f:  # also gs:// (a Beam job's --pca_path)
            fitted = yt8m_features.StreamingPCA.load(io.BytesIO(f.read()))
        if fitted.dim != pca_width or fitted.components.shape[1] != pca_dim:
            raise ValueError(
                f"--pca_path {pca_path} holds a PCA {fitted.dim} -> {fitted.components.shape[1]}, "
                f"but this job needs {pca_width} -> {pca_dim}"
            )
    streaming = yt8m_features.StreamingPCA(pca_width) if pca_dim and fitted is None else None
    return fitted, streaming


def _statistics_fn(
    layout: yt8m.RecordLayout, relu: dict[str, yt8m_features.StreamingPCA], top_k: int
) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """``(features [B, T, D], num_frames [B]) -> [B, sum_f (2 + K) * size_f]``: per feature, in layout
    order, [mean; std; top-K] over the real frames (paper §4.2), in the relu space for ``relu``'s features."""
    offsets = np.cumsum([0, *layout.feature_sizes])

    def in_space(name: str, frames: tf.Tensor) -> tf.Tensor:
        return relu[name].tf_inverse_transform(frames) if name in relu else frames

    return tf.function(
        lambda f, n: tf.concat(
            [
                yt8m_features.tf_video_statistics(in_space(name, f[:, :, int(lo) : int(hi)]), n, top_k)
                for name, lo, hi in zip(layout.feature_names, offsets[:-1], offsets[1:], strict=True)
            ],
            axis=1,
        )
    )


def _video_statistics(
    ds: Any,
    stats_fn: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
    layout: yt8m.RecordLayout,
    relu: dict[str, yt8m_features.StreamingPCA],
    top_k: int,
) -> Iterator[tuple[np.ndarray, list[np.ndarray], dict[str, np.ndarray]]]:
    """Per batch of ``ds``: ``(ids, label id lists, {output feature name: [B, size]})``."""
    for inputs, labels in _batches(ds):
        stats = stats_fn(inputs["features"], inputs["num_frames"]).numpy()
        ids = inputs["id"].numpy()
        label_lists = [np.flatnonzero(row) for row in labels.numpy()]
        per_video: dict[str, np.ndarray] = {}
        col = 0
        for name, size in zip(layout.feature_names, layout.feature_sizes, strict=True):
            size = relu[name].dim if name in relu else size
            parts = _split_stats(stats[:, col : col + (2 + top_k) * size], size, top_k)
            per_video[f"mean_{name}"] = parts["mean"]
            per_video[f"std_{name}"] = parts["std"]
            per_video[f"top{top_k}_{name}"] = parts["top"]
            col += (2 + top_k) * size
        yield ids, label_lists, per_video


def _write_staged(
    videos: Iterable[tuple[np.ndarray, list[np.ndarray], dict[str, np.ndarray]]],
    stage: Sequence[str],
    out_layout: yt8m.RecordLayout,
    streaming: yt8m_features.StreamingPCA | None,
    pca_names: Sequence[str],
) -> int:
    """Writes the videos round-robin to the ``stage`` files (updating ``streaming`` with the PCA input);
    returns how many. If that fails or reads no video, the staged files are removed: nothing half-written
    stays behind."""
    names = out_layout.feature_names

    def records() -> Iterator[bytes]:
        for ids, label_lists, per_video in videos:
            if streaming is not None:
                streaming.update(np.concatenate([per_video[n] for n in pca_names], axis=1))
            for b in range(ids.shape[0]):
                feats = {n: per_video[n][b] for n in names}
                yield yt8m.video_example(ids[b], label_lists[b], feats, out_layout)

    return _write_round_robin(records(), stage)


def _write_round_robin(records: Iterable[bytes], stage: Sequence[str]) -> int:
    """Writes ``records`` round-robin to the ``stage`` files; returns how many. If that fails or there is
    no record, the staged files are removed: nothing half-written stays behind."""
    writers = [tf.io.TFRecordWriter(p) for p in stage]
    num_videos, failed = 0, True
    try:
        for record in records:
            writers[num_videos % len(writers)].write(record)
            num_videos += 1
        failed = num_videos == 0
    finally:
        for w in writers:
            w.close()
        if failed:
            for p in stage:
                if tf.io.gfile.exists(p):
                    tf.io.gfile.remove(p)
    return num_videos


def _publish(
    stage: Sequence[str],
    paths: Sequence[str],
    pca: yt8m_features.StreamingPCA | None,
    pca_names: Sequence[str],
    whiten: bool,
) -> None:
    """Moves each staged file to its path: renamed, or with ``pca`` rewritten (atomically) adding the
    ``pca`` feature, then the staged file removed."""
    for src, dst in zip(stage, paths, strict=True):
        if pca is None:
            tf.io.gfile.rename(src, dst, overwrite=True)
        else:
            yt8m.write_records(dst, _with_pca(src, pca, pca_names, whiten))
            tf.io.gfile.remove(src)


def _relu_inversions(
    layout: yt8m.RecordLayout,
    space: str,
    inverse_pca: str | yt8m_features.StreamingPCA | None,
    relu_features: Sequence[str] | None,
) -> dict[str, yt8m_features.StreamingPCA]:
    """``{feature: PCA to invert}`` for ``space="relu"``; ``{}`` for ``"pca"``. Errors name the flag."""
    if space not in STATISTICS_SPACES:
        raise ValueError(f"--statistics_space must be one of {STATISTICS_SPACES}, got {space!r}")
    if space == "pca":
        return {}
    if inverse_pca is None:
        raise ValueError("--statistics_space=relu needs --inverse_pca (a release PCA directory or an .npz)")
    names = tuple(relu_features) if relu_features else layout.feature_names[:1]
    sizes = dict(zip(layout.feature_names, layout.feature_sizes, strict=True))
    pcas = {}
    for name in names:
        if name not in sizes:
            raise ValueError(f"--relu_features: {name!r} is not one of the features {layout.feature_names}")
        pca = inverse_pca
        if not isinstance(pca, yt8m_features.StreamingPCA):
            pca = yt8m_features.load_pca(str(inverse_pca), sizes[name])
        if pca.num_components != sizes[name]:
            raise ValueError(
                f"--inverse_pca has {pca.num_components} components, feature {name!r} has {sizes[name]}"
            )
        pcas[name] = pca
    return pcas


def _batches(ds: Any) -> Any:
    """Iterates ``ds``; a reader error becomes a ``ValueError`` naming the file and record index."""
    iterator = iter(ds)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except tf.errors.OpError as e:
            raise ValueError(yt8m.error_message(e)) from None
        yield batch


def _with_pca(path: str, pca: yt8m_features.StreamingPCA, pca_names: Sequence[str], whiten: bool):
    for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
        example = tf.train.Example.FromString(raw)
        fmap = example.features.feature
        x = np.concatenate([np.asarray(fmap[n].float_list.value, np.float64) for n in pca_names])[None]
        projected = pca.transform(x, whiten=whiten, normalize=False)[0]
        fmap["pca"].float_list.value.extend(projected.tolist())
        yield example.SerializeToString()


# ------------------------------------------------------------------------------------------------ flags
def _define_flags() -> None:
    """Flags are defined when the tool runs, not at import, so the library part can be imported beside
    other absl apps (e.g. the trainer) without duplicate flag names."""
    flags.DEFINE_string("input", None, "Frame-level TFRecords: glob, comma-separated globs, or directory.")
    flags.DEFINE_string("output_dir", None, "Directory for the video-level TFRecords.")
    flags.DEFINE_integer("num_shards", 1, "Output files.")
    flags.DEFINE_string("prefix", "video", "Output file name prefix.")
    flags.DEFINE_integer("batch_size", 64, "Videos per batch while reading.")
    flags.DEFINE_integer("max_frames", yt8m.DEFAULT_MAX_FRAMES, "Frames per video used for the statistics.")
    flags.DEFINE_integer("top_k", 5, "Top-K ordinal statistics per dimension (paper §4.2: 5).")
    flags.DEFINE_integer("num_classes", yt8m.DEFAULT_NUM_CLASSES, "Label ids must be < num_classes.")
    flags.DEFINE_list("feature_names", ["rgb", "audio"], "Frame feature lists (paper-era data: inc3).")
    flags.DEFINE_list("feature_sizes", ["1024", "128"], "Bytes per frame of each feature list.")
    flags.DEFINE_string("id_key", "id", "Context id key (paper-era data: video_id).")
    flags.DEFINE_string("labels_key", "labels", "Context labels key.")
    flags.DEFINE_integer("pca_dim", 0, "If > 0, also write a 'pca' feature of this size.")
    flags.DEFINE_enum("pca_input", "mean", list(_PCA_INPUTS), "PCA over the means, or over all statistics.")
    flags.DEFINE_string("pca_path", None, "Load the PCA from this .npz if it exists, else fit and save it.")
    flags.DEFINE_bool("pca_whiten", True, "Whiten the PCA projection (paper §3.3).")
    flags.DEFINE_bool("skip_bad_records", False, "Skip and count bad records instead of failing.")
    flags.DEFINE_enum(
        "statistics_space",
        "pca",
        list(STATISTICS_SPACES),
        "pca: statistics of the stored (dequantised PCA) frame features; relu: paper §4.2.1, after "
        "inverting --inverse_pca on --relu_features.",
    )
    flags.DEFINE_string(
        "inverse_pca", None, "For relu: release PCA directory (mean/eigenvals/eigenvecs.npy) or an .npz."
    )
    flags.DEFINE_list("relu_features", ["rgb"], "For relu: features whose PCA is inverted.")
    flags.DEFINE_string(
        "runner",
        None,
        "Run as an Apache Beam pipeline on this runner (DirectRunner: in this process; DataflowRunner, "
        "FlinkRunner, SparkRunner, PortableRunner). Every other argument that is not a flag of this job goes "
        "to Beam's PipelineOptions (--name=value). Unset: the single-process job.",
    )
    flags.DEFINE_enum(
        "output_format",
        "stats",
        list(OUTPUT_FORMATS),
        "stats: video-level [mean; std; top-K] (and --pca_dim) records; packed: one packed frame-level "
        "record per video (uint8 codes [num_frames, D] in one bytes value; read with --dataset=yt8m_packed).",
    )
    flags.DEFINE_integer(
        "files_per_task",
        4,
        "With --runner: input files read by one unit of Beam work (a TFRecord file cannot be split; a few "
        "per unit amortise the reader's start-up).",
    )


def _parse_flags(argv: list[str]) -> list[str]:
    """This job's flags; with ``--runner`` the arguments it does not know are returned for Beam (after
    ``argv[0]``), without it they are absl's usual error."""
    try:
        rest = flags.FLAGS(argv, known_only=True)
    except flags.Error as e:
        sys.stderr.write(
            f"FATAL Flags parsing error: {e}\nPass --helpshort or --helpfull to see help on flags.\n"
        )
        sys.exit(1)
    return rest if flags.FLAGS.runner else app.parse_flags_with_usage(argv)


def main(argv: Sequence[str]) -> None:
    f = flags.FLAGS
    if not f.input or not f.output_dir:
        raise app.UsageError("--input and --output_dir are required")
    try:
        sizes = tuple(int(s) for s in f.feature_sizes)
    except ValueError as err:
        raise app.UsageError(f"--feature_sizes must be integers, got {f.feature_sizes}") from err
    try:
        layout = yt8m.RecordLayout(
            feature_names=tuple(f.feature_names),
            feature_sizes=sizes,
            num_classes=f.num_classes,
            max_frames=f.max_frames,
            id_key=f.id_key,
            labels_key=f.labels_key,
        )
        summary = preprocess(
            f.input,
            f.output_dir,
            layout=layout,
            num_shards=f.num_shards,
            prefix=f.prefix,
            batch_size=f.batch_size,
            top_k=f.top_k,
            pca_dim=f.pca_dim,
            pca_input=f.pca_input,
            pca_path=f.pca_path,
            pca_whiten=f.pca_whiten,
            skip_bad_records=f.skip_bad_records,
            statistics_space=f.statistics_space,
            inverse_pca=f.inverse_pca,
            relu_features=f.relu_features,
            runner=f.runner,
            beam_args=list(argv[1:]) if f.runner else [],
            files_per_task=f.files_per_task,
            output_format=f.output_format,
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"yt8m_preprocess: error: {e}", file=sys.stderr)
        sys.exit(2)
    out = summary["layout"]
    print(
        f"wrote {summary['num_videos']} {'packed ' if out.packed else ''}videos to {len(summary['files'])} "
        f"files in {f.output_dir}; features {list(zip(out.feature_names, out.feature_sizes, strict=True))}; "
        f"bad records skipped: {summary['bad_records']}"
    )


def run() -> None:
    _define_flags()
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
