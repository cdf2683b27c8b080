"""TNAS (Yan et al.) as a keras_tuner oracle: a transformer VAE learns the distribution of the
best architectures seen so far, and trials are drawn from

    Gamma(alpha) = (1 - eps) * U(alpha) + eps * p(alpha | z),  z ~ N(0, I)       (eq. 11)

with eps = min(eps_max, eps_inc * (completed trials - num_initial_points)), growing as the
search goes. The VAE (`tfnas.samplers.tnas_vae`) is trained on the `top_k` trials by the
objective every `retrain_every` completed trials, warm-starting from its previous weights
(eq. 1: Gamma_t is learned from Gamma_{t-1} and the new architectures). Its weights are a
deterministic function of the history, so they are rebuilt, not stored, after a reload.
"""

from __future__ import annotations

import inspect
from typing import Iterator

import numpy as np

from tfnas.tuner.base import SamplerOracle, check_arguments, top_k
from tfnas.tuner.encoding import DecisionSpace


class TNASOracle(SamplerOracle):
    """Keras Tuner oracle sampling from TNAS's epsilon-mixed VAE distribution.

    Args (beyond keras_tuner.Oracle's objective, max_trials, hyperparameters, seed):
      num_initial_points: uniform trials before the VAE is first trained.
      eps_inc: growth of eps per completed trial (paper: 0.04-0.5 per step); eps_max caps it.
      top_k: how many of the best trials the VAE is trained on.
      retrain_every: completed trials between VAE updates; train_steps: Adam steps each.
      pool_size: VAE samples drawn per update (untried ones are used in order).
      vae_config: ArchitectureVAE keyword arguments (latent_dim, dim, num_heads, ...).
    """

    def __init__(self, objective=None, max_trials: int = 10, hyperparameters=None,
                 seed: int | None = None, num_initial_points: int = 10,
                 eps_inc: float = 0.1, eps_max: float = 1.0, top_k: int = 10,
                 retrain_every: int = 10, train_steps: int = 20, pool_size: int = 256,
                 vae_config: dict | None = None, **kwargs):
        super().__init__(objective=objective, max_trials=max_trials,
                         hyperparameters=hyperparameters, seed=seed,
                         num_initial_points=num_initial_points, **kwargs)
        self.eps_inc, self.eps_max = float(eps_inc), float(eps_max)
        self.top_k, self.retrain_every = int(top_k), int(retrain_every)
        self.train_steps, self.pool_size = int(train_steps), int(pool_size)
        self.vae_config = dict(vae_config or {})
        check_arguments(type(self).__name__,
                        eps_inc=(self.eps_inc >= 0, ">= 0"),
                        eps_max=(0 <= self.eps_max <= 1, "in [0, 1]"),
                        top_k=(self.top_k >= 1, ">= 1"),
                        retrain_every=(self.retrain_every >= 1, ">= 1"),
                        train_steps=(self.train_steps >= 1, ">= 1"),
                        pool_size=(self.pool_size >= 1, ">= 1"),
                        vae_config=(set(self.vae_config) <= _vae_settings(),
                                    f"a dict of {', '.join(sorted(_vae_settings()))}"))
        self.reset_learned_state()

    def reset_learned_state(self) -> None:
        self._weights: list[np.ndarray] | None = None
        self._trained_at = 0  # completed trials the current weights have seen
        self._pool: list[np.ndarray] = []
        self.last_loss: tuple[float, float] | None = None

    def epsilon(self, completed: int) -> float:
        """Probability of drawing from the VAE rather than uniformly (eq. 11)."""
        if completed < self.num_initial_points:
            return 0.0
        return min(self.eps_max, self.eps_inc * (completed - self.num_initial_points + 1))

    def vae(self, space: DecisionSpace):
        from tfnas.samplers.tnas_vae import shared_vae
        return shared_vae(space.sizes, **self.vae_config)

    def update_vae(self, space: DecisionSpace, rows: np.ndarray, scores: np.ndarray) -> None:
        """Replays every VAE update due by now (one per `retrain_every` completed trials)."""
        from tfnas.samplers.tnas_vae import SHARED_LOCK
        first = self.num_initial_points
        due = [p for p in range(first, len(rows) + 1, self.retrain_every) if p > self._trained_at]
        if not due:
            return
        vae = self.vae(space)
        with SHARED_LOCK:
            for point in due:
                weights = self._weights or vae.initial_weights(_seed(self.seed, 0))
                best, _ = top_k(rows[:point], scores[:point], self.top_k)
                self._weights, rec, kl = vae.train(weights, best, self.train_steps,
                                                   _seed(self.seed, point))
                self._trained_at, self.last_loss = point, (rec, kl)
            self._pool = list(vae.sample(self._weights, _rng(self.seed, self._trained_at, 0),
                                         self.pool_size))

    def vae_samples(self, space: DecisionSpace) -> Iterator[np.ndarray]:
        """The pool of VAE samples in order, extended with fresh draws when used up."""
        from tfnas.samplers.tnas_vae import SHARED_LOCK
        yield from self._pool
        for extra in range(1, 4):
            with SHARED_LOCK:
                more = self.vae(space).sample(
                    self._weights, _rng(self.seed, self._trained_at, extra), self.pool_size)
            self._pool.extend(more)
            yield from more

    def propose(self, space, rows, scores, rng, trial_number):
        self.update_vae(space, rows, scores)
        if self._weights is None or rng.random() >= self.epsilon(len(rows)):
            return space.uniform(rng, 64)
        return self.vae_samples(space)

    def draw(self, space: DecisionSpace, rows: np.ndarray, scores: np.ndarray,
             rng: np.random.Generator) -> np.ndarray:
        """One architecture from Gamma (eq. 11) given the history `rows`/`scores`: a VAE
        sample with probability epsilon, else uniform. Repeats are allowed: this is the
        sampler of TNAS's one-shot supernet training, not a trial proposer."""
        self.update_vae(space, rows, scores)
        if self._weights is not None and rng.random() < self.epsilon(len(rows)):
            return self._pool[int(rng.integers(len(self._pool)))]
        return space.uniform(rng, 1)[0]

    def get_state(self):
        state = super().get_state()
        completed = sum(self.trials[t].status == "COMPLETED" for t in self.end_order
                        if t in self.trials)
        points = range(self.num_initial_points, completed + 1, self.retrain_every)
        state["sampler"].update(vae_updates=len(points), epsilon=self.epsilon(completed))
        return state  # informational: the VAE is rebuilt from the trials on demand


def _seed(seed: int, point: int) -> int:
    return int(np.random.SeedSequence([seed, point]).generate_state(1)[0])


def _rng(seed: int, point: int, draw: int) -> np.random.Generator:
    return np.random.default_rng([seed, point, draw])


def _vae_settings() -> set[str]:
    """The keyword arguments ArchitectureVAE takes (what `vae_config` may hold)."""
    from tfnas.samplers.tnas_vae import ArchitectureVAE
    params = inspect.signature(ArchitectureVAE.__init__).parameters
    return {name for name, p in params.items()
            if name not in ("self", "sizes") and p.kind is p.POSITIONAL_OR_KEYWORD}
