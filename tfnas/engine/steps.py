"""tf.function steps of the supernet search: weights on a train batch, θ on a validation batch.

Every step draws its architecture inside the tf.function (no retrace when the path changes),
once per step in cross-replica context, so that all replicas of a `MirroredStrategy` run the
same path. Inputs are (images, labels) batches — plain tensors, or per-replica values from
a distributed dataset (`strategy.distribute_datasets_from_function`, as the search's data
gives them). Losses are means over the global batch. Under float16 compute, pass a
`DynamicLossScale` (`loss_scale_for_policy()`).

    strategy = tf.distribute.get_strategy()          # or MirroredStrategy()
    with strategy.scope():
        net = SuperNet("fbnet", 10, (32, 32, 3))
        arch = ArchParams(net.allowed_mask())
        w_opt = keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=4e-5)
        a_opt = keras.optimizers.Adam(0.01)
    weight_step = make_weight_step(net, arch, w_opt, "gumbel_max", strategy)
    arch_step = make_arch_step(net, arch, a_opt, "gumbel_max", strategy, penalty=...)
    # or both at once, tracing the supernet's forward and backward once:
    # weight_step, arch_step = make_search_steps(net, arch, w_opt, a_opt, "gumbel_max", ...)
    for (x, y), (xv, yv) in zip(train, val):
        weight_step(x, y); arch_step(xv, yv)
"""

from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf

from tfnas.engine.loss_scale import DynamicLossScale
from tfnas.engine.updates import apply_gradients, check_optimizer
from tfnas.nn.sampling import (SINGLE_PATH_MODES, ArchParams, ArchSample, LossAverage,
                                check_estimator, check_mode)
from tfnas.nn.supernet import SuperNet

Penalty = Callable[[ArchSample], tf.Tensor]


def prepare_optimizer(optimizer, variables, strategy=None) -> None:
    """Builds the optimizer's slots inside the strategy's scope (a lazily built Keras 3
    optimizer fails under MirroredStrategy in a custom step)."""
    check_optimizer(optimizer)
    strategy = strategy or tf.distribute.get_strategy()
    if not optimizer.built:
        with strategy.scope():
            optimizer.build(list(variables))


def cross_entropy(labels, logits):
    return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
        labels, tf.cast(logits, tf.float32), from_logits=True))


def _update_conditions(net: SuperNet, variables, indices, single_path: bool) -> list:
    """Per trainable variable: None (shared, or all ops ran) or (layer's drawn op index,
    the variable's op index): the update condition of `apply_gradients`."""
    if not single_path:
        return [None] * len(variables)
    owner, selectors = {}, {}
    for layer, op_index, op in net.candidate_groups():
        if net.is_pinned(layer):
            continue  # a pinned layer always runs
        selector = selectors.setdefault(layer, indices[layer])  # one object per layer
        for v in op.trainable_variables:
            owner[id(v)] = (selector, op_index)
    return [owner.get(id(v)) for v in variables]


def _reduce(strategy, per_replica, variables):
    pairs = [(g, v.value) for g, v in zip(per_replica, variables) if g is not None]
    reduced = iter(strategy.extended.batch_reduce_to(tf.distribute.ReduceOp.SUM, pairs))
    return [None if g is None else next(reduced) for g in per_replica]


def _unscaled(strategy, per_replica, variables, loss_scale: DynamicLossScale | None):
    """(reduced gradients, None) or, with a loss scale, (unscaled gradients, whether they
    are finite), the scale updated by that."""
    grads = _reduce(strategy, per_replica, variables)
    if loss_scale is None:
        return grads, None
    grads, finite = loss_scale.unscale(grads)
    loss_scale.update(finite)
    return grads, finite


def _weight_update(net: SuperNet, arch: ArchParams, optimizer, variables: list, strategy,
                   single: bool, anneal: bool,
                   loss_scale: DynamicLossScale | None = None,
                   clip_norm: float | None = None) -> Callable:
    """`update(per-replica grads, drawn indices)`: the weight half of a step, in cross-replica
    context. Ops that did not run are left untouched; τ is annealed if `anneal`. With a loss
    scale, a step whose gradients overflowed updates no weight (τ still anneals). `clip_norm`:
    see `apply_gradients`."""
    def update(grads, indices):
        grads, finite = _unscaled(strategy, grads, variables, loss_scale)
        apply_gradients(optimizer, grads, variables,
                        _update_conditions(net, variables, indices, single), strategy,
                        enabled=finite, clip_norm=clip_norm)
        if anneal:
            arch.decay_temperature()
    return update


