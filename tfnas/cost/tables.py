"""L x O cost tables of a space: params and FLOPs per (searchable layer, op), plus constants.

A genotype's cost is the constant (stem, fixed blocks, head, fc) plus one entry per layer.
Entries of illegal (layer, op) pairs are 0; `legal` says which entries exist.
Latency tables from `deploy.lut` load into the same structure under the objective "latency_ms".
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from tfnas.cost import analytic
from tfnas.errors import TfnasError
from tfnas.io import read_json
from tfnas.space.base import SearchSpace
from tfnas.space.genotype import Genotype
from tfnas.space.mbconv import NOMINAL_CLASSES, NOMINAL_RESOLUTION, MBConvSpace


@dataclasses.dataclass
class CostTables:
    """Per-objective L x O tables and constants for one space."""

    space: str
    ops: tuple[str, ...]
    tables: dict[str, np.ndarray]  # objective -> float64 [L, O]
    constants: dict[str, float]  # objective -> stem + fixed blocks + head
    legal: np.ndarray  # bool [L, O]
    # The network the tables count: a latency table measured on another one is refused.
    setting: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def objectives(self) -> list[str]:
        return list(self.tables)

    def cost(self, indices: Sequence[int] | np.ndarray | Genotype) -> dict[str, float]:
        """Exact cost of one architecture given as op indices (or a Genotype)."""
        if isinstance(indices, Genotype):
            indices = indices.indices()
        idx = np.asarray(indices, dtype=np.int64)
        rows = np.arange(len(idx))
        return {k: float(self.constants[k] + t[rows, idx].sum()) for k, t in self.tables.items()}

    def batch_cost(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Costs of N architectures, `indices` of shape [N, L]."""
        idx = np.asarray(indices, dtype=np.int64)
        rows = np.arange(idx.shape[1])[None, :]
        return {k: self.constants[k] + t[rows, idx].sum(axis=1) for k, t in self.tables.items()}

    def range(self, objective: str, fixed: dict[int, int] | None = None) -> tuple[float, float]:
        """Cheapest and most expensive reachable value, with some layers fixed to an op."""
        table = np.where(self.legal, self.tables[objective], np.nan)
        lo, hi = np.nanmin(table, axis=1), np.nanmax(table, axis=1)
        for layer, op in (fixed or {}).items():
            lo[layer] = hi[layer] = table[layer, op]
        const = self.constants[objective]
        return const + float(lo.sum()), const + float(hi.sum())

    def with_latency(self, path: str | None) -> "CostTables":
        """Adds the "latency_ms" objective from a LUT JSON file (see `load_latency_table`);
        no path, no change."""
        if not path:
            return self
        table, const = load_latency_table(path, self.space, self.ops, self.legal.shape[0],
                                          self.setting)
        return dataclasses.replace(self, tables={**self.tables, "latency_ms": table},
                                   constants={**self.constants, "latency_ms": const})


def mbconv_tables(space: MBConvSpace, resolution: int = NOMINAL_RESOLUTION,
                  num_classes: int = NOMINAL_CLASSES) -> CostTables:
    """Exact params/FLOPs tables of an MBConv space at `resolution` and `num_classes`."""
    scale = resolution / NOMINAL_RESOLUTION

    def res(nominal: int) -> int:
        return nominal if scale == 1 else math.ceil(nominal * scale)

    params = np.zeros((space.num_layers, space.num_ops))
    flops = np.zeros_like(params)
    for i, layer in enumerate(space.layers):
        for j, op in enumerate(space.ops):
            if op in layer.legal_ops:
                c = analytic.block_cost(op, layer.in_channels, layer.out_channels, layer.stride,
                                        _in_res(space, i, resolution))
                params[i, j], flops[i, j] = c.params, c.flops
    const = fixed_cost(space, resolution, num_classes)
    return CostTables(space.name, space.ops, {"params": params, "flops": flops},
                      {"params": float(const.params), "flops": float(const.flops)},
                      space.legal_mask(),
                      {"resolution": resolution, "width_multiplier": space.width_multiplier,
                       "num_classes": num_classes})


def block_resolutions(space: MBConvSpace, resolution: int) -> list[int]:
    """Input resolution of every block (fixed blocks first) at a given input resolution."""
    r = math.ceil(resolution / space.stem_stride)
    out = []
    for layer in space.fixed_layers + space.layers:
        out.append(r)
        r = math.ceil(r / layer.stride)
    out.append(r)  # the head's
    return out


