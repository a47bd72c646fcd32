"""CTC prefix scores and one-pass joint search against brute force."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from las_jax import ctc
from las_jax.inference import ctc_prefix_score, search

BLANK, SOS, EOS = 0, 1, 2


def collapse(path):
  merged = [c for i, c in enumerate(path) if i == 0 or c != path[i - 1]]
  return tuple(c for c in merged if c != BLANK)


def brute_prefix(log_probs_TxV, prefix):
  """log of the summed probability of every alignment of all T frames
  whose collapsed output starts with `prefix`."""
  t, v = log_probs_TxV.shape
  scores = [
    sum(log_probs_TxV[i, c] for i, c in enumerate(path))
    for path in itertools.product(range(v), repeat=t)
    if collapse(path)[: len(prefix)] == tuple(prefix)
  ]
  return logsumexp(scores) if scores else -np.inf


def random_logits(seed, shape, scale=2.0):
  return scale * np.random.default_rng(seed).normal(size=shape)


def log_softmax(x):
  return x - logsumexp(x, axis=-1, keepdims=True)


def extend(scorer, state, prefix, cand):
  """Scores candidates of one hypothesis (B = K = 1), then follows `cand`."""
  last = jnp.array([[prefix[-1] if prefix else SOS]], jnp.int32)
  empty = jnp.asarray(len(prefix) == 0)
  psi, _ = scorer.score(state, empty, last, jnp.array([[cand]], jnp.int32))
  return psi


def prefix_states(scorer, prefix):
  """The scorer's state after consuming `prefix` one unit at a time."""
  state = scorer.init(1)
  for i, unit in enumerate(prefix):
    done = prefix[:i]
    psi = extend(scorer, state, done, [unit])
    last = jnp.array([[done[-1] if done else SOS]], jnp.int32)
    state = scorer.advance(
      state,
      jnp.asarray(i == 0),
      jnp.zeros((1, 1), jnp.int32),
      last,
      jnp.array([[unit]], jnp.int32),
      psi[:, :, 0],
    )
  return state


@pytest.mark.parametrize('valid', [5, 3])
def test_prefix_score_equals_brute_force_over_alignments(valid):
  """psi(g + c) for every prefix up to length 2 (repeats included), on an
  utterance with 5 frames and one with 3 valid frames padded to 5."""
  v, t = 5, 5
  logits = random_logits(0, (1, t, v))
  scorer = ctc_prefix_score.CTCPrefixScorer.from_logits(
    jnp.asarray(logits),
    jnp.array([valid]),
    weight=0.5,
    pre_beam_ratio=1.5,
    eos_id=EOS,
    blank_id=BLANK,
  )
  lp = log_softmax(logits[0, :valid])
  units = [3, 4]
  for n in range(3):
    for prefix in itertools.product(units, repeat=n):
      state = prefix_states(scorer, prefix)
      np.testing.assert_allclose(
        float(state.psi_BxK[0, 0]),
        brute_prefix(lp, prefix),
        rtol=1e-5,
        atol=1e-5,
      )
      got = np.asarray(extend(scorer, state, prefix, units + [EOS, BLANK]))[
        0, 0
      ]
      for c, score in zip(units, got[:2], strict=True):
        np.testing.assert_allclose(
          score, brute_prefix(lp, prefix + (c,)), rtol=1e-5, atol=1e-5
        )
      # EOS: the full-sequence probability, -ctc_loss.
      want_eos = -ctc.ctc_loss(
        jnp.asarray(lp[None]),
        jnp.array([valid]),
        jnp.array([list(prefix) + [0]]),
        jnp.array([len(prefix)]),
      )[0]
      np.testing.assert_allclose(got[2], want_eos, rtol=1e-5, atol=1e-5)
      assert got[3] == -np.inf  # Blank is never a candidate.


def test_increment_is_never_nan():
  inc = ctc_prefix_score.increment(
    jnp.array([-1.0, -np.inf, -2.0]), jnp.array([-np.inf, -np.inf, -1.0])
  )
  np.testing.assert_array_equal(np.asarray(inc), [-np.inf, -np.inf, -1.0])


def ctc_only_search(logits_BxTxV, lengths_B, beam, max_len, **kwargs):
  v = logits_BxTxV.shape[-1]
  b = logits_BxTxV.shape[0]

  @jax.jit
  def run_search(logits, lengths):
    scorer = ctc_prefix_score.CTCPrefixScorer.from_logits(
      logits,
      lengths,
      weight=1.0,
      pre_beam_ratio=1.5,
      eos_id=EOS,
      blank_id=BLANK,
    )
    step_fn = search.weighted_sum([], v, never_ids=(BLANK, SOS))
    return search.beam_search(
      step_fn, (), b, beam, max_len, SOS, EOS, prefix_scorer=scorer, **kwargs
    )

  return jax.tree.map(np.asarray, run_search(logits_BxTxV, lengths_B))


