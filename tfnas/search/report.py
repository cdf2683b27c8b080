"""Search results: arch.json (SPEC §5), a readable summary, and the op-probability heatmap."""

from __future__ import annotations

import os
import textwrap
from typing import Any

import numpy as np

from tfnas.cost.tables import CostTables
from tfnas.io import atomic_path
from tfnas.space.genotype import Genotype


def result_record(genotype: Genotype, tables: CostTables, targets: dict[str, float],
                  extra: dict[str, Any]) -> dict[str, Any]:
    cost = tables.cost(genotype)
    record: dict[str, Any] = {"space": genotype.space, "arch": str(genotype),
                              "params": int(round(cost["params"])),
                              "flops": int(round(cost["flops"]))}
    if "latency_ms" in cost:
        record["latency_ms"] = round(cost["latency_ms"], 4)
    record["targets"] = dict(targets)
    record["deviation"] = {k: round(cost[k] / v - 1, 5) for k, v in targets.items()}
    record.update(extra)
    return record


def summary_table(record: dict[str, Any], layer_names: list[str], vital: np.ndarray) -> str:
    ops = record["arch"].split(",")
    wide = max(10, *map(len, layer_names))
    op_wide = max(9, *map(len, ops))
    lines = [f"searched architecture ({record['space']}):",
             f"  {'layer':<{wide}} {'op':<{op_wide}}{' vital' if vital.any() else ''}".rstrip()]
    losses = record.get("vital_losses", {})
    probs = record.get("vital_probabilities", {})
    lines += [f"  {name:<{wide}} {op:<{op_wide}} "
              f"{_vital_note(losses.get(name), probs.get(name), op) if v else ''}".rstrip()
              for name, op, v in zip(layer_names, ops, vital)]
    targets = record.get("targets", {})
    for key in list(targets) + [k for k in ("params", "flops") if k not in targets]:
        value = record.get(key, 0)
        unit = "" if key != "latency_ms" else " ms"
        line = f"  {key:<{wide}} {_fmt(value)}{unit}"
        if key in targets:
            line += (f"  target {_fmt(targets[key])}{unit}  "
                     f"({record['deviation'][key]:+.1%})")
        lines.append(line)
    if "nb201_string" in record:
        lines.append(f"  {'nb201':<{wide}} {record['nb201_string']}")
    for stage, info in record.get("stages", {}).items():
        lines.append(f"  stage {stage:<{wide}} {info['seconds']:.1f} s")
    return "\n".join(lines)


def _vital_note(losses: dict[str, float] | None, probs: dict[str, float] | None,
                op: str) -> str:
    """'yes', with what ranked the op after stage 1 (its validation loss when pinned, else
    its probability) and its rank, when recorded."""
    if losses and op in losses:
        rank = sorted(losses.values()).index(losses[op]) + 1
        return f"yes  stage 1: val loss {losses[op]:.3f}, rank {rank} of {len(losses)}"
    if probs and op in probs:
        rank = sorted(probs.values(), reverse=True).index(probs[op]) + 1
        return f"yes  stage 1: p {probs[op]:.3f}, rank {rank} of {len(probs)}"
    return "yes"


def _fmt(v: float) -> str:
    return f"{v / 1e6:.3f}M" if abs(v) >= 1e5 else f"{v:.3f}"


def plot_probabilities(path: str, probs: np.ndarray, allowed: np.ndarray, ops: list[str],
                       layer_names: list[str], vital: np.ndarray, chosen: list[int],
                       title: str) -> None:
    """Heatmap of the final op probabilities per layer; the chosen op is outlined."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = np.ma.masked_where(~allowed, probs)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(ops), 1.2 + 0.32 * len(layer_names)))
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("#dddddd")
    im = ax.imshow(shown, cmap=cmap, vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(ops)), ops, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(layer_names)),
                  [f"{n}{' *' if v else ''}" for n, v in zip(layer_names, vital)], fontsize=8)
    for row, col in enumerate(chosen):
        ax.add_patch(plt.Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, ec="red", lw=1.5))
    width = fig.get_size_inches()[0]
    ax.set_title("\n".join(textwrap.wrap(title, max(30, int(width * 13)))), fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04).set_label(
        "probability (grey: illegal op)", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:  # tight: long titles and labels are not cut off
        fig.savefig(tmp, dpi=110, format=os.path.splitext(path)[1][1:] or "png",
                    bbox_inches="tight")
    plt.close(fig)
