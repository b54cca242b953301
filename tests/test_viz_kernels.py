"""Generated-kernel pictures (zoo/viz/kernels.py): grid layout, scaling, TensorBoard images, PNGs."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo.tasks.image import TASK
from zoo.viz import kernels


def _kernel(kh=3, kw=2, n_in=2, n_out=3):
    k = np.arange(kh * kw * n_in * n_out, dtype=np.float32).reshape(kh, kw, n_in, n_out) - 10.0
    return k


def test_grid_layout_and_global_scale():
    k = _kernel()
    grid = kernels.kernel_grid(k, pad=1)
    assert grid.shape == (2 * 4 - 1, 3 * 3 - 1) and grid.dtype == np.float32
    peak = np.max(np.abs(k))  # 25
    for i in range(2):
        for j in range(3):
            tile = grid[i * 4 : i * 4 + 3, j * 3 : j * 3 + 2]
            np.testing.assert_allclose(tile, k[:, :, i, j] / (2 * peak) + 0.5, rtol=1e-6)
    assert np.all(grid[3, :] == 1.0) and np.all(grid[:, 2] == 1.0)  # separators are background
    assert grid.max() == pytest.approx(1.0) and kernels.kernel_grid(np.zeros((1, 1, 1, 1))).item() == 0.5


def test_grid_per_tile_scale_crop_and_errors():
    k = _kernel()
    grid = kernels.kernel_grid(k, scale="per_tile", pad=0, max_in=1, max_out=2)
    assert grid.shape == (3, 4)
    for j in range(2):
        tile = grid[:, j * 2 : j * 2 + 2]
        assert np.max(np.abs(tile - 0.5)) == pytest.approx(0.5)  # each tile uses the full range
    with pytest.raises(ValueError, match=r"kernel \[kh, kw, C_in, C_out\], got shape \(3, 3\)"):
        kernels.kernel_grid(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="scale='log' is not valid; choices: global, per_tile"):
        kernels.kernel_grid(k, scale="log")


def test_summary_image_shape_and_zoom():
    img = kernels.kernel_summary_image(_kernel(), zoom=3)
    assert img.shape == (1, 7 * 3, 8 * 3, 1)
    np.testing.assert_array_equal(img[0, :3, :3, 0], np.full((3, 3), img[0, 0, 0, 0]))


def test_hyper_kernels_of_models():
    model = zoo.get("hyper_conv_mnist")
    found = kernels.hyper_kernels(model)
    assert list(found) == ["conv2"]
    assert found["conv2"].shape == (7, 7, 16, 16)
    np.testing.assert_allclose(found["conv2"], np.asarray(model.get_layer("conv2").kernel))
    assert kernels.hyper_kernels(zoo.get("conv_mnist")) == {}


def test_write_summaries_writes_kernel_image(tmp_path):
    model = zoo.get("hyper_conv_mnist")
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default():
        TASK.write_summaries(model, step=5)
    writer.flush()
    images = []
    for path in glob.glob(str(tmp_path / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == "generated_kernels/conv2":
                    png = tf.make_ndarray(value.tensor)[2]  # [width, height, encoded image]
                    images.append((event.step, tf.io.decode_png(png).numpy()))
    assert len(images) == 1 and images[0][0] == 5
    side = (16 * 8 - 1) * 4  # 16 tiles of 7 px + 15 separators, zoom 4
    assert images[0][1].shape == (side, side, 1)


def test_png_files(tmp_path):
    import matplotlib.image

    path = str(tmp_path / "fig" / "kernel.png")
    grid = kernels.save_kernel_png(path, _kernel(), title="k")
    assert grid.shape == (7, 8)
    assert matplotlib.image.imread(path).ndim == 3
    model = zoo.get("hyper_conv_mnist")
    names = kernels.save_model_kernels_png(str(tmp_path / "model.png"), model)
    assert names == ["conv2"] and os.path.getsize(tmp_path / "model.png") > 1000
    assert sorted(os.listdir(tmp_path)) == ["fig", "model.png"]  # no temporary files left
    with pytest.raises(ValueError, match="no HyperConv2D layer"):
        kernels.save_model_kernels_png(str(tmp_path / "none.png"), zoo.get("conv_mnist"))
