"""Image classification data: scikit-learn digits, MNIST (IDX files) and CIFAR-10 (python pickles).

``load(name, split)`` returns ``(images, labels)`` as numpy: ``uint8 [N, H, W, C]`` and ``int32 [N]``.
``train_dataset`` / ``eval_dataset`` turn them into tf.data pipelines of ``(float32 images in [0, 1],
int32 labels)``.

Datasets and splits (``SPLITS``: ``train``, ``validation``, ``test``):

- ``digits``: the 1,797 handwritten digits that ship inside scikit-learn (8x8, values 0..16), scaled to
  0..255 and bilinearly resized to 28x28x1 uint8 (the MNIST geometry, so the MNIST models run on them
  unchanged). A fixed permutation (seed :data:`DIGITS_SPLIT_SEED`) puts 450 digits in ``test`` and 1,347 in
  ``train``; ``validation`` is empty. Needs no files and no network (``pip install zoo[digits]``).
- ``mnist``: the four standard IDX files (gzip-compressed or not) in ``--data_dir`` or ``data_dir/mnist``:
  :data:`MNIST_FILES`. HyperNetworks A.3.1: 55k train / 5k validation / 10k test, the validation set
  being the last 5,000 images of the 60k training file.
- ``cifar10``: the python pickle batches in ``data_dir/cifar-10-batches-py`` (or ``data_dir`` itself):
  ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``. HyperNetworks A.3.2: 45k / 5k / 10k, the
  validation set being the last 5,000 images of the 50k training batches. The batches are read with a
  restricted unpickler that refuses every global but numpy's array reconstruction
  (:data:`CIFAR10_PICKLE_GLOBALS`), so a crafted file cannot run code (:class:`UnsafePickleError`).

With ``data_dir=None``, ``mnist`` and ``cifar10`` are read through tensorflow-datasets when it is installed
and already holds the prepared data (nothing is downloaded).

Augmentation (``AUGMENTATIONS``, the recipe key ``augment``):

- ``mnist_pad_crop``: zero-pad 28x28 to 30x30 and randomly crop 28x28 (HyperNetworks A.3.1).
- ``cifar_pad_crop_flip``: zero-pad 32x32 to 36x36, randomly crop 32x32 and flip left-right with
  probability 1/2 (HyperNetworks A.3.2, following Zagoruyko and Komodakis' wide resnets).

Augmentation is stateless: the crop/flip of element ``i`` of the repeated stream uses the seed
``(seed, i)``, so a run is reproducible and each epoch sees new crops.

The ``write_mnist`` / ``write_cifar10`` writers produce the same on-disk formats (used by the tests).
"""

from __future__ import annotations

import codecs
import functools
import gzip
import os
import pickle
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from zoo.io import atomic_path

__all__ = [
    "DATASETS",
    "SPLITS",
    "AUGMENTATIONS",
    "DIGITS_SPLIT_SEED",
    "DIGITS_TEST_SIZE",
    "MNIST_FILES",
    "CIFAR10_FILES",
    "VALIDATION_SIZE",
    "NUM_CLASSES",
    "IMAGE_SHAPES",
    "DataFormatError",
    "UnsafePickleError",
    "CIFAR10_PICKLE_GLOBALS",
    "load",
    "split_sizes",
    "check_data_dir",
    "resize_bilinear",
    "read_idx",
    "write_idx",
    "write_mnist",
    "write_cifar10",
    "augment_image",
    "train_dataset",
    "eval_dataset",
]

DATASETS = ("digits", "mnist", "cifar10")
SPLITS = ("train", "validation", "test")
AUGMENTATIONS = ("mnist_pad_crop", "cifar_pad_crop_flip")

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_SIZE = 450  # 25% of the 1,797 scikit-learn digits.

# split name -> (images file, labels file); the 60k training file holds train + validation.
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_FILES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
# Examples carved from the end of the training files for validation (HyperNetworks A.3.1, A.3.2).
VALIDATION_SIZE = {"digits": 0, "mnist": 5000, "cifar10": 5000}
NUM_CLASSES = {"digits": 10, "mnist": 10, "cifar10": 10}
IMAGE_SHAPES = {"digits": (28, 28, 1), "mnist": (28, 28, 1), "cifar10": (32, 32, 3)}

