"""Supernet training steps: ops a step did not run stay untouched (weights and optimizer
state), one trace serves every sampled path, and MirroredStrategy matches one device."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from supernet_fixtures import TINY, randomize
from tfnas.cost.tables import cost_tables
from tfnas.engine import make_arch_step, make_eval_step, make_search_steps, make_weight_step
from tfnas.nn.sampling import ArchParams, expected_cost, fixed_sample, resource_penalty
from tfnas.nn.supernet import SuperNet
from tfnas.space import get_space

SHAPE = (32, 32, 3)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def batch(seed, n=8):
    rng = np.random.default_rng(seed)
    return (tf.constant(rng.normal(size=(n, *SHAPE)), tf.float32),
            tf.constant(rng.integers(0, 10, n), tf.int32))


def slots(optimizer, variable):
    """The optimizer's state for `variable` (SGD momentum; Adam/AdamW moments)."""
    i = optimizer._get_variable_index(variable)
    return [getattr(optimizer, a)[i] for a in ("momentums", "_momentums", "_velocities")
            if getattr(optimizer, a, None)]


def snapshot(net, optimizer):
    out = {}
    for layer, op, cand in net.candidate_groups():
        state = [v.numpy().copy() for v in cand.weights]
        state += [s.numpy().copy() for v in cand.trainable_weights for s in slots(optimizer, v)]
        out[layer, op] = state
    return out


