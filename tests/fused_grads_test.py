"""Hand-written gradients equal autodiff's references.

`MaskedBatchNorm` with a fused activation, the 2x2 max pool (VGG), the
LSTM recurrence (listener) and `loop_matmul` (speller) have
custom VJPs for speed on CPU; here each is checked against autodiff of a
plain formula of the same function, with padded utterances in the batch
where lengths apply.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from las_jax.models.extractors import ACTIVATIONS, _max_pool_2x2
from las_jax.models.masking import MaskedBatchNorm, sequence_mask

LENGTHS = jnp.array([9, 6, 3], jnp.int32)


def _reference_norm(x, lengths, scale, bias, activation, eps=1e-5):
  """Masked batch norm + activation, by autodiff-friendly jnp ops."""
  mask = sequence_mask(lengths, x.shape[1])[:, :, None, None]
  n = jnp.sum(mask) * x.shape[2]
  mean = jnp.sum(jnp.where(mask, x, 0.0), axis=(0, 1, 2)) / n
  var = jnp.sum(jnp.where(mask, (x - mean) ** 2, 0.0), axis=(0, 1, 2)) / n
  y = (x - mean) / jnp.sqrt(var + eps) * scale + bias
  return jnp.where(mask, activation(y), 0.0)


@pytest.mark.parametrize('name', ['hardtanh', 'relu', 'elu'])
def test_batch_norm_gradients_match_autodiff(name):
  activation = ACTIVATIONS[name]
  k = jax.random.split(jax.random.key(0), 4)
  x = 4.0 * jax.random.normal(k[0], (3, 9, 4, 5)) + 1.0
  scale = 1.0 + 0.5 * jax.random.normal(k[1], (5,))
  bias = jax.random.normal(k[2], (5,))
  cotangent = jax.random.normal(k[3], x.shape)
  bn = MaskedBatchNorm(5)
  bn.scale[...], bn.bias[...] = scale, bias
  graphdef, state = nnx.split(bn)

  def fused(x, state):
    module = nnx.merge(graphdef, state)  # A fresh module in this trace.
    y = module(x, LENGTHS, train=True, activation=activation)
    return jnp.sum(y * cotangent)

  def reference(x, scale, bias):
    y = _reference_norm(x, LENGTHS, scale, bias, activation)
    return jnp.sum(y * cotangent)

  dx, dstate = jax.grad(fused, argnums=(0, 1))(x, state)
  got = dx, dstate['scale'][...], dstate['bias'][...]
  want = jax.grad(reference, argnums=(0, 1, 2))(x, scale, bias)
  for g, w in zip(got, want, strict=True):
    np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-5)
  # Padded frames get no gradient.
  assert not np.any(np.asarray(got[0])[1, 6:])
  # The forward pass is the reference's too.
  np.testing.assert_allclose(
    bn(x, LENGTHS, train=True, activation=activation),
    _reference_norm(x, LENGTHS, scale, bias, activation),
    rtol=1e-5,
    atol=1e-5,
  )


def test_batch_norm_eval_uses_running_statistics():
  bn = MaskedBatchNorm(2)
  bn.mean[...], bn.var[...] = jnp.array([1.0, -1.0]), jnp.array([4.0, 0.25])
  x = jnp.full((1, 2, 2), 3.0)
  y = bn(x, jnp.array([1]), train=False, activation=ACTIVATIONS['relu'])
  np.testing.assert_allclose(
    y[0, 0], [2.0 / np.sqrt(4 + 1e-5), 4.0 / np.sqrt(0.25 + 1e-5)], rtol=1e-6
  )
  np.testing.assert_array_equal(y[0, 1], [0.0, 0.0])


def test_max_pool_gradient_matches_autodiff_without_ties():
  # [B, F, T, C] with time (9 frames, floor mode drops the last) on axis 2.
  x = jax.random.normal(jax.random.key(1), (3, 6, 9, 2))
  cotangent = jax.random.normal(jax.random.key(2), (3, 3, 4, 2))

  def reference(x):
    y = jnp.max(x[:, :, :8].reshape(3, 3, 2, 4, 2, 2), axis=(2, 4))
    mask = sequence_mask(LENGTHS // 2, 4)[:, None, :, None]
    return jnp.sum(jnp.where(mask, y, 0.0) * cotangent)

  got = jax.grad(lambda x: jnp.sum(_max_pool_2x2(x, LENGTHS)[0] * cotangent))
  np.testing.assert_allclose(got(x), jax.grad(reference)(x), rtol=1e-6)


def test_max_pool_gradient_goes_to_one_tap_on_ties():
  # Hardtanh outputs tie often (at 0 and 20): each window passes its
  # output gradient to exactly one input, the first maximal tap.
  x = jnp.zeros((1, 2, 2, 1)).at[0, 1, 1, 0].set(-1.0)
  grad = jax.grad(lambda x: jnp.sum(_max_pool_2x2(x, jnp.array([2]))[0] * 3.0))(
    x
  )
  np.testing.assert_array_equal(grad[0, :, :, 0], [[3.0, 0.0], [0.0, 0.0]])


def test_vgg_block_trains_under_jit_with_finite_gradients():
  # The fused pieces inside nnx.jit + nnx.grad, as the train step uses them.
  from las_jax.models.extractors import VGGExtractor

  ext = VGGExtractor(8, channels=(4, 8), rngs=nnx.Rngs(0))
  feats = jax.random.normal(jax.random.key(3), (3, 9, 8))

  @nnx.jit
  def grads(ext):
    return nnx.grad(
      lambda e: jnp.sum(jnp.sin(e(feats, LENGTHS, train=True)[0]))
    )(ext)

  leaves = jax.tree.leaves(nnx.state(grads(ext), nnx.Param))
  assert all(np.all(np.isfinite(g)) for g in leaves)
  assert all(np.any(g != 0) for g in leaves)


def test_loop_matmul_gradients_match_autodiff():
  # loop_matmul.matmul takes its input gradient from a w.T formed once,
  # outside the scan; inside a scan it must equal autodiff of x @ w.
  from las_jax.ops.loop_matmul import matmul

  k = jax.random.split(jax.random.key(4), 3)
  h0 = jax.random.normal(k[0], (3, 5))
  w = 0.5 * jax.random.normal(k[1], (5, 5))
  xs = jax.random.normal(k[2], (4, 3, 5))

  def run(matmul, h0, w):
    def body(h, x):
      h = jnp.tanh(matmul(h, w) + x)
      return h, h

    return jnp.sum(jnp.sin(jax.lax.scan(body, h0, xs)[1]))

  fused = jax.jit(
    jax.grad(
      lambda h0, w: run(matmul, h0, w),
      argnums=(0, 1),
    )
  )
  plain = jax.grad(lambda h0, w: run(jnp.matmul, h0, w), argnums=(0, 1))
  for got, want in zip(fused(h0, w), plain(h0, w), strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # Leading axes beyond one (the output layer after the scan).
  x3 = xs.reshape(2, 6, 5)

  def grads(fn):
    return jax.grad(lambda x, w: jnp.sum(jnp.sin(fn(x, w))), (0, 1))(x3, w)

  for got, want in zip(grads(matmul), grads(jnp.matmul), strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_lstm_recurrence_gradients_match_autodiff():
  # The listener's LSTM scan has a hand-written backward pass (dW_hh as
  # one matmul after the reverse loop); autodiff of the plain scan is the
  # reference, for both directions at once.
  from las_jax.ops.lstm import _lstm_forward, lstm_recurrence

  k = jax.random.split(jax.random.key(6), 3)
  xp = jax.random.normal(k[0], (6, 2, 3, 16))  # [T, D, B, 4H], H = 4
  w_hh = 0.5 * jax.random.normal(k[1], (2, 4, 16))
  cotangent = jax.random.normal(k[2], (6, 2, 3, 4))

  def loss(fn, xp, w_hh):
    return jnp.sum(fn(xp, w_hh) * cotangent)

  got = jax.jit(jax.grad(lambda *a: loss(lstm_recurrence, *a), (0, 1)))
  want = jax.grad(
    lambda *a: loss(lambda x, w: _lstm_forward(x, w)[0], *a), (0, 1)
  )
  for g, w in zip(got(xp, w_hh), want(xp, w_hh), strict=True):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
