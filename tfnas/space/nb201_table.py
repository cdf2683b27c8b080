"""NAS-Bench-201 CIFAR-10 accuracies of all 15,625 cells, from the PyPI package
`analog-nasbench` (IBM's runs; `baseline_accuracy` is the full-precision test accuracy).

That package keys cells by 6-tuples in NASLib's edge order (1<-0, 2<-0, 3<-0, 2<-1, 3<-1,
3<-2) with its own op codes (0 skip, 1 none, 2 conv3x3, 3 conv1x1, 4 avgpool). Checked on
the table itself: under this edge order all 125 cells whose three edges into node 3 are
`none` score 10.0 (chance), under NAS-Bench-201's order those keys average 70.4; the best
cell is NAS-Bench-201's published best up to one edge. `accuracy_array()` re-indexes it by
our op indices in NAS-Bench-201's string order.
"""

from __future__ import annotations

import functools

import numpy as np

from tfnas.errors import TfnasError
from tfnas.space.genotype import Genotype
from tfnas.space.nb201 import EDGES, NB201_OPS

NASLIB_EDGES = ((1, 0), (2, 0), (3, 0), (2, 1), (3, 1), (3, 2))
NASLIB_OP_CODES = {"skip_connect": 0, "none": 1, "nor_conv_3x3": 2, "nor_conv_1x1": 3,
                   "avg_pool_3x3": 4}
NUM_CELLS = len(NB201_OPS) ** len(EDGES)


def naslib_key(op_indices) -> tuple[int, ...]:
    """analog-nasbench's key of a cell given as our op indices (NB201 string order)."""
    by_edge = dict(zip(EDGES, (NB201_OPS[int(i)] for i in op_indices)))
    return tuple(NASLIB_OP_CODES[by_edge[edge]] for edge in NASLIB_EDGES)


def flat_index(op_indices) -> int:
    """Position of a cell in `accuracy_array()`: base-5 digits, first edge most significant."""
    index = 0
    for i in op_indices:
        index = index * len(NB201_OPS) + int(i)
    return index


@functools.lru_cache(maxsize=1)
def accuracy_array() -> np.ndarray:
    """float64 [15625]: CIFAR-10 test accuracy (%) of every cell, by `flat_index`."""
    try:
        from analognasbench import AnalogNASBench
    except ImportError as e:
        raise TfnasError("the NAS-Bench-201 table needs the package analog-nasbench (pip "
                         "install analog-nasbench pandas 'setuptools<81', or the [nb201] extra "
                         f"of tfnas): {e}") from None
    data = AnalogNASBench().data
    acc = np.empty(NUM_CELLS)
    for index in range(NUM_CELLS):
        digits = np.unravel_index(index, (len(NB201_OPS),) * len(EDGES))
        acc[index] = float(data[naslib_key(digits)].baseline_accuracy)
    return acc


def accuracy(genotype: Genotype) -> float:
    """Test accuracy (%) of one nb201 genotype."""
    return float(accuracy_array()[flat_index(genotype.indices())])
