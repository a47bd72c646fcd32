"""CTC prefix scores for label-synchronous beam search, under jit.

One-pass joint CTC/attention decoding (Watanabe et al. 2017, "Hybrid
CTC/attention architecture for end-to-end speech recognition", Algorithm 2;
Hori et al. 2017) scores every extension g + c of a hypothesis g with the
CTC prefix probability

  psi(g + c) = sum_t Phi_{t-1}(g, c) * p_t(c)

where p_t are the CTC head's per-frame probabilities and Phi_{t-1}(g, c)
is the probability that frames 0..t-1 collapse to exactly g, restricted to
paths ending in blank when c repeats g's last unit. The end of sentence
gets the full-sequence probability p_ctc(g | x) = gamma^n_{T-1}(g) +
gamma^b_{T-1}(g). The search adds each step's difference
log psi(g + c) - log psi(g), a log-probability <= 0, so the scores of a
finished hypothesis sum to its CTC log-likelihood.

A hypothesis carries its forward variables over ALL frames
(`gamma_nb`, `gamma_b`: log-probabilities that frames 0..t collapse to g
with a non-blank or a blank last frame) and log psi(g): fixed shapes, so
the state lives in the beam search's loop carry and is gathered like the
decoder's. As ESPnet's `CTCPrefixScoreTH`
(`espnet/nets/ctc_prefix_score.py`), only a pre-beam of candidates is
scored per step (the others are vetoed), and padded frames get log-prob 0
for blank and -inf for every unit, so a shorter utterance's variables stop
changing after its last frame and one padded batch serves every length.
The forward recursions run for the K surviving hypotheses only (a
`lax.scan` over the frames per search step); scoring the candidates needs
no recursion, only a log-sum over frames.

Shapes: B utterances, K hypotheses per utterance, P candidates per
hypothesis, T encoder frames, V units. Everything is float32.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

NEG_INF = float('-inf')


class CTCPrefixState(NamedTuple):
  """Forward variables of K hypotheses per utterance.

  Attributes:
    gamma_nb_BxTxK: log P(frames 0..t collapse to g, frame t non-blank).
    gamma_b_BxTxK: log P(frames 0..t collapse to g, frame t blank).
    psi_BxK: log psi(g), the prefix probability of g (0 for the empty
      prefix).
  """

  gamma_nb_BxTxK: jax.Array
  gamma_b_BxTxK: jax.Array
  psi_BxK: jax.Array


def frame_log_probs(
  ctc_logits_BxTxV: jax.Array, lengths_B: jax.Array, blank_id: int
) -> jax.Array:
  """Per-frame log-probabilities with padded frames made transparent.

  Args:
    ctc_logits_BxTxV: CTC head outputs (unnormalized).
    lengths_B: valid frames per utterance.
    blank_id: the blank's index.

  Returns:
    float32 [B, T, V]: log_softmax on valid frames; on padded frames 0 for
    blank and -inf for every unit, so paths only pass through with blanks.
  """
  log_probs = jax.nn.log_softmax(ctc_logits_BxTxV.astype(jnp.float32), -1)
  b, t, v = log_probs.shape
  valid_BxTx1 = (jnp.arange(t)[None, :] < lengths_B[:, None])[..., None]
  padded_V = jnp.full((v,), NEG_INF, jnp.float32).at[blank_id].set(0.0)
  return jnp.where(valid_BxTx1, log_probs, padded_V)


def init_state(
  log_probs_BxTxV: jax.Array, beam_size: int, blank_id: int
) -> CTCPrefixState:
  """The empty prefix, K copies per utterance.

  gamma^b of the empty prefix is the probability of all-blank frames up to
  t; gamma^nb is -inf (no unit was emitted).
  """
  blank_BxT = log_probs_BxTxV[..., blank_id]
  gamma_b_BxTxK = jnp.repeat(jnp.cumsum(blank_BxT, 1)[..., None], beam_size, 2)
  return CTCPrefixState(
    gamma_nb_BxTxK=jnp.full_like(gamma_b_BxTxK, NEG_INF),
    gamma_b_BxTxK=gamma_b_BxTxK,
    psi_BxK=jnp.zeros(gamma_b_BxTxK.shape[::2], jnp.float32),
  )


def _shifted_phi(
  state: CTCPrefixState,
  prefix_empty: jax.Array,
  repeats_BxKxP: jax.Array,
) -> jax.Array:
  """Phi_{t-1}(g, c) as [B, T, K, P], frame t holding Phi at t - 1.

  Phi_{t-1} is the probability that frames 0..t-1 collapse to g (only
  blank-ended paths when c repeats g's last unit). Phi_{-1} is 1 for the
  empty prefix (nothing to collapse yet) and 0 otherwise.
  """
  gamma_sum_BxTxK = jnp.logaddexp(state.gamma_nb_BxTxK, state.gamma_b_BxTxK)
  phi_BxTxKxP = jnp.where(
    repeats_BxKxP[:, None],
    state.gamma_b_BxTxK[..., None],
    gamma_sum_BxTxK[..., None],
  )
  first = jnp.where(prefix_empty, 0.0, NEG_INF)
  first_Bx1xKxP = jnp.full_like(phi_BxTxKxP[:, :1], first)
  return jnp.concatenate([first_Bx1xKxP, phi_BxTxKxP[:, :-1]], axis=1)


def score_candidates(
  log_probs_BxTxV: jax.Array,
  state: CTCPrefixState,
  prefix_empty: jax.Array,
  last_BxK: jax.Array,
  cand_BxKxP: jax.Array,
  eos_id: int,
  blank_id: int,
) -> jax.Array:
  """log psi(g + c) for P candidate units c of each hypothesis g.

  Args:
    log_probs_BxTxV: `frame_log_probs`.
    state: the hypotheses' forward variables.
    prefix_empty: bool scalar, the hypotheses are still empty (first step).
    last_BxK: each hypothesis' last unit (any value when empty).
    cand_BxKxP: candidate unit ids; `eos_id` gets p_ctc(g | x), `blank_id`
      gets -inf.

  Returns:
    float32 [B, K, P]; subtract `state.psi_BxK` for the step's increment.
  """
  b, t, _ = log_probs_BxTxV.shape
  k, p = cand_BxKxP.shape[1:]
  x_BxTxKxP = jnp.take_along_axis(
    log_probs_BxTxV, cand_BxKxP.reshape(b, 1, k * p), axis=2
  ).reshape(b, t, k, p)
  repeats_BxKxP = (cand_BxKxP == last_BxK[..., None]) & ~prefix_empty
  phi_BxTxKxP = _shifted_phi(state, prefix_empty, repeats_BxKxP)
  psi_BxKxP = jax.nn.logsumexp(phi_BxTxKxP + x_BxTxKxP, axis=1)
  # Padded frames carry blank-ended paths unchanged: the last frame holds
  # the full-sequence probability of every utterance.
  full_BxK = jnp.logaddexp(
    state.gamma_nb_BxTxK[:, -1], state.gamma_b_BxTxK[:, -1]
  )
  psi_BxKxP = jnp.where(cand_BxKxP == eos_id, full_BxK[..., None], psi_BxKxP)
  return jnp.where(cand_BxKxP == blank_id, NEG_INF, psi_BxKxP)


def increment(psi_new: jax.Array, psi_old: jax.Array) -> jax.Array:
  """log psi(g + c) - log psi(g); -inf (never NaN) when psi(g) is 0."""
  safe_old = jnp.where(jnp.isneginf(psi_old), 0.0, psi_old)
  return jnp.where(jnp.isneginf(psi_old), NEG_INF, psi_new - safe_old)


def _log_affine_scan(mul_BxTxK: jax.Array, add_BxTxK: jax.Array) -> jax.Array:
  """r_t = logaddexp(r_{t-1} + mul_t, add_t) from r_{-1} = -inf, along T.

  A sequential `lax.scan`: on CPU it compiled 6x faster and ran 2x faster
  than the log-depth `lax.associative_scan` of the same recurrence (2.1
  against 12.1 s to compile, 0.22 against 0.45 ms per call at B=8, K=5,
  T=100).
  """

  def step(r_BxK, xs):
    mul_BxK, add_BxK = xs
    r_BxK = jnp.logaddexp(r_BxK + mul_BxK, add_BxK)
    return r_BxK, r_BxK

  init_BxK = jnp.full(mul_BxTxK[:, 0].shape, NEG_INF, mul_BxTxK.dtype)
  _, r_TxBxK = lax.scan(
    step,
    init_BxK,
    (jnp.moveaxis(mul_BxTxK, 1, 0), jnp.moveaxis(add_BxTxK, 1, 0)),
  )
  return jnp.moveaxis(r_TxBxK, 0, 1)


def advance(
  log_probs_BxTxV: jax.Array,
  state: CTCPrefixState,
  prefix_empty: jax.Array,
  src_BxK: jax.Array,
  parent_last_BxK: jax.Array,
  tokens_BxK: jax.Array,
  psi_BxK: jax.Array,
  blank_id: int,
) -> CTCPrefixState:
  """Forward variables of the K extensions the search kept.

  Args:
    log_probs_BxTxV: `frame_log_probs`.
    state: the parents' forward variables.
    prefix_empty: bool scalar, the parents are empty prefixes.
    src_BxK: parent hypothesis of each kept extension (index in K).
    parent_last_BxK: the parent's last unit (any value when empty).
    tokens_BxK: the unit each extension appended (not EOS or blank).
    psi_BxK: log psi of each extension (from `score_candidates`).

  Returns:
    The new state. gamma^nb_t = logaddexp(gamma^nb_{t-1}, Phi_{t-1}) +
    log p_t(c); gamma^b_t = logaddexp(gamma^nb_{t-1}, gamma^b_{t-1}) +
    log p_t(blank).
  """

  def take_k(x_BxTxK):
    return jnp.take_along_axis(x_BxTxK, src_BxK[:, None], axis=2)

  parent = CTCPrefixState(
    take_k(state.gamma_nb_BxTxK), take_k(state.gamma_b_BxTxK), psi_BxK
  )
  repeats_BxKx1 = ((tokens_BxK == parent_last_BxK) & ~prefix_empty)[..., None]
  phi_BxTxK = _shifted_phi(parent, prefix_empty, repeats_BxKx1)[..., 0]
  x_BxTxK = jnp.take_along_axis(log_probs_BxTxV, tokens_BxK[:, None], axis=2)
  gamma_nb = _log_affine_scan(x_BxTxK, phi_BxTxK + x_BxTxK)
  blank_BxTx1 = log_probs_BxTxV[..., blank_id : blank_id + 1]
  nb_prev = jnp.concatenate(
    [jnp.full_like(gamma_nb[:, :1], NEG_INF), gamma_nb[:, :-1]], axis=1
  )
  blank_BxTxK = jnp.broadcast_to(blank_BxTx1, gamma_nb.shape)
  gamma_b = _log_affine_scan(blank_BxTxK, nb_prev + blank_BxTxK)
  return CTCPrefixState(gamma_nb, gamma_b, psi_BxK)


@dataclasses.dataclass(frozen=True)
class CTCPrefixScorer:
  """The CTC head as a prefix scorer of `search.beam_search`.

  Attributes:
    log_probs_BxTxV: `frame_log_probs` of the batch.
    weight: lambda in (0, 1]; the search adds lambda * (log psi(g + c) -
      log psi(g)) per step (the attention's share, 1 - lambda, is applied
      to its scores by the caller).
    pre_beam_ratio: candidates scored per hypothesis, ceil(ratio * K)
      (ESPnet's pre_beam_ratio 1.5); the whole vocabulary when `weight` is
      1, where no other score could pre-select them.
    eos_id: end of sentence, scored with the full-sequence probability.
    blank_id: the CTC blank, never a candidate.
  """

  log_probs_BxTxV: jax.Array
  weight: float
  pre_beam_ratio: float
  eos_id: int
  blank_id: int

  def __post_init__(self):
    if not 0.0 < self.weight <= 1.0:
      raise ValueError(f'CTC weight must be in (0, 1], got {self.weight}')
    if self.pre_beam_ratio <= 0:
      raise ValueError(
        f'ctc_prebeam_ratio must be > 0, got {self.pre_beam_ratio}'
      )

  @classmethod
  def from_logits(
    cls,
    ctc_logits_BxTxV: jax.Array,
    lengths_B: jax.Array,
    *,
    weight: float,
    pre_beam_ratio: float,
    eos_id: int,
    blank_id: int,
  ) -> CTCPrefixScorer:
    """A scorer over a batch of CTC head outputs with valid lengths."""
    log_probs = frame_log_probs(ctc_logits_BxTxV, lengths_B, blank_id)
    return cls(log_probs, weight, pre_beam_ratio, eos_id, blank_id)

  def pre_beam_size(self, beam_size: int, vocab_size: int) -> int:
    """P, the candidates scored per hypothesis."""
    if self.weight >= 1.0:
      return vocab_size
    return min(vocab_size, math.ceil(self.pre_beam_ratio * beam_size))

  def init(self, beam_size: int) -> CTCPrefixState:
    """State of the empty hypotheses."""
    return init_state(self.log_probs_BxTxV, beam_size, self.blank_id)

  def score(
    self,
    state: CTCPrefixState,
    prefix_empty: jax.Array,
    last_BxK: jax.Array,
    cand_BxKxP: jax.Array,
  ) -> tuple[jax.Array, jax.Array]:
    """(log psi [B, K, P], weighted increments [B, K, P]) of candidates."""
    psi_BxKxP = score_candidates(
      self.log_probs_BxTxV,
      state,
      prefix_empty,
      last_BxK,
      cand_BxKxP,
      self.eos_id,
      self.blank_id,
    )
    return psi_BxKxP, self.weight * increment(
      psi_BxKxP, state.psi_BxK[..., None]
    )

  def advance(
    self,
    state: CTCPrefixState,
    prefix_empty: jax.Array,
    src_BxK: jax.Array,
    parent_last_BxK: jax.Array,
    tokens_BxK: jax.Array,
    psi_BxK: jax.Array,
  ) -> CTCPrefixState:
    """State of the kept extensions (see `advance`)."""
    return advance(
      self.log_probs_BxTxV,
      state,
      prefix_empty,
      src_BxK,
      parent_last_BxK,
      tokens_BxK,
      psi_BxK,
      self.blank_id,
    )
