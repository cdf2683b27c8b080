"""Closed-form params and multiply-adds of each block, following SPEC §4.

params: every weight of the standalone Keras model, BatchNorm's four vectors included.
FLOPs: multiply-adds of conv, depthwise conv, SE and fc layers (BN, activations, adds and
pooling are not counted). Bias adds are not multiply-adds and are not counted.
"""

from __future__ import annotations

import dataclasses
import math

from tfnas.space.ops import OpSpec, parse_op

BN_VECTORS = 4  # gamma, beta, moving mean, moving variance


@dataclasses.dataclass(frozen=True)
class Cost:
    params: int = 0
    flops: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.params + other.params, self.flops + other.flops)


def conv(cin: int, cout: int, kernel: int, out_res: int, groups: int = 1,
         bias: bool = False, bn: bool = True) -> Cost:
    weights = kernel * kernel * cin * cout // groups
    params = weights + (cout if bias else 0) + (BN_VECTORS * cout if bn else 0)
    return Cost(params, weights * out_res * out_res)


def depthwise(channels: int, kernel: int, out_res: int) -> Cost:
    weights = kernel * kernel * channels
    return Cost(weights + BN_VECTORS * channels, weights * out_res * out_res)


def se_channels(in_channels: int) -> int:
    return max(1, int(in_channels * 0.25))


def squeeze_excite(channels: int, squeezed: int) -> Cost:
    reduce = conv(channels, squeezed, 1, 1, bias=True, bn=False)
    expand = conv(squeezed, channels, 1, 1, bias=True, bn=False)
    return reduce + expand


def dense(cin: int, cout: int) -> Cost:
    return Cost(cin * cout + cout, cin * cout)


def block_cost(op: str | OpSpec, cin: int, cout: int, stride: int, in_res: int) -> Cost:
    """Cost of one block of the MBConv spaces at input resolution `in_res`."""
    spec = parse_op(op) if isinstance(op, str) else op
    out_res = math.ceil(in_res / stride)
    if spec.kind == "skip":
        return Cost()
    if spec.kind == "sepconv":
        return depthwise(cin, spec.kernel, out_res) + conv(cin, cout, 1, out_res)
    mid = cin * spec.expansion
    total = conv(cin, mid, 1, in_res, groups=spec.groups)
    total += depthwise(mid, spec.kernel, out_res)
    if spec.se:
        total += squeeze_excite(mid, se_channels(cin))
    return total + conv(mid, cout, 1, out_res, groups=spec.groups)
