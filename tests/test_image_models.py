"""The §4.1 MNIST convnets and the §4.2 (hyper) wide resnets: counts, structure, saving, training."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import zoo
from zoo.layers import HyperConv2D


def _trainable(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _hyper_layers(model):
    return [layer for layer in model.layers if isinstance(layer, HyperConv2D)]


def _images(shape, batch=4, seed=0):
    return np.random.default_rng(seed).uniform(size=(batch, *shape)).astype("float32")


def test_mnist_exact_counts():
    assert _trainable(zoo.get("conv_mnist")) == 21_210
    hyper = zoo.get("hyper_conv_mnist")
    assert _trainable(hyper) == 12_910
    (conv2,) = _hyper_layers(hyper)
    assert conv2.generator.count_params() == 4_240
    assert conv2.embeddings.shape == (1, 4)  # 4,240 + 4 = the paper's 4,244 for the second kernel
    assert tuple(conv2.kernel.shape) == (7, 7, 16, 16)  # 12,544 generated weights


@pytest.mark.parametrize(
    "name, trainable, embeddings",
    [
        ("wrn_40_1", 563_930, 0),
        ("wrn_40_2", 2_243_546, 0),
        ("hyper_wrn_40_1", 97_770, 242),
        ("hyper_wrn_40_2", 155_626, 966),
    ],
)
def test_wrn_counts(name, trainable, embeddings):
    model = zoo.get(name)
    assert _trainable(model) == trainable
    # Table 2 prints 0.563M / 2.236M / 0.097M / 0.148M: ours are within 5.2% (see docs/param_counts.md).
    paper = zoo.describe(name)["paper_params"]
    assert abs(trainable - paper) / paper < 0.052
    hyper = _hyper_layers(model)
    assert sum(int(layer.embeddings.shape[0]) for layer in hyper) == embeddings
    if embeddings:
        assert len(hyper) == 36  # every 3x3 kernel of conv2-conv4
        generators = {id(layer.generator) for layer in hyper}
        assert len(generators) == 1
        assert hyper[0].generator.count_params() == 75_920
        generator_weights = {id(w) for w in hyper[0].generator.trainable_weights}
        assert len(generator_weights & {id(w) for w in model.trainable_weights}) == 4
        assert len(model.trainable_weights) == len({id(w) for w in model.trainable_weights})
        # Every generated kernel starts at He scale for its own fan-in, although the generator is shared.
        for layer in hyper:
            he = (2.0 / (9 * layer.in_channels)) ** 0.5
            assert abs(float(np.std(ops.convert_to_numpy(layer.kernel))) / he - 1.0) < 0.12, layer.name


def test_wrn_28_10_counts_near_table_2():
    assert _trainable(zoo.get("wrn_28_10")) == 36_479_194  # Table 2: 36.5M
    hyper = zoo.get("hyper_wrn_28_10")
    layers = _hyper_layers(hyper)
    assert len(layers) == 24 and len({id(layer.generator) for layer in layers}) == 1
    assert _trainable(hyper) == 1_364_714


@pytest.mark.parametrize("name", ["conv_mnist", "hyper_conv_mnist", "wrn_40_1", "hyper_wrn_40_2"])
def test_input_output_contract(name):
    spec = zoo.describe(name)
    model = zoo.get(name, depth=10) if "wrn" in name else zoo.get(name)
    assert spec["task"] == "image_classification"
    (inp,) = model.inputs
    assert inp.name == "images" and tuple(inp.shape) == (None, *spec["input_spec"]["images"][0])
    assert inp.dtype == "float32"
    logits = model(_images(inp.shape[1:], batch=3))
    assert tuple(logits.shape) == (3, spec["config"]["num_classes"])
    # Normalisation lives in the model: the training-set mean image maps to zero.
    cfg = spec["config"]
    mean = np.broadcast_to(np.asarray(cfg["input_mean"], "float32"), (1, *inp.shape[1:]))
    np.testing.assert_allclose(ops.convert_to_numpy(model.get_layer("normalize")(mean)), 0.0, atol=1e-6)


def test_overrides_change_the_architecture():
    model = zoo.get("hyper_wrn_40_1", depth=16, width=2, num_classes=100, z_dim=8)
    layers = _hyper_layers(model)
    assert len(layers) == 12
    assert layers[0].generator.embedding_size == 8
    assert model.outputs[0].shape[-1] == 100
    with pytest.raises(ValueError, match="depth=11"):
        zoo.get("wrn_40_1", depth=11)
    with pytest.raises(ValueError, match="basic_channels=24"):
        zoo.get("hyper_wrn_40_1", basic_channels=24)


def test_batch_norm_is_synchronized_and_the_trainer_finds_it():
    """On TensorFlow every BN is synchronized (zoo/layers/batch_norm.py), and the trainer's XLA step
    switches each one to replica-local moments while tracing (trainers/loop.py)."""
    from trainers.loop import replica_local_batch_norm

    model = zoo.get("wrn_40_1", depth=10)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 3 * 2 + 1
    assert all(bn.synchronized and bn.momentum == 0.9 and bn.epsilon == 1e-5 for bn in bns)
    with replica_local_batch_norm(model):
        assert not any(bn.synchronized for bn in bns)
    assert all(bn.synchronized for bn in bns)


def test_batch_norm_trains_under_a_single_device_mirrored_strategy():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = zoo.get("hyper_wrn_40_1", depth=10)
    x = _images((32, 32, 3), batch=4)
    bn = model.get_layer("final_bn")
    before = bn.moving_mean.numpy().copy()
    out = strategy.run(lambda images: model(images, training=True), args=(tf.constant(x),))
    assert tuple(strategy.experimental_local_results(out)[0].shape) == (4, 10)
    assert not np.allclose(bn.moving_mean.numpy(), before)


def test_weight_decay_losses():
    model = zoo.get("hyper_wrn_40_1", depth=10)
    model(_images((32, 32, 3), batch=2))
    # conv1 + 2 shortcut 1x1 kernels + dense kernel (regularizers) and 6 generated kernels (add_loss).
    assert len(model.losses) == 4 + 6
    wd = zoo.describe("hyper_wrn_40_1")["config"]["weight_decay"]
    kernels = [ops.convert_to_numpy(layer.kernel) for layer in _hyper_layers(model)]
    kernels += [model.get_layer(n).kernel.numpy() for n in ("conv1", "logits")]
    kernels += [layer.kernel.numpy() for layer in model.layers if layer.name.endswith("_shortcut")]
    expected = sum(0.5 * wd * float(np.sum(np.square(k))) for k in kernels)
    np.testing.assert_allclose(float(sum(model.losses)), expected, rtol=1e-4)
    assert zoo.get("hyper_conv_mnist").losses == []  # A.3.1: no L2 on MNIST


@pytest.mark.parametrize(
    "name, overrides", [("hyper_conv_mnist", {}), ("conv_mnist", {}), ("hyper_wrn_40_1", {"depth": 10})]
)
def test_keras_round_trip_is_identical(tmp_path, name, overrides):
    model = zoo.get(name, **overrides)
    x = _images(model.inputs[0].shape[1:], batch=2)
    model(x, training=True)  # move the BN statistics away from their initial values
    expected = ops.convert_to_numpy(model(x, training=False))
    path = os.path.join(tmp_path, f"{name}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(ops.convert_to_numpy(loaded(x, training=False)), expected)
    assert _trainable(loaded) == _trainable(model)
    hyper = _hyper_layers(loaded)
    assert len({id(layer.generator) for layer in hyper}) == (1 if hyper else 0)


def _train(model, x, y, steps, learning_rate):
    optimizer = keras.optimizers.Adam(learning_rate)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def step():  # eager: tracing costs more than the few steps here
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
            total = loss + tf.add_n(model.losses) if model.losses else loss
        grads = tape.gradient(total, model.trainable_weights)
        optimizer.apply(grads, model.trainable_weights)
        return loss

    return [float(step()) for _ in range(steps)]


@pytest.mark.parametrize(
    "name, overrides, batch, steps, lr",
    [
        ("hyper_conv_mnist", {}, 32, 10, 3e-3),
        ("hyper_wrn_40_1", {"depth": 10, "input_shape": (16, 16, 3)}, 8, 6, 2e-3),
    ],
)
def test_training_steps_lower_the_loss(name, overrides, batch, steps, lr):
    model = zoo.get(name, **overrides)
    x = _images(model.inputs[0].shape[1:], batch=batch, seed=1)
    y = np.random.default_rng(2).integers(0, 10, size=batch)
    embeddings = [layer.embeddings.numpy().copy() for layer in _hyper_layers(model)]
    w_out = _hyper_layers(model)[0].generator.w_out.numpy().copy()
    losses = _train(model, x, y, steps, lr)
    assert losses[-1] < 0.7 * losses[0], losses
    assert all(np.isfinite(losses))
    for layer, before in zip(_hyper_layers(model), embeddings, strict=True):
        assert not np.allclose(layer.embeddings.numpy(), before)
    assert not np.allclose(_hyper_layers(model)[0].generator.w_out.numpy(), w_out)
