"""The ``translation`` task: GNMT with (LayerNorm Hyper)LSTM cells (HyperNetworks §4.6, A.3.6, Table 6).

Model contract (``zoo/models/nmt.py``): ``model({"source": [B, S], "target_in": [B, T]})`` returns
``{"logits": [B, T, V], "attention": [B, T, S]}`` for teacher forcing, and ``encode`` /
``initial_decoder_state`` / ``decode_step`` for beam search. Special ids: ``PAD=0, UNK=1, BOS=2, EOS=3``
(``zoo/data/subword.py``); one subword vocabulary is shared by source and target (GNMT's shared wordpiece
model).

Datasets (``--dataset``):
  - ``num2words`` (embedded, no ``--data_dir``): numbers written as words in two languages by the pinned
    ``num2words`` package, disjoint numbers per split (``zoo/data/num2words_corpus.py``); languages from the
    recipe keys ``source_language`` / ``target_language`` (default en -> fr), ``corpus_size`` training pairs
    (default 50,000) and ``eval_corpus_size`` pairs in each of valid and test (default 1,000).
  - ``parallel``: WMT-style file pairs in ``--data_dir``: ``{prefix}.{language}`` for the prefixes
    ``train_prefix``, ``valid_prefix``, ``test_prefix`` (e.g. ``--config train_prefix=train
    valid_prefix=newstest2013 test_prefix=newstest2014``), one sentence a line (``zoo/data/parallel.py``).

Subwords: a SentencePiece model (``subword_model_type``, default unigram) learned from the training split's
source and target text together, with at most the model's ``vocab_size`` pieces (at most
``subword_training_lines`` sentences are read for it), or the file named by the recipe key ``subword_model``.
It travels as ``TaskData.assets["subword.model"]`` (model_dir and ``assets.extra``) and, as TF Text ops,
inside the exported graph. Every source sentence ends with ``EOS`` (so an empty sentence is one token);
targets are ``BOS y`` in and ``y EOS`` out. Training pairs longer than ``max_length`` tokens on either side
are dropped (GNMT §8 trains on sentence pairs of bounded length) and counted in the start-up line.

Training step: teacher forcing; ``per_example_loss`` of a pair is its summed cross-entropy over the target
tokens in nats (GNMT's per-sentence loss, so ``clip_norm`` acts on gradients of that scale); the training
metric ``log_perplexity`` is nats per target token (Table 6's "log perplexity"). Batches are padded to
fixed length buckets (``bucket_lengths``) so XLA compiles one program per bucket.

Evaluation (``evaluate``, every ``--eval_every`` steps on valid and at the end on test): ``log_perplexity``
(teacher forcing, nats per target token), and ``bleu``: corpus BLEU by sacrebleu of the detokenised beam
search output against the reference text (``zoo/metrics/bleu.py``). Beam search (``zoo/beam_search.py``)
uses GNMT §7's length normalisation ``alpha`` and coverage penalty ``beta`` and a maximum output length of
``max_decode_length_factor * |source| + 10`` tokens; these decoding settings are model config keys (they
change what the model outputs, so the exported model keeps them).

Serving (raw text in and out, one call; TF Serving runs it without zoo code, with TF Text's ops):
  - ``serving_default(source string [N]) -> {"translation": string [N], "score": float32 [N] (GNMT score of
    the best hypothesis), "tokens": int32 [N, L] and "length": int32 [N] (its subword ids, EOS included)}``;
  - ``score(source string [N], target string [N]) -> {"nats": float32 [N]`` summed cross-entropy of each
    target sentence (EOS included), ``"tokens": int32 [N]`` its number of target tokens ``}``.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from zoo.beam_search import beam_search, tile_beams
from zoo.data import num2words_corpus, parallel, subword
from zoo.data.errors import MissingDataError
from zoo.metrics.bleu import corpus_bleu, log_perplexity
from zoo.metrics.lm import LogPerplexity, masked_cross_entropy
from zoo.models.nmt import DECODING_KEYS
from zoo.tasks.base import ForwardOutput, Task, TaskData, named_function
from zoo.tasks.buckets import bucket_index, check_buckets

__all__ = [
    "TranslationTask",
    "TASK",
    "Pairs",
    "translate_ids",
    "source_ids",
]

PAD, UNK, BOS, EOS = subword.PAD_ID, subword.UNK_ID, subword.BOS_ID, subword.EOS_ID
#: extra output tokens beyond ``max_decode_length_factor * |source|``.
DECODE_LENGTH_SLACK = 10
DEFAULT_MAX_LENGTH = 50
DEFAULT_BUCKETS = (8, 12, 16, 24, 32, 48, 64, 96, 128)
DEFAULT_EVAL_BATCH_SIZE = 64
DEFAULT_SUBWORD_LINES = 1_000_000
SPLITS = ("train", "valid", "test")


# ---------------------------------------------------------------------------------------------- data
class Pairs:
    """Tokenised sentence pairs of one split: ``source[i]`` and ``target[i]`` (id lists, no specials),
    with the raw text kept for BLEU."""

    def __init__(self, source_text: Sequence[str], target_text: Sequence[str], tokenizer: Any) -> None:
        self.source_text, self.target_text = list(source_text), list(target_text)
        self.source = tokenizer.encode(self.source_text)
        self.target = tokenizer.encode(self.target_text)

    def __len__(self) -> int:
        return len(self.source)

    def keep(self, max_length: int) -> int:
        """Drops the pairs whose source + EOS or BOS + target exceed ``max_length`` tokens; returns how
        many."""
        kept = [
            i
            for i in range(len(self))
            if len(self.source[i]) + 1 <= max_length and len(self.target[i]) + 1 <= max_length
        ]
        dropped = len(self) - len(kept)
        for name in ("source_text", "target_text", "source", "target"):
            values = getattr(self, name)
            setattr(self, name, [values[i] for i in kept])
        return dropped


def _flat(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lengths = np.array([len(r) for r in rows], np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    flat = np.fromiter((t for r in rows for t in r), np.int32, count=int(lengths.sum()))
    return flat, starts, lengths


def _affix(ids: Any, token: int, at_end: bool) -> Any:
    """Ragged ids ``[N, None]`` with ``token`` appended (``at_end``) or prepended to every row."""
    n = ids.nrows()
    one = tf.RaggedTensor.from_row_lengths(
        tf.fill([n], tf.constant(token, ids.dtype)), tf.ones([n], tf.int64)
    )
    return tf.concat([ids, one] if at_end else [one, ids], axis=1)


def _pair_tensors(pairs: Pairs) -> Any:
    """``take(i) -> (source + EOS, BOS + target, target + EOS)`` over in-graph copies of the id lists."""
    s_flat, s_start, s_len = (tf.constant(a) for a in _flat(pairs.source))
    t_flat, t_start, t_len = (tf.constant(a) for a in _flat(pairs.target))
    eos, bos = tf.constant([EOS], tf.int32), tf.constant([BOS], tf.int32)

    def take(i: Any) -> tuple[Any, Any, Any]:
        src = s_flat[s_start[i] : s_start[i] + s_len[i]]
        tgt = t_flat[t_start[i] : t_start[i] + t_len[i]]
        return tf.concat([src, eos], 0), tf.concat([bos, tgt], 0), tf.concat([tgt, eos], 0)

    return take


def train_dataset(pairs: Pairs, batch_size: int, buckets: Sequence[int], seed: int) -> tf.data.Dataset:
    """Infinite shuffled ``({"source": [B, L], "target_in": [B, L]}, target_out [B, L])`` batches, ``L`` the
    bucket of the longer side (source and target padded to the same bucket: one XLA program per bucket).
    ``source`` and ``target_in`` are padded with ``PAD``, ``target_out`` with -1 (masked in the loss)."""
    if not len(pairs):
        raise ValueError("no training sentence pairs (after dropping those longer than max_length)")
    take = _pair_tensors(pairs)
    bounds = tf.constant(list(buckets), tf.int64)
    n = len(pairs)

    def key(src: Any, t_in: Any, t_out: Any) -> Any:
        return bucket_index(bounds, tf.maximum(tf.shape(src)[0], tf.shape(t_in)[0]))

    def reduce(k: Any, window: tf.data.Dataset) -> tf.data.Dataset:
        length = tf.reshape(bounds[k], [1])
        return window.padded_batch(
            batch_size, padded_shapes=(length, length, length), padding_values=(PAD, PAD, -1),
            drop_remainder=True,
        )  # fmt: skip

    order = tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True).repeat()
    ds = order.map(take).group_by_window(key_func=key, reduce_func=reduce, window_size=batch_size)
    return ds.map(lambda s, t_in, t_out: ({"source": s, "target_in": t_in}, t_out)).prefetch(2)


def eval_dataset(pairs: Pairs, batch_size: int) -> tf.data.Dataset:
    """Finite batches of every pair once, in order: ``(inputs, target_out, {"source_text", "reference"})``
    (the raw text is for BLEU and the SavedModel's check; ``forward`` never sees it)."""
    take = _pair_tensors(pairs)
    ids = tf.data.Dataset.range(len(pairs)).map(take)
    text = tf.data.Dataset.from_tensor_slices(
        {
            "source_text": tf.constant(pairs.source_text or [""], tf.string)[: len(pairs)],
            "reference": tf.constant(pairs.target_text or [""], tf.string)[: len(pairs)],
        }
    )
    ds = tf.data.Dataset.zip(ids, text).padded_batch(
        batch_size, padded_shapes=(([None], [None], [None]), {"source_text": [], "reference": []}),
        padding_values=((PAD, PAD, -1), {"source_text": "", "reference": ""}),
    )  # fmt: skip
    return ds.map(lambda i, t: ({"source": i[0], "target_in": i[1]}, i[2], t))


def _recipe_int(recipe: Mapping[str, Any], key: str, default: int, low: int = 1) -> int:
    value = recipe.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"recipe key {key}={value!r} must be a whole number >= {low}")
    return int(value)


