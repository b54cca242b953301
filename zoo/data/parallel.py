"""Parallel text as WMT distributes it: a plain-text file per language, one sentence a line, aligned by line.

A corpus is a pair of files ``{data_dir}/{prefix}.{language}``, e.g. ``newstest2014.en`` and
``newstest2014.fr``: line ``i`` of one file is the translation of line ``i`` of the other. The translation
task reads its train, valid and test corpora by prefix (chosen by flags).

Reading (:func:`read_parallel`):

- Files are UTF-8 (a byte-order mark at the start is ignored). Lines are split at ``"\\n"`` only, never at
  the other characters ``str.splitlines`` treats as line breaks (U+2028, U+0085, form feed, ...), which do
  occur inside WMT sentences and would break the alignment. Only the line ending is removed (``"\\n"``, or
  ``"\\r\\n"`` of files written on Windows); other whitespace is kept (SentencePiece normalises it).
- Empty lines are kept by default, so that line ``i`` stays line ``i`` of both files; ``drop_empty=True``
  drops every pair in which either side is empty or blank (an empty sentence teaches nothing and has no
  BLEU), and :func:`count_empty_pairs` says how many there are.
- Errors name the file: a missing file is a :class:`MissingDataError` naming the path and the flags that
  chose it; files with different numbers of lines are a ``ValueError`` naming both files and both counts;
  bytes that are not UTF-8 are a ``ValueError`` naming the file and the line number (1-based).

:func:`write_parallel` writes such a pair (tests, exporting the embedded corpus), atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from zoo.data.errors import MissingDataError
from zoo.io import atomic_write

__all__ = ["parallel_path", "read_parallel", "write_parallel", "count_empty_pairs"]


def parallel_path(data_dir: str, prefix: str, language: str) -> str:
    """``{data_dir}/{prefix}.{language}``."""
    return os.path.join(data_dir, f"{prefix}.{language}")


def _read_lines(path: str, max_lines: int | None) -> list[str]:
    lines: list[str] = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):  # binary files iterate on b"\n" only
            if max_lines is not None and number > max_lines:
                break
            if raw.endswith(b"\n"):
                raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(
                    f"{path!r} line {number} is not UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1})"
                ) from None
            if number == 1 and line.startswith("\ufeff"):
                line = line[1:]
            lines.append(line)
    return lines


def read_parallel(
    data_dir: str,
    prefix: str,
    source_language: str,
    target_language: str,
    max_lines: int | None = None,
    drop_empty: bool = False,
    prefix_flag: str = "prefix",
) -> tuple[list[str], list[str]]:
    """``(sources, targets)``: the aligned lines of ``{data_dir}/{prefix}.{source_language}`` and
    ``{data_dir}/{prefix}.{target_language}``.

    ``max_lines`` reads only the first lines of both files (their counts are then compared over those
    lines only). ``prefix_flag`` is how the user chose ``prefix`` (e.g. ``"--config train_prefix"``), named
    in the error when a file is missing.
    """
    if max_lines is not None and (
        isinstance(max_lines, bool) or not isinstance(max_lines, int) or max_lines < 1
    ):
        raise ValueError(f"max_lines={max_lines!r} must be None or a positive integer")
    paths = [parallel_path(data_dir, prefix, lang) for lang in (source_language, target_language)]
    for path, lang in zip(paths, (source_language, target_language), strict=True):
        if not os.path.isfile(path):
            raise MissingDataError(
                f"parallel text file {path!r} does not exist (--data_dir={data_dir!r}, "
                f"{prefix_flag}={prefix!r}, language {lang!r}: the corpus is the file pair "
                f"{prefix}.{source_language} / {prefix}.{target_language} in --data_dir)"
            )
    sources, targets = (_read_lines(path, max_lines) for path in paths)
    if len(sources) != len(targets):
        what = f"the first {max_lines} lines" if max_lines is not None else "lines"
        raise ValueError(
            f"parallel files differ in length: {paths[0]!r} has {len(sources)} {what}, "
            f"{paths[1]!r} has {len(targets)}; line i of one must translate line i of the other"
        )
    if drop_empty:
        kept = [(s, t) for s, t in zip(sources, targets, strict=True) if s.strip() and t.strip()]
        sources, targets = [s for s, _ in kept], [t for _, t in kept]
    return sources, targets


def count_empty_pairs(sources: Sequence[str], targets: Sequence[str]) -> int:
    """How many aligned pairs have an empty (or blank) side: what ``read_parallel(drop_empty=True)`` drops."""
    return sum(1 for s, t in zip(sources, targets, strict=True) if not (s.strip() and t.strip()))


def write_parallel(
    data_dir: str,
    prefix: str,
    source_language: str,
    target_language: str,
    sources: Sequence[str],
    targets: Sequence[str],
) -> tuple[str, str]:
    """Writes the pair of files :func:`read_parallel` reads (UTF-8, ``"\\n"`` after every line), each
    atomically; returns their paths. A sentence may not contain ``"\\n"`` or ``"\\r"``."""
    if len(sources) != len(targets):
        raise ValueError(f"{len(sources)} source sentences but {len(targets)} target sentences")
    paths = []
    for lang, lines in ((source_language, sources), (target_language, targets)):
        for index, line in enumerate(lines):
            if not isinstance(line, str) or "\n" in line or "\r" in line:
                raise ValueError(
                    f"{lang} sentence {index} ({line!r}) must be a string without line breaks to be written "
                    "one sentence a line"
                )
        path = parallel_path(data_dir, prefix, lang)
        atomic_write(path, "".join(f"{line}\n" for line in lines))
        paths.append(path)
    return paths[0], paths[1]
