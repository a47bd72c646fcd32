"""Stride-1 'same' 2-D convolutions with backward passes fit for XLA:CPU.

`conv_same` is the convolution of the VGG extractor. On GPU and TPU it is
`conv_same_reference`, XLA's convolution (cuDNN's or the TPU's kernels,
autodiff gradients). On CPU it is `conv_same_cpu`, which takes one of two
paths, both with hand-written backward passes (computed in float32 for
bfloat16 inputs):

* 3x3 kernels on inputs of `_WINOGRAD_MIN_CHANNELS` channels or more
  (every VGG layer but the first) run XLA's convolution forward and a
  backward pass by Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray,
  "Fast Algorithms for Convolutional Neural Networks", 2016): each 4x4
  output tile is A^T [(G g G^T) . (B^T d B)] A for its 6x6 input tile d,
  36 products per tile and channel pair instead of 144. The backward pass
  transforms the saved input (V = B^T d B) and the output gradient
  (dM = A dY A^T) and stays in that domain: the filter gradient is
  G^T [V^T dM] G and the input gradient B [dM (G g G^T)^T] B^T,
  overlap-added; both are 36 batched matmuls over all tiles, a quarter of
  the direct multiplications. The transforms are sums of strided slices
  that XLA fuses into memory-bound passes. A Winograd forward pass was
  tried too: faster on the 128-channel layers alone, but with the batch
  norm around it the extractor's forward ran 1.3x slower (evaluation) and
  the train step 7% slower. Measured on the benchmark's layers (forward +
  both gradients, same process, against the previous direct path whose
  filter gradient was one matmul over W- and H-tap panels): 64->64
  channels on 80x400 frames 277 -> 230 ms, 64->128 on 40x200 138 -> 87,
  128->128 on 40x200 250 -> 145.
  Rounding: the gradients differ from XLA's by up to ~6e-5 of their
  standard deviation (float32).
* Other kernels and narrower inputs (VGG's first layer: one channel in,
  where the transforms of its 64 outputs cost more than the products they
  save: 200 ms against 11, measured with a Winograd forward) use XLA's
  convolution forward and for the input gradient; XLA:CPU's own filter
  gradient ran 3-5x slower than its forward pass, so it is taken as one
  matmul per kernel row over an input panel whose W taps sit side by side:
  dW[i] = sum_{b, h, w} P[b, h + i, w, :]^T dy[b, h, w, :].
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

NHWC = ('NHWC', 'HWIO', 'NHWC')  # Data, kernel, output layouts.
# Input channels from which 3x3 convolutions take the Winograd path (at 4
# and 8 channels it already ran faster than the direct path).
_WINOGRAD_MIN_CHANNELS = 4

# F(4x4, 3x3) on the points 0, 1, -1, 2, -2 and infinity.
_BT = np.array(  # Input transform B^T [6, 6].
  [
    [4, 0, -5, 0, 1, 0],
    [0, -4, -4, 1, 1, 0],
    [0, 4, -4, -1, 1, 0],
    [0, -2, -1, 2, 1, 0],
    [0, 2, -1, -2, 1, 0],
    [0, 4, 0, -5, 0, 1],
  ],
  np.float64,
)
_G = np.array(  # Filter transform G [6, 3].
  [
    [1 / 4, 0, 0],
    [-1 / 6, -1 / 6, -1 / 6],
    [-1 / 6, 1 / 6, -1 / 6],
    [1 / 24, 1 / 12, 1 / 6],
    [1 / 24, -1 / 12, 1 / 6],
    [0, 0, 1],
  ],
  np.float32,
)
_AT = np.array(  # Output transform A^T [4, 6].
  [
    [1, 1, 1, 1, 1, 0],
    [0, 1, -1, 2, -2, 0],
    [0, 1, 1, 4, 4, 0],
    [0, 1, -1, 8, -8, 1],
  ],
  np.float64,
)
_TILE = 4  # Output tile size; input tiles are _TILE + 2 wide.


def _check_kernel(kernel_HxWxIxO: jax.Array) -> tuple[int, int]:
  kh, kw = kernel_HxWxIxO.shape[:2]
  if kh % 2 == 0 or kw % 2 == 0:
    raise ValueError(f'conv_same: kernel {kh}x{kw} must have odd sizes')
  return kh // 2, kw // 2


def conv_same(x_BxHxWxC: jax.Array, kernel_HxWxIxO: jax.Array) -> jax.Array:
  """Stride-1 convolution with zero 'same' padding (odd kernel sizes).

  Equal to `lax.conv_general_dilated(x, kernel, (1, 1), ((kh // 2,) * 2,
  (kw // 2,) * 2), dimension_numbers=('NHWC', 'HWIO', 'NHWC'))`, forward
  and gradients, up to float rounding (module doc). The platform is chosen
  when the computation is lowered (`lax.platform_dependent`).

  Args:
    x_BxHxWxC: input, NHWC.
    kernel_HxWxIxO: filter [kh, kw, C, O], kh and kw odd.

  Returns:
    [B, H, W, O].
  """
  _check_kernel(kernel_HxWxIxO)
  return lax.platform_dependent(
    x_BxHxWxC,
    kernel_HxWxIxO,
    cpu=conv_same_cpu,
    default=conv_same_reference,
  )


def conv_same_reference(
  x_BxHxWxC: jax.Array, kernel_HxWxIxO: jax.Array
) -> jax.Array:
  """`conv_same` as XLA's convolution; JAX derives its gradients."""
  ph, pw = _check_kernel(kernel_HxWxIxO)
  return lax.conv_general_dilated(
    x_BxHxWxC,
    kernel_HxWxIxO,
    window_strides=(1, 1),
    padding=((ph, ph), (pw, pw)),
    dimension_numbers=NHWC,
  )


