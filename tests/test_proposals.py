"""Space proposals (HourNAS eq. 7-9): feasibility, fixed layers, orthogonality, the legal mask,
two-level sampling, JSON round-trip and the CLI's interface (SPEC §5)."""

import json
import os
import re

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli

from tfnas.cost.tables import cost_tables
from tfnas.errors import TfnasError
from tfnas.proposals import Proposals, make_budget, optimize_proposals, sample_report
from tfnas.proposals.stats import mean_pairwise_difference
from tfnas.space import get_space, parse_genotype

FBNET_B = {"params": 4.8e6, "flops": 300e6}
FBNET_RANGES = "params 2.776M..5.803M, flops 51.81M..572.6M"  # cheapest..dearest fbnet nets
LAYER6 = {17: 7, 18: 7, 19: 7, 20: 7}  # layer6_1..layer6_4 fixed to k5e6, the dearest op


@pytest.fixture(scope="module")
def fbnet():
    return cost_tables(get_space("fbnet"))


@pytest.fixture(scope="module")
def proposals(fbnet):
    return optimize_proposals(fbnet, FBNET_B, seed=0)


def test_what_you_set_is_what_you_get(fbnet, proposals):
    archs = proposals.sample(10000, seed=1)
    report = sample_report(fbnet, FBNET_B, archs)
    assert report["within_5pct_all"] >= 0.9, report
    assert report["distinct"] >= 1000
    assert len(np.unique(proposals.most_likely(), axis=0)) == proposals.num_proposals
    for objective, target in FBNET_B.items():
        assert abs(report["objectives"][objective]["mean"] / target - 1) < 0.02


def test_infeasible_targets_name_every_feasible_range(fbnet):
    high = fbnet.range("flops")[1]
    with pytest.raises(TfnasError) as error:
        optimize_proposals(fbnet, {"params": 4.8e6, "flops": high * 1.01})
    message = str(error.value)
    assert "flops 578.4M is above the most expensive reachable architecture" in message
    assert FBNET_RANGES in message
    with pytest.raises(TfnasError, match="params 2M is below the cheapest"):
        make_budget(fbnet, {"params": 2e6, "flops": 300e6})
    with pytest.raises(TfnasError, match="no cost table for objective.*latency_ms"):
        make_budget(fbnet, {"latency_ms": 5.0})


def test_fixed_layers_are_constants_that_count_toward_the_budget(fbnet, proposals):
    # 4.0M params is feasible in fbnet, but not once layer6 is all k5e6 (1.77M by itself).
    with pytest.raises(TfnasError, match=r"with 4 fixed layer\(s\): params 4.309M\.\.5.803M"):
        make_budget(fbnet, {"params": 4.0e6, "flops": 300e6}, LAYER6)
    fixed = optimize_proposals(fbnet, FBNET_B, fixed=LAYER6, seed=0)
    archs = fixed.sample(4000, seed=1)
    assert (archs[:, list(LAYER6)] == 7).all()
    assert sample_report(fbnet, FBNET_B, archs)["within_5pct_all"] >= 0.9
    # The fixed layers' cost is part of every sample: the free layers fill what is left.
    free = [layer for layer in range(fbnet.legal.shape[0]) if layer not in LAYER6]
    table = fbnet.tables["params"]
    fixed_params = fbnet.constants["params"] + sum(table[layer, op] for layer, op in LAYER6.items())

    def free_params(a):
        return table[free, a[:, free]].sum(axis=1).mean()

    assert abs((fixed_params + free_params(archs)) / FBNET_B["params"] - 1) < 0.02
    assert free_params(archs) < free_params(proposals.sample(4000, seed=1)) - 0.3e6


def test_orthogonality_diversifies_proposals(fbnet):
    kwargs = dict(iterations=300, seed=0)
    plain = optimize_proposals(fbnet, FBNET_B, beta=0.0, **kwargs)
    orthogonal = optimize_proposals(fbnet, FBNET_B, beta=1e-2, **kwargs)
    assert orthogonal.info["orthogonality"] < plain.info["orthogonality"] / 10
    assert (mean_pairwise_difference(orthogonal.most_likely())
            > mean_pairwise_difference(plain.most_likely()) + 0.1)
    distinct = [len(np.unique(p.sample(2000, seed=1), axis=0)) for p in (plain, orthogonal)]
    assert distinct[1] > distinct[0]