def _in_res(space: MBConvSpace, layer_index: int, resolution: int) -> int:
    return block_resolutions(space, resolution)[len(space.fixed_layers) + layer_index]


def fixed_cost(space: MBConvSpace, resolution: int = NOMINAL_RESOLUTION,
               num_classes: int = NOMINAL_CLASSES) -> analytic.Cost:
    """Stem, fixed blocks, head conv and fc: the part no genotype changes."""
    resolutions = block_resolutions(space, resolution)
    total = analytic.conv(3, space.stem_channels, 3, resolutions[0])
    for layer, r in zip(space.fixed_layers, resolutions):
        total += analytic.block_cost(layer.fixed_op, layer.in_channels, layer.out_channels,
                                     layer.stride, r)
    total += analytic.conv(space.last_channels, space.head_channels, 1, resolutions[-1])
    return total + analytic.dense(space.head_channels, num_classes)


_TABLE_CACHE: dict[tuple, CostTables] = {}


def cost_tables(space: SearchSpace, resolution: int | None = None,
                num_classes: int | None = None) -> CostTables:
    """Cost tables of any registered space (cached; spaces are immutable).

    `resolution` and `num_classes` default to the space's deployment setting: 224 and 1000
    for the MBConv spaces; a space with its own `cost_tables` method uses its own defaults.
    """
    key = (space.name, getattr(space, "width_multiplier", 1.0), resolution, num_classes)
    if key not in _TABLE_CACHE:
        builder = getattr(space, "cost_tables", None)
        given = {k: v for k, v in (("resolution", resolution), ("num_classes", num_classes))
                 if v is not None}
        if builder is not None:
            _TABLE_CACHE[key] = builder(**given)
        elif isinstance(space, MBConvSpace):
            _TABLE_CACHE[key] = mbconv_tables(space, **given)
        else:
            raise TfnasError(f"space {space.name!r} has no cost model")
    return _TABLE_CACHE[key]


def load_latency_table(path: str, space: str, ops: Sequence[str], num_layers: int,
                       setting: dict[str, float] | None = None) -> tuple[np.ndarray, float]:
    """Reads a per-(layer, op) latency file.

    Accepted form: {"space": S, "ops": [...], "table": [[ms per op] per layer],
    "constant_ms": float}; extra keys (the LUT's block descriptions and statistics) are ignored,
    except that a file recording its "resolution", "width_multiplier" or "num_classes" must
    match `setting`, the network the other objectives count.
    """
    obj = read_json(path, "latency table")
    if not isinstance(obj, dict) or "table" not in obj:
        raise TfnasError(f'latency table {path} has no "table" entry')
    if obj.get("space", space) != space:
        raise TfnasError(f"latency table {path} is for space {obj['space']!r}, not {space!r}")
    differ = {k: (obj[k], v) for k, v in (setting or {}).items() if k in obj and obj[k] != v}
    if differ:
        measured = ", ".join(f"{k} {a}" for k, (a, _) in differ.items())
        counted = ", ".join(f"{k} {b}" for k, (_, b) in differ.items())
        raise TfnasError(f"latency table {path} was measured at {measured}; the search counts "
                         f"costs at {counted} (rebuild it with python -m deploy.lut at those "
                         "settings)")
    file_ops = obj.get("ops", list(ops))
    if not isinstance(file_ops, list) or not all(isinstance(op, str) for op in file_ops):
        raise TfnasError(f'latency table {path}: "ops" must be a list of op names')
    missing = [op for op in ops if op not in file_ops]
    shape_error = TfnasError(
        f"latency table {path}: \"table\" must hold {num_layers} rows (layers) of one number "
        f"per op in {file_ops}, and space {space!r} needs ops {list(ops)}")
    constant = obj.get("constant_ms", 0.0)
    if isinstance(constant, bool) or not isinstance(constant, (int, float)):
        raise TfnasError(f'latency table {path}: "constant_ms" must be a number')
    try:
        table = np.asarray(obj["table"], dtype=np.float64)
    except (TypeError, ValueError):
        raise shape_error from None
    if missing or table.shape != (num_layers, len(file_ops)):
        raise TfnasError(f"{shape_error} (it has shape {table.shape})")
    table = table[:, [file_ops.index(op) for op in ops]]
    return np.nan_to_num(table), float(constant)
