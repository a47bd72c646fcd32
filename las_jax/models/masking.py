"""Length masks and a batch norm whose statistics ignore padded frames.

Every module of `las_jax.models` keeps one invariant: frames at or past an
utterance's length are exactly zero on the way out, so an utterance's
outputs never depend on how much padding its batch carries.
"""

import jax
import jax.numpy as jnp
from flax import nnx


def sequence_mask(lengths_B: jax.Array, max_len: int) -> jax.Array:
  """Returns bool [B, max_len], True on frames before each length."""
  return jnp.arange(max_len)[None, :] < lengths_B[:, None]


def zero_padding(x_BxTx: jax.Array, lengths_B: jax.Array) -> jax.Array:
  """Zeroes frames t >= lengths_B[b] of a batch-major, time-second array."""
  mask = sequence_mask(lengths_B, x_BxTx.shape[1])
  mask = mask.reshape(mask.shape + (1,) * (x_BxTx.ndim - 2))
  return jnp.where(mask, x_BxTx, 0.0)


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

  def _sum(self, x: jax.Array) -> jax.Array:
    """Sums over the devices of `axis_name` (identity without one)."""
    return x if self.axis_name is None else jax.lax.psum(x, self.axis_name)

  def __call__(
    self, x_BxTxC: jax.Array, lengths_B: jax.Array, *, train: bool
  ) -> jax.Array:
    """Normalizes x ([B, T, ..., C]); padded frames come back zero."""
    if train:
      mask = sequence_mask(lengths_B, x_BxTxC.shape[1]).astype(x_BxTxC.dtype)
      mask = mask.reshape(mask.shape + (1,) * (x_BxTxC.ndim - 2))
      axes = tuple(range(x_BxTxC.ndim - 1))
      # Frames per channel: valid frames times the inner (e.g. freq) size.
      inner = x_BxTxC[0, 0].size // x_BxTxC.shape[-1]
      count = jnp.maximum(self._sum(jnp.sum(mask) * inner), 1.0)
      mean = self._sum(jnp.sum(x_BxTxC * mask, axis=axes)) / count
      sq = jnp.sum(jnp.square((x_BxTxC - mean) * mask), axis=axes)
      var = self._sum(sq) / count
      unbiased = var * count / jnp.maximum(count - 1.0, 1.0)
      m = self.momentum
      self.mean[...] = (1 - m) * self.mean[...] + m * mean
      self.var[...] = (1 - m) * self.var[...] + m * unbiased
    else:
      mean, var = self.mean[...], self.var[...]
    y = (x_BxTxC - mean) * jax.lax.rsqrt(var + self.epsilon)
    y = y * self.scale[...] + self.bias[...]
    return zero_padding(y, lengths_B)
