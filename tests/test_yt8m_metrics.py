"""YouTube-8M metrics against per-video / per-class reference loops written from the official definitions."""

import numpy as np
import pytest

from zoo.metrics import yt8m as m


# ------------------------------------------------------------------ reference (official semantics, loops)
def ref_hit_at_one(p, y):
    return float(np.mean([y[v, int(np.argmax(p[v]))] for v in range(p.shape[0])]))


def ref_perr(p, y):
    total = 0.0
    for v in range(p.shape[0]):
        n = int(y[v].sum())
        if n == 0:
            continue  # contributes 0, still counted in the denominator
        top = sorted(range(p.shape[1]), key=lambda c: -p[v, c])[:n]
        total += sum(1.0 for c in top if y[v, c] > 0 and p[v, c] > 0) / n
    return total / p.shape[0]


def ref_ap(pairs, num_positives):
    if num_positives == 0:
        return 0.0
    pairs = sorted(pairs, key=lambda t: -t[0])
    ap, hits = 0.0, 0
    for i, (_, label) in enumerate(pairs):
        if label > 0:
            hits += 1
            ap += hits / (i + 1) / num_positives
    return ap


def ref_top_pairs(p, y, k):
    out = []  # (class, score, label)
    for v in range(p.shape[0]):
        for c in sorted(range(p.shape[1]), key=lambda c: -p[v, c])[:k]:
            out.append((c, p[v, c], y[v, c]))
    return out


def ref_gap(p, y, k=20):
    return ref_ap([(s, lab) for _, s, lab in ref_top_pairs(p, y, k)], int(y.sum()))


def ref_map(p, y, k=20, empty="skip"):
    pairs = ref_top_pairs(p, y, k)
    aps = []
    for c in range(p.shape[1]):
        pos = int(y[:, c].sum())
        if pos == 0 and empty == "skip":
            continue
        aps.append(ref_ap([(s, lab) for cc, s, lab in pairs if cc == c], pos))
    return float(np.mean(aps)) if empty == "skip" else float(np.sum(aps) / p.shape[1])


def random_case(seed, n=120, c=30, signed=True):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.08).astype(np.float64)
    y[rng.random(n) < 0.15] = 0.0  # label-less videos
    p = rng.normal(size=(n, c)) + 1.5 * y  # informative, tie-free float64
    if not signed:
        p = 1 / (1 + np.exp(-p))
    return p, y


@pytest.mark.parametrize("seed,num_classes", [(0, 30), (1, 30), (2, 30), (3, 400)])
@pytest.mark.parametrize("top_k", [3, 20])
def test_matches_reference_on_random_data(seed, num_classes, top_k):
    p, y = random_case(seed, c=num_classes, signed=seed != 2)
    assert (y.sum(axis=1) == 0).any() and (p <= 0).any() == (seed != 2)
    assert abs(m.hit_at_k(p, y, 1) - ref_hit_at_one(p, y)) < 1e-9
    assert abs(m.perr(p, y) - ref_perr(p, y)) < 1e-9
    assert abs(m.gap(p, y, top_k) - ref_gap(p, y, top_k)) < 1e-9
    for empty in ("skip", "zero"):
        assert abs(m.mean_average_precision(p, y, top_k, empty) - ref_map(p, y, top_k, empty)) < 1e-9
    res = m.evaluate(p, y, top_k=top_k)
    assert res["gap"] == pytest.approx(ref_gap(p, y, top_k), abs=1e-9)
    assert res["map"] == pytest.approx(ref_map(p, y, top_k), abs=1e-9)
    assert res["perr"] == pytest.approx(ref_perr(p, y), abs=1e-9)
    assert res["hit_at_one"] == pytest.approx(ref_hit_at_one(p, y), abs=1e-9)


def test_streaming_evaluator_equals_evaluate_and_chunking():
    p, y = random_case(5, n=301, c=17)
    ev = m.Evaluator(17, top_k=20)
    for s in range(0, 301, 64):
        ev.update(p[s : s + 64], y[s : s + 64])
    streamed = ev.result()
    assert streamed.pop("num_videos") == 301
    full = m.evaluate(p, y)
    for key in full:
        assert streamed[key] == pytest.approx(full[key], abs=1e-12)
    assert m.perr(p, y, chunk_size=7) == pytest.approx(m.perr(p, y), abs=1e-12)
    assert m.hit_at_k(p, y, 1, chunk_size=5) == pytest.approx(full["hit_at_one"], abs=1e-12)


