"""Listen, Attend and Spell: listener + speller (+ optional CTC head)."""

from collections.abc import Callable

import jax
from flax import nnx

from las_jax.models.listener import Encoded, Listener
from las_jax.models.masking import sequence_mask
from las_jax.models.speller import Carry, Speller


class LAS(nnx.Module):
  """KoSpeech's ListenAttendSpell, optionally with joint CTC (blank 0)."""

  def __init__(self, config, vocab_size: int, *, rngs: nnx.Rngs):
    """Builds from `config.model` (see configs/default.py)."""
    self.listener = Listener(
      config.input_dim,
      extractor=config.extractor,
      vgg_channels=tuple(config.vgg_channels),
      ds2_channels=config.ds2_channels,
      ds2_time_strides=tuple(config.ds2_time_strides),
      activation=config.activation,
      rnn_type=config.encoder_rnn_type,
      hidden=config.encoder_hidden,
      num_layers=config.encoder_layers,
      bidirectional=config.bidirectional,
      pyramid_layers=tuple(config.pyramid_layers),
      dropout=config.dropout,
      ctc_vocab_size=vocab_size if config.ctc_weight > 0 else None,
      rngs=rngs,
    )
    self.speller = Speller(
      vocab_size,
      self.listener.output_dim,
      hidden=config.decoder_hidden,
      num_layers=config.decoder_layers,
      attention=config.attention,
      num_heads=config.num_heads,
      dropout=config.dropout,
      input_feeding=config.input_feeding,
      rngs=rngs,
    )

  def encode(self, feats_BxTxF, lengths_B, *, train: bool = False) -> Encoded:
    """Runs the listener: extractor, (pyramidal) BiRNN, CTC head."""
    return self.listener(feats_BxTxF, lengths_B, train=train)

  def __call__(
    self,
    feats_BxTxF: jax.Array,
    lengths_B: jax.Array,
    tokens_in_BxL: jax.Array,
    *,
    teacher_forcing_p: float | jax.Array = 1.0,
    sample_key: jax.Array | None = None,
    train: bool = False,
  ) -> dict[str, jax.Array | None]:
    """Teacher-forced / scheduled-sampling forward pass.

    Args:
      feats_BxTxF: log-mel frames, zero or not past `lengths_B`.
      lengths_B: int32 valid frames per utterance.
      tokens_in_BxL: SOS followed by targets[:-1].
      teacher_forcing_p: probability of feeding the ground truth per token.
      sample_key: PRNG key for scheduled sampling draws (None: p = 1).
      train: batch statistics and dropout on.

    Returns:
      dict(logits_BxLxV, attention_BxLxS, enc_lengths_B, ctc_logits_BxSxV).
    """
    enc = self.encode(feats_BxTxF, lengths_B, train=train)
    enc_mask = sequence_mask(enc.enc_lengths_B, enc.enc_BxSxH.shape[1])
    logits, attn = self.speller(
      enc.enc_BxSxH,
      enc_mask,
      tokens_in_BxL,
      teacher_forcing_p=teacher_forcing_p,
      sample_key=sample_key,
      train=train,
    )
    return {
      'logits_BxLxV': logits,
      'attention_BxLxS': attn,
      'enc_lengths_B': enc.enc_lengths_B,
      'ctc_logits_BxSxV': enc.ctc_logits_BxSxV,
    }

  def scorer(
    self, enc_BxSxH: jax.Array, enc_lengths_B: jax.Array
  ) -> tuple[Carry, Callable[[jax.Array, Carry], tuple[jax.Array, Carry]]]:
    """Initial carry and `step_fn(token_N, carry) -> (log_probs_NxV, carry)`.

    The step contract of `las_jax.inference.search`. The encoder-side attention
    projections are computed here once per utterance and closed over.
    `step_fn` takes N = batch * K rows for any K (utterance b's beam k is
    row b * K + k; K = 1 for greedy search), all K attending to their
    utterance's one copy of the projections. The initial carry is per
    utterance ([B, ...]), as `search.beam_search` takes it.
    """
    enc_mask = sequence_mask(enc_lengths_B, enc_BxSxH.shape[1])
    memory = self.speller.precompute(enc_BxSxH)

    def step_fn(token_N, carry):
      logits, carry, _ = self.speller.step(
        token_N, carry, enc_BxSxH, enc_mask, memory=memory
      )
      return jax.nn.log_softmax(logits, axis=-1), carry

    return self.speller.init_carry(enc_BxSxH, enc_mask), step_fn
