"""Handwriting figures: generated strokes (SVG and PNG), HyperNetworks Figure 7 and Table-5-style NLL curves.

- :func:`write_svg` / :func:`plot_strokes`: a generated line, one polyline per pen-down stroke (pen lifts
  where ``end_of_stroke`` is set), y up as the data is.
- :func:`plot_figure7` (§4.5, Figure 7): the sample above and, below it, the norm of the per-step change of
  the main LSTM's weight-scaling vectors (rows ``W_h^{i,g,f,o}`` and ``W_x^{i,g,f,o}``, from
  :func:`zoo.viz.dynamics.scale_change_norms`) on the pen's timeline: the strip's x axis is the step, and the
  sample's points are coloured by the same step (the colour bar between them), with the pen lifts marked on
  the strip, so a bright column can be found in the writing.
- :func:`read_scalars` / :func:`plot_nll_curves`: validation NLL against training step for several runs
  (Table 5 / Figure 6 right), read from the trainer's TensorBoard event files (``<model_dir>/train``, tag
  ``eval/nll``).

Matplotlib runs headless (Agg); files are written to a temporary name and renamed into place.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from zoo.data.strokes import offsets_to_strokes
from zoo.io import atomic_path, atomic_write

__all__ = ["stroke_lines", "write_svg", "plot_strokes", "plot_figure7", "read_scalars", "plot_nll_curves"]


def stroke_lines(offsets: Any) -> list[np.ndarray]:
    """The pen-down strokes (absolute ``[n, 2]`` positions) of raw ``[T, 3]`` offsets."""
    return [s for s in offsets_to_strokes(offsets) if len(s)]


def write_svg(offsets: Any, path: str, stroke_width: float = 2.0, margin: float = 10.0) -> str:
    """Writes raw ``[T, 3]`` offsets as an SVG of polylines (y flipped to SVG's downward axis); returns
    ``path``."""
    strokes = stroke_lines(offsets)
    if not strokes:
        raise ValueError("no points to draw")
    xy = np.concatenate(strokes)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    width, height = hi[0] - lo[0] + 2 * margin, hi[1] - lo[1] + 2 * margin
    lines = []
    for s in strokes:
        x = s[:, 0] - lo[0] + margin
        y = hi[1] - s[:, 1] + margin
        points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, y, strict=True))
        lines.append(f'  <polyline points="{points}"/>')
    text = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.1f} {height:.1f}">\n'
        f'<g fill="none" stroke="black" stroke-width="{stroke_width}" stroke-linecap="round" '
        'stroke-linejoin="round">\n' + "\n".join(lines) + "\n</g>\n</svg>\n"
    )
    atomic_write(path, text.encode("utf-8"))
    return path


def _save(fig: Any, path: str) -> str:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _draw(ax: Any, offsets: np.ndarray, colors: Any = None) -> None:
    strokes = stroke_lines(offsets)
    if colors is None:
        for s in strokes:
            ax.plot(s[:, 0], s[:, 1], color="black", linewidth=1.2)
    else:
        from matplotlib.collections import LineCollection

        xy = np.concatenate([np.zeros((1, 2)), np.cumsum(offsets[:, :2], axis=0)])
        pen_up = np.asarray(offsets[:, 2]) >= 0.5  # row t ends a stroke: no line from point t+1 to t+2
        segments, seg_colors = [], []
        for t in range(1, len(xy) - 1):
            if not pen_up[t - 1]:
                segments.append(xy[t - 1 : t + 1])
                seg_colors.append(colors[t - 1])
        ax.add_collection(LineCollection(segments, colors=seg_colors, linewidths=1.4))
        ax.autoscale()
    ax.set_aspect("equal")
    ax.axis("off")


def plot_strokes(offsets: Any, path: str, title: str | None = None) -> str:
    """A PNG of raw ``[T, 3]`` offsets; returns ``path``."""
    plt = _pyplot()
    offsets = np.asarray(offsets, np.float64)
    xy = np.cumsum(offsets[:, :2], axis=0)
    span = np.ptp(xy, axis=0) + 1.0
    fig, ax = plt.subplots(figsize=(min(16.0, max(4.0, 2.0 * span[0] / span[1])), 2.2))
    _draw(ax, offsets)
    if title:
        ax.set_title(title, fontsize=9)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_figure7(
    offsets: Any, changes: np.ndarray, row_labels: Sequence[str], path: str, title: str | None = None
) -> str:
    """Figure 7: the sample (points coloured by step) above the heat strip of ``changes [rows, T]``.

    ``offsets`` are the ``T`` raw generated rows; ``changes[:, t]`` belongs to the step that produced row
    ``t``. Pen lifts are ticked under the strip. Returns ``path``.
    """
    plt = _pyplot()
    offsets = np.asarray(offsets, np.float64)
    changes = np.asarray(changes, np.float64)
    steps = len(offsets)
    if changes.ndim != 2 or changes.shape != (len(row_labels), steps):
        raise ValueError(f"changes {changes.shape} must be [len(row_labels)={len(row_labels)}, T={steps}]")
    cmap = plt.get_cmap("viridis")
    fig, (top, bar, strip) = plt.subplots(
        3, 1, figsize=(12, 5.2), gridspec_kw={"height_ratios": [3.0, 0.12, 1.6], "hspace": 0.25}
    )
    _draw(top, offsets, colors=cmap(np.linspace(0.0, 1.0, steps)))
    bar.imshow(np.linspace(0.0, 1.0, steps)[None], aspect="auto", cmap=cmap, extent=(-0.5, steps - 0.5, 0, 1))
    bar.set_yticks([])
    bar.set_xticks([])
    bar.set_ylabel("step", rotation=0, fontsize=7, ha="right", va="center")
    image = strip.imshow(
        changes,
        aspect="auto",
        cmap="magma",
        interpolation="nearest",
        vmin=0.0,
        vmax=float(changes.max()) or 1.0,
        extent=(-0.5, steps - 0.5, len(row_labels) - 0.5, -0.5),
    )
    lifts = np.flatnonzero(offsets[:, 2] >= 0.5)
    strip.plot(lifts, np.full(len(lifts), len(row_labels) - 0.5), "|", color="tab:cyan", markersize=6)
    strip.set_yticks(range(len(row_labels)))
    strip.set_yticklabels([lbl.replace("^", " ") for lbl in row_labels], fontsize=7, family="monospace")
    strip.set_xlabel("step (ticks: pen lifts)", fontsize=8)
    fig.colorbar(image, ax=strip, fraction=0.02, pad=0.01, label="||Δd||")
    fig.suptitle(
        title or "Generated handwriting and the change of the main LSTM's scaling vectors", fontsize=9
    )
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def read_scalars(model_dir: str, tag: str = "eval/nll") -> list[tuple[int, float]]:
    """``[(step, value), ...]`` of a scalar the trainer wrote to ``<model_dir>/train`` (sorted by step; the
    last value written for a step wins, so a resumed run's re-evaluation replaces the earlier one)."""
    import tensorflow as tf

    files = sorted(glob.glob(os.path.join(model_dir, "train", "events.out.tfevents.*")))
    if not files:
        raise FileNotFoundError(f"--model_dir={model_dir!r} has no TensorBoard events under train/")
    values: dict[int, float] = {}
    for path in files:
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for v in event.summary.value:
                if v.tag == tag:
                    values[int(event.step)] = float(
                        tf.make_ndarray(v.tensor) if v.HasField("tensor") else v.simple_value
                    )
    return sorted(values.items())


def plot_nll_curves(
    curves: Mapping[str, Sequence[tuple[int, float]]], path: str, ylabel: str = "validation NLL (nats/line)"
) -> str:
    """Table-5-style comparison: one validation-NLL curve per run (label -> ``[(step, nll)]``)."""
    plt = _pyplot()
    if not curves:
        raise ValueError("no runs to plot")
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    for label, points in curves.items():
        if not points:
            raise ValueError(f"run {label!r} has no validation NLL (was it trained with --eval_every?)")
        steps, values = zip(*points, strict=True)
        ax.plot(steps, values, marker="o", markersize=3, label=f"{label} ({values[-1]:,.1f})")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Handwriting: validation log-loss (lower is better; final value in brackets)", fontsize=9)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)
