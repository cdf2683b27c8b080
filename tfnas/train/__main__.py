"""Retrain a searched architecture standalone and save a Keras model.

  python -m tfnas.train --arch=runs/eff/arch.json --dataset=mnist --epochs=10 \\
      --out=runs/eff/trained.keras
"""

from __future__ import annotations

import json
import os

from absl import flags

from tfnas import cli
from tfnas.distribute import STRATEGIES
from tfnas.errors import TfnasError
from tfnas.io import check_output_path, write_json
from tfnas.space.genotype import load_genotype
from tfnas.train.config import (MULTI_WORKER_FIT, PRECISIONS, Recipe, check_model_out,
                                check_test_split, near_chance)

FLAGS = flags.FLAGS
_D = Recipe()
flags.DEFINE_string("arch", None, "arch.json written by tfnas.search (or its run directory), "
                    "a published name (HourNAS-F, ...) or an op string (with --space).")
flags.DEFINE_string("space", None, "Search space of an op-string --arch.")
flags.DEFINE_string("dataset", "mnist", "mnist (offline default), fashion_mnist, tfds:NAME, "
                    "folder:PATH or tfrecord:PATTERN.")
flags.DEFINE_string("data_dir", None, "Where the dataset's files are, if not the default.")
flags.DEFINE_integer("num_classes", 0, "Classes of the dataset; 0 infers them (a TFRecord "
                     "dataset needs them given).")
flags.DEFINE_string("out", None, "Path of the saved .keras model (default: beside --arch "
                    "as trained.keras, or ./trained.keras).")
flags.DEFINE_integer("epochs", _D.epochs, "Training epochs.")
flags.DEFINE_integer("max_images", _D.max_images, "Train on a random subset of this many "
                     "training images (0: all); a quick proxy. The test split stays whole.")
flags.DEFINE_integer("batch_size", _D.batch_size, "Global batch size, split over the "
                     "replicas (a multiple of their number).")
flags.DEFINE_integer("image_size", _D.image_size, "Training resolution (images are resized).")
flags.DEFINE_float("width_multiplier", _D.width_multiplier, "Channel width multiplier.")
flags.DEFINE_float("learning_rate", _D.learning_rate, "Peak learning rate after warmup "
                   "(SGD, Nesterov momentum 0.9, cosine decay).")
flags.DEFINE_float("warmup_epochs", _D.warmup_epochs, "Linear warmup length in epochs.")
flags.DEFINE_float("weight_decay", _D.weight_decay, "Decoupled weight decay.")
flags.DEFINE_float("clip_norm", _D.clip_norm, "Clip the gradients to this global norm "
                   "(0: no clipping). Typical norms at the peak rate are 1-5; a rare spike "
                   "past them could undo a short run (README, Retraining).")
flags.DEFINE_float("label_smoothing", _D.label_smoothing, "Label smoothing of the loss.")
flags.DEFINE_float("dropout", _D.dropout, "Dropout before the classifier.")
flags.DEFINE_bool("ema", _D.ema, "Keep an exponential moving average of the weights and "
                  "finish with it (optimizer use_ema).")
flags.DEFINE_float("random_erasing", _D.random_erasing, "RandomErasing (cutout) factor; "
                   "0 disables.")
flags.DEFINE_integer("seed", _D.seed, "Random seed.")
flags.DEFINE_enum("mixed_precision", _D.mixed_precision, list(PRECISIONS),
                  "Keras' mixed precision: bfloat16 (TPUs, A100 and later GPUs) or float16 "
                  "(V100/T4-class GPUs; the loss is scaled dynamically) compute with float32 "
                  "weights. The saved model is float32 either way.")
flags.DEFINE_enum("strategy", "auto", list(STRATEGIES),
                  "auto: MirroredStrategy when more than one GPU is visible, else default. "
                  "mirrored: all local GPUs; tpu uses --tpu (untested: no TPU here). "
                  "multi_worker is refused: Keras 3's Model.fit fails under it. --batch_size "
                  "is the global batch.")
flags.DEFINE_string("tpu", None, "TPU address for --strategy=tpu.")
flags.DEFINE_bool("deterministic", True, "Deterministic TF ops and input pipeline: the same "
                  "flags and --seed give the same model and accuracy. Without it two such runs "
                  "train different weights.")
flags.DEFINE_enum("cache", _D.cache, ["auto", "memory", "none"],
                  "Keep the resized images in memory between epochs. auto: when they take at "
                  "most a quarter of this machine's (or container's) memory (float32 at "
                  "--image_size). none: read, decode and resize them every epoch.")


def main(argv: list[str]) -> int:
    if not FLAGS.arch:
        raise TfnasError("--arch is required")
    recipe = Recipe(**{f.name: getattr(FLAGS, f.name) for f in
                       Recipe.__dataclass_fields__.values() if f.name in FLAGS})
    recipe.check()
    check_test_split(FLAGS.dataset)
    if FLAGS.num_classes < 0:
        raise TfnasError("--num_classes must be >= 0 (0 infers them)")
    genotype = load_genotype(FLAGS.arch, FLAGS.space)
    if os.path.isdir(FLAGS.arch):  # a run directory holding arch.json
        base = FLAGS.arch
    else:
        base = os.path.dirname(FLAGS.arch) if FLAGS.arch.endswith(".json") else "."
    out = FLAGS.out or os.path.join(base, "trained.keras")
    metrics = os.path.splitext(out)[0] + ".metrics.json"
    check_model_out(out)
    check_output_path(metrics, "metrics file")
    if FLAGS.strategy == "multi_worker":
        raise TfnasError(MULTI_WORKER_FIT)

    # Bad flags were refused above, before TensorFlow's seconds of start-up.
    tf = cli.import_tensorflow()
    from tfnas.data import class_names
    from tfnas.data.pipeline import absolute_dataset
    from tfnas.distribute import make_strategy
    from tfnas.train.recipe import train_standalone

    strategy = make_strategy(FLAGS.strategy, FLAGS.tpu)
    if FLAGS.deterministic:
        tf.config.experimental.enable_op_determinism()
    model, accuracy = train_standalone(genotype, FLAGS.dataset, recipe, FLAGS.data_dir, out=out,
                                   backup_dir=out + ".backup", num_classes=FLAGS.num_classes,
                                   strategy=strategy)
    write_json(metrics,
               # paths made absolute: deploy.export reads the data back from anywhere
               {"arch": str(genotype), "space": genotype.space,
                "dataset": absolute_dataset(FLAGS.dataset),
                "data_dir": FLAGS.data_dir and os.path.abspath(FLAGS.data_dir),
                # output i's meaning, for an app (None for TFRecords: only their labels exist)
                "class_names": class_names(FLAGS.dataset, FLAGS.data_dir),
                "test_accuracy": round(accuracy, 6), "recipe": vars(recipe),
                "replicas": strategy.num_replicas_in_sync, "deterministic": FLAGS.deterministic})
    classes = int(model.outputs[0].shape[-1])
    if accuracy < near_chance(classes):
        print(f"warning: test accuracy {accuracy:.1%} is about chance ({1 / classes:.1%} for "
              f"{classes} classes): the net learned next to nothing; train it longer "
              "(--epochs) or on more images (--max_images)")
    print(json.dumps({"model": out, "test_accuracy": round(accuracy, 4)}))
    return 0


if __name__ == "__main__":
    cli.run(main)
