"""Optimizer updates that leave the weights of ops a step did not run untouched.

`tf.switch_case` gives the variables of unselected branches zero gradients, not None, and a
Keras optimizer would still move them (momentum, decoupled weight decay, Adam's moments). Here
each group of variables carries a boolean "ran this step"; groups that did not run skip the
whole update — weight, weight decay and optimizer slots — inside a functional `Case`
(`tfnas.nn.control.run_if`).

Runs in cross-replica context (after `strategy.run`), with gradients already reduced, under
the default strategy or `MirroredStrategy`. The per-variable math is the optimizer's own
`update_step`, so any Keras 3 optimizer (SGD, Adam, AdamW, ...) works; EMA, gradient
accumulation and gradient clipping are not supported here and are refused.
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
                    active: Sequence | None = None, strategy=None) -> None:
    """Applies `grads` to `variables`; variable i is updated only where `active[i]` holds.

    `active[i]` is None (always) or a scalar bool tensor; variables sharing one tensor object
    form one group under one `run_if`. Advances `optimizer.iterations` once. `strategy`:
    the one the variables were created under (default: the current one).
    """
    strategy = strategy or tf.distribute.get_strategy()
    lr = tf.convert_to_tensor(optimizer.learning_rate)
    wd = optimizer.weight_decay
    groups: dict[int, tuple[object, list]] = {}
    for i, (g, v) in enumerate(zip(grads, variables)):
        if g is None:
            continue
        flag = None if active is None else active[i]
        groups.setdefault(id(flag), (flag, []))[1].append((g, v))

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
    for flag, pairs in groups.values():
        if flag is None:
            run(pairs)
        else:
            control.run_if(flag, lambda pairs=pairs: run(pairs), functional=functional)
    optimizer.iterations.assign_add(1)
