"""conv_same: both CPU paths (Winograd F(4x4, 3x3) gradients and direct)
against XLA's convolution, forward and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from las_jax.ops.conv import conv_same, filter_grad


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
    ((3, 9, 8, 3), (3, 3), 6),  # Narrow: direct.
    ((2, 6, 10, 3), (5, 3), 2),  # Non-square kernel: direct.
    ((1, 4, 5, 2), (1, 1), 3),
    ((2, 9, 11, 4), (3, 3), 5),  # Winograd; partial tiles on both axes.
    ((1, 8, 12, 32), (3, 3), 24),  # Winograd; whole 4x4 tiles.
    ((2, 3, 2, 16), (3, 3), 4),  # Winograd; less than one tile.
    ((2, 6, 10, 16), (5, 3), 2),  # Wide but not 3x3: direct.
  ],
)
def test_forward_and_gradients_match_lax(shape_btfc, kernel_hw, out_ch):
  kx, kw_, kg = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, shape_btfc)
  kernel = jax.random.normal(kw_, (*kernel_hw, shape_btfc[-1], out_ch))
  y_ref, vjp_ref = jax.vjp(reference, x, kernel)
  y, vjp = jax.vjp(conv_same, x, kernel)
  # Winograd's transforms round to ~1e-5 of the values' scale.
  close = lambda got, want: np.testing.assert_allclose(  # noqa: E731
    got, want, rtol=0, atol=2e-5 * np.abs(want).max()
  )
  close(y, y_ref)
  dy = jax.random.normal(kg, y.shape)
  for got, want in zip(vjp(dy), vjp_ref(dy), strict=True):
    close(got, want)


@pytest.mark.parametrize(
  'channels, kernel_hw, winograd',
  [(4, (3, 3), True), (3, (3, 3), False), (16, (3, 5), False)],
)
def test_path_choice(channels, kernel_hw, winograd):
  # CPU: for 3x3 on 4+ channels, XLA's convolution forward only (Winograd
  # gradients), else forward and input gradient; GPU and TPU: XLA's
  # convolution for all three.
  x = jnp.ones((1, 8, 8, channels))
  kernel = jnp.ones((*kernel_hw, channels, 4))
  grads = jax.grad(lambda x, k: jnp.sum(conv_same(x, k) ** 2), (0, 1))
  for platform in ('cpu', 'cuda', 'tpu'):
    exported = jax.export.export(jax.jit(grads), platforms=[platform])(
      x, kernel
    )
    convs = exported.mlir_module().count('stablehlo.convolution')
    want = (1 if winograd else 2) if platform == 'cpu' else 3
    assert convs == want, (platform, convs)


def test_filter_grad_golden_single_tap():
  # y[t, f] = sum_ij x[t + i - 1, f + j - 1] w[i, j] (padding 1), so with
  # x = 1 only at (1, 1) and dy = 1 only at (0, 2), dW[i, j] = x[i - 1,
  # j + 1]: only tap (2, 0) is 1.
  x = jnp.zeros((1, 3, 3, 1)).at[0, 1, 1, 0].set(1.0)
  dy = jnp.zeros((1, 3, 3, 1)).at[0, 0, 2, 0].set(1.0)
  want = np.zeros((3, 3, 1, 1))
  want[2, 0] = 1.0
  np.testing.assert_array_equal(filter_grad(x, dy, 3, 3), want)


def test_winograd_golden_single_tap_and_padding():
  # As test_filter_grad_golden_single_tap, on the Winograd path: only
  # dW[2, 0] of channel pair (3, 1) is 1. Appending zero frames (padding)
  # leaves the outputs of the original frames as they were.
  x = jnp.zeros((1, 3, 3, 16)).at[0, 1, 1, 3].set(1.0)
  dy = jnp.zeros((1, 3, 3, 2)).at[0, 0, 2, 1].set(1.0)
  kernel = jax.random.normal(jax.random.key(1), (3, 3, 16, 2))
  y, vjp = jax.vjp(conv_same, x, kernel)
  want = np.zeros((3, 3, 16, 2))
  want[2, 0, 3, 1] = 1.0
  np.testing.assert_allclose(vjp(dy)[1], want, atol=1e-6)
  # y[t, f] = kernel[2 - t, 2 - f] around the single input at (1, 1).
  np.testing.assert_allclose(y[0, :, :, 0], kernel[::-1, ::-1, 3, 0], atol=1e-6)
  padded = jnp.pad(x, ((0, 0), (0, 6), (0, 9), (0, 0)))
  np.testing.assert_allclose(conv_same(padded, kernel)[:, :3, :3], y, atol=1e-6)


def test_jit_and_even_kernel_error():
  x = jnp.ones((1, 4, 4, 2))
  kernel = jnp.ones((3, 3, 2, 1))
  grad = jax.jit(jax.grad(lambda k: jnp.sum(conv_same(x, k) ** 2)))(kernel)
  want = jax.grad(lambda k: jnp.sum(reference(x, k) ** 2))(kernel)
  np.testing.assert_allclose(grad, want, rtol=1e-5)
  with pytest.raises(ValueError, match='odd'):
    conv_same(x, jnp.ones((2, 3, 2, 1)))
