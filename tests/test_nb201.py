"""The NAS-Bench-201 cell space: registry, string forms, cost tables, builder, table lookup."""

import numpy as np
import pytest

from tfnas.cost.tables import cost_tables
from tfnas.errors import GenotypeError
from tfnas.space import Genotype, get_space, list_spaces, parse_genotype
from tfnas.space.nb201 import NB201_OPS, dead_edges, parse_nb201, to_nb201_string

BEST_NB201 = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
              "+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|")


def test_space_is_registered_with_six_edges_of_five_ops():
    space = get_space("nb201")
    assert "nb201" in list_spaces()
    assert space.ops == NB201_OPS and space.num_layers == 6 and space.size() == 15625
    assert [c.name for c in space.choices] == [
        "edge1_0", "edge2_0", "edge2_1", "edge3_0", "edge3_1", "edge3_2"]


def test_canonical_and_comma_strings_round_trip():
    g = parse_nb201(BEST_NB201)
    assert str(g) == ("nor_conv_3x3,nor_conv_3x3,nor_conv_3x3,skip_connect,nor_conv_3x3,"
                      "nor_conv_3x3")
    assert to_nb201_string(g) == BEST_NB201
    assert parse_nb201(str(g)) == g == parse_genotype("nb201", str(g))
    rng = np.random.default_rng(0)
    for _ in range(20):
        g = Genotype.from_indices(get_space("nb201"), rng.integers(0, 5, 6))
        assert parse_nb201(to_nb201_string(g)) == g


@pytest.mark.parametrize("bad,fragment", [
    ("|nor_conv_3x3~0|+|none~0|none~1|", "3 nodes"),
    ("|nor_conv_3x3~0|+|none~0|+|none~0|none~1|none~2|", "node 2 of an NAS-Bench-201"),
    ("|nor_conv_3x3~1|+|none~0|none~1|+|none~0|none~1|none~2|", "expected 'op~0'"),
    ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv'"),
    ("none,none,none", "6 searchable layers"),
])
def test_bad_strings_say_what_is_wrong(bad, fragment):
    with pytest.raises(GenotypeError, match=fragment):
        parse_nb201(bad)


def test_cost_tables_at_the_benchmark_setting():
    space = get_space("nb201")
    tables = space.cost_tables()  # 32x32, 10 classes
    # conv3x3 on one edge of all 15 cells: 5 cells x (9C^2 + 4C) for C = 16, 32, 64.
    per_edge = sum(5 * (9 * c * c + 4 * c) for c in (16, 32, 64))
    assert tables.tables["params"][0, NB201_OPS.index("nor_conv_3x3")] == per_edge
    assert tables.tables["flops"][0, NB201_OPS.index("nor_conv_3x3")] == 15 * 9 * 16 * 16 * 32 * 32
    assert tables.tables["params"][:, [0, 1, 4]].sum() == 0  # none, skip, pool: no weights
    assert cost_tables(space, 32, 10).cost(parse_nb201(BEST_NB201)) == tables.cost(
        parse_nb201(BEST_NB201))


def test_dead_edges():
    # node 2 feeds nothing (3<-2 is none): its two input edges are dead.
    g = parse_genotype("nb201", "avg_pool_3x3,nor_conv_3x3,nor_conv_1x1,skip_connect,"
                                "skip_connect,none")
    assert dead_edges(g) == [1, 2]
    assert dead_edges(parse_nb201(BEST_NB201)) == []


def test_builder_params_and_flops_match_the_tables():
    import keras

    from tfnas.cost.keras_count import count_flops
    from tfnas.nn.nb201 import build_nb201_model

    space = get_space("nb201")
    tables = space.cost_tables()
    archs = [parse_nb201(BEST_NB201),
             parse_genotype("nb201", "avg_pool_3x3,nor_conv_3x3,nor_conv_1x1,skip_connect,"
                                     "nor_conv_1x1,none")]  # two dead edges
    for g in archs:
        model = build_nb201_model(g)
        idx = g.indices()
        dead = sum(tables.tables["params"][i, idx[i]] for i in dead_edges(g))
        dead_flops = sum(tables.tables["flops"][i, idx[i]] for i in dead_edges(g))
        cost = tables.cost(g)
        assert model.count_params() == cost["params"] - dead, str(g)
        assert count_flops(model) == cost["flops"] - dead_flops, str(g)
    out = model(np.zeros((2, 32, 32, 3), np.float32), training=False)
    assert out.shape == (2, 10)
    names = {layer.name for layer in model.layers}  # the last, dead-edge model
    assert "stage3_cell5.edge3_1.conv" in names and "stage1_cell1.edge1_0.pool" in names
    assert "stage1_cell1.edge2_0.conv" not in names  # feeds node 2, which feeds nothing
    assert isinstance(keras.Model.from_config(model.get_config()), keras.Model)


def test_all_none_output_gives_a_constant_net():
    from tfnas.nn.nb201 import build_nb201_model

    model = build_nb201_model(",".join(["none"] * 6))
    x = np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype(np.float32)
    out = np.asarray(model(x, training=False))
    np.testing.assert_allclose(out, out[:1].repeat(3, axis=0), atol=1e-6)


