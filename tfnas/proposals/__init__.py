"""HourNAS space proposals (§3.3, eqs. 4-9): m sets of architecture logits Θ whose samples meet
resource targets, and the selector Π that picks among them.

    from tfnas.proposals import optimize_proposals, Proposals
    proposals = optimize_proposals(cost_tables(get_space("fbnet")),
                                   {"params": 4.8e6, "flops": 300e6})
    archs = proposals.sample(10000, seed=0)   # [N, L] op indices at proposals.tau

`optimize_proposals`, `ProposalObjective` and `masked_logits` need TensorFlow and load it on
first use; `Proposals`, `make_budget` and the rest are numpy only.
"""

from tfnas.proposals.budget import Budget, feasible_ranges, make_budget, parse_fixed
from tfnas.proposals.defaults import DEFAULT_TAU
from tfnas.proposals.selector import Proposals
from tfnas.proposals.stats import sample_report

_TENSORFLOW_EXPORTS = ("optimize_proposals", "ProposalObjective", "masked_logits")

__all__ = ["Budget", "DEFAULT_TAU", "Proposals", "feasible_ranges", "make_budget",
           "parse_fixed", "sample_report", *_TENSORFLOW_EXPORTS]


def __getattr__(name: str):
    if name in _TENSORFLOW_EXPORTS:  # lazily: the CLI's input errors must not wait for TF
        from tfnas.proposals import optimizer
        return getattr(optimizer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
