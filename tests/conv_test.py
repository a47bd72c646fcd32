"""conv_same: XLA's convolution forward and gradients, matmul filter grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from las_jax.models.conv import conv_same, filter_grad


def reference(x, kernel):
  kh, kw = kernel.shape[:2]
  return lax.conv_general_dilated(
    x,
    kernel,
    (1, 1),
    ((kh // 2, kh // 2), (kw // 2, kw // 2)),
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
  )


@pytest.mark.parametrize(
  'shape_btfc, kernel_hw, out_ch',
  [
    ((2, 7, 6, 1), (3, 3), 4),  # VGG's first layer: one input channel.
    ((3, 9, 8, 5), (3, 3), 6),  # Narrow: dW per time tap.
    ((2, 5, 6, 8), (3, 3), 3),  # Wide (kw * C > 16): dW from P and G.
    ((2, 6, 10, 3), (5, 3), 2),  # Non-square kernel: taps kept apart.
    ((1, 4, 5, 2), (1, 1), 3),
  ],
)
def test_forward_and_gradients_match_lax(shape_btfc, kernel_hw, out_ch):
  kx, kw_, kg = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, shape_btfc)
  kernel = jax.random.normal(kw_, (*kernel_hw, shape_btfc[-1], out_ch))
  y_ref, vjp_ref = jax.vjp(reference, x, kernel)
  y, vjp = jax.vjp(conv_same, x, kernel)
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
  dy = jax.random.normal(kg, y.shape)
  for got, want in zip(vjp(dy), vjp_ref(dy), strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_filter_grad_golden_single_tap():
  # y[t, f] = sum_ij x[t + i - 1, f + j - 1] w[i, j] (padding 1), so with
  # x = 1 only at (1, 1) and dy = 1 only at (0, 2), dW[i, j] = x[i - 1,
  # j + 1]: only tap (2, 0) is 1.
  x = jnp.zeros((1, 3, 3, 1)).at[0, 1, 1, 0].set(1.0)
  dy = jnp.zeros((1, 3, 3, 1)).at[0, 0, 2, 0].set(1.0)
  want = np.zeros((3, 3, 1, 1))
  want[2, 0] = 1.0
  np.testing.assert_array_equal(filter_grad(x, dy, 3, 3), want)


def test_jit_and_even_kernel_error():
  x = jnp.ones((1, 4, 4, 2))
  kernel = jnp.ones((3, 3, 2, 1))
  grad = jax.jit(jax.grad(lambda k: jnp.sum(conv_same(x, k) ** 2)))(kernel)
  want = jax.grad(lambda k: jnp.sum(reference(x, k) ** 2))(kernel)
  np.testing.assert_allclose(grad, want, rtol=1e-5)
  with pytest.raises(ValueError, match='odd'):
    conv_same(x, jnp.ones((2, 3, 2, 1)))
