"""Our vectorised GAP / mAP / PERR / Hit@1 vs a straightforward per-video / per-class reference loop.

    python -m bench.yt8m_metrics --num_videos=20000 --num_classes=3862

The reference follows the official google/youtube-8m definitions literally (per-video top-k with
argpartition, per-class lists of (score, label), a Python AP loop per class, PERR per video). Reports the
time of each, the speed ratio, and the largest absolute difference of the four metrics (tie-free float64
scores with label-less videos and negative scores included).
"""

from __future__ import annotations

import time

import numpy as np
from absl import app, flags

from zoo.metrics import yt8m

flags.DEFINE_integer("num_videos", 20000, "Videos.")
flags.DEFINE_integer("num_classes", 3862, "Classes.")
flags.DEFINE_integer("top_k", 20, "Pairs kept per video.")
flags.DEFINE_integer("seed", 0, "Random seed.")
FLAGS = flags.FLAGS


def _ap(scores: list[float], labels: list[float], num_positives: float) -> float:
    if num_positives == 0:
        return 0.0
    order = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)
    ap, hits = 0.0, 0.0
    for rank, i in enumerate(order, start=1):
        if labels[i] > 0:
            hits += 1
            ap += hits / rank / num_positives
    return ap


def reference(p: np.ndarray, y: np.ndarray, k: int) -> dict[str, float]:
    n, c = p.shape
    hit = perr = 0.0
    per_class_scores: list[list[float]] = [[] for _ in range(c)]
    per_class_labels: list[list[float]] = [[] for _ in range(c)]
    for v in range(n):
        hit += y[v, int(np.argmax(p[v]))]
        num = int(y[v].sum())
        if num:
            top = np.argpartition(p[v], -num)[-num:]
            perr += sum(y[v, i] for i in top if p[v, i] > 0) / num
        for i in np.argpartition(p[v], -k)[-k:]:
            per_class_scores[i].append(p[v, i])
            per_class_labels[i].append(y[v, i])
    positives = y.sum(axis=0)
    gap = _ap(
        [s for lst in per_class_scores for s in lst],
        [lab for lst in per_class_labels for lab in lst],
        positives.sum(),
    )
    aps = [_ap(per_class_scores[i], per_class_labels[i], positives[i]) for i in range(c) if positives[i] > 0]
    return {"hit_at_one": hit / n, "perr": perr / n, "gap": gap, "map": float(np.mean(aps))}


def main(argv):
    del argv
    rng = np.random.default_rng(FLAGS.seed)
    n, c = FLAGS.num_videos, FLAGS.num_classes
    y = np.zeros((n, c), np.float64)
    counts = rng.integers(0, 6, size=n)  # 0 labels for about 1 in 6 videos
    for v in range(n):
        y[v, rng.choice(c, size=counts[v], replace=False)] = 1.0
    p = rng.normal(size=(n, c)) + 3.0 * y  # informative, tie-free, many scores <= 0

    start = time.perf_counter()
    ours = yt8m.evaluate(p, y, top_k=FLAGS.top_k)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    ref = reference(p, y, FLAGS.top_k)
    t_ref = time.perf_counter() - start
    diff = max(abs(ours[k] - ref[k]) for k in ref)
    print(f"{n} videos x {c} classes, top_k {FLAGS.top_k}")
    print("ours:      " + ", ".join(f"{k} {v:.6f}" for k, v in ours.items()) + f"  ({t_ours:.2f} s)")
    print("reference: " + ", ".join(f"{k} {v:.6f}" for k, v in ref.items()) + f"  ({t_ref:.2f} s)")
    print(f"speed ratio (reference time / ours): {t_ref / t_ours:.1f}x; max |difference|: {diff:.2e}")


if __name__ == "__main__":
    app.run(main)
