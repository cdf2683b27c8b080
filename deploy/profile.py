"""Profile a .tflite the way mobile engineers do: median and p90 latency per thread count.

  python -m deploy.profile --model=net.tflite --target=host --threads=1,2 --runs=50 --json
  python -m deploy.profile --model=net.tflite --target=android:SERIAL \\
      --benchmark_binary=/path/to/benchmark_model --threads=1,4

host: LiteRT with XNNPACK, a fresh process with one interpreter per thread count (several
live interpreters in one process distort each other's timings),
warm-up first; also the op list (tf.lite.experimental.Analyzer) and the worker's peak memory
growth (LiteRT's Python API does not expose the arena size). android: adb pushes the model
and TensorFlow Lite's `benchmark_model` binary to the device and parses what it prints.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import re
import shutil
import subprocess

from absl import flags

from tfnas import cli
from tfnas.errors import TfnasError

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The CLI's flags (defined only when run as a program, so the module imports cleanly)."""
    flags.DEFINE_string("model", None, "The .tflite file to profile.")
    flags.DEFINE_string("target", "host", "host (this machine, LiteRT + XNNPACK) or "
                        "android[:SERIAL] (a phone over adb; SERIAL picks one of several).")
    flags.DEFINE_list("threads", ["1"], "Thread counts, e.g. 1,2,4.")
    flags.DEFINE_integer("runs", 50, "Timed runs per thread count (after warm-up).")
    flags.DEFINE_integer("warmup", 5, "Warm-up runs per thread count.")
    flags.DEFINE_string("benchmark_binary", None, "android: path of TensorFlow Lite's "
                        "benchmark_model binary built for the phone (e.g. android_aarch64).")
    flags.DEFINE_string("adb", "adb", "android: the adb executable.")
    flags.DEFINE_bool("ops", True, "host: list the model's ops with tf.lite.experimental.Analyzer.")
    flags.DEFINE_bool("json", False, "Print one JSON object.")


DEVICE_DIR = "/data/local/tmp/tfnas"


def parse_target(target: str) -> tuple[str, str | None]:
    kind, _, serial = target.partition(":")
    if kind == "host" and not serial:
        return "host", None
    if kind == "android":
        return "android", serial or None
    raise TfnasError(f"unknown target {target!r}; use host or android[:SERIAL]")


# ---------------------------------------------------------------------- host

def profile_host(path: str, threads: list[int], runs: int, warmup: int) -> list[dict]:
    """One fresh worker process (one interpreter) per thread count."""
    from deploy.timing import run_jobs

    results = []
    for n in threads:
        r = run_jobs([{"path": path, "threads": n, "runs": runs, "warmup": warmup}])[0]
        results.append({"threads": n, "median_ms": r["median_ms"], "p90_ms": r["p90_ms"],
                        "mean_ms": r["mean_ms"], "std_ms": r["std_ms"], "min_ms": r["min_ms"],
                        "runs": r["count"], "peak_rss_growth_bytes": r["rss_growth_bytes"]})
    return results


def op_list(path: str) -> dict[str, int]:
    """Op name -> count in the main subgraph, from tf.lite.experimental.Analyzer."""
    from tfnas.cli import import_tensorflow

    tf = import_tensorflow()
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        tf.lite.experimental.Analyzer.analyze(model_path=path)
    return dict(collections.Counter(re.findall(r"Op#\d+ (\w+)\(", text.getvalue())))


# ---------------------------------------------------------------------- android

_NUMBER = r"([-+\d.eE]+)"


def parse_benchmark_output(text: str) -> dict:
    """Figures of one `benchmark_model` run (its stdout/logcat text), times in ms.

    Reads the last `count=... avg=... std=... [p5=... median=... p95=...]` line (the timed
    runs; the earlier one is the warm-up), the `Inference timings in us:` summary and the
    memory footprint line. benchmark_model prints p5/median/p95, not p90: "p90_ms" holds p95,
    an upper bound, and says so in "p90_source".
    """
    out: dict = {}
    stats = [dict(re.findall(r"(\w+)=" + _NUMBER, line)) for line in text.splitlines()
             if re.search(r"(^|\s)count=\d+", line) and "avg=" in line]
    if stats:
        last = {k: float(v) for k, v in stats[-1].items()}
        out["runs"] = int(last["count"])
        for key in ("first", "min", "max", "avg", "std", "p5", "median", "p95"):
            if key in last:
                out[f"{key}_ms"] = last[key] / 1000
    summary = re.search(r"Inference timings in us: Init: " + _NUMBER + r", First inference: "
                        + _NUMBER + r", Warmup \(avg\): " + _NUMBER + r", Inference \(avg\): "
                        + _NUMBER, text)
    if summary:
        init, first, warm, avg = (float(v) / 1000 for v in summary.groups())
        out.update(init_ms=init, first_inference_ms=first, warmup_avg_ms=warm)
        out.setdefault("avg_ms", avg)
    if "avg_ms" not in out:
        lines = [l for l in text.splitlines() if l.strip()]
        raise TfnasError("benchmark_model printed no timings"
                         + (f"; last line: {lines[-1].strip()}" if lines else ""))
    out["median_ms"] = out.get("median_ms", out["avg_ms"])
    out["p90_ms"] = out.get("p95_ms", out.get("max_ms", out["avg_ms"]))
    out["p90_source"] = "p95" if "p95_ms" in out else ("max" if "max_ms" in out else "avg")
    memory = re.search(r"(?:Peak memory footprint|Memory footprint delta from the start of the "
                       r"tool) \(MB\): init=" + _NUMBER + r" overall=" + _NUMBER, text)
    if memory:
        out["memory_init_mb"], out["memory_overall_mb"] = map(float, memory.groups())
    return out