def _languages(recipe: Mapping[str, Any]) -> tuple[str, str]:
    return str(recipe.get("source_language", "en")), str(recipe.get("target_language", "fr"))


def _read_text(dataset: str, data_dir: str | None, recipe: Mapping[str, Any]) -> dict[str, tuple[list, list]]:
    """``{split: (source lines, target lines)}`` of ``dataset``."""
    src, tgt = _languages(recipe)
    if dataset == "num2words":
        sizes = {"train": recipe.get("corpus_size"), "valid": recipe.get("eval_corpus_size")}
        sizes["test"] = sizes["valid"]
        out = {}
        for split in SPLITS:
            pairs = num2words_corpus.number_pairs(split, src, tgt, size=sizes[split])
            out[split] = ([p[0] for p in pairs], [p[1] for p in pairs])
        return out
    assert data_dir is not None
    out = {}
    for split in SPLITS:
        prefix = str(recipe.get(f"{split}_prefix", split))
        out[split] = parallel.read_parallel(
            data_dir, prefix, src, tgt, prefix_flag=f"--config {split}_prefix"
        )
    return out


def _subword_model(recipe: Mapping[str, Any], train: tuple[list, list], vocab_size: int) -> tuple[bytes, str]:
    path = recipe.get("subword_model")
    if path:
        if not os.path.isfile(str(path)):
            raise MissingDataError(f"recipe key subword_model={path!r} is not a file (a SentencePiece model)")
        with open(str(path), "rb") as f:
            return f.read(), f"SentencePiece model {path}"
    lines_cap = _recipe_int(recipe, "subword_training_lines", DEFAULT_SUBWORD_LINES)
    sources, targets = train
    half = max(1, lines_cap // 2)
    lines = [*sources[:half], *targets[:half]]
    model_type = str(recipe.get("subword_model_type", "unigram"))
    data = subword.train_subword_model(lines, vocab_size=vocab_size, model_type=model_type)
    return data, f"{model_type} subwords learned from {len(lines)} training sentences"


# ---------------------------------------------------------------------------------------------- decoding
def decoding(model: Any) -> dict[str, Any]:
    """The model's decoding settings (``zoo.models.nmt.DECODING_KEYS``) from its config."""
    return {k: model.config[k] for k in DECODING_KEYS}


def translate_ids(model: Any, source: Any, settings: Mapping[str, Any] | None = None) -> Any:
    """Beam search (GNMT §7) for padded source ids ``[B, S]`` (each row ends with EOS); returns
    :class:`zoo.beam_search.BeamSearchResult` (best hypothesis first). ``settings`` override
    :func:`decoding`."""
    settings = {**decoding(model), **(settings or {})}
    width = int(settings["beam_width"])
    encoded = model.encode(source, training=False)
    batch = tf.shape(source)[0]
    tiled = {k: tile_beams(v, width) for k, v in encoded.items()}

    def step(tokens: Any, state: Any) -> tuple[Any, Any, Any]:
        logits, new_state, attention = model.decode_step(tokens, state, tiled)
        return tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1), new_state, attention

    max_length = (
        tf.cast(
            tf.math.ceil(
                float(settings["max_decode_length_factor"]) * tf.cast(tf.shape(source)[1], tf.float32)
            ),
            tf.int32,
        )
        + DECODE_LENGTH_SLACK
    )
    return beam_search(
        step,
        model.initial_decoder_state(encoded),
        batch_size=batch,
        beam_width=width,
        max_length=max_length,
        bos_id=BOS,
        eos_id=EOS,
        length_penalty_alpha=float(settings["length_penalty_alpha"]),
        coverage_penalty_beta=float(settings["coverage_penalty_beta"]),
        source_mask=encoded["mask"],
    )


