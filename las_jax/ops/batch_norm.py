"""Training-mode masked batch norm + activation, with a backward pass fit
for XLA:CPU.

`masked_batch_norm` normalizes over the valid (mask = 1) frames of a batch,
summing counts and moments across the devices of `axis_name` when given
(synced batch norm), and applies an activation that maps 0 to 0; frames
with mask 0 come out zero. The model around it (`models/masking.py`)
keeps the running statistics.

On CPU it is `masked_batch_norm_cpu`, whose backward pass is written by
hand: autodiff kept about ten activation-sized temporaries per layer alive
(the centred input, masks, the activation's derivative); this one reads x
and dy twice and writes dx once. GPU and TPU take
`masked_batch_norm_reference`, differentiated by JAX.

Statistics and normalization are computed in float32 whatever the input's
dtype (bfloat16 under mixed precision); the output has the input's dtype.
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

Activation = Callable[[jax.Array], jax.Array]


def _psum(x: jax.Array, axis_name: str | None) -> jax.Array:
  """Sums over the devices of `axis_name` (identity without one)."""
  return x if axis_name is None else lax.psum(x, axis_name)


def _batch_stats(x, mask, axis_name):
  """(count, mean, biased var) over valid frames, summed across devices."""
  axes = tuple(range(x.ndim - 1))
  # Values per channel: valid frames times the other (e.g. freq) size.
  inner = x.size // (x.shape[-1] * mask.size)
  count = jnp.maximum(_psum(jnp.sum(mask) * inner, axis_name), 1.0)
  mean = _psum(jnp.sum(x * mask, axis=axes), axis_name) / count
  sq = jnp.sum(jnp.square((x - mean) * mask), axis=axes)
  return count, mean, _psum(sq, axis_name) / count


def affine(x, scale, bias, mean, rstd):
  """(x - mean) * rstd * scale + bias as one multiply-add per element."""
  a = scale * rstd
  return x * a + (bias - mean * a)


def _normalize(x_in, mask, scale, bias, epsilon, axis_name, activation):
  """Forward pass: (outputs, residuals of the CPU backward pass)."""
  x = x_in.astype(jnp.float32)
  count, mean, var = _batch_stats(x, mask, axis_name)
  rstd = lax.rsqrt(var + epsilon)
  y = activation(affine(x, scale, bias, mean, rstd)) * mask
  outputs = (y.astype(x_in.dtype), count, mean, var)
  return outputs, (x_in, mask, scale, bias, count, mean, rstd)


def masked_batch_norm_reference(
  x: jax.Array,
  mask: jax.Array,
  scale: jax.Array,
  bias: jax.Array,
  epsilon: float,
  axis_name: str | None,
  activation: Activation,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """`masked_batch_norm` differentiated by JAX."""
  return _normalize(x, mask, scale, bias, epsilon, axis_name, activation)[0]


def masked_batch_norm_cpu(
  x: jax.Array,
  mask: jax.Array,
  scale: jax.Array,
  bias: jax.Array,
  epsilon: float,
  axis_name: str | None,
  activation: Activation,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """`masked_batch_norm` with the backward pass of the module doc."""
  with jax.named_scope('masked_batch_norm_cpu'):  # Names its ops.
    return _masked_batch_norm_vjp(
      x, mask, scale, bias, epsilon, axis_name, activation
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _masked_batch_norm_vjp(x, mask, scale, bias, epsilon, axis_name, act):
  return _normalize(x, mask, scale, bias, epsilon, axis_name, act)[0]


def _cpu_bwd(epsilon, axis_name, activation, residuals, cotangents):
  del epsilon
  x_in, mask, scale, bias, count, mean, rstd = residuals
  x = x_in.astype(jnp.float32)
  # The statistics feed running averages only.
  dy = cotangents[0].astype(jnp.float32)
  _, act_vjp = jax.vjp(activation, affine(x, scale, bias, mean, rstd))
  (g,) = act_vjp(dy * mask)
  xhat = (x - mean) * rstd
  axes = tuple(range(x.ndim - 1))
  dbias = jnp.sum(g, axis=axes)
  dscale = jnp.sum(g * xhat, axis=axes)
  # The statistics are the global batch's, so their gradient terms are too.
  mean_g = _psum(dbias, axis_name) / count
  mean_gx = _psum(dscale, axis_name) / count
  dx = scale * rstd * (g - (mean_g + xhat * mean_gx) * mask)
  return dx.astype(x_in.dtype), jnp.zeros_like(mask), dscale, dbias


_masked_batch_norm_vjp.defvjp(_normalize, _cpu_bwd)


def masked_batch_norm(
  x: jax.Array,
  mask: jax.Array,
  scale: jax.Array,
  bias: jax.Array,
  *,
  epsilon: float,
  axis_name: str | None,
  activation: Activation,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """activation(batch norm of x) over valid frames, and its statistics.

  Args:
    x: [B, ..., C] input, channels last.
    mask: 1.0 on valid frames, 0.0 on padding, broadcastable to x.
    scale, bias: [C] float32 affine parameters.
    epsilon: added to the variance.
    axis_name: mesh axis whose devices share the statistics, or None.
    activation: maps 0 to 0 (padding stays zero).

  Returns:
    `(y, count, mean, var)`: y shaped and typed like x, zero where mask
    is 0; the valid-value count, mean and biased variance per channel
    (float32, over all devices of `axis_name`).
  """
  static = (epsilon, axis_name, activation)
  return lax.platform_dependent(
    x,
    mask,
    scale,
    bias,
    cpu=lambda *arrays: masked_batch_norm_cpu(*arrays, *static),
    default=lambda *arrays: masked_batch_norm_reference(*arrays, *static),
  )
