"""Stage 1's last step: turn per-op preferences of the vital layers into the vital ops that
let the targets be met.

HourNAS fixes each vital layer to its most likely op; on tight targets that choice can leave
no architecture within ±5% of every target, so the choice goes to the joint vital ops of
highest total preference that still can.
"""
from __future__ import annotations

import heapq
from typing import Callable

import numpy as np

from tfnas.cost.tables import CostTables
from tfnas.errors import TfnasError
from tfnas.proposals.budget import describe_ranges, feasible_ranges
from tfnas.proposals.selector import Proposals

TOLERANCE = 0.05


def largest_miss(cost: dict, targets: dict[str, float]):
    """max over the targets of |cost / target - 1| (arrays of costs give an array)."""
    return np.max([np.abs(np.asarray(cost[k]) / t - 1) for k, t in targets.items()], axis=0)


class CostHull:
    """Whether every target can be met within ±`tolerance` at once, with some layers fixed.

    The costs an architecture reaches are sums of one point per layer, so they lie in the
    Minkowski sum of the layers' convex hulls, a tight hull for a sum of many layers. A
    direction u separates the box of acceptable costs from that hull when the hull's largest
    u-projection falls short of the box's smallest; `reaches` tries the ± axes (the
    objectives' ranges) and `directions` fixed random ones. It can pass choices no
    architecture meets, never the other way round.
    """

    def __init__(self, tables: CostTables, targets: dict[str, float], allowed: np.ndarray,
                 tolerance: float = TOLERANCE, directions: int = 64):
        keys = list(targets)
        u = np.random.default_rng(0).normal(size=(directions, len(keys)))
        u = np.concatenate([np.eye(len(keys)), -np.eye(len(keys)),
                            u / np.linalg.norm(u, axis=1, keepdims=True)])
        cost = np.stack([tables.tables[k] / targets[k] for k in keys], -1)  # [L, O, K]
        # proj[d, l, o]: how far op o of layer l reaches along direction d.
        self.proj = np.where(allowed[None], np.einsum("lok,dk->dlo", cost, u), -np.inf)
        self.best = self.proj.max(-1)  # [D, L]
        const = np.array([tables.constants[k] / targets[k] for k in keys])
        self.box_min = (np.minimum(u * (1 - tolerance), u * (1 + tolerance)).sum(-1)
                        - u @ const)

    def reaches(self, fixed: dict[int, int]) -> bool:
        layers = np.fromiter(fixed, int, len(fixed))
        ops = np.fromiter(fixed.values(), int, len(fixed))
        support = (self.best.sum(-1) - self.best[:, layers].sum(-1)
                   + self.proj[:, layers, ops].sum(-1))
        return bool(np.all(support >= self.box_min))


def targets_in_range(tables: CostTables, targets: dict[str, float],
                     fixed: dict[int, int]) -> bool:
    """Whether every target itself (not just its ±5% box) lies within what the space reaches
    with `fixed`: the proposals' optimizer refuses targets outside that range."""
    return all(lo <= targets[k] <= hi
               for k, (lo, hi) in feasible_ranges(tables, targets, fixed).items())


def proposals_accept(tables: CostTables, targets: dict[str, float], proposals: Proposals,
                     samples: int = 4000, enough: float = 0.2) -> bool:
    """Whether at least `enough` of the proposals' draws are within ±5% of every target at
    once (they usually are, 90% and more)."""
    costs = tables.batch_cost(proposals.sample(samples, 0))
    return bool(np.mean(largest_miss(costs, targets) <= TOLERANCE) >= enough)


def feasible_vital_choice(tables: CostTables, targets: dict[str, float],
                          user_fixed: dict[int, int], preference: np.ndarray,
                          vital: np.ndarray,
                          proposals: Callable[[dict[int, int]], Proposals] | None = None,
                          max_visits: int = 1_000_000,
                          max_proposal_checks: int = 64) -> dict[int, int]:
    """The vital ops of highest total `preference` that let the targets be met.

    `preference` [layers, ops] is higher for better ops and adds up over layers
    (log-probabilities, or negative validation losses). Joint choices are visited best
    first, by the summed drop from each layer's favourite op. The first one is returned that
    passes three checks, cheapest first: `CostHull.reaches` (the ±5% box can be reached at
    all), `targets_in_range` (the proposals' optimizer accepts the targets) and, given
    `proposals` (vital ops -> proposals optimized for the rest of the budget),
    `proposals_accept` (at least 20% of their draws within ±5% of every target). Large vital
    ops can pass the first checks and fail the last: they spend one objective that another's
    target needs. Proposals take a fraction of a second each, so at most
    `max_proposal_checks` choices get that far before the search gives up.
    """
    allowed = tables.legal.copy()
    for layer, op in user_fixed.items():
        allowed[layer] = False
        allowed[layer, op] = True
    layers = [int(i) for i in np.flatnonzero(vital) if int(i) not in user_fixed]
    finite = np.where(np.isfinite(preference), preference, -1e30)
    ranked = [[int(o) for o in np.argsort(-finite[i], kind="stable") if allowed[i, o]]
              for i in layers]
    drop = [finite[i, r[0]] - finite[i, r] for i, r in zip(layers, ranked)]
    hull = CostHull(tables, targets, allowed)

    def choice(ranks) -> dict[int, int]:
        return {**user_fixed, **{i: r[k] for i, r, k in zip(layers, ranked, ranks)}}

    # Each rank vector is pushed once, by incrementing one position at or after the last one
    # incremented; drops never decrease along a layer's ranking, so pops come best first.
    heap = [(0.0, (0,) * len(layers), 0)]
    checked = 0
    for _ in range(max_visits):
        if not heap:
            break
        _, ranks, last = heapq.heappop(heap)
        fixed = choice(ranks)
        if hull.reaches(fixed) and targets_in_range(tables, targets, fixed):
            if proposals is None:
                return {i: fixed[i] for i in layers}
            if proposals_accept(tables, targets, proposals(fixed)):
                return {i: fixed[i] for i in layers}
            checked += 1
            if checked >= max_proposal_checks:
                raise TfnasError(
                    f"the {checked} most preferred choices of vital ops that the costs allow "
                    f"each leave under 20% of their proposals' draws within ±{TOLERANCE:.0%} "
                    "of every target; relax one target or fix vital ops with --fix")
        for j in range(last, len(layers)):
            if ranks[j] + 1 < len(ranked[j]):
                step = ranks[:j] + (ranks[j] + 1,) + ranks[j + 1:]
                heapq.heappush(heap, (sum(d[k] for d, k in zip(drop, step)), step, j))
    searched = "" if not heap else f" among the {max_visits:,} most preferred"
    raise TfnasError(f"no choice of vital ops{searched} lets every target be met within "
                     f"±{TOLERANCE:.0%} at once (the space reaches "
                     f"{describe_ranges(feasible_ranges(tables, targets, user_fixed))} "
                     "one objective at a time); relax one target or fix vital ops with --fix")
