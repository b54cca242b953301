"""Beam search with GNMT's length normalisation and coverage penalty (Wu et al. 2016, §7) against NumPy:
exhaustive search, greedy decoding, the penalty formulas, batches with different source masks, and (on
TensorFlow) a traced ``tf.function`` with a dynamic batch and a tensor ``max_length``, exported and reloaded.

Backend-neutral except the tests marked TensorFlow-only: ``KERAS_BACKEND=jax`` runs the rest, under
``jax.jit`` except the greedy-versus-beam test, which runs eagerly.
"""

import math

import keras
import numpy as np
import pytest
from keras import ops

from zoo.beam_search import (
    BOS_ID,
    COVERAGE_FLOOR,
    EOS_ID,
    PAD_ID,
    beam_search,
    coverage_penalty,
    length_penalty,
    tile_beams,
)

BACKEND = keras.backend.backend()
tf_only = pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.function / SavedModel are TensorFlow-only")


class TableModel:
    """A deterministic decoder: the log-probabilities and attention row of step ``c`` are table entries
    indexed by (example, c, token two back, previous token). The token two back is read from a token
    history carried in the state, so a wrong state reordering gives other scores than the NumPy reference.
    Attention is a softmax over each example's real source positions (exactly 0 on padding)."""

    def __init__(self, logp: np.ndarray, att_logits: np.ndarray, mask: np.ndarray):
        self.batch, self.steps, vocab, _, self.vocab = logp.shape
        assert vocab == self.vocab
        self.logp = logp.astype(np.float32)
        z = np.where(mask[:, None, None, None, :], att_logits, -np.inf)
        att = np.exp(z - z.max(-1, keepdims=True))
        self.att = (att / att.sum(-1, keepdims=True)).astype(np.float32)
        self.mask = mask

    @classmethod
    def random(cls, seed: int, batch: int, steps: int, vocab: int, source: int, lengths=None, scale=2.0):
        rng = np.random.default_rng(seed)
        z = rng.normal(size=(batch, steps, vocab, vocab, vocab)) * scale
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        att = rng.normal(size=(batch, steps, vocab, vocab, source)) * 2.0
        lengths = [source] * batch if lengths is None else lengths
        mask = np.arange(source)[None, :] < np.asarray(lengths)[:, None]
        return cls(logp, att, mask)

    # ---- the keras.ops side -------------------------------------------------------------------------
    def initial_state(self, examples=None):
        examples = np.arange(self.batch) if examples is None else np.asarray(examples)
        n = len(examples)
        return (
            ops.convert_to_tensor(examples.astype(np.int32)),
            ops.zeros((n,), "int32"),
            ops.full((n, self.steps), BOS_ID, "int32"),
        )

    def step_fn(self, tokens, state):
        example, counter, history = state
        back = ops.take_along_axis(history, ops.maximum(counter - 1, 0)[:, None], axis=1)[:, 0]
        back = ops.where(counter > 0, back, BOS_ID)
        v = self.vocab
        index = ((example * self.steps + counter) * v + back) * v + tokens
        log_probs = ops.take(ops.reshape(self.logp, (-1, v)), index, axis=0)
        attention = ops.take(ops.reshape(self.att, (-1, self.att.shape[-1])), index, axis=0)
        written = ops.arange(self.steps, dtype="int32")[None, :] == counter[:, None]
        history = ops.where(written, tokens[:, None], history)
        return log_probs, (example, counter + 1, history), attention

    def search(self, beam_width, alpha=0.0, beta=0.0, examples=None, max_length=None, masked=True, jit=True):
        """Beam search of ``examples``; on JAX compiled with ``jax.jit`` unless ``jit=False`` (eager JAX
        compiles every op and the loop separately, several seconds a search on CI's CPUs)."""
        examples = list(range(self.batch)) if examples is None else examples
        mask = ops.convert_to_tensor(self.mask[examples]) if masked else None

        def run(state, mask):
            return beam_search(
                self.step_fn,
                state,
                batch_size=len(examples),
                beam_width=beam_width,
                max_length=self.steps if max_length is None else max_length,
                length_penalty_alpha=alpha,
                coverage_penalty_beta=beta,
                source_mask=mask,
            )

        if jit and BACKEND == "jax":
            import jax

            run = jax.jit(run)
        out = run(self.initial_state(examples), mask)
        return [np.asarray(ops.convert_to_numpy(t)) for t in out]

    # ---- the NumPy reference ------------------------------------------------------------------------
    def step_np(self, b: int, prefix: list[int]):
        c = len(prefix)
        prev = prefix[-1] if c else BOS_ID
        back = prefix[-2] if c >= 2 else BOS_ID
        return self.logp[b, c, back, prev].astype(np.float64), self.att[b, c, back, prev].astype(np.float64)

    def score_np(self, b, seq, alpha, beta):
        logp, sums = 0.0, 0.0
        for c, token in enumerate(seq):
            lp, att = self.step_np(b, seq[:c])
            logp, sums = logp + lp[token], sums + att
        lp_y = (5.0 + len(seq)) ** alpha / (5.0 + 1.0) ** alpha
        cp = beta * np.sum(np.log(np.minimum(sums[self.mask[b]], 1.0)))
        return logp / lp_y + cp, logp

    def exhaustive(self, b, alpha, beta):
        """Every sequence (PAD never generated; tokens of probability 0 skipped), best first."""
        found = []

        def visit(prefix):
            if prefix and (prefix[-1] == EOS_ID or len(prefix) == self.steps):
                found.append((*self.score_np(b, prefix, alpha, beta), tuple(prefix)))
                return
            lp, _ = self.step_np(b, prefix)
            for token in range(self.vocab):
                if token != PAD_ID and np.isfinite(lp[token]):
                    visit(prefix + [token])

        visit([])
        return sorted(found, key=lambda x: -x[0])

    def greedy(self, b, alpha, beta):
        seq = []
        while not seq or (seq[-1] != EOS_ID and len(seq) < self.steps):
            lp, _ = self.step_np(b, seq)
            lp[PAD_ID] = -np.inf
            seq.append(int(np.argmax(lp)))
        return (*self.score_np(b, seq, alpha, beta), tuple(seq))


