"""Supernet search: `python -m tfnas.search --flagfile=configs/efficientnet.cfg [--model_dir=DIR]`
(HourNAS), or `--algorithm=setn|tnas --space=nb201|SPACE` (one-shot SETN / TNAS).

Writes DIR/arch.json (space, arch, params, flops, targets, stage times, seed), DIR/arch_probs.png,
TensorBoard logs and checkpoints. Rerunning the same command resumes an interrupted search.
"""

from __future__ import annotations

import os
import sys

from absl import flags

import tfnas.proposals.flags
import tfnas.search.flags
from tfnas import cli
from tfnas.errors import TfnasError
from tfnas.proposals.budget import make_budget
from tfnas.proposals.flags import (fixed_from_flags, optional_targets_from_flags,
                                   tables_from_flags, targets_from_flags)
from tfnas.search.flags import define_flags, foreign_flags

define_flags()
FLAGS = flags.FLAGS
# --help lists the flags of the modules that define them, not only this module's.
flags.adopt_module_key_flags(tfnas.search.flags)
flags.adopt_module_key_flags(tfnas.proposals.flags)

# The flags config.json records (a resume must repeat them): every search's, then each
# algorithm's own.
_COMMON_FLAGS = (
    "dataset", "num_classes", "weight_fraction", "max_images", "cache", "image_size",
    "width_multiplier", "batch_size", "steps_per_epoch", "weight_lr", "weight_decay",
    "clip_norm", "arch_lr", "seed", "checkpoint_every", "checkpoint_secs", "latency_table",
    "data_dir", "space_module")
_HOURNAS_FLAGS = _COMMON_FLAGS + (
    "vital_epochs", "nonvital_epochs", "two_stage", "sampler", "vital_sampler",
    "arch_gradient", "shared_trace", "tau", "tau_decay", "alpha", "beta", "num_proposals",
    "proposal_iterations")
_ONESHOT_FLAGS = _COMMON_FLAGS + (
    "epochs", "setn_selection", "num_candidates", "top_k", "eval_batches", "tnas_mode",
    "eps_inc", "population", "generations")
# Flags recorded only when they differ from these defaults, so that runs from before they
# were recorded still resume; each changes float rounding.
_RECORDED_WHEN_SET = {"mixed_precision": "none", "grappler": "auto", "deterministic": True}


def import_space_modules(modules: list[str]) -> None:
    for module in modules:
        try:
            cli.import_quietly(module)  # one importing keras: its start-up chatter kept quiet
        except ImportError as e:
            raise TfnasError(f"--space_module {module}: {e}") from None


def _check_ranges() -> None:
    positive = {"image_size": 8, "batch_size": 1, "num_proposals": 1, "checkpoint_every": 0,
                "checkpoint_secs": 0}
    for name, low in positive.items():
        if getattr(FLAGS, name) < low:
            raise TfnasError(f"--{name} must be >= {low}")
    for name in ("epochs", "num_candidates", "top_k", "eval_batches", "selection_batches",
                 "population"):
        if getattr(FLAGS, name) < 1:
            raise TfnasError(f"--{name} must be >= 1")
    if FLAGS.generations < 0 or FLAGS.eps_inc < 0:
        raise TfnasError("--generations and --eps_inc must be >= 0")
    for name in ("vital_epochs", "nonvital_epochs", "steps_per_epoch", "proposal_iterations",
                 "max_images", "num_classes"):
        if getattr(FLAGS, name) < 0:
            raise TfnasError(f"--{name} must be >= 0")
    if not 0 < FLAGS.width_multiplier <= 4:
        raise TfnasError("--width_multiplier must be in (0, 4]")
    if not FLAGS.tau > 0 or not 0 < FLAGS.tau_decay <= 1:
        raise TfnasError("--tau must be > 0 and --tau_decay in (0, 1]")
    for name in ("weight_lr", "arch_lr"):
        if not getattr(FLAGS, name) > 0:
            raise TfnasError(f"--{name} must be > 0")
    for name in ("weight_decay", "clip_norm", "alpha", "beta"):
        if not getattr(FLAGS, name) >= 0:
            raise TfnasError(f"--{name} must be >= 0")
    if FLAGS.two_stage and FLAGS.vital_epochs == 0:
        raise TfnasError("--vital_epochs must be >= 1 with --two_stage")
    if FLAGS.nonvital_epochs == 0 and (FLAGS.two_stage or FLAGS.vital_epochs == 0):
        raise TfnasError("--nonvital_epochs must be >= 1")


