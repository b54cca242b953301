"""The YouTube-8M preprocessing job as Apache Beam transforms (``zoo-yt8m-preprocess --runner=...``).

Paper §4.2 (Abu-El-Haija et al. 2016): video-level features are statistics of the frame features over the
real frames ([mean; std; top-K]), PCA-whitened (§3.3). The frame-level release is about 1.5 TB in 3,844
training files, more than one process gets through in reasonable time; the same job as a Beam pipeline
runs on the DirectRunner (in-process, nothing to set up) or on Dataflow, Flink or Spark:

    file groups -Reshuffle-> VideoStatistics -> (id, label ids, statistics) -+-> video_record -> WriteShards
                             (read, parse, [mean; std; top-K])                |        ^ fitted PCA
                                                                              +-> FitPCA (side input)

* :class:`VideoStatistics` reads a group of whole files per unit of work (a TFRecord file cannot be split;
  Beam's own TFRecord source is not splittable either; a few files per unit amortise the reader's start-up)
  with the zoo's own reader (:func:`zoo.data.yt8m.frame_dataset`), so a truncated file or a bad record
  stops the job with the single-process job's one line naming the file and record index, and
  ``skip_bad_records`` skips and counts exactly the same records. The statistics are the single-process
  job's function (passed in as a factory, built once per worker).
* :class:`PackedRecords` (``--output_format=packed``) instead re-encodes each video as one packed
  frame-level record (:func:`zoo.data.yt8m.packed_records`, the single-process job's encoder), written by
  :class:`WriteShards` without statistics or PCA.
* :class:`FitPCA` fits the whitened PCA with a combiner, :class:`PCASums`: each worker accumulates
  ``n``, ``sum x`` and ``sum x x^T`` in float64 (a :class:`zoo.data.yt8m_features.StreamingPCA`), the
  partial sums are merged, and the eigendecomposition runs once. No vector is collected on one worker;
  memory is O(D^2) per worker.
* :class:`WriteShards` writes ``<output_dir>/<prefix>-0000i-of-0000N.tfrecord`` with Beam's TFRecord sink:
  every shard is first written to ``<output_dir>/beam-temp-<prefix>-<uuid>/`` and the finished shards are
  renamed into place in the sink's finalize step, once all of them are written; a pipeline that fails
  before then leaves no output shard (older shards matching the name are deleted just before the renames).
* :func:`pipeline_options`: standard Beam pipeline options from the command line, unknown ones rejected;
  :func:`pipeline_runner`: ``DirectRunner`` means Beam's in-process runner (the FnApiRunner). Beam 2.77's
  ``DirectRunner`` first tries to download and start its Prism binary and falls back to the FnApiRunner when
  it cannot; here it never downloads anything (``--runner=PrismRunner`` asks for Prism).
"""

import os
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.runners.runner import PipelineRunner

from zoo.data import yt8m
from zoo.data.yt8m_features import StreamingPCA

__all__ = [
    "METRICS_NAMESPACE",
    "Video",
    "VideoStatistics",
    "PackedRecords",
    "PCASums",
    "FitPCA",
    "WriteShards",
    "pca_input",
    "video_record",
    "save_pca",
    "pipeline_options",
    "pipeline_runner",
    "run_count",
]

#: Namespace of the pipeline's counters: ``videos`` (written) and ``bad_records`` (skipped).
METRICS_NAMESPACE = "zoo.yt8m_preprocess"

#: One video between the stages: ``(id, label ids int64 [L], statistics row float32 [S])``.
Video = tuple[bytes, np.ndarray, np.ndarray]

StatisticsFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


class _FrameBatches(beam.DoFn):
    """Reads a unit of work (a list of frame-level file names) in file order with the zoo's own reader
    (:func:`zoo.data.yt8m.frame_dataset` with ``reader_options``): a reader error raises ``ValueError``
    naming the file and record index; ``skip_bad_records`` skips them and counts ``bad_records``."""

    def __init__(self, layout: yt8m.RecordLayout, batch_size: int, skip_bad_records: bool, **reader_options):
        super().__init__()
        self._layout = layout
        self._batch_size = batch_size
        self._skip = skip_bad_records
        self._reader_options = reader_options
        self._videos = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "videos")
        self._bad = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "bad_records")

    def _batches(self, files: Sequence[str]) -> Iterator[tuple[dict[str, tf.Tensor], tf.Tensor]]:
        counter = yt8m.make_bad_record_counter() if self._skip else None
        ds = yt8m.frame_dataset(
            list(files),
            self._batch_size,
            self._layout,
            skip_bad_records=self._skip,
            bad_record_counter=counter,
            **self._reader_options,
        )
        iterator = iter(ds)
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                break
            except tf.errors.OpError as e:
                raise ValueError(yt8m.error_message(e)) from None
            yield batch
        if counter is not None:
            self._bad.inc(int(counter.numpy()))


