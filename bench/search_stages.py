"""Two-stage against one-stage HourNAS search wall time at equal epochs (paper: 3 h vs 6 h).

Runs `python -m tfnas.search` twice on the default offline data, side by side in one
invocation, and prints each wall time and the ratio (target <= 0.6):

  python bench/search_stages.py --flagfile=configs/fbnet.cfg [--epochs=1] [search flags...]

Stage 1 runs as in the paper unless the flags say otherwise (`PAPER_STAGE_1`): single paths
(--vital_sampler=gumbel_max), not the flagfiles' every-op stage 1 that the CPU proxy needs
to train, and the vital ops fixed by θ (--vital_selection=probability), without the
flagfiles' perturbation scoring, a step the paper's timing lacks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER_STAGE_1 = {"vital_sampler": "gumbel_max", "vital_selection": "probability"}


def timed_search(args: list[str], model_dir: str) -> tuple[float, dict[str, float]]:
    """Wall seconds of one search process and its stage times from arch.json."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "tfnas.search", *args,
                           f"--model_dir={model_dir}"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        sys.exit(f"search failed: {lines[-1] if lines else f'exit {proc.returncode}'}")
    with open(os.path.join(model_dir, "arch.json")) as f:
        stages = json.load(f)["stages"]
    return seconds, {name: info["seconds"] for name, info in stages.items()}


def main(argv: list[str]) -> None:
    if any(a in ("-h", "--help", "--helpfull") for a in argv):
        print(__doc__)
        return
    epochs = 1
    args = []
    for arg in argv:
        if arg.startswith("--epochs="):
            epochs = int(arg.split("=", 1)[1])
        else:
            args.append(arg)
    with tempfile.TemporaryDirectory() as tmp:
        epoch_flags = [f"--vital_epochs={epochs}", f"--nonvital_epochs={epochs}"]
        epoch_flags += [f"--{name}={value}" for name, value in PAPER_STAGE_1.items()
                        if not any(a.startswith(f"--{name}=") for a in args)]
        two, two_stages = timed_search(args + epoch_flags, os.path.join(tmp, "two"))
        one, one_stages = timed_search(args + ["--two_stage=false"] + epoch_flags,
                                       os.path.join(tmp, "one"))
    print(f"two-stage: {two:.1f} s  one-stage: {one:.1f} s  (E_vital = E_n-vital = {epochs}; "
          f"one-stage runs {2 * epochs} epochs over all layers)")
    for name, stages in (("two-stage", two_stages), ("one-stage", one_stages)):
        print(f"  {name} stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()) +
              "  (each includes tracing its supernet's steps)")
    print(f"ratio two/one: {two / one:.2f}  (target <= 0.6)")


if __name__ == "__main__":
    main(sys.argv[1:])
