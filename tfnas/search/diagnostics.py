"""What makes a HourNAS result doubtful, said after the search: targets it missed, a stage
whose supernet learned nothing, or vital picks that rest on flat evidence (README, Search)."""

from __future__ import annotations

import math

import numpy as np

_WHAT = {"vital": ("stage 1", "the vital ops it chose"),
         "nonvital": ("stage 2", "its op probabilities, and the ops chosen from them,")}


def missed_targets_warning(cost: dict[str, float], targets: dict[str, float],
                           tolerance: float) -> str | None:
    """A warning when the result misses a target by more than `tolerance` (relative): no
    draw from the proposals met them all, so the result is the nearest one."""
    missed = {k: cost[k] / t - 1 for k, t in targets.items() if abs(cost[k] / t - 1) > tolerance}
    if not missed:
        return None
    return ("warning: no architecture drawn from the proposals met every target within "
            f"{tolerance:.0%}, so the result is the draw nearest them, off by "
            + ", ".join(f"{k} {d:+.1%}" for k, d in missed.items()))


def untrained_warning(stage: str, loss: float | None, num_classes: int,
                      vital_sampler: str = "gumbel_max", two_stage: bool = True) -> str | None:
    """A warning when a stage's weight loss (the moving average at its end) stayed near
    chance, ln(classes): its supernet learned nothing and what it chose is noise. A one-stage
    search (`two_stage=False`) runs all its epochs as the "nonvital" stage."""
    chance = math.log(num_classes)
    if loss is None or loss < 0.9 * chance:
        return None
    name, what = _WHAT[stage]
    if stage == "vital":
        remedies = "more --vital_epochs, or pin vital ops with --fix"
        if vital_sampler == "gumbel_max":
            remedies = "--vital_sampler=gumbel_softmax, " + remedies
    elif two_stage:
        remedies = "more --nonvital_epochs or a lower --weight_lr"
    else:
        name = "the one-stage search"
        remedies = "more --vital_epochs or --nonvital_epochs (it runs both) or a lower --weight_lr"
    return (f"warning: {name}'s supernet did not learn (its weight loss ended at {loss:.2f}; "
            f"chance for {num_classes} classes is {chance:.2f}), so {what} are no better than "
            f"random picks; try {remedies} (README, Search)")


def flat_scores_warning(losses: np.ndarray, chance: float,
                        spread: float = 0.01) -> str | None:
    """A warning when the perturbation scores (`losses` [vital layers, ops], NaN where not
    scored) barely differ in at least half the layers: within `spread` nats of each other,
    so the lowest-loss pick there is a coin toss (e.g. stage 1's BatchNorm statistics are
    not settled yet after a short stage)."""
    rows = [row[~np.isnan(row)] for row in np.asarray(losses, dtype=float)]
    rows = [row for row in rows if len(row) > 1]
    flat = [row for row in rows if row.max() - row.min() < spread]
    if not rows or 2 * len(flat) < len(rows):
        return None
    return (f"warning: stage 1's perturbation scores are flat: in {len(flat)} of {len(rows)} "
            f"vital layers every op scored within {spread} of the others (lowest "
            f"{min(row.min() for row in flat):.3f}; chance {chance:.2f}), so the lowest-loss "
            "picks there are close to random; give stage 1 more --vital_epochs (README, Search)")


def undecided_vital_note(probs: np.ndarray) -> str | None:
    """A note when stage 1's θ stayed near uniform in every vital layer (`probs` [layers, ops],
    0 for illegal ops): no op reached twice its layer's uniform probability (or halfway from
    it to 1, for layers of two ops), so the picks, though the most likely, rest on little
    evidence."""
    if not len(probs):
        return None
    uniform = 1.0 / np.maximum((probs > 0).sum(axis=1), 1)
    if np.any(probs.max(axis=1) >= np.minimum(2 * uniform, (1 + uniform) / 2)):
        return None
    return (f"note: stage 1's op probabilities stayed near uniform (at most "
            f"{probs.max():.3f}; uniform {uniform.max():.3f}), so its vital picks rest on little "
            "evidence; more --vital_epochs or --vital_selection=perturbation give a clearer "
            "signal (README, Search)")
