"""What every supernet search shares: the run state, and one resumable training loop.

A search is a sequence of stages recorded in DIR/state.json. A training stage alternates
weight steps (weight split) and architecture steps (architecture split) as `StagePlan` lays
them out; `run_stage` checkpoints everything it is given every `checkpoint_secs` seconds
(and/or every `checkpoint_every` steps) and at the end of the stage, resumes from the latest
checkpoint, stops on a NaN loss keeping the last good checkpoint, shows progress and writes
TensorBoard scalars. The algorithms (HourNAS, SETN, TNAS) differ only in what a step does.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import os
import signal
import sys
import threading
import time
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from tfnas import engine
from tfnas.engine.checkpoint import all_finite
from tfnas.errors import TfnasError
from tfnas.io import read_json, remove_stale_temp_files, write_json
from tfnas.cost.tables import CostTables
from tfnas.search import report
from tfnas.search.data import SearchData
from tfnas.progress import Progress
from tfnas.search.rundir import OUTPUTS, RunDir
from tfnas.space.base import SearchSpace
from tfnas.space.genotype import Genotype

# A step: (images, labels, global step) -> (loss, penalty or 0, values for the progress line).
Step = Callable[[Any, Any, int], "tuple[float, float, dict[str, float]]"]


class NaNLoss(TfnasError):
    pass


@dataclasses.dataclass
class CommonConfig:
    """What every search takes: space, targets, data, proxy network, optimizers, run."""

    space: SearchSpace
    targets: dict[str, float]
    dataset: str = "mnist"
    data_dir: str | None = None
    num_classes: int = 0
    weight_fraction: float = 0.8
    max_images: int = 0
    cache: str = "auto"
    image_size: int = 32
    width_multiplier: float = 0.5
    batch_size: int = 32
    steps_per_epoch: int = 0
    weight_lr: float = 0.1
    weight_decay: float = 4e-5
    clip_norm: float = 5.0
    arch_lr: float = 0.01
    seed: int = 0
    checkpoint_every: int = 0
    checkpoint_secs: float = 120.0
    latency_table: str | None = None


@dataclasses.dataclass
class StagePlan:
    name: str
    epochs: int
    weight_steps: int
    arch_steps: int

    @property
    def steps_per_epoch(self) -> int:
        return self.weight_steps + self.arch_steps

    @property
    def total(self) -> int:
        return self.epochs * self.steps_per_epoch

    def locate(self, step: int) -> tuple[int, str, int]:
        """(epoch, "weights"|"arch", batch index within that phase) of a global step."""
        epoch, within = divmod(step, self.steps_per_epoch)
        if within < self.weight_steps:
            return epoch, "weights", within
        return epoch, "arch", within - self.weight_steps


@dataclasses.dataclass
class StageOptimizers:
    """What every search stage trains with: SGD on the weights, Adam on the architecture
    parameters, the step counter and (float16 compute) the loss scale."""

    weight: keras.optimizers.Optimizer
    arch: keras.optimizers.Optimizer
    step: tf.Variable
    loss_scale: Any = None  # engine.DynamicLossScale

    @classmethod
    def create(cls, cfg: CommonConfig, net: keras.Model, arch,
               strategy: tf.distribute.Strategy) -> "StageOptimizers":
        with strategy.scope():
            weight = keras.optimizers.SGD(cfg.weight_lr, momentum=0.9,
                                          weight_decay=cfg.weight_decay)
            arch_opt = keras.optimizers.Adam(cfg.arch_lr)
            step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        engine.prepare_optimizer(weight, net.trainable_variables, strategy)
        engine.prepare_optimizer(arch_opt, arch.trainable_variables, strategy)
        return cls(weight, arch_opt, step, engine.loss_scale_for_policy(strategy))

    def checkpoint_items(self) -> dict:
        return {"weight_opt": self.weight, "arch_opt": self.arch, "step": self.step,
                **(self.loss_scale.checkpoint_items() if self.loss_scale else {})}


class DeferredInterrupt:
    """Holds a Ctrl-C (SIGINT) until the stage loop reaches a step boundary, where it saves a
    checkpoint before stopping; a second Ctrl-C stops at once. Inactive off the main thread
    or under a handler someone else installed."""

    def __init__(self, enabled: bool = True):
        self.requested = False
        self._active = (enabled and threading.current_thread() is threading.main_thread()
                        and signal.getsignal(signal.SIGINT) is signal.default_int_handler)

    def __enter__(self) -> "DeferredInterrupt":
        if self._active:
            signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, _signum, _frame) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.stderr.write("\ninterrupt: saving a checkpoint after this step (Ctrl-C again to "
                         "stop without it)\n")

    def __exit__(self, *_exc) -> None:
        if self._active:
            signal.signal(signal.SIGINT, signal.default_int_handler)


class SupernetSearch:
    """Run state (DIR/state.json), TensorBoard writer and the stage loop of one search."""

    first_stage = "train"
    vital_layers = False  # whether the search treats the space's vital layers apart
    # Every stage a run can be at, with the state.json entries a run resumed there reads.
    stage_needs: dict[str, tuple[str, ...]] = {}
    # A Ctrl-C saves a checkpoint before stopping; multi-worker runs turn this off, since
    # workers must save at the same step and a signal reaches one of them.
    save_on_interrupt = True

    def __init__(self, rundir: RunDir, cfg: CommonConfig, chief: bool = True,
                 flags_record: dict | None = None, log: Callable[[str], None] = print):
        self.rundir, self.chief, self.log = rundir, chief, log
        self.flags_record = flags_record or {}
        self.checkpoint_every, self.checkpoint_secs = cfg.checkpoint_every, cfg.checkpoint_secs
        self.state_path = rundir.file("state.json")
        self.state = self._load_state()
        self.writer = tf.summary.create_file_writer(
            rundir.tensorboard_dir if chief else worker_dir(rundir, "tensorboard"))
        own = os.path.dirname(worker_dir(rundir, "result"))
        if not chief and os.path.isdir(own):  # only this worker writes there
            remove_stale_temp_files(own, OUTPUTS)  # what a kill left (the chief's: claim)

    def _load_state(self) -> dict[str, Any]:
        if not os.path.exists(self.state_path):
            return {"stage": self.first_stage, "seconds": {}}
        try:
            state = read_json(self.state_path, "run state")
        except TfnasError as e:
            raise TfnasError(f"{e}; restore it or use another --model_dir") from None
        if not isinstance(state, dict) or "stage" not in state:
            raise TfnasError(f"run state {self.state_path} has no \"stage\" entry; restore it "
                             "or use another --model_dir")
        stage = state["stage"]
        if self.stage_needs and stage not in self.stage_needs:
            raise TfnasError(f"run state {self.state_path} is at stage {stage!r}, which this "
                             f"search does not have ({', '.join(self.stage_needs)}); restore it "
                             "or use another --model_dir")
        missing = [k for k in ("seconds", *self.stage_needs.get(stage, ())) if k not in state]
        if missing:
            raise TfnasError(f"run state {self.state_path} is at stage {stage!r} but lacks "
                             f"{', '.join(missing)}; restore it or use another --model_dir")
        return state

    def save_state(self, **updates) -> None:
        self.state.update(updates)
        if self.chief:
            write_json(self.state_path, self.state)

    def elapsed(self, stage: str) -> float:
        """Wall time of a stage, summed over the invocations that worked on it."""
        return round(self.state.get("partial_seconds", {}).get(stage, 0.0), 3)

    def finish_stage(self, stage: str, next_stage: str, seconds: float | None = None,
                     **updates) -> None:
        """Records `stage` as done (with its wall time: `seconds`, or what `run_stage`
        summed over invocations) and `next_stage` as the one to run."""
        seconds = self.elapsed(stage) if seconds is None else round(seconds, 3)
        self.save_state(stage=next_stage, **updates,
                        seconds={**self.state["seconds"], stage: seconds})

    def run_stage(self, plan: StagePlan, data: SearchData, checkpoint: tf.train.Checkpoint,
                  weight_step: Step, arch_step: Step | None,
                  warm_start: Callable[[], None] | None = None,
                  summaries: Callable[[int], None] | None = None) -> None:
        """Runs `plan` from its checkpoint (or from scratch, after `warm_start`).

        `checkpoint` must hold everything the steps change, including a scalar int64
        variable `step`. `summaries(step)` may write extra TensorBoard values.
        """
        step_var = checkpoint.step
        directory = os.path.join(self.rundir.checkpoint_dir if self.chief
                                 else worker_dir(self.rundir, "checkpoints"), plan.name)
        manager = open_checkpoints(checkpoint, directory)
        if manager.latest_checkpoint:
            try:
                checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
            except (tf.errors.OpError, AssertionError, ValueError) as e:
                raise TfnasError(f"checkpoint {manager.latest_checkpoint} does not fit this "
                                 f"search ({type(e).__name__}); use another --model_dir") from None
            at = int(step_var.numpy())
            self.log(f"resuming stage {plan.name} at step {at}/{plan.total}"
                     + (" (its training is done; the work after it runs again)"
                        if at == plan.total else ""))
        elif warm_start is not None:
            warm_start()
        # The previous stage's supernet and traced steps (and a warm start's donor) are cyclic
        # garbage (~190k objects after a Fashion-MNIST stage 1) that Python's collector may
        # leave for a long time; until it runs, this stage runs slower (README, Performance).
        gc.collect()
        progress = Progress(f"stage {plan.name}", plan.total, start=int(step_var.numpy()))
        t0 = time.monotonic()
        before = self.state.get("partial_seconds", {}).get(plan.name, 0.0)
        step = int(step_var.numpy())
        iterator, current, last_saved, saved_at = None, None, step, time.monotonic()
        smooth: dict[str, float] = {}
        with DeferredInterrupt(self.save_on_interrupt) as interrupt:
            while step < plan.total:
                epoch, phase, batch = plan.locate(step)
                if current != (epoch, phase):
                    iterator, current = data.epoch(phase, epoch, batch), (epoch, phase)
                images, labels = next(iterator)
                run = weight_step if phase == "weights" or arch_step is None else arch_step
                loss, extra, shown = run(images, labels, step)
                if not math.isfinite(loss) or not math.isfinite(extra):
                    raise NaNLoss(f"the {phase} loss became {loss} at stage {plan.name} step "
                                  f"{step}; the last good checkpoint (step {last_saved}) is kept; "
                                  "lower --weight_lr or --arch_lr")
                step += 1
                step_var.assign(step)
                with self.writer.as_default(step=step):
                    tf.summary.scalar(f"{plan.name}/{phase}_loss", loss)
                    if phase == "arch" and extra:
                        tf.summary.scalar(f"{plan.name}/resource_penalty", extra)
                    if summaries is not None:
                        summaries(step)
                key = f"{phase[:1]}_loss"  # shown as moving averages: one batch's loss is noise
                smooth[key] = loss if key not in smooth else 0.9 * smooth[key] + 0.1 * loss
                progress.update(step, **smooth, **shown)
                stop = interrupt.requested
                if step == plan.total or stop or self._checkpoint_due(step, saved_at):
                    if not all_finite(checkpoint):
                        raise NaNLoss(f"the weights became non-finite by stage {plan.name} "
                                      f"step {step}; the last good checkpoint (step "
                                      f"{last_saved}) is kept; lower --weight_lr or --arch_lr")
                    manager.save(checkpoint_number=step)
                    last_saved, saved_at = step, time.monotonic()
                    self.save_state(partial_seconds={**self.state.get("partial_seconds", {}),
                                                     plan.name: before + time.monotonic() - t0})
                if stop:
                    break
        self.writer.flush()
        if interrupt.requested:  # also when it came during the stage's last save
            self.log(f"stage {plan.name}: checkpoint saved at step {last_saved}/{plan.total}; "
                     "rerun the same command to resume")
            raise KeyboardInterrupt

    def _checkpoint_due(self, step: int, saved_at: float) -> bool:
        by_steps = self.checkpoint_every > 0 and step % self.checkpoint_every == 0
        by_time = self.checkpoint_secs > 0 and time.monotonic() - saved_at >= self.checkpoint_secs
        return by_steps or by_time

    def write_result(self, cfg: CommonConfig, genotype: Genotype, tables: CostTables,
                     num_classes: int, probs: np.ndarray, title: str,
                     extra: dict[str, Any]) -> dict[str, Any]:
        """DIR/arch.json (SPEC §5 plus the run's settings and stage times) and
        DIR/arch_probs.png; a non-chief worker writes its own copy of the record only."""
        space = cfg.space
        record = report.result_record(genotype, tables, cfg.targets, {
            **extra, "seed": cfg.seed, "dataset": cfg.dataset, "num_classes": num_classes,
            "proxy": {"image_size": cfg.image_size, "width_multiplier": cfg.width_multiplier},
            "stages": {k: {"seconds": v} for k, v in self.state["seconds"].items()},
            "flags": self.flags_record})
        if self.chief:
            report.plot_probabilities(
                self.rundir.file("arch_probs.png"), probs, space.legal_mask(), list(space.ops),
                [c.name for c in space.choices], space.vital_mask() & self.vital_layers,
                genotype.indices(), title)
            write_json(self.rundir.file("arch.json"), record)
        else:
            write_json(os.path.join(worker_dir(self.rundir, "result"), "arch.json"), record)
        return record

    def probability_histograms(self, stage: str, probs: np.ndarray, names: list[str],
                               step: int) -> None:
        """TensorBoard histograms of each searched layer's op distribution at the end of a
        stage: op indices (of the space's alphabet) weighted by their probability. Layers
        with one possible op (pinned) are left out."""
        with self.writer.as_default(step=step):
            for i, name in enumerate(names):
                if np.count_nonzero(probs[i] > 0) <= 1:
                    continue
                tf.summary.histogram(f"{stage}/op_probability/{name}",
                                     np.repeat(np.arange(probs.shape[1]),
                                               np.round(probs[i] * 1000).astype(int)),
                                     description="op index (the space's alphabet) weighted "
                                                 "by its probability, at the stage's end")
        self.writer.flush()


def open_checkpoints(checkpoint: tf.train.Checkpoint, directory: str,
                     max_to_keep: int = 2) -> tf.train.CheckpointManager:
    """The checkpoint manager of `directory`, after checking that its latest checkpoint (if
    any) can be read whole: a damaged `checkpoint` state file or a truncated, garbage or
    missing checkpoint file is a TfnasError, and nothing in `directory` is changed. Whether
    the checkpoint fits the model is left to the restore."""
    state_file = os.path.join(directory, "checkpoint")
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")  # TF only warns about an unparsable state file, then ignores it
    try:
        manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=max_to_keep)
    except ValueError:  # TF's error for an empty state file
        raise TfnasError(_damaged(state_file, "it names no checkpoint")) from None
    finally:
        logger.setLevel(level)
    latest = manager.latest_checkpoint
    if latest is None and os.path.exists(state_file):
        raise TfnasError(_damaged(state_file, "it does not parse"))
    if latest is not None:
        try:
            reader = tf.train.load_checkpoint(latest)
            for name in reader.get_variable_to_shape_map():
                reader.get_tensor(name)
        except (tf.errors.OpError, IndexError) as e:
            raise TfnasError(_damaged(latest, e)) from None
    return manager


def _damaged(path: str, error: Exception | str) -> str:
    reason = (getattr(error, "message", None) or str(error)).strip().splitlines()
    return (f"checkpoint {path} is damaged or incomplete ({reason[0] if reason else 'empty'}); "
            "restore it or use another --model_dir")


def worker_dir(rundir: RunDir, what: str) -> str:
    """Where a non-chief worker of a multi-worker run keeps its own files."""
    task = os.environ.get("TF_CONFIG", "{}")
    try:
        index = json.loads(task).get("task", {}).get("index", 0)
    except json.JSONDecodeError:
        index = 0
    return rundir.file(os.path.join(f".worker{index}", what))


def value(variable):
    """A variable's value as numpy (float for scalars), also for distributed variables."""
    v = tf.convert_to_tensor(variable).numpy()
    return float(v) if v.ndim == 0 else v
