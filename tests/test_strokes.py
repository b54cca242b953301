"""Pen-stroke data: IAM-OnDB files in the database's layout, the Hershey handwriting, shared preprocessing."""

import json
import os

import numpy as np
import pytest

from zoo.data import hershey, iam_ondb
from zoo.data.errors import MissingDataError
from zoo.data.strokes import (
    MAX_OFFSET,
    StrokeStats,
    batches,
    offsets_to_strokes,
    pad_batch,
    prepare_splits,
    scale_augment,
    strokes_to_offsets,
)


def wavy_line(rng, points, strokes=3):
    """File coordinates (y down, integers) of a line of ``points`` points in ``strokes`` strokes."""
    x = np.cumsum(rng.integers(3, 12, size=points)).astype(float)
    y = 1000 + np.round(40 * np.sin(np.arange(points) / 5.0)) + rng.integers(-2, 3, size=points)
    cuts = np.linspace(0, points, strokes + 1).astype(int)
    return [np.stack([x[a:b], y[a:b]], 1) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def write_tree(root, lines, task_files):
    """``lines``: line id -> file-coordinate strokes; ``task_files``: name -> line-set ids."""
    for line_id, strokes in lines.items():
        line_set = line_id.rsplit("-", 1)[0]
        writer, form = iam_ondb.parse_line_set_id(line_set)
        iam_ondb.write_line_strokes(
            os.path.join(root, "lineStrokes", writer, form, f"{line_id}.xml"), strokes
        )
    for name, ids in task_files.items():
        iam_ondb.write_task_file(os.path.join(root, f"{name}.txt"), ids)
    return str(root)


LAYOUT = {  # line set -> (line count, task file)
    "a01-000u": (2, "trainset"),
    "a01-001x": (1, "trainset"),
    "h02-037": (1, "testset_v"),
    "b03-010a": (1, "testset_t"),
    "d04-020": (2, "testset_f"),
}


@pytest.fixture
def iam_dir(tmp_path):
    rng = np.random.default_rng(0)
    lines, tasks = {}, {"trainset": [], "testset_v": [], "testset_t": [], "testset_f": []}
    for line_set, (count, task) in LAYOUT.items():
        tasks[task].append(line_set)
        for k in range(1, count + 1):
            lines[f"{line_set}-{k:02d}"] = wavy_line(rng, points=40 + 10 * k)
    return write_tree(tmp_path, lines, tasks)


# ---------------------------------------------------------------------------------------- offsets and xml
def test_reader_flips_y_and_places_end_of_stroke(tmp_path):
    path = iam_ondb.write_line_strokes(
        str(tmp_path / "a01-000u-01.xml"), [[(10, 100), (12, 98), (15, 95)], [(30, 100), (31, 101)]]
    )
    with open(path, encoding="ISO-8859-1") as f:
        text = f.read()
    assert "<WhiteboardCaptureSession>" in text and '<SensorLocation corner="top_left"' in text
    assert '<Point x="10" y="100" time=' in text
    strokes = iam_ondb.read_line_strokes(path)
    np.testing.assert_array_equal(strokes[0], [[10, -100], [12, -98], [15, -95]])  # y up
    rows = strokes_to_offsets(strokes)
    np.testing.assert_array_equal(rows, [[2, 2, 0], [3, 3, 1], [15, -5, 0], [1, -1, 1]])
    bottom = iam_ondb.write_line_strokes(str(tmp_path / "b.xml"), [[(0, 0), (1, 5)]], corner="bottom_left")
    np.testing.assert_array_equal(strokes_to_offsets(iam_ondb.read_line_strokes(bottom)), [[1, 5, 1]])


def test_offsets_round_trip_to_strokes():
    strokes = [
        np.array([[0.0, 0.0], [1.0, 2.0], [3.0, 1.0]]),
        np.array([[5.0, 5.0]]),
        np.array([[6, 4], [7, 3.0]]),
    ]
    back = offsets_to_strokes(strokes_to_offsets(strokes))
    assert len(back) == 3
    for a, b in zip(back, strokes, strict=True):
        np.testing.assert_allclose(a, b)


def test_line_files_in_line_order(iam_dir):
    files = iam_ondb.line_files(os.path.join(iam_dir, "lineStrokes"), "a01-000u")
    assert [os.path.basename(f) for f in files] == ["a01-000u-01.xml", "a01-000u-02.xml"]
    assert files[0].endswith(os.path.join("lineStrokes", "a01", "a01-000", "a01-000u-01.xml"))
    assert iam_ondb.parse_line_set_id("h02-037") == ("h02", "h02-037")


# ---------------------------------------------------------------------------------------------- splits
def test_default_splits_are_graves(iam_dir):
    data = iam_ondb.read_iam_ondb(iam_dir, min_length=10)
    assert set(data.sequences) == {"train", "valid"}
    assert data.ids["train"] == ["a01-000u-01", "a01-000u-02", "a01-001x-01", "h02-037-01", "b03-010a-01"]
    assert data.ids["valid"] == ["d04-020-01", "d04-020-02"]
    assert data.config["splits"]["train"] == ["trainset", "testset_v", "testset_t"]


def test_split_override(iam_dir):
    data = iam_ondb.read_iam_ondb(
        iam_dir, splits="train=trainset,valid=testset_v+testset_t,test=testset_f", min_length=10
    )
    assert data.ids["train"] == ["a01-000u-01", "a01-000u-02", "a01-001x-01"]
    assert data.ids["valid"] == ["h02-037-01", "b03-010a-01"]
    assert data.ids["test"] == ["d04-020-01", "d04-020-02"]
    assert iam_ondb.parse_split_spec({"train": ["trainset.txt"]}) == {"train": ("trainset",)}
    with pytest.raises(ValueError, match="'testset_x' of split 'valid' is not one of trainset, testset_v"):
        iam_ondb.parse_split_spec("train=trainset,valid=testset_x")
    with pytest.raises(ValueError, match="both split 'train' and 'valid'"):
        iam_ondb.parse_split_spec("train=trainset,valid=trainset")
    with pytest.raises(ValueError, match="no 'train' split"):
        iam_ondb.parse_split_spec("valid=testset_f")


def test_task_files_in_task1_and_missing_line_sets(tmp_path):
    rng = np.random.default_rng(1)
    root = write_tree(tmp_path, {"a01-000u-01": wavy_line(rng, 30), "d04-020-01": wavy_line(rng, 30)}, {})
    os.makedirs(tmp_path / "task1")
    iam_ondb.write_task_file(str(tmp_path / "task1" / "trainset.txt"), [" a01-000u", "", "z09-999z "])
    iam_ondb.write_task_file(str(tmp_path / "task1" / "testset_f.txt"), ["d04-020"])
    data = iam_ondb.read_iam_ondb(root, splits="train=trainset,valid=testset_f", min_length=5)
    assert data.ids["train"] == ["a01-000u-01"] and data.missing["train"] == ["z09-999z"]
    with pytest.raises(
        MissingDataError, match="line set 'z09-999z' .*trainset.txt.* has no .*z09-999z-NN.xml"
    ):
        iam_ondb.read_iam_ondb(root, splits="train=trainset,valid=testset_f", min_length=5, strict=True)


# --------------------------------------------------------------------------------------- preprocessing
def raw_rows(iam_dir, line_ids):
    out = []
    for line_id in line_ids:
        line_set = line_id.rsplit("-", 1)[0]
        writer, form = iam_ondb.parse_line_set_id(line_set)
        path = os.path.join(iam_dir, "lineStrokes", writer, form, f"{line_id}.xml")
        out.append(strokes_to_offsets(iam_ondb.read_line_strokes(path)))
    return out


def test_normalised_with_the_training_statistics(iam_dir):
    data = iam_ondb.read_iam_ondb(iam_dir, min_length=10)
    train = np.concatenate(raw_rows(iam_dir, data.ids["train"]))
    np.testing.assert_allclose(data.stats.mean, train[:, :2].mean(0), rtol=1e-6)
    np.testing.assert_allclose(data.stats.std, train[:, :2].std(0), rtol=1e-6)
    normalised = np.concatenate(data.sequences["train"])
    np.testing.assert_allclose(normalised[:, :2].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(normalised[:, :2].std(0), 1, rtol=1e-5)
    np.testing.assert_array_equal(normalised[:, 2], train[:, 2])  # end_of_stroke untouched
    valid_raw = raw_rows(iam_dir, data.ids["valid"])
    for seq, raw in zip(data.sequences["valid"], valid_raw, strict=True):  # valid uses train's statistics
        np.testing.assert_allclose(
            seq[:, :2], (raw[:, :2] - data.stats.mean) / data.stats.std, rtol=1e-5, atol=1e-6
        )
    np.testing.assert_allclose(data.stats.denormalize(data.sequences["valid"][0]), valid_raw[0], atol=1e-4)
    uncentred = iam_ondb.read_iam_ondb(iam_dir, min_length=10, center=False)
    assert uncentred.stats.mean == (0.0, 0.0)


def test_lines_shorter_than_300_rows_are_dropped(tmp_path):
    rng = np.random.default_rng(2)
    lines = {
        "a01-000u-01": wavy_line(rng, 301),
        "a01-000u-02": wavy_line(rng, 300),
        "d04-020-01": wavy_line(rng, 400),
    }
    root = write_tree(tmp_path, lines, {"trainset": ["a01-000u"], "testset_f": ["d04-020"]})
    data = iam_ondb.read_iam_ondb(root, splits="train=trainset,valid=testset_f")  # default min_length 300
    assert data.ids["train"] == ["a01-000u-01"] and data.dropped == {"train": 1, "valid": 0}
    assert data.lengths("train").tolist() == [300]  # 301 points -> 300 rows


def test_outlier_offsets_are_capped():
    rows = np.zeros((10, 3), np.float32)
    rows[:, 0] = 5.0
    rows[3, :2] = (2000.0, -900.0)
    rows[7, 2] = 1.0
    raw = {"train": [("x", rows)], "valid": [("y", rows)]}
    capped = prepare_splits(raw, min_length=0)
    back = capped.stats.denormalize(capped.sequences["train"][0])
    np.testing.assert_allclose(back[3, :2], (MAX_OFFSET, -MAX_OFFSET), rtol=1e-5)
    np.testing.assert_allclose(back[0, :2], (5.0, 0.0), atol=1e-4)
    free = prepare_splits(raw, min_length=0, max_offset=None)
    np.testing.assert_allclose(
        free.stats.denormalize(free.sequences["train"][0])[3, :2], (2000, -900), rtol=1e-5
    )
    assert capped.stats.std[0] < free.stats.std[0]  # statistics are taken after capping


def test_stats_round_trip_and_errors(tmp_path):
    stats = StrokeStats((8.5, 0.2), (45.0, 37.0))
    path = str(tmp_path / "stroke_stats.json")
    stats.save(path)
    assert json.load(open(path)) == {"mean": [8.5, 0.2], "std": [45.0, 37.0]}
    assert StrokeStats.load(path) == stats
    with pytest.raises(ValueError, match="positive stds"):
        StrokeStats((0, 0), (1, 0))
    with pytest.raises(ValueError, match="is not JSON"):
        StrokeStats.from_json("{", source="run.json")
    with pytest.raises(MissingDataError, match="nope.json"):
        StrokeStats.load(str(tmp_path / "nope.json"))


def test_scale_augmentation_in_raw_units():
    rng = np.random.default_rng(3)
    stats = StrokeStats((8.0, 1.0), (40.0, 30.0))
    eos = rng.uniform(size=50) < 0.1
    raw = np.stack([rng.normal(8, 40, 50), rng.normal(1, 30, 50), eos], 1).astype(np.float32)
    seq = stats.normalize(raw)
    ratios = []
    for seed in range(20):
        out = scale_augment(seq, stats, np.random.default_rng(seed))
        factor = stats.denormalize(out)[:, :2] / raw[:, :2]
        # one factor per axis and line
        np.testing.assert_allclose(factor, factor[:1].repeat(50, 0), rtol=1e-4)
        np.testing.assert_array_equal(out[:, 2], seq[:, 2])
        ratios.append(factor[0])
    ratios = np.array(ratios)
    assert ratios.min() >= 0.9 and ratios.max() <= 1.1 and ratios.std() > 0.02
    assert not np.allclose(ratios[:, 0], ratios[:, 1])  # x and y drawn independently
    np.testing.assert_array_equal(scale_augment(seq, stats, rng, max_scale=0.0), seq)
    with pytest.raises(ValueError, match="max_scale=1.5"):
        scale_augment(seq, stats, rng, max_scale=1.5)


def test_padded_batches():
    seqs = [np.full((n, 3), n, np.float32) for n in (3, 5, 8, 2)]
    x, mask = pad_batch(seqs[:2], 6)
    assert x.shape == (2, 6, 3) and mask.tolist() == [[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]]
    assert np.all(x[0, 3:] == 0) and np.all(x[1, :5] == 5)
    with pytest.raises(ValueError, match="line 0 has 8 rows, more than the padded length 6"):
        pad_batch(seqs[2:], 6)
    first = list(batches(seqs, 2, 6, seed=1, epochs=2, crop="random"))
    assert len(first) == 4 and all(b[0].shape == (2, 6, 3) for b in first)
    again = list(batches(seqs, 2, 6, seed=1, epochs=2, crop="random"))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, again, strict=True))  # deterministic by seed
    assert sum(m.sum() for _, m in first) == 2 * (3 + 5 + 6 + 2)
    with pytest.raises(ValueError, match="crop='error'"):
        list(batches(seqs, 4, 6, shuffle=False, epochs=1))
    with pytest.raises(ValueError, match="needs the StrokeStats"):
        next(batches(seqs, 2, 8, max_scale=0.1))


