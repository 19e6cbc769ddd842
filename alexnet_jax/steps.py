"""The jitted computations: the training step (§3.5 loss, §5 update) and the evaluation step
(§4.1 ten-crop averaging). Pure functions of arrays; `train.py` jits them with shardings."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx


def cross_entropy(logits, labels):
  """Per-example −log softmax(logits)[label]: the multinomial logistic regression of §3.5."""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def topk_errors(scores, labels, k: int = 5):
  """Per-example (top-1 error, top-k error) as float32 0/1."""
  k = min(k, scores.shape[-1])
  top = jax.lax.top_k(scores, k)[1]
  top1 = (top[:, 0] != labels).astype(jnp.float32)
  topk = 1.0 - jnp.any(top == labels[:, None], axis=-1).astype(jnp.float32)
  return top1, topk


def make_train_step(graphdef, tx, *, with_stats: bool):
  """`(state, batch, rng) -> (state, metrics)`; `with_stats` adds per-layer norms."""

  def train_step(state, batch, rng):
    key = jax.random.fold_in(rng, state["step"])

    def loss_fn(params):
      model = nnx.merge(graphdef, params)
      out = model(batch["image"], dropout_key=key, capture=with_stats)
      logits, captured = out if with_stats else (out, None)
      return cross_entropy(logits, batch["label"]).mean(), (logits, captured)

    (loss, (logits, captured)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    top1, top5 = topk_errors(logits, batch["label"])
    out = {
        "loss": loss, "top1_error": top1.mean(), "top5_error": top5.mean(),
        "lr": optax.tree_utils.tree_get(opt_state, "learning_rate"),
        "grad_norm": optax.tree.norm(grads), "param_norm": optax.tree.norm(params),
    }
    if with_stats:
      for name, act in captured.items():
        out[f"act_rms/{name}"] = jnp.sqrt(jnp.mean(jnp.square(act.astype(jnp.float32))))
      for name, layer in grads.items():
        out[f"grad_norm/{name}"] = optax.tree.norm(layer)
        out[f"param_norm/{name}"] = optax.tree.norm(params[name])
    return {"step": state["step"] + 1, "params": params, "opt_state": opt_state}, out

  return train_step


def make_eval_step(graphdef, *, ten_crop: bool):
  """Sums of (loss, top-1 errors, top-5 errors, examples) over the unmasked examples."""

  def eval_step(params, batch):
    model = nnx.merge(graphdef, params)
    images, labels, mask = batch["image"], batch["label"], batch["mask"].astype(jnp.float32)
    if ten_crop:  # §4.1: average the softmax over the ten patches
      b, n = images.shape[:2]
      probs = jax.nn.softmax(model(images.reshape(b * n, *images.shape[2:])), axis=-1)
      probs = probs.reshape(b, n, -1).mean(axis=1)
      loss = -jnp.log(jnp.take_along_axis(probs, labels[:, None], axis=-1)[:, 0] + 1e-12)
      scores = probs
    else:
      scores = model(images)
      loss = cross_entropy(scores, labels)
    top1, top5 = topk_errors(scores, labels)
    return {"loss": (loss * mask).sum(), "top1_error": (top1 * mask).sum(),
            "top5_error": (top5 * mask).sum(), "count": mask.sum()}

  return eval_step
