"""A stride-1 'same' 2-D convolution whose filter gradient is a matmul.

XLA:CPU lowers the filter gradient (dW) of a convolution to a convolution
that contracts over batch x height x width, and runs it 3-5x slower than
the forward pass (measured on the VGG extractor's 64- and 128-channel
layers; it dominated the training step). The forward pass and the input
gradient are left to XLA's convolution, which runs near matmul speed. The
filter gradient is written as ONE batched matmul instead:

  P[b, h', w, (j, c)] = x_pad[b, h', w + j, c]       (W taps side by side)
  G[b, h', w, (i, o)] = dy[b, h' - i, w, o]          (H taps, zero outside)
  dW[i, j, c, o]      = sum_{b, h', w} P[..., (j, c)] G[..., (i, o)]

so a [kw*C, kh*O] product per example, summed over examples (the
per-example batch axis keeps both cores busy, a single huge contraction
did not). Memory: P and G are kw and kh times the activations. For a
narrow input (the first layer's single channel) G would dwarf P, so there
dW[i] = sum P[b, h + i, w, :]^T dy[b, h, w, :] is taken per H tap i.
"""

import jax
import jax.numpy as jnp
from jax import lax

NHWC = ('NHWC', 'HWIO', 'NHWC')  # Data, kernel, output layouts.
# Width kw * C of P up to which the filter gradient slices P per H tap.
_NARROW = 16


def _check_kernel(kernel_HxWxIxO: jax.Array) -> tuple[int, int]:
  kh, kw = kernel_HxWxIxO.shape[:2]
  if kh % 2 == 0 or kw % 2 == 0:
    raise ValueError(f'conv_same: kernel {kh}x{kw} must have odd sizes')
  return kh // 2, kw // 2


def _conv(x_BxHxWxC, kernel_HxWxIxO):
  ph, pw = _check_kernel(kernel_HxWxIxO)
  return lax.conv_general_dilated(
    x_BxHxWxC,
    kernel_HxWxIxO,
    window_strides=(1, 1),
    padding=((ph, ph), (pw, pw)),
    dimension_numbers=NHWC,
  )


@jax.custom_vjp
def conv_same(x_BxHxWxC: jax.Array, kernel_HxWxIxO: jax.Array) -> jax.Array:
  """Stride-1 convolution with zero 'same' padding (odd kernel sizes).

  Equal to `lax.conv_general_dilated(x, kernel, (1, 1), ((kh // 2,) * 2,
  (kw // 2,) * 2), dimension_numbers=('NHWC', 'HWIO', 'NHWC'))`, forward
  and gradients, up to float rounding.

  Args:
    x_BxHxWxC: input, NHWC.
    kernel_HxWxIxO: filter [kh, kw, C, O], kh and kw odd.

  Returns:
    [B, T, F, O].
  """
  return _conv(x_BxHxWxC, kernel_HxWxIxO)


def _conv_same_fwd(x_BxHxWxC, kernel_HxWxIxO):
  return _conv(x_BxHxWxC, kernel_HxWxIxO), (x_BxHxWxC, kernel_HxWxIxO)


def _side_by_side(taps: list[jax.Array]) -> jax.Array:
  """[..., C] arrays -> [..., len(taps) * C], tap-major on the last axis."""
  stacked = jnp.stack(taps, axis=-2)
  return stacked.reshape(*stacked.shape[:-2], -1)


def filter_grad(x_BxHxWxC: jax.Array, dy_BxHxWxO: jax.Array, kh: int, kw: int):
  """dW [kh, kw, C, O] of `conv_same` as batched matmuls (module doc)."""
  b, h, w, c = x_BxHxWxC.shape
  o = dy_BxHxWxO.shape[-1]
  ph, pw = kh // 2, kw // 2
  x_pad = jnp.pad(x_BxHxWxC, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
  hp = h + 2 * ph  # Padded height: h' ranges over it.
  # Taps side by side via stack + reshape: XLA:CPU fuses that into one
  # pass; a concatenate first copied each shifted slice (2x slower).
  p_BxHpxWxKC = _side_by_side([x_pad[:, :, j : j + w] for j in range(kw)])
  if kw * c <= _NARROW:
    # A narrow input (the first layer's one channel): G would be kh * O
    # times wider than P, so take one product per H tap on slices of P.
    p_BxHpWxKC = p_BxHpxWxKC.reshape(b, hp * w, kw * c)
    dy_BxHWxO = dy_BxHxWxO.reshape(b, h * w, o)
    dw_HxKCxO = jnp.stack(
      [
        jnp.einsum('bmk,bmn->kn', p_BxHpWxKC[:, i * w : (i + h) * w], dy_BxHWxO)
        for i in range(kh)
      ]
    )
    return dw_HxKCxO.reshape(kh, kw, c, o)
  dy_pad = jnp.pad(dy_BxHxWxO, ((0, 0), (kh - 1, kh - 1), (0, 0), (0, 0)))
  g_BxHpxWxHO = _side_by_side(
    [dy_pad[:, kh - 1 - i : kh - 1 - i + hp] for i in range(kh)]
  )
  dw_BxKCxHO = jnp.einsum(
    'bmk,bmn->bkn',
    p_BxHpxWxKC.reshape(b, hp * w, kw * c),
    g_BxHpxWxHO.reshape(b, hp * w, kh * o),
  )
  dw_KxCxHxO = jnp.sum(dw_BxKCxHO, axis=0).reshape(kw, c, kh, o)
  return jnp.transpose(dw_KxCxHxO, (2, 0, 1, 3))


def _conv_same_bwd(residuals, dy_BxHxWxO):
  x_BxHxWxC, kernel_HxWxIxO = residuals
  # The input gradient is a convolution XLA runs well: let it derive one.
  _, vjp = jax.vjp(lambda x: _conv(x, kernel_HxWxIxO), x_BxHxWxC)
  (dx_BxHxWxC,) = vjp(dy_BxHxWxO)
  kh, kw = kernel_HxWxIxO.shape[:2]
  dw = filter_grad(x_BxHxWxC, dy_BxHxWxO, kh, kw)
  return dx_BxHxWxC, dw.astype(kernel_HxWxIxO.dtype)


conv_same.defvjp(_conv_same_fwd, _conv_same_bwd)
