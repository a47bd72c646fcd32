"""Unit and word times from the CTC head: Viterbi forced alignment.

The CTC head gives, per encoder frame, log-probabilities over the units and
blank. For the final hypothesis y_1..y_L (whichever search produced it),
the most probable CTC path that collapses to exactly y (Viterbi over the
extended sequence blank, y_1, blank, ..., y_L, blank; Graves et al. 2006,
as torchaudio's `forced_align` and CTC segmentation tools compute) gives
each unit the frames of its run: it starts at the first frame the path
emits it and ends after the last. A word's times are the span of its
units (words are separated by the space unit). Frame f covers
[f, f + 1) * `frame_seconds` of the audio the model read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from las_jax.text import Vocabulary


@dataclasses.dataclass(frozen=True)
class Span:
  """A unit or word with its times in seconds from the audio's start."""

  text: str
  start: float
  end: float


def forced_align(
  log_probs_TxU: np.ndarray, tokens_L: Sequence[int], blank_id: int
) -> np.ndarray | None:
  """Frames of each unit on the best CTC path that spells `tokens_L`.

  Args:
    log_probs_TxU: per-frame log-probabilities of the valid frames; the
      columns hold at least every id in `tokens_L` and `blank_id`.
    tokens_L: the hypothesis' unit ids (no blank, no EOS).
    blank_id: the blank's column.

  Returns:
    int [L, 2]: each unit's first frame and one past its last frame, or
    None when no path spells `tokens_L` in these frames (more units and
    repeat-separating blanks than frames).
  """
  lp = np.asarray(log_probs_TxU, np.float64)
  tokens = np.asarray(tokens_L, np.int64)
  t, n = lp.shape[0], tokens.size
  if n == 0:
    return np.zeros((0, 2), np.int64)
  states = np.full(2 * n + 1, blank_id, np.int64)
  states[1::2] = tokens
  # A unit may follow the unit two states back (skipping the blank between
  # them) unless the two are the same unit.
  can_skip = np.zeros(states.size, bool)
  can_skip[3::2] = tokens[1:] != tokens[:-1]
  emit_TxS = lp[:, states]
  score = np.full(states.size, -np.inf)
  score[:2] = emit_TxS[0, :2]
  back_TxS = np.zeros((t, states.size), np.int8)  # 0 stay, 1 from s-1, 2.
  for f in range(1, t):
    stay = score
    step = np.concatenate([[-np.inf], score[:-1]])
    skip = np.where(
      can_skip, np.concatenate([[-np.inf] * 2, score[:-2]]), -np.inf
    )
    options = np.stack([stay, step, skip])
    back_TxS[f] = np.argmax(options, axis=0)
    score = options.max(axis=0) + emit_TxS[f]
  last = states.size - 1
  s = last if score[last] >= score[last - 1] else last - 1
  if not np.isfinite(score[s]):
    return None
  path_T = np.empty(t, np.int64)
  for f in range(t - 1, -1, -1):
    path_T[f] = s
    s -= back_TxS[f, s]
  frames = np.zeros((n, 2), np.int64)
  for i in range(n):
    at = np.flatnonzero(path_T == 2 * i + 1)
    frames[i] = at[0], at[-1] + 1
  return frames


def word_spans(
  tokens_L: Sequence[int],
  frames_Lx2: np.ndarray,
  vocab: Vocabulary,
  frame_seconds: float,
  offset: float = 0.0,
) -> list[Span]:
  """Words (units between spaces) with the span of their units' frames.

  Args:
    tokens_L: the hypothesis' unit ids.
    frames_Lx2: `forced_align`'s frames of each unit.
    vocab: decodes each word's units into text.
    frame_seconds: seconds per encoder frame.
    offset: seconds added to every time (a segment's start).
  """
  words, current = [], []
  for i, token in enumerate(tokens_L):
    if token == Vocabulary.SPACE_ID:
      if current:
        words.append(current)
      current = []
    else:
      current.append(i)
  if current:
    words.append(current)
  return [
    Span(
      vocab.decode([tokens_L[i] for i in word]),
      round(offset + frames_Lx2[word[0], 0] * frame_seconds, 3),
      round(offset + frames_Lx2[word[-1], 1] * frame_seconds, 3),
    )
    for word in words
  ]