def main(argv: list[str]) -> int:
    if not FLAGS.space:
        raise TfnasError("--space is required (or --flagfile=configs/SPACE.cfg)")
    import_space_modules(FLAGS.space_module)
    from tfnas.space import get_space
    from tfnas.space.mbconv import MBConvSpace
    from tfnas.space.nb201 import NB201Space
    space = get_space(FLAGS.space)
    hournas = FLAGS.algorithm == "hournas"
    if hournas and not isinstance(space, MBConvSpace):
        raise TfnasError(f"HourNAS searches MBConv spaces; {FLAGS.space!r} is not one "
                         "(--algorithm=setn or tnas search it)")
    foreign = foreign_flags(FLAGS.algorithm)
    if foreign:
        name, owner = foreign[0]
        raise TfnasError(f"--{name} is a {owner} flag; --algorithm={FLAGS.algorithm} does not "
                         "use it")
    _check_ranges()
    if hournas:
        targets = targets_from_flags()
        fixed = fixed_from_flags(space)
        # Infeasible targets fail here, with the feasible ranges, before TensorFlow starts.
        make_budget(tables_from_flags(space), targets, fixed)
    else:
        if not isinstance(space, (MBConvSpace, NB201Space)):
            raise TfnasError(f"space {FLAGS.space!r} has no supernet for {FLAGS.algorithm}")
        targets = optional_targets_from_flags()

    from tfnas.search.rundir import RunDir
    model_dir = FLAGS.model_dir or os.path.join(
        "runs", space.name if hournas else f"{space.name}_{FLAGS.algorithm}")
    flags_record = {name: getattr(FLAGS, name)
                    for name in (_HOURNAS_FLAGS if hournas else _ONESHOT_FLAGS)}
    flags_record.update(space=space.name, targets=targets, algorithm=FLAGS.algorithm)
    flags_record.update({name: getattr(FLAGS, name) for name, default in
                         _RECORDED_WHEN_SET.items() if getattr(FLAGS, name) != default})
    if FLAGS.algorithm == "tnas" and FLAGS.tnas_mode == "gradient":
        # Recorded only here: other one-shot runs never read it (and resume without it).
        flags_record["arch_gradient"] = FLAGS.arch_gradient
    if hournas:
        flags_record["fix"] = sorted(FLAGS.fix)
        # Also recorded only when set.
        for name in ("vital_selection", "proposal_selection"):
            if getattr(FLAGS, name) != "probability":
                flags_record.update({name: getattr(FLAGS, name),
                                     "selection_batches": FLAGS.selection_batches})
    rundir = RunDir(model_dir)
    # A foreign, mismatched or impossible directory fails before TensorFlow and the data load.
    rundir.check_writable()
    rundir.check_resumable(flags_record)

    tf = cli.import_tensorflow()
    import tfnas
    from tfnas.data import reading
    from tfnas.search.data import SearchData
    from tfnas.search.report import summary_table
    from tfnas.distribute import (check_precision, configure_grappler, is_chief, make_strategy,
                                  num_workers)

    if FLAGS.deterministic:
        tf.config.experimental.enable_op_determinism()
    configure_grappler(FLAGS.grappler)
    if FLAGS.mixed_precision != "none":  # before any layer is built
        import keras
        keras.mixed_precision.set_global_policy(f"mixed_{FLAGS.mixed_precision}")
    strategy = make_strategy(FLAGS.strategy, FLAGS.tpu)
    check_precision(FLAGS.mixed_precision, strategy)
    chief = is_chief(strategy)
    if hournas:
        from tfnas.search.hournas import HourNAS as Search, SearchConfig as Config
        extra = {"user_fixed": fixed}
    else:
        from tfnas.search.oneshot import OneShotConfig as Config, OneShotSearch as Search
        extra = {"algorithm": FLAGS.algorithm}
    config = Config(space=space, targets=targets, **extra,
                    **{k: v for k, v in flags_record.items()
                       if k in Config.__dataclass_fields__
                       and k not in ("space", "targets", "algorithm")})
    if num_workers(strategy) > 1 and (config.checkpoint_secs or not config.checkpoint_every):
        # Workers save together; a clock would make them disagree on the step.
        config.checkpoint_every, config.checkpoint_secs = config.checkpoint_every or 50, 0.0
    data = SearchData(config, strategy)  # a missing or empty dataset fails before DIR is touched
    resumed = False
    if chief:
        resumed = rundir.claim({"tfnas_version": tfnas.__version__,
                                "tensorflow": tf.__version__, "flags": flags_record})
    search = Search(config, data, rundir, strategy, chief=chief, flags_record=flags_record)
    search.save_on_interrupt = num_workers(strategy) == 1
    if resumed:
        stage = search.state["stage"]
        print(f"the search in {model_dir} has finished; writing its result again"
              if stage == "done" else f"resuming the search in {model_dir} at stage {stage}")
    with reading(config.dataset):  # a streamed image that does not decode, met mid-search
        record = search.run()
    search.writer.close()
    vital = space.vital_mask() & hournas  # the one-shot searches have no vital layers
    print(summary_table(record, [c.name for c in space.choices], vital))
    if chief:
        print(f"wrote {rundir.file('arch.json')} and {rundir.file('arch_probs.png')}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    cli.run(main, fast_exit=True)
