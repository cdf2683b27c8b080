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
            self.cache[key] = _evaluate(self.step, self.batches, tf.constant(key, tf.int32),
                                        self.count)
        return self.cache[key]


def perturbation_losses(net, weights: np.ndarray, layers: list[int], allowed: np.ndarray,
                        batches: list, batch_size: int, strategy=None,
                        progress=None) -> np.ndarray:
    """[L, O] mean validation loss of the supernet with layer i pinned to op o and every
    other layer weighted by `weights` [L, O], for each of `layers` and its `allowed` ops
    (NaN elsewhere): how much the supernet's accuracy rests on each op, which the size of θ
    need not tell (Wang et al., ICLR 2021). Moving BatchNorm statistics, so that scoring
    changes no weight. `progress(done, total)` is called after each op."""
    if not batches:
        raise ValueError("perturbation_losses needs at least one validation batch")
    step = make_eval_step(net, strategy, batch_stats=False, mixture=True)
    losses = np.full(weights.shape, np.nan)
    todo = [(i, int(o)) for i in layers for o in np.flatnonzero(allowed[i])]
    for done, (i, o) in enumerate(todo, 1):
        pinned = np.array(weights, np.float32)
        pinned[i] = np.eye(weights.shape[1])[o]
        losses[i, o] = _evaluate(step, batches, tf.constant(pinned),
                                 len(batches) * batch_size)["loss"]
        if progress is not None:
            progress(done, len(todo))
    return losses


def _evaluate(step, batches: list, arch, count: int) -> dict[str, float]:
    loss = hits = 0.0
    for images, labels in batches:
        batch_loss, batch_hits = step(images, labels, arch)
        loss, hits = loss + float(batch_loss), hits + float(batch_hits)
    return {"loss": loss / count, "accuracy": hits / count}
