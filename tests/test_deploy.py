"""deploy/: export round trips (fp32, int8, QAT) with their self-checks, host profiling, the
benchmark_model parser, the latency table and its validation, and one-line bad input.

Small on purpose (runtime budget): a 4-layer MBConv space and fbnet at width 0.25, 32x32,
trained briefly on the real MNIST digits so that the int8 agreement check means something.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat

import numpy as np
import pytest

from conftest import assert_one_line_error, refused_before_tensorflow, run_cli

from deploy.profile import parse_benchmark_output
from tfnas.errors import TfnasError
from tfnas.space.mbconv import MBConvSpace, Stage
from tfnas.space.registry import register_space

TINY = "deploy_test_tiny"
SIZE = 32


def tiny_space() -> MBConvSpace:
    """Five searchable layers (two of them identical) of expand, SE and skip blocks."""
    return MBConvSpace(TINY, ("k3e3", "k5e3se", "skip"), "relu", 8,
                       (Stage(1, 8, 1, 1), Stage(2, 16, 3, 2), Stage(3, 24, 1, 2)), 64)


register_space(TINY, tiny_space)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> str:
    """A tiny net trained for a few epochs on MNIST; path of its .keras file."""
    import keras

    from tfnas.data import batched, load_part
    from tfnas.nn.builder import build_model

    keras.utils.set_random_seed(0)
    model = build_model(tiny_space(), "k3e3,k5e3se,k3e3,k5e3se,k3e3", num_classes=10,
                        input_shape=(SIZE, SIZE, 3))
    for layer in model.layers:  # moving statistics that settle within two short epochs
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.optimizer.build(model.trainable_variables)  # else fit traces its step twice
    model.fit(batched(load_part("mnist", "train", SIZE), 32, shuffle=True), epochs=2,
              verbose=0)
    test = batched(load_part("mnist", "test", SIZE), 100, shuffle=False)
    assert model.evaluate(test, verbose=0)[1] > 0.8  # really trained (inference mode)
    path = str(tmp_path_factory.mktemp("trained") / "tiny.keras")
    model.save(path)
    return path


@pytest.fixture(scope="module")
def relu_tflite(tmp_path_factory) -> str:
    """A real, tiny .tflite file (one ReLU): for checks that must get past the model's
    validity check."""
    import keras

    from deploy.convert import to_tflite

    inputs = keras.Input((1, 1, 8))
    path = tmp_path_factory.mktemp("relu") / "relu.tflite"
    path.write_bytes(to_tflite(keras.Model(inputs, keras.layers.ReLU()(inputs))))
    return str(path)


def _export(*args: str) -> dict:
    proc = run_cli("deploy.export", *args, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)  # exactly one JSON object on stdout


def test_fp32_export_from_arch_matches_keras(tmp_path):
    arch = tmp_path / "arch.json"
    ops = ["k3g2", "k5e6", "k3e1", "k5g2", "k3e3", "k5e1", "k3e6", "k5e3"]
    arch.write_text(json.dumps({"space": "fbnet", "arch": ",".join((ops * 3)[:22])}))
    out = tmp_path / "net.tflite"
    info = _export(f"--arch={tmp_path}", f"--out={out}", "--resolution=32", "--width=0.25",
                   "--num_classes=10", "--check_images=20")
    assert info["passed"] and info["max_abs_logit_diff"] < 1e-3
    assert out.stat().st_size == info["size_bytes"] > 0


def test_fp32_conversion_of_trained_model_matches_keras(trained):
    import keras

    from deploy.convert import run_tflite, to_tflite
    from deploy.data import load_images

    model = keras.saving.load_model(trained, compile=False)
    images, _ = load_images("mnist", "test", (SIZE, SIZE, 3), 50)
    reference = model.predict(images, verbose=0)
    assert np.abs(reference).max() > 1.0  # real logits, not a vanishing untrained signal
    assert np.abs(run_tflite(to_tflite(model), images) - reference).max() < 1e-3


def test_export_writes_the_labels_tfnas_train_recorded(trained, tmp_path):
    model = tmp_path / "net.keras"
    shutil.copy(trained, model)
    names = [f"digit {d}" for d in range(10)]
    (tmp_path / "net.metrics.json").write_text(json.dumps({"class_names": names}))
    info = _export(f"--model={model}", f"--out={tmp_path / 'net.tflite'}", "--check_images=20")
    assert info["labels"] == str(tmp_path / "net.labels.txt")
    assert (tmp_path / "net.labels.txt").read_text().splitlines() == names
    # Names that do not fit the model's outputs label nothing.
    (tmp_path / "net.metrics.json").write_text(json.dumps({"class_names": names[:3]}))
    info = _export(f"--model={model}", f"--out={tmp_path / 'other.tflite'}",
                   "--check_images=20")
    assert "labels" not in info and not (tmp_path / "other.labels.txt").exists()


def test_export_checks_on_the_data_the_model_was_trained_on(trained, tmp_path):
    from deploy.data import load_images

    model = tmp_path / "net.keras"
    shutil.copy(trained, model)
    images, _ = load_images("mnist", "test", (SIZE, SIZE, 3), 20)
    own = str(tmp_path / "own.npy")  # a model trained elsewhere than on the default mnist
    np.save(own, images[::-1])
    (tmp_path / "net.metrics.json").write_text(json.dumps({"dataset": own}))
    info = _export(f"--model={model}", f"--out={tmp_path / 'a.tflite'}", "--check_images=20")
    assert info["dataset"] == own and "keras_accuracy" not in info  # unlabelled: no accuracy
    # --dataset still decides when given, with a warning that it is not the training data.
    proc = run_cli("deploy.export", f"--model={model}", f"--out={tmp_path / 'b.tflite'}",
                   "--check_images=20", "--dataset=mnist", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["dataset"] == "mnist"
    warning, = [line for line in proc.stderr.splitlines() if line.strip()]  # no INFO dumps
    assert f"was trained on {own}, but --dataset=mnist" in warning
    # The training's dataset named again keeps the recorded data_dir (here one that is empty).
    empty = tmp_path / "no_idx_files"
    empty.mkdir()
    (tmp_path / "net.metrics.json").write_text(json.dumps({"dataset": "fashion_mnist",
                                                           "data_dir": str(empty)}))
    proc = run_cli("deploy.export", f"--model={model}", f"--out={tmp_path / 'c.tflite'}",
                   "--dataset=fashion_mnist")
    assert_one_line_error(proc, str(empty))
    assert not (tmp_path / "c.tflite").exists()


def test_int8_export_of_trained_model_agrees_and_profiles(trained, tmp_path):
    from deploy.convert import interpreter

    out = tmp_path / "int8.tflite"
    info = _export(f"--model={trained}", f"--out={out}", "--quantize=int8",
                   "--check_images=200")
    assert info["passed"] and info["top1_agreement"] >= 0.97, info
    assert info["keras_accuracy"] > 0.8 and info["tflite_accuracy"] > 0.8
    interp = interpreter(str(out))
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert interp.get_output_details()[0]["dtype"] == np.int8

    proc = run_cli("deploy.profile", f"--model={out}", "--target=host", "--threads=1,2",
                   "--runs=10", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    prof = json.loads(proc.stdout)
    assert prof["size_bytes"] == out.stat().st_size
    assert [r["threads"] for r in prof["results"]] == [1, 2]
    for r in prof["results"]:
        assert 0 < r["median_ms"] <= r["p90_ms"]
    assert prof["ops"].get("CONV_2D", 0) >= 5 and "DEPTHWISE_CONV_2D" in prof["ops"]


def test_qat_export_of_trained_model_keeps_its_accuracy(trained, tmp_path):
    out = tmp_path / "qat.tflite"
    info = _export(f"--model={trained}", f"--out={out}", "--quantize=qat", "--qat_steps=20",
                   "--check_images=200")
    assert info["passed"] and info["keras_accuracy"] - info["tflite_accuracy"] <= 0.03, info
    assert info["top1_agreement"] >= 0.9 and info["float_agreement"] >= 0.9, info
    assert out.exists()


def test_qat_check_holds_the_tflite_to_the_float_accuracy(trained):
    """A QAT .tflite is another model (fine-tuned weights): it passes when it scores as the
    float model does, fails when it lost that accuracy, and reports its agreement with the
    fine-tuned Keras model it came from and with the float model."""
    import keras

    from deploy.convert import run_tflite, to_tflite
    from deploy.data import load_images
    from deploy.export import self_check

    model = keras.saving.load_model(trained, compile=False)
    images, labels = load_images("mnist", "test", (SIZE, SIZE, 3), 100)
    calibration, _ = load_images("mnist", "train", (SIZE, SIZE, 3), 50)
    own = to_tflite(model, "int8", calibration)
    untrained = keras.models.clone_model(model)  # same net, fresh weights: a ruined fine-tune
    info = self_check(model, own, images, labels, "qat", True, 0.97, 1e-3,
                      qat_logits=untrained.predict(images, verbose=0))
    assert info["passed"] and info["tflite_accuracy"] > 0.8 and info["float_agreement"] > 0.9
    assert info["top1_agreement"] < 0.5  # measured against the logits it was given
    ruined = to_tflite(untrained, "int8", calibration)
    with pytest.raises(TfnasError, match=r"the qat .tflite scores \d+\.\d% top-1 on 100 "
                                         r"images, the float model \d+\.\d%"):
        self_check(model, ruined, images, labels, "qat", True, 0.97, 1e-3,
                   qat_logits=run_tflite(ruined, images))


def test_fp32_check_scales_its_limit_to_small_logits():
    """An untrained net's logits can be 1e-16: an absolute limit of 1e-3 passed a .tflite
    of another net entirely."""
    import keras

    from deploy.convert import to_tflite
    from deploy.export import self_check

    def tiny(seed):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.GlobalAveragePooling2D()(inputs)
        x = keras.layers.Dense(4)(x)
        return keras.Model(inputs, keras.layers.Rescaling(1e-12)(x))

    images = np.random.default_rng(0).uniform(size=(16, 8, 8, 3)).astype(np.float32)
    model = tiny(0)
    info = self_check(model, to_tflite(model), images, None, "none", True, 0.97, 1e-3)
    assert info["passed"] and info["max_abs_logit_diff"] < 1e-15
    with pytest.raises(TfnasError, match="fp32 .tflite logits differ from Keras"):
        self_check(model, to_tflite(tiny(1)), images, None, "none", True, 0.97, 1e-3)


# benchmark_model's output as TensorFlow Lite's tools/benchmark README prints it (newer builds
# add p5/median/p95 to the `count=` lines; older ones stop at std).
BENCHMARK_OUTPUT = """\
INFO: STARTING!
INFO: Graph: [/data/local/tmp/tfnas/net.tflite]
INFO: Num threads: [4]
INFO: The input model file size (MB): 24.6229
INFO: Initialized session in 119.515ms.
INFO: Running benchmark for at least 5 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=9 first=87112 curr=51629 min=51629 max=87112 avg=58147.4 std=11478 p5=51629 median=51962 p95=87112

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=1249964 curr=1240143 min=1238588 max=1252566 avg=1.24027e+06 std=2565 p5=1238753 median=1239807 p95=1247415

