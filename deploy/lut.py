"""Per-(layer, op) latency lookup table of an MBConv space, and its validation.

  python -m deploy.lut --space=fbnet --target=host --resolution=224 --out=lut.json
  python -m deploy.lut --validate=lut.json --samples=50 --json

Every block is timed alone at its input shape (fp32 .tflite, LiteRT + XNNPACK, a fresh worker
per batch, `--repeats` passes pooled); an entry is the minimum over its runs by default
(`--statistic`), and validation measures whole nets with the table's statistic. Keys describe
the block as once-for-all's tables do, so identical blocks (the repeated layers of a stage)
are converted and timed once. The table is then scaled to `--calibrate` whole random nets
(a block alone does not run at the speed it runs at inside a net). The invoke overhead of the runtime
(timed on an empty model in every worker) is taken out of each block and counted once in the
constant, with the stem (and fixed blocks) and the head. Predicted latency of an architecture
= constant + the sum of its entries; `skip` costs 0. The file carries {"space", "ops", "table",
"constant_ms"} for `tfnas.cost.tables.load_latency_table` plus the entries' statistics.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
import time
from typing import Callable

import numpy as np
from absl import flags

from tfnas import cli
from tfnas.cli import import_tensorflow
from tfnas.cost.tables import block_resolutions  # fixed blocks, layers, head
from tfnas.errors import TfnasError
from tfnas.io import atomic_path, check_output_path, read_json, write_json
from tfnas.progress import Progress
from tfnas.space import get_space, list_spaces
from tfnas.space.genotype import Genotype, parse_genotype
from tfnas.space.mbconv import MBConvSpace
from tfnas.space.ops import parse_op

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The CLI's flags (defined only when run as a program, so the module imports cleanly)."""
    flags.DEFINE_string("space", None,
                        f"Search space to tabulate, one of: {', '.join(list_spaces())}.")
    flags.DEFINE_string("target", "host", "Where blocks are timed: 'host' (LiteRT + XNNPACK on "
                        "this machine). Phones: build the table on the device with "
                        "benchmark_model.")
    flags.DEFINE_integer("resolution", 224, "Input resolution of the whole network.")
    flags.DEFINE_float("width", 1.0, "Width multiplier of the space's channels.")
    flags.DEFINE_integer("num_classes", 1000, "Classes of the head's fc layer.")
    flags.DEFINE_integer("threads", 1, "Interpreter threads.")
    flags.DEFINE_integer("runs", 30, "Timed invocations per block (after warm-up).")
    flags.DEFINE_integer("repeats", 3, "Independent worker passes over all blocks (and over the "
                         "nets of --validate); samples of all passes are pooled, which evens out "
                         "bursts of load on a shared machine.")
    flags.DEFINE_enum("statistic", "min", ["min", "median"],
                      "Latency statistic of each entry (a new table; --validate uses the "
                      "table's). The minimum over all timed runs is what a block costs when "
                      "nothing interferes; on a shared CPU the median of a burst of runs moves "
                      "by 15-20% between passes, and the minimum over several passes spread in "
                      "time is the steadier figure.")
    flags.DEFINE_integer("per_worker", 32, "Models timed per fresh worker process.")
    flags.DEFINE_integer("calibrate", 20,
                         "Random whole nets timed to calibrate the table (0: raw sums). A block "
                         "timed alone does not run at its speed inside a net (caches hold other "
                         "blocks' weights there; fbnet's blocks alone were 13% faster, "
                         "efficientnet's 5% slower on the README's host); the table is scaled "
                         "by the median ratio of measured to summed latency of these nets. They "
                         "are drawn with seed 1, so validate with another --seed.")
    flags.DEFINE_string("cache_dir", None,
                        "Keep the converted whole nets of --calibrate and --validate here and "
                        "reuse them (a 224 px net takes several seconds to convert).")
    flags.DEFINE_string("out", None, "Where to write the table (JSON). If it already holds a "
                        "table built with the same settings, only the blocks it lacks are "
                        "timed; any other existing file is an error (never replaced).")
    flags.DEFINE_string("validate", None, "A table to validate: time --samples random whole "
                        "architectures and compare them with the table's prediction.")
    flags.DEFINE_integer("samples", 50, "Random architectures measured by --validate.")
    flags.DEFINE_integer("seed", 0, "Seed of the random architectures of --validate (the "
                         "calibration nets use seed 1).")
    flags.DEFINE_bool("reanchor", False,
                      "With --validate: also time the table's calibration nets, shuffled in "
                      "among the validation nets, and report the errors again with the table "
                      "rescaled to the machine's speed now. On a shared host the whole "
                      "machine drifts by 5-16% within minutes (measured); this separates that "
                      "drift from the table's own error.")
    flags.DEFINE_bool("json", False, "Print one JSON object.")


