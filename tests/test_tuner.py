"""SETN and TNAS oracles with real keras_tuner: search, state round-trip, reload, distribution."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import keras_tuner
import numpy as np
import pytest

from tfnas.errors import TfnasError
from tfnas.tuner import OneShotTuner, SETNOracle, TNASOracle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = dict(num_initial_points=4)
TNAS_FAST = dict(FAST, retrain_every=3, train_steps=10, pool_size=64, eps_inc=0.3,
                 vae_config=dict(dim=16, latent_dim=4))


def small_space() -> keras_tuner.HyperParameters:
    hp = keras_tuner.HyperParameters()
    hp.Choice("op", ["a", "b", "c", "d"])
    hp.Int("width", 8, 64, step=8)
    hp.Boolean("se")
    hp.Int("depth", 1, 4)
    return hp


def score(hp) -> float:
    """A known optimum (op d, width 48, se, depth 3) with interactions."""
    v = hp.values
    s = -abs(v["width"] - 48) / 8 - abs(v["depth"] - 3) + 2.0 * (v["op"] == "d")
    return s + (1.5 if v["se"] and v["op"] in ("c", "d") else 0.0)


def make(cls, seed=1, max_trials=12, **kwargs):
    extra = TNAS_FAST if cls is TNASOracle else FAST
    return cls(objective=keras_tuner.Objective("score", "max"), max_trials=max_trials,
               hyperparameters=small_space(), seed=seed, **{**extra, **kwargs})


def search(oracle, directory, overwrite=True):
    tuner = OneShotTuner(oracle, scorer=lambda hp: {"score": score(hp)},
                         directory=str(directory), project_name="p", overwrite=overwrite)
    tuner.search(verbose=0)
    return tuner


def trial_values(tuner):
    trials = tuner.oracle.trials
    return [trials[t].hyperparameters.values for t in sorted(trials, key=int)]


@pytest.mark.parametrize("cls", [SETNOracle, TNASOracle])
def test_oracle_searches_with_keras_tuner(cls, tmp_path):
    tuner = search(make(cls, max_trials=14), tmp_path)
    values = trial_values(tuner)
    assert len(values) == 14
    assert len({json.dumps(v, sort_keys=True) for v in values}) == 14  # never repeats
    assert all(t.status == "COMPLETED" for t in tuner.oracle.trials.values())
    scores = [score(keras_tuner.HyperParameters.from_config(
        {"space": [], "values": v})) for v in values]
    if cls is SETNOracle:  # the evaluator beats its own uniform warm-up on average
        assert np.mean(scores[4:]) > np.mean(scores[:4])
    best = tuner.get_best_hyperparameters()[0].values
    assert score(tuner.get_best_hyperparameters()[0]) == max(scores), best


@pytest.mark.parametrize("cls", [SETNOracle, TNASOracle])
def test_oracles_search_an_mbconv_space(cls, tmp_path):
    from tfnas.cost.tables import cost_tables
    from tfnas.space import get_space
    from tfnas.tuner.spaces import genotype_from_values, space_hyperparameters

    tables = cost_tables(get_space("fbnet"))

    def closeness(hp):  # black-box objective: params near 4.8M
        params = tables.cost(genotype_from_values("fbnet", hp.values))["params"]
        return {"score": -abs(params - 4.8e6) / 1e6}

    extra = TNAS_FAST if cls is TNASOracle else FAST
    oracle = cls(objective=keras_tuner.Objective("score", "max"), max_trials=9,
                 hyperparameters=space_hyperparameters("fbnet"), seed=3, **extra)
    tuner = OneShotTuner(oracle, scorer=closeness, directory=str(tmp_path), project_name="p")
    tuner.search(verbose=0)
    genotypes = [genotype_from_values("fbnet", v) for v in trial_values(tuner)]
    # genotype_from_values validated each one: legal ops only (no skip in vital layers).
    assert len(set(genotypes)) == 9 and all(len(g.ops) == 22 for g in genotypes)


def test_tnas_epsilon_grows_and_vae_is_trained(tmp_path):
    oracle = make(TNASOracle, max_trials=10)
    assert oracle.epsilon(0) == 0.0 and oracle.epsilon(4) == pytest.approx(0.3)
    assert oracle.epsilon(100) == oracle.eps_max
    search(oracle, tmp_path)
    assert oracle._trained_at == 7  # updates after 4 and 7 completed; trial 9 saw 9
    assert oracle.last_loss is not None and all(np.isfinite(oracle.last_loss))


def test_vae_learns_the_architectures_it_is_trained_on():
    from tfnas.samplers.tnas_vae import shared_vae

    vae = shared_vae([4, 8, 2, 4], **TNAS_FAST["vae_config"])
    top = np.array([[3, 5, 1, 2], [0, 5, 1, 3]] * 4)
    weights, reconstruction, kl = vae.train(vae.initial_weights(0), top, 150, seed=1)
    samples = vae.sample(weights, np.random.default_rng(0), 256)
    assert samples.shape == (256, 4) and (samples < [4, 8, 2, 4]).all()
    assert np.mean((samples[:, 1] == 5) & (samples[:, 2] == 1)) > 0.8  # uniform: 1/16
    again, _, _ = vae.train(vae.initial_weights(0), top, 150, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(weights, again))  # deterministic


def test_defaults_and_bad_spaces():
    for cls in (SETNOracle, TNASOracle):
        oracle = cls(objective="val_accuracy", max_trials=3)  # defaults for the rest
        assert oracle.max_trials == 3
    hp = keras_tuner.HyperParameters()
    hp.Float("lr", 1e-4, 1e-1)
    oracle = SETNOracle(objective="val_loss", max_trials=3, hyperparameters=hp)
    with pytest.raises(TfnasError, match="'lr' is a Float"):
        oracle.populate_space("0")
    hp = keras_tuner.HyperParameters()
    hp.Int("units", 0, 10**9)  # listing every value would hang
    oracle = SETNOracle(objective="val_loss", max_trials=3, hyperparameters=hp)
    with pytest.raises(TfnasError, match="'units' has more than 10,000 values"):
        oracle.populate_space("0")


@pytest.mark.parametrize("cls, kwargs, message", [
    (SETNOracle, dict(temperature=0), "SETNOracle: temperature must be > 0"),
    (SETNOracle, dict(num_candidates=-1), "SETNOracle: num_candidates must be >= 1"),
    (TNASOracle, dict(retrain_every=0), "TNASOracle: retrain_every must be >= 1"),
    (TNASOracle, dict(top_k=0), "TNASOracle: top_k must be >= 1"),
    (TNASOracle, dict(eps_inc=-1), "TNASOracle: eps_inc must be >= 0"),
    (TNASOracle, dict(vae_config={"bogus": 1}), "vae_config must be a dict of dim, kl_weight"),
    (TNASOracle, dict(num_initial_points=-1), "TNASOracle: num_initial_points must be >= 0"),
])
def test_bad_oracle_arguments_fail_when_built(cls, kwargs, message):
    with pytest.raises(TfnasError, match=message):
        cls(objective="val_loss", max_trials=3, **kwargs)


def test_a_project_reloads_only_into_the_oracle_that_ran_it(tmp_path):
    search(make(SETNOracle, max_trials=5), tmp_path)
    with pytest.raises(TfnasError, match="run by SETNOracle, not TNASOracle; pass "
                                         "overwrite=True"):
        search(make(TNASOracle, max_trials=8), tmp_path, overwrite=False)


@pytest.mark.parametrize("cls", [SETNOracle, TNASOracle])
def test_state_round_trips_through_json(cls, tmp_path):
    tuner = search(make(cls, max_trials=9), tmp_path)
    state = json.loads(json.dumps(tuner.oracle.get_state()))
    clone = make(cls, max_trials=9)
    clone.trials = tuner.oracle.trials
    clone.set_state(state)
    restored = clone.get_state()
    for s in (state, restored):
        s["tried_so_far"] = sorted(s["tried_so_far"])  # a set in keras_tuner
    assert json.loads(json.dumps(restored)) == state
    # The restored oracle proposes what the original proposes next.
    assert clone.populate_space("9") == tuner.oracle.populate_space("9")


@pytest.mark.parametrize("cls", [SETNOracle, TNASOracle])
def test_reloaded_tuner_continues_without_repeating(cls, tmp_path):
    search(make(cls, max_trials=7), tmp_path / "resumed")
    resumed = search(make(cls, max_trials=12), tmp_path / "resumed", overwrite=False)
    straight = search(make(cls, max_trials=12), tmp_path / "straight")
    values = trial_values(resumed)
    assert len(values) == 12
    assert len({json.dumps(v, sort_keys=True) for v in values}) == 12
    assert values == trial_values(straight)  # as if never interrupted


WORKER = """
import os, sys, time
sys.path.insert(0, {root!r})
from tests.test_tuner import make, score
from tfnas.tuner import OneShotTuner, SETNOracle
marks = {marks!r}
def scorer(hp):
    tid = os.environ["KERASTUNER_TUNER_ID"]
    open(os.path.join(marks, f"{{tid}}_{{time.time():.6f}}"), "w").close()
    if tid == "tuner0":
        time.sleep(2.5)  # a wide window to kill it in
    else:  # overlap: tuner1 scores only once tuner0 is at work
        while not any(m.startswith("tuner0_") for m in os.listdir(marks)):
            time.sleep(0.05)
        time.sleep(0.3)
    return {{"score": score(hp)}}
