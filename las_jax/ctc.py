"""CTC: loss with padding masks, greedy decoding and prefix beam search.

`ctc_loss` and `ctc_greedy_decode` are pure JAX and jit-able. The prefix beam
search runs on the host in numpy, one utterance at a time: merging prefixes
that different alignments reach is a dictionary operation that does not map
onto fixed-shape arrays without a quadratic prefix comparison per step.
"""

import math
from collections import defaultdict

import jax
import jax.numpy as jnp
import numpy as np
import optax


def _check_batch(name, x, ndim, batch=None):
  if x.ndim != ndim:
    raise ValueError(f'{name} must have rank {ndim}, got shape {x.shape}')
  if batch is not None and x.shape[0] != batch:
    raise ValueError(
      f'{name} has batch {x.shape[0]}, expected {batch} (shape {x.shape})'
    )


def _paddings(lengths_B: jax.Array, width: int) -> jax.Array:
  """1.0 where a position is at or past the length (optax's convention)."""
  positions = jnp.arange(width)[None, :]
  return (positions >= lengths_B[:, None]).astype(jnp.float32)


def ctc_loss(
  logits_BxTxV: jax.Array,
  logit_lengths_B: jax.Array,
  labels_BxL: jax.Array,
  label_lengths_B: jax.Array,
  blank_id: int = 0,
) -> jax.Array:
  """Per-utterance CTC loss -log p(labels | logits), summed over alignments.

  Frames at or past logit_lengths and labels at or past label_lengths are
  ignored, whatever they hold. Impossible targets (too long for the frames)
  get a large finite loss (optax uses log(0) ~ -1e5).

  Args:
    logits_BxTxV: unnormalized scores; blank at blank_id.
    logit_lengths_B: valid frames per utterance.
    labels_BxL: target ids (no blanks), right-padded.
    label_lengths_B: valid labels per utterance.
    blank_id: index of the blank class.

  Returns:
    loss_B float32.
  """
  _check_batch('ctc logits', logits_BxTxV, 3)
  b, t, _ = logits_BxTxV.shape
  _check_batch('ctc logit_lengths', logit_lengths_B, 1, b)
  _check_batch('ctc labels', labels_BxL, 2, b)
  _check_batch('ctc label_lengths', label_lengths_B, 1, b)
  label_paddings_BxL = _paddings(label_lengths_B, labels_BxL.shape[1])
  return optax.ctc_loss(
    logits_BxTxV.astype(jnp.float32),
    _paddings(logit_lengths_B, t),
    # Padded labels may hold anything (e.g. EOS); optax only needs ids in range.
    jnp.where(label_paddings_BxL > 0, 0, labels_BxL),
    label_paddings_BxL,
    blank_id=blank_id,
  )


def _best_path(logits_BxTxV, lengths_B, blank_id):
  """Per-frame argmax, and where it emits a unit (a valid frame whose best
  label is not blank and not the previous frame's)."""
  _check_batch('ctc logits', logits_BxTxV, 3)
  b, t, _ = logits_BxTxV.shape
  _check_batch('ctc lengths', lengths_B, 1, b)
  best_BxT = jnp.argmax(logits_BxTxV, axis=-1).astype(jnp.int32)
  prev_BxT = jnp.pad(best_BxT[:, :-1], ((0, 0), (1, 0)), constant_values=-1)
  valid_BxT = jnp.arange(t)[None, :] < lengths_B[:, None]
  return best_BxT, valid_BxT & (best_BxT != blank_id) & (best_BxT != prev_BxT)


