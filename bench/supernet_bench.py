"""Supernet weight-step speed and memory, measured side by side in one run.

  python bench/supernet_bench.py [--space=fbnet --resolution=64 --batch=32 --rounds=5]

(1) gumbel_max (one sampled op per layer, a new path every step) vs gumbel_softmax (every op
    weighted) train step of the same supernet; target ratio >= 0.7 x O.
(2) the supernet step on a given path (mode "fixed": the same switch_case machinery as
    gumbel_max) vs the standalone child of that genotype from the builder with a plain custom
    tf.function train step; target <= 1.2x.
(3) peak memory of the processes of (1) while they run steps: TensorFlow's own allocator peak
    (tensors: activations, gradients, optimizer temporaries; the workers run with
    TF_CPU_ALLOCATOR_USE_BFC=true so that the CPU allocator keeps statistics), reset after
    the warm-up steps; and the process's resident set, whose peak comes from tracing.
Each measurement runs in its own process (clean peak memory, no shared threads); the step
times are medians over `--rounds` rounds of `--steps` steps after two warm-up steps.
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
flags.DEFINE_integer("steps", 5, "Timed steps per round.")
flags.DEFINE_integer("rounds", 5, "Timed rounds; the reported step time is their median.")
flags.DEFINE_string("arch", "HourNAS-B",
                    "Path of comparison (2): a published architecture name or a comma-separated "
                    "genotype of --space.")
flags.DEFINE_enum("worker", None, ["gumbel_max", "gumbel_softmax", "fixed", "child"],
                  "Internal: run one measurement in this process and print it as JSON.")
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


def worker(mode: str) -> dict:
    tf = cli.import_tensorflow()
    import keras

    from tfnas.engine import make_weight_step
    from tfnas.nn.builder import build_model
    from tfnas.nn.sampling import ArchParams
    from tfnas.nn.supernet import SuperNet

    shape = (FLAGS.resolution, FLAGS.resolution, 3)
    images = tf.random.normal((FLAGS.batch, *shape))
    labels = tf.random.uniform((FLAGS.batch,), 0, NUM_CLASSES, tf.int32)
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=4e-5)
    genotype = _genotype()
    start = time.perf_counter()
    if mode == "child":
        model = build_model(FLAGS.space, genotype, NUM_CLASSES, shape, FLAGS.width)
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
    else:
        net = SuperNet(FLAGS.space, NUM_CLASSES, shape, FLAGS.width)
        arch = ArchParams(net.allowed_mask(), seed=0)
        weight_step = make_weight_step(net, arch, optimizer, mode)
        indices = tf.constant(genotype.indices(), tf.int32)

        def step():
            return weight_step(images, labels, indices) if mode == "fixed" else \
                weight_step(images, labels)
    built = time.perf_counter()
    rss_built = _rss_mb()
    for _ in range(2):
        step()
    warm = time.perf_counter()
    peak_warmup = _rss_mb()
    reset = _reset_peak_rss()
    tf.config.experimental.reset_memory_stats("CPU:0")
    rounds = []
    for _ in range(FLAGS.rounds):
        t = time.perf_counter()
        for _ in range(FLAGS.steps):
            loss = step()
        float(loss[0] if isinstance(loss, tuple) else loss)  # wait for the last step
        rounds.append((time.perf_counter() - t) / FLAGS.steps * 1000)
    return {"mode": mode, "step_ms": statistics.median(rounds), "rounds_ms": rounds,
            "build_s": built - start, "warmup_s": warm - built, "rss_built_mb": rss_built,
            "peak_rss_warmup_mb": peak_warmup,
            "peak_tensor_mb": tf.config.experimental.get_memory_info("CPU:0")["peak"] / 2**20,
            "peak_rss_mb": _vm_hwm_mb() if reset else _rss_mb()}


def run_worker(mode: str) -> dict:
    args = [sys.executable, os.path.abspath(__file__), f"--worker={mode}",
            f"--space={FLAGS.space}", f"--resolution={FLAGS.resolution}",
            f"--batch={FLAGS.batch}", f"--width={FLAGS.width}", f"--steps={FLAGS.steps}",
            f"--rounds={FLAGS.rounds}", f"--arch={FLAGS.arch}"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_CPU_ALLOCATOR_USE_BFC": "true"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        cli.fail(f"benchmark worker {mode} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv) -> None:
    if FLAGS.worker:
        print(json.dumps(worker(FLAGS.worker)))
        return
    from tfnas.space.registry import get_space
    num_ops = get_space(FLAGS.space).num_ops
    genotype = _genotype()
    r = {mode: run_worker(mode) for mode in ("gumbel_max", "gumbel_softmax", "fixed", "child")}
    speedup = r["gumbel_softmax"]["step_ms"] / r["gumbel_max"]["step_ms"]
    overhead = r["fixed"]["step_ms"] / r["child"]["step_ms"]
    summary = {
        "space": FLAGS.space, "resolution": FLAGS.resolution, "batch": FLAGS.batch,
        "width": FLAGS.width, "arch": str(genotype), "results": r,
        "gumbel_max_speedup": speedup, "speedup_target": 0.7 * num_ops,
        "fixed_path_vs_child": overhead, "overhead_target": 1.2,
    }
    if FLAGS.json:
        print(json.dumps(summary))
        return
    print(f"{FLAGS.space} supernet, {FLAGS.resolution}x{FLAGS.resolution}, batch {FLAGS.batch}, "
          f"width {FLAGS.width}, SGD momentum + wd; median of {FLAGS.rounds} rounds x "
          f"{FLAGS.steps} steps")
    print(f"{'step':<34}{'ms/step':>9}{'rounds (ms)':>34}{'peak RSS MB':>13}{'trace+1st s':>13}"
          f"{'trace peak MB':>15}")
    names = {"gumbel_max": "(1) supernet gumbel_max",
             "gumbel_softmax": "(1) supernet gumbel_softmax",
             "fixed": f"(2) supernet fixed path {FLAGS.arch}",
             "child": f"(2) standalone child {FLAGS.arch}"}
    for mode, name in names.items():
        x = r[mode]
        rounds = " ".join(f"{v:.0f}" for v in x["rounds_ms"])
        print(f"{name:<34}{x['step_ms']:>9.1f}{rounds:>34}{x['peak_rss_mb']:>13.0f}"
              f"{x['warmup_s']:>13.1f}{x['peak_rss_warmup_mb']:>15.0f}")
    print(f"(1) gumbel_softmax / gumbel_max = {speedup:.2f}x "
          f"(target >= 0.7 x {num_ops} = {0.7 * num_ops:.1f})")
    print(f"(2) supernet fixed path / child = {overhead:.2f}x (target <= 1.2)")
    gmax, gsoft = r["gumbel_max"], r["gumbel_softmax"]
    print(f"(3) peak tensor memory of a step: gumbel_max {gmax['peak_tensor_mb']:.0f} MB, "
          f"gumbel_softmax {gsoft['peak_tensor_mb']:.0f} MB "
          f"({gsoft['peak_tensor_mb'] / gmax['peak_tensor_mb']:.2f}x); child "
          f"{r['child']['peak_tensor_mb']:.0f} MB, fixed path {r['fixed']['peak_tensor_mb']:.0f} MB")
    print(f"    process RSS while stepping: gumbel_max {gmax['peak_rss_mb']:.0f} MB, gumbel_softmax "
          f"{gsoft['peak_rss_mb']:.0f} MB; after building the supernet {gmax['rss_built_mb']:.0f} / "
          f"{gsoft['rss_built_mb']:.0f} MB; tracing peaks at {gmax['peak_rss_warmup_mb']:.0f} / "
          f"{gsoft['peak_rss_warmup_mb']:.0f} MB")


if __name__ == "__main__":
    cli.run(main)