class VideoStatistics(_FrameBatches):
    """Frame-level file names (a list: one unit of work) -> one :data:`Video` per record, in file order.

    ``statistics`` is a picklable factory (e.g. a ``functools.partial``) returning the batched function
    ``(features [B, T, D], num_frames [B]) -> [B, S]`` of the dequantised (not normalised) frames; it is
    built once per worker, in ``setup``. Counts ``videos`` and ``bad_records`` (see
    :data:`METRICS_NAMESPACE`). A reader error raises ``ValueError`` naming the file and record index.
    """

    def __init__(
        self,
        layout: yt8m.RecordLayout,
        statistics: Callable[[], StatisticsFn],
        batch_size: int = 64,
        skip_bad_records: bool = False,
    ) -> None:
        super().__init__(layout, batch_size, skip_bad_records, normalize=False)
        self._statistics = statistics
        self._fn: StatisticsFn | None = None

    def setup(self) -> None:
        self._fn = self._statistics()

    def process(self, files: Sequence[str]) -> Iterator[Video]:
        for inputs, labels in self._batches(files):
            stats = self._fn(inputs["features"], inputs["num_frames"]).numpy()
            ids, labels = inputs["id"].numpy(), labels.numpy()
            for b in range(ids.shape[0]):
                self._videos.inc()
                yield bytes(ids[b]), np.flatnonzero(labels[b]).astype(np.int64), stats[b]


class PackedRecords(_FrameBatches):
    """Frame-level file names (a list: one unit of work) -> the serialized packed record of each video
    (``zoo-yt8m-preprocess --output_format=packed``), encoded by :func:`zoo.data.yt8m.packed_records` as
    the single-process job does. Counts ``videos`` and ``bad_records``."""

    def __init__(
        self, layout: yt8m.RecordLayout, batch_size: int = 64, skip_bad_records: bool = False
    ) -> None:
        super().__init__(layout, batch_size, skip_bad_records, dequantize=False)

    def process(self, files: Sequence[str]) -> Iterator[bytes]:
        for inputs, labels in self._batches(files):
            for record in yt8m.packed_records(inputs, labels, self._layout):
                self._videos.inc()
                yield record


class PCASums(beam.CombineFn):
    """Combiner of batches ``[N, dim]`` (lists of rows) into the float64 sums ``n``, ``sum x``, ``sum x x^T``
    of a :class:`StreamingPCA` (unfitted): ``merge_accumulators`` adds the partial sums of workers."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self._dim = dim

    def create_accumulator(self) -> StreamingPCA:
        return StreamingPCA(self._dim)

    def add_input(self, accumulator: StreamingPCA, batch: Sequence[np.ndarray]) -> StreamingPCA:
        accumulator.update(np.stack(batch).reshape(-1, self._dim))
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[StreamingPCA]) -> StreamingPCA:
        accumulators = iter(accumulators)
        merged = next(accumulators)
        for other in accumulators:
            merged.merge(other)
        return merged

    def extract_output(self, accumulator: StreamingPCA) -> StreamingPCA:
        return accumulator


def _fit(sums: StreamingPCA, num_components: int, save_path: str | None, source: str) -> StreamingPCA:
    if sums.count == 0:
        raise ValueError(f"no videos read from {source!r}")
    pca = sums.fit(num_components)
    if save_path:
        save_pca(pca, save_path)
    return pca


class FitPCA(beam.PTransform):
    """PCollection of vectors ``[dim]`` -> a single fitted :class:`StreamingPCA` (``num_components``,
    whitening applied by ``transform``), for use as a side input; saved to ``save_path`` when given.
    An empty input raises ``ValueError`` naming ``source``."""

    def __init__(
        self, dim: int, num_components: int, *, save_path: str | None = None, source: str = "the input"
    ) -> None:
        super().__init__()
        self._dim, self._num_components = dim, num_components
        self._save_path, self._source = save_path, source

    def expand(self, vectors: beam.PCollection) -> beam.PCollection:
        return (
            vectors
            | "Batch" >> beam.BatchElements(min_batch_size=64, max_batch_size=512)
            | "Sums" >> beam.CombineGlobally(PCASums(self._dim))
            | "Fit" >> beam.Map(_fit, self._num_components, self._save_path, self._source)
        )


def pca_input(video: Video, columns: np.ndarray) -> np.ndarray:
    """The PCA's input vector of a video: its statistics row at ``columns``."""
    return video[2][columns]


