"""Candidate selection after one-shot training: evaluator sampling, top-K, evolution."""

import numpy as np

from tfnas.samplers import selection

ALLOWED = np.array([[1, 1, 1, 0], [1, 1, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1], [1, 0, 1, 1]],
                   dtype=bool)


def test_sample_rows_follows_the_evaluator_and_never_draws_a_disallowed_op():
    rng = np.random.default_rng(0)
    probs = np.where(ALLOWED, 1.0, 0.0)
    probs[:, 2] *= 20  # op 2 dominates everywhere
    rows = selection.sample_rows(probs, ALLOWED, 500, rng)
    assert len(np.unique(rows, axis=0)) == len(rows)  # de-duplicated
    assert ALLOWED[np.arange(5), rows].all()
    top = rows[np.argsort(-selection.log_prob(probs / probs.sum(1, keepdims=True), rows))[0]]
    assert list(top) == [2, 2, 2, 2, 2]
    uniform = selection.sample_rows(selection.uniform_probs(ALLOWED), ALLOWED, 2000, rng)
    assert len(uniform) > 300  # 3*4*3*4*3 = 432 legal rows, most of them drawn


def test_evolution_finds_the_optimum_of_a_separable_fitness_from_poor_seeds():
    target = np.array([1, 3, 3, 0, 2])
    calls = []

    def fitness(row):
        calls.append(tuple(row))
        return float((row == target).sum())

    seeds = np.array([[0, 0, 1, 1, 0]] * 3 + [[2, 1, 2, 2, 3]] * 3)
    best, fit = selection.evolve(fitness, seeds, ALLOWED, generations=30, population=12,
                                 rng=np.random.default_rng(1), mutate_prob=0.3)
    assert fit == 5 and list(best) == list(target)
    assert len(calls) == len(set(calls))  # every architecture is scored once
    assert all(ALLOWED[np.arange(5), np.array(c)].all() for c in calls)


def test_best_of_keeps_the_first_of_equal_candidates():
    rows = [np.array([0]), np.array([1]), np.array([2])]
    best, fit = selection.best_of(rows, lambda r: float(r[0] > 0))
    assert list(best) == [1] and fit == 1.0


def test_best_rows_frequencies_count_ops_among_the_top_scored_rows_only():
    rows = np.array([[0, 1, 1, 0, 0], [2, 3, 3, 3, 3], [1, 1, 2, 0, 0], [0, 0, 1, 1, 2]])
    freq = selection.best_rows_frequencies(rows, np.array([-1.0, 5.0, 3.0, -2.0]), 2, ALLOWED)
    assert freq.shape == ALLOWED.shape
    np.testing.assert_allclose(freq.sum(axis=1), 1.0)
    np.testing.assert_allclose(freq[0], [0, 0.5, 0.5, 0])  # rows 1 and 2 (scores 5 and 3)
    np.testing.assert_allclose(freq[3], [0.5, 0, 0, 0.5])
    none = selection.best_rows_frequencies(np.zeros((0, 5), int), np.zeros(0), 3, ALLOWED)
    np.testing.assert_allclose(none, selection.uniform_probs(ALLOWED))
