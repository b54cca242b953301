"""Embedded handwriting: lines of real text written with the Hershey single-stroke fonts (``hershey``).

The ``hershey-fonts`` package ships Dr. A. V. Hershey's vector fonts (1967, public domain) as polylines,
including a joined cursive face (``scripts``, "script simplex": the letters of a word connect into one pen
trace) and a printed face (``futural``). This module turns a line of text into pen trajectories that look like
a tablet recording, so the handwriting task has real pen data offline, and then treats the lines exactly like
IAM-OnDB lines (:func:`zoo.data.strokes.prepare_splits`: same offsets, cap, 300-row minimum, normalisation).

**Text.** Lines are runs of consecutive words of real English prose: the paragraphs of the Python language
reference that every CPython ships for ``help()`` (:mod:`pydoc_data.topics`), with code blocks, grammar rules
and headings removed and only plain words (letters, inner ``-``/``'``, one trailing ``. , ; : ? !``) kept. It
is public, offline, and has the word-length and letter statistics of technical English (the IAM-OnDB texts are
from the LOB corpus, British English prose). The text differs between Python versions, so the lines are
deterministic for a seed *and* Python minor version; ``texts`` replaces the corpus.

**Pen.** Per line (:class:`HandStyle`, all ranges drawn uniformly per line): a font, a scale, a horizontal
stretch, a slant (shear), a baseline that tilts and waves, per-word size and height changes and irregular word
gaps. Corners are rounded (two rounds of Chaikin corner cutting) and each stroke is re-timed: the pen moves at
a cruising speed that drops in curves as curvature^(-1/3) (the two-thirds power law of handwriting movements)
and near the ends of each stroke, and the trace is sampled at a fixed clock, so points crowd in curves and at
pen-down / pen-up like a tablet's samples. Every sample gets Gaussian noise and is rounded to integer units (a
tablet's quantisation). Units are IAM-OnDB whiteboard units (x-height about 100, lines of 4,000-8,000): a line
of 30-60 characters gives about 500-1,100 rows, like the database's ~700 on average.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from zoo.data.strokes import MAX_OFFSET, MIN_LENGTH, StrokeSplits, prepare_splits, strokes_to_offsets

__all__ = [
    "HERSHEY_FONTS",
    "HERSHEY_SPLIT",
    "HandStyle",
    "corpus_words",
    "text_lines",
    "render_line",
    "hershey_lines",
    "read_hershey",
]

#: fonts of ``hershey-fonts`` that look like handwriting: joined cursive and printed.
HERSHEY_FONTS = ("scripts", "futural")
#: default fractions of the lines in train / valid / test.
HERSHEY_SPLIT = (0.9, 0.05, 0.05)
# Hershey fonts put the baseline at y = 9 (y down) and the cap line at -12; the x-height depends on the font.
_BASELINE = 9.0
_WORD = re.compile(r"^[A-Za-z]+(?:[-'][A-Za-z]+)*[.,;:?!]?$")


@dataclass(frozen=True)
class HandStyle:
    """Ranges the per-line handwriting style is drawn from (uniformly; lengths in x-heights unless noted)."""

    fonts: tuple[str, ...] = HERSHEY_FONTS
    font_weights: tuple[float, ...] = (0.75, 0.25)
    chars_per_line: tuple[int, int] = (30, 60)
    x_height: tuple[float, float] = (80.0, 120.0)  # whiteboard units
    stretch: tuple[float, float] = (0.85, 1.15)  # horizontal / vertical size
    slant_degrees: tuple[float, float] = (-5.0, 25.0)  # forward slant positive
    tilt_degrees: tuple[float, float] = (-2.0, 2.0)  # baseline angle
    wave: tuple[float, float] = (0.0, 0.3)  # baseline wave amplitude
    wavelength: tuple[float, float] = (8.0, 30.0)
    word_gap: tuple[float, float] = (0.9, 1.8)
    word_size: float = 0.08  # std of the log size change per word
    word_shift: float = 0.08  # std of the vertical shift per word
    step: tuple[float, float] = (0.33, 0.5)  # distance per sample at cruising speed
    slow_ends: float = 0.35  # distance from a stroke's ends over which the pen accelerates / brakes
    jitter: tuple[float, float] = (0.3, 1.5)  # whiteboard units, std of the noise on each sample

    def __post_init__(self) -> None:
        if len(self.fonts) != len(self.font_weights) or not self.fonts:
            raise ValueError(
                f"HandStyle: fonts {self.fonts} and font_weights {self.font_weights} differ in length"
            )
        for name, value in asdict(self).items():
            if isinstance(value, tuple) and len(value) == 2 and name not in ("fonts", "font_weights"):
                if value[0] > value[1]:
                    raise ValueError(f"HandStyle.{name}={value}: low end above high end")


@functools.cache
def _font(name: str):  # -> HersheyFonts
    try:
        from HersheyFonts import HersheyFonts
    except ImportError as e:
        raise ImportError(
            "dataset 'hershey' needs the hershey-fonts package: pip install hershey-fonts"
        ) from e
    font = HersheyFonts()
    if name not in font.default_font_names:
        raise ValueError(f"Hershey font {name!r} is not one of {', '.join(font.default_font_names)}")
    font.load_default_font(name)
    return font


@functools.cache
def _font_x_height(name: str) -> float:
    """Height of the font's ``x`` above the baseline in font units (9 for ``scripts``, 14 for ``futural``)."""
    return _BASELINE - min(min(y for _, y in s) for s in _font(name).strokes_for_text("x"))


