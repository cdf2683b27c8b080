"""Architecture parameters θ [L, O], temperature τ, and the forward modes that sample from them.

Sampling at temperature τ draws op o of layer l with probability softmax(θ_l / τ)_o
(Gumbel-Max: argmax(θ_l / τ + g), g ~ Gumbel(0, 1)). Ops outside `allowed` (illegal at that
layer, or excluded because the layer is fixed) are never drawn and get probability 0.

Modes (`MODES`):
  gumbel_max      hard one-hot of argmax(θ/τ + g); one op per layer runs. Straight-through
                  weights (value 1 on the drawn op, gradient of softmax(θ/τ + g)) as in GDAS.
  gumbel_softmax  every op runs, weighted by softmax((θ + g) / τ) (FBNet's relaxation, τ on
                  z = θ + g as the HourNAS paper says; its table 5 ablation): the
                  probabilities softmax(θ/τ) jittered by Gumbel noise shrunk by τ, so the
                  mix starts near uniform at τ = 5 and sharpens as τ falls. (Untempered
                  noise, softmax(θ/τ + g), gives every step a different lopsided mix, and a
                  supernet trained on those learns about as little as one trained on
                  random single paths.)
  softmax         every op runs, weighted by softmax(θ/τ) (DARTS; SETN's relaxed evaluator).
  uniform         one op per layer uniformly among the allowed ones (SETN/SPOS template).
  fixed           the given op indices.

Sampling is split in two so that every replica of a distributed step draws the same path:
`draw_noise` (random, once per step, outside `strategy.run`) and `relax` (deterministic in θ,
so it can run under each replica's gradient tape).

How θ learns from a single path (`ESTIMATORS`):
  straight_through  the gradient of the drawn op's straight-through weight, Σ dy·y (GDAS).
                    It only says whether the layer's output should be scaled, and a BatchNorm
                    downstream undoes any scale: at a layer whose output meets a conv + BN
                    before any residual sum (every vital layer of the minimal supernet) what
                    is left is BN's epsilon, a thousandth of the loss gaps between the ops.
  reinforce         the score function: (L - b) ∇ log P(path), b a moving average of the
                    validation loss (`LossAverage`). Unbiased for ∇ E[L] whatever the
                    network, and no extra compute: the drawn path's loss is all it needs.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from tfnas.nn.schedule import TAU_DECAY, TAU_START

MODES = ("gumbel_max", "gumbel_softmax", "softmax", "uniform", "fixed")
ESTIMATORS = ("reinforce", "straight_through")
SINGLE_PATH_MODES = ("gumbel_max", "uniform", "fixed")
MASKED_LOGIT = -1e9  # logit of a disallowed op (finite, so gradients stay finite)


class ArchSample(NamedTuple):
    """One architecture drawn for a step.

    `indices` [L] int32: the op of every layer (for all-op modes, the heaviest one);
    `weights` [L, O] float32: what multiplies each op's output (one-hot for single-path modes,
    straight-through in gumbel_max), or None when no gradient to θ is wanted;
    `single_path`: whether only the op at `indices` runs.
    """

    indices: tf.Tensor
    weights: tf.Tensor | None
    single_path: bool


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown sampling mode {mode!r}; modes are {', '.join(MODES)}")
    return mode


def check_estimator(estimator: str) -> str:
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown θ gradient estimator {estimator!r}; estimators are "
                         f"{', '.join(ESTIMATORS)}")
    return estimator


def straight_through(hard, soft):
    """`hard`'s value with `soft`'s gradient; the value is exactly `hard` (soft - soft = 0),
    so a drawn op's output is multiplied by exactly 1."""
    return hard + (soft - tf.stop_gradient(soft))


def fixed_sample(indices) -> ArchSample:
    """The path given by op indices, with no gradient to θ."""
    return ArchSample(tf.cast(indices, tf.int32), None, True)


