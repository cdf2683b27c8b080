"""tfnas search spaces as keras_tuner HyperParameters, and back to genotypes."""

from __future__ import annotations

import keras_tuner

from tfnas.space.base import SearchSpace
from tfnas.space.genotype import Genotype, validate
from tfnas.space.registry import get_space


def space_hyperparameters(space: str | SearchSpace) -> keras_tuner.HyperParameters:
    """One Choice per searchable decision, over the ops legal there (genotype order)."""
    space = get_space(space) if isinstance(space, str) else space
    hp = keras_tuner.HyperParameters()
    for choice in space.choices:
        hp.Choice(choice.name, list(choice.legal_ops))
    return hp


def genotype_from_values(space: str | SearchSpace, values: dict) -> Genotype:
    """The genotype a trial's values name (GenotypeError if one is missing or illegal)."""
    space = get_space(space) if isinstance(space, str) else space
    return validate(space, [values.get(choice.name, "") for choice in space.choices])
