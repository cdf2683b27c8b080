"""Prints the README's table: published HourNAS architectures, paper vs tfnas Params/FLOPs.

  python bench/published_table.py
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tfnas.cost.tables import cost_tables  # noqa: E402
from tfnas.space import get_space  # noqa: E402
from tfnas.space.published import PUBLISHED  # noqa: E402


def main() -> None:
    print("| architecture | space | table | params (paper) | params (tfnas) | Δ | "
          "FLOPs (paper) | FLOPs (tfnas) | Δ |")
    print("|---|---|---|---|---|---|---|---|---|")
    for p in PUBLISHED.values():
        c = cost_tables(get_space(p.space)).cost(p.genotype())
        params, flops = c["params"] / 1e6, c["flops"] / 1e6
        print(f"| {p.name} | {p.space} | {p.table} | {p.params_m:.1f}M | {params:.3f}M | "
              f"{params / p.params_m - 1:+.1%} | {p.flops_m:.0f}M | {flops:.1f}M | "
              f"{flops / p.flops_m - 1:+.2%} |")


if __name__ == "__main__":
    main()
