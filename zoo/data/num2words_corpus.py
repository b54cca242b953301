"""An embedded parallel corpus of number names: the offline default of the translation task (``num2words``).

The ``num2words`` package writes cardinal numbers as words in several languages; a pair of languages gives a
small, real translation task with agreement, reordering and compounding::

    342017  en  three hundred and forty-two thousand and seventeen
            fr  trois cent quarante-deux mille dix-sept
            de  dreihundertzweiundvierzigtausendsiebzehn

The corpus is generated on the fly, offline and deterministically:

- **Numbers** lie in ``[0, 10^7)``. A split's numbers are drawn without replacement, spread evenly over the
  seven magnitudes (1 to 7 digits) so that short and long names both appear (log-uniform-ish); a magnitude
  with fewer numbers than its share (the ten one-digit numbers) gives all it has and the rest goes to the
  larger ones. The order is then shuffled.
- **Splits are disjoint by construction**: which split a number belongs to is a fixed hash of the number
  (:func:`split_of`; 90% train, 5% valid, 5% test), independent of the seed, so no number (hence no source
  sentence) of the valid or test split ever appears in training, whatever seeds or sizes are used.
- **Deterministic**: the same ``(split, size, seed)`` gives the same numbers in the same order; the seed only
  chooses which of the split's numbers are drawn and their order.
- **Text** is exactly what ``num2words.num2words(n, lang=...)`` returns (lowercase for the languages that
  write lowercase, no post-processing). ``num2words`` is pinned to one version in ``setup.py`` because the
  corpus *is* its output: another version may spell some numbers differently and change the data.

Generation speed: ``num2words`` scans its whole table of number words (up to 10^300 and beyond) at every
step; this module uses a copy of the language's converter whose table keeps only the words below 10^7, which
gives identical text (the scan skips larger words anyway) about 4-15x faster, and falls back to
``num2words`` itself for a language whose trimmed converter does not reproduce it on a fixed set of probe
numbers.
"""

from __future__ import annotations

import copy
import functools
from collections import OrderedDict
from collections.abc import Callable

import num2words as _num2words
import numpy as np

__all__ = [
    "LANGUAGES",
    "SPLITS",
    "DEFAULT_SIZES",
    "MAX_NUMBER",
    "check_language",
    "split_of",
    "split_numbers",
    "number_name",
    "number_pairs",
]

#: Every language code ``num2words`` 0.5.14 converts (``en``, ``fr``, ``de``, ``es``, ``fr_BE``, ...).
LANGUAGES: tuple[str, ...] = tuple(sorted(_num2words.CONVERTER_CLASSES))
SPLITS: tuple[str, ...] = ("train", "valid", "test")
#: Pairs per split when ``size`` is not given.
DEFAULT_SIZES: dict[str, int] = {"train": 50_000, "valid": 1_000, "test": 1_000}
#: Numbers are drawn from ``0 .. MAX_NUMBER``.
MAX_NUMBER = 10**7 - 1
# Which split a number belongs to: its hash bucket in [0, 100) falls in the split's range (90 / 5 / 5).
_SPLIT_BUCKETS: dict[str, tuple[int, int]] = {"train": (0, 90), "valid": (90, 95), "test": (95, 100)}
# Magnitudes: numbers of 1, 2, ..., 7 digits.
_MAGNITUDES: tuple[tuple[int, int], ...] = tuple((0 if d == 1 else 10 ** (d - 1), 10**d) for d in range(1, 8))
# Magnitudes up to this many numbers are enumerated; larger ones are rejection-sampled.
_ENUMERATE_LIMIT = 1_000_000
# Numbers the trimmed converter must name exactly as num2words does before it is used.
# fmt: off
_PROBES = (
    0, 1, 7, 10, 11, 16, 17, 20, 21, 30, 70, 71, 77, 80, 81, 90, 91, 99, 100, 101, 115, 180, 200, 201, 999,
    1000, 1001, 1080, 1100, 2000, 2021, 10000, 21000, 80000, 99999, 100000, 180000, 200000, 342017, 999999,
    1000000, 1000001, 1200000, 2000000, 2000080, 7654321, 9999999,
)
# fmt: on


def check_language(language: str, source: str = "language") -> str:
    """``language`` if ``num2words`` converts it, else a ValueError naming it, its source and the choices."""
    if language not in _num2words.CONVERTER_CLASSES:
        raise ValueError(f"{source}={language!r} is not a num2words language; valid: {', '.join(LANGUAGES)}")
    return language


def _check_split(split: str) -> str:
    if split not in _SPLIT_BUCKETS:
        raise ValueError(
            f"split={split!r} is not a split of the number-names corpus; valid: {', '.join(SPLITS)}"
        )
    return split


def _hash_bucket(numbers: np.ndarray) -> np.ndarray:
    """A fixed hash of each number into ``[0, 100)`` (Fibonacci hashing: times 2^64/φ, high bits)."""
    mixed = np.asarray(numbers, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)  # wraps modulo 2^64
    return ((mixed >> np.uint64(32)) % np.uint64(100)).astype(np.int64)


