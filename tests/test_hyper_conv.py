"""KernelGenerator (Eq. 2) and HyperConv2D (Eq. 3): counts, layout, gradients, init scale, saving."""

import doctest
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import zoo.layers.hyper_conv
from zoo.layers import HyperConv2D, KernelGenerator


def _built_generator(n_z, f, n_in, n_out, hidden_size=None, random_biases=True):
    gen = KernelGenerator(n_z, f, n_in, n_out, hidden_size=hidden_size)
    gen.build((None, n_z))
    if random_biases:  # zeros at init; make them non-zero so the reference checks them too
        rng = np.random.default_rng(1)
        gen.b_in.assign(rng.normal(size=gen.b_in.shape).astype("float32"))
        gen.b_out.assign(rng.normal(size=gen.b_out.shape).astype("float32"))
    return gen


@pytest.mark.parametrize(
    "n_z, f, n_in, n_out, hidden, expected",
    [
        (4, 7, 16, 16, None, 4_240),  # MNIST generator (§4.1): 3,136 + 784 + 256 + 64
        (64, 3, 16, 16, None, 75_920),  # WRN generator (§4.2): 66,560 + 9,360
        (8, 3, 4, 6, 5, 5 * 9 * 4 + 3 * 6 * 3 * 6),  # d != N_z
    ],
)
def test_generator_parameter_count(n_z, f, n_in, n_out, hidden, expected):
    gen = _built_generator(n_z, f, n_in, n_out, hidden, random_biases=False)
    d = hidden or n_z
    assert gen.count_params() == expected == d * (n_z + 1) * n_in + f * n_out * f * (d + 1)
    assert gen.expected_param_count() == expected


def test_generator_matches_equation_2():
    n_z, f, n_in, n_out, d = 3, 2, 4, 5, 6
    gen = _built_generator(n_z, f, n_in, n_out, hidden_size=d)
    z = np.random.default_rng(0).normal(size=(2, n_z)).astype("float32")
    out = ops.convert_to_numpy(gen(z))
    assert out.shape == (2, f, f, n_in, n_out)
    w_in, b_in = gen.w_in.numpy(), gen.b_in.numpy()
    w_out, b_out = gen.w_out.numpy(), gen.b_out.numpy()
    for m in range(2):
        for i in range(n_in):
            a_i = z[m] @ w_in[i] + b_in[i]  # a_i = W_i z + B_i
            k_i = (a_i @ w_out + b_out).reshape(f, f, n_out)  # K_i = <W_out, a_i> + B_out
            np.testing.assert_allclose(out[m, :, :, i, :], k_i, rtol=1e-5, atol=1e-5)


def test_kernel_tiling_layout():
    gen = _built_generator(3, 3, 4, 4)
    layer = HyperConv2D(12, 3, generator=gen)  # C_in 8 -> 2 input blocks, C_out 12 -> 3 output blocks
    layer.build((None, 5, 5, 8))
    assert tuple(layer.embeddings.shape) == (6, 3)
    kernel = ops.convert_to_numpy(layer.kernel)
    assert kernel.shape == (3, 3, 8, 12)
    basic = ops.convert_to_numpy(gen(layer.embeddings))
    for r in range(2):
        for c in range(3):
            np.testing.assert_array_equal(
                kernel[:, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4], basic[3 * r + c]
            )
    assert not np.allclose(basic[0], basic[1])  # every tile has its own embedding


@pytest.mark.parametrize("strides, padding", [(1, "same"), (2, "valid"), (2, "same")])
def test_call_is_a_convolution_with_the_generated_kernel(strides, padding):
    gen = _built_generator(3, 3, 4, 4)
    layer = HyperConv2D(8, 3, generator=gen, strides=strides, padding=padding)
    x = np.random.default_rng(0).normal(size=(2, 7, 7, 4)).astype("float32")
    y = ops.convert_to_numpy(layer(x))
    layer.bias.assign(np.arange(8, dtype="float32"))
    y = ops.convert_to_numpy(layer(x))
    expected = tf.nn.conv2d(x, layer.kernel, strides=strides, padding=padding.upper()) + np.arange(8)
    np.testing.assert_allclose(y, expected.numpy(), rtol=1e-5, atol=1e-5)
    assert y.shape == layer.compute_output_shape(x.shape)


def test_errors_name_the_bad_values():
    gen = KernelGenerator(4, 3, 16, 16)
    with pytest.raises(ValueError, match=r"filters=24 .*out_channels=16"):
        HyperConv2D(24, 3, generator=gen)
    with pytest.raises(ValueError, match=r"kernel_size=5 .*3"):
        HyperConv2D(16, 5, generator=gen)
    with pytest.raises(ValueError, match=r"input channels 8 .*in_channels=16"):
        HyperConv2D(16, 3, generator=gen)(np.zeros((1, 4, 4, 8), "float32"))
    with pytest.raises(ValueError, match="padding='causal'"):
        HyperConv2D(16, 3, generator=gen, padding="causal")
    with pytest.raises(TypeError, match="KernelGenerator"):
        HyperConv2D(16, 3, generator=keras.layers.Dense(3))
    with pytest.raises(ValueError, match="embedding_size=0"):
        KernelGenerator(0, 3)


