"""zoo.layers.BatchNormalization: TensorFlow's fused kernel gives Keras' batch norm to round-off."""

from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo.layers.batch_norm import BatchNormalization, sync_batch_norm

SHAPE = (6, 5, 4, 3)


def _pair(**kwargs):
    """(ours, Keras') built on SHAPE with the same random gamma, beta and moving statistics."""
    ours, ref = BatchNormalization(**kwargs), keras.layers.BatchNormalization(**kwargs)
    rng = np.random.default_rng(0)
    for layer in (ours, ref):
        layer.build(SHAPE)
    for w_ours, w_ref in zip(ours.weights, ref.weights, strict=True):
        value = rng.uniform(0.5, 1.5, size=w_ref.shape).astype("float32")
        w_ours.assign(value)
        w_ref.assign(value)
    return ours, ref


def _inputs(seed=1):
    return tf.constant(np.random.default_rng(seed).normal(2.0, 3.0, size=SHAPE).astype("float32"))


def _ops(fn, *args):
    return {op.type for op in tf.function(fn).get_concrete_function(*args).graph.get_operations()}


@pytest.mark.parametrize("kwargs", [{"momentum": 0.9, "epsilon": 1e-5}, {"center": False, "scale": False}])
@pytest.mark.parametrize("jit", [False, True])
def test_training_matches_keras_outputs_moving_statistics_and_gradients(kwargs, jit):
    ours, ref = _pair(**kwargs)
    x = _inputs()
    upstream = tf.constant(np.random.default_rng(2).normal(size=SHAPE).astype("float32"))

    def step(layer):
        def run(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(layer(x, training=True) * upstream)
            return loss, tape.gradient(loss, [x, *layer.trainable_variables])

        return tf.function(run, jit_compile=jit)

    got, want = step(ours)(x), step(ref)(x)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    for g, w in zip(got[1], want[1], strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    for name in ("moving_mean", "moving_variance"):  # the biased batch variance, as Keras tracks it
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-6, err_msg=name)
    assert "FusedBatchNormV3" in _ops(lambda x: ours(x, training=True), x)


def test_inference_matches_keras_and_uses_the_fused_kernel():
    ours, ref = _pair(epsilon=1e-3)
    x = _inputs(3)
    np.testing.assert_allclose(ours(x, training=False), ref(x, training=False), rtol=1e-5, atol=1e-5)
    assert "FusedBatchNormV3" in _ops(lambda x: ours(x, training=False), x)
    ours.trainable = ref.trainable = False  # a frozen layer uses its moving statistics in training too
    np.testing.assert_allclose(ours(x, training=True), ref(x, training=True), rtol=1e-5, atol=1e-5)


def test_bfloat16_policy_computes_in_float32_and_returns_bfloat16():
    ours, ref = _pair(dtype="mixed_bfloat16")
    x = tf.cast(_inputs(4), tf.bfloat16)
    got, want = ours(x, training=True), ref(x, training=True)
    assert got.dtype == want.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(got, tf.float32), tf.cast(want, tf.float32), rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(ours.moving_variance, ref.moving_variance, rtol=1e-5)


@pytest.mark.parametrize(
    "case", ["rank2", "rank3", "channels_first", "small_epsilon", "mask", "synchronized_replicas"]
)
def test_other_cases_take_keras_path_with_keras_results(case, monkeypatch):
    kwargs = {"axis": 1} if case == "channels_first" else {}
    kwargs.update(epsilon=1e-6) if case == "small_epsilon" else None
    shape = {"rank2": (12, 3), "rank3": (6, 4, 3)}.get(case, SHAPE)
    ours, ref = BatchNormalization(**kwargs), keras.layers.BatchNormalization(**kwargs)
    x = tf.constant(np.random.default_rng(5).normal(size=shape).astype("float32"))
    mask = tf.constant(np.random.default_rng(6).uniform(size=shape[:-1]) < 0.7) if case == "mask" else None
    if case == "synchronized_replicas":
        ours.synchronized = True  # replicas share moments: the fused per-replica kernel must not run
        assert ours._fused_applies(tf.zeros(SHAPE), None)  # one replica: the moments are the same
        monkeypatch.setattr(tf.distribute, "get_strategy", lambda: SimpleNamespace(num_replicas_in_sync=2))
        assert not ours._fused_applies(tf.zeros(SHAPE), None)
        return
    np.testing.assert_allclose(ours(x, training=True, mask=mask), ref(x, training=True, mask=mask), atol=1e-5)
    np.testing.assert_allclose(ours.moving_variance, ref.moving_variance, rtol=1e-6)
    assert "FusedBatchNormV3" not in _ops(lambda x: ours(x, training=True, mask=mask), x)


def test_sync_batch_norm_builds_ours_and_round_trips_through_keras_saving():
    bn = sync_batch_norm(momentum=0.9, epsilon=1e-5, name="bn")
    assert isinstance(bn, BatchNormalization) and bn.synchronized
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(bn))
    assert type(clone) is BatchNormalization and clone.get_config() == bn.get_config()