def padded(seq, length):
    return list(seq) + [PAD_ID] * (length - len(seq))


def assert_matches(result, b, reference, steps, k=None):
    """Beam result of example ``b`` equals the reference list ``[(score, log P, tokens)]`` (best first)."""
    tokens, lengths, scores, log_probs = (x[b] for x in result)
    k = len(scores) if k is None else k
    ref = reference[:k]
    np.testing.assert_allclose(scores[: len(ref)], [r[0] for r in ref], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(log_probs[: len(ref)], [r[1] for r in ref], rtol=1e-5, atol=1e-5)
    ref_scores = [r[0] for r in reference] + [-np.inf]
    for i, (_, _, seq) in enumerate(ref):
        if i > 0 and ref_scores[i - 1] - ref_scores[i] < 1e-4 or ref_scores[i] - ref_scores[i + 1] < 1e-4:
            continue  # a near tie: float32 may order these two either way
        assert tokens[i].tolist() == padded(seq, steps), (i, tokens[i], seq)
        assert lengths[i] == len(seq)
    assert np.all(np.isneginf(scores[len(ref) :])) and np.all(lengths[len(ref) :] == 0)
    assert np.all(tokens[len(ref) :] == PAD_ID)


# ---- 2. the penalties --------------------------------------------------------------------------------
def test_length_penalty_matches_gnmt_formula():
    got = np.asarray(length_penalty(np.array([1, 4, 10], np.int32), 0.2))
    # (5 + |Y|)^α / (5 + 1)^α by hand: 6^.2/6^.2 = 1, (9/6)^.2, (15/6)^.2
    np.testing.assert_allclose(got, [1.0, 1.5**0.2, 2.5**0.2], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(length_penalty(np.array([3, 7]), 0.0)), [1.0, 1.0])
    np.testing.assert_allclose(np.asarray(length_penalty(np.array([3]), 1.0)), [8.0 / 6.0], rtol=1e-6)


def test_coverage_penalty_matches_gnmt_formula_and_ignores_padding():
    sums = np.array([[0.5, 1.7, 0.25, 0.0], [1.0, 0.2, 0.0, 0.0]], np.float32)
    mask = np.array([[True, True, True, False], [True, True, False, False]])
    got = np.asarray(coverage_penalty(sums, mask, 0.2))
    # β Σ_i log(min(Σ_j p_ij, 1)) over the real positions only
    want = [0.2 * (math.log(0.5) + math.log(1.0) + math.log(0.25)), 0.2 * (math.log(1.0) + math.log(0.2))]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(coverage_penalty(sums, mask, 0.0)), [0.0, 0.0])
    # A real position that received no attention: floored (finite), and β = 0 gives 0, not 0 * -inf = NaN.
    unseen = np.array([[0.0, 1.0]], np.float32)
    floored = 0.5 * math.log(COVERAGE_FLOOR)
    np.testing.assert_allclose(np.asarray(coverage_penalty(unseen, None, 0.5)), [floored], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(coverage_penalty(unseen, None, 0.0)), [0.0])
    full = np.array([[0.5, 2.0]], np.float32)
    np.testing.assert_allclose(np.asarray(coverage_penalty(full, None, 1.0)), [math.log(0.5)], rtol=1e-6)