def test_gradients_reach_embeddings_and_generator():
    gen = KernelGenerator(4, 3, 4, 4)
    layers = [HyperConv2D(8, 3, generator=gen), HyperConv2D(4, 3, generator=gen)]
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 4)).astype("float32")
    with tf.GradientTape() as tape:
        y = layers[1](tf.nn.relu(layers[0](x)))
        loss = tf.reduce_sum(tf.square(y - 1.0))
    variables = [layers[0].embeddings, layers[1].embeddings, *gen.trainable_weights]
    grads = tape.gradient(loss, variables)
    assert len(gen.trainable_weights) == 4
    for v, g in zip(variables, grads, strict=True):
        assert g is not None, v.path
        assert float(tf.reduce_max(tf.abs(g))) > 0.0, v.path


@pytest.mark.parametrize(
    "n_z, f, c_in, c_out",
    [(4, 7, 16, 16), (64, 3, 16, 16), (64, 3, 64, 64), (64, 3, 32, 128)],
)
def test_generated_kernel_starts_at_he_scale(n_z, f, c_in, c_out):
    gen = KernelGenerator(n_z, f, 16, 16)
    layer = HyperConv2D(c_out, f, generator=gen)
    layer.build((None, 8, 8, c_in))
    kernel = ops.convert_to_numpy(layer.kernel)
    he = math.sqrt(2.0 / (f * f * c_in))
    assert abs(kernel.std() / he - 1.0) < 0.2, (kernel.std(), he)
    assert abs(kernel.mean()) < 0.1 * he
    # Every embedding row has the fixed norm sqrt(N_z) * he (no chi-square spread).
    norms = np.linalg.norm(layer.embeddings.numpy(), axis=-1)
    np.testing.assert_allclose(norms, math.sqrt(n_z) * he, rtol=1e-5)


def test_one_generator_serves_layers_of_different_fan_in_at_he_scale():
    gen = KernelGenerator(64, 3, 16, 16)
    small, large = HyperConv2D(16, 3, generator=gen), HyperConv2D(128, 3, generator=gen)
    small.build((None, 8, 8, 16))
    large.build((None, 8, 8, 128))
    ratio = float(np.std(small.kernel)) / float(np.std(large.kernel))
    assert abs(ratio - math.sqrt(128 / 16)) < 0.25 * math.sqrt(8)


def test_weight_decay_is_l2_on_generated_kernel():
    gen = KernelGenerator(4, 3, 4, 4)
    layer = HyperConv2D(8, 3, generator=gen, weight_decay=1e-2)
    plain = HyperConv2D(8, 3, generator=gen)
    x = np.ones((1, 5, 5, 4), "float32")
    layer(x)
    plain(x)
    assert len(layer.losses) == 1 and plain.losses == []
    expected = 0.5 * 1e-2 * np.sum(np.square(ops.convert_to_numpy(layer.kernel)))
    np.testing.assert_allclose(float(layer.losses[0]), expected, rtol=1e-5)


def _shared_model():
    gen = KernelGenerator(4, 3, 4, 4, name="shared_generator")
    images = keras.Input((6, 6, 4), name="images")
    x = HyperConv2D(8, 3, generator=gen, name="a")(images)
    x = HyperConv2D(8, 3, generator=gen, strides=2, name="b")(keras.layers.ReLU()(x))
    x = HyperConv2D(4, 3, generator=gen, use_bias=False, name="c")(x)
    return keras.Model(images, x)


def test_keras_round_trip_keeps_one_shared_generator(tmp_path):
    model = _shared_model()
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 4)).astype("float32")
    hyper = [model.get_layer(n) for n in "abc"]
    assert len({id(layer.generator) for layer in hyper}) == 1
    # 4 generator weights + 3 embeddings + 2 biases: the shared generator is counted once.
    assert len(model.trainable_weights) == 9
    assert model.count_params() == 4 * 5 * 4 + 3 * 4 * 3 * 5 + (2 + 4 + 2) * 4 + (8 + 8)
    for layer in hyper:  # distinct values so a mix-up of embeddings or biases would show
        layer.embeddings.assign(np.random.default_rng(len(layer.name)).normal(size=layer.embeddings.shape))
    expected = ops.convert_to_numpy(model(x))

    path = os.path.join(tmp_path, "shared.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    loaded_hyper = [loaded.get_layer(n) for n in "abc"]
    generators = {id(layer.generator) for layer in loaded_hyper}
    assert len(generators) == 1
    assert len(loaded.trainable_weights) == 9
    assert loaded.count_params() == model.count_params()
    np.testing.assert_array_equal(ops.convert_to_numpy(loaded(x)), expected)
    for old, new in zip(hyper, loaded_hyper, strict=True):
        np.testing.assert_array_equal(ops.convert_to_numpy(new.kernel), ops.convert_to_numpy(old.kernel))
    # Training the loaded model moves every layer's kernel through the one generator.
    loaded_hyper[0].generator.b_out.assign_add(np.ones(loaded_hyper[0].generator.b_out.shape, "float32"))
    for old, new in zip(hyper, loaded_hyper, strict=True):
        assert not np.allclose(ops.convert_to_numpy(new.kernel), ops.convert_to_numpy(old.kernel))


def test_generator_config_round_trip():
    gen = KernelGenerator(8, 3, 4, 6, hidden_size=5, name="g")
    clone = KernelGenerator.from_config(gen.get_config())
    assert (clone.embedding_size, clone.kernel_size, clone.in_channels, clone.out_channels, clone.d) == (
        8, 3, 4, 6, 5,
    )  # fmt: skip


def test_docstring_examples_run():
    result = doctest.testmod(zoo.layers.hyper_conv, extraglobs={"np": np, "keras": keras})
    assert result.attempted > 0 and result.failed == 0
