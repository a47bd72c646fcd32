"""Training losses, returned as (numerator, denominator) sums.

Every loss here returns sums over the local batch rather than means, so a
data-parallel step can `psum` numerators and denominators across devices and
divide once: the loss of a global batch is then the same whether it is
computed on 1 device or on 8 (a mean of per-device means would weigh a
device holding short utterances as much as one holding long ones).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from las_jax import ctc


class LossSums(NamedTuple):
  """Sums over a (local) batch; divide after summing across devices."""

  # Sum of per-token label-smoothed cross entropy over valid tokens.
  ce: jax.Array
  # Number of valid target tokens (the CE and accuracy denominator).
  tokens: jax.Array
  # Number of valid target tokens predicted correctly by argmax.
  correct: jax.Array
  # Sum of per-utterance CTC losses (0 when there is no CTC head).
  ctc: jax.Array
  # Number of CTC labels of the utterances in `ctc` (the CTC denominator).
  ctc_labels: jax.Array


def length_mask(lengths_B: jax.Array, max_len: int) -> jax.Array:
  """[B, max_len] bool mask that is True at positions `< lengths_B`."""
  return jnp.arange(max_len)[None, :] < lengths_B[:, None]


def label_smoothed_cross_entropy(
  logits_BxLxV: jax.Array,
  targets_BxL: jax.Array,
  mask_BxL: jax.Array,
  smoothing: float,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Label-smoothed cross entropy summed over the positions in `mask`.

  As in KoSpeech, the target keeps probability `1 - smoothing` and the
  remaining mass is spread evenly over the other `V - 1` classes.

  Args:
    logits_BxLxV: decoder logits.
    targets_BxL: target ids (tokens followed by EOS, padded).
    mask_BxL: True where the position is a real target.
    smoothing: label smoothing in [0, 1).

  Returns:
    `(loss_sum, num_tokens, num_correct)` as float32 scalars.
  """
  vocab = logits_BxLxV.shape[-1]
  logp_BxLxV = jax.nn.log_softmax(logits_BxLxV.astype(jnp.float32))
  nll_BxL = -jnp.take_along_axis(logp_BxLxV, targets_BxL[..., None], -1)[..., 0]
  # Sum of -log p over the V - 1 non-target classes.
  others_BxL = -jnp.sum(logp_BxLxV, axis=-1) - nll_BxL
  per_token_BxL = (1.0 - smoothing) * nll_BxL + (
    smoothing / (vocab - 1)
  ) * others_BxL
  weights_BxL = mask_BxL.astype(jnp.float32)
  correct_BxL = jnp.argmax(logits_BxLxV, -1) == targets_BxL
  return (
    jnp.sum(per_token_BxL * weights_BxL),
    jnp.sum(weights_BxL),
    jnp.sum(correct_BxL * weights_BxL),
  )


def ctc_loss_sum(
  ctc_logits_BxSxV: jax.Array,
  enc_lengths_B: jax.Array,
  targets_BxL: jax.Array,
  label_lengths_B: jax.Array,
  valid_B: jax.Array,
  blank_id: int,
) -> tuple[jax.Array, jax.Array]:
  """Sum of per-utterance CTC negative log-likelihoods over valid rows.

  Args:
    ctc_logits_BxSxV: encoder-side logits.
    enc_lengths_B: valid encoder frames per utterance.
    targets_BxL: label ids, padded (EOS must already be excluded through
      `label_lengths_B`).
    label_lengths_B: number of labels per utterance.
    valid_B: True for real (non-padding) rows.
    blank_id: the CTC blank class.

  Returns:
    `(loss_sum, num_labels)` over the rows that have an alignment.
  """
  per_utt_B = ctc.ctc_loss(
    ctc_logits_BxSxV, enc_lengths_B, targets_BxL, label_lengths_B, blank_id
  )
  ok_B = ctc_alignable(enc_lengths_B, label_lengths_B, valid_B) & jnp.isfinite(
    per_utt_B
  )
  return jnp.sum(jnp.where(ok_B, per_utt_B, 0.0)), ctc_label_count(
    label_lengths_B, ok_B
  )


def ctc_alignable(
  enc_lengths_B: jax.Array, label_lengths_B: jax.Array, valid_B: jax.Array
) -> jax.Array:
  """Rows whose CTC loss counts: real rows with no more labels than frames.

  An utterance with more labels than frames has no alignment (`ctc_loss`
  gives it a huge finite loss); it is left out rather than let dominate.
  """
  return valid_B & (label_lengths_B <= enc_lengths_B)


def ctc_label_count(label_lengths_B: jax.Array, rows_B: jax.Array) -> jax.Array:
  """float32 number of CTC labels of the rows where `rows_B` is True."""
  return jnp.sum(jnp.where(rows_B, label_lengths_B, 0), dtype=jnp.float32)


def combine(sums: LossSums, ctc_weight: float | jax.Array) -> jax.Array:
  """The scalar objective from (already device-summed) sums.

  `(1 - ctc_weight) * CE per token + ctc_weight * CTC per label`: both
  terms per output unit, as KoSpeech's joint loss (PyTorch CTCLoss 'mean'
  divides by target lengths), so the weight means the same whatever the
  utterance length. `ctc_weight` 0 is pure attention (LAS), 1 pure CTC
  (DeepSpeech2); it may be traced (a weight that changes with the step).
  """
  ce_loss = sums.ce / jnp.maximum(sums.tokens, 1.0)
  ctc_loss = sums.ctc / jnp.maximum(sums.ctc_labels, 1.0)
  if isinstance(ctc_weight, (int, float)):
    if ctc_weight == 0.0:
      return ce_loss
    if ctc_weight == 1.0:
      return ctc_loss
  return (1.0 - ctc_weight) * ce_loss + ctc_weight * ctc_loss