def test_closed_form_moments_match_sampled_architectures(fbnet):
    """Eq. 7 is evaluated in closed form; its mean/std must be those of real Gumbel-Max draws."""
    import tensorflow as tf

    from tfnas.proposals import ProposalObjective

    random = optimize_proposals(fbnet, FBNET_B, num_proposals=2, iterations=0, seed=3)
    objective = ProposalObjective(make_budget(fbnet, FBNET_B))
    mean, std = (x.numpy() for x in objective.moments(tf.constant(random.theta), random.tau))
    for j in range(2):
        one = Proposals.from_json({**random.to_json(), "pi": [0.0 if i == j else -50.0
                                                              for i in range(2)]})
        costs = fbnet.batch_cost(one.sample(20000, seed=j))
        for i, name in enumerate(FBNET_B):
            sampled = costs[name] / fbnet.range(name)[1]  # normalized by M_i, as in eq. 7
            assert abs(sampled.mean() - mean[j, i]) < 0.003
            assert abs(sampled.std() / std[j, i] - 1) < 0.03


def test_illegal_ops_are_never_sampled(fbnet, proposals):
    archs = proposals.sample(20000, seed=2, tau=1e3)  # nearly uniform over the legal ops
    drawn = np.zeros_like(fbnet.legal)
    drawn[np.arange(archs.shape[1])[None, :], archs] = True
    assert (drawn == fbnet.legal).all()  # every legal op drawn somewhere, no illegal one
    assert (proposals.probabilities()[:, ~fbnet.legal] == 0).all()


def test_two_level_sampling_follows_the_selector(proposals):
    pi = np.full(proposals.num_proposals, -20.0)
    pi[3] = 20.0
    picky = Proposals.from_json({**proposals.to_json(), "pi": pi.tolist()})
    _, which = picky.sample_with_proposals(500, seed=0)
    assert (which == 3).all()
    assert (picky.best() == picky.most_likely()[3]).all()
    _, which = proposals.sample_with_proposals(8000, seed=0)  # uniform Π
    assert np.allclose(np.bincount(which, minlength=8) / 8000, 1 / 8, atol=0.02)


def test_json_round_trip(proposals, tmp_path):
    again = Proposals.from_json(json.dumps(proposals.to_json()))
    for name in ("theta", "pi", "mask"):
        assert np.array_equal(getattr(again, name), getattr(proposals, name))
    assert (again.space, again.ops, again.tau, again.targets) == (
        proposals.space, proposals.ops, proposals.tau, proposals.targets)
    assert np.array_equal(again.sample(100, seed=5), proposals.sample(100, seed=5))
    path = tmp_path / "proposals.json"
    proposals.save(str(path))
    assert np.array_equal(Proposals.load(str(path)).theta, proposals.theta)
    path.write_text('{"format": "something else"}')
    with pytest.raises(TfnasError, match="not a tfnas.proposals/1 file"):
        Proposals.load(str(path))


def test_latency_table_adds_an_objective(fbnet, tmp_path):
    # Any per-(layer, op) file works: here a made-up 1 ms per 100M FLOPs device.
    table = np.where(fbnet.legal, fbnet.tables["flops"] / 1e8, 0.0)
    path = tmp_path / "lut.json"
    path.write_text(json.dumps({"space": "fbnet", "ops": list(fbnet.ops),
                                "table": table.tolist(), "constant_ms": 0.5}))
    tables = fbnet.with_latency(str(path))
    targets = {**FBNET_B, "latency_ms": 0.5 + (300e6 - fbnet.constants["flops"]) / 1e8}
    archs = optimize_proposals(tables, targets).sample(2000, seed=0)
    assert sample_report(tables, targets, archs)["within_5pct_all"] >= 0.9


