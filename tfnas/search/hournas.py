"""HourNAS, Algorithm 1: vital blocks first on a minimal supernet, then the non-vital blocks
inside space proposals that meet the resource targets.

Every stage checkpoints (weights, θ or Π/Θ, optimizer states, τ, sampler RNG, position in the
data) so that rerunning the same command resumes where a kill left it; `state.json` records
which stage is done. With a fixed seed on CPU a resumed run ends with the same arch.json as an
uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from tfnas import engine
from tfnas.cost.tables import cost_tables
from tfnas.engine.checkpoint import search_checkpoint
from tfnas.engine.scoring import OneShotScorer, perturbation_losses
from tfnas.errors import TfnasError
from tfnas.io import atomic_path, write_text
from tfnas.nn.sampling import ArchParams, LossAverage
from tfnas.nn.schedule import TAU_DECAY, TAU_START
from tfnas.nn.supernet import SuperNet
from tfnas.progress import Progress
from tfnas.proposals.budget import make_budget
from tfnas.proposals.optimizer import ProposalObjective, optimize_proposals
from tfnas.proposals.selector import Proposals
from tfnas.search.base import (CommonConfig, StageOptimizers, StagePlan, SupernetSearch, value,
                               worker_dir)
from tfnas.search.data import SearchData
from tfnas.search.diagnostics import (flat_scores_warning, missed_targets_warning,
                                      undecided_vital_note, untrained_warning)
from tfnas.search.final_choice import most_likely_within_targets, proposal_candidates
from tfnas.search.proposal_arch import ProposalArchParams
from tfnas.search.rundir import RunDir
from tfnas.search.vital_choice import TOLERANCE, feasible_vital_choice
from tfnas.space.genotype import Genotype

# Perturbation scoring batches hold up to this many pixels (256 images of 32 x 32), or one
# training batch when that is larger.
SCORING_PIXELS = 256 * 32 * 32


@dataclasses.dataclass
class SearchConfig(CommonConfig):
    """HourNAS's settings (`space` is an MBConvSpace)."""

    user_fixed: dict[int, int] = dataclasses.field(default_factory=dict)
    vital_epochs: int = 1
    nonvital_epochs: int = 1
    two_stage: bool = True
    sampler: str = "gumbel_max"
    vital_sampler: str = "gumbel_max"
    vital_selection: str = "probability"
    proposal_selection: str = "probability"
    selection_batches: int = 32
    arch_gradient: str = "reinforce"
    shared_trace: bool = True
    tau: float = TAU_START
    tau_decay: float = TAU_DECAY
    alpha: float = 5.0
    beta: float = 1e-2
    num_proposals: int = 8
    proposal_iterations: int = 1000