# ------------------------------------------------------------------------------------------------ errors
def test_errors_name_the_file_and_line_set(iam_dir, tmp_path):
    bad = os.path.join(iam_dir, "lineStrokes", "a01", "a01-001", "a01-001x-01.xml")
    with open(bad, "w") as f:
        f.write("<WhiteboardCaptureSession><StrokeSet><Stroke><Point x='1' y='2'/></StrokeSet>")
    with pytest.raises(ValueError, match=r"a01-001x-01.xml' \(line set a01-001x\) is not well-formed XML"):
        iam_ondb.read_iam_ondb(iam_dir, min_length=10)
    with open(bad, "w") as f:
        f.write(
            "<WhiteboardCaptureSession><StrokeSet><Stroke><Point x='1' y='oops'/></Stroke></StrokeSet>"
            "</WhiteboardCaptureSession>"
        )
    with pytest.raises(
        ValueError, match=r"a01-001x-01.xml' \(line set a01-001x\), stroke 0, point 0: .*y='oops'"
    ):
        iam_ondb.read_iam_ondb(iam_dir, min_length=10)
    os.remove(os.path.join(iam_dir, "testset_f.txt"))
    with pytest.raises(MissingDataError, match="task file testset_f.txt not found in --data_dir="):
        iam_ondb.read_iam_ondb(iam_dir)
    with pytest.raises(MissingDataError, match="no lineStrokes/ directory"):
        iam_ondb.read_iam_ondb(str(tmp_path / "lineStrokes" / "a01"))
    task = iam_ondb.write_task_file(str(tmp_path / "trainset.txt"), ["a01-000u", "not an id"])
    with pytest.raises(ValueError, match="trainset.txt:2: 'not an id' is not an IAM-OnDB line-set id"):
        iam_ondb.read_task_file(task)
    corner = iam_ondb.write_line_strokes(str(tmp_path / "c.xml"), [[(0, 0)]], corner="middle")
    with pytest.raises(ValueError, match="corner='middle'; valid: top_left"):
        iam_ondb.read_line_strokes(corner)


