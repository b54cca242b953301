"""The ``handwriting`` task: pen-stroke generation with a mixture density output (HyperNetworks §4.5, A.3.5).

Model contract (``zoo/models/handwriting.py``): inputs ``strokes`` (float32 ``[B, T, 3]`` raw offsets
``(dx, dy, end_of_stroke)``) and ``state_0, state_1, ...``; outputs ``{"mixture": [B, T, 6M+1], "state_i"}``;
the model's ``normalize`` layer holds the training split's offset statistics.

Datasets (``--dataset``; ``zoo/data/strokes.py`` documents the common treatment: offsets, outlier cap,
lines shorter than 300 rows dropped, normalisation with the training split's statistics):
  - ``iam_ondb``: ``--data_dir`` holds IAM-OnDB as downloaded (``lineStrokes/`` and the task files; splits
    of Graves 2013 §4: train = trainset + testset_v + testset_t, valid = testset_f; ``zoo/data/iam_ondb.py``);
  - ``hershey``: embedded, no ``--data_dir``: lines of real text written with the Hershey script fonts
    (``zoo/data/hershey.py``), ``num_lines`` of them (default 2,000) split 90/5/5.

**Whole lines, padded and masked (not truncated BPTT).** Every training example is one whole line (or, with
``max_length`` below a line's length, a random window of it) run from the zero state; padding rows are masked
out of the loss. A line (~700 points on IAM-OnDB, up to ~1,900) fits in memory at batch 32, the gradient then
covers the whole line, and the validation NLL per sequence (Table 5) is computed exactly: each line from the
zero state, every point counted once. Truncated BPTT with carried state would bias the per-sequence figure
(windows of one line in different batch rows) and need line-aligned streams. Every batch is padded to a
fixed length bucket (``bucket_lengths``, default 400, 600, 800, 1000, 1300, 1600, 2000), so XLA compiles one
program per bucket instead of one per line length; lines longer than ``max_length`` (default 2,000) are
cropped to a random window in training (``--config max_length=300`` trains on 300-row windows, the practice
of the authors' public sketch code). Evaluation never crops.

Per training example the loss is the line's NLL divided by its number of points (nats per point; so the
trainer's loss is the mean nats per point over lines, and ``clip_norm`` 5.0 of A.3.5 acts on gradients of that
scale). The training metric ``nll`` and the evaluation's ``nll`` are nats per sequence (summed over a line's
points, Table 5); ``nll_per_point`` divides by all points. NLLs are in the normalised units the model
predicts (in data units a line's NLL is larger by ``T log(std_x std_y)``). Augmentation: every training line's
raw offsets are scaled by ``U(1 - s, 1 + s)`` per axis, ``s = max_scale`` (A.3.5: 0.1;
:func:`zoo.data.strokes.scale_augment` is the same transform in numpy). The first input of a line is the
start row: normalised ``(0, 0, 1)`` (a pen-up move of the mean offset), as Graves feeds a null first input.

Recipe keys read here: ``max_scale`` (0.1), ``max_length`` (2000), ``bucket_lengths``, ``eval_batch_size``
(32), ``num_lines`` (hershey, 2000), ``splits`` (iam_ondb, e.g. ``"train=trainset,valid=testset_f"``),
``min_length`` (300) and ``max_offset`` (500 units). The statistics travel as
``TaskData.assets["stroke_stats.json"]`` (model_dir and ``assets.extra``) and inside the model
(:meth:`HandwritingTask.prepare_model`).

Serving (raw units in and out; the client carries the state):
  - ``serving_default(offsets [N, 3], state_i) -> {eos [N], pi, mu_x, mu_y, sigma_x, sigma_y, rho [N, M],
    state_i}``: the distribution of the next offset in data units after feeding one offset (the first
    offset of a line is the start row, ``initial_state`` gives it and the zero states);
  - ``sample(batch_size, num_points [] int32, temperature, bias [] float32, seed [] int32) ->
    {strokes [N, num_points, 3]}``: a whole line generated inside the graph (``tf.while_loop``; stateless
    random numbers, so the same seed gives the same line);
  - ``score(strokes [N, T, 3], mask [N, T]) -> {nll [N]}``: nats per sequence, as evaluated here;
  - ``initial_state(batch_size) -> {start [N, 3], state_i}``.
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from zoo import run_dir
from zoo.data import hershey as hershey_data
from zoo.data import iam_ondb
from zoo.data.errors import MissingDataError
from zoo.data.strokes import MAX_OFFSET, MAX_SCALE, MIN_LENGTH, STROKE_FEATURES, StrokeSplits, StrokeStats
from zoo.layers.hyper_rnn import HyperLSTMCell
from zoo.layers.mdn import mixture_nll, mixture_params, sample_mixture
from zoo.layers.rnn_base import GATES
from zoo.models.char_lm import recurrent_cells
from zoo.models.handwriting import normalizer, set_stroke_stats
from zoo.registry import get_spec
from zoo.tasks.base import ForwardOutput, Task, TaskData, named_function
from zoo.tasks.buckets import bucket_index, check_buckets
from zoo.viz import handwriting as viz
from zoo.viz.dynamics import scale_change_norms

__all__ = [
    "HandwritingTask",
    "TASK",
    "STATS_ASSET",
    "START_ROW",
    "DEFAULT_BUCKETS",
    "state_names",
    "bucket_length",
    "train_dataset",
    "eval_dataset",
    "generate_strokes",
]

#: name of the statistics file in ``TaskData.assets`` (model_dir and the SavedModel's ``assets.extra``).
STATS_ASSET = "stroke_stats.json"
#: the first input of every line, in normalised units: no move (the mean offset), pen up.
START_ROW = (0.0, 0.0, 1.0)
#: padded lengths of training and evaluation batches (one XLA program each).
DEFAULT_BUCKETS = (400, 600, 800, 1000, 1300, 1600, 2000)
DEFAULT_MAX_LENGTH = 2000
DEFAULT_EVAL_BATCH_SIZE = 32
DEFAULT_HERSHEY_LINES = 2000
#: evaluation lines longer than the largest bucket are padded to a multiple of this.
_LONG_PAD = 256


def state_names(model: Any) -> list[tuple[str, int]]:
    """``[(name, size), ...]`` of the model's ``state_i`` inputs, in index order."""
    found = []
    for t in model.inputs:
        name = getattr(t, "name", "")
        if name.startswith("state_") and name[6:].isdigit():
            found.append((int(name[6:]), name, int(t.shape[-1])))
    return [(name, size) for _, name, size in sorted(found)]


