"""Generate text from a trained character language model; optionally draw HyperNetworks Figures 4 and 5.

    python -m trainers.sample --model_dir=runs/hyper_lstm --prime="The " --length=500 --temperature=0.8 \\
        --seed=1 --figures_dir=figs [--histogram_model_dirs=runs/lstm,runs/ln_lstm,runs/ln_hyper_lstm]

What it reads from ``--model_dir`` (written by ``trainers.train``):
  - the run description ``run.json`` (:mod:`zoo.run_dir`) with the registered model name under
    ``"model"`` and its config overrides under ``"config"`` (``--model`` / ``--config`` flags override or
    replace it);
  - the vocabulary ``vocab.json`` (the char_lm task's ``TaskData.assets``; ``--vocab`` overrides);
  - the latest ``tf.train.Checkpoint`` whose ``model`` attribute is the keras model.

Generation starts from the zero state (the state the trainer's evaluation starts each stream from) and
warms it on the prime, fed one character at a time through the model with the state carried, then samples
``--length`` characters from ``softmax(logits / temperature)`` with a seeded numpy generator
(``--temperature=0`` is greedy). A longer prime gives the state more context to start from.
Figures (``--figures_dir``):
  - ``fig4_weight_dynamics.png``: needs a HyperLSTM first layer (a cell with ``compute_scales``);
  - ``fig5_tanh_c_histograms.png``: tanh(c) of the first recurrent layer over the passage, for this model
    and each ``--histogram_model_dirs`` model (each generates its own passage with the same prime and seed).
The figures re-run the first recurrent cell's ``step`` on ``one_hot(ids)`` and the model's carried state;
the new state it gives must equal the model's, else the figures are refused (the model does not feed the
one-hot characters straight into its first cell).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

from zoo import run_dir
from zoo.data.text import Vocabulary, write_bytes_file
from zoo.registry import get_spec
from zoo.tasks.char_lm import model_inputs, state_specs
from zoo.tasks.handwriting import sample_run
from zoo.viz.dynamics import plot_tanh_c_histograms, plot_weight_dynamics, scale_change_norms

__all__ = [
    "VOCAB_FILE",
    "load_run",
    "find_first_cell",
    "generate",
    "write_figures",
    "sample",
    "run",
]

#: json files in a model_dir describing the run, tried in order.
VOCAB_FILE = "vocab.json"

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the sampler's flags (at start-up, not import, so it can share a process with the trainer)."""
    if "prime" in FLAGS:
        return
    flags.DEFINE_string("model_dir", None, "Trainer model_dir: checkpoints, run json and vocab.json.")
    flags.DEFINE_string("prime", "The ", "Text to condition on (every character must be in the vocabulary).")
    flags.DEFINE_integer("length", 200, "Number of characters to generate.")
    flags.DEFINE_float("temperature", 1.0, "Softmax temperature; 0 is greedy (argmax).")
    flags.DEFINE_integer("seed", 0, "Seed of the sampling generator.")
    flags.DEFINE_string("figures_dir", None, "If set, write Figure 4 and Figure 5 PNGs here.")
    flags.DEFINE_list("histogram_model_dirs", [], "More model_dirs for Figure 5 (e.g. LSTM, LN-LSTM, ...).")
    flags.DEFINE_string("model", None, "Registered model name (default: from the model_dir's run json).")
    flags.DEFINE_multi_string("config", [], "Model config override key=value (as in trainers.train).")
    flags.DEFINE_string("vocab", None, "Vocabulary json (default: <model_dir>/vocab.json).")
    flags.DEFINE_string("checkpoint", None, "A checkpoint prefix (default: the latest in model_dir).")
    flags.DEFINE_string("output", None, "Also write the generated text to this file.")
    flags.DEFINE_float("bias", 0.0, "Handwriting runs: Graves' sampling bias b >= 0 (0: the model).")