def test_tile_beams_keeps_each_examples_copies_adjacent():
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    got = tile_beams({"a": x, "b": (x[:, 0],)}, 2)
    np.testing.assert_array_equal(np.asarray(got["a"]), np.repeat(x, 2, axis=0))
    np.testing.assert_array_equal(np.asarray(got["b"][0]), [0, 0, 2, 2, 4, 4])


# ---- 1. exhaustive search ----------------------------------------------------------------------------
@pytest.mark.parametrize("alpha,beta", [(0.0, 0.0), (0.2, 0.2), (0.2, 0.0), (0.0, 0.2), (1.0, 0.5)])
def test_wide_beam_equals_exhaustive_search(alpha, beta):
    # V=6 (PAD, UNK, BOS, EOS, 2 words), max_length 4: step 3 has 4^3 live x 5 tokens = 320 continuations,
    # so K=320 prunes nothing; 341 sequences exist and the K best must come back in order.
    model = TableModel.random(seed=1, batch=1, steps=4, vocab=6, source=5, lengths=[4])
    result = model.search(beam_width=320, alpha=alpha, beta=beta)
    reference = model.exhaustive(0, alpha, beta)
    assert len(reference) == 341
    assert_matches(result, 0, reference, steps=4)


def test_more_beams_than_sequences_leaves_empty_slots():
    model = TableModel.random(seed=2, batch=1, steps=2, vocab=5, source=3)  # 1 + 3 * 4 = 13 sequences
    result = model.search(beam_width=16, alpha=0.2, beta=0.2)
    reference = model.exhaustive(0, 0.2, 0.2)
    assert len(reference) == 13
    assert_matches(result, 0, reference, steps=2)


def _chain_model(alpha_best_long=True):
    """Only EOS (3) and one word (4) have probability: a beam of 2 never prunes, so it is exhaustive, and
    the best hypotheses finish at the last step although two finished ones exist after step 1 — an early
    stop that bounds live hypotheses by their current length (not ``max_length``) gives the wrong top 2."""
    steps, vocab = 6, 5
    eos_prob = [0.5, 0.6, 0.001, 0.001, 0.001, 0.999]
    p = np.zeros((1, steps, vocab, vocab, vocab))
    for c, e in enumerate(eos_prob):
        p[..., c, :, :, EOS_ID] = e
        p[..., c, :, :, 4] = 1.0 - e
    with np.errstate(divide="ignore"):
        logp = np.log(p)
    rng = np.random.default_rng(3)
    att = rng.normal(size=(1, steps, vocab, vocab, 3))
    return TableModel(logp, att, np.ones((1, 3), bool))