def _zero_states(model: Any, batch: Any) -> dict[str, Any]:
    return {name: tf.zeros(tf.stack([batch, size]), tf.float32) for name, size in state_names(model)}


def _start_rows(model: Any, batch: Any) -> Any:
    start = normalizer(model).denormalize(tf.constant([START_ROW], tf.float32))  # [1, 3] raw
    return tf.tile(start, tf.stack([batch, 1]))


def _line_nll(model: Any, strokes: Any, mask: Any, training: bool) -> Any:
    """Per-sequence NLL (nats) of raw ``strokes [B, T, 3]`` with ``mask [B, T]``, each line from the zero
    state after the start row."""
    strokes = tf.cast(strokes, tf.float32)
    batch = tf.shape(strokes)[0]
    inputs = tf.concat([_start_rows(model, batch)[:, None, :], strokes[:, :-1]], axis=1)
    outputs = model({"strokes": inputs, **_zero_states(model, batch)}, training=training)
    targets = normalizer(model).normalize(strokes)
    return mixture_nll(targets, outputs["mixture"], mask, reduction="sequence")


# ---------------------------------------------------------------------------------------------- data
def bucket_length(length: int, buckets: Sequence[int]) -> int:
    """The smallest bucket >= ``length``; beyond the largest, ``length`` rounded up to a multiple of 256."""
    for b in sorted(buckets):
        if length <= b:
            return int(b)
    return int(math.ceil(length / _LONG_PAD) * _LONG_PAD)