@functools.lru_cache(maxsize=1)
def corpus_words() -> tuple[str, ...]:
    """The prose words of the Python language reference (:mod:`pydoc_data.topics`), in reading order."""
    from pydoc_data.topics import topics

    words: list[str] = []
    for key in sorted(topics):
        for paragraph in topics[key].split("\n\n"):
            lines = [line for line in paragraph.split("\n") if line.strip()]
            if not lines or any(line.startswith((" ", "\t")) for line in lines):
                continue  # code, grammar, tables, indented notes
            if len(lines) > 1 and set(lines[-1].strip()) <= set("*=-^~"):
                continue  # a heading with its underline
            for token in paragraph.split():
                token = token.strip('"')
                if _WORD.match(token) and len(token) <= 16:
                    words.append(token)
    if len(words) < 1000:
        raise RuntimeError(f"the pydoc_data text gave only {len(words)} words; pass texts= to hershey_lines")
    return tuple(words)


def text_lines(
    num_lines: int, rng: np.random.Generator, chars_per_line: tuple[int, int] = (30, 60)
) -> list[str]:
    """``num_lines`` runs of consecutive corpus words, each about ``chars_per_line`` characters long."""
    words = corpus_words()
    lines = []
    for _ in range(num_lines):
        target = int(rng.integers(chars_per_line[0], chars_per_line[1] + 1))
        i = int(rng.integers(0, len(words)))
        line = words[i]
        while len(line) < target:
            i = (i + 1) % len(words)
            if len(line) + 1 + len(words[i]) > chars_per_line[1]:
                break
            line = f"{line} {words[i]}"
        lines.append(line)
    return lines


def _join_connected(strokes: list[np.ndarray]) -> list[np.ndarray]:
    """Consecutive polylines that meet end to start are one pen trace (a cursive word's joined letters)."""
    joined: list[np.ndarray] = []
    for stroke in strokes:
        if joined and np.array_equal(joined[-1][-1], stroke[0]):
            joined[-1] = np.concatenate([joined[-1], stroke[1:]])
        else:
            joined.append(stroke)
    return joined


def _starts(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int)


