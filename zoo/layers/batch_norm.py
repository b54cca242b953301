"""Batch normalisation that is synchronized across replicas where the backend can do it.

Keras' ``BatchNormalization(synchronized=True)`` all-reduces the batch moments across the replicas of a
``tf.distribute`` strategy (so moving statistics agree between replicas) and is refused by every other
backend ("Argument synchronized=True is only supported with the TensorFlow backend"). The zoo's trainer
and its distribution strategies are TensorFlow; under JAX or PyTorch a model is trained on one device by
``model.fit`` and plain batch normalisation is the same computation. :func:`sync_batch_norm` is the one place
that makes this choice, so every model builds on every Keras 3 backend.
"""

from __future__ import annotations

from typing import Any

import keras

__all__ = ["sync_batch_norm", "SYNCHRONIZED_BACKENDS"]

#: Backends whose BatchNormalization supports ``synchronized=True``.
SYNCHRONIZED_BACKENDS = ("tensorflow",)


def sync_batch_norm(**kwargs: Any) -> keras.layers.BatchNormalization:
    """``keras.layers.BatchNormalization(**kwargs)`` with ``synchronized=True`` on the TensorFlow backend
    (replicas of a ``tf.distribute`` strategy share batch moments; a single device is unaffected) and
    ``False`` on the others.

    Example:

    >>> bn = sync_batch_norm(momentum=0.9, epsilon=1e-5, name="bn")
    >>> bn.synchronized == (keras.backend.backend() == "tensorflow")
    True
    """
    if "synchronized" in kwargs:
        raise TypeError("sync_batch_norm chooses 'synchronized' from the Keras backend; do not pass it")
    return keras.layers.BatchNormalization(
        synchronized=keras.backend.backend() in SYNCHRONIZED_BACKENDS, **kwargs
    )