def _relaxed_gradients(net: SuperNet, arch: ArchParams, mode: str, strategy, penalty,
                       training: bool, variables: list,
                       loss_scale: DynamicLossScale | None = None,
                       baseline: LossAverage | None = None) -> Callable:
    """The replica function `(images, labels, noise) -> (loss, penalty, indices, grads)` of
    a step through θ's relaxation: gradients of loss + penalty with respect to `variables`
    (multiplied by the loss scale, if any). With a `baseline` (the reinforce estimator, single
    path), θ's gradient of the loss is the score function (L - b) ∇ log P(path) instead of
    the straight-through one; the weights' gradients are the same either way."""
    def replica(images, labels, noise):
        with tf.GradientTape() as tape:
            sample = arch.relax(mode, noise)
            run = sample if baseline is None else sample._replace(weights=None)
            logits = net.forward(images, run, training=training)
            loss = cross_entropy(labels, logits)
            extra = penalty(sample) if penalty is not None else tf.constant(0.0)
            objective = loss + extra
            if baseline is not None:
                advantage = tf.stop_gradient(loss - baseline.value(loss))
                objective += advantage * arch.log_prob(sample.indices)
            scaled = _scaled(objective / strategy.num_replicas_in_sync, loss_scale)
        return (loss / strategy.num_replicas_in_sync, extra, sample.indices,
                tape.gradient(scaled, variables))
    return replica


def _score_baseline(mode: str, estimator: str,
                    baseline: LossAverage | None) -> LossAverage | None:
    """The baseline the θ step uses: given for reinforce on a single path, else None."""
    if check_estimator(estimator) == "straight_through" or mode not in SINGLE_PATH_MODES:
        return None
    if baseline is None:
        raise ValueError("the reinforce estimator needs a LossAverage (checkpoint it with "
                         "the search)")
    return baseline


def _scaled(loss, loss_scale: DynamicLossScale | None):
    return loss if loss_scale is None else loss * loss_scale.scale


def _check_arch_mode(mode: str) -> str:
    if check_mode(mode) in ("uniform", "fixed"):
        raise ValueError(f"mode {mode!r} gives θ no gradient; use gumbel_max, gumbel_softmax "
                         "or softmax")
    return mode


def make_weight_step(net: SuperNet, arch: ArchParams, optimizer, mode: str = "gumbel_max",
                     strategy=None, anneal: bool = True, return_indices: bool = False,
                     loss_scale: DynamicLossScale | None = None,
                     clip_norm: float | None = None) -> Callable:
    """A tf.function `step(images, labels[, indices]) -> mean loss` that trains the weights of
    the path drawn in `mode` (`indices` [L] only for mode "fixed"), never touching ops that
    did not run; τ is multiplied by `arch.tau_decay` after each step if `anneal`. With
    `return_indices` it returns (loss, the drawn op indices [L]) (for the all-op modes: the
    heaviest op of each layer). `loss_scale` (float16 compute): see `DynamicLossScale`.
    `clip_norm`: the weights' gradients are clipped to that global norm."""
    check_mode(mode)
    strategy = strategy or tf.distribute.get_strategy()
    variables = list(net.trainable_variables)
    prepare_optimizer(optimizer, variables, strategy)
    single = mode in SINGLE_PATH_MODES
    update = _weight_update(net, arch, optimizer, variables, strategy, single, anneal,
                            loss_scale, clip_norm)

    def replica(images, labels, indices, weights):
        with tf.GradientTape() as tape:
            logits = net(images, training=True, indices=indices, weights=weights,
                         single_path=single)
            loss = cross_entropy(labels, logits) / strategy.num_replicas_in_sync
            scaled = _scaled(loss, loss_scale)
        return loss, tape.gradient(scaled, variables)

    @tf.function(autograph=False, jit_compile=False)  # no XLA on the sampled path
    def step(images, labels, indices=None):
        sample = arch.sample(mode, indices)
        # θ gets no gradient here: a single path needs no straight-through factor (value 1).
        weights = None if single else tf.stop_gradient(sample.weights)
        loss, grads = strategy.run(replica, args=(images, labels, sample.indices, weights))
        update(grads, sample.indices)
        loss = strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
        return (loss, sample.indices) if return_indices else loss

    return step


