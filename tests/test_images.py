"""Image data (zoo/data/images.py) and the image classification task (zoo/tasks/image.py).

The MNIST and CIFAR-10 files are written here byte by byte in the official formats (IDX with its magic
numbers, gzip; CIFAR python pickles with channel-major rows), independently of the module's writers.
"""

import gzip
import os
import pickle
import struct

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo.data import images
from zoo.tasks.image import TASK, image_shape


# ------------------------------------------------------------------------------------ file fixtures
def _idx_bytes(array: np.ndarray) -> bytes:
    magic = 0x00000800 | array.ndim  # 0x0801 labels, 0x0803 images
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _pattern_images(n: int, h: int, w: int, c: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, c), dtype=np.uint8)


def _write_mnist_by_hand(directory, n_train=12, n_test=5, gz=True):
    os.makedirs(directory, exist_ok=True)
    train_x = _pattern_images(n_train, 28, 28, 1, 1)[..., 0]
    train_y = (np.arange(n_train) % 10).astype(np.uint8)
    test_x = _pattern_images(n_test, 28, 28, 1, 2)[..., 0]
    test_y = ((np.arange(n_test) + 3) % 10).astype(np.uint8)
    files = {
        "train-images-idx3-ubyte.gz": train_x,
        "train-labels-idx1-ubyte.gz": train_y,
        "t10k-images-idx3-ubyte.gz": test_x,
        "t10k-labels-idx1-ubyte.gz": test_y,
    }
    for name, array in files.items():
        if gz:
            with gzip.open(os.path.join(directory, name), "wb") as f:
                f.write(_idx_bytes(array))
        else:
            with open(os.path.join(directory, name[: -len(".gz")]), "wb") as f:
                f.write(_idx_bytes(array))
    return train_x, train_y, test_x, test_y


def _write_cifar_by_hand(directory, per_batch=3, n_test=4):
    folder = os.path.join(directory, "cifar-10-batches-py")
    os.makedirs(folder)
    out = {}
    for k, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        n = n_test if name == "test_batch" else per_batch
        rows = np.random.default_rng(10 + k).integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [(k + i) % 10 for i in range(n)]
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": rows}, f, protocol=2)
        out[name] = (rows, np.array(labels))
    return out


# ------------------------------------------------------------------------------------------ digits
def test_digits_sizes_split_and_values():
    from sklearn.datasets import load_digits

    train_x, train_y = images.load("digits", "train")
    test_x, test_y = images.load("digits", "test")
    val_x, val_y = images.load("digits", "validation")
    assert train_x.shape == (1347, 28, 28, 1) and test_x.shape == (450, 28, 28, 1)
    assert val_x.shape == (0, 28, 28, 1) and val_y.shape == (0,)
    assert train_x.dtype == np.uint8 and train_y.dtype == np.int32
    # The split is a partition of the 1,797 scikit-learn digits: label counts add up.
    all_y = load_digits().target
    np.testing.assert_array_equal(
        np.bincount(train_y, minlength=10) + np.bincount(test_y, minlength=10),
        np.bincount(all_y, minlength=10),
    )
    assert train_x.max() == 255 and train_x.min() == 0
    # Fixed: a second load is identical.
    again_x, again_y = images.load("digits", "test")
    np.testing.assert_array_equal(again_x, test_x)
    np.testing.assert_array_equal(again_y, test_y)
    assert images.split_sizes("digits") == {"train": 1347, "validation": 0, "test": 450}


def test_digits_resize_matches_tf_bilinear():
    from sklearn.datasets import load_digits

    small = load_digits().images[:20] * (255.0 / 16.0)
    ours = images.resize_bilinear(small, (28, 28))
    ref = tf.image.resize(small[..., None], (28, 28), method="bilinear", antialias=False).numpy()[..., 0]
    np.testing.assert_allclose(ours, ref, atol=1e-3)


def test_digits_rejects_validation_size_and_bad_names():
    with pytest.raises(ValueError, match="fixed train/test split"):
        images.load("digits", "train", validation_size=100)
    with pytest.raises(ValueError, match="unknown image dataset 'svhn'.*digits, mnist, cifar10"):
        images.load("svhn", "train")
    with pytest.raises(ValueError, match="unknown split 'dev'.*train, validation, test"):
        images.load("digits", "dev")


