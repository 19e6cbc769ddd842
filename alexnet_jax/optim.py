"""The paper's SGD update (§5) as an Optax chain, with ε settable from the host.

    v ← 0.9·v − 0.0005·ε·w − ε·∂L/∂w
    w ← w + v

The learning rate sits inside the momentum: after ε is divided by 10 the velocity built at the
old rate still decays at 0.9 per step. `optax.sgd(lr, momentum)` computes v ← 0.9·v + g,
w ← w − ε·v instead, which rescales the whole velocity at once when ε changes.
"""

from __future__ import annotations

import math
from typing import Any

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
  if not (opt.momentum >= 0 and opt.weight_decay >= 0):
    raise UserError(f"optimizer.momentum ({opt.momentum}) and optimizer.weight_decay "
                    f"({opt.weight_decay}) must be >= 0")
  if opt.decay_on not in DECAY_ON:
    raise UserError(f"optimizer.decay_on must be one of {', '.join(DECAY_ON)}, got "
                    f"{opt.decay_on!r}")
  if not opt.bias_lr_multiplier >= 0:
    raise UserError(f"optimizer.bias_lr_multiplier must be >= 0, got {opt.bias_lr_multiplier}")


def paper_sgd(
    learning_rate: float,
    *,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    decay_mask: Any = None,
    lr_multipliers: Any = None,
) -> optax.GradientTransformation:
  """v ← momentum·v − ε·(weight_decay·w + g) per parameter; apply with `optax.apply_updates`.

  Args:
    learning_rate: initial ε; change it with `set_learning_rate` (no recompilation).
    decay_mask: pytree of bools (or a callable params -> pytree) selecting the parameters that
      decay; None decays all of them.
    lr_multipliers: pytree of floats (or a callable params -> pytree) scaling ε per parameter,
      e.g. the 2012 code's 2x for biases; None means 1 everywhere.
  """
  steps = [optax.add_decayed_weights(weight_decay, mask=decay_mask)]
  if lr_multipliers is not None:
    steps.append(_scale_per_parameter(lr_multipliers))
  steps += [
      optax.inject_hyperparams(optax.scale_by_learning_rate)(
          learning_rate=jnp.asarray(learning_rate, jnp.float32)),  # strong dtype: no retrace
      optax.trace(decay=momentum, nesterov=False),
  ]
  return optax.chain(*steps)


def _scale_per_parameter(multipliers) -> optax.GradientTransformation:
  """Multiplies each parameter's update by a constant from a pytree (or params -> pytree)."""

  def scale(updates, params):
    tree = multipliers(params) if callable(multipliers) else multipliers
    return jax.tree.map(lambda u, m: u * jnp.asarray(m, u.dtype), updates, tree)

  return optax.stateless(scale)


def set_learning_rate(opt_state, learning_rate: float):
  """A copy of `opt_state` whose ε is `learning_rate` (same dtype and sharding: no recompile)."""
  old = optax.tree_utils.tree_get(opt_state, "learning_rate")
  new = jnp.asarray(learning_rate, dtype=old.dtype)
  if isinstance(old, jax.Array):
    new = jax.device_put(new, old.sharding)
  return optax.tree_utils.tree_set(opt_state, learning_rate=new)


def get_learning_rate(opt_state) -> float:
  return float(optax.tree_utils.tree_get(opt_state, "learning_rate"))


def parameter_masks(params, decay_on: str, bias_lr_multiplier: float
                    ) -> tuple[Any, Any]:
  """(decay_mask, lr_multipliers) for a params pytree whose leaves are named kernel / bias.

  decay_on: 'all' (the paper's rule written for every parameter) or 'kernels' (2012 code and
  Caffe: no decay on biases).
  """
  if decay_on not in DECAY_ON:
    raise UserError(f"optimizer.decay_on must be one of {', '.join(DECAY_ON)}, got "
                    f"{decay_on!r}")
  is_bias = jax.tree_util.tree_map_with_path(
      lambda path, _: getattr(path[-1], "key", None) == "bias", params)
  decay_mask = None if decay_on == "all" else jax.tree.map(lambda b: not b, is_bias)
  multipliers = None
  if bias_lr_multiplier != 1.0:
    multipliers = jax.tree.map(lambda b: bias_lr_multiplier if b else 1.0, is_bias)
  return decay_mask, multipliers