def make_arch_step(net: SuperNet, arch: ArchParams, optimizer, mode: str = "gumbel_max",
                   strategy=None, penalty: Penalty | None = None,
                   training: bool = True, return_indices: bool = False,
                   loss_scale: DynamicLossScale | None = None,
                   estimator: str = "straight_through",
                   baseline: LossAverage | None = None) -> Callable:
    """A tf.function `step(images, labels) -> (mean loss, penalty)` that updates θ on a
    validation batch. The trainable weights are read, never updated (their gradients are not
    even computed); with `training=True` BatchNorm's moving statistics take in the batch, as
    in any training-mode call. `penalty(sample)` (e.g. `sampling.resource_penalty`) is added to the loss.
    With `return_indices` it also returns the op indices [L] the step drew. `loss_scale`
    (float16 compute): see `DynamicLossScale`. `estimator` (`sampling.ESTIMATORS`) is how a
    single path's loss reaches θ; "reinforce" needs a `baseline`, which each step updates."""
    _check_arch_mode(mode)
    strategy = strategy or tf.distribute.get_strategy()
    variables = arch.trainable_variables
    prepare_optimizer(optimizer, variables, strategy)
    baseline = _score_baseline(mode, estimator, baseline)
    replica = _relaxed_gradients(net, arch, mode, strategy, penalty, training, variables,
                                 loss_scale, baseline)
    return _arch_step(arch, optimizer, mode, strategy, replica, variables, return_indices,
                      lambda grads: grads, loss_scale, baseline)


def _arch_step(arch: ArchParams, optimizer, mode: str, strategy, replica: Callable,
               variables: list, return_indices: bool, select: Callable,
               loss_scale: DynamicLossScale | None,
               baseline: LossAverage | None = None) -> Callable:
    """The θ step around `replica`; `select` picks θ's gradients from what it returns."""
    @tf.function(autograph=False, jit_compile=False)  # no XLA on the sampled path
    def step(images, labels):
        noise = arch.draw_noise(mode)
        loss, extra, indices, grads = strategy.run(replica, args=(images, labels, noise))
        grads, finite = _unscaled(strategy, select(grads), variables, loss_scale)
        apply_gradients(optimizer, grads, variables, strategy=strategy, enabled=finite)
        loss = strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
        if baseline is not None:
            baseline.update(loss)
        extra = strategy.reduce(tf.distribute.ReduceOp.MEAN, extra, axis=None)
        if return_indices:  # the same on every replica (one noise draw)
            return loss, extra, strategy.experimental_local_results(indices)[0]
        return loss, extra

    return step


