"""The computations the device runs: the training step (§3.5 loss, §5 update), the prediction
and evaluation steps (§4.1 ten-crop averaging). Pure functions of arrays, jitted with their
shardings by `train_setup.setup_train` (training, benchmarks) and by `inference.Trained`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from alexnet_jax.data.normalize import normalize


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


def make_train_step(graphdef, tx, *, with_stats: bool, pixel_scale: float,
                    centre_mean: bool = False, with_norms: bool = True):
  """`(state, batch, rng, mean, rates) -> (state, metrics)`; `with_stats` adds per-layer norms;
  `with_norms` False leaves out the global gradient and parameter norms (a lever
  `benchmark levers` times).

  `batch` is the input pipeline's uint8 crops; `mean` the mean image (`data.normalize`);
  `rates` every parameter's ε ({'layer/kernel': ε}: `schedule.LearningRateSchedule.rates_on`)."""

  def train_step(state, batch, rng, mean, rates):
    key = jax.random.fold_in(rng, state["step"])
    images = normalize(batch, mean, pixel_scale, centre_mean)

    def loss_fn(params):
      model = nnx.merge(graphdef, params)
      out = model(images, dropout_key=key, capture=with_stats)
      logits, captured = out if with_stats else (out, None)
      return cross_entropy(logits, batch["label"]).mean(), (logits, captured)

    (loss, (logits, captured)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"],
                                   learning_rates=rates)
    params = optax.apply_updates(state["params"], updates)
    top1, top5 = topk_errors(logits, batch["label"])
    out = {"loss": loss, "top1_error": top1.mean(), "top5_error": top5.mean()}
    if with_norms:
      out.update(grad_norm=optax.tree.norm(grads), param_norm=optax.tree.norm(params))
    if with_stats:
      for name, act in captured.items():
        out[f"act_rms/{name}"] = jnp.sqrt(jnp.mean(jnp.square(act.astype(jnp.float32))))
      for name, layer in grads.items():
        out[f"grad_norm/{name}"] = optax.tree.norm(layer)
        out[f"param_norm/{name}"] = optax.tree.norm(params[name])
    return {"step": state["step"] + 1, "params": params, "opt_state": opt_state}, out

  return train_step


def make_predict_step(graphdef, *, pixel_scale: float, centre_mean: bool = False):
  """`(params, batch, mean) -> {'probs': [b, C], 'view_probs': [b, views, C], 'fc7': [b, F]}`
  for uint8 crops [b, h, w, c] (one view) or [b, views, h, w, c]: `probs` and `fc7` are
  averaged over the views, the softmax over the ten patches of §4.1."""

  def predict_step(params, batch, mean):
    model = nnx.merge(graphdef, params)
    images = normalize(batch, mean, pixel_scale, centre_mean)
    b = images.shape[0]
    logits, captured = model(images.reshape(-1, *images.shape[-3:]), capture=True)
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).reshape(b, -1, logits.shape[-1])
    fc7 = captured["fc7"].astype(jnp.float32)
    return {"probs": probs.mean(axis=1), "view_probs": probs,
            "fc7": fc7.reshape(b, -1, fc7.shape[-1]).mean(axis=1)}

  return predict_step


CENTRE_VIEW = 4  # the centre patch among §4.1's ten (`data.augment.crop_boxes`)


def make_eval_step(graphdef, *, pixel_scale: float, centre_mean: bool = False,
                   with_probs: bool = False):
  """`(params, batch, mean) -> {split: sums}` of (loss, top-1 errors, top-5 errors, examples)
  over the unmasked examples: {'eval': ...} for centre crops; for ten-crop batches
  ([b, 10, h, w, c]) {'eval_10crop': the softmax averaged (§4.1), 'eval': the centre view}.
  `with_probs`: `(sums, {split: probs [b, C]})`, the softmax each split scores."""
  predict = make_predict_step(graphdef, pixel_scale=pixel_scale, centre_mean=centre_mean)

  def sums(probs, labels, mask):
    loss = -jnp.log(jnp.take_along_axis(probs, labels[:, None], axis=-1)[:, 0] + 1e-12)
    top1, top5 = topk_errors(probs, labels)
    return {"loss": (loss * mask).sum(), "top1_error": (top1 * mask).sum(),
            "top5_error": (top5 * mask).sum(), "count": mask.sum()}

  def eval_step(params, batch, mean):
    out = predict(params, batch, mean)
    labels, mask = batch["label"], batch["mask"].astype(jnp.float32)
    probs = ({"eval": out["probs"]} if batch["image"].ndim == 4 else
             {"eval_10crop": out["probs"], "eval": out["view_probs"][:, CENTRE_VIEW]})
    totals = {split: sums(p, labels, mask) for split, p in probs.items()}
    return (totals, probs) if with_probs else totals

  return eval_step
