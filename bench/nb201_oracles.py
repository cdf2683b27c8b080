"""Samplers on NAS-Bench-201 ground truth: TNAS, SETN (black-box), random, Bayesian.

Each trial's score is the cell's CIFAR-10 test accuracy from the analog-nasbench table (no
training). Every oracle is driven through keras_tuner's own create_trial / update_trial /
end_trial, with its project directory on disk, for --seeds seeds. Prints mean +- std of the
best accuracy found after each budget and each oracle's own time per trial (create_trial +
update_trial + end_trial, keras_tuner's bookkeeping included), after one untimed warm-up run
per oracle (imports, TNAS's one-time VAE graph tracing; its seconds are printed too).

  python -m bench.nb201_oracles --seeds=20 --trials=100
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from tfnas import cli  # noqa: E402
from tfnas.errors import TfnasError  # noqa: E402

FLAGS = flags.FLAGS
ORACLES = ("tnas", "setn", "random", "bayesian")
flags.DEFINE_integer("seeds", 20, "Independent runs per oracle (seeds 1..N).")
flags.DEFINE_integer("trials", 100, "Trials per run (the last budget).")
flags.DEFINE_list("budgets", ["25", "50", "100"], "Trial counts at which the best is reported.")
flags.DEFINE_list("oracles", list(ORACLES),
                  "Oracles to compare: tnas, setn, random, bayesian. keras_tuner's Bayesian "
                  "oracle refits a GP and runs 50 L-BFGS restarts per trial (tens of seconds "
                  "a trial on 2 cores): run it alone with fewer --seeds.")
flags.DEFINE_bool("warmup", True, "Run each oracle once, untimed, before the timed runs.")

OBJECTIVE = "accuracy"


def make_oracle(name: str, seed: int, max_trials: int):
    import keras_tuner

    from tfnas.tuner import SETNOracle, TNASOracle
    from tfnas.tuner.spaces import space_hyperparameters
    kwargs = dict(objective=keras_tuner.Objective(OBJECTIVE, "max"), max_trials=max_trials,
                  hyperparameters=space_hyperparameters("nb201"), seed=seed)
    classes = {"tnas": TNASOracle, "setn": SETNOracle,
               "random": keras_tuner.oracles.RandomSearchOracle,
               "bayesian": keras_tuner.oracles.BayesianOptimizationOracle}
    return classes[name](**kwargs)


def run_one(name: str, seed: int, trials: int, workdir: str) -> tuple[np.ndarray, float]:
    """Best-so-far accuracy after each trial, and the oracle's seconds per trial."""
    from tfnas.space.nb201_table import accuracy
    from tfnas.tuner.spaces import genotype_from_values

    oracle = make_oracle(name, seed, trials)
    oracle.verbose = 0
    oracle._set_project_dir(workdir, f"{name}_{seed}")
    best, spent = np.zeros(trials), 0.0
    for i in range(trials):
        start = time.perf_counter()
        trial = oracle.create_trial("tuner0")
        spent += time.perf_counter() - start
        if trial.status != "RUNNING":
            best[i:] = best[i - 1]
            break
        acc = accuracy(genotype_from_values("nb201", trial.hyperparameters.values))
        start = time.perf_counter()
        oracle.update_trial(trial.trial_id, {OBJECTIVE: acc})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
        spent += time.perf_counter() - start
        best[i] = max(acc, best[i - 1] if i else 0.0)
    return best, spent / trials


def main(argv: list[str]) -> int:
    budgets = [int(b) for b in FLAGS.budgets]
    if FLAGS.seeds < 1 or FLAGS.trials < max(budgets):
        raise TfnasError("--seeds must be >= 1 and --trials >= the largest budget")
    unknown = [name for name in FLAGS.oracles if name not in ORACLES]
    if unknown:  # before any oracle has run
        raise TfnasError(f"unknown oracle {unknown[0]!r}; choose from {', '.join(ORACLES)}")
    from tfnas.space.nb201_table import accuracy_array
    table = accuracy_array()
    print(f"NAS-Bench-201 CIFAR-10 (analog-nasbench): {len(table)} cells, max "
          f"{table.max():.2f}, mean {table.mean():.2f}; {FLAGS.seeds} seeds x "
          f"{FLAGS.trials} trials")
    header = "".join(f"{f'best@{b}':>16}" for b in budgets)
    print(f"{'oracle':<10}{header}{'ms/trial':>11}{'warm-up s':>11}")
    workdir = tempfile.mkdtemp(prefix="nb201_oracles_")
    results = {}
    try:
        for name in FLAGS.oracles:
            start = time.perf_counter()  # one untimed run: imports, graph tracing
            if FLAGS.warmup:
                run_one(name, 0, min(FLAGS.trials, 30), workdir)
            warmup = time.perf_counter() - start
            runs, times = [], []
            for seed in range(1, FLAGS.seeds + 1):
                best, seconds = run_one(name, seed, FLAGS.trials, workdir)
                runs.append(best)
                times.append(seconds)
            runs = np.array(runs)
            results[name] = runs
            cells = "".join(f"{runs[:, b - 1].mean():>9.2f} ± {runs[:, b - 1].std():.2f}"
                            for b in budgets)
            print(f"{name:<10}{cells}{1e3 * np.mean(times):>11.1f}{warmup:>11.1f}", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    last = max(budgets) - 1
    if "tnas" in results and "random" in results:
        gain = results["tnas"][:, last].mean() - results["random"][:, last].mean()
        print(f"TNAS - random at {last + 1} trials: {gain:+.2f} points")
    return 0


if __name__ == "__main__":
    cli.run(main)
