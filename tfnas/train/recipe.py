"""The retraining recipe: label smoothing, warmup + cosine, EMA, RandomErasing (Keras core;
what tensorflow-addons used to provide)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from typing import Iterator

import keras
import tensorflow as tf

from tfnas.data import (batched, check_cache_mode, check_class_count, check_labels, load_part,
                        reading, require_classes, scan_labels, use_cache)
from tfnas.distribute import check_global_batch, check_precision
from tfnas.errors import TfnasError
from tfnas.io import atomic_path, write_json
from tfnas.nn.builder import build_model
from tfnas.space.genotype import Genotype
from tfnas.train.config import MULTI_WORKER_FIT, Recipe, check_model_out, check_test_split


BACKUP_RECORD = "training.json"


def claim_backup(backup_dir: str, training: dict) -> None:
    """Makes `backup_dir` (Keras' BackupAndRestore directory, removed when training ends) hold
    an interrupted run of exactly `training` (net, data, recipe): a rerun with the same flags
    resumes from it; one with other flags is refused, since Keras would restore weights of
    another net, or go on with another recipe, into this one. A directory with nothing Keras
    saved (the run failed before its first epoch ended) is taken over."""
    record = os.path.join(backup_dir, BACKUP_RECORD)
    if os.path.exists(backup_dir) and not os.path.isdir(backup_dir):
        raise TfnasError(f"{backup_dir} (where an interrupted training resumes from) is a "
                         "file; move it away")
    saved = set(os.listdir(backup_dir)) - {BACKUP_RECORD} if os.path.isdir(backup_dir) else ()
    if saved:
        try:
            with open(record, encoding="utf-8") as f:
                same = json.load(f) == training
        except FileNotFoundError:
            raise TfnasError(f"{backup_dir} holds an interrupted training that does not say "
                             "its settings (an older tfnas made it); delete it to start "
                             "over") from None
        except (OSError, ValueError):
            same = False
        if not same:
            raise TfnasError(f"{backup_dir} holds an interrupted training with other "
                             "settings (net, data or recipe); rerun with the same flags to "
                             "resume it, or delete it to start over")
        return
    os.makedirs(backup_dir, exist_ok=True)
    write_json(record, training)


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore keeping the previous epoch's backup too, so that a kill while
    the latest is written resumes from the one before; a backup that cannot be restored is
    one TfnasError naming the directory, not a traceback at every rerun."""

    def __init__(self, backup_dir: str):
        super().__init__(backup_dir, double_checkpoint=True)

    def on_train_begin(self, logs=None):
        try:
            super().on_train_begin(logs)
        except (OSError, ValueError, KeyError) as e:
            reason = str(e).strip().splitlines()
            raise TfnasError(f"cannot resume the interrupted training in {self.backup_dir} "
                             f"({reason[0] if reason else type(e).__name__}); delete it to "
                             "start over") from None


def _augment(recipe: Recipe):
    eraser = keras.layers.RandomErasing(factor=recipe.random_erasing, value_range=(0, 1),
                                        seed=recipe.seed)

    def fn(images, labels):
        return eraser(images, training=True), labels
    return fn


def _compile(model: keras.Model, recipe: Recipe, steps_per_epoch: int) -> None:
    total = max(1, recipe.epochs * steps_per_epoch)
    warmup = min(total - 1, int(recipe.warmup_epochs * steps_per_epoch))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=recipe.learning_rate * 0.01, decay_steps=max(1, total - warmup),
        warmup_target=recipe.learning_rate, warmup_steps=warmup)
    # Keras' EMA has no bias correction: on a short run, keep it to the last ~10% of steps.
    ema_momentum = min(recipe.ema_momentum, max(0.0, 1 - 10 / total))
    optimizer = keras.optimizers.SGD(
        schedule, momentum=0.9, nesterov=True, weight_decay=recipe.weight_decay,
        global_clipnorm=recipe.clip_norm or None,
        use_ema=recipe.ema and ema_momentum > 0, ema_momentum=ema_momentum)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(from_logits=True,
                                                  label_smoothing=recipe.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=False)  # XLA compiles for minutes on CPU and buys nothing here
    # Built here, not in fit's first trace of the train step (Keras builds it early only under
    # a strategy of its own): variables created while tracing make TensorFlow trace it twice.
    model.optimizer.build(model.trainable_variables)  # the loss-scaling wrapper under float16


def _set_bn_momentum(model: keras.Model, total_steps: int) -> None:
    """BN statistics must converge within a short proxy run: with momentum 0.99, 200 steps
    leave 13% of the initial (0, 1) statistics in them and inference falls to chance."""
    momentum = min(0.99, max(0.9, 1 - 20 / max(1, total_steps)))
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


@contextlib.contextmanager
def _policy(name: str) -> Iterator[None]:
    """Keras' global dtype policy `name` while models are built, then the one before."""
    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)


def _compute_policy(mixed: str) -> str:
    """float32, or Keras' mixed policy (float32 weights, bfloat16 or float16 compute;
    `compile` then scales a float16 loss)."""
    return "float32" if mixed == "none" else f"mixed_{mixed}"


def _one_hot(num_classes: int):
    return lambda x, y: (x, tf.one_hot(y, num_classes))


def _accuracy(model: keras.Model, ds: tf.data.Dataset) -> float:
    """Top-1 accuracy on (images, one-hot labels) batches; the model need not be compiled."""
    metric = keras.metrics.CategoricalAccuracy()
    for images, labels in ds:
        metric.update_state(labels, model.predict_on_batch(images))
    return float(metric.result())


