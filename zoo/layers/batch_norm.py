"""Batch normalisation: synchronized across replicas where the backend can do it, fused where that is faster.

**Synchronized.** Keras' ``BatchNormalization(synchronized=True)`` all-reduces the batch moments across the
replicas of a ``tf.distribute`` strategy (so moving statistics agree between replicas) and is refused by
every other backend ("Argument synchronized=True is only supported with the TensorFlow backend"). The zoo's
trainer and its distribution strategies are TensorFlow; under JAX or PyTorch a model is trained on one
device by ``model.fit`` and plain batch normalisation is the same computation. :func:`sync_batch_norm` is
the one place that makes this choice, so every model builds on every Keras 3 backend.

**Fused.** Keras 3 computes batch norm from separate ops (``moments``, then ``x * inv + (beta - mean * inv)``)
and differentiates through each of them: several passes over the activations forward and more backward.
TensorFlow's ``FusedBatchNormV3`` (oneDNN on CPU, cuDNN on GPU) computes the moments and the normalised
output in one kernel and has one fused gradient kernel. On TensorFlow, :class:`BatchNormalization` uses it
for channels-last 4-D float inputs (the convolutional models); everything else takes Keras' own path. The
arithmetic is the same up to round-off: in training the output is normalised with the biased batch
variance, and the moving variance is updated with the biased variance as Keras does (the fused kernel
returns the Bessel-corrected one, ``n / (n - 1)`` times larger, which is undone). Measured in the
``hyper_wrn_40_1`` training step at batch 128 without XLA on 2 CPU cores: 528 -> 420 ms
(``bench/wrn_step.py``); ``tests/test_batch_norm.py`` pins outputs, moving statistics and gradients to
Keras' layer.

The fused path is taken only where Keras' layer would compute plain per-replica batch moments: not
synchronized, or a strategy with one replica (the trainer turns ``synchronized`` off inside its XLA
function, see ``trainers/loop.py``). Masks, renorm, epsilons below cuDNN 7's minimum (1e-5) and other
ranks or axes fall back to Keras' implementation.
"""

from __future__ import annotations

from typing import Any

import keras

__all__ = ["BatchNormalization", "sync_batch_norm", "SYNCHRONIZED_BACKENDS", "FUSED_MIN_EPSILON"]

#: Backends whose BatchNormalization supports ``synchronized=True``.
SYNCHRONIZED_BACKENDS = ("tensorflow",)

#: cuDNN 7's smallest batch-norm epsilon (``CUDNN_BN_MIN_EPSILON``; 0 from cuDNN 8): smaller ones take
#: Keras' path, so the fused kernel is valid on every GPU TensorFlow supports.
FUSED_MIN_EPSILON = 1e-5


@keras.saving.register_keras_serializable(package="zoo")
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` that runs TensorFlow's fused kernel where it applies.

    Same arguments, weights, config and results (to float round-off) as the Keras layer; see the module
    docstring for when the fused kernel is used. On backends other than TensorFlow it *is* the Keras layer.

    Example:

    >>> bn = BatchNormalization(momentum=0.9, epsilon=1e-5)
    >>> x = np.random.default_rng(0).normal(size=(8, 4, 4, 3)).astype("float32")
    >>> y = keras.ops.convert_to_numpy(bn(x, training=True))
    >>> bool(np.allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-5))
    True
    """

    def _fused_applies(self, inputs: Any, mask: Any) -> bool:
        if keras.backend.backend() != "tensorflow" or mask is not None or self.renorm:
            return False
        if len(inputs.shape) != 4 or self.axis not in (3, -1) or self.epsilon < FUSED_MIN_EPSILON:
            return False
        if keras.backend.standardize_dtype(inputs.dtype) not in ("float32", "float16", "bfloat16"):
            return False
        if self.synchronized:
            import tensorflow as tf

            return tf.distribute.get_strategy().num_replicas_in_sync == 1
        return True

    def call(self, inputs: Any, training: Any = None, mask: Any = None) -> Any:
        if not self._fused_applies(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        x = tf.cast(inputs, tf.float32)  # as Keras: batch norm computes in float32 (overflow in 16 bits)
        channels = tf.shape(x)[-1:]
        gamma = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones(channels, tf.float32)
        beta = tf.cast(self.beta, tf.float32) if self.center else tf.zeros(channels, tf.float32)
        moving_mean = tf.cast(self.moving_mean, tf.float32)
        moving_variance = tf.cast(self.moving_variance, tf.float32)
        if training and self.trainable:
            empty = tf.constant([], tf.float32)
            y, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta, mean=empty, variance=empty, epsilon=self.epsilon,
                exponential_avg_factor=1.0, data_format="NHWC", is_training=True,
            )  # fmt: skip
            # The kernel returns the Bessel-corrected variance; Keras' moving variance tracks the biased one.
            n = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), tf.float32)
            variance = variance * ((n - 1.0) / tf.maximum(n, 1.0))
            self.moving_mean.assign(moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            y, _, _, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta, mean=moving_mean, variance=moving_variance,
                epsilon=self.epsilon, data_format="NHWC", is_training=False,
            )  # fmt: skip
        return tf.cast(y, self.compute_dtype)


def sync_batch_norm(**kwargs: Any) -> keras.layers.BatchNormalization:
    """:class:`BatchNormalization` with ``synchronized=True`` on the TensorFlow backend (replicas of a
    ``tf.distribute`` strategy share batch moments; a single device is unaffected) and ``False`` on the
    others.

    Example:

    >>> bn = sync_batch_norm(momentum=0.9, epsilon=1e-5, name="bn")
    >>> bn.synchronized == (keras.backend.backend() == "tensorflow")
    True
    """
    if "synchronized" in kwargs:
        raise TypeError("sync_batch_norm chooses 'synchronized' from the Keras backend; do not pass it")
    return BatchNormalization(synchronized=keras.backend.backend() in SYNCHRONIZED_BACKENDS, **kwargs)
