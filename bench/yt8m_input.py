"""Frame-level input throughput: every reader variant vs raw TFRecord reading of the same files.

    python -m bench.yt8m_input --num_videos=2000 --batch_size=128 --rounds=5 --timed_batches=12

Writes a synthetic frame-level data set (``zoo.data.yt8m.write_synthetic``; real-size features 1024 + 128,
frames uniform in [--min_frames, --max_frames]) and the same videos in the packed layout
(``zoo-yt8m-preprocess --output_format=packed``), then times, on the SequenceExample files:

* ``raw``: reading the serialized records with the same file interleave (cycle length 8), batching and
  repetition as the readers;
* ``float``: ``zoo.data.yt8m.frame_dataset`` producing ``[B, 300, 1152]`` float features;
* ``uint8``: the same with ``dequantize=False`` (uint8 codes + feature mask; ``dequantize_frames`` then runs
  inside the model's compiled step): what the trainer consumes for frame-level models;
* ``sampled_after``: uint8 codes of 30 frames per video (DBoF's k) drawn from the padded ``[B, 300, D]``
  batch, as the reader sampled before (pad, then gather; here the gather is a map after the parse);
* ``sampled``: ``num_samples=30``: the indices drawn first, only those frames decoded;

and on the packed files (``layout.packed``): ``raw_packed`` (raw reading), ``packed_float``,
``packed_uint8`` and ``packed_sampled``. Packed variants are reported as ratios to both raw readings.

All pipelines repeat the files, so a timed window is steady-state throughput (as in training), not the
start-up and drain of a parallel pipeline over a handful of batches. Each round builds a fresh iterator
per pipeline (nothing runs in the background while another pipeline is timed), discards
``--warmup_batches`` and times the next ``--timed_batches``; rounds alternate the pipelines, and the
reported rate is the median over rounds and the ratio is the median of the per-round ratios (a pipeline
and the raw reading timed seconds apart see the same machine load). The issue's target is >= 0.6 of raw
reading for what the trainer consumes.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from trainers import yt8m_preprocess  # noqa: E402
from zoo.data import yt8m  # noqa: E402

flags.DEFINE_integer("num_videos", 2000, "Synthetic videos to write.")
flags.DEFINE_integer("num_shards", 8, "Files.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_integer("min_frames", 100, "Fewest frames per video.")
flags.DEFINE_integer("max_frames", 300, "Most frames per video.")
flags.DEFINE_integer("rounds", 5, "Timed rounds per pipeline (medians are reported).")
flags.DEFINE_integer("warmup_batches", 3, "Batches discarded at the start of each round.")
flags.DEFINE_integer("timed_batches", 12, "Batches timed per round.")
flags.DEFINE_string(
    "data_dir",
    None,
    "Reuse/write the synthetic files (and their packed copy in packed/) here (default: a temporary dir).",
)
FLAGS = flags.FLAGS


def _rate(ds: tf.data.Dataset, warmup: int, timed: int) -> float:
    """Examples/s over ``timed`` batches of a fresh iterator, after ``warmup`` batches."""
    iterator = iter(ds)
    for _ in range(warmup):
        next(iterator)
    count = 0
    start = time.perf_counter()
    for _ in range(timed):
        count += int(tf.shape(tf.nest.flatten(next(iterator))[0])[0])
    elapsed = time.perf_counter() - start
    del iterator
    return count / elapsed


def _median_rates(
    pipelines: dict, baselines: dict[str, str], rounds: int, warmup: int, timed: int
) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
    """Median examples/s per pipeline and median per-round ratio ``(name, baseline)`` of each pipeline to
    each baseline pipeline in ``baselines[name]`` (comma-separated names).

    Datasets are built once (building traces the parse functions); the first round is a warm-up (XLA
    compiles, page cache) and is not counted.
    """
    datasets = {name: make_ds() for name, make_ds in pipelines.items()}
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    ratios: dict[tuple[str, str], list[float]] = {
        (name, base): [] for name in pipelines for base in baselines.get(name, "").split(",") if base
    }
    for rnd in range(rounds + 1):
        current = {name: _rate(ds, warmup, timed) for name, ds in datasets.items()}
        if rnd == 0:
            continue
        for name, rate in current.items():
            rates[name].append(rate)
        for name, base in ratios:
            ratios[(name, base)].append(current[name] / current[base])
    return (
        {name: statistics.median(v) for name, v in rates.items()},
        {key: statistics.median(v) for key, v in ratios.items()},
    )


def _sample_after_padding(num_samples: int, seed: int):
    """The reader's former sampling as a map over uint8 batches: the same stateless draw
    (``(seed, batch index)``), gathered from the padded ``[B, 300, D]`` codes and mask."""

    def sample(step, batch):
        inputs, labels = batch
        n = inputs["num_frames"]
        draw_seed = tf.stack([tf.constant(seed, tf.int32), tf.cast(step, tf.int32)])
        u = tf.random.stateless_uniform([tf.shape(n)[0], num_samples], seed=draw_seed)
        index = tf.cast(tf.floor(u * tf.cast(n, tf.float32)[:, None]), tf.int32)
        index = tf.clip_by_value(index, 0, tf.maximum(n[:, None] - 1, 0))
        out = dict(inputs)
        out["features"] = tf.gather(inputs["features"], index, batch_dims=1)
        out["feature_mask"] = tf.gather(inputs["feature_mask"], index, batch_dims=1)
        out["num_frames"] = tf.where(n > 0, num_samples, 0)
        return out, labels

    return sample


def main(argv):
    del argv
    data_dir = FLAGS.data_dir or tempfile.mkdtemp(prefix="yt8m_bench_")
    pattern = os.path.join(data_dir, "bench*.tfrecord")
    if not tf.io.gfile.glob(pattern):
        yt8m.write_synthetic(
            os.path.join(data_dir, "bench.tfrecord"),
            FLAGS.num_videos,
            yt8m.FRAME_LEVEL,
            num_shards=FLAGS.num_shards,
            frames=(FLAGS.min_frames, FLAGS.max_frames),
        )
    packed_dir = os.path.join(data_dir, "packed")
    packed_pattern = os.path.join(packed_dir, "packed*.tfrecord")
    if not tf.io.gfile.glob(packed_pattern):
        yt8m_preprocess.preprocess(
            pattern, packed_dir, num_shards=FLAGS.num_shards, prefix="packed", output_format="packed"
        )
    files, packed_files = yt8m.list_files(pattern), yt8m.list_files(packed_pattern)
    size_mb = sum(tf.io.gfile.stat(f).length for f in files) / 2**20
    packed_mb = sum(tf.io.gfile.stat(f).length for f in packed_files) / 2**20

    def raw(files):
        def make():
            ds = (
                tf.data.Dataset.from_tensor_slices(files)
                .repeat()
                .interleave(
                    lambda f: tf.data.TFRecordDataset(f, buffer_size=1 << 20),
                    cycle_length=min(8, len(files)),
                    block_length=1,
                    num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True,
                )
            )
            return ds.batch(FLAGS.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

        return make

    def parsed(files, layout, **kw):
        return lambda: yt8m.frame_dataset(
            files, FLAGS.batch_size, layout, repeat=True, drop_remainder=True, cycle_length=8, **kw
        )

    def sampled_after():
        ds = parsed(files, yt8m.FRAME_LEVEL, dequantize=False)()
        ds = ds.enumerate().map(_sample_after_padding(30, 0), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    packed = yt8m.PACKED_FRAME_LEVEL
    pipelines = {
        "raw": raw(files),
        "float": parsed(files, yt8m.FRAME_LEVEL),
        "uint8": parsed(files, yt8m.FRAME_LEVEL, dequantize=False),
        "sampled_after": sampled_after,
        "sampled": parsed(files, yt8m.FRAME_LEVEL, dequantize=False, num_samples=30, seed=0),
        "raw_packed": raw(packed_files),
        "packed_float": parsed(packed_files, packed),
        "packed_uint8": parsed(packed_files, packed, dequantize=False),
        "packed_sampled": parsed(packed_files, packed, dequantize=False, num_samples=30, seed=0),
    }
    baselines = {name: "raw,raw_packed" if "packed" in name else "raw" for name in pipelines}
    rates, ratios = _median_rates(
        pipelines, baselines, FLAGS.rounds, FLAGS.warmup_batches, FLAGS.timed_batches
    )
    print(
        f"files: {len(files)} SequenceExample ({size_mb:.0f} MiB) and {len(packed_files)} packed "
        f"({packed_mb:.0f} MiB), frames {FLAGS.min_frames}-{FLAGS.max_frames}, batch {FLAGS.batch_size}, "
        f"{FLAGS.timed_batches} batches x {FLAGS.rounds} rounds, cpus {os.cpu_count()}"
    )
    what = {
        "raw": "raw TFRecord reading, SequenceExample files",
        "float": "frame_dataset, float32 [B, 300, 1152]",
        "uint8": "frame_dataset(dequantize=False), uint8 codes (the trainer's input)",
        "sampled_after": "uint8, 30 frames sampled after padding (the former reader)",
        "sampled": "uint8, num_samples=30, drawn before decoding",
        "raw_packed": "raw TFRecord reading, packed files",
        "packed_float": "packed layout, float32",
        "packed_uint8": "packed layout, uint8 codes (--dataset=yt8m_packed)",
        "packed_sampled": "packed layout, uint8, num_samples=30",
    }
    for name, rate in rates.items():
        shown = ", ".join(f"{ratios[(name, base)]:.2f} of {base}" for base in baselines[name].split(","))
        shown = "" if name == "raw" else f"  ratio {shown}"
        print(f"{name:15s} {rate:8.0f} videos/s{shown}  ({what[name]})")
    print("target: >= 0.6 of raw reading for what the trainer consumes (uint8, or packed_uint8)")


if __name__ == "__main__":
    app.run(main)
