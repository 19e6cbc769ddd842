"""The paper's SGD update (§5) as an Optax chain, with each parameter's ε settable from the host.

    v ← 0.9·v − 0.0005·ε·w − ε·∂L/∂w
    w ← w + v

The learning rate sits inside the momentum: after ε is divided by 10 the velocity built at the
old rate still decays at 0.9 per step. `optax.sgd(lr, momentum)` computes v ← 0.9·v + g,
w ← w − ε·v instead, which rescales the whole velocity at once when ε changes.

Each parameter array has its own ε, an argument of the update (`learning_rates`, arrays the
host changes without recompiling: `schedule.LearningRateSchedule.rates_on`): the same for all
in the paper's text, ε for weights and another for biases in the 2012 code's runs and Caffe's
solver, per layer in the 2012 code's recorded schedules. A parameter whose ε is 0 is frozen as
cuda-convnet freezes it (its update is skipped, `Weights::update` with `epsW = 0`): neither it
nor its velocity changes.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from alexnet_jax.errors import UserError

DECAY_ON = ("all", "kernels")


def validate(optimizer_config) -> None:
  """One-line errors for optimizer settings that cannot train."""
  opt = optimizer_config
  if not opt.learning_rate > 0 or not math.isfinite(opt.learning_rate):
    raise UserError(f"optimizer.learning_rate must be positive, got {opt.learning_rate}")
  if not 0 <= opt.momentum < 1:  # at 1 or above the velocity never decays
    raise UserError(f"optimizer.momentum must be in [0, 1), got {opt.momentum}")
  if not (opt.weight_decay >= 0 and math.isfinite(opt.weight_decay)):
    raise UserError(f"optimizer.weight_decay must be >= 0, got {opt.weight_decay}")
  if opt.decay_on not in DECAY_ON:
    raise UserError(f"optimizer.decay_on must be one of {', '.join(DECAY_ON)}, got "
                    f"{opt.decay_on!r}")
  if not (math.isfinite(opt.bias_lr_multiplier) and opt.bias_lr_multiplier >= 0):
    raise UserError(f"optimizer.bias_lr_multiplier must be a number >= 0, got "
                    f"{opt.bias_lr_multiplier}")


def rate_key(path) -> str:
  """'conv1/kernel': the name of a parameter's ε among the update's `learning_rates` (a flat
  dict, not params-shaped, so that it stays replicated beside the sharded velocity)."""
  return jax.tree_util.keystr(path, simple=True, separator="/")


def every_rate(params, rate: float) -> dict:
  """`learning_rates` with every parameter's ε = `rate` (a timed or a tested step's)."""
  return {rate_key(p): jnp.float32(rate) for p, _ in jax.tree_util.tree_leaves_with_path(params)}


class MomentumState(NamedTuple):
  velocity: Any  # like params


def paper_sgd(*, momentum: float = 0.9, weight_decay: float = 5e-4,
              decay_mask: Any = None) -> optax.GradientTransformationExtraArgs:
  """v ← momentum·v − ε·(weight_decay·w + g) per parameter; apply with `optax.apply_updates`.
  Its `update` takes the parameters' ε as `learning_rates={'layer/kernel': ε, ...}` (`rate_key`;
  arrays, so that a change recompiles nothing).

  Args:
    decay_mask: pytree of bools selecting the parameters that decay; None decays all of them.
  """
  return optax.chain(optax.add_decayed_weights(weight_decay, mask=decay_mask),
                     _momentum(momentum))


def _momentum(momentum: float) -> optax.GradientTransformationExtraArgs:
  def init(params):
    return MomentumState(jax.tree.map(jnp.zeros_like, params))

  def update(updates, state, params=None, *, learning_rates):
    del params
    paths, treedef = jax.tree_util.tree_flatten_with_path(updates)
    velocity = treedef.flatten_up_to(state.velocity)
    new_updates, new_velocity = [], []
    for (path, g), v in zip(paths, velocity):
      rate = jnp.asarray(learning_rates[rate_key(path)]).astype(g.dtype)
      step = momentum * v + -rate * g  # optax.trace of optax.scale(-ε): the same arithmetic
      frozen = rate == 0
      new_updates.append(jnp.where(frozen, jnp.zeros_like(g), step))
      new_velocity.append(jnp.where(frozen, v, step))
    return treedef.unflatten(new_updates), MomentumState(treedef.unflatten(new_velocity))

  return optax.GradientTransformationExtraArgs(init, update)


def decay_mask(params, decay_on: str):
  """The parameters that decay: all of them ('all', the paper's rule written for every
  parameter) or the kernels only ('kernels': the 2012 code and Caffe, no decay on biases);
  `decay_on` was checked with the config (`validate`)."""
  if decay_on == "all":
    return None
  return jax.tree_util.tree_map_with_path(
      lambda path, _: getattr(path[-1], "key", None) != "bias", params)
