"""MBConv chain spaces (FBNet, MnasNet, EfficientNet backbones): topology as data.

The backbone is given by stage widths, repeats and strides; every derived fact (input
channels, resolution, vital flag, legal ops) is computed here from that topology.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from tfnas.space.base import Choice, SearchSpace
from tfnas.space.ops import parse_op

NOMINAL_RESOLUTION = 224
NOMINAL_CLASSES = 1000


@dataclasses.dataclass(frozen=True)
class Stage:
    """`repeats` layers of `out_channels`; the first one has `stride`."""

    index: int
    out_channels: int
    repeats: int
    stride: int


@dataclasses.dataclass(frozen=True)
class LayerSpec(Choice):
    """One block position of the backbone, searchable or fixed."""

    in_channels: int = 0
    out_channels: int = 0
    stride: int = 1
    in_resolution: int = NOMINAL_RESOLUTION  # at the nominal 224 input
    vital: bool = False
    fixed_op: str | None = None  # set for non-searchable blocks (MnasNet's SepConv)

    @property
    def out_resolution(self) -> int:
        return math.ceil(self.in_resolution / self.stride)

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """MobileNet channel rounding: nearest multiple of `divisor`, never 10% below."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return rounded


class MBConvSpace(SearchSpace):
    """A stem conv, optional fixed blocks, searchable MBConv stages, and a conv/pool/fc head."""

    def __init__(
        self,
        name: str,
        ops: tuple[str, ...],
        activation: str,
        stem_channels: int,
        stages: tuple[Stage, ...],
        head_channels: int,
        fixed_blocks: tuple[tuple[str, str, int, int], ...] = (),
        width_multiplier: float = 1.0,
        description: str = "",
    ):
        for op in ops:
            parse_op(op)  # fail early on a typo in a space definition
        self.name = name
        self.ops = tuple(ops)
        self.activation = activation
        self.width_multiplier = width_multiplier
        self.description = description
        self._definition = dict(
            name=name, ops=ops, activation=activation, stem_channels=stem_channels,
            stages=stages, head_channels=head_channels, fixed_blocks=fixed_blocks,
            description=description,
        )
        w = width_multiplier
        self.stem_channels = round_channels(stem_channels, w)
        self.head_channels = head_channels if w <= 1.0 else round_channels(head_channels, w)
        self.stem_stride = 2
        self.fixed_layers, self.layers = self._topology(stages, fixed_blocks, w)

    def with_width(self, width_multiplier: float) -> "MBConvSpace":
        """The same space with every channel count scaled (MobileNet rounding)."""
        return MBConvSpace(**self._definition, width_multiplier=width_multiplier)

    def _topology(self, stages, fixed_blocks, w):
        resolution = math.ceil(NOMINAL_RESOLUTION / self.stem_stride)
        channels = self.stem_channels
        fixed = []
        for name, op, out, stride in fixed_blocks:
            out = round_channels(out, w)
            fixed.append(LayerSpec(name, (op,), channels, out, stride, resolution, fixed_op=op))
            channels, resolution = out, math.ceil(resolution / stride)
        layers = []
        for stage in stages:
            for i in range(stage.repeats):
                stride = stage.stride if i == 0 else 1
                out = round_channels(stage.out_channels, w)
                vital = i == 0 and (stride != 1 or channels != out)
                shape_kept = stride == 1 and channels == out
                legal = tuple(op for op in self.ops if shape_kept or not parse_op(op).is_skip)
                layers.append(LayerSpec(
                    f"layer{stage.index}_{i + 1}", legal, channels, out, stride, resolution,
                    vital=vital))
                channels, resolution = out, math.ceil(resolution / stride)
        return tuple(fixed), tuple(layers)

    @property
    def choices(self) -> tuple[LayerSpec, ...]:
        return self.layers

    @property
    def last_channels(self) -> int:
        return self.layers[-1].out_channels

    def vital_mask(self) -> np.ndarray:
        return np.array([layer.vital for layer in self.layers], dtype=bool)

    def __repr__(self) -> str:
        return f"MBConvSpace({self.name!r}, {self.num_layers} layers x {self.num_ops} ops)"