def test_table_uses_the_verified_encoding():
    pytest.importorskip("analognasbench")
    from tfnas.space.nb201_table import accuracy, accuracy_array, naslib_key

    acc = accuracy_array()
    assert acc.shape == (15625,) and acc.max() == pytest.approx(94.0664, abs=1e-3)
    assert naslib_key([3, 3, 3, 1, 3, 3]) == (2, 2, 0, 2, 2, 2)  # NASLib edge order
    # NAS-Bench-201's best cell is within 0.1 point of the table's best.
    assert accuracy(parse_nb201(BEST_NB201)) > 93.9
    # Every cell whose three edges into the output node are `none` is at chance.
    space = get_space("nb201")
    for row in np.random.default_rng(2).integers(0, 5, (30, 6)):
        row[3:] = 0
        assert accuracy(Genotype.from_indices(space, row)) == pytest.approx(10.0)


# -- the template (weight-sharing) network --------------------------------------------------

def _template_and_child(genotype: str):
    """The template and the child at a search's --width_multiplier, which scales C (8 -> 4)
    in both alike."""
    from tfnas.engine import copy_to_child
    from tfnas.nn.builder import build_model
    from tfnas.nn.supernets import make_supernet
    from tfnas.space.nb201 import NB201Space
    from tests.supernet_fixtures import randomize

    space = NB201Space(8, 1)
    net = make_supernet(space, 10, (16, 16, 3), width_multiplier=0.5)
    assert net.channels == 4
    randomize(net, seed=1)
    gen = parse_nb201(genotype)
    child = build_model(space, gen, 10, (16, 16, 3), width_multiplier=0.5)
    return net, child, gen, copy_to_child


@pytest.mark.parametrize("genotype", [
    BEST_NB201,
    "|avg_pool_3x3~0|+|none~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
    "|nor_conv_1x1~0|+|nor_conv_3x3~0|none~1|+|none~0|avg_pool_3x3~1|none~2|",  # dead edges
])
def test_template_on_a_fixed_path_equals_the_standalone_child(genotype):
    import tensorflow as tf
    net, child, gen, copy = _template_and_child(genotype)
    x = tf.random.stateless_normal((3, 16, 16, 3), seed=(1, 2))
    indices = tf.constant(gen.indices(), tf.int32)
    before = np.abs(net(x, training=False, indices=indices) - child(x, training=False)).max()
    assert before > 1e-3  # independent initializations differ
    copy(net, child, gen)
    after = net(x, training=False, indices=indices) - child(x, training=False)
    np.testing.assert_allclose(after, 0.0, atol=1e-4)
    from tfnas.engine import extract_child  # the same in one call, as for an MBConv supernet

    np.testing.assert_allclose(extract_child(net, str(gen))(x, training=False), child(x),
                               atol=1e-4)


def test_template_trains_with_the_engine_steps_and_round_trips_through_keras_saving(tmp_path):
    import keras
    import tensorflow as tf

    from tfnas import engine
    from tfnas.nn.nb201_supernet import NB201SuperNet
    from tfnas.nn.sampling import ArchParams

    net = NB201SuperNet(10, (16, 16, 3), channels=4, cells_per_stage=1)
    arch = ArchParams(net.allowed_mask(), seed=0)
    x = tf.random.stateless_normal((4, 16, 16, 3), seed=(3, 4))
    y = tf.constant([0, 1, 2, 3])
    uniform = engine.make_weight_step(net, arch, keras.optimizers.SGD(0.1), "uniform",
                                      return_indices=True)
    loss, drawn = uniform(x, y)
    assert np.isfinite(float(loss)) and drawn.shape == (6,)
    # A fixed path: the ops it does not use keep their weights (momentum and all).
    fixed = engine.make_weight_step(net, arch, keras.optimizers.SGD(0.1, momentum=0.9),
                                    "fixed")
    path = parse_nb201(BEST_NB201).indices()
    idle = [op for e, o, op in net.candidate_groups() if op.weights and path[e] != o]
    used = [op for e, o, op in net.candidate_groups() if op.weights and path[e] == o]
    before = [v.numpy().copy() for op in idle + used for v in op.trainable_weights]
    for _ in range(2):
        fixed(x, y, tf.constant(path, tf.int32))
    after = [v.numpy() for op in idle + used for v in op.trainable_weights]
    n_idle = sum(len(op.trainable_weights) for op in idle)
    assert all(np.array_equal(a, b) for a, b in zip(before[:n_idle], after[:n_idle]))
    assert not all(np.array_equal(a, b) for a, b in zip(before[n_idle:], after[n_idle:]))
    # The evaluator's relaxed (softmax) step moves θ.
    theta = arch.theta.numpy().copy()
    arch_step = engine.make_arch_step(net, arch, keras.optimizers.Adam(0.05), "softmax")
    arch_step(x, y)
    assert not np.allclose(arch.theta.numpy(), theta)

    saved = str(tmp_path / "template.keras")
    net.save(saved)
    loaded = keras.models.load_model(saved)
    indices = tf.constant(drawn, tf.int32)
    np.testing.assert_allclose(loaded(x, training=False, indices=indices),
                               net(x, training=False, indices=indices), atol=1e-5)
