"""The weight and architecture splits of a search, batched per epoch in a seeded, resumable
order."""

from __future__ import annotations

import tensorflow as tf

from tfnas.data import (check_class_count, check_labels, ordered, reading, require_classes,
                        search_parts, use_cache)
from tfnas.distribute import check_global_batch
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
        check_global_batch(cfg.batch_size, strategy)
        weights, arch = search_parts(
            cfg.dataset, cfg.image_size, cfg.data_dir, cfg.weight_fraction, cfg.seed,
            limit=cfg.max_images or None)
        classes = weights.classes
        self.num_classes = cfg.num_classes or require_classes(cfg.dataset, classes)
        n_w, n_a = weights.size, arch.size
        if weights.labels and arch.labels:
            check_labels(cfg.dataset, [*weights.labels, *arch.labels], self.num_classes,
                         cfg.num_classes)
        else:
            check_class_count(cfg.dataset, classes, self.num_classes)
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

    def _ordered(self, which: str, seed: int | None, skip: int = 0,
                 shard: tuple[int, int, int] | None = None) -> tf.data.Dataset:
        return ordered(self.parts[which], self.cached.get(which), seed, SHUFFLE_BUFFER,
                       skip=skip, shard=shard)

    def pipeline(self, which: str, seed: int | None, skip: int, steps: int,
                 context: tf.distribute.InputContext,
                 batch: int | None = None) -> tf.data.Dataset:
        """The per-replica batches of one input pipeline (one per worker) for `steps` global
        batches of `which` (of `batch` images, default `--batch_size`) after the first `skip`.

        Every pipeline orders the records alike and prepares only its slice of each global
        batch, which its replicas split. So no worker decodes an image another worker trains
        on, and all workers have the same number of batches, whatever files hold the data.
        """
        batch, count = batch or self.cfg.batch_size, context.num_input_pipelines
        replicas = context.num_replicas_in_sync // count
        ds = self._ordered(which, seed, skip * batch, (batch, count, context.input_pipeline_id))
        return (ds.batch(context.get_per_replica_batch_size(batch), drop_remainder=True)
                .take(max(0, steps - skip) * replicas).prefetch(tf.data.AUTOTUNE))

    def _distributed(self, which: str, seed: int | None, skip: int, steps: int,
                     batch: int | None = None):
        return self.strategy.distribute_datasets_from_function(
            lambda context: self.pipeline(which, seed, skip, steps, context, batch))

    def epoch(self, which: str, epoch: int, skip: int):
        """The batches of epoch `epoch` of `which` after the first `skip` (a resumed epoch:
        the skipped images are not decoded)."""
        steps = self.weight_steps if which == "weights" else self.arch_steps
        seed = self.cfg.seed * 100_003 + epoch * 2 + (which == "arch")
        return iter(self._distributed(which, seed, skip, steps))

    def validation_batches(self, count: int, merge: int = 1) -> list:
        """The first `count` batches of the architecture split, in a fixed order: the data
        that scores candidates with the shared weights. With `merge` > 1 the same images come
        in fewer, larger batches (`merged_batch_size(count, merge)` images each): scoring
        that does not normalize by batch statistics gives the same loss either way, and on
        CPU a batch of 256 small images runs about twice as fast per image as eight of 32."""
        count = max(1, min(count, self.full_arch_batches))
        batch = self.merged_batch_size(count, merge)
        return list(self._distributed("arch", None, 0, count * self.cfg.batch_size // batch,
                                      batch))

    def merged_batch_size(self, count: int, merge: int) -> int:
        """The size of `validation_batches(count, merge)`'s batches: `--batch_size` times the
        largest factor of `count` (after the clip to the split) that is at most `merge`, so
        the merged batches hold exactly the images of the `count` unmerged ones."""
        count = max(1, min(count, self.full_arch_batches))
        factor = max(d for d in range(1, max(1, min(merge, count)) + 1) if count % d == 0)
        return self.cfg.batch_size * factor
