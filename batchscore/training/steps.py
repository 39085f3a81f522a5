"""One optimisation step each for the classifier and the language model, and their optimiser."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from batchscore.model.network import SentimentBiLSTM
from batchscore.text.vocab import UNK_ID
from batchscore.training.config import TrainConfig


def make_optimizer(config: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=config.learning_rate * 0.05,
        peak_value=config.learning_rate,
        warmup_steps=min(config.warmup_steps, max(1, total_steps // 10)),
        decay_steps=max(total_steps, 2),
        end_value=config.learning_rate * 0.02,
    )
    return optax.chain(
        optax.clip_by_global_norm(config.clip_norm),
        optax.adamw(schedule, weight_decay=config.weight_decay),
    )


def adversarial_push(towards_loss: jax.Array, epsilon: float) -> jax.Array:
    """Each review's (B, T, D) loss gradient scaled to L2 length epsilon: the first-order worst-case
    nudge of its embeddings. Padding gets no gradient, so the whole budget lands on real tokens."""
    norms = jnp.sqrt(jnp.sum(jnp.square(towards_loss), axis=(1, 2), keepdims=True))
    return jax.lax.stop_gradient(epsilon * towards_loss / (norms + 1e-12))


def drop_recurrent_weights(params: dict, rate: float, key: jax.Array) -> dict:
    """`params` with each LSTM layer's hidden-to-hidden weights under one DropConnect mask per batch
    (Wan et al., 2013; Merity et al., 2018's weight drop).

    Dropout on the outputs cannot reach the recurrence without breaking what the cell carries from
    step to step; a mask on W_h, the same for every step, regularises the recurrence itself. Kept
    weights are scaled by 1 / (1 - rate), so inference uses the plain weights unchanged.
    """
    dropped = dict(params)
    layers = sorted(name for name in params if name.startswith("lstm_"))
    for name, layer_key in zip(layers, jax.random.split(key, len(layers)), strict=True):
        w_hidden = params[name]["w_hidden"]
        keep = jax.random.bernoulli(layer_key, 1.0 - rate, w_hidden.shape)
        dropped[name] = {**params[name], "w_hidden": jnp.where(keep, w_hidden / (1.0 - rate), 0.0)}
    return dropped


def make_classifier_step(
    model: SentimentBiLSTM, optimizer: optax.GradientTransformation, config: TrainConfig
):
    def loss_fn(params, perturbation, ids, lengths, labels, weights, key):
        drop_key = key
        if config.token_dropout > 0:
            drop_key, token_key = jax.random.split(key)
            hide = jax.random.bernoulli(token_key, config.token_dropout, ids.shape) & (ids > UNK_ID)
            ids = jnp.where(hide, UNK_ID, ids)
        if config.weight_drop > 0:
            drop_key, weight_key = jax.random.split(drop_key)
            params = drop_recurrent_weights(params, config.weight_drop, weight_key)
        logits = model.apply(
            {"params": params},
            ids,
            lengths,
            train=True,
            perturbation=perturbation,
            rngs={"dropout": drop_key},
        )
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        total = jnp.maximum(weights.sum(), 1.0)
        correct = ((logits.argmax(-1) == labels) * weights).sum()
        return (losses * weights).sum() / total, correct

    def gradients(params, ids, lengths, labels, weights, key):
        """Loss gradients; with adversarial training (Miyato et al., 2017) the loss at the embeddings
        pushed a distance epsilon along each review's own loss gradient is added to the clean loss."""
        if config.adversarial_epsilon == 0:  # no perturbation, no gradient towards one
            (loss, correct), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                params, None, ids, lengths, labels, weights, key
            )
            return loss, correct, grads
        zero = jnp.zeros((*ids.shape, model.config.embed_dim), jnp.float32)
        (loss, correct), (grads, towards_loss) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
            params, zero, ids, lengths, labels, weights, key
        )
        push = adversarial_push(towards_loss, config.adversarial_epsilon)
        adversarial_grads, _ = jax.grad(loss_fn, has_aux=True)(
            params, push, ids, lengths, labels, weights, key
        )
        return loss, correct, jax.tree_util.tree_map(jnp.add, grads, adversarial_grads)

    @jax.jit
    def step(params, ema, opt_state, ids, lengths, labels, weights, key, step_number):
        loss, correct, grads = gradients(params, ids, lengths, labels, weights, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        if config.embed_lr_scale != 1.0:
            updates["embedding"]["embedding"] = updates["embedding"]["embedding"] * config.embed_lr_scale
        params = optax.apply_updates(params, updates)
        if config.ema_decay > 0:
            # warm-started decay, so the average is not dominated by the random initial weights
            decay = jnp.minimum(config.ema_decay, (1.0 + step_number) / (10.0 + step_number))
            ema = jax.tree_util.tree_map(lambda e, p: decay * e + (1 - decay) * p, ema, params)
        else:
            ema = params
        return params, ema, opt_state, loss, correct

    return step
