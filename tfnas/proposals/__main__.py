"""Optimize HourNAS space proposals and check "what you set is what you get" by sampling.

  python -m tfnas.proposals --space=fbnet --target_params=4.8e6 --target_flops=300e6
  python -m tfnas.proposals --space=efficientnet --target_params=5.3e6 --target_flops=390e6
      --fix=layer1_1:k3e1se --samples=10000 --plot=proposals.png --json

Samples are drawn at --tau, the temperature the proposals are optimized for (default: where
the paper's schedule, 5.0 x 0.9999 per iteration, stands after 1000 iterations: 4.524).
"""

from __future__ import annotations

import json
import os

from absl import flags

from tfnas import cli
from tfnas.errors import TfnasError
from tfnas.io import check_output_path, write_text
from tfnas.proposals import defaults
from tfnas.proposals import flags as target_flags
from tfnas.proposals.budget import describe_ranges, feasible_ranges, format_value, make_budget
from tfnas.proposals.stats import format_report, mean_pairwise_difference, sample_report
from tfnas.space import get_space, list_spaces

FLAGS = flags.FLAGS
flags.DEFINE_string("space", None, f"Search space, one of: {', '.join(list_spaces())}.")
target_flags.define_target_flags()
flags.DEFINE_integer("num_proposals", defaults.NUM_PROPOSALS, "m: number of space proposals.")
flags.DEFINE_integer("iterations", defaults.ITERATIONS, "I_sp: optimization iterations.")
flags.DEFINE_float("beta", defaults.BETA, "Weight of the orthogonality term of eq. 7.")
flags.DEFINE_float("learning_rate", defaults.LEARNING_RATE,
                   "Adam learning rate on the logits θ/τ.")
flags.DEFINE_float("tau", defaults.DEFAULT_TAU,
                   "Temperature the proposals are optimized for and sampled at: op o is drawn "
                   "with probability softmax(θ/τ)_o.")
flags.DEFINE_integer("samples", 10000, "N: architectures sampled (two-level, eqs. 8-9) to check "
                     "the targets.")
flags.DEFINE_integer("seed", 0, "Random seed of the initialization and of the samples.")
flags.DEFINE_bool("json", False, "Print one JSON object instead of the text report.")
flags.DEFINE_string("dump", None, "Write the N sampled architectures here, one genotype string "
                    "(comma-separated op names) per line.")
flags.DEFINE_string("output", None, "Write the proposals (Θ, Π, mask, τ, targets) as JSON here.")
flags.DEFINE_string("plot", None, "Write figure 3 here (PNG): params against FLOPs of samples "
                    "at several temperatures, the targets marked.")


def _check_flags() -> None:
    if not FLAGS.space:
        raise TfnasError("--space is required")
    for name, low in (("num_proposals", 1), ("iterations", 0), ("samples", 1)):
        if getattr(FLAGS, name) < low:
            raise TfnasError(f"--{name} must be >= {low}")
    if FLAGS.beta < 0 or not FLAGS.tau > 0 or not FLAGS.learning_rate > 0:
        raise TfnasError("--beta must be >= 0, --tau and --learning_rate > 0")
    outputs = {name: getattr(FLAGS, name) for name in ("dump", "output", "plot")
               if getattr(FLAGS, name)}
    for name, path in outputs.items():  # all before any is written: no partial set of outputs
        check_output_path(path, f"--{name}")
    if len({os.path.abspath(p) for p in outputs.values()}) < len(outputs):
        raise TfnasError(f"--dump, --output and --plot must be different files, got "
                         f"{', '.join(f'--{k}={v}' for k, v in outputs.items())}")


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise TfnasError(f"unexpected arguments: {' '.join(argv[1:])}")
    _check_flags()
    space = get_space(FLAGS.space)
    targets = target_flags.targets_from_flags()
    tables = target_flags.tables_from_flags(space)
    fixed = target_flags.fixed_from_flags(space)
    make_budget(tables, targets, fixed)  # infeasible targets fail here, before TensorFlow loads
    cli.import_tensorflow()  # quietly, only now that the input is known to be good
    from tfnas.proposals.optimizer import optimize_proposals

    proposals = optimize_proposals(tables, targets, fixed, FLAGS.num_proposals, FLAGS.iterations,
                                   FLAGS.beta, FLAGS.tau, FLAGS.seed, FLAGS.learning_rate)
    archs, which = proposals.sample_with_proposals(FLAGS.samples, FLAGS.seed + 1)
    report = sample_report(tables, targets, archs, which, proposals.num_proposals)
    most_likely = proposals.most_likely()
    for entry, arch in zip(report["proposals"], most_likely):
        entry["most_likely"] = proposals.arch_string(arch)
        entry["most_likely_cost"] = tables.cost(arch)
    info = {"space": space.name, "seconds": proposals.info["seconds"],
            "num_proposals": proposals.num_proposals, "iterations": FLAGS.iterations,
            "beta": FLAGS.beta, "tau": FLAGS.tau, "targets": targets,
            "fixed": {space.choices[k].name: space.ops[v] for k, v in fixed.items()},
            "feasible_ranges": feasible_ranges(tables, targets, fixed), **report,
            "most_likely_distinct": len({tuple(a) for a in most_likely.tolist()}),
            "most_likely_difference": mean_pairwise_difference(most_likely)}
    if FLAGS.dump:
        write_text(FLAGS.dump, "".join(proposals.arch_string(a) + "\n" for a in archs))
    if FLAGS.output:
        proposals.save(FLAGS.output)
    if FLAGS.plot:
        from tfnas.proposals.plot import plot_samples
        plot_samples(proposals, tables, FLAGS.plot, FLAGS.samples, seed=FLAGS.seed + 2)
    print(json.dumps(info) if FLAGS.json else "\n".join(_text(info)))
    return 0


def _text(info: dict) -> list[str]:
    lines = [f"space {info['space']}: {info['num_proposals']} proposals x {info['iterations']} "
             f"iterations optimized in {info['seconds']:.2f} s (beta {info['beta']:g}, sampled "
             f"at tau {info['tau']:.4g})",
             f"feasible ranges: {describe_ranges(info['feasible_ranges'])}"]
    if info["fixed"]:
        lines.append("fixed: " + ", ".join(f"{k}:{v}" for k, v in info["fixed"].items()))
    lines += format_report(info)
    lines.append(f"most likely architecture of each proposal ({info['most_likely_distinct']} "
                 f"distinct, differing in {info['most_likely_difference']:.0%} of layers per "
                 "pair on average):")
    for j, p in enumerate(info["proposals"]):
        cost = ", ".join(f"{k} {format_value(k, v)}" for k, v in p["most_likely_cost"].items())
        lines.append(f"  {j}: {p['most_likely']}  ({cost})")
    return lines


if __name__ == "__main__":
    cli.run(main)
