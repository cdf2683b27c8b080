"""Supernet weight-step speed and memory, measured side by side in one run.

  python bench/supernet_bench.py [--space=fbnet --resolution=64 --batch=32 --rounds=5 --steps=10]

(1) gumbel_max (one sampled op per layer, a new path every step) vs gumbel_softmax (every op
    weighted) train step of the same supernet; target ratio >= 0.7 x O.
(2) the supernet step on a given path (mode "fixed": the same switch_case machinery as
    gumbel_max) vs the standalone child of that genotype from the builder with a plain custom
    tf.function train step; target <= 1.2x.
(3) peak memory of the two modes of (1) while they run steps: TensorFlow's own allocator peak
    (tensors: activations, gradients, optimizer temporaries; the workers run with
    TF_CPU_ALLOCATOR_USE_BFC=true so that the CPU allocator keeps statistics), reset before
    every round; and the process's resident set, whose peak comes from tracing.
Each pair of (1) and of (2) runs in its own process, its two modes' rounds interleaved
(A B A B ...), so that the machine's drift over minutes falls on both alike. Every step is
timed on its own after the warm-up (two steps; for gumbel_max, until every op of every layer
has run once: the runtime sets up a Case branch the first time it is taken); the step time is
the mean over the `--rounds` x `--steps` timed steps. A gumbel_max step's cost depends on the
path it draws (the cheapest paths are mostly skips), so a mean over many paths is what a search
iteration costs on average; a median of a few rounds of a few paths is not. The gumbel_max row
also reports the FLOPs of the paths it drew, so that the compute bound of (1) (all-op FLOPs /
mean path FLOPs) is for those very paths, and a least-squares fit of step time against path
FLOPs.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from tfnas import cli  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("space", "fbnet", "Registered MBConv search space of the supernet.")
flags.DEFINE_integer("resolution", 64, "Input resolution (square) of the benchmark batches.")
flags.DEFINE_integer("batch", 32, "Batch size of every step.")
flags.DEFINE_float("width", 1.0, "Width multiplier of the supernet and the child.")
flags.DEFINE_integer("steps", 10, "Timed steps per round.")
flags.DEFINE_integer("rounds", 5, "Timed rounds; the step time is the mean of all timed steps "
                     "and the rounds' means show the spread.")
flags.DEFINE_string("arch", "HourNAS-B",
                    "Path of comparison (2): a published architecture name or a comma-separated "
                    "genotype of --space.")
flags.DEFINE_enum("worker", None, ["sampling", "path"],
                  "Internal: run one pair of measurements in this process and print it as "
                  "JSON.")
flags.DEFINE_bool("json", False, "Print the summary as one JSON object.")

NUM_CLASSES = 10


def _genotype():
    from tfnas.space.genotype import parse_genotype
    from tfnas.space.published import PUBLISHED
    if FLAGS.arch in PUBLISHED:
        return PUBLISHED[FLAGS.arch].genotype()
    return parse_genotype(FLAGS.space, FLAGS.arch)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _vm_hwm_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


PAIRS = {"sampling": ("gumbel_max", "gumbel_softmax"), "path": ("fixed", "child")}


def make_step(mode: str, images, labels, supernet=None) -> tuple:
    """(step() -> loss or (loss, drawn indices), allowed-op mask to warm up or None)."""
    tf = cli.import_tensorflow()
    import keras

    from tfnas.engine import make_weight_step
    from tfnas.nn.builder import build_model
    from tfnas.nn.sampling import ArchParams

    optimizer = keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=4e-5)
    genotype = _genotype()
    if mode == "child":
        model = build_model(FLAGS.space, genotype, NUM_CLASSES, images.shape[1:], FLAGS.width)
        variables = model.trainable_variables
        optimizer.build(variables)

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                logits = model(images, training=True)
                loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                    labels, logits, from_logits=True))
            optimizer.apply(tape.gradient(loss, variables), variables)
            return loss
        return step, None
    arch = ArchParams(supernet.allowed_mask(), seed=0)
    weight_step = make_weight_step(supernet, arch, optimizer, mode, return_indices=True)
    if mode == "fixed":
        indices = tf.constant(genotype.indices(), tf.int32)
        return (lambda: weight_step(images, labels, indices)), None
    return (lambda: weight_step(images, labels)), (
        supernet.allowed_mask().copy() if mode == "gumbel_max" else None)


def worker(pair: str) -> dict:
    """Both modes of `pair` in this process, their rounds interleaved (A B A B ...), so that
    the machine's drift over minutes falls on both alike."""
    tf = cli.import_tensorflow()
    from tfnas.nn.supernet import SuperNet

    shape = (FLAGS.resolution, FLAGS.resolution, 3)
    images = tf.random.normal((FLAGS.batch, *shape))
    labels = tf.random.uniform((FLAGS.batch,), 0, NUM_CLASSES, tf.int32)
    start = time.perf_counter()
    supernet = SuperNet(FLAGS.space, NUM_CLASSES, shape, FLAGS.width)
    rss_built = _rss_mb()
    results, steps = {}, {}
    for mode in PAIRS[pair]:
        t = time.perf_counter()
        step, unseen = make_step(mode, images, labels, supernet)
        # The runtime instantiates a Case branch the first time it is taken: warm gumbel_max
        # up until every op of every layer has run once (a search pays that once, not per step).
        warmup = 0
        while warmup < 2 or (unseen is not None and unseen.any() and warmup < 300):
            out = step()
            if unseen is not None:
                unseen[range(unseen.shape[0]), out[1].numpy()] = False
            warmup += 1
        steps[mode] = step
        results[mode] = {"mode": mode, "warmup_steps": warmup,
                         "warmup_s": time.perf_counter() - t, "steps_ms": [], "paths": [],
                         "rounds_ms": [], "peak_tensor_mb": 0.0}
    peak_warmup = _rss_mb()
    reset = _reset_peak_rss()
    for _ in range(FLAGS.rounds):
        for mode, step in steps.items():
            r = results[mode]
            tf.config.experimental.reset_memory_stats("CPU:0")
            times = []
            for _ in range(FLAGS.steps):
                t = time.perf_counter()
                out = step()
                if isinstance(out, tuple):  # (loss, drawn indices); reading waits for the step
                    r["paths"].append(out[1].numpy().tolist())
                else:
                    out.numpy()
                times.append((time.perf_counter() - t) * 1000)
            r["steps_ms"] += times
            r["rounds_ms"].append(statistics.mean(times))
            r["peak_tensor_mb"] = max(r["peak_tensor_mb"], tf.config.experimental.get_memory_info(
                "CPU:0")["peak"] / 2**20)
    process = {"build_s": time.perf_counter() - start, "rss_built_mb": rss_built,
               "peak_rss_warmup_mb": peak_warmup,
               "peak_rss_mb": _vm_hwm_mb() if reset else _rss_mb()}
    for r in results.values():
        r["step_ms"] = statistics.mean(r["steps_ms"])
        r["process"] = process
    return results


