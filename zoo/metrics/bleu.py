"""Translation quality: corpus BLEU through sacreBLEU, and log perplexity (HyperNetworks §4.6, Table 6).

BLEU (Papineni et al. 2002) is computed by ``sacrebleu`` (Post 2018) on detokenised text, i.e. the decoded
sentences as a user reads them, against the raw reference lines, so numbers are comparable with published
ones: one reference per sentence, sacreBLEU's default ``13a`` tokenisation (the WMT ``mteval-v13a``
rules: punctuation split off), case-sensitive, exponential smoothing; :func:`bleu_signature` gives the exact
signature to report next to a score. The score is in ``[0, 100]``: the geometric mean of the clipped 1- to
4-gram precisions over the whole corpus times the brevity penalty ``min(1, exp(1 - r / c))``.

Log perplexity is the mean cross-entropy per target token in nats, ``(1 / N) Σ -ln p(y_t | y_<t, x)`` over
the ``N`` real (unpadded) target tokens, EOS included: the number the paper reports (1.027 for GNMT with LSTM
cells, 0.993 with LN HyperLSTM cells, Table 6); its exponential is the perplexity.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["corpus_bleu", "bleu_signature", "log_perplexity"]


def _bleu():  # noqa: ANN202 - sacrebleu.metrics.BLEU, imported on use
    from sacrebleu.metrics import BLEU

    return BLEU(tokenize="13a")


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU in ``[0, 100]`` of detokenised ``hypotheses`` against one reference each."""
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise TypeError("corpus_bleu takes lists of sentences, got a string")
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{len(hypotheses)} hypotheses but {len(references)} references; BLEU needs one reference each"
        )
    if not hypotheses:
        raise ValueError("BLEU of 0 sentences is undefined")
    return float(_bleu().corpus_score(list(hypotheses), [list(references)]).score)


def bleu_signature() -> str:
    """sacreBLEU's signature of :func:`corpus_bleu`, e.g. ``nrefs:1|case:mixed|eff:no|tok:13a|...``."""
    metric = _bleu()
    metric.corpus_score(["a"], [["a"]])  # the signature names the number of references seen
    return str(metric.get_signature())


def log_perplexity(total_nats: float, total_tokens: float) -> float:
    """Mean cross-entropy in nats of ``total_tokens`` target tokens whose summed cross-entropy is
    ``total_nats``."""
    if total_tokens <= 0:
        raise ValueError(f"log perplexity of {total_tokens} tokens is undefined")
    return float(total_nats) / float(total_tokens)