class ArchParams:
    """θ (trainable, L x O) and τ (annealed) of one supernet, kept apart from its weights.

    Create it (and its optimizer) inside `strategy.scope()` when training distributed.
    `allowed` is the L x O mask of ops that may be drawn (`SuperNet.allowed_mask()`).
    """

    def __init__(self, allowed: np.ndarray, tau: float = TAU_START, tau_decay: float = TAU_DECAY,
                 seed: int | None = None, init_stddev: float = 0.0, name: str = "arch",
                 theta_init: np.ndarray | None = None):
        self.allowed = np.asarray(allowed, dtype=bool)
        if self.allowed.ndim != 2 or not self.allowed.any(axis=1).all():
            raise ValueError("`allowed` must be an L x O mask with an allowed op in every row")
        self.tau_decay = float(tau_decay)
        self.name = name
        if theta_init is None:  # else given, e.g. [m, L, O] for space proposals
            init = (keras.initializers.Zeros() if init_stddev == 0
                    else keras.initializers.RandomNormal(stddev=init_stddev, seed=seed))
            theta_init = init(self.allowed.shape)
        self.theta = keras.Variable(theta_init, dtype="float32", name=f"{name}_theta",
                                    trainable=True)
        self.tau = keras.Variable(float(tau), name=f"{name}_tau", trainable=False)
        self.seed = keras.random.SeedGenerator(seed, name=f"{name}_seed")

    @property
    def num_layers(self) -> int:
        return self.allowed.shape[0]

    @property
    def num_ops(self) -> int:
        return self.allowed.shape[1]

    @property
    def trainable_variables(self) -> list:
        return [self.theta]

    def _mask(self, logits):
        return tf.where(tf.constant(self.allowed), logits, MASKED_LOGIT)

    def logits(self):
        """θ/τ with disallowed ops masked out."""
        return self._mask(tf.convert_to_tensor(self.theta) / tf.convert_to_tensor(self.tau))

    def probabilities(self):
        """softmax(θ/τ) per layer: the probability that sampling draws each op."""
        return tf.nn.softmax(self.logits(), axis=-1)

    def draw_noise(self, mode: str):
        """The random part of a sample: Gumbel(0, 1) noise [L, O] (None for softmax/fixed)."""
        if check_mode(mode) in ("softmax", "fixed"):
            return None
        u = keras.random.uniform(self.allowed.shape, minval=1e-10, maxval=1.0, seed=self.seed)
        return -tf.math.log(-tf.math.log(u))

    def relax(self, mode: str, noise=None, indices=None) -> ArchSample:
        """The architecture of `mode` from θ, τ and the drawn noise (differentiable in θ)."""
        check_mode(mode)
        if mode == "fixed":
            if indices is None:
                raise ValueError("mode 'fixed' needs op indices")
            return fixed_sample(indices)
        if mode == "uniform":
            idx = tf.argmax(self._mask(noise), axis=-1, output_type=tf.int32)
            return ArchSample(idx, None, True)
        if mode == "gumbel_softmax":
            z = self._mask(self.logits() + noise / tf.convert_to_tensor(self.tau))
            return ArchSample(tf.argmax(z, axis=-1, output_type=tf.int32),
                              tf.nn.softmax(z, axis=-1), False)
        z = self.logits() if mode == "softmax" else self._mask(self.logits() + noise)
        soft = tf.nn.softmax(z, axis=-1)
        idx = tf.argmax(z, axis=-1, output_type=tf.int32)
        if mode == "gumbel_max":
            hard = tf.one_hot(idx, self.num_ops, dtype=soft.dtype)
            return ArchSample(idx, straight_through(hard, soft), True)
        return ArchSample(idx, soft, False)  # softmax

    def sample(self, mode: str, indices=None) -> ArchSample:
        return self.relax(mode, self.draw_noise(mode), indices)

    def decay_temperature(self):
        self.tau.assign(self.tau * self.tau_decay)

    def log_prob(self, indices):
        """log P(the path `indices` [L]) under sampling at τ: Σ_l log softmax(θ_l/τ)[o_l]."""
        logp = tf.nn.log_softmax(self.logits(), axis=-1)
        return tf.reduce_sum(tf.gather(logp, tf.cast(indices, tf.int32), batch_dims=1))

    def derive(self) -> np.ndarray:
        """The most probable op of every layer (argmax θ over the allowed ops)."""
        return np.argmax(np.where(self.allowed, np.asarray(self.theta), -np.inf), axis=-1)

    def checkpoint_items(self) -> dict:
        """What a `tf.train.Checkpoint` must hold to resume sampling exactly."""
        return {"theta": self.theta, "tau": self.tau, "seed": self.seed.state}


class LossAverage:
    """A bias-corrected exponential moving average of losses (`decay` per update): the
    baseline b of the reinforce estimator, and the search's record of how low its weight loss
    got. Create it inside `strategy.scope()` when training distributed; checkpoint
    `checkpoint_items()` (keys start with `name`).
    """

    def __init__(self, decay: float = 0.9, name: str = "baseline"):
        self.decay = float(decay)
        self.name = name
        self.total = keras.Variable(0.0, name=f"{name}_total", trainable=False)
        self.steps = keras.Variable(0.0, name=f"{name}_steps", trainable=False)

    def value(self, loss=float("nan")):
        """The average; `loss` itself before the first update (an advantage of zero)."""
        steps = tf.convert_to_tensor(self.steps)
        corrected = tf.convert_to_tensor(self.total) / (
            1.0 - tf.pow(self.decay, tf.maximum(steps, 1.0)))
        return tf.where(steps > 0, corrected, loss)

    def update(self, loss) -> None:
        self.total.assign(self.decay * self.total + (1.0 - self.decay) * loss)
        self.steps.assign_add(1.0)

    def checkpoint_items(self) -> dict:
        return {f"{self.name}_total": self.total, f"{self.name}_steps": self.steps}


def expected_cost(sample: ArchSample, table: np.ndarray, constant: float = 0.0):
    """Σ weights ⊙ table (+ constant): the cost of the sampled path, differentiable in θ.

    With gumbel_max weights the value is the exact cost of the drawn path and the gradient is
    that of the relaxed probabilities (HourNAS eq. 4, R(A_θ) = sum(A_θ ⊙ F)).
    """
    table = tf.constant(np.asarray(table), dtype=tf.float32)
    if sample.weights is None:
        rows = tf.range(tf.shape(sample.indices)[0])
        picked = tf.gather_nd(table, tf.stack([rows, sample.indices], axis=1))
        return constant + tf.reduce_sum(picked)
    return constant + tf.reduce_sum(sample.weights * table)


def resource_penalty(tables, targets: dict[str, float], alpha: float = 1.0):
    """HourNAS eq. 5 as a penalty hook for `make_arch_step`: α Σ_i |R_i(A_θ) − T_i| / M_i.

    `tables` is a `CostTables` (rows in the supernet's layer order); M_i is the largest
    reachable cost of objective i.
    """
    terms = []
    for objective, target in targets.items():
        high = tables.range(objective)[1]
        terms.append((objective, float(target), float(high)))

    def penalty(sample: ArchSample):
        total = 0.0
        for objective, target, high in terms:
            cost = expected_cost(sample, tables.tables[objective], tables.constants[objective])
            total += tf.abs(cost - target) / high
        return alpha * total

    return penalty