TARGETS = ("host",)
CALIBRATION_SEED = 1


# ---------------------------------------------------------------------- what to time

def block_key(op: str, in_res: int, cin: int, cout: int, stride: int, act: str) -> str | None:
    """Once-for-all style description of a block; None for `skip` (it costs nothing)."""
    spec = parse_op(op)
    if spec.is_skip:
        return None
    out_res = math.ceil(in_res / stride)
    skip = int(stride == 1 and cin == cout)
    return (f"{spec.kind}-input:{in_res}x{in_res}x{cin}-output:{out_res}x{out_res}x{cout}-"
            f"expand:{spec.expansion}-kernel:{spec.kernel}-stride:{stride}-"
            f"groups:{spec.groups}-se:{int(spec.se)}-idskip:{skip}-act:{act}")


def layer_keys(space: MBConvSpace, resolution: int) -> list[list[str | None]]:
    """[L][O] block keys (None: skip or illegal)."""
    res = block_resolutions(space, resolution)[len(space.fixed_layers):]
    return [[block_key(op, r, layer.in_channels, layer.out_channels, layer.stride,
                       space.activation) if op in layer.legal_ops else None
             for op in space.ops] for layer, r in zip(space.layers, res)]


def block_models(space: MBConvSpace, resolution: int,
                 num_classes: int) -> dict[str, Callable]:
    """Key -> builder of the Keras model timing it: each unique block, stem, head, overhead."""
    import keras

    from tfnas.nn import blocks

    res = block_resolutions(space, resolution)
    act = space.activation

    def single(in_shape, apply):
        def build():
            x = keras.Input(in_shape, batch_size=1)
            return keras.Model(x, apply(x))
        return build

    def block(op, layer, r):
        return single((r, r, layer.in_channels), lambda x: blocks.BlockLayers(
            op, layer.in_channels, layer.out_channels, layer.stride, act, "b", (r, r))(x))

    def stem(x):
        x = blocks.apply_sequence(blocks.stem_layers(space.stem_channels, act), x)
        for layer, r in zip(space.fixed_layers, res):
            x = blocks.BlockLayers(layer.fixed_op, layer.in_channels, layer.out_channels,
                                   layer.stride, act, layer.name, (r, r))(x)
        return x

    head_res = res[-1]
    builders = {
        "overhead": single((1, 1, 8), lambda x: keras.layers.ReLU()(x)),
        f"stem-input:{resolution}x{resolution}x3-fixed:{len(space.fixed_layers)}":
            single((resolution, resolution, 3), stem),
        f"head-input:{head_res}x{head_res}x{space.last_channels}-conv:{space.head_channels}-"
        f"classes:{num_classes}": single(
            (head_res, head_res, space.last_channels), lambda x: blocks.apply_sequence(
                blocks.head_layers(space.head_channels, num_classes, act), x)),
    }
    for layer, keys, r in zip(space.layers, layer_keys(space, resolution),
                              res[len(space.fixed_layers):]):
        for op, key in zip(space.ops, keys):
            if key is not None and key not in builders:
                builders[key] = block(op, layer, r)
    return builders


# ---------------------------------------------------------------------- building the table

def mbconv_space(name: str, width: float) -> MBConvSpace:
    space = get_space(name)
    if not isinstance(space, MBConvSpace):
        raise TfnasError(f"latency tables and reports cover the MBConv spaces; {name!r} is not "
                         "one")
    if not 0.0 < width <= 4.0:
        raise TfnasError(f"--width must be in (0, 4], got {width}")
    return space.with_width(width) if width != 1.0 else space