def test_a_line_set_in_two_task_files_is_refused(iam_dir):
    iam_ondb.write_task_file(os.path.join(iam_dir, "testset_f.txt"), ["d04-020", "a01-000u"])
    with pytest.raises(
        ValueError, match="line set 'a01-000u' is listed in .*trainset.txt and in .*testset_f.txt"
    ):
        iam_ondb.read_iam_ondb(iam_dir, min_length=10)


# ------------------------------------------------------------------------------------------------ hershey
def test_hershey_is_deterministic_by_seed():
    a = hershey.hershey_lines(3, seed=0)
    b = hershey.hershey_lines(3, seed=0)
    assert [t for t, _ in a] == [t for t, _ in b]
    for (_, sa), (_, sb) in zip(a, b, strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(sa, sb, strict=True))
    text, strokes = hershey.hershey_lines(1, seed=0, first=2)[0]  # line i depends on (seed, i) only
    assert text == a[2][0] and all(np.array_equal(x, y) for x, y in zip(strokes, a[2][1], strict=True))
    assert hershey.hershey_lines(1, seed=1)[0][0] != a[0][0]


def test_hershey_lines_look_like_pen_data():
    lines = hershey.hershey_lines(24, seed=7)
    words = set(hershey.corpus_words())
    rows = [strokes_to_offsets(strokes) for _, strokes in lines]
    lengths = np.array([len(r) for r in rows])
    assert np.mean(lengths >= 300) >= 0.9 and 500 <= lengths.mean() <= 1000  # IAM-OnDB: ~700 on average
    assert min(len(strokes) for _, strokes in lines) > 5  # pen lifts between words and letters
    for text, strokes in lines:
        assert all(w in words for w in text.split())
        assert all(np.array_equal(s, np.round(s)) for s in strokes)  # tablet-like integer coordinates
    allrows = np.concatenate(rows)
    mean, std = allrows[:, :2].mean(0), allrows[:, :2].std(0)
    assert 3 < mean[0] < 20 and abs(mean[1]) < 2  # writing goes right; the baseline stays level
    assert 15 < std[0] < 60 and 15 < std[1] < 60  # IAM-OnDB: about 45 and 37
    assert 0.03 < allrows[:, 2].mean() < 0.15  # end-of-stroke rows
    pen_down = allrows[np.concatenate([[0.0], allrows[:-1, 2]]) == 0]
    steps = np.hypot(pen_down[:, 0], pen_down[:, 1])
    assert 8 < np.median(steps) < 50 and steps.std() / steps.mean() > 0.3  # speed varies along the pen
    height = [np.ptp(np.concatenate(s)[:, 1]) for _, s in lines]
    width = [np.ptp(np.concatenate(s)[:, 0]) for _, s in lines]
    assert 8 < np.median(np.array(width) / np.array(height)) < 40  # a line is long and low


def test_read_hershey_splits():
    data = hershey.read_hershey(num_lines=20, seed=3, min_length=0)
    assert [len(data.ids[s]) for s in ("train", "valid", "test")] == [18, 1, 1]
    assert data.ids["valid"] == ["hershey-3-18"] and data.ids["test"] == ["hershey-3-19"]
    normalised = np.concatenate(data.sequences["train"])
    np.testing.assert_allclose(normalised[:, :2].mean(0), 0, atol=1e-5)
    assert data.config["dataset"] == "hershey" and data.config["min_length"] == 0
    tiny = hershey.read_hershey(num_lines=3, seed=3, min_length=0)
    assert [len(tiny.ids[s]) for s in ("train", "valid", "test")] == [1, 1, 1]
    with pytest.raises(ValueError, match="three positive fractions"):
        hershey.read_hershey(num_lines=20, split=(1, 0, 0))


def test_corpus_words_are_prose():
    words = hershey.corpus_words()
    assert len(words) > 10_000
    lower = {w.lower().strip(".,;:?!") for w in words}
    assert {"the", "and", "of", "is", "which", "value"} <= lower
