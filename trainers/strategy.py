"""Building the ``tf.distribute`` strategy for ``--strategy`` / ``--num_devices``.

- ``default``: the default (single-device) strategy.
- ``mirrored``: ``MirroredStrategy`` over every local GPU, or, without GPUs, over the local CPU devices;
  ``--num_devices=N`` first splits the physical CPU into N logical devices, which gives a real N-replica
  MirroredStrategy on one CPU (how the tests exercise distribution).
- ``multi_worker``: ``MultiWorkerMirroredStrategy`` configured from the ``TF_CONFIG`` environment variable
  (``{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}}``); one process
  per machine, each running the same command. Without ``TF_CONFIG`` it is a one-worker strategy.
  (TPUs go through ``tf.distribute.TPUStrategy``; the training loop only uses the strategy API, but
  TPUStrategy is not wired to a flag here.)

Logical devices can only be configured before TensorFlow initialises its runtime, so
:func:`configure_devices` must run before anything creates a tensor.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

__all__ = [
    "STRATEGIES", "configure_devices", "make_strategy", "is_chief", "worker_index", "default_jit_compile",
    "resolve_jit_compile",
]  # fmt: skip

STRATEGIES = ("default", "mirrored", "multi_worker")


def configure_devices(num_devices: int | None) -> None:
    """Splits the first physical CPU into ``num_devices`` logical devices (no-op for None or 1).

    Raises ``ValueError`` if the runtime is already initialised with a different device count.
    """
    if num_devices is None or num_devices <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == num_devices:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices
        )
    except RuntimeError as e:
        raise ValueError(
            f"--num_devices={num_devices}: TensorFlow was already initialised with "
            f"{len(tf.config.list_logical_devices('CPU'))} CPU device(s); set it before any TF op runs ({e})"
        ) from e


def _tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}): {raw[:200]!r}") from e


def worker_index() -> int:
    """This process's index in TF_CONFIG's cluster (0 without TF_CONFIG)."""
    return int(_tf_config().get("task", {}).get("index", 0))


def is_chief() -> bool:
    """True for the process that writes checkpoints/summaries/exports to the real ``--model_dir``:
    worker 0 (or the ``chief`` task) of a multi-worker cluster, or the only process."""
    task = _tf_config().get("task", {})
    kind = task.get("type", "worker")
    if kind == "chief":
        return True
    if "chief" in _tf_config().get("cluster", {}):
        return False
    return kind == "worker" and int(task.get("index", 0)) == 0


def make_strategy(name: str, num_devices: int | None = None) -> tf.distribute.Strategy:
    """The strategy named by ``--strategy`` (see the module docstring)."""
    if name not in STRATEGIES:
        raise ValueError(f"--strategy={name!r} is unknown; valid: {', '.join(STRATEGIES)}")
    if num_devices is not None and num_devices < 1:
        raise ValueError(f"--num_devices={num_devices} must be >= 1")
    if name == "multi_worker":
        config = _tf_config()
        if config:
            workers = config.get("cluster", {}).get("worker")
            if not workers:
                raise ValueError(f"TF_CONFIG has no cluster.worker list: {config!r}")
        return tf.distribute.MultiWorkerMirroredStrategy()
    configure_devices(num_devices)
    if name == "default":
        return tf.distribute.get_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    if num_devices is not None:
        if num_devices > len(devices):
            raise ValueError(f"--num_devices={num_devices} but only {len(devices)} device(s): {devices}")
        devices = devices[:num_devices]
    if gpus:
        return tf.distribute.MirroredStrategy(devices)
    # Cross-device ops on CPU: reduce to one device (NCCL is GPU only).
    return tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())


def default_jit_compile() -> bool:
    """The trainer's ``--jit_compile`` default: XLA where the replicas run on GPUs or TPUs, not on CPUs.

    Every strategy of :func:`make_strategy` places its replicas on the GPUs whenever the process sees
    any, so the local devices decide. On CPU, XLA's own convolution and matmul kernels lose to TensorFlow's
    oneDNN kernels for every model family measured (2-core CPU, the trainer's step; ``bench/wrn_step.py``
    for the first row, ``zoo-train ... --jit_compile=true|false`` steps/s for the others):

    ============================  ==================  ==================
    model (batch)                 XLA                 no XLA
    ============================  ==================  ==================
    ``hyper_wrn_40_1`` (128)      790 ms/step         409 ms/step
    ``hyper_conv_mnist`` (128)    43 ms/step          13 ms/step
    ``lstm_1000_ptb`` (32)        0.75 steps/s        1.05 steps/s
    ``ln_hyper_lstm_1000_ptb``    0.54-0.58 steps/s   0.59-0.65 steps/s
    ``yt8m_moe_stats`` (64)       1.04 steps/s        1.23 steps/s
    ============================  ==================  ==================

    (``bench/rnn_step.py``, one recurrent layer at 1000 units: LSTM 680 vs 559 ms, LN-LSTM 754 vs 639,
    HyperLSTM 1,020 vs 818, LN-HyperLSTM 1,078 vs 940.) On GPUs XLA fuses the elementwise work between
    kernels (layer norm, the HyperLSTM's scalings, batch norm), which is where it pays; that side was not
    measured here (no GPU on the development machine).
    """
    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def resolve_jit_compile(requested: bool | str | None) -> bool:
    """A ``--jit_compile`` setting as a bool: ``None`` or ``"auto"`` is :func:`default_jit_compile`;
    ``True``/``False`` or ``"true"``/``"false"`` force it."""
    if requested is None or requested == "auto":
        return default_jit_compile()
    if isinstance(requested, bool):
        return requested
    if requested in ("true", "false"):
        return requested == "true"
    raise ValueError(f"jit_compile={requested!r}: expected auto, true or false")
