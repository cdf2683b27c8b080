"""Optimizing m space proposals against resource targets (HourNAS eq. 7).

    min_Θ  1/(nm) Σ_j Σ_i E|R_i(G(θ_j)) − T_i| / M_i  +  β Σ |Θ̂Θ̂ᵀ − I|

G is the sampler the search uses: Gumbel-Max at temperature τ, i.e. layer l independently
draws op o with probability p_lo = softmax(θ_l/τ)_o. The resource of a draw is a sum of L
independent per-layer costs, so its mean μ = Σ p·C and variance σ² = Σ_l Var_l are exact and
differentiable, and by the central limit theorem E|R − T| is the folded-normal mean
σ√(2/π)·exp(−d²/2σ²) + d·erf(d/σ√2), d = μ − T. Minimizing it pulls the whole sampled
distribution onto the target (not only its mean), at the very temperature samples are drawn:
that is what makes "what you set is what you get" hold for samples, not for the relaxation.

Orthogonality: Θ̂ are the proposals' logits over the free (unfixed, multi-op) layers, centered
per layer (softmax ignores a layer's offset) and scaled to unit norm. The paper's raw ΘΘᵀ
would also pin every ‖θ_j‖ to 1, i.e. force near-uniform proposals at τ ≈ 5; the cosine form
keeps only what the paper asks of the term, "sampled architectures ... are different".
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfnas.cost.tables import CostTables
from tfnas.nn.sampling import MASKED_LOGIT
from tfnas.proposals.budget import Budget, make_budget
from tfnas.proposals.defaults import (BETA, DEFAULT_TAU, INIT_STDDEV, ITERATIONS, LEARNING_RATE,
                                      NUM_PROPOSALS)
from tfnas.proposals.selector import Proposals


def masked_logits(theta, mask, tau):
    """θ/τ with disallowed entries at a large negative logit; theta [..., L, O], mask [L, O]."""
    return tf.where(mask, theta / tau, MASKED_LOGIT)


class _Tensors(NamedTuple):
    """A budget as tensors (tables, constants and targets divided by M_i)."""

    tables: tf.Tensor  # [n, L, O]
    constants: tf.Tensor  # [n]
    targets: tf.Tensor  # [n]
    mask: tf.Tensor  # bool [L, O]
    free: tf.Tensor  # [L, O] 1.0 where a free layer may take the op
    free_count: tf.Tensor  # [L, 1] ops per free layer (1 elsewhere)


def _moments(t: _Tensors, theta, tau):
    p = tf.nn.softmax(masked_logits(theta, t.mask, tau), axis=-1)[:, None]  # [m, 1, L, O]
    layer_mean = tf.reduce_sum(p * t.tables, axis=-1)  # [m, n, L]
    layer_square = tf.reduce_sum(p * tf.square(t.tables), axis=-1)
    mean = t.constants + tf.reduce_sum(layer_mean, axis=-1)
    var = tf.reduce_sum(tf.nn.relu(layer_square - tf.square(layer_mean)), axis=-1)
    return mean, tf.sqrt(var + 1e-12)


def _resource_terms(t: _Tensors, theta, tau):
    mean, std = _moments(t, theta, tau)
    d = mean - t.targets
    return (std * math.sqrt(2 / math.pi) * tf.exp(-tf.square(d / std) / 2)
            + d * tf.math.erf(d / (std * math.sqrt(2))))


def _orthogonality(t: _Tensors, theta):
    z = theta * t.free
    z = (z - tf.reduce_sum(z, axis=-1, keepdims=True) / t.free_count) * t.free
    z = tf.reshape(z, (tf.shape(z)[0], -1))
    z = z / (tf.norm(z, axis=1, keepdims=True) + 1e-12)
    gram = tf.matmul(z, z, transpose_b=True)
    return tf.reduce_sum(tf.abs(gram - tf.eye(tf.shape(z)[0])))


def _loss(t: _Tensors, theta, tau, beta):
    return tf.reduce_mean(_resource_terms(t, theta, tau)) + beta * _orthogonality(t, theta)


class ProposalObjective:
    """Eq. 7 over TensorFlow tensors; also the resource term the search keeps training with.

    Every method takes Θ as a float32 tensor or variable [m, L, O] (m may be 1).
    """

    def __init__(self, budget: Budget, beta: float = BETA):
        self.budget = budget
        self.beta = float(beta)
        free = budget.mask & budget.free_layers[:, None]
        self.tensors = _Tensors(
            tables=tf.constant(budget.tables, tf.float32),
            constants=tf.constant(budget.constants, tf.float32),
            targets=tf.constant(budget.targets_normalized, tf.float32),
            mask=tf.constant(budget.mask),
            free=tf.constant(free, tf.float32),
            free_count=tf.constant(np.maximum(free.sum(axis=1, keepdims=True), 1), tf.float32))

    def moments(self, theta, tau):
        """Mean and standard deviation of R_i / M_i over Gumbel-Max draws at τ: [m, n] each."""
        return _moments(self.tensors, theta, tau)

    def resource_terms(self, theta, tau):
        """E|R_i − T_i| / M_i per proposal and objective, [m, n]."""
        return _resource_terms(self.tensors, theta, tau)

    def orthogonality(self, theta):
        """Σ |Θ̂Θ̂ᵀ − I| over the proposals' centered, unit-norm free logits."""
        return _orthogonality(self.tensors, theta)

    def __call__(self, theta, tau):
        """The eq. 7 loss of Θ at temperature τ."""
        return _loss(self.tensors, theta, tau, self.beta)


