"""Published HourNAS architectures (appendix tables 8, 10, 12, 14) with the paper's costs.

HourNAS-I (table 8) is garbled in the source and left out. Table 12's `k3e3s3` is `k3e3se`.
"""

from __future__ import annotations

import dataclasses

from tfnas.space.genotype import Genotype, parse_genotype


@dataclasses.dataclass(frozen=True)
class Published:
    name: str
    space: str
    arch: str
    params_m: float  # as printed in the paper, millions
    flops_m: float  # as printed in the paper, millions of multiply-adds
    table: int

    def genotype(self) -> Genotype:
        return parse_genotype(self.space, self.arch)


def _arch(ops: str) -> str:
    return ",".join(ops.split())


PUBLISHED = {p.name: p for p in (
    Published("HourNAS-A", "fbnet", _arch(
        "k3e1 k5e6 k5g2 skip k3g2 k5e6 k3g2 k5g2 k5e1 k5e6 k5e3 k3e1 k5e3 "
        "k5e6 k3e3 k3e3 k3e3 k5e6 k5e3 k5e3 k3e6 k5e6"), 4.8, 298, 8),
    Published("HourNAS-B", "fbnet", _arch(
        "k3e3 k5e6 k3e3 k5g2 skip k5e6 k3e3 k3e3 k3e3 k5e6 k5e6 k5e6 k3e6 "
        "k5e6 k3e6 k3e6 k5e3 k5e6 k3e6 k3e6 k5e6 k5e6"), 5.5, 406, 8),
    Published("HourNAS-G", "fbnet", _arch(
        "k3e3 k5g2 k3g2 k3e3 k3e3 k5e1 k3e1 k3e3 k3e3 k5e3 k3e6 k3e3 k5e6 "
        "k3e3 k3e3 k5e3 k5e3 k3e6 k5e6 k3e6 k5e3 k3e3"), 4.7, 297, 8),
    Published("FBNet-Max", "fbnet", _arch("k5e6 " * 22), 5.7, 583, 8),
    Published("HourNAS-C", "fbnet_enlarged", _arch(
        "skip k3e6 k3e3 skip k3e3 k5e6 k3e3 k3e3 k3e3 k5e6 k3e3 k5e3 k7e1 "
        "k7e6 k5e3 k5e1 k5e1 k7e6 k5e3 k3e3 k3e6 k7e6"), 4.8, 296, 10),
    Published("HourNAS-D", "fbnet_enlarged", _arch(
        "k3e3 k3e6 k5e1 k5e1 k5e3 k5e6 k5e3 k3e6 k5e1 k5e6 k3e6 k3e6 k3e6 "
        "k7e6 k7e3 k5e3 k5e3 k7e6 k7e6 k5e6 k7e6 k7e6"), 5.5, 394, 10),
    Published("HourNAS-H", "fbnet_enlarged", _arch(
        "k3e3 k3e1 k3e3 k3e3 k5e1 k5e3 k3e3 k3e3 k7e1 k7e3 k7e3 k7e3 k7e3 "
        "k7e3 k5e3 k5e3 k7e3 k7e3 k3e6 k7e3 k7e3 k7e6"), 4.8, 299, 10),
    Published("HourNAS-E", "mnasnet", _arch(
        "k5e6 k3e3se k3e1se k3e3 k5e6se k5e1 k3e1se k5e1 k5e6se k3e3se k3e3 k3e3se "
        "k5e6se k3e3se k3e3 k3e3 k5e6se k3e6 k5e3se k5e3se k5e6se"), 3.8, 313, 12),
    Published("HourNAS-F", "efficientnet", _arch(
        "k3e1se k5e6se k5e1se k5e1se k3e1se k5e6se k5e1se k3e1se k5e1se k5e6se k3e6se "
        "k3e6se k3e6se k5e6se k5e3se k5e3se k5e3se k5e6se k5e6se k3e6se k5e6se k5e6se"),
              5.3, 383, 14),
    Published("EfficientNet-Max", "efficientnet", _arch("k5e6se " * 22), 5.8, 738, 14),
)}


def lookup(name: str) -> Published | None:
    """Case-insensitive lookup of a published architecture by name (e.g. `hournas-f`)."""
    for key, value in PUBLISHED.items():
        if key.lower() == name.lower():
            return value
    return None
