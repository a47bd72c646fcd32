"""Label-smoothed cross entropy, CTC sums and their device-independent mean."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from las_jax import losses


def _reference_ce(logits, targets, lengths, smoothing):
  """KoSpeech's LabelSmoothedCrossEntropyLoss, written out with numpy."""
  v = logits.shape[-1]
  logp = np.asarray(jax.nn.log_softmax(logits))
  total = count = 0.0
  for b in range(logits.shape[0]):
    for t in range(lengths[b]):
      dist = np.full(v, smoothing / (v - 1))
      dist[targets[b, t]] = 1 - smoothing
      total += -(dist * logp[b, t]).sum()
      count += 1
  return total, count


def test_label_smoothed_ce_matches_reference_and_ignores_padding():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 5, 7)).astype(np.float32)
  targets = rng.integers(0, 7, size=(3, 5)).astype(np.int32)
  lengths = np.array([5, 2, 0])
  mask = losses.length_mask(jnp.asarray(lengths), 5)
  ce, tokens, correct = losses.label_smoothed_cross_entropy(
    logits, targets, mask, 0.1
  )
  want, count = _reference_ce(logits, targets, lengths, 0.1)
  np.testing.assert_allclose(ce, want, rtol=1e-5)
  assert float(tokens) == count == 7
  # Garbage in padded positions changes nothing.
  noisy = logits.copy()
  noisy[1, 2:] = 1e4
  noisy[2] = -1e4
  ce2, _, _ = losses.label_smoothed_cross_entropy(noisy, targets, mask, 0.1)
  np.testing.assert_allclose(ce2, ce, rtol=1e-6)
  hits = sum(
    int(np.argmax(logits[b, t]) == targets[b, t])
    for b in range(3)
    for t in range(lengths[b])
  )
  assert float(correct) == hits


def test_no_smoothing_is_negative_log_likelihood():
  logits = jnp.log(jnp.array([[[0.5, 0.25, 0.25]]]))
  ce, _, _ = losses.label_smoothed_cross_entropy(
    logits, jnp.array([[1]]), jnp.array([[True]]), 0.0
  )
  np.testing.assert_allclose(ce, np.log(4.0), rtol=1e-6)


def test_sums_make_the_mean_independent_of_the_split():
  """psum of numerators/denominators == the loss of the whole batch."""
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(4, 6, 5)).astype(np.float32)
  targets = rng.integers(0, 5, size=(4, 6)).astype(np.int32)
  lengths = jnp.array([6, 1, 3, 2])
  whole = losses.label_smoothed_cross_entropy(
    logits, targets, losses.length_mask(lengths, 6), 0.1
  )
  parts = [
    losses.label_smoothed_cross_entropy(
      logits[s], targets[s], losses.length_mask(lengths[s], 6), 0.1
    )
    for s in (slice(0, 2), slice(2, 4))
  ]
  num = sum(p[0] for p in parts)
  den = sum(p[1] for p in parts)
  np.testing.assert_allclose(num / den, whole[0] / whole[1], rtol=1e-6)
  # The mean of per-part means would differ (parts hold 7 and 5 tokens).
  mean_of_means = np.mean([p[0] / p[1] for p in parts])
  assert abs(mean_of_means - whole[0] / whole[1]) > 1e-3


def test_ctc_sum_skips_padding_and_impossible_rows():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(3, 6, 4)).astype(np.float32)
  labels = np.array([[1, 2, 0], [3, 3, 1], [1, 0, 0]], np.int32)
  enc_lengths = jnp.array([6, 2, 6])
  label_lengths = jnp.array([2, 3, 1])
  valid = jnp.array([True, True, False])
  total, count = losses.ctc_loss_sum(
    logits, enc_lengths, labels, label_lengths, valid, blank_id=0
  )
  # Row 1 needs more frames than it has; row 2 is padding: only row 0's
  # two labels count.
  assert float(count) == 2
  from las_jax import ctc

  want = ctc.ctc_loss(
    logits[:1], enc_lengths[:1], labels[:1], label_lengths[:1]
  )
  np.testing.assert_allclose(total, want[0], rtol=1e-6)


@pytest.mark.parametrize('weight', [0.0, 0.3, 1.0])
def test_combine_weights(weight):
  sums = losses.LossSums(
    ce=jnp.float32(10.0),
    tokens=jnp.float32(5.0),
    correct=jnp.float32(1.0),
    ctc=jnp.float32(8.0),
    ctc_labels=jnp.float32(2.0),
  )
  want = (1 - weight) * 2.0 + weight * 4.0
  np.testing.assert_allclose(losses.combine(sums, weight), want, rtol=1e-6)
