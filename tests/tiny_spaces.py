"""Small real search spaces for tests, registered on import and free of TensorFlow, so that a
CLI given `--space_module=tests.tiny_spaces` refuses bad flags before TensorFlow loads."""

from __future__ import annotations

from tfnas.space.mbconv import MBConvSpace, Stage
from tfnas.space.nb201 import NB201Space
from tfnas.space.registry import register_space

TINY = "tiny_test"


def tiny_space() -> MBConvSpace:
    """A small real MBConv space (3 searchable layers) that keeps supernet traces short."""
    # layer1_1 8->8 s1 (skip legal), layer2_1 8->16 s2 (vital), layer2_2 16->16 s1.
    return MBConvSpace(TINY, ("k3g2", "k3e3", "k5e1se", "skip"), "relu", 8,
                       (Stage(1, 8, 1, 1), Stage(2, 16, 2, 2)), 32,
                       description="test space")


register_space(TINY, tiny_space)
# The NAS-Bench-201 cell at C=4 and one cell per stage: the template traces in seconds.
register_space("nb201_tiny", lambda: NB201Space(4, 1, name="nb201_tiny"))
