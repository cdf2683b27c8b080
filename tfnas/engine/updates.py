"""Optimizer updates that leave the weights of ops a step did not run untouched.

`tf.switch_case` gives the variables of unselected branches zero gradients, not None, and a
Keras optimizer would still move them (momentum, decoupled weight decay, Adam's moments). Here
a variable may carry a condition (selector, value): "updated only where the op index
`selector` drawn this step equals `value`". The variables of one selector (one searchable
layer) are updated under one functional `Case` on it that runs the taken op's updates only —
weight, weight decay and optimizer slots — and none of the others' (`tfnas.nn.control.
run_branch`); one Case per layer, not one per op, since each Case launch costs time.

Runs in cross-replica context (after `strategy.run`), with gradients already reduced, under
the default strategy or `MirroredStrategy`. The per-variable math is the optimizer's own
`update_step`, so any Keras 3 optimizer (SGD, Adam, AdamW, ...) works; EMA, gradient
accumulation and the optimizer's own clipping options are not supported here and are refused
(`apply_gradients(clip_norm=...)` clips to a global norm instead).
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from tfnas.nn import control


def check_optimizer(optimizer) -> None:
    unsupported = [name for name in ("use_ema", "gradient_accumulation_steps", "clipnorm",
                                     "clipvalue", "global_clipnorm")
                   if getattr(optimizer, name, None)]
    if unsupported:
        raise ValueError(f"optimizer options not supported by the supernet steps: "
                         f"{', '.join(unsupported)}")


def apply_gradients(optimizer, grads: Sequence, variables: Sequence,
                    active: Sequence | None = None, strategy=None,
                    enabled: tf.Tensor | None = None, clip_norm: float | None = None) -> None:
    """Applies `grads` to `variables`; variable i is updated only where `active[i]` holds.

    `active[i]` is None (always updated) or (selector, value): updated only where the scalar
    int tensor `selector` equals the int `value`. Variables sharing one selector object are
    updated under one switch on it. Advances `optimizer.iterations` once. `strategy`: the one
    the variables were created under (default: the current one). `enabled`: a scalar bool
    tensor; when false nothing is updated, not even `iterations` (a loss-scaled step whose
    gradients overflowed). `clip_norm`: the gradients are first scaled down to that global
    norm when it is exceeded (None or 0: not clipped; the gradients of ops that did not run are
    zero and add nothing).
    """
    strategy = strategy or tf.distribute.get_strategy()
    if clip_norm:
        given = [i for i, g in enumerate(grads) if g is not None]
        clipped, _ = tf.clip_by_global_norm([grads[i] for i in given], clip_norm)
        grads = list(grads)
        for i, g in zip(given, clipped):
            grads[i] = g
    lr = tf.convert_to_tensor(optimizer.learning_rate)
    wd = optimizer.weight_decay
    always: list = []
    switched: dict[int, tuple[object, dict[int, list]]] = {}
    for i, (g, v) in enumerate(zip(grads, variables)):
        if g is None:
            continue
        condition = None if active is None else active[i]
        if condition is None:
            always.append((g, v))
        else:
            selector, value = condition
            switched.setdefault(id(selector), (selector, {}))[1].setdefault(
                int(value), []).append((g, v))

    def decayed_update(var, grad):
        var.assign_sub(var * tf.cast(wd * lr, var.dtype))
        optimizer.update_step(grad, var, tf.cast(lr, var.dtype))

    def plain_update(var, grad):
        optimizer.update_step(grad, var, tf.cast(lr, var.dtype))

    def run(pairs):
        for g, v in pairs:
            use_wd = wd is not None and optimizer._use_weight_decay(v)
            strategy.extended.update(v.value, decayed_update if use_wd else plain_update,
                                     args=(g,), group=False)

    # Mirrored variables over several local devices cannot share one functional Case.
    functional = strategy.num_replicas_in_sync == 1 or len(strategy.extended.worker_devices) == 1

    def update_all() -> None:
        run(always)
        for selector, by_value in switched.values():
            values = sorted(by_value)
            # Branch 0 updates nothing (the drawn op holds no variables here); branch k + 1
            # updates the variables of values[k].
            branch = tf.reduce_sum(tf.cast(tf.equal(tf.cast(selector, tf.int32), values),
                                           tf.int32) * tf.range(1, len(values) + 1))
            control.run_branch(branch, [lambda: None] + [
                lambda pairs=by_value[value]: run(pairs) for value in values],
                functional=functional)
        optimizer.iterations.assign_add(1)

    if enabled is None:
        update_all()
    else:
        control.run_branch(tf.cast(enabled, tf.int32), [lambda: None, update_all],
                           functional=functional)
