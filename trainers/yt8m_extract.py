"""Video files -> frame-level YouTube-8M TFRecords (paper §3.3; ``zoo.data.yt8m_extract``).

    zoo-yt8m-extract --videos=DIR --labels='3;17' --output_dir=OUT --pca=yt8m_pca/
    zoo-yt8m-extract --input_csv=videos.csv --output_dir=OUT --pca_save=OUT/pca.npz --num_shards=4

``--videos`` takes every video file in a folder (all get ``--labels``); ``--input_csv`` takes the starter
code's list, lines ``<video_file>,<label>;<label>``. Frames at ``--fps`` (1) up to ``--max_frames`` (300),
InceptionV3 pooled features (``--weights``: ``imagenet``, downloaded by Keras on first use, or a weights
file; ``none`` gives random weights, for trying the pipeline only), PCA-whitened to ``--pca_dim`` (1,024)
with ``--pca`` (the release's ``mean.npy``/``eigenvals.npy``/``eigenvecs.npy`` folder, or an ``.npz``) or
fitted on these videos (saved to ``--pca_save``), quantised to bytes. The output holds one feature list,
``rgb``; train on it with ``zoo-train --model=yt8m_dbof --dataset=yt8m_frame --data_dir=OUT
--config 'feature_names=["rgb"]' --config 'feature_sizes=[1024]' --config feature_size=1024
--config num_classes=N``.

An unreadable or empty video stops the job with one line naming the file; ``--skip_bad_videos`` skips and
counts them instead. ``--num_workers=N`` decodes videos in N spawned processes (the network stays in this
process, batched; the output is the same as with one worker; see ``zoo.data.yt8m_extract``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import app, flags, logging

from zoo.data import video_decode, yt8m, yt8m_extract

__all__ = ["run", "main"]


def _define_flags() -> None:
    """Flags are defined when the tool runs, not at import (see ``trainers/flags.py``)."""
    flags.DEFINE_string("videos", None, "Folder of video files (all get --labels).")
    flags.DEFINE_string(
        "input_csv", None, "CSV lines '<video_file>,<label>;<label>' (starter code's format)."
    )
    flags.DEFINE_string("labels", "", "Label ids for every --videos file, separated by ';'.")
    flags.DEFINE_string("output_dir", None, "Directory for the frame-level TFRecords.")
    flags.DEFINE_string("prefix", "train", "Output file name prefix.")
    flags.DEFINE_integer("num_shards", 1, "Output files.")
    flags.DEFINE_float("fps", 1.0, "Frames decoded per second of video (paper §3.3: 1).")
    flags.DEFINE_integer("max_frames", yt8m.DEFAULT_MAX_FRAMES, "Frames kept per video (release: 300).")
    flags.DEFINE_integer("image_size", 299, "Frame network input (InceptionV3: 299; >= 75).")
    flags.DEFINE_string("weights", "imagenet", "InceptionV3 weights: imagenet, a weights file, or none.")
    flags.DEFINE_integer("batch_size", 32, "Frames per network call.")
    flags.DEFINE_integer("pca_dim", 1024, "PCA components kept (paper §3.3: 1024).")
    flags.DEFINE_string(
        "pca", None, "Release PCA folder (mean/eigenvals/eigenvecs.npy) or .npz; else fitted."
    )
    flags.DEFINE_string("pca_save", None, "Where to save the PCA fitted on these videos (.npz).")
    flags.DEFINE_integer("num_classes", yt8m.DEFAULT_NUM_CLASSES, "Label ids must be < num_classes.")
    flags.DEFINE_bool("skip_bad_videos", False, "Skip and count unreadable or empty videos.")
    flags.DEFINE_integer(
        "num_workers", 1, "Processes decoding videos (1: in this process); the network stays here."
    )


def main(argv: Sequence[str]) -> None:
    del argv
    f = flags.FLAGS
    if bool(f.videos) == bool(f.input_csv) or not f.output_dir:
        raise app.UsageError("exactly one of --videos and --input_csv, and --output_dir, are required")
    try:
        if f.videos:
            items = yt8m_extract.items_from_directory(f.videos, f.labels, f.num_classes)
        else:
            items = yt8m_extract.read_video_csv(f.input_csv, f.num_classes)
        options = yt8m_extract.ExtractOptions(
            fps=f.fps,
            max_frames=f.max_frames,
            image_size=f.image_size,
            weights=None if f.weights.lower() == "none" else f.weights,
            batch_size=f.batch_size,
            pca_dim=f.pca_dim,
            num_classes=f.num_classes,
            skip_bad_videos=f.skip_bad_videos,
            num_workers=f.num_workers,
        )
        summary = yt8m_extract.extract(
            items,
            f.output_dir,
            options,
            pca=f.pca,
            pca_save_path=f.pca_save,
            num_shards=f.num_shards,
            prefix=f.prefix,
            log=logging.info,
        )
    except (
        ValueError,
        FileNotFoundError,
        video_decode.VideoDecodeError,
        yt8m_extract.DecodeWorkerError,
    ) as e:
        print(f"yt8m_extract: error: {e}", file=sys.stderr)
        sys.exit(2)
    for message in summary["skipped"]:
        print(f"skipped: {message}", file=sys.stderr)
    print(
        f"wrote {summary['num_videos']} videos ({summary['num_frames']} frames) to "
        f"{len(summary['files'])} files in {f.output_dir}; skipped videos: {len(summary['skipped'])}"
    )


def run() -> None:
    _define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