# ---------------------------------------------------------------- loading
def load_run(
    model_dir: str,
    model_name: str | None = None,
    overrides: dict[str, Any] | None = None,
    vocab_path: str | None = None,
    checkpoint: str | None = None,
) -> tuple[Any, Any, dict[str, Any]]:
    """``(model, vocabulary, run_info)`` restored from a trainer ``model_dir`` (see the module docstring)."""
    model, name, config, info = run_dir.restore(model_dir, model_name, overrides, checkpoint)
    if get_spec(name).task != "char_lm":
        task = get_spec(name).task
        raise ValueError(f"model {name!r} is a {task!r} model; trainers.sample needs a char_lm model")
    vocab = Vocabulary.load(vocab_path or os.path.join(model_dir, VOCAB_FILE))
    vocab_out = int(model.output["logits"].shape[-1])
    if len(vocab) > vocab_out:
        raise ValueError(f"vocabulary of {len(vocab)} symbols does not fit the model's {vocab_out} outputs")
    return model, vocab, {**info, "model": name, "config": config}


# ---------------------------------------------------------------- the first recurrent cell
def find_first_cell(model: Any) -> Any:
    """The cell of the model's first recurrent layer (a layer with a ``cell`` that has ``step``)."""
    for layer in model.layers:
        cell = getattr(layer, "cell", None)
        cells = getattr(cell, "cells", None)  # keras.layers.StackedRNNCells
        if cells:
            cell = cells[0]
        if cell is not None and hasattr(cell, "step"):
            return cell
    return None


# ---------------------------------------------------------------- generation
def generate(
    model: Any,
    vocab: Any,
    prime: str,
    length: int,
    temperature: float = 1.0,
    seed: int = 0,
    trace: bool = False,
) -> dict[str, Any]:
    """Primes the model with ``prime`` and samples ``length`` symbols.

    Returns ``{"ids", "text", "generated", "num_prime"}`` and, with ``trace``, per-step arrays of the first
    recurrent cell: ``"tanh_c" [T, N]`` and, for a HyperLSTM cell, ``"d_x"``, ``"d_h"`` ``[T, 4N]``, with
    ``T = len(ids)`` (prime and generated symbols; step t is the step that reads symbol t).
    """
    prime_ids = _prime_ids(vocab, prime, length, temperature)
    specs = state_specs(model)
    cell = _traced_cell(model) if trace else None
    k = len(cell.state_size) if cell is not None else 0
    step, cell_step = _step_functions(model, specs, cell)
    rng = np.random.default_rng(seed)
    carry = tuple(tf.zeros((1, size), tf.float32) for _, size in specs)
    ids = list(prime_ids)
    traces: dict[str, list[np.ndarray]] = {"tanh_c": [], "d_x": [], "d_h": []}
    t = 0
    while True:
        x = tf.constant([[ids[t]]], tf.int32)
        if cell is not None:
            inner, cell_states = cell_step(x, carry)
        logits, new_carry = step(x, carry)
        if cell is not None:
            _record_trace(traces, inner, cell_states, new_carry[:k], model.name)
        carry = new_carry
        t += 1
        if t < len(ids):
            continue
        if len(ids) - len(prime_ids) >= length:
            break
        ids.append(_next_symbol(logits.numpy()[0, : len(vocab)], temperature, rng))
    return _generation_result(vocab, ids, len(prime_ids), traces)


def _prime_ids(vocab: Any, prime: str, length: int, temperature: float) -> list[int]:
    """Checks ``length`` and ``temperature`` (naming the flag) and encodes the non-empty ``prime``."""
    if length < 0:
        raise ValueError(f"--length={length} must be >= 0")
    if temperature < 0:
        raise ValueError(f"--temperature={temperature} must be >= 0")
    prime_ids = [int(i) for i in vocab.encode_text(prime, source="--prime")]
    if not prime_ids:
        raise ValueError("--prime is empty; give at least one character to start from")
    return prime_ids


