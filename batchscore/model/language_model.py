"""Language-model pretraining of the BiLSTM layers on the training texts (Dai and Le, 2015).

Before any label is seen, each direction learns to predict the next token in its own reading order:
the forward direction the token after each position, the backward direction the token before. The
classifier then starts from layers that already model how reviews read instead of from random ones.

Directions are kept apart here. In the classifier the second layer's forward direction also reads the
first layer's backward outputs, which have seen the tokens ahead, so a next-token objective would be
solved by copying. While pretraining, each direction of a later layer reads only its own direction's
outputs (the cross-direction rows of its input weights take no part), and classifier_start() sets
those rows to zero: the classifier begins with the pretrained function and learns how much to mix.

The output layer is a sampled softmax (Jean et al., 2015): each batch scores its targets against
LM_NEGATIVES words drawn from the unigram^0.75 distribution, with the output word vectors tied to the
input embedding, so a token costs a fraction of the LSTM's own arithmetic rather than a
vocabulary-wide softmax.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from batchscore.model.bilstm import project, recur, reverse_within_length
from batchscore.text.vocab import UNK_ID

LM_NEGATIVES = 512  # sampled words per batch that every position's target is scored against
LM_DROPOUT = 0.1  # on embeddings and layer outputs; a next-token task on one pass of data underfits


def sampling_distribution(token_ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """unigram^0.75 over the vocabulary (add-one smoothed, so every word can be drawn and scored);
    <pad> and <unk> are never drawn."""
    counts = np.bincount(token_ids, minlength=vocab_size).astype(np.float64) + 1.0
    weights = counts**0.75
    weights[: UNK_ID + 1] = 0.0
    return weights / weights.sum()


def init_lm_head(hidden: int, embed_dim: int, unigram: np.ndarray, seed: int) -> dict:
    """Per-direction projection from LSTM outputs to the embedding space, and a per-word bias
    started at the log frequency, so the first steps need not learn how common each word is."""
    scale = 1.0 / np.sqrt(hidden)
    projection = jax.random.normal(jax.random.PRNGKey(seed), (2, hidden, embed_dim)) * scale
    return {"projection": projection, "bias": jnp.asarray(np.log(unigram + 1e-12), jnp.float32)}


def _dropout(x: jax.Array, key: jax.Array) -> jax.Array:
    keep = jax.random.bernoulli(key, 1.0 - LM_DROPOUT, x.shape)
    return jnp.where(keep, x / (1.0 - LM_DROPOUT), 0.0)


def direction_outputs(params: dict, ids: jax.Array, lengths: jax.Array, key: jax.Array | None) -> jax.Array:
    """The last layer's (T, 2, B, H) outputs with each direction fed only its own direction's states
    (the backward one in its reversed-within-length order); `key` None: no dropout."""
    layers = sorted(name for name in params if name.startswith("lstm_"))
    keys = list(jax.random.split(key, len(layers) + 1)) if key is not None else [None] * (len(layers) + 1)
    x = params["embedding"]["embedding"][ids.T]  # (T, B, D)
    if keys[0] is not None:
        x = _dropout(x, keys[0])
    inputs = (x, reverse_within_length(x, lengths, 0))
    for index, name in enumerate(layers):
        layer = params[name]
        w_input = layer["w_input"]
        if index > 0:  # rows [:H] read the forward outputs, rows [H:] the backward ones
            hidden = layer["w_hidden"].shape[1]
            w_input = jnp.stack([w_input[0, :hidden], w_input[1, hidden:]])
        outputs = recur(project(*inputs, w_input, layer["bias"]), layer["w_hidden"], prescaled=False)
        if keys[index + 1] is not None:
            outputs = _dropout(outputs, keys[index + 1])
        inputs = (outputs[:, 0], outputs[:, 1])
    return outputs


def lm_loss(
    params: dict,
    head: dict,
    ids: jax.Array,
    lengths: jax.Array,
    negatives: jax.Array,
    log_expected: jax.Array,
    key: jax.Array | None,
) -> tuple[jax.Array, jax.Array]:
    """Mean sampled-softmax next-token loss over both directions, and the number of scored tokens.

    `negatives` (K,) are the batch's sampled words and `log_expected` (V,) is log(K * q(word)): the
    correction that makes the sampled softmax estimate the full one. A negative equal to a position's
    own target is masked out for that position. Targets that are <unk> or past a row's length are not
    scored."""
    lengths = jnp.maximum(lengths, 1)
    outputs = direction_outputs(params, ids, lengths, key)[:-1]  # step s predicts step s + 1
    reversed_ids = reverse_within_length(ids, lengths)
    targets = jnp.stack([ids.T, reversed_ids.T], axis=1)[1:]  # (T-1, 2, B), each direction's order
    steps = jnp.arange(1, ids.shape[1])[:, None, None]
    scored = (steps < lengths[None, None, :]) & (targets > UNK_ID)
    embedding = params["embedding"]["embedding"]
    queries = jnp.einsum("tzbh,zhd->tzbd", outputs, head["projection"])
    true_logits = (
        jnp.sum(queries * embedding[targets], axis=-1) + head["bias"][targets] - log_expected[targets]
    )
    sampled = embedding[negatives]
    negative_logits = (
        jnp.einsum("tzbd,kd->tzbk", queries, sampled)
        + (head["bias"][negatives] - log_expected[negatives])[None, None, None, :]
    )
    negative_logits = jnp.where(negatives == targets[..., None], -jnp.inf, negative_logits)
    log_total = jnp.logaddexp(true_logits, jax.nn.logsumexp(negative_logits, axis=-1))
    count = scored.sum()
    loss = jnp.where(scored, log_total - true_logits, 0.0).sum() / jnp.maximum(count, 1)
    return loss, count


def classifier_start(lm_params: dict, classifier_template: dict) -> dict:
    """The classifier's initial parameters: the pretrained embedding and LSTM layers, the
    cross-direction input rows of every later layer at zero (see the module docstring), and the
    template's (freshly initialised) head."""
    start = dict(classifier_template)
    start["embedding"] = lm_params["embedding"]
    for name in classifier_template:
        if not name.startswith("lstm_"):
            continue
        layer = dict(lm_params[name])
        if name != "lstm_0":
            hidden = layer["w_hidden"].shape[1]
            layer["w_input"] = layer["w_input"].at[0, hidden:].set(0.0).at[1, :hidden].set(0.0)
        start[name] = layer
    return start


def lm_parameters(classifier_params: dict) -> dict:
    """The parts of the classifier's parameters that pretraining trains (all but the head)."""
    return {name: value for name, value in classifier_params.items() if name != "head"}