def convert_files(builders: dict[str, Callable], directory: str, label: str,
                  cached: dict[str, str] | None = None) -> dict[str, str]:
    """Converts each builder's model to fp32 .tflite in `directory`; key -> path.

    `cached` maps keys to files that are reused when they exist and written (atomically)
    when they do not.
    """
    from deploy.convert import to_tflite

    paths = {}
    cached = cached or {}
    bar = Progress(f"{label}: converting", len(builders), stream=sys.stderr)
    for i, (key, build) in enumerate(builders.items()):
        path = cached.get(key) or os.path.join(directory, f"m{i:04d}.tflite")
        if not (key in cached and os.path.exists(path)):
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                f.write(to_tflite(build()))
        paths[key] = path
        bar.update(i + 1)
    return paths


def net_cache(cache_dir: str | None, space: MBConvSpace, genotypes: list[Genotype],
              resolution: int, num_classes: int) -> dict[str, str]:
    """Cache files of the whole nets of `genotype_builders` (none without a directory)."""
    if not cache_dir:
        return {}
    import tensorflow as tf

    os.makedirs(cache_dir, exist_ok=True)
    keys = genotype_builders(space, genotypes, resolution, num_classes)
    names = {}
    for key, g in zip(keys, genotypes):
        what = (f"{space.name}|{resolution}|{space.width_multiplier}|{num_classes}|{g}|"
                f"tf{tf.__version__}")
        digest = hashlib.sha1(what.encode()).hexdigest()[:20]
        names[key] = os.path.join(cache_dir, f"{space.name}-{resolution}-{digest}.tflite")
    return names


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure_entries(builders: dict[str, Callable], threads: int, runs: int, repeats: int,
                    per_worker: int) -> tuple[dict[str, dict], float]:
    """Times every builder's model; key -> stats (overhead removed) and the overhead in ms."""
    from deploy.timing import summarize, time_files

    samples: dict[str, list[float]] = {k: [] for k in builders if k != "overhead"}
    overhead: list[float] = []
    with tempfile.TemporaryDirectory(prefix="tfnas_lut_") as tmp:
        paths = convert_files(builders, tmp, "lut")
        keys = list(samples)
        rng = np.random.default_rng(0)
        for rep in range(repeats):
            order = [keys[i] for i in rng.permutation(len(keys))]
            bar = Progress(f"lut: timing, pass {rep + 1}/{repeats}", len(order),
                           stream=sys.stderr)
            results = time_files([paths[k] for k in order], threads, runs,
                                 per_worker=per_worker, prefix=[paths["overhead"]],
                                 progress=lambda i, n, bar=bar: bar.update(i))
            for key, result in zip(order, results):
                over = result["prefix"][0]["median_ms"]
                overhead.extend(result["prefix"][0]["samples_ms"])
                samples[key].extend(max(0.0, s - over) for s in result["samples_ms"])
    return {k: summarize(v) for k, v in samples.items()}, float(np.median(overhead))


def build_table(space: MBConvSpace, resolution: int, num_classes: int, threads: int,
                runs: int, repeats: int, per_worker: int, previous: dict | None = None,
                statistic: str = "min", calibrate: int = 20,
                cache_dir: str | None = None) -> dict:
    """Times the blocks (those `previous` lacks), then calibrates on `calibrate` nets."""
    builders = block_models(space, resolution, num_classes)
    done = dict(previous.get("entries", {})) if previous else {}
    todo = {k: b for k, b in builders.items() if k == "overhead" or k not in done}
    _progress(f"lut: {space.name}: {len(builders) - 1} distinct blocks (stem and head "
              f"included) for {space.num_layers} x {space.num_ops} entries; "
              f"{len(todo) - 1} to time")
    entries, overhead = measure_entries(todo, threads, runs, repeats, per_worker) \
        if len(todo) > 1 else ({}, previous["overhead_ms"])
    entries = {**done, **entries}
    keys = layer_keys(space, resolution)
    stat = f"{statistic}_ms"
    stem_key, head_key = list(builders)[1:3]
    lut = {"space": space.name, "ops": list(space.ops),
           "table": [[entries[k][stat] if k else 0.0 for k in row] for row in keys],
           "constant_ms": entries[stem_key][stat] + entries[head_key][stat] + overhead,
           "target": "host", "threads": threads, "resolution": resolution,
           "width_multiplier": space.width_multiplier, "num_classes": num_classes,
           "statistic": statistic, "overhead_ms": overhead, "stem": stem_key,
           "head": head_key, "layers": keys, "entries": entries}
    calibration = (previous or {}).get("calibration")
    if calibrate and not (calibration and calibration["nets"] == calibrate
                          and calibration["statistic"] == statistic and len(todo) == 1):
        calibration = calibrate_scale(lut, space, calibrate, runs, repeats, per_worker,
                                      cache_dir)
    scale = calibration["scale"] if calibrate else 1.0
    lut["table"] = [[round(v * scale, 5) for v in row] for row in lut["table"]]
    lut["constant_ms"] = round(lut["constant_ms"] * scale, 5)
    lut["calibration"] = calibration if calibrate else None
    return lut


