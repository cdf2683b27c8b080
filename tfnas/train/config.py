"""The retraining recipe's settings and the checks that need no TensorFlow, so that
`python -m tfnas.train` refuses bad flags before TensorFlow loads."""

from __future__ import annotations

import dataclasses

from tfnas.errors import TfnasError
from tfnas.io import check_output_path

PRECISIONS = ("none", "bfloat16", "float16")
MULTI_WORKER_FIT = ("retraining runs on one machine (--strategy=mirrored for its GPUs): Keras "
                    "3's Model.fit fails under MultiWorkerMirroredStrategy (keras-team/keras"
                    "#20585)")


@dataclasses.dataclass
class Recipe:
    epochs: int = 10
    max_images: int = 0  # train on a random subset of this many images (0: all)
    batch_size: int = 64
    image_size: int = 32
    width_multiplier: float = 1.0
    learning_rate: float = 0.025  # 0.1 per 256 images; 0.05 at batch 64 diverged (README)
    warmup_epochs: float = 1.0
    weight_decay: float = 4e-5
    clip_norm: float = 5.0  # global gradient-norm clip; 0 disables (README: a spike collapsed runs)
    label_smoothing: float = 0.1
    dropout: float = 0.1
    ema: bool = True
    ema_momentum: float = 0.99
    random_erasing: float = 0.25  # probability an image gets an erased box; 0 disables
    seed: int = 0
    cache: str = "auto"  # keep the resized images in memory: auto (if they fit), memory, none
    mixed_precision: str = "none"  # or Keras' mixed_bfloat16 / mixed_float16 policy

    def check(self) -> None:
        """One TfnasError line (naming the CLI flags) for the first value out of range (the
        cache mode is tfnas.data.check_cache_mode's to check)."""
        rules = [
            (self.epochs >= 1 and self.batch_size >= 1 and self.image_size >= 16
             and self.max_images >= 0, "--epochs and --batch_size must be >= 1, --image_size "
             ">= 16 and --max_images >= 0"),
            (0 < self.width_multiplier <= 4, "--width_multiplier must be in (0, 4]"),
            (self.learning_rate > 0, "--learning_rate must be > 0"),
            (self.warmup_epochs >= 0 and self.weight_decay >= 0 and self.clip_norm >= 0,
             "--warmup_epochs, --weight_decay and --clip_norm must be >= 0"),
            (0 <= self.dropout < 1 and 0 <= self.label_smoothing < 1,
             "--dropout and --label_smoothing must be in [0, 1)"),
            (0 <= self.random_erasing <= 1, "--random_erasing must be in [0, 1]"),
            (0 <= self.ema_momentum < 1, "the EMA momentum must be in [0, 1)"),
            (self.mixed_precision in PRECISIONS,
             f"--mixed_precision must be one of {', '.join(PRECISIONS)}"),
        ]
        for ok, message in rules:
            if not ok:
                raise TfnasError(message)


def check_test_split(dataset: str) -> None:
    """A tfrecord: pattern names a {split}, so that the test runs on validation records."""
    if dataset.startswith("tfrecord:") and "{split}" not in dataset:
        raise TfnasError(f"{dataset} has no {{split}} in it, so it holds no test records and "
                         "the test would run on training images; name the files so that "
                         "{split} picks train-* and validation-* ones (e.g. "
                         "tfrecord:DIR/{split}-*.tfrecord)")


def check_model_out(path: str) -> None:
    """The model goes to a writable path ending in .keras (Keras' native zip format)."""
    if not path.endswith(".keras"):
        raise TfnasError(f"--out {path} must end in .keras (the model is saved in Keras' "
                         "native format)")
    check_output_path(path, "--out")


def near_chance(classes: int) -> float:
    """Test accuracy below which a net counts as having learned next to nothing: chance
    (1 / classes, for balanced test labels) plus half of it, at most 5 points more."""
    return min(1.5 / classes, 1 / classes + 0.05)
