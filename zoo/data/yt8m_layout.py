"""The YouTube-8M record layout: one small value that readers, writers, models and the video task share.

Kept free of TensorFlow so that ``zoo.models.yt8m`` can build its input spec from it under any Keras 3
backend; ``zoo.data.yt8m`` re-exports everything here, and that is where users find it.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Sequence
from typing import Any

__all__ = [
    "RecordLayout",
    "FRAME_LEVEL",
    "VIDEO_LEVEL",
    "PAPER_FRAME_LEVEL",
    "PAPER_VIDEO_LEVEL",
    "PACKED_FRAME_LEVEL",
    "PRESETS",
    "DEFAULT_NUM_CLASSES",
    "DEFAULT_MAX_FRAMES",
]

DEFAULT_NUM_CLASSES = 3862  # current release (2018+)
DEFAULT_MAX_FRAMES = 300  # official reader (1 frame per second, §3.3)


@dataclasses.dataclass(frozen=True)
class RecordLayout:
    """What a YouTube-8M TFRecord holds and how much of it a reader keeps.

    Attributes:
      frame_level: ``True`` for frame-level ``tf.train.SequenceExample`` records (feature *lists* of one
        uint8 byte string per frame), ``False`` for video-level ``tf.train.Example`` records (float lists).
      feature_names: the feature (list) names, concatenated in this order: ``("rgb", "audio")`` (frame
        level) or ``("mean_rgb", "mean_audio")`` (video level) in the current release.
      feature_sizes: values per frame (frame level: bytes) or per video of each feature, e.g. ``(1024, 128)``.
      num_classes: label ids must lie in ``[0, num_classes)``; labels become multi-hot ``[B, num_classes]``.
      max_frames: frames kept per video (frame level; the official reader's 300); ignored at video level.
      id_key: context key of the video id (``"id"``; the paper-era release: ``"video_id"``).
      labels_key: context key of the label ids (``"labels"``); records may lack it (inference traffic).
      packed: frame level only: the records are the *packed* layout that ``zoo-yt8m-preprocess
        --output_format=packed`` writes (one ``tf.train.Example`` per video whose ``frames`` bytes hold the
        uint8 codes ``[num_frames, feature_size]``; see ``zoo.data.yt8m``) instead of the release's
        SequenceExamples. Readers yield the same batches from both; the packed one parses several times
        faster (README, Benchmarks).

    Example:

    >>> layout = RecordLayout(feature_sizes=(48, 16), num_classes=20, max_frames=30)
    >>> layout.feature_size
    64
    >>> PAPER_VIDEO_LEVEL.feature_names
    ('mean_inc3',)
    """

    frame_level: bool = True
    feature_names: tuple[str, ...] = ("rgb", "audio")
    feature_sizes: tuple[int, ...] = (1024, 128)
    num_classes: int = DEFAULT_NUM_CLASSES
    max_frames: int = DEFAULT_MAX_FRAMES
    id_key: str = "id"
    labels_key: str = "labels"
    packed: bool = False

    def __post_init__(self) -> None:
        names, sizes = self.feature_names, self.feature_sizes
        if isinstance(names, str) or not isinstance(names, Sequence):
            raise TypeError(f"RecordLayout: feature_names must be a sequence of names, got {names!r}")
        if isinstance(sizes, int | str) or not isinstance(sizes, Sequence):
            raise TypeError(f"RecordLayout: feature_sizes must be a sequence of ints, got {sizes!r}")
        object.__setattr__(self, "feature_names", tuple(str(n) for n in names))
        object.__setattr__(self, "feature_sizes", tuple(_positive_int(s, "feature_sizes") for s in sizes))
        if not names or len(self.feature_names) != len(self.feature_sizes):
            raise ValueError(
                f"RecordLayout: feature_names {self.feature_names} and feature_sizes {self.feature_sizes} "
                "must be non-empty and of the same length"
            )
        if len(set(self.feature_names)) != len(self.feature_names):
            raise ValueError(f"RecordLayout: feature_names {self.feature_names} repeat a name")
        object.__setattr__(self, "num_classes", _positive_int(self.num_classes, "num_classes"))
        object.__setattr__(self, "max_frames", _positive_int(self.max_frames, "max_frames"))
        object.__setattr__(self, "frame_level", bool(self.frame_level))
        object.__setattr__(self, "packed", bool(self.packed))
        if self.packed and not self.frame_level:
            raise ValueError("RecordLayout: packed=True is a frame-level layout; set frame_level=True")
        for key in ("id_key", "labels_key"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ValueError(f"RecordLayout: {key}={getattr(self, key)!r} must be a non-empty string")

    @property
    def feature_size(self) -> int:
        """``D = sum(feature_sizes)``: the width of the concatenated features."""
        return sum(self.feature_sizes)

    @property
    def level(self) -> str:
        """``"frame"`` or ``"video"``."""
        return "frame" if self.frame_level else "video"

    def replace(self, **changes: Any) -> RecordLayout:
        """A copy with ``changes`` applied (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"RecordLayout: {name} must hold integers >= 1, got {value!r}")
    return int(value)


#: Current release, frame level (official defaults).
FRAME_LEVEL = RecordLayout()
#: Current release, video level.
VIDEO_LEVEL = RecordLayout(frame_level=False, feature_names=("mean_rgb", "mean_audio"))
#: The paper's release (v1, 2016): Inception features only, 4800 classes, ``video_id``.
PAPER_FRAME_LEVEL = RecordLayout(
    feature_names=("inc3",), feature_sizes=(1024,), num_classes=4800, id_key="video_id"
)
PAPER_VIDEO_LEVEL = PAPER_FRAME_LEVEL.replace(frame_level=False, feature_names=("mean_inc3",))
#: Current release, frame level, as ``zoo-yt8m-preprocess --output_format=packed`` rewrites it.
PACKED_FRAME_LEVEL = FRAME_LEVEL.replace(packed=True)
PRESETS: dict[str, RecordLayout] = {
    "frame": FRAME_LEVEL,
    "packed_frame": PACKED_FRAME_LEVEL,
    "video": VIDEO_LEVEL,
    "paper_frame": PAPER_FRAME_LEVEL,
    "paper_video": PAPER_VIDEO_LEVEL,
}
