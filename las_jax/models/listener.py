"""The LAS listener: conv extractor + stacked (pyramidal) BiRNN + CTC head.

Pyramidal reduction (pBLSTM, Chan et al. 2016): before each layer listed in
`pyramid_layers`, adjacent frame pairs (2i, 2i+1) are concatenated, halving
time; new lengths are `lengths // 2` (floor: an odd last frame is dropped,
as the LAS paper's reshape does). Both frames of every kept pair are valid,
so the reduction is exactly padding-invariant.

With a remat policy each recurrent layer runs under `jax.checkpoint`
(models/execution.py); the CTC logits are float32 under mixed precision.
"""

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from las_jax.models.execution import maybe_remat
from las_jax.models.extractors import build_extractor
from las_jax.models.masking import zero_padding
from las_jax.models.rnn import RNNLayer


class Encoded(NamedTuple):
  """Encoder output: padded frames of `enc_BxSxH` are zero."""

  enc_BxSxH: jax.Array
  enc_lengths_B: jax.Array
  # Per-frame CTC logits (blank = PAD_ID 0), or None without a CTC head.
  ctc_logits_BxSxV: jax.Array | None


def pyramid_reduce(x_BxTxH: jax.Array, lengths_B: jax.Array):
  """Concatenates frame pairs: [B, T, H] -> [B, T // 2, 2H], lengths // 2."""
  b, t, h = x_BxTxH.shape
  t2 = t // 2
  return x_BxTxH[:, : 2 * t2].reshape(b, t2, 2 * h), lengths_B // 2


class Listener(nnx.Module):
  """Extractor -> RNN layers (dropout between) -> optional CTC logits."""

  def __init__(
    self,
    input_dim: int,
    *,
    extractor: str,
    vgg_channels: Sequence[int] = (64, 128),
    ds2_channels: int = 32,
    ds2_time_strides: Sequence[int] = (2, 1),
    activation: str,
    rnn_type: str,
    hidden: int,
    num_layers: int,
    bidirectional: bool,
    pyramid_layers: Sequence[int],
    dropout: float,
    ctc_vocab_size: int | None,
    rngs: nnx.Rngs,
  ):
    bad = [i for i in pyramid_layers if not 0 <= i < num_layers]
    if bad:
      raise ValueError(
        f'config.model.pyramid_layers: layer indices {bad} are outside '
        f'0..{num_layers - 1}'
      )
    self.pyramid_layers = tuple(sorted(pyramid_layers))
    self.extractor = build_extractor(
      extractor,
      input_dim,
      activation,
      rngs,
      vgg_channels,
      ds2_channels,
      ds2_time_strides,
    )
    layers = []
    in_dim = self.extractor.output_dim
    for i in range(num_layers):
      if i in self.pyramid_layers:
        in_dim *= 2
      layers.append(
        RNNLayer(
          in_dim,
          hidden,
          rnn_type=rnn_type,
          bidirectional=bidirectional,
          rngs=rngs,
        )
      )
      in_dim = layers[-1].output_dim
    self.layers = nnx.List(layers)
    self.output_dim = in_dim
    self.dropout = nnx.Dropout(dropout, rngs=rngs)
    self.ctc = (
      nnx.Linear(in_dim, ctc_vocab_size, rngs=rngs) if ctc_vocab_size else None
    )
    # jax.checkpoint policy of each RNN layer (execution.py); 'none' = off.
    self.remat_policy = 'none'

  def __call__(self, feats_BxTxF, lengths_B, *, train: bool) -> Encoded:
    """Encodes log-mel frames; see `Encoded`."""
    x, lengths_B = self.extractor(feats_BxTxF, lengths_B, train=train)
    run = maybe_remat(lambda layer, x, n: layer(x, n), self.remat_policy)
    for i, layer in enumerate(self.layers):
      if i in self.pyramid_layers:
        x, lengths_B = pyramid_reduce(x, lengths_B)
      if i > 0:
        # PyTorch's LSTM(dropout=p): on every layer's output but the last.
        x = self.dropout(x, deterministic=not train)
      x = run(layer, x, lengths_B)
    ctc = None
    if self.ctc is not None:
      ctc = zero_padding(self.ctc(x).astype(jnp.float32), lengths_B)
    return Encoded(x, lengths_B.astype(jnp.int32), ctc)
