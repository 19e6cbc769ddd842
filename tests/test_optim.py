"""The paper's update rule (§5) against NumPy, per-parameter ε, cuda-convnet's frozen layers,
and how it differs from optax.sgd."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from alexnet_jax import optim


def _problem(seed=0):
  rng = np.random.default_rng(seed)
  a = rng.normal(size=(6, 6))
  return {"w": a @ a.T / 6 + np.eye(6), "b": rng.normal(size=6), "w0": rng.normal(size=6)}


def _grad(p, w):
  return p["w"] @ w - p["b"]  # gradient of ½wᵀAw − bᵀw


def _lrs(steps=24, drops=(8, 16), base=0.05):
  return [base * 0.1 ** sum(i >= d for d in drops) for i in range(steps)]


def _rates(eps):
  return {"kernel": jnp.float32(eps)}


def test_matches_the_two_equations_through_two_drops():
  p = _problem()
  lrs, wd = _lrs(), 5e-4
  # NumPy: v ← 0.9 v − wd·ε·w − ε·g ; w ← w + v (float64)
  w, v, expected = p["w0"].copy(), np.zeros(6), []
  for eps in lrs:
    v = 0.9 * v - wd * eps * w - eps * _grad(p, w)
    w = w + v
    expected.append(w.copy())

  tx = optim.paper_sgd(momentum=0.9, weight_decay=wd)
  params = {"kernel": jnp.asarray(p["w0"], jnp.float32)}
  state = tx.init(params)
  update = jax.jit(tx.update)
  compiled = []
  for eps, want in zip(lrs, expected):
    g = {"kernel": jnp.asarray(_grad(p, np.asarray(params["kernel"], np.float64)), jnp.float32)}
    updates, state = update(g, state, params, learning_rates=_rates(eps))
    params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(params["kernel"], want, rtol=2e-5, atol=2e-6)
    compiled.append(update._cache_size())
  assert compiled[0] == compiled[-1]  # changing ε never recompiles


def _run(update, init, p, lrs):
  params = {"kernel": jnp.asarray(p["w0"], jnp.float32)}
  state, out = init(params), []
  for eps in lrs:
    g = {"kernel": jnp.asarray(_grad(p, np.asarray(params["kernel"], np.float64)), jnp.float32)}
    updates, state = update(g, state, params, eps)
    params = optax.apply_updates(params, updates)
    out.append(np.asarray(params["kernel"]))
  return out


def test_differs_from_optax_sgd_right_after_a_drop_and_agrees_at_constant_lr():
  p = _problem(1)
  lrs = _lrs(steps=12, drops=(6,))
  tx = optim.paper_sgd(weight_decay=0.0)
  ours = _run(lambda g, s, w, eps: tx.update(g, s, w, learning_rates=_rates(eps)), tx.init, p,
              lrs)
  sgd_tx = optax.inject_hyperparams(optax.sgd)(learning_rate=lrs[0], momentum=0.9)

  def sgd_update(g, s, w, eps):
    return sgd_tx.update(g, optax.tree_utils.tree_set(s, learning_rate=jnp.float32(eps)), w)

  sgd = _run(sgd_update, sgd_tx.init, p, lrs)
  for i in range(6):  # constant ε: the two forms are the same algorithm
    np.testing.assert_allclose(ours[i], sgd[i], rtol=1e-5, atol=1e-6)
  # First step after ÷10: optax.sgd shrinks the whole velocity at once, the paper's does not.
  assert not np.allclose(ours[6], sgd[6], rtol=1e-3, atol=1e-4)


def test_each_parameter_has_its_own_rate_and_decay_stays_off_the_biases():
  params = {"fc": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}
  zero = jax.tree.map(jnp.zeros_like, params)
  rates = {"fc/kernel": jnp.float32(0.1), "fc/bias": jnp.float32(0.2)}
  for decay_on, bias_decays in (("all", True), ("kernels", False)):
    tx = optim.paper_sgd(weight_decay=0.5, decay_mask=optim.decay_mask(params, decay_on))
    updates, _ = tx.update(zero, tx.init(params), params, learning_rates=rates)
    np.testing.assert_allclose(updates["fc"]["kernel"], -0.1 * 0.5)  # −ε·wd·w
    np.testing.assert_allclose(updates["fc"]["bias"], -0.2 * 0.5 if bias_decays else 0.0)
  grads = jax.tree.map(jnp.ones_like, params)
  tx = optim.paper_sgd(weight_decay=0.0)
  updates, _ = tx.update(grads, tx.init(params), params, learning_rates=rates)
  np.testing.assert_allclose(updates["fc"]["bias"], -0.2)  # the 2012 code's epsB = 0.02
  np.testing.assert_allclose(updates["fc"]["kernel"], -0.1)


def test_every_rate_names_each_parameters_rate_as_the_update_reads_it():
  """Mutations: a rate doubled; the keys joined with '.' -> red."""
  params = {"conv1": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}, "fc8": {"bias": 1.0}}
  rates = optim.every_rate(params, 0.01)
  assert rates == {"conv1/bias": np.float32(0.01), "conv1/kernel": np.float32(0.01),
                   "fc8/bias": np.float32(0.01)}
  assert {r.dtype for r in rates.values()} == {np.dtype(np.float32)}


def test_a_parameter_with_rate_zero_is_frozen_velocity_and_all():
  """cuda-convnet skips the update of a layer whose epsW is 0 (`Weights::update`): the weights
  stay as they are and so does the velocity, which the next non-zero ε continues from."""
  params = {"conv1": {"kernel": jnp.ones(3)}, "fc8": {"kernel": jnp.ones(3)}}
  grads = jax.tree.map(jnp.ones_like, params)
  tx = optim.paper_sgd(weight_decay=0.0)
  state = tx.init(params)
  moving = {"conv1/kernel": jnp.float32(0.1), "fc8/kernel": jnp.float32(0.1)}
  frozen = {"conv1/kernel": jnp.float32(0.0), "fc8/kernel": jnp.float32(0.1)}
  _, state = tx.update(grads, state, params, learning_rates=moving)
  velocity = np.asarray(state[1].velocity["conv1"]["kernel"])
  np.testing.assert_allclose(velocity, -0.1)
  for _ in range(3):
    updates, state = tx.update(grads, state, params, learning_rates=frozen)
    np.testing.assert_array_equal(updates["conv1"]["kernel"], 0.0)
    np.testing.assert_array_equal(state[1].velocity["conv1"]["kernel"], velocity)
  assert float(updates["fc8"]["kernel"][0]) < -0.1  # the other layer keeps its momentum
  updates, _ = tx.update(grads, state, params, learning_rates=moving)
  np.testing.assert_allclose(updates["conv1"]["kernel"], 0.9 * -0.1 - 0.1)  # continues


@pytest.mark.parametrize("field,value,message", [
    ("momentum", 1.5, r"momentum must be in \[0, 1\), got 1.5"),
    ("momentum", 1.0, r"momentum must be in \[0, 1\)"),
    ("momentum", -0.1, r"momentum must be in \[0, 1\)"),
    ("weight_decay", float("inf"), "weight_decay must be >= 0"),
])
def test_optimizer_settings_that_cannot_train_are_one_line(field, value, message):
  """momentum=1.5 was accepted (its velocity grows without bound). Mutation: the upper bound
  dropped -> red."""
  from conftest import load_config

  from alexnet_jax import optim
  from alexnet_jax.errors import UserError

  config = load_config("tiny")
  config.optimizer[field] = value
  with pytest.raises(UserError, match=message):
    optim.validate(config.optimizer)
