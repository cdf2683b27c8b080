"""Does the search beat random architectures of the same budget? (issue: search beats random)

  python bench/search_vs_random.py --flagfile=configs/fbnet.cfg [--epochs=3] [--random=5]
      [--train_images=20000] [--image_size=32] [--width_multiplier=0.5]
      [--searched=DIR/arch.json] [--work_dir=DIR] [search flags...]

1. Runs `python -m tfnas.search` with the given flags on Fashion-MNIST (SPEC §2: the IDX
   files at --data_dir or the Debian location), unless --searched names the arch.json of a
   search already run.
2. Draws `--random` architectures uniformly among those within ±5% of every target of the
   flagfile (rejection sampling over the space's cost tables, seeded).
   `--seed` seeds the search, the random draws and every retraining, so another seed is an
   independent repeat of the whole comparison.
3. Retrains the searched net and each random one with `python -m tfnas.train`, same recipe,
   epochs, training subset (--train_images random images of the 60,000; 0: all), resolution
   and width, and prints each test accuracy, the best and mean of the
   random ones, and the two margins (targets: searched >= best random, and >= mean + 1 point).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

OWN = {"epochs": "3", "random": "5", "image_size": "32", "width_multiplier": "0.5",
       "seed": "0", "dataset": "fashion_mnist", "train_images": "20000", "searched": "", "work_dir": ""}


def run(module: str, *args: str, show: bool = False) -> subprocess.CompletedProcess:
    """Runs `python -m module args`; `show` passes its output through instead of keeping it."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                          capture_output=not show, text=True)
    if proc.returncode != 0:
        last = "see its output above" if show else (proc.stderr.strip().splitlines() or ["?"])[-1]
        sys.exit(f"{module} failed: {last}")
    return proc


def random_within_budget(record: dict, count: int, seed: int) -> list[list[int]]:
    from tfnas.cost.tables import cost_tables
    from tfnas.space import get_space

    space = get_space(record["space"])
    tables = cost_tables(space)
    legal = space.legal_mask()
    rng = np.random.default_rng(seed)
    found: list[list[int]] = []
    for _ in range(200):
        draws = np.stack([rng.choice(np.flatnonzero(row), 20_000) for row in legal], axis=1)
        costs = tables.batch_cost(draws)
        ok = np.all([np.abs(costs[k] / t - 1) <= 0.05 for k, t in record["targets"].items()],
                    axis=0)
        found += [list(map(int, r)) for r in draws[ok][: count - len(found)]]
        if len(found) >= count:
            return found
    sys.exit(f"fewer than {count} random architectures within ±5% of the targets")


def main(argv: list[str]) -> None:
    own, search_args = dict(OWN), []
    for arg in argv:
        key = arg.lstrip("-").split("=", 1)[0]
        if key in OWN and "=" in arg:
            own[key] = arg.split("=", 1)[1]
        else:
            search_args.append(arg)
    train_args = [f"--dataset={own['dataset']}", f"--epochs={own['epochs']}",
                  f"--image_size={own['image_size']}",
                  f"--width_multiplier={own['width_multiplier']}", f"--seed={own['seed']}",
                  f"--max_images={own['train_images']}"]
    with tempfile.TemporaryDirectory() as tmp:
        work = own["work_dir"] or tmp
        searched = own["searched"] or os.path.join(work, "search", "arch.json")
        if not own["searched"]:
            print(f"searching ({' '.join(search_args)}, seed {own['seed']}) ...", flush=True)
            run("tfnas.search", *search_args, f"--dataset={own['dataset']}",
                f"--seed={own['seed']}",
                f"--image_size={own['image_size']}",
                f"--width_multiplier={own['width_multiplier']}",
                f"--model_dir={os.path.dirname(searched)}", show=True)
        with open(searched) as f:
            record = json.load(f)
        print(f"searched: {record['arch']} (params {record['params']:,}, FLOPs "
              f"{record['flops']:,})", flush=True)
        from tfnas.space import get_space
        space = get_space(record["space"])
        nets = {"searched": record["arch"]}
        for i, row in enumerate(random_within_budget(record, int(own["random"]),
                                                     int(own["seed"]))):
            nets[f"random{i + 1}"] = ",".join(space.ops[o] for o in row)
        accuracy = {}
        for name, arch in nets.items():
            out = os.path.join(work, f"{name}.keras")
            print(f"  retraining {name} ...", end="\r", flush=True)
            proc = run("tfnas.train", f"--arch={arch}", f"--space={space.name}",
                       f"--out={out}", *train_args)
            accuracy[name] = json.loads(proc.stdout.strip().splitlines()[-1])["test_accuracy"]
            print(f"  {name:<9} test accuracy {accuracy[name]:.4f}  {arch}", flush=True)
    randoms = [v for k, v in accuracy.items() if k != "searched"]
    best, mean = max(randoms), float(np.mean(randoms))
    print(f"searched {accuracy['searched']:.4f}; random best {best:.4f}, mean {mean:.4f}; "
          f"searched - best = {100 * (accuracy['searched'] - best):+.2f} points (target >= 0), "
          f"searched - mean = {100 * (accuracy['searched'] - mean):+.2f} points (target >= 1)")


if __name__ == "__main__":
    main(sys.argv[1:])
