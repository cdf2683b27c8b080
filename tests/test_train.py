"""`python -m tfnas.train`: retrains a searched architecture standalone and saves a model."""

import json
import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
import supernet_fixtures  # noqa: F401 - registers tiny_test
import tensorflow as tf
from conftest import ROOT, assert_one_line_error, refused_before_tensorflow, run_cli
from records import write_records

from tfnas.data import load_split
from tfnas.errors import TfnasError
from tfnas.space.genotype import parse_genotype
from tfnas.train.config import Recipe, check_model_out, near_chance
from tfnas.train.recipe import _compile, train_standalone

TINY = parse_genotype("tiny_test", "k3e3,k3e3,k3e3")
QUICK = Recipe(epochs=1, batch_size=4, image_size=16, random_erasing=0, ema=False)
# fbnet's vital layers only (skip elsewhere): a third of the full depth's training time.
VITAL = {0: "k3e1", 1: "k3e3", 5: "k3e3", 9: "k3e3", 13: "k3e3", 17: "k3e3", 21: "k3e1"}
VITAL_ONLY = ",".join(VITAL.get(i, "skip") for i in range(22))


def test_retrain_saves_a_model_that_learned(tmp_path):
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps({"space": "fbnet", "arch": VITAL_ONLY}))
    out = tmp_path / "trained.keras"
    proc = run_cli("tfnas.train", f"--arch={arch}", "--epochs=3", "--width_multiplier=0.5",
                   "--image_size=32", "--batch_size=64",
                   "--random_erasing=0", f"--out={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # a success is quiet: no Keras warning about shuffle=True or a dataset's end
    assert "shuffle" not in proc.stderr and "ran out of data" not in proc.stderr, proc.stderr
    assert result["test_accuracy"] > 0.6  # 3 short epochs (measured 0.93); chance is 0.1
    model = keras.models.load_model(out)
    images, labels = next(iter(load_split("mnist", "test", 32).batch(200)))
    accuracy = np.mean(np.argmax(model.predict(images, verbose=0), -1) == labels.numpy())
    assert abs(accuracy - result["test_accuracy"]) < 0.1
    metrics = json.loads((tmp_path / "trained.metrics.json").read_text())
    assert metrics["recipe"]["label_smoothing"] == 0.1 and metrics["space"] == "fbnet"
    assert metrics["class_names"] == [str(digit) for digit in range(10)]  # output i means i
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no temp files left
    assert "learned next to nothing" not in proc.stdout


def test_the_train_step_is_traced_once(monkeypatch):
    """Variables first created inside fit's trace (Keras builds the optimizer there unless a
    strategy of its own is set) make TensorFlow trace the step twice: seconds per retraining."""
    # Keras' private trainer class: a Keras upgrade may move it (then follow it here).
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    traces = []
    train_step = TensorFlowTrainer.train_step

    def counted(self, data):
        traces.append(1)
        return train_step(self, data)

    monkeypatch.setattr(TensorFlowTrainer, "train_step", counted)
    train_standalone(TINY, "mnist", Recipe(epochs=1, batch_size=32, image_size=16,
                                           max_images=64), verbose=0)
    assert len(traces) == 1


def test_near_chance_is_a_little_above_chance_for_any_class_count():
    assert near_chance(10) == pytest.approx(0.15)  # 1.5 x chance
    assert near_chance(2) == pytest.approx(0.55)  # not 0.75: a 70% net learned something
    assert 0.001 < near_chance(1000) < 0.002


def test_same_seed_retrains_the_same_model(tmp_path):
    # Random erasing and EMA on, as by default: every random draw is seeded and every op
    # deterministic, so two runs give the same weights (checked: with --nodeterministic every
    # stem weight differed between the two runs).
    models = []
    for run in ("a", "b"):
        out = tmp_path / f"{run}.keras"
        proc = run_cli("tfnas.train", f"--arch={VITAL_ONLY}", "--space=fbnet", "--epochs=1",
                       "--max_images=600", "--width_multiplier=0.25", "--image_size=16",
                       "--batch_size=32", "--seed=3", f"--out={out}")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads((tmp_path / f"{run}.metrics.json").read_text())["deterministic"]
        models.append(keras.models.load_model(out))
    for a, b in zip(*(m.weights for m in models)):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_nb201_result_retrains_and_exports(tmp_path):
    # The one-shot searches write nb201 arch.json files; retraining and export used to reach
    # the MBConv builder and end in an AttributeError.
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps({"space": "nb201", "arch": "nor_conv_3x3,nor_conv_1x1,"
                                "avg_pool_3x3,skip_connect,nor_conv_3x3,none"}))
    out = tmp_path / "trained.keras"
    proc = run_cli("tfnas.train", f"--arch={arch}", "--epochs=1", "--max_images=128",
                   "--image_size=16", "--batch_size=32", "--width_multiplier=0.5",
                   f"--out={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    model = keras.models.load_model(out)
    assert model.get_layer("stem.conv").filters == 8  # C = 16 x 0.5
    assert json.loads((tmp_path / "trained.metrics.json").read_text())["space"] == "nb201"
    proc = run_cli("deploy.export", f"--model={out}", f"--out={tmp_path / 'net.tflite'}")
    assert proc.returncode == 0 and "passed" in proc.stdout, proc.stderr[-3000:]
    # From the arch alone, the net takes nb201's own input, 32x32 and 10 classes.
    from deploy.convert import interpreter
    proc = run_cli("deploy.export", f"--arch={arch}", f"--out={tmp_path / 'arch.tflite'}",
                   "--check_images=20")
    assert proc.returncode == 0, proc.stderr[-3000:]
    net = interpreter(str(tmp_path / "arch.tflite"))
    assert list(net.get_input_details()[0]["shape"]) == [1, 32, 32, 3]
    assert list(net.get_output_details()[0]["shape"]) == [1, 10]


def test_bad_arch_and_flags_are_one_line_before_tensorflow_loads(tmp_path):
    cases = [(["--arch=missing.json"], "cannot read"),
             (["--arch=k3e1"], "--space is required"),
             (["--arch=HourNAS-A", f"--out={tmp_path}/m.h5"], "must end in .keras"),
             (["--arch=HourNAS-A", "--strategy=multi_worker", f"--out={tmp_path}/m.keras"],
              "Model.fit fails under MultiWorkerMirroredStrategy"),
             (["--arch=HourNAS-A", "--dropout=2", f"--out={tmp_path}/m.keras"],
              "--dropout and --label_smoothing must be in [0, 1)"),
             (["--arch=HourNAS-A", "--dataset=tfrecord:/data/all.tfrecord",
               f"--out={tmp_path}/m.keras"], "has no {split} in it")]
    for args, fragment in cases:
        assert_one_line_error(run_cli("tfnas.train", *args), fragment)
        assert refused_before_tensorflow("tfnas.train", *args), args
    assert not os.listdir(tmp_path)


_MIRRORED = """
import json, sys
import keras, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import supernet_fixtures
from tfnas.errors import TfnasError
from tfnas.space.genotype import parse_genotype
from tfnas.train import recipe as recipe_module
from tfnas.train.config import Recipe
from tfnas.train.recipe import train_standalone
compiled = []
compile_model = recipe_module._compile
def record_compile(model, *args):  # what fit trains: its policy and optimizer
    compile_model(model, *args)
    compiled.append([model.dtype_policy.name, type(model.optimizer).__name__])
recipe_module._compile = record_compile
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
genotype = parse_genotype("tiny_test", "k3e3,k3e3,k3e3")
try:
    train_standalone(genotype, "mnist", Recipe(batch_size=33), strategy=strategy)
except TfnasError as e:
    print(e)
recipe = Recipe(epochs=2, batch_size=32, image_size=16, max_images=2000,
                mixed_precision="float16")
_, accuracy = train_standalone(genotype, "mnist", recipe, out=sys.argv[1], strategy=strategy,
                               verbose=0)
print(json.dumps({"accuracy": accuracy, "policy": keras.mixed_precision.global_policy().name,
                  "compiled": compiled}))
"""


def test_mirrored_mixed_float16_retraining_saves_a_float32_model(tmp_path):
    """Two replicas (logical CPUs) and float16 compute with loss scaling train the net; the
    saved model computes in float32 (what deploy.export converts) and scores as reported."""
    out = tmp_path / "m.keras"
    proc = subprocess.run([sys.executable, "-c", _MIRRORED, str(out)], cwd=ROOT,
                          capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
                               "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT}/tests"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert "--batch_size=33 does not split evenly over the 2 replicas" in lines[0]
    result = json.loads(lines[-1])
    assert result["compiled"] == [["mixed_float16", "LossScaleOptimizer"]]
    assert result["policy"] == "float32"  # the global policy is restored
    assert result["accuracy"] > 0.5  # measured 0.80; chance is 0.1
    model = keras.models.load_model(out)
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    images, labels = next(iter(load_split("mnist", "test", 16).batch(1000)))
    accuracy = np.mean(np.argmax(model.predict(images, verbose=0), -1) == labels.numpy())
    assert abs(accuracy - result["accuracy"]) < 0.03


def test_recipe_out_of_range_is_one_line():
    Recipe().check()
    for field, value, fragment in [("dropout", 1.5, "--dropout"),
                                   ("width_multiplier", 0, "--width_multiplier must be in (0, 4]"),
                                   ("width_multiplier", -1, "(0, 4]"),
                                   ("learning_rate", -1, "--learning_rate must be > 0"),
                                   ("clip_norm", -1, "--clip_norm must be >= 0"),
                                   ("epochs", 0, "--epochs")]:
        with pytest.raises(TfnasError) as e:
            Recipe(**{field: value}).check()
        assert fragment in str(e.value)


def test_model_out_is_checked_before_training(tmp_path):
    check_model_out(str(tmp_path / "new" / "m.keras"))
    (tmp_path / "file").write_text("")
    (tmp_path / "dir.keras").mkdir()
    for path, fragment in [("m.h5", "must end in .keras"), ("file/m.keras", "is a file"),
                           ("dir.keras", "is a directory")]:
        with pytest.raises(TfnasError, match=fragment):
            check_model_out(str(tmp_path / path))


def _folder(root, per_class: int, content: bytes = b"") -> str:
    for c in "ab":
        (root / c).mkdir(exist_ok=True)
        for i in range(per_class):
            (root / c / f"{i}.jpg").write_bytes(content)
    return f"folder:{root}"


def test_folder_too_small_for_the_validation_cut(tmp_path):
    dataset = _folder(tmp_path, 4)
    with pytest.raises(TfnasError, match="has 8 images; its 10% validation cut is empty"):
        train_standalone(TINY, dataset, QUICK, verbose=0)
    load_split(_folder(tmp_path, 5), "test", 16)  # 10 images: one for validation


def test_undecodable_images_are_one_line(tmp_path):
    dataset = _folder(tmp_path, 6, b"notanimage\n")
    with pytest.raises(TfnasError, match="cannot read dataset .*: Unknown image file format"):
        train_standalone(TINY, dataset, QUICK, verbose=0)


def _write_tfrecord(path: str, count: int, classes: int) -> None:
    write_records(path, ((tf.io.encode_png(np.full((8, 8, 3), 30 * i % 256, np.uint8)).numpy(),
                          i % classes) for i in range(count)))


def test_tfrecord_takes_num_classes_and_trains_quietly(tmp_path):
    for split in ("train", "validation"):
        _write_tfrecord(str(tmp_path / f"{split}.tfrecord"), 12, 3)
    dataset = f"tfrecord:{tmp_path}/{{split}}.tfrecord"
    with pytest.raises(TfnasError, match="pass --num_classes"):
        train_standalone(TINY, dataset, QUICK, verbose=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, _ = train_standalone(TINY, dataset, QUICK, verbose=0, num_classes=3)
    assert model.output_shape[-1] == 3
    # Keras' warnings about shuffle=True on a dataset and about a streamed dataset's end.
    noisy = [str(w.message) for w in caught
             if "shuffle" in str(w.message) or "ran out of data" in str(w.message)]
    assert not noisy, noisy
    # A given --num_classes below the labels would train on all-zero targets.
    with pytest.raises(TfnasError, match="label 2 found but --num_classes=2"):
        train_standalone(TINY, dataset, QUICK, verbose=0, num_classes=2)


CLIP = 1.0


@pytest.mark.parametrize("clip_norm", [CLIP, 0.0])
def test_clip_norm_bounds_the_step(clip_norm):
    """A gradient spike moves the weights by at most (1 + momentum) · lr · clip_norm (Nesterov's
    first step); without clipping the same spike moves them hundreds of times further."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, use_bias=False)])
    recipe = Recipe(epochs=1, clip_norm=clip_norm, ema=False, weight_decay=0.0)
    _compile(model, recipe, steps_per_epoch=10)
    before = model.get_weights()[0]
    images = np.full((8, 4), 1e3, np.float32)  # a huge input gives a huge gradient
    model.train_on_batch(images, np.eye(3, dtype=np.float32)[np.arange(8) % 3])
    moved = float(np.linalg.norm(model.get_weights()[0] - before))
    first_lr = recipe.learning_rate * 0.01  # the warmup's start
    bound = 1.9 * first_lr * CLIP
    assert (moved <= bound * 1.001) == (clip_norm > 0), moved
    if not clip_norm:
        assert moved > 100 * bound


def test_killed_retraining_resumes_and_refuses_other_settings(tmp_path):
    out = tmp_path / "m.keras"
    args = [f"--arch={VITAL_ONLY}", "--space=fbnet", "--epochs=3", "--max_images=600",
            "--width_multiplier=0.25", "--image_size=16", "--batch_size=32", f"--out={out}"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT,
           "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tfnas.train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        if line.startswith("Epoch 2/3"):  # epoch 1 is backed up by now
            proc.kill()
            break
    proc.wait()
    backup = tmp_path / "m.keras.backup"
    assert (backup / "training.json").exists()
    # Another net or recipe would have Keras restore foreign weights or mix two recipes.
    before = {p.name: p.read_bytes() for p in backup.iterdir()}
    assert_one_line_error(run_cli("tfnas.train", *args, "--seed=5"),
                          f"{backup} holds an interrupted training with other settings")
    assert {p.name: p.read_bytes() for p in backup.iterdir()} == before
    # A kill while Keras writes the backup leaves it cut short: one line, the backup kept.
    weights = backup / "latest.weights.h5"
    weights.write_bytes(before[weights.name][:len(before[weights.name]) // 2])
    assert_one_line_error(run_cli("tfnas.train", *args),
                          f"cannot resume the interrupted training in {backup}")
    assert len(weights.read_bytes()) == len(before[weights.name]) // 2
    weights.write_bytes(before[weights.name])
    done = run_cli("tfnas.train", *args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Epoch 1/3" not in done.stdout and "Epoch 2/3" in done.stdout  # resumed
    assert out.exists() and not backup.exists()


def test_a_file_in_place_of_the_backup_directory_is_one_error(tmp_path):
    from tfnas.train.recipe import claim_backup

    (tmp_path / "m.keras.backup").write_text("mine")
    with pytest.raises(TfnasError, match="m.keras.backup .* is a file; move it away"):
        claim_backup(str(tmp_path / "m.keras.backup"), {"arch": "x"})
    assert (tmp_path / "m.keras.backup").read_text() == "mine"


def test_too_few_images_or_bad_data_fail_before_a_backup_exists(tmp_path):
    backup = tmp_path / "m.keras.backup"
    few = Recipe(epochs=1, batch_size=8, max_images=5, image_size=16)
    with pytest.raises(TfnasError, match="gives 5 training images; training needs at least "
                                         "--batch_size=8"):
        train_standalone(TINY, "mnist", few, backup_dir=str(backup))
    with pytest.raises(TfnasError, match="is not a directory"):
        train_standalone(TINY, f"folder:{tmp_path}/absent", QUICK, backup_dir=str(backup))
    assert not backup.exists()  # so the corrected command starts, not "other settings"

    # A run that died before its first epoch ended left only the record: nothing to resume.
    from tfnas.train.recipe import claim_backup

    backup.mkdir()
    (backup / "training.json").write_text('{"arch": "another net"}')
    claim_backup(str(backup), {"arch": "this net"})
    assert json.loads((backup / "training.json").read_text()) == {"arch": "this net"}
    (backup / "latest.weights.h5").write_bytes(b"")  # what Keras saves at an epoch's end
    with pytest.raises(TfnasError, match="interrupted training with other settings"):
        claim_backup(str(backup), {"arch": "a third net"})
    (backup / "training.json").unlink()  # a backup of an older tfnas
    with pytest.raises(TfnasError, match="does not say its settings"):
        claim_backup(str(backup), {"arch": "this net"})


@pytest.mark.skipif(not os.path.exists("/usr/share/datasets/fashion-mnist"),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_tfds_num_classes_is_checked_against_its_class_label(tmp_path):
    """A TFDS dataset says its classes: --num_classes is checked against them, not by a pass
    over every record (ImageNet's would read all of it before training)."""
    from tests.tfds_fixture import prepare_fashion_subset
    from tfnas.train.recipe import _checked_parts

    name = f"tfds:{prepare_fashion_subset(str(tmp_path), n_train=100, n_test=20)}"
    assert _checked_parts(name, QUICK, str(tmp_path), 10)[2] == 10
    with pytest.raises(TfnasError, match=f"dataset '{name}' has 10 classes but "
                                         "--num_classes=5"):
        _checked_parts(name, QUICK, str(tmp_path), 5)


def test_a_tfrecord_pattern_without_split_has_no_test_records(tmp_path):
    with pytest.raises(TfnasError, match="has no {split} in it, so it holds no test records"):
        train_standalone(TINY, f"tfrecord:{tmp_path}/all.tfrecord", QUICK, num_classes=2)