def calibrate_scale(raw: dict, space: MBConvSpace, nets: int, runs: int, repeats: int,
                    per_worker: int, cache_dir: str | None = None) -> dict:
    """Times `nets` random whole nets; the median ratio of measured to summed latency."""
    genotypes = random_genotypes(space, nets, CALIBRATION_SEED)
    measured = measure_nets(space, genotypes, raw, runs, repeats, per_worker, cache_dir,
                            "calibration")
    summed = np.array([predict_ms(raw, g) for g in genotypes])
    ratios = measured / summed
    _progress(f"lut: calibration on {nets} nets: measured / summed = {np.median(ratios):.3f} "
              f"(spread {np.percentile(ratios, 10):.3f}-{np.percentile(ratios, 90):.3f})")
    return {"nets": nets, "seed": CALIBRATION_SEED, "statistic": raw["statistic"],
            "scale": float(np.median(ratios)),
            "archs": [{"arch": str(g), "measured_ms": float(m), "summed_ms": float(p)}
                      for g, m, p in zip(genotypes, measured, summed)]}


def measure_nets(space: MBConvSpace, genotypes: list[Genotype], lut: dict, runs: int,
                 repeats: int, per_worker: int = 10, cache_dir: str | None = None,
                 label: str = "nets") -> np.ndarray:
    """Latency (the table's statistic) of each whole net, at the table's settings."""
    builders = genotype_builders(space, genotypes, lut["resolution"], lut["num_classes"])
    cached = net_cache(cache_dir, space, genotypes, lut["resolution"], lut["num_classes"])
    results = time_builders(builders, lut["threads"], runs, per_worker, label, repeats, cached)
    stat = f"{lut.get('statistic', 'median')}_ms"
    return np.array([results[k][stat] for k in builders])


# ---------------------------------------------------------------------- validation

def random_genotypes(space: MBConvSpace, n: int, seed: int) -> list[Genotype]:
    """Uniformly random legal architectures."""
    rng = np.random.default_rng(seed)
    legal = space.legal_mask()
    return [Genotype.from_indices(space, [rng.choice(np.flatnonzero(row)) for row in legal])
            for _ in range(n)]


def predict_ms(lut: dict, genotype: Genotype) -> float:
    ops = lut["ops"]
    return lut["constant_ms"] + sum(row[ops.index(op)] for row, op in
                                    zip(lut["table"], genotype.ops))


def load_lut(path: str) -> dict:
    """Reads a table written by this module (one clear line if it is not one)."""
    from tfnas.cost.tables import load_latency_table

    lut = read_json(path, "latency table")
    needed = ("space", "ops", "table", "constant_ms", "resolution", "width_multiplier",
              "num_classes", "threads")
    if not isinstance(lut, dict) or any(k not in lut for k in needed):
        raise TfnasError(f"{path} is not a table written by deploy.lut (needs {needed})")
    space = mbconv_space(lut["space"], lut["width_multiplier"])
    load_latency_table(path, space.name, space.ops, space.num_layers)  # shape check
    return lut


