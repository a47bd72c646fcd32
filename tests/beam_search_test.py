"""Greedy and beam search against exhaustive search and a plain reference.

The "model" is a real tiny recurrent scorer (embedding + tanh RNN + output
projection); the carry is its hidden state and differs per utterance.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from las_jax import ctc
from las_jax.inference import search

SOS, EOS = 1, 2
HIDDEN = 8


def make_model(seed, vocab, eos_bias=0.0):
  """Returns step_fn(tokens_N, h_NxH) -> (log_probs_NxV, h_NxH)."""
  k_emb, k_rec, k_out = jax.random.split(jax.random.key(seed), 3)
  emb_VxH = jax.random.normal(k_emb, (vocab, HIDDEN))
  rec_HxH = 0.8 * jax.random.normal(k_rec, (HIDDEN, HIDDEN)) / HIDDEN**0.5
  out_HxV = 1.5 * jax.random.normal(k_out, (HIDDEN, vocab))
  bias_V = jnp.zeros(vocab).at[EOS].set(eos_bias)

  def step_fn(tokens_N, h_NxH):
    h_NxH = jnp.tanh(emb_VxH[tokens_N] + h_NxH @ rec_HxH)
    return jax.nn.log_softmax(h_NxH @ out_HxV + bias_V), h_NxH

  return step_fn


def init_hidden(seed, batch):
  return jax.random.normal(jax.random.key(seed + 1000), (batch, HIDDEN))


def run_beam(step_fn, h0_BxH, beam_size, max_len, max_lens_B=None, **kwargs):
  @jax.jit
  def run_search(h0, max_lens):
    return search.beam_search(
      step_fn, h0, h0.shape[0], beam_size, max_len, SOS, EOS,
      max_lens_B=max_lens, **kwargs,
    )  # fmt: skip

  return jax.tree.map(np.asarray, run_search(h0_BxH, max_lens_B))


def run_greedy(step_fn, h0_BxH, max_len):
  run_search = jax.jit(
    lambda h0: search.greedy_search(step_fn, h0, h0.shape[0], max_len, SOS, EOS)
  )
  return jax.tree.map(np.asarray, run_search(h0_BxH))


def exhaustive(step_fn, h0_H, vocab, max_len, alpha, norm):
  """Every EOS-terminated sequence of <= max_len tokens, best first."""
  penalty = functools.partial(search.length_penalty, alpha=alpha, kind=norm)
  hyps = []
  prefixes, logp, carry = [()], np.zeros(1), h0_H[None]
  for t in range(max_len):
    last = jnp.array([p[-1] if p else SOS for p in prefixes])
    lp, carry = step_fn(last, carry)
    lp = np.asarray(lp, np.float64)
    for i, prefix in enumerate(prefixes):
      score = (logp[i] + lp[i, EOS]) / float(penalty(t + 1))
      hyps.append((prefix + (EOS,), score))
    grow = [(i, c) for i in range(len(prefixes)) for c in range(vocab)]
    grow = [(i, c) for i, c in grow if c != EOS]
    prefixes = [prefixes[i] + (c,) for i, c in grow]
    logp = np.array([logp[i] + lp[i, c] for i, c in grow])
    carry = carry[np.array([i for i, _ in grow])]
  return sorted(hyps, key=lambda h: -h[1])


def reference_beam(step_fn, h0_H, beam, max_len, alpha, norm):
  """Same algorithm in plain Python, always running to max_len."""
  penalty = functools.partial(search.length_penalty, alpha=alpha, kind=norm)
  live = [((), 0.0)]
  carry = h0_H[None]
  finished = []
  for t in range(max_len):
    last = jnp.array([p[-1] if p else SOS for p, _ in live])
    lp, new_carry = step_fn(last, carry)
    lp = np.asarray(lp, np.float64)
    cands = [
      (s + lp[i, c], i, c)
      for i, (_, s) in enumerate(live)
      for c in range(lp.shape[1])
    ]
    cands = sorted(cands, key=lambda x: -x[0])[: 2 * beam]
    for rank, (s, i, c) in enumerate(cands):
      if c == EOS and rank < beam:
        finished.append((live[i][0] + (EOS,), s / float(penalty(t + 1))))
    finished = sorted(finished, key=lambda h: -h[1])[:beam]
    kept = [(s, i, c) for s, i, c in cands if c != EOS][:beam]
    live = [(live[i][0] + (c,), s) for s, i, c in kept]
    carry = new_carry[np.array([i for _, i, _ in kept])]
  return finished


def as_hyps(nbest, b):
  """[(tokens, score)] of utterance b from an NBest, dropping empty slots."""
  return [
    (tuple(nbest.tokens[b, k, : nbest.lengths[b, k]].tolist()), s)
    for k, s in enumerate(nbest.scores[b])
    if np.isfinite(s)
  ]


def assert_same_hyps(got, want):
  assert [t for t, _ in got] == [t for t, _ in want]
  np.testing.assert_allclose(
    [s for _, s in got], [s for _, s in want], rtol=1e-5, atol=1e-5
  )


@pytest.mark.parametrize(
  'alpha,norm', [(0.0, 'gnmt'), (0.8, 'gnmt'), (1.0, 'length')]
)
def test_large_beam_equals_exhaustive_search(alpha, norm):
  vocab, max_len = 5, 4
  # Keeps every live prefix and every EOS candidate: 4**3 prefixes x 5.
  beam = 4 ** (max_len - 1) * vocab
  step_fn = make_model(0, vocab)
  h0 = init_hidden(0, 2)
  nbest = run_beam(
    step_fn, h0, beam, max_len, length_penalty_alpha=alpha, length_norm=norm
  )
  for b in range(2):
    want = exhaustive(step_fn, h0[b], vocab, max_len, alpha, norm)
    assert len(want) == 1 + 4 + 16 + 64
    assert_same_hyps(as_hyps(nbest, b), want)
    # Slots beyond the 85 hypotheses are empty and zeroed.
    assert np.all(nbest.lengths[b, len(want) :] == 0)
    assert np.all(nbest.tokens[b, len(want) :] == 0)
    assert np.all(np.isneginf(nbest.scores[b, len(want) :]))


@pytest.mark.parametrize('alpha', [0.0, 0.6])
def test_early_stopping_matches_reference_beam(alpha):
  vocab, max_len, beam = 6, 10, 3
  calls = []

  def counted_step(tokens, carry):
    jax.debug.callback(lambda: calls.append(1))
    return make_model(3, vocab, eos_bias=4.0)(tokens, carry)

  h0 = init_hidden(3, 4)
  nbest = run_beam(counted_step, h0, beam, max_len, length_penalty_alpha=alpha)
  jax.effects_barrier()
  # The search stopped before max_len: every utterance was settled early.
  assert 0 < len(calls) < max_len
  plain_step = make_model(3, vocab, eos_bias=4.0)
  for b in range(4):
    want = reference_beam(plain_step, h0[b], beam, max_len, alpha, 'gnmt')
    assert len(want) == beam
    assert_same_hyps(as_hyps(nbest, b), want)


@pytest.mark.parametrize('seed,eos_bias', [(1, 0.0), (2, 1.0), (4, -30.0)])
def test_beam_one_equals_greedy(seed, eos_bias):
  vocab, max_len = 6, 12
  step_fn = make_model(seed, vocab, eos_bias)
  h0 = init_hidden(seed, 5)
  greedy = run_greedy(step_fn, h0, max_len)
  beam = run_beam(step_fn, h0, 1, max_len)
  np.testing.assert_array_equal(beam.tokens[:, 0], greedy.tokens)
  np.testing.assert_array_equal(beam.lengths[:, 0], greedy.lengths)
  np.testing.assert_allclose(beam.scores[:, 0], greedy.scores, rtol=1e-5)
  ended_B = greedy.tokens[np.arange(5), greedy.lengths - 1] == EOS
  assert np.all(ended_B | (greedy.lengths == max_len))
  # EOS never wins at -30: beam 1 falls back to the live path like greedy.
  assert np.any(ended_B) == (eos_bias > -10)
  # Nothing follows the length.
  beyond = np.arange(max_len)[None, :] >= greedy.lengths[:, None]
  assert np.all(greedy.tokens[beyond] == 0)


def test_greedy_is_argmax_chain():
  vocab, max_len = 6, 12
  step_fn = make_model(5, vocab)
  h0 = init_hidden(5, 1)
  greedy = run_greedy(step_fn, h0, max_len)
  tokens, carry, total = [], h0, 0.0
  last = jnp.array([SOS])
  while not tokens or tokens[-1] != EOS:
    lp, carry = step_fn(last, carry)
    tokens.append(int(jnp.argmax(lp[0])))
    total += float(lp[0, tokens[-1]])
    last = jnp.array(tokens[-1:])
  assert greedy.tokens[0, : greedy.lengths[0]].tolist() == tokens
  np.testing.assert_allclose(greedy.scores[0], total, rtol=1e-5)


def test_results_do_not_depend_on_batch_composition():
  vocab, max_len, beam = 6, 9, 4
  step_fn = make_model(6, vocab, eos_bias=0.5)
  h0 = init_hidden(6, 3)
  max_lens = np.array([9, 3, 6], np.int32)
  kwargs = dict(length_penalty_alpha=0.6)
  batched = run_beam(step_fn, h0, beam, max_len, max_lens_B=max_lens, **kwargs)
  for b in range(3):
    alone = run_beam(step_fn, h0[b : b + 1], beam, int(max_lens[b]), **kwargs)
    width = int(max_lens[b])
    np.testing.assert_array_equal(batched.tokens[b, :, :width], alone.tokens[0])
    assert np.all(batched.tokens[b, :, width:] == 0)
    np.testing.assert_array_equal(batched.lengths[b], alone.lengths[0])
    np.testing.assert_allclose(batched.scores[b], alone.scores[0], rtol=1e-5)
    assert np.all(batched.lengths[b] <= width)


def test_fallback_to_live_beams_when_nothing_finishes():
  vocab, max_len, beam = 5, 3, 64
  # A model that cannot emit EOS; the beam holds all 4**3 live sequences.
  step_fn = make_model(7, vocab, eos_bias=-np.inf)
  h0 = init_hidden(7, 1)
  nbest = run_beam(step_fn, h0, beam, max_len, length_penalty_alpha=1.0)
  # Exhaustive over the 4**3 non-EOS sequences of max_len tokens.
  seqs = [s for s in itertools.product(range(vocab), repeat=max_len)]
  seqs = [s for s in seqs if EOS not in s]
  carry = jnp.repeat(h0, len(seqs), axis=0)
  totals = np.zeros(len(seqs))
  tokens = jnp.full((len(seqs),), SOS)
  for t in range(max_len):
    lp, carry = step_fn(tokens, carry)
    tokens = jnp.array([s[t] for s in seqs])
    totals += np.asarray(lp)[np.arange(len(seqs)), np.asarray(tokens)]
  penalty = float(search.length_penalty(max_len, 1.0))
  want = sorted(zip(seqs, totals / penalty, strict=True), key=lambda h: -h[1])
  assert np.all(nbest.lengths == max_len)
  assert_same_hyps(as_hyps(nbest, 0), want)


def test_length_penalty_values_and_errors():
  np.testing.assert_allclose(
    search.length_penalty(jnp.array([1, 7, 13]), 1.0, 'gnmt'),
    [1.0, 2.0, 3.0],
  )
  np.testing.assert_allclose(
    search.length_penalty(jnp.array([4, 9]), 0.5, 'length'), [2.0, 3.0]
  )
  np.testing.assert_allclose(search.length_penalty(jnp.array(9), 0.0), 1.0)
  with pytest.raises(ValueError, match='length_norm'):
    search.length_penalty(jnp.array(3), 1.0, 'wu')
  with pytest.raises(ValueError, match='alpha'):
    search.length_penalty(jnp.array(3), -0.5)


def test_max_lens_from_encoder():
  got = search.max_lens_from_encoder(jnp.array([10, 3, 500]), 0.5, 100)
  np.testing.assert_array_equal(got, [6, 3, 100])
  got = search.max_lens_from_encoder(jnp.array([10, 3]), 0.0, 50)
  np.testing.assert_array_equal(got, [50, 50])


def test_rescore_with_ctc_combines_and_resorts():
  rng = np.random.default_rng(0)
  ctc_logits = jnp.asarray(rng.normal(size=(1, 6, 5)), jnp.float32)
  ctc_lengths = jnp.array([5])
  # Two hypotheses (EOS-terminated) and one empty slot.
  tokens = jnp.array([[[3, 4, EOS, 0], [4, 4, 3, EOS], [0, 0, 0, 0]]])
  lengths = jnp.array([[3, 4, 0]])
  att = jnp.array([[-1.0, -1.5, -jnp.inf]])
  labels = jnp.array([[3, 4, 0], [4, 4, 3]])
  ctc_logp = -np.asarray(
    ctc.ctc_loss(
      jnp.repeat(ctc_logits, 2, 0), jnp.array([5, 5]), labels,
      jnp.array([2, 3]),
    )
  )  # fmt: skip
  for weight in (0.0, 0.3, 1.0):
    out = jax.jit(search.rescore_with_ctc, static_argnums=(5, 6))(
      tokens, lengths, att, ctc_logits, ctc_lengths, weight, EOS
    )
    want = (1 - weight) * np.array([-1.0, -1.5]) + weight * ctc_logp
    order = np.argsort(-want, kind='stable')
    np.testing.assert_allclose(out.scores[0, :2], want[order], rtol=1e-5)
    np.testing.assert_array_equal(out.tokens[0, :2], tokens[0, order])
    np.testing.assert_array_equal(out.lengths[0, :2], lengths[0, order])
    assert np.isneginf(out.scores[0, 2])
