"""The one builder of the train state and its steps (`train_setup.py`): the state at step 0 as
the seed and `init_params` make it, each column's weights and momentum on its 'model' shard,
and the jitted steps, which donate the state and differ only in the metrics they report."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from alexnet_jax import models, optim, train_setup
from alexnet_jax.sharding import make_mesh
from conftest import leaves_by_path

MESH = dict(data=4, model=2)


def test_the_state_at_step_0_holds_the_seeds_weights_and_zero_momentum_each_on_its_shard(
    tiny_config):
  """The momentum of each parameter lives where the parameter does: a column's on its 'model'
  shard, not replicated on both. Mutations: the optimizer slots' shardings replicated; the
  initial step 1; `init_params` not applied -> red."""
  tiny_config.seed = 3
  mesh = make_mesh(**MESH)
  sevens = lambda p: {**p, "fc8": {**p["fc8"], "bias": jnp.full_like(p["fc8"]["bias"], 7.0)}}
  setup = train_setup.setup_train(tiny_config, mesh, init_params=sevens)
  state = setup.state
  assert state["step"].dtype == jnp.int32 and int(state["step"]) == 0
  assert state["step"].sharding.is_fully_replicated
  seeded = nnx.to_pure_dict(nnx.split(models.create_model(tiny_config.model, seed=3))[1])
  np.testing.assert_array_equal(state["params"]["conv1"]["kernel"], seeded["conv1"]["kernel"])
  np.testing.assert_array_equal(state["params"]["fc8"]["bias"], 7.0)
  params = leaves_by_path(state["params"])
  velocity = {path.split(".velocity", 1)[1]: leaf
              for path, leaf in leaves_by_path(state["opt_state"]).items() if ".velocity" in path}
  shardings = leaves_by_path(setup.state_shardings["params"])
  assert velocity.keys() == params.keys() == shardings.keys()
  for path, leaf in velocity.items():
    assert leaf.sharding == params[path].sharding == shardings[path], path
    assert not np.asarray(leaf).any(), path
  assert params["['conv2']['kernel']"].sharding.spec[0] == "model"
  assert velocity["['conv2']['kernel']"].sharding.spec[0] == "model"


def test_the_steps_donate_the_state_and_differ_only_in_the_metrics_they_report(tiny_config):
  """`train_step` (without the per-layer statistics) and `train_step_with_stats` update alike;
  `step_norms=False` drops the global norms from the plain step only. Mutations: the two steps
  swapped; `step_norms or with_stats` -> `and`; `donate_argnums` dropped -> red."""
  mesh = make_mesh(**MESH)
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.integers(0, 256, (8, 32, 32, 3)), jnp.uint8),
           "label": jnp.asarray(rng.integers(0, 10, 8)), "crop": jnp.zeros((8, 3), jnp.int32)}
  mean = jnp.full((32, 32, 3), 120.0)
  out = {}
  for norms in (True, False):
    setup = train_setup.setup_train(tiny_config, mesh, step_norms=norms)
    rates = optim.every_rate(setup.state["params"], 0.01)
    for name in ("train_step", "train_step_with_stats"):
      state = jax.tree.map(jnp.copy, setup.state)
      kernel = state["params"]["conv1"]["kernel"]
      new, metrics = getattr(setup, name)(state, batch, jax.random.key(1), mean, rates)
      assert kernel.is_deleted(), name  # the state was donated
      out[norms, name] = new, set(metrics)
  plain, stats = out[True, "train_step"][1], out[True, "train_step_with_stats"][1]
  assert {"grad_norm", "param_norm"} <= plain and "grad_norm/conv1" not in plain
  assert {"grad_norm/conv1", "grad_norm/fc8"} <= stats
  assert out[False, "train_step"][1] == plain - {"grad_norm", "param_norm"}
  assert out[False, "train_step_with_stats"][1] == stats
  for key in out:
    jax.tree.map(np.testing.assert_array_equal, out[key][0], out[True, "train_step"][0])
