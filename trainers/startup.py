"""What the console entry points do before TensorFlow loads: keep its start-up noise off the terminal.

On a machine without an NVIDIA driver, the full ``tensorflow`` package logs CUDA start-up failures
(``Could not find cuda drivers``, ``failed call to cuInit``) and other start-up notices at every start,
some before its log level applies (``TF_CPP_MIN_LOG_LEVEL`` does not silence them). They say nothing
about the run, so :func:`quiet_tensorflow_startup` loads TensorFlow and lists its devices with the
process's stderr captured, and passes on every captured line except those notices. On a machine with an
NVIDIA driver nothing is filtered (a CUDA error there is worth seeing). ``TF_CPP_MIN_LOG_LEVEL``
defaults to 1 (no INFO lines from TensorFlow's C++ runtime); a value the user set is kept.
"""

from __future__ import annotations

import glob
import os
import sys
import tempfile

__all__ = ["quiet_tensorflow_startup", "has_nvidia_driver", "STARTUP_NOISE"]

#: Substrings of the stderr lines dropped while TensorFlow starts on a machine without an NVIDIA driver.
STARTUP_NOISE = (
    "cudart_stub.cc",
    "cuda_platform.cc",
    "cuda_executor.cc",
    "cuInit",
    "Could not find cuda drivers",
    "All log messages before absl::InitializeLog() is called",
    "oneDNN custom operations are on",
    "cpu_feature_guard.cc",
    "To enable the following instructions:",
)


def has_nvidia_driver() -> bool:
    """Whether this machine has an NVIDIA kernel driver loaded (then CUDA messages are not filtered)."""
    return os.path.exists("/proc/driver/nvidia/version") or bool(glob.glob("/dev/nvidia[0-9]*"))


def quiet_tensorflow_startup() -> None:
    """Imports TensorFlow and lists its devices without the CPU-only start-up notices (see the module
    docstring); a no-op once TensorFlow is loaded."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    if has_nvidia_driver():
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # where CUDA is initialised (and fails) on a CPU-only machine
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", "replace").splitlines(keepends=True)
            sys.stderr.write("".join(s for s in lines if not any(n in s for n in STARTUP_NOISE)))
            sys.stderr.flush()