@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (1.0, 0.2), (0.2, 0.2), (0.0, 0.0)])
def test_early_stop_never_drops_a_better_hypothesis(alpha, beta):
    model = _chain_model()
    reference = model.exhaustive(0, alpha, beta)
    assert len(reference) == 7
    result = model.search(beam_width=2, alpha=alpha, beta=beta)
    assert_matches(result, 0, reference, steps=6, k=2)
    if alpha == 1.0 and beta == 0.0:  # the case the docstring describes: best two are EOS and a^5 EOS
        assert [len(r[2]) for r in reference[:2]] == [1, 6]


def _branch_model():
    """Token a (4) or b (5) first; the b branch attends source position 0 only, then finishes covering
    position 1 at its last step. Beam 2, α=0, β=1: after step 2 the finished list is (a EOS, b b EOS) and
    the live ``b b b`` still has poor coverage; an early stop that counted that partial coverage in its bound
    would stop and miss ``b b b EOS``, the second best."""
    steps, vocab = 4, 6
    p = np.zeros((1, steps, vocab, vocab, vocab))
    p[..., EOS_ID] = 1.0
    att = np.full((1, steps, vocab, vocab, 2), 0.5)
    a, b = 4, 5
    p[0, 0, :, BOS_ID] = [0, 0, 0, 0, 0.45, 0.55]
    p[0, 1, :, a] = [0, 0, 0, 0.6, 0.4, 0]
    p[0, 1, :, b] = [0, 0, 0, 0, 0, 1.0]
    att[0, 1, :, b] = [1.0, 0.0]
    p[0, 2, b, b] = [0, 0, 0, 0.6, 0, 0.4]
    att[0, 2, b, b] = [1.0, 0.0]
    att[0, 3, b, b] = [0.0, 1.0]
    with np.errstate(divide="ignore"):
        return TableModel(np.log(p), np.log(att), np.ones((1, 2), bool))


def test_early_stop_bound_ignores_partial_coverage():
    model = _branch_model()
    reference = model.exhaustive(0, 0.0, 1.0)
    assert [r[2] for r in reference[:2]] == [(4, EOS_ID), (5, 5, 5, EOS_ID)]
    assert_matches(model.search(beam_width=2, alpha=0.0, beta=1.0), 0, reference, steps=4, k=2)


@tf_only
def test_early_stop_ends_the_loop():
    # EOS has probability 0.9 at every step: after step 1 the two finished (EOS, a EOS) beat every live
    # hypothesis, so step_fn runs twice, not max_length times (TensorFlow runs the loop body eagerly here).
    steps, vocab = 10, 5
    p = np.zeros((1, steps, vocab, vocab, vocab))
    p[..., EOS_ID], p[..., 4] = 0.9, 0.1
    with np.errstate(divide="ignore"):
        model = TableModel(np.log(p), np.zeros((1, steps, vocab, vocab, 2)), np.ones((1, 2), bool))
    calls = []
    step_fn = model.step_fn
    model.step_fn = lambda tokens, state: calls.append(1) or step_fn(tokens, state)
    tokens, lengths, _, _ = model.search(beam_width=2)
    assert lengths[0].tolist() == [1, 2] and len(calls) == 2


# ---- 3. greedy ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha,beta", [(0.0, 0.0), (0.2, 0.2), (1.0, 1.0)])
def test_beam_width_one_is_greedy_decoding(alpha, beta):
    model = TableModel.random(seed=4, batch=3, steps=6, vocab=7, source=4, lengths=[4, 2, 3], scale=1.0)
    result = model.search(beam_width=1, alpha=alpha, beta=beta)
    for b in range(3):
        assert_matches(result, b, [model.greedy(b, alpha, beta)], steps=6)