def train_dataset(
    lines: Sequence[np.ndarray],
    batch_size: int,
    *,
    buckets: Sequence[int] = DEFAULT_BUCKETS,
    max_length: int = DEFAULT_MAX_LENGTH,
    max_scale: float = MAX_SCALE,
    seed: int = 0,
) -> tf.data.Dataset:
    """Infinite shuffled ``(strokes [B, L, 3], mask [B, L])`` batches of raw ``lines``; ``L``: a bucket.

    Lines longer than ``max_length`` give a random window of ``max_length`` rows; each line's offsets are
    scaled by ``U(1 - max_scale, 1 + max_scale)`` per axis. The pipeline is pure tf.data (the shuffle, the
    per-line random seeds and the bucketing are checkpointable), deterministic for a ``seed``.
    """
    if not lines:
        raise ValueError("no training lines")
    if not 0.0 <= max_scale < 1.0:
        raise ValueError(f"recipe key max_scale={max_scale!r} must be in [0, 1) (A.3.5 uses 0.1)")
    if int(max_length) < 2:
        raise ValueError(f"recipe key max_length={max_length!r} must be a whole number >= 2")
    boundaries = check_buckets(list(buckets), int(max_length), low=2)
    lengths = np.array([len(x) for x in lines], np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    flat = tf.constant(np.concatenate(lines).astype(np.float32))
    starts_t, lengths_t = tf.constant(starts), tf.constant(lengths)
    bounds = tf.constant(boundaries, tf.int64)
    n = len(lines)

    def take(i: Any, seeds: Any) -> tuple[Any, Any]:
        length = lengths_t[i]
        window = tf.minimum(length, int(max_length))
        pair = tf.random.experimental.stateless_split(seeds, 2)
        first = tf.random.stateless_uniform([], pair[0], minval=0, maxval=length - window + 1, dtype=tf.int64)
        rows = flat[starts_t[i] + first : starts_t[i] + first + window]
        if max_scale:
            factors = tf.random.stateless_uniform([2], pair[1], 1.0 - max_scale, 1.0 + max_scale)
            rows = tf.concat([rows[:, :2] * factors, rows[:, 2:]], axis=1)
        return rows, tf.ones([window], tf.float32)

    def key(rows: Any, mask: Any) -> Any:
        return bucket_index(bounds, tf.shape(rows)[0])

    def reduce(k: Any, window: tf.data.Dataset) -> tf.data.Dataset:
        length = bounds[k]
        return window.padded_batch(
            batch_size, padded_shapes=(tf.stack([length, STROKE_FEATURES]), tf.stack([length])),
            drop_remainder=True,
        )  # fmt: skip

    order = tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True).repeat()
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    ds = tf.data.Dataset.zip(order, seeds).map(take)
    ds = ds.group_by_window(key_func=key, reduce_func=reduce, window_size=batch_size)
    return ds.prefetch(2)


def eval_dataset(
    lines: Sequence[np.ndarray], batch_size: int, buckets: Sequence[int] = DEFAULT_BUCKETS
) -> tf.data.Dataset:
    """Finite ``(strokes [B, L, 3], mask [B, L])`` batches of every raw line once (sorted by length, each
    batch padded to :func:`bucket_length` and, the last one, to ``B`` rows with empty lines)."""
    order = np.argsort([len(x) for x in lines], kind="stable")
    groups = [order[k : k + batch_size] for k in range(0, len(order), batch_size)]

    def gen() -> Any:
        for group in groups:
            length = bucket_length(max(len(lines[i]) for i in group), buckets)
            strokes = np.zeros((batch_size, length, STROKE_FEATURES), np.float32)
            mask = np.zeros((batch_size, length), np.float32)
            for row, i in enumerate(group):
                strokes[row, : len(lines[i])] = lines[i]
                mask[row, : len(lines[i])] = 1.0
            yield strokes, mask

    return tf.data.Dataset.from_generator(
        gen,
        output_signature=(
            tf.TensorSpec([batch_size, None, STROKE_FEATURES], tf.float32),
            tf.TensorSpec([batch_size, None], tf.float32),
        ),
    )


def _read(dataset: str, data_dir: str | None, recipe: Mapping[str, Any]) -> StrokeSplits:
    common = {
        "min_length": int(recipe.get("min_length", MIN_LENGTH)),
        "max_offset": recipe.get("max_offset", MAX_OFFSET),
    }
    if dataset == "iam_ondb":
        assert data_dir is not None
        return iam_ondb.read_iam_ondb(data_dir, splits=recipe.get("splits"), **common)
    num_lines = recipe.get("num_lines", DEFAULT_HERSHEY_LINES)
    if isinstance(num_lines, bool) or not isinstance(num_lines, int) or num_lines < 3:
        raise ValueError(f"recipe key num_lines={num_lines!r} must be a whole number >= 3 (dataset hershey)")
    return hershey_data.read_hershey(num_lines, seed=0, **common)


