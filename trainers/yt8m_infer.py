"""Write YouTube-8M predictions as the Kaggle CSV ``VideoId,LabelConfidencePairs`` (top 20 per video).

    python -m trainers.yt8m_infer --model_dir=/tmp/dbof --data_pattern='/data/test*.tfrecord' \
        --output_file=predictions.csv
    python -m trainers.yt8m_infer --saved_model=exported/yt8m_dbof/1 --data_pattern=... --output_file=...

Each row is ``<video id>,<class> <confidence> <class> <confidence> ...`` with the 20 best classes, best
first, written as the official ``inference.py`` writes them: classes chosen by ``np.argpartition``, sorted
by score (ties keep argpartition's order), confidences formatted with ``%g``. Records need no labels. The
file is written to a temporary file beside ``--output_file`` and renamed into place when complete; a bad
input file or record stops the tool with one line naming it (``--skip_bad_records`` drops and counts it).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import numpy as np
from absl import app, flags

from trainers import yt8m_eval
from zoo.data import yt8m
from zoo.io import atomic_path

__all__ = ["HEADER", "format_rows", "write_csv", "main", "run"]

HEADER = "VideoId,LabelConfidencePairs"


def format_rows(ids: np.ndarray, scores: np.ndarray, top_k: int = 20) -> list[str]:
    """CSV rows ``id,c p c p ...`` for one batch, as the official ``format_lines``: the ``top_k`` classes
    of ``np.argpartition(scores, -top_k)``, sorted by score descending (a stable sort, so tied classes keep
    argpartition's order), each written ``"%i %g"``. Classes outside a SavedModel's top k (score
    :data:`trainers.yt8m_eval.NOT_IN_TOP_K`) are left out."""
    k = min(top_k, scores.shape[1])
    chosen = np.argpartition(scores, -k, axis=1)[:, -k:]
    chosen_scores = np.take_along_axis(scores, chosen, axis=1)
    order = np.take_along_axis(chosen, np.argsort(-chosen_scores, axis=1, kind="stable"), axis=1)
    rows = []
    for vid, classes, row in zip(ids, order, scores, strict=True):
        name = vid.decode("utf-8") if isinstance(vid, bytes) else str(vid)
        # f"{x:g}" is "%g" % x (6 significant digits, trailing zeros dropped).
        pairs = " ".join(f"{int(c)} {float(row[c]):g}" for c in classes if row[c] > yt8m_eval.NOT_IN_TOP_K)
        rows.append(f"{name},{pairs}")
    return rows


def write_csv(path: str, batches: Iterable[Any], top_k: int = 20) -> int:
    """Writes the CSV atomically; returns the number of videos."""
    count = 0
    with atomic_path(path, suffix=".csv") as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(HEADER + "\n")
        for batch in batches:
            for row in format_rows(batch.ids, batch.scores, top_k):
                f.write(row + "\n")
            count += len(batch.ids)
    return count


def main(argv: list[str]) -> None:
    del argv
    values = {name: flags.FLAGS[name].value for name in flags.FLAGS}
    if not values.get("output_file"):
        print("yt8m_infer: error: --output_file is required", file=sys.stderr)
        sys.exit(2)
    counter = yt8m.make_bad_record_counter() if values.get("skip_bad_records") else None
    try:
        predictions = yt8m_eval.iterate_predictions(values, counter)
        n = write_csv(values["output_file"], predictions, values["top_k"])
    except (ValueError, FileNotFoundError) as e:
        print(f"yt8m_infer: error: {e}", file=sys.stderr)
        sys.exit(2)
    skipped = f" (bad records skipped: {int(counter.numpy())})" if counter is not None else ""
    print(f"wrote {n} videos to {values['output_file']}{skipped}", flush=True)


def run() -> None:
    yt8m_eval.define_flags()
    flags.DEFINE_string("output_file", None, "CSV to write (VideoId,LabelConfidencePairs).")
    flags.DEFINE_integer("top_k", 20, "Classes per video.")
    app.run(main)


if __name__ == "__main__":
    run()
