"""Shared test setup: quiet TF, deterministic seeds, small thread pools (CI has 2 cores).

The Keras backend comes from ``KERAS_BACKEND`` (TensorFlow by default); ``.ci/run`` runs the backend-neutral
test files a second time under ``KERAS_BACKEND=jax``. The report header names the backend.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import keras  # noqa: E402
import pytest  # noqa: E402


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {keras.backend.backend()}"


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    yield