def test_ctc_weight_one_wide_beam_finds_the_most_probable_sequence():
  """With ctc_weight 1 the joint search maximizes p_ctc(y | x); a beam
  that holds every prefix returns the enumeration's argmax and its
  log-probability."""
  v, t = 5, 4
  units = [3, 4]
  for seed in range(4):
    logits = random_logits(seed, (1, t, v), scale=1.0)
    lp = log_softmax(logits[0])
    seqs = [y for n in range(t + 1) for y in itertools.product(units, repeat=n)]
    # Every sequence's CTC log-likelihood in one batched call.
    losses = ctc.ctc_loss(
      jnp.broadcast_to(jnp.asarray(lp), (len(seqs), t, v)),
      jnp.full(len(seqs), t),
      jnp.array([list(y) + [0] * (t - len(y) + 1) for y in seqs]),
      jnp.array([len(y) for y in seqs]),
    )
    truth = {y: -float(loss) for y, loss in zip(seqs, losses, strict=True)}
    best = max(truth, key=truth.get)
    nbest = ctc_only_search(
      jnp.asarray(logits), jnp.array([t]), beam=16, max_len=t + 1
    )
    got = tuple(nbest.tokens[0, 0, : nbest.lengths[0, 0] - 1].tolist())
    assert got == best, (seed, got, best)
    np.testing.assert_allclose(
      nbest.scores[0, 0], truth[best], rtol=1e-5, atol=1e-5
    )
    # The whole n-best holds true CTC log-likelihoods.
    for k in range(16):
      if np.isfinite(nbest.scores[0, k]):
        y = tuple(nbest.tokens[0, k, : nbest.lengths[0, k] - 1].tolist())
        np.testing.assert_allclose(
          nbest.scores[0, k], truth[y], rtol=1e-5, atol=1e-5
        )


def test_joint_search_is_batch_and_padding_invariant():
  """An utterance decodes the same alone and padded among longer ones."""
  v, hidden = 7, 8
  k_emb, k_rec, k_out = jax.random.split(jax.random.key(3), 3)
  emb = jax.random.normal(k_emb, (v, hidden))
  rec = 0.5 * jax.random.normal(k_rec, (hidden, hidden))
  out = jax.random.normal(k_out, (hidden, v))

  def att_step(tokens_N, h_NxH):
    h_NxH = jnp.tanh(emb[tokens_N] + h_NxH @ rec)
    return jax.nn.log_softmax(h_NxH @ out), h_NxH

  lengths = np.array([6, 9, 4])
  logits = random_logits(5, (3, 12, v))

  def run(logits_BxTxV, lengths_B, h0):
    b = logits_BxTxV.shape[0]

    @jax.jit
    def run_search(logits, lengths, h0):
      scorer = ctc_prefix_score.CTCPrefixScorer.from_logits(
        logits,
        lengths,
        weight=0.4,
        pre_beam_ratio=1.5,
        eos_id=EOS,
        blank_id=BLANK,
      )
      step_fn = search.weighted_sum([(0.6, att_step)], v, (BLANK, SOS))
      return search.beam_search(
        step_fn,
        (h0,),
        b,
        3,
        8,
        SOS,
        EOS,
        length_penalty_alpha=0.6,
        prefix_scorer=scorer,
      )

    return jax.tree.map(np.asarray, run_search(logits_BxTxV, lengths_B, h0))

  h0 = jax.random.normal(jax.random.key(9), (3, hidden))
  together = run(jnp.asarray(logits), jnp.asarray(lengths), h0)
  for i in range(3):
    alone = run(
      jnp.asarray(logits[i : i + 1, : lengths[i]]),
      jnp.asarray(lengths[i : i + 1]),
      h0[i : i + 1],
    )
    np.testing.assert_array_equal(alone.tokens[0], together.tokens[i])
    np.testing.assert_array_equal(alone.lengths[0], together.lengths[i])
    np.testing.assert_allclose(
      alone.scores[0], together.scores[i], rtol=1e-5, atol=1e-5
    )


def test_weighted_sum_is_the_sum_of_its_parts():
  """A fused step scores w1 * s1 + w2 * s2 and carries both states."""
  v = 6

  def scorer(seed):
    table = jax.nn.log_softmax(jax.random.normal(jax.random.key(seed), (v, v)))

    def step(tokens_N, count_N):
      return table[tokens_N], count_N + 1

    return step, table

  (s1, t1), (s2, t2) = scorer(0), scorer(1)
  fused = search.weighted_sum([(0.7, s1), (0.3, s2), (0.0, s1)], v, (0,))
  tokens = jnp.array([1, 4, 5])
  zeros = jnp.zeros(3, jnp.int32)
  scores, carries = fused(tokens, (zeros, zeros, zeros))
  want = 0.7 * t1[tokens] + 0.3 * t2[tokens]
  np.testing.assert_allclose(scores[:, 1:], want[:, 1:], rtol=1e-6)
  assert np.all(np.isneginf(np.asarray(scores[:, 0])))
  # Zero-weight scorers are not run: their carry is unchanged.
  np.testing.assert_array_equal([np.asarray(c)[0] for c in carries], [1, 1, 0])
