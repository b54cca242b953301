"""The reference every benchmark's GFLOP/s is set against: one square fp32 matmul, compiled by the Keras
backend the way the benchmark compiles its models (shared by ``bench/rnn_step.py`` and ``bench/wrn_step.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

__all__ = ["compiled_matmul"]


def compiled_matmul(size: int, jit: bool = True) -> Callable[[], float]:
    """A function running one ``size``^3 fp32 product compiled by the Keras backend (on TensorFlow with XLA
    if ``jit``, else TensorFlow's own kernel in a ``tf.function``); returns a checksum."""
    rng = np.random.default_rng(0)
    a, b = (keras.ops.convert_to_tensor(rng.normal(size=(size, size)).astype("float32")) for _ in range(2))
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        fn = tf.function(keras.ops.matmul, jit_compile=jit)
    elif backend == "jax":
        import jax

        fn = jax.jit(keras.ops.matmul)
    else:
        fn = keras.ops.matmul
    return lambda: float(keras.ops.convert_to_numpy(fn(a, b)[0, 0]))
