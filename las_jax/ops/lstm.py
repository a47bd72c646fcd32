"""The LSTM recurrence over time, with a backward pass fit for XLA:CPU.

`lstm_recurrence(xp, w_hh)` runs an LSTM from zero state over precomputed
input projections `xp` (biases included), gates in PyTorch's order
(i, f, g, o); D independent directions or stacks share one scan.

On CPU it is `lstm_recurrence_cpu`: autodiff of the scan adds each step's
[D, H, 4H] outer product into the W_hh gradient inside the reverse loop
(a full read-modify-write of W_hh per step); the hand-written backward
pass only carries dh and dc through the reverse loop and takes dW_hh as
one matmul over all steps afterwards. GPU and TPU take
`lstm_recurrence_reference`, the scan differentiated by JAX.

Mixed precision: `w_hh` may be bfloat16 (the compute dtype); the
recurrent product is then computed in bfloat16 (so are its gradients) and
added in float32: the gate pre-activation sums, the cell state and the
hidden state stay float32.
"""

import jax
import jax.numpy as jnp
from jax import lax


def _recurrent(h_DxBxH: jax.Array, w_hh_DxHxG: jax.Array) -> jax.Array:
  """h @ W_hh per direction in W_hh's dtype, as float32."""
  h_DxBxH = h_DxBxH.astype(w_hh_DxHxG.dtype)
  return jnp.einsum('dbh,dhg->dbg', h_DxBxH, w_hh_DxHxG).astype(jnp.float32)


def _lstm_forward(xp_TxDxBxG, w_hh_DxHxG):
  """Scanned LSTM steps; returns (hs, (hs, cs, gate activations))."""
  _, d, b, _ = xp_TxDxBxG.shape
  zeros = jnp.zeros((d, b, w_hh_DxHxG.shape[1]), xp_TxDxBxG.dtype)

  def body(carry, xp_DxBxG):
    h, c = carry
    z = xp_DxBxG + _recurrent(h, w_hh_DxHxG)
    i, f, g, o = jnp.split(z, 4, axis=-1)
    i, f, g, o = (
      jax.nn.sigmoid(i),
      jax.nn.sigmoid(f),
      jnp.tanh(g),
      jax.nn.sigmoid(o),
    )
    c = f * c + i * g
    h = o * jnp.tanh(c)
    return (h, c), (h, c, jnp.concatenate([i, f, g, o], axis=-1))

  _, (hs, cs, acts) = lax.scan(body, (zeros, zeros), xp_TxDxBxG)
  return hs, (hs, cs, acts)


def lstm_recurrence_reference(
  xp_TxDxBxG: jax.Array, w_hh_DxHxG: jax.Array
) -> jax.Array:
  """`lstm_recurrence` as a plain scan; JAX derives its gradients."""
  return _lstm_forward(xp_TxDxBxG, w_hh_DxHxG)[0]


def lstm_recurrence_cpu(
  xp_TxDxBxG: jax.Array, w_hh_DxHxG: jax.Array
) -> jax.Array:
  """`lstm_recurrence` with the backward pass of the module doc."""
  with jax.named_scope('lstm_recurrence_cpu'):  # Names its ops.
    return _lstm_recurrence_vjp(xp_TxDxBxG, w_hh_DxHxG)


@jax.custom_vjp
def _lstm_recurrence_vjp(xp_TxDxBxG, w_hh_DxHxG):
  return _lstm_forward(xp_TxDxBxG, w_hh_DxHxG)[0]


def _lstm_recurrence_fwd(xp_TxDxBxG, w_hh_DxHxG):
  hs, residuals = _lstm_forward(xp_TxDxBxG, w_hh_DxHxG)
  return hs, (residuals, w_hh_DxHxG)


def _lstm_recurrence_bwd(res, dhs_TxDxBxH):
  (hs, cs, acts), w_hh = res
  # Transposed once here: contracting W_hh's minor axis inside the loop
  # ran ~2.4x slower per step on CPU (the weight was re-laid out each step).
  w_hh_t_DxGxH = jnp.swapaxes(w_hh, 1, 2)
  zeros = jnp.zeros_like(hs[:1])
  h_prev = jnp.concatenate([zeros, hs[:-1]])
  c_prev = jnp.concatenate([zeros, cs[:-1]])

  def body(carry, inputs):
    dh_next, dc_next = carry
    dh_out, c, c_before, act = inputs
    i, f, g, o = jnp.split(act, 4, axis=-1)
    dh = dh_out + dh_next
    tc = jnp.tanh(c)
    dc = dc_next + dh * o * (1.0 - tc * tc)
    dz = jnp.concatenate(
      [
        dc * g * i * (1.0 - i),
        dc * c_before * f * (1.0 - f),
        dc * i * (1.0 - g * g),
        dh * tc * o * (1.0 - o),
      ],
      axis=-1,
    )
    dh_prev = jnp.einsum(
      'dbg,dgh->dbh', dz.astype(w_hh.dtype), w_hh_t_DxGxH
    ).astype(jnp.float32)
    return (dh_prev, dc * f), dz

  _, dz_TxDxBxG = lax.scan(
    body,
    (zeros[0], zeros[0]),
    (dhs_TxDxBxH, cs, c_prev, acts),
    reverse=True,
  )
  dw_hh = jnp.einsum('tdbh,tdbg->dhg', h_prev, dz_TxDxBxG)
  return dz_TxDxBxG, dw_hh.astype(w_hh.dtype)


_lstm_recurrence_vjp.defvjp(_lstm_recurrence_fwd, _lstm_recurrence_bwd)


def lstm_recurrence(xp_TxDxBxG: jax.Array, w_hh_DxHxG: jax.Array) -> jax.Array:
  """LSTM over time from zero state: [T, D, B, 4H] -> hs [T, D, B, H].

  Args:
    xp_TxDxBxG: float32 input projections of every step (biases
      included), gates (i, f, g, o).
    w_hh_DxHxG: recurrent weights per direction, float32 or the compute
      dtype.

  Returns:
    float32 hidden states of every step.
  """
  return lax.platform_dependent(
    xp_TxDxBxG,
    w_hh_DxHxG,
    cpu=lstm_recurrence_cpu,
    default=lstm_recurrence_reference,
  )
