"""CTC loss, greedy decoding and prefix beam search against brute force."""

import collections
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from las_jax import ctc


def collapse(path, blank_id):
  """Alignment path -> label sequence (merge repeats, then drop blanks)."""
  merged = [c for i, c in enumerate(path) if i == 0 or c != path[i - 1]]
  return tuple(c for c in merged if c != blank_id)


def brute_force(log_probs_TxV, blank_id):
  """{labels: log p(labels)} summing every one of the V**T alignment paths."""
  t, v = log_probs_TxV.shape
  per_labels = collections.defaultdict(list)
  for path in itertools.product(range(v), repeat=t):
    score = sum(log_probs_TxV[i, c] for i, c in enumerate(path))
    per_labels[collapse(path, blank_id)].append(score)
  return {y: logsumexp(s) for y, s in per_labels.items()}


def random_log_probs(seed, shape, scale=2.0):
  logits = scale * np.random.default_rng(seed).normal(size=shape)
  return logits - logsumexp(logits, axis=-1, keepdims=True)


@pytest.mark.parametrize('blank_id', [0, 2])
def test_ctc_loss_matches_brute_force_with_padding(blank_id):
  v, t = 3, 5
  lp = random_log_probs(0, (2, t, v))
  logit_lengths = np.array([5, 4])
  labels = [(1,) if blank_id == 0 else (1, 0), (1, 1)]
  # Padded positions hold junk that must be ignored.
  padded = np.array([list(labels[0]) + [7] * (3 - len(labels[0])), [1, 1, 9]])
  lp_junk = lp.copy()
  lp_junk[1, 4] = [5.0, -3.0, 8.0]
  loss = ctc.ctc_loss(
    jnp.asarray(lp_junk, jnp.float32),
    jnp.asarray(logit_lengths),
    jnp.asarray(padded),
    jnp.array([len(y) for y in labels]),
    blank_id=blank_id,
  )
  for b in range(2):
    exact = brute_force(lp[b, : logit_lengths[b]], blank_id)
    np.testing.assert_allclose(loss[b], -exact[labels[b]], rtol=1e-5)


def test_ctc_loss_rejects_bad_shapes():
  with pytest.raises(ValueError, match='ctc labels'):
    ctc.ctc_loss(
      jnp.zeros((2, 4, 3)), jnp.array([4, 4]), jnp.zeros((3, 2), jnp.int32),
      jnp.array([1, 1, 1]),
    )  # fmt: skip