oracle = make(SETNOracle, max_trials=12)  # replaced by a client of the chief's oracle
OneShotTuner(oracle, scorer=scorer, directory={directory!r}, project_name="p").search(verbose=0)
"""


def test_distributed_chief_and_two_workers_survive_a_killed_worker(tmp_path, monkeypatch,
                                                                  capsys):
    directory, marks = tmp_path / "search", tmp_path / "marks"
    marks.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port)}
    for key, value in {**env, "KERASTUNER_TUNER_ID": "chief"}.items():
        monkeypatch.setenv(key, value)
    # The chief runs the oracle's gRPC server in this process; workers are processes.
    oracle = make(SETNOracle, max_trials=12, trial_lease_seconds=5.0, idle_wait_seconds=0.2)
    chief = OneShotTuner(oracle, scorer=lambda hp: {"score": score(hp)},
                         directory=str(directory), project_name="p")
    server = threading.Thread(target=chief.search, kwargs={"verbose": 0}, daemon=True)
    server.start()
    code = WORKER.format(root=ROOT, marks=str(marks), directory=str(directory))

    def start(tuner_id):
        return subprocess.Popen(
            [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
            env={**os.environ, **env, "KERASTUNER_TUNER_ID": tuner_id, "PYTHONPATH": ROOT,
                 "TF_CPP_MIN_LOG_LEVEL": "3"})

    workers = [start("tuner0"), start("tuner1")]
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # kill tuner0 in the middle of its first trial
            if any(m.startswith("tuner0_") for m in os.listdir(marks)):
                break
            time.sleep(0.05)
        else:
            pytest.fail("tuner0 never started a trial")
        workers[0].send_signal(signal.SIGKILL)
        assert workers[1].wait(timeout=120) == 0, workers[1].stdout.read()
        server.join(timeout=30)
        assert not server.is_alive(), "the chief did not finish"
    finally:
        for p in workers:
            if p.poll() is None:
                p.kill()
    trials = oracle.trials.values()
    assert len(trials) == 12
    assert all(t.status == "COMPLETED" and t.score is not None for t in trials)
    assert len({json.dumps(t.hyperparameters.values, sort_keys=True) for t in trials}) == 12
    assert len([m for m in os.listdir(marks) if m.startswith("tuner1_")]) >= 6
    assert "no report from tuner0" in capsys.readouterr().out  # its trial was handed over
