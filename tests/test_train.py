"""`python -m tfnas.train`: retrains a searched architecture standalone and saves a model."""

import json
import os

import keras
import numpy as np
from conftest import assert_one_line_error, run_cli

from tfnas.data import load_split


def test_retrain_saves_a_model_that_learned(tmp_path):
    arch = tmp_path / "arch.json"
    # The vital layers only (skip elsewhere): a third of the full depth's training time.
    vital = {0: "k3e1", 1: "k3e3", 5: "k3e3", 9: "k3e3", 13: "k3e3", 17: "k3e3", 21: "k3e1"}
    arch.write_text(json.dumps({"space": "fbnet", "arch": ",".join(
        vital.get(i, "skip") for i in range(22))}))
    out = tmp_path / "trained.keras"
    proc = run_cli("tfnas.train", f"--arch={arch}", "--epochs=3", "--width_multiplier=0.5",
                   "--image_size=32", "--batch_size=64", "--learning_rate=0.05",
                   "--random_erasing=0", f"--out={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["test_accuracy"] > 0.6  # 3 short epochs (measured 0.93); chance is 0.1
    model = keras.models.load_model(out)
    images, labels = next(iter(load_split("mnist", "test", 32).batch(200)))
    accuracy = np.mean(np.argmax(model.predict(images, verbose=0), -1) == labels.numpy())
    assert abs(accuracy - result["test_accuracy"]) < 0.1
    metrics = json.loads((tmp_path / "trained.metrics.json").read_text())
    assert metrics["recipe"]["label_smoothing"] == 0.1 and metrics["space"] == "fbnet"
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no temp files left


def test_bad_arch_is_one_line(tmp_path):
    assert_one_line_error(run_cli("tfnas.train", "--arch=missing.json"), "cannot read")
    assert_one_line_error(run_cli("tfnas.train", "--arch=k3e1"), "--space is required")
