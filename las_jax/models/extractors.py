"""Convolutional front ends on log-mel frames: VGG and DeepSpeech2.

Both take `feats_BxTxF` with `lengths_B` and return `(out_BxSxD,
out_lengths_B)` with exact output lengths. Internally the layout is NHWC
with H = frequency and W = time, as in KoSpeech's [B, 1, F, T] input:
XLA:CPU's convolutions ran up to 1.5x faster with the long time axis
innermost (VGG's 64-channel layers). Kernels are stored [time, freq, in,
out] and swapped at the call. The output flattens (channels x freq)
channel-major, as KoSpeech does, so a frame of the VGG extractor on 80 bins
is 128 * 20 = 2560 wide. After every convolution, batch norm, activation
and pooling, frames past each utterance's (new) length are zeroed again
(KoSpeech's MaskCNN) so padding never leaks into valid frames.

Under mixed precision the convolutions take `dtype` operands and the
blocks pass `dtype` activations on (batch-norm statistics are float32).
With a remat policy each conv block (with the pool after it) runs under
`jax.checkpoint` (models/execution.py).
"""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from las_jax.models.execution import cast, maybe_remat
from las_jax.models.masking import MaskedBatchNorm, zero_padding
from las_jax.ops.conv import NHWC, conv_same
from las_jax.ops.max_pool import max_pool_2x2

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
  # KoSpeech's default: Hardtanh(0, 20), a clipped ReLU.
  'hardtanh': lambda x: jnp.clip(x, 0.0, 20.0),
  'relu': jax.nn.relu,
  'elu': jax.nn.elu,
  # PyTorch's LeakyReLU default slope.
  'leaky_relu': lambda x: jax.nn.leaky_relu(x, 0.01),
  'gelu': lambda x: jax.nn.gelu(x, approximate=False),
  'swish': jax.nn.swish,
}


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
  """Looks up an activation by KoSpeech's `--activation` name."""
  if name not in ACTIVATIONS:
    raise ValueError(
      f'config.model.activation: unknown activation {name!r}; '
      f'expected one of {sorted(ACTIVATIONS)}'
    )
  return ACTIVATIONS[name]


def conv_output_length(
  length: jax.Array | int, kernel: int, stride: int, pad: int
) -> jax.Array | int:
  """Frames out of a convolution along time (symmetric padding)."""
  return (length + 2 * pad - kernel) // stride + 1


class _MaskedConvBlock(nnx.Module):
  """Conv (no bias) -> masked batch norm -> activation, re-masked."""

  def __init__(
    self,
    in_ch: int,
    out_ch: int,
    kernel_tf: tuple[int, int],
    stride_tf: tuple[int, int],
    pad_tf: tuple[int, int],
    activation: str,
    rngs: nnx.Rngs,
  ):
    self.kernel_t, self.stride_t, self.pad_t = (
      kernel_tf[0],
      stride_tf[0],
      pad_tf[0],
    )
    # (freq, time) order for the [B, F, T, C] layout.
    self.stride_ft = stride_tf[::-1]
    self.pad_ft = tuple((p, p) for p in pad_tf[::-1])
    with jax.ensure_compile_time_eval():  # Also under eval_shape / jit.
      at_zero = float(get_activation(activation)(jnp.zeros(())))
    if at_zero != 0.0:
      raise ValueError(
        f'activation {activation!r} must map 0 to 0 (padding stays zero)'
      )
    self.activation = activation
    # Stride-1 'same' convs (all of VGG's) go through conv_same: on CPU,
    # Winograd or direct with hand-written backward passes (ops/conv.py).
    self.same = stride_tf == (1, 1) and pad_tf == (
      kernel_tf[0] // 2,
      kernel_tf[1] // 2,
    )
    # Holds the [time, freq, in, out] kernel (its init and checkpoint
    # name); applied below in the [B, F, T, C] layout.
    self.conv = nnx.Conv(
      in_ch,
      out_ch,
      kernel_tf,
      stride_tf,
      padding=[(pad_tf[0], pad_tf[0]), (pad_tf[1], pad_tf[1])],
      use_bias=False,
      rngs=rngs,
    )
    self.bn = MaskedBatchNorm(out_ch)
    # Compute dtype of the convolution; None = float32 (execution.py).
    self.dtype = None

  def __call__(self, x_BxFxTxC, lengths_B, *, train: bool):
    # Input frames past the length are already zero, so the conv's view of
    # them equals its own zero padding in an unpadded batch.
    x_BxFxTxC = cast(x_BxFxTxC, self.dtype)
    kernel_FxTxIxO = cast(jnp.swapaxes(self.conv.kernel[...], 0, 1), self.dtype)
    if self.same:
      y = conv_same(x_BxFxTxC, kernel_FxTxIxO)
    else:
      y = lax.conv_general_dilated(
        x_BxFxTxC,
        kernel_FxTxIxO,
        self.stride_ft,
        self.pad_ft,
        dimension_numbers=NHWC,
      )
    lengths_B = conv_output_length(
      lengths_B, self.kernel_t, self.stride_t, self.pad_t
    )
    # No masking pass before batch norm: its statistics skip padded frames
    # and its output is zero there; every activation offered maps 0 to 0
    # (checked in __init__). Fusing the activation into the batch norm
    # makes their backward one hand-written pass over these large arrays.
    y = self.bn(
      y,
      lengths_B,
      train=train,
      activation=get_activation(self.activation),
      time_axis=2,
    )
    return y, lengths_B


