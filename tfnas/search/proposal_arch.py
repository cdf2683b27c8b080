"""Stage-2 architecture parameters: m space proposals Θ [m, L, O] and their selector Π [m].

A draw picks a proposal with Gumbel-Max over Π (eq. 8), then an op per layer with Gumbel-Max
over that proposal's θ/τ, and mixes them as A_Θ = Σ_i π_i A_θi (eq. 9) with straight-through
weights: the forward value is the one-hot path of the drawn proposal, the gradient reaches Π
and every θ_i. The interface is `tfnas.nn.sampling.ArchParams`'s, so the same training steps
drive stage 1 (θ) and stage 2 (Π, Θ).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfnas.nn.sampling import ArchParams, ArchSample, check_mode, straight_through
from tfnas.proposals.selector import Proposals



class ProposalArchParams(ArchParams):
    def __init__(self, proposals: Proposals, allowed: np.ndarray, tau: float,
                 tau_decay: float, seed: int | None = None, name: str = "proposals"):
        allowed = np.asarray(allowed, dtype=bool) & proposals.mask
        if not allowed.any(axis=1).all():
            raise ValueError("the proposals allow no op at some layer of this supernet")
        super().__init__(allowed, tau, tau_decay, seed, name=name, theta_init=proposals.theta)
        self.pi = keras.Variable(proposals.pi.astype(np.float32), name=f"{name}_pi")

    @property
    def num_proposals(self) -> int:
        return int(self.theta.shape[0])

    @property
    def trainable_variables(self) -> list:
        return [self.theta, self.pi]

    def selection_probabilities(self):
        return tf.nn.softmax(tf.convert_to_tensor(self.pi))

    def probabilities(self):
        """Marginal op probabilities [L, O]: Σ_i π_i softmax(θ_i/τ) (θ/τ is [m, L, O]: the
        base class's mask broadcasts over the proposals)."""
        per = tf.nn.softmax(self.logits(), axis=-1)
        return tf.einsum("m,mlo->lo", self.selection_probabilities(), per)

    def draw_noise(self, mode: str):
        if check_mode(mode) not in ("gumbel_max", "gumbel_softmax"):
            raise ValueError(f"proposal sampling supports gumbel_max and gumbel_softmax, "
                             f"not {mode!r}")
        u = keras.random.uniform((self.num_proposals + self.num_layers * self.num_ops,),
                                 minval=1e-10, maxval=1.0, seed=self.seed)
        return -tf.math.log(-tf.math.log(u))

    def relax(self, mode: str, noise=None, indices=None) -> ArchSample:
        m, L, O = self.num_proposals, self.num_layers, self.num_ops
        g_pi, g_ops = noise[:m], tf.reshape(noise[m:], (L, O))
        if mode == "gumbel_softmax":  # noise shrunk by τ at both levels (see sampling)
            tau = tf.convert_to_tensor(self.tau)
            soft_pi = tf.nn.softmax(tf.convert_to_tensor(self.pi) + g_pi / tau)
            soft_ops = tf.nn.softmax(self.logits() + g_ops / tau, axis=-1)
            weights = tf.einsum("m,mlo->lo", soft_pi, soft_ops)
            return ArchSample(tf.argmax(weights, axis=-1, output_type=tf.int32), weights, False)
        z_pi = tf.convert_to_tensor(self.pi) + g_pi
        z_ops = self.logits() + g_ops  # the same noise for every proposal: [m, L, O]
        soft_pi = tf.nn.softmax(z_pi)
        soft_ops = tf.nn.softmax(z_ops, axis=-1)
        chosen = tf.argmax(z_pi, output_type=tf.int32)
        pi_st = straight_through(tf.one_hot(chosen, m), soft_pi)
        idx = tf.argmax(z_ops, axis=-1, output_type=tf.int32)  # [m, L]
        ops_st = straight_through(tf.one_hot(idx, O), soft_ops)
        weights = tf.einsum("m,mlo->lo", pi_st, ops_st)
        return ArchSample(tf.gather(idx, chosen), weights, True)

    def log_prob(self, indices):
        """log P(the path `indices` [L]) under the two-level draw, marginal over the proposal:
        log Σ_i π_i Π_l softmax(θ_i,l/τ)[o_l]."""
        logp = tf.nn.log_softmax(self.logits(), axis=-1)  # [m, L, O]
        rows = tf.tile(tf.cast(indices, tf.int32)[None], [self.num_proposals, 1])
        per_proposal = tf.reduce_sum(tf.gather(logp, rows, batch_dims=2), axis=-1)
        return tf.reduce_logsumexp(
            tf.nn.log_softmax(tf.convert_to_tensor(self.pi)) + per_proposal)

    def derive(self) -> np.ndarray:
        """The most likely op of the most likely proposal (Algorithm 1, line 23)."""
        return self.most_likely_ops(int(np.argmax(tf.convert_to_tensor(self.pi).numpy())))

    def most_likely_ops(self, proposal: int) -> np.ndarray:
        """The most likely op of every layer under proposal `proposal` [L]."""
        theta = tf.convert_to_tensor(self.theta).numpy()[proposal]
        return np.argmax(np.where(self.allowed, theta, -np.inf), axis=-1)

    def checkpoint_items(self) -> dict:
        return {"theta": self.theta, "pi": self.pi, "tau": self.tau, "seed": self.seed.state}