def conv_same_cpu(x_BxHxWxC: jax.Array, kernel_HxWxIxO: jax.Array):
  """`conv_same` with the hand-written gradients of the module doc."""
  with jax.named_scope('conv_same_cpu'):  # Names its ops (ops/__init__).
    return _conv_same_vjp(x_BxHxWxC, kernel_HxWxIxO)


@jax.custom_vjp
def _conv_same_vjp(x_BxHxWxC, kernel_HxWxIxO):
  return conv_same_reference(x_BxHxWxC, kernel_HxWxIxO)


def _cpu_conv_fwd(x_BxHxWxC, kernel_HxWxIxO):
  y = conv_same_reference(x_BxHxWxC, kernel_HxWxIxO)
  return y, (x_BxHxWxC, kernel_HxWxIxO)


def _cpu_conv_bwd(residuals, dy_BxHxWxO):
  x_BxHxWxC, kernel_HxWxIxO = residuals
  winograd = (
    kernel_HxWxIxO.shape[:2] == (3, 3)
    and x_BxHxWxC.shape[-1] >= _WINOGRAD_MIN_CHANNELS
  )
  grads = _winograd_grads if winograd else _direct_grads
  # float32 (a no-op for float32 inputs): the transforms' coefficients up
  # to 8 and the tile sums would lose bfloat16's few digits.
  f32 = [a.astype(jnp.float32) for a in (x_BxHxWxC, kernel_HxWxIxO)]
  dx, dkernel = grads(*f32, dy_BxHxWxO.astype(jnp.float32))
  return dx.astype(x_BxHxWxC.dtype), dkernel.astype(kernel_HxWxIxO.dtype)


_conv_same_vjp.defvjp(_cpu_conv_fwd, _cpu_conv_bwd)


# ------------------------------------------------------------- Winograd --


def _combine(coeffs: np.ndarray, terms: list[jax.Array]) -> jax.Array:
  """sum_i coeffs[i] * terms[i], skipping the zero coefficients."""
  out = None
  for c, t in zip(coeffs, terms, strict=True):
    if c == 0:
      continue
    term = t if c == 1 else -t if c == -1 else float(c) * t
    out = term if out is None else out + term
  return out


def _slice(x, axis, start, stop, step=1):
  return lax.slice_in_dim(x, start, stop, step, axis=axis)


def _windows(x, axis, tiles):
  """The 6 phases of the `tiles` overlapping 6-wide windows at stride 4
  along `axis`: element a of window t is x[4 t + a]."""
  return [
    _slice(x, axis, a, a + _TILE * (tiles - 1) + 1, _TILE) for a in range(6)
  ]


def _input_transform(x_pad, th, tw):
  """B^T d B of every 6x6 window d of x_pad [B, 4 th + 2, 4 tw + 2, C]:
  [6, 6, B, th, tw, C]. One fused pass (through an intermediate after the
  H axis, two passes took 1.4x as long)."""
  u = [_combine(row, _windows(x_pad, 1, th)) for row in _BT]
  return jnp.stack(
    [jnp.stack([_combine(row, _windows(uk, 2, tw)) for row in _BT]) for uk in u]
  )


def _transform_adjoint(mat, v, in_axis, axis, tiles):
  """Adjoint of `_input_transform` along one axis: `mat`^T applied along
  `in_axis` of v, and each window's 6 values added back at its place
  along `axis` (of v without `in_axis`): `4 * tiles + 2` long. One pass
  per axis: both in one fusion (its overlapping adds) ran 8x slower."""
  parts = [jnp.take(v, r, axis=in_axis) for r in range(mat.shape[0])]
  window = [_combine(mat[:, a], parts) for a in range(mat.shape[1])]
  grow = lambda e, before, after: jnp.pad(  # noqa: E731
    e, [(before, after) if d == axis else (0, 0) for d in range(e.ndim)]
  )
  # Position 4t + j gets window value j of tile t and, for j < 2, value
  # j + 4 of tile t - 1: tiles + 1 blocks of 4, the last 2 positions kept.
  blocks = [
    grow(window[0], 0, 1) + grow(window[4], 1, 0),
    grow(window[1], 0, 1) + grow(window[5], 1, 0),
    grow(window[2], 0, 1),
    grow(window[3], 0, 1),
  ]
  out = jnp.stack(blocks, axis=axis + 1)
  shape = list(blocks[0].shape)
  shape[axis] *= _TILE
  return _slice(out.reshape(shape), axis, 0, _TILE * tiles + 2)


