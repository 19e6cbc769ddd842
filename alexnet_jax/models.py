"""AlexNet as a Flax NNX module: the paper's two columns as shards of a `'model'` mesh axis.

Paper §3.5 (layers, sizes, where the columns meet), §3.2 (two GPUs; the one-column comparison
net), §3.3 (LRN), §3.4 (overlapping pooling), §4.2 (dropout), §5 (initialisation). What the
network is (its layers, widths and geometry) is `model_spec.AlexNetSpec`; this module builds
and runs it.

Every per-column weight is stacked on a leading column axis sharded over `'model'`. The forward
pass is one `jax.shard_map`: each device runs plain convolutions for the columns it holds, and an
explicit `all_gather` over `'model'` joins the columns where the paper's GPUs communicate
(inputs of conv3, fc6 and fc7: `AlexNetSpec.meets`); fc8 contracts each column's fc7 units
and sums the two partial logits (`psum`). With a `'model'` axis of size 1 one device computes
both columns. The batch is sharded over `'data'`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import PartitionSpec as P

from alexnet_jax import ops
from alexnet_jax.errors import UserError
from alexnet_jax.model_spec import CONV6, DROPPED, AlexNetSpec
from alexnet_jax.sharding import DATA, MODEL, make_mesh


class ColumnLayer(nnx.Module):
  """One layer's kernels for every column, stacked on a leading column axis (sharded 'model').

  §5 initialisation: kernel ~ N(0, std²), bias = constant. fc8's bias is one vector shared by
  the columns (added once, after the columns' partial logits are summed).
  """

  def __init__(self, columns: int, kernel_shape: tuple[int, ...], *, std: float, bias: float,
               shared_bias: bool, param_dtype: Any, rngs: nnx.Rngs):
    stacked = (columns, *kernel_shape)
    self.kernel = nnx.Param(
        std * jax.random.normal(rngs.params(), stacked, param_dtype),
        out_sharding=(MODEL,) + (None,) * len(kernel_shape), eager_sharding=False)
    out = kernel_shape[-1]
    if shared_bias:
      self.bias = nnx.Param(jnp.full((out,), bias, param_dtype),
                            out_sharding=(None,), eager_sharding=False)
    else:
      self.bias = nnx.Param(jnp.full((columns, out), bias, param_dtype),
                            out_sharding=(MODEL, None), eager_sharding=False)


class AlexNet(nnx.Module):
  """The network of paper §3.5 (Figure 2), two columns or the §3.2 one-column net (or §7's,
  a convolutional layer removed)."""

  def __init__(self, spec: AlexNetSpec, *, mesh: jax.sharding.Mesh | None = None,
               rngs: nnx.Rngs):
    self.spec = spec
    self.mesh = mesh if mesh is not None else make_mesh(data=1, model=1)
    if spec.lrn_across_columns and self.mesh.shape[MODEL] > 1:
      raise UserError("model.lrn_across_columns normalises across both columns' maps, which "
                      "one device must hold: set --config.mesh.model=1")
    if spec.columns % self.mesh.shape[MODEL]:
      raise UserError(f"invalid mesh: the 'model' axis ({self.mesh.shape[MODEL]}) must divide "
                       f"the number of columns ({spec.columns})")
    std, bias = dict(spec.init_std), dict(spec.init_bias)
    for name in spec.layers:
      setattr(self, name, ColumnLayer(
          spec.columns, spec.kernel_shape(name), std=std[name], bias=bias[name],
          shared_bias=(name == "fc8"), param_dtype=jnp.dtype(spec.param_dtype), rngs=rngs))

  def __call__(self, images: jax.Array, *, dropout_key: jax.Array | None = None,
               capture: bool = False):
    """Logits (float32) for NHWC `images`: training-time dropout when `dropout_key` is given,
    test-time dropout (`dropout_form`) otherwise.

    With `capture=True` also returns {name: activation} for `CAPTURED` (channels in column
    order: column 0's maps first; fc6 and fc7 after the ReLU, before dropout).
    """
    spec = self.spec
    expected = (spec.input_size, spec.input_size, spec.in_channels)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
      raise ValueError(f"AlexNet expects images of shape [batch, {expected[0]}, {expected[1]}, "
                       f"{expected[2]}], got {tuple(images.shape)}")
    params = {n: (getattr(self, n).kernel[...], getattr(self, n).bias[...]) for n in spec.layers}
    logits, captured = _forward(spec, self.mesh, capture, images, params, dropout_key)
    return (logits, captured) if capture else logits


def dropout_masks(spec: AlexNetSpec, key: jax.Array, batch: int) -> dict[str, jax.Array]:
  """§4.2's keep-masks {fc6, fc7: bool [batch, all columns' units]}, each unit kept with
  probability 1 - `spec.dropout`. Drawn at the global batch shape, so the same key drops the
  same units whatever the mesh."""
  keys = jax.random.split(key, len(DROPPED))
  return {name: jax.random.bernoulli(k, 1.0 - spec.dropout,
                                     (batch, spec.columns * spec.widths[name]))
          for name, k in zip(DROPPED, keys)}


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _forward(spec: AlexNetSpec, mesh: jax.sharding.Mesh, capture: bool, images, params,
             dropout_key):
  """The `shard_map` over ('data', 'model'); jitted so that eager calls compile once."""
  masks = None
  if dropout_key is not None and spec.dropout > 0:
    masks = dropout_masks(spec, dropout_key, images.shape[0])
  param_specs = {n: (P(MODEL), P() if n == "fc8" else P(MODEL)) for n in spec.layers}
  mask_specs = None if masks is None else {n: P(DATA, MODEL) for n in masks}
  captured_specs = {n: P(DATA, *([None] * (0 if n.startswith("fc") else 2)), MODEL)
                    for n in spec.captured}
  return jax.shard_map(
      lambda x, p, m: _column_forward(spec, x, p, m, capture),
      mesh=mesh,
      in_specs=(P(DATA), param_specs, mask_specs),
      out_specs=(P(DATA), captured_specs if capture else None),
  )(images, params, masks)


def single_device_forward(spec: AlexNetSpec, params: dict, images, *, portable: bool = False):
  """(logits, {name: activation}) of the test-time forward with every column on the calling
  device and no mesh: the columns' meetings (`all_gather`, `psum` over 'model') run as a size-1
  `vmap` axis, so the computation is standard ops only (what `export` traces for ONNX and
  StableHLO). `params`: {layer: {'kernel', 'bias'}}; `portable`: max-pooling as strided slices
  (`ops.max_pool`)."""
  p = {n: (params[n]["kernel"], params[n]["bias"]) for n in spec.layers}
  out = jax.vmap(lambda _: _column_forward(spec, images, p, None, True, portable),
                 axis_name=MODEL)(jnp.zeros(1))
  return jax.tree.map(lambda a: a[0], out)


def _column_forward(spec: AlexNetSpec, x, params, masks, capture: bool, portable: bool = False):
  """Runs the columns this device holds; the body of the `shard_map`.

  The local columns' maps are kept side by side on the channel axis (column 0's first), so
  layers that see every column (conv1, conv3, fc6-fc8) are one convolution or matmul with the
  columns' kernels concatenated. Layers that see only their own column (conv2, conv4, conv5)
  run one plain convolution per column: a grouped convolution is slower, on the GPU and on
  XLA's CPU backend (docs/performance.md). With `column_maps='separate'` the maps stay a list
  of one array per column, every convolution runs per column and they are joined only where
  the columns meet.
  """
  dtype = jnp.dtype(spec.dtype)
  local = params["conv1"][0].shape[0]  # columns on this device
  act = jax.nn.relu if spec.activation == "relu" else jnp.tanh
  captured = {}

  def each(fn, h):
    """`fn` elementwise or spatially, on joined maps or on each column's."""
    return [fn(v) for v in h] if isinstance(h, list) else fn(h)

  def per_column(fn, h):
    """`fn` over each column's block of channels (windows must not cross columns)."""
    if isinstance(h, list):
      return each(fn, h)
    return fn(h.reshape(*h.shape[:-1], local, h.shape[-1] // local)).reshape(h.shape)

  def together(h):
    return jnp.concatenate(h, axis=-1) if isinstance(h, list) else h

  def norm(h):
    if not spec.lrn:
      return h
    lrn = lambda v: ops.lrn(v, size=spec.lrn_size, k=spec.lrn_k, alpha=spec.lrn_alpha,
                            beta=spec.lrn_beta, alpha_over_size=spec.lrn_alpha_over_size)
    # Within each column's maps (the 2012 code), or over all of them (Caffe: one device holds
    # every column then, checked in AlexNet.__init__).
    return lrn(h) if spec.lrn_across_columns else per_column(lrn, h)

  def conv2_norm(h):
    h = norm(h)
    if not spec.response_norm:  # 2012 code only: a spatial response norm after conv2's LRN.
      return h
    return each(lambda v: ops.response_norm(v, size=spec.response_norm_size,
                                            alpha=spec.response_norm_alpha,
                                            beta=spec.response_norm_beta), h)

  def pool(h):
    return each(lambda v: ops.max_pool(v, window=spec.pool_window, stride=spec.pool_stride,
                                       portable=portable), h)

  def joined(kernel):
    """[columns, ..., cin, cout] -> [..., cin, columns * cout]: the columns side by side."""
    return jnp.moveaxis(kernel, 0, -2).reshape(*kernel.shape[1:-1], -1).astype(dtype)

  def conv(name, h, *, own_column: bool):
    kernel, bias = params[name]
    k = spec.conv_kernel(name)
    if name == "conv1":
      stride, padding = (spec.conv1_stride,) * 2, ((0, spec.conv1_padding),) * 2
    else:
      stride, padding = (1, 1), ((k // 2, k // 2),) * 2

    def run(inputs, kernels):
      if name == "conv1" and spec.conv1_stride > 1:
        return ops.strided_conv_as_space_to_depth(inputs, kernels, spec.conv1_stride,
                                                  spec.conv1_padding)
      return jax.lax.conv_general_dilated(
          inputs, kernels, window_strides=stride, padding=padding,
          dimension_numbers=("NHWC", "HWIO", "NHWC"))

    if spec.column_maps == "separate":
      inputs = h if own_column else [together(h)] * local
      return [run(v, kernel[c].astype(dtype)) + bias[c].astype(dtype)
              for c, v in enumerate(inputs)]
    if not own_column or local == 1:
      y = run(h, joined(kernel))
    else:
      width = h.shape[-1] // local
      y = jnp.concatenate([run(h[..., c * width:(c + 1) * width], kernel[c].astype(dtype))
                           for c in range(local)], axis=-1)
    return y + bias.reshape(-1).astype(dtype)

  def dense(name, h):
    kernel, bias = params[name]
    return h @ joined(kernel) + bias.reshape(-1).astype(dtype)

  def dropout(name, h):
    keep = 1.0 - spec.dropout
    if masks is not None:  # training
      kept = h / keep if spec.dropout_form == "inverted" else h
      return jnp.where(masks[name], kept, jnp.zeros_like(h))
    if spec.dropout_form == "paper" and spec.dropout > 0:  # test time: every unit x (1 - p)
      return h * jnp.asarray(keep, h.dtype)
    return h

  def record(name, h):
    if capture:
      captured[name] = together(h)
    return h

  def meet(h):
    """Joins every column's maps: the paper's cross-GPU communication."""
    h = together(h)
    return jax.lax.all_gather(h, MODEL, axis=h.ndim - 1, tiled=True)

  relu = lambda h: each(act, h)

  def conv_relu(name, h):
    """A convolution after pool2 and its ReLU, over its own column's maps or, where the
    columns meet, over every column's."""
    across = name in spec.meets
    return record(name, relu(conv(name, meet(h) if across else h, own_column=not across)))

  h = conv("conv1", x.astype(dtype), own_column=False)
  if spec.lrn_conv1_pre_relu:  # 2012 code: LRN on the conv output, ReLU at the pool.
    h = record("pool1", relu(pool(record("conv1", norm(h)))))
  else:
    h = record("pool1", pool(record("conv1", norm(relu(h)))))
  if "conv2" in spec.layers:
    h = record("conv2", conv2_norm(relu(conv("conv2", h, own_column=True))))
  h = record("pool2", pool(h))
  for name in ("conv3", "conv4", "conv5"):
    if name in spec.layers:
      h = conv_relu(name, h)
  h = record("pool5", pool(h))
  if spec.extra_conv6:
    h = conv_relu(CONV6, h)
  full = meet(h)
  h = dropout("fc6", record("fc6", act(dense("fc6", full.reshape(full.shape[0], -1)))))
  h = dropout("fc7", record("fc7", act(dense("fc7", meet(h)))))
  kernel, bias = params["fc8"]
  partial_logits = jnp.matmul(h, kernel.reshape(-1, kernel.shape[-1]).astype(dtype),
                              preferred_element_type=jnp.float32)
  logits = jax.lax.psum(partial_logits, MODEL) + bias.astype(jnp.float32)
  return logits, (captured if capture else None)


def create_model(model_config, *, mesh: jax.sharding.Mesh | None = None, seed: int = 0):
  """Builds the network of `model_config` with its parameters placed on `mesh`.

  Initialisation runs under `jax.jit` with the parameters' shardings as outputs, so each
  device creates only its own column's weights; the values do not depend on the mesh. The
  seed's key is the compiled initialiser's argument: another seed of the same network on the
  same mesh (an ablation study's seeds) is not compiled again.
  """
  mesh = mesh if mesh is not None else make_mesh(data=1, model=1)
  graphdef, initialise = _initialiser(AlexNetSpec.from_config(model_config), mesh)
  return nnx.merge(graphdef, initialise(jax.random.key(seed)))


def abstract_model(model_config, *, mesh: jax.sharding.Mesh | None = None):
  """(graphdef, params as ShapeDtypeStructs with their shardings): a restore target."""
  mesh = mesh if mesh is not None else make_mesh(data=1, model=1)
  graphdef, abstract_state = _abstract(AlexNetSpec.from_config(model_config), mesh)
  shardings = nnx.to_pure_dict(nnx.get_named_sharding(abstract_state, mesh))
  shapes = nnx.to_pure_dict(abstract_state)
  return graphdef, jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), shapes, shardings)


# The initialiser runs once a run: XLA's backend optimisation level 2 in place of its default
# compiles it several times faster, to the same bits (the seeds' digests in test_models.py).
_INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 2}


@functools.lru_cache(maxsize=8)
def _initialiser(spec: AlexNetSpec, mesh: jax.sharding.Mesh):
  """(graphdef, compiled key -> parameters placed on `mesh`)."""
  graphdef, abstract_state = _abstract(spec, mesh)
  build = lambda key: nnx.state(AlexNet(spec, mesh=mesh, rngs=nnx.Rngs(params=key)))
  jitted = jax.jit(build, out_shardings=nnx.get_named_sharding(abstract_state, mesh))
  return graphdef, jitted.lower(jax.random.key(0)).compile(
      compiler_options=_INIT_COMPILER_OPTIONS)


def _abstract(spec: AlexNetSpec, mesh: jax.sharding.Mesh):
  return nnx.split(nnx.eval_shape(
      lambda: AlexNet(spec, mesh=mesh, rngs=nnx.Rngs(params=jax.random.key(0)))))
