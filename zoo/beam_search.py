"""Beam search with GNMT's length normalisation and coverage penalty, in pure ``keras.ops``.

Wu et al. 2016 ("Google's Neural Machine Translation System", arXiv 1609.08144), §7 "Decoder", score a
finished hypothesis ``Y`` of source ``X`` by

    s(Y, X) = log P(Y|X) / lp(Y) + cp(X; Y)
    lp(Y)   = (5 + |Y|)^α / (5 + 1)^α
    cp(X; Y) = β Σ_i log(min(Σ_j p_ij, 1.0))

with ``p_ij`` the attention weight of target step ``j`` on source position ``i``. Here ``|Y|`` counts the
tokens of ``Y`` including its EOS, ``j`` runs over the same steps (the EOS step included), and ``i`` over
the source positions where ``source_mask`` is True (padding is excluded; its attention is 0 and would give
``log 0``). Attention sums are floored at :data:`COVERAGE_FLOOR` before the log so that a real position that
received no attention costs a large finite penalty instead of ``-inf`` (and ``β = 0`` never gives NaN).

The search is one ``while_loop`` over ``[B * K, max_length]`` token buffers; every shape is static except
the batch and, on TensorFlow, ``max_length`` (a scalar tensor there, e.g. computed from the source length
in a serving signature; JAX needs a Python int). With ``source_mask=None`` step 0 runs before the loop, to
learn the source length from ``step_fn``'s attention.

- Step 0 expands the BOS hypothesis of each example; the other ``K - 1`` beams start at ``-inf`` so the
  ``K`` beams never duplicate one another.
- Every step expands the ``K`` live hypotheses by the ``V`` tokens of ``step_fn`` (PAD, id 0, is never
  generated) and keeps the top ``K`` continuations by ``log P``. All live hypotheses have the same length,
  so this is also the order of the length-normalised ``log P / lp``; the coverage penalty does not take part
  in the ranking of live hypotheses, only in the score of finished ones. This keeps ``beam_width=1`` equal
  to greedy decoding for every α, β, and a beam wide enough to hold every continuation enumerates every
  sequence, so it returns the exhaustive search's top ``K`` (both are tested).
- A kept continuation that ends in EOS is finished: its GNMT score (coverage from the attention summed over
  all its steps, the EOS step included) enters the example's ``K``-best finished list, and its beam slot is
  empty for the next step (the next top-``K`` refills it from the remaining live hypotheses).
- Live hypotheses still unfinished after ``max_length`` tokens are finished as they are (no EOS, length
  ``max_length``) and scored the same way.
- Early stop, per example, only when it cannot change the result: with α, β >= 0 and log-probabilities
  <= 0, no extension of a live hypothesis can score above ``log P / lp(max_length)`` (``log P`` only falls,
  ``lp`` only grows, ``cp <= 0``). Once the example's ``K``-th finished score is at least that bound for its
  best live hypothesis, its live hypotheses are dropped (so an example's result does not depend on the
  rest of its batch); the loop ends when no example has any left.
- After each step every tensor of the decoder state (any nested structure, ``[B * K, ...]``) is reordered
  by the chosen parent beams: a gather along axis 0.

``step_fn(tokens int32 [B*K], state) -> (log_probs float32 [B*K, V], new_state, attention float32 [B*K, S])``
must return log-probabilities (a log-softmax). Anything it closes over that is per example is tiled with
:func:`tile_beams` (each example's ``K`` copies adjacent, the layout used here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import keras
from keras import ops

__all__ = [
    "BOS_ID",
    "COVERAGE_FLOOR",
    "EOS_ID",
    "PAD_ID",
    "BeamSearchResult",
    "beam_search",
    "coverage_penalty",
    "length_penalty",
    "tile_beams",
]

PAD_ID, BOS_ID, EOS_ID = 0, 2, 3  # the translation vocabulary's special ids (PAD=0, UNK=1, BOS=2, EOS=3)
COVERAGE_FLOOR = 1e-9  # smallest attention sum inside cp's log (a numerical guard, not part of GNMT §7)
_NEG_INF = float("-inf")


class BeamSearchResult(NamedTuple):
    """The ``K`` best finished hypotheses of each example, best first.

    ``tokens`` int32 ``[B, K, max_length]`` (EOS included, PAD=0 after); ``lengths`` int32 ``[B, K]``
    (tokens including EOS); ``scores`` float32 ``[B, K]`` (GNMT ``s(Y, X)``); ``log_probs`` float32 ``[B, K]``
    (``log P(Y|X)``). A slot with no hypothesis (fewer than ``K`` sequences exist) has score and log-prob
    ``-inf``, length 0 and PAD tokens.
    """

    tokens: Any
    lengths: Any
    scores: Any
    log_probs: Any


def length_penalty(lengths: Any, alpha: float) -> Any:
    """GNMT's ``lp(Y) = (5 + |Y|)^α / (5 + 1)^α`` (Wu et al. 2016, §7) for ``lengths`` of any shape."""
    lengths = ops.cast(lengths, "float32")
    return ops.power(5.0 + lengths, alpha) / ops.power(5.0 + 1.0, alpha)