@pytest.mark.parametrize("k", [1, 5, 20, 90])
def test_top_k_selection_with_ties_is_stable_sort(k):
    p = np.random.default_rng(k).integers(0, 6, size=(40, 500)).astype(np.float64)  # many ties
    expected = np.argsort(-p, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(m._top_k_indices(p, k), expected)
    np.testing.assert_array_equal(m._top_k_indices(p.astype(np.float32), k), expected)


def test_hand_computed_cases():
    p = np.array([[0.9, 0.5, 0.1], [0.2, 0.8, 0.3], [0.6, 0.7, 0.4]])
    y = np.array([[1, 0, 1], [1, 0, 0], [0, 0, 0]], float)
    assert m.hit_at_k(p, y, 1) == pytest.approx(1 / 3)  # only video 0; label-less video counts
    assert m.hit_at_k(p, y, 2) == pytest.approx(1 / 3)
    assert m.hit_at_k(p, y, 3) == pytest.approx(2 / 3)
    # PERR: v0 top-2 = {0, 1} -> 1/2; v1 top-1 = {1} -> 0; v2 -> 0 (counted).
    assert m.perr(p, y) == pytest.approx(0.5 / 3)
    # GAP with top_k=1: pairs (0.9, 1), (0.8, 0), (0.7, 0); P = 3 -> AP = 1/3.
    assert m.gap(p, y, top_k=1) == pytest.approx(1 / 3)
    # top_k=3: sorted labels 1(.9) 0(.8) 0(.7) 0(.6) 0(.5) 0(.4) 0(.3) 1(.2) 1(.1): (1 + 2/8 + 3/9)/3
    assert m.gap(p, y, top_k=3) == pytest.approx((1 + 2 / 8 + 3 / 9) / 3)
    # mAP top_k=3: class0 pairs .9(1) .6(0) .2(1) -> (1 + 2/3)/2; class2 .4(0) .3(0) .1(1) -> (1/3)/1.
    ap0, ap2 = (1 + 2 / 3) / 2, 1 / 3
    assert m.mean_average_precision(p, y, 3) == pytest.approx((ap0 + ap2) / 2)
    assert m.mean_average_precision(p, y, 3, empty_classes="zero") == pytest.approx((ap0 + ap2) / 3)


def test_perr_needs_positive_scores():
    p = np.array([[-0.1, -0.5], [0.3, -0.2]])
    y = np.array([[1, 0], [1, 0]], float)
    assert m.perr(p, y) == pytest.approx(0.5)  # the top class of video 0 has score <= 0: no hit
    assert m.hit_at_k(p, y, 1) == pytest.approx(1.0)


def test_no_positives_and_errors():
    p = np.random.default_rng(0).random((4, 3))
    y = np.zeros((4, 3))
    assert m.gap(p, y) == 0.0 and m.mean_average_precision(p, y) == 0.0 and m.perr(p, y) == 0.0
    with pytest.raises(ValueError, match="0/1"):
        m.gap(p, y + 0.5)
    with pytest.raises(ValueError, match="empty_classes"):
        m.mean_average_precision(p, y, empty_classes="bad")
    with pytest.raises(ValueError, match=r"\(4, 3\)"):
        m.gap(p, y[:2])


def official_perr(p, y):
    """The official PERR (eval_util.calculate_precision_at_equal_recall_rate): np.argpartition per video."""
    total = 0.0
    for row in range(p.shape[0]):
        n = int(np.sum(y[row]))
        top = np.argpartition(p[row], -n)[-n:]
        precision = sum(float(y[row][c]) for c in top if p[row][c] > 0)
        total += precision / top.size
    return total / p.shape[0]


@pytest.mark.parametrize("scores", ["rounded", "all_tied"])
def test_perr_breaks_ties_as_the_official_argpartition(scores):
    rng = np.random.default_rng(11)
    n, c = 400, 60
    y = np.zeros((n, c), np.float32)
    for v in range(n):
        y[v, rng.choice(c, size=int(rng.integers(0, 8)), replace=False)] = 1
    if scores == "rounded":  # float32 model outputs rounded to 0.01: many ties
        p = np.round(rng.uniform(0, 1, size=(n, c)) * 0.5 + 0.3 * y, 2).astype(np.float32)
    else:
        p = np.full((n, c), 0.5, np.float32)
    want = official_perr(p, y)
    assert m.perr(p, y) == pytest.approx(want, abs=1e-15)
    ev = m.Evaluator(c)
    ev.update(p[:150], y[:150])
    ev.update(p[150:], y[150:])
    assert ev.result()["perr"] == pytest.approx(want, abs=1e-15)