def video_record(
    video: Video,
    layout: yt8m.RecordLayout,
    pca: StreamingPCA | None = None,
    pca_columns: np.ndarray | None = None,
    whiten: bool = True,
) -> bytes:
    """A serialized video-level Example: the statistics row split into ``layout``'s features (in order),
    plus ``pca``, the projection of the row's ``pca_columns`` (not L2-normalised; the reader does that)."""
    video_id, labels, row = video
    offsets = np.cumsum(layout.feature_sizes)[:-1]
    features = dict(zip(layout.feature_names, np.split(row, offsets), strict=True))
    if pca is not None:
        x = np.asarray(row[pca_columns], np.float64)[None]
        features["pca"] = pca.transform(x, whiten=whiten, normalize=False)[0]
    return yt8m.video_example(video_id, labels, features, layout)


class WriteShards(beam.PTransform):
    """Serialized records -> ``<output_dir>/<prefix>-0000i-of-0000N.tfrecord`` for every ``i < num_shards``
    (empty shards too), each written to a temporary file and renamed into place when all are written
    (Beam's file sink)."""

    def __init__(self, output_dir: str, prefix: str, num_shards: int) -> None:
        super().__init__()
        self._prefix = FileSystems.join(output_dir, prefix)
        self._num_shards = num_shards

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        return records | beam.io.WriteToTFRecord(
            self._prefix,
            file_name_suffix=".tfrecord",
            num_shards=self._num_shards,
            shard_name_template="-SSSSS-of-NNNNN",
        )


def save_pca(pca: StreamingPCA, path: str) -> None:
    """:meth:`StreamingPCA.save` to a local path; to another file system (``gs://``) through a local file
    copied to a temporary name beside ``path`` and renamed onto it."""
    if "://" not in path:
        pca.save(path)
        return
    with tempfile.TemporaryDirectory() as local:
        pca.save(os.path.join(local, "pca.npz"))
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        tf.io.gfile.copy(os.path.join(local, "pca.npz"), tmp, overwrite=True)
        tf.io.gfile.rename(tmp, path, overwrite=True)


def pipeline_options(args: Sequence[str], runner: str = "DirectRunner") -> PipelineOptions:
    """Beam ``PipelineOptions`` from ``--runner`` and the standard Beam flags in ``args`` (e.g.
    ``--project=... --region=... --temp_location=gs://...`` for Dataflow, ``--flink_master=host:8081``,
    ``--direct_num_workers=2``). An argument that is no Beam option raises ``ValueError`` naming it (Beam
    itself would only log and drop it, so a misspelt flag would pass unnoticed)."""
    args = [f"--runner={runner}", *args]
    options = PipelineOptions(args)
    known = set(options.get_all_options())
    unknown = sorted(set(PipelineOptions(args).get_all_options(retain_unknown_options=True)) - known)
    if unknown:
        raise ValueError(
            f"unknown arguments {[f'--{u}' for u in unknown]}: neither flags of this job nor Beam pipeline "
            "options (see --helpfull, and Beam's PipelineOptions: --runner, --project, --temp_location, ...)"
        )
    return options


def pipeline_runner(runner: str) -> PipelineRunner | None:
    """The runner object for ``--runner=runner``: Beam's in-process FnApiRunner for ``DirectRunner``
    (``--direct_num_workers`` and ``--direct_running_mode`` still apply); ``None`` (the pipeline options
    name the runner) for any other."""
    return FnApiRunner() if runner == "DirectRunner" else None


def run_count(result: Any, name: str) -> int:
    """The committed (else attempted) value of this pipeline's counter ``name`` after ``result`` finished."""
    query = result.metrics().query(
        beam.metrics.MetricsFilter().with_namespace(METRICS_NAMESPACE).with_name(name)
    )
    return int(sum(c.result or 0 for c in query["counters"]))
