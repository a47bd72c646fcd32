"""DeepSpeech2 (KoSpeech's): conv extractor + BN-ReLU-BiRNN stack + CTC.

Each recurrent layer is KoSpeech's BNReluRNN: batch norm over features
(masked: statistics skip padded frames), ReLU, then a one-layer BiRNN. The
output layer is Linear(2H, H) -> ReLU -> Linear(H, V, no bias). CTC blank
is PAD_ID 0: padding never appears inside a target, so the id is free, and
no extra vocabulary entry is needed.

With a remat policy each BN-ReLU-BiRNN layer runs under `jax.checkpoint`
(models/execution.py); the logits are float32 under mixed precision.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from las_jax.models.execution import maybe_remat
from las_jax.models.extractors import build_extractor
from las_jax.models.listener import Encoded
from las_jax.models.masking import MaskedBatchNorm, zero_padding
from las_jax.models.rnn import RNNLayer


class DeepSpeech2(nnx.Module):
  """DeepSpeech2 acoustic model; `encode` sets `ctc_logits_BxSxV`."""

  def __init__(self, config, vocab_size: int, *, rngs: nnx.Rngs):
    """Builds from `config.model` (see configs/default.py)."""
    self.extractor = build_extractor(
      config.extractor,
      config.input_dim,
      config.activation,
      rngs,
      vgg_channels=tuple(config.vgg_channels),
      ds2_channels=config.ds2_channels,
      ds2_time_strides=tuple(config.ds2_time_strides),
    )
    norms, layers = [], []
    in_dim = self.extractor.output_dim
    for _ in range(config.encoder_layers):
      norms.append(MaskedBatchNorm(in_dim))
      layers.append(
        RNNLayer(
          in_dim,
          config.encoder_hidden,
          rnn_type=config.encoder_rnn_type,
          bidirectional=config.bidirectional,
          rngs=rngs,
        )
      )
      in_dim = layers[-1].output_dim
    self.norms = nnx.List(norms)
    self.layers = nnx.List(layers)
    self.dropout = nnx.Dropout(config.dropout, rngs=rngs)
    self.fc = nnx.Linear(in_dim, config.encoder_hidden, rngs=rngs)
    self.out = nnx.Linear(
      config.encoder_hidden, vocab_size, use_bias=False, rngs=rngs
    )
    # jax.checkpoint policy of each RNN layer (execution.py); 'none' = off.
    self.remat_policy = 'none'

  def encode(self, feats_BxTxF, lengths_B, *, train: bool = False) -> Encoded:
    """Returns `Encoded` with CTC logits (blank = 0) set."""
    x, lengths_B = self.extractor(feats_BxTxF, lengths_B, train=train)

    def bn_relu_rnn(norm, layer, x, lengths_B):
      x = norm(x, lengths_B, train=train, activation=jax.nn.relu)
      return layer(x, lengths_B)

    bn_relu_rnn = maybe_remat(bn_relu_rnn, self.remat_policy)
    for i, (norm, layer) in enumerate(
      zip(self.norms, self.layers, strict=True)
    ):
      if i > 0:
        x = self.dropout(x, deterministic=not train)
      x = bn_relu_rnn(norm, layer, x, lengths_B)
    ctc = self.out(jax.nn.relu(self.fc(x))).astype(jnp.float32)
    lengths_B = lengths_B.astype(jnp.int32)
    return Encoded(x, lengths_B, zero_padding(ctc, lengths_B))

  def __call__(
    self, feats_BxTxF, lengths_B, *, train: bool = False
  ) -> dict[str, jax.Array]:
    """Returns dict(ctc_logits_BxSxV, enc_lengths_B)."""
    enc = self.encode(feats_BxTxF, lengths_B, train=train)
    return {
      'ctc_logits_BxSxV': enc.ctc_logits_BxSxV,
      'enc_lengths_B': enc.enc_lengths_B,
    }
