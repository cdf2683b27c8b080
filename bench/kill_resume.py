"""Kill -9 at random moments: does every resumed search end as an uninterrupted one?

  python bench/kill_resume.py [--trials=14] [--kills=4] [--seed=0]

Runs the tests' tiny search (tests/test_search.py's TINY, with perturbation scoring and a
checkpoint every 0.5 s) once uninterrupted, then `--trials` times more, each killed with
SIGKILL up to `--kills` times at moments drawn uniformly over the uninterrupted run's length
and rerun until it finishes. Kills land anywhere: start-up, training, perturbation scoring,
checkpoint saves, stage boundaries, the final writes. Prints each trial's kill times and
whether its arch.json (without wall times) and final op probabilities equal the
uninterrupted run's; exits 1 if any differ or a rerun fails. Not a timed benchmark: a check
too long for CI (about a minute per trial on 2 cores).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
OWN = {"trials": 14, "kills": 4, "seed": 0}
# The search starts taking checkpoints only after TensorFlow has loaded; earlier kills only
# test a restart from nothing.
EARLIEST_KILL = 3.0


def search_args() -> list[str]:
    from tfnas import cli

    cli.import_tensorflow()  # quietly: the tests' modules load it
    from tests.test_search import TINY

    return [a for a in TINY if not a.startswith("--checkpoint_every")] + [
        "--vital_selection=perturbation", "--checkpoint_every=0", "--checkpoint_secs=0.5"]


def run(model_dir: str, kill_after: float | None) -> tuple[int | None, str, float]:
    """(exit code or None when killed, stderr, seconds) of one search process."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "tfnas.search", *search_args(),
                             f"--model_dir={model_dir}"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=kill_after)
        return proc.returncode, err, time.monotonic() - start
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None, "", time.monotonic() - start


def result(model_dir: str) -> tuple[dict, list]:
    with open(os.path.join(model_dir, "arch.json")) as f:
        record = json.load(f)
    record.pop("stages")  # wall times
    with open(os.path.join(model_dir, "state.json")) as f:
        return record, json.load(f)["final_probabilities"]


def parse(argv: list[str]) -> dict[str, int]:
    values = dict(OWN)
    for arg in argv:
        name, _, value = arg.removeprefix("--").partition("=")
        if name not in values or not value.isdigit():
            sys.exit(f"unknown or malformed flag {arg}; use --trials=N --kills=N --seed=N")
        values[name] = int(value)
    return values


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help", "--helpfull") for a in argv):
        print(__doc__)
        return 0
    opts = parse(argv)
    rng = random.Random(opts["seed"])
    with tempfile.TemporaryDirectory() as tmp:
        code, err, length = run(os.path.join(tmp, "reference"), None)
        if code != 0:
            sys.exit(f"the uninterrupted search failed: {err.strip().splitlines()[-1:]}")
        reference = result(os.path.join(tmp, "reference"))
        print(f"uninterrupted: {length:.1f} s")
        failed = 0
        for trial in range(opts["trials"]):
            model_dir = os.path.join(tmp, f"trial{trial}")
            kills: list[float] = []
            while True:
                due = (rng.uniform(EARLIEST_KILL, length) if len(kills) < opts["kills"]
                       else None)
                code, err, _ = run(model_dir, due)
                if code is None:
                    kills.append(round(due, 1))
                    continue
                break
            shown = ", ".join(f"{k} s" for k in kills) or "none (it finished first)"
            if code != 0:
                failed += 1
                print(f"trial {trial}: killed at {shown}; the rerun failed: "
                      f"{err.strip().splitlines()[-1:]}")
                continue
            same = result(model_dir) == reference
            failed += not same
            print(f"trial {trial}: killed at {shown}: "
                  f"{'same result' if same else 'DIFFERENT result'}")
            shutil.rmtree(model_dir)
        print(f"{opts['trials'] - failed} of {opts['trials']} trials ended as the "
              "uninterrupted run")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
