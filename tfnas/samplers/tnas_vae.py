"""TNAS's architecture VAE (Yan et al., eqs. 2-8): transformer encoder and decoder over
token sequences, one token per decision.

Encoder E: token + position embeddings -> transformer blocks (multi-head self-attention,
eqs. 3-7, then the ReLU feed-forward of eq. 8, each with a residual and layer norm) ->
mean pool -> (mu, log sigma^2) of q(z | alpha). Decoder D: z -> one vector per position
(+ position embedding) -> transformer blocks -> per-position logits of p(alpha | z), masked to
each decision's own vocabulary. Loss: the negative ELBO of eq. 2, reconstruction
cross-entropy plus `kl_weight` x KL(q(z|alpha) || N(0, I)).

Training runs `steps` Adam steps in one `tf.function` call (batches drawn inside the graph),
traced once per process and shape, and all randomness comes from explicit seeds: the same
seed, start weights and data give the same weights.
"""

from __future__ import annotations

import threading

import keras
import numpy as np
import tensorflow as tf
from keras import layers

NEG_INF = -1e9
BATCH_SIZE = 32


@keras.saving.register_keras_serializable(package="tfnas")
class TransformerBlock(layers.Layer):
    """Post-norm transformer block: MHA (eqs. 3-7) and ReLU feed-forward (eq. 8)."""

    def __init__(self, dim: int, num_heads: int, ff_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.num_heads, self.ff_dim = dim, num_heads, ff_dim
        self.attention = layers.MultiHeadAttention(num_heads, key_dim=dim // num_heads,
                                                   name="attention")
        self.ff1 = layers.Dense(ff_dim, activation="relu", name="ff1")
        self.ff2 = layers.Dense(dim, name="ff2")
        self.norm1 = layers.LayerNormalization(name="norm1")
        self.norm2 = layers.LayerNormalization(name="norm2")

    def build(self, input_shape):
        self.attention.build(input_shape, input_shape)
        self.ff1.build(input_shape)
        self.ff2.build(input_shape[:-1] + (self.ff_dim,))
        self.norm1.build(input_shape)
        self.norm2.build(input_shape)

    def call(self, x):
        x = self.norm1(x + self.attention(x, x))
        return self.norm2(x + self.ff2(self.ff1(x)))

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "num_heads": self.num_heads,
                "ff_dim": self.ff_dim}


