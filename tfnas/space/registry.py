"""One registry of search spaces; later spaces (NB201 cells, user spaces) register here too."""

from __future__ import annotations

from typing import Callable

from tfnas.errors import UnknownSpaceError
from tfnas.space.base import SearchSpace

_FACTORIES: dict[str, Callable[[], SearchSpace]] = {}
_CACHE: dict[str, SearchSpace] = {}


def register_space(name: str, factory: Callable[[], SearchSpace]) -> None:
    """Registers a zero-argument factory under `name` (replacing any earlier one)."""
    _FACTORIES[name] = factory
    _CACHE.pop(name, None)


def list_spaces() -> list[str]:
    return sorted(_FACTORIES)


def get_space(name: str) -> SearchSpace:
    """The space called `name`; UnknownSpaceError names the registered ones."""
    if name not in _CACHE:
        if name not in _FACTORIES:
            raise UnknownSpaceError(
                f"unknown search space {name!r}; known spaces: {', '.join(list_spaces())}")
        _CACHE[name] = _FACTORIES[name]()
    return _CACHE[name]