_IDX_UBYTE = 0x08  # IDX type code for unsigned bytes; magic = 0x0000 TT DD (type, number of dims).


class DataFormatError(ValueError):
    """A data file or directory that is missing or not in the expected format."""


# ----------------------------------------------------------------------------------------- helpers
def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise ValueError(f"unknown image dataset {name!r}; valid: {', '.join(DATASETS)}")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")


def resize_bilinear(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``[N, h, w]`` float images to ``[N, H, W]`` (half-pixel centres, edge clamp,
    the convention of ``tf.image.resize(method="bilinear")`` without antialiasing)."""

    def matrix(n_in: int, n_out: int) -> np.ndarray:
        centres = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
        centres = np.clip(centres, 0.0, n_in - 1)
        lo = np.floor(centres).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        frac = centres - lo
        m = np.zeros((n_out, n_in))
        m[np.arange(n_out), lo] += 1.0 - frac
        m[np.arange(n_out), hi] += frac
        return m

    rows = matrix(images.shape[1], size[0])
    cols = matrix(images.shape[2], size[1])
    return np.einsum("Hh,nhw,Ww->nHW", rows, images.astype(np.float64), cols)


def split_sizes(name: str, data_dir: str | None = None, validation_size: int | None = None) -> dict[str, int]:
    """``{"train": n, "validation": n, "test": n}`` for ``name`` (reads the label files only)."""
    return {s: len(load(name, s, data_dir, validation_size=validation_size)[1]) for s in SPLITS}


# ------------------------------------------------------------------------------------------ digits
@functools.lru_cache(maxsize=1)
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "dataset 'digits' needs scikit-learn (its 1,797 digits ship inside the package): "
            "pip install 'zoo[digits]'"
        ) from e
    bunch = load_digits()
    small = bunch.images.astype(np.float64) * (255.0 / 16.0)  # [1797, 8, 8], 0..16 -> 0..255
    big = resize_bilinear(small, (28, 28))
    images = np.clip(np.rint(big), 0, 255).astype(np.uint8)[..., None]
    return images, bunch.target.astype(np.int32)


def _digits_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = _load_digits()
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(labels))
    test_idx = np.sort(order[:DIGITS_TEST_SIZE])
    train_idx = np.sort(order[DIGITS_TEST_SIZE:])
    if split == "test":
        idx = test_idx
    elif split == "train":
        idx = train_idx
    else:
        idx = np.zeros((0,), dtype=int)
    return images[idx], labels[idx]


# ------------------------------------------------------------------------------------------- MNIST
def read_idx(path: str) -> np.ndarray:
    """Reads an IDX file of unsigned bytes (``.gz`` or plain) into a uint8 array of its stored shape."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataFormatError(f"{path}: cannot read IDX file ({e})") from e
    if len(data) < 4:
        raise DataFormatError(f"{path}: {len(data)} bytes, too short for an IDX header")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != _IDX_UBYTE or ndim == 0:
        magic = struct.unpack(">I", data[:4])[0]
        raise DataFormatError(
            f"{path}: bad IDX magic number 0x{magic:08x}; expected 0x00000801 (labels) or 0x00000803 "
            "(images) for unsigned-byte IDX data"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFormatError(f"{path}: truncated IDX header ({len(data)} bytes, need {header})")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise DataFormatError(
            f"{path}: IDX header says shape {shape} ({expected} bytes) but {len(data) - header} bytes follow"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def write_idx(path: str, array: np.ndarray) -> None:
    """Writes a uint8 array as an IDX file (gzip-compressed when ``path`` ends in ``.gz``); atomic."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"write_idx: expected a uint8 array, got {array.dtype}")
    payload = struct.pack(">HBB", 0, _IDX_UBYTE, array.ndim)
    payload += struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    with atomic_path(path) as tmp, (gzip.open if path.endswith(".gz") else open)(tmp, "wb") as f:
        f.write(payload)


def _mnist_dir(data_dir: str) -> str:
    """``data_dir`` or ``data_dir/mnist``, whichever holds the four IDX files."""
    wanted = [f for pair in MNIST_FILES.values() for f in pair]
    for candidate in (data_dir, os.path.join(data_dir, "mnist")):
        if all(_find(candidate, f) for f in wanted):
            return candidate
    missing = [f for f in wanted if not _find(data_dir, f)]
    raise DataFormatError(
        f"--data_dir={data_dir!r} holds no MNIST data: missing {', '.join(missing)} "
        f"(looked in {data_dir!r} and {os.path.join(data_dir, 'mnist')!r}); expected the IDX files "
        f"{', '.join(wanted)} (gzip-compressed, or uncompressed without '.gz')"
    )


def _find(directory: str, gz_name: str) -> str | None:
    for name in (gz_name, gz_name[: -len(".gz")]):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def _mnist_file_split(data_dir: str, which: str) -> tuple[np.ndarray, np.ndarray]:
    directory = _mnist_dir(data_dir)
    images_path = _find(directory, MNIST_FILES[which][0])
    labels_path = _find(directory, MNIST_FILES[which][1])
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise DataFormatError(
            f"{images_path}: expected 3-D IDX images [N, rows, cols], got shape {images.shape}"
        )
    if labels.ndim != 1:
        raise DataFormatError(f"{labels_path}: expected 1-D IDX labels [N], got shape {labels.shape}")
    if len(images) != len(labels):
        raise DataFormatError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    return images[..., None], labels.astype(np.int32)


# ---------------------------------------------------------------------------------------- CIFAR-10
def _cifar_dir(data_dir: str) -> str:
    wanted = [f for files in CIFAR10_FILES.values() for f in files]
    for candidate in (os.path.join(data_dir, CIFAR10_DIR), data_dir):
        if all(os.path.isfile(os.path.join(candidate, f)) for f in wanted):
            return candidate
    where = os.path.join(data_dir, CIFAR10_DIR)
    look = where if os.path.isdir(where) else data_dir
    missing = [f for f in wanted if not os.path.isfile(os.path.join(look, f))]
    raise DataFormatError(
        f"--data_dir={data_dir!r} holds no CIFAR-10 data: missing {', '.join(missing)} in {look!r}; "
        f"expected the python pickle batches {', '.join(wanted)} in {where!r} (or in --data_dir itself)"
    )


# The only globals a CIFAR-10 python batch refers to: numpy's array reconstruction (``numpy.core`` in the
# official Python 2 pickles, ``numpy._core`` when written by numpy 2) and ``_codecs.encode`` (how Python 3
# writes bytes in protocol 2). Everything else in a batch is a dict, list, bytes, str or int.
_RECONSTRUCT = np.zeros(0).__reduce__()[0]  # numpy's ``_reconstruct``, whatever module holds it
CIFAR10_PICKLE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class UnsafePickleError(DataFormatError):
    """A pickle that refers to a global (function or class) a data file of its kind never holds."""


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR-10 batch holds: refuses every global outside
    :data:`CIFAR10_PICKLE_GLOBALS` before it is looked up, so a crafted file cannot call anything."""

    def __init__(self, file: Any, path: str) -> None:
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return CIFAR10_PICKLE_GLOBALS[(module, name)]
        except KeyError:
            allowed = ", ".join(f"{m}.{n}" for m, n in CIFAR10_PICKLE_GLOBALS)
            raise UnsafePickleError(
                f"{self.path}: refused to unpickle global '{module}.{name}': a CIFAR-10 python batch holds "
                f"only dicts, lists, bytes, ints and numpy arrays (allowed globals: {allowed}); the file is "
                "not a CIFAR-10 batch and may be crafted to run code"
            ) from None


def _read_cifar_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = _CifarUnpickler(f, path).load()
    except UnsafePickleError:
        raise
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a format error
        raise DataFormatError(f"{path}: not a CIFAR-10 python pickle batch ({type(e).__name__}: {e})") from e
    if not isinstance(batch, dict):
        raise DataFormatError(f"{path}: expected a pickled dict, got {type(batch).__name__}")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise DataFormatError(f"{path}: pickle has keys {sorted(batch)}; expected b'data' and b'labels'")
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataFormatError(f"{path}: b'data' is {data.dtype} {data.shape}; expected uint8 [N, 3072]")
    labels = np.asarray(labels, dtype=np.int32)
    if labels.shape != (len(data),):
        raise DataFormatError(f"{path}: {len(data)} images but {labels.size} labels")
    # Rows are channel-major (1024 red, 1024 green, 1024 blue, each row-major 32x32).
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels


def _cifar_file_split(data_dir: str, which: str) -> tuple[np.ndarray, np.ndarray]:
    directory = _cifar_dir(data_dir)
    parts = [_read_cifar_batch(os.path.join(directory, f)) for f in CIFAR10_FILES[which]]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def write_cifar10(
    data_dir: str,
    train: Sequence[tuple[np.ndarray, np.ndarray]],
    test: tuple[np.ndarray, np.ndarray],
) -> str:
    """Writes CIFAR-10 python batches into ``data_dir/cifar-10-batches-py``: ``train`` is five
    ``(uint8 [n, 32, 32, 3], labels)`` pairs (data_batch_1..5), ``test`` one pair. Returns the folder."""
    if len(train) != len(CIFAR10_FILES["train"]):
        raise ValueError(
            f"write_cifar10: need {len(CIFAR10_FILES['train'])} training batches, got {len(train)}"
        )
    directory = os.path.join(data_dir, CIFAR10_DIR)
    os.makedirs(directory, exist_ok=True)
    names = list(CIFAR10_FILES["train"]) + list(CIFAR10_FILES["test"])
    for name, (images, labels) in zip(names, [*train, test], strict=True):
        images = np.asarray(images, dtype=np.uint8)
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(x) for x in labels],
            b"data": images.transpose(0, 3, 1, 2).reshape(len(images), 3072),
            b"filenames": [f"{name}_{i}.png".encode() for i in range(len(images))],
        }
        with atomic_path(os.path.join(directory, name)) as tmp, open(tmp, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return directory


def write_mnist(
    data_dir: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
) -> str:
    """Writes the four gzip IDX files of MNIST (``uint8 [n, 28, 28]`` or ``[n, 28, 28, 1]`` images and
    labels) into ``data_dir``. Returns ``data_dir``."""
    os.makedirs(data_dir, exist_ok=True)
    for which, (images, labels) in (("train", train), ("test", test)):
        images = np.asarray(images, dtype=np.uint8)
        if images.ndim == 4:
            images = images[..., 0]
        write_idx(os.path.join(data_dir, MNIST_FILES[which][0]), images)
        write_idx(os.path.join(data_dir, MNIST_FILES[which][1]), np.asarray(labels, dtype=np.uint8))
    return data_dir


# ------------------------------------------------------------------------------- tensorflow-datasets
def _tfds_split(name: str, which: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        files = MNIST_FILES if name == "mnist" else CIFAR10_FILES
        wanted = ", ".join(f for fs in files.values() for f in fs)
        raise DataFormatError(
            f"dataset {name!r} needs --data_dir: a directory holding {wanted}"
            + (f" (in {CIFAR10_DIR}/)" if name == "cifar10" else "")
            + "; or install tensorflow-datasets with the prepared data"
        ) from None
    data = tfds.as_numpy(tfds.load(name, split=which, batch_size=-1, download=False))
    return np.asarray(data["image"], dtype=np.uint8), np.asarray(data["label"], dtype=np.int32)


# ------------------------------------------------------------------------------------------- load
def check_data_dir(name: str, data_dir: str | None) -> None:
    """Raises before training when ``data_dir`` (the ``--data_dir`` flag) cannot serve ``name``."""
    _check_name(name)
    if name == "digits":
        return
    if data_dir is None:
        try:
            import tensorflow_datasets  # noqa: F401
        except ImportError:
            _tfds_split(name, "train")  # raises the message naming the expected files
        return
    if not os.path.isdir(data_dir):
        raise DataFormatError(f"--data_dir={data_dir!r} does not exist or is not a directory")
    if name == "mnist":
        _mnist_dir(data_dir)
    else:
        _cifar_dir(data_dir)


def load(
    name: str,
    split: str = "train",
    data_dir: str | None = None,
    *,
    validation_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 images [N, H, W, C], int32 labels [N])`` of ``split`` of dataset ``name``.

    ``validation_size`` (default :data:`VALIDATION_SIZE`, the paper's 5,000) examples are carved from the
    end of the training files for ``validation``; ``train`` is the rest. ``digits`` has a fixed
    train/test split and no validation examples.
    """
    _check_name(name)
    _check_split(split)
    if name == "digits":
        if validation_size:
            raise ValueError(
                f"dataset 'digits' has a fixed train/test split; validation_size={validation_size}"
            )
        return _digits_split(split)
    if data_dir is not None and not os.path.isdir(data_dir):
        raise DataFormatError(f"--data_dir={data_dir!r} does not exist or is not a directory")
    which = "test" if split == "test" else "train"
    if data_dir is None:
        images, labels = _tfds_split(name, which)
    elif name == "mnist":
        images, labels = _mnist_file_split(data_dir, which)
    else:
        images, labels = _cifar_file_split(data_dir, which)
    if split == "test":
        return images, labels
    n_val = VALIDATION_SIZE[name] if validation_size is None else int(validation_size)
    if n_val < 0 or n_val >= len(labels):
        raise ValueError(
            f"validation_size={n_val} for {name!r} must be in [0, {len(labels)}) (the training files "
            f"under {data_dir!r} hold {len(labels)} examples); set it with --config validation_size=N"
        )
    cut = len(labels) - n_val
    if split == "train":
        return images[:cut], labels[:cut]
    return images[cut:], labels[cut:]


# ---------------------------------------------------------------------------------------- tf.data
def augment_image(image: Any, kind: str | None, seed: Any) -> Any:
    """Augments one uint8 ``[H, W, C]`` image with the stateless seed ``seed`` (int32/int64 ``[2]``)."""
    import tensorflow as tf

    if kind is None:
        return image
    if kind not in AUGMENTATIONS:
        raise ValueError(
            f"unknown augment {kind!r} (recipe key 'augment'); valid: None, {', '.join(AUGMENTATIONS)}"
        )
    pad = 1 if kind == "mnist_pad_crop" else 2
    h, w, c = image.shape
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    out = tf.image.stateless_random_crop(padded, [h, w, c], seed=crop_seed)
    if kind == "cifar_pad_crop_flip":
        out = tf.image.stateless_random_flip_left_right(out, seed=flip_seed)
    return out


def _to_float(images: Any) -> Any:
    import tensorflow as tf

    return tf.cast(images, tf.float32) * (1.0 / 255.0)


def _with_options(ds: Any) -> Any:
    import tensorflow as tf

    options = tf.data.Options()
    # In-memory arrays have no files to shard across workers: shard by element.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    return ds.with_options(options)


def train_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    *,
    augment: str | None = None,
    seed: int = 0,
    shuffle_buffer: int | None = None,
) -> Any:
    """Infinite, shuffled (reshuffled each epoch), augmented stream of ``(float32 [B, H, W, C] in [0, 1],
    int32 [B])`` batches with ``drop_remainder=True``."""
    import tensorflow as tf

    if batch_size <= 0:
        raise ValueError(f"batch_size={batch_size} must be positive")
    if len(labels) == 0:
        raise ValueError("train_dataset: no training examples")
    if augment is not None and augment not in AUGMENTATIONS:
        raise ValueError(
            f"unknown augment {augment!r} (recipe key 'augment'); valid: None, {', '.join(AUGMENTATIONS)}"
        )
    ds = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int32)))
    ds = ds.shuffle(shuffle_buffer or len(labels), seed=seed, reshuffle_each_iteration=True).repeat()

    def prepare(index: Any, example: Any) -> Any:
        image, label = example
        image = augment_image(image, augment, tf.stack([tf.cast(seed, tf.int64), index]))
        return _to_float(image), label

    ds = ds.enumerate().map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    return _with_options(ds)


def eval_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int) -> Any:
    """One finite pass of ``(float32 [B, H, W, C] in [0, 1], int32 [B])`` batches, last batch partial."""
    import tensorflow as tf

    if batch_size <= 0:
        raise ValueError(f"batch_size={batch_size} must be positive")
    ds = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int32)))
    ds = ds.batch(batch_size).map(lambda x, y: (_to_float(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    return _with_options(ds.prefetch(tf.data.AUTOTUNE))
