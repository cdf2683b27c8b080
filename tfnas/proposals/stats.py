"""How well sampled architectures meet their targets ("what you set is what you get")."""

from __future__ import annotations

import numpy as np

from tfnas.cost.tables import CostTables
from tfnas.proposals.budget import format_value

TOLERANCES = (0.05, 0.10)


def _within(costs: dict[str, np.ndarray], targets: dict[str, float], tol: float
            ) -> dict[str, np.ndarray]:
    return {k: np.abs(costs[k] / t - 1) <= tol for k, t in targets.items()}


def _fractions(costs: dict[str, np.ndarray], targets: dict[str, float], rows: np.ndarray
               ) -> dict:
    """Within-tolerance fractions over the samples selected by the boolean `rows`."""
    n = int(np.count_nonzero(rows))
    out: dict = {"samples": n}
    for tol in TOLERANCES:
        key = f"within_{round(tol * 100)}pct"
        hits = _within(costs, targets, tol)
        every = np.logical_and.reduce(list(hits.values()))
        out[f"{key}_all"] = float(every[rows].mean()) if n else 0.0
        out[key] = {k: float(h[rows].mean()) if n else 0.0 for k, h in hits.items()}
    return out


def sample_report(tables: CostTables, targets: dict[str, float], archs: np.ndarray,
                  proposal_ids: np.ndarray | None = None, num_proposals: int = 0) -> dict:
    """Fractions within ±5%/±10% of each target and of all at once, mean/std per objective,
    distinct architectures; per proposal too when `proposal_ids` is given."""
    costs = tables.batch_cost(archs)
    everything = np.ones(len(archs), dtype=bool)
    report = _fractions(costs, targets, everything)
    report["distinct"] = int(len(np.unique(archs, axis=0))) if len(archs) else 0
    report["objectives"] = {
        k: {"target": t, "mean": float(costs[k].mean()), "std": float(costs[k].std()),
            "min": float(costs[k].min()), "max": float(costs[k].max())}
        for k, t in targets.items()}
    if proposal_ids is not None:
        report["proposals"] = [
            {**_fractions(costs, targets, proposal_ids == j),
             "distinct": int(len(np.unique(archs[proposal_ids == j], axis=0)))}
            for j in range(num_proposals)]
    return report


def mean_pairwise_difference(archs: np.ndarray) -> float:
    """Mean fraction of layers in which two of the architectures [k, L] differ (all pairs)."""
    k = len(archs)
    pairs = [(archs[i] != archs[j]).mean() for i in range(k) for j in range(i + 1, k)]
    return float(np.mean(pairs)) if pairs else 0.0


def format_report(report: dict) -> list[str]:
    """Human-readable lines of a `sample_report`."""
    lines = [f"{report['samples']} samples, {report['distinct']} distinct architectures; "
             f"all targets at once: {report['within_5pct_all']:.1%} within ±5%, "
             f"{report['within_10pct_all']:.1%} within ±10%"]
    for k, o in report["objectives"].items():
        lines.append(
            f"  {k:<10} target {format_value(k, o['target']):>9}  mean {format_value(k, o['mean'])}"
            f" ± {format_value(k, o['std'])} (min {format_value(k, o['min'])}, max "
            f"{format_value(k, o['max'])})  within ±5% {report['within_5pct'][k]:.1%}, "
            f"±10% {report['within_10pct'][k]:.1%}")
    for j, p in enumerate(report.get("proposals", [])):
        per = ", ".join(f"{k} {p['within_5pct'][k]:.0%}/{p['within_10pct'][k]:.0%}"
                        for k in report["objectives"])
        lines.append(f"  proposal {j}: {p['samples']:>6} samples, {p['distinct']:>6} distinct, "
                     f"all ±5% {p['within_5pct_all']:.1%}, ±10% {p['within_10pct_all']:.1%} "
                     f"({per} within ±5%/±10%)")
    return lines