OPTIMIZERS = {
    "sgd_momentum_wd": lambda: keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=0.05),
    "adamw": lambda: keras.optimizers.AdamW(0.01, weight_decay=0.05),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_step_never_changes_the_ops_it_did_not_run(name):
    net = SuperNet(TINY, 10, SHAPE)
    arch = ArchParams(net.allowed_mask(), seed=11)
    optimizer = OPTIMIZERS[name]()
    step = make_weight_step(net, arch, optimizer, "gumbel_max", return_indices=True)
    stem = net.stem[0].kernel
    idle_with_state = 0
    for i in range(6):
        before, stem_before = snapshot(net, optimizer), stem.numpy().copy()
        _, indices = step(*batch(i))
        after = snapshot(net, optimizer)
        for (layer, op), state in before.items():
            ran = int(indices[layer]) == op
            if ran or not state:
                continue
            idle_with_state += any(np.any(s != 0) for s in state[len(state) // 2:])
            for old, new in zip(state, after[layer, op]):
                np.testing.assert_array_equal(old, new, err_msg=f"layer {layer} op {op}")
        for layer, op in enumerate(indices.numpy()):
            if after[layer, op]:  # the op that ran moved (skip has no weights)
                assert not np.array_equal(before[layer, op][0], after[layer, op][0])
        assert not np.array_equal(stem_before, stem.numpy())
    # Ops that had momentum / Adam moments from earlier steps sat idle and stayed put.
    assert idle_with_state > 0
    assert int(optimizer.iterations) == 6


def test_fifty_steps_one_trace_a_different_path_each_step_and_a_cost_penalty():
    net = SuperNet(TINY, 10, SHAPE, fixed={0: 1})  # 12 paths over layers 1 and 2
    arch = ArchParams(net.allowed_mask(), seed=5)
    tables = cost_tables(get_space(TINY), resolution=32, num_classes=10)
    low = tables.range("flops")[0]
    weight_step = make_weight_step(net, arch, keras.optimizers.SGD(0.05, momentum=0.9),
                                   return_indices=True)
    arch_step = make_arch_step(net, arch, keras.optimizers.Adam(0.05), "gumbel_max",
                               penalty=resource_penalty(tables, {"flops": low}, alpha=50.0))

    def expected_flops():
        return float(expected_cost(arch.relax("softmax"), tables.tables["flops"]))

    start_flops = expected_flops()
    paths = set()
    for i in range(50):
        _, indices = weight_step(*batch(i))
        paths.add(tuple(indices.numpy()))
        weights = [v.numpy().copy() for v in net.trainable_variables]
        arch_step(*batch(100 + i))
        if i < 3:  # the θ step reads the weights, never updates them
            for old, v in zip(weights, net.trainable_variables):
                np.testing.assert_array_equal(old, v.numpy())
    assert weight_step.experimental_get_tracing_count() == 1
    assert arch_step.experimental_get_tracing_count() == 1
    assert len(paths) >= 8
    assert float(arch.tau) == pytest.approx(5.0 * 0.9999 ** 50, rel=1e-5)
    assert expected_flops() < start_flops  # the penalty pulls θ toward cheaper ops
    # One-shot evaluation of fixed paths with the shared weights: one trace for any path.
    evaluate = make_eval_step(net)
    images, labels = batch(7)
    for path in ([1, 0, 0], [1, 2, 3]):
        loss, hits = evaluate(images, labels, tf.constant(path))
        logits = net.forward(images, fixed_sample(path), training=False)
        expected = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        assert float(loss) == pytest.approx(float(tf.reduce_sum(expected)), rel=1e-4)
        assert float(hits) == float(np.sum(np.argmax(logits, -1) == labels.numpy()))
    assert evaluate.experimental_get_tracing_count() == 1


def test_perturbation_losses_pin_one_layer_of_the_given_mixture():
    """Each score is the loss with one layer pinned to one op and the others as given: with
    one-hot rows elsewhere that is a fixed path's one-shot loss; other layers and illegal
    ops stay NaN; a mixture elsewhere scores differently."""
    from tfnas.engine.scoring import OneShotScorer, perturbation_losses

    net = SuperNet(TINY, 10, SHAPE)
    randomize(net, seed=3)
    batches = [batch(11), batch(12)]
    allowed = net.allowed_mask()
    path = [1, 0, 3]
    one_hot = np.eye(net.num_ops, dtype=np.float32)[path]
    calls = []
    losses = perturbation_losses(net, one_hot, [1], allowed, batches, 8,
                                 progress=lambda done, total: calls.append((done, total)))
    scorer = OneShotScorer(net, batches, 8, batch_stats=False)
    for op in np.flatnonzero(allowed[1]):
        pinned = [path[0], int(op), path[2]]
        assert losses[1, op] == pytest.approx(scorer(pinned)["loss"], rel=1e-4)
    assert np.isnan(losses[[0, 2]]).all() and np.isnan(losses[1, ~allowed[1]]).all()
    assert calls == [(1, 3), (2, 3), (3, 3)]
    # Moving BatchNorm statistics: the same images in one larger batch score the same.
    merged = [tuple(tf.concat(parts, 0) for parts in zip(*batches))]
    np.testing.assert_allclose(perturbation_losses(net, one_hot, [1], allowed, merged, 16),
                               losses, rtol=1e-5)
    mixed = np.where(allowed, 1.0, 0.0) / allowed.sum(1, keepdims=True)
    mixture = perturbation_losses(net, mixed.astype(np.float32), [1], allowed, batches, 8)
    assert not np.allclose(mixture[1, allowed[1]], losses[1, allowed[1]], rtol=1e-3)


@pytest.mark.parametrize("clip_norm", [1e-3, None])
def test_weight_step_clips_the_gradients_to_a_global_norm(clip_norm):
    """With plain SGD at lr 1 a step moves the weights by the gradient itself, so a clipped
    step moves them by exactly `clip_norm` (global norm) and an unclipped one much further."""
    net = SuperNet(TINY, 10, SHAPE)
    arch = ArchParams(net.allowed_mask(), seed=2)
    step = make_weight_step(net, arch, keras.optimizers.SGD(1.0), "fixed", clip_norm=clip_norm)
    before = [v.numpy().copy() for v in net.trainable_variables]
    step(*batch(0), tf.constant([1, 2, 3]))
    moved = np.sqrt(sum(np.sum((v.numpy() - b) ** 2)
                        for v, b in zip(net.trainable_variables, before)))
    if clip_norm:
        assert moved == pytest.approx(clip_norm, rel=1e-3)
    else:
        assert moved > 100 * 1e-3


@pytest.mark.parametrize("mode,estimator", [("gumbel_max", "straight_through"),
                                            ("gumbel_max", "reinforce"),
                                            ("gumbel_softmax", "straight_through")])
def test_search_steps_share_one_pass_and_match_the_separate_steps(mode, estimator):
    """The search's pair traces the forward and backward once and trains exactly as
    `make_weight_step` + `make_arch_step` do (same draws, losses, weights and θ)."""
    from tfnas.nn.sampling import LossAverage
    tables = cost_tables(get_space(TINY), resolution=32, num_classes=10)
    targets = {"flops": tables.range("flops")[0]}

    def run(shared: bool):
        keras.utils.set_random_seed(3)
        net = SuperNet(TINY, 10, SHAPE)
        arch = ArchParams(net.allowed_mask(), seed=5)
        w_opt, a_opt = keras.optimizers.SGD(0.05, momentum=0.9), keras.optimizers.Adam(0.05)
        penalty = resource_penalty(tables, targets, alpha=5.0)
        how = {"estimator": estimator, "baseline": LossAverage()}
        if shared:
            weight_step, arch_step = make_search_steps(net, arch, w_opt, a_opt, mode,
                                                       penalty=penalty, **how)
        else:
            weight_step = make_weight_step(net, arch, w_opt, mode, return_indices=True)
            arch_step = make_arch_step(net, arch, a_opt, mode, penalty=penalty, **how)
        trace = []
        for i in range(4):
            loss, indices = weight_step(*batch(i))
            weights = [v.numpy().copy() for v in net.trainable_variables]
            arch_loss, extra = arch_step(*batch(100 + i))
            for old, v in zip(weights, net.trainable_variables):  # θ step: weights read only
                np.testing.assert_array_equal(old, v.numpy())
            trace.append((float(loss), indices.numpy().tolist(), float(arch_loss), float(extra)))
        return trace, arch.theta.numpy(), [v.numpy() for v in net.trainable_variables], \
            float(arch.tau), (weight_step, arch_step)

    separate, shared = run(False), run(True)
    assert shared[0] == separate[0]
    np.testing.assert_allclose(shared[1], separate[1], rtol=1e-6, atol=1e-7)
    for a, b in zip(shared[2], separate[2]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert shared[3] == separate[3]
    # One traced pass: the θ step's graph calls the function the weight step's graph calls.
    def called(step):
        graph = step.get_concrete_function(*batch(0)).graph.as_graph_def()
        return {f.signature.name for f in graph.library.function
                if "replica" in f.signature.name and "gradient" not in f.signature.name}
    weight_fns, arch_fns = called(shared[4][0]), called(shared[4][1])
    assert weight_fns and weight_fns & arch_fns


_PARITY = r"""
import json, sys
import numpy as np, tensorflow as tf, keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, "tests")
from supernet_fixtures import TINY, randomize
from tfnas.engine import make_arch_step, make_search_steps, make_weight_step
from tfnas.nn.sampling import ArchParams, LossAverage
from tfnas.nn.supernet import SuperNet

rng = np.random.default_rng(0)
x = rng.normal(size=(4, 32, 32, 3)).astype("float32")
y = rng.integers(0, 10, 4).astype("int32")
init = None
out = {}
# The search's default (shared pass, reinforce) and the separate steps (straight-through).
runs = [("single", "reinforce"), ("mirrored_shared", "reinforce"),
        ("single", "straight_through"), ("mirrored", "straight_through")]
for name, estimator in runs:
    mirrored = name.startswith("mirrored")
    strategy = (tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]) if mirrored
                else tf.distribute.get_strategy())
    with strategy.scope():
        net = SuperNet(TINY, 10, (32, 32, 3), fixed={0: 1, 2: 3})
        arch = ArchParams(net.allowed_mask(), seed=3)
        w_opt = keras.optimizers.SGD(0.05, momentum=0.9, weight_decay=0.01)
        a_opt = keras.optimizers.Adam(0.05)
        how = {"estimator": estimator, "baseline": LossAverage()}
    if init is None:
        randomize(net, seed=1)
        init = net.get_weights()
    net.set_weights(init)
    if name == "mirrored_shared":  # one traced pass per replica for both steps
        weight_step, arch_step = make_search_steps(net, arch, w_opt, a_opt, "gumbel_max",
                                                   strategy, **how)
    else:
        weight_step = make_weight_step(net, arch, w_opt, "gumbel_max", strategy,
                                       return_indices=True)
        arch_step = make_arch_step(net, arch, a_opt, "gumbel_max", strategy, **how)
    if mirrored:  # each replica gets the same 4 images: the single run's batch
        data = tf.data.Dataset.from_tensor_slices((np.concatenate([x, x]), np.concatenate([y, y])))
        data = iter(strategy.experimental_distribute_dataset(data.batch(8).repeat()))
    else:
        data = iter(tf.data.Dataset.from_tensor_slices((x, y)).batch(4).repeat())
    losses, arch_losses, paths = [], [], []
    for _ in range(4):
        loss, indices = weight_step(*next(data))
        arch_loss, _ = arch_step(*next(data))
        losses.append(float(loss)); arch_losses.append(float(arch_loss))
        paths.append(indices.numpy().tolist())
    out[f"{name}/{estimator}"] = {"losses": losses, "arch_losses": arch_losses, "paths": paths,
                 "theta": arch.theta.numpy().tolist(), "replicas": strategy.num_replicas_in_sync,
                 "kernel": net.stem[0].kernel.numpy().ravel()[:20].tolist(),
                 # BatchNorm statistics on every device (a replica writing another's copy,
                 # or none, would show here)
                 "moving": [[c.numpy().ravel().tolist() for c in
                             getattr(w.value, "values", [w.value])]
                            for w in net.non_trainable_weights if "moving" in w.path]}
print(json.dumps(out))
"""


def test_mirrored_strategy_on_two_devices_matches_one_device():
    """The search's steps sharing one traced pass per replica with the reinforce θ gradient
    (the replicas' losses make one advantage), and separate steps with straight-through."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}
    proc = subprocess.run([sys.executable, "-c", _PARITY], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    _check_parity(out, "reinforce", "mirrored_shared")
    _check_parity(out, "straight_through", "mirrored")
    # The estimators differ: θ took another course.
    assert not np.allclose(out["single/reinforce"]["theta"],
                           out["single/straight_through"]["theta"])


def _check_parity(out: dict, estimator: str, mirrored_run: str) -> None:
    single, name = out[f"single/{estimator}"], f"{mirrored_run}/{estimator}"
    mirrored = out[name]
    assert single["replicas"] == 1 and len(set(map(tuple, single["paths"]))) > 1
    assert mirrored["replicas"] == 2
    assert mirrored["paths"] == single["paths"], name
    np.testing.assert_allclose(mirrored["losses"], single["losses"], rtol=1e-4)
    np.testing.assert_allclose(mirrored["arch_losses"], single["arch_losses"], rtol=1e-4)
    np.testing.assert_allclose(mirrored["theta"], single["theta"], atol=1e-5)
    np.testing.assert_allclose(mirrored["kernel"], single["kernel"], atol=1e-5)
    for (expected,), copies in zip(single["moving"], mirrored["moving"]):
        assert len(copies) == 2, name
        for copy in copies:
            np.testing.assert_allclose(copy, expected, rtol=1e-5, atol=1e-6)


def test_search_checkpoint_restores_every_weight_batch_norm_statistics_included(tmp_path):
    from tfnas.engine.checkpoint import search_checkpoint

    net = SuperNet(TINY, 10, (16, 16, 3))
    randomize(net, seed=7)
    path = search_checkpoint(net).save(str(tmp_path / "ckpt"))
    fresh = SuperNet(TINY, 10, (16, 16, 3))
    search_checkpoint(fresh).restore(path).assert_existing_objects_matched()
    moving = [w for w in net.weights if "moving" in w.path]
    assert moving and len(net.weights) > len(net.trainable_weights)
    for a, b in zip(net.weights, fresh.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_all_finite_finds_a_bad_weight_or_theta():
    # The search checks this before every save, so that a step whose update broke the weights
    # (its own loss, computed before the update, was fine) never reaches a checkpoint.
    from tfnas.engine.checkpoint import all_finite, search_checkpoint

    net = SuperNet(TINY, 10, (16, 16, 3))
    arch = ArchParams(net.allowed_mask(), seed=0)
    checkpoint = search_checkpoint(net, **arch.checkpoint_items())
    assert all_finite(checkpoint)
    moving = next(w for w in net.weights if "moving_variance" in w.path)
    moving.assign(np.full(moving.shape, np.inf, np.float32))
    assert not all_finite(checkpoint)
    moving.assign(np.ones(moving.shape, np.float32))
    arch.theta.assign(np.full(arch.theta.shape, np.nan, np.float32))
    assert not all_finite(checkpoint)


@pytest.mark.parametrize("share", [True, False])
def test_float16_steps_skip_an_overflowing_update_and_halve_the_scale(share):
    """Under mixed_float16 the steps scale the loss: a step whose scaled gradients overflow
    moves no weight, no optimizer slot and no θ, and halves the scale; a finite one updates
    as usual and keeps it."""
    from tfnas.engine import loss_scale_for_policy

    assert loss_scale_for_policy() is None  # float32: nothing to scale
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        net = SuperNet(TINY, 10, SHAPE)
        arch = ArchParams(net.allowed_mask(), seed=3)
        w_opt = keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=0.05)
        a_opt = keras.optimizers.Adam(0.01)
        scale = loss_scale_for_policy()
        weight_step, arch_step = make_search_steps(net, arch, w_opt, a_opt, "gumbel_max",
                                                   share=share, loss_scale=scale)
        x, y = batch(5)
        weights = [v.numpy().copy() for v in net.trainable_variables]
        theta = arch.theta.numpy().copy()
        scale.scale.assign(2.0 ** 40)  # float16 gradients of a loss this large overflow
        loss, _ = weight_step(x, y)
        arch_step(x, y)
        assert np.isfinite(float(loss))  # the loss itself is fine; only the update is skipped
        assert all(np.array_equal(a, v.numpy()) for a, v in zip(weights, net.trainable_variables))
        assert np.array_equal(theta, arch.theta.numpy())
        assert int(w_opt.iterations) == int(a_opt.iterations) == 0
        assert float(scale.scale) == 2.0 ** 38  # halved by each step
        scale.scale.assign(2.0 ** 8)
        weight_step(x, y)
        arch_step(x, y)
        assert not all(np.array_equal(a, v.numpy())
                       for a, v in zip(weights, net.trainable_variables))
        assert not np.array_equal(theta, arch.theta.numpy())
        assert (float(scale.scale), int(scale.good_steps)) == (2.0 ** 8, 2)
        assert int(w_opt.iterations) == int(a_opt.iterations) == 1
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _trained_on_one_op(op_name: str):
    """The vital-only TINY supernet (only layer2_1, non-residual, is searched) whose path
    through `op_name` learned a few fixed batches; the other ops keep their random weights."""
    keras.utils.set_random_seed(3)
    net = SuperNet(TINY, 4, SHAPE, vital_only=True)
    op = net.space.ops.index(op_name)
    path = tf.constant([op if n > 1 else net.fixed[i] for i, n in
                        enumerate(net.allowed_mask().sum(axis=1))], tf.int32)
    batches = [batch(100 + i, 16) for i in range(3)]
    batches = [(x, y % 4) for x, y in batches]
    arch = ArchParams(net.allowed_mask(), seed=0)
    train = make_weight_step(net, arch, keras.optimizers.Adam(0.01), "fixed", anneal=False)
    for i in range(60):
        train(*batches[i % 3], path)
    return net, batches, op


def test_reinforce_learns_the_op_with_the_lower_validation_loss():
    from tfnas.nn.sampling import LossAverage
    net, batches, good = _trained_on_one_op("k3e3")
    layer = int(np.flatnonzero(net.allowed_mask().sum(axis=1) > 1)[0])
    arch = ArchParams(net.allowed_mask(), tau=1.0, tau_decay=1.0, seed=5)
    step = make_arch_step(net, arch, keras.optimizers.Adam(0.1), "gumbel_max",
                          estimator="reinforce", baseline=LossAverage())
    for i in range(40):
        step(*batches[i % 3])
    assert arch.probabilities().numpy()[layer, good] > 0.8


def test_straight_through_gradient_vanishes_behind_batch_norm():
    # Why reinforce is the default: the straight-through gradient of the drawn op's weight is
    # dL/d(scale of the layer's output); the head's conv + BatchNorm undo that scale, so what
    # is left (BN's epsilon) is a thousandth of the loss gaps between the ops.
    net, batches, _ = _trained_on_one_op("k3e3")
    layer = int(np.flatnonzero(net.allowed_mask().sum(axis=1) > 1)[0])
    images, labels = batches[0]
    losses, grads = [], []
    for op in np.flatnonzero(net.allowed_mask()[layer]):
        indices = [int(op) if i == layer else net.fixed[i] for i in range(net.num_layers)]
        weights = tf.Variable(tf.one_hot(indices, net.num_ops))
        with tf.GradientTape() as tape:
            logits = net(images, training=True, indices=tf.constant(indices), weights=weights)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                labels, logits, from_logits=True))
        losses.append(float(loss))
        grads.append(float(tape.gradient(loss, weights)[layer, op]))
    gap = max(losses) - min(losses)
    assert gap > 0.5  # the trained op is much better
    assert max(abs(g) for g in grads) < 0.01 * gap


def test_reinforce_needs_a_baseline_and_estimators_are_checked():
    net = SuperNet(TINY, 10, SHAPE)
    arch = ArchParams(net.allowed_mask(), seed=0)
    with pytest.raises(ValueError, match="LossAverage"):
        make_arch_step(net, arch, keras.optimizers.Adam(0.1), "gumbel_max",
                       estimator="reinforce")
    with pytest.raises(ValueError, match="estimators are"):
        make_arch_step(net, arch, keras.optimizers.Adam(0.1), "gumbel_max",
                       estimator="straight")
