"""`python -m alexnet_jax.diagnose`: the network at its initialisation on real images, and the
verdict that separates a setting that sits at ln(classes) from one that learns."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from alexnet_jax import diagnose, models, optim, steps
from alexnet_jax.errors import UserError
from conftest import load_config, synthetic_config

FASHION = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
BIASES_OF_ONE = [f"model.init_bias.{n}=1.0" for n in ("conv2", "conv4", "conv5", "fc6", "fc7")]
CODE_STDS = [f"model.init_std.{n}=0.03" for n in ("conv3", "conv4", "conv5")]


def test_the_input_dependent_part_is_the_spread_across_images_over_the_rms():
  """Mutations: the part returned as 1 (RMS over RMS); `rms >= 0` (a dead layer a
  ZeroDivisionError) -> red."""
  rng = np.random.default_rng(0)
  signal = rng.normal(0, 1, (64, 500))
  rms, part = diagnose._input_dependent(3.0 + 0.01 * signal)  # a constant 3 and 1 % of noise
  assert rms == pytest.approx(3.0, rel=1e-3)
  assert part == pytest.approx(0.01 / 3.0, rel=0.05)
  assert diagnose._input_dependent(np.ones((4, 10)))[1] == 0.0
  assert diagnose._input_dependent(np.zeros((4, 10))) == (0.0, 0.0)  # a dead layer (all ReLU off)


def test_the_spread_is_across_the_images_of_each_unit_not_across_the_units():
  """Two images of two units each, worked by hand: unit 0 is 0.1 and 0.3 (variance 0.01),
  unit 1 is 0.2 in both (0), so the spread is sqrt(0.005) and the RMS sqrt(0.045): the part is
  1/3 (across the units of each image it would be 0.05 / sqrt(0.045) = 0.236). As [2, 1, 1, 2]
  maps, it is the same. Mutations: the variance over axis 1; the maps flattened from their
  second axis; `rms > 0` -> `rms > 1` (an RMS below 1 read as a dead layer) -> red. The
  logits' spread is the same function."""
  maps = np.array([[0.1, 0.2], [0.3, 0.2]])
  assert diagnose._spread(maps) == pytest.approx(np.sqrt(0.005))
  for activation in (maps, maps.reshape(2, 1, 1, 2)):
    rms, part = diagnose._input_dependent(activation)
    assert rms == pytest.approx(np.sqrt(0.045)) and part == pytest.approx(1 / 3)


def test_the_images_asked_for_are_at_least_two():
  """Mutation: `images < 2` -> `< 3` (two refused) -> red."""
  config = synthetic_config()  # 40 images of 36 pixels: their mean in a blink
  with pytest.raises(UserError, match="--images must be >= 2"):
    diagnose.diagnose(config, images=1)
  assert diagnose.diagnose(config, images=2).table().startswith("2 images, ")


def test_the_gradients_are_those_of_the_runs_first_step():
  """Each layer's gradient norm is the training step's at step 0 from the run's key (its
  dropout masks in fc6 and fc7), on the same batch. Mutation: the key folded with 1 (the
  second step's masks) -> red."""
  config = synthetic_config()
  result = diagnose.diagnose(config, images=4)
  batch, mean = diagnose._batch(config, 4)
  graphdef, state = nnx.split(models.create_model(config.model, seed=config.seed))
  params, tx = nnx.to_pure_dict(state), optim.paper_sgd()
  step = jax.jit(steps.make_train_step(graphdef, tx, with_stats=True,
                                       pixel_scale=config.data.pixel_scale))
  state = {"step": jnp.int32(0), "params": params, "opt_state": tx.init(params)}
  _, metrics = step(state, jax.tree.map(jnp.asarray, batch), jax.random.key(config.seed),
                    jnp.asarray(mean), optim.every_rate(params, 0.0))
  grads = {r.name: r.grad_norm for r in result.layers if r.grad_norm is not None}
  assert set(grads) >= {"conv1", "fc6", "fc7", "logits"}
  for name, norm in grads.items():
    want = float(metrics[f"grad_norm/{'fc8' if name == 'logits' else name}"])
    assert norm == pytest.approx(want, rel=1e-4), name


def test_the_verdict_names_the_first_layer_below_the_dtypes_resolution():
  """Mutations: float16's floor mistyped; `<=` at the floor or the logit limit; the logits'
  row judged against the dtype -> red."""
  rows = tuple(diagnose.Layer(n, 1.0, p, 1.0) for n, p in
               (("conv1", 0.5), ("conv4", 0.01), ("fc6", 0.001), ("logits", 0.5)))
  assert diagnose.judge(rows, 0.05, "bfloat16").startswith("stall risk: at conv4 ")
  assert diagnose.judge(rows, 0.05, "float32").startswith("no stall risk")
  assert "logits barely depend" in diagnose.judge(rows, 1e-4, "float32")
  # float16's 11 significant bits resolve 4 x 2^-11 = 0.002: fc6's 0.001 is below it.
  assert diagnose.judge(rows, 0.05, "float16").startswith("stall risk: at fc6 ")
  # At the floor itself, and logits spread exactly at the limit: resolved. The logits' own
  # part is their spread, judged in nats, not against the dtype.
  floor = diagnose.RESOLVES["bfloat16"]
  rows = tuple(diagnose.Layer(n, 1.0, p, 1.0) for n, p in (("conv1", floor), ("logits", 1e-9)))
  assert diagnose.judge(rows, diagnose.LOGIT_SPREAD, "bfloat16").startswith("no stall risk")


@pytest.mark.skipif(not os.path.exists(FASHION), reason="needs Debian's dataset-fashion-mnist")
@pytest.mark.parametrize("setting,overrides,stalls", [
    # The H200 run that sat at ln 10 for its first epoch: inputs ÷64, bfloat16, the text's std
    # 0.01 and biases of 1, §4.2's dropout.
    ("stalled", ["data.pixel_scale=0.015625", "model.init_std.conv3=0.01",
                 "model.init_std.conv4=0.01", "model.init_std.conv5=0.01", *BIASES_OF_ONE], True),
    # The 2012 code's: raw inputs less the mean, 0.03 in conv3-conv5, float32.
    ("2012 code", ["model.dtype=float32", *CODE_STDS, *BIASES_OF_ONE], False),
    ("shipped", [], False),
])
def test_the_full_network_on_fashion_mnist(setting, overrides, stalls):
  """Mutations: the spread taken across units instead of across images (`_spread`, for the
  layers and the logits alike) -> 'stalled' passes as no risk, red; the shipped config's
  pixel_scale back to 1/64 -> 'shipped' red (a stall risk at conv4)."""
  config = load_config("fashion_mnist_full", "", overrides)
  result = diagnose.diagnose(config, images=8)
  assert result.stall_risk is stalls, result.table()
  assert [r.name for r in result.layers] == ["conv1", "pool1", "conv2", "pool2", "conv3",
                                             "conv4", "conv5", "pool5", "fc6", "fc7", "logits"]
  assert result.table().splitlines()[-1].startswith("verdict: ")
  if not stalls:
    assert result.logit_spread > 10 * diagnose.LOGIT_SPREAD
