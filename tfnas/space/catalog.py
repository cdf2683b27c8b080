"""The four MBConv spaces of HourNAS (appendix tables 7-14), as data."""

from __future__ import annotations

from tfnas.space.mbconv import MBConvSpace, Stage
from tfnas.space.registry import register_space

FBNET_OPS = ("k3g2", "k3e1", "k3e3", "k3e6", "k5g2", "k5e1", "k5e3", "k5e6", "skip")
FBNET_ENLARGED_OPS = tuple(f"k{k}e{e}" for k in (3, 5, 7) for e in (1, 3, 6)) + ("skip",)
MNASNET_OPS = (
    tuple(f"k{k}e{e}" for k in (3, 5) for e in (1, 3, 6))
    + tuple(f"k{k}e{e}se" for k in (3, 5) for e in (1, 3, 6))
    + ("skip",)
)
EFFICIENTNET_OPS = tuple(f"k{k}e{e}se" for k in (3, 5) for e in (1, 3, 6)) + ("skip",)


def _fbnet_stages() -> tuple[Stage, ...]:
    return (Stage(1, 16, 1, 1), Stage(2, 24, 4, 2), Stage(3, 32, 4, 2), Stage(4, 64, 4, 2),
            Stage(5, 112, 4, 1), Stage(6, 184, 4, 2), Stage(7, 352, 1, 1))


def fbnet() -> MBConvSpace:
    return MBConvSpace("fbnet", FBNET_OPS, "relu", 16, _fbnet_stages(), 1984,
                       description="FBNet backbone and ops (appendix tables 7-8)")


def fbnet_enlarged() -> MBConvSpace:
    return MBConvSpace("fbnet_enlarged", FBNET_ENLARGED_OPS, "relu", 16, _fbnet_stages(), 1984,
                       description="FBNet backbone, k{3,5,7}e{1,3,6} ops (tables 9-10)")


def mnasnet() -> MBConvSpace:
    stages = (Stage(2, 24, 4, 2), Stage(3, 40, 4, 2), Stage(4, 80, 4, 2), Stage(5, 112, 4, 1),
              Stage(6, 160, 4, 2), Stage(7, 320, 1, 1))
    return MBConvSpace("mnasnet", MNASNET_OPS, "relu", 32, stages, 1280,
                       fixed_blocks=(("layer1_1", "sep3", 16, 1),),
                       description="MnasNet backbone and ops (tables 11-12)")


def efficientnet() -> MBConvSpace:
    stages = (Stage(1, 16, 1, 1), Stage(2, 24, 4, 2), Stage(3, 40, 4, 2), Stage(4, 80, 4, 2),
              Stage(5, 112, 4, 1), Stage(6, 192, 4, 2), Stage(7, 320, 1, 1))
    return MBConvSpace("efficientnet", EFFICIENTNET_OPS, "swish", 32, stages, 1280,
                       description="EfficientNet-B0 backbone, SE ops (tables 13-14)")


for _factory in (fbnet, fbnet_enlarged, mnasnet, efficientnet):
    register_space(_factory.__name__, _factory)
