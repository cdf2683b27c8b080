"""A real, prepared TFDS dataset built offline from the Debian Fashion-MNIST IDX files.

`prepare_fashion_subset(data_dir)` writes `<data_dir>/<name>/1.0.0/` (TFRecord shards and
dataset_info.json); afterwards `tfds.builder(name, data_dir=data_dir)` loads it from disk in any
process, without importing this module (TFDS falls back to a read-only builder from files).
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

IDX_DIR = "/usr/share/datasets/fashion-mnist"  # apt-get install dataset-fashion-mnist


def _read_idx(prefix: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `n` images (uint8 [n,28,28,1]) and labels (int64 [n]) of an IDX split."""
    with gzip.open(os.path.join(IDX_DIR, f"{prefix}-images-idx3-ubyte.gz"), "rb") as f:
        images = np.frombuffer(f.read(16 + n * 784)[16:], np.uint8)
    with gzip.open(os.path.join(IDX_DIR, f"{prefix}-labels-idx1-ubyte.gz"), "rb") as f:
        labels = np.frombuffer(f.read(8 + n)[8:], np.uint8)
    if labels.size != n:
        raise ValueError(f"{prefix}: asked for {n} examples, the IDX file has {labels.size}")
    return images.reshape(n, 28, 28, 1), labels.astype(np.int64)


def prepare_fashion_subset(data_dir: str, name: str = "fashion_subset", n_train: int = 600,
                           n_test: int = 100, image_key: str = "image",
                           test_split: str = "test") -> str:
    """Builds and prepares `name` (splits train and `test_split`, `image_key` (28,28,1) PNG +
    10-class "label", the supervised keys) under `data_dir` from the first `n_train` /
    `n_test` Fashion-MNIST examples; returns `name`. An already prepared
    `<data_dir>/<name>/1.0.0` is reused as is (the counts are not checked)."""
    counts = {"train": ("train", n_train), test_split: ("t10k", n_test)}

    # skip_registration: a fresh class per call never clashes in TFDS's name registry.
    class _FashionSubset(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self) -> tfds.core.DatasetInfo:
            return tfds.core.DatasetInfo(
                builder=self,
                description=f"First {n_train}/{n_test} Fashion-MNIST train/test examples.",
                features=tfds.features.FeaturesDict({
                    image_key: tfds.features.Image(shape=(28, 28, 1)),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }),
                supervised_keys=(image_key, "label"),
            )

        def _split_generators(self, dl_manager: Any) -> dict[str, Iterator]:
            return {split: self._generate_examples(*src) for split, src in counts.items()}

        def _generate_examples(self, prefix: str, n: int) -> Iterator[tuple[int, dict]]:
            images, labels = _read_idx(prefix, n)
            for i in range(n):
                yield i, {image_key: images[i], "label": labels[i]}

        def _log_download_bytes(self) -> None:  # TFDS prints these two lines to stdout
            pass

        def _log_download_done(self) -> None:
            pass

    _FashionSubset.name = name
    builder = _FashionSubset(data_dir=data_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return name