def _accumulate(step: Any, dataset: Any) -> dict[str, float]:
    """``nll`` (mean nats per sequence) and ``nll_per_point`` over a split; ``step(strokes, mask)`` gives
    per-sequence nats. Empty rows (mask all 0) are not counted."""
    total, sequences, points = 0.0, 0, 0.0
    for strokes, mask in dataset:
        nll = np.asarray(step(strokes, mask), np.float64)
        m = np.asarray(mask, np.float64)
        real = m.sum(axis=1) > 0
        total += float(nll[real].sum())
        sequences += int(real.sum())
        points += float(m.sum())
    if not sequences:
        return {}
    return {"nll": total / sequences, "nll_per_point": total / max(points, 1.0)}


# ---------------------------------------------------------------------------------------------- generation
def generate_strokes(
    model: Any,
    batch_size: Any,
    num_points: Any,
    temperature: Any = 1.0,
    bias: Any = 0.0,
    seed: Any = 0,
    record: Sequence[str] = (),
) -> dict[str, Any]:
    """Generates ``num_points`` raw rows per line from the start row and the zero state (TF ops; runs in a
    ``tf.function`` or a SavedModel signature).

    Each step feeds the previous raw row, draws the next normalised row from the mixture
    (:func:`zoo.layers.mdn.sample_mixture` with stateless uniform noise seeded by ``(seed, step)``) and
    denormalises it. ``record`` names state outputs to keep per step (e.g. ``"state_2"``, a HyperLSTM's
    ``hyper_h``, for Figure 7).

    Returns:
      ``{"strokes": [B, num_points, 3]}`` plus ``[B, num_points, size]`` per recorded state name.
    """
    norm = normalizer(model)
    names = [n for n, _ in state_names(model)]
    batch_size = tf.cast(batch_size, tf.int32)
    num_points = tf.cast(num_points, tf.int32)
    temperature = tf.cast(temperature, tf.float32)
    bias = tf.cast(bias, tf.float32)
    seed = tf.cast(seed, tf.int64)
    states0 = _zero_states(model, batch_size)
    arrays0 = {k: tf.TensorArray(tf.float32, size=num_points) for k in ("strokes", *record)}

    def body(t: Any, prev: Any, states: dict, arrays: dict) -> tuple:
        out = model({"strokes": prev[:, None, :], **states}, training=False)
        noise = tf.random.stateless_uniform(tf.stack([batch_size, 4]), tf.stack([seed, tf.cast(t, tf.int64)]))
        row = norm.denormalize(sample_mixture(out["mixture"][:, 0], temperature, bias, noise=noise))
        row = tf.ensure_shape(row, prev.shape)  # a static batch size stays static across iterations
        new_states = {n: tf.ensure_shape(out[n], states[n].shape) for n in names}
        arrays = {k: a.write(t, row if k == "strokes" else new_states[k]) for k, a in arrays.items()}
        return t + 1, row, new_states, arrays

    _, _, _, arrays = tf.while_loop(
        lambda t, *_: t < num_points, body, (tf.constant(0), _start_rows(model, batch_size), states0, arrays0)
    )
    return {k: tf.transpose(a.stack(), [1, 0, 2]) for k, a in arrays.items()}


