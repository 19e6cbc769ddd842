"""The device steps (`steps.py`): §3.5's objective, the multinomial logistic regression, as the
training step computes and minimises it."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from alexnet_jax import models, optim, steps
from alexnet_jax.data.normalize import normalize


def _numpy_cross_entropy(logits, labels):
  """−log softmax(logits)[label] in float64, the log-sum-exp taken stably."""
  z = np.asarray(logits, np.float64)
  z = z - z.max(axis=-1, keepdims=True)
  log_probs = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
  return -log_probs[np.arange(len(labels)), labels]


def _step_inputs(config, rng, rate: float):
  """(graphdef, params, the paper's SGD, a batch of 4 random 32x32 crops, every ε = `rate`)."""
  graphdef, state = nnx.split(models.create_model(config.model))
  params = nnx.to_pure_dict(state)
  batch = {"image": jnp.asarray(rng.integers(0, 256, (4, 32, 32, 3)), jnp.uint8),
           "label": jnp.asarray([1, 4, 7, 9]), "crop": jnp.zeros((4, 3), jnp.int32)}
  return graphdef, params, optim.paper_sgd(), batch, optim.every_rate(params, rate)


def test_the_training_loss_is_the_mean_negative_log_probability_of_the_label(tiny_config):
  rng = np.random.default_rng(0)
  logits = rng.normal(scale=5.0, size=(6, 10)).astype(np.float32)
  labels = rng.integers(0, 10, 6)
  np.testing.assert_allclose(steps.cross_entropy(jnp.asarray(logits), jnp.asarray(labels)),
                             _numpy_cross_entropy(logits, labels), rtol=1e-5, atol=1e-5)
  graphdef, params, tx, batch, rates = _step_inputs(tiny_config, rng, rate=0.0)
  mean = jnp.full((32, 32, 3), 120.0)
  key = jax.random.key(3)
  state = {"step": jnp.int32(0), "params": params, "opt_state": tx.init(params)}
  step = jax.jit(steps.make_train_step(graphdef, tx, with_stats=False, pixel_scale=1 / 64))
  new_state, metrics = step(state, batch, key, mean, rates)
  assert int(new_state["step"]) == 1
  # The same forward pass (the step's dropout key) and the loss computed in NumPy.
  logits = nnx.merge(graphdef, params)(normalize(batch, mean, 1 / 64),
                                       dropout_key=jax.random.fold_in(key, 0))
  want = _numpy_cross_entropy(np.asarray(logits), np.asarray(batch["label"])).mean()
  np.testing.assert_allclose(float(metrics["loss"]), want, rtol=1e-5)


def test_the_step_without_its_norms_updates_the_same_and_reports_no_norms(tiny_config):
  """The lever `benchmark levers` times: only the metrics differ. Mutation: the norms left in
  -> red."""
  graphdef, params, tx, batch, rates = _step_inputs(tiny_config, np.random.default_rng(1),
                                                    rate=0.01)
  out = {}
  for norms in (True, False):
    state = {"step": jnp.int32(0), "params": params, "opt_state": tx.init(params)}
    step = jax.jit(steps.make_train_step(graphdef, tx, with_stats=False, pixel_scale=1 / 64,
                                         with_norms=norms))
    out[norms] = step(state, batch, jax.random.key(0), jnp.full((32, 32, 3), 120.0), rates)
  (with_state, with_metrics), (without_state, without_metrics) = out[True], out[False]
  assert {"grad_norm", "param_norm"} <= set(with_metrics)
  assert set(without_metrics) == set(with_metrics) - {"grad_norm", "param_norm"}
  jax.tree.map(np.testing.assert_array_equal, without_state, with_state)


def test_top_1_and_top_5_errors_count_the_label_among_the_highest_scores():
  """§6's error rates: the label the highest score (top-1) or among the five highest (top-5).
  Mutation: the label looked for among the four highest -> red."""
  scores = jnp.tile(jnp.arange(10.0), (4, 1))  # class 9 scores highest, class 0 lowest
  top1, top5 = steps.topk_errors(scores, jnp.asarray([9, 5, 4, 0]))  # ranks 1, 5, 6, 10
  assert top1.tolist() == [0.0, 1.0, 1.0, 1.0] and top5.tolist() == [0.0, 0.0, 1.0, 1.0]
  top1, top5 = steps.topk_errors(jnp.asarray([[0.1, 0.7, 0.2]]), jnp.asarray([0]))
  assert top1.tolist() == [1.0] and top5.tolist() == [0.0]  # three classes: all in the top 5


def _numpy_sums(probs, labels, mask):
  """The evaluation's sums in float64: −log p(label), top-1 and top-5 errors, examples."""
  p = np.asarray(probs, np.float64)[mask]
  labels = np.asarray(labels)[mask]
  ranks = (p > p[np.arange(len(labels)), labels][:, None]).sum(-1)  # classes scored higher
  return {"loss": -np.log(p[np.arange(len(labels)), labels]).sum(),
          "top1_error": (ranks >= 1).sum(), "top5_error": (ranks >= 5).sum(),
          "count": len(labels)}


def test_the_evaluation_scores_the_centre_view_and_the_ten_views_average(tiny_config):
  """§4.1's test: a ten-crop batch is scored on the softmax averaged over its ten views
  ('eval_10crop') and on its centre view alone ('eval'), a centre-crop batch on its one view;
  masked examples are left out. The model's own logits, the softmax and sums in NumPy.
  Mutations: the label's probability taken along the batch axis, the centre view the fifth
  mirrored one, the average over the classes, a ten-crop batch taken as centre crops -> red."""
  tiny_config.model.init_std.update({k: 0.05 for k in tiny_config.model.init_std})
  graphdef, state = nnx.split(models.create_model(tiny_config.model, seed=2))  # views differ
  params = nnx.to_pure_dict(state)
  rng = np.random.default_rng(5)
  b = 4
  views = rng.integers(0, 256, (b, 10, 32, 32, 3), dtype=np.uint8)
  boxes = np.tile(np.array([[0, 0, 0]] * 5 + [[0, 0, 1]] * 5, np.int32), (b, 1, 1))
  labels, mask = np.array([1, 4, 7, 9], np.int32), np.array([True, True, True, False])
  mean = jnp.zeros((32, 32, 3))
  seen = np.concatenate([views[:, :5], views[:, 5:, :, ::-1]], axis=1)  # the mirrored five
  logits = np.asarray(nnx.merge(graphdef, params)(
      jnp.asarray(seen.reshape(-1, 32, 32, 3), jnp.float32)), np.float64)
  z = np.exp(logits - logits.max(-1, keepdims=True))
  probs = (z / z.sum(-1, keepdims=True)).reshape(b, 10, -1)
  step = jax.jit(steps.make_eval_step(graphdef, pixel_scale=1.0))
  ten = step(params, {"image": views, "crop": boxes, "label": labels, "mask": mask}, mean)
  centre = step(params, {"image": views[:, 4], "crop": boxes[:, 4], "label": labels,
                         "mask": mask}, mean)
  want = {"eval_10crop": _numpy_sums(probs.mean(1), labels, mask),
          "eval": _numpy_sums(probs[:, 4], labels, mask)}  # crop_boxes' fifth: the centre
  assert set(ten) == set(want) and set(centre) == {"eval"}
  for split, sums in [*ten.items(), ("eval", centre["eval"])]:
    for name, value in want[split].items():
      np.testing.assert_allclose(float(sums[name]), value, rtol=1e-4, err_msg=f"{split} {name}")
  assert want["eval_10crop"]["loss"] != want["eval"]["loss"]