def _max_pool_2x2(x_BxFxTxC, lengths_B):
  """MaxPool2d(2, stride 2) (floor mode), new lengths = lengths // 2."""
  _, f, t, _ = x_BxFxTxC.shape
  y = max_pool_2x2(x_BxFxTxC[:, : f // 2 * 2, : t // 2 * 2])
  lengths_B = lengths_B // 2
  return zero_padding(y, lengths_B, time_axis=2), lengths_B


def _to_planes(feats_BxTxF, lengths_B):
  """Masked frames [B, T, F] -> one input plane [B, F, T, 1]."""
  return jnp.swapaxes(zero_padding(feats_BxTxF, lengths_B), 1, 2)[..., None]


def _flatten(y_BxFxTxC):
  """[B, F, T, C] -> [B, T, C * F], channel-major like KoSpeech."""
  b, f, t, c = y_BxFxTxC.shape
  return jnp.transpose(y_BxFxTxC, (0, 2, 3, 1)).reshape(b, t, c * f)


class VGGExtractor(nnx.Module):
  """KoSpeech's VGGExtractor: 2 x (conv, conv, maxpool); time / 4.

  Conv2d(1, 64) -> Conv2d(64, 64) -> MaxPool 2 -> Conv2d(64, 128) ->
  Conv2d(128, 128) -> MaxPool 2; 3x3 kernels, padding 1, no bias, each conv
  followed by batch norm and the activation. Output lengths are
  `(lengths // 2) // 2`; output width `channels[1] * (input_dim // 4)`.
  """

  def __init__(
    self,
    input_dim: int,
    *,
    channels: Sequence[int] = (64, 128),
    activation: str = 'hardtanh',
    rngs: nnx.Rngs,
  ):
    get_activation(activation)
    c0, c1 = channels
    block = lambda i, o: _MaskedConvBlock(  # noqa: E731
      i, o, (3, 3), (1, 1), (1, 1), activation, rngs
    )
    self.blocks = nnx.List(
      [block(1, c0), block(c0, c0), block(c0, c1), block(c1, c1)]
    )
    self.output_dim = c1 * ((input_dim // 2) // 2)
    # jax.checkpoint policy of each block (execution.py); 'none' = off.
    self.remat_policy = 'none'

  def __call__(self, feats_BxTxF, lengths_B, *, train: bool):
    """Returns (out_BxSxD, out_lengths_B) with S = T // 4."""

    def conv(block, x, lengths_B):
      return block(x, lengths_B, train=train)

    def conv_pool(block, x, lengths_B):
      return _max_pool_2x2(*block(x, lengths_B, train=train))

    # The pool joins its block: the pooled output, 4x smaller, is what a
    # rematerialized pair keeps for the backward pass.
    stages = [maybe_remat(f, self.remat_policy) for f in (conv, conv_pool)]
    x = _to_planes(feats_BxTxF, lengths_B)
    for i, block in enumerate(self.blocks):
      x, lengths_B = stages[i % 2](block, x, lengths_B)
    return _flatten(x), lengths_B


class DeepSpeech2Extractor(nnx.Module):
  """KoSpeech's DeepSpeech2Extractor: two strided convs; time / 2.

  KoSpeech's Conv2d(1, 32, k=(41, 11), s=(2, 2), p=(20, 5)) and
  Conv2d(32, 32, k=(21, 11), s=(2, 1), p=(10, 5)) are written there as
  (freq, time); here as (time, freq): kernels (11, 41) and (11, 21), strides
  (2, 2) and (1, 2). Output lengths `(L - 1) // 2 + 1` (= ceil(L / 2)); the
  second conv keeps them. Width 32 * 20 = 640 for 80 bins.

  `time_strides` sets the two convs' strides along time (KoSpeech: (2, 1));
  (2, 2) gives 40 ms frames, as the DeepSpeech2 paper (Amodei et al. 2016,
  section 3.6) strides further to shorten the sequences the RNNs run over.
  Each conv's output length is `(L - 1) // stride + 1`.
  """

  def __init__(
    self,
    input_dim: int,
    *,
    channels: int = 32,
    time_strides: Sequence[int] = (2, 1),
    activation: str = 'hardtanh',
    rngs: nnx.Rngs,
  ):
    get_activation(activation)
    if len(time_strides) != 2 or min(time_strides) < 1:
      raise ValueError(
        'config.model.ds2_time_strides: two strides >= 1 expected, got '
        f'{tuple(time_strides)}'
      )
    t0, t1 = time_strides
    self.blocks = nnx.List(
      [
        _MaskedConvBlock(
          1, channels, (11, 41), (t0, 2), (5, 20), activation, rngs
        ),
        _MaskedConvBlock(
          channels, channels, (11, 21), (t1, 2), (5, 10), activation, rngs
        ),
      ]
    )
    f = (input_dim + 2 * 20 - 41) // 2 + 1
    f = (f + 2 * 10 - 21) // 2 + 1
    self.output_dim = channels * f
    # jax.checkpoint policy of each block (execution.py); 'none' = off.
    self.remat_policy = 'none'

  def __call__(self, feats_BxTxF, lengths_B, *, train: bool):
    """Returns (out_BxSxD, out_lengths_B) with S = ceil(T / 2)."""

    def conv(block, x, lengths_B):
      return block(x, lengths_B, train=train)

    conv = maybe_remat(conv, self.remat_policy)
    x = _to_planes(feats_BxTxF, lengths_B)
    for block in self.blocks:
      x, lengths_B = conv(block, x, lengths_B)
    return _flatten(x), lengths_B


def build_extractor(
  name: str,
  input_dim: int,
  activation: str,
  rngs: nnx.Rngs,
  vgg_channels: Sequence[int] = (64, 128),
  ds2_channels: int = 32,
  ds2_time_strides: Sequence[int] = (2, 1),
):
  """Builds the extractor named by `config.model.extractor`."""
  if name == 'vgg':
    return VGGExtractor(
      input_dim, channels=vgg_channels, activation=activation, rngs=rngs
    )
  if name == 'ds2':
    return DeepSpeech2Extractor(
      input_dim,
      channels=ds2_channels,
      time_strides=ds2_time_strides,
      activation=activation,
      rngs=rngs,
    )
  raise ValueError(
    f"config.model.extractor: unknown extractor {name!r}; expected 'vgg' "
    "or 'ds2'"
  )