# ---------------------------------------------------------------------------------------------- the task
class HandwritingTask(Task):
    """Pen-stroke generation with whole padded lines (see the module docstring)."""

    name = "handwriting"
    datasets = ("iam_ondb", "hershey")
    recipe_keys = (
        "max_scale",
        "max_length",
        "bucket_lengths",
        "eval_batch_size",
        "num_lines",
        "splits",
        "min_length",
        "max_offset",
    )

    def __init__(self) -> None:
        self._eval_steps: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    # ----------------------------------------------------------------- data
    def check_data(self, dataset: str, data_dir: str | None) -> None:
        super().check_data(dataset, data_dir)
        if dataset == "hershey":
            if data_dir:
                raise ValueError(
                    f"--dataset=hershey is embedded (rendered from the hershey-fonts package); "
                    f"--data_dir={data_dir!r} is not used: leave it out"
                )
            return
        if not data_dir:
            raise ValueError("--dataset=iam_ondb needs --data_dir (lineStrokes/ and the task files)")
        if not os.path.isdir(data_dir):
            raise MissingDataError(f"--data_dir={data_dir!r} does not exist (dataset iam_ondb)")
        if not os.path.isdir(os.path.join(data_dir, "lineStrokes")):
            raise MissingDataError(
                f"--data_dir={data_dir!r} has no lineStrokes/ directory (unpack lineStrokes-all.tar.gz there)"
            )

    def build_data(
        self,
        dataset: str,
        data_dir: str | None,
        global_batch_size: int,
        config: Mapping[str, Any],
        recipe: Mapping[str, Any],
        seed: int,
    ) -> TaskData:
        self.check_data(dataset, data_dir)
        splits = _read(dataset, data_dir, recipe)
        stats = splits.stats
        raw = {k: [stats.denormalize(x) for x in v] for k, v in splits.sequences.items()}
        if len(raw["train"]) < global_batch_size:
            raise ValueError(
                f"--dataset={dataset}: {len(raw['train'])} training lines cannot fill one batch of "
                f"--batch_size={global_batch_size}"
            )
        buckets = recipe.get("bucket_lengths", DEFAULT_BUCKETS)
        max_length = recipe.get("max_length", DEFAULT_MAX_LENGTH)
        if isinstance(max_length, bool) or not isinstance(max_length, int):
            raise ValueError(f"recipe key max_length={max_length!r} must be a whole number >= 2")
        eval_batch = recipe.get("eval_batch_size", DEFAULT_EVAL_BATCH_SIZE)
        if isinstance(eval_batch, bool) or not isinstance(eval_batch, int) or eval_batch < 1:
            raise ValueError(f"recipe key eval_batch_size={eval_batch!r} must be a whole number >= 1")
        max_scale = recipe.get("max_scale", MAX_SCALE)
        if isinstance(max_scale, bool) or not isinstance(max_scale, int | float):
            raise ValueError(f"recipe key max_scale={max_scale!r} must be a number in [0, 1)")
        train = train_dataset(
            raw["train"],
            global_batch_size,
            buckets=buckets,
            max_length=max_length,
            max_scale=float(max_scale),
            seed=seed,
        )
        evals = {}
        for split in ("valid", "test"):
            lines = raw.get(split) or []
            evals[split] = eval_dataset(lines, int(eval_batch), buckets) if lines else None
        return TaskData(
            train=train,
            eval=evals["valid"],
            test=evals["test"],
            sizes={
                "train": len(raw["train"]),
                "eval": len(raw.get("valid") or []),
                "test": len(raw.get("test") or []),
            },
            size_unit="lines",
            assets={STATS_ASSET: stats.to_json().encode("utf-8")},
            info={
                "stats": stats,
                "dropped": dict(splits.dropped),
                "source": splits.source,
                "points": {k: int(sum(len(x) for x in v)) for k, v in raw.items()},
            },
        )

    def prepare_model(self, model: Any, data: TaskData) -> None:
        """Stores the training split's offset statistics in the model's ``normalize`` layer."""
        set_stroke_stats(model, data.info["stats"])

    # ----------------------------------------------------------------- step
    def forward(self, model: Any, batch: Any, carry: Any, training: bool) -> ForwardOutput:
        """``batch``: ``(strokes [B, L, 3] raw, mask [B, L])``; per-example loss: a line's nats per point."""
        strokes, mask = batch
        nll = _line_nll(model, strokes, mask, training)
        points = tf.reduce_sum(tf.cast(mask, tf.float32), axis=-1)
        return ForwardOutput(per_example_loss=nll / tf.maximum(points, 1.0), outputs={"nll_sequence": nll})

    def metrics(self) -> dict[str, Any]:
        return {"nll": keras.metrics.Mean(name="nll")}

    def update_metrics(self, metrics: Mapping[str, Any], batch: Any, outputs: Mapping[str, Any]) -> None:
        metrics["nll"].update_state(outputs["nll_sequence"])

    def evaluate(self, model: Any, dataset: Any) -> dict[str, float]:
        """Mean NLL per sequence (nats, Table 5) and per point over the whole split, each line from the zero
        state. The XLA step is cached per model (one compilation per padded length)."""
        step = self._eval_steps.get(model)
        if step is None:

            @tf.function(jit_compile=True, reduce_retracing=True)
            def step(strokes: Any, mask: Any) -> Any:
                return _line_nll(model, strokes, mask, training=False)

            self._eval_steps[model] = step
        return _accumulate(step, dataset)

    # -------------------------------------------------------------- serving
    def serving_functions(self, model: Any, config: Mapping[str, Any]) -> dict[str, Any]:
        """The four signatures of the module docstring (flat named tensors, callable by keyword)."""
        specs = state_names(model)
        names = [n for n, _ in specs]
        norm = normalizer(model)
        state_sig = [tf.TensorSpec([None, size], tf.float32, name=n) for n, size in specs]
        scalar = lambda name, dtype: tf.TensorSpec([], dtype, name=name)  # noqa: E731

        def serving_default(offsets: Any, *states: Any) -> dict[str, Any]:
            out = model(
                {"strokes": offsets[:, None, :], **dict(zip(names, states, strict=True))}, training=False
            )
            p = mixture_params(out["mixture"][:, 0])
            mean, std = tf.cast(norm.mean, tf.float32), tf.cast(norm.std, tf.float32)
            result = {
                "eos": p["eos"],
                "pi": p["pi"],
                "mu_x": p["mu_x"] * std[0] + mean[0],
                "mu_y": p["mu_y"] * std[1] + mean[1],
                "sigma_x": p["sigma_x"] * std[0],
                "sigma_y": p["sigma_y"] * std[1],
                "rho": p["rho"],
            }
            return {**result, **{n: out[n] for n in names}}

        def sample(
            batch_size: Any, num_points: Any, temperature: Any, bias: Any, seed: Any
        ) -> dict[str, Any]:
            checks = [
                tf.debugging.assert_positive(batch_size, message="batch_size must be >= 1"),
                tf.debugging.assert_positive(num_points, message="num_points must be >= 1"),
                tf.debugging.assert_positive(temperature, message="temperature must be > 0"),
                tf.debugging.assert_non_negative(bias, message="bias must be >= 0 (Graves §5.4)"),
            ]
            with tf.control_dependencies(checks):
                return generate_strokes(model, batch_size, num_points, temperature, bias, seed)

        def score(strokes: Any, mask: Any) -> dict[str, Any]:
            return {"nll": _line_nll(model, strokes, mask, training=False)}

        def initial_state(batch_size: Any) -> dict[str, Any]:
            return {"start": _start_rows(model, batch_size), **_zero_states(model, batch_size)}

        offsets_sig = tf.TensorSpec([None, STROKE_FEATURES], tf.float32, name="offsets")
        return {
            "serving_default": named_function(serving_default, [offsets_sig, *state_sig]),
            "sample": named_function(
                sample,
                [
                    scalar("batch_size", tf.int32),
                    scalar("num_points", tf.int32),
                    scalar("temperature", tf.float32),
                    scalar("bias", tf.float32),
                    scalar("seed", tf.int32),
                ],
            ),
            "score": named_function(
                score,
                [
                    tf.TensorSpec([None, None, STROKE_FEATURES], tf.float32, name="strokes"),
                    tf.TensorSpec([None, None], tf.float32, name="mask"),
                ],
            ),
            "initial_state": named_function(initial_state, [scalar("batch_size", tf.int32)]),
        }

    def warmup_inputs(self, model: Any, config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        states = {n: np.zeros((1, size), np.float32) for n, size in state_names(model)}
        start = np.asarray(normalizer(model).denormalize(np.array([START_ROW], np.float32)))
        return {
            "serving_default": {"offsets": start.astype(np.float32), **states},
            "sample": {
                "batch_size": np.array(1, np.int32),
                "num_points": np.array(8, np.int32),
                "temperature": np.array(1.0, np.float32),
                "bias": np.array(0.0, np.float32),
                "seed": np.array(0, np.int32),
            },
            "score": {"strokes": np.zeros((1, 8, 3), np.float32), "mask": np.ones((1, 8), np.float32)},
            "initial_state": {"batch_size": np.array(1, np.int32)},
        }

    def evaluate_serving(self, loaded: Any, dataset: Any) -> dict[str, float]:
        """NLL per sequence and per point through the SavedModel's ``score`` signature."""
        score = loaded.signatures["score"]
        return _accumulate(
            lambda strokes, mask: score(strokes=tf.cast(strokes, tf.float32), mask=tf.cast(mask, tf.float32))[
                "nll"
            ],
            dataset,
        )


TASK = HandwritingTask()


# ---------------------------------------------------------------------------------------------- sampling
def sample_run(
    model_dir: str,
    *,
    length: int = 700,
    temperature: float = 1.0,
    bias: float = 0.0,
    seed: int = 0,
    figures_dir: str | None = None,
    compare_model_dirs: Sequence[str] = (),
    model: str | None = None,
    config: Sequence[str] = (),
    checkpoint: str | None = None,
    output: str | None = None,
    say: Any = print,
) -> dict[str, Any]:
    """``zoo-sample`` for a handwriting run: generates one line, writes it as SVG and PNG, and with
    ``figures_dir`` draws Figure 7 (HyperLSTM first layer) and, with ``compare_model_dirs``, the validation
    NLL curves of this run and those (``table5_nll_curves.png``).

    Files: ``<output>.svg``/``.png`` (default ``<figures_dir or model_dir/samples>/sample_seed<seed>``).
    The run's ``stroke_stats.json`` (when present) sets the statistics the rows are denormalised with.
    Returns ``{"strokes" [length, 3] raw, "files": name -> path, "run": run info}``.
    """

    if length < 1:
        raise ValueError(f"--length={length} must be >= 1 (points to generate)")
    if not temperature > 0:
        raise ValueError(f"--temperature={temperature} must be > 0 for handwriting")
    if bias < 0:
        raise ValueError(f"--bias={bias} must be >= 0 (Graves §5.4)")
    net, name, _, info = run_dir.restore(model_dir, model, run_dir.parse_overrides(config), checkpoint)
    if get_spec(name).task != TASK.name:
        raise ValueError(f"model {name!r} is a {get_spec(name).task!r} model, not a handwriting model")
    stats_path = os.path.join(model_dir, STATS_ASSET)
    if os.path.isfile(stats_path):
        set_stroke_stats(net, StrokeStats.load(stats_path))
    first = recurrent_cells(net)[0]
    record = ("state_2",) if figures_dir and isinstance(first, HyperLSTMCell) else ()
    out = tf.function(lambda: generate_strokes(net, 1, length, temperature, bias, seed, record))()
    strokes = out["strokes"][0].numpy()
    say(f"model={name} checkpoint={info['checkpoint']} points={length} temperature={temperature} bias={bias}")
    prefix = output or os.path.join(figures_dir or os.path.join(model_dir, "samples"), f"sample_seed{seed}")
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    title = f"{name}: {length} points, temperature {temperature}, bias {bias}, seed {seed}"
    files = {
        "svg": viz.write_svg(strokes, prefix + ".svg"),
        "png": viz.plot_strokes(strokes, prefix + ".png", title),
    }
    if figures_dir and record:
        scales = first.compute_scales(out["state_2"][0])
        d_x = np.concatenate([np.asarray(scales[f"d_x_{g}"]) for g in GATES], axis=-1)
        d_h = np.concatenate([np.asarray(scales[f"d_h_{g}"]) for g in GATES], axis=-1)
        changes, labels = scale_change_norms(d_x, d_h)
        files["fig7"] = viz.plot_figure7(
            strokes, changes, labels, os.path.join(figures_dir, "fig7_handwriting_dynamics.png"), title=title
        )
    elif figures_dir:
        say(f"figure 7 skipped: model {name!r} has no HyperLSTM first layer")
    if figures_dir and compare_model_dirs:
        curves = {}
        for d in (model_dir, *compare_model_dirs):
            label = run_dir.read_run(d).get("model") or os.path.basename(os.path.normpath(d))
            while label in curves:
                label += "'"
            curves[label] = viz.read_scalars(d, "eval/nll")
        files["nll_curves"] = viz.plot_nll_curves(curves, os.path.join(figures_dir, "table5_nll_curves.png"))
    for key, path in files.items():
        say(f"wrote {key}: {path}")
    return {"strokes": strokes, "files": files, "run": {**info, "model": name}}
