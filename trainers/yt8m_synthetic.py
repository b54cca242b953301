"""Write a synthetic YouTube-8M data set (``zoo.data.yt8m.write_synthetic``) in the official split layout.

    python -m trainers.yt8m_synthetic --output_dir=/tmp/yt8m_frame --level=frame \
        --num_classes=20 --feature_sizes=48,16 --train_videos=2000 --validate_videos=500

writes ``<output_dir>/train.tfrecord`` and ``<output_dir>/validate.tfrecord`` (or ``train-0000i-of-0000N``
shards with ``--num_shards``), the layout ``--data_dir`` of the video task expects. Each class has a
prototype direction in feature space, so models can learn (see ``write_synthetic``).
"""

from __future__ import annotations

import os

from absl import app, flags

__all__ = ["main", "run"]

FLAGS = flags.FLAGS


def _define_flags() -> None:
    flags.DEFINE_string("output_dir", None, "Directory to write train*.tfrecord / validate*.tfrecord into.")
    flags.DEFINE_enum("level", "frame", ["frame", "video"], "Frame-level SequenceExamples or video-level Examples.")
    flags.DEFINE_integer("num_classes", 3862, "Number of classes.")
    flags.DEFINE_list("feature_sizes", ["1024", "128"], "Feature sizes (rgb, audio); their sum is feature_size.")
    flags.DEFINE_integer("train_videos", 1000, "Videos in the train split.")
    flags.DEFINE_integer("validate_videos", 200, "Videos in the validate split.")
    flags.DEFINE_integer("num_shards", 1, "Files per split.")
    flags.DEFINE_integer("min_frames", 20, "Fewest frames per video (frame level).")
    flags.DEFINE_integer("max_frames", 120, "Most frames per video (frame level).")
    flags.DEFINE_integer("seed", 0, "Random seed (validate uses seed + 1).")


def main(argv: list[str]) -> None:
    del argv
    from zoo.data import yt8m

    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required")
    sizes = tuple(int(s) for s in FLAGS.feature_sizes)
    for split, n, seed in (("train", FLAGS.train_videos, FLAGS.seed), ("validate", FLAGS.validate_videos, FLAGS.seed + 1)):
        paths = yt8m.write_synthetic(
            os.path.join(FLAGS.output_dir, f"{split}.tfrecord"),
            n,
            FLAGS.level == "frame",
            num_classes=FLAGS.num_classes,
            seed=seed,
            num_shards=FLAGS.num_shards,
            feature_sizes=sizes,
            frames=(FLAGS.min_frames, FLAGS.max_frames),
        )
        print(f"{split}: {n} videos -> {', '.join(paths)}", flush=True)


def run() -> None:
    _define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
