"""Perturbation scoring of the vital ops in merged against training-size batches, side by side.

  python bench/scoring_bench.py [--space=efficientnet --image_size=32 --width_multiplier=0.5
      --batch_size=32 --selection_batches=32 --rounds=3]

Builds the vital-only supernet of `--space` at the CPU defaults (every vital op weighted, as
the flagfiles' stage 1 runs it) and scores the vital ops with `perturbation_losses` on the
default offline data's first `--selection_batches` architecture batches, once in batches of
`--batch_size` and once merged as the search merges them (`SCORING_PIXELS`). The rounds
alternate (A B A B ...) after one untimed pass of each, which traces its step. Prints the
seconds per scoring pass of each, their ratio and the largest difference between the losses
(the same images, so only float rounding).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from tfnas import cli  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("space", "efficientnet", "Search space whose vital-only supernet is scored.")
flags.DEFINE_integer("image_size", 32, "Proxy resolution of the supernet and the images.")
flags.DEFINE_float("width_multiplier", 0.5, "Channel width multiplier of the supernet.")
flags.DEFINE_integer("batch_size", 32, "The training batch size: the unmerged scoring batches.")
flags.DEFINE_integer("selection_batches", 32,
                     "Architecture-split batches that score each op (the search's flag).")
flags.DEFINE_integer("rounds", 3, "Timed scoring passes over all vital ops, per batching.")


def main(_argv) -> None:
    import numpy as np
    import tensorflow as tf

    from tfnas.engine.scoring import perturbation_losses
    from tfnas.nn.supernet import SuperNet
    from tfnas.search.base import CommonConfig
    from tfnas.search.data import SearchData
    from tfnas.search.hournas import SCORING_PIXELS
    from tfnas.space import get_space

    space = get_space(FLAGS.space)
    cfg = CommonConfig(space=space, targets={}, image_size=FLAGS.image_size,
                       batch_size=FLAGS.batch_size)
    data = SearchData(cfg, tf.distribute.get_strategy())
    net = SuperNet(space, num_classes=data.num_classes,
                   input_shape=(cfg.image_size, cfg.image_size, 3),
                   width_multiplier=FLAGS.width_multiplier, vital_only=True)
    allowed = net.allowed_mask()
    weights = (allowed / allowed.sum(1, keepdims=True)).astype(np.float32)
    layers = [int(i) for i in np.flatnonzero(space.vital_mask())]
    merge = SCORING_PIXELS // (cfg.batch_size * cfg.image_size ** 2)
    count = FLAGS.selection_batches
    size = data.merged_batch_size(count, merge)
    runs = {f"batches of {cfg.batch_size}": (data.validation_batches(count), cfg.batch_size),
            f"merged, batches of {size}": (data.validation_batches(count, merge), size)}
    names = list(runs)
    passes = int(allowed[layers].sum())
    print(f"{space.name}: {len(layers)} vital layers, {passes} pinned passes over "
          f"{len(runs[names[0]][0]) * cfg.batch_size} images per scoring", flush=True)
    losses = {name: perturbation_losses(net, weights, layers, allowed, batches, size)
              for name, (batches, size) in runs.items()}  # traces each step
    seconds = {name: [] for name in runs}
    for _ in range(FLAGS.rounds):
        for name, (batches, size) in runs.items():
            t0 = time.perf_counter()
            perturbation_losses(net, weights, layers, allowed, batches, size)
            seconds[name].append(time.perf_counter() - t0)
    for name in names:
        print(f"  {name:<24} {statistics.median(seconds[name]):7.2f} s per scoring "
              f"(rounds {', '.join(f'{s:.2f}' for s in seconds[name])})")
    ratio = statistics.median(b / a for a, b in zip(seconds[names[0]], seconds[names[1]]))
    first, second = (losses[n] for n in names)
    ok = ~np.isnan(first)
    print(f"  merged / unmerged: {ratio:.2f} (median of the round pairs); largest loss "
          f"difference {np.max(np.abs(first[ok] - second[ok])):.2e}")


if __name__ == "__main__":
    cli.run(main)
