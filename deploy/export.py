"""Export a searched architecture or a trained Keras model to .tflite, and check the result.

  python -m deploy.export --arch=DIR/arch.json --out=net.tflite
  python -m deploy.export --model=trained.keras --out=net_int8.tflite --quantize=int8
  python -m deploy.export --model=trained.keras --out=net_qat.tflite --quantize=qat

Every export runs the Keras model and the .tflite on the same validation images and fails
(exit 2, nothing written) unless they agree: fp32 max |logit difference| <= 1e-3 (times the
largest |logit| when that is below 1); fp16, dynamic
and int8 top-1 agreement >= --min_agreement (97%) on a trained model. QAT changes the weights,
so its .tflite may lose at most 1 - --min_agreement (3 points) of the float model's top-1
accuracy instead; its agreement with the fine-tuned and the float model is printed. A net
built from --arch without --weights is untrained: its quantized agreement is printed, not
enforced.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import warnings
import zipfile

import numpy as np
from absl import flags

from tfnas import cli
from tfnas.errors import TfnasError
from tfnas.io import atomic_path, check_output_path, write_text
from tfnas.space.genotype import Genotype, load_genotype

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The CLI's flags (defined only when run as a program, so the module imports cleanly)."""
    flags.DEFINE_string("arch", None, "An arch.json ({\"space\", \"arch\"}, as tfnas.search writes "
                        "it) or the directory holding it; the net is built by tfnas.nn.builder.")
    flags.DEFINE_string("model", None, "A trained Keras model file (.keras) instead of --arch.")
    flags.DEFINE_string("weights", None, "Trained weights (.weights.h5) for the --arch net.")
    flags.DEFINE_string("out", None, "The .tflite file to write (only after the check passes).")
    flags.DEFINE_enum("quantize", "none", ["none", "fp16", "dynamic", "int8", "qat"],
                      "none: fp32; fp16: float16 weights; dynamic: int8 weights, float "
                      "activations; int8: full integer with int8 input and output, calibrated on "
                      "--dataset; qat: quantization-aware fine-tune with tfmot, then full int8.")
    flags.DEFINE_string("dataset", "mnist", "Images for calibration, QAT and the check: mnist, "
                        "fashion_mnist, tfds:NAME, folder:PATH, tfrecord:PATTERN, or a .npy file "
                        "of float images [N, H, W, C] in [0, 1] shaped like the model input. "
                        "Default for a --model that tfnas.train wrote: the dataset (and "
                        "--data_dir) it was trained on, from MODEL.metrics.json; else mnist.")
    flags.DEFINE_string("data_dir", None, "Dataset directory, if the dataset needs one.")
    flags.DEFINE_integer("check_images", 200, "Validation images of the Keras-vs-tflite check.")
    flags.DEFINE_float("min_agreement", 0.97, "Least top-1 agreement of a quantized export "
                       "with Keras; a qat export, whose fine-tune changes the weights, may "
                       "lose at most 1 - this of the float model's top-1 accuracy instead.")
    flags.DEFINE_float("max_logit_diff", 1e-3, "Largest |logit difference| of an fp32 export.")
    flags.DEFINE_integer("resolution", None, "Input resolution of the net built from --arch "
                         "(default: its space's nominal one, 224; 32 for nb201).")
    flags.DEFINE_float("width", 1.0, "Width multiplier of the net built from --arch.")
    flags.DEFINE_integer("num_classes", None, "Classes of the net built from --arch (default: "
                         "its space's nominal ones, 1000; 10 for nb201).")
    flags.DEFINE_integer("qat_steps", 100, "Fine-tuning steps of --quantize=qat.")
    flags.DEFINE_bool("json", False, "Print one JSON object.")


def read_arch(path: str) -> Genotype:
    """The genotype of an arch.json (or of DIR/arch.json); one clear line when it is bad."""
    if not (path.endswith(".json") or os.path.isdir(path)):
        raise TfnasError(f"--arch wants an arch.json file or its directory, got {path}")
    try:
        return load_genotype(path)
    except TfnasError as e:
        message = str(e)
        raise TfnasError(message if path in message else f"arch file {path}: {message}") \
            from None


MODEL_SUFFIXES = (".keras", ".h5")


