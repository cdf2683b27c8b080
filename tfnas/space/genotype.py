"""Genotypes: one op name per searchable decision, as a string or as JSON."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

from tfnas.errors import GenotypeError, TfnasError
from tfnas.io import read_json
from tfnas.space.base import SearchSpace
from tfnas.space.registry import get_space


@dataclasses.dataclass(frozen=True)
class Genotype:
    """A validated architecture of one space."""

    space: str
    ops: tuple[str, ...]

    def __str__(self) -> str:
        return ",".join(self.ops)

    def indices(self) -> list[int]:
        """Op indices into the space's op alphabet, one per decision."""
        alphabet = get_space(self.space).ops
        return [alphabet.index(op) for op in self.ops]

    def to_json(self) -> dict:
        return {"space": self.space, "arch": str(self)}

    @classmethod
    def from_json(cls, obj: dict | str) -> "Genotype":
        if isinstance(obj, str):
            try:
                obj = json.loads(obj)
            except json.JSONDecodeError as e:
                raise GenotypeError(f"genotype JSON does not parse: {e}") from None
        if not isinstance(obj, dict) or "space" not in obj or "arch" not in obj:
            raise GenotypeError('genotype JSON needs the keys "space" and "arch"')
        if not isinstance(obj["arch"], str):
            raise GenotypeError(f'the "arch" field must be an op string such as "k3e1,k5e6,...", '
                                f'got {json.dumps(obj["arch"])[:60]}')
        return parse_genotype(obj["space"], obj["arch"])

    @classmethod
    def from_indices(cls, space: SearchSpace, indices: Sequence[int]) -> "Genotype":
        return validate(space, [space.ops[int(i)] for i in indices])


def parse_genotype(space: str | SearchSpace, arch: str) -> Genotype:
    """Parses the comma-separated form; GenotypeError says what is wrong, one defect a line."""
    space = get_space(space) if isinstance(space, str) else space
    if not isinstance(arch, str) or not arch.strip():
        raise GenotypeError(f"empty architecture string for space {space.name!r}")
    if "|" in arch and hasattr(space, "parse_arch"):  # a space's own notation (NB201's)
        return space.parse_arch(arch)
    return validate(space, [op.strip() for op in arch.split(",")])


def validate(space: SearchSpace, ops: Sequence[str]) -> Genotype:
    choices = space.choices
    if len(ops) != len(choices):
        raise GenotypeError(
            f"space {space.name!r} has {len(choices)} searchable layers, got {len(ops)} ops")
    for choice, op in zip(choices, ops):
        if op not in space.ops:
            raise GenotypeError(
                f"{choice.name}: unknown op {op!r}; legal ops are {', '.join(choice.legal_ops)}")
        if op not in choice.legal_ops:
            raise GenotypeError(
                f"{choice.name}: op {op!r} is not legal here (the shape changes); "
                f"legal ops are {', '.join(choice.legal_ops)}")
    return Genotype(space.name, tuple(ops))


def load_genotype(arch: str, space: str | None = None) -> Genotype:
    """A genotype from an op string (needs `space`), a published name, an arch.json path or
    the directory holding arch.json (a search's run directory)."""
    from tfnas.space.published import lookup  # published imports this module

    published = lookup(arch) if "," not in arch else None
    if published is not None:  # before paths: a folder may share a published net's name
        if space and space != published.space:
            raise GenotypeError(f"{published.name} is in space {published.space!r}, "
                                f"not {space!r}")
        return published.genotype()
    if os.path.isdir(arch):
        if not os.path.isfile(os.path.join(arch, "arch.json")):
            raise TfnasError(f"{arch} is a directory without arch.json")
        arch = os.path.join(arch, "arch.json")
    if arch.endswith(".json"):
        obj = read_json(arch)
        if space and isinstance(obj, dict) and obj.get("space") not in (None, space):
            raise GenotypeError(f"{arch} is for space {obj.get('space')!r}, not {space!r}")
        return Genotype.from_json(obj)
    if not space:
        raise TfnasError("--space is required with an op-string --arch")
    return parse_genotype(space, arch)