def coverage_penalty(attention_sums: Any, source_mask: Any, beta: float) -> Any:
    """GNMT's ``cp(X; Y) = β Σ_i log(min(Σ_j p_ij, 1.0))`` (Wu et al. 2016, §7).

    ``attention_sums [..., S]`` holds ``Σ_j p_ij`` per source position ``i``; ``source_mask`` (bool,
    broadcastable to it, or None for all positions) selects the real positions that enter the sum. Sums are
    floored at :data:`COVERAGE_FLOOR`. Returns ``[...]``.
    """
    capped = ops.maximum(ops.minimum(ops.cast(attention_sums, "float32"), 1.0), COVERAGE_FLOOR)
    if source_mask is not None:
        capped = ops.where(ops.cast(source_mask, "bool"), capped, 1.0)  # log 1 = 0 at padding
    return beta * ops.sum(ops.log(capped), axis=-1)


def tile_beams(x: Any, beam_width: int) -> Any:
    """``[B, ...] -> [B * beam_width, ...]`` (tensor or nested structure), each example's copies adjacent."""
    return keras.tree.map_structure(lambda t: ops.repeat(t, beam_width, axis=0), x)


def _gather(tree: Any, indices: Any, width: int) -> Any:
    """Rows ``b * width + indices[b, k]`` of each ``[B * width, ...]`` tensor in ``tree`` ``[B * K, ...]``."""
    offsets = ops.arange(ops.shape(indices)[0], dtype="int32") * width
    flat = ops.reshape(ops.cast(indices, "int32") + offsets[:, None], (-1,))
    return keras.tree.map_structure(lambda t: ops.take(t, flat, axis=0), tree)


def _split(x: Any, width: int) -> Any:
    """``[B * width, ...] -> [B, width, ...]``."""
    return ops.reshape(x, (-1, width) + tuple(ops.shape(x)[1:]))


def _merge(x: Any) -> Any:
    """``[B, width, ...] -> [B * width, ...]``."""
    return ops.reshape(x, (-1,) + tuple(ops.shape(x)[2:]))


def _check(name: str, value: Any, ok: bool, valid: str) -> None:
    if not ok:
        raise ValueError(f"beam_search: {name}={value!r} is invalid; expected {valid}")


