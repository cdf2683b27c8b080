"""Timing .tflite files with LiteRT + XNNPACK in a fresh worker process.

Several live interpreters in one process distort timings, so the worker keeps one
interpreter alive at a time and the parent starts a new worker per batch. The worker imports
only LiteRT and numpy. It reads a JSON list of jobs on stdin and writes one JSON line per job:

  {"path": F, "threads": 1, "runs": 50, "warmup": 5}  ->  {"path": F, "samples_ms": [...], ...}

  python -m deploy.timing < jobs.json
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
import time
from typing import Callable

import numpy as np

WARMUP_SECONDS = 0.05


def time_model(path: str, threads: int, runs: int, warmup: int) -> dict:
    """Latency samples of one model: warm-up (at least `warmup` runs and 50 ms), then `runs`."""
    from deploy.convert import interpreter, quantize_input

    rss_before = _rss_bytes()
    interp = interpreter(path, threads)
    for detail in interp.get_input_details():
        image = np.random.default_rng(0).uniform(0, 1, detail["shape"]).astype(np.float32)
        interp.set_tensor(detail["index"], quantize_input(image, detail))
    start, done = time.perf_counter(), 0
    while done < warmup or time.perf_counter() - start < WARMUP_SECONDS:
        interp.invoke()
        done += 1
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        interp.invoke()
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    peak = max(0, _rss_bytes() - rss_before)
    del interp
    gc.collect()
    return {"path": path, "threads": threads, "samples_ms": samples,
            "rss_growth_bytes": peak, **summarize(samples)}


def summarize(samples_ms: list[float]) -> dict:
    x = np.asarray(samples_ms, dtype=np.float64)
    return {"count": int(x.size), "median_ms": float(np.median(x)),
            "p90_ms": float(np.percentile(x, 90)), "mean_ms": float(x.mean()),
            "std_ms": float(x.std()), "min_ms": float(x.min())}


def _rss_bytes() -> int:
    """Peak resident set of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_jobs(jobs: list[dict], on_result: Callable[[dict], None] | None = None) -> list[dict]:
    """Runs `jobs` in one fresh worker process; `on_result` sees each result as it lands."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "deploy.timing"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    proc.stdin.write(json.dumps(jobs))
    proc.stdin.close()
    results = []
    for line in proc.stdout:
        if line.startswith("{"):
            results.append(json.loads(line))
            if on_result:
                on_result(results[-1])
    stderr = proc.stderr.read()
    if proc.wait() != 0 or len(results) != len(jobs):
        raise RuntimeError(f"timing worker failed (exit {proc.returncode}): "
                           f"{stderr.strip()[-2000:]}")
    return results


def time_files(paths: list[str], threads: int, runs: int, warmup: int = 5,
               per_worker: int = 24, progress: Callable[[int, int], None] | None = None,
               prefix: list[str] = ()) -> list[dict]:
    """Times every file, `per_worker` files per fresh worker process, in order.

    `prefix` files (e.g. an empty model for the invoke overhead) are timed first in every
    worker; their results come back in each result's "prefix" entry.
    """
    results: list[dict] = []
    timed = [0]

    def on_result(result: dict) -> None:
        if result["path"] not in prefix:
            timed[0] += 1
            if progress:
                progress(timed[0], len(paths))

    for start in range(0, len(paths), per_worker):
        chunk = list(prefix) + paths[start:start + per_worker]
        jobs = [{"path": p, "threads": threads, "runs": runs, "warmup": warmup} for p in chunk]
        out = run_jobs(jobs, on_result)
        for result in out[len(prefix):]:
            result["prefix"] = out[:len(prefix)]
            results.append(result)
    return results


def main() -> int:
    jobs = json.load(sys.stdin)
    for job in jobs:
        result = time_model(job["path"], int(job.get("threads", 1)), int(job.get("runs", 50)),
                            int(job.get("warmup", 5)))
        print(json.dumps({**{k: v for k, v in job.items() if k not in result}, **result}),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
