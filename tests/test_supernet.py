"""The supernet holds every legal op of every layer, samples only allowed ops, saves and
reloads, a path copied into the standalone builder's model gives the same outputs, and its
fused BatchNorm trains as the built-in one does."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from supernet_fixtures import TINY, random_indices, randomize
from tfnas.cost.tables import cost_tables
from tfnas.engine import copy_to_child, extract_child
from tfnas.nn.blocks import FusedBatchNorm
from tfnas.nn.builder import build_model
from tfnas.nn.sampling import ArchParams, expected_cost, fixed_sample, resource_penalty
from tfnas.nn.supernet import SuperNet
from tfnas.space import Genotype, get_space

SHAPE = (32, 32, 3)


def test_supernet_holds_every_legal_op_with_the_builder_names():
    # fbnet: group ops and skip; layers from 8 on are pinned to keep the build short (a full
    # supernet holds ~2,600 variables). mnasnet's fixed block and SE ops are covered by the
    # child parity test below.
    name = "fbnet"
    keras.backend.clear_session()
    space = get_space(name)
    pins = {i: 3 for i in range(8, space.num_layers)}
    net = SuperNet(name, 10, SHAPE, width_multiplier=0.25, fixed=pins)
    tables = cost_tables(space.with_width(0.25), resolution=32, num_classes=10)
    # Params of a supernet: the fixed part plus every allowed (layer, op) entry once.
    allowed = net.allowed_mask()
    assert net.count_params() == tables.constants["params"] + tables.tables["params"][allowed].sum()
    assert [b.candidates for b in net.super_blocks[:8]] == [
        list(l.legal_ops) for l in space.layers[:8]]
    assert all(b.candidates == ["k3e6"] for b in net.super_blocks[8:])
    op = net.super_blocks[5].candidate(space.ops[2])
    assert op.parts[0].name == f"{space.layers[5].name}.expand_conv"


def test_residual_ops_start_as_the_identity_in_the_supernet_only():
    """A fresh supernet's residual ops add nothing to their input (zero scale on the last BN),
    so random deep paths start as a shallow net; the standalone net keeps the usual init."""
    net = SuperNet(TINY, 10, SHAPE)
    residual = [(layer, cand) for layer, _, cand in net.candidate_groups()
                if cand.block.residual and cand.parts]
    assert {layer for layer, _ in residual} == {0, 2}  # the two stride-1, same-width layers
    for layer, cand in residual:
        inputs = tf.random.normal((2, *(cand.in_hw or (4, 4)), cand.in_channels))
        np.testing.assert_array_equal(cand(inputs, training=True).numpy(), inputs.numpy())
    child = build_model(TINY, Genotype.from_indices(get_space(TINY), [1, 1, 1]), 10, SHAPE)
    gammas = [l.gamma.numpy() for l in child.layers if l.name.endswith("project_bn")]
    assert len(gammas) == 3 and all(np.all(g == 1) for g in gammas)


def test_vital_only_supernet_searches_the_vital_layers_only():
    space = get_space("fbnet")
    net = SuperNet("fbnet", 10, SHAPE, width_multiplier=0.25, vital_only=True)
    vital = space.vital_mask()
    allowed = net.allowed_mask()
    for i, block in enumerate(net.super_blocks):
        if vital[i]:
            assert block.candidates == list(space.layers[i].legal_ops)
        else:
            assert block.candidates == ["skip"] and not block.weights
            assert allowed[i].sum() == 1 and allowed[i, space.ops.index("skip")]
    arch = ArchParams(allowed, seed=0)
    for _ in range(5):
        sample = arch.sample("gumbel_max")
        assert np.all(allowed[np.arange(len(vital)), sample.indices.numpy()])
        assert net.forward(tf.zeros((2, *SHAPE)), sample).shape == (2, 10)


def test_pinned_layers_run_their_op_whatever_is_sampled():
    net = SuperNet(TINY, 10, SHAPE, fixed={0: 1, 2: 0})
    assert [len(b.candidates) for b in net.super_blocks] == [1, 3, 1]
    randomize(net)
    x = tf.random.normal((2, *SHAPE))
    a = net.forward(x, fixed_sample([1, 2, 0]))
    b = net.forward(x, fixed_sample([3, 2, 3]))  # pins override the sample at layers 0, 2
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)


def test_sampling_never_draws_illegal_ops_and_follows_softmax_theta_over_tau():
    space = get_space("fbnet")
    legal = space.legal_mask()
    arch = ArchParams(legal, tau=2.0, seed=1, init_stddev=1.0)
    draws = tf.stack([arch.sample("gumbel_max").indices for _ in range(600)]).numpy()
    uniform = tf.stack([arch.sample("uniform").indices for _ in range(200)]).numpy()
    rows = np.arange(space.num_layers)
    assert legal[rows, draws].all() and legal[rows, uniform].all()
    freq = np.stack([np.bincount(draws[:, i], minlength=space.num_ops) / len(draws)
                     for i in rows])
    assert np.abs(freq - arch.probabilities().numpy()).max() < 0.08
    soft = arch.sample("gumbel_softmax").weights.numpy()
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-5)
    assert (soft[~legal] == 0).all()


def test_gumbel_max_weights_are_one_hot_with_a_straight_through_gradient():
    tables = cost_tables(get_space("fbnet"))
    arch = ArchParams(get_space("fbnet").legal_mask(), seed=2)
    with tf.GradientTape() as tape:
        sample = arch.sample("gumbel_max")
        flops = expected_cost(sample, tables.tables["flops"], tables.constants["flops"])
    grad = tape.gradient(flops, arch.theta).numpy()
    np.testing.assert_array_equal(sample.weights.numpy(),
                                  tf.one_hot(sample.indices, arch.num_ops).numpy())
    assert flops.numpy() == pytest.approx(tables.cost(sample.indices.numpy())["flops"], rel=1e-5)
    assert np.abs(grad).max() > 0
    penalty = resource_penalty(tables, {"flops": 300e6}, alpha=5.0)(sample)
    assert float(penalty) == pytest.approx(
        5.0 * abs(float(flops) - 300e6) / tables.range("flops")[1], rel=1e-4)


def test_saved_supernet_reloads_with_the_same_outputs(tmp_path):
    net = SuperNet(TINY, 10, SHAPE, fixed={0: 3})
    randomize(net, seed=3)
    path = os.path.join(tmp_path, "supernet.keras")
    net.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, SuperNet) and loaded.get_config() == net.get_config()
    x = tf.random.normal((2, *SHAPE))
    arch = ArchParams(net.allowed_mask(), seed=4)
    for mode in ("gumbel_max", "softmax"):
        sample = arch.sample(mode)
        np.testing.assert_allclose(loaded.forward(x, sample).numpy(),
                                   net.forward(x, sample).numpy(), rtol=1e-5, atol=1e-6)
    vital = SuperNet(TINY, 10, SHAPE, vital_only=True, fixed={0: 2})
    again = SuperNet.from_config(vital.get_config())
    assert again.vital_only and again.fixed == vital.fixed == {0: 2, 2: 3}


@pytest.mark.parametrize("name", ["fbnet", "mnasnet"])
def test_fixed_supernet_matches_the_standalone_child_after_copying(name):
    """Fully pinned supernet -> builder's child: same outputs in inference mode. The genotype
    mixes group-2 ops, SE ops and skip."""
    keras.backend.clear_session()
    space = get_space(name)
    rng = np.random.default_rng(7)
    indices = random_indices(space.legal_mask(), rng)
    genotype = Genotype.from_indices(space, indices)
    net = SuperNet(name, 10, SHAPE, 0.25, fixed=dict(enumerate(indices)))
    randomize(net, seed=5)
    child = extract_child(net)
    assert child.count_params() == net.count_params()
    x = tf.random.normal((4, *SHAPE))
    np.testing.assert_allclose(child(x, training=False).numpy(),
                               net(x, training=False).numpy(), rtol=1e-4, atol=1e-4)
    assert str(genotype).count(",") == space.num_layers - 1


def test_a_path_of_an_unpinned_supernet_copies_into_the_child():
    x = tf.random.normal((4, *SHAPE))
    full = SuperNet(TINY, 10, SHAPE)
    randomize(full, seed=6)
    tiny_genotype = Genotype.from_indices(get_space(TINY), [0, 2, 3])
    tiny_child = build_model(TINY, tiny_genotype, 10, SHAPE)
    copy_to_child(full, tiny_child, tiny_genotype)
    np.testing.assert_allclose(tiny_child(x, training=False).numpy(),
                               full.forward(x, fixed_sample([0, 2, 3])).numpy(),
                               rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="not a candidate"):
        copy_to_child(SuperNet(TINY, 10, SHAPE, fixed={0: 1}), tiny_child, tiny_genotype)


@pytest.mark.parametrize("dtype", ["float32", "mixed_float16"])
def test_fused_batch_norm_trains_as_the_built_in_layer(dtype):
    """Same output and gradients in training (inference is the built-in call); the moving
    mean moves alike, the moving variance by the unbiased batch variance."""
    x = tf.random.stateless_normal((4, 5, 5, 6), seed=(1, 2)) * 3.0 + 1.0
    layers = [cls(momentum=0.9, epsilon=1e-3, dtype=dtype)
              for cls in (keras.layers.BatchNormalization, FusedBatchNorm)]
    outs, grads = [], []
    for layer in layers:
        layer.build(x.shape)
        layer.gamma.assign(np.linspace(0.5, 1.5, 6))
        layer.beta.assign(np.linspace(-1, 1, 6))
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.range(6, dtype=tf.float32))
        assert y.dtype == layer.compute_dtype
        outs.append(tf.cast(y, tf.float32).numpy())
        grads.append([g.numpy() for g in tape.gradient(loss, [x, layer.gamma, layer.beta])])
    tol = 1e-4 if dtype == "float32" else 2e-2
    np.testing.assert_allclose(outs[1], outs[0], rtol=tol, atol=tol)
    for fused, plain in zip(grads[1], grads[0]):
        np.testing.assert_allclose(fused, plain, rtol=tol, atol=tol)
    plain, fused = layers
    stat_tol = 1e-5 if dtype == "float32" else 1e-3  # the float16 input is rounded
    np.testing.assert_allclose(fused.moving_mean.numpy(), plain.moving_mean.numpy(),
                               rtol=stat_tol)
    n = 4 * 5 * 5
    batch_var = tf.math.reduce_variance(x, axis=(0, 1, 2)).numpy()
    np.testing.assert_allclose(fused.moving_variance.numpy(),
                               0.9 + 0.1 * batch_var * n / (n - 1), rtol=stat_tol)