def beam_search(
    step_fn: Callable[[Any, Any], tuple[Any, Any, Any]],
    initial_state: Any,
    *,
    batch_size: Any,
    beam_width: int,
    max_length: Any,
    bos_id: int = BOS_ID,
    eos_id: int = EOS_ID,
    length_penalty_alpha: float = 0.0,
    coverage_penalty_beta: float = 0.0,
    source_mask: Any = None,
) -> BeamSearchResult:
    """Beam search of ``step_fn`` from BOS, scored as in GNMT §7 (module docstring: the exact semantics).

    ``initial_state`` is a nested structure of ``[B, ...]`` tensors (tiled to ``[B * K, ...]`` here);
    ``batch_size`` a Python int or a scalar tensor; ``max_length`` (tokens including EOS) a Python int, or
    on TensorFlow also a scalar int tensor (e.g. derived from the source length inside a serving
    signature); ``source_mask`` bool ``[B, S]`` (None: every source position counts in the coverage).
    """
    k = beam_width
    _check("beam_width", k, isinstance(k, int) and k >= 1, "a Python int >= 1")
    penalties = {"length_penalty_alpha": length_penalty_alpha, "coverage_penalty_beta": coverage_penalty_beta}
    for name, value in penalties.items():
        if isinstance(value, int | float):
            _check(name, value, value >= 0, "a number >= 0 (the early stop's bound assumes it)")
    if not isinstance(max_length, int) and keras.backend.backend() != "tensorflow":
        try:
            max_length = int(ops.convert_to_numpy(max_length))
        except Exception as error:  # a traced value: JAX needs a static buffer size
            raise ValueError(
                f"beam_search: max_length={max_length!r} must be a Python int on the "
                f"{keras.backend.backend()} backend (only TensorFlow accepts a tensor)"
            ) from error
    if isinstance(max_length, int):
        _check("max_length", max_length, max_length >= 1, "an int >= 1")
    alpha, beta = length_penalty_alpha, coverage_penalty_beta
    mask = None if source_mask is None else ops.expand_dims(ops.cast(source_mask, "bool"), 1)  # [B, 1, S]
    positions = ops.arange(max_length, dtype="int32")[None, :]  # [1, L]
    max_lp = length_penalty(max_length, alpha)
    neg_inf = ops.full((batch_size, k), _NEG_INF, "float32")

    def score(log_probs, lengths, sums):  # [B, K] GNMT s(Y, X)
        return log_probs / length_penalty(lengths, alpha) + coverage_penalty(sums, mask, beta)

    def advance(step, last, live_logp, live_tokens, live_sums, state, fin):
        """One step: expand, keep the top K, move EOS continuations into the finished list, reorder."""
        log_probs, new_state, attention = step_fn(last, state)
        log_probs = _split(ops.cast(log_probs, "float32"), k)  # [B, K, V]
        vocab = log_probs.shape[-1]
        log_probs = ops.where(ops.arange(vocab)[None, None, :] == PAD_ID, _NEG_INF, log_probs)
        attention = ops.cast(attention, "float32")
        sums = attention if live_sums is None else live_sums + attention  # [B*K, S], this step included
        candidates = ops.reshape(live_logp[:, :, None] + log_probs, (-1, k * vocab))
        top_logp, top = ops.top_k(candidates, k)  # [B, K] by log P (all of length step + 1)
        top = ops.cast(top, "int32")
        parent, token = top // vocab, top % vocab
        tokens, sums, state = _gather((live_tokens, sums, new_state), parent, k)
        tokens = ops.where(positions == step, ops.reshape(token, (-1, 1)), tokens)
        is_eos = token == eos_id
        length = ops.zeros_like(token) + step + 1
        new_scores = ops.where(is_eos, score(top_logp, length, _split(sums, k)), _NEG_INF)
        fin = _keep_best(fin, (tokens, ops.where(is_eos, top_logp, _NEG_INF), new_scores, length), k)
        live_logp = ops.where(is_eos, _NEG_INF, top_logp)
        # Early stop (module docstring): drop the live hypotheses of an example that none can improve.
        bound = ops.max(live_logp, axis=1) / max_lp
        live_logp = ops.where((fin[2][:, k - 1] >= bound)[:, None], _NEG_INF, live_logp)
        return step + 1, ops.reshape(token, (-1,)), live_logp, tokens, sums, state, fin

    step = ops.convert_to_tensor(0, "int32")
    zeros = ops.zeros((batch_size * k, max_length), "int32")
    fin = (zeros, neg_inf, neg_inf, ops.zeros((batch_size, k), "int32"))  # tokens, log P, score, length
    first = ops.where(ops.arange(k)[None, :] == 0, ops.zeros((batch_size, k)), neg_inf)  # one live beam
    bos = ops.full((batch_size * k,), bos_id, "int32")
    loop_vars = (step, bos, first, zeros, None, tile_beams(initial_state, k), fin)
    if source_mask is None:  # the source length is unknown: step 0 outside the loop creates the sums
        loop_vars = advance(*loop_vars)
    else:
        sums = ops.zeros((batch_size * k, ops.shape(source_mask)[1]), "float32")
        loop_vars = loop_vars[:4] + (sums,) + loop_vars[5:]

    def cond(step, last, live_logp, *_):
        return ops.logical_and(step < max_length, ops.any(live_logp > _NEG_INF))

    _, _, live_logp, live_tokens, live_sums, _, fin = ops.while_loop(cond, advance, loop_vars)
    # Hypotheses still live ran to max_length without EOS: finished as they are.
    length = ops.zeros(ops.shape(live_logp), "int32") + ops.cast(max_length, "int32")
    fin = _keep_best(fin, (live_tokens, live_logp, score(live_logp, length, _split(live_sums, k)), length), k)
    tokens, log_probs, scores, lengths = fin
    valid = scores > _NEG_INF
    tokens = ops.where(valid[:, :, None], _split(tokens, k), 0)
    return BeamSearchResult(tokens, ops.where(valid, lengths, 0), scores, log_probs)


def _keep_best(finished: tuple, candidates: tuple, k: int) -> tuple:
    """The ``k`` best by score of two ``(tokens [B*k, L], log P [B, k], score [B, k], length [B, k])`` lists;
    on ties the earlier-finished hypothesis wins (``top_k`` keeps the lower index)."""
    tokens = _merge(ops.concatenate([_split(finished[0], k), _split(candidates[0], k)], axis=1))
    pairs = zip(finished[1:], candidates[1:], strict=True)
    log_probs, scores, lengths = (ops.concatenate([a, b], axis=1) for a, b in pairs)
    best, order = ops.top_k(scores, k)
    order = ops.cast(order, "int32")
    pick = lambda x: ops.take_along_axis(x, order, axis=1)
    return _gather(tokens, order, 2 * k), pick(log_probs), best, pick(lengths)
