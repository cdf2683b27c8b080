"""One-shot scores: a candidate's loss and accuracy on fixed validation batches with the
supernet's shared weights (no training per candidate)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfnas.engine.steps import make_eval_step


class OneShotScorer:
    """`scorer(indices) -> {"loss": mean loss, "accuracy": top-1}` over `batches`
    (cached per path; `batch_size` is the global size of each batch). BatchNormalization
    uses each batch's statistics by default (see `make_eval_step`)."""

    def __init__(self, net, batches: list, batch_size: int, strategy=None,
                 batch_stats: bool = True):
        if not batches:
            raise ValueError("OneShotScorer needs at least one validation batch")
        self.step = make_eval_step(net, strategy, batch_stats)
        self.batches, self.count = batches, len(batches) * batch_size
        self.cache: dict[tuple, dict[str, float]] = {}

    def __call__(self, indices) -> dict[str, float]:
        key = tuple(int(i) for i in np.asarray(indices))
        if key not in self.cache:
            path = tf.constant(key, tf.int32)
            loss = hits = 0.0
            for images, labels in self.batches:
                batch_loss, batch_hits = self.step(images, labels, path)
                loss, hits = loss + float(batch_loss), hits + float(batch_hits)
            self.cache[key] = {"loss": loss / self.count, "accuracy": hits / self.count}
        return self.cache[key]