def test_malformed_or_foreign_latency_tables_are_one_error(fbnet, tmp_path):
    good = {"space": "fbnet", "ops": list(fbnet.ops), "constant_ms": 0.5,
            "table": np.zeros(fbnet.legal.shape).tolist()}
    cases = [({"table": [[1.0, 2.0], [3.0]]}, '"table" must hold 22 rows'),
             ({"table": [["fast"] * 9] * 22}, '"table" must hold 22 rows'),
             ({"table": [[1.0] * 9] * 21}, "(it has shape (21, 9))"),
             ({"constant_ms": "0.5"}, '"constant_ms" must be a number'),
             ({"ops": "k3e1"}, '"ops" must be a list of op names'),
             # deploy.lut records the network it timed; the search counts 224 px, 1000 classes.
             ({"resolution": 32, "num_classes": 1000},
              "measured at resolution 32; the search counts costs at resolution 224")]
    for change, fragment in cases:
        path = tmp_path / "lut.json"
        path.write_text(json.dumps({**good, **change}))
        with pytest.raises(TfnasError, match=re.escape(fragment)):
            fbnet.with_latency(str(path))
    path.write_text(json.dumps({**good, "resolution": 224, "width_multiplier": 1.0}))
    assert fbnet.with_latency(str(path)).constants["latency_ms"] == 0.5


def test_cli_json_and_dump(fbnet, tmp_path):
    dump, plot, saved = tmp_path / "archs.txt", tmp_path / "fig.png", tmp_path / "p.json"
    proc = run_cli("tfnas.proposals", "--space=fbnet", "--target_params=4.8e6",
                   "--target_flops=300e6", "--samples=3000", "--json", f"--dump={dump}",
                   f"--plot={plot}", f"--output={saved}")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["samples"] == 3000 and 0 < info["seconds"] < 60
    lines = dump.read_text().splitlines()
    assert len(lines) == 3000
    archs = np.array([parse_genotype("fbnet", line).indices() for line in lines])  # all legal
    report = sample_report(fbnet, FBNET_B, archs)
    assert info["within_5pct_all"] == report["within_5pct_all"] >= 0.9
    assert info["distinct"] == report["distinct"]
    assert len(info["proposals"]) == 8 and info["most_likely_distinct"] == 8
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Proposals.load(str(saved)).theta.shape == (8, 22, 9)


def test_cli_bad_input_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("")
    (tmp_path / "uneven.json").write_text('{"space": "fbnet", "table": [[1, 2], [3]]}')
    cases = [
        (["--target_params=9e6", "--target_flops=300e6"], FBNET_RANGES),
        (["--target_params=4e6", "--fix=layer6_1:k5e6,layer6_2:k5e6,layer6_3:k5e6,"
          "layer6_4:k5e6"], "feasible ranges with 4 fixed layer(s): params 4.309M..5.803M"),
        (["--target_params=4e6", "--fix=layer2_1:skip"], "'skip' is not legal at layer2_1"),
        (["--target_latency_ms=3"], "--target_latency_ms needs --latency_table"),
        (["--target_latency_ms=3", f"--latency_table={tmp_path}/uneven.json"],
         '"table" must hold 22 rows'),
        ([], "give at least one of --target_params"),
        (["--target_params=4.8e6", f"--dump={tmp_path}/afile/x.txt"],
         f"cannot write --dump {tmp_path}/afile/x.txt: {tmp_path}/afile is a file"),
        (["--target_params=4.8e6", f"--output={tmp_path}"],
         f"--output {tmp_path} is a directory; give a file path"),
        # Every output is checked before any is written: no partial set of them.
        (["--target_params=4.8e6", f"--dump={tmp_path}/d.txt", "--plot=/proc/fig.png"],
         "cannot write --plot /proc/fig.png"),
        (["--target_params=4.8e6", f"--dump={tmp_path}/x", f"--output={tmp_path}/x"],
         "--dump, --output and --plot must be different files"),
    ]
    for args, fragment in cases:
        proc = run_cli("tfnas.proposals", "--space=fbnet", *args)
        assert proc.returncode == 2
        assert_one_line_error(proc, fragment)
    assert sorted(os.listdir(tmp_path)) == ["afile", "uneven.json"]