def densest_confident_units(
  logits_BxTxV: jax.Array, lengths_B: jax.Array, window: int, blank_id: int = 0
) -> jax.Array:
  """Most confident units the best path emits in any `window` frames.

  Each unit the best path (`ctc_greedy_decode`'s) emits counts by its
  peak posterior: the highest softmax probability of its label over the
  frames of its run (a CTC spike's height). Confident spikes count about
  1, a unit the head barely prefers to blank and other labels counts
  less. A unit counts in the window of its first frame; an utterance of
  fewer than `window` frames counts all of its units.

  Args:
    logits_BxTxV: logits or log-probabilities (softmax is taken).
    lengths_B: valid frames per utterance.
    window: frames per window, >= 1.
    blank_id: index of the blank class.

  Returns:
    float32 [B].
  """
  best_BxT, start_BxT = _best_path(logits_BxTxV, lengths_B, blank_id)
  b, t = best_BxT.shape
  probs_BxT = jnp.max(jax.nn.softmax(logits_BxTxV.astype(jnp.float32)), -1)
  # Frames of a unit's run: non-blank, valid, same label since its start.
  valid_BxT = jnp.arange(t)[None, :] < lengths_B[:, None]
  in_run_BxT = valid_BxT & (best_BxT != blank_id)
  run_BxT = jnp.cumsum(start_BxT, axis=1) - 1  # Run index at each frame.
  segment_BxT = jnp.where(
    in_run_BxT, jnp.arange(b)[:, None] * t + run_BxT, b * t
  )
  peak_R = jax.ops.segment_max(
    probs_BxT.ravel(), segment_BxT.ravel(), num_segments=b * t + 1
  )
  weight_BxT = jnp.where(start_BxT, peak_R[segment_BxT], 0.0)
  sums_BxT1 = jnp.pad(jnp.cumsum(weight_BxT, axis=1), ((0, 0), (1, 0)))
  w = min(window, t)
  return jnp.max(sums_BxT1[:, w:] - sums_BxT1[:, :-w], axis=1)


def ctc_greedy_decode(
  logits_BxTxV: jax.Array, lengths_B: jax.Array, blank_id: int = 0
) -> tuple[jax.Array, jax.Array]:
  """Best path decoding: per-frame argmax, collapse repeats, drop blanks.

  Args:
    logits_BxTxV: scores (logits or log-probs; argmax is the same).
    lengths_B: valid frames per utterance.
    blank_id: index of the blank class.

  Returns:
    tokens_BxT int32 (left-aligned, 0 after the length) and lengths_B int32.
  """
  best_BxT, keep_BxT = _best_path(logits_BxTxV, lengths_B, blank_id)
  b, t = best_BxT.shape
  # Scatter kept tokens to their rank; dropped ones go out of range.
  target_BxT = jnp.where(keep_BxT, jnp.cumsum(keep_BxT, axis=1) - 1, t)
  tokens_BxT = (
    jnp.zeros((b, t), jnp.int32)
    .at[jnp.arange(b)[:, None], target_BxT]
    .set(best_BxT, mode='drop')
  )
  return tokens_BxT, keep_BxT.sum(axis=1).astype(jnp.int32)


def _logaddexp(a: float, b: float) -> float:
  if a == -math.inf:
    return b
  if b == -math.inf:
    return a
  hi, lo = (a, b) if a > b else (b, a)
  return hi + math.log1p(math.exp(lo - hi))


