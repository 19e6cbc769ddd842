"""The paper's update rule (§5) against NumPy, and how it differs from optax.sgd."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from alexnet_jax import optim


def _problem(seed=0):
  rng = np.random.default_rng(seed)
  a = rng.normal(size=(6, 6))
  return {"w": a @ a.T / 6 + np.eye(6), "b": rng.normal(size=6), "w0": rng.normal(size=6)}


def _grad(p, w):
  return p["w"] @ w - p["b"]  # gradient of ½wᵀAw − bᵀw


def _lrs(steps=24, drops=(8, 16), base=0.05):
  return [base * 0.1 ** sum(i >= d for d in drops) for i in range(steps)]


def test_matches_the_two_equations_through_two_drops():
  p = _problem()
  lrs, wd = _lrs(), 5e-4
  # NumPy: v ← 0.9 v − wd·ε·w − ε·g ; w ← w + v (float64)
  w, v, expected = p["w0"].copy(), np.zeros(6), []
  for eps in lrs:
    v = 0.9 * v - wd * eps * w - eps * _grad(p, w)
    w = w + v
    expected.append(w.copy())

  tx = optim.paper_sgd(lrs[0], momentum=0.9, weight_decay=wd)
  params = {"kernel": jnp.asarray(p["w0"], jnp.float32)}
  state = tx.init(params)
  update = jax.jit(tx.update)
  compiled = []
  for eps, want in zip(lrs, expected):
    state = optim.set_learning_rate(state, eps)
    g = {"kernel": jnp.asarray(_grad(p, np.asarray(params["kernel"], np.float64)), jnp.float32)}
    updates, state = update(g, state, params)
    params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(params["kernel"], want, rtol=2e-5, atol=2e-6)
    compiled.append(update._cache_size())
  assert optim.get_learning_rate(state) == np.float32(lrs[-1])
  # The first call sees init's uncommitted arrays; from then on changing ε never recompiles.
  assert compiled[1] == compiled[-1]


def _run(tx, p, lrs, set_lr):
  params = {"kernel": jnp.asarray(p["w0"], jnp.float32)}
  state, out = tx.init(params), []
  for eps in lrs:
    state = set_lr(state, eps)
    g = {"kernel": jnp.asarray(_grad(p, np.asarray(params["kernel"], np.float64)), jnp.float32)}
    updates, state = tx.update(g, state, params)
    params = optax.apply_updates(params, updates)
    out.append(np.asarray(params["kernel"]))
  return out


def test_differs_from_optax_sgd_right_after_a_drop_and_agrees_at_constant_lr():
  p = _problem(1)
  lrs = _lrs(steps=12, drops=(6,))
  ours = _run(optim.paper_sgd(lrs[0], weight_decay=0.0), p, lrs, optim.set_learning_rate)
  sgd = _run(optax.inject_hyperparams(optax.sgd)(learning_rate=lrs[0], momentum=0.9), p, lrs,
             lambda s, eps: optax.tree_utils.tree_set(s, learning_rate=jnp.float32(eps)))
  for i in range(6):  # constant ε: the two forms are the same algorithm
    np.testing.assert_allclose(ours[i], sgd[i], rtol=1e-5, atol=1e-6)
  # First step after ÷10: optax.sgd shrinks the whole velocity at once, the paper's does not.
  assert not np.allclose(ours[6], sgd[6], rtol=1e-3, atol=1e-4)


def test_decay_mask_and_bias_lr_multiplier():
  params = {"fc": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}
  zero = jax.tree.map(jnp.zeros_like, params)
  for decay_on, bias_decays in (("all", True), ("kernels", False)):
    mask, mult = optim.parameter_masks(params, decay_on, 2.0)
    tx = optim.paper_sgd(0.1, weight_decay=0.5, decay_mask=mask, lr_multipliers=mult)
    updates, _ = tx.update(zero, tx.init(params), params)
    np.testing.assert_allclose(updates["fc"]["kernel"], -0.1 * 0.5)  # −ε·wd·w
    np.testing.assert_allclose(updates["fc"]["bias"], -2 * 0.1 * 0.5 if bias_decays else 0.0)
  grads = jax.tree.map(jnp.ones_like, params)
  mask, mult = optim.parameter_masks(params, "kernels", 2.0)
  tx = optim.paper_sgd(0.1, weight_decay=0.0, lr_multipliers=mult)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["fc"]["bias"], -0.2)  # epsB = 2 × epsW
  np.testing.assert_allclose(updates["fc"]["kernel"], -0.1)