def test_greedy_decode_golden():
  frames = np.array(
    [
      [0, 1, 1, 0, 1, 2, 2, 0, 3, 3],  # "a a b c": blank splits the a's
      [2, 2, 0, 1, 1, 3, 3, 3, 1, 1],  # only 3 valid frames -> "b"
    ]
  )
  logits = jax.nn.one_hot(frames, 4) * 5.0
  tokens, lengths = jax.jit(ctc.ctc_greedy_decode)(logits, jnp.array([10, 3]))
  np.testing.assert_array_equal(lengths, [4, 1])
  np.testing.assert_array_equal(tokens[0], [1, 1, 2, 3, 0, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(tokens[1], [2] + [0] * 9)
  # Blank id other than 0: 0 is then a label.
  tokens, lengths = ctc.ctc_greedy_decode(logits, jnp.array([10, 10]), 3)
  np.testing.assert_array_equal(lengths, [6, 4])
  np.testing.assert_array_equal(tokens[0, :6], [0, 1, 0, 1, 2, 0])
  np.testing.assert_array_equal(tokens[1, :4], [2, 0, 1, 1])


def test_densest_confident_units_golden():
  """Each unit of the best path counts by its run's highest posterior."""
  # Best labels 0 1 1 0 2 2 3 0 over 8 frames (0 = blank): units 1 (frames
  # 1-2, peak 0.9), 2 (frames 4-5, peak 0.6) and 3 (frame 6, 0.5).
  best = [0, 1, 1, 0, 2, 2, 3, 0]
  top = [0.8, 0.7, 0.9, 0.9, 0.4, 0.6, 0.5, 0.9]
  probs = np.zeros((1, 8, 4))
  for f, (label, p) in enumerate(zip(best, top, strict=True)):
    probs[0, f] = (1 - p) / 3
    probs[0, f, label] = p
  logits = jnp.log(jnp.asarray(probs, jnp.float32))
  fn = jax.jit(ctc.densest_confident_units, static_argnums=2)
  lengths = jnp.array([8])
  np.testing.assert_allclose(fn(logits, lengths, 1), [0.9], rtol=1e-5)
  # Frames 4-6 hold the starts of units 2 and 3, frames 1-4 those of 1
  # and 2, frames 1-6 all three.
  np.testing.assert_allclose(fn(logits, lengths, 3), [1.1], rtol=1e-5)
  np.testing.assert_allclose(fn(logits, lengths, 4), [1.5], rtol=1e-5)
  np.testing.assert_allclose(fn(logits, lengths, 6), [2.0], rtol=1e-5)
  np.testing.assert_allclose(fn(logits, lengths, 50), [2.0], rtol=1e-5)
  # Frames past the length emit nothing: 5 valid frames end unit 2 at
  # frame 4, before its peak.
  np.testing.assert_allclose(
    fn(logits, jnp.array([5]), 50), [0.9 + 0.4], rtol=1e-5
  )


def test_densest_confident_units_match_a_sliding_sum():
  rng = np.random.default_rng(0)
  logits = 3 * rng.standard_normal((6, 40, 5)).astype(np.float32)
  lengths = np.array([40, 1, 17, 33, 39, 8])
  probs = np.asarray(jax.nn.softmax(logits))
  for window in (1, 3, 7, 25, 40):
    got = np.asarray(ctc.densest_confident_units(logits, lengths, window))
    for b, n in enumerate(lengths):
      best = logits[b, :n].argmax(-1)
      weight = np.zeros(n)
      for f in range(n):
        if best[f] != 0 and (f == 0 or best[f] != best[f - 1]):
          end = f
          while end < n and best[end] == best[f]:
            end += 1
          weight[f] = probs[b, f:end, best[f]].max()
      want = max(weight[t : t + window].sum() for t in range(n))
      np.testing.assert_allclose(got[b], want, rtol=1e-5, err_msg=str(window))


@pytest.mark.parametrize('blank_id,t,v', [(0, 5, 3), (1, 4, 4)])
def test_prefix_beam_search_large_beam_equals_exhaustive(blank_id, t, v):
  lp = random_log_probs(t * v + blank_id, (t, v))
  exact = brute_force(lp, blank_id)
  want = sorted(exact.items(), key=lambda kv: -kv[1])
  got = ctc.prefix_beam_search(lp, beam_size=len(exact), blank_id=blank_id)
  assert [y for y, _ in got] == [y for y, _ in want]
  np.testing.assert_allclose([s for _, s in got], [s for _, s in want])
  # The n-best scores are log p(y|x) as the CTC loss defines it.
  best, best_score = got[0]
  loss = ctc.ctc_loss(
    jnp.asarray(lp[None], jnp.float32), jnp.array([t]),
    jnp.array([list(best) or [0]]), jnp.array([len(best)]), blank_id,
  )  # fmt: skip
  np.testing.assert_allclose(-loss[0], best_score, rtol=1e-5)


def test_batched_prefix_beam_search_pads_and_masks():
  v, beam = 4, 3
  lp = random_log_probs(1, (2, 6, v), scale=3.0)
  lengths = np.array([6, 4])
  tokens, nbest_lengths, scores = ctc.ctc_prefix_beam_search(
    lp, lengths, beam, token_beam=v
  )
  for b in range(2):
    single = ctc.prefix_beam_search(lp[b, : lengths[b]], beam, token_beam=v)
    assert len(single) == beam
    for k, (labels, score) in enumerate(single):
      assert tokens[b, k, : nbest_lengths[b, k]].tolist() == list(labels)
      assert np.all(tokens[b, k, nbest_lengths[b, k] :] == 0)
      np.testing.assert_allclose(scores[b, k], score, rtol=1e-6)
  assert np.all(np.diff(scores, axis=1) <= 0)


def test_prefix_beam_search_peaked_matches_greedy():
  frames = np.array([[0, 1, 1, 0, 1, 2, 2, 0, 3, 0]])
  logits = np.asarray(jax.nn.one_hot(frames, 5)) * 8.0
  tokens, lengths = ctc.ctc_greedy_decode(jnp.asarray(logits), jnp.array([10]))
  nbest, nbest_lengths, _ = ctc.ctc_prefix_beam_search(logits, [10], 4)
  assert nbest[0, 0, : nbest_lengths[0, 0]].tolist() == [1, 1, 2, 3]
  assert tokens[0, : lengths[0]].tolist() == [1, 1, 2, 3]