def test_beam_of_two_finds_what_greedy_misses():
    # From BOS: a 0.55, b 0.45. After a: EOS 0.24 and four tokens 0.19; after b: EOS 0.96.
    # Greedy: a EOS = 0.132; beam 2: b EOS = 0.432.
    vocab, steps = 6, 3
    p = np.full((1, steps, vocab, vocab, vocab), 0.01)
    p[..., PAD_ID] = 0.0
    p[0, 0, :, BOS_ID] = [0.0, 0.0, 0.0, 0.0, 0.55, 0.45]
    p[0, 1, :, 4] = [0.0, 0.19, 0.19, 0.24, 0.19, 0.19]
    p[0, 1:, :, 5] = [0.0, 0.01, 0.01, 0.96, 0.01, 0.01]
    with np.errstate(divide="ignore"):
        model = TableModel(np.log(p), np.zeros((1, steps, vocab, vocab, 2)), np.ones((1, 2), bool))
    greedy = model.greedy(0, 0.0, 0.0)
    assert greedy[2] == (4, EOS_ID)
    one = model.search(beam_width=1, jit=False)  # eager on every backend
    assert_matches(one, 0, [greedy], steps=steps)
    two = model.search(beam_width=2, jit=False)
    assert two[0][0, 0].tolist() == [5, EOS_ID, PAD_ID]
    np.testing.assert_allclose(two[3][0, 0], math.log(0.45 * 0.96), rtol=1e-6)
    assert two[2][0, 0] > two[2][0, 1] and two[0][0, 1].tolist() == [4, EOS_ID, PAD_ID]


# ---- 4. batches, masks, state reordering -------------------------------------------------------------
def test_batch_examples_with_different_masks_are_independent():
    # The log-probs depend on the token two back, read from the state's token history: a state row that
    # is not reordered with its hypothesis gives other scores than the reference.
    model = TableModel.random(seed=5, batch=2, steps=4, vocab=6, source=5, lengths=[5, 2])
    alpha, beta = 0.2, 0.2
    batch = model.search(beam_width=320, alpha=alpha, beta=beta)
    for b in range(2):
        assert_matches(batch, b, model.exhaustive(b, alpha, beta), steps=4)
    narrow = model.search(beam_width=3, alpha=alpha, beta=beta)
    for b in range(2):
        alone = model.search(beam_width=3, alpha=alpha, beta=beta, examples=[b])
        for got, want in zip(narrow, alone, strict=True):
            np.testing.assert_allclose(got[b], want[0], rtol=1e-6)


def test_without_source_mask_every_position_counts():
    # No mask: the source length comes from step_fn's attention (step 0 runs before the loop).
    model = TableModel.random(seed=9, batch=2, steps=4, vocab=6, source=3)
    unmasked = model.search(beam_width=320, alpha=0.2, beta=0.5, masked=False)
    for b in range(2):
        assert_matches(unmasked, b, model.exhaustive(b, 0.2, 0.5), steps=4)
    masked = model.search(beam_width=3, alpha=0.2, beta=0.5)
    for got, want in zip(model.search(beam_width=3, alpha=0.2, beta=0.5, masked=False), masked, strict=True):
        np.testing.assert_array_equal(got, want)


def test_result_layout():
    model = TableModel.random(seed=6, batch=2, steps=5, vocab=6, source=3)
    tokens, lengths, scores, log_probs = model.search(beam_width=3, alpha=0.2, beta=0.2)
    assert tokens.shape == (2, 3, 5) and tokens.dtype == np.int32 and lengths.dtype == np.int32
    assert scores.shape == log_probs.shape == (2, 3) and scores.dtype == np.float32
    assert np.all(np.diff(scores, axis=1) <= 0)
    for b in range(2):
        for k in range(3):
            n = lengths[b, k]
            assert np.all(tokens[b, k, :n] != PAD_ID) and np.all(tokens[b, k, n:] == PAD_ID)
            assert tokens[b, k, n - 1] == EOS_ID or n == 5
            assert EOS_ID not in tokens[b, k, : n - 1]
            score, logp = model.score_np(b, tokens[b, k, :n].tolist(), 0.2, 0.2)
            np.testing.assert_allclose([scores[b, k], log_probs[b, k]], [score, logp], rtol=1e-5)


