"""2x2 max pooling (stride 2) with a backward pass fit for XLA:CPU.

`max_pool_2x2` takes the max of each 2x2 window of an even-sized
[B, H, W, C]; its gradient goes wholly to the first tap equal to the max
in row-major order (PyTorch's MaxPool2d choice, on KoSpeech's [F, T]
windows).

On CPU it is `max_pool_2x2_cpu`, elementwise maxima of the four taps with
a hand-written backward pass in one pass: autodiff of the maxima took ~5x
longer (pad and select passes), and `jnp.max` over window axes divides by
the tie count, which gave NaN when XLA recomputed the fused producer with
other rounding. GPU and TPU take `max_pool_2x2_reference`, XLA's
`reduce_window` (its gradient, select-and-scatter with `>=`, also picks
the first maximal tap).
"""

import jax
import jax.numpy as jnp
from jax import lax


def max_pool_2x2_reference(x_BxHxWxC: jax.Array) -> jax.Array:
  """`max_pool_2x2` as `lax.reduce_window`; JAX derives its gradient."""
  return lax.reduce_window(
    x_BxHxWxC,
    -jnp.inf,
    lax.max,
    window_dimensions=(1, 2, 2, 1),
    window_strides=(1, 2, 2, 1),
    padding='VALID',
  )


def _window_taps(x_BxHxWxC):
  """The four taps of each 2x2 window, in row-major order: [B, H/2, W/2, C]
  each (even H, W)."""
  b, h, w, c = x_BxHxWxC.shape
  x = x_BxHxWxC.reshape(b, h // 2, 2, w // 2, 2, c)
  return x[:, :, 0, :, 0], x[:, :, 0, :, 1], x[:, :, 1, :, 0], x[:, :, 1, :, 1]


def _max_of(t00, t01, t10, t11):
  return jnp.maximum(jnp.maximum(t00, t01), jnp.maximum(t10, t11))


def max_pool_2x2_cpu(x_BxHxWxC: jax.Array) -> jax.Array:
  """`max_pool_2x2` with the backward pass of the module doc."""
  with jax.named_scope('max_pool_2x2_cpu'):  # Names its ops.
    return _max_pool_vjp(x_BxHxWxC)


@jax.custom_vjp
def _max_pool_vjp(x_BxHxWxC):
  return _max_of(*_window_taps(x_BxHxWxC))


def _cpu_fwd(x_BxHxWxC):
  return _max_pool_vjp(x_BxHxWxC), x_BxHxWxC


def _cpu_bwd(x_BxHxWxC, dy_BxSxGxC):
  # The max is recomputed here from the same taps, so some tap always
  # equals it; were none to, the last tap takes the gradient.
  taps = _window_taps(x_BxHxWxC)
  m = _max_of(*taps)
  zeros = jnp.zeros_like(dy_BxSxGxC)
  taken = jnp.zeros(m.shape, bool)
  grads = []
  for tap in taps[:3]:
    first = (tap == m) & ~taken
    grads.append(jnp.where(first, dy_BxSxGxC, zeros))
    taken = taken | first
  grads.append(jnp.where(taken, zeros, dy_BxSxGxC))
  b, s, g, c = dy_BxSxGxC.shape
  dx = jnp.stack(
    [jnp.stack(grads[:2], axis=3), jnp.stack(grads[2:], axis=3)], axis=2
  )
  return (dx.reshape(b, 2 * s, 2 * g, c),)


_max_pool_vjp.defvjp(_cpu_fwd, _cpu_bwd)


def max_pool_2x2(x_BxHxWxC: jax.Array) -> jax.Array:
  """Max over each 2x2 window of an even-sized [B, H, W, C]: [B, H/2, W/2,
  C]; `max_pool_2x2_cpu` on CPU, else `max_pool_2x2_reference`."""
  return lax.platform_dependent(
    x_BxHxWxC, cpu=max_pool_2x2_cpu, default=max_pool_2x2_reference
  )
