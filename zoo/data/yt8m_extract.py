"""YouTube-8M features from raw video (Abu-El-Haija et al. 2016, §3.3).

Per video: frames at 1 fps, up to 300 (:mod:`zoo.data.video_decode`) -> the Inception network's
pre-classification features (``keras.applications.InceptionV3``, global average pool, 2,048-d), batched
-> PCA with whitening to 1,024 dimensions -> 8-bit quantisation (:mod:`zoo.data.yt8m_features`) ->
one frame-level ``tf.train.SequenceExample`` in the official layout (context ``id`` and ``labels``, feature
list ``rgb``: one byte string per frame), written with :func:`zoo.data.yt8m.frame_example`.

The PCA is either loaded (:func:`zoo.data.yt8m_features.load_pca`: the official release's
``mean.npy`` / ``eigenvals.npy`` / ``eigenvecs.npy``, or an ``.npz`` fitted earlier) or fitted by
streaming over the features of the videos being extracted (a first pass caches each video's 2,048-d
features in a temporary folder; the second projects and writes them). Whitening uses the release's
``epsilon = 1e-4``; frames are not L2-normalised (the release's are not).

Weights load the normal Keras way: ``weights="imagenet"`` (downloaded by Keras on first use) or the path
of a weights file; ``weights=None`` gives random weights (the tests; the features are then meaningless).

``num_workers > 1`` decodes videos (decoding and resizing, the CPU-heavy part besides the network) in that
many worker processes, ahead of the network by ``2 * num_workers`` videos, while the InceptionV3 forward
stays in this process, batched as with one worker; results are taken in input order, so the records are
byte for byte those of ``num_workers=1``. Forward passes in the workers were not faster on the 2-core
development machine (the network takes ~98% of the time on CPU and already uses every core), cost one
network per worker in start-up and memory, and could differ in float round-off from the one-process
network; the pool pays off where the network is fast (an accelerator) and decoding is the wall.

Workers come from a ``forkserver``, not ``fork``: forking this process would copy TensorFlow's running
thread pools and their locks (and a CUDA context on a GPU machine) in whatever state other threads left
them, which can deadlock or crash the child. The fork server is a fresh interpreter that imports this
package's decoder once (TensorFlow comes with the ``zoo`` package, imported but never run) and forks the
workers from that state: they start in well under a second and share its memory, where ``spawn`` would
import TensorFlow again in every worker (measured here: ~5 s of CPU and ~0.8 GB resident per worker).
Callers' scripts need the usual ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import multiprocessing
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from zoo.data import video_decode, yt8m, yt8m_features

__all__ = [
    "INCEPTION_DIM",
    "ExtractOptions",
    "VideoItem",
    "DecodeWorkerError",
    "frame_network",
    "frame_features",
    "read_video_csv",
    "items_from_directory",
    "extract",
]

#: Width of InceptionV3's globally pooled features.
INCEPTION_DIM = 2048


@dataclasses.dataclass(frozen=True)
class ExtractOptions:
    """How videos become records. Defaults are the paper's (§3.3) and the release's."""

    fps: float = 1.0
    max_frames: int = yt8m.DEFAULT_MAX_FRAMES
    image_size: int = 299
    weights: str | None = "imagenet"
    batch_size: int = 32
    pca_dim: int = 1024
    num_classes: int = yt8m.DEFAULT_NUM_CLASSES
    skip_bad_videos: bool = False
    num_workers: int = 1  # processes decoding videos; 1 decodes in this process


class DecodeWorkerError(RuntimeError):
    """A decoding worker process failed other than with :class:`zoo.data.video_decode.VideoDecodeError`
    (it died, or raised something unexpected); the message names the video file."""


@dataclasses.dataclass(frozen=True)
class VideoItem:
    """One input video: its file, the ``id`` written for it and its label ids."""

    path: str
    video_id: str
    labels: tuple[int, ...] = ()


def frame_network(weights: str | None = "imagenet", image_size: int = 299, seed: int = 0) -> Any:
    """``keras.applications.InceptionV3(include_top=False, pooling="avg")`` on ``image_size`` squares
    (>= 75): ``[N, s, s, 3]`` floats in [-1, 1] -> ``[N, 2048]``. ``weights``: ``"imagenet"``, a weights
    file, or ``None`` (random, drawn from ``seed``, so separate runs, e.g. a train and a validate split,
    get the same network)."""
    if image_size < 75:
        raise ValueError(f"--image_size must be >= 75 (InceptionV3's smallest input), got {image_size}")
    if weights is None:
        keras.utils.set_random_seed(seed)
    return keras.applications.InceptionV3(
        include_top=False, pooling="avg", weights=weights, input_shape=(image_size, image_size, 3)
    )


def frame_features(network: Any, frames: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """float32 ``[T, 2048]`` features of uint8 RGB ``frames [T, s, s, 3]`` in batches of ``batch_size``
    (InceptionV3's preprocessing: ``x / 127.5 - 1``). A short last batch is padded to a power of two, so a
    few compiled shapes serve all videos (on the accelerator when TensorFlow sees one)."""
    step = _compiled(network)
    out = []
    for start in range(0, frames.shape[0], batch_size):
        batch = frames[start : start + batch_size]
        n = batch.shape[0]
        padded = min(batch_size, 1 << (n - 1).bit_length())  # a power of two: few shapes to compile
        if n < padded:
            batch = np.concatenate([batch, np.zeros((padded - n, *batch.shape[1:]), batch.dtype)])
        out.append(step(tf.constant(batch)).numpy()[:n])
    return np.concatenate(out, axis=0)


_COMPILED: dict[int, tuple[Any, Any]] = {}


def _compiled(network: Any) -> Any:
    """A ``tf.function`` running ``network`` in inference mode on uint8 batches (cached per network)."""
    key = id(network)
    if key not in _COMPILED or _COMPILED[key][0] is not network:

        @tf.function(reduce_retracing=True)
        def step(batch: tf.Tensor) -> tf.Tensor:
            x = tf.cast(batch, tf.float32) / 127.5 - 1.0
            return tf.cast(network(x, training=False), tf.float32)

        _COMPILED[key] = (network, step)
    return _COMPILED[key][1]


def read_video_csv(path: str, num_classes: int) -> list[VideoItem]:
    """The starter code's input list: lines ``<video_file>,<label>;<label>;...`` (labels may be empty).
    Relative video paths are relative to the CSV's folder; the id is the file name without extension."""
    items = []
    base = os.path.dirname(os.path.abspath(path))
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            file, _, labels = line.partition(",")
            file = os.path.join(base, file.strip())
            items.append(VideoItem(file, _video_id(file), _labels(labels, num_classes, f"{path}:{line_no}")))
    return items


def _video_id(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _labels(text: str, num_classes: int, where: str) -> tuple[int, ...]:
    try:
        labels = tuple(sorted({int(x) for x in text.replace(",", ";").split(";") if x.strip()}))
    except ValueError:
        raise ValueError(f"{where}: labels {text!r} must be integers separated by ';'") from None
    bad = [x for x in labels if not 0 <= x < num_classes]
    if bad:
        raise ValueError(f"{where}: labels {bad} are outside [0, {num_classes}) (--num_classes)")
    return labels


def items_from_directory(
    directory: str, labels: str = "", num_classes: int = yt8m.DEFAULT_NUM_CLASSES
) -> list[VideoItem]:
    """:class:`VideoItem` for every video file in ``directory``, all with the label ids in ``labels``."""
    ids = _labels(labels, num_classes, "--labels")
    return [VideoItem(p, _video_id(p), ids) for p in video_decode.list_videos(directory)]


#: What decoding one video gives: its frames, or the error naming the file.
Decoded = tuple[VideoItem, np.ndarray | video_decode.VideoDecodeError]


def _decode_in_process(items: Iterable[VideoItem], options: ExtractOptions) -> Iterator[Decoded]:
    for item in items:
        try:
            frames = video_decode.decode_frames(
                item.path, options.fps, options.max_frames, options.image_size
            )
        except video_decode.VideoDecodeError as e:
            frames = e
        yield item, frames


def _decode_in_pool(
    pool: concurrent.futures.Executor, items: Iterable[VideoItem], options: ExtractOptions
) -> Iterator[Decoded]:
    """Keeps ``2 * num_workers`` videos submitted and yields them in input order."""
    todo, window = iter(items), collections.deque()
    args = (options.fps, options.max_frames, options.image_size)

    def submit() -> None:
        item = next(todo, None)
        if item is not None:
            window.append((item, pool.submit(video_decode.decode_frames, item.path, *args)))

    for _ in range(2 * options.num_workers):
        submit()
    while window:
        item, future = window.popleft()
        try:
            frames = future.result()
        except video_decode.VideoDecodeError as e:
            frames = e
        except concurrent.futures.BrokenExecutor as e:  # the pool broke: a worker died
            in_flight = ", ".join([item.path] + [i.path for i, _ in window])
            raise DecodeWorkerError(
                f"video file {item.path}: a decoding worker process died (killed, out of memory, or a "
                f"crash in FFmpeg) while decoding one of: {in_flight}"
            ) from e
        except Exception as e:
            raise DecodeWorkerError(
                f"video file {item.path}: decoding failed in a worker process ({type(e).__name__}: {e})"
            ) from e
        submit()
        yield item, frames


@contextlib.contextmanager
def _decoded(items: Sequence[VideoItem], options: ExtractOptions) -> Iterator[Iterator[Decoded]]:
    """The decoded videos in input order: in this process, or in ``options.num_workers`` spawned worker
    processes (shut down, pending videos cancelled, when the block ends or raises)."""
    if options.num_workers == 1:
        yield _decode_in_process(items, options)
        return
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([video_decode.__name__])  # imported once, in the fork server
    pool = concurrent.futures.ProcessPoolExecutor(
        min(options.num_workers, len(items)), mp_context=context, initializer=video_decode.ignore_interrupts
    )
    try:
        yield _decode_in_pool(pool, items, options)
    except BaseException:
        # A worker still sending a decoded video that nobody reads any more would block shutdown
        # (and, with a broken pool, the interpreter's exit) forever: stop the workers first.
        _terminate_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _terminate_workers(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    terminate = getattr(pool, "terminate_workers", None)  # public from Python 3.14
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()


def _features_of(
    decoded: Iterable[Decoded], network: Any, options: ExtractOptions, skipped: list[str]
) -> Iterator[tuple[VideoItem, np.ndarray]]:
    for item, frames in decoded:
        if isinstance(frames, video_decode.VideoDecodeError):
            if not options.skip_bad_videos:
                raise frames
            skipped.append(str(frames))
            continue
        yield item, frame_features(network, frames, options.batch_size)


def extract(
    items: Sequence[VideoItem],
    output_dir: str,
    options: ExtractOptions = ExtractOptions(),
    *,
    pca: str | yt8m_features.StreamingPCA | None = None,
    pca_save_path: str | None = None,
    num_shards: int = 1,
    prefix: str = "train",
    network: Any = None,
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """Writes frame-level records of ``items`` to ``<output_dir>/<prefix>-0000i-of-0000N.tfrecord``.

    ``pca``: a fitted PCA or a path for :func:`zoo.data.yt8m_features.load_pca`; ``None`` fits it on
    these videos' frames (saved to ``pca_save_path`` when given). Returns ``{"files", "num_videos",
    "num_frames", "skipped", "layout", "pca"}``; ``layout`` reads the output (``rgb`` of ``pca_dim``).
    An unreadable or empty video raises :class:`zoo.data.video_decode.VideoDecodeError` naming the file,
    or is skipped and listed in ``skipped`` with ``options.skip_bad_videos``; a worker process that dies
    raises :class:`DecodeWorkerError` naming the file. No output file exists unless every video was
    written (also on Ctrl-C: workers ignore SIGINT and the pool is shut down).
    """
    if not items:
        raise ValueError("no video files to extract (empty --videos folder or --input_csv)")
    if num_shards < 1 or options.pca_dim < 1:
        raise ValueError(f"num_shards and pca_dim must be >= 1, got {num_shards}, {options.pca_dim}")
    if options.num_workers < 1:
        raise ValueError(f"--num_workers must be >= 1 (1: decode in this process), got {options.num_workers}")
    network = network if network is not None else frame_network(options.weights, options.image_size)
    skipped: list[str] = []
    if pca is not None and not isinstance(pca, yt8m_features.StreamingPCA):
        pca = yt8m_features.load_pca(pca, options.pca_dim)
    with tempfile.TemporaryDirectory(prefix="yt8m_extract-") as cache, _decoded(items, options) as decoded:
        if pca is None:  # pass 1: features to the cache, PCA statistics streamed
            streaming = yt8m_features.StreamingPCA(INCEPTION_DIM)
            cached = []
            for n, (item, feats) in enumerate(_features_of(decoded, network, options, skipped)):
                streaming.update(feats)
                np.save(os.path.join(cache, f"{n}.npy"), feats)
                cached.append((item, os.path.join(cache, f"{n}.npy")))
                log(f"features of {item.path}: {feats.shape[0]} frames")
            if not cached:
                raise ValueError(f"no video could be decoded; skipped: {skipped}")
            if streaming.count < options.pca_dim:
                log(
                    f"warning: fitting a {options.pca_dim}-component PCA on {streaming.count} frames; "
                    "the trailing components are noise (fit on more videos or pass --pca)"
                )
            pca = streaming.fit(options.pca_dim)
            if pca_save_path:
                pca.save(pca_save_path)
            stream: Iterable[tuple[VideoItem, np.ndarray]] = ((i, np.load(p)) for i, p in cached)
        else:
            stream = _features_of(decoded, network, options, skipped)
        if pca.num_components != options.pca_dim or pca.dim != INCEPTION_DIM:
            raise ValueError(
                f"the PCA maps {pca.dim} -> {pca.num_components}, extraction needs {INCEPTION_DIM} -> "
                f"{options.pca_dim} (--pca_dim)"
            )
        layout = yt8m.RecordLayout(
            feature_names=("rgb",),
            feature_sizes=(options.pca_dim,),
            num_classes=options.num_classes,
            max_frames=options.max_frames,
        )
        paths = [
            os.path.join(output_dir, f"{prefix}-{i:05d}-of-{num_shards:05d}.tfrecord")
            for i in range(num_shards)
        ]
        counts = _write_round_robin(paths, stream, pca, layout, log)
    if counts["videos"] == 0:
        raise ValueError(f"no video could be decoded; skipped: {skipped}")
    return {
        "files": paths,
        "num_videos": counts["videos"],
        "num_frames": counts["frames"],
        "skipped": skipped,
        "layout": layout,
        "pca": pca,
    }


def _write_round_robin(
    paths: Sequence[str],
    stream: Iterable[tuple[VideoItem, np.ndarray]],
    pca: yt8m_features.StreamingPCA,
    layout: yt8m.RecordLayout,
    log: Callable[[str], None],
) -> dict[str, int]:
    """Video n goes to ``paths[n % len(paths)]``; each file is written to a temporary name and renamed
    into place once every video is written (nothing half-written stays behind on an error)."""
    for directory in {os.path.dirname(p) for p in paths}:
        tf.io.gfile.makedirs(directory or ".")
    stage = [f"{p}.tmp-{os.getpid()}" for p in paths]
    counts = {"videos": 0, "frames": 0}
    writers = [tf.io.TFRecordWriter(p) for p in stage]
    done = False
    try:
        for item, feats in stream:
            codes = yt8m_features.quantize(pca.transform(feats, normalize=False))
            writers[counts["videos"] % len(paths)].write(
                yt8m.frame_example(item.video_id, item.labels, {"rgb": codes}, layout)
            )
            counts["videos"] += 1
            counts["frames"] += codes.shape[0]
            log(f"wrote {item.video_id}: {codes.shape[0]} frames")
        done = counts["videos"] > 0
    finally:
        for w in writers:
            w.close()
        for tmp, path in zip(stage, paths, strict=True):
            if done:
                tf.io.gfile.rename(tmp, path, overwrite=True)
            elif tf.io.gfile.exists(tmp):
                tf.io.gfile.remove(tmp)
    return counts