# ------------------------------------------------------------------------------------------- MNIST
@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_files_and_validation_carve(tmp_path, gz):
    train_x, train_y, test_x, test_y = _write_mnist_by_hand(str(tmp_path), gz=gz)
    tr_x, tr_y = images.load("mnist", "train", str(tmp_path), validation_size=4)
    va_x, va_y = images.load("mnist", "validation", str(tmp_path), validation_size=4)
    te_x, te_y = images.load("mnist", "test", str(tmp_path), validation_size=4)
    assert tr_x.shape == (8, 28, 28, 1) and va_x.shape == (4, 28, 28, 1) and te_x.shape == (5, 28, 28, 1)
    np.testing.assert_array_equal(tr_x[..., 0], train_x[:8])
    np.testing.assert_array_equal(va_x[..., 0], train_x[8:])  # validation = the END of the training file
    np.testing.assert_array_equal(np.concatenate([tr_y, va_y]), train_y)
    np.testing.assert_array_equal(te_x[..., 0], test_x)
    np.testing.assert_array_equal(te_y, test_y)


def test_mnist_in_subfolder_and_writer_matches_format(tmp_path):
    train_x, train_y, test_x, test_y = _write_mnist_by_hand(str(tmp_path / "hand"))
    images.write_mnist(str(tmp_path / "data" / "mnist"), (train_x, train_y), (test_x, test_y))
    for name in ["train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]:
        with gzip.open(tmp_path / "hand" / name) as a, gzip.open(tmp_path / "data" / "mnist" / name) as b:
            assert a.read() == b.read()
    # data_dir/mnist is found from data_dir.
    x, y = images.load("mnist", "test", str(tmp_path / "data"))
    np.testing.assert_array_equal(y, test_y)


def test_mnist_paper_split_default_and_errors(tmp_path):
    assert images.VALIDATION_SIZE["mnist"] == 5000 and images.VALIDATION_SIZE["cifar10"] == 5000
    _write_mnist_by_hand(str(tmp_path))
    # 12 training images cannot give the paper's 5,000 validation images: the error says how to fix it.
    with pytest.raises(ValueError, match=r"validation_size=5000.*12 examples.*--config validation_size"):
        images.load("mnist", "train", str(tmp_path))
    missing = tmp_path / "nothing"
    with pytest.raises(images.DataFormatError, match="does not exist"):
        images.load("mnist", "train", str(missing))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(images.DataFormatError, match="train-images-idx3-ubyte.gz.*t10k-labels-idx1-ubyte.gz"):
        images.check_data_dir("mnist", str(empty))


def test_mnist_bad_magic_and_count_mismatch(tmp_path):
    _write_mnist_by_hand(str(tmp_path))
    bad = tmp_path / "t10k-images-idx3-ubyte.gz"
    with gzip.open(bad, "wb") as f:
        f.write(struct.pack(">IIII", 0x00000D03, 5, 28, 28) + bytes(5 * 784))  # float type code 0x0D
    with pytest.raises(
        images.DataFormatError, match=r"t10k-images-idx3-ubyte.gz: bad IDX magic number 0x00000d03"
    ):
        images.load("mnist", "test", str(tmp_path))
    with gzip.open(bad, "wb") as f:
        f.write(_idx_bytes(np.zeros((4, 28, 28), np.uint8)))
    with pytest.raises(images.DataFormatError, match="4 images but .* 5 labels"):
        images.load("mnist", "test", str(tmp_path))
    with gzip.open(bad, "wb") as f:
        f.write(_idx_bytes(np.zeros((5, 28, 28), np.uint8))[:-7])
    with pytest.raises(images.DataFormatError, match="bytes follow"):
        images.load("mnist", "test", str(tmp_path))


# ---------------------------------------------------------------------------------------- CIFAR-10
def test_cifar_pickles_channel_major_and_split(tmp_path):
    written = _write_cifar_by_hand(str(tmp_path))
    x, y = images.load("cifar10", "train", str(tmp_path), validation_size=5)
    vx, vy = images.load("cifar10", "validation", str(tmp_path), validation_size=5)
    tx, ty = images.load("cifar10", "test", str(tmp_path))
    assert x.shape == (10, 32, 32, 3) and vx.shape == (5, 32, 32, 3) and tx.shape == (4, 32, 32, 3)
    rows = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels = np.concatenate([written[f"data_batch_{i}"][1] for i in range(1, 6)])
    full = np.concatenate([x, vx])
    # pixel (r, c) of channel ch is row entry ch * 1024 + r * 32 + c.
    for n, r, c, ch in [(0, 0, 0, 0), (3, 5, 7, 1), (14, 31, 30, 2), (9, 16, 0, 2)]:
        assert full[n, r, c, ch] == rows[n, ch * 1024 + r * 32 + c]
    np.testing.assert_array_equal(np.concatenate([y, vy]), labels)
    np.testing.assert_array_equal(ty, written["test_batch"][1])


def test_cifar_writer_roundtrip_and_missing_file(tmp_path):
    rng = np.random.default_rng(0)
    batches = [(rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8), [i, i + 1]) for i in range(5)]
    test = (rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8), [7, 8, 9])
    images.write_cifar10(str(tmp_path), batches, test)
    tx, ty = images.load("cifar10", "test", str(tmp_path))
    np.testing.assert_array_equal(tx, test[0])
    np.testing.assert_array_equal(ty, [7, 8, 9])
    os.remove(tmp_path / "cifar-10-batches-py" / "test_batch")
    with pytest.raises(images.DataFormatError, match=r"missing test_batch.*data_batch_1, .*test_batch"):
        images.check_data_dir("cifar10", str(tmp_path))
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        f.write(b"not a pickle")
    with pytest.raises(images.DataFormatError, match="test_batch: not a CIFAR-10 python pickle batch"):
        images.load("cifar10", "test", str(tmp_path))


