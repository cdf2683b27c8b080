"""Memory and time of the search's data with the resized images kept in memory or streamed.

  python bench/data_bench.py [--images=60000] [--image_size=96] [--batch=32] [--epochs=2]

Writes the first N Fashion-MNIST training images (Debian's IDX files) as PNGs into one
TFRecord file, a stand-in for a dataset too large for memory such as ImageNet, then runs the
search's `SearchData` over it with `--cache=memory` and with `--cache=none`, each in its own
process: set-up time (the label pass, and filling the cache), the time of each epoch of the
weight part, the time of one worker's input for that epoch in a 2-worker search (its half of
every global batch), and the process's peak RSS. Prints the ratios none/memory.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _arg(argv: list[str], name: str, default: int) -> int:
    for arg in argv:
        if arg.startswith(f"--{name}="):
            return int(arg.split("=", 1)[1])
    return default


def write_records(path: str, images: int) -> None:
    from tfnas import cli
    tf = cli.import_tensorflow()
    from tfnas.data.sources import fashion_mnist
    x, y = fashion_mnist("train")
    with tf.io.TFRecordWriter(path) as writer:
        for image, label in zip(x[:images], y[:images]):
            png = tf.io.encode_png(image).numpy()
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
                "image/class/label": tf.train.Feature(
                    int64_list=tf.train.Int64List(value=[int(label)]))})).SerializeToString())


def measure(pattern: str, cache: str, image_size: int, batch: int, epochs: int) -> dict:
    """Runs in the child process: one SearchData, `epochs` weight epochs."""
    from tfnas import cli
    tf = cli.import_tensorflow()
    from tfnas.search.base import CommonConfig
    from tfnas.search.data import SearchData
    from tfnas.space import get_space

    config = CommonConfig(space=get_space("fbnet"), targets={}, dataset=f"tfrecord:{pattern}",
                          num_classes=10, image_size=image_size, batch_size=batch, cache=cache)
    start = time.monotonic()
    data = SearchData(config, tf.distribute.get_strategy())
    times = {"setup": time.monotonic() - start}
    for epoch in range(epochs):
        start = time.monotonic()
        for images, _ in data.epoch("weights", epoch, 0):
            images.numpy()
        times[f"epoch {epoch + 1}"] = time.monotonic() - start
    # One worker's input of a 2-worker search: its half of every global batch.
    start = time.monotonic()
    for images, _ in data.pipeline("weights", epochs, 0, data.weight_steps,
                                   tf.distribute.InputContext(2, 0, 2)):
        images.numpy()
    times["worker's half"] = time.monotonic() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KB -> GB
    return {"times": times, "rss_gb": rss, "cached": bool(data.cached),
            "steps": data.weight_steps}


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--child":
        print(json.dumps(measure(argv[1], argv[2], *map(int, argv[3:6]))))
        return
    images, size = _arg(argv, "images", 60_000), _arg(argv, "image_size", 96)
    batch, epochs = _arg(argv, "batch", 32), _arg(argv, "epochs", 2)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with tempfile.TemporaryDirectory() as tmp:
        write_records(os.path.join(tmp, "train-0.tfrecord"), images)
        results = {}
        for cache in ("memory", "none"):
            proc = subprocess.run([sys.executable, __file__, "--child",
                                   f"{tmp}/{{split}}-*.tfrecord", cache, str(size), str(batch),
                                   str(epochs)], env=env, capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f"{cache}: {proc.stderr.strip().splitlines()[-1]}")
            results[cache] = json.loads(proc.stdout.strip().splitlines()[-1])
    gb = images * size * size * 3 * 4 / 2**30
    print(f"{images} Fashion-MNIST PNGs in a TFRecord, resized to {size} px (float32: "
          f"{gb:.2f} GiB), batch {batch}, {results['none']['steps']} weight steps per epoch")
    for cache, r in results.items():
        times = ", ".join(f"{k} {v:.1f} s" for k, v in r["times"].items())
        print(f"  --cache={cache:6s} peak RSS {r['rss_gb']:.2f} GiB; {times}")
    m, n = results["memory"], results["none"]
    print(f"none/memory: peak RSS {n['rss_gb'] / m['rss_gb']:.2f}, set-up "
          f"{n['times']['setup'] / m['times']['setup']:.2f}, " + ", ".join(
              f"{k} {n['times'][k] / m['times'][k]:.2f}" for k in m["times"] if k != "setup"))


if __name__ == "__main__":
    main(sys.argv[1:])
