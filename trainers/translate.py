"""Translate text with a trained translation model: one sentence a line in, one translation a line out.

    zoo-translate --model_dir=/tmp/gnmt < input.en > output.fr
    zoo-translate --model_dir=/tmp/gnmt --input=newstest2014.en --output=hyp.fr --beam_width=10
    zoo-translate --saved_model=exported/gnmt_ln_hyper_lstm_small/1 < input.en

``--model_dir`` rebuilds the model from ``run.json`` and its latest checkpoint and binds the run's subword
model (``subword.model``); it translates through the same serving function the exporter writes, so the
output equals the SavedModel's. ``--saved_model`` runs an exported model's ``serving_default`` instead (no
zoo model code; TF Text's ops must be importable). Decoding settings (``--beam_width``, ``--alpha``,
``--beta``, ``--max_decode_length_factor``) default to the model's config. Lines are translated in
batches of ``--batch_size`` in input order; an empty line gives an empty or short translation, never a
shifted file. ``--output`` is written to a temporary file and renamed into place when complete; progress goes
to stderr. With ``--scores`` each output line is ``translation<TAB>score``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from absl import app, flags

from zoo.io import atomic_path

__all__ = ["main", "run", "translator", "translate_lines"]

_DECODING_FLAGS = {
    "beam_width": "beam_width",
    "alpha": "length_penalty_alpha",
    "beta": "coverage_penalty_beta",
    "max_decode_length_factor": "max_decode_length_factor",
}


def _define_flags() -> None:
    flags.DEFINE_string("model_dir", None, "A translation trainer's --model_dir (run.json + checkpoints).")
    flags.DEFINE_string("saved_model", None, "An exported SavedModel directory (instead of --model_dir).")
    flags.DEFINE_string("checkpoint", None, "A checkpoint path in --model_dir; default the latest.")
    flags.DEFINE_string("input", None, "Text file, one sentence a line; default stdin.")
    flags.DEFINE_string("output", None, "Output file (written atomically); default stdout.")
    flags.DEFINE_integer("batch_size", 32, "Sentences per beam search call.", lower_bound=1)
    flags.DEFINE_integer("beam_width", None, "Beam width; default the model's beam_width.", lower_bound=1)
    flags.DEFINE_float(
        "alpha", None, "GNMT length-normalisation alpha; default the model's.", lower_bound=0.0
    )
    flags.DEFINE_float("beta", None, "GNMT coverage-penalty beta; default the model's.", lower_bound=0.0)
    flags.DEFINE_float(
        "max_decode_length_factor", None, "Output length cap: factor * source tokens + 10.", lower_bound=0.1
    )
    flags.DEFINE_boolean("scores", False, "Append a tab and the GNMT score of each translation.")


def translator(
    model_dir: str | None = None,
    saved_model: str | None = None,
    checkpoint: str | None = None,
    settings: dict[str, Any] | None = None,
) -> Any:
    """``fn(list[str]) -> (list[str], list[float])`` from a run's ``model_dir`` or an exported SavedModel."""
    import tensorflow as tf

    if (model_dir is None) == (saved_model is None):
        raise ValueError("pass exactly one of --model_dir and --saved_model")
    if saved_model is not None:
        import tensorflow_text  # noqa: F401  (registers the SentencePiece ops the SavedModel uses)

        if settings:
            raise ValueError(
                f"decoding flags {sorted(settings)} need --model_dir: an exported model's settings are fixed"
            )
        fn = tf.saved_model.load(saved_model).signatures["serving_default"]
    else:
        import zoo
        from exports.export import read_run_assets
        from zoo import run_dir
        from zoo.tasks.translation import TASK

        model, name, config, _ = run_dir.restore(model_dir, overrides=settings or None, checkpoint=checkpoint)
        if zoo.get_spec(name).task != "translation":
            raise ValueError(f"--model_dir={model_dir!r} holds model {name!r}, not a translation model")
        TASK.bind_assets(model, read_run_assets(model_dir))
        fn = TASK.serving_functions(model, config)["serving_default"]

    def translate(lines: list[str]) -> tuple[list[str], list[float]]:
        out = fn(source=tf.constant(lines, tf.string))
        return [t.decode("utf-8") for t in out["translation"].numpy()], [
            float(s) for s in out["score"].numpy()
        ]

    return translate


def _batches(stream: TextIO, size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for line in stream:
        batch.append(line.rstrip("\n").rstrip("\r"))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def translate_lines(fn: Any, stream: TextIO, out: TextIO, batch_size: int, scores: bool = False) -> int:
    """Translates every line of ``stream`` into ``out`` in order; returns the number of lines."""
    count, start = 0, time.time()
    for batch in _batches(stream, batch_size):
        translations, values = fn(batch)
        for text, score in zip(translations, values, strict=True):
            out.write(f"{text}\t{score:.4f}\n" if scores else f"{text}\n")
        count += len(batch)
        rate = count / max(time.time() - start, 1e-9)
        print(f"translated {count} sentences ({rate:.1f}/s)", file=sys.stderr, flush=True)
    return count


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    settings = {
        key: getattr(f, flag) for flag, key in _DECODING_FLAGS.items() if getattr(f, flag) is not None
    }
    try:
        fn = translator(f.model_dir, f.saved_model, f.checkpoint, settings)
    except (ValueError, OSError) as e:
        raise app.UsageError(str(e)) from e
    source = open(f.input, encoding="utf-8") if f.input else sys.stdin
    try:
        if f.output:
            with atomic_path(f.output, suffix=".txt") as tmp, open(tmp, "w", encoding="utf-8") as out:
                translate_lines(fn, source, out, f.batch_size, f.scores)
        else:
            translate_lines(fn, source, sys.stdout, f.batch_size, f.scores)
    finally:
        if f.input:
            source.close()


def run() -> None:
    """Console-script entry point (``zoo-translate``)."""
    _define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