def split_of(numbers: int | np.ndarray) -> np.ndarray:
    """The split (``"train"``, ``"valid"`` or ``"test"``) each number belongs to, as a string array."""
    numbers = np.asarray(numbers, dtype=np.int64)
    if numbers.size and (numbers.min() < 0 or numbers.max() > MAX_NUMBER):
        raise ValueError(f"numbers of the corpus lie in [0, {MAX_NUMBER}]")
    buckets = _hash_bucket(numbers)
    out = np.empty(numbers.shape, dtype=object)
    for split, (lo, hi) in _SPLIT_BUCKETS.items():
        out[(buckets >= lo) & (buckets < hi)] = split
    return out.astype(str)


def _members(split: str, lo: int, hi: int) -> np.ndarray:
    """Every number of ``[lo, hi)`` that belongs to ``split``, ascending."""
    numbers = np.arange(lo, hi, dtype=np.int64)
    b_lo, b_hi = _SPLIT_BUCKETS[split]
    buckets = _hash_bucket(numbers)
    return numbers[(buckets >= b_lo) & (buckets < b_hi)]


def _max_size(split: str) -> int:
    """The largest ``size`` accepted: a quarter of the split's numbers (rejection sampling stays quick)."""
    b_lo, b_hi = _SPLIT_BUCKETS[split]
    return (MAX_NUMBER + 1) * (b_hi - b_lo) // 400


def _sample_large(rng: np.random.Generator, split: str, lo: int, hi: int, count: int) -> np.ndarray:
    """``count`` distinct numbers of ``split`` drawn uniformly from ``[lo, hi)`` by rejection."""
    b_lo, b_hi = _SPLIT_BUCKETS[split]
    fraction = (b_hi - b_lo) / 100
    chosen: list[np.ndarray] = []
    seen: set[int] = set()
    while len(seen) < count:
        draw = rng.integers(lo, hi, size=int((count - len(seen)) / fraction * 1.2) + 64, dtype=np.int64)
        buckets = _hash_bucket(draw)
        draw = draw[(buckets >= b_lo) & (buckets < b_hi)]
        fresh = []
        for n in draw.tolist():
            if n not in seen:
                seen.add(n)
                fresh.append(n)
                if len(seen) == count:
                    break
        chosen.append(np.asarray(fresh, dtype=np.int64))
    return np.concatenate(chosen)


def split_numbers(split: str, size: int | None = None, seed: int = 0) -> list[int]:
    """The numbers of ``split``'s corpus: ``size`` distinct numbers (default :data:`DEFAULT_SIZES`), spread
    evenly over the seven magnitudes, in a seeded random order (see the module docstring)."""
    _check_split(split)
    size = DEFAULT_SIZES[split] if size is None else size
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size <= _max_size(split):
        raise ValueError(f"size={size!r} of split {split!r} must be an integer in [1, {_max_size(split)}]")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    rng = np.random.default_rng([int(seed), SPLITS.index(split)])
    remaining = int(size)
    parts = []
    for i, (lo, hi) in enumerate(_MAGNITUDES):
        share = remaining // (len(_MAGNITUDES) - i)
        if hi - lo <= _ENUMERATE_LIMIT:
            pool = _members(split, lo, hi)
            parts.append(rng.choice(pool, size=min(share, pool.size), replace=False))
        else:
            parts.append(_sample_large(rng, split, lo, hi, share if i < len(_MAGNITUDES) - 1 else remaining))
        remaining -= parts[-1].size
    numbers = np.concatenate(parts)
    return rng.permutation(numbers).tolist()


@functools.cache
def _namer(language: str) -> Callable[[int], str]:
    """A function naming a number in ``[0, 10^7)`` exactly as ``num2words(n, lang=language)`` does."""
    converter = _num2words.CONVERTER_CLASSES[language]
    reference = functools.partial(_num2words.num2words, lang=language)
    cards = getattr(converter, "cards", None)
    if not isinstance(cards, OrderedDict):
        return reference
    fast = copy.copy(converter)
    fast.cards = OrderedDict((k, v) for k, v in cards.items() if k <= MAX_NUMBER)
    try:
        same = all(fast.to_cardinal(n) == reference(n) for n in _PROBES)
    except Exception:  # noqa: BLE001 - any failure of the shortcut means: use num2words itself
        same = False
    return fast.to_cardinal if same else reference


def number_name(number: int, language: str) -> str:
    """``number`` in words in ``language`` (``num2words`` output, e.g. 71 fr -> "soixante et onze")."""
    check_language(language)
    if not 0 <= int(number) <= MAX_NUMBER:
        raise ValueError(f"number={number!r} is outside the corpus range [0, {MAX_NUMBER}]")
    return _namer(language)(int(number))


def number_pairs(
    split: str,
    source_language: str = "en",
    target_language: str = "fr",
    size: int | None = None,
    seed: int = 0,
) -> list[tuple[str, str]]:
    """``(source sentence, target sentence)`` pairs of ``split``: the numbers of :func:`split_numbers` written
    in words in both languages (any code of :data:`LANGUAGES`).

    >>> number_pairs("train", size=2)  # doctest: +SKIP
    [('five million, ...', 'cinq millions ...'), ...]
    """
    check_language(source_language, "source_language")
    check_language(target_language, "target_language")
    numbers = split_numbers(split, size, seed)
    source, target = _namer(source_language), _namer(target_language)
    return [(source(n), target(n)) for n in numbers]
