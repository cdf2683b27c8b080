"""Figure 3 of HourNAS: params against FLOPs of architectures sampled at several temperatures."""

from __future__ import annotations

import numpy as np

from tfnas.cost.tables import CostTables
from tfnas.io import atomic_path
from tfnas.proposals.selector import Proposals

TAU_FACTORS = (4.0, 2.0, 1.0, 0.5)  # multiples of the proposals' own temperature


def plot_samples(proposals: Proposals, tables: CostTables, path: str, samples: int = 10000,
                 tau_factors=TAU_FACTORS, seed: int = 0, title: str | None = None) -> None:
    """Writes a PNG scatter of `samples` two-level draws per temperature, the targets marked
    (a ±5% box around them), over a grey cloud of uniformly random architectures."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    uniform = Proposals.uniform(proposals.space, proposals.ops, tables.legal)
    clouds = [("uniform over the space", uniform.sample(samples, rng), "0.65")]
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, len(tau_factors)))
    for factor, color in zip(tau_factors, colors):
        tau = proposals.tau * factor
        label = f"τ = {tau:.3g}" + (" (optimized for)" if factor == 1 else "")
        clouds.append((label, proposals.sample(samples, rng, tau), color))
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    for label, archs, color in clouds:
        cost = tables.batch_cost(archs)
        ax.scatter(cost["params"] / 1e6, cost["flops"] / 1e6, s=2, alpha=0.35, color=color,
                   label=label, rasterized=True, linewidths=0)
    targets = proposals.targets
    if "params" in targets and "flops" in targets:
        x, y = targets["params"] / 1e6, targets["flops"] / 1e6
        ax.add_patch(plt.Rectangle((x * 0.95, y * 0.95), x * 0.1, y * 0.1, fill=False,
                                   edgecolor="crimson", linestyle="--", label="target ±5%"))
        ax.plot([x], [y], marker="*", markersize=14, markerfacecolor="none",
                markeredgecolor="crimson", linestyle="none", label="target", zorder=5)
    else:
        for key, draw in (("params", ax.axvline), ("flops", ax.axhline)):
            if key in targets:
                draw(targets[key] / 1e6, color="crimson", linestyle="--", label=f"{key} target")
    ax.set_xlabel("params (M, count_params)")
    ax.set_ylabel("FLOPs (M multiply-adds at 224×224)")
    ax.set_title(title or f"{proposals.space}: {samples:,} samples per temperature, "
                          f"{proposals.num_proposals} proposals", fontsize=10)
    legend = ax.legend(loc="upper left", fontsize=8)
    for handle in legend.legend_handles:
        handle.set_alpha(1.0)
        if hasattr(handle, "set_sizes"):  # the scatter clouds' dots, readable in the legend
            handle.set_sizes([16])
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
