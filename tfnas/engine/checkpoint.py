"""Checkpoints of a supernet search that hold every weight of the network.

`tf.train.Checkpoint(net=model)` does not see the layers a Keras 3 model keeps in Python
lists (its list wrapper is not a TensorFlow trackable), so a subclassed supernet would save
almost nothing; an optimizer happens to reach the trainable weights, but BatchNormalization's
moving statistics would be lost on resume. Here the network's weights are tracked by
position (the construction of a supernet is deterministic).
"""

from __future__ import annotations

import keras
import tensorflow as tf


class _Weights(tf.Module):
    def __init__(self, variables):
        super().__init__(name="weights")
        self.by_position = list(variables)


def search_checkpoint(net: keras.Model, **items) -> tf.train.Checkpoint:
    """A checkpoint of every weight of `net` (trainable or not) plus `items` (optimizers,
    θ, τ, counters, ...)."""
    return tf.train.Checkpoint(net=_Weights(net.weights), **items)


def all_finite(checkpoint: tf.train.Checkpoint) -> bool:
    """Whether every float weight of a `search_checkpoint`'s network, and its θ when it
    holds one, is finite: a step's loss is computed before its update, so a NaN loss comes
    one step after the weights went bad."""
    variables = list(checkpoint.net.by_position) + (
        [checkpoint.theta] if hasattr(checkpoint, "theta") else [])
    return all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in variables
               if tf.as_dtype(v.dtype).is_floating)
