"""What the SETN and TNAS oracles share: history, de-duplication, seeding and worker leases.

A sampler proposes token rows (one token per hyperparameter, `encoding.DecisionSpace`) in
order of preference; the first one not tried yet becomes the trial. Everything a sampler
learns is a deterministic function of the completed trials in `end_order`, their scores and
`seed`, all of which keras_tuner already saves (trial files + `Oracle.get_state`). So a
tuner reloaded from its directory, or a chief oracle restarted, proposes exactly what the
uninterrupted one would have, and the state stays plain JSON.

Dead workers: with `trial_lease_seconds` set, a trial whose worker has not reported for that
long is handed to the next worker that asks, and workers that ask while the last trials are
still running elsewhere wait (IDLE) instead of leaving, so a killed worker loses no trial.
"""

from __future__ import annotations

import time
from typing import Iterable, Iterator

import keras_tuner
import numpy as np
from keras_tuner.engine import trial as trial_module

from tfnas.errors import TfnasError
from tfnas.tuner.encoding import DecisionSpace

RUNNING = trial_module.TrialStatus.RUNNING
STOPPED = trial_module.TrialStatus.STOPPED
IDLE = trial_module.TrialStatus.IDLE
COMPLETED = trial_module.TrialStatus.COMPLETED


class SamplerOracle(keras_tuner.Oracle):
    """Base of the learned-sampler oracles. Subclasses implement `propose`."""

    def __init__(self, objective=None, max_trials: int = 10, hyperparameters=None,
                 seed: int | None = None, num_initial_points: int = 10,
                 trial_lease_seconds: float | None = None, idle_wait_seconds: float = 0.5,
                 **kwargs):
        super().__init__(objective=objective, max_trials=max_trials,
                         hyperparameters=hyperparameters, seed=seed, **kwargs)
        self.num_initial_points = int(num_initial_points)
        self.trial_lease_seconds = trial_lease_seconds
        self.idle_wait_seconds = idle_wait_seconds
        check_arguments(type(self).__name__,
                        num_initial_points=(self.num_initial_points >= 0, ">= 0"),
                        trial_lease_seconds=(trial_lease_seconds is None
                                             or trial_lease_seconds > 0, "None or > 0"),
                        idle_wait_seconds=(idle_wait_seconds > 0, "> 0"))
        self._lease_start: dict[str, float] = {}
        self._decisions: DecisionSpace | None = None

    # -- what subclasses implement -------------------------------------------------------

    def propose(self, space: DecisionSpace, rows: np.ndarray, scores: np.ndarray,
                rng: np.random.Generator, trial_number: int) -> Iterable[np.ndarray]:
        """Candidate token rows, best first. `rows` [N, L] and `scores` [N] (higher is
        better) are the completed trials in the order they ended."""
        raise NotImplementedError

    def reset_learned_state(self) -> None:
        """Forget cached models (they are rebuilt from the history on demand)."""

    # -- keras_tuner.Oracle ---------------------------------------------------------------

    def populate_space(self, trial_id):
        space = self.decision_space()
        if len(space) == 0:  # the hypermodel registers its hyperparameters on first build
            values = {}
            return ({"status": STOPPED, "values": None} if self._duplicate(values)
                    else {"status": RUNNING, "values": values})
        trial_number = int(trial_id)
        rng = np.random.default_rng([self.seed, trial_number])
        rows, scores = self.history(space)
        for row in self._candidates(space, rows, scores, rng, trial_number):
            values = space.decode(row)
            if not self._duplicate(values):
                return {"status": RUNNING, "values": values}
        return {"status": STOPPED, "values": None}  # the space is exhausted

    def _candidates(self, space, rows, scores, rng, trial_number) -> Iterator[np.ndarray]:
        if len(rows) >= self.num_initial_points:
            yield from self.propose(space, rows, scores, rng, trial_number)
        # Uniform fallback: the warm-up trials, and whatever the sampler leaves untried.
        for _ in range(8):
            yield from space.uniform(rng, 64)
        yield from _enumerate_rows(space.sizes)  # small spaces: guarantees completion

    def decision_space(self) -> DecisionSpace:
        space = DecisionSpace(self.hyperparameters)
        if self._decisions is None or self._decisions.signature != space.signature:
            self._decisions = space
            self.reset_learned_state()
        return self._decisions

    def history(self, space: DecisionSpace) -> tuple[np.ndarray, np.ndarray]:
        """Completed trials in end order: token rows [N, L] and scores, higher is better."""
        done = [self.trials[t] for t in self.end_order
                if t in self.trials and self.trials[t].status == COMPLETED
                and self.trials[t].score is not None and np.isfinite(self.trials[t].score)]
        rows = np.array([space.encode(t.hyperparameters.values) for t in done],
                        dtype=np.int64).reshape(len(done), len(space))
        sign = 1.0 if self.objective.direction == "max" else -1.0
        return rows, sign * np.array([t.score for t in done], dtype=np.float64)

    def get_state(self):
        state = super().get_state()
        state["sampler"] = {"class": type(self).__name__,
                            "num_initial_points": self.num_initial_points}
        return state

    def set_state(self, state):
        saved = state.get("sampler", {}).get("class", type(self).__name__)
        if saved != type(self).__name__:  # its history means something else to this oracle
            raise TfnasError(f"this tuner project was run by {saved}, not "
                             f"{type(self).__name__}; pass overwrite=True or another "
                             "project_name")
        super().set_state(state)
        self._lease_start = {}
        self._decisions = None
        self.reset_learned_state()

    # -- leases: no trial is lost when a worker dies ----------------------------------------

    def create_trial(self, tuner_id):
        trial = self._create_trial_leased(tuner_id)
        if trial.status == IDLE:
            time.sleep(self.idle_wait_seconds)  # outside the lock: others may report
        return trial

    @keras_tuner.synchronized
    def _create_trial_leased(self, tuner_id):
        if self.trial_lease_seconds is not None:
            self._reclaim_expired(tuner_id)
        trial = super().create_trial(tuner_id)
        if trial.status == RUNNING:
            self._lease_start[trial.trial_id] = time.time()
        elif (trial.status == STOPPED and self.trial_lease_seconds is not None
              and any(t != tuner_id for t in self.ongoing_trials)):
            self.tuner_ids.add(tuner_id)  # stay: a running trial may still be handed over
            return trial_module.Trial(self.get_space(), status=IDLE)
        return trial

    def _reclaim_expired(self, tuner_id) -> None:
        now = time.time()
        for other, trial in list(self.ongoing_trials.items()):
            started = self._lease_start.setdefault(trial.trial_id, now)
            if other != tuner_id and now - started > self.trial_lease_seconds:
                print(f"Trial {trial.trial_id}: no report from {other} for "
                      f"{now - started:.0f}s, handing it to the next worker")
                self.ongoing_trials.pop(other)
                self.tuner_ids.discard(other)
                self._retry_queue.append(trial.trial_id)

    @keras_tuner.synchronized
    def update_trial(self, trial_id, metrics, step=0):
        self._lease_start[trial_id] = time.time()
        return super().update_trial(trial_id, metrics, step=step)

    @keras_tuner.synchronized
    def end_trial(self, trial):
        if trial.trial_id in self.end_order:
            return  # a late report from a worker whose trial was handed over
        self._lease_start.pop(trial.trial_id, None)
        super().end_trial(trial)


def _enumerate_rows(sizes: np.ndarray) -> Iterator[np.ndarray]:
    """Every row in order, only for spaces small enough to enumerate."""
    if float(np.prod(sizes.astype(np.float64))) > 1e6:
        return
    for flat in range(int(np.prod(sizes))):
        yield np.array(np.unravel_index(flat, tuple(sizes)), dtype=np.int64)


def top_k(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best rows (stable: earlier trials win ties)."""
    order = np.argsort(-scores, kind="stable")[:k]
    return rows[order], scores[order]


def check_arguments(owner: str, **rules: tuple[bool, str]) -> None:
    """One TfnasError for the first constructor argument out of range, when `owner` is built
    rather than deep inside a search: `name=(holds, "the range it must be in")`."""
    for name, (holds, allowed) in rules.items():
        if not holds:
            raise TfnasError(f"{owner}: {name} must be {allowed}")
