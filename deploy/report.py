"""Latency against FLOPs: the searched net, random samples of its space and reference nets.

  python -m deploy.report DIR [--samples=10] [--lut=lut.json]

DIR holds the search's arch.json. Every net is built at 224x224 with 1000 classes, converted
to fp32 .tflite and timed on the host (LiteRT + XNNPACK); the references are
keras.applications MobileNetV2 and EfficientNetB0 built untrained (weights=None). Writes
DIR/latency_vs_flops.png, DIR/latency_report.md and DIR/latency_report.json.
"""

from __future__ import annotations

import os

from absl import flags

from tfnas import cli
from tfnas.errors import TfnasError

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The CLI's flags (defined only when run as a program, so the module imports cleanly)."""
    flags.DEFINE_string("dir", None, "The directory of arch.json; also the first argument.")
    flags.DEFINE_integer("samples", 10, "Random architectures of the searched net's space.")
    flags.DEFINE_integer("seed", 0, "Seed of the random architectures.")
    flags.DEFINE_integer("threads", 1, "Interpreter threads.")
    flags.DEFINE_integer("runs", 30, "Timed runs per net.")
    flags.DEFINE_string("lut", None, "A latency table of the space (deploy.lut): adds the "
                        "predicted latency of each net of the space.")

RESOLUTION, CLASSES = 224, 1000


def reference_builders() -> dict[str, object]:
    import keras

    shape = (RESOLUTION, RESOLUTION, 3)
    return {"MobileNetV2": lambda: keras.applications.MobileNetV2(
                input_shape=shape, weights=None, classes=CLASSES),
            "EfficientNetB0": lambda: keras.applications.EfficientNetB0(
                input_shape=shape, weights=None, classes=CLASSES)}


def collect(arch_path: str, samples: int, seed: int, threads: int, runs: int,
            lut_path: str | None) -> list[dict]:
    from deploy.export import read_arch
    from deploy.lut import (genotype_builders, load_lut, mbconv_space, predict_ms,
                            random_genotypes, time_builders)
    from tfnas.cost.keras_count import count_flops
    from tfnas.cost.tables import cost_tables

    searched = read_arch(arch_path)
    space = mbconv_space(searched.space, 1.0)
    lut = load_lut(lut_path) if lut_path else None
    if lut and (lut["space"], lut["resolution"], lut["width_multiplier"]) != (
            space.name, RESOLUTION, 1.0):
        raise TfnasError(f"{lut_path} is for {lut['space']} at {lut['resolution']} px, width "
                         f"{lut['width_multiplier']}; the report needs {space.name} at 224")
    genotypes = [searched] + random_genotypes(space, samples, seed)
    builders = genotype_builders(space, genotypes, RESOLUTION, CLASSES)
    refs = reference_builders()
    flops = {name: count_flops(build()) for name, build in refs.items()}
    timed = time_builders({**builders, **refs}, threads, runs, label="report")
    tables = cost_tables(space)
    rows = []
    for (key, result), g in zip(list(timed.items())[:len(genotypes)], genotypes):
        rows.append({"net": "searched" if g is searched and key.startswith("0:") else "random",
                     "space": space.name, "arch": str(g),
                     "flops": int(tables.cost(g)["flops"]),
                     "median_ms": result["median_ms"], "p90_ms": result["p90_ms"],
                     "predicted_ms": predict_ms(lut, g) if lut else None})
    for name in refs:
        rows.append({"net": name, "space": None, "arch": None, "flops": int(flops[name]),
                     "median_ms": timed[name]["median_ms"], "p90_ms": timed[name]["p90_ms"],
                     "predicted_ms": None})
    return rows


def plot(rows: list[dict], path: str, threads: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    random = [r for r in rows if r["net"] == "random"]
    ax.scatter([r["flops"] / 1e6 for r in random], [r["median_ms"] for r in random],
               c="0.6", label="random samples")
    for r in rows:
        if r["net"] != "random":
            ax.scatter(r["flops"] / 1e6, r["median_ms"], s=70,
                       marker="*" if r["net"] == "searched" else "s", label=r["net"])
    ax.set_xlabel("FLOPs (M multiply-adds, 224x224)")
    ax.set_ylabel(f"host latency, median ms ({threads} thread)")
    ax.set_title("fp32 TFLite, LiteRT + XNNPACK")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def setting(threads: int, runs: int, lut: str | None) -> dict:
    """How every net of the report was built and timed."""
    return {"resolution": RESOLUTION, "num_classes": CLASSES, "weights": "untrained",
            "format": "fp32 .tflite", "target": "host (LiteRT, XNNPACK)", "threads": threads,
            "runs": runs, "lut": lut}


def markdown(rows: list[dict], how: dict) -> str:
    """The report's table, after a line that says how the nets were built and timed."""
    lut = how["lut"] is not None
    lines = [f"Every net built at {how['resolution']}x{how['resolution']} with "
             f"{how['num_classes']} classes and untrained weights, converted to "
             f"{how['format']} and timed on the {how['target']} with {how['threads']} "
             f"thread(s), {how['runs']} runs" + (f"; LUT ms: predicted by {how['lut']}"
                                                  if lut else "") + ".", "",
             "| net | MFLOPs | median ms | p90 ms |" + (" LUT ms |" if lut else ""),
             "|---|---:|---:|---:|" + ("---:|" if lut else "")]
    for r in sorted(rows, key=lambda r: r["flops"]):
        pred = f" {r['predicted_ms']:.2f} |" if r["predicted_ms"] is not None else " |"
        lines.append(f"| {r['net']} | {r['flops'] / 1e6:.0f} | {r['median_ms']:.2f} | "
                     f"{r['p90_ms']:.2f} |" + (pred if lut else ""))
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    directory = FLAGS.dir
    if not directory:
        raise TfnasError("usage: python -m deploy.report DIR (the directory of arch.json)")
    if not os.path.isdir(directory):
        raise TfnasError(f"{directory} is not a directory")
    if FLAGS.samples < 0 or FLAGS.threads < 1 or FLAGS.runs < 1:
        raise TfnasError("--samples must be >= 0, --threads and --runs >= 1")
    from deploy.export import read_arch

    arch_path = os.path.join(directory, "arch.json")
    read_arch(arch_path)  # a bad arch file is one line before TensorFlow loads
    from tfnas.cli import import_tensorflow
    from tfnas.io import write_json, write_text

    import_tensorflow()
    rows = collect(arch_path, FLAGS.samples, FLAGS.seed, FLAGS.threads, FLAGS.runs, FLAGS.lut)
    how = setting(FLAGS.threads, FLAGS.runs, FLAGS.lut)
    paths = [os.path.join(directory, name) for name in
             ("latency_vs_flops.png", "latency_report.md", "latency_report.json")]
    plot(rows, paths[0], FLAGS.threads)
    table = markdown(rows, how)
    write_text(paths[1], table)
    write_json(paths[2], {"setting": how, "nets": rows})
    print(table + f"wrote {', '.join(paths)}")
    return 0


if __name__ == "__main__":
    define_flags()
    cli.run(main, positional="dir")
