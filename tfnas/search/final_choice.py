"""Stage 2's last step: turn the proposals' Π and Θ into one architecture that meets the
targets.

HourNAS takes the most likely ops of the most likely proposal (Algorithm 1, line 23). After a
short stage 2, Π is close to uniform, so `--proposal_selection=loss` instead scores each
proposal's most likely architecture with the trained supernet and keeps the best.
"""
from __future__ import annotations

import numpy as np

from tfnas.cost.tables import CostTables
from tfnas.search.base import value
from tfnas.search.proposal_arch import ProposalArchParams
from tfnas.search.vital_choice import TOLERANCE, largest_miss


def most_likely_within_targets(arch: ProposalArchParams, tables: CostTables,
                               targets: dict[str, float], seed: int, tolerance: float = TOLERANCE,
                               samples: int = 20_000) -> np.ndarray:
    """Algorithm 1's last line: the most likely ops of the most likely proposal; if that
    argmax misses a target by more than `tolerance`, the most likely architecture that meets
    every target among `samples` draws at the final temperature from that proposal, else
    from the next most likely proposal, and so on. If no draw of any proposal meets them all,
    the draw whose largest relative miss is smallest."""
    nearest = arch.derive()
    nearest_miss = largest_miss(tables.cost(nearest), targets)
    if nearest_miss <= tolerance:
        return nearest
    rng = np.random.default_rng(seed)
    for j in np.argsort(-value(arch.pi), kind="stable"):
        draws, logp = _draws(arch, int(j), rng, samples)
        miss = largest_miss(tables.batch_cost(draws), targets)
        ok = miss <= tolerance
        if ok.any():
            return _most_likely(draws[ok], logp)
        if miss.min() < nearest_miss:
            nearest, nearest_miss = draws[int(np.argmin(miss))], float(miss.min())
    return nearest


def proposal_candidates(arch: ProposalArchParams, tables: CostTables,
                        targets: dict[str, float], seed: int, tolerance: float = TOLERANCE,
                        samples: int = 20_000) -> dict[int, np.ndarray]:
    """{proposal: its most likely architecture within `tolerance` of every target}: the
    proposal's argmax if that meets them, else the most likely of `samples` draws from it
    that does; proposals none of whose draws does are left out."""
    found = {}
    for j in range(arch.num_proposals):
        argmax = arch.most_likely_ops(j)
        if largest_miss(tables.cost(argmax), targets) <= tolerance:
            found[j] = argmax
            continue
        draws, logp = _draws(arch, j, np.random.default_rng([seed, j]), samples)
        ok = largest_miss(tables.batch_cost(draws), targets) <= tolerance
        if ok.any():
            found[j] = _most_likely(draws[ok], logp)
    return found


def _draws(arch: ProposalArchParams, j: int, rng: np.random.Generator,
           samples: int) -> tuple[np.ndarray, np.ndarray]:
    """`samples` Gumbel-Max draws [samples, L] from proposal `j` at the current temperature,
    and its per-layer op log-probabilities [L, O]."""
    logits = np.where(arch.allowed, value(arch.theta)[j] / value(arch.tau), -np.inf)
    logp = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    draws = np.argmax(logits + rng.gumbel(size=(samples,) + logits.shape), axis=-1)
    return draws, logp


def _most_likely(draws: np.ndarray, logp: np.ndarray) -> np.ndarray:
    score = logp[np.arange(logp.shape[0]), draws].sum(axis=1)
    return draws[int(np.argmax(score))]