def check_keras_file(path: str, what: str, suffixes: tuple[str, ...]) -> None:
    """One line unless `path` exists, ends in one of `suffixes` and, as a .keras file, is the
    zip archive Keras writes (Keras itself fails on a bad one with a misleading message)."""
    if not os.path.isfile(path):
        raise TfnasError(f"{what} file {path} does not exist")
    if not path.endswith(suffixes):
        raise TfnasError(f"{what} file {path} should end in {' or '.join(suffixes)}")
    if path.endswith(".keras") and not zipfile.is_zipfile(path):
        raise TfnasError(f"{path} is not a Keras model file (a .keras file is a zip archive)")


def load_model(path: str):
    import keras

    check_keras_file(path, "model", MODEL_SUFFIXES)
    try:
        return keras.saving.load_model(path, compile=False)
    except (ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TfnasError(f"cannot load Keras model {path}: {first}") from None


def training_record(model_path: str) -> dict:
    """What tfnas.train recorded beside `model_path` (MODEL.metrics.json); {} when there is no
    such file or it is unreadable (a model from elsewhere)."""
    path = os.path.splitext(model_path)[0] + ".metrics.json"
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def trained_labels(record: dict, num_outputs: int) -> list[str] | None:
    """The class names of a training record, when there is one for each model output."""
    names = record.get("class_names")
    if not isinstance(names, list) or len(names) != num_outputs:
        return None
    return [str(name) for name in names]


def check_data(record: dict, model_path: str | None) -> tuple[str, str | None, str | None]:
    """(dataset, data_dir, note) for calibration, QAT and the check: the flags' when given,
    else the dataset the model was trained on (its training record), else mnist."""
    recorded = record.get("dataset")
    if not isinstance(recorded, str):
        return FLAGS.dataset, FLAGS.data_dir, None
    data_dir = FLAGS.data_dir if FLAGS["data_dir"].present else record.get("data_dir")
    if not FLAGS["dataset"].present:
        return recorded, data_dir, (f"data: {recorded}, as {model_path} was trained "
                                    "(its metrics.json)")
    if _same_dataset(FLAGS.dataset, recorded):  # the recorded data_dir still applies
        return FLAGS.dataset, data_dir, None
    return FLAGS.dataset, FLAGS.data_dir, (f"warning: {model_path} was trained on {recorded}, "
                                           f"but --dataset={FLAGS.dataset} calibrates and "
                                           "checks it")


def _same_dataset(given: str, recorded: str) -> bool:
    cli.import_tensorflow()  # quietly, before tfnas.data imports it
    from tfnas.data.pipeline import absolute_dataset

    try:
        return absolute_dataset(given) == recorded or given == recorded
    except TfnasError:  # an .npy, or a name the pipeline will refuse with its own line
        return given == recorded


def build_from_arch(genotype: Genotype, resolution: int | None, width: float,
                    num_classes: int | None, weights: str | None, arch: str = "--arch"):
    """The net of `genotype` (from the file `arch`), with `weights` loaded if given;
    `resolution` and `num_classes` default to the space's nominal ones."""
    from tfnas.nn.builder import build_model

    shape = None if resolution is None else (resolution, resolution, 3)
    model = build_model(genotype.space, genotype, num_classes, shape, width_multiplier=width)
    if weights:
        try:
            with warnings.catch_warnings():  # Keras warns once per layer it cannot fill
                warnings.simplefilter("ignore")
                model.load_weights(weights)
        except OSError as e:
            raise TfnasError(f"cannot load weights {weights} into the {genotype.space} net: "
                             f"{str(e).splitlines()[0]}") from None
        except ValueError as e:  # "A total of N objects could not be loaded. Example ...:"
            lines = str(e).strip().splitlines() or [type(e).__name__]
            raise TfnasError(f"weights {weights} do not fit the architecture of {arch}: "
                             f"{lines[0].split('. Example')[0]}") from None
    return model


def convert_qat(model, dataset: str, data_dir: str | None, steps: int,
                check_images: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Runs `deploy.qat` in a subprocess (tfmot must not touch this process's Keras); returns
    the .tflite and the fine-tuned Keras model's logits on `check_images`."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    with tempfile.TemporaryDirectory(prefix="tfnas_qat_") as tmp:
        model_path, out = os.path.join(tmp, "float.keras"), os.path.join(tmp, "qat.tflite")
        check, logits = os.path.join(tmp, "check.npy"), os.path.join(tmp, "logits.npy")
        model.save(model_path)
        np.save(check, check_images)
        cmd = [sys.executable, "-m", "deploy.qat", f"--model={model_path}", f"--out={out}",
               f"--dataset={dataset}", f"--steps={steps}", f"--check_images={check}",
               f"--check_logits={logits}"]
        if data_dir:
            cmd.append(f"--data_dir={data_dir}")
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = [l for l in proc.stderr.splitlines() if l.strip()]
            raise TfnasError(f"QAT failed: {lines[-1] if lines else 'no output'}")
        with open(out, "rb") as f:
            return f.read(), np.load(logits)


def self_check(model, content: bytes, images: np.ndarray, labels: np.ndarray | None,
               quantize: str, enforce: bool, min_agreement: float,
               max_logit_diff: float, qat_logits: np.ndarray | None = None) -> dict:
    """Keras vs .tflite on the same images; raises TfnasError when they disagree.

    A QAT .tflite is another model (the fine-tune changed the weights): it may lose at most
    1 - `min_agreement` of the float model's top-1 accuracy. Its agreement is reported with
    the fine-tuned Keras model it was converted from (`qat_logits`, when given; the layers
    tfmot leaves float are calibrated only at conversion, so 1-3.5% of an SE net's
    predictions move there) and with the float model (`float_agreement`).
    """
    from deploy.convert import run_tflite

    float_logits = np.asarray(model.predict(images, batch_size=32, verbose=0))
    reference = float_logits if qat_logits is None else qat_logits
    logits = run_tflite(content, images)
    agreement = float(np.mean(reference.argmax(1) == logits.argmax(1)))
    info = {"quantize": quantize, "check_images": len(images),
            "max_abs_logit_diff": float(np.max(np.abs(reference - logits))),
            "top1_agreement": agreement}
    if qat_logits is not None:
        info["float_agreement"] = float(np.mean(float_logits.argmax(1) == logits.argmax(1)))
    if labels is not None:
        info["keras_accuracy"] = float(np.mean(float_logits.argmax(1) == labels))
        info["tflite_accuracy"] = float(np.mean(logits.argmax(1) == labels))
    if quantize == "none":
        # Relative to the logits' size when they are small (an untrained net's can be 1e-16),
        # where an absolute limit would pass anything.
        limit = max_logit_diff * min(1.0, float(np.max(np.abs(reference))))
        info["passed"] = info["max_abs_logit_diff"] <= limit
        if not info["passed"]:
            raise TfnasError(f"self-check failed: fp32 .tflite logits differ from Keras by "
                             f"{info['max_abs_logit_diff']:.2e} (limit {limit:.1e})")
        return info
    failure = None
    if quantize == "qat" and labels is not None:
        if info["keras_accuracy"] - info["tflite_accuracy"] > 1 - min_agreement + 1e-9:
            failure = (f"the qat .tflite scores {info['tflite_accuracy']:.1%} top-1 on "
                       f"{len(images)} images, the float model {info['keras_accuracy']:.1%} "
                       f"(it may lose {(1 - min_agreement) * 100:g} points at most)")
    elif agreement < min_agreement:
        failure = (f"{quantize} .tflite agrees with Keras on {agreement:.1%} of "
                   f"{len(images)} images (needs {min_agreement:.0%}; a briefly trained net's "
                   "close logits flip more often: train it longer, or lower --min_agreement)")
    info["passed"], info["enforced"] = failure is None, enforce
    if enforce and failure:
        raise TfnasError(f"self-check failed: {failure}")
    return info


def main(argv: list[str]) -> int:
    if bool(FLAGS.arch) == bool(FLAGS.model):
        raise TfnasError("pass exactly one of --arch=DIR/arch.json and --model=PATH.keras")
    if FLAGS.model:  # a saved model carries its own weights and shapes
        ignored = [f"--{name}" for name in ("weights", "resolution", "width", "num_classes")
                   if FLAGS[name].present]
        if ignored:
            raise TfnasError(f"{', '.join(ignored)} shape the net built from --arch; a --model "
                             "file has its own")
    if not FLAGS.out:
        raise TfnasError("--out=FILE.tflite is required")
    if not FLAGS.out.endswith(".tflite"):  # e.g. an arch.json given as --out by mistake
        raise TfnasError(f"--out={FLAGS.out}: the TFLite file's name must end in .tflite")
    if FLAGS.check_images < 1 or not 0 <= FLAGS.min_agreement <= 1 or FLAGS.qat_steps < 1:
        raise TfnasError("--check_images and --qat_steps must be >= 1, --min_agreement in "
                         "[0, 1]")
    if ((FLAGS.resolution is not None and FLAGS.resolution < 16) or not 0 < FLAGS.width <= 4
            or (FLAGS.num_classes is not None and FLAGS.num_classes < 1)):
        raise TfnasError("--resolution must be >= 16, --width in (0, 4] and --num_classes >= 1")
    check_output_path(FLAGS.out, "--out")  # before the conversion, not after it
    genotype = read_arch(FLAGS.arch) if FLAGS.arch else None
    if FLAGS.model:
        check_keras_file(FLAGS.model, "model", MODEL_SUFFIXES)
    if FLAGS.weights:
        check_keras_file(FLAGS.weights, "weights", (".weights.h5", ".keras", ".h5"))
    record = training_record(FLAGS.model) if FLAGS.model else {}
    dataset, data_dir, note = check_data(record, FLAGS.model)
    if FLAGS.quantize == "qat" and dataset.endswith(".npy"):
        raise TfnasError("qat fine-tunes on labelled data; a .npy file has no labels")

    from tfnas.cli import import_tensorflow

    import_tensorflow()
    from deploy.convert import to_tflite
    from deploy.data import load_images

    if genotype is not None:
        model = build_from_arch(genotype, FLAGS.resolution, FLAGS.width, FLAGS.num_classes,
                                FLAGS.weights, FLAGS.arch)
    else:
        model = load_model(FLAGS.model)
    input_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    if note:  # with --json, stdout holds the JSON object alone
        print(note, file=sys.stderr if FLAGS.json else sys.stdout)
    images, labels = load_images(dataset, "test", input_shape, FLAGS.check_images, data_dir)
    qat_logits = None
    if FLAGS.quantize == "qat":
        content, qat_logits = convert_qat(model, dataset, data_dir, FLAGS.qat_steps, images)
    else:
        calibration = None
        if FLAGS.quantize == "int8":
            calibration, _ = load_images(dataset, "train", input_shape, 200, data_dir)
        with cli.quiet_native_stderr():  # the converter's settings dump
            content = to_tflite(model, FLAGS.quantize, calibration)
    trained = bool(FLAGS.model or FLAGS.weights)
    with cli.quiet_native_stderr():  # LiteRT's INFO line about its XNNPACK delegate
        info = self_check(model, content, images, labels, FLAGS.quantize, trained,
                          FLAGS.min_agreement, FLAGS.max_logit_diff, qat_logits)
    with atomic_path(FLAGS.out) as tmp:
        with open(tmp, "wb") as f:
            f.write(content)
    info.update(out=FLAGS.out, size_bytes=len(content), dataset=dataset)
    labels = trained_labels(record, int(model.outputs[0].shape[-1]))
    if labels:  # one name per line, output i on line i: what TFLite apps read
        info["labels"] = os.path.splitext(FLAGS.out)[0] + ".labels.txt"
        write_text(info["labels"], "\n".join(labels) + "\n")
    if FLAGS.json:
        print(json.dumps(info))
    else:
        verdict = "passed" if info["passed"] else "not enforced (untrained net)"
        accuracy = (f", top-1 accuracy {info['tflite_accuracy']:.1%} (float model "
                    f"{info['keras_accuracy']:.1%})" if "keras_accuracy" in info else "")
        kind = "fp32" if FLAGS.quantize == "none" else FLAGS.quantize
        print(f"wrote {FLAGS.out} ({len(content):,} bytes, {kind}); check on "
              f"{len(images)} images: max |logit diff| {info['max_abs_logit_diff']:.2e}, "
              f"top-1 agreement {info['top1_agreement']:.1%}{accuracy}: {verdict}")
        if "labels" in info:
            print(f"wrote {info['labels']} (the class names tfnas.train recorded)")
    return 0


if __name__ == "__main__":
    define_flags()
    cli.run(main)