def source_ids(tokenizer: Any, sentences: Any) -> Any:
    """String ``[N]`` -> padded ids ``[N, S]`` with EOS after each sentence (TF Text ops, in the graph)."""
    return _affix(tf.cast(tokenizer.tokenize(sentences), tf.int32), EOS, at_end=True).to_tensor(PAD)


def _sentence_nats(model: Any, inputs: Mapping[str, Any], target_out: Any) -> tuple[Any, Any]:
    logits = model(inputs, training=False)["logits"]
    nats, mask = masked_cross_entropy(target_out, logits)
    return tf.reduce_sum(nats, -1), tf.reduce_sum(mask, -1)


def _split_scores(dataset: Any, batch_scores: Any) -> dict[str, float]:
    """``log_perplexity`` and ``bleu`` of a split. ``batch_scores(inputs, target_out, text)`` gives a batch's
    translations and the nats and token counts of its references (in process or through a SavedModel: the
    same accounting)."""
    total, count, hypotheses, references = 0.0, 0.0, [], []
    for inputs, target_out, text in dataset:
        translations, nats, tokens = batch_scores(inputs, target_out, text)
        hypotheses += translations
        references += [r.decode("utf-8") for r in text["reference"].numpy()]
        total += float(tf.reduce_sum(nats))
        count += float(tf.reduce_sum(tokens))
    return {
        "log_perplexity": log_perplexity(total, count),
        "bleu": corpus_bleu(hypotheses, references),
        "sentences": float(len(references)),
    }


