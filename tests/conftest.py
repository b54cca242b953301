"""Shared test setup: quiet TF, deterministic seeds, small thread pools (CI has 2 cores).

The Keras backend comes from ``KERAS_BACKEND`` (TensorFlow by default); ``.ci/run`` runs the backend-neutral
test files a second time under ``KERAS_BACKEND=jax``. The report header names the backend.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

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
