"""Describe an architecture: per-layer table and exact params/FLOPs at 224x224, 1000 classes.

  python -m tfnas.describe --space=efficientnet --arch=HourNAS-F
  python -m tfnas.describe --space=fbnet --arch=k3e1,k5e6,...  --json
"""

from __future__ import annotations

import json
import math

from absl import flags

from tfnas import cli
from tfnas.cost import analytic
from tfnas.cost.tables import cost_tables
from tfnas.errors import TfnasError
from tfnas.space import get_space, list_spaces
from tfnas.space.genotype import load_genotype
from tfnas.space.mbconv import MBConvSpace
from tfnas.space.published import PUBLISHED

FLAGS = flags.FLAGS
flags.DEFINE_string("space", None, f"Search space, one of: {', '.join(list_spaces())}.")
flags.DEFINE_string(
    "arch", None,
    "Architecture: comma-separated op names, one per searchable layer in order, or the name "
    f"of a published architecture ({', '.join(PUBLISHED)}), or a path to an arch.json file "
    "(or to the directory holding it).")
flags.DEFINE_bool("json", False, "Print one JSON object instead of the table.")
flags.DEFINE_integer("resolution", None, "Input resolution the costs are counted at "
                     "(default: the space's deployment input, 224 for the MBConv spaces).")
flags.DEFINE_integer("num_classes", None, "Classes of the fc layer the costs are counted with "
                     "(default: the space's, 1000 for the MBConv spaces).")


def describe(genotype, resolution: int | None = None, num_classes: int | None = None) -> dict:
    space = get_space(genotype.space)
    if not isinstance(space, MBConvSpace):
        tables = cost_tables(space, resolution, num_classes)
        return {"space": space.name, "arch": str(genotype), **{
            k: int(round(v)) for k, v in tables.cost(genotype).items()}, **{
            k: tables.setting[k] for k in ("resolution", "num_classes") if k in tables.setting}}
    resolution, num_classes = resolution or 224, num_classes or 1000
    rows = []
    r = math.ceil(resolution / space.stem_stride)
    stem = analytic.conv(3, space.stem_channels, 3, r)
    rows.append(dict(layer="stem", op="conv3x3", vital=False,
                     out_shape=[r, r, space.stem_channels], params=stem.params, flops=stem.flops))
    fixed = [(layer, layer.fixed_op, False) for layer in space.fixed_layers]
    for layer, op, searchable in fixed + [(l, o, True) for l, o in
                                          zip(space.layers, genotype.ops)]:
        c = analytic.block_cost(op, layer.in_channels, layer.out_channels, layer.stride, r)
        r = math.ceil(r / layer.stride)
        rows.append(dict(layer=layer.name, op=op if searchable else f"{op} (fixed)",
                         vital=layer.vital, out_shape=[r, r, layer.out_channels],
                         params=c.params, flops=c.flops))
    head = analytic.conv(space.last_channels, space.head_channels, 1, r)
    fc = analytic.dense(space.head_channels, num_classes)
    rows.append(dict(layer="head", op="conv1x1", vital=False,
                     out_shape=[r, r, space.head_channels], params=head.params, flops=head.flops))
    rows.append(dict(layer="fc", op="pool+dense", vital=False, out_shape=[num_classes],
                     params=fc.params, flops=fc.flops))
    total = cost_tables(space, resolution, num_classes).cost(genotype)
    assert sum(row["params"] for row in rows) == total["params"]  # same model, two paths
    return {"space": space.name, "arch": str(genotype), "params": int(total["params"]),
            "flops": int(total["flops"]), "resolution": resolution, "num_classes": num_classes,
            "layers": rows}


def format_table(info: dict) -> str:
    lines = [f"space {info['space']}  arch {info['arch']}",
             f"{'layer':<10} {'op':<14} {'vital':<5} {'out shape':<15} {'params':>10} "
             f"{'MFLOPs':>9}"]
    for row in info.get("layers", []):
        shape = "x".join(str(d) for d in row["out_shape"])
        lines.append(f"{row['layer']:<10} {row['op']:<14} {'yes' if row['vital'] else '':<5} "
                     f"{shape:<15} {row['params']:>10,} {row['flops'] / 1e6:>9.2f}")
    lines.append(f"{'total':<47} {info['params']:>10,} {info['flops'] / 1e6:>9.2f}")
    lines.append(f"params {info['params'] / 1e6:.3f}M (count_params, BN statistics included), "
                 f"FLOPs {info['flops'] / 1e6:.1f}M multiply-adds"
                 + (f" at {info['resolution']}x{info['resolution']}" if "resolution" in info
                    else ""))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not FLAGS.arch:
        raise TfnasError("--arch is required")
    if ((FLAGS.resolution is not None and FLAGS.resolution < 8)
            or (FLAGS.num_classes is not None and FLAGS.num_classes < 1)):
        raise TfnasError("--resolution must be >= 8 and --num_classes >= 1")
    if FLAGS.space:
        get_space(FLAGS.space)  # unknown space before anything else
    genotype = load_genotype(FLAGS.arch, FLAGS.space)
    info = describe(genotype, FLAGS.resolution, FLAGS.num_classes)
    print(json.dumps(info) if FLAGS.json else format_table(info))
    return 0


if __name__ == "__main__":
    cli.run(main)