def _checked_parts(dataset: str, recipe: Recipe, data_dir: str | None, num_classes: int):
    """The training and test parts and the number of classes, after the checks that would
    otherwise fail (or train on garbage) only once training has started."""
    train = load_part(dataset, "train", recipe.image_size, data_dir,
                      limit=recipe.max_images or None, seed=recipe.seed, count=True)
    test = load_part(dataset, "test", recipe.image_size, data_dir, count=True)
    classes = num_classes or require_classes(dataset, train.classes)
    if num_classes:  # given, not inferred: a label >= it would train on an all-zero target
        labels = []
        for part in (train, test):
            if part.labels is not None:
                labels += part.labels
            elif part.classes:  # TFDS: its class label's size bounds the labels
                check_class_count(dataset, part.classes, num_classes)
            else:
                with reading(dataset):  # the labels only: no image is decoded
                    labels += scan_labels(part.records)[1:]
        check_labels(dataset, labels, classes, num_classes)
    if train.size < recipe.batch_size:  # every batch is a full one: no step at all
        raise TfnasError(f"dataset {dataset!r} gives {train.size} training images; training "
                         f"needs at least --batch_size={recipe.batch_size}")
    return train, test, classes


def _datasets(train, test, classes: int, recipe: Recipe) -> tuple[tf.data.Dataset, ...]:
    """Batched (train: shuffled, augmented) datasets with one-hot labels."""
    cache = use_cache(recipe.cache, train.size + test.size, recipe.image_size)  # both fit
    train_ds = batched(train, recipe.batch_size, shuffle=True, seed=recipe.seed, cache=cache)
    if recipe.random_erasing > 0:
        train_ds = train_ds.map(_augment(recipe), num_parallel_calls=tf.data.AUTOTUNE)
    test_ds = batched(test, recipe.batch_size, shuffle=False, drop_remainder=False,
                      cache=cache)
    return train_ds.map(_one_hot(classes)), test_ds.map(_one_hot(classes))


def train_standalone(genotype: Genotype, dataset: str, recipe: Recipe,
                     data_dir: str | None = None, out: str | None = None,
                     backup_dir: str | None = None, verbose: int | str = "auto",
                     num_classes: int = 0,
                     strategy: tf.distribute.Strategy | None = None
                     ) -> tuple[keras.Model, float]:
    """Trains the child of `genotype` on the training split; returns (model, test accuracy).

    `backup_dir` makes an interrupted run resume (keras BackupAndRestore); `out` receives
    the final .keras model atomically. `num_classes` 0 infers the classes from the dataset
    (a TFRecord needs them given). `strategy` (default: the current one; not multi-worker, which Keras 3's `fit` does not
    run) trains over its replicas, `recipe.batch_size` being the global batch. The returned
    and saved model is a float32 one on the default device, whatever the strategy and mixed
    precision: what `deploy.export` converts (a copy, uncompiled, when another strategy or
    mixed precision trained).
    """
    recipe.check()
    check_cache_mode(recipe.cache)
    check_test_split(dataset)
    default = tf.distribute.get_strategy()
    strategy = strategy or default
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        raise TfnasError(MULTI_WORKER_FIT)
    check_precision(recipe.mixed_precision, strategy)
    check_global_batch(recipe.batch_size, strategy)
    if out:
        check_model_out(out)
    keras.utils.set_random_seed(recipe.seed)
    train, test, classes = _checked_parts(dataset, recipe, data_dir, num_classes)
    if backup_dir:  # only once the data is known good: a failed start leaves no backup
        claim_backup(backup_dir, {"arch": str(genotype), "space": genotype.space,
                                  "dataset": dataset, "classes": classes,
                                  "recipe": {k: v for k, v in vars(recipe).items()
                                             if k != "cache"}})  # cache: how, not what
    train_ds, test_ds = _datasets(train, test, classes, recipe)
    steps = train.size // recipe.batch_size  # >= 1; known: streams' lengths were counted

    def build() -> keras.Model:
        return build_model(genotype.space, genotype, num_classes=classes,
                           input_shape=(recipe.image_size, recipe.image_size, 3),
                           width_multiplier=recipe.width_multiplier,
                           dropout_rate=recipe.dropout)

    with _policy(_compute_policy(recipe.mixed_precision)), strategy.scope():
        model = build()
        _set_bn_momentum(model, recipe.epochs * steps)
        _compile(model, recipe, steps)
    callbacks = [ResumableBackup(backup_dir)] if backup_dir else []
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2  # one line per epoch in logs
    # tf.data reads (and decodes) the files only now; shuffled already: shuffle=False
    with reading(dataset), warnings.catch_warnings():
        # a streamed dataset's length is found at its end
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        model.fit(train_ds, epochs=recipe.epochs, callbacks=callbacks, verbose=verbose,
                  shuffle=False)
        if recipe.mixed_precision != "none" or strategy is not default:
            trained = model
            with _policy("float32"):  # on this process's default device
                model = build()
            _set_bn_momentum(model, recipe.epochs * steps)  # the config QAT fine-tunes with
            model.set_weights(trained.get_weights())  # EMA weights, if any: fit ends with them
        accuracy = _accuracy(model, test_ds)
    if out:
        with atomic_path(out) as tmp:  # tmp keeps the suffix: a .keras out gives a .keras tmp
            os.remove(tmp)  # keras refuses to overwrite without asking in some versions
            model.save(tmp)
    return model, accuracy