def time_builders(builders: dict[str, Callable], threads: int, runs: int,
                  per_worker: int = 10, label: str = "nets", repeats: int = 1,
                  cached: dict[str, str] | None = None) -> dict[str, dict]:
    """Builds, converts (fp32) and times whole models, pooling the samples of `repeats`
    passes; key -> timing statistics."""
    from deploy.timing import summarize, time_files

    samples: dict[str, list[float]] = {k: [] for k in builders}
    with tempfile.TemporaryDirectory(prefix="tfnas_nets_") as tmp:
        paths = convert_files(builders, tmp, label, cached)
        for rep in range(repeats):
            bar = Progress(f"{label}: timing, pass {rep + 1}/{repeats}", len(paths),
                           stream=sys.stderr)
            results = time_files(list(paths.values()), threads, runs, per_worker=per_worker,
                                 progress=lambda i, n, bar=bar: bar.update(i))
            for key, result in zip(paths, results):
                samples[key].extend(result["samples_ms"])
    return {k: summarize(v) for k, v in samples.items()}


def genotype_builders(space: MBConvSpace, genotypes: list[Genotype], resolution: int,
                      num_classes: int) -> dict[str, Callable]:
    from tfnas.nn.builder import build_model

    return {f"{i}:{g}": (lambda g=g: build_model(space, g, num_classes,
                                                 (resolution, resolution, 3)))
            for i, g in enumerate(genotypes)}


def validate(path: str, samples: int, seed: int, runs: int, repeats: int = 3,
             cache_dir: str | None = None, reanchor: bool = False) -> dict:
    """Times `samples` random whole nets with the table's statistic; prediction errors.

    `reanchor`: also times the table's calibration nets, shuffled in among the validation nets
    (same passes, same minutes), and reports the errors a second time with the table rescaled
    to the machine's speed now (`reanchored`). The nets validated are never the calibration
    nets; what the rescale removes is the drift of the whole machine between building the table
    and validating it.
    """
    lut = load_lut(path)
    calibration = lut.get("calibration") or {}
    if calibration.get("seed") == seed:
        raise TfnasError(f"--seed {seed} draws the nets {path} was calibrated on; validate "
                         "with another seed")
    if reanchor and not calibration.get("archs"):
        raise TfnasError(f"{path} has no calibration nets to re-anchor on (built with "
                         "--calibrate=0)")
    space = mbconv_space(lut["space"], lut["width_multiplier"])
    genotypes = random_genotypes(space, samples, seed)
    anchors = [parse_genotype(space, a["arch"]) for a in calibration["archs"]] if reanchor \
        else []
    nets = genotypes + anchors
    order = np.random.default_rng(seed).permutation(len(nets))
    start = time.time()
    timed = measure_nets(space, [nets[i] for i in order], lut, runs, repeats,
                         cache_dir=cache_dir)
    measured_all = np.empty(len(nets))
    measured_all[order] = timed
    measured = measured_all[:samples]
    predicted = np.array([predict_ms(lut, g) for g in genotypes])
    info = {"space": space.name, "lut": path, "samples": samples, "threads": lut["threads"],
            "statistic": lut.get("statistic", "median"), "repeats": repeats,
            "scale": calibration.get("scale", 1.0),
            "resolution": lut["resolution"], "width_multiplier": lut["width_multiplier"],
            **_errors(predicted, measured), "seconds": round(time.time() - start, 1),
            "archs": [{"arch": str(g), "measured_ms": float(m), "predicted_ms": float(p)}
                      for g, m, p in zip(genotypes, measured, predicted)]}
    if reanchor:
        summed = np.array([a["summed_ms"] for a in calibration["archs"]])
        scale_now = float(np.median(measured_all[samples:] / summed))
        factor = scale_now / calibration["scale"]
        info["reanchored"] = {"calibration_nets": len(anchors), "scale_now": scale_now,
                              "factor": factor, **_errors(predicted * factor, measured)}
    return info


def _errors(predicted: np.ndarray, measured: np.ndarray) -> dict:
    rel = (predicted - measured) / measured
    return {"rmse_ms": float(np.sqrt(np.mean((predicted - measured) ** 2))),
            "within_10pct": float(np.mean(np.abs(rel) <= 0.10)),
            "within_5pct": float(np.mean(np.abs(rel) <= 0.05)),
            "mean_abs_pct_error": float(np.mean(np.abs(rel)) * 100),
            "mean_bias_pct": float(np.mean(rel) * 100)}


