"""Write a synthetic YouTube-8M data set (``zoo.data.yt8m.write_synthetic``) in the official split layout.

    python -m trainers.yt8m_synthetic --output_dir=/tmp/yt8m_frame --level=frame \
        --num_classes=20 --feature_sizes=48,16 --num_videos=2500 --num_shards=5 --validate_shards=1

writes ``--num_shards`` files of one synthetic data set (videos dealt round-robin): the first
``num_shards - validate_shards`` become ``<output_dir>/train-0000i-of-0000N.tfrecord``, the others
``validate-....tfrecord``, the layout ``--data_dir`` of the video task expects. Both splits come from one
``write_synthetic`` call so that they share its class prototypes (separate calls with different seeds
would give unrelated classes); each class has a prototype direction in feature space, so models can learn.
"""

from __future__ import annotations

import os

from absl import app, flags

from zoo.data import yt8m

__all__ = ["main", "run"]

FLAGS = flags.FLAGS


def _define_flags() -> None:
    flags.DEFINE_string("output_dir", None, "Directory to write train*.tfrecord / validate*.tfrecord into.")
    flags.DEFINE_enum(
        "level", "frame", ["frame", "video"], "Frame-level SequenceExamples or video-level Examples."
    )
    flags.DEFINE_integer("num_classes", yt8m.DEFAULT_NUM_CLASSES, "Number of classes.")
    flags.DEFINE_list(
        "feature_sizes", ["1024", "128"], "Feature sizes (rgb, audio); their sum is feature_size."
    )
    flags.DEFINE_integer("num_videos", 1200, "Videos in both splits together.")
    flags.DEFINE_integer("num_shards", 6, "Files in all; videos are dealt round-robin.")
    flags.DEFINE_integer("validate_shards", 1, "How many of the files form the validate split.")
    flags.DEFINE_integer("min_frames", 20, "Fewest frames per video (frame level).")
    flags.DEFINE_integer("max_frames", 120, "Most frames per video (frame level).")
    flags.DEFINE_integer("seed", 0, "Random seed.")


def main(argv: list[str]) -> None:
    del argv
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required")
    try:
        preset = yt8m.FRAME_LEVEL if FLAGS.level == "frame" else yt8m.VIDEO_LEVEL
        sizes = tuple(int(s) for s in FLAGS.feature_sizes)
        if len(sizes) != len(preset.feature_sizes):
            raise ValueError(
                f"--feature_sizes={FLAGS.feature_sizes} needs one size per feature {preset.feature_names}"
            )
        layout = preset.replace(feature_sizes=sizes, num_classes=FLAGS.num_classes)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    n = FLAGS.num_shards
    if not 0 <= FLAGS.validate_shards < n:
        raise app.UsageError(f"--validate_shards={FLAGS.validate_shards} must be in [0, --num_shards={n})")
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    paths = yt8m.write_synthetic(
        os.path.join(FLAGS.output_dir, ".synthetic.tfrecord"),
        FLAGS.num_videos,
        layout,
        seed=FLAGS.seed,
        num_shards=n,
        frames=(FLAGS.min_frames, FLAGS.max_frames),
    )
    train_shards = n - FLAGS.validate_shards
    for i, path in enumerate(sorted(paths)):
        split, j, count = (
            ("train", i, train_shards)
            if i < train_shards
            else ("validate", i - train_shards, n - train_shards)
        )
        target = os.path.join(FLAGS.output_dir, f"{split}-{j:05d}-of-{count:05d}.tfrecord")
        os.replace(path, target)
        print(f"{split}: {target}", flush=True)


def run() -> None:
    _define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