def _output_adjoint(mat, y, axis, out_axis):
  """A^T's adjoint along one axis: the tiles of 4 along `axis` of y,
  `mat`^T applied to each, 6 results stacked on `out_axis` (one pass per
  axis: faster here than one fused pass)."""
  shape = list(y.shape)
  shape[axis : axis + 1] = [shape[axis] // _TILE, _TILE]
  tiled = y.reshape(shape)
  parts = [jnp.take(tiled, i, axis=axis + 1) for i in range(mat.shape[0])]
  return jnp.stack([_combine(col, parts) for col in mat.T], axis=out_axis)


def _tile_counts(h: int, w: int) -> tuple[int, int]:
  return -(-h // _TILE), -(-w // _TILE)


def _filter_transform(kernel_HxWxIxO):
  """G g G^T for every channel pair: [6, 6, C, O]."""
  return jnp.einsum('ka,abco,lb->klco', _G, kernel_HxWxIxO, _G)


def _products(v_KxLxNxI, u_KxLxIxO):
  """The 36 matmuls: [6, 6, N, I] x [6, 6, I, O] -> [6, 6, N, O]."""
  return jnp.einsum('klni,klio->klno', v_KxLxNxI, u_KxLxIxO)


def _winograd_grads(x_BxHxWxC, kernel_HxWxIxO, dy_BxHxWxO):
  """(dx, dkernel) of a 3x3 `conv_same` by F(4x4, 3x3) (module doc)."""
  b, h, w, c = x_BxHxWxC.shape
  o = dy_BxHxWxO.shape[-1]
  th, tw = _tile_counts(h, w)
  # 'Same' padding, then zeros up to whole tiles (4 * tiles + 2 inputs).
  x_pad = jnp.pad(
    x_BxHxWxC,
    ((0, 0), (1, _TILE * th + 1 - h), (1, _TILE * tw + 1 - w), (0, 0)),
  )
  v = _input_transform(x_pad, th, tw).reshape(6, 6, b * th * tw, c)
  dy = jnp.pad(
    dy_BxHxWxO, ((0, 0), (0, _TILE * th - h), (0, _TILE * tw - w), (0, 0))
  )
  dm = _output_adjoint(_AT, _output_adjoint(_AT, dy, 1, 0), 3, 1)
  dm = dm.reshape(6, 6, b * th * tw, o)  # [6, 6, N, O], as v.
  dkernel = jnp.einsum(
    'ka,klio,lb->abio', _G, jnp.einsum('klni,klno->klio', v, dm), _G
  )
  u = _filter_transform(kernel_HxWxIxO)
  dv = _products(dm, jnp.swapaxes(u, 2, 3)).reshape(6, 6, b, th, tw, -1)
  du = _transform_adjoint(_BT, dv, 1, 3, tw)  # [6, B, th, W + 2, C]
  dx_pad = _transform_adjoint(_BT, du, 0, 1, th)
  return dx_pad[:, 1 : h + 1, 1 : w + 1], dkernel


# --------------------------------------------------------------- direct --


def filter_grad(x_BxHxWxC: jax.Array, dy_BxHxWxO: jax.Array, kh: int, kw: int):
  """dW [kh, kw, C, O] of the direct path: one matmul per kernel row."""
  b, h, w, c = x_BxHxWxC.shape
  o = dy_BxHxWxO.shape[-1]
  ph, pw = kh // 2, kw // 2
  x_pad = jnp.pad(x_BxHxWxC, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
  # W taps side by side via stack + reshape: XLA:CPU fuses that into one
  # pass; a concatenate first copied each shifted slice (2x slower).
  taps = jnp.stack([x_pad[:, :, j : j + w] for j in range(kw)], axis=-2)
  p_BxHpWxKC = taps.reshape(b, (h + 2 * ph) * w, kw * c)
  dy_BxHWxO = dy_BxHxWxO.reshape(b, h * w, o)
  dw_HxKCxO = jnp.stack(
    [
      jnp.einsum('bmk,bmn->kn', p_BxHpWxKC[:, i * w : (i + h) * w], dy_BxHWxO)
      for i in range(kh)
    ]
  )
  return dw_HxKCxO.reshape(kh, kw, c, o)


def _direct_grads(x_BxHxWxC, kernel_HxWxIxO, dy_BxHxWxO):
  """(dx, dkernel): XLA's input gradient, `filter_grad`."""
  # The input gradient is a convolution XLA runs well: let it derive one.
  _, vjp = jax.vjp(lambda x: conv_same_reference(x, kernel_HxWxIxO), x_BxHxWxC)
  (dx_BxHxWxC,) = vjp(dy_BxHxWxO)
  kh, kw = kernel_HxWxIxO.shape[:2]
  return dx_BxHxWxC, filter_grad(x_BxHxWxC, dy_BxHxWxO, kh, kw)
