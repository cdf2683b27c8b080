"""Deploy figures for the README, measured side by side in one run on this machine.

  python bench/deploy_bench.py                 # full: LUTs at 224, 50 archs per space
  python bench/deploy_bench.py --samples=10    # smaller validation

1. Latency-table validation on fbnet and efficientnet at 224, host, 1 thread: the fraction of
   random architectures whose measured latency is within +-10% / +-5% of the table's sum
   (target: >= 90% within +-10%, nn-Meter's metric). The tables are calibrated on 20 other
   random nets (seed 1; validation uses seed 0), entries and nets are the minimum over 3
   pooled timing passes, and converted nets are kept in LUT_DIR/nets for the next run. The
   validation also re-times the 20 calibration nets shuffled in among its own and reports the
   errors a second time with the table rescaled to the machine's speed now (`--reanchor`).
2. HourNAS-F (appendix table 14) against keras.applications EfficientNetB0 (untrained): fp32
   and int8 (calibrated on MNIST digits upscaled to 224), 1 and 2 threads, the ratio, and the
   int8-to-fp32 speedup; MobileNetV2 as the sanity scale (SPEC §1: about 7.5 / 3.3 ms).
Timings need a quiet machine: the load average is printed first.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tfnas.cli import import_tensorflow  # noqa: E402

RES = 224
REPEATS = 3  # timing passes pooled per block and per net
CALIBRATION_NETS = 20


def lut_validation(space: str, lut_dir: str, samples: int, runs: int) -> dict:
    from deploy import lut

    path = os.path.join(lut_dir, f"lut_{space}_{RES}.json")
    previous = None
    if os.path.exists(path):  # blocks timed by an earlier run are reused
        with open(path) as f:
            previous = json.load(f)
    cache = os.path.join(lut_dir, "nets")
    table = lut.build_table(lut.mbconv_space(space, 1.0), RES, 1000, threads=1, runs=runs,
                            repeats=REPEATS, per_worker=32, previous=previous,
                            calibrate=CALIBRATION_NETS, cache_dir=cache)
    with open(path, "w") as f:
        json.dump(table, f)
    return lut.validate(path, samples, seed=0, runs=runs, repeats=REPEATS, cache_dir=cache,
                        reanchor=True)


def latency_pair(runs: int) -> dict[str, dict]:
    """{net: {"fp32": [ms at 1, 2 threads], "int8": [...]}} for HourNAS-F, B0, MobileNetV2."""
    import keras

    from deploy.convert import to_tflite
    from deploy.data import load_images
    from deploy.profile import profile_host
    from tfnas.nn.builder import build_model
    from tfnas.space.published import PUBLISHED

    calibration, _ = load_images("mnist", "train", (RES, RES, 3), 100)
    nets = {
        "HourNAS-F": lambda: build_model("efficientnet", PUBLISHED["HourNAS-F"].genotype()),
        "EfficientNetB0": lambda: keras.applications.EfficientNetB0(weights=None),
        "MobileNetV2": lambda: keras.applications.MobileNetV2(weights=None),
    }
    out: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in nets.items():
            model = build()
            out[name] = {}
            for mode in ("none", "int8"):
                path = os.path.join(tmp, f"{name}_{mode}.tflite")
                with open(path, "wb") as f:
                    f.write(to_tflite(model, mode, calibration))
                results = profile_host(path, [1, 2], runs, warmup=10)
                out[name]["fp32" if mode == "none" else "int8"] = [r["median_ms"]
                                                                   for r in results]
                print(f"  {name} {mode}: " + ", ".join(
                    f"{r['threads']}t {r['median_ms']:.2f} ms" for r in results), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--lut_dir", default=os.path.join(tempfile.gettempdir(), "tfnas_luts"),
                        help="Where the tables are kept (built once, reused).")
    parser.add_argument("--skip_lut", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"load average {load:.2f} (timings are trustworthy below ~0.5)", flush=True)
    import_tensorflow()
    os.makedirs(args.lut_dir, exist_ok=True)

    if not args.skip_lut:
        from deploy import lut

        print(f"\n1. latency-table validation, host, 1 thread, {RES}x{RES}, {args.samples} "
              "random archs")
        for space in ("fbnet", "efficientnet"):
            v = lut_validation(space, args.lut_dir, args.samples, args.runs)
            print(f"  {space} (target: within 10% >= 90%), calibration scale "
                  f"{v['scale']:.3f}\n    as built: {lut._describe(v)}\n    re-anchored "
                  f"(machine now x{v['reanchored']['factor']:.3f}): "
                  f"{lut._describe(v['reanchored'])}", flush=True)

    print("\n2. host latency (median ms), fp32 and int8, 1 and 2 threads")
    lat = latency_pair(args.runs)
    f, b = lat["HourNAS-F"], lat["EfficientNetB0"]
    print("\n| net | fp32 1t | fp32 2t | int8 1t | int8 2t | int8 speedup 1t | 2t |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, v in lat.items():
        print(f"| {name} | {v['fp32'][0]:.2f} | {v['fp32'][1]:.2f} | {v['int8'][0]:.2f} | "
              f"{v['int8'][1]:.2f} | {v['fp32'][0] / v['int8'][0]:.2f}x | "
              f"{v['fp32'][1] / v['int8'][1]:.2f}x |")
    for mode in ("fp32", "int8"):
        print(f"HourNAS-F / EfficientNetB0 latency, {mode}: "
              f"{f[mode][0] / b[mode][0]:.2f} (1 thread), {f[mode][1] / b[mode][1]:.2f} "
              "(2 threads); below 1 = HourNAS-F faster")


if __name__ == "__main__":
    main()
