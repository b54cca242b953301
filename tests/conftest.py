"""Shared test setup: quiet TF, deterministic seeds, small thread pools (CI has 2 cores).

The Keras backend comes from ``KERAS_BACKEND`` (TensorFlow by default); ``.ci/run`` runs the backend-neutral
test files a second time under ``KERAS_BACKEND=jax``. The report header names the backend.
"""

import dataclasses
import os
import sys
from collections.abc import Callable, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
# One OpenBLAS thread per process (inherited by the subprocesses the tests start): ``pytest -n 2`` already
# keeps both cores busy, and OpenBLAS's spinning worker threads on an oversubscribed CPU make LAPACK calls
# 10x slower (np.linalg.eigh of a 2048 x 2048 covariance: 19 s with 2 threads beside another busy
# process, 1.4 s with 1). Set before numpy is first imported (below), which is when OpenBLAS reads it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {keras.backend.backend()}"


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    yield


class _AlwaysTraining(keras.Model):
    """Runs ``layer(x, training=True)`` (output ``index`` of it, if given) inside a compiled predict step."""

    def __init__(self, layer, index=None):
        super().__init__(name="always_training")
        self.inner, self.index = layer, index

    def call(self, x):
        out = self.inner(x, training=True)
        return out if self.index is None else out[self.index]


@pytest.fixture
def compiled_training_call():
    """``(layer, index=None) -> (x -> layer(x, training=True))`` compiled with XLA on any Keras backend (the
    RNN-cell tests' way to see dropout inside a compiled step)."""

    def make(layer, index=None):
        model = _AlwaysTraining(layer, index)
        model.compile(jit_compile=True)
        return lambda x: np.asarray(model.predict_on_batch(x))

    return make


@dataclasses.dataclass
class CliResult:
    """What a command-line tool run in-process left: its exit status and its captured output."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli(capfd):
    """``(define, main, argv, parse=None) -> CliResult``: a tool's absl ``main`` run in this process.

    Like ``app.run`` without a new interpreter (each subprocess spends seconds importing TensorFlow):
    ``define()`` defines the tool's flags, ``argv`` (``argv[0]``: the program name) is parsed into
    ``absl.flags.FLAGS`` (by ``parse(argv)`` if the tool has its own parser), ``main`` runs with the
    remaining arguments, and ``SystemExit`` / ``app.UsageError`` become the exit status (``UsageError``
    and a bad flag value: 1 and the message on stderr, as ``app.run`` does). Output is captured at the
    file-descriptor level.
    Afterwards the flags the tool defined are deleted and every other flag gets its value back, so
    tools that define flags of the same name can run one after another in the same worker.
    """
    from absl import app, flags

    fv = flags.FLAGS

    def run(
        define: Callable[[], None],
        main: Callable[[Sequence[str]], None],
        argv: Sequence[str],
        parse: Callable[[Sequence[str]], Sequence[str]] | None = None,
    ) -> CliResult:
        was_parsed = fv.is_parsed()
        before = {name: (fv[name].value, fv[name].present) for name in fv}
        capfd.readouterr()
        code = 0
        try:
            define()
            try:
                rest = parse(list(argv)) if parse is not None else fv(list(argv))
                main(rest)
            except SystemExit as e:  # sys.exit(2), or SystemExit("message") (status 1)
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if e.code is not None and not isinstance(e.code, int):
                    print(e.code, file=sys.stderr)
            except (app.UsageError, flags.Error) as e:  # as app.run reports them: status 1
                print(f"{argv[0]}: {e}", file=sys.stderr)
                code = getattr(e, "exitcode", 1)
            out, err = capfd.readouterr()
        finally:
            for name in set(fv) - set(before):
                if name in fv:
                    delattr(fv, name)
            if not was_parsed:
                fv.unparse_flags()
            for name, (value, present) in before.items():
                fv[name].value, fv[name].present = value, present
        return CliResult(code, out, err)

    return run


@pytest.fixture
def zoo_train(run_cli):
    """``(args, task=None) -> CliResult``: ``zoo-train ARGS`` in this process (``trainers.train.main``).

    Each test file keeps one ``python -m trainers.train`` subprocess at most where the process matters
    (logical devices, several workers, a kill); the rest train here (see :func:`run_cli`).
    """
    import functools

    from trainers import flags as flags_lib
    from trainers import train

    def run(args: Sequence[str], task=None) -> CliResult:
        return run_cli(flags_lib.define_flags, functools.partial(train.main, task=task), ["zoo-train", *args])

    return run
