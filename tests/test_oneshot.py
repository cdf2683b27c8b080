"""One-shot SETN and TNAS searches (`python -m tfnas.search --algorithm=setn|tnas`) end to end
on real MNIST images: the NAS-Bench-201 template (C=4, one cell per stage) and a small MBConv
space; resume after kill -9; the template network against the standalone builder."""

import json
import os
import shutil

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli
from test_search import _checkpoints, _kill_when, run_two_workers

from tfnas.space import get_space
from tfnas.space.nb201 import parse_nb201, to_nb201_string
from tests import supernet_fixtures  # noqa: F401  (registers nb201_tiny and tiny_test)

COMMON = ["--space_module=tests.tiny_spaces", "--image_size=16", "--batch_size=8",
          "--steps_per_epoch=6", "--max_images=200", "--checkpoint_every=2", "--seed=5",
          "--eval_batches=1"]
NB201 = COMMON + ["--space=nb201_tiny", "--width_multiplier=1.0"]
MBCONV = COMMON + ["--space=tiny_test", "--width_multiplier=1.0"]


def _search(model_dir, args, *extra):
    return run_cli("tfnas.search", *args, f"--model_dir={model_dir}", *extra, timeout=600)


def _record(model_dir):
    with open(os.path.join(model_dir, "arch.json")) as f:
        return json.load(f)


def test_setn_on_nb201_selects_among_evaluator_samples(tmp_path):
    model_dir = str(tmp_path / "setn")
    proc = _search(model_dir, NB201, "--algorithm=setn", "--num_candidates=12")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = _record(model_dir)
    assert record["space"] == "nb201_tiny" and record["algorithm"] == "setn"
    genotype = parse_nb201(record["nb201_string"])
    assert str(genotype) == record["arch"] and to_nb201_string(genotype) == record["nb201_string"]
    selection = record["selection"]
    assert selection["method"] == "paper" and 1 <= selection["candidates"] <= 12
    assert 0.0 <= selection["accuracy"] <= 1.0 and selection["loss"] > 0
    assert set(record["stages"]) == {"train", "select"}
    assert record["stages"]["select"]["seconds"] > 0
    assert "scoring" in proc.stdout and "stage train [" in proc.stdout
    assert os.path.getsize(os.path.join(model_dir, "arch_probs.png")) > 5000
    # The evaluator learned something: θ moved away from uniform.
    theta = np.load(os.path.join(model_dir, "theta.npy"))
    assert np.abs(theta).max() > 1e-3


def test_setn_with_two_workers_on_localhost_agrees(tmp_path):
    chief, worker = run_two_workers(str(tmp_path / "mw"), [
        *NB201, "--algorithm=setn", "--num_candidates=12", "--batch_size=16"])
    assert chief["algorithm"] == "setn" and chief == worker


