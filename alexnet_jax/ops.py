"""The paper's two non-standard layers as jitted ops, and conv1's fast form.

* `lrn`: local response normalisation across channels (paper §3.3, eq. 1).
* `max_pool`: overlapping max-pooling, z = 3, s = 2 (paper §3.4).
* `strided_conv_as_space_to_depth`: conv1 (11x11, stride 4, §3.5) as the same sums over
  4x4 pixel blocks.
* `response_norm`: the 2012 code's spatial normalisation after conv2 (not in the paper).

All take channels-last arrays and are verified against float64 NumPy references in
`tests/test_ops.py`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


@functools.partial(
    jax.jit, static_argnames=("size", "k", "alpha", "beta", "alpha_over_size")
)
def lrn(
    x: jax.Array,
    *,
    size: int = 5,
    k: float = 2.0,
    alpha: float = 1e-4,
    beta: float = 0.75,
    alpha_over_size: bool = False,
) -> jax.Array:
  """Local response normalisation over the last (channel) axis, paper §3.3.

  b_i = a_i / (k + α Σ_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} a_j²)^β

  The window is clipped at the first and last channel, as the sum bounds say. With
  `alpha_over_size=True` the sum is scaled by α/n instead of α: the convention of the 2012
  cuda-convnet code, Caffe and PyTorch's `LocalResponseNorm`. Low-precision inputs are
  normalised in float32 and returned in their own dtype.
  """
  if x.ndim < 2:
    raise ValueError(f"lrn needs an input of rank >= 2 (channels last), got shape {x.shape}")
  if size < 1 or size % 2 == 0:
    raise ValueError(f"lrn size must be a positive odd number (window i-n/2..i+n/2), got {size}")
  scale = alpha / size if alpha_over_size else alpha
  return _lrn(x, size, k, scale, beta)


def _channel_window_sum(v: jax.Array, size: int) -> jax.Array:
  """Σ over channels j in [i - size//2, i + size//2], clipped at the ends (zero padding)."""
  half = size // 2
  return jax.lax.reduce_window(
      v, 0.0, jax.lax.add, (1,) * (v.ndim - 1) + (size,), (1,) * v.ndim,
      ((0, 0),) * (v.ndim - 1) + ((half, half),))


def _inverse_power(d: jax.Array, beta: float) -> jax.Array:
  """d ** -beta; the paper's β = 0.75 as rsqrt(d)·sqrt(rsqrt(d)), which XLA's CPU backend
  computes faster than the exp/log of a general power (docs/performance.md)."""
  if beta == 0.75:
    r = jax.lax.rsqrt(d)
    return r * jnp.sqrt(r)
  if beta == 0.5:
    return jax.lax.rsqrt(d)
  return d ** -beta


def _normalizer(x, size, k, scale, beta):
  """(x in float32 or wider, d = k + s Σ_{j∈W(i)} x_j², d^-β)."""
  wide = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  denom = k + scale * _channel_window_sum(jnp.square(wide), size)
  return wide, denom, _inverse_power(denom, beta)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def _lrn(x, size, k, scale, beta):
  return _lrn_fwd(x, size, k, scale, beta)[0]


def _lrn_fwd(x, size, k, scale, beta):
  wide, _, inv = _normalizer(x, size, k, scale, beta)
  return (wide * inv).astype(x.dtype), x


def _lrn_bwd(size, k, scale, beta, x, g):
  # b_i = a_i d_i^-β with d_i = k + s Σ_{j∈W(i)} a_j²; the window is symmetric, so
  # ∂L/∂a_j = g_j d_j^-β − 2sβ a_j Σ_{i∈W(j)} g_i b_i / d_i. Only x is kept from the forward
  # pass, in its own dtype, and d recomputed: a bf16 step keeps 2 bytes per element instead of
  # 12 (float32 x, d and d^-β).
  wide, denom, inv = _normalizer(x, size, k, scale, beta)
  g = g.astype(wide.dtype)
  back = _channel_window_sum(g * wide * inv / denom, size)
  return ((g * inv - 2 * scale * beta * wide * back).astype(x.dtype),)


_lrn.defvjp(_lrn_fwd, _lrn_bwd)


@functools.partial(jax.jit, static_argnames=("window", "stride", "portable"))
def max_pool(x: jax.Array, *, window: int = 3, stride: int = 2,
             portable: bool = False) -> jax.Array:
  """Max-pooling over the spatial axes of an NHWC array, no padding, paper §3.4.

  window=3, stride=2 is the paper's overlapping pooling; window=2, stride=2 the traditional
  non-overlapping pooling it is compared with (same output size). The gradient goes to the
  first maximum of each window in row-major order, as XLA's select-and-scatter sends it, but
  is computed from window² strided slices summed per stride phase (`_max_pool_bwd`), which is
  faster than select-and-scatter on CPU and on the GPU (docs/performance.md).
  `portable=True` takes the same maximum over window² strided slices instead of a
  `reduce_window` (for exporters: ONNX runtimes pool NCHW arrays only); forward only.
  """
  if x.ndim != 4:
    raise ValueError(f"max_pool takes NHWC arrays, got shape {x.shape}")
  if portable:
    return _max_of_slices(x, window, stride)
  return _max_pool(x, window, stride)


def _window_slices(x, window, stride):
  """(di, dj, the input each output position sees at window offset (di, dj)), row-major."""
  n, h, w, c = x.shape
  oh, ow = (h - window) // stride + 1, (w - window) // stride + 1
  for di in range(window):
    for dj in range(window):
      yield di, dj, jax.lax.slice(x, (0, di, dj, 0),
                                  (n, di + (oh - 1) * stride + 1, dj + (ow - 1) * stride + 1, c),
                                  (1, stride, stride, 1))


def _max_of_slices(x, window, stride):
  return functools.reduce(jnp.maximum, (seen for _, _, seen in _window_slices(x, window, stride)))


def _reduce_max(x, window, stride):
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, window, 1),
                               (1, stride, stride, 1), "VALID")


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _max_pool(x, window, stride):
  return _reduce_max(x, window, stride)