# ---------------------------------------------------------------------- CLI

def _describe(errors: dict) -> str:
    return (f"RMSE {errors['rmse_ms']:.3f} ms, within 10% {errors['within_10pct']:.0%}, "
            f"within 5% {errors['within_5pct']:.0%}, mean |error| "
            f"{errors['mean_abs_pct_error']:.1f}%, bias {errors['mean_bias_pct']:+.1f}%")


def main(argv: list[str]) -> int:
    if FLAGS.runs < 3 or FLAGS.repeats < 1 or FLAGS.samples < 1 or FLAGS.per_worker < 1 \
            or FLAGS.calibrate < 0:
        raise TfnasError("--runs must be >= 3, --repeats, --samples and --per_worker >= 1, "
                         "--calibrate >= 0")
    if FLAGS.validate:
        load_lut(FLAGS.validate)  # a bad table is one line before TensorFlow loads
        import_tensorflow()
        info = validate(FLAGS.validate, FLAGS.samples, FLAGS.seed, FLAGS.runs, FLAGS.repeats,
                        FLAGS.cache_dir, FLAGS.reanchor)
        if FLAGS.json:
            print(json.dumps(info))
            return 0
        print(f"{info['space']}: {info['samples']} random archs, {_describe(info)}")
        if "reanchored" in info:
            re = info["reanchored"]
            print(f"  re-anchored on the {re['calibration_nets']} calibration nets timed "
                  f"alongside (machine now x{re['factor']:.3f} of table time): "
                  f"{_describe(re)}")
        return 0
    if not FLAGS.space or not FLAGS.out:
        raise TfnasError("building a table needs --space and --out (or pass --validate=FILE)")
    if FLAGS.target not in TARGETS:
        raise TfnasError(f"unknown target {FLAGS.target!r}; latency tables are built on "
                         f"{', '.join(TARGETS)}")
    if FLAGS.resolution < 16 or FLAGS.num_classes < 1 or FLAGS.threads < 1:
        raise TfnasError("--resolution must be >= 16, --num_classes and --threads >= 1")
    space = mbconv_space(FLAGS.space, FLAGS.width)
    previous = resumable(FLAGS.out, {
        "space": space.name, "resolution": FLAGS.resolution,
        "width_multiplier": space.width_multiplier, "num_classes": FLAGS.num_classes,
        "threads": FLAGS.threads, "target": FLAGS.target})
    import_tensorflow()
    start = time.time()
    lut = build_table(space, FLAGS.resolution, FLAGS.num_classes, FLAGS.threads, FLAGS.runs,
                      FLAGS.repeats, FLAGS.per_worker, previous, FLAGS.statistic,
                      FLAGS.calibrate, FLAGS.cache_dir)
    lut["seconds"] = round(time.time() - start, 1)
    write_json(FLAGS.out, lut)
    summary = {"out": FLAGS.out, "space": space.name, "entries": len(lut["entries"]),
               "constant_ms": lut["constant_ms"], "seconds": lut["seconds"]}
    print(json.dumps(summary) if FLAGS.json else
          f"wrote {FLAGS.out}: {summary['entries']} timed blocks, constant "
          f"{lut['constant_ms']:.3f} ms, {lut['seconds']} s")
    return 0


def resumable(path: str, settings: dict) -> dict | None:
    """The table at `path` to resume (None if there is no file). Any other file there is one
    error line and stays untouched: a table with other `settings` (space, resolution,
    width_multiplier, num_classes, threads, target) or a file that is not a table."""
    check_output_path(path, "--out")
    if not os.path.exists(path):
        return None
    old = read_json(path, "--out")
    if not isinstance(old, dict) or "entries" not in old or "space" not in old:
        raise TfnasError(f"--out {path} exists and is not a latency table written by "
                         "deploy.lut; give another --out (the file is kept)")
    other = [f"{k}={old.get(k)} (now {v})" for k, v in settings.items() if old.get(k) != v]
    if other:
        raise TfnasError(f"--out {path} holds a latency table with other settings: "
                         f"{', '.join(other)}; rerun with the same flags to resume, or use "
                         "another --out")
    return old


if __name__ == "__main__":
    define_flags()
    cli.run(main)
