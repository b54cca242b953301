"""IAM-OnDB, the IAM On-Line Handwriting Database (Liwicki & Bunke 2005), as users download it.

HyperNetworks §4.5 and appendix A.3.5 train on it "as per Section 4.2 of (Graves, 2013)". Layout of a
``--data_dir``:

- ``lineStrokes/`` (from ``lineStrokes-all.tar.gz``): one XML file per handwritten line,
  ``lineStrokes/<writer>/<form>/<line set>-<NN>.xml``, e.g. ``lineStrokes/a01/a01-000/a01-000u-01.xml`` for
  line 1 of line set ``a01-000u`` (form ``a01-000``, writer group ``a01``; some line sets have no letter,
  e.g. ``h02-037``). A file is::

      <WhiteboardCaptureSession>
        <WhiteboardDescription>
          <SensorLocation corner="top_left"/>
          <DiagonallyOppositeCoords x="6512" y="1376"/> ...
        </WhiteboardDescription>
        <StrokeSet>
          <Stroke colour="black" start_time="769.05" end_time="769.64">
            <Point x="1073" y="1058" time="769.05"/> ...
          </Stroke> ...
        </StrokeSet>
      </WhiteboardCaptureSession>

  A ``Stroke`` is one pen-down trace; the pen is lifted between strokes. Coordinates are whiteboard units
  with the sensor at ``SensorLocation``'s corner: ``top_left`` (every file of the database) means y grows
  downwards, so the reader negates y (lines come out y-up, see :mod:`zoo.data.strokes`); ``bottom_*``
  corners keep y. ``time`` is not used (Graves models positions only).
- the task files ``trainset.txt``, ``testset_v.txt``, ``testset_t.txt``, ``testset_f.txt`` (in ``--data_dir``
  or ``--data_dir/task1``): one line-set id per line (5,364 / 1,438 / 1,518 / 3,859 lines in the four sets).

Splits (:data:`GRAVES_SPLITS`): Graves 2013 §4 trains on the training set plus both validation sets and
validates on ``testset_f``; HyperNetworks Table 5 reports the log-loss on that validation set. ``splits``
overrides it (:func:`parse_split_spec` reads ``"train=trainset,valid=testset_v,test=testset_f"``).

Every line then goes through :func:`zoo.data.strokes.prepare_splits` (cap, drop < 300 rows, normalise with the
training split's statistics).
"""

from __future__ import annotations

import logging
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from zoo.data.errors import MissingDataError
from zoo.data.strokes import MAX_OFFSET, MIN_LENGTH, StrokeSplits, prepare_splits, strokes_to_offsets
from zoo.io import atomic_write

__all__ = [
    "TASK_FILES",
    "GRAVES_SPLITS",
    "SENSOR_CORNERS",
    "parse_split_spec",
    "find_task_file",
    "read_task_file",
    "parse_line_set_id",
    "line_files",
    "read_line_strokes",
    "read_iam_ondb",
    "write_line_strokes",
    "write_task_file",
]

log = logging.getLogger(__name__)

#: the database's task files (without ``.txt``).
TASK_FILES = ("trainset", "testset_v", "testset_t", "testset_f")
#: Graves 2013 §4: train on trainset + both validation sets, validate on testset_f (HyperNetworks Table 5).
GRAVES_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("trainset", "testset_v", "testset_t"),
    "valid": ("testset_f",),
}
#: SensorLocation corner -> sign applied to y so that y points up.
SENSOR_CORNERS = {"top_left": -1.0, "top_right": -1.0, "bottom_left": 1.0, "bottom_right": 1.0}
_LINE_SET = re.compile(r"^([A-Za-z0-9]+)-([0-9]+)([A-Za-z]*)$")


def parse_split_spec(
    spec: str | Mapping[str, Sequence[str]] | None, source: str = "splits"
) -> dict[str, tuple]:
    """Split name -> task-file names, from ``"train=trainset+testset_v,valid=testset_f"`` or a mapping.

    ``None`` or ``""`` gives :data:`GRAVES_SPLITS`. Names may carry ``.txt``; each must be one of
    :data:`TASK_FILES`; a task file may serve one split only.
    """
    if not spec:
        return dict(GRAVES_SPLITS)
    if isinstance(spec, str):
        parsed: dict[str, list[str]] = {}
        for part in spec.split(","):
            name, eq, files = part.partition("=")
            if not eq or not name.strip() or not files.strip():
                raise ValueError(
                    f"{source}={spec!r}: {part!r} is not SPLIT=FILE[+FILE...] "
                    f"(e.g. 'train=trainset+testset_v+testset_t,valid=testset_f')"
                )
            parsed[name.strip()] = [f.strip() for f in files.split("+")]
        spec = parsed
    out: dict[str, tuple[str, ...]] = {}
    seen: dict[str, str] = {}
    for split, files in spec.items():
        names = []
        for f in [files] if isinstance(files, str) else files:
            stem = f[:-4] if f.endswith(".txt") else f
            if stem not in TASK_FILES:
                raise ValueError(
                    f"{source}: task file {f!r} of split {split!r} is not one of {', '.join(TASK_FILES)}"
                )
            if stem in seen:
                raise ValueError(
                    f"{source}: task file {stem!r} is in both split {seen[stem]!r} and {split!r}"
                )
            seen[stem] = split
            names.append(stem)
        out[str(split)] = tuple(names)
    if "train" not in out:
        raise ValueError(f"{source}={spec!r} has no 'train' split (its statistics normalise every split)")
    return out