def _max_pool_fwd(x, window, stride):
  y = _max_pool(x, window, stride)
  return y, (x, y)


def _max_pool_bwd(window, stride, residuals, g):
  # Window offset (di, dj) sends output (i, j)'s gradient to input (stride·i + di, stride·j + dj):
  # row phase di % stride, block i + di // stride. Sums per phase at output resolution, then one
  # interleave to input resolution.
  x, y = residuals
  n, h, w, c = x.shape
  oh, ow = y.shape[1:3]
  reach = (window - 1) // stride
  blocks_h, blocks_w = oh + reach, ow + reach
  acc = jnp.promote_types(g.dtype, jnp.float32)
  phases = {}
  taken = jnp.zeros(y.shape, bool)
  for di, dj, seen in _window_slices(x, window, stride):
    first = (seen == y) & ~taken
    taken = taken | first
    (qi, pi), (qj, pj) = divmod(di, stride), divmod(dj, stride)
    part = jnp.pad(jnp.where(first, g, 0).astype(acc),
                   ((0, 0), (qi, reach - qi), (qj, reach - qj), (0, 0)))
    phases[pi, pj] = phases[pi, pj] + part if (pi, pj) in phases else part
  none = jnp.zeros((n, blocks_h, blocks_w, c), acc)
  grid = jnp.stack([jnp.stack([phases.get((pi, pj), none) for pj in range(stride)], axis=3)
                    for pi in range(stride)], axis=2)
  grad = grid.reshape(n, blocks_h * stride, blocks_w * stride, c)[:, :h, :w]
  grad = jnp.pad(grad, ((0, 0), (0, h - grad.shape[1]), (0, w - grad.shape[2]), (0, 0)))
  return (grad.astype(x.dtype),)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def strided_conv_as_space_to_depth(x: jax.Array, kernel: jax.Array, stride: int,
                                   pad: int) -> jax.Array:
  """A VALID convolution of NHWC `x`, zero-padded by `pad` at the bottom/right, with the square
  HWIO `kernel` at `stride`, computed as a stride-1 convolution over stride x stride pixel blocks.

  The same products and sums (the kernel is zero-padded to a multiple of the stride), laid out
  for the GPU's matrix units: conv1's 3 input channels become 48 and its 11x11 stride-4 window
  a 3x3 stride-1 one (docs/performance.md has the speed-up).
  """
  if kernel.shape[0] != kernel.shape[1]:
    raise ValueError(f"strided_conv_as_space_to_depth takes square kernels, got {kernel.shape}")
  n, h, w, c = x.shape
  k, s = kernel.shape[0], stride
  out_h, out_w = (h + pad - k) // s + 1, (w + pad - k) // s + 1
  blocks = -(-k // s)  # the kernel's extent in blocks
  rows, cols = (out_h - 1 + blocks) * s, (out_w - 1 + blocks) * s
  x = jnp.pad(x, ((0, 0), (0, max(rows - h, 0)), (0, max(cols - w, 0)), (0, 0)))[:, :rows, :cols]
  x = x.reshape(n, rows // s, s, cols // s, s, c).transpose(0, 1, 3, 2, 4, 5)
  x = x.reshape(n, rows // s, cols // s, s * s * c)
  kernel = jnp.pad(kernel, ((0, blocks * s - k), (0, blocks * s - k), (0, 0), (0, 0)))
  kernel = kernel.reshape(blocks, s, blocks, s, c, -1).transpose(0, 2, 1, 3, 4, 5)
  kernel = kernel.reshape(blocks, blocks, s * s * c, -1)
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


@functools.partial(jax.jit, static_argnames=("size", "alpha", "beta"))
def response_norm(x: jax.Array, *, size: int = 5, alpha: float = 1e-3,
                  beta: float = 0.75) -> jax.Array:
  """The 2012 code's spatial response normalisation after conv2 (cuda-convnet `rnorm`).

  Not in the paper text (docs/fidelity.md). Each map is normalised by the energy of its own
  size x size neighbourhood, no mean subtracted, the window clipped at the map's edges:
  b = a (1 + α/size² Σ_{size x size window} a²)^-β. `alpha` is the configuration's `scale`,
  which cuda-convnet divides by size² for this layer. NHWC input; float32 inside.
  """
  if x.ndim != 4:
    raise ValueError(f"response_norm takes NHWC arrays, got shape {x.shape}")
  if size < 1 or size % 2 == 0:
    raise ValueError(f"response_norm size must be a positive odd number, got {size}")
  wide = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  half = size // 2
  energy = jax.lax.reduce_window(
      jnp.square(wide), 0.0, jax.lax.add, window_dimensions=(1, size, size, 1),
      window_strides=(1, 1, 1, 1), padding=((0, 0), (half, half), (half, half), (0, 0)))
  return (wide * _inverse_power(1.0 + alpha / size**2 * energy, beta)).astype(x.dtype)