def run_worker(pair: str) -> dict:
    args = [sys.executable, os.path.abspath(__file__), f"--worker={pair}",
            f"--space={FLAGS.space}", f"--resolution={FLAGS.resolution}",
            f"--batch={FLAGS.batch}", f"--width={FLAGS.width}", f"--steps={FLAGS.steps}",
            f"--rounds={FLAGS.rounds}", f"--arch={FLAGS.arch}"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_CPU_ALLOCATOR_USE_BFC": "true"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        cli.fail(f"benchmark worker {pair} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def path_flops(result: dict) -> dict:
    """FLOPs (at the benchmark's resolution, width and classes) of the paths a gumbel_max
    worker drew, the all-op FLOPs of a gumbel_softmax step, and a fit of step time on them."""
    import numpy as np

    from deploy.lut import mbconv_space
    from tfnas.cost.tables import cost_tables

    tables = cost_tables(mbconv_space(FLAGS.space, FLAGS.width), FLAGS.resolution, NUM_CLASSES)
    flops = tables.batch_cost(np.asarray(result["paths"]))["flops"] / 1e6
    all_op = (tables.constants["flops"] + tables.tables["flops"][tables.legal].sum()) / 1e6
    slope, intercept = np.polyfit(flops, np.asarray(result["steps_ms"]), 1)
    return {"count": len(flops), "mean_path_mflops": float(flops.mean()),
            "all_op_mflops": float(all_op), "flops_bound": float(all_op / flops.mean()),
            "ms_per_mflop": float(slope), "intercept_ms": float(intercept)}


def main(argv) -> None:
    if FLAGS.worker:
        print(json.dumps(worker(FLAGS.worker)))
        return
    from tfnas.space.registry import get_space
    num_ops = get_space(FLAGS.space).num_ops
    genotype = _genotype()
    r = {**run_worker("sampling"), **run_worker("path")}
    speedup = r["gumbel_softmax"]["step_ms"] / r["gumbel_max"]["step_ms"]
    overhead = r["fixed"]["step_ms"] / r["child"]["step_ms"]
    paths = path_flops(r["gumbel_max"])
    summary = {
        "space": FLAGS.space, "resolution": FLAGS.resolution, "batch": FLAGS.batch,
        "width": FLAGS.width, "arch": str(genotype), "results": r,
        "gumbel_max_speedup": speedup, "speedup_target": 0.7 * num_ops,
        "fixed_path_vs_child": overhead, "overhead_target": 1.2, "drawn_paths": paths,
    }
    if FLAGS.json:
        print(json.dumps(summary))
        return
    print(f"{FLAGS.space} supernet, {FLAGS.resolution}x{FLAGS.resolution}, batch {FLAGS.batch}, "
          f"width {FLAGS.width}, SGD momentum + wd; mean of {FLAGS.rounds} rounds x "
          f"{FLAGS.steps} steps, each timed alone")
    print(f"{'step':<34}{'ms/step':>9}{'round means (ms)':>36}{'warm-up s':>11}")
    names = {"gumbel_max": "(1) supernet gumbel_max",
             "gumbel_softmax": "(1) supernet gumbel_softmax",
             "fixed": f"(2) supernet fixed path {FLAGS.arch}",
             "child": f"(2) standalone child {FLAGS.arch}"}
    for mode, name in names.items():
        x = r[mode]
        rounds = " ".join(f"{v:.0f}" for v in x["rounds_ms"])
        print(f"{name:<34}{x['step_ms']:>9.1f}{rounds:>36}{x['warmup_s']:>11.1f}")
    print(f"    (rounds interleaved in one process per pair; gumbel_max warmed up for "
          f"{r['gumbel_max']['warmup_steps']} steps, until every op had run once)")
    print(f"(1) gumbel_softmax / gumbel_max = {speedup:.2f}x "
          f"(target >= 0.7 x {num_ops} = {0.7 * num_ops:.1f})")
    print(f"    compute bound for the {paths['count']} drawn paths: all-op FLOPs "
          f"{paths['all_op_mflops']:.1f}M / mean path {paths['mean_path_mflops']:.1f}M = "
          f"{paths['flops_bound']:.2f}x; step time ~ {paths['intercept_ms']:.0f} ms + "
          f"{paths['ms_per_mflop']:.2f} ms per path MFLOP (fit over the drawn paths)")
    print(f"(2) supernet fixed path / child = {overhead:.2f}x (target <= 1.2)")
    gmax, gsoft = r["gumbel_max"], r["gumbel_softmax"]
    print(f"(3) peak tensor memory of a step: gumbel_max {gmax['peak_tensor_mb']:.0f} MB, "
          f"gumbel_softmax {gsoft['peak_tensor_mb']:.0f} MB "
          f"({gsoft['peak_tensor_mb'] / gmax['peak_tensor_mb']:.2f}x); child "
          f"{r['child']['peak_tensor_mb']:.0f} MB, fixed path {r['fixed']['peak_tensor_mb']:.0f} MB")
    proc = gmax["process"]
    print(f"    RSS of the process of (1): {proc['rss_built_mb']:.0f} MB after building the "
          f"supernet, {proc['peak_rss_warmup_mb']:.0f} MB after tracing both steps, "
          f"{proc['peak_rss_mb']:.0f} MB peak while stepping")


if __name__ == "__main__":
    cli.run(main)
