"""A stride-1 'same' 2-D convolution whose filter gradient is a matmul.

XLA:CPU lowers the filter gradient (dW) of a convolution to a convolution
that contracts over batch x time x freq, and runs it 3-5x slower than the
forward pass (measured on the VGG extractor's 64- and 128-channel layers;
it dominated the training step). The forward pass and the input gradient
are left to XLA's convolution, which runs near matmul speed. The filter
gradient is written as ONE batched matmul instead:

  P[b, t', f, (j, c)] = x_pad[b, t', f + j, c]       (freq taps side by side)
  G[b, t', f, (i, o)] = dy[b, t' - i, f, o]          (time taps, zero outside)
  dW[i, j, c, o]      = sum_{b, t', f} P[..., (j, c)] G[..., (i, o)]

so a [kw*C, kh*O] product per utterance, summed over utterances (the
per-utterance batch axis keeps both cores busy, a single huge contraction
did not). Memory: P and G are kw and kh times the activations. For a
narrow input (the first layer's single channel) G would dwarf P, so there
dW[i] = sum P[b, t + i, f, :]^T dy[b, t, f, :] is taken per time tap i.
"""

import jax
import jax.numpy as jnp
from jax import lax

_DIMS = ('NHWC', 'HWIO', 'NHWC')
# Width kw * C of P up to which the filter gradient slices P per time tap.
_NARROW = 16


def _check_kernel(kernel_HxWxIxO: jax.Array) -> tuple[int, int]:
  kh, kw = kernel_HxWxIxO.shape[:2]
  if kh % 2 == 0 or kw % 2 == 0:
    raise ValueError(f'conv_same: kernel {kh}x{kw} must have odd sizes')
  return kh // 2, kw // 2


def _conv(x_BxTxFxC, kernel_HxWxIxO):
  ph, pw = _check_kernel(kernel_HxWxIxO)
  return lax.conv_general_dilated(
    x_BxTxFxC,
    kernel_HxWxIxO,
    window_strides=(1, 1),
    padding=((ph, ph), (pw, pw)),
    dimension_numbers=_DIMS,
  )


@jax.custom_vjp
def conv_same(x_BxTxFxC: jax.Array, kernel_HxWxIxO: jax.Array) -> jax.Array:
  """Stride-1 convolution with zero 'same' padding (odd kernel sizes).

  Equal to `lax.conv_general_dilated(x, kernel, (1, 1), ((kh // 2,) * 2,
  (kw // 2,) * 2), dimension_numbers=('NHWC', 'HWIO', 'NHWC'))`, forward
  and gradients, up to float rounding.

  Args:
    x_BxTxFxC: input, NHWC with H = time and W = frequency.
    kernel_HxWxIxO: filter [kh, kw, C, O], kh and kw odd.

  Returns:
    [B, T, F, O].
  """
  return _conv(x_BxTxFxC, kernel_HxWxIxO)


def _conv_same_fwd(x_BxTxFxC, kernel_HxWxIxO):
  return _conv(x_BxTxFxC, kernel_HxWxIxO), (x_BxTxFxC, kernel_HxWxIxO)


def filter_grad(x_BxTxFxC: jax.Array, dy_BxTxFxO: jax.Array, kh: int, kw: int):
  """dW [kh, kw, C, O] of `conv_same` as batched matmuls (module doc)."""
  b, t, f, c = x_BxTxFxC.shape
  o = dy_BxTxFxO.shape[-1]
  ph, pw = kh // 2, kw // 2
  x_pad = jnp.pad(x_BxTxFxC, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
  tp = t + 2 * ph  # Padded time: t' ranges over it.
  p_BxTpxFxWC = jnp.concatenate(
    [x_pad[:, :, j : j + f] for j in range(kw)], axis=-1
  )
  if kw * c <= _NARROW:
    # A narrow input (the first layer's one channel): G would be kh * O
    # times wider than P, so take one product per time tap on slices of P.
    p_BxTpFxWC = p_BxTpxFxWC.reshape(b, tp * f, kw * c)
    dy_BxTFxO = dy_BxTxFxO.reshape(b, t * f, o)
    dw_HxWCxO = jnp.stack(
      [
        jnp.einsum('bmk,bmn->kn', p_BxTpFxWC[:, i * f : (i + t) * f], dy_BxTFxO)
        for i in range(kh)
      ]
    )
    return dw_HxWCxO.reshape(kh, kw, c, o)
  dy_pad = jnp.pad(dy_BxTxFxO, ((0, 0), (kh - 1, kh - 1), (0, 0), (0, 0)))
  g_BxTpxFxHO = jnp.concatenate(
    [dy_pad[:, kh - 1 - i : kh - 1 - i + tp] for i in range(kh)], axis=-1
  )
  dw_BxWCxHO = jnp.einsum(
    'bmk,bmn->bkn',
    p_BxTpxFxWC.reshape(b, tp * f, kw * c),
    g_BxTpxFxHO.reshape(b, tp * f, kh * o),
  )
  dw_WxCxHxO = jnp.sum(dw_BxWCxHO, axis=0).reshape(kw, c, kh, o)
  return jnp.transpose(dw_WxCxHxO, (2, 0, 1, 3))


def _conv_same_bwd(residuals, dy_BxTxFxO):
  x_BxTxFxC, kernel_HxWxIxO = residuals
  # The input gradient is a convolution XLA runs well: let it derive one.
  _, vjp = jax.vjp(lambda x: _conv(x, kernel_HxWxIxO), x_BxTxFxC)
  (dx_BxTxFxC,) = vjp(dy_BxTxFxO)
  kh, kw = kernel_HxWxIxO.shape[:2]
  dw = filter_grad(x_BxTxFxC, dy_BxTxFxO, kh, kw)
  return dx_BxTxFxC, dw.astype(kernel_HxWxIxO.dtype)


conv_same.defvjp(_conv_same_fwd, _conv_same_bwd)
