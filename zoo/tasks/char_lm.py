"""The ``char_lm`` task: stateful character language models (HyperNetworks §4.3-4.4, Tables 3-4).

Model contract (``zoo/models/char_lm.py``): a functional keras.Model with inputs ``ids`` (int32 [B, T]) and
``state_0, state_1, ...`` (float32 [B, size]) returning ``{"logits": [B, T, V], "state_0": ..., ...}``;
zero states are the initial state.

Datasets (``--dataset``; ``zoo/data/text.py`` documents the formats and the stream batching):
  - ``ptb_char``: ``--data_dir`` holds ``ptb.char.{train,valid,test}.txt``;
  - ``enwik8``: ``--data_dir`` is the ``enwik8`` file or a directory holding it (90M/5M/5M bytes);
  - ``text``: ``--data_dir`` is any file, or a directory holding exactly one (90% / 5% / 5%).

Recipe keys read here: ``batch_size`` (global number of parallel streams), ``sequence_length`` (truncated
BPTT length T, default 100), ``eval_batch_size`` (evaluation streams, default 16), optional
``eval_sequence_length`` (default T), ``split_sizes`` ([train, valid, test] symbols, for enwik8/text) and
``state_reset_probability`` (default 0: see "Carried state" below).
A dataset's vocabulary may be smaller than the model's ``vocab_size`` (unused outputs learn to vanish), not
larger. The vocabulary travels as ``TaskData.assets["vocab.json"]``.

Training step: ``initial_carry`` is ``zoo.models.char_lm.initial_state(model, per_replica_batch)``
(zeros); ``forward`` feeds the carry as the states and returns the new states as the next carry
(truncated BPTT: no gradient flows into the previous window). ``per_example_loss`` of a row is its
mean cross-entropy over the window in nats, so ``sum / global_batch`` is the mean nats per character;
``bpc`` = that / ln 2.

Carried state (the policy of char-rnn practice; ``zoo/data/text.py`` ``stream_dataset``): a training batch
is ``(ids, targets, reset)``; ``forward`` zeroes the carried state of the rows whose ``reset`` flag is set
(inside the XLA step) before running the window. The flag is set on the first window of every epoch and,
with probability ``state_reset_probability``, on any other window. A model trained without resets can
learn to lean on state that only a long-running stream reaches (a plain LSTM's cell drifting to tens)
and then score far worse from the zero state it is evaluated and sampled from. The trainer checkpoints
the carry (``trainers/loop.py``), so a resumed run continues its streams. Evaluation
(:meth:`CharLMTask.evaluate`) runs each of the ``eval_batch_size`` streams of a split from the zero state,
carrying the state across its windows, as the paper measures bpc on a held-out split
(``eval_batch_size=1``: one stream, exact).

Serving (a SavedModel that TF Serving runs without zoo code; the client carries the state):
  - ``serving_default(ids [N, T] int32, state_i [N, size_i]) -> {"probabilities": [N, V]`` next-character
    distribution after the last input, ``"state_i"`` new states ``}``;
  - ``score(ids, targets [N, T] int32, state_i) -> {"nats": [N, T]`` cross-entropy of each target (0 where
    the target is negative), ``"state_i"}`` (bits per character through the SavedModel);
  - ``initial_state(batch_size [] int32) -> {"state_i": zeros}``.

``ids`` must lie in ``[0, vocab_size)`` and ``targets`` in ``[-1, vocab_size)`` (``vocab_size`` is the
model's); any other value fails the request with ``INVALID_ARGUMENT`` naming the first bad value and its
``[row, column]`` (an out-of-range id would otherwise one-hot to zeros and return a distribution).
"""

from __future__ import annotations

import os
import re
import weakref
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from zoo.data import text as text_data
from zoo.metrics.lm import BitsPerCharacter, masked_cross_entropy, split_bits_per_character
from zoo.models.char_lm import initial_state
from zoo.tasks.base import ForwardOutput, Task, TaskData, named_function

__all__ = ["CharLMTask", "TASK", "state_specs", "model_inputs", "reset_rows", "VOCAB_ASSET"]