@tf.function(reduce_retracing=True, autograph=False)
def _adam(t: _Tensors, logits, tau, beta, learning_rate, steps):
    """`steps` Adam steps on the logits u = θ/τ of eq. 7. Adam is written out (as in Keras,
    β1 0.9, β2 0.999, ε 1e-7) so that one traced loop serves every call: a Keras optimizer
    owns variables and would retrace for each new set of proposals."""
    b1, b2, eps = 0.9, 0.999, 1e-7

    def step(i, u, m1, m2):
        with tf.GradientTape() as tape:
            tape.watch(u)
            loss = _loss(t, u * tau, tau, beta)
        g = tape.gradient(loss, u)
        m1, m2 = b1 * m1 + (1 - b1) * g, b2 * m2 + (1 - b2) * tf.square(g)
        n = tf.cast(i + 1, tf.float32)
        u -= learning_rate * (m1 / (1 - b1 ** n)) / (tf.sqrt(m2 / (1 - b2 ** n)) + eps)
        return i + 1, u, m1, m2

    zeros = tf.zeros_like(logits)
    _, u, _, _ = tf.while_loop(lambda i, *_: i < steps, step,
                               (tf.constant(0), logits, zeros, zeros))
    return u, tf.reduce_mean(_resource_terms(t, u * tau, tau)), _orthogonality(t, u * tau)


def optimize_proposals(
    tables: CostTables,
    targets: dict[str, float],
    fixed: dict[int, int] | None = None,
    num_proposals: int = NUM_PROPOSALS,
    iterations: int = ITERATIONS,
    beta: float = BETA,
    tau: float = DEFAULT_TAU,
    seed: int = 0,
    learning_rate: float = LEARNING_RATE,
) -> Proposals:
    """m proposals whose samples at temperature `tau` meet `targets` (eq. 7).

    targets: objective -> value in the tables' units, e.g. {"params": 4.8e6, "flops": 300e6}.
    fixed: {layer index: op index}; those layers are constants that count toward the budget.
    tau: the temperature the proposals are optimized for and that `Proposals.sample` uses.
    learning_rate: Adam's, on the logits θ/τ (see `defaults.LEARNING_RATE`).
    Raises TfnasError, before optimizing, for targets outside the feasible range.
    Returns Θ with a uniform selector Π; `info["seconds"]` is the optimization time.
    """
    budget = make_budget(tables, targets, fixed)
    if num_proposals < 1 or iterations < 0 or beta < 0 or not tau > 0:
        raise ValueError("need num_proposals >= 1, iterations >= 0, beta >= 0 and tau > 0")
    rng = np.random.default_rng(seed)
    shape = (num_proposals,) + budget.mask.shape
    objective = ProposalObjective(budget, beta)
    start = time.perf_counter()
    u, resource, orthogonality = _adam(
        objective.tensors, tf.constant(rng.normal(0.0, INIT_STDDEV, shape), tf.float32),
        tf.constant(tau, tf.float32), tf.constant(beta, tf.float32),
        tf.constant(learning_rate, tf.float32), tf.constant(iterations))
    resource, orthogonality = float(resource), float(orthogonality)
    seconds = time.perf_counter() - start
    theta = np.where(budget.mask, u.numpy() * tau, 0.0)
    return Proposals(
        space=budget.space, ops=budget.ops, theta=theta, pi=np.zeros(num_proposals),
        mask=budget.mask, tau=float(tau), targets=dict(budget.targets), fixed=dict(budget.fixed),
        info={"seconds": seconds, "iterations": iterations, "beta": beta,
              "learning_rate": learning_rate, "seed": seed, "resource_loss": resource,
              "orthogonality": orthogonality})