def test_tnas_oneshot_on_nb201_resumes_after_kill_9_to_the_same_result(tmp_path):
    args = NB201 + ["--algorithm=tnas", "--epochs=2", "--population=6", "--generations=2",
                    "--top_k=4", "--eps_inc=0.3"]
    straight = str(tmp_path / "straight")
    proc = _search(straight, args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = _record(straight)
    assert record["selection"]["method"] == "evolution seeded by VAE samples"
    assert "generation 2: best fitness" in proc.stdout
    assert record["search"] == "tnas (oneshot)"
    state = json.load(open(os.path.join(straight, "state.json")))
    assert len(state["history"]["scores"]) == 2 * 2  # 2 epochs x 2 scored paths (arch split)

    killed = str(tmp_path / "killed")
    _kill_when(killed, lambda d: _checkpoints(d, "train") >= 1, args=args + [
        f"--model_dir={killed}"])
    proc = _search(killed, args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming" in proc.stdout
    resumed = _record(killed)
    for key in ("arch", "selection"):
        assert resumed[key] == record[key]


def test_tnas_gradient_and_setn_variants_on_an_mbconv_space(tmp_path):
    space = get_space("tiny_test")
    # (--setn_selection=random differs from paper only in the candidate distribution,
    # selection.uniform_probs, covered in test_selection.py.)
    for extra in (["--algorithm=tnas", "--tnas_mode=gradient", "--top_k=2"],
                  ["--algorithm=setn", "--setn_selection=topk", "--top_k=3"]):
        model_dir = str(tmp_path / "_".join(e.split("=")[1] for e in extra[:2]))
        proc = _search(model_dir, MBCONV, *extra)
        assert proc.returncode == 0, proc.stderr[-3000:]
        record = _record(model_dir)
        ops = record["arch"].split(",")
        assert len(ops) == space.num_layers and record["params"] > 0
        method = record["selection"]["method"]
        assert method == {"tnas": "argmax theta"}.get(extra[0].split("=")[1], extra[1].split(
            "=")[1])
        with open(os.path.join(model_dir, "config.json")) as f:
            recorded = json.load(f)["flags"]
        # θ of the gradient mode learns by reinforce, as HourNAS's; no other one-shot run reads
        # --arch_gradient, so only this one records it.
        assert recorded.get("arch_gradient") == ("reinforce" if "tnas" in extra[0] else None)
    _reselect_from_checkpoints(model_dir, [*MBCONV, *extra], record)


def _reselect_from_checkpoints(model_dir: str, args: list[str], record: dict) -> None:
    """Stage select again after the saved supernet files are lost: it reads stage train's last
    checkpoint (θ, with τ from the run state) and ends on the same result; with no checkpoint
    either, it stops in one line."""
    state_path = os.path.join(model_dir, "state.json")
    with open(state_path) as f:
        state = json.load(f)
    assert 0 < state["tau"] <= 5.0  # recorded: TNAS anneals τ, and the probabilities read it
    state["stage"] = "select"
    with open(state_path, "w") as f:
        json.dump(state, f)
    for name in ("supernet.weights.h5", "theta.npy"):
        os.remove(os.path.join(model_dir, name))
    proc = _search(model_dir, args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _record(model_dir)["arch"] == record["arch"]
    with open(state_path, "w") as f:
        json.dump(state, f)
    shutil.rmtree(os.path.join(model_dir, "checkpoints", "train"))
    assert_one_line_error(_search(model_dir, args), "no trained supernet to select with")


@pytest.mark.parametrize("extra,fragment", [
    (["--algorithm=setn", "--fix=layer1_1:skip"], "--fix is a HourNAS flag"),
    # Another algorithm's flags are refused, not ignored (nor recorded to block a resume).
    (["--algorithm=setn", "--vital_epochs=0"], "--vital_epochs is a HourNAS flag; "
                                               "--algorithm=setn does not use it"),
    (["--algorithm=tnas", "--num_candidates=5"], "--num_candidates is a SETN flag"),
    (["--algorithm=setn", "--population=3"], "--population is a TNAS flag"),
    (["--algorithm=tnas", "--population=0"], "--population must be >= 1"),
    (["--algorithm=hournas"], "HourNAS searches MBConv spaces"),
])
def test_bad_one_shot_flags_give_one_line(tmp_path, extra, fragment):
    proc = _search(str(tmp_path / "bad"), NB201, *extra)
    assert_one_line_error(proc, fragment)
    assert not os.path.exists(tmp_path / "bad")


def test_one_shot_tuner_scores_trials_with_the_template_weights(tmp_path):
    import keras_tuner
    import tensorflow as tf

    from tfnas.engine.scoring import OneShotScorer
    from tfnas.nn.supernets import make_supernet
    from tfnas.tuner import OneShotTuner, SETNOracle
    from tfnas.tuner.one_shot import supernet_scorer
    from tfnas.tuner.spaces import space_hyperparameters

    space = get_space("nb201_tiny")
    net = make_supernet(space, 10, (16, 16, 3))
    images = tf.random.stateless_uniform((8, 16, 16, 3), seed=(0, 1))
    labels = tf.range(8) % 10
    scorer = OneShotScorer(net, [(images, labels)], batch_size=8)
    oracle = SETNOracle(objective=keras_tuner.Objective("loss", "min"), max_trials=6,
                        hyperparameters=space_hyperparameters(space), seed=1,
                        num_initial_points=3, num_candidates=50)
    tuner = OneShotTuner(oracle, supernet_scorer(space, scorer), directory=str(tmp_path),
                         project_name="p")
    tuner.search()
    trials = list(tuner.oracle.trials.values())
    assert len(trials) == 6 and len(scorer.cache) == 6
    best = tuner.get_best_hyperparameters()[0]
    indices = [space.ops.index(best.values[c.name]) for c in space.choices]
    assert tuner.oracle.get_best_trials()[0].score == pytest.approx(scorer(indices)["loss"])
