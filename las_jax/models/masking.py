"""Length masks and a batch norm whose statistics ignore padded frames.

Every module of `las_jax.models` keeps one invariant: frames at or past an
utterance's length are exactly zero on the way out, so an utterance's
outputs never depend on how much padding its batch carries.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from las_jax.ops.batch_norm import affine, masked_batch_norm


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
  their gradients are then one hand-written pass on CPU
  (`las_jax.ops.batch_norm`). Statistics are float32; the output has the
  input's dtype.
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
      x = x_BxTxC.astype(jnp.float32)
      y = activation(affine(x, scale, bias, self.mean[...], rstd)) * mask
      return y.astype(x_BxTxC.dtype)
    y, count, mean, var = masked_batch_norm(
      x_BxTxC,
      mask,
      scale,
      bias,
      epsilon=self.epsilon,
      axis_name=self.axis_name,
      activation=activation,
    )
    unbiased = var * count / jnp.maximum(count - 1.0, 1.0)
    m = self.momentum
    self.mean[...] = (1 - m) * self.mean[...] + m * mean
    self.var[...] = (1 - m) * self.var[...] + m * unbiased
    return y