def prefix_beam_search(
  log_probs_TxV: np.ndarray,
  beam_size: int,
  blank_id: int = 0,
  token_beam: int | None = None,
) -> list[tuple[tuple[int, ...], float]]:
  """CTC prefix beam search for one utterance (host, numpy).

  Each prefix tracks log p of the frames so far with its alignments ending
  in blank (p_b) or in its last label (p_nb); a repeated label extends the
  prefix only after a blank. The beam keeps the beam_size prefixes with the
  largest p_b + p_nb. With no pruning this is the exact p(y | x) of every
  label sequence y.

  Args:
    log_probs_TxV: per-frame log-probs (or logits; they are log-softmaxed)
      of the valid frames only.
    beam_size: prefixes kept per frame.
    blank_id: index of the blank class.
    token_beam: labels tried per frame, the most probable ones (blank is
      always tried); None means beam_size.

  Returns:
    [(labels, log p)] best first, at most beam_size entries.
  """
  log_probs_TxV = np.asarray(log_probs_TxV, np.float64)
  if log_probs_TxV.ndim != 2:
    raise ValueError(f'log_probs must be [T, V], got {log_probs_TxV.shape}')
  if beam_size < 1:
    raise ValueError(f'beam_size must be >= 1, got {beam_size}')
  v = log_probs_TxV.shape[1]
  log_probs_TxV = log_probs_TxV - np.logaddexp.reduce(
    log_probs_TxV, axis=1, keepdims=True
  )
  n_tokens = min(v, token_beam or beam_size)
  beams = {(): (0.0, -math.inf)}  # prefix -> (log p_b, log p_nb)
  for lp_V in log_probs_TxV:
    tried = set(np.argsort(-lp_V, kind='stable')[:n_tokens].tolist())
    tried.add(blank_id)
    nxt = defaultdict(lambda: [-math.inf, -math.inf])
    for prefix, (p_b, p_nb) in beams.items():
      total = _logaddexp(p_b, p_nb)
      last = prefix[-1] if prefix else None
      for c in tried:
        p = float(lp_V[c])
        if c == blank_id:
          entry = nxt[prefix]
          entry[0] = _logaddexp(entry[0], total + p)
        elif c == last:
          # "a" then "a": same prefix unless a blank separates them.
          entry = nxt[prefix]
          entry[1] = _logaddexp(entry[1], p_nb + p)
          ext = nxt[prefix + (c,)]
          ext[1] = _logaddexp(ext[1], p_b + p)
        else:
          ext = nxt[prefix + (c,)]
          ext[1] = _logaddexp(ext[1], total + p)
    ranked = sorted(
      nxt.items(), key=lambda kv: _logaddexp(*kv[1]), reverse=True
    )
    beams = {prefix: tuple(p) for prefix, p in ranked[:beam_size]}
  result = [(prefix, _logaddexp(*p)) for prefix, p in beams.items()]
  return sorted(result, key=lambda item: item[1], reverse=True)


def ctc_prefix_beam_search(
  log_probs_BxTxV: np.ndarray,
  lengths_B: np.ndarray,
  beam_size: int,
  blank_id: int = 0,
  token_beam: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Batched `prefix_beam_search` with fixed-shape n-best output.

  Args:
    log_probs_BxTxV: log-probs or logits (host or device array).
    lengths_B: valid frames per utterance.
    beam_size: K, prefixes kept per frame and n-best size.
    blank_id: index of the blank class.
    token_beam: labels tried per frame (None: beam_size).

  Returns:
    tokens_BxKxT int32 (0-padded), lengths_BxK int32 (0 for empty slots),
    scores_BxK float32 log p(y | x), best first (-inf for empty slots).
  """
  log_probs_BxTxV = np.asarray(log_probs_BxTxV)
  lengths_B = np.asarray(lengths_B)
  if log_probs_BxTxV.ndim != 3:
    raise ValueError(
      f'log_probs must be [B, T, V], got {log_probs_BxTxV.shape}'
    )
  b, t, _ = log_probs_BxTxV.shape
  if lengths_B.shape != (b,):
    raise ValueError(f'lengths must be [{b}], got shape {lengths_B.shape}')
  tokens = np.zeros((b, beam_size, t), np.int32)
  lengths = np.zeros((b, beam_size), np.int32)
  scores = np.full((b, beam_size), -np.inf, np.float32)
  for i in range(b):
    nbest = prefix_beam_search(
      log_probs_BxTxV[i, : lengths_B[i]], beam_size, blank_id, token_beam
    )
    for j, (labels, score) in enumerate(nbest):
      tokens[i, j, : len(labels)] = labels
      lengths[i, j] = len(labels)
      scores[i, j] = score
  return tokens, lengths, scores