def _traced_cell(model: Any) -> Any:
    """The first recurrent cell, whose ``step`` the trace re-runs; an error if the model has none."""
    cell = find_first_cell(model)
    if cell is None:
        raise ValueError(f"model {model.name!r} has no recurrent cell with a step() method to trace")
    return cell


def _step_functions(model: Any, specs: Sequence[tuple[str, int]], cell: Any) -> tuple[Any, Any]:
    """``(step, cell_step)``: one model step ``(ids [1, 1], carry) -> (logits [1, V], new carry)``, and
    (with ``cell``) the first cell's ``step`` on ``one_hot(ids)`` and its ``k`` leading carried states
    ``-> (step outputs, the cell's new states)``."""
    num_out = int(model.output["logits"].shape[-1])
    k = len(cell.state_size) if cell is not None else 0

    @tf.function(reduce_retracing=True)
    def step(ids: Any, carry: Any) -> Any:
        out = model(model_inputs(model, ids, carry), training=False)
        return out["logits"][:, -1, :], tuple(out[n] for n, _ in specs)

    @tf.function(reduce_retracing=True)
    def cell_step(ids: Any, carry: Any) -> Any:
        x = keras.ops.one_hot(ids[:, 0], num_out)
        return cell.step(x, list(carry[:k]), training=False), cell.call(x, list(carry[:k]), training=False)[1]

    return step, cell_step


def _record_trace(
    traces: dict[str, list[np.ndarray]],
    inner: dict[str, Any],
    cell_states: Sequence[Any],
    model_states: Sequence[Any],
    model_name: str,
) -> None:
    """Appends one step of the cell's ``tanh_c`` (and ``d_x``, ``d_h``) to ``traces``, once the cell's
    new states are checked to equal the model's (else the figures would trace a different input)."""
    for a, b in zip(cell_states, model_states, strict=True):
        if not np.allclose(a.numpy(), b.numpy(), atol=1e-4):
            raise ValueError(
                f"model {model_name!r}: its first cell's step on one_hot(ids) does not reproduce the "
                "model's state, so the figures cannot be traced"
            )
    traces["tanh_c"].append(inner["tanh_c"].numpy()[0])
    if "d_x" in inner:
        traces["d_x"].append(inner["d_x"].numpy()[0])
        traces["d_h"].append(inner["d_h"].numpy()[0])


