"""Resource targets of a proposal search: validation, feasible ranges, eq. 7's normalization.

Everything here is numpy: infeasible targets and bad `--fix` specs fail before TensorFlow is
imported or any optimization runs.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from tfnas.cost.tables import CostTables
from tfnas.errors import TfnasError
from tfnas.space.base import SearchSpace

# How each objective prints: (divisor, unit suffix).
_UNITS = {"params": (1e6, "M"), "flops": (1e6, "M"), "latency_ms": (1.0, " ms")}


def format_value(objective: str, value: float) -> str:
    divisor, unit = _UNITS.get(objective, (1.0, ""))
    return f"{value / divisor:.4g}{unit}"


@dataclasses.dataclass(frozen=True)
class Budget:
    """n resource targets over one space, normalized by the maxima M_i of eq. 7.

    `tables`/`constants`/`targets_normalized` are the cost tables, the fixed part and T_i,
    all divided by M_i (the most expensive reachable value of objective i). Fixed layers are
    rows of `mask` with a single True entry: their cost is a constant of every sample.
    """

    space: str
    ops: tuple[str, ...]
    objectives: tuple[str, ...]
    targets: dict[str, float]
    maxima: np.ndarray  # [n] M_i
    tables: np.ndarray  # [n, L, O] / M_i
    constants: np.ndarray  # [n] / M_i
    mask: np.ndarray  # bool [L, O]: legal and consistent with `fixed`
    fixed: dict[int, int]

    @property
    def targets_normalized(self) -> np.ndarray:
        return np.array([self.targets[k] for k in self.objectives]) / self.maxima

    @property
    def free_layers(self) -> np.ndarray:
        """Layers that still have a choice (not fixed, more than one legal op)."""
        return self.mask.sum(axis=1) > 1


def fixed_mask(legal: np.ndarray, fixed: dict[int, int] | None) -> np.ndarray:
    """The legal mask with every fixed layer reduced to its one op."""
    mask = np.array(legal, dtype=bool)
    for layer, op in (fixed or {}).items():
        mask[layer] = False
        mask[layer, op] = True
    return mask


def feasible_ranges(tables: CostTables, objectives, fixed: dict[int, int] | None = None
                    ) -> dict[str, tuple[float, float]]:
    return {k: tables.range(k, fixed) for k in objectives}


def describe_ranges(ranges: dict[str, tuple[float, float]]) -> str:
    return ", ".join(f"{k} {format_value(k, lo)}..{format_value(k, hi)}"
                     for k, (lo, hi) in ranges.items())


def make_budget(tables: CostTables, targets: dict[str, float],
                fixed: dict[int, int] | None = None) -> Budget:
    """Validates targets and fixed layers against the tables; TfnasError on bad input.

    Infeasible targets (outside what the space reaches with the fixed layers) raise an error
    that names the feasible range of every objective.
    """
    fixed = {int(k): int(v) for k, v in (fixed or {}).items()}
    num_layers, num_ops = tables.legal.shape
    for layer, op in fixed.items():
        if not 0 <= layer < num_layers or not 0 <= op < num_ops:
            raise TfnasError(f"fixed layer {layer}:{op} is outside the {num_layers} x {num_ops} "
                             f"space {tables.space!r}")
        if not tables.legal[layer, op]:
            raise TfnasError(f"fixed op {tables.ops[op]!r} is not legal at layer {layer}")
    if not targets:
        raise TfnasError("give at least one target (params, flops or latency_ms)")
    unknown = [k for k in targets if k not in tables.tables]
    if unknown:
        hint = " (pass a latency table)" if "latency_ms" in unknown else ""
        raise TfnasError(f"no cost table for objective(s) {', '.join(unknown)}{hint}; "
                         f"known: {', '.join(tables.objectives)}")
    for k, v in targets.items():
        if not math.isfinite(v) or v <= 0:
            raise TfnasError(f"target {k} must be a positive number, got {v}")
    objectives = tuple(targets)
    ranges = feasible_ranges(tables, objectives, fixed)
    bad = [f"{k} {format_value(k, targets[k])} is "
           f"{'below the cheapest' if targets[k] < lo else 'above the most expensive'}"
           f" reachable architecture" for k, (lo, hi) in ranges.items()
           if not lo <= targets[k] <= hi]
    if bad:
        where = f" with {len(fixed)} fixed layer(s)" if fixed else ""
        raise TfnasError(f"infeasible targets: {'; '.join(bad)}; feasible ranges{where}: "
                         f"{describe_ranges(ranges)}")
    maxima = np.array([ranges[k][1] for k in objectives])
    mask = fixed_mask(tables.legal, fixed)
    return Budget(
        space=tables.space, ops=tuple(tables.ops), objectives=objectives,
        targets={k: float(v) for k, v in targets.items()}, maxima=maxima,
        tables=np.stack([np.where(mask, tables.tables[k], 0.0) / m
                         for k, m in zip(objectives, maxima)]),
        constants=np.array([tables.constants[k] for k in objectives]) / maxima,
        mask=mask, fixed=fixed)


def parse_fixed(space: SearchSpace, spec: str | None) -> dict[int, int]:
    """`LAYER:OP,...` -> {layer index: op index}; LAYER is a layer name or a 0-based index."""
    fixed: dict[int, int] = {}
    names = [choice.name for choice in space.choices]
    for item in filter(None, (s.strip() for s in (spec or "").split(","))):
        layer, sep, op = item.partition(":")
        if not sep:
            raise TfnasError(f"--fix entry {item!r} is not LAYER:OP")
        layer = layer.strip()
        if layer in names:
            index = names.index(layer)
        elif layer.isdigit() and int(layer) < len(names):
            index = int(layer)
        else:
            raise TfnasError(f"--fix: unknown layer {layer!r}; layers are {names[0]}.."
                             f"{names[-1]} or 0..{len(names) - 1}")
        choice = space.choices[index]
        if op.strip() not in choice.legal_ops:
            raise TfnasError(f"--fix: op {op.strip()!r} is not legal at {choice.name}; legal ops "
                             f"are {', '.join(choice.legal_ops)}")
        fixed[index] = space.ops.index(op.strip())
    return fixed