def find_task_file(data_dir: str, name: str) -> str:
    """Path of task file ``name`` (``trainset`` ...) in ``data_dir`` or ``data_dir/task1``."""
    candidates = [os.path.join(data_dir, f"{name}.txt"), os.path.join(data_dir, "task1", f"{name}.txt")]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise MissingDataError(
        f"IAM-OnDB task file {name}.txt not found in --data_dir={data_dir!r} "
        f"(looked for {' and '.join(candidates)}); the database's task files are "
        f"{', '.join(t + '.txt' for t in TASK_FILES)}"
    )


def read_task_file(path: str) -> list[str]:
    """The line-set ids of a task file (one per line; blank lines and surrounding spaces ignored)."""
    ids = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, text in enumerate(f, start=1):
            line_set = text.strip()
            if not line_set:
                continue
            if not _LINE_SET.match(line_set):
                raise ValueError(
                    f"{path}:{number}: {line_set!r} is not an IAM-OnDB line-set id "
                    "like 'a01-000u' or 'h02-037'"
                )
            ids.append(line_set)
    return ids


def parse_line_set_id(line_set: str) -> tuple[str, str]:
    """``(writer group, form)`` of a line set: ``"a01-000u"`` -> ``("a01", "a01-000")``."""
    match = _LINE_SET.match(line_set)
    if not match:
        raise ValueError(f"{line_set!r} is not an IAM-OnDB line-set id like 'a01-000u' or 'h02-037'")
    return match.group(1), f"{match.group(1)}-{match.group(2)}"


def line_files(strokes_dir: str, line_set: str) -> list[str]:
    """The XML files of ``line_set`` (``<writer>/<form>/<line_set>-NN.xml``) in line order; [] if none."""
    writer, form = parse_line_set_id(line_set)
    directory = os.path.join(strokes_dir, writer, form)
    if not os.path.isdir(directory):
        return []
    pattern = re.compile(rf"^{re.escape(line_set)}-([0-9]+)\.xml$")
    found = [(int(m.group(1)), name) for name in os.listdir(directory) if (m := pattern.match(name))]
    return [os.path.join(directory, name) for _, name in sorted(found)]


def _coordinate(point: ET.Element, axis: str, where: str) -> float:
    value = point.get(axis)
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{where}: attribute {axis}={value!r} is not a number") from None


def read_line_strokes(path: str, line_set: str | None = None) -> list[np.ndarray]:
    """The strokes of one ``lineStrokes`` XML file, each ``[n, 2]`` float64 ``(x, y)`` with y up.

    Strokes without points are skipped. Malformed XML, a missing ``StrokeSet``, an unknown sensor corner or a
    non-numeric coordinate raise ``ValueError`` naming the file (and ``line_set`` when given), the stroke and
    the point.
    """
    what = f"IAM-OnDB file {path!r}" + (f" (line set {line_set})" if line_set else "")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise ValueError(f"{what} is not well-formed XML: {e}") from None
    except OSError as e:
        raise MissingDataError(f"{what} cannot be read: {e}") from None
    stroke_set = root if root.tag == "StrokeSet" else root.find("StrokeSet")
    if stroke_set is None:
        raise ValueError(
            f"{what} has no <StrokeSet> (root element <{root.tag}>); expected the lineStrokes layout"
        )
    sensor = root.find("WhiteboardDescription/SensorLocation")
    corner = "top_left" if sensor is None else sensor.get("corner", "top_left")
    if corner not in SENSOR_CORNERS:
        raise ValueError(f"{what}: SensorLocation corner={corner!r}; valid: {', '.join(SENSOR_CORNERS)}")
    y_sign = SENSOR_CORNERS[corner]
    strokes = []
    for k, stroke in enumerate(stroke_set.iter("Stroke")):
        points = stroke.findall("Point")
        if not points:
            continue
        xy = np.empty((len(points), 2), np.float64)
        for j, point in enumerate(points):
            where = f"{what}, stroke {k}, point {j}"
            xy[j, 0] = _coordinate(point, "x", where)
            xy[j, 1] = y_sign * _coordinate(point, "y", where)
        strokes.append(xy)
    return strokes


