"""Two-stage against one-stage HourNAS search wall time at equal epochs (paper: 3 h vs 6 h).

Runs `python -m tfnas.search` twice on the default offline data, side by side in one
invocation, and prints each wall time and the ratio (target <= 0.6):

  python bench/search_stages.py --flagfile=configs/fbnet.cfg [--epochs=1] [search flags...]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed_search(args: list[str], model_dir: str) -> float:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "tfnas.search", *args,
                           f"--model_dir={model_dir}"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"search failed: {proc.stderr.strip().splitlines()[-1]}")
    return seconds


def main(argv: list[str]) -> None:
    epochs = 1
    args = []
    for arg in argv:
        if arg.startswith("--epochs="):
            epochs = int(arg.split("=", 1)[1])
        else:
            args.append(arg)
    with tempfile.TemporaryDirectory() as tmp:
        two = timed_search(args + [f"--vital_epochs={epochs}", f"--nonvital_epochs={epochs}"],
                           os.path.join(tmp, "two"))
        one = timed_search(args + ["--two_stage=false", f"--vital_epochs={epochs}",
                                   f"--nonvital_epochs={epochs}"], os.path.join(tmp, "one"))
    print(f"two-stage: {two:.1f} s  one-stage: {one:.1f} s  (E_vital = E_n-vital = {epochs}; "
          f"one-stage runs {2 * epochs} epochs over all layers)")
    print(f"ratio two/one: {two / one:.2f}  (target <= 0.6)")


if __name__ == "__main__":
    main(sys.argv[1:])
