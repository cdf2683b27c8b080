"""Search spaces as data: the op alphabet, topologies, the registry and genotypes."""

from tfnas.space import catalog as _catalog  # registers the built-in spaces
from tfnas.space import nb201 as _nb201  # registers the NAS-Bench-201 cell space
from tfnas.space.base import Choice, SearchSpace
from tfnas.space.genotype import Genotype, parse_genotype
from tfnas.space.mbconv import LayerSpec, MBConvSpace, Stage
from tfnas.space.ops import OpSpec, parse_op
from tfnas.space.registry import get_space, list_spaces, register_space

__all__ = [
    "Choice", "Genotype", "LayerSpec", "MBConvSpace", "OpSpec", "SearchSpace", "Stage",
    "get_space", "list_spaces", "parse_genotype", "parse_op", "register_space",
]