class HourNAS(SupernetSearch):
    """Runs Algorithm 1 in a run directory; `run()` returns the arch.json record."""

    first_stage = "vital"
    vital_layers = True
    stage_needs = {"vital": (), "proposals": (), "nonvital": ("proposals",),
                   "done": ("final_indices",)}

    def __init__(self, cfg: SearchConfig, data: SearchData, rundir: RunDir,
                 strategy: tf.distribute.Strategy, chief: bool = True,
                 flags_record: dict | None = None, log: Callable[[str], None] = print):
        if cfg.two_stage:  # what stage 1 fixed
            self.stage_needs = {stage: needs + (("vital_ops",) if stage != "vital" else ())
                                for stage, needs in self.stage_needs.items()}
        else:
            self.first_stage = "proposals"
        super().__init__(rundir, cfg, chief, flags_record, log)
        self.cfg, self.data, self.strategy = cfg, data, strategy
        self.tables = cost_tables(cfg.space).with_latency(cfg.latency_table)
        make_budget(self.tables, cfg.targets, cfg.user_fixed)  # infeasible targets fail here

    # -- the algorithm ---------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        data = self.data
        if self.state["stage"] == "vital":
            vital_ops, choice_seconds = self._stage_vital(data)
            self.finish_stage("vital", "proposals", self.elapsed("vital") + choice_seconds,
                              vital_ops={str(k): v for k, v in vital_ops.items()})
        fixed = {**self.cfg.user_fixed,
                 **{int(k): v for k, v in self.state.get("vital_ops", {}).items()}}
        if self.state["stage"] == "proposals":
            t0 = time.monotonic()
            proposals = self._make_proposals(fixed)
            self.finish_stage("proposals", "nonvital", time.monotonic() - t0,
                              proposals=proposals.to_json())
        if self.chief and "proposals" in self.state:
            self._write_proposals_json()
        if self.state["stage"] == "nonvital":
            proposals = Proposals.from_json(self.state["proposals"])
            final = self._stage_nonvital(data, fixed, proposals)
            self.finish_stage("nonvital", "done", final_indices=[int(i) for i in final])
        return self._finish(data)

    # -- stage 1 ---------------------------------------------------------------------------
    def _stage_vital(self, data: SearchData) -> tuple[dict[int, int], float]:
        """Trains the minimal supernet and fixes the vital ops; returns them and the seconds
        the choice took after training (perturbation scoring, the joint feasibility check)."""
        space = self.cfg.space
        with self.strategy.scope():
            net = self._supernet(data, fixed=self.cfg.user_fixed, vital_only=True)
            arch = ArchParams(net.allowed_mask(), self.cfg.tau, self.cfg.tau_decay,
                              seed=self.cfg.seed)
        plan = StagePlan("vital", self.cfg.vital_epochs, data.weight_steps, data.arch_steps)
        self._train(net, arch, plan, data, penalty=None, sampler=self.cfg.vital_sampler)
        t0 = time.monotonic()
        probs = np.asarray(arch.probabilities())
        self.state["vital_probabilities"] = probs.round(5).tolist()
        cfg = self.cfg
        preference = np.log(np.maximum(probs, 1e-30))  # summed: the joint choice's likelihood
        if cfg.vital_selection == "perturbation":
            losses = self._perturbation_losses(net, arch, data)
            self.state["vital_losses"] = np.where(np.isnan(losses), None,
                                                  losses.round(5)).tolist()
            preference = np.nan_to_num(-losses, nan=-np.inf)
        chosen = feasible_vital_choice(self.tables, cfg.targets, cfg.user_fixed, preference,
                                       space.vital_mask(), self._optimize_proposals)
        with atomic_path(self._vital_weights_path()) as tmp:
            net.save_weights(tmp)
        names = ", ".join(f"{space.layers[k].name}:{space.ops[v]}" for k, v in chosen.items())
        self.log(f"stage 1 done: vital layers fixed to {names}")
        stepped = [f"{space.layers[k].name} {space.ops[int(np.argmax(preference[k]))]} -> "
                   f"{space.ops[v]}" for k, v in chosen.items()
                   if v != np.argmax(preference[k])]
        if stepped:
            best = "lowest-loss" if cfg.vital_selection == "perturbation" else "most likely"
            self.log(f"  changed from the {best} ops so the targets can be met: "
                     f"{', '.join(stepped)}")
        return chosen, time.monotonic() - t0

    def _perturbation_losses(self, net: SuperNet, arch: ArchParams,
                             data: SearchData) -> np.ndarray:
        """Validation loss of the minimal supernet with each vital layer pinned to each op,
        the other layers as stage 1 ran them (`--vital_selection=perturbation`)."""
        cfg = self.cfg
        if cfg.vital_sampler == "gumbel_softmax":
            weights = np.asarray(arch.relax("softmax").weights)
        else:
            weights = np.eye(net.num_ops, dtype=np.float32)[arch.derive()]
        layers = self._searched_vital_layers()
        allowed = net.allowed_mask()
        progress = Progress("scoring vital ops", int(allowed[layers].sum()))
        # Scoring uses the moving BatchNorm statistics, so small images may come in larger
        # batches (the same images, fewer calls); large ones keep the training batch.
        merge = SCORING_PIXELS // (cfg.batch_size * cfg.image_size ** 2)
        return perturbation_losses(net, weights, layers, allowed,
                                   data.validation_batches(cfg.selection_batches, merge),
                                   data.merged_batch_size(cfg.selection_batches, merge),
                                   self.strategy, lambda done, _total: progress.update(done))

    # -- proposals --------------------------------------------------------------------------
    def _optimize_proposals(self, fixed: dict[int, int]) -> Proposals:
        """Proposals for the budget `fixed` leaves, at the temperature stage 1 ended with."""
        cfg = self.cfg
        return optimize_proposals(self.tables, cfg.targets, fixed, cfg.num_proposals,
                                  cfg.proposal_iterations, cfg.beta,
                                  tau=float(self.state.get("tau_after_vital", cfg.tau)),
                                  seed=cfg.seed)

    def _make_proposals(self, fixed: dict[int, int]) -> Proposals:
        try:
            proposals = self._optimize_proposals(fixed)
        except TfnasError as e:
            raise TfnasError(f"after stage 1: {e}") from None
        self.log(f"proposals: {proposals.num_proposals} optimized in "
                 f"{proposals.info['seconds']:.2f} s at tau "
                 f"{float(self.state.get('tau_after_vital', self.cfg.tau)):.3f}")
        return proposals

    def _write_proposals_json(self) -> None:
        """DIR/proposals.json, a copy of the proposals that state.json records (the search
        never reads it back): written when missing or different, so that a rerun repairs a
        truncated or edited copy and otherwise changes nothing."""
        path = self.rundir.file("proposals.json")
        text = Proposals.json_text(self.state["proposals"])
        try:
            with open(path, encoding="utf-8") as f:
                if f.read() == text:
                    return
        except (OSError, UnicodeDecodeError):
            pass
        write_text(path, text)

    # -- stage 2 ---------------------------------------------------------------------------
    def _stage_nonvital(self, data: SearchData, fixed: dict[int, int],
                        proposals: Proposals) -> np.ndarray:
        with self.strategy.scope():
            net = self._supernet(data, fixed=fixed, vital_only=False)
            arch = ProposalArchParams(proposals, net.allowed_mask(), proposals.tau,
                                      self.cfg.tau_decay, seed=self.cfg.seed + 1)
        vital_weights = self._vital_weights_path()
        epochs = self.cfg.nonvital_epochs if self.cfg.two_stage else (
            self.cfg.vital_epochs + self.cfg.nonvital_epochs)
        plan = StagePlan("nonvital", epochs, data.weight_steps, data.arch_steps)
        objective = ProposalObjective(make_budget(self.tables, self.cfg.targets, fixed),
                                      self.cfg.beta)
        alpha = self.cfg.alpha

        def penalty(_sample):
            return alpha * objective(tf.convert_to_tensor(arch.theta),
                                     tf.convert_to_tensor(arch.tau))

        def warm() -> None:  # only when stage 2 starts, not when it resumes
            if not os.path.exists(vital_weights):
                self.log(f"warning: {vital_weights} is missing, so stage 2 starts from new "
                         "weights instead of stage 1's")
                return
            _copy_shared_weights(self._supernet(data, self.cfg.user_fixed, vital_only=True,
                                                weights=vital_weights), net)
        self._train(net, arch, plan, data, penalty=penalty,
                    warm_start=warm if self.cfg.two_stage else None)
        final = most_likely_within_targets(arch, self.tables, self.cfg.targets,
                                           seed=self.cfg.seed)
        if self.cfg.proposal_selection == "loss":
            final = self._lowest_loss_candidate(net, arch, data, final)
        probs = np.asarray(arch.probabilities())
        self.state["final_probabilities"] = probs.round(5).tolist()
        return final

    def _lowest_loss_candidate(self, net: SuperNet, arch: ProposalArchParams,
                               data: SearchData, most_likely: np.ndarray) -> np.ndarray:
        """`--proposal_selection=loss`: of the proposals' most likely architectures within
        the targets, the one with the lowest validation loss on the trained supernet (batch
        statistics, as in training); `most_likely` when no proposal has one."""
        cfg = self.cfg
        candidates = proposal_candidates(arch, self.tables, cfg.targets, seed=cfg.seed)
        if not candidates:
            self.log("no proposal has an architecture within the targets to score; keeping "
                     "the most likely one")
            return most_likely
        scorer = OneShotScorer(net, data.validation_batches(cfg.selection_batches),
                               cfg.batch_size, self.strategy)
        progress = Progress("scoring proposals", len(candidates))
        losses = {}
        for done, (j, indices) in enumerate(candidates.items(), 1):
            losses[j] = scorer(indices)["loss"]
            progress.update(done)
        best = min(losses, key=losses.get)
        likely = int(np.argmax(value(arch.pi)))
        self.state["proposal_choice"] = {
            "losses": [round(losses[j], 5) if j in losses else None
                       for j in range(arch.num_proposals)],
            "chosen": best, "most_likely": likely,
            "most_likely_arch": str(Genotype.from_indices(cfg.space, most_likely))}
        self.log(f"proposal {best} has the lowest validation loss ({losses[best]:.4f}); the "
                 f"most likely, {likely}: "
                 + (f"{losses[likely]:.4f}" if likely in losses else "none within the targets"))
        return candidates[best]

    # -- shared machinery -------------------------------------------------------------------
    def _searched_vital_layers(self) -> list[int]:
        """The vital layers stage 1 chooses for: all but those the user fixed."""
        return [int(i) for i in np.flatnonzero(self.cfg.space.vital_mask())
                if int(i) not in self.cfg.user_fixed]

    def _vital_weights_path(self) -> str:
        """Stage 1's trained weights, which stage 2 starts from. Every worker keeps its own
        copy: a worker that read the chief's could find it not yet written and diverge."""
        name = "vital_supernet.weights.h5"
        return self.rundir.file(name) if self.chief else worker_dir(self.rundir, name)

    def _supernet(self, data: SearchData, fixed: dict[int, int], vital_only: bool,
                  weights: str | None = None) -> SuperNet:
        # Seeded per stage: a resumed run builds the same initial weights as an uninterrupted one.
        keras.utils.set_random_seed(self.cfg.seed * 7 + (2 if vital_only else 3))
        net = SuperNet(self.cfg.space, num_classes=data.num_classes,
                       input_shape=(self.cfg.image_size, self.cfg.image_size, 3),
                       width_multiplier=self.cfg.width_multiplier, fixed=fixed,
                       vital_only=vital_only)
        if weights:
            net.load_weights(weights)
        return net

    def _train(self, net: SuperNet, arch, plan: StagePlan, data: SearchData, penalty,
               warm_start: Callable[[], None] | None = None,
               sampler: str | None = None) -> None:
        cfg = self.cfg
        opt = StageOptimizers.create(cfg, net, arch, self.strategy)
        with self.strategy.scope():
            baseline = LossAverage()
            weight_loss = LossAverage(decay=0.98, name="weight_loss")
        checkpoint = search_checkpoint(net, **opt.checkpoint_items(), **arch.checkpoint_items(),
                                       **baseline.checkpoint_items(),
                                       **weight_loss.checkpoint_items())
        weight_fn, arch_fn = engine.make_search_steps(net, arch, opt.weight, opt.arch,
                                                      sampler or cfg.sampler, self.strategy,
                                                      penalty,
                                                      share=cfg.shared_trace,
                                                      loss_scale=opt.loss_scale,
                                                      estimator=cfg.arch_gradient,
                                                      baseline=baseline,
                                                      clip_norm=cfg.clip_norm)
        sampled = self._expected_cost(arch)

        def shown() -> dict[str, float]:
            return {"tau": value(arch.tau), **{f"sampled_{k}": sampled[k] for k in cfg.targets}}

        def weight_step(images, labels, _step):
            nonlocal sampled
            loss, indices = weight_fn(images, labels)  # anneals τ: once per iteration
            weight_loss.update(float(loss))
            sampled = self.tables.cost(np.asarray(indices))
            return float(loss), 0.0, shown()

        def arch_step(images, labels, _step):
            loss, extra = arch_fn(images, labels)
            return float(loss), float(extra), shown()

        def summaries(step: int) -> None:
            tf.summary.scalar(f"{plan.name}/tau", value(arch.tau))
            expected = self._expected_cost(arch)
            for k, target in cfg.targets.items():
                tf.summary.scalar(f"{plan.name}/expected_{k}_over_target", expected[k] / target)

        self.run_stage(plan, data, checkpoint, weight_step, arch_step, warm_start, summaries)
        self.state.setdefault("tau_after", {})[plan.name] = value(arch.tau)
        self.state.setdefault("weight_loss", {})[plan.name] = round(
            float(weight_loss.value()), 5)
        if plan.name == "vital":
            self.state["tau_after_vital"] = value(arch.tau)
        self.probability_histograms(plan.name, np.asarray(arch.probabilities()),
                                    [l.name for l in cfg.space.layers], int(opt.step.numpy()))

    def _expected_cost(self, arch) -> dict[str, float]:
        """Cost of the architecture distribution at this step: Σ p(op) · table."""
        probs = np.asarray(arch.probabilities())
        return {k: float(self.tables.constants[k] + (probs * self.tables.tables[k]).sum())
                for k in self.cfg.targets}

    # -- result --------------------------------------------------------------------------
    def _finish(self, data: SearchData) -> dict[str, Any]:
        space = self.cfg.space
        genotype = Genotype.from_indices(space, self.state["final_indices"])
        extra = {"algorithm": "hournas", "two_stage": self.cfg.two_stage,
                 "sampler": self.cfg.sampler, "arch_gradient": self.cfg.arch_gradient,
                 "vital_ops": {space.layers[int(k)].name: space.ops[v]
                               for k, v in self.state.get("vital_ops", {}).items()}}
        if self.cfg.two_stage:  # how stage 1 ran and chose; a one-stage search has no stage 1
            extra.update(vital_sampler=self.cfg.vital_sampler,
                         vital_selection=self.cfg.vital_selection)
        extra["proposal_selection"] = self.cfg.proposal_selection
        if "proposal_choice" in self.state:
            extra["proposal_choice"] = self.state["proposal_choice"]
        probs = np.array(self.state.get("final_probabilities",
                                        np.eye(space.num_ops)[genotype.indices()]))
        if "vital_probabilities" in self.state:
            # Stage 2 sees the vital layers as fixed; what chose them is stage 1's θ.
            vital = space.vital_mask()
            probs[vital] = np.array(self.state["vital_probabilities"])[vital]
            extra["vital_probabilities"] = _per_vital_op(space, probs)
        if "vital_losses" in self.state:
            losses = np.array(self.state["vital_losses"], dtype=float)
            extra["vital_losses"] = _per_vital_op(space, losses, ~np.isnan(losses))
        extra.update(self._diagnose(data.num_classes, self.tables.cost(genotype.indices())))
        return self.write_result(
            self.cfg, genotype, self.tables, data.num_classes, probs,
            f"HourNAS on {space.name}: final op probabilities, vital rows (*) stage 1's; "
            "red: chosen", extra)

    def _diagnose(self, num_classes: int, cost: dict[str, float]) -> dict[str, float]:
        """Logs what makes the result doubtful (targets missed, a stage that learned
        nothing, vital picks on flat evidence); returns the weight losses it judged, for
        arch.json."""
        cfg, losses = self.cfg, self.state.get("weight_loss", {})
        chance = math.log(num_classes)
        record = {f"{stage}_weight_loss": loss for stage, loss in losses.items()}
        if losses:
            record["chance_loss"] = round(chance, 5)
        layers = self._searched_vital_layers()
        notes = [missed_targets_warning(cost, cfg.targets, TOLERANCE)]
        notes += [untrained_warning(stage, loss, num_classes, cfg.vital_sampler, cfg.two_stage)
                  for stage, loss in losses.items()]
        if not untrained_warning("vital", losses.get("vital"), num_classes):
            # stage 1 learned (or did not run): is its choice also clear?
            if "vital_losses" in self.state:
                scores = np.array(self.state["vital_losses"], dtype=float)[layers]
                notes.append(flat_scores_warning(scores, chance))
            elif cfg.vital_selection == "probability" and "vital_probabilities" in self.state:
                notes.append(undecided_vital_note(
                    np.array(self.state["vital_probabilities"])[layers]))
        for note in filter(None, notes):
            self.log(note)
        return record


def _per_vital_op(space, values: np.ndarray, keep: np.ndarray | None = None) -> dict:
    """{vital layer: {op: value}} over the legal (and `keep`) ops, for arch.json."""
    keep = space.legal_mask() if keep is None else keep & space.legal_mask()
    return {space.layers[i].name: {space.ops[o]: round(float(values[i, o]), 4)
                                   for o in np.flatnonzero(keep[i])}
            for i in np.flatnonzero(space.vital_mask()) if keep[i].any()}


def _copy_shared_weights(source: SuperNet, target: SuperNet) -> None:
    """Warm-starts stage 2 with stage 1's weights: stem, fixed blocks, head and the vital
    layers' chosen ops (same op at the same position)."""
    for a, b in zip(source.shared_layers(), target.shared_layers()):
        b.set_weights(a.get_weights())
    for src, dst in zip(source.super_blocks, target.super_blocks):
        for op in dst.candidates:
            if op in src.candidates and op != "skip":
                dst.candidate(op).set_weights(src.candidate(op).get_weights())
