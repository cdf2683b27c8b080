"""SETN (Dong & Yang, ICCV 2019) as a keras_tuner oracle.

SETN's evaluator is a categorical distribution per decision, learned so that architectures
it favours have a low validation loss; T candidates are sampled from it, de-duplicated, and
the one the template network scores best is kept.

Without a template network (black-box mode, the default) the same three steps run on the
observed trials: the evaluator's per-decision probabilities are the score-weighted
frequencies of the ops in completed trials (weights exp((s - s_best) / (temperature * std)),
plus a uniform pseudo-count), T untried candidates are sampled from it, and the candidate
with the highest evaluator log-probability (the learned score) becomes the next trial.
Pass `candidate_scorer` (rows of values -> scores, higher is better; e.g. one-shot accuracy
with shared supernet weights) to rank the T candidates by it instead, as SETN does.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from tfnas.tuner.base import SamplerOracle, check_arguments
from tfnas.tuner.encoding import DecisionSpace

CandidateScorer = Callable[[Sequence[dict]], Sequence[float]]


class SETNEvaluator:
    """Independent categorical distributions over each decision's values."""

    def __init__(self, sizes: np.ndarray, temperature: float = 0.1, prior: float = 0.5):
        self.sizes = np.asarray(sizes)
        self.temperature = temperature
        self.prior = prior
        self.log_probs = [np.full(n, -np.log(n)) for n in self.sizes]

    def fit(self, rows: np.ndarray, scores: np.ndarray) -> "SETNEvaluator":
        spread = float(np.std(scores)) or 1.0
        weights = np.exp((scores - scores.max()) / (self.temperature * spread))
        self.log_probs = []
        for d, n in enumerate(self.sizes):
            counts = np.full(n, self.prior / n * len(self.sizes)) + np.bincount(
                rows[:, d], weights=weights, minlength=n)
            self.log_probs.append(np.log(counts / counts.sum()))
        return self

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        cols = [rng.choice(len(lp), size=n, p=np.exp(lp)) for lp in self.log_probs]
        return np.stack(cols, axis=1).astype(np.int64)

    def log_prob(self, rows: np.ndarray) -> np.ndarray:
        return sum(lp[rows[:, d]] for d, lp in enumerate(self.log_probs))


class SETNOracle(SamplerOracle):
    """Keras Tuner oracle: SETN's evaluator-guided candidate selection.

    Args (beyond keras_tuner.Oracle's objective, max_trials, hyperparameters, seed):
      num_initial_points: uniform trials before the evaluator is used.
      num_candidates: T, candidates sampled from the evaluator per trial (paper: 1000).
      temperature: how sharply better trials dominate the evaluator (in score stds).
      candidate_scorer: optional one-shot scorer of candidate values, higher is better.
    """

    def __init__(self, objective=None, max_trials: int = 10, hyperparameters=None,
                 seed: int | None = None, num_initial_points: int = 10,
                 num_candidates: int = 1000, temperature: float = 0.1, prior: float = 0.5,
                 candidate_scorer: CandidateScorer | None = None, **kwargs):
        super().__init__(objective=objective, max_trials=max_trials,
                         hyperparameters=hyperparameters, seed=seed,
                         num_initial_points=num_initial_points, **kwargs)
        self.num_candidates = int(num_candidates)
        self.temperature = float(temperature)
        self.prior = float(prior)
        check_arguments(type(self).__name__,
                        num_candidates=(self.num_candidates >= 1, ">= 1"),
                        temperature=(self.temperature > 0, "> 0"), prior=(self.prior > 0, "> 0"))
        self.candidate_scorer = candidate_scorer

    def evaluator(self, space: DecisionSpace, rows: np.ndarray,
                  scores: np.ndarray) -> SETNEvaluator:
        ev = SETNEvaluator(space.sizes, self.temperature, self.prior)
        return ev.fit(rows, scores) if len(rows) else ev

    def propose(self, space, rows, scores, rng, trial_number):
        ev = self.evaluator(space, rows, scores)
        candidates = np.unique(ev.sample(rng, self.num_candidates), axis=0)
        if self.candidate_scorer is not None:
            learned = np.asarray(self.candidate_scorer([space.decode(r) for r in candidates]),
                                 dtype=np.float64)
        else:
            learned = ev.log_prob(candidates)
        return candidates[np.argsort(-learned, kind="stable")]
