"""HyperLSTM dynamics figures: HyperNetworks Figure 4 (weight-scaling changes under generated text) and
Figure 5 (histograms of tanh(c_t) for LSTM, LN-LSTM, HyperLSTM and LN-HyperLSTM during sampling), as PNG.

Figure 4 (§4.4): under each generated character, the norm of the change of the main LSTM's weight-scaling
vectors from the previous step, ``||d(t) - d(t-1)||_2``, one row per gate for the recurrent matrices
``W_h^{i,g,f,o}`` (the four rows the paper shows) and, as the issue asks, for the input matrices
``W_x^{i,g,f,o}``. Dark = static weights, bright = the hypernetwork re-writing the main LSTM.

Figure 5 (§4.4): normalised histograms of ``tanh(c_t)``, the value the output gate scales (``tanh(LN(c_t))``
in the layer-norm cells), over every unit and step of a sampled passage, one panel per model.

Matplotlib runs headless (Agg); files are written to a temporary name and renamed into place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from zoo.io import atomic_path
from zoo.layers.rnn_base import GATES

__all__ = [
    "scale_change_norms",
    "plot_weight_dynamics",
    "plot_tanh_c_histograms",
    "display_char",
]


def scale_change_norms(d_x: Any, d_h: Any, num_gates: int = 4) -> tuple[np.ndarray, list[str]]:
    """Per-step norm of change of the scaling vectors, rows ``W_h^{i,g,f,o}`` then ``W_x^{i,g,f,o}``.

    Args:
      d_x, d_h: ``[T, num_gates * N]`` scaling vectors at each step (gate order i, g, f, o), as
        ``HyperLSTMCell.step`` returns them (``d_x``, ``d_h``).

    Returns:
      ``(changes [2 * num_gates, T], row_labels)``; step 0 has change 0 (nothing before it).
    """
    rows, labels = [], []
    for name, d in (("h", d_h), ("x", d_x)):
        d = np.asarray(d, dtype=np.float64)
        if d.ndim != 2 or d.shape[1] % num_gates:
            raise ValueError(f"d_{name} must be [T, {num_gates} * N], got shape {d.shape}")
        gates = d.reshape(d.shape[0], num_gates, -1)
        diff = np.zeros((num_gates, d.shape[0]))
        diff[:, 1:] = np.linalg.norm(gates[1:] - gates[:-1], axis=-1).T
        rows.append(diff)
        labels += [f"W_{name}^{g}" for g in GATES[:num_gates]]
    return np.concatenate(rows, axis=0), labels


def display_char(symbol: Any) -> str:
    """A printable one-character rendering of a generated symbol (newline -> ¶, tab -> →, ``_`` -> space)."""
    if isinstance(symbol, int):
        symbol = chr(symbol) if 32 <= symbol < 127 else "·"
    return {"\n": "¶", "\t": "→", "_": " ", "\r": "¶"}.get(symbol, symbol if symbol.isprintable() else "·")


def _save(fig: Any, path: str) -> str:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def plot_weight_dynamics(
    symbols: Sequence[Any],
    changes: np.ndarray,
    row_labels: Sequence[str],
    path: str,
    chars_per_line: int = 64,
    title: str | None = None,
) -> str:
    """Figure 4: the text in lines of ``chars_per_line``, each over a heat strip of ``changes``.

    ``symbols`` has one entry per step (characters or byte values), ``changes`` is ``[rows, T]`` with
    ``T = len(symbols)``. One colour scale for the whole figure. Returns ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    changes = np.asarray(changes, dtype=np.float64)
    if changes.ndim != 2 or changes.shape[1] != len(symbols) or changes.shape[0] != len(row_labels):
        raise ValueError(
            f"changes {changes.shape} must be "
            f"[len(row_labels)={len(row_labels)}, len(symbols)={len(symbols)}]"
        )
    if len(symbols) == 0:
        raise ValueError("no symbols to plot")
    num_lines = -(-len(symbols) // chars_per_line)
    rows = changes.shape[0]
    vmax = float(changes.max()) or 1.0
    fig, axes = plt.subplots(
        2 * num_lines,
        1,
        figsize=(chars_per_line * 0.16 + 1.0, num_lines * (0.45 + rows * 0.16) + 0.4),
        gridspec_kw={"height_ratios": [0.45, rows * 0.16] * num_lines, "hspace": 0.05},
        squeeze=False,
    )
    image = None
    for line in range(num_lines):
        lo, hi = line * chars_per_line, min((line + 1) * chars_per_line, len(symbols))
        text_ax, strip_ax = axes[2 * line, 0], axes[2 * line + 1, 0]
        text_ax.set_xlim(-0.5, chars_per_line - 0.5)
        text_ax.set_ylim(0, 1)
        text_ax.axis("off")
        for k, s in enumerate(symbols[lo:hi]):
            text_ax.text(
                k,
                0.3,
                display_char(s),
                ha="center",
                va="bottom",
                family="monospace",
                fontsize=9,
                parse_math=False,
            )
        strip = np.full((rows, chars_per_line), np.nan)
        strip[:, : hi - lo] = changes[:, lo:hi]
        image = strip_ax.imshow(
            strip,
            aspect="auto",
            cmap="magma",
            vmin=0.0,
            vmax=vmax,
            interpolation="nearest",
            extent=(-0.5, chars_per_line - 0.5, rows - 0.5, -0.5),
        )
        strip_ax.set_xticks([])
        strip_ax.set_yticks(range(rows))
        strip_ax.set_yticklabels(
            [lbl.replace("^", " ") for lbl in row_labels], fontsize=6, family="monospace"
        )
    if image is not None:
        fig.colorbar(image, ax=axes[:, 0].tolist(), fraction=0.015, pad=0.01, label="||Δd||")
    fig.suptitle(title or "Change of the main LSTM's weight-scaling vectors during sampling", fontsize=9)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_tanh_c_histograms(
    values: Mapping[str, Any], path: str, bins: int = 50, title: str | None = None
) -> str:
    """Figure 5: one normalised histogram of ``tanh(c_t)`` on [-1, 1] per model (label -> values)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not values:
        raise ValueError("no models to plot")
    fig, axes = plt.subplots(1, len(values), figsize=(3.0 * len(values), 2.6), sharey=True, squeeze=False)
    edges = np.linspace(-1.0, 1.0, bins + 1)
    for ax, (label, v) in zip(axes[0], values.items(), strict=True):
        v = np.asarray(v, dtype=np.float64).ravel()
        if v.size == 0:
            raise ValueError(f"model {label!r} has no tanh(c) values")
        counts, _ = np.histogram(np.clip(v, -1.0, 1.0), bins=edges)
        ax.bar(edges[:-1], counts / v.size, width=np.diff(edges), align="edge", color="tab:blue")
        ax.set_xlim(-1.0, 1.0)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("tanh(c)", fontsize=8)
    axes[0, 0].set_ylabel("fraction", fontsize=8)
    fig.suptitle(title or "Normalised histograms of tanh(c_t) during sampling", fontsize=9, y=1.02)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)
