"""The weight-sharing network of any registered space: `SuperNet` for MBConv spaces,
`NB201SuperNet` (SETN's template network) for the NAS-Bench-201 cell space."""

from __future__ import annotations

import keras

from tfnas.errors import TfnasError
from tfnas.nn.nb201_supernet import NB201SuperNet
from tfnas.nn.supernet import SuperNet
from tfnas.space.base import SearchSpace
from tfnas.space.mbconv import MBConvSpace
from tfnas.space.nb201 import NB201Space


def make_supernet(space: SearchSpace, num_classes: int, input_shape: tuple[int, int, int],
                  width_multiplier: float = 1.0,
                  fixed: dict[int, int] | None = None) -> keras.Model:
    """A supernet holding every candidate op of `space` (`fixed` pins decisions), its
    channels scaled by `width_multiplier` as `tfnas.nn.builder.build_model` scales them."""
    if isinstance(space, NB201Space):
        space = space.with_width(width_multiplier)
        return NB201SuperNet(num_classes, input_shape, space.channels, space.cells_per_stage,
                             fixed=fixed)
    if isinstance(space, MBConvSpace):
        return SuperNet(space, num_classes, input_shape, width_multiplier, fixed=fixed)
    raise TfnasError(f"space {space.name!r} has no supernet (MBConv and nb201 spaces do)")
