"""A keras_tuner Tuner that scores each candidate with a callable instead of training it.

One-shot NAS evaluates a candidate with weights it shares with every other candidate (a
supernet / SETN's template network): no per-trial training. `OneShotTuner` is that loop in
Keras Tuner form: any oracle (SETNOracle, TNASOracle, keras_tuner's own) proposes values,
`scorer(hyperparameters, *search_args, **search_kwargs)` scores them, and the result is the
trial's metrics. The scorer returns the objective as a float or a dict of metrics; it may
also register hyperparameters on the fly, like a hypermodel's `build`.

`supernet_scorer` turns a `tfnas.engine.scoring.OneShotScorer` (a trained supernet and fixed
validation batches) into such a scorer for the hyperparameters of a tfnas space; this class
never invents a score. There is no model per trial, so
`get_best_models` does not apply: use `get_best_hyperparameters`.
"""

from __future__ import annotations

from typing import Any, Callable

import keras_tuner

from tfnas.space.base import SearchSpace
from tfnas.tuner.spaces import genotype_from_values

Scorer = Callable[..., "float | dict[str, float]"]


class OneShotTuner(keras_tuner.Tuner):
    """Keras Tuner whose trials are scored by `scorer` (e.g. one-shot supernet accuracy)."""

    def __init__(self, oracle: keras_tuner.Oracle, scorer: Scorer, **kwargs: Any):
        if not callable(scorer):
            raise TypeError("OneShotTuner needs a callable scorer(hyperparameters, ...)")
        self.scorer = scorer
        super().__init__(oracle, hypermodel=None, **kwargs)

    def run_trial(self, trial, *args, **kwargs):
        kwargs.pop("verbose", None)  # search()'s display setting, not the scorer's
        return self.scorer(trial.hyperparameters, *args, **kwargs)

    def get_best_models(self, num_models: int = 1):
        raise NotImplementedError(
            "OneShotTuner trains no model per trial; use get_best_hyperparameters()")


def supernet_scorer(space: SearchSpace, scorer: Callable) -> Scorer:
    """A `OneShotTuner` scorer: the trial's values (`space_hyperparameters(space)`) name a
    genotype, and `scorer(op indices)` (e.g. `OneShotScorer`) returns its metrics."""

    def score(hyperparameters, *args, **kwargs):
        return scorer(genotype_from_values(space, hyperparameters.values).indices())

    return score
