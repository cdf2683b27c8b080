"""The NAS-Bench-201 cell space: 4 nodes, 6 edges, 5 ops (5^6 = 15,625 cells).

One cell genotype is shared by all 15 cells of the standard macro net (stem conv3x3 16,
3 stages of N=5 cells at C=16/32/64 with residual reduction blocks, BN-ReLU, pool, fc).
Decisions are the edges in NAS-Bench-201's string order: 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2,
so the comma form `op,op,op,op,op,op` and the canonical
`|op~0|+|op~0|op~1|+|op~0|op~1|op~2|` list the same ops in the same order.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from tfnas.errors import GenotypeError
from tfnas.space.base import Choice, SearchSpace
from tfnas.space.genotype import Genotype, parse_genotype
from tfnas.space.registry import register_space

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NUM_NODES = 4
EDGES = tuple((to, frm) for to in range(1, NUM_NODES) for frm in range(to))  # (to, from)
CONV_KERNELS = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}
NOMINAL_RESOLUTION = 32
NOMINAL_CLASSES = 10
BN_VECTORS = 4  # gamma, beta, moving mean, moving variance (count_params counts all four)


@dataclasses.dataclass(frozen=True)
class EdgeChoice(Choice):
    """The op on the edge from node `source` to node `target` of every cell."""

    target: int = 1
    source: int = 0


class NB201Space(SearchSpace):
    """NAS-Bench-201's cell space with its standard macro net (C, N configurable)."""

    def __init__(self, channels: int = 16, cells_per_stage: int = 5, name: str = "nb201"):
        self.name = name
        self.ops = NB201_OPS
        self.channels = channels
        self.cells_per_stage = cells_per_stage
        self.description = (f"NAS-Bench-201 cell, {len(EDGES)} edges x {len(NB201_OPS)} ops, "
                            f"C={channels}, N={cells_per_stage}")
        self._choices = tuple(EdgeChoice(f"edge{to}_{frm}", NB201_OPS, to, frm)
                              for to, frm in EDGES)

    @property
    def choices(self) -> tuple[EdgeChoice, ...]:
        return self._choices

    def with_width(self, width_multiplier: float) -> "NB201Space":
        """The same space with C scaled (rounded, at least 1)."""
        if width_multiplier == 1.0:
            return self
        return NB201Space(max(1, round(self.channels * width_multiplier)),
                          self.cells_per_stage, self.name)

    @property
    def stage_channels(self) -> tuple[int, int, int]:
        c = self.channels
        return c, 2 * c, 4 * c

    def cost_tables(self, resolution: int = NOMINAL_RESOLUTION,
                    num_classes: int = NOMINAL_CLASSES):
        """Params / FLOPs tables: 6 x 5, each entry summing one edge over the 15 cells.

        NAS-Bench-201's convention: every edge op counts, also one whose node feeds nothing
        (`dead_edges`; the standalone Keras model prunes those, see `tfnas.nn.nb201`).
        """
        from tfnas.cost import analytic
        from tfnas.cost.tables import CostTables

        resolutions = stage_resolutions(resolution)
        params = np.zeros((self.num_layers, self.num_ops))
        flops = np.zeros_like(params)
        for j, op in enumerate(self.ops):
            if op not in CONV_KERNELS:
                continue  # none, skip and pooling have no weights and no multiply-adds
            for c, r in zip(self.stage_channels, resolutions):
                cell = analytic.conv(c, c, CONV_KERNELS[op], r)
                params[:, j] += self.cells_per_stage * cell.params
                flops[:, j] += self.cells_per_stage * cell.flops
        const = self._fixed_cost(resolutions, num_classes, analytic)
        return CostTables(self.name, self.ops, {"params": params, "flops": flops},
                          {"params": float(const.params), "flops": float(const.flops)},
                          self.legal_mask(),
                          {"resolution": resolution, "num_classes": num_classes})

    def _fixed_cost(self, resolutions, num_classes, analytic):
        """Stem, the two residual reduction blocks, the last BN and the fc."""
        c1, c2, c3 = self.stage_channels
        total = analytic.conv(3, c1, 3, resolutions[0])
        for cin, cout, r in ((c1, c2, resolutions[1]), (c2, c3, resolutions[2])):
            total += analytic.conv(cin, cout, 3, r) + analytic.conv(cout, cout, 3, r)
            total += analytic.conv(cin, cout, 1, r, bn=False)  # pooled shortcut
        total += analytic.Cost(BN_VECTORS * c3, 0)
        return total + analytic.dense(c3, num_classes)

    def parse_arch(self, arch: str) -> Genotype:
        """The canonical `|op~0|+|op~0|op~1|+...` string (or the comma form)."""
        return parse_nb201(arch)

    def __repr__(self) -> str:
        return f"NB201Space(C={self.channels}, N={self.cells_per_stage})"


def stage_resolutions(resolution: int) -> tuple[int, int, int]:
    """Input resolution of the three stages (the reduction blocks have stride 2)."""
    r2 = math.ceil(resolution / 2)
    return resolution, r2, math.ceil(r2 / 2)


def dead_edges(genotype: Genotype) -> list[int]:
    """Decisions whose op never reaches the cell output (its target node feeds nothing).

    NAS-Bench-201 counts (and computes) them; the standalone Keras model leaves them out,
    so its params are the table's minus these edges' entries.
    """
    ops = genotype.ops
    live = {NUM_NODES - 1}
    for node in range(NUM_NODES - 2, 0, -1):
        if any(op != "none" and frm == node and to in live
               for (to, frm), op in zip(EDGES, ops)):
            live.add(node)
    return [i for i, ((to, _), op) in enumerate(zip(EDGES, ops))
            if op != "none" and to not in live]


def to_nb201_string(genotype: Genotype) -> str:
    """`|op~0|+|op~0|op~1|+|op~0|op~1|op~2|` of an nb201 genotype."""
    nodes = []
    for to in range(1, NUM_NODES):
        nodes.append("|" + "|".join(f"{op}~{frm}" for (t, frm), op in zip(EDGES, genotype.ops)
                                    if t == to) + "|")
    return "+".join(nodes)


def parse_nb201(arch: str) -> Genotype:
    """An nb201 genotype from the canonical `|op~0|+...` string or the comma form."""
    if not isinstance(arch, str) or "|" not in arch:
        return parse_genotype("nb201", arch)
    nodes = arch.strip().split("+")
    if len(nodes) != NUM_NODES - 1:
        raise GenotypeError(f"an NAS-Bench-201 string has {NUM_NODES - 1} nodes separated by "
                            f"'+', got {len(nodes)} in {arch!r}")
    ops = []
    for to, node in enumerate(nodes, start=1):
        parts = [p for p in node.strip().strip("|").split("|")]
        if len(parts) != to:
            raise GenotypeError(f"node {to} of an NAS-Bench-201 string needs {to} inputs "
                                f"'|op~j|', got {node!r}")
        for frm, part in enumerate(parts):
            op, sep, src = part.partition("~")
            if sep != "~" or src != str(frm):
                raise GenotypeError(f"node {to}: expected 'op~{frm}', got {part!r}")
            ops.append(op)
    return parse_genotype("nb201", ",".join(ops))


register_space("nb201", NB201Space)
