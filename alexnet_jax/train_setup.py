"""The one builder of the train state and its jitted steps: config + mesh → graphdef, state,
shardings, steps (the shape of flax's gemma `setup_initial_state` and MaxText's
`setup_train_loop`). Training, the benchmark and the tests build from here, so a benchmark times
exactly the step, optimizer and mesh that training runs.

The state is a plain dict {'step', 'params', 'opt_state'} (params as nested dicts {layer:
{'kernel', 'bias'}}): Orbax saves and restores it without alexnet_jax.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from alexnet_jax import models, optim
from alexnet_jax.sharding import DATA
from alexnet_jax.steps import make_eval_step, make_train_step


@dataclasses.dataclass
class TrainSetup:
  mesh: jax.sharding.Mesh
  graphdef: nnx.GraphDef
  tx: optax.GradientTransformation
  state: dict  # {'step', 'params', 'opt_state'}, placed on the mesh
  state_shardings: dict
  batch_sharding: NamedSharding  # the batch axis over 'data'
  replicated: NamedSharding
  # (state, batch, rng, mean, rates) -> (state, metrics); state donated
  train_step: Callable
  train_step_with_stats: Callable  # the same, with per-layer norms in the metrics
  eval_step: Callable  # (params, batch, mean) -> {split: sums}


def setup_train(config, mesh: jax.sharding.Mesh, *,
                init_params: Callable[[dict], dict] | None = None,
                step_norms: bool = True) -> TrainSetup:
  """The model of `config.model` initialised from `config.seed` on `mesh` (`init_params` may
  replace layers: fine-tuning), the optimizer of `config.optimizer`, the state at step 0 with
  every array placed (each column's weights and optimizer slots on its 'model' shard), and the
  jitted steps with their shardings. `step_norms` False: the plain training step without the
  global norms (`steps.make_train_step`; a lever the benchmark times, not training's).

  The jitted steps are those of an earlier call in this process with the same network,
  parameters' shapes and shardings, optimizer and input scaling: another seed or learning
  rate (an ablation study's runs) traces and compiles nothing again."""
  model = models.create_model(config.model, mesh=mesh, seed=config.seed)
  graphdef, param_state = nnx.split(model)
  params = nnx.to_pure_dict(param_state)
  if init_params is not None:
    params = init_params(params)
  placed = jax.tree.map(lambda p, s: jax.ShapeDtypeStruct(p.shape, p.dtype, sharding=s), params,
                        nnx.to_pure_dict(nnx.get_named_sharding(param_state, mesh)))
  leaves, treedef = jax.tree.flatten(placed)
  opt = config.optimizer
  setup, init_state = _jitted(graphdef, treedef, tuple(leaves), mesh,
                              (float(opt.momentum), float(opt.weight_decay), opt.decay_on),
                              float(config.data.pixel_scale), config.data.mean_patch == "centre",
                              step_norms)
  return dataclasses.replace(setup, state=init_state(params))


@functools.lru_cache(maxsize=8)
def _jitted(graphdef, treedef, placed: tuple, mesh: jax.sharding.Mesh, optimizer: tuple,
            pixel_scale: float, centre_mean: bool, step_norms: bool):
  """(a TrainSetup but for its state, the jitted state at step 0 from the parameters), for
  the parameters `placed` (ShapeDtypeStructs with their shardings) and §5's SGD
  (`optim.paper_sgd`) with the config's momentum, weight decay and parameters that decay;
  every parameter's ε is the schedule's, an argument of each step
  (`schedule.LearningRateSchedule.rates_on`)."""
  momentum, weight_decay, decay_on = optimizer
  abstract = jax.tree.unflatten(treedef, placed)
  param_shardings = jax.tree.map(lambda a: a.sharding, abstract)
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P(DATA))
  tx = optim.paper_sgd(momentum=momentum, weight_decay=weight_decay,
                       decay_mask=optim.decay_mask(abstract, decay_on))
  opt_shardings = optax.tree_utils.tree_map_params(
      tx, lambda _, s: s, jax.eval_shape(tx.init, abstract), param_shardings,
      transform_non_params=lambda _: replicated)
  state_shardings = {"step": replicated, "params": param_shardings, "opt_state": opt_shardings}
  init_state = jax.jit(lambda p: {"step": jnp.zeros((), jnp.int32), "params": p,
                                  "opt_state": tx.init(p)}, out_shardings=state_shardings)

  def jit_train(with_stats: bool):
    step = make_train_step(graphdef, tx, with_stats=with_stats, pixel_scale=pixel_scale,
                           centre_mean=centre_mean, with_norms=step_norms or with_stats)
    return jax.jit(step, in_shardings=(state_shardings, batch_sharding, replicated, replicated,
                                       replicated),
                   out_shardings=(state_shardings, replicated), donate_argnums=0)

  eval_step = jax.jit(make_eval_step(graphdef, pixel_scale=pixel_scale, centre_mean=centre_mean),
                      in_shardings=(param_shardings, batch_sharding, replicated),
                      out_shardings=replicated)
  return TrainSetup(mesh, graphdef, tx, None, state_shardings, batch_sharding, replicated,
                    jit_train(False), jit_train(True), eval_step), init_state
