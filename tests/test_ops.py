"""LRN (§3.3), max-pooling (§3.4) and the 2012 code's spatial response norm against float64
NumPy loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alexnet_jax import ops

K, ALPHA, BETA, SIZE = 2.0, 1e-4, 0.75, 5


def lrn_reference(a, size=SIZE, k=K, alpha=ALPHA, beta=BETA, alpha_over_size=False):
  """Eq. 1 of the paper, one channel at a time, sum bounds clipped at 0 and N-1."""
  a = np.asarray(a, np.float64)
  n_channels = a.shape[-1]
  scale = alpha / size if alpha_over_size else alpha
  out = np.empty_like(a)
  for i in range(n_channels):
    lo, hi = max(0, i - size // 2), min(n_channels - 1, i + size // 2)
    s = sum(a[..., j] ** 2 for j in range(lo, hi + 1))
    out[..., i] = a[..., i] / (k + scale * s) ** beta
  return out


def lrn_grad_reference(a, g, size=SIZE, k=K, alpha=ALPHA, beta=BETA, alpha_over_size=False):
  """Σ_i g_i ∂b_i/∂a_j with ∂b_i/∂a_j = δ_ij d_i^-β - 2αβ a_i a_j d_i^(-β-1), j in window(i)."""
  a, g = np.asarray(a, np.float64), np.asarray(g, np.float64)
  n_channels = a.shape[-1]
  scale = alpha / size if alpha_over_size else alpha
  window = [range(max(0, i - size // 2), min(n_channels - 1, i + size // 2) + 1)
            for i in range(n_channels)]
  d = np.stack([k + scale * sum(a[..., j] ** 2 for j in window[i]) for i in range(n_channels)], -1)
  grad = np.zeros_like(a)
  for i in range(n_channels):
    grad[..., i] += g[..., i] * d[..., i] ** -beta
    for j in window[i]:
      grad[..., j] -= (2 * scale * beta * g[..., i] * a[..., i] * a[..., j]
                       * d[..., i] ** (-beta - 1))
  return grad


def torch_lrn_reference(a, size, alpha, beta, k):
  """PyTorch `LocalResponseNorm` as documented:
  b_c = a_c (k + α/n Σ_{c'=max(0,c-n/2)}^{min(N-1,c+n/2)} a_c'²)^-β."""
  a = np.asarray(a, np.float64)
  n_channels = a.shape[-1]
  padded = np.concatenate([np.zeros(a.shape[:-1] + (size // 2,)), a ** 2,
                           np.zeros(a.shape[:-1] + ((size - 1) // 2,))], axis=-1)
  s = np.stack([padded[..., c:c + size].sum(-1) for c in range(n_channels)], -1)
  return a / (k + alpha / size * s) ** beta


def _activations(shape, seed=0, scale=30.0):
  # Large enough that the normaliser differs from k^-β: ReLU maps scaled like conv outputs.
  return np.abs(np.random.default_rng(seed).normal(size=shape)) * scale


@pytest.mark.parametrize("alpha_over_size", [False, True])
@pytest.mark.parametrize("shape", [(2, 3, 3, 7), (4, 3), (2, 5, 2), (1, 2, 2, 96)])
def test_lrn_forward_and_grad_float32(shape, alpha_over_size):
  a = _activations(shape)
  g = np.random.default_rng(1).normal(size=shape)
  kw = dict(alpha_over_size=alpha_over_size)
  out, vjp = jax.vjp(lambda x: ops.lrn(x, **kw), jnp.asarray(a, jnp.float32))
  (grad,) = vjp(jnp.asarray(g, jnp.float32))
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out, lrn_reference(a, **kw), rtol=2e-6, atol=1e-6)
  np.testing.assert_allclose(grad, lrn_grad_reference(a, g, **kw), rtol=2e-5, atol=1e-6)


def test_lrn_normalises_more_at_the_channel_edges_as_the_clipped_window_says():
  # With equal activations an edge channel sums 3 squares, its neighbour 4, the centre 5.
  a = np.full((1, 7), 40.0)
  out = np.asarray(ops.lrn(jnp.asarray(a, jnp.float32)))[0]
  d = [K + ALPHA * 40.0 ** 2 * n for n in (3, 4, 5, 5, 5, 4, 3)]
  np.testing.assert_allclose(out, 40.0 * np.asarray(d) ** -BETA, rtol=1e-6)
  assert out[0] > out[1] > out[3]


@pytest.mark.parametrize("alpha_over_size", [False, True])
def test_lrn_bfloat16_computes_in_float32_and_returns_bfloat16(alpha_over_size):
  a = jnp.asarray(_activations((2, 4, 4, 9)), jnp.bfloat16)
  g = jnp.asarray(np.random.default_rng(2).normal(size=a.shape), jnp.bfloat16)
  kw = dict(alpha_over_size=alpha_over_size)
  out, vjp = jax.vjp(lambda x: ops.lrn(x, **kw), a)
  (grad,) = vjp(g)
  assert out.dtype == jnp.bfloat16 and grad.dtype == jnp.bfloat16
  a64, g64 = np.asarray(a, np.float64), np.asarray(g, np.float64)
  np.testing.assert_allclose(np.asarray(out, np.float64), lrn_reference(a64, **kw), rtol=8e-3)
  np.testing.assert_allclose(np.asarray(grad, np.float64), lrn_grad_reference(a64, g64, **kw),
                             rtol=2e-2, atol=2e-3)


@pytest.mark.parametrize("size", [3, 5])
def test_alpha_over_size_matches_pytorch_local_response_norm(size):
  a = _activations((2, 3, 3, 11), seed=3)
  ours = ops.lrn(jnp.asarray(a, jnp.float32), size=size, k=1.0, alpha=1e-4, beta=0.75,
                 alpha_over_size=True)
  np.testing.assert_allclose(ours, torch_lrn_reference(a, size, 1e-4, 0.75, 1.0), rtol=2e-6)
  paper = ops.lrn(jnp.asarray(a, jnp.float32), size=size, k=1.0, alpha=1e-4, beta=0.75)
  assert not np.allclose(paper, ours, rtol=1e-4)  # the conventions really differ


def test_the_norms_reject_bad_sizes_and_take_the_smallest_window():
  """A window of one channel (one pixel for the response norm) is the value alone:
  b = a / (k + α a²)^β, and a (1 + α a²)^-β; rank 2 (a batch of vectors) has channels.
  Mutations: `size <= 1`, `ndim <= 2` refused; the size checks joined by `and` -> red."""
  for size in (4, 0, -1):
    with pytest.raises(ValueError, match="odd"):
      ops.lrn(jnp.ones((2, 8)), size=size)
    with pytest.raises(ValueError, match="odd"):
      ops.response_norm(jnp.ones((1, 4, 4, 2)), size=size)
  with pytest.raises(ValueError, match="rank"):
    ops.lrn(jnp.ones((8,)))
  a = np.random.default_rng(0).normal(0, 3, (2, 8)).astype(np.float32)
  np.testing.assert_allclose(ops.lrn(jnp.asarray(a), size=1, k=2.0, alpha=1e-2, beta=0.75),
                             a / (2.0 + 1e-2 * a ** 2) ** 0.75, rtol=1e-6)
  a = a.reshape(1, 2, 4, 2)
  np.testing.assert_allclose(ops.response_norm(jnp.asarray(a), size=1, alpha=1e-2, beta=0.75),
                             a * (1.0 + 1e-2 * a ** 2) ** -0.75, rtol=1e-6)


def max_pool_reference(x, window, stride):
  n, h, w, c = x.shape
  oh, ow = (h - window) // stride + 1, (w - window) // stride + 1
  out = np.empty((n, oh, ow, c))
  for i in range(oh):
    for j in range(ow):
      out[:, i, j] = x[:, i * stride:i * stride + window,
                       j * stride:j * stride + window].max((1, 2))
  return out


def max_pool_grad_reference(x, g, window, stride):
  grad = np.zeros_like(x, dtype=np.float64)
  n, oh, ow, c = g.shape
  for b in range(n):
    for i in range(oh):
      for j in range(ow):
        for ch in range(c):
          patch = x[b, i * stride:i * stride + window, j * stride:j * stride + window, ch]
          di, dj = np.unravel_index(np.argmax(patch), patch.shape)
          grad[b, i * stride + di, j * stride + dj, ch] += g[b, i, j, ch]
  return grad


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("window,size,expected", [(3, 13, 6), (2, 12, 6), (3, 55, 27), (3, 27, 13)])
def test_max_pool_forward_and_grad(window, size, expected, dtype):
  rng = np.random.default_rng(window * size)
  x = np.asarray(jnp.asarray(rng.permutation(2 * size * size * 3).reshape(2, size, size, 3)
                             / 8.0, dtype), np.float64)  # distinct values: no argmax ties
  g = rng.normal(size=(2, expected, expected, 3))
  out, vjp = jax.vjp(lambda v: ops.max_pool(v, window=window, stride=2), jnp.asarray(x, dtype))
  (grad,) = vjp(jnp.asarray(g, dtype))
  assert out.shape == (2, expected, expected, 3) and out.dtype == dtype
  np.testing.assert_array_equal(np.asarray(out, np.float64), max_pool_reference(x, window, 2))
  tol = 1e-6 if dtype == jnp.float32 else 2e-2
  np.testing.assert_allclose(np.asarray(grad, np.float64),
                             max_pool_grad_reference(
                                 x, np.asarray(jnp.asarray(g, dtype), np.float64), window, 2),
                             rtol=tol, atol=tol)


@pytest.mark.parametrize("window,stride,size", [(3, 2, (13, 13)), (2, 2, (13, 13)), (3, 1, (7, 7)),
                                                (2, 3, (11, 11)), (3, 3, (10, 10)),
                                                (3, 2, (13, 8)), (2, 3, (7, 11))])
def test_max_pool_gradient_goes_to_the_first_maximum_when_values_tie(window, stride, size):
  # Post-ReLU maps are full of equal values (zeros); the gradient must reach one pixel per
  # window, the first maximum in row-major order, as XLA's select-and-scatter gives it.
  rng = np.random.default_rng(window * 10 + stride)
  x = np.maximum(rng.integers(-3, 3, size=(2, *size, 4)), 0).astype(np.float32)
  out = [(side - window) // stride + 1 for side in size]
  g = rng.normal(size=(2, *out, 4)).astype(np.float32)
  _, vjp = jax.vjp(lambda v: ops.max_pool(v, window=window, stride=stride), jnp.asarray(x))
  (grad,) = vjp(jnp.asarray(g))
  np.testing.assert_allclose(grad, max_pool_grad_reference(x, g, window, stride), rtol=1e-6,
                             atol=1e-6)
  xla = jax.vjp(lambda v: jax.lax.reduce_window(v, -jnp.inf, jax.lax.max, (1, window, window, 1),
                                                 (1, stride, stride, 1), "VALID"),
                jnp.asarray(x))[1]
  np.testing.assert_allclose(grad, xla(jnp.asarray(g))[0], rtol=1e-6, atol=1e-6)


def test_overlapping_pool_windows_share_pixels():
  # One large pixel on a shared row/column of two overlapping 3x3 windows reaches both outputs.
  x = np.zeros((1, 5, 5, 1))
  x[0, 2, 2, 0] = 1.0
  assert np.asarray(ops.max_pool(jnp.asarray(x, jnp.float32)))[0, :, :, 0].sum() == 4
  pooled = ops.max_pool(jnp.asarray(x[:, :4, :4], jnp.float32), window=2)
  assert np.asarray(pooled)[0, :, :, 0].sum() == 1


def response_norm_reference(a, size=5, scale=1e-3, power=0.75):
  """cuda-convnet `rnorm` (the 2012 code's cnorm2a/b), one pixel at a time: b = a·(1 +
  (scale/size²)·Σ_{size x size window} a²)^-pow, the window clipped at the map's edges."""
  a = np.asarray(a, np.float64)
  _, h, w, _ = a.shape
  half, s = size // 2, scale / size ** 2
  d = np.empty_like(a)
  for y in range(h):
    for x in range(w):
      window = a[:, max(0, y - half):y + half + 1, max(0, x - half):x + half + 1]
      d[:, y, x] = 1.0 + s * (window ** 2).sum((1, 2))
  return a * d ** -power, d


def response_norm_grad_reference(a, g, size=5, scale=1e-3, power=0.75):
  """Σ_p g_p ∂b_p/∂a_q, ∂b_p/∂a_q = δ_pq d_p^-β − 2sβ a_p a_q d_p^(-β-1) for q in window(p)."""
  a, g = np.asarray(a, np.float64), np.asarray(g, np.float64)
  _, h, w, _ = a.shape
  half, s = size // 2, scale / size ** 2
  _, d = response_norm_reference(a, size, scale, power)
  grad = g * d ** -power
  coeff = g * a * d ** (-power - 1)
  for y in range(h):
    for x in range(w):  # p = (y, x) spreads to every q of its window
      ys, xs = slice(max(0, y - half), y + half + 1), slice(max(0, x - half), x + half + 1)
      grad[:, ys, xs] -= 2 * s * power * a[:, ys, xs] * coeff[:, y, x][:, None, None]
  return grad


@pytest.mark.parametrize("size,scale,power", [(5, 1e-3, 0.75), (3, 0.5, 0.5), (5, 2.0, 1.3)])
def test_response_norm_matches_the_cuda_convnet_rnorm_formula(size, scale, power):
  a = _activations((2, 6, 7, 3), seed=5)
  out, vjp = jax.vjp(lambda v: ops.response_norm(v, size=size, alpha=scale, beta=power),
                     jnp.asarray(a, jnp.float32))
  np.testing.assert_allclose(out, response_norm_reference(a, size, scale, power)[0], rtol=2e-6)
  g = np.random.default_rng(6).normal(size=a.shape)
  (grad,) = vjp(jnp.asarray(g, jnp.float32))
  np.testing.assert_allclose(grad, response_norm_grad_reference(a, g, size, scale, power),
                             rtol=1e-4, atol=1e-6)


def test_response_norm_subtracts_no_local_mean():
  # A flat map: a contrast norm (mean subtracted) would leave it as it is; rnorm divides it
  # by its energy, less at the corners (a clipped 3x3 window) than in the middle (5x5).
  a = np.full((1, 7, 7, 1), 40.0)
  out = np.asarray(ops.response_norm(jnp.asarray(a, jnp.float32)))[0, :, :, 0]
  np.testing.assert_allclose(out[3, 3], 40.0 * (1 + 1e-3 / 25 * 25 * 1600) ** -0.75, rtol=1e-6)
  np.testing.assert_allclose(out[0, 0], 40.0 * (1 + 1e-3 / 25 * 9 * 1600) ** -0.75, rtol=1e-6)
  bf16 = ops.response_norm(jnp.asarray(a, jnp.bfloat16))
  assert bf16.dtype == jnp.bfloat16


@pytest.mark.parametrize("size,k,stride,pad", [((224, 224), 11, 4, 3), ((227, 227), 11, 4, 0),
                                               ((64, 64), 7, 2, 1), ((31, 31), 5, 3, 2),
                                               ((31, 20), 5, 3, 2)])
def test_strided_conv_as_space_to_depth_equals_the_strided_conv(size, k, stride, pad):
  rng = np.random.default_rng(size)
  x = jnp.asarray(rng.normal(size=(2, *size, 3)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(k, k, 3, 8)), jnp.float32)
  direct = jax.lax.conv_general_dilated(x, kernel, (stride, stride), ((0, pad), (0, pad)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
  blocked = ops.strided_conv_as_space_to_depth(x, kernel, stride, pad)
  assert blocked.shape == direct.shape
  np.testing.assert_allclose(blocked, direct, rtol=1e-4, atol=1e-4 * float(jnp.abs(direct).max()))
  grads = [jax.grad(lambda v, w: (f(v, w) ** 2).sum(), argnums=1)(x, kernel) for f in (
      lambda v, w: jax.lax.conv_general_dilated(v, w, (stride, stride), ((0, pad), (0, pad)),
                                                dimension_numbers=("NHWC", "HWIO", "NHWC")),
      lambda v, w: ops.strided_conv_as_space_to_depth(v, w, stride, pad))]
  np.testing.assert_allclose(grads[1], grads[0], rtol=1e-3,
                             atol=1e-3 * float(jnp.abs(grads[0]).max()))
  with pytest.raises(ValueError, match=r"square kernels, got \(5, 3, 3, 8\)"):
    ops.strided_conv_as_space_to_depth(x, kernel[:5, :3], stride, pad)
