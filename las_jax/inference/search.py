"""Greedy and beam search for attention decoders, jit-able and vectorized.

The model enters only as a step callback

  step_fn(tokens_N, carry) -> (log_probs_NxV, carry)

where N is batch (greedy) or batch * beam (beam search, beam-major inside each
utterance: row b * K + k), `carry` is any pytree whose leaves have a leading
N axis, and `log_probs_NxV` are NORMALIZED log-probabilities (log_softmax):
the early-stopping bound of the beam search relies on them being <= 0. The
encoder output is closed over by the caller, once per utterance (the step
maps its K rows per utterance onto it; see `LAS.scorer`).

Both searches are pure functions built on `lax.while_loop`; call them inside
`jax.jit` together with the encoder (the step callback is a Python closure, so
it cannot be a jit argument itself).

Length convention: a hypothesis' length counts the emitted tokens including
the final EOS and excluding SOS. Sequences are 0-padded after their length.
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct
from jax import lax

from las_jax import ctc
from las_jax.inference import ctc_prefix_score

StepFn = Callable[[jax.Array, Any], tuple[jax.Array, Any]]
NEG_INF = float('-inf')
LENGTH_NORMS = ('gnmt', 'length')


class GreedyResult(NamedTuple):
  tokens: jax.Array  # [B, L] int32, EOS included, 0 after it
  lengths: jax.Array  # [B] int32, tokens including EOS
  scores: jax.Array  # [B] float32, sum of token log-probs (not normalized)


class NBest(NamedTuple):
  tokens: jax.Array  # [B, K, L] int32, best first, 0 after the length
  lengths: jax.Array  # [B, K] int32, tokens including EOS; 0 for empty slots
  scores: jax.Array  # [B, K] float32, descending; -inf for empty slots


@struct.dataclass
class BeamState:
  """Loop state of `beam_search`; every shape is fixed across steps."""

  step: jax.Array  # [] int32, tokens emitted so far by the live beams
  last_tokens: jax.Array  # [B * K] int32, fed to step_fn next
  live_seqs: jax.Array  # [B, K, L] int32
  live_logprobs: jax.Array  # [B, K] float32, -inf marks an empty slot
  finished_seqs: jax.Array  # [B, K, L] int32, EOS included
  finished_scores: jax.Array  # [B, K] float32, length-normalized, sorted
  finished_lengths: jax.Array  # [B, K] int32
  finished_flags: jax.Array  # [B, K] bool, slot holds a hypothesis
  num_steps: jax.Array  # [B] int32, steps taken, frozen once done
  done: jax.Array  # [B] bool, the n-best list can no longer change
  carry: Any  # pytree, leaves [B * K, ...]
  # The prefix scorer's state (CTCPrefixState, leaves [B, ..., K]) or None.
  scorer_state: Any = None


def length_penalty(
  lengths: jax.Array, alpha: float, kind: str = 'gnmt'
) -> jax.Array:
  """Divisor applied to a hypothesis' summed log-prob.

  Args:
    lengths: token counts (EOS included), any shape.
    alpha: exponent >= 0; 0 disables normalization (divisor 1).
    kind: 'gnmt' for ((5 + len) / 6) ** alpha (Wu et al. 2016) or 'length'
      for len ** alpha.

  Returns:
    float32 array shaped like `lengths`.
  """
  if alpha < 0:
    raise ValueError(f'length penalty alpha must be >= 0, got {alpha}')
  lengths = jnp.asarray(lengths, jnp.float32)
  if kind == 'gnmt':
    base = (5.0 + lengths) / 6.0
  elif kind == 'length':
    base = lengths
  else:
    raise ValueError(f'length_norm must be one of {LENGTH_NORMS}, got {kind!r}')
  return base**alpha


def tile_beams(tree: Any, beam_size: int) -> Any:
  """Repeats each row beam_size times: [B, ...] -> [B * K, ...] (b-major)."""
  return jax.tree.map(lambda x: jnp.repeat(x, beam_size, axis=0), tree)


def max_lens_from_encoder(
  enc_lengths_B: jax.Array, ratio: float, cap: int
) -> jax.Array:
  """Per-utterance token limit min(cap, ceil(ratio * enc_len) + 1).

  The +1 leaves room for EOS. ratio <= 0 means no per-utterance limit.
  """
  if ratio <= 0:
    return jnp.full(enc_lengths_B.shape, cap, jnp.int32)
  lens = jnp.ceil(ratio * enc_lengths_B.astype(jnp.float32)).astype(jnp.int32)
  return jnp.clip(lens + 1, 1, cap)


def _max_lens(max_lens_B, batch_size, max_len):
  if max_len < 1:
    raise ValueError(f'max_len must be >= 1, got {max_len}')
  if max_lens_B is None:
    return jnp.full((batch_size,), max_len, jnp.int32)
  return jnp.clip(jnp.asarray(max_lens_B, jnp.int32), 1, max_len)


def greedy_search(
  step_fn: StepFn,
  init_carry: Any,
  batch_size: int,
  max_len: int,
  sos_id: int,
  eos_id: int,
  max_lens_B: jax.Array | None = None,
) -> GreedyResult:
  """Argmax decoding until every utterance emitted EOS or hit its limit.

  Args:
    step_fn: `(tokens_B, carry) -> (log_probs_BxV, carry)`.
    init_carry: pytree with leading batch axis B.
    batch_size: B.
    max_len: static cap on emitted tokens (EOS included); output width.
    sos_id: token fed at the first step.
    eos_id: end-of-sentence token.
    max_lens_B: optional per-utterance limit (clipped to [1, max_len]).

  Returns:
    GreedyResult; an utterance that never emits EOS has length max_lens_B.
  """
  limit_B = _max_lens(max_lens_B, batch_size, max_len)

  def cond(state):
    step, _, _, _, _, _, done_B = state
    return (step < max_len) & ~jnp.all(done_B)

  def body(state):
    step, last_B, carry, tokens_BxL, lengths_B, scores_B, done_B = state
    log_probs_BxV, carry = step_fn(last_B, carry)
    tok_B = jnp.argmax(log_probs_BxV, axis=-1).astype(jnp.int32)
    tok_lp_B = jnp.take_along_axis(log_probs_BxV, tok_B[:, None], 1)[:, 0]
    tok_B = jnp.where(done_B, 0, tok_B)
    tokens_BxL = tokens_BxL.at[:, step].set(tok_B)
    scores_B = scores_B + jnp.where(done_B, 0.0, tok_lp_B)
    lengths_B = lengths_B + (~done_B).astype(jnp.int32)
    done_B = done_B | (tok_B == eos_id) | (lengths_B >= limit_B)
    return step + 1, tok_B, carry, tokens_BxL, lengths_B, scores_B, done_B

  init = (
    jnp.zeros((), jnp.int32),
    jnp.full((batch_size,), sos_id, jnp.int32),
    init_carry,
    jnp.zeros((batch_size, max_len), jnp.int32),
    jnp.zeros((batch_size,), jnp.int32),
    jnp.zeros((batch_size,), jnp.float32),
    jnp.zeros((batch_size,), bool),
  )
  _, _, _, tokens, lengths, scores, _ = lax.while_loop(cond, body, init)
  return GreedyResult(tokens, lengths, scores)


def weighted_sum(
  scorers: Sequence[tuple[float, StepFn]],
  vocab_size: int | None = None,
  never_ids: Sequence[int] = (),
) -> StepFn:
  """Shallow fusion of full scorers into one step function.

  The fused step's score of unit c is sum_i w_i * score_i(c) (attention
  and language model log-probabilities in ESPnet's weighted sum; Gulcehre
  et al. 2015 "shallow fusion"); its carry is the tuple of the scorers'
  carries, in order. Scorers with weight 0 are dropped, not multiplied (a
  vetoed -inf times 0 would be NaN); with none left, every unit scores 0,
  for searches led by a prefix scorer alone.

  Args:
    scorers: (weight, step_fn) pairs, weights >= 0.
    vocab_size: V; needed only when no scorer has a weight.
    never_ids: units that always score -inf (special tokens that are never
      targets: they would decode to nothing). The scores stay <= 0, which
      beam search's stopping bound needs.

  Returns:
    `step_fn(tokens_N, carries) -> (scores_NxV, carries)`, carries being
    the tuple of the scorers' carries (start from their initial ones).
  """
  if any(w < 0 for w, _ in scorers):
    raise ValueError(f'weights must be >= 0, got {[w for w, _ in scorers]}')
  if vocab_size is None and not any(w for w, _ in scorers):
    raise ValueError('weighted_sum: no scorer has a weight; give vocab_size')
  never = jnp.asarray(list(never_ids), jnp.int32)

  def step_fn(tokens_N, carries):
    total, new_carries = None, []
    for (weight, fn), carry in zip(scorers, carries, strict=True):
      if weight == 0:
        new_carries.append(carry)
        continue
      scores_NxV, carry = fn(tokens_N, carry)
      scores_NxV = weight * scores_NxV.astype(jnp.float32)
      total = scores_NxV if total is None else total + scores_NxV
      new_carries.append(carry)
    if total is None:
      total = jnp.zeros((tokens_N.shape[0], vocab_size), jnp.float32)
    if never.size:
      total = total.at[:, never].set(NEG_INF)
    return total, tuple(new_carries)

  return step_fn


def _gather(x_BxMx, idx_BxK):
  """x[b, idx[b, k], ...] for arrays with trailing dims."""
  idx = idx_BxK.reshape(idx_BxK.shape + (1,) * (x_BxMx.ndim - 2))
  return jnp.take_along_axis(x_BxMx, idx, axis=1)


def beam_search(
  step_fn: StepFn,
  init_carry: Any,
  batch_size: int,
  beam_size: int,
  max_len: int,
  sos_id: int,
  eos_id: int,
  length_penalty_alpha: float = 0.0,
  length_norm: str = 'gnmt',
  max_lens_B: jax.Array | None = None,
  prefix_scorer: ctc_prefix_score.CTCPrefixScorer | None = None,
  length_bonus: float = 0.0,
) -> NBest:
  """Vectorized beam search over batch x beam with an n-best output.

  Each step scores the extensions of the K live hypotheses and keeps the
  top 2K, so at least K are not EOS and the live beam never starves. As in
  fairseq, an EOS candidate enters the finished set only if it ranks within
  the top K of the step (hence beam 1 equals greedy with alpha 0 and no
  prefix scorer); the other candidates fill the K live slots.

  The score of an extension by unit c is the hypothesis' score plus
  `step_fn`'s score of c (a weighted sum of attention and language model
  log-probabilities, see `weighted_sum`), plus, with a `prefix_scorer`, its
  weighted CTC prefix-score increment, plus `length_bonus`. With a prefix
  scorer only a pre-beam of candidates per hypothesis (the best by
  `step_fn`'s score), and EOS, are scored; the rest are vetoed (ESPnet's
  `BatchBeamSearch` with `CTCPrefixScoreTH`, which scores EOS only when it
  is in the pre-beam). Finished scores are the sum divided by
  length_penalty(len), len counting EOS.

  An utterance stops when its K finished slots are full and no live beam
  can beat the worst of them (a live beam with score s can gain at most
  `length_bonus` per remaining token, every other term being <= 0), when
  no live beam is left, or at its token limit; the loop ends when every
  utterance has stopped. If an utterance finished no hypothesis by its
  limit, its live beams are returned instead (no EOS, length = tokens
  emitted, score normalized by that length). Slots with no hypothesis get
  score -inf and length 0.

  Args:
    step_fn: `(tokens_N, carry) -> (scores_NxV, carry)`, N = B * K, scores
      <= 0 (log-probabilities or weighted sums of them).
    init_carry: pytree with leading batch axis B (tiled to B * K here).
    batch_size: B.
    beam_size: K.
    max_len: static cap on emitted tokens (EOS included); output width.
    sos_id: token fed at the first step.
    eos_id: end-of-sentence token.
    length_penalty_alpha: exponent of the length penalty (0: none).
    length_norm: 'gnmt' or 'length', see `length_penalty`.
    max_lens_B: optional per-utterance limit (clipped to [1, max_len]).
    prefix_scorer: one-pass joint CTC scoring, or None.
    length_bonus: added to the score per emitted token (EOS included).

  Returns:
    NBest with tokens [B, K, max_len], lengths [B, K], scores [B, K].
  """
  b, k = batch_size, beam_size
  if k < 1:
    raise ValueError(f'beam_size must be >= 1, got {k}')
  limit_B = _max_lens(max_lens_B, b, max_len)
  penalty = functools.partial(
    length_penalty, alpha=length_penalty_alpha, kind=length_norm
  )
  rank_2K = jnp.arange(2 * k)
  row_offset_Bx1 = (jnp.arange(b) * k)[:, None]

  def best_reachable(best_live_B, length):
    """Upper bound of the normalized score a live beam can still reach."""
    most_B = best_live_B + length_bonus * (limit_B - length)
    return jnp.where(
      most_B > 0, most_B / penalty(length + 1), most_B / penalty(limit_B)
    )

  def candidates(s: BeamState, scores_BxKxV):
    """Candidate units and scores per hypothesis: ([B, K, C], [B, K, C])."""
    v = scores_BxKxV.shape[-1]
    if prefix_scorer is None:
      tok_BxKxC = jnp.broadcast_to(jnp.arange(v, dtype=jnp.int32), (b, k, v))
      return tok_BxKxC, s.live_logprobs[:, :, None] + scores_BxKxV, None
    p = prefix_scorer.pre_beam_size(k, v)
    if p < v:
      # EOS is always a candidate besides the pre-beam: ending costs no
      # recursion, and a hypothesis whose every extension CTC rules out
      # (more units than frames) can still finish.
      is_eos_V = jnp.arange(v) == eos_id
      pre_BxKxP, tok_BxKxP = lax.top_k(
        jnp.where(is_eos_V, NEG_INF, scores_BxKxV), p
      )
      pre_BxKxP = jnp.concatenate(
        [pre_BxKxP, scores_BxKxV[:, :, eos_id : eos_id + 1]], axis=2
      )
      tok_BxKxP = jnp.concatenate(
        [tok_BxKxP, jnp.full((b, k, 1), eos_id, tok_BxKxP.dtype)], axis=2
      )
    else:
      pre_BxKxP = scores_BxKxV
      tok_BxKxP = jnp.broadcast_to(jnp.arange(v), (b, k, v))
    tok_BxKxP = tok_BxKxP.astype(jnp.int32)
    psi_BxKxP, ctc_BxKxP = prefix_scorer.score(
      s.scorer_state, s.step == 0, s.last_tokens.reshape(b, k), tok_BxKxP
    )
    total_BxKxP = s.live_logprobs[:, :, None] + pre_BxKxP + ctc_BxKxP
    return tok_BxKxP, total_BxKxP, psi_BxKxP

  def cond(s: BeamState):
    return (s.step < max_len) & ~jnp.all(s.done)

  def body(s: BeamState) -> BeamState:
    scores_NxV, carry = step_fn(s.last_tokens, s.carry)
    v = scores_NxV.shape[-1]
    if 2 * k > k * v:
      raise ValueError(f'beam search needs a vocabulary of >= 2, got {v}')
    scores_BxKxV = scores_NxV.reshape(b, k, v).astype(jnp.float32)
    tok_BxKxC, cand_BxKxC, psi_BxKxC = candidates(s, scores_BxKxV)
    if length_bonus:
      cand_BxKxC = cand_BxKxC + length_bonus
    c = cand_BxKxC.shape[-1]
    top_lp_Bx2K, top_idx_Bx2K = lax.top_k(cand_BxKxC.reshape(b, -1), 2 * k)
    src_Bx2K = top_idx_Bx2K // c
    tok_Bx2K = _gather(tok_BxKxC.reshape(b, -1), top_idx_Bx2K)
    length = s.step + 1
    seqs_Bx2KxL = _gather(s.live_seqs, src_Bx2K).at[:, :, s.step].set(tok_Bx2K)
    is_eos_Bx2K = tok_Bx2K == eos_id

    # Finished set: merge the old K with this step's EOS candidates. Only
    # EOS ranked within the top K of the step counts (as in fairseq), so a
    # beam of 1 follows the argmax path exactly like greedy search.
    new_fin_Bx2K = is_eos_Bx2K & (rank_2K < k) & jnp.isfinite(top_lp_Bx2K)
    new_scores_Bx2K = jnp.where(
      new_fin_Bx2K, top_lp_Bx2K / penalty(length), NEG_INF
    )
    all_scores_Bx3K = jnp.concatenate([s.finished_scores, new_scores_Bx2K], 1)
    fin_scores_BxK, fin_idx_BxK = lax.top_k(all_scores_Bx3K, k)
    fin_seqs = _gather(
      jnp.concatenate([s.finished_seqs, seqs_Bx2KxL], 1), fin_idx_BxK
    )
    all_lengths_Bx3K = jnp.concatenate(
      [s.finished_lengths, jnp.full((b, 2 * k), length, jnp.int32)], 1
    )
    fin_lengths_BxK = _gather(all_lengths_Bx3K, fin_idx_BxK)
    all_flags_Bx3K = jnp.concatenate([s.finished_flags, new_fin_Bx2K], 1)
    fin_flags_BxK = _gather(all_flags_Bx3K, fin_idx_BxK)

    # Live set: the best K non-EOS candidates, with their decoder state.
    live_cand_Bx2K = jnp.where(is_eos_Bx2K, NEG_INF, top_lp_Bx2K)
    live_lp_BxK, live_idx_BxK = lax.top_k(live_cand_Bx2K, k)
    live_seqs = _gather(seqs_Bx2KxL, live_idx_BxK)
    src_BxK = _gather(src_Bx2K, live_idx_BxK)
    src_N = (row_offset_Bx1 + src_BxK).reshape(-1)
    carry = jax.tree.map(lambda x: jnp.take(x, src_N, axis=0), carry)
    last_BxK = _gather(tok_Bx2K, live_idx_BxK)
    scorer_state = s.scorer_state
    if prefix_scorer is not None:
      psi_BxK = _gather(
        _gather(psi_BxKxC.reshape(b, -1), top_idx_Bx2K), live_idx_BxK
      )
      scorer_state = prefix_scorer.advance(
        scorer_state,
        s.step == 0,
        src_BxK,
        _gather(s.last_tokens.reshape(b, k), src_BxK),
        last_BxK,
        psi_BxK,
      )

    full_B = jnp.all(fin_flags_BxK, axis=1)
    best_live_B = live_lp_BxK[:, 0]
    beaten_B = full_B & (
      fin_scores_BxK[:, -1] >= best_reachable(best_live_B, length)
    )
    no_live_B = jnp.isneginf(best_live_B)
    done_B = s.done | beaten_B | no_live_B | (length >= limit_B)

    # Utterances that were already done keep their results, so they do not
    # depend on how long the rest of the batch runs. Their carry is not
    # frozen: it is never read again.
    def keep(old, new):
      return jnp.where(s.done.reshape((b,) + (1,) * (old.ndim - 1)), old, new)

    return BeamState(
      step=length,
      last_tokens=last_BxK.reshape(-1),
      live_seqs=keep(s.live_seqs, live_seqs),
      live_logprobs=keep(s.live_logprobs, live_lp_BxK),
      finished_seqs=keep(s.finished_seqs, fin_seqs),
      finished_scores=keep(s.finished_scores, fin_scores_BxK),
      finished_lengths=keep(s.finished_lengths, fin_lengths_BxK),
      finished_flags=keep(s.finished_flags, fin_flags_BxK),
      num_steps=keep(s.num_steps, jnp.full((b,), length, jnp.int32)),
      done=done_B,
      carry=carry,
      scorer_state=scorer_state,
    )

  # Only beam 0 is alive at first: the K copies share one state, and K live
  # copies would fill the beam with duplicates.
  live_lp_BxK = jnp.full((b, k), NEG_INF, jnp.float32).at[:, 0].set(0.0)
  init = BeamState(
    step=jnp.zeros((), jnp.int32),
    last_tokens=jnp.full((b * k,), sos_id, jnp.int32),
    live_seqs=jnp.zeros((b, k, max_len), jnp.int32),
    live_logprobs=live_lp_BxK,
    finished_seqs=jnp.zeros((b, k, max_len), jnp.int32),
    finished_scores=jnp.full((b, k), NEG_INF, jnp.float32),
    finished_lengths=jnp.zeros((b, k), jnp.int32),
    finished_flags=jnp.zeros((b, k), bool),
    num_steps=jnp.zeros((b,), jnp.int32),
    done=jnp.zeros((b,), bool),
    carry=tile_beams(init_carry, k),
    scorer_state=None if prefix_scorer is None else prefix_scorer.init(k),
  )
  s = lax.while_loop(cond, body, init)

  # Fallback to live beams for utterances that finished nothing.
  has_fin_B = jnp.any(s.finished_flags, axis=1)
  live_scores_BxK = s.live_logprobs / penalty(s.num_steps)[:, None]
  scores = jnp.where(has_fin_B[:, None], s.finished_scores, live_scores_BxK)
  valid_BxK = jnp.where(
    has_fin_B[:, None], s.finished_flags, jnp.isfinite(s.live_logprobs)
  )
  tokens = jnp.where(has_fin_B[:, None, None], s.finished_seqs, s.live_seqs)
  lengths = jnp.where(
    has_fin_B[:, None], s.finished_lengths, s.num_steps[:, None]
  )
  return NBest(
    tokens=jnp.where(valid_BxK[:, :, None], tokens, 0),
    lengths=jnp.where(valid_BxK, lengths, 0),
    scores=jnp.where(valid_BxK, scores, NEG_INF),
  )


def rescore_with_ctc(
  nbest_tokens_BxKxL: jax.Array,
  nbest_lengths_BxK: jax.Array,
  att_scores_BxK: jax.Array,
  ctc_logits_BxSxV: jax.Array,
  ctc_lengths_B: jax.Array,
  weight: float,
  eos_id: int,
  blank_id: int = 0,
) -> NBest:
  """Joint CTC-attention rescoring of an n-best list.

  score = (1 - weight) * att_score + weight * log p_ctc(y | x), where y is the
  hypothesis without its final EOS and log p_ctc sums over all alignments
  (-optax.ctc_loss). att_scores are used as given (length-normalized ones
  from `beam_search` included). Hypotheses must not contain blank_id.

  Args:
    nbest_tokens_BxKxL: hypotheses, e.g. `NBest.tokens`.
    nbest_lengths_BxK: lengths including a final EOS when present.
    att_scores_BxK: attention scores; -inf marks empty slots (kept -inf).
    ctc_logits_BxSxV: CTC head logits (unnormalized is fine).
    ctc_lengths_B: valid frames of ctc_logits per utterance.
    weight: CTC weight in [0, 1].
    eos_id: end-of-sentence token, stripped before CTC scoring.
    blank_id: CTC blank index.

  Returns:
    NBest re-sorted by the combined score.
  """
  if not 0.0 <= weight <= 1.0:
    raise ValueError(f'ctc weight must be in [0, 1], got {weight}')
  b, k, width = nbest_tokens_BxKxL.shape
  last_BxK = jnp.take_along_axis(
    nbest_tokens_BxKxL, jnp.maximum(nbest_lengths_BxK - 1, 0)[..., None], 2
  )[..., 0]
  ends_eos_BxK = (nbest_lengths_BxK > 0) & (last_BxK == eos_id)
  label_lengths_N = (nbest_lengths_BxK - ends_eos_BxK).reshape(-1)
  ctc_logp_BxK = -ctc.ctc_loss(
    tile_beams(ctc_logits_BxSxV, k),
    tile_beams(ctc_lengths_B, k),
    nbest_tokens_BxKxL.reshape(b * k, width),
    label_lengths_N,
    blank_id=blank_id,
  ).reshape(b, k)
  combined_BxK = (1.0 - weight) * att_scores_BxK + weight * ctc_logp_BxK
  combined_BxK = jnp.where(jnp.isneginf(att_scores_BxK), NEG_INF, combined_BxK)
  order_BxK = jnp.argsort(-combined_BxK, axis=1, stable=True)
  return NBest(
    tokens=_gather(nbest_tokens_BxKxL, order_BxK),
    lengths=_gather(nbest_lengths_BxK, order_BxK),
    scores=_gather(combined_BxK, order_BxK),
  )