class _RunsCommand:
    """Unpickling this object calls ``os.system(command)`` (what a crafted data_batch_1 does)."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_cifar_malicious_pickle_runs_nothing(tmp_path):
    _write_cifar_by_hand(str(tmp_path))
    marker = tmp_path / "pwned"
    batch = {b"labels": [0], b"data": _RunsCommand(f"touch {marker}")}
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "wb") as f:
        pickle.dump(batch, f, protocol=2)
    forbidden = f"{os.system.__module__}.system"  # posix.system on Linux
    with pytest.raises(
        images.UnsafePickleError, match=rf"data_batch_1: refused to unpickle global '{forbidden}'"
    ):
        images.load("cifar10", "train", str(tmp_path), validation_size=1)
    assert not marker.exists()
    # The refusal comes before the global is looked up: builtins are refused too.
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        f.write(pickle.dumps({b"data": eval}, protocol=2))  # noqa: S307 - pickled by reference, never called
    with pytest.raises(images.UnsafePickleError, match=r"test_batch: refused.*'(__builtin__|builtins).eval'"):
        images.load("cifar10", "test", str(tmp_path))


@pytest.mark.parametrize("module", ["numpy.core.multiarray", "numpy._core.multiarray"])
def test_cifar_batches_of_numpy_1_and_2_load(tmp_path, module):
    """The official batches (Python 2, numpy 1) name ``numpy.core.multiarray._reconstruct``; numpy 2 writes
    ``numpy._core``: both load through the restricted unpickler."""
    written = _write_cifar_by_hand(str(tmp_path))
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    raw = path.read_bytes()
    for name in (b"numpy.core.multiarray\n", b"numpy._core.multiarray\n"):
        raw = raw.replace(name, module.encode() + b"\n")
    assert module.encode() + b"\n_reconstruct" in raw
    path.write_bytes(raw)
    tx, ty = images.load("cifar10", "test", str(tmp_path))
    rows, labels = written["test_batch"]
    np.testing.assert_array_equal(tx.transpose(0, 3, 1, 2).reshape(len(rows), 3072), rows)
    np.testing.assert_array_equal(ty, labels)


# ------------------------------------------------------------------------------------ augmentation
def _crops(padded: np.ndarray, h: int, w: int) -> list[np.ndarray]:
    p = padded.shape[0] - h
    return [padded[i : i + h, j : j + w] for i in range(p + 1) for j in range(p + 1)]


@pytest.mark.parametrize("kind,size,pad", [("mnist_pad_crop", 28, 1), ("cifar_pad_crop_flip", 32, 2)])
def test_augment_is_a_crop_of_the_padded_image(kind, size, pad):
    c = 1 if kind == "mnist_pad_crop" else 3
    image = _pattern_images(1, size, size, c, 5)[0]
    padded = np.pad(image, [(pad, pad), (pad, pad), (0, 0)])
    candidates = _crops(padded, size, size)
    if kind == "cifar_pad_crop_flip":
        candidates += [x[:, ::-1] for x in candidates]
    seen, flips = set(), 0
    for i in range(200):
        out = images.augment_image(tf.constant(image), kind, tf.constant([3, i], tf.int64)).numpy()
        matches = [k for k, cand in enumerate(candidates) if np.array_equal(out, cand)]
        assert matches, f"augmented image {i} is no crop of the padded image"
        seen.add(matches[0] % ((2 * pad + 1) ** 2))
        flips += matches[0] >= (2 * pad + 1) ** 2
    assert len(seen) == (2 * pad + 1) ** 2  # every offset occurs in 200 draws
    if kind == "cifar_pad_crop_flip":
        assert 70 <= flips <= 130  # p = 1/2
    else:
        assert flips == 0
    again = images.augment_image(tf.constant(image), kind, tf.constant([3, 7], tf.int64)).numpy()
    first = images.augment_image(tf.constant(image), kind, tf.constant([3, 7], tf.int64)).numpy()
    np.testing.assert_array_equal(again, first)
    with pytest.raises(ValueError, match="unknown augment 'rotate'"):
        images.augment_image(tf.constant(image), "rotate", tf.constant([0, 0], tf.int64))


def test_train_dataset_batches_labels_and_determinism():
    n = 10
    labels = np.arange(n, dtype=np.int32)
    imgs = np.broadcast_to((labels * 20).astype(np.uint8)[:, None, None, None], (n, 28, 28, 1)).copy()
    ds = images.train_dataset(imgs, labels, 4, augment=None, seed=1)
    batches = list(ds.take(5))
    for x, y in batches:
        assert x.shape == (4, 28, 28, 1) and x.dtype == tf.float32 and y.dtype == tf.int32
        np.testing.assert_allclose(x.numpy()[:, 0, 0, 0] * 255.0, y.numpy() * 20.0, atol=1e-3)
    # repeated and reshuffled: the first 10 examples are a permutation of all examples.
    first = np.concatenate([b[1].numpy() for b in batches])[:n]
    assert sorted(first) == list(range(n))
    again = list(images.train_dataset(imgs, labels, 4, augment=None, seed=1).take(5))
    for (x1, y1), (x2, y2) in zip(batches, again, strict=True):
        np.testing.assert_array_equal(y1.numpy(), y2.numpy())
        np.testing.assert_array_equal(x1.numpy(), x2.numpy())
    ev = list(images.eval_dataset(imgs, labels, 4))
    assert [len(b[1]) for b in ev] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b[1].numpy() for b in ev]), labels)


# -------------------------------------------------------------------------------------------- task
def _tiny_model(shape=(28, 28, 1)):
    inp = keras.Input(shape, name="images")
    x = keras.layers.Conv2D(3, 3, strides=2, activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(10)(x))


def test_task_build_data_on_mnist_files(tmp_path):
    _write_mnist_by_hand(str(tmp_path))
    recipe = {"augment": "mnist_pad_crop", "validation_size": 4, "eval_batch_size": 3}
    data = TASK.build_data("mnist", str(tmp_path), 4, {}, recipe, seed=0)
    assert dict(data.sizes) == {"train": 8, "eval": 4, "test": 5}
    assert data.info["image_shape"] == (28, 28, 1) and data.info["num_classes"] == 10
    x, y = next(iter(data.train))
    assert x.shape == (4, 28, 28, 1) and float(tf.reduce_max(x)) <= 1.0
    assert [len(b[1]) for b in data.test] == [3, 2]
    with pytest.raises(ValueError, match="augment='flip'"):
        TASK.build_data("mnist", str(tmp_path), 4, {}, {"augment": "flip", "validation_size": 4}, seed=0)
    with pytest.raises(ValueError, match="--dataset='svhn'.*digits, mnist, cifar10"):
        TASK.check_data("svhn", None)
    with pytest.raises(images.DataFormatError, match="--data_dir=.*does not exist"):
        TASK.check_data("mnist", str(tmp_path / "missing"))


def test_task_digits_ignores_mnist_validation_size():
    data = TASK.build_data("digits", None, 32, {}, {"augment": "mnist_pad_crop", "validation_size": 5000}, 0)
    assert dict(data.sizes) == {"train": 1347, "eval": 0, "test": 450} and data.eval is None


def test_task_refuses_a_model_for_other_images_before_training():
    wrn = zoo.describe("wrn_40_1")["config"]
    with pytest.raises(ValueError) as e:
        TASK.build_data("digits", None, 32, wrn, {}, seed=0)
    message = str(e.value)
    assert (
        "--model takes images of shape (32, 32, 3) (its config)" in message
        and "--dataset='digits' has (28, 28, 1)" in message
    )
    assert "conv_mnist, hyper_conv_mnist" in message  # the registered models that fit
    mnist = zoo.describe("conv_mnist")["config"]
    data = TASK.build_data("digits", None, 32, mnist, {}, seed=0)
    TASK.prepare_model(_tiny_model(), data)  # the built model fits too
    with pytest.raises(ValueError, match=r"takes images of shape \(32, 32, 3\) \(model 'wrn_40_1'\)"):
        TASK.prepare_model(zoo.get("wrn_40_1", depth=10), data)


def test_task_refuses_labels_outside_num_classes_before_training():
    mnist = zoo.describe("conv_mnist")["config"]
    with pytest.raises(ValueError) as e:
        TASK.build_data("digits", None, 32, {**mnist, "num_classes": 5}, {}, seed=0)
    message = str(e.value)
    assert "--dataset='digits' has label 9 in its train split (labels 0..9)" in message
    assert "--model has num_classes=5 (its config): labels must lie in [0, 5)" in message
    assert "--config num_classes=10" in message
    data = TASK.build_data("digits", None, 32, mnist, {}, seed=0)
    with pytest.raises(ValueError, match=r"label 9 .* num_classes=5 \(model 'conv_mnist'\)"):
        TASK.prepare_model(zoo.get("conv_mnist", num_classes=5), data)


def test_task_forward_metrics_and_evaluate_match_numpy():
    model = _tiny_model()
    x = _pattern_images(7, 28, 28, 1, 3).astype(np.float32) / 255.0
    y = np.array([0, 1, 2, 3, 4, 5, 6], np.int32)
    out = TASK.forward(model, (tf.constant(x), tf.constant(y)), (), training=False)
    logits = model(x).numpy().astype(np.float64)
    logp = logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))
    np.testing.assert_allclose(out.per_example_loss.numpy(), -logp[np.arange(7), y], rtol=1e-5)
    metrics = TASK.metrics()
    TASK.update_metrics(metrics, (x, y), out.outputs)
    want_acc = np.mean(np.argmax(logits, 1) == y)
    assert float(metrics["accuracy"].result()) == pytest.approx(want_acc)
    result = TASK.evaluate(model, images.eval_dataset((x * 255).round().astype(np.uint8), y, 3))
    assert result["accuracy"] == pytest.approx(want_acc)
    assert result["loss"] == pytest.approx(np.mean(-logp[np.arange(7), y]), rel=1e-5)
    assert result["num_examples"] == 7


def test_task_serving_function_on_uint8():
    model = _tiny_model()
    fn = TASK.serving_functions(model, {})["serving_default"]
    spec = fn.get_concrete_function().structured_input_signature[0][0]
    assert spec.name == "images" and spec.dtype == tf.uint8 and spec.shape.as_list() == [None, 28, 28, 1]
    raw = _pattern_images(5, 28, 28, 1, 4)
    out = fn(tf.constant(raw))
    assert set(out) == {"probabilities", "classes", "logits"}
    want = model(raw.astype(np.float32) / 255.0).numpy()
    np.testing.assert_allclose(out["logits"].numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["probabilities"].numpy().sum(1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(out["classes"].numpy(), np.argmax(want, 1))
    assert out["classes"].dtype == tf.int64
    warm = TASK.warmup_inputs(model, {})
    assert warm["serving_default"]["images"].shape == (2, 28, 28, 1)
    assert warm["serving_default"]["images"].dtype == np.uint8
    assert image_shape(_tiny_model((32, 32, 3))) == (32, 32, 3)


def test_mnist_without_data_dir_names_the_files():
    try:
        import tensorflow_datasets  # noqa: F401

        pytest.skip("tensorflow-datasets is installed: data_dir=None reads through it")
    except ImportError:
        pass
    with pytest.raises(images.DataFormatError, match="'mnist' needs --data_dir.*train-images-idx3-ubyte.gz"):
        TASK.check_data("mnist", None)
    with pytest.raises(
        images.DataFormatError, match="'cifar10' needs --data_dir.*data_batch_1.*cifar-10-batches-py"
    ):
        images.load("cifar10", "test")
