"""Standalone model builder: (space, genotype) -> functional keras.Model of built-in layers."""

from __future__ import annotations

import math

import keras

from tfnas.nn import blocks
from tfnas.nn.nb201 import build_nb201_model
from tfnas.space.genotype import Genotype, parse_genotype
from tfnas.space.mbconv import NOMINAL_CLASSES, NOMINAL_RESOLUTION, MBConvSpace
from tfnas.space.nb201 import NB201Space
from tfnas.space.registry import get_space


def build_model(space: str | MBConvSpace | NB201Space, genotype: Genotype | str,
                num_classes: int | None = None,
                input_shape: tuple[int, int, int] | None = None,
                width_multiplier: float = 1.0, dropout_rate: float = 0.0,
                name: str | None = None) -> keras.Model:
    """Builds the child network of `genotype`.

    `num_classes` and `input_shape` default to the space's nominal ones (1000 classes at
    224×224; nb201: 10 at 32×32). `input_shape` sets the resolution (any size; costs are still
    reported at the nominal one) and `width_multiplier` scales every channel count with
    MobileNet rounding (nb201: its C).
    """
    space = get_space(space) if isinstance(space, str) else space
    if isinstance(space, NB201Space):
        space = space.with_width(width_multiplier)
        nominal = {} if num_classes is None else {"num_classes": num_classes}
        if input_shape is not None:
            nominal["input_shape"] = input_shape
        return build_nb201_model(genotype, space=space, name=name, dropout_rate=dropout_rate,
                                 **nominal)
    num_classes = NOMINAL_CLASSES if num_classes is None else num_classes
    input_shape = input_shape or (NOMINAL_RESOLUTION, NOMINAL_RESOLUTION, 3)
    if not isinstance(genotype, Genotype):
        genotype = parse_genotype(space, genotype)
    if width_multiplier != 1.0:
        space = space.with_width(width_multiplier)
    act = space.activation
    inputs = keras.Input(input_shape, name="image")
    x = blocks.apply_sequence(blocks.stem_layers(space.stem_channels, act), inputs)
    hw = _spatial(input_shape[:2], space.stem_stride)
    fixed = [(layer, layer.fixed_op) for layer in space.fixed_layers]
    for layer, op in fixed + list(zip(space.layers, genotype.ops)):
        block = blocks.BlockLayers(op, layer.in_channels, layer.out_channels, layer.stride, act,
                                   layer.name, in_hw=hw)
        x = block(x)
        hw = _spatial(hw, layer.stride)
    x = blocks.apply_sequence(
        blocks.head_layers(space.head_channels, num_classes, act, dropout_rate), x)
    return keras.Model(inputs, x, name=name or f"{space.name}_child")


def _spatial(hw: tuple[int, int], stride: int) -> tuple[int, int]:
    return math.ceil(hw[0] / stride), math.ceil(hw[1] / stride)