#: name of the vocabulary file in ``TaskData.assets`` (and so in ``assets.extra`` and the model_dir).
VOCAB_ASSET = "vocab.json"
DEFAULT_SEQUENCE_LENGTH = 100
DEFAULT_EVAL_BATCH_SIZE = 16
_STATE = re.compile(r"^state_(\d+)$")


def state_specs(model: Any) -> list[tuple[str, int]]:
    """``[(name, size), ...]`` of the model's ``state_i`` inputs, in index order."""
    found = []
    for t in model.inputs:
        name = getattr(t, "name", "")
        m = _STATE.match(name)
        if m:
            found.append((int(m.group(1)), name, int(t.shape[-1])))
    found.sort()
    if [i for i, _, _ in found] != list(range(len(found))):
        raise ValueError(
            f"model {model.name!r}: state inputs must be named state_0..state_{{n-1}}, got "
            f"{[n for _, n, _ in found]}"
        )
    names = [getattr(t, "name", "") for t in model.inputs]
    if "ids" not in names:
        raise ValueError(f"model {model.name!r} has no 'ids' input (inputs: {names}); not a char_lm model")
    return [(name, size) for _, name, size in found]


def model_inputs(model: Any, ids: Any, carry: Any) -> dict[str, Any]:
    """The model's input dict for ``ids`` and the carried states (``carry`` in ``state_i`` order)."""
    inputs = {"ids": keras.ops.convert_to_tensor(ids, "int32")}
    for (name, _), s in zip(state_specs(model), carry, strict=True):
        inputs[name] = keras.ops.convert_to_tensor(s, "float32")
    return inputs


def reset_rows(carry: Any, reset: Any) -> tuple[Any, ...]:
    """``carry`` with the rows where ``reset`` (bool ``[B]``) is set replaced by zeros (XLA-compilable)."""
    keep = keras.ops.expand_dims(keras.ops.logical_not(keras.ops.cast(reset, "bool")), -1)
    return tuple(keras.ops.where(keep, c, keras.ops.zeros_like(c)) for c in carry)


def _check_ids(values: Any, name: str, low: int, vocab_size: int) -> Any:
    """An op that fails with INVALID_ARGUMENT naming the first value of ``values`` outside
    ``[low, vocab_size)`` and its ``[row, column]``."""
    bad = tf.logical_or(values < low, values >= vocab_size)
    where = tf.where(bad)[:1]
    return tf.debugging.Assert(
        tf.logical_not(tf.reduce_any(bad)),
        [
            f"{name} must be in [{low}, {vocab_size}) (the model's vocab_size is {vocab_size}); got",
            tf.gather_nd(values, where),
            "at [row, column]",
            where,
        ],
        name=f"check_{name}",
    )


