"""The network of §3.5: shapes, parameter count, §5 init, the two columns as 'model' shards,
every activation against a float64 NumPy forward."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from alexnet_jax import layer_shapes, model_spec, models, ops
from alexnet_jax.errors import UserError
from alexnet_jax.sharding import make_mesh
from conftest import compiled, load_config

PAPER_SHAPES = {
    "input": (224, 224, 3), "conv1": (55, 55, 96), "pool1": (27, 27, 96),
    "conv2": (27, 27, 256), "pool2": (13, 13, 256), "conv3": (13, 13, 384),
    "conv4": (13, 13, 384), "conv5": (13, 13, 256), "pool5": (6, 6, 256),
    "fc6": (4096,), "fc7": (4096,), "fc8": (1000,),
}


def param_count(model_config):
  return sum(r[2] for r in layer_shapes.layer_rows(model_config))


def test_paper_layer_shapes_and_exact_parameter_count():
  rows = layer_shapes.layer_rows(load_config("paper").model)
  assert {name: shape for name, shape, _, _ in rows} == PAPER_SHAPES
  assert sum(r[2] for r in rows) == 60_965_224
  assert np.prod(PAPER_SHAPES["pool5"]) == 9216
  assert layer_shapes.format_table(rows).splitlines()[-1] == "total params: 60965224"
  # Figure 2: the columns meet at conv3 and the fully-connected layers only. Mutations: the
  # one-column and the fc8 tests in `_connectivity` inverted -> red.
  meets = {name: conn.split(":")[0] for name, _, _, conn in rows if name.startswith(("conv", "fc"))}
  assert meets == {"conv1": "own column (2 x 48)", "conv2": "own column (2 x 128)",
                   "conv3": "both columns", "conv4": "own column (2 x 192)",
                   "conv5": "own column (2 x 128)", "fc6": "both columns", "fc7": "both columns",
                   "fc8": "both columns"}
  assert rows[-1][3] == "both columns: psum of the columns' partial logits"
  one_column = layer_shapes.layer_rows(load_config("tiny", "one_column").model)
  assert {conn for name, _, _, conn in one_column if name.startswith("conv")} == {"one column"}


def test_real_forward_matches_the_shapes(tiny_config):
  model = models.create_model(tiny_config.model)
  logits, captured = model(jnp.zeros((2, 32, 32, 3)), capture=True)
  shapes = {n: s for n, s, _, _ in layer_shapes.layer_rows(tiny_config.model)}
  assert logits.shape == (2, 10) and logits.dtype == jnp.float32
  for name, value in captured.items():
    assert value.shape[1:] == shapes[name], name


@pytest.mark.parametrize("shape", [(2, 32, 32), (2, 30, 32, 3), (2, 32, 32, 1)])
def test_images_of_another_shape_are_refused_by_name(tiny_config, shape):
  model = models.create_model(tiny_config.model)
  with pytest.raises(ValueError, match=r"expects images of shape \[batch, 32, 32, 3\], got "
                     + re.escape(str(shape))):
    model(jnp.zeros(shape))


def _digest(model) -> str:
  import hashlib

  digest = hashlib.sha256()
  state = nnx.to_pure_dict(nnx.state(model))
  for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(state)[0],
                           key=lambda entry: jax.tree_util.keystr(entry[0])):
    digest.update(np.asarray(leaf).tobytes())
  return digest.hexdigest()[:16]


def test_a_seed_draws_the_weights_it_always_drew_and_another_seed_compiles_nothing(caplog):
  """Seed 3's initial weights are the ones earlier versions drew (a digest of every array, on
  one device and on two columns' devices alike); another seed of the same network on the same
  mesh runs the compiled initialiser again. Mutations: the key of seed + 1 -> red (digest); the
  initialiser compiled at each call -> red (compiled); compiled at XLA's backend optimisation
  level 0 (its level 2 keeps the bits) -> red (digest)."""
  tiny = load_config("tiny").model
  code = load_config("paper_code").model
  code.update(dict(input_size=64, conv_features=(16, 32, 48, 48, 32), fc_features=(64, 64)))
  assert [_digest(models.create_model(config, mesh=make_mesh(model=model), seed=3))
          for config, model in ((tiny, 1), (tiny, 2), (code, 2))] == [
              "3d1429689dbcdeea", "3d1429689dbcdeea", "4e5c1212858f4b83"]
  with compiled(caplog) as programs:
    other = models.create_model(tiny, mesh=make_mesh(model=2), seed=4)
  assert programs == []
  assert _digest(other) != "3d1429689dbcdeea"


@pytest.mark.parametrize("config_name,conv345_std", [("paper", 0.01), ("paper_code", 0.03)])
def test_initialisation_of_section_5(config_name, conv345_std):
  config = load_config(config_name)
  model = models.create_model(config.model, seed=1)
  bias_one = {"conv2", "conv4", "conv5", "fc6", "fc7"}
  for name in model_spec.LAYERS:
    layer = getattr(model, name)
    kernel, bias = np.asarray(layer.kernel[...]), np.asarray(layer.bias[...])
    std = conv345_std if name in ("conv3", "conv4", "conv5") else 0.01
    assert abs(kernel.mean()) < 0.05 * std + 3 * std / np.sqrt(kernel.size), name
    np.testing.assert_allclose(kernel.std(), std, rtol=0.03, err_msg=name)
    np.testing.assert_array_equal(bias, 1.0 if name in bias_one else 0.0, err_msg=name)


def test_init_is_overridable_per_layer(tiny_config):
  tiny_config.model.init_std.fc6 = 0.2
  tiny_config.model.init_bias.conv2 = 0.1
  model = models.create_model(tiny_config.model)
  np.testing.assert_allclose(np.asarray(model.fc6.kernel[...]).std(), 0.2, rtol=0.05)
  np.testing.assert_array_equal(np.asarray(model.conv2.bias[...]), np.float32(0.1))


def _sharded(config, mesh, seed=0):
  return models.create_model(config.model, mesh=mesh, seed=seed)


@pytest.mark.parametrize("removed", ["", "conv3"])  # conv3 out: the columns meet at conv4
def test_sharded_forward_equals_single_device_forward(tiny_config, removed):
  """Mutation: without conv3, conv4 over its own column on the mesh alone -> red."""
  assert jax.device_count() == 8, "conftest forces 8 CPU devices"
  tiny_config.model.removed_conv = removed
  images = jax.random.normal(jax.random.key(0), (8, 32, 32, 3))
  single = models.create_model(tiny_config.model, seed=3)
  mesh = make_mesh(data=4, model=2)
  sharded = _sharded(tiny_config, mesh, seed=3)
  expected = single(images)
  batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  got = sharded(jax.device_put(images, batch_sharding))
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  # Dropout masks are drawn at the global shape: the same key gives the same network.
  key = jax.random.key(7)
  np.testing.assert_allclose(sharded(jax.device_put(images, batch_sharding), dropout_key=key),
                             single(images, dropout_key=key), rtol=1e-5, atol=1e-5)


def test_each_columns_parameters_live_only_on_its_model_shard(tiny_config):
  mesh = make_mesh(data=4, model=2)
  model = _sharded(tiny_config, mesh)
  for name in model_spec.LAYERS:
    kernel = model.__getattribute__(name).kernel[...]
    full = np.asarray(kernel)
    for shard in kernel.addressable_shards:
      column = mesh.device_ids.tolist()
      row = next(r for r in column if shard.device.id in r)
      m = row.index(shard.device.id)
      assert shard.data.shape == (1,) + full.shape[1:], name
      assert shard.index[0] == slice(m, m + 1), name
      np.testing.assert_array_equal(np.asarray(shard.data)[0], full[m])
  assert model.fc8.bias[...].sharding.is_fully_replicated


@pytest.mark.parametrize("config_name,variant,gathers", [
    ("paper", "", ["2,13,13,256", "2,4096", "2,6,6,256"]),
    ("paper_code", "conv6", ["2,13,13,256", "2,4096", "2,6,6,256", "2,6,6,256"]),
    ("paper", "no_conv3", ["2,13,13,256", "2,4096", "2,6,6,256"]),  # in front of conv4
    ("paper", "no_conv2", ["2,13,13,96", "2,4096", "2,6,6,256"])])  # pool2 of conv1's maps
def test_compiled_forward_communicates_only_where_the_columns_meet(config_name, variant,
                                                                   gathers):
  config = load_config(config_name, variant)
  mesh = make_mesh(data=4, model=2)
  abstract = nnx.eval_shape(lambda: models.AlexNet(
      model_spec.AlexNetSpec.from_config(config.model), mesh=mesh, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(abstract)
  shardings = nnx.get_named_sharding(state, mesh)
  state = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                       state, shardings)
  images = jax.ShapeDtypeStruct((8, 224, 224, 3), jnp.float32, sharding=jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec("data")))
  hlo = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x)).lower(state, images).compile().as_text()
  collectives = [line for line in hlo.splitlines()
                 if re.search(r"= \S+ (all-gather|all-reduce|reduce-scatter|all-to-all|"
                              r"collective-permute)(-start)?\(", line)]
  kinds = [re.search(r"(all-gather|all-reduce|reduce-scatter|all-to-all|collective-permute)",
                     line).group(1) for line in collectives]
  # conv3's input (13x13x256), (the 2012 code's conv6's, 6x6x256,) fc6's input (6x6x256),
  # fc7's input (4096); fc8's partial logits.
  assert sorted(kinds) == ["all-gather"] * len(gathers) + ["all-reduce"], collectives
  gathered = sorted(re.search(r"= f32\[([\d,]+)\]", line).group(1) for line in collectives
                    if "all-gather" in line)
  assert gathered == gathers
  # Each over the 'model' axis alone: XLA lists the groups of devices (jax 0.10) or names the
  # mesh's axes (jax 0.11 and later).
  model_groups = "{" + ",".join("{" + ",".join(map(str, row)) + "}"
                                for row in mesh.device_ids.tolist()) + "}"
  for line in collectives:
    assert (f"replica_groups={model_groups}," in line
            or re.search(r"replica_groups=mesh\['data'=4,'model'=2\] \{'model'\},", line)), line


def test_a_column_is_independent_of_the_other_until_conv3(tiny_config):
  model = models.create_model(tiny_config.model, seed=0)
  images = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  _, before = model(images, capture=True)
  kernel = model.conv1.kernel[...]
  model.conv1.kernel[...] = kernel.at[1].add(0.05)  # perturbs column 1's conv1 output only
  _, after = model(images, capture=True)
  half = {name: v.shape[-1] // 2 for name, v in before.items()}
  for name in ("conv1", "pool1", "conv2", "pool2"):
    h = half[name]
    np.testing.assert_array_equal(after[name][..., :h], before[name][..., :h], err_msg=name)
    assert not np.array_equal(after[name][..., h:], before[name][..., h:]), name
  for name in ("conv3", "conv4", "conv5", "fc6", "fc7"):
    h = half[name]
    assert not np.array_equal(after[name][..., :h], before[name][..., :h]), name


def _primitive_counts(config, **call_kwargs):
  model = models.create_model(config.model)
  jaxpr = str(jax.make_jaxpr(lambda x: model(x, **call_kwargs))(jnp.zeros((2, 32, 32, 3))))
  return {p: len(re.findall(p, jaxpr)) for p in
          ("reduce_window_sum", r"reduce_window_max\[[^\]]*window_dimensions=\(1, 3, 3, 1\)",
           r"reduce_window_max\[[^\]]*window_dimensions=\(1, 2, 2, 1\)", r"\btanh\b",
           "random_bits", "all_gather")}


def test_ablation_switches_change_the_structure():
  base = _primitive_counts(load_config("tiny"), dropout_key=jax.random.key(0))
  assert base["reduce_window_sum"] >= 2 and base[r"\btanh\b"] == 0
  assert base["random_bits"] > 0
  no_lrn = _primitive_counts(load_config("tiny", "no_lrn"))
  assert no_lrn["reduce_window_sum"] == 0
  pool2 = _primitive_counts(load_config("tiny", "no_overlap_pool"))
  assert pool2[r"reduce_window_max\[[^\]]*window_dimensions=\(1, 3, 3, 1\)"] == 0
  assert pool2[r"reduce_window_max\[[^\]]*window_dimensions=\(1, 2, 2, 1\)"] > 0
  assert _primitive_counts(load_config("tiny", "tanh"))[r"\btanh\b"] > 0
  no_dropout = _primitive_counts(load_config("tiny", "no_dropout"), dropout_key=jax.random.key(0))
  assert no_dropout["random_bits"] == 0


def test_paper_code_variant_adds_the_response_norm_and_moves_conv1_lrn():
  config = load_config("paper_code")
  spec = model_spec.AlexNetSpec.from_config(config.model)
  assert spec.response_norm and spec.lrn_conv1_pre_relu and spec.lrn_alpha_over_size
  assert (spec.response_norm_size, spec.response_norm_alpha, spec.response_norm_beta) == (
      5, 1e-3, 0.75)  # layers-153.cfg / layer-params-153.cfg, cnorm2a and cnorm2b
  assert spec.dropout_form == "paper"
  assert param_count(config.model) == 60_965_224  # same weights, different normalisation
  tiny = load_config("tiny")
  tiny.model.update(dict(response_norm=True, lrn_conv1_pre_relu=True))
  model = models.create_model(tiny.model)
  _, captured = model(jax.random.normal(jax.random.key(0), (2, 32, 32, 3)), capture=True)
  assert float(jnp.min(captured["conv1"])) < 0  # LRN on the pre-ReLU conv output
  assert float(jnp.min(captured["pool1"])) >= 0  # ReLU applied at the pool
  tiny.model.lrn = False  # conv2's maps are then the response norm of relu(conv2) alone
  model = models.create_model(tiny.model)
  _, captured = model(jax.random.normal(jax.random.key(0), (2, 32, 32, 3)), capture=True)
  tiny.model.response_norm = False
  plain = models.create_model(tiny.model)
  _, unnormed = plain(jax.random.normal(jax.random.key(0), (2, 32, 32, 3)), capture=True)
  np.testing.assert_allclose(captured["conv2"], ops.response_norm(unnormed["conv2"]), rtol=1e-5)


def _numpy_head(model, pool5, masks=None, *, p: float, form: str):
  """(logits, {'fc6', 'fc7': outputs after the ReLU, before dropout}): fc6 -> fc7 -> fc8 in
  float64 from pool5 (channels in column order), with §4.2's dropout written out: at test time
  every fc6/fc7 output x (1 - p) ('paper') or as it is ('inverted'); in training output x mask
  ('paper') or x mask / (1 - p) ('inverted')."""
  def joined(layer):
    kernel = np.asarray(layer.kernel[...], np.float64)
    bias = np.asarray(layer.bias[...], np.float64).reshape(-1)
    return np.concatenate(list(kernel), axis=-1), bias

  def drop(name, h):
    if masks is None:
      return h * (1 - p) if form == "paper" else h
    return h * masks[name] / ((1 - p) if form == "inverted" else 1.0)

  h, seen = np.asarray(pool5, np.float64).reshape(len(pool5), -1), {}
  for name in ("fc6", "fc7"):
    kernel, bias = joined(getattr(model, name))
    seen[name] = np.maximum(h @ kernel + bias, 0.0)
    h = drop(name, seen[name])
  kernel8 = np.asarray(model.fc8.kernel[...], np.float64)
  logits = h @ kernel8.reshape(-1, kernel8.shape[-1]) + np.asarray(model.fc8.bias[...], np.float64)
  return logits, seen


@pytest.mark.parametrize("form", ["paper", "inverted"])
def test_dropout_of_section_4_2_at_test_and_training_time(tiny_config, form):
  """Mutation: one mask for the whole batch -> red."""
  tiny_config.model.dropout_form = form
  p = tiny_config.model.dropout
  assert p == 0.5 and load_config("paper").model.dropout_form == "paper"
  model = models.create_model(tiny_config.model, seed=2)
  images = jax.random.normal(jax.random.key(3), (8, 32, 32, 3))
  logits, captured = model(images, capture=True)
  expected, _ = _numpy_head(model, captured["pool5"], p=p, form=form)
  scale = np.abs(expected).max()
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5 * scale)
  # Training: the masks the model draws for this key, each unit kept with probability 1 - p.
  key = jax.random.key(4)
  masks = models.dropout_masks(model.spec, key, len(images))
  kept = np.mean([np.asarray(m).mean() for m in masks.values()])
  assert abs(kept - (1 - p)) < 0.05, kept
  for m in map(np.asarray, masks.values()):  # "every time an input is presented": its own units
    assert abs((m[0] == m[1:]).mean() - (p * p + (1 - p) ** 2)) < 0.1
  trained = model(images, dropout_key=key)
  expected, _ = _numpy_head(model, captured["pool5"],
                            {n: np.asarray(m) for n, m in masks.items()}, p=p, form=form)
  np.testing.assert_allclose(trained, expected, rtol=1e-4, atol=1e-5 * scale)


def test_a_mesh_that_cannot_hold_the_columns_is_a_one_line_error():
  one_column = load_config("tiny", "one_column")
  with pytest.raises(UserError, match="'model' axis"):
    models.create_model(one_column.model, mesh=make_mesh(data=4, model=2))
  with pytest.raises(UserError, match="'model' axis"):
    make_mesh(model=3)
  across = load_config("tiny")
  across.model.lrn_across_columns = True  # Caffe's LRN: both columns' maps on one device
  with pytest.raises(UserError, match="lrn_across_columns .*--config.mesh.model=1"):
    models.create_model(across.model, mesh=make_mesh(data=4, model=2))
  models.create_model(across.model, mesh=make_mesh(data=8, model=1))


@pytest.mark.slow
@pytest.mark.parametrize("structure", [
    {}, {"response_norm": True, "lrn_conv1_pre_relu": True, "extra_conv6": True,  # the 2012
         "conv6_across_columns": True}])  # code's
def test_each_columns_maps_kept_apart_compute_the_same_network(tiny_config, structure):
  """`column_maps='separate'` (a speed lever): the same logits, activations and gradients as
  the joined maps, on one device and on a 'model' axis of 2. Mutations: a separate column's
  bias taken from the other column -> red; the columns joined in the other order where they
  meet -> red."""
  config = tiny_config
  config.model.update(structure)
  apart = config.copy_and_resolve_references()
  apart.model.column_maps = "separate"
  images = jax.random.normal(jax.random.key(0), (4, 32, 32, 3))
  key = jax.random.key(5)

  def run(model_config, mesh=None):
    model = models.create_model(model_config, mesh=mesh, seed=1)
    graphdef, state = nnx.split(model)

    def loss(state):
      return nnx.merge(graphdef, state)(images, dropout_key=key).sum()

    forward = jax.jit(lambda state: nnx.merge(graphdef, state)(images, capture=True))
    return *forward(state), jax.jit(jax.grad(loss))(state)

  want_logits, want_captured, want_grads = run(config.model)
  for mesh in (None, make_mesh(data=2, model=2)) if not structure else (None,):
    logits, captured, grads = run(apart.model, mesh)
    np.testing.assert_allclose(logits, want_logits, rtol=1e-5, atol=1e-5)
    for name, value in want_captured.items():
      np.testing.assert_allclose(captured[name], value, rtol=1e-5, atol=1e-5, err_msg=name)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 jax.tree.leaves(grads), jax.tree.leaves(want_grads))


def _reference_forward(spec, model, images):
  """(logits, {captured name: activation}) of the network as §3.3-§3.5 and §4.2 write it, in
  float64 NumPy with loops and windows of its own: per column conv -> ReLU -> LRN -> pool
  (conv1, conv2), conv3 over both columns' maps, conv4 and conv5 over their own, pool, fc6-fc8
  over every column's units, test-time dropout x (1 - p). The 2012 code's switches
  (`lrn_conv1_pre_relu`, `response_norm`, `extra_conv6`) as docs/fidelity.md describes them;
  §7's `removed_conv`: that layer, its ReLU and its norms skipped, the pooling kept, and
  without conv3 the columns meeting at conv4."""
  from numpy.lib.stride_tricks import sliding_window_view

  def param(name):
    layer = getattr(model, name)
    return np.asarray(layer.kernel[...], np.float64), np.asarray(layer.bias[...], np.float64)

  def conv(x, kernel, bias, stride, pads):
    x = np.pad(x, ((0, 0), *pads, (0, 0)))
    k = kernel.shape[0]
    windows = sliding_window_view(x, (k, k), axis=(1, 2))[:, ::stride, ::stride]
    return np.einsum("nhwcij,ijco->nhwo", windows, kernel) + bias

  def conv_layer(name, maps, *, both):
    kernel, bias = param(name)
    k = spec.conv_kernel(name)
    if name == "conv1":  # cuda-convnet's output size: zeros at the bottom and right only
      stride, pads = spec.conv1_stride, ((0, spec.conv1_padding),) * 2
    else:
      stride, pads = 1, ((k // 2, k // 2),) * 2
    inputs = [np.concatenate(maps, -1)] * spec.columns if both else maps
    return [conv(x, kernel[c], bias[c], stride, pads) for c, x in enumerate(inputs)]

  def lrn(a):  # §3.3 eq. 1 over one column's maps, the window clipped at its ends
    n, count = spec.lrn_size, a.shape[-1]
    alpha = spec.lrn_alpha / n if spec.lrn_alpha_over_size else spec.lrn_alpha
    out = np.empty_like(a)
    for i in range(count):
      lo, hi = max(0, i - n // 2), min(count - 1, i + n // 2)
      energy = (a[..., lo:hi + 1] ** 2).sum(-1)
      out[..., i] = a[..., i] / (spec.lrn_k + alpha * energy) ** spec.lrn_beta
    return out

  def response_norm(a):  # each map over its own size x size neighbourhood, clipped at the edges
    s, half = spec.response_norm_size, spec.response_norm_size // 2
    padded = np.pad(a ** 2, ((0, 0), (half, half), (half, half), (0, 0)))
    energy = sliding_window_view(padded, (s, s), axis=(1, 2)).sum((-1, -2))
    return a * (1 + spec.response_norm_alpha / s**2 * energy) ** -spec.response_norm_beta

  def pool(a):  # §3.4: windows of z x z at stride s, no padding
    z, s = spec.pool_window, spec.pool_stride
    return sliding_window_view(a, (z, z), axis=(1, 2))[:, ::s, ::s].max((-1, -2))

  relu = lambda a: np.maximum(a, 0.0)
  each = lambda fn, maps: [fn(a) for a in maps]
  seen = {}

  def record(name, maps):
    seen[name] = np.concatenate(maps, -1)
    return maps

  h = conv_layer("conv1", [np.asarray(images, np.float64)] * spec.columns, both=False)
  if spec.lrn_conv1_pre_relu:
    h = record("pool1", each(relu, each(pool, record("conv1", each(lrn, h)))))
  else:
    h = record("pool1", each(pool, record("conv1", each(lrn, each(relu, h)))))
  gone = spec.removed_conv
  if gone != "conv2":
    h = each(lrn, each(relu, conv_layer("conv2", h, both=False)))
    if spec.response_norm:
      h = each(response_norm, h)
    h = record("conv2", h)
  h = record("pool2", each(pool, h))
  if gone != "conv3":
    h = record("conv3", each(relu, conv_layer("conv3", h, both=True)))
  if gone != "conv4":
    h = record("conv4", each(relu, conv_layer("conv4", h, both=gone == "conv3")))
  if gone != "conv5":
    h = record("conv5", each(relu, conv_layer("conv5", h, both=False)))
  h = record("pool5", each(pool, h))
  if spec.extra_conv6:
    conv6 = conv_layer(model_spec.CONV6, h, both=spec.conv6_across_columns)
    h = record(model_spec.CONV6, each(relu, conv6))
  logits, fc = _numpy_head(model, np.concatenate(h, -1), p=spec.dropout, form=spec.dropout_form)
  return logits, {**seen, **fc}


@pytest.mark.parametrize("config_name,variant", [
    ("paper", ""), ("paper", "one_column"), ("paper_code", "conv6"), ("paper_code", "no_conv2"),
    ("paper", "no_conv3"), ("paper", "no_conv5")])
def test_the_whole_network_is_the_papers_written_out_in_numpy(config_name, variant):
  """Every activation and the logits of the network (at small widths, conv1 11x11 at stride 4
  with cuda-convnet's padding) against `_reference_forward`, with weights large enough that
  LRN and the response norm change the maps. Mutations: LRN before conv1's ReLU in the
  paper's network -> red; LRN's window across both columns -> red; conv4 over both columns ->
  red (shape); the 2012 code's ReLU before conv1's LRN -> red; fc8's bias subtracted -> red;
  a removed conv2's LRN kept; pool2 skipped with conv2 (shape); conv4 over its own column
  without conv3 (shape) -> red."""
  config = load_config(config_name, variant)
  config.model.update(dict(num_classes=10, input_size=64, conv_features=(16, 32, 48, 48, 32),
                           fc_features=(64, 64), dtype="float32"))
  config.model.init_std.update(dict(conv1=0.05, conv2=0.03, conv3=0.03, conv4=0.04, conv5=0.04,
                                    conv6=0.04, fc6=0.02, fc7=0.05, fc8=0.05))
  config.model.init_bias.update(dict(conv1=0.3, conv3=-0.2, fc8=0.7))  # the paper's 0s seen too
  spec = model_spec.AlexNetSpec.from_config(config.model)
  assert spec.conv1_stride == 4 and spec.conv1_padding == 3 and spec.pool5_size == 1
  model = models.create_model(config.model, seed=4)
  images = 60.0 * jax.random.normal(jax.random.key(6), (3, 64, 64, 3))
  logits, captured = model(images, capture=True)
  want_logits, want = _reference_forward(spec, model, images)
  assert set(captured) == set(want)
  for name, value in want.items():
    scale = np.abs(value).max()
    assert scale > 1.0, name  # far from LRN's constant region: k + α Σ a² varies
    np.testing.assert_allclose(captured[name], value, rtol=1e-4, atol=1e-5 * scale, err_msg=name)
  np.testing.assert_allclose(logits, want_logits, rtol=1e-4,
                             atol=1e-5 * np.abs(want_logits).max())
