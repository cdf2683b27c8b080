"""The op alphabet of the MBConv search spaces (HourNAS appendix tables 7, 9, 11, 13).

An op name is `k{K}e{E}` (inverted residual, kernel K, expansion E), optionally followed by
`se` (squeeze-and-excitation); `k{K}g2` is FBNet's expansion-1 block with group-2 1x1 convs
and a channel shuffle; `skip` is the identity. `sep{K}` is MnasNet's fixed SepConv block.
"""

from __future__ import annotations

import dataclasses
import re

_MBCONV = re.compile(r"^k(\d)e(\d)(se)?$")
_GROUP = re.compile(r"^k(\d)g(\d)$")
_SEP = re.compile(r"^sep(\d)$")


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """What an op name means structurally."""

    name: str
    kind: str  # "mbconv" | "skip" | "sepconv"
    kernel: int = 0
    expansion: int = 0
    groups: int = 1
    se: bool = False

    @property
    def is_skip(self) -> bool:
        return self.kind == "skip"


def parse_op(name: str) -> OpSpec:
    """Parses an op name; raises ValueError for names outside the alphabet."""
    if name == "skip":
        return OpSpec(name, "skip")
    m = _MBCONV.match(name)
    if m:
        return OpSpec(name, "mbconv", int(m.group(1)), int(m.group(2)), 1, bool(m.group(3)))
    m = _GROUP.match(name)
    if m:
        return OpSpec(name, "mbconv", int(m.group(1)), 1, int(m.group(2)), False)
    m = _SEP.match(name)
    if m:
        return OpSpec(name, "sepconv", int(m.group(1)), 1, 1, False)
    raise ValueError(f"not an op name: {name!r}")