def test_bad_arguments_name_the_value():
    model = TableModel.random(seed=0, batch=1, steps=2, vocab=5, source=2)
    with pytest.raises(ValueError, match="beam_width=0"):
        model.search(beam_width=0)
    with pytest.raises(ValueError, match="length_penalty_alpha=-0.5"):
        model.search(beam_width=2, alpha=-0.5)
    with pytest.raises(ValueError, match="max_length=0"):
        model.search(beam_width=2, max_length=0)


# ---- 5. TensorFlow graphs ----------------------------------------------------------------------------
def _traced(model, tf, jit_compile=False, static_length=None):
    spec = [tf.TensorSpec([None], tf.int32), tf.TensorSpec([None, model.mask.shape[1]], tf.bool)]
    spec += [] if static_length else [tf.TensorSpec([], tf.int32)]

    @tf.function(input_signature=spec, jit_compile=jit_compile)
    def run(examples, mask, max_length=static_length):
        n = tf.shape(examples)[0]
        state = (examples, tf.zeros([n], tf.int32), tf.fill([n, model.steps], BOS_ID))
        out = beam_search(
            model.step_fn, state, batch_size=n, beam_width=3, max_length=max_length,
            length_penalty_alpha=0.2, coverage_penalty_beta=0.2, source_mask=mask,
        )  # fmt: skip
        return out._asdict()

    return run


@tf_only
def test_tf_function_with_dynamic_batch_and_tensor_max_length(tmp_path):
    import tensorflow as tf

    model = TableModel.random(seed=7, batch=3, steps=5, vocab=6, source=4, lengths=[4, 1, 3])
    want = model.search(beam_width=3, alpha=0.2, beta=0.2, max_length=4)
    run = _traced(model, tf)
    got = run(tf.constant([0, 1, 2]), tf.constant(model.mask), tf.constant(4))
    assert got["tokens"].shape == (3, 3, 4)
    for g, w in zip((got[k] for k in ("tokens", "lengths", "scores", "log_probs")), want, strict=True):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-6)
    two = run(tf.constant([2, 0]), tf.constant(model.mask[[2, 0]]), tf.constant(5))  # same trace
    assert two["tokens"].shape == (2, 3, 5)
    want_two = model.search(3, 0.2, 0.2, examples=[2, 0])
    np.testing.assert_allclose(two["scores"].numpy(), want_two[2], rtol=1e-6)

    module = tf.Module()
    module.run = run
    tf.saved_model.save(module, str(tmp_path / "beam"))
    loaded = tf.saved_model.load(str(tmp_path / "beam"))
    again = loaded.run(tf.constant([0, 1, 2]), tf.constant(model.mask), tf.constant(4))
    np.testing.assert_array_equal(again["tokens"].numpy(), want[0])
    np.testing.assert_allclose(again["scores"].numpy(), want[2], rtol=1e-6)


@tf_only
def test_tf_function_with_xla_and_static_max_length():
    import tensorflow as tf

    model = TableModel.random(seed=8, batch=2, steps=4, vocab=6, source=3, lengths=[3, 2])
    got = _traced(model, tf, jit_compile=True, static_length=4)(tf.constant([0, 1]), tf.constant(model.mask))
    want = model.search(beam_width=3, alpha=0.2, beta=0.2)
    np.testing.assert_array_equal(got["tokens"].numpy(), want[0])
    np.testing.assert_allclose(got["scores"].numpy(), want[2], rtol=1e-5)