# ---------------------------------------------------------------------------------------------- task
class TranslationTask(Task):
    """Sentence translation with teacher forcing, beam search and BLEU (see the module docstring)."""

    name = "translation"
    datasets = ("num2words", "parallel")
    recipe_keys = (
        "source_language",
        "target_language",
        "train_prefix",
        "valid_prefix",
        "test_prefix",
        "corpus_size",
        "eval_corpus_size",
        "max_length",
        "bucket_lengths",
        "eval_batch_size",
        "subword_model",
        "subword_model_type",
        "subword_training_lines",
    )

    def __init__(self) -> None:
        self._tokenizers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._steps: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._graph_tokenizers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    # ----------------------------------------------------------------- data
    def check_data(self, dataset: str, data_dir: str | None) -> None:
        super().check_data(dataset, data_dir)
        if dataset == "num2words":
            if data_dir:
                raise ValueError(
                    f"--dataset=num2words is embedded (generated by num2words) and takes no --data_dir; got "
                    f"--data_dir={data_dir!r} (use --dataset=parallel for files)"
                )
        elif not data_dir or not os.path.isdir(data_dir):
            raise MissingDataError(
                f"--dataset=parallel needs --data_dir, a directory of file pairs such as train.en/train.fr; "
                f"got --data_dir={data_dir!r}"
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
        text = _read_text(dataset, data_dir, recipe)
        vocab_size = int(config.get("vocab_size", 32000))
        model_bytes, subword_source = _subword_model(recipe, text["train"], vocab_size)
        tokenizer = subword.SubwordTokenizer.from_bytes(model_bytes)
        if tokenizer.vocab_size > vocab_size:
            raise ValueError(
                f"the subword model has {tokenizer.vocab_size} pieces but the model's vocab_size is "
                f"{vocab_size}; "
                f"pass --config vocab_size={tokenizer.vocab_size} or a smaller subword model"
            )
        max_length = _recipe_int(recipe, "max_length", DEFAULT_MAX_LENGTH, low=2)
        eval_batch = _recipe_int(recipe, "eval_batch_size", DEFAULT_EVAL_BATCH_SIZE)
        pairs = {split: Pairs(*text[split], tokenizer) for split in SPLITS}
        dropped = pairs["train"].keep(max_length)
        buckets = check_buckets(recipe.get("bucket_lengths", DEFAULT_BUCKETS), max_length)
        train = train_dataset(pairs["train"], global_batch_size, buckets, seed)
        splits = {s: eval_dataset(pairs[s], eval_batch) if len(pairs[s]) else None for s in ("valid", "test")}
        src, tgt = _languages(recipe)
        return TaskData(
            train=train,
            eval=splits["valid"],
            test=splits["test"],
            sizes={"train": len(pairs["train"]), "eval": len(pairs["valid"]), "test": len(pairs["test"])},
            size_unit=(
                f"{src}->{tgt} sentence pairs ({tokenizer.vocab_size} {subword_source}; "
                f"{dropped} training pairs over {max_length} tokens dropped)"
            ),
            assets={subword.SUBWORD_ASSET: model_bytes},
            info={"vocab_size": tokenizer.vocab_size, "dropped": dropped},
        )

    def prepare_model(self, model: Any, data: TaskData) -> None:
        """Binds the run's subword model to ``model`` (for evaluation's BLEU and for serving)."""
        self.bind_assets(model, data.assets)

    def bind_assets(self, model: Any, assets: Mapping[str, bytes]) -> None:
        if subword.SUBWORD_ASSET not in assets:
            raise ValueError(
                f"a translation model needs its subword model {subword.SUBWORD_ASSET!r} among the run's "
                "assets; "
                f"got {sorted(assets)}"
            )
        data = assets[subword.SUBWORD_ASSET]
        self._tokenizers[model] = (subword.SubwordTokenizer.from_bytes(data), data)

    def _tokenizer(self, model: Any) -> Any:
        found = self._tokenizers.get(model)
        if found is None:
            raise ValueError(
                f"model {getattr(model, 'name', model)!r} has no subword model bound: call "
                "TASK.bind_assets(model, assets) with the run's assets first"
            )
        return found

    # ----------------------------------------------------------------- step
    def forward(self, model: Any, batch: Any, carry: Any, training: bool) -> ForwardOutput:
        inputs, target_out = batch[0], batch[1]
        logits = model(inputs, training=training)["logits"]
        nats, _ = masked_cross_entropy(target_out, logits)
        return ForwardOutput(per_example_loss=keras.ops.sum(nats, axis=-1), outputs={"logits": logits})

    def metrics(self) -> dict[str, Any]:
        return {"log_perplexity": LogPerplexity(name="log_perplexity")}

    def update_metrics(self, metrics: Mapping[str, Any], batch: Any, outputs: Mapping[str, Any]) -> None:
        metrics["log_perplexity"].update_state(batch[1], outputs["logits"])

    def _eval_steps(self, model: Any) -> tuple[Any, Any]:
        steps = self._steps.get(model)
        if steps is None:
            nats = tf.function(lambda i, t: _sentence_nats(model, i, t), reduce_retracing=True)

            def best(source: Any) -> tuple[Any, Any]:
                result = translate_ids(model, source)
                return result.tokens[:, 0, :], result.scores[:, 0]

            steps = (nats, tf.function(best, reduce_retracing=True))
            self._steps[model] = steps
        return steps

    def evaluate(self, model: Any, dataset: Any) -> dict[str, float]:
        """``log_perplexity`` (nats per target token, teacher forcing) and ``bleu`` (beam search, detokenised,
        sacrebleu) over the whole split."""
        nats_step, best_step = self._eval_steps(model)
        tokenizer = self._tokenizer(model)[0]

        def batch_scores(inputs: Any, target_out: Any, text: Any) -> tuple[list[str], Any, Any]:
            nats, tokens = nats_step(inputs, target_out)
            best, _ = best_step(inputs["source"])
            return tokenizer.decode(best.numpy().tolist()), nats, tokens

        return _split_scores(dataset, batch_scores)

    # -------------------------------------------------------------- serving
    def serving_resources(self, model: Any) -> list[Any]:
        """The TF Text tokenizer of the last :meth:`serving_functions` of ``model`` (its op state)."""
        return [self._graph_tokenizers[model]]

    def serving_functions(self, model: Any, config: Mapping[str, Any]) -> dict[str, Any]:
        """The two signatures of the module docstring. Each call makes its own TF Text tokenizer (a resource
        shared with a SavedModel loaded in the same process could be freed with it)."""
        tokenizer = subword.tf_tokenizer(self._tokenizer(model)[1])
        self._graph_tokenizers[model] = tokenizer

        def translate(source: Any) -> dict[str, Any]:
            result = translate_ids(model, source_ids(tokenizer, source))
            tokens = result.tokens[:, 0, :]
            return {
                "translation": subword.tf_decode(tokenizer, tokens),
                "score": result.scores[:, 0],
                "tokens": tokens,
                "length": result.lengths[:, 0],
            }

        def score(source: Any, target: Any) -> dict[str, Any]:
            ids = tf.cast(tokenizer.tokenize(target), tf.int32)
            inputs = {
                "source": source_ids(tokenizer, source),
                "target_in": _affix(ids, BOS, at_end=False).to_tensor(PAD),
            }
            nats, count = _sentence_nats(model, inputs, _affix(ids, EOS, at_end=True).to_tensor(-1))
            return {"nats": nats, "tokens": tf.cast(count, tf.int32)}

        text = tf.TensorSpec([None], tf.string, name="source")
        return {
            "serving_default": named_function(translate, [text]),
            "score": named_function(score, [text, tf.TensorSpec([None], tf.string, name="target")]),
        }

    def warmup_inputs(self, model: Any, config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        source = np.array([b"one"], dtype=object)
        return {"serving_default": {"source": source}, "score": {"source": source, "target": source}}

    def evaluate_serving(self, loaded: Any, dataset: Any) -> dict[str, float]:
        """BLEU and log perplexity through the SavedModel's signatures, from raw text only."""
        translate, score = loaded.signatures["serving_default"], loaded.signatures["score"]

        def batch_scores(inputs: Any, target_out: Any, text: Any) -> tuple[list[str], Any, Any]:
            out = translate(source=text["source_text"])
            scored = score(source=text["source_text"], target=text["reference"])
            return [t.decode("utf-8") for t in out["translation"].numpy()], scored["nats"], scored["tokens"]

        return _split_scores(dataset, batch_scores)


TASK = TranslationTask()