def _new_carry(model: Any, outputs: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(outputs[name] for name, _ in state_specs(model))


def _resolve_data(dataset: str, data_dir: str, recipe: Mapping[str, Any]) -> text_data.CharSplits:
    split_sizes = recipe.get("split_sizes")
    if dataset == "ptb_char":
        return text_data.read_ptb_char(data_dir)
    if dataset == "enwik8":
        return text_data.read_enwik8(data_dir, split_sizes=split_sizes)
    return text_data.read_text(data_dir, split_sizes=split_sizes)


class CharLMTask(Task):
    """Character-level language modelling with carried state (see the module docstring)."""

    name = "char_lm"
    datasets = ("ptb_char", "enwik8", "text")
    recipe_keys = (
        "sequence_length",
        "eval_sequence_length",
        "eval_batch_size",
        "split_sizes",
        "state_reset_probability",
    )

    def __init__(self) -> None:
        self._eval_steps: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    # ----------------------------------------------------------------- data
    def check_data(self, dataset: str, data_dir: str | None) -> None:
        super().check_data(dataset, data_dir)
        if not data_dir:
            raise ValueError(f"--dataset={dataset} needs --data_dir (no built-in copy of the data)")
        if dataset == "ptb_char":
            if not os.path.isdir(data_dir):
                raise text_data.MissingDataError(
                    f"--data_dir={data_dir!r} is not a directory (dataset ptb_char)"
                )
            missing = [
                n for n in text_data.PTB_FILES.values() if not os.path.isfile(os.path.join(data_dir, n))
            ]
            if missing:
                raise text_data.MissingDataError(
                    f"--data_dir={data_dir!r} lacks {', '.join(missing)} (dataset ptb_char)"
                )
        elif dataset == "enwik8":
            text_data._resolve_file(data_dir, "enwik8")
        else:
            text_data.text_file(data_dir)

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
        assert data_dir is not None
        splits = _resolve_data(dataset, data_dir, recipe)
        vocab = splits.vocab
        vocab_size = config.get("vocab_size")
        if vocab_size is not None and len(vocab) > int(vocab_size):
            raise ValueError(
                f"--dataset={dataset} --data_dir={data_dir!r} has {len(vocab)} symbols but the model's "
                f"vocab_size is {vocab_size}; pass --config vocab_size={len(vocab)}"
            )
        seq_len = int(recipe.get("sequence_length", DEFAULT_SEQUENCE_LENGTH))
        eval_seq = int(recipe.get("eval_sequence_length", seq_len))
        eval_batch = int(recipe.get("eval_batch_size", DEFAULT_EVAL_BATCH_SIZE))
        reset_probability = recipe.get("state_reset_probability") or 0.0
        train_in, train_tg = text_data.stream_windows(splits.ids["train"], global_batch_size, seq_len)
        train = text_data.stream_dataset(train_in, train_tg, reset_probability, seed)
        evals, sizes = {}, {"train": int(train_in.shape[0] * train_in.shape[1])}
        for split in ("valid", "test"):
            ids = splits.ids[split]
            if ids.size < 2:
                evals[split], sizes[split] = None, 0
                continue
            e_in, e_tg = text_data.eval_windows(ids, eval_batch, eval_seq)
            evals[split] = text_data.windows_dataset(e_in, e_tg)
            sizes[split] = int(e_in.shape[0] * e_in.shape[1])
        sizes["eval"] = sizes.pop("valid")
        return TaskData(
            train=train,
            eval=evals["valid"],
            test=evals["test"],
            sizes=sizes,
            size_unit=f"windows of {seq_len} characters (eval and test: of {eval_seq})",
            assets={VOCAB_ASSET: vocab.to_bytes()},
            info={
                "vocabulary": vocab,
                "vocab_size": len(vocab),
                "sequence_length": seq_len,
                "chars": {k: int(v.size) for k, v in splits.ids.items()},
                "steps_per_epoch": int(train_in.shape[0]),
                "source": splits.source,
            },
        )

    # ----------------------------------------------------------------- step
    def initial_carry(self, model: Any, batch_size: int) -> Any:
        """Zero states, ``zoo.models.char_lm.initial_state(model, batch_size)``, as a tuple."""
        return tuple(initial_state(model, batch_size))

    def forward(self, model: Any, batch: Any, carry: Any, training: bool) -> ForwardOutput:
        """``batch`` is ``(ids, targets)`` or, from the training stream, ``(ids, targets, reset)``: the
        rows whose ``reset`` is set start from the zero state (module docstring, "Carried state")."""
        ids, targets, *reset = batch
        if reset:
            carry = reset_rows(carry, reset[0])
        outputs = model(model_inputs(model, ids, carry), training=training)
        logits = outputs["logits"]
        nats, mask = masked_cross_entropy(targets, logits)
        per_example = keras.ops.sum(nats, axis=-1) / keras.ops.maximum(keras.ops.sum(mask, axis=-1), 1.0)
        return ForwardOutput(
            per_example_loss=per_example, carry=_new_carry(model, outputs), outputs={"logits": logits}
        )

    def metrics(self) -> dict[str, Any]:
        return {"bpc": BitsPerCharacter(name="bpc")}

    def update_metrics(self, metrics: Mapping[str, Any], batch: Any, outputs: Mapping[str, Any]) -> None:
        metrics["bpc"].update_state(batch[1], outputs["logits"])

    def evaluate(self, model: Any, dataset: Any) -> dict[str, float]:
        """Bits per character over the whole split, state carried across its windows.

        The XLA-compiled step is cached per model, so periodic evaluation compiles once.
        """
        step = self._eval_steps.get(model)
        if step is None:

            @tf.function(jit_compile=True, reduce_retracing=True)
            def step(ids: Any, targets: Any, carry: Any) -> tuple[Any, Any]:
                outputs = model(model_inputs(model, ids, carry), training=False)
                nats, _ = masked_cross_entropy(targets, outputs["logits"])
                return nats, _new_carry(model, outputs)

            self._eval_steps[model] = step
        return split_bits_per_character(step, dataset, lambda b: self.initial_carry(model, b))

    # -------------------------------------------------------------- serving
    def serving_functions(self, model: Any, config: Mapping[str, Any]) -> dict[str, Any]:
        """The three signatures of the module docstring, taking flat named tensors (``ids``, ``targets``,
        ``state_0``, ...) that can be passed by keyword, as TF Serving and the exporter do."""
        specs = state_specs(model)
        names = [n for n, _ in specs]
        vocab_size = int(model.output["logits"].shape[-1])
        state_sig = [tf.TensorSpec([None, size], tf.float32, name=n) for n, size in specs]
        ids_sig = tf.TensorSpec([None, None], tf.int32, name="ids")
        targets_sig = tf.TensorSpec([None, None], tf.int32, name="targets")

        def run(ids: Any, states: Any, checks: list[Any]) -> dict[str, Any]:
            with tf.control_dependencies([_check_ids(ids, "ids", 0, vocab_size), *checks]):
                return model(model_inputs(model, ids, states), training=False)

        def serving_default(ids: Any, *states: Any) -> dict[str, Any]:
            outputs = run(ids, states, [])
            probs = tf.nn.softmax(tf.cast(outputs["logits"][:, -1, :], tf.float32), axis=-1)
            return {"probabilities": probs, **{n: outputs[n] for n in names}}

        def score(ids: Any, targets: Any, *states: Any) -> dict[str, Any]:
            outputs = run(ids, states, [_check_ids(targets, "targets", text_data.PAD_TARGET, vocab_size)])
            nats, _ = masked_cross_entropy(targets, outputs["logits"])
            return {"nats": nats, **{n: outputs[n] for n in names}}

        def zero_state(batch_size: Any) -> dict[str, Any]:
            return {n: tf.zeros(tf.stack([batch_size, size]), tf.float32) for n, size in specs}

        return {
            "serving_default": named_function(serving_default, [ids_sig, *state_sig]),
            "score": named_function(score, [ids_sig, targets_sig, *state_sig]),
            "initial_state": named_function(zero_state, [tf.TensorSpec([], tf.int32, name="batch_size")]),
        }

    def warmup_inputs(self, model: Any, config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        states = {n: np.zeros((1, size), np.float32) for n, size in state_specs(model)}
        ids = np.zeros((1, 4), np.int32)
        return {
            "serving_default": {"ids": ids, **states},
            "score": {"ids": ids, "targets": np.zeros((1, 4), np.int32), **states},
            "initial_state": {"batch_size": np.array(1, np.int32)},
        }

    def evaluate_serving(self, loaded: Any, dataset: Any) -> dict[str, float]:
        """Bits per character through the SavedModel's ``score`` and ``initial_state`` signatures."""
        score = loaded.signatures["score"]
        init = loaded.signatures["initial_state"]
        names = sorted(
            (n for n in score.structured_input_signature[1] if _STATE.match(n)), key=lambda n: int(n[6:])
        )

        def step(ids: Any, targets: Any, carry: Any) -> tuple[Any, Any]:
            out = score(
                ids=tf.cast(ids, tf.int32),
                targets=tf.cast(targets, tf.int32),
                **dict(zip(names, carry, strict=True)),
            )
            return out["nats"], tuple(out[n] for n in names)

        def first(batch_size: int) -> Any:
            out = init(batch_size=tf.constant(batch_size, tf.int32))
            return tuple(out[n] for n in names)

        return split_bits_per_character(step, dataset, first)


TASK = CharLMTask()
