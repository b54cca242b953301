"""Video files -> RGB frames at a fixed rate, as YouTube-8M samples them (Abu-El-Haija et al. 2016, §3.3).

The paper decodes each video "at 1 frame-per-second up to the first 360 seconds"; the released data
keeps at most 300 frames. :func:`decode_frames` takes the first frame and then every frame whose
presentation time is at least ``1 / fps`` seconds after the last frame taken (the starter code's
``frame_iterator`` rule), up to ``max_frames``, and resizes each to the frame network's input: shorter
side scaled to ``size``, then centre-cropped to ``size x size``.

Decoding uses PyAV (the ``av`` package, which bundles FFmpeg; ``pip install zoo[video]``). A file that
cannot be opened, has no video stream or yields no frame raises :class:`VideoDecodeError` naming the file.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import numpy as np

__all__ = [
    "VideoDecodeError",
    "VIDEO_EXTENSIONS",
    "decode_frames",
    "resize_and_crop",
    "list_videos",
    "ignore_interrupts",
]

#: File name endings :func:`list_videos` treats as videos.
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".ogv")


class VideoDecodeError(ValueError):
    """A video file that cannot be decoded or holds no frames (the message names the file)."""


def _av() -> Any:
    try:
        import av
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("video decoding needs PyAV: pip install 'zoo[video]' (or pip install av)") from e
    return av


def resize_and_crop(frame: Any, size: int) -> np.ndarray:
    """A PyAV ``VideoFrame`` -> uint8 RGB ``[size, size, 3]``: shorter side scaled to ``size`` (aspect
    kept, FFmpeg's scaler), then the centre ``size x size`` crop."""
    width, height = frame.width, frame.height
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    rgb = frame.reformat(width=new_w, height=new_h, format="rgb24").to_ndarray()
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return np.ascontiguousarray(rgb[top : top + size, left : left + size])


def decode_frames(path: str, fps: float = 1.0, max_frames: int = 300, size: int = 299) -> np.ndarray:
    """uint8 ``[T, size, size, 3]`` RGB frames of the video file ``path`` sampled at ``fps`` (T <=
    ``max_frames``, T >= 1). Raises :class:`VideoDecodeError` naming the file for an unreadable or empty
    video."""
    if fps <= 0 or max_frames < 1 or size < 1:
        raise ValueError(
            f"decode_frames: fps must be > 0, max_frames and size >= 1; got {fps}, {max_frames}, {size}"
        )
    av = _av()
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError) as e:
        raise VideoDecodeError(f"video file {path}: cannot be opened ({e})") from None
    frames = []
    with container:
        if not container.streams.video:
            raise VideoDecodeError(f"video file {path}: has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        step, next_time = 1.0 / fps, None
        try:
            for index, frame in enumerate(container.decode(stream)):
                t = frame.time if frame.time is not None else index / rate
                if next_time is not None and t < next_time - 1e-6:
                    continue
                frames.append(resize_and_crop(frame, size))
                next_time = t + step
                if len(frames) >= max_frames:
                    break
        except av.FFmpegError as e:
            if not frames:
                raise VideoDecodeError(f"video file {path}: cannot be decoded ({e})") from None
    if not frames:
        raise VideoDecodeError(f"video file {path}: no frames decoded (empty video)")
    return np.stack(frames)


def ignore_interrupts() -> None:
    """Initializer of decoding worker processes: Ctrl-C (SIGINT, sent to the whole process group) is left
    to the parent, which cancels the pending videos and shuts the workers down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def list_videos(directory: str) -> list[str]:
    """The video files (by :data:`VIDEO_EXTENSIONS`) directly in ``directory``, sorted."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"--videos: {directory} is not a directory")
    return sorted(
        os.path.join(directory, name)
        for name in os.listdir(directory)
        if name.lower().endswith(VIDEO_EXTENSIONS) and os.path.isfile(os.path.join(directory, name))
    )


def write_synthetic_video(
    path: str, seconds: float = 3.0, fps: int = 10, width: int = 96, height: int = 64, seed: int = 0
) -> str:
    """Writes an H.264 (``libx264``, or MPEG-4 when absent) video of coloured shapes moving over a
    coloured background: ``round(seconds * fps)`` frames. For tests and timings; returns ``path``."""
    av = _av()
    rng = np.random.default_rng(seed)
    num = round(seconds * fps)
    colours = rng.integers(0, 256, (3, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    tmp = f"{path}.tmp-{os.getpid()}{os.path.splitext(path)[1]}"
    try:
        with av.open(tmp, mode="w") as container:
            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
            stream = container.add_stream(codec, rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for i in range(num):
                image = np.empty((height, width, 3), np.uint8)
                image[:] = (np.array([40, 80, 120]) + 3 * i) % 256
                cx, cy = (i * 4) % width, height // 2 + int(height / 4 * np.sin(i / 3))
                image[(xx - cx) ** 2 + (yy - cy) ** 2 < (height // 6) ** 2] = colours[0]
                image[abs(xx - (width - 1 - cx)) + abs(yy - height // 3) < height // 5] = colours[1]
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