INFO: Inference timings in us: Init: 5579, First inference: 1357602, Warmup (avg): 1.3576e+06, Inference (avg): 1.24027e+06
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=6.36328 overall=109.832
"""

OLD_BENCHMARK_OUTPUT = """\
count=50 first=249042 curr=250889 min=247067 max=254474 avg=249684 std=1442
Inference timings in us: Init: 16242, First inference: 360262, Warmup (avg): 304586, Inference (avg): 249684
Peak memory footprint (MB): init=4.92969 overall=138.809
"""


def test_benchmark_model_parser_reads_documented_output():
    r = parse_benchmark_output(BENCHMARK_OUTPUT)
    assert r["runs"] == 50  # the timed runs, not the warm-up line
    assert r["median_ms"] == pytest.approx(1239.807)
    assert r["p90_ms"] == pytest.approx(1247.415) and r["p90_source"] == "p95"
    assert r["avg_ms"] == pytest.approx(1240.27)
    assert r["init_ms"] == pytest.approx(5.579)
    assert r["memory_overall_mb"] == pytest.approx(109.832)
    old = parse_benchmark_output(OLD_BENCHMARK_OUTPUT)
    assert old["median_ms"] == pytest.approx(249.684)  # no median printed: the average
    assert old["p90_ms"] == pytest.approx(254.474) and old["p90_source"] == "max"
    assert old["memory_overall_mb"] == pytest.approx(138.809)
    with pytest.raises(TfnasError, match="no timings"):
        parse_benchmark_output("ERROR: Could not open 'x.tflite'.\n")


def test_latency_table_dedupes_loads_and_predicts_whole_nets(tmp_path):
    from deploy import lut
    from tfnas.cost.tables import cost_tables
    from tfnas.space.genotype import parse_genotype

    space = tiny_space()
    cache = tmp_path / "nets"
    table = lut.build_table(space, SIZE, 10, threads=1, runs=10, repeats=1, per_worker=32,
                            calibrate=3, cache_dir=str(cache))
    blocks = [key for row in table["layers"] for key in row if key]
    assert table["layers"][2] == table["layers"][3]  # layer2_2 and layer2_3: same blocks
    assert set(table["entries"]) == set(blocks) | {table["stem"], table["head"]}
    assert len(set(blocks)) == len(blocks) - 2  # layer2_3's two blocks are not timed again
    assert all(e["count"] == 10 and e["median_ms"] >= 0 for e in table["entries"].values())
    path = str(tmp_path / "lut.json")
    with open(path, "w") as f:
        json.dump(table, f)
    g = parse_genotype(space, "skip,k5e3se,k3e3,skip,k5e3se")
    tables = cost_tables(space, SIZE, 10).with_latency(path)
    assert tables.cost(g)["latency_ms"] == pytest.approx(lut.predict_ms(table, g))
    assert table["table"][0][space.ops.index("skip")] == 0.0
    # The calibration scales every entry by the median measured / summed ratio of its nets.
    calibration = table["calibration"]
    assert calibration["nets"] == 3 and len(os.listdir(cache)) == 3
    ratios = [a["measured_ms"] / a["summed_ms"] for a in calibration["archs"]]
    assert calibration["scale"] == pytest.approx(np.median(ratios))
    key = table["layers"][1][space.ops.index("k3e3")]
    assert table["table"][1][space.ops.index("k3e3")] == pytest.approx(
        table["entries"][key]["min_ms"] * calibration["scale"], abs=1e-5)

    with pytest.raises(TfnasError, match="calibrated on"):
        lut.validate(path, samples=3, seed=lut.CALIBRATION_SEED, runs=10)
    info = lut.validate(path, samples=3, seed=2, runs=10, cache_dir=str(cache))
    assert len(os.listdir(cache)) == 6
    before = {f: os.path.getmtime(cache / f) for f in os.listdir(cache)}
    # Re-anchoring times the calibration nets among the validated ones (cached: converts
    # nothing) and rescales the predictions to the machine's speed now.
    again = lut.validate(path, samples=3, seed=2, runs=10, cache_dir=str(cache), reanchor=True)
    assert {f: os.path.getmtime(cache / f) for f in os.listdir(cache)} == before
    re = again["reanchored"]
    assert re["calibration_nets"] == 3
    assert re["factor"] == pytest.approx(re["scale_now"] / calibration["scale"])
    rel = [abs(a["predicted_ms"] * re["factor"] / a["measured_ms"] - 1) for a in again["archs"]]
    assert re["within_10pct"] == pytest.approx(np.mean(np.array(rel) <= 0.10))
    assert set(info) >= {"rmse_ms", "within_10pct", "within_5pct"}
    # Predictions are the table's sums; measurements are real timings. (How close they are
    # is bench/deploy_bench.py's figure: these nets run in ~20 us, all noise.)
    for a in info["archs"]:
        assert a["predicted_ms"] == pytest.approx(
            lut.predict_ms(table, parse_genotype(space, a["arch"])))
        assert a["measured_ms"] > 0


def test_identical_blocks_share_one_key():
    from deploy.lut import layer_keys
    from tfnas.space import get_space

    keys = layer_keys(get_space("fbnet"), 224)
    assert keys[2] == keys[3] == keys[4]  # layer2_2..2_4: same shapes, same blocks
    assert keys[1] != keys[2]  # layer2_1 has stride 2
    assert "input:56x56x24-output:56x56x24-expand:6-kernel:5-stride:1" in keys[2][7]
    assert keys[2][8] is None  # skip

def test_report_table_says_how_the_nets_were_timed():
    from deploy.report import markdown, setting

    rows = [{"net": "searched", "flops": 390e6, "median_ms": 9.5, "p90_ms": 10.0,
             "predicted_ms": None},
            {"net": "MobileNetV2", "flops": 300e6, "median_ms": 8.0, "p90_ms": 8.5,
             "predicted_ms": None}]
    table = markdown(rows, setting(threads=1, runs=30, lut=None)).splitlines()
    assert table[0].startswith("Every net built at 224x224 with 1000 classes and untrained "
                               "weights, converted to fp32 .tflite") and "1 thread(s)" in table[0]
    assert table[2] == "| net | MFLOPs | median ms | p90 ms |"  # no empty LUT column
    assert table[4] == "| MobileNetV2 | 300 | 8.00 | 8.50 |"  # by FLOPs
    rows[0]["predicted_ms"] = 9.0
    table = markdown(rows, setting(threads=1, runs=30, lut="lut.json")).splitlines()
    assert "LUT ms: predicted by lut.json" in table[0] and table[2].endswith(" LUT ms |")
    assert table[5] == "| searched | 390 | 9.50 | 10.00 | 9.00 |"


# ---------------------------------------------------------------------- bad input

def test_bad_arch_file_is_one_line(tmp_path):
    bad = tmp_path / "arch.json"
    bad.write_text('{"space": "fbnet", "arch": "k3e3,k9e9"}')
    proc = run_cli("deploy.export", f"--arch={bad}", f"--out={tmp_path / 'x.tflite'}")
    assert_one_line_error(proc, "arch file", "22 searchable layers")
    bad.write_text("{not json")
    assert_one_line_error(run_cli("deploy.export", f"--arch={bad}",
                                  f"--out={tmp_path / 'x.tflite'}"), "not valid JSON")
    for args in ([str(tmp_path / "missing")], ["--samples", "3", str(tmp_path / "missing")]):
        assert_one_line_error(run_cli("deploy.report", *args), "missing is not a directory")
    for flag in ("--resolution=0", "--width=-1"):
        assert_one_line_error(run_cli("deploy.export", "--arch=HourNAS-A.json", flag,
                                      f"--out={tmp_path / 'x.tflite'}"), "--width in (0, 4]")
    assert not (tmp_path / "x.tflite").exists()
    (tmp_path / "arch.json").write_text('{"space": "fbnet"}')
    assert_one_line_error(run_cli("deploy.export", "--arch=HourNAS-A.json",
                                  f"--out={tmp_path / 'arch.json'}"), "must end in .tflite")
    assert (tmp_path / "arch.json").read_text() == '{"space": "fbnet"}'
    assert_one_line_error(run_cli("deploy.export", f"--model={tmp_path / 'm.keras'}",
                                  "--resolution=64", "--width=0.5",
                                  f"--out={tmp_path / 'x.tflite'}"),
                          "--resolution, --width shape the net built from --arch")


def test_bad_model_weights_and_images_are_one_line(tmp_path):
    import warnings

    from deploy.data import load_images
    from deploy.export import build_from_arch, check_keras_file, load_model
    from tfnas.space.genotype import parse_genotype

    fake = tmp_path / "fake.keras"
    fake.write_text("not a zip")
    with pytest.raises(TfnasError, match="is not a Keras model file"):
        load_model(str(fake))
    for model, fragment in [(fake, "is not a Keras model file"),
                            (tmp_path / "absent.keras", "absent.keras does not exist")]:
        args = (f"--model={model}", f"--out={tmp_path / 'x.tflite'}")
        assert_one_line_error(run_cli("deploy.export", *args), fragment)
        assert refused_before_tensorflow("deploy.export", *args)
    with pytest.raises(TfnasError, match="is not a Keras model file"):  # as --weights too
        check_keras_file(str(fake), "weights", (".weights.h5", ".keras"))
    with pytest.raises(TfnasError, match=r"weights file .*w\.bin should end in \.weights\.h5"):
        (tmp_path / "w.bin").write_bytes(b"\0")
        check_keras_file(str(tmp_path / "w.bin"), "weights", (".weights.h5", ".keras"))
    net = build_from_arch(parse_genotype(tiny_space(), "k3e3,k5e3se,k3e3,k5e3se,k3e3"), SIZE,
                          1.0, 10, None)
    weights = str(tmp_path / "other.weights.h5")
    net.save_weights(weights)
    other = parse_genotype(tiny_space(), "skip,k5e3se,k3e3,skip,k5e3se")
    with warnings.catch_warnings(record=True) as caught, \
            pytest.raises(TfnasError, match="do not fit the architecture of A.json: A total"):
        warnings.simplefilter("always")
        build_from_arch(other, SIZE, 1.0, 10, weights, "A.json")
    assert not caught, [str(w.message) for w in caught][:3]  # not one warning per layer
    for c in "ab":
        (tmp_path / "img" / c).mkdir(parents=True)
        for i in range(6):
            (tmp_path / "img" / c / f"{i}.png").write_bytes(b"notanimage")
    with pytest.raises(TfnasError, match="cannot read dataset .*: Unknown image file format"):
        load_images(f"folder:{tmp_path / 'img'}", "test", (SIZE, SIZE, 3), 4)


def test_lut_resumes_only_its_own_table(tmp_path):
    from deploy.lut import resumable

    settings = {"space": "fbnet", "resolution": 16, "width_multiplier": 1.0,
                "num_classes": 1000, "threads": 1, "target": "host"}
    path = tmp_path / "lut.json"
    assert resumable(str(path), settings) is None
    for text, fragment in [("[1, 2, 3]", "is not a latency table"),
                           ('{"space": "fbnet", "arch": "k3e1"}', "is not a latency table"),
                           (json.dumps({**settings, "resolution": 224, "entries": {}}),
                            "other settings: resolution=224 (now 16)")]:
        path.write_text(text)
        with pytest.raises(TfnasError, match=re.escape(fragment)):
            resumable(str(path), settings)
        assert path.read_text() == text  # kept
    path.write_text(json.dumps({**settings, "entries": {}}))
    assert resumable(str(path), settings)["entries"] == {}


def test_unknown_target_is_one_line(relu_tflite, tmp_path):
    model = relu_tflite
    assert_one_line_error(run_cli("deploy.profile", f"--model={model}", "--target=iphone"),
                          "unknown target 'iphone'")
    assert_one_line_error(run_cli("deploy.lut", "--space=fbnet", "--target=android",
                                  f"--out={tmp_path / 'l.json'}"), "unknown target")


def test_damaged_tflite_is_one_line(relu_tflite, tmp_path):
    good = open(relu_tflite, "rb").read()
    damaged = {"header only": b"\x1c\x00\x00\x00TFL3" + bytes(32),
               "truncated": good[:len(good) // 2]}
    for name, content in damaged.items():
        model = tmp_path / f"{name.replace(' ', '_')}.tflite"
        model.write_bytes(content)
        assert_one_line_error(run_cli("deploy.profile", f"--model={model}"),
                              "is not a valid TFLite model")
    model.write_bytes(b"not a model")
    assert_one_line_error(run_cli("deploy.profile", f"--model={model}"),
                          "is not a TFLite flatbuffer")


def test_missing_adb_binary_or_device_is_one_line(relu_tflite, tmp_path):
    model = relu_tflite
    binary = tmp_path / "benchmark_model"
    binary.write_text("")
    args = [f"--model={model}", "--target=android"]
    assert_one_line_error(run_cli("deploy.profile", *args), "--benchmark_binary")
    assert_one_line_error(
        run_cli("deploy.profile", *args, f"--benchmark_binary={binary}",
                f"--adb={tmp_path / 'no-adb'}"), "adb not found")
    # An adb that runs but sees no phone (none is attached to a CI machine).
    adb = tmp_path / "adb"
    adb.write_text("#!/bin/sh\necho 'List of devices attached'\necho\n")
    adb.chmod(adb.stat().st_mode | stat.S_IEXEC)
    assert_one_line_error(
        run_cli("deploy.profile", *args, f"--benchmark_binary={binary}", f"--adb={adb}"),
        "no Android device")
    assert_one_line_error(
        run_cli("deploy.profile", f"--model={model}", "--target=android:R58M123",
                f"--benchmark_binary={binary}", f"--adb={adb}"), "'R58M123' is not connected")


def test_wrong_calibration_shape_is_one_line_and_keeps_output(trained, tmp_path):
    images = tmp_path / "calib.npy"
    np.save(images, np.zeros((8, 28, 28, 1), np.float32))
    out = tmp_path / "keep.tflite"
    out.write_bytes(b"previous export")
    proc = run_cli("deploy.export", f"--model={trained}", f"--out={out}", "--quantize=int8",
                   f"--dataset={images}")
    assert_one_line_error(proc, "[28, 28, 1]", "[32, 32, 3]")
    assert out.read_bytes() == b"previous export"
    np.save(images, np.zeros((0, 32, 32, 3), np.float32))
    proc = run_cli("deploy.export", f"--model={trained}", f"--out={out}", f"--dataset={images}")
    assert_one_line_error(proc, f"calibration images {images} hold no images")
    assert out.read_bytes() == b"previous export"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".keep")]
