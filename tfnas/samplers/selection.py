"""Choosing the final architecture after one-shot training: SETN's candidate selection and
the evolutionary search of TNAS-OS (SPOS-style). Architectures are rows of op indices [L]
over the space's alphabet; `allowed` [L, O] says which ops may stand where. Fitness comes
from a callable (the one-shot scorer), higher is better.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

Fitness = Callable[[np.ndarray], float]


def sample_rows(probs: np.ndarray, allowed: np.ndarray, n: int,
                rng: np.random.Generator) -> np.ndarray:
    """n rows drawn from per-layer categorical `probs` [L, O] (restricted to `allowed`),
    de-duplicated, in order of first draw."""
    p = np.where(allowed, np.asarray(probs, dtype=np.float64), 0.0)
    p = p / p.sum(axis=1, keepdims=True)
    cum = np.cumsum(p, axis=1)
    u = rng.random((n, p.shape[0], 1))
    rows = np.minimum((u > cum[None]).sum(axis=2), p.shape[1] - 1)
    _, first = np.unique(rows, axis=0, return_index=True)
    return rows[np.sort(first)]


def uniform_probs(allowed: np.ndarray) -> np.ndarray:
    return allowed / allowed.sum(axis=1, keepdims=True)


def best_rows_frequencies(rows: np.ndarray, scores: np.ndarray, k: int,
                          allowed: np.ndarray) -> np.ndarray:
    """[L, O]: how often each op occurs per layer among the k highest-scored rows (first
    wins ties); uniform over `allowed` when there are none."""
    k = min(k, len(scores))
    if k == 0:
        return uniform_probs(allowed)
    best = np.asarray(rows)[np.argsort(-np.asarray(scores), kind="stable")[:k]]
    return (best[:, :, None] == np.arange(allowed.shape[1])).mean(axis=0)


def log_prob(probs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    layers = np.arange(probs.shape[0])
    return np.log(np.maximum(probs[layers, rows], 1e-30)).sum(axis=1)


def best_of(rows: Iterable[np.ndarray], fitness: Fitness) -> tuple[np.ndarray, float]:
    """The row of highest fitness (first wins ties)."""
    best, best_fit = None, -np.inf
    for row in rows:
        f = fitness(row)
        if f > best_fit:
            best, best_fit = row, f
    return best, best_fit


def evolve(fitness: Fitness, seeds: np.ndarray, allowed: np.ndarray, generations: int,
           population: int, rng: np.random.Generator, parents: int | None = None,
           mutate_prob: float = 0.1, progress: Callable[[int, float], None] | None = None
           ) -> tuple[np.ndarray, float]:
    """Evolutionary search (SPOS / TNAS-OS): start from `seeds`, keep the `parents` fittest,
    fill each generation half by crossover and half by mutation of parents. Returns the
    fittest row seen and its fitness."""
    parents = parents or max(2, population // 2)
    legal = [np.flatnonzero(a) for a in allowed]
    seen: dict[tuple, float] = {}

    def score(row: np.ndarray) -> float:
        key = tuple(int(v) for v in row)
        if key not in seen:
            seen[key] = fitness(np.asarray(key))
        return seen[key]

    pop = [np.asarray(r) for r in seeds][:population]
    for generation in range(generations + 1):
        ranked = sorted(pop, key=score, reverse=True)
        if progress is not None:
            progress(generation, score(ranked[0]))
        if generation == generations:
            break
        top = ranked[:parents]
        children: list[np.ndarray] = []
        for attempt in range(20 * population):
            if len(children) >= population - len(top):
                break
            if attempt % 2 == 0:
                a, b = (top[i] for i in rng.choice(len(top), 2, replace=len(top) < 2))
                child = np.where(rng.random(len(a)) < 0.5, a, b)
            else:
                child = top[int(rng.integers(len(top)))].copy()
                for layer in np.flatnonzero(rng.random(len(child)) < mutate_prob):
                    child[layer] = rng.choice(legal[layer])
            if tuple(child) not in seen and all(tuple(child) != tuple(c) for c in children):
                children.append(child)
        pop = top + children
    key = max(seen, key=seen.get)
    return np.asarray(key), seen[key]
