"""The one builder of the train state and its steps (`train_setup.py`): the state at step 0 as
the seed and `init_params` make it, each column's weights and momentum on its 'model' shard,
and the jitted steps, which donate the state and differ only in the metrics they report."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from alexnet_jax import models, optim, steps, train_setup
from alexnet_jax.sharding import make_mesh
from conftest import compiled, leaves_by_path, load_config

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


def _batch(size=32, stored=36, count=8):
  """A batch of `size` crops at random boxes (some mirrored) of `stored`-pixel images, and a
  mean image that varies across them."""
  rng = np.random.default_rng(0)
  at = lambda high: rng.integers(0, high, count)
  boxes = np.stack([at(stored - size + 1), at(stored - size + 1), at(2)], axis=1)
  return ({"image": jnp.asarray(rng.integers(0, 256, (count, size, size, 3)), jnp.uint8),
           "label": jnp.asarray(rng.integers(0, 10, count)),
           "crop": jnp.asarray(boxes, jnp.int32)},
          jnp.asarray(rng.uniform(80.0, 160.0, (stored, stored, 3)), jnp.float32))


def _two_steps(step, state):
  """Two steps from a copy of `state` (the steps donate theirs)."""
  state = jax.tree.map(jnp.copy, state)
  batch, mean = _batch()
  rates = optim.every_rate(state["params"], 0.01)
  for i in range(2):
    state, _ = step(state, batch, jax.random.key(i), mean, rates)
  return state


def test_steps_built_before_serve_another_seed_and_only_the_same_network_and_optimizer(caplog):
  """Another seed of the same network, optimizer and input scaling on the same mesh (an
  ablation study's seeds, its learning rates) traces and compiles nothing; with another
  optimizer and input scaling, two steps are those of the config's own optimizer and step
  assembled here. Mutations: the cache dropped (compiles); the momentum, the weight decay,
  the decayed parameters, the pixel scale or the centre mean left out of its key (the base
  config's value in its place) -> red."""
  mesh = make_mesh(data=1, model=1)
  base = load_config("tiny")
  first = train_setup.setup_train(base, mesh)
  _two_steps(first.train_step, first.state)
  base.seed = 1
  with compiled(caplog) as programs:
    again = train_setup.setup_train(base, mesh)
    _two_steps(again.train_step, again.state)
  assert programs == []
  assert not np.array_equal(again.state["params"]["conv1"]["kernel"],
                            first.state["params"]["conv1"]["kernel"])

  config = load_config("tiny", overrides=(
      "optimizer.momentum=0.5", "optimizer.weight_decay=0.01", "optimizer.decay_on=kernels",
      "data.pixel_scale=0.5", "data.mean_patch=centre"))
  setup = train_setup.setup_train(config, mesh)
  opt, data = config.optimizer, config.data
  tx = optim.paper_sgd(momentum=opt.momentum, weight_decay=opt.weight_decay,
                       decay_mask=optim.decay_mask(setup.state["params"], opt.decay_on))
  own = jax.jit(steps.make_train_step(setup.graphdef, tx, with_stats=False,
                                      pixel_scale=data.pixel_scale,
                                      centre_mean=data.mean_patch == "centre"))
  jax.tree.map(np.testing.assert_array_equal, _two_steps(setup.train_step, setup.state),
               _two_steps(own, setup.state))


def test_the_steps_donate_the_state_and_differ_only_in_the_metrics_they_report(tiny_config):
  """`train_step` (without the per-layer statistics) and `train_step_with_stats` update alike;
  `step_norms=False` drops the global norms from the plain step only. Mutations: the two steps
  swapped; `step_norms or with_stats` -> `and`; `donate_argnums` dropped -> red."""
  mesh = make_mesh(**MESH)
  batch, mean = _batch()
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
