"""The paper's two non-standard layers as jitted ops.

* `lrn`: local response normalisation across channels (paper §3.3, eq. 1).
* `max_pool`: overlapping max-pooling, z = 3, s = 2 (paper §3.4).

Both take channels-last arrays. They are verified against float64 NumPy references in
`tests/test_ops.py`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx


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
  half = size // 2
  x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  window_sum = jax.lax.reduce_window(
      jnp.square(x32),
      0.0,
      jax.lax.add,
      window_dimensions=(1,) * (x.ndim - 1) + (size,),
      window_strides=(1,) * x.ndim,
      padding=((0, 0),) * (x.ndim - 1) + ((half, half),),
  )
  scale = alpha / size if alpha_over_size else alpha
  return (x32 * (k + scale * window_sum) ** -beta).astype(x.dtype)


@functools.partial(jax.jit, static_argnames=("window", "stride"))
def max_pool(x: jax.Array, *, window: int = 3, stride: int = 2) -> jax.Array:
  """Max-pooling over the spatial axes of an NHWC array, no padding, paper §3.4.

  window=3, stride=2 is the paper's overlapping pooling; window=2, stride=2 the traditional
  non-overlapping pooling it is compared with (same output size).
  """
  if x.ndim != 4:
    raise ValueError(f"max_pool takes NHWC arrays, got shape {x.shape}")
  return nnx.max_pool(x, (window, window), strides=(stride, stride), padding="VALID")


@functools.partial(jax.jit, static_argnames=("size", "k", "alpha", "beta"))
def contrast_norm(
    x: jax.Array, *, size: int = 5, k: float = 1.0, alpha: float = 1e-3, beta: float = 0.75
) -> jax.Array:
  """The 2012 code's spatial contrast normalisation after conv2 (cuda-convnet `cnorm`).

  Not in the paper text; NOTES.md. Over a size x size spatial window (zero outside the map):
  d = a - (Σ a) / size², b = a / (k + α/size² Σ d²)^β. NHWC input; float32 inside.
  """
  if x.ndim != 4:
    raise ValueError(f"contrast_norm takes NHWC arrays, got shape {x.shape}")
  if size < 1 or size % 2 == 0:
    raise ValueError(f"contrast_norm size must be a positive odd number, got {size}")
  x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))

  def window_sum(v):
    half = size // 2
    return jax.lax.reduce_window(
        v, 0.0, jax.lax.add, window_dimensions=(1, size, size, 1),
        window_strides=(1, 1, 1, 1), padding=((0, 0), (half, half), (half, half), (0, 0)))

  mean_diff = x32 - window_sum(x32) / size**2
  denom = k + alpha / size**2 * window_sum(jnp.square(mean_diff))
  return (x32 * denom ** -beta).astype(x.dtype)
