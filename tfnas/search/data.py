"""The weight and architecture splits of a search, batched per epoch in a seeded, resumable
order."""

from __future__ import annotations

import tensorflow as tf

from tfnas.data import check_labels, reading, scan_labels, search_splits
from tfnas.errors import TfnasError


class SearchData:
    """`cfg` is any search config with the data fields (dataset, data_dir, image_size,
    weight_fraction, seed, max_images, num_classes, batch_size, steps_per_epoch)."""

    def __init__(self, cfg, strategy: tf.distribute.Strategy):
        self.cfg, self.strategy = cfg, strategy
        weights, arch, classes = search_splits(
            cfg.dataset, cfg.image_size, cfg.data_dir, cfg.weight_fraction, cfg.seed,
            limit=cfg.max_images or None)
        self.num_classes = cfg.num_classes or classes
        if not self.num_classes:
            raise TfnasError(f"cannot infer the classes of {cfg.dataset!r}; pass --num_classes")
        self.weights, self.arch = weights.cache(), arch.cache()
        with reading(cfg.dataset):  # one pass: it also fills the caches
            (n_w, *labels_w), (n_a, *labels_a) = scan_labels(self.weights), scan_labels(self.arch)
        check_labels(cfg.dataset, labels_w + labels_a, self.num_classes, cfg.num_classes)
        if n_w < cfg.batch_size or n_a < cfg.batch_size:
            raise TfnasError(
                f"dataset {cfg.dataset!r} gives {n_w} weight and {n_a} architecture images; "
                f"each split needs at least --batch_size={cfg.batch_size}")
        full_w, full_a = n_w // cfg.batch_size, n_a // cfg.batch_size
        self.weight_steps = min(full_w, cfg.steps_per_epoch or full_w)
        self.arch_steps = max(1, min(full_a, round(self.weight_steps * n_a / n_w)))
        self.full_arch_batches = full_a

    def epoch(self, which: str, epoch: int, skip: int):
        ds = self.weights if which == "weights" else self.arch
        steps = self.weight_steps if which == "weights" else self.arch_steps
        seed = self.cfg.seed * 100_003 + epoch * 2 + (which == "arch")
        ds = (ds.shuffle(8192, seed=seed, reshuffle_each_iteration=False)
              .batch(self.cfg.batch_size, drop_remainder=True).take(steps).skip(skip)
              .prefetch(tf.data.AUTOTUNE))
        return iter(self.strategy.experimental_distribute_dataset(ds))

    def validation_batches(self, count: int) -> list:
        """The first `count` batches of the architecture split, in a fixed order: the data
        that scores candidates with the shared weights."""
        count = max(1, min(count, self.full_arch_batches))
        ds = self.arch.batch(self.cfg.batch_size, drop_remainder=True).take(count)
        return list(self.strategy.experimental_distribute_dataset(ds))