def _next_symbol(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """A draw from ``softmax(logits / temperature)`` with ``rng``; the argmax for ``temperature == 0``."""
    logits = logits.astype(np.float64)
    if temperature == 0:
        return int(np.argmax(logits))
    z = logits / temperature
    p = np.exp(z - z.max())
    return int(rng.choice(len(p), p=p / p.sum()))


def _generation_result(
    vocab: Any, ids: list[int], num_prime: int, traces: dict[str, list[np.ndarray]]
) -> dict[str, Any]:
    """:func:`generate`'s result: the ids, their text and symbols, and the stacked non-empty traces."""
    result = {
        "ids": ids,
        "num_prime": num_prime,
        "text": vocab.decode_text(ids),
        "generated": vocab.decode_text(ids[num_prime:]),
        "symbols": vocab.decode(ids),
    }
    for key, values in traces.items():
        if values:
            result[key] = np.stack(values)
    return result


# ---------------------------------------------------------------- figures
def _label(run_info: dict[str, Any], model: Any) -> str:
    cell = find_first_cell(model)
    kind = type(cell).__name__ if cell is not None else "?"
    norm = getattr(cell, "use_layer_norm", None)
    names = {"BasicLSTMCell": "LSTM", "LayerNormLSTMCell": "Layer Norm LSTM", "LSTMCell": "LSTM"}
    if kind == "HyperLSTMCell":
        return "Layer Norm HyperLSTM" if norm else "HyperLSTM"
    return names.get(kind, run_info.get("model", kind))


def write_figures(
    figures_dir: str,
    model: Any,
    sample: dict[str, Any],
    label: str,
    others: Sequence[tuple[str, np.ndarray]] = (),
) -> dict[str, str]:
    """Writes Figure 4 (if ``sample`` has scaling vectors) and Figure 5; returns name -> path."""
    written = {}
    if "d_x" in sample:
        changes, labels = scale_change_norms(sample["d_x"], sample["d_h"])
        written["fig4"] = plot_weight_dynamics(
            sample["symbols"],
            changes,
            labels,
            os.path.join(figures_dir, "fig4_weight_dynamics.png"),
            title=f"{label}: norm of change of the main LSTM's weight-scaling vectors",
        )
    hist = {label: sample["tanh_c"]}
    for other_label, values in others:
        while other_label in hist:
            other_label += "'"
        hist[other_label] = values
    written["fig5"] = plot_tanh_c_histograms(hist, os.path.join(figures_dir, "fig5_tanh_c_histograms.png"))
    return written


# ---------------------------------------------------------------- the app
def sample(
    model_dir: str,
    prime: str = "The ",
    length: int = 200,
    temperature: float = 1.0,
    seed: int = 0,
    figures_dir: str | None = None,
    histogram_model_dirs: Sequence[str] = (),
    model: str | None = None,
    config: Sequence[str] = (),
    vocab: str | None = None,
    checkpoint: str | None = None,
    output: str | None = None,
    say: Any = print,
    bias: float = 0.0,
) -> dict[str, Any]:
    """The sampler without absl: generates, prints, optionally writes the text and the figures.

    Returns the :func:`generate` result plus ``"figures"`` (name -> path) and ``"run"`` (run info).
    A handwriting run goes to ``zoo.tasks.handwriting.sample_run`` (``--length`` points; SVG/PNG, Figure 7,
    and the validation-NLL curves of ``--histogram_model_dirs``).
    """
    name = model or (run_dir.read_run(model_dir).get("model") if os.path.isdir(model_dir) else None)
    if name and get_spec(name).task == "handwriting":
        return sample_run(
            model_dir, length=length, temperature=temperature, bias=bias, seed=seed, figures_dir=figures_dir,
            compare_model_dirs=histogram_model_dirs, model=model, config=config, checkpoint=checkpoint,
            output=output, say=say,
        )  # fmt: skip

    overrides = run_dir.parse_overrides(config)
    net, vocabulary, info = load_run(model_dir, model, overrides, vocab, checkpoint)
    result = generate(net, vocabulary, prime, length, temperature, seed, trace=bool(figures_dir))
    say(f"model={info['model']} checkpoint={info['checkpoint']} temperature={temperature} seed={seed}")
    say(result["text"])
    if output:
        write_bytes_file(output, result["text"].encode("utf-8"))
    result["figures"], result["run"] = {}, info
    if figures_dir:
        others = []
        for other_dir in histogram_model_dirs:
            m, v, i = load_run(other_dir)
            s = generate(m, v, prime, length, temperature, seed, trace=True)
            others.append((_label(i, m), s["tanh_c"]))
        result["figures"] = write_figures(figures_dir, net, result, _label(info, net), others)
        if "fig4" not in result["figures"]:
            say(f"figure 4 skipped: model {info['model']!r} has no HyperLSTM first layer")
        for name, path in result["figures"].items():
            say(f"wrote {name}: {path}")
    return result


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.model_dir:
        raise app.UsageError("--model_dir is required")
    try:
        sample(
            FLAGS.model_dir,
            FLAGS.prime,
            FLAGS.length,
            FLAGS.temperature,
            FLAGS.seed,
            FLAGS.figures_dir,
            FLAGS.histogram_model_dirs,
            FLAGS.model,
            FLAGS.config,
            FLAGS.vocab,
            FLAGS.checkpoint,
            FLAGS.output,
            say=lambda line: print(line, flush=True),
            bias=FLAGS.bias,
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)


def run() -> None:
    """Console-script entry point (``zoo-sample``)."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
