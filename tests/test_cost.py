"""The exact cost model: params equal Keras' count, FLOPs equal an independent layer walk,
and the paper's published architectures come out at the printed Params/FLOPs."""

import keras
import numpy as np
import pytest

from tfnas.cost.keras_count import count_flops
from tfnas.cost.tables import cost_tables
from tfnas.nn.builder import build_model
from tfnas.space import Genotype, get_space
from tfnas.space.published import PUBLISHED

RANDOM_PER_SPACE = 6
CHUNKS = 3  # parametrized chunks so that pytest-xdist spreads the model builds


def random_genotypes(space, n, seed):
    rng = np.random.default_rng(seed)
    mask = space.legal_mask()
    for _ in range(n):
        yield Genotype.from_indices(space, [rng.choice(np.flatnonzero(row)) for row in mask])


def covering_genotypes(space, seed):
    """Every legal op of every layer at least once, in as many nets as a layer has legal ops:
    net j takes each layer's legal op j + offset (mod their number), an offset drawn per layer
    so that the nets mix ops. (50 random nets per space left 0-3 of a space's 147-267
    layer-op pairs untested.)"""
    rng = np.random.default_rng(seed)
    legal = [np.flatnonzero(row) for row in space.legal_mask()]
    offsets = [int(rng.integers(len(ops))) for ops in legal]
    for j in range(max(len(ops) for ops in legal)):
        yield Genotype.from_indices(space, [int(ops[(j + offset) % len(ops)])
                                            for ops, offset in zip(legal, offsets)])


@pytest.mark.parametrize("chunk", range(CHUNKS))
@pytest.mark.parametrize("name", ["fbnet", "fbnet_enlarged", "mnasnet", "efficientnet"])
def test_params_and_flops_match_the_built_model(name, chunk):
    space = get_space(name)
    tables = cost_tables(space)
    genotypes = [*covering_genotypes(space, seed=len(name)),
                 *random_genotypes(space, RANDOM_PER_SPACE, seed=len(name) + 1)]
    covered = {(layer, op) for g in genotypes for layer, op in enumerate(g.indices())}
    assert covered == {(layer, int(op)) for layer, row in enumerate(space.legal_mask())
                       for op in np.flatnonzero(row)}
    assert len(set(genotypes)) == len(genotypes)
    keras.backend.clear_session()
    for genotype in genotypes[chunk::CHUNKS]:
        # Counting reads shapes only; a stateless scope initializes the weights in one batch
        # on exit, a third faster than layer by layer (no clear_session per build: its
        # gc.collect is a fifth of a build).
        with keras.StatelessScope():
            model = build_model(space, genotype)
            cost = tables.cost(genotype)
            assert cost["params"] == model.count_params(), str(genotype)
            assert cost["flops"] == count_flops(model), str(genotype)


@pytest.mark.parametrize("published", list(PUBLISHED.values()), ids=list(PUBLISHED))
def test_published_architectures_match_the_paper(published):
    cost = cost_tables(get_space(published.space)).cost(published.genotype())
    assert abs(cost["params"] / 1e6 / published.params_m - 1) < 0.03
    assert abs(cost["flops"] / 1e6 / published.flops_m - 1) < 0.04


@pytest.mark.parametrize("name", ["HourNAS-E", "HourNAS-F"])
def test_multiply_add_rows_match_to_the_tenth_of_a_percent(name):
    published = PUBLISHED[name]
    cost = cost_tables(get_space(published.space)).cost(published.genotype())
    assert abs(cost["flops"] / 1e6 / published.flops_m - 1) < 0.002


def test_costs_at_a_proxy_resolution_match_the_model_built_there():
    space = get_space("efficientnet")
    genotype = PUBLISHED["HourNAS-F"].genotype()
    model = build_model(space, genotype, num_classes=10, input_shape=(64, 64, 3))
    cost = cost_tables(space, resolution=64, num_classes=10).cost(genotype)
    assert cost == {"params": model.count_params(), "flops": count_flops(model)}


def test_width_multiplier_scales_channels_and_costs():
    space = get_space("fbnet")
    genotype = PUBLISHED["HourNAS-A"].genotype()
    half = build_model(space, genotype, width_multiplier=0.5, input_shape=(32, 32, 3),
                       num_classes=10)
    scaled = space.with_width(0.5)
    assert half.count_params() == cost_tables(scaled, 32, 10).cost(genotype)["params"]
    assert half.count_params() < build_model(space, genotype, input_shape=(32, 32, 3),
                                             num_classes=10).count_params() / 2.5


def test_batch_cost_equals_single_cost_and_range_brackets_it():
    space = get_space("mnasnet")
    tables = cost_tables(space)
    genotypes = list(random_genotypes(space, 20, seed=3))
    batch = tables.batch_cost(np.array([g.indices() for g in genotypes]))
    lo, hi = tables.range("flops")
    for i, g in enumerate(genotypes):
        assert batch["flops"][i] == tables.cost(g)["flops"]
        assert lo <= batch["flops"][i] <= hi
