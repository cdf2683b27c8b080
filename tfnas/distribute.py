"""Choosing the tf.distribute strategy of a search or a retraining, and the roles of its
workers. Importing it does not import TensorFlow (flag definitions use STRATEGIES)."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from tfnas.errors import TfnasError

if TYPE_CHECKING:
    import tensorflow as tf

STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")


def make_strategy(name: str, tpu: str | None = None) -> tf.distribute.Strategy:
    """auto: MirroredStrategy over the visible GPUs when there are several, else default."""
    import tensorflow as tf
    if name == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise TfnasError("--strategy=multi_worker needs the TF_CONFIG environment variable "
                             "(cluster and task of this worker)")
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as e:
            raise TfnasError(f"TF_CONFIG is not valid JSON: {e}") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as e:
            where = f"at {tpu!r}" if tpu else "(give its address with --tpu)"
            raise TfnasError(f"--strategy=tpu: no TPU reachable {where}: "
                             f"{str(e).strip().splitlines()[0]}") from None
        return tf.distribute.TPUStrategy(resolver)
    raise TfnasError(f"unknown strategy {name!r}")


def configure_grappler(mode: str) -> bool:
    """Switches TensorFlow's graph optimizer (Grappler) for this process; returns whether it
    is on. `auto`: on only when a GPU is visible.

    On CPU, Grappler spends seconds on the first call of each traced supernet step (and on
    each Case branch the first time it runs) and buys no measurable step time: the default
    efficientnet search took 276 s with it and 210 s without (README, Performance / Search).
    It stays on with a GPU, where its layout and fusion passes are meant to pay (not measured
    here: no GPU).
    """
    import tensorflow as tf
    if mode not in ("auto", "on", "off"):
        raise TfnasError(f"unknown --grappler mode {mode!r} (auto, on or off)")
    on = bool(tf.config.list_physical_devices("GPU")) if mode == "auto" else mode == "on"
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": not on})
    return on


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """Worker processes of the run (1 unless multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return 1
    return sum(len(tasks) for job, tasks in resolver.cluster_spec().as_dict().items()
               if job in ("chief", "worker"))


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files (always, unless a non-chief worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    cluster = resolver.cluster_spec().as_dict()
    if "chief" in cluster:
        return task_type == "chief"
    return task_type == "worker" and task_id == 0


def check_global_batch(batch_size: int, strategy: tf.distribute.Strategy) -> None:
    """One line when the global batch does not split evenly over the strategy's replicas."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise TfnasError(f"--batch_size={batch_size} does not split evenly over the "
                         f"{replicas} replicas; use a multiple of {replicas}")


def check_precision(mixed: str, strategy: tf.distribute.Strategy) -> None:
    """One line for float16 on a TPU, which computes in bfloat16 (use that)."""
    import tensorflow as tf
    if mixed == "float16" and isinstance(strategy, tf.distribute.TPUStrategy):
        raise TfnasError("--mixed_precision=float16 does not run on TPUs; use bfloat16")
