"""Dynamic loss scaling for float16 supernet steps.

float16 gradients underflow to zero below ~6e-8, so the loss is multiplied by a large scale
before the backward pass and the gradients divided by it after. When a scaled gradient
overflows (inf/NaN), the step's update is skipped and the scale halved; after
`growth_interval` finite steps in a row it is doubled. Keras' `LossScaleOptimizer` does the
same for `Model.fit`; the supernet steps apply masked updates of their own
(`tfnas.engine.updates`), so they carry the scale themselves.
"""

from __future__ import annotations

import keras
import tensorflow as tf


class DynamicLossScale(tf.Module):
    """The scale and its count of finite steps; create it inside `strategy.scope()`."""

    def __init__(self, initial: float = 2.0 ** 15, growth_interval: int = 2000):
        super().__init__(name="loss_scale")
        self.growth_interval = growth_interval
        sync = dict(trainable=False, synchronization=tf.VariableSynchronization.ON_WRITE,
                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.scale = tf.Variable(initial, dtype=tf.float32, name="scale", **sync)
        self.good_steps = tf.Variable(0, dtype=tf.int64, name="good_steps", **sync)

    def unscale(self, grads: list) -> tuple[list, tf.Tensor]:
        """(gradients / scale, whether all of them are finite): in cross-replica context,
        after the gradients were reduced."""
        inverse = 1.0 / self.scale
        grads = [None if g is None else g * tf.cast(inverse, g.dtype) for g in grads]
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g))
                                for g in grads if g is not None])
        return grads, finite

    def update(self, finite: tf.Tensor) -> None:
        """Halves the scale after an overflow; doubles it after `growth_interval` finite
        steps in a row."""
        good = self.good_steps + 1
        grow = tf.logical_and(finite, good >= self.growth_interval)
        self.scale.assign(tf.where(finite, tf.where(grow, self.scale * 2.0, self.scale),
                                   tf.maximum(self.scale * 0.5, 1.0)))
        self.good_steps.assign(tf.where(finite, tf.where(grow, tf.zeros_like(good), good),
                                        tf.zeros_like(good)))

    def checkpoint_items(self) -> dict[str, tf.Variable]:
        return {"loss_scale": self.scale, "loss_scale_good_steps": self.good_steps}


def loss_scale_for_policy(strategy=None) -> DynamicLossScale | None:
    """A `DynamicLossScale` when Keras' global dtype policy computes in float16, else None
    (float32 and bfloat16 need none)."""
    if keras.mixed_precision.global_policy().compute_dtype != "float16":
        return None
    with (strategy or tf.distribute.get_strategy()).scope():
        return DynamicLossScale()