@keras.saving.register_keras_serializable(package="tfnas")
class ArchitectureVAE(keras.Model):
    """VAE over sequences of len(sizes) tokens; token i takes values in range(sizes[i]).

    The model holds no sampler state of its own: `initial_weights(seed)` gives a seeded
    start, `train(weights, data, steps, seed)` returns new weights, `sample(weights, ...)`
    draws rows. So one traced model serves every sampler of the same shape in a process
    (`shared_vae`), and a sampler's whole state is a list of arrays.
    """

    def __init__(self, sizes, latent_dim: int = 8, dim: int = 32, num_heads: int = 2,
                 num_layers: int = 1, kl_weight: float = 0.1, learning_rate: float = 1e-2,
                 **kwargs):
        super().__init__(**kwargs)
        self.sizes = [int(s) for s in sizes]
        self.latent_dim, self.dim, self.num_heads = latent_dim, dim, num_heads
        self.num_layers, self.kl_weight, self.learning_rate = num_layers, kl_weight, learning_rate
        length, vmax = len(self.sizes), max(self.sizes)
        self.offsets = tf.constant(np.cumsum([0] + self.sizes[:-1]), tf.int32)
        mask = np.where(np.arange(vmax)[None, :] < np.array(self.sizes)[:, None], 0.0, NEG_INF)
        self.logit_mask = tf.constant(mask, tf.float32)
        self.token_embedding = layers.Embedding(sum(self.sizes), dim, name="token_embedding")
        self.position_embedding = self.add_weight(shape=(length, dim), name="position_embedding")
        self.encoder_blocks = [TransformerBlock(dim, num_heads, 2 * dim, name=f"encoder_{i}")
                               for i in range(num_layers)]
        self.to_latent = layers.Dense(2 * latent_dim, name="to_latent")
        self.from_latent = layers.Dense(length * dim, name="from_latent")
        self.decoder_blocks = [TransformerBlock(dim, num_heads, 2 * dim, name=f"decoder_{i}")
                               for i in range(num_layers)]
        self.to_logits = layers.Dense(vmax, name="to_logits")
        self.noise = tf.random.Generator.from_seed(0)
        self.optimizer_ = keras.optimizers.Adam(learning_rate)
        self.encode(tf.zeros((1, length), tf.int32))
        self.decode(tf.zeros((1, latent_dim)))
        self.optimizer_.build(self.trainable_variables)

    def encode(self, tokens):
        """q(z | alpha): (mu, log variance), each [B, latent_dim]."""
        x = self.token_embedding(tf.cast(tokens, tf.int32) + self.offsets)
        x = x + self.position_embedding
        for block in self.encoder_blocks:
            x = block(x)
        mu, log_var = tf.split(self.to_latent(tf.reduce_mean(x, axis=1)), 2, axis=-1)
        return mu, log_var

    def decode(self, z):
        """p(alpha | z): masked logits [B, L, max vocabulary]."""
        x = tf.reshape(self.from_latent(z), (-1, len(self.sizes), self.dim))
        x = x + self.position_embedding
        for block in self.decoder_blocks:
            x = block(x)
        return self.to_logits(x) + self.logit_mask

    def call(self, tokens):
        mu, _ = self.encode(tokens)
        return self.decode(mu)

    def loss_terms(self, tokens):
        mu, log_var = self.encode(tokens)
        z = mu + tf.exp(0.5 * log_var) * self.noise.normal(tf.shape(mu))
        logits = self.decode(z)
        reconstruction = tf.reduce_mean(tf.reduce_sum(
            tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(tokens, tf.int32), logits),
            axis=1))
        kl = tf.reduce_mean(tf.reduce_sum(
            0.5 * (tf.exp(log_var) + tf.square(mu) - 1.0 - log_var), axis=1))
        return reconstruction, kl

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32),
                                  tf.TensorSpec([], tf.int32)])
    def _train_steps(self, data, steps):
        for v in self.optimizer_.variables:
            if "learning_rate" not in v.path:  # a fresh Adam: iterations and moments
                v.assign(tf.zeros_like(v))
        n = tf.shape(data)[0]
        reconstruction = kl = tf.constant(0.0)
        for _ in tf.range(steps):
            idx = self.noise.uniform((BATCH_SIZE,), 0, n, dtype=tf.int32)
            with tf.GradientTape() as tape:
                reconstruction, kl = self.loss_terms(tf.gather(data, idx))
                loss = reconstruction + self.kl_weight * kl
            grads = tape.gradient(loss, self.trainable_variables)
            self.optimizer_.apply_gradients(zip(grads, self.trainable_variables))
        return reconstruction, kl

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
    def _probabilities(self, z):
        return tf.nn.softmax(self.decode(z), axis=-1)

    def initial_weights(self, seed: int) -> list[np.ndarray]:
        """Glorot-uniform kernels and embeddings, zero biases, unit norms, from `seed`."""
        rng = np.random.default_rng(seed)
        out = []
        for v in self.weights:
            shape, path = tuple(v.shape), v.path
            if path.endswith(("gamma",)):
                out.append(np.ones(shape, np.float32))
            elif path.endswith(("bias", "beta")):
                out.append(np.zeros(shape, np.float32))
            else:
                per_head = any(k in path for k in ("query", "key", "value"))
                fan_in = shape[0] if per_head else int(np.prod(shape[:-1]))
                fan_out = int(np.prod(shape[1:])) if per_head else shape[-1]
                limit = np.sqrt(6.0 / (fan_in + fan_out))
                out.append(rng.uniform(-limit, limit, shape).astype(np.float32))
        return out

    def train(self, weights: list[np.ndarray], data: np.ndarray, steps: int,
              seed: int) -> tuple[list[np.ndarray], float, float]:
        """Adam from a fresh state, `steps` steps from `weights` on rows `data` [N, L];
        returns the new weights and the last (reconstruction, KL)."""
        self._load(weights)
        self.noise.reset_from_seed(seed)
        rec, kl = self._train_steps(tf.constant(data, tf.int32), tf.constant(steps, tf.int32))
        weights = self.get_weights()
        object.__setattr__(self, "_loaded", weights)  # a plain reference, not tracked
        return weights, float(rec), float(kl)

    def _load(self, weights: list[np.ndarray]) -> None:
        if weights is not getattr(self, "_loaded", None):  # skip when already in place
            self.set_weights(weights)
            object.__setattr__(self, "_loaded", weights)

    def sample(self, weights: list[np.ndarray], rng: np.random.Generator,
               n: int) -> np.ndarray:
        """n token rows from p(alpha | z), z ~ N(0, I); all randomness from `rng`."""
        self._load(weights)
        z = rng.standard_normal((n, self.latent_dim)).astype(np.float32)
        probs = self._probabilities(tf.constant(z)).numpy().astype(np.float64)
        cumulative = np.cumsum(probs, axis=-1)
        u = rng.random(probs.shape[:2] + (1,)) * cumulative[..., -1:]
        tokens = (cumulative < u).sum(axis=-1)
        return np.minimum(tokens, np.array(self.sizes) - 1).astype(np.int64)

    def get_config(self):
        return {**super().get_config(), "sizes": self.sizes, "latent_dim": self.latent_dim,
                "dim": self.dim, "num_heads": self.num_heads, "num_layers": self.num_layers,
                "kl_weight": self.kl_weight, "learning_rate": self.learning_rate}


_SHARED: dict[tuple, ArchitectureVAE] = {}
SHARED_LOCK = threading.RLock()


def shared_vae(sizes, **config) -> ArchitectureVAE:
    """One traced VAE per shape and configuration in this process (hold SHARED_LOCK while
    training or sampling with it)."""
    key = (tuple(int(s) for s in sizes), tuple(sorted(config.items())))
    with SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = ArchitectureVAE(sizes, **config)
        return _SHARED[key]
