"""Discrete decisions of a keras_tuner `HyperParameters` space, as token sequences.

The samplers see a trial as one token per hyperparameter: the index of its value in that
hyperparameter's finite value list. Choice, Int (stepped or not), Boolean and Fixed are
supported; Float has no finite value list and is refused with one clear line.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import keras_tuner
import numpy as np

from tfnas.errors import TfnasError

_HP = keras_tuner.engine.hyperparameters
MAX_VALUES = 10_000  # per hyperparameter: each is a token of the evaluator and the VAE


@dataclasses.dataclass(frozen=True)
class Decision:
    name: str
    values: tuple[Any, ...]
    default_index: int


class DecisionSpace:
    """The ordered decisions of a space; encodes trial values and decodes token rows."""

    def __init__(self, hyperparameters: keras_tuner.HyperParameters):
        self.hyperparameters = hyperparameters
        self.decisions = tuple(_decision(hp) for hp in hyperparameters.space)
        self.sizes = np.array([len(d.values) for d in self.decisions], dtype=np.int64)

    @property
    def signature(self) -> tuple:
        """Changes whenever the decisions change (a hypermodel may add hyperparameters)."""
        return tuple((d.name, d.values) for d in self.decisions)

    def __len__(self) -> int:
        return len(self.decisions)

    def encode(self, values: dict) -> np.ndarray:
        """Token row of one trial's values; absent (inactive) or unknown values get the
        default's token."""
        row = np.empty(len(self.decisions), dtype=np.int64)
        for i, d in enumerate(self.decisions):
            value = values.get(d.name, d.values[d.default_index])
            row[i] = d.values.index(value) if value in d.values else d.default_index
        return row

    def decode(self, row) -> dict:
        """Values of the active hyperparameters for one token row (conditions respected)."""
        hps = keras_tuner.HyperParameters()
        for hp, d, token in zip(self.hyperparameters.space, self.decisions, row):
            hps.merge([hp])
            if hps.is_active(hp):
                hps.values[hp.name] = d.values[int(token)]
        return hps.values

    def uniform(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n token rows drawn uniformly, [n, L]."""
        return (rng.random((n, len(self.sizes))) * self.sizes).astype(np.int64)


def _decision(hp) -> Decision:
    if isinstance(hp, _HP.Float):
        raise TfnasError(f"hyperparameter {hp.name!r} is a Float: the SETN and TNAS oracles "
                         "search finite spaces (Choice, Int, Boolean, Fixed)")
    if isinstance(hp, _HP.Fixed):
        values = (hp.value,)
    elif isinstance(hp, _HP.Int):
        listed = list(itertools.islice(hp.values, MAX_VALUES + 1))  # a range may be huge
        if len(listed) > MAX_VALUES:
            raise TfnasError(f"hyperparameter {hp.name!r} has more than {MAX_VALUES:,} values; "
                             "the SETN and TNAS oracles keep one token per value: give it a "
                             "larger step, or make it a Choice")
        values = tuple(sorted(int(v) for v in listed))
    elif isinstance(hp, (_HP.Choice, _HP.Boolean)):
        values = tuple(hp.values)
    else:
        raise TfnasError(f"hyperparameter {hp.name!r} of type {type(hp).__name__} is not "
                         "supported (Choice, Int, Boolean, Fixed)")
    default = hp.default if hp.default in values else values[0]
    return Decision(hp.name, values, values.index(default))
