"""Length masks and a batch norm whose statistics ignore padded frames.

Every module of `las_jax.models` keeps one invariant: frames at or past an
utterance's length are exactly zero on the way out, so an utterance's
outputs never depend on how much padding its batch carries.
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx


def sequence_mask(lengths_B: jax.Array, max_len: int) -> jax.Array:
  """Returns bool [B, max_len], True on frames before each length."""
  return jnp.arange(max_len)[None, :] < lengths_B[:, None]


def time_mask(
  lengths_B: jax.Array, shape: tuple[int, ...], time_axis: int = 1
) -> jax.Array:
  """Bool mask broadcastable to a batch-major array of `shape` whose time
  axis is `time_axis`: True on frames before each length."""
  mask_BxT = sequence_mask(lengths_B, shape[time_axis])
  return jnp.expand_dims(
    mask_BxT,
    [a for a in range(1, len(shape)) if a != time_axis],
  )


def zero_padding(
  x_BxTx: jax.Array, lengths_B: jax.Array, time_axis: int = 1
) -> jax.Array:
  """Zeroes frames t >= lengths_B[b] of a batch-major array along its
  `time_axis` (the second axis unless told)."""
  return jnp.where(time_mask(lengths_B, x_BxTx.shape, time_axis), x_BxTx, 0.0)


def _identity(x: jax.Array) -> jax.Array:
  return x


def _psum(x: jax.Array, axis_name: str | None) -> jax.Array:
  """Sums over the devices of `axis_name` (identity without one)."""
  return x if axis_name is None else jax.lax.psum(x, axis_name)


def _batch_stats(x, mask, axis_name):
  """(count, mean, biased var) over valid frames, summed across devices."""
  axes = tuple(range(x.ndim - 1))
  # Values per channel: valid frames times the other (e.g. freq) size.
  inner = x.size // (x.shape[-1] * mask.size)
  count = jnp.maximum(_psum(jnp.sum(mask) * inner, axis_name), 1.0)
  mean = _psum(jnp.sum(x * mask, axis=axes), axis_name) / count
  sq = jnp.sum(jnp.square((x - mean) * mask), axis=axes)
  return count, mean, _psum(sq, axis_name) / count


def _affine(x, scale, bias, mean, rstd):
  """(x - mean) * rstd * scale + bias as one multiply-add per element."""
  a = scale * rstd
  return x * a + (bias - mean * a)


def _normalize(x, mask, scale, bias, epsilon, axis_name, activation):
  count, mean, var = _batch_stats(x, mask, axis_name)
  rstd = jax.lax.rsqrt(var + epsilon)
  y = activation(_affine(x, scale, bias, mean, rstd)) * mask
  return (y, count, mean, var), (x, mask, scale, bias, count, mean, rstd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _train_norm(x, mask, scale, bias, epsilon, axis_name, activation):
  """(activation(batch norm of x) * mask, count, batch mean, batch var)."""
  outputs, _ = _normalize(x, mask, scale, bias, epsilon, axis_name, activation)
  return outputs


def _train_norm_bwd(epsilon, axis_name, activation, residuals, cotangents):
  # Written by hand: autodiff kept about ten activation-sized temporaries
  # per layer alive (centred input, masks, the activation's derivative);
  # this reads x and dy twice and writes dx once.
  del epsilon
  x, mask, scale, bias, count, mean, rstd = residuals
  dy = cotangents[0]  # The statistics feed running averages only.
  _, act_vjp = jax.vjp(activation, _affine(x, scale, bias, mean, rstd))
  (g,) = act_vjp(dy * mask)
  xhat = (x - mean) * rstd
  axes = tuple(range(x.ndim - 1))
  dbias = jnp.sum(g, axis=axes)
  dscale = jnp.sum(g * xhat, axis=axes)
  # The statistics are the global batch's, so their gradient terms are too.
  mean_g = _psum(dbias, axis_name) / count
  mean_gx = _psum(dscale, axis_name) / count
  dx = scale * rstd * (g - (mean_g + xhat * mean_gx) * mask)
  return dx, jnp.zeros_like(mask), dscale, dbias


_train_norm.defvjp(_normalize, _train_norm_bwd)


class MaskedBatchNorm(nnx.Module):
  """Batch norm over the last axis whose statistics skip padded frames.

  PyTorch's BatchNorm (KoSpeech's) averages over padding zeros too, so an
  utterance's training-time output depends on its batch's padding. Here
  the mean and variance are taken over valid frames only, which makes the
  training forward pass padding-invariant as well as the eval one.
  Running statistics follow PyTorch: momentum 0.1, unbiased variance.
  With `axis_name` set (training under shard_map/pmap over that axis), the
  masked sums and counts are summed across devices, so the statistics are
  those of the global batch and N devices compute what 1 device does.
  An activation that maps 0 to 0 can be fused into the call; in training
  its gradient and the normalization's are then one hand-written pass.
  """

  def __init__(
    self,
    num_features: int,
    *,
    momentum: float = 0.1,
    epsilon: float = 1e-5,
    axis_name: str | None = None,
  ):
    self.momentum = momentum
    self.epsilon = epsilon
    self.axis_name = axis_name
    self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
    self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
    self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
    self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))

  def __call__(
    self,
    x_BxTxC: jax.Array,
    lengths_B: jax.Array,
    *,
    train: bool,
    activation: Callable[[jax.Array], jax.Array] = _identity,
    time_axis: int = 1,
  ) -> jax.Array:
    """activation(normalized x) ([B, ..., C], time on `time_axis`);
    padded frames are zero.

    `activation` must map 0 to 0 (padding stays zero).
    """
    mask = time_mask(lengths_B, x_BxTxC.shape, time_axis).astype(x_BxTxC.dtype)
    scale, bias = self.scale[...], self.bias[...]
    if not train:
      rstd = jax.lax.rsqrt(self.var[...] + self.epsilon)
      y = _affine(x_BxTxC, scale, bias, self.mean[...], rstd)
      return activation(y) * mask
    y, count, mean, var = _train_norm(
      x_BxTxC, mask, scale, bias, self.epsilon, self.axis_name, activation
    )
    unbiased = var * count / jnp.maximum(count - 1.0, 1.0)
    m = self.momentum
    self.mean[...] = (1 - m) * self.mean[...] + m * mean
    self.var[...] = (1 - m) * self.var[...] + m * unbiased
    return y
