"""Unit and word times from the CTC head: Viterbi forced alignment.

The CTC head gives, per encoder frame, log-probabilities over the units and
blank. For the final hypothesis y_1..y_L (whichever search produced it),
the most probable CTC path that collapses to exactly y (Viterbi over the
extended sequence blank, y_1, blank, ..., y_L, blank; Graves et al. 2006,
as torchaudio's `forced_align` and CTC segmentation tools compute) gives
each unit the frames of its run: it starts at the first frame the path
emits it and ends after the last. A word's times are the span of its
units; words are `Vocabulary.words`, the units between space units as the
transcript writes them. Frame f covers [f, f + 1) * `frame_seconds` of
the audio the model read.
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

  def __post_init__(self):
    # Plain floats, whatever arithmetic made them: JSON-able, short repr.
    object.__setattr__(self, 'start', float(self.start))
    object.__setattr__(self, 'end', float(self.end))


def forced_align(
  log_probs_TxV: np.ndarray, tokens_L: Sequence[int], blank_id: int
) -> np.ndarray | None:
  """Frames of each unit on the best CTC path that spells `tokens_L`.

  Args:
    log_probs_TxV: per-frame log-probabilities of the valid frames.
    tokens_L: the hypothesis' unit ids (no blank, no EOS).
    blank_id: the blank's column.

  Returns:
    int [L, 2]: each unit's first frame and one past its last frame, or
    None when no path spells `tokens_L` in these frames (more units and
    repeat-separating blanks than frames).
  """
  lp = np.asarray(log_probs_TxV)
  tokens = np.asarray(tokens_L, np.int64)
  return align_columns(lp[:, tokens], lp[:, blank_id], tokens)


def align_columns(
  units_TxL: np.ndarray, blank_T: np.ndarray, tokens_L: Sequence[int]
) -> np.ndarray | None:
  """`forced_align` from the hypothesis' own columns: units_TxL[:, l] is
  log p(tokens_L[l]) per frame, blank_T log p(blank); `tokens_L` only
  tells which neighbours repeat (a blank must separate them)."""
  tokens = np.asarray(tokens_L, np.int64)
  t, n = units_TxL.shape[0], tokens.size
  if n == 0:
    return np.zeros((0, 2), np.int64)
  # State 2l + 1 emits unit l; even states emit blank.
  emit_TxS = np.empty((t, 2 * n + 1))
  emit_TxS[:, 0::2] = np.asarray(blank_T, np.float64)[:, None]
  emit_TxS[:, 1::2] = units_TxL[:, :n]
  # A unit may follow the unit two states back (skipping the blank between
  # them) unless the two are the same unit.
  can_skip = np.zeros(2 * n + 1, bool)
  can_skip[3::2] = tokens[1:] != tokens[:-1]
  score = np.full(2 * n + 1, -np.inf)
  score[:2] = emit_TxS[0, :2]
  back_TxS = np.zeros((t, 2 * n + 1), np.int8)  # 0 stay, 1 or 2 states on.
  for f in range(1, t):
    step = np.concatenate([[-np.inf], score[:-1]])
    skip = np.concatenate([[-np.inf] * 2, score[:-2]])
    options = np.stack([score, step, np.where(can_skip, skip, -np.inf)])
    back_TxS[f] = np.argmax(options, axis=0)
    score = options.max(axis=0) + emit_TxS[f]
  last = 2 * n
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


def encoder_frame_seconds(config) -> float:
  """Seconds of audio per encoder frame: the feature hop times the
  extractor's and pyramid's time reduction (`models.encoder_lengths`)."""
  from las_jax import models  # noqa: PLC0415

  hop_s = config.features.frame_shift_ms / 1000.0
  many = 1 << 20  # A frame count every reduction divides exactly.
  return hop_s * many / int(models.encoder_lengths(config.model, many))


def transcript_units(tokens_L: Sequence[int], vocab: Vocabulary) -> np.ndarray:
  """Indices of the units that spell a hypothesis' transcript.

  Each word's units (`Vocabulary.words`) with one space unit between
  words: the leading, trailing and repeated spaces the transcript drops
  are not aligned either, so the times are those of the text users read
  (for character units, `forced_align` of `vocab.encode(transcript)`).

  Returns:
    int [L'] indices into `tokens_L`, increasing.
  """
  tokens = np.asarray(tokens_L, np.int64)
  words = vocab.words(tokens)
  spaces = np.flatnonzero(tokens == Vocabulary.SPACE_ID)
  kept = []
  for word in words:
    if kept:  # The space unit before this word.
      kept.append(spaces[np.searchsorted(spaces, kept[-1])])
    kept.extend(word.units)
  return np.asarray(kept, np.int64)


def word_spans(
  tokens_L: Sequence[int],
  frames_Lx2: np.ndarray,
  vocab: Vocabulary,
  frame_seconds: float,
  offset: float = 0.0,
) -> list[Span]:
  """Words (`Vocabulary.words`) with the span of their units' frames.

  Args:
    tokens_L: the hypothesis' unit ids.
    frames_Lx2: `forced_align`'s frames of each unit.
    vocab: splits the units into words and writes them.
    frame_seconds: seconds per encoder frame.
    offset: seconds added to every time (a segment's start).

  Returns:
    The words in order, with the texts of `vocab.transcript(tokens_L)`
    and times in seconds (Python floats, rounded to milliseconds).
  """
  frames_Lx2 = np.asarray(frames_Lx2)
  return [
    Span(
      word.text,
      round(offset + float(frames_Lx2[word.units[0], 0]) * frame_seconds, 3),
      round(offset + float(frames_Lx2[word.units[-1], 1]) * frame_seconds, 3),
    )
    for word in vocab.words(tokens_L)
  ]
