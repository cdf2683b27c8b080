"""The weight and architecture splits of a search, batched per epoch in a seeded, resumable
order."""

from __future__ import annotations

import tensorflow as tf

from tfnas.data import (check_labels, ordered, reading, require_classes, search_parts,
                        use_cache)
from tfnas.errors import TfnasError

SHUFFLE_BUFFER = 8192


class SearchData:
    """`cfg` is any search config with the data fields (dataset, data_dir, image_size,
    weight_fraction, seed, max_images, num_classes, batch_size, steps_per_epoch, cache).

    The prepared images are kept in memory when `cfg.cache` says so ("auto": when they take
    at most a quarter of the machine's memory); otherwise every epoch reads, decodes and
    resizes them again. Both give the same batches in the same order.
    """

    def __init__(self, cfg, strategy: tf.distribute.Strategy):
        self.cfg, self.strategy = cfg, strategy
        weights, arch = search_parts(
            cfg.dataset, cfg.image_size, cfg.data_dir, cfg.weight_fraction, cfg.seed,
            limit=cfg.max_images or None)
        classes = weights.classes
        self.num_classes = cfg.num_classes or require_classes(cfg.dataset, classes)
        n_w, n_a = weights.size, arch.size
        if weights.labels and arch.labels:
            check_labels(cfg.dataset, [*weights.labels, *arch.labels], self.num_classes,
                         cfg.num_classes)
        elif classes > self.num_classes:  # TFDS: its class label's size bounds the labels
            raise TfnasError(f"dataset {cfg.dataset!r} has {classes} classes but "
                             f"--num_classes={cfg.num_classes}")
        self.parts = {"weights": weights, "arch": arch}
        self.cached = {}
        with reading(cfg.dataset):  # unreadable files fail here, before DIR is touched
            if use_cache(cfg.cache, n_w + n_a, cfg.image_size):
                self.cached = {k: part.images().cache() for k, part in self.parts.items()}
                for ds in self.cached.values():  # fill the caches: epochs may stop early
                    ds.reduce(0, lambda count, _: count + 1)
            else:  # too many to read now: the first image of each part
                for part in self.parts.values():
                    part.images().take(1).reduce(0, lambda count, _: count + 1)
        if n_w < cfg.batch_size or n_a < cfg.batch_size:
            raise TfnasError(
                f"dataset {cfg.dataset!r} gives {n_w} weight and {n_a} architecture images; "
                f"each split needs at least --batch_size={cfg.batch_size}")
        full_w, full_a = n_w // cfg.batch_size, n_a // cfg.batch_size
        self.weight_steps = min(full_w, cfg.steps_per_epoch or full_w)
        self.arch_steps = max(1, min(full_a, round(self.weight_steps * n_a / n_w)))
        self.full_arch_batches = full_a

    def _ordered(self, which: str, seed: int | None, skip: int = 0) -> tf.data.Dataset:
        return ordered(self.parts[which], self.cached.get(which), seed, SHUFFLE_BUFFER,
                       skip=skip)

    def epoch(self, which: str, epoch: int, skip: int):
        """The batches of epoch `epoch` of `which` after the first `skip` (a resumed epoch:
        the skipped images are not decoded)."""
        steps = self.weight_steps if which == "weights" else self.arch_steps
        seed = self.cfg.seed * 100_003 + epoch * 2 + (which == "arch")
        ds = (self._ordered(which, seed, skip * self.cfg.batch_size)
              .batch(self.cfg.batch_size, drop_remainder=True).take(max(0, steps - skip))
              .prefetch(tf.data.AUTOTUNE))
        return iter(self.strategy.experimental_distribute_dataset(ds))

    def validation_batches(self, count: int) -> list:
        """The first `count` batches of the architecture split, in a fixed order: the data
        that scores candidates with the shared weights."""
        count = max(1, min(count, self.full_arch_batches))
        ds = self._ordered("arch", None).batch(self.cfg.batch_size, drop_remainder=True)
        return list(self.strategy.experimental_distribute_dataset(ds.take(count)))
