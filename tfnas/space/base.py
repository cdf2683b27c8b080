"""What every search space offers, whatever its topology (MBConv chain, NB201 cell, ...)."""

from __future__ import annotations

import abc
import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Choice:
    """One searchable decision: a name and the candidate op names legal there."""

    name: str
    legal_ops: tuple[str, ...]


class SearchSpace(abc.ABC):
    """A named list of searchable decisions over one op alphabet.

    A genotype assigns one op of `ops` to every decision, in order. Subclasses define the
    topology; samplers and the cost model only need what is here.
    """

    name: str
    ops: tuple[str, ...]

    @property
    @abc.abstractmethod
    def choices(self) -> tuple[Choice, ...]:
        """The searchable decisions, in genotype order."""

    @property
    def num_layers(self) -> int:
        return len(self.choices)

    @property
    def num_ops(self) -> int:
        return len(self.ops)

    def legal_mask(self) -> np.ndarray:
        """L x O boolean mask: which op may stand at which decision."""
        mask = np.zeros((self.num_layers, self.num_ops), dtype=bool)
        for i, choice in enumerate(self.choices):
            for op in choice.legal_ops:
                mask[i, self.ops.index(op)] = True
        return mask

    def vital_mask(self) -> np.ndarray:
        """Which decisions HourNAS searches in stage 1 (none, unless a space says so)."""
        return np.zeros(self.num_layers, dtype=bool)

    def size(self) -> int:
        """Number of distinct legal genotypes."""
        total = 1
        for choice in self.choices:
            total *= len(choice.legal_ops)
        return total