def _chaikin(points: np.ndarray, counts: np.ndarray, rounds: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Chaikin corner cutting of every stroke (``counts`` points each, concatenated), end points kept.

    Rounds the polylines' corners like a moving pen: each segment ``ab`` gives ``3a/4 + b/4`` and
    ``a/4 + 3b/4``, and a stroke's first and last cut points are replaced by its end points.
    """
    for _ in range(rounds):
        stroke_of = np.repeat(np.arange(len(counts)), counts)
        same = stroke_of[1:] == stroke_of[:-1]
        a, b = points[:-1][same], points[1:][same]
        cut = np.empty((2 * len(a), 2))
        cut[0::2] = 0.75 * a + 0.25 * b
        cut[1::2] = 0.25 * a + 0.75 * b
        new_counts = np.where(counts >= 2, 2 * (counts - 1), 1)
        out = np.empty((int(new_counts.sum()), 2))
        multi = counts >= 2
        out[np.repeat(multi, new_counts)] = cut  # both in stroke order
        first, new_first = _starts(counts), _starts(new_counts)
        out[new_first] = points[first]
        out[new_first + new_counts - 1] = points[first + counts - 1]
        points, counts = out, new_counts
    return points, counts


def _retime(
    points: np.ndarray, counts: np.ndarray, step: float, slow_ends: float, x_height: float
) -> tuple[np.ndarray, np.ndarray]:
    """Samples each stroke at a fixed clock with a pen speed that drops in curves and near the stroke's ends.

    All strokes of a line at once (``counts`` points each, concatenated): they are laid end to end on one
    arc-length axis (and then one clock axis) with a gap between them, so one ``np.interp`` serves every
    stroke and no sample crosses a pen lift. Returns the samples and their count per stroke.
    """
    num_strokes = len(counts)
    first = _starts(counts)
    stroke_of = np.repeat(np.arange(num_strokes), counts)
    seg = np.hypot(*np.diff(points, axis=0).T) * (stroke_of[1:] == stroke_of[:-1])
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    length = arc[first + counts - 1] - arc[first]
    axis = arc + stroke_of  # a gap of 1 between strokes keeps the axis increasing
    # dense resampling, about one sample per whiteboard unit (at least 3 per stroke that moves)
    dense_n = np.where(length > 0, np.maximum(np.ceil(length).astype(int) + 1, 3), 1)
    dense_first = np.concatenate([[0], np.cumsum(dense_n)[:-1]])
    dense_of = np.repeat(np.arange(num_strokes), dense_n)
    k = np.arange(dense_n.sum()) - dense_first[dense_of]
    spacing = length / np.maximum(dense_n - 1, 1)
    s_local = k * spacing[dense_of]
    s_axis = s_local + (arc[first] + np.arange(num_strokes))[dense_of]
    dense = np.stack([np.interp(s_axis, axis, points[:, 0]), np.interp(s_axis, axis, points[:, 1])], axis=1)
    # curvature from the turning angle between consecutive dense segments of the same stroke
    v = np.diff(dense, axis=0)
    same = dense_of[1:] == dense_of[:-1]
    turn = np.abs(np.arctan2(v[:-1, 0] * v[1:, 1] - v[:-1, 1] * v[1:, 0], np.sum(v[:-1] * v[1:], axis=1)))
    turn = turn * same[:-1] * same[1:]
    curvature = np.concatenate([[0.0], turn, [0.0]]) / np.maximum(spacing[dense_of], 1e-9)
    width = max(1, int(0.05 * x_height))
    curvature = np.convolve(curvature, np.ones(2 * width + 1) / (2 * width + 1), mode="same")
    k0 = 1.0 / x_height
    speed = step * (k0 / (k0 + curvature)) ** (1.0 / 3.0)  # two-thirds power law: v ~ curvature^(-1/3)
    to_end = np.minimum(s_local, length[dense_of] - s_local) / max(slow_ends * x_height, 1e-9)
    speed = speed * (0.25 + 0.75 * np.clip(to_end, 0.0, 1.0))
    dt = spacing[dense_of][1:] / (0.5 * (speed[1:] + speed[:-1])) * same
    clock = np.concatenate([[0.0], np.cumsum(dt)])
    local_clock = clock - clock[dense_first][dense_of]
    duration = local_clock[dense_first + dense_n - 1]
    clock_axis = local_clock + np.concatenate([[0.0], np.cumsum(duration + 1.0)[:-1]])[dense_of]
    # ticks 0, 1, ..., and the stroke's last point (where the pen lifts)
    whole = np.floor(duration).astype(int)
    tick_n = whole + 1 + (duration - whole > 0.25)
    tick_first = np.concatenate([[0], np.cumsum(tick_n)[:-1]])
    tick_of = np.repeat(np.arange(num_strokes), tick_n)
    ticks = np.minimum(np.arange(tick_n.sum()) - tick_first[tick_of], duration[tick_of]).astype(np.float64)
    ticks[tick_first + tick_n - 1] = duration
    ticks += (clock_axis[dense_first] - local_clock[dense_first])[tick_of]
    out = np.stack(
        [np.interp(ticks, clock_axis, dense[:, 0]), np.interp(ticks, clock_axis, dense[:, 1])], axis=1
    )
    return out, tick_n


def render_line(text: str, rng: np.random.Generator, style: HandStyle = HandStyle()) -> list[np.ndarray]:
    """The strokes of ``text`` in a random hand: ``[n, 2]`` float64 integer-valued ``(x, y)``, y up."""
    name = str(rng.choice(style.fonts, p=np.asarray(style.font_weights) / sum(style.font_weights)))
    font, x_height_font = _font(name), _font_x_height(name)
    u = lambda r: float(rng.uniform(*r))  # noqa: E731
    placed: list[np.ndarray] = []
    cursor = 0.0
    for word in text.split():
        strokes = [np.asarray(s, np.float64) for s in font.strokes_for_text(word) if len(s)]
        if not strokes:
            continue
        strokes = _join_connected(strokes)
        size = float(np.exp(rng.normal(0.0, style.word_size)))
        shift = float(rng.normal(0.0, style.word_shift)) * x_height_font
        left = min(s[:, 0].min() for s in strokes)
        right = max(s[:, 0].max() for s in strokes)
        for s in strokes:
            x = cursor + (s[:, 0] - left) * size
            y = (_BASELINE - s[:, 1]) * size + shift  # y up, baseline at 0
            placed.append(np.stack([x, y], axis=1))
        cursor += (right - left) * size + u(style.word_gap) * x_height_font
    if not placed:
        raise ValueError(f"text {text!r} has no character the Hershey font can draw")
    x_height = u(style.x_height)
    scale = x_height / x_height_font
    stretch = u(style.stretch)
    slant = np.tan(np.radians(u(style.slant_degrees)))
    tilt = np.tan(np.radians(u(style.tilt_degrees)))
    wave, wavelength = u(style.wave) * x_height_font, u(style.wavelength) * x_height_font
    phase = u((0.0, 2 * np.pi))
    step = u(style.step) * x_height
    noise = u(style.jitter)
    counts = np.array([len(s) for s in placed])
    x, y = np.concatenate(placed).T
    y = y + tilt * x + wave * np.sin(2 * np.pi * x / wavelength + phase)
    x = x * stretch + slant * y
    points, counts = _chaikin(np.stack([x, y], axis=1) * scale, counts)
    points, counts = _retime(points, counts, step, style.slow_ends, x_height)
    points = np.round(points + rng.normal(0.0, noise, size=points.shape))
    return np.split(points, _starts(counts)[1:])


def hershey_lines(
    num_lines: int,
    seed: int = 0,
    style: HandStyle = HandStyle(),
    texts: Sequence[str] | None = None,
    first: int = 0,
) -> list[tuple[str, list[np.ndarray]]]:
    """``(text, strokes)`` of lines ``first .. first + num_lines - 1`` of the stream of seed ``seed``.

    Line ``i`` depends only on ``(seed, i)`` (its own random generator), so any range is reproducible.
    ``texts`` (cycled) replaces the corpus.
    """
    out = []
    for i in range(first, first + num_lines):
        rng = np.random.default_rng([int(seed), i])
        if texts:
            text = texts[i % len(texts)]
        else:
            text = text_lines(1, rng, style.chars_per_line)[0]
        out.append((text, render_line(text, rng, style)))
    return out


def read_hershey(
    num_lines: int = 2000,
    seed: int = 0,
    *,
    split: Sequence[float] = HERSHEY_SPLIT,
    style: HandStyle = HandStyle(),
    min_length: int = MIN_LENGTH,
    max_offset: float | None = MAX_OFFSET,
    center: bool = True,
) -> StrokeSplits:
    """``num_lines`` rendered lines split train / valid / test by ``split`` fractions, prepared like IAM-OnDB.

    Line ids are ``hershey-<seed>-<index>``; train is the first block of indices, then valid, then test.
    """
    if num_lines < 3:
        raise ValueError(f"num_lines={num_lines} must be >= 3 (one line per split at least)")
    fractions = np.asarray(split, np.float64)
    if fractions.shape != (3,) or np.any(fractions <= 0):
        raise ValueError(f"split={tuple(split)!r} must be three positive fractions (train, valid, test)")
    ends = np.round(np.cumsum(fractions / fractions.sum()) * num_lines).astype(int)
    train_end = int(min(max(ends[0], 1), num_lines - 2))  # every split gets at least one line
    bounds = (train_end, int(min(max(ends[1], train_end + 1), num_lines - 1)), num_lines)
    names = ("train", "valid", "test")
    starts = (0, bounds[0], bounds[1])
    raw = {}
    for name, start, stop in zip(names, starts, bounds, strict=True):
        lines = hershey_lines(int(stop - start), seed, style, first=int(start))
        raw[name] = [
            (f"hershey-{seed}-{start + k}", strokes_to_offsets(strokes, source=f"hershey line {start + k}"))
            for k, (_, strokes) in enumerate(lines)
        ]
    return prepare_splits(
        raw,
        min_length=min_length,
        max_offset=max_offset,
        center=center,
        source=f"hershey(seed={seed}, num_lines={num_lines})",
        config={"dataset": "hershey", "seed": int(seed), "num_lines": int(num_lines), "split": list(split)},
    )