def make_search_steps(net: SuperNet, arch: ArchParams, weight_optimizer, arch_optimizer,
                      mode: str = "gumbel_max", strategy=None,
                      penalty: Penalty | None = None, share: bool = True,
                      loss_scale: DynamicLossScale | None = None,
                      estimator: str = "straight_through",
                      baseline: LossAverage | None = None,
                      clip_norm: float | None = None) -> tuple[Callable, Callable]:
    """The weight step and the θ step of a differentiable search, sharing one traced
    forward and backward pass.

    `weight_step(images, labels) -> (mean loss, drawn op indices [L])` and
    `arch_step(images, labels) -> (mean loss, penalty)` behave as `make_weight_step(...,
    return_indices=True)` and `make_arch_step(...)` in `mode`, except that the weight step
    also runs the forward through θ's relaxation (straight-through weights of value 1 in
    gumbel_max), so both steps call one `tf.function` for the replica's forward and backward.
    Tracing a supernet's pass is most of a short CPU search; this traces it once, not twice.
    The price: the θ step also computes the weight gradients of the layers outside the
    sampled `Case`s (stem, head, pinned layers), which the separate θ step skips.

    Under several replicas (`MirroredStrategy`, `MultiWorkerMirroredStrategy`) the pass is
    traced once per replica, as each step's inline pass is, and shared by both steps. With
    `share=False`, or under another strategy with several replicas (a TPU's: untested), the
    two separate steps are returned. `estimator` and `baseline`: see `make_arch_step` (the
    weight step leaves the baseline alone); `clip_norm`: see `make_weight_step`.
    """
    _check_arch_mode(mode)
    strategy = strategy or tf.distribute.get_strategy()
    baseline = _score_baseline(mode, estimator, baseline)
    tested = (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy)
    if not share or (strategy.num_replicas_in_sync > 1 and not isinstance(strategy, tested)):
        return (make_weight_step(net, arch, weight_optimizer, mode, strategy,
                                 return_indices=True, loss_scale=loss_scale,
                                 clip_norm=clip_norm),
                make_arch_step(net, arch, arch_optimizer, mode, strategy, penalty,
                               loss_scale=loss_scale, estimator=estimator, baseline=baseline))
    weights, thetas = list(net.trainable_variables), arch.trainable_variables
    prepare_optimizer(weight_optimizer, weights, strategy)
    prepare_optimizer(arch_optimizer, thetas, strategy)
    traced = tf.function(  # no XLA on the sampled path
        _relaxed_gradients(net, arch, mode, strategy, penalty, True, weights + thetas,
                           loss_scale, baseline),
        autograph=False, jit_compile=False, reduce_retracing=True)

    def replica(*args):
        # Called in each replica's context: `strategy.run(traced)` would fold all replicas
        # into one call whose outputs carry no device, which breaks the gradients' all-reduce.
        return traced(*args)

    update = _weight_update(net, arch, weight_optimizer, weights, strategy,
                            mode in SINGLE_PATH_MODES, anneal=True, loss_scale=loss_scale,
                            clip_norm=clip_norm)

    @tf.function(autograph=False, jit_compile=False)
    def weight_step(images, labels):
        loss, _, indices, grads = strategy.run(
            replica, args=(images, labels, arch.draw_noise(mode)))
        indices = strategy.experimental_local_results(indices)[0]  # one draw for all replicas
        update(grads[:len(weights)], indices)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None), indices

    arch_step = _arch_step(arch, arch_optimizer, mode, strategy, replica, thetas, False,
                           lambda grads: grads[len(weights):], loss_scale, baseline)
    return weight_step, arch_step


def make_eval_step(net: SuperNet, strategy=None, batch_stats: bool = False,
                   mixture: bool = False) -> Callable:
    """A tf.function `step(images, labels, indices) -> (loss sum, correct count)` of one fixed
    path (one-shot evaluation of a candidate with the shared weights), no weight update.
    With `mixture` the third argument is instead `weights` [L, O], and every op runs weighted
    by them (one-hot rows pin a layer to one op).

    `batch_stats`: normalize with the batch's statistics, as SETN's template network does
    (its BN keeps no running statistics), instead of the moving averages. A supernet's moving
    averages mix every path and lag far behind early in training, so they rank candidates
    poorly; with `batch_stats` the scored batches also move those averages (nothing here
    reads them)."""
    strategy = strategy or tf.distribute.get_strategy()

    def replica(images, labels, arch):
        if mixture:
            indices = tf.argmax(arch, axis=-1, output_type=tf.int32)
            logits = net(images, training=batch_stats, indices=indices, weights=arch,
                         single_path=False)
        else:
            logits = net(images, training=batch_stats, indices=arch)
        logits = tf.cast(logits, tf.float32)
        loss = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True))
        hits = tf.reduce_sum(tf.cast(
            tf.equal(tf.argmax(logits, -1, output_type=tf.int32), tf.cast(
                tf.reshape(labels, [-1]), tf.int32)), tf.float32))
        return loss, hits

    @tf.function(autograph=False, jit_compile=False)  # no XLA on the sampled path
    def step(images, labels, arch):
        arch = tf.cast(arch, tf.float32 if mixture else tf.int32)
        loss, hits = strategy.run(replica, args=(images, labels, arch))
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, hits, axis=None))

    return step
