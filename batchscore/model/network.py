"""The classifier as a Flax module: parameter initialisation and the training forward pass.

Kept apart from batchscore.model.bilstm so that scoring, which runs on plain parameter dicts, starts
without importing Flax (a third of a second of every run's start-up).
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from batchscore.model.bilstm import (
    ModelConfig,
    next_layer_inputs,
    project,
    recur,
    recur_to_features,
    reverse_within_length,
)


def _lstm_bias_init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """Zero bias except the forget gate at 1, so early training remembers by default."""
    hidden = shape[-1] // 4
    return jnp.zeros(shape, dtype).at[..., hidden : 2 * hidden].set(1.0)


class BiLSTMLayer(nn.Module):
    """One bidirectional layer; the last one returns the head's input instead of
    its outputs (recur_to_features)."""

    hidden: int
    last_layer: bool = False
    pooling: tuple[str, ...] = ()

    @nn.compact
    def __call__(self, forward_in: jax.Array, backward_in: jax.Array, lengths: jax.Array) -> jax.Array:
        d_in = forward_in.shape[-1]
        h4 = 4 * self.hidden
        w_input = self.param("w_input", nn.initializers.glorot_uniform(batch_axis=(0,)), (2, d_in, h4))
        w_hidden = self.param("w_hidden", nn.initializers.orthogonal(column_axis=-1), (2, self.hidden, h4))
        bias = self.param("bias", _lstm_bias_init, (2, h4))
        gates = project(forward_in, backward_in, w_input, bias)
        if self.last_layer:
            return recur_to_features(gates, w_hidden, lengths, self.pooling, prescaled=False)
        return recur(gates, w_hidden, prescaled=False)


class SentimentBiLSTM(nn.Module):
    """Runs time-major inside: (B, T) ids in, (B, classes) logits out."""

    config: ModelConfig

    @nn.compact
    def __call__(
        self,
        ids: jax.Array,
        lengths: jax.Array,
        *,
        train: bool = False,
        perturbation: jax.Array | None = None,
    ) -> jax.Array:
        """`perturbation` (B, T, D) is added to the looked-up vectors: adversarial training's handle."""
        cfg = self.config
        lengths = jnp.maximum(lengths, 1)
        drop = nn.Dropout(cfg.dropout, deterministic=not train)
        x = nn.Embed(cfg.vocab_size, cfg.embed_dim, name="embedding")(ids.T)  # (T, B, D)
        if perturbation is not None:
            x = x + jnp.swapaxes(perturbation, 0, 1).astype(x.dtype)
        x = drop(x)
        inputs = (x, reverse_within_length(x, lengths, 0))
        for layer in range(cfg.num_layers):
            last = layer == cfg.num_layers - 1
            out = BiLSTMLayer(cfg.hidden, last, cfg.pooling, name=f"lstm_{layer}")(*inputs, lengths)
            if not last:
                inputs = next_layer_inputs(drop(out), lengths)
        return nn.Dense(cfg.num_classes, name="head")(drop(out))


def init_params(config: ModelConfig, seed: int) -> dict:
    dummy = jnp.zeros((1, 4), jnp.int32)
    return SentimentBiLSTM(config).init(jax.random.PRNGKey(seed), dummy, jnp.array([4]))["params"]


@partial(jax.jit, static_argnums=0)
def forward_logits(config: ModelConfig, params: dict, ids: jax.Array, lengths: jax.Array) -> jax.Array:
    """Inference logits; compiled once per (config, batch shape)."""
    return SentimentBiLSTM(config).apply({"params": params}, ids, lengths)