def read_iam_ondb(
    data_dir: str,
    *,
    splits: str | Mapping[str, Sequence[str]] | None = None,
    min_length: int = MIN_LENGTH,
    max_offset: float | None = MAX_OFFSET,
    center: bool = True,
    strict: bool = False,
    strokes_dir: str | None = None,
) -> StrokeSplits:
    """Reads the lines of the task files' line sets and prepares them (see the module docstring).

    Args:
      data_dir: holds ``lineStrokes/`` and the task files (or ``task1/`` with them).
      splits: split name -> task files (:func:`parse_split_spec`); default :data:`GRAVES_SPLITS`.
      min_length, max_offset, center: :func:`zoo.data.strokes.prepare_splits`.
      strict: a listed line set without XML files is an error (default: recorded in ``missing`` and logged).
      strokes_dir: the ``lineStrokes`` directory if not ``data_dir/lineStrokes``.

    Returns:
      :class:`zoo.data.strokes.StrokeSplits` with line ids like ``a01-000u-01``.
    """
    if not os.path.isdir(data_dir):
        raise MissingDataError(f"--data_dir={data_dir!r} does not exist (dataset iam_ondb)")
    strokes_dir = strokes_dir or os.path.join(data_dir, "lineStrokes")
    if not os.path.isdir(strokes_dir):
        raise MissingDataError(
            f"--data_dir={data_dir!r} has no lineStrokes/ directory (unpack lineStrokes-all.tar.gz there)"
        )
    plan = parse_split_spec(splits)
    task_paths = {name: find_task_file(data_dir, name) for files in plan.values() for name in files}
    raw: dict[str, list[tuple[str, np.ndarray]]] = {}
    missing: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for split, names in plan.items():
        raw[split], missing[split] = [], []
        for name in names:
            for line_set in read_task_file(task_paths[name]):
                if line_set in owner:
                    raise ValueError(
                        f"line set {line_set!r} is listed in {owner[line_set]} and in {task_paths[name]}"
                    )
                owner[line_set] = task_paths[name]
                files = line_files(strokes_dir, line_set)
                if not files:
                    if strict:
                        writer, form = parse_line_set_id(line_set)
                        raise MissingDataError(
                            f"line set {line_set!r} ({task_paths[name]}) has no "
                            f"{os.path.join(strokes_dir, writer, form, line_set)}-NN.xml files"
                        )
                    missing[split].append(line_set)
                    continue
                for path in files:
                    line_id = os.path.basename(path)[:-4]
                    rows = strokes_to_offsets(read_line_strokes(path, line_set), source=path)
                    raw[split].append((line_id, rows))
        if missing[split]:
            log.warning(
                "IAM-OnDB: %d line sets of split %r have no files under %s (first: %s)",
                len(missing[split]),
                split,
                strokes_dir,
                missing[split][0],
            )
        if not raw[split]:
            raise MissingDataError(
                f"IAM-OnDB split {split!r} ({', '.join(task_paths[n] for n in names)}) found no line files "
                f"under {strokes_dir!r}"
            )
    result = prepare_splits(
        raw,
        min_length=min_length,
        max_offset=max_offset,
        center=center,
        source=data_dir,
        config={"dataset": "iam_ondb", "splits": {k: list(v) for k, v in plan.items()}},
    )
    result.missing = missing
    return result


# ---------------------------------------------------------------------------------------------- writers
def _number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def write_line_strokes(
    path: str, strokes: Sequence[Any], corner: str = "top_left", start_time: float = 0.0
) -> str:
    """Writes one ``lineStrokes`` XML file (the database's layout) atomically; returns ``path``.

    ``strokes`` are ``[n, 2]`` coordinates *as the file stores them* (for ``top_left``, y grows downwards).
    Each point gets a ``time`` 0.01 s after the previous one.
    """
    root = ET.Element("WhiteboardCaptureSession")
    description = ET.SubElement(root, "WhiteboardDescription")
    ET.SubElement(description, "SensorLocation", corner=corner)
    stroke_set = ET.SubElement(root, "StrokeSet")
    t = float(start_time)
    for stroke in strokes:
        arr = np.asarray(stroke, np.float64).reshape(-1, 2)
        element = ET.SubElement(stroke_set, "Stroke", colour="black", start_time=f"{t:.2f}")
        for x, y in arr:
            ET.SubElement(element, "Point", x=_number(x), y=_number(y), time=f"{t:.2f}")
            t += 0.01
        element.set("end_time", f"{t - 0.01:.2f}")
    ET.indent(root)
    text = ET.tostring(root, encoding="ISO-8859-1", xml_declaration=True)
    atomic_write(path, text)
    return path


def write_task_file(path: str, line_sets: Sequence[str]) -> str:
    """Writes a task file (one line-set id per line) atomically; returns ``path``."""
    atomic_write(path, "".join(f"{s}\n" for s in line_sets))
    return path
