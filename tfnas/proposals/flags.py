"""The resource-target flags shared by every CLI that takes targets (proposals, search)."""

from __future__ import annotations

from absl import flags

from tfnas.cost.tables import CostTables, cost_tables
from tfnas.errors import TfnasError
from tfnas.proposals.budget import parse_fixed
from tfnas.space.base import SearchSpace

_OBJECTIVE_FLAGS = (("params", "target_params"), ("flops", "target_flops"),
                    ("latency_ms", "target_latency_ms"))


def define_target_flags() -> None:
    """--target_params, --target_flops, --latency_table, --target_latency_ms and --fix."""
    flags.DEFINE_float("target_params", None, "Target parameter count (count_params, BN "
                       "statistics included), e.g. 4.8e6.")
    flags.DEFINE_float("target_flops", None, "Target multiply-adds at 224x224, e.g. 300e6.")
    flags.DEFINE_string("latency_table", None,
                        "Per-(layer, op) latency table JSON (from `python -m deploy.lut`, or any "
                        "file with a value per layer and op); with --target_latency_ms it adds "
                        "latency as an objective.")
    flags.DEFINE_float("target_latency_ms", None, "Target latency in ms (needs --latency_table).")
    flags.DEFINE_list("fix", [], "Layers fixed to an op, as LAYER:OP pairs (LAYER a name such "
                      "as layer3_2 or a 0-based index), e.g. layer1_1:k3e1,layer7_1:k5e6. They "
                      "are not searched and count toward the budget.")


def targets_from_flags() -> dict[str, float]:
    """{objective: target} of the target flags that are set; TfnasError when none is."""
    targets = optional_targets_from_flags()
    if not targets:
        raise TfnasError("give at least one of --target_params, --target_flops, "
                         "--target_latency_ms")
    return targets


def optional_targets_from_flags() -> dict[str, float]:
    """{objective: target} of the target flags that are set (maybe none)."""
    values = flags.FLAGS
    targets = {objective: getattr(values, name) for objective, name in _OBJECTIVE_FLAGS
               if getattr(values, name) is not None}
    if "latency_ms" in targets and not values.latency_table:
        raise TfnasError("--target_latency_ms needs --latency_table")
    return targets


def tables_from_flags(space: SearchSpace) -> CostTables:
    """The space's cost tables at 224x224, with --latency_table's objective when given."""
    return cost_tables(space).with_latency(flags.FLAGS.latency_table)


def fixed_from_flags(space: SearchSpace) -> dict[int, int]:
    """--fix as {layer index: op index}."""
    return parse_fixed(space, ",".join(flags.FLAGS.fix))
