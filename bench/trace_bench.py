"""Tracing cost of the supernet's two search steps, optionally against another checkout.

  python bench/trace_bench.py [--space=fbnet --image_size=32 --width=0.5 --batch=32]
                              [--vital_only | --fix_vital] [--epochs=0] [--replicas=1]
                              [--vs_root=OTHER_CHECKOUT | --vs_separate] [--rounds=1]

Tracing dominates a default CPU search (see the README's Search figures). For the weight step
and the θ step of one supernet, built as the search builds them (`make_search_steps`), this
prints the Python trace time, the first call's time (graph set-up) and the node count of the
traced graph, its function library included, then both steps' total. `--epochs=N` also
times N steady-state epochs of 100 weight + 25 θ steps (the default data's proportions) after
the first calls. `--vs_separate` measures this checkout against itself with the two steps
traced apart (`make_search_steps(share=False)`), in alternating processes. With
`--vs_root` the same measurement runs on the code of another checkout (e.g. a `git worktree`
of an earlier commit) in alternating processes (A B A B ...) and the ratios A/B are printed.
`--replicas=N` splits the CPU into N logical devices and runs the steps under a
`MirroredStrategy` over them (the batch is the global one). Grappler is off, as
`--grappler=auto` leaves it on CPU.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import flags  # noqa: E402

from tfnas import cli  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("space", "fbnet", "Registered MBConv search space of the supernet.")
flags.DEFINE_integer("image_size", 32, "Input resolution (square), as the search's flag.")
flags.DEFINE_float("width", 0.5, "Width multiplier, as the search's --width_multiplier.")
flags.DEFINE_integer("batch", 32, "Batch size of the traced steps.")
flags.DEFINE_bool("vital_only", False, "Trace HourNAS stage 1's vital-only supernet.")
flags.DEFINE_bool("fix_vital", False, "Pin every vital layer (to op 1), as stage 2's supernet.")
flags.DEFINE_integer("epochs", 0, "Steady-state epochs (100 weight + 25 θ steps) to time.")
flags.DEFINE_integer("replicas", 1, "Logical CPU devices of a MirroredStrategy (1: none).")
flags.DEFINE_bool("vs_separate", False, "B = this checkout with the steps traced apart.")
flags.DEFINE_bool("share", True, "Internal: the worker's make_search_steps(share=...).")
flags.DEFINE_string("vs_root", None, "Root of another checkout to measure side by side.")
flags.DEFINE_integer("rounds", 1, "Processes per checkout; figures are medians.")
flags.DEFINE_string("worker_root", None, "Internal: measure the code under this root once and "
                    "print JSON.")

STEPS = ("weight", "arch")
EPOCH = {"weight": 100, "arch": 25}  # steps per steady-state epoch (the default data's)


def graph_nodes(concrete) -> int:
    graph_def = concrete.graph.as_graph_def()
    return len(graph_def.node) + sum(len(f.node_def) for f in graph_def.library.function)


def measure() -> dict:
    tf = cli.import_tensorflow()
    import keras

    from tfnas.engine import steps as engine_steps
    from tfnas.nn.sampling import ArchParams
    from tfnas.nn.supernet import SuperNet
    from tfnas.space import get_space

    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    strategy = tf.distribute.get_strategy()
    if FLAGS.replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * FLAGS.replicas)
        strategy = tf.distribute.MirroredStrategy(
            [f"/cpu:{i}" for i in range(FLAGS.replicas)])
    size = FLAGS.image_size
    space = get_space(FLAGS.space)
    fixed = {i: 1 for i, layer in enumerate(space.layers) if layer.vital} if FLAGS.fix_vital \
        else None
    with strategy.scope():
        net = SuperNet(FLAGS.space, 10, (size, size, 3), width_multiplier=FLAGS.width,
                       vital_only=FLAGS.vital_only, fixed=fixed)
        arch = ArchParams(net.allowed_mask(), seed=0)
        weight_opt = keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=4e-5)
        arch_opt = keras.optimizers.Adam(0.01)
    if hasattr(engine_steps, "make_search_steps"):  # the pair the search builds
        pair = engine_steps.make_search_steps(net, arch, weight_opt, arch_opt,
                                              strategy=strategy, share=FLAGS.share)
    else:  # a checkout from before the shared pass
        pair = (engine_steps.make_weight_step(net, arch, weight_opt, strategy=strategy),
                engine_steps.make_arch_step(net, arch, arch_opt, strategy=strategy))
    steps = dict(zip(STEPS, pair))
    batch = tf.data.Dataset.from_tensors(
        (tf.random.stateless_normal((FLAGS.batch, size, size, 3), seed=(0, 1)),
         tf.zeros((FLAGS.batch,), tf.int32))).repeat()
    images, labels = next(iter(strategy.experimental_distribute_dataset(batch)))
    out = {}
    for name, step in steps.items():
        start = time.perf_counter()
        concrete = step.get_concrete_function(images, labels)
        traced = time.perf_counter()
        step(images, labels)
        out[name] = {"trace_s": traced - start, "first_call_s": time.perf_counter() - traced,
                     "nodes": graph_nodes(concrete)}
    for name in STEPS:
        out[name]["epoch_s"] = []
    for _ in range(FLAGS.epochs):
        for name, count in EPOCH.items():
            start = time.perf_counter()
            for _ in range(count):
                steps[name](images, labels)
            out[name]["epoch_s"].append(time.perf_counter() - start)
    return out


def run_worker(root: str, share: bool) -> dict:
    args = [sys.executable, os.path.abspath(__file__), f"--worker_root={root}",
            f"--space={FLAGS.space}", f"--image_size={FLAGS.image_size}",
            f"--width={FLAGS.width}", f"--batch={FLAGS.batch}",
            f"--vital_only={FLAGS.vital_only}", f"--fix_vital={FLAGS.fix_vital}",
            f"--epochs={FLAGS.epochs}", f"--replicas={FLAGS.replicas}", f"--share={share}"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}  # the worker puts `root` first itself
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"worker under {root} failed: {proc.stderr.strip().splitlines()[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict], step: str, key: str) -> float:
    if key == "epoch_s":  # median over every timed epoch of every process
        return statistics.median(t for r in runs for t in r[step][key])
    return statistics.median(r[step][key] for r in runs)


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.worker_root:
        sys.path.insert(0, FLAGS.worker_root)  # ahead of this script's own checkout
        for name in [m for m in sys.modules if m == "tfnas" or m.startswith("tfnas.")]:
            del sys.modules[name]
        print(json.dumps(measure()))
        return
    if FLAGS.vs_root and FLAGS.vs_separate:
        sys.exit("give --vs_root or --vs_separate, not both")
    roots = {"A": (ROOT, True)}
    if FLAGS.vs_root:
        roots["B"] = (os.path.abspath(FLAGS.vs_root), True)
    elif FLAGS.vs_separate:
        roots["B"] = (ROOT, False)
    runs: dict[str, list[dict]] = {k: [] for k in roots}
    for r in range(FLAGS.rounds):
        for key, (root, share) in roots.items():
            runs[key].append(run_worker(root, share))
            print(f"round {r + 1}/{FLAGS.rounds} {key} done", file=sys.stderr, flush=True)
    what = ("vital-only" if FLAGS.vital_only else
            "stage-2 (vital layers pinned)" if FLAGS.fix_vital else "full")
    print(f"{FLAGS.space} {what} supernet, {FLAGS.image_size} px, width {FLAGS.width}, batch "
          f"{FLAGS.batch}, {FLAGS.replicas} replica(s); medians of {FLAGS.rounds} process(es) "
          "per checkout")
    for key, (root, share) in roots.items():
        print(f"  {key} = {root}" + ("" if share else " (steps traced apart)"))
    for step in STEPS:
        for key in roots:
            print(f"  {step:6s} step {key}: trace {median_of(runs[key], step, 'trace_s'):6.1f} s"
                  f"  first call {median_of(runs[key], step, 'first_call_s'):5.1f} s"
                  f"  nodes {median_of(runs[key], step, 'nodes'):8.0f}")
        if "B" in roots:
            ratio = {k: median_of(runs["A"], step, k) / median_of(runs["B"], step, k)
                     for k in ("trace_s", "first_call_s", "nodes")}
            print(f"  {step:6s} step A/B: trace {ratio['trace_s']:.2f}  first call "
                  f"{ratio['first_call_s']:.2f}  nodes {ratio['nodes']:.2f}")
    total = {key: statistics.median(sum(r[s][k] for s in STEPS for k in ("trace_s",
                                                                         "first_call_s"))
                                    for r in runs[key]) for key in roots}
    for key in roots:
        print(f"  both steps {key}: trace + first call {total[key]:6.1f} s")
    if "B" in roots:
        print(f"  both steps A/B: {total['A'] / total['B']:.2f}")
    if FLAGS.epochs:
        for step, count in EPOCH.items():
            line = "  ".join(f"{key} {median_of(runs[key], step, 'epoch_s'):6.2f} s"
                             for key in roots)
            print(f"  steady {count:3d} {step} steps (median epoch): {line}")


if __name__ == "__main__":
    cli.run(main)
