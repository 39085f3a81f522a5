"""The GPU forward pass: the whole BiLSTM stack as one cuDNN call (jax.experimental.rnn.lstm).

On a GPU the scan path launches several small kernels per time step (hundreds of steps, two layers,
per batch); cuDNN runs the recurrence in one fused kernel. Same model, same bundle: the weights are
repacked once at load time into cuDNN's flat vector. cuDNN (like PyTorch) keeps two biases per gate,
so ours becomes b_ih and b_hh is zero; its gate order is ours (i, f, g, o); layer 2 reads
[forward; backward] outputs, as ours; and its reverse direction starts at each row's own last token
(`seq_lengths`), as our reverse_within_length does. Rows of length 0 never reach it (lengths are
clamped to 1, and empty rows are never scored).

`jax.experimental.rnn.lstm` raises off GPU, so the CPU test suite checks this path through
`lstm_ref`, the library's pure-JAX reference of the same call, fed the same packed vector.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import rnn

from batchscore.model.bilstm import ModelConfig, batch_major_head_features

IMPLEMENTATIONS = ("cudnn", "reference")


def pack_weights(config: ModelConfig, params: dict) -> jax.Array:
    """Our LSTM parameters as cuDNN's flat vector: every pseudo-layer's (forward-0, reverse-0,
    forward-1, ...) W_ih (4H, D) and W_hh (4H, H), row-major, then every pseudo-layer's b_ih, b_hh."""
    matrices, biases = [], []
    for layer in range(config.num_layers):
        p = params[f"lstm_{layer}"]
        for direction in range(2):
            matrices += [np.asarray(p["w_input"][direction]).T, np.asarray(p["w_hidden"][direction]).T]
            bias = np.asarray(p["bias"][direction])
            biases += [bias, np.zeros_like(bias)]
    return jnp.asarray(np.concatenate([np.ravel(a) for a in matrices + biases]).astype(np.float32))


def device_params(config: ModelConfig, params: dict) -> dict:
    """What the cuDNN forward needs, ready to be put on the device once."""
    return {
        "lstm": pack_weights(config, params),
        "embedding": jnp.asarray(params["embedding"]["embedding"]),
        "head": params["head"],
    }


@partial(jax.jit, static_argnums=(0, 4, 5))
def cudnn_forward_logits(
    config: ModelConfig,
    packed: dict,
    ids: jax.Array,
    lengths: jax.Array,
    implementation: str = "cudnn",
    allow_tf32: bool = False,
) -> jax.Array:
    """Logits of one padded batch through the packed stack. allow_tf32=False (the default) asks
    cuDNN for exact float32 matmuls (Precision.HIGHEST); True lets it use TF32 (faster, ~1e-3)."""
    lengths = jnp.maximum(lengths, 1).astype(jnp.int32)
    x = packed["embedding"][ids]
    zeros = jnp.zeros((2 * config.num_layers, ids.shape[0], config.hidden), x.dtype)
    sizes = {"input_size": config.embed_dim, "hidden_size": config.hidden, "num_layers": config.num_layers}
    if implementation == "cudnn":
        precision = None if allow_tf32 else lax.Precision.HIGHEST
        y, _, _ = rnn.lstm(
            x,
            zeros,
            zeros,
            packed["lstm"],
            lengths,
            dropout=0.0,
            bidirectional=True,
            precision=precision,
            **sizes,
        )
    else:
        w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(packed["lstm"], bidirectional=True, **sizes)
        y, _, _ = rnn.lstm_ref(
            x, zeros, zeros, w_ih, w_hh, b_ih, b_hh, lengths,
            config.embed_dim, config.hidden, config.num_layers, 0.0, True,
        )  # fmt: skip
    head = packed["head"]
    return batch_major_head_features(y, lengths, config.pooling) @ head["kernel"] + head["bias"]