def _adb(adb: str, serial: str | None, *args: str, timeout: float = 600) -> str:
    cmd = [adb] + (["-s", serial] if serial else []) + list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip().splitlines()
        raise TfnasError(f"adb {' '.join(args[:2])} failed: "
                         f"{message[-1] if message else proc.returncode}")
    return proc.stdout


def connected_device(adb: str, serial: str | None) -> str:
    """The serial to use; one clear line when adb or a ready device is missing."""
    if shutil.which(adb) is None:
        raise TfnasError(f"adb not found ({adb!r}); install Android platform-tools or pass "
                         "--adb=PATH")
    listing = _adb(adb, None, "devices", timeout=60)
    ready = [line.split()[0] for line in listing.splitlines()[1:]
             if line.strip() and line.split()[-1] == "device"]
    if serial:
        if serial not in ready:
            raise TfnasError(f"Android device {serial!r} is not connected and ready "
                             f"(adb devices: {', '.join(ready) or 'none'})")
        return serial
    if not ready:
        raise TfnasError("no Android device connected (adb devices lists none ready)")
    if len(ready) > 1:
        raise TfnasError(f"several Android devices ({', '.join(ready)}); pick one with "
                         "--target=android:SERIAL")
    return ready[0]


def profile_android(path: str, serial: str | None, binary: str, adb: str, threads: list[int],
                    runs: int, warmup: int) -> list[dict]:
    serial = connected_device(adb, serial)
    remote_model = f"{DEVICE_DIR}/{os.path.basename(path)}"
    remote_binary = f"{DEVICE_DIR}/benchmark_model"
    _adb(adb, serial, "shell", f"mkdir -p {DEVICE_DIR}")
    _adb(adb, serial, "push", path, remote_model)
    _adb(adb, serial, "push", binary, remote_binary)
    _adb(adb, serial, "shell", f"chmod 755 {remote_binary}")
    results = []
    for n in threads:
        text = _adb(adb, serial, "shell", remote_binary, f"--graph={remote_model}",
                    f"--num_threads={n}", f"--num_runs={runs}", f"--warmup_runs={warmup}",
                    "--use_xnnpack=true")
        results.append({"threads": n, **parse_benchmark_output(text)})
    return results


# ---------------------------------------------------------------------- CLI

def check_model(path: str, load: bool = True) -> None:
    """One clear error for a file that is no TFLite model, and with `load` for one this host's
    LiteRT cannot load (truncated, damaged), here rather than as a timing worker's traceback.
    A phone's benchmark binary may run ops the host's LiteRT lacks, so it is not asked."""
    with open(path, "rb") as f:
        if f.read(8)[4:8] != b"TFL3":
            raise TfnasError(f"{path} is not a TFLite flatbuffer")
    if not load:
        return
    from deploy.convert import interpreter

    try:
        with cli.quiet_native_stderr():  # LiteRT's INFO line about its XNNPACK delegate
            interpreter(path)
    except (ValueError, RuntimeError) as e:
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise TfnasError(f"{path} is not a valid TFLite model: {reason}") from None


def main(argv: list[str]) -> int:
    kind, serial = parse_target(FLAGS.target)
    try:
        threads = [int(t) for t in FLAGS.threads]
    except ValueError:
        raise TfnasError(f"--threads must be integers, got {','.join(FLAGS.threads)}") from None
    if not threads or min(threads) < 1 or FLAGS.runs < 1 or FLAGS.warmup < 0:
        raise TfnasError("--threads must be >= 1, --runs >= 1 and --warmup >= 0")
    if not FLAGS.model or not os.path.isfile(FLAGS.model):
        raise TfnasError(f"--model must name an existing .tflite file, got {FLAGS.model!r}")
    check_model(FLAGS.model, load=kind == "host")
    info = {"model": FLAGS.model, "target": FLAGS.target,
            "size_bytes": os.path.getsize(FLAGS.model)}
    if kind == "android":
        if not FLAGS.benchmark_binary or not os.path.isfile(FLAGS.benchmark_binary):
            raise TfnasError("android profiling needs --benchmark_binary=PATH of TensorFlow "
                             f"Lite's benchmark_model (got {FLAGS.benchmark_binary!r})")
        info["results"] = profile_android(FLAGS.model, serial, FLAGS.benchmark_binary,
                                          FLAGS.adb, threads, FLAGS.runs, FLAGS.warmup)
    else:
        info["results"] = profile_host(FLAGS.model, threads, FLAGS.runs, FLAGS.warmup)
        if FLAGS.ops:
            info["ops"] = op_list(FLAGS.model)
        info["arena_bytes"] = None  # not exposed by LiteRT's Python API
    if FLAGS.json:
        print(json.dumps(info))
        return 0
    print(f"{FLAGS.model}: {info['size_bytes']:,} bytes, target {FLAGS.target}")
    for r in info["results"]:
        memory = r.get("peak_rss_growth_bytes")
        print(f"  {r['threads']} thread(s): median {r['median_ms']:.3f} ms, "
              f"p90 {r['p90_ms']:.3f} ms"
              + (f", peak memory growth {memory / 2**20:.1f} MiB" if memory is not None else ""))
    if info.get("ops"):
        print("  ops: " + ", ".join(f"{k} x{v}" for k, v in sorted(info["ops"].items())))
    return 0


if __name__ == "__main__":
    define_flags()
    cli.run(main)
