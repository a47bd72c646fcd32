"""Matmuls for scanned loops whose backward pass reads a pre-transposed weight.

Autodiff of `x @ w` inside `lax.scan` multiplies the cotangent by `w.T`
at every step, and XLA:CPU ran that product 2.4x slower than the same one
against a weight already laid out transposed (it re-lays out the weight
each step; measured on the speller's [8, 2048] x [2048, 512] steps). On
CPU, `matmul` is `matmul_cpu`, whose backward pass gets `w.T` as an input
taken once, outside the loop (`stop_gradient`, so no cotangent is formed
for it); values and gradients equal autodiff of `x @ w` exactly. GPU and
TPU take `matmul_reference`, plain `x @ w`.
"""

import jax
from flax import nnx
from jax import lax


def matmul_reference(x_xI: jax.Array, w_IxO: jax.Array) -> jax.Array:
  """x @ w ([..., I] x [I, O]); JAX derives its gradients."""
  return x_xI @ w_IxO


@jax.custom_vjp
def _matmul(x_xI, w_IxO, w_t_OxI):
  return x_xI @ w_IxO


def _matmul_fwd(x_xI, w_IxO, w_t_OxI):
  return x_xI @ w_IxO, (x_xI, w_t_OxI)


def _matmul_bwd(residuals, g_xO):
  x_xI, w_t_OxI = residuals
  x_NxI = x_xI.reshape(-1, x_xI.shape[-1])
  dw_IxO = x_NxI.T @ g_xO.reshape(-1, g_xO.shape[-1])
  return g_xO @ w_t_OxI, dw_IxO, None


_matmul.defvjp(_matmul_fwd, _matmul_bwd)


def matmul_cpu(x_xI: jax.Array, w_IxO: jax.Array) -> jax.Array:
  """`matmul_reference` with the backward pass of the module doc."""
  with jax.named_scope('matmul_cpu'):  # Names its ops (ops/__init__).
    return _matmul(x_xI, w_IxO, lax.stop_gradient(w_IxO.T))


def matmul(x_xI: jax.Array, w_IxO: jax.Array) -> jax.Array:
  """x @ w ([..., I] x [I, O]) for loops: `matmul_cpu` on CPU, else
  `matmul_reference` (module doc)."""
  return lax.platform_dependent(
    x_xI, w_IxO, cpu=matmul_cpu, default=matmul_reference
  )


def dense(layer: nnx.Linear, x_xI: jax.Array) -> jax.Array:
  """`layer(x)` of an `nnx.Linear` on [..., I], through `matmul`.

  Operands and result are in `layer.dtype` when it is set (the compute
  dtype of mixed precision), as `nnx.Linear` computes.
  """
  kernel = layer.kernel[...]
  if layer.dtype is not None:
    x_xI, kernel = x_xI.astype(layer.dtype), kernel.astype(layer.dtype)
  y = matmul(x_xI, kernel)
  return y if layer.bias is None else y + layer.bias[...].astype(y.dtype)
