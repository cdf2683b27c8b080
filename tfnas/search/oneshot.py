"""SETN and TNAS one-shot searches on any space with a supernet (nb201, the MBConv spaces).

Stage "train" trains the supernet (and the sampler) alternating weight steps on the weight
split and architecture steps on the architecture split; stage "select" picks the result with
the shared weights. What a step does depends on the algorithm:

- `setn` (Dong & Yang): uniform single-path template training; the evaluator θ (a
  categorical distribution per decision) is trained on validation batches through the
  relaxed (softmax) forward. Selection (`--setn_selection`):
    paper   T candidates sampled from the evaluator, de-duplicated, the lowest one-shot
            validation loss wins (SETN §4).
    topk    the authors' public code: the K most probable of the T candidates under the
            evaluator, the highest one-shot validation accuracy wins.
    random  SETN-RAND: T uniform candidates, lowest one-shot validation loss.
- `tnas` (Yan et al.) with `--tnas_mode`:
    oneshot   weight steps on paths from Gamma = (1-eps) U + eps p(a|z) (eq. 11); each
              architecture step scores a Gamma path on a validation batch, and the VAE
              learns from the best scored paths. Then an evolutionary search seeded by VAE
              samples, fitness = one-shot validation accuracy.
    gradient  weight steps on paths from the VAE (eq. 12; uniform until it is first
              trained), architecture steps train θ with Gumbel-Max; the VAE learns from the
              paths those steps draw and their validation losses. The result is argmax θ.

The VAE's history lives in the checkpoint and the VAE is rebuilt from it on resume, so a
resumed search ends as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable

import keras
import keras_tuner
import numpy as np
import tensorflow as tf

from tfnas import engine
from tfnas.cost.tables import cost_tables
from tfnas.engine.checkpoint import search_checkpoint
from tfnas.engine.scoring import OneShotScorer
from tfnas.errors import TfnasError
from tfnas.io import atomic_path
from tfnas.nn.sampling import ArchParams, LossAverage
from tfnas.nn.schedule import TAU_DECAY, TAU_START
from tfnas.nn.supernets import make_supernet
from tfnas.samplers import selection
from tfnas.search.base import (CommonConfig, StageOptimizers, StagePlan, Step, SupernetSearch,
                               open_checkpoints, value, worker_dir)
from tfnas.search.data import SearchData
from tfnas.search.rundir import RunDir
from tfnas.space.base import SearchSpace
from tfnas.space.genotype import Genotype
from tfnas.space.nb201 import NB201Space, to_nb201_string


@dataclasses.dataclass
class OneShotConfig(CommonConfig):
    algorithm: str = "setn"  # setn | tnas
    epochs: int = 1
    setn_selection: str = "paper"
    num_candidates: int = 1000
    top_k: int = 10
    eval_batches: int = 2
    tnas_mode: str = "oneshot"
    arch_gradient: str = "reinforce"  # how a path's loss reaches θ under tnas_mode=gradient
    eps_inc: float = 0.05
    population: int = 20
    generations: int = 5


class OneShotSearch(SupernetSearch):
    """`run()` trains the supernet, selects the architecture and returns the arch.json
    record."""

    stage_needs = {"train": (), "select": ("history",),
                   "done": ("history", "final_indices")}

    def __init__(self, cfg: OneShotConfig, data: SearchData, rundir: RunDir,
                 strategy: tf.distribute.Strategy, chief: bool = True,
                 flags_record: dict | None = None, log: Callable[[str], None] = print):
        super().__init__(rundir, cfg, chief, flags_record, log)
        self.cfg, self.data, self.strategy = cfg, data, strategy
        self.tables = cost_tables(cfg.space).with_latency(cfg.latency_table)
        self.decisions = _decision_space(cfg.space)
        with strategy.scope():
            keras.utils.set_random_seed(cfg.seed * 7 + 5)
            self.net = make_supernet(cfg.space, data.num_classes,
                                     (cfg.image_size, cfg.image_size, 3), cfg.width_multiplier)
            setn = cfg.algorithm == "setn"  # SETN's evaluator: a plain softmax of θ
            self.arch = ArchParams(self.net.allowed_mask(), tau=1.0 if setn else TAU_START,
                                   tau_decay=1.0 if setn else TAU_DECAY, seed=cfg.seed)
        self.weights_file = rundir.file("supernet.weights.h5")
        self.theta_file = rundir.file("theta.npy")

    @property
    def name(self) -> str:
        cfg = self.cfg
        return (f"setn ({cfg.setn_selection} selection)" if cfg.algorithm == "setn"
                else f"tnas ({cfg.tnas_mode})")

    def run(self) -> dict[str, Any]:
        if self.state["stage"] == "train":
            history = self._train()
            self._save_supernet()
            self.finish_stage("train", "select", history=history,
                              tau=value(self.arch.tau))  # TNAS anneals it; the plot reads it
        if self.state["stage"] == "select":
            t0 = time.monotonic()
            self._load_supernet()
            final, info = self._select()
            self.finish_stage("select", "done", time.monotonic() - t0,
                              final_indices=[int(i) for i in final], selection=info)
        return self._finish()

    # -- stage "train" ---------------------------------------------------------------------
    def _train(self) -> dict[str, list]:
        cfg, data, net, arch = self.cfg, self.data, self.net, self.arch
        plan = StagePlan("train", cfg.epochs, data.weight_steps, data.arch_steps)
        opt = StageOptimizers.create(cfg, net, arch, self.strategy)
        with self.strategy.scope():
            history = ScoredHistory(plan.epochs * plan.arch_steps, net.num_layers,
                                    self._token_rows, len(self.decisions))
            # θ's reinforce baseline: only the gradient mode's θ steps run and checkpoint it
            baseline = LossAverage() if self._gradient_mode else None
        checkpoint = search_checkpoint(net, **opt.checkpoint_items(), **arch.checkpoint_items(),
                                       **history.checkpoint_items(),
                                       **(baseline.checkpoint_items() if baseline else {}))
        steps = (self._setn_steps(opt) if cfg.algorithm == "setn"
                 else self._tnas_steps(opt, history, baseline))
        self.run_stage(plan, data, checkpoint, *steps)
        self.probability_histograms("train", np.asarray(arch.probabilities()),
                                    [c.name for c in cfg.space.choices], int(opt.step.numpy()))
        rows, scores = history.tokens()
        return {"indices": [self._indices(r).tolist() for r in rows],
                "scores": [round(float(s), 6) for s in scores]}

    @property
    def _gradient_mode(self) -> bool:
        return self.cfg.algorithm == "tnas" and self.cfg.tnas_mode == "gradient"

    def _setn_steps(self, opt: StageOptimizers) -> tuple[Step, Step]:
        """Uniform single paths train the weights; the relaxed forward trains θ."""
        cfg, net, arch = self.cfg, self.net, self.arch
        weight_fn = engine.make_weight_step(net, arch, opt.weight, "uniform", self.strategy,
                                            loss_scale=opt.loss_scale, clip_norm=cfg.clip_norm)
        arch_fn = engine.make_arch_step(net, arch, opt.arch, "softmax", self.strategy,
                                        loss_scale=opt.loss_scale)

        def weight_step(images, labels, _step):
            return float(weight_fn(images, labels)), 0.0, {}

        def arch_step(images, labels, _step):
            loss, _ = arch_fn(images, labels)
            return float(loss), 0.0, {"max_p": float(np.max(arch.probabilities()))}
        return weight_step, arch_step

    def _tnas_steps(self, opt: StageOptimizers, history: "ScoredHistory",
                    baseline: LossAverage | None) -> tuple[Step, Step]:
        """Gamma paths train the weights; the architecture steps score paths (oneshot) or
        train θ (gradient), and every scored path joins the VAE's history."""
        cfg, net, arch = self.cfg, self.net, self.arch
        tnas = self._tnas_oracle()
        weight_fn = engine.make_weight_step(net, arch, opt.weight, "fixed", self.strategy,
                                            loss_scale=opt.loss_scale, clip_norm=cfg.clip_norm)
        if self._gradient_mode:
            arch_fn = engine.make_arch_step(net, arch, opt.arch, "gumbel_max", self.strategy,
                                            return_indices=True, loss_scale=opt.loss_scale,
                                            estimator=cfg.arch_gradient, baseline=baseline)
        else:
            eval_fn = engine.make_eval_step(net, self.strategy, batch_stats=True)

        def gamma_path(step: int) -> np.ndarray:
            rows, scores = history.tokens()
            rng = np.random.default_rng([cfg.seed, 17, step])
            return self._indices(tnas.draw(self.decisions, rows, scores, rng))

        def weight_step(images, labels, step):
            path = tf.constant(gamma_path(step), tf.int32)
            return float(weight_fn(images, labels, path)), 0.0, {
                "eps": tnas.epsilon(len(history))}

        def arch_step(images, labels, step):
            if self._gradient_mode:
                loss, _, indices = arch_fn(images, labels)
                loss = float(loss)
            else:
                indices = gamma_path(step)
                total, _hits = eval_fn(images, labels, tf.constant(indices, tf.int32))
                loss = float(total) / cfg.batch_size
            history.record(np.asarray(indices), -loss)
            return loss, 0.0, {"scored": len(history)}
        return weight_step, arch_step

    def _tnas_oracle(self):
        from tfnas.tuner.tnas import TNASOracle
        return TNASOracle(objective=keras_tuner.Objective("score", "max"), max_trials=1,
                          hyperparameters=self.decisions.hyperparameters, seed=self.cfg.seed,
                          num_initial_points=max(2, self.cfg.top_k // 2),
                          eps_inc=1.0 if self.cfg.tnas_mode == "gradient" else self.cfg.eps_inc,
                          eps_max=1.0, top_k=self.cfg.top_k, retrain_every=max(
                              2, self.cfg.top_k // 2))

    def _save_supernet(self) -> None:
        if not self.chief:
            return
        with atomic_path(self.weights_file) as tmp:
            self.net.save_weights(tmp)
        with atomic_path(self.theta_file) as tmp:
            np.save(tmp, np.asarray(value(self.arch.theta)))

    def _load_supernet(self) -> None:
        """The trained supernet and θ, τ: the chief's saved files, else (a worker, or files
        deleted) the last checkpoint of stage "train"."""
        if "tau" in self.state:  # recorded since 2026-12-07
            self.arch.tau.assign(self.state["tau"])
        if self.chief and os.path.exists(self.weights_file) and os.path.exists(self.theta_file):
            try:
                theta = np.load(self.theta_file)
                self.arch.theta.assign(theta)
                self.net.load_weights(self.weights_file)
            except (OSError, ValueError) as e:
                raise TfnasError(f"{self.weights_file} or {self.theta_file} is damaged or "
                                 f"does not fit this search ({type(e).__name__}); restore "
                                 "them, or delete both to select from the last checkpoint") \
                    from None
            return
        directory = os.path.join(worker_dir(self.rundir, "checkpoints") if not self.chief
                                 else self.rundir.checkpoint_dir, "train")
        latest = open_checkpoints(search_checkpoint(self.net), directory).latest_checkpoint
        if latest is None:
            raise TfnasError(f"{self.weights_file} and the checkpoints of stage train in "
                             f"{directory} are missing, so there is no trained supernet to "
                             "select with; restore them or use another --model_dir")
        try:
            search_checkpoint(self.net, theta=self.arch.theta).restore(latest).expect_partial()
        except (tf.errors.OpError, AssertionError, ValueError) as e:
            raise TfnasError(f"checkpoint {latest} does not fit this search "
                             f"({type(e).__name__}); use another --model_dir") from None

    # -- stage "select" --------------------------------------------------------------------
    def _select(self) -> tuple[np.ndarray, dict[str, Any]]:
        cfg, net = self.cfg, self.net
        allowed = net.allowed_mask()
        scorer = OneShotScorer(net, self.data.validation_batches(cfg.eval_batches),
                               cfg.batch_size, self.strategy)
        rng = np.random.default_rng([cfg.seed, 23])
        if self._gradient_mode:
            final = self.arch.derive()
            return final, {"method": "argmax theta", **scorer(final)}
        if cfg.algorithm == "tnas":
            hist = self._scored_history()
            tnas = self._tnas_oracle()
            rows = self._token_rows(hist["indices"])
            scores = np.array(hist["scores"], np.float64)
            seeds = np.array([self._indices(tnas.draw(self.decisions, rows, scores, rng))
                              for _ in range(cfg.population)])
            self.log(f"evolution: {cfg.generations} generations of {cfg.population}, "
                     "seeded by VAE samples")
            best, fit = selection.evolve(
                lambda r: scorer(r)["accuracy"] - 1e-3 * scorer(r)["loss"], seeds, allowed,
                cfg.generations, cfg.population, rng,
                progress=lambda g, f: self.log(
                    f"  {'VAE seeds' if g == 0 else f'generation {g}'}: best fitness {f:.4f}"))
            return best, {"method": "evolution seeded by VAE samples",
                          "evaluated": len(scorer.cache), **scorer(best)}
        probs = (selection.uniform_probs(allowed) if cfg.setn_selection == "random"
                 else np.asarray(self.arch.probabilities()))
        candidates = selection.sample_rows(probs, allowed, cfg.num_candidates, rng)
        if cfg.setn_selection == "topk":
            order = np.argsort(-selection.log_prob(probs, candidates), kind="stable")
            candidates = candidates[order[:cfg.top_k]]
            fitness = lambda r: scorer(r)["accuracy"]  # noqa: E731
        else:
            fitness = lambda r: -scorer(r)["loss"]  # noqa: E731
        self.log(f"scoring {len(candidates)} candidates with the shared weights "
                 f"({cfg.setn_selection} selection)")
        best, _ = selection.best_of(_progress_rows(candidates, self.log), fitness)
        return best, {"method": cfg.setn_selection, "candidates": len(candidates),
                      **scorer(best)}

    # -- result -----------------------------------------------------------------------------
    def _finish(self) -> dict[str, Any]:
        cfg, space = self.cfg, self.cfg.space
        genotype = Genotype.from_indices(space, self.state["final_indices"])
        extra = {"algorithm": cfg.algorithm, "search": self.name,
                 "selection": self.state.get("selection", {})}
        if isinstance(space, NB201Space):
            extra["nb201_string"] = to_nb201_string(genotype)
        if cfg.algorithm == "tnas" and cfg.tnas_mode == "oneshot":  # θ is not learned here
            hist = self._scored_history()
            probs = selection.best_rows_frequencies(hist["indices"], hist["scores"],
                                                    cfg.top_k, self.net.allowed_mask())
            shown = (f"op frequencies of the {min(cfg.top_k, len(hist['scores']))} best "
                     "scored paths")
        else:
            probs, shown = np.asarray(self.arch.probabilities()), "final op probabilities"
        return self.write_result(cfg, genotype, self.tables, self.data.num_classes, probs,
                                 f"{self.name} on {space.name}: {shown} (red: chosen)", extra)

    def _scored_history(self) -> dict[str, list]:
        """The paths stage "train" scored and their scores (empty for setn)."""
        return self.state.get("history", {"indices": [], "scores": []})

    # -- token rows (the TNAS oracle's encoding) <-> op indices ------------------------------
    def _tokens(self, indices) -> np.ndarray:
        genotype = Genotype.from_indices(self.cfg.space, [int(i) for i in indices])
        return self.decisions.encode({c.name: op for c, op in
                                      zip(self.cfg.space.choices, genotype.ops)})

    def _token_rows(self, rows) -> np.ndarray:
        return np.array([self._tokens(r) for r in rows], np.int64).reshape(
            len(rows), len(self.decisions))

    def _indices(self, tokens) -> np.ndarray:
        from tfnas.tuner.spaces import genotype_from_values
        values = self.decisions.decode(tokens)
        return np.asarray(genotype_from_values(self.cfg.space, values).indices())


class ScoredHistory:
    """The paths TNAS's architecture steps scored and their scores, in fixed-size variables
    that the checkpoint holds; each path's token row (the VAE's encoding) is computed once.
    Create it inside `strategy.scope()` when training distributed."""

    def __init__(self, capacity: int, num_layers: int,
                 encode: Callable[[np.ndarray], np.ndarray], width: int):
        self.rows = tf.Variable(np.zeros((capacity, num_layers), np.int32), trainable=False,
                                name="history_rows")
        self.scores = tf.Variable(np.zeros(capacity, np.float32), trainable=False,
                                  name="history_scores")
        self.count = tf.Variable(0, dtype=tf.int64, trainable=False, name="history_count")
        self._encode, self._width, self._tokens = encode, width, []

    def checkpoint_items(self) -> dict:
        return {"history_rows": self.rows, "history_scores": self.scores,
                "history_count": self.count}

    def __len__(self) -> int:
        return int(self.count.numpy())

    def record(self, indices: np.ndarray, score: float) -> None:
        n = len(self)
        self.rows[n].assign(np.asarray(indices, np.int32))
        self.scores[n].assign(score)
        self.count.assign(n + 1)

    def tokens(self) -> tuple[np.ndarray, np.ndarray]:
        """(token rows [n, decisions], scores [n])."""
        n = len(self)
        if len(self._tokens) < n:  # new paths, or all of them after a resume
            self._tokens.extend(self._encode(np.asarray(value(self.rows))[len(self._tokens):n]))
        return (np.array(self._tokens[:n], np.int64).reshape(n, self._width),
                np.asarray(value(self.scores))[:n].astype(np.float64))


def _decision_space(space: SearchSpace):
    from tfnas.tuner.encoding import DecisionSpace
    from tfnas.tuner.spaces import space_hyperparameters
    return DecisionSpace(space_hyperparameters(space))


def _progress_rows(rows: np.ndarray, log: Callable[[str], None]):
    every = max(1, len(rows) // 10)
    for i, row in enumerate(rows, start=1):
        yield row
        if i % every == 0 or i == len(rows):
            log(f"  scored {i}/{len(rows)}")
