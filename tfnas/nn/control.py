"""Data-dependent branching that stays a functional `Case` op in the graph.

`tf.switch_case` and `tf.cond` are lowered to Switch/Merge before a graph runs: every op of
every branch then sits in the step's graph, and the executor propagates a dead tensor through
each op of the branches not taken. A supernet holds O candidate ops per layer, so that is
O times the nodes of the child, visited on every step, and minutes of graph optimization on
the first call. A functional `Case` calls only the taken branch's function. Measured on the
fbnet supernet (64x64, batch 32, 2 CPU cores): fixed-path weight step 378 -> 280 ms, trace
plus first call 209 -> 150 s.

The public API has no switch for this; `cond_v2.indexed_case` (what `tf.switch_case` calls)
takes `lower_using_switch_merge`. Gradients of the `Case` keep the same setting.
"""

from __future__ import annotations

from typing import Callable, Sequence

import tensorflow as tf
from tensorflow.python.ops import cond_v2  # private: see the module docstring


def switch_case(index, branches: Sequence[Callable], name: str = "switch_case"):
    """`tf.switch_case(index, branches)` (no default branch) run as a functional Case."""
    if tf.executing_eagerly():
        return branches[int(index)]()
    return cond_v2.indexed_case(tf.convert_to_tensor(index, tf.int32), list(branches),
                                name=name, lower_using_switch_merge=False)


def run_branch(index, fns: Sequence[Callable[[], None]], name: str = "run_branch",
               functional: bool = True) -> None:
    """Runs only the side effects of `fns[index]` (a scalar int tensor).

    `functional=False` uses the lowered `tf.switch_case`: needed when the functions touch
    resources on several devices (a functional Case is placed on one; MirroredStrategy's
    per-device updates are not).
    """
    def branch(fn):
        def run():
            fn()
            return tf.constant(0)
        return run

    branches = [branch(fn) for fn in fns]
    if functional:
        switch_case(index, branches, name=name)
    else:
        tf.switch_case(tf.convert_to_tensor(index, tf.int32), branches, name=name)
