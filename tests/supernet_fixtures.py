"""Helpers shared by the supernet and engine tests, and the tiny test spaces
(`tiny_spaces`, registered on import)."""

from __future__ import annotations

import keras
import numpy as np

from tests.tiny_spaces import TINY, tiny_space  # noqa: F401  (registers tiny_test, nb201_tiny)


def randomize(model: keras.Model, seed: int = 0) -> None:
    """Random weights everywhere, BN statistics included (variances positive)."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        shape = tuple(v.shape)
        if "variance" in v.name:
            v.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
        else:
            v.assign(rng.normal(0, 0.3, shape).astype("float32"))


def random_indices(mask: np.ndarray, rng: np.random.Generator) -> list[int]:
    return [int(rng.choice(np.flatnonzero(row))) for row in mask]
