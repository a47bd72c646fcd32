"""Recognition error rates: CER (KoSpeech), WER and sWER (KsponSpeech/ESPnet).

All corpus rates are total edits / total reference units, as KoSpeech's
`ErrorRate` accumulates them (not a mean of per-utterance rates).

- CER, KoSpeech's metric: Levenshtein distance over characters with all
  whitespace removed from both sides. `cer_with_spaces` keeps single spaces
  (runs collapsed, ends stripped) as characters.
- WER: Levenshtein distance over whitespace-separated words.
- sWER, the KsponSpeech paper's space-normalized WER (ESPnet
  `egs2/ksponspeech/asr1/local/get_space_normalized_hyps.py`): Korean
  spacing is loose, so before the WER the hypothesis takes the reference's
  spacing wherever its characters are right. See `space_normalize`.

Empty references: an utterance with an empty reference contributes its
edits (the hypothesis length) to the numerator and 0 to the denominator. A
corpus rate whose denominator is 0 is undefined and returned as NaN (not an
exception, so that a decode run over such data still writes its results).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import editdistance


def _chars_no_space(text: str) -> str:
  return ''.join(text.split())


def _chars_with_space(text: str) -> str:
  return ' '.join(text.split())


def _rate(edits: int, total: int) -> float:
  return edits / total if total else float('nan')


def _check_pairs(refs: Sequence[str], hyps: Sequence[str]) -> None:
  if isinstance(refs, str) or isinstance(hyps, str):
    raise TypeError('refs and hyps must be sequences of strings, not strings')
  if len(refs) != len(hyps):
    raise ValueError(
      f'refs and hyps differ in length: {len(refs)} vs {len(hyps)}'
    )


def space_normalize(ref: str, hyp: str) -> str:
  """Re-spaces `hyp` like `ref` wherever their characters align as equal.

  ESPnet's algorithm (after Kaldi's `align-text`): both texts become
  character tokens, each marked whether it starts a word. A Levenshtein
  alignment compares the characters only (ignoring the marks), with the
  traceback preferring substitution/match on ties, then deletion over
  insertion when equal. Every hypothesis character aligned to an equal
  reference character takes the reference's word-start mark; substituted and
  inserted characters keep their own. The marks then turn back into spaces.

  Args:
    ref: reference text.
    hyp: hypothesis text.

  Returns:
    The hypothesis with reference spacing where its characters match.
  """
  ref_toks = _char_tokens(ref)
  hyp_toks = _char_tokens(hyp)
  r_chars = [c for c, _ in ref_toks]
  h_chars = [c for c, _ in hyp_toks]
  n_h, n_r = len(h_chars), len(r_chars)
  # scores[h][r]: edits aligning the first h hyp and first r ref characters.
  scores = [list(range(n_r + 1))]
  for h in range(1, n_h + 1):
    prev, row = scores[-1], [h]
    hc = h_chars[h - 1]
    for r in range(1, n_r + 1):
      row.append(
        min(
          prev[r - 1] + (hc != r_chars[r - 1]),
          prev[r] + 1,
          row[r - 1] + 1,
        )
      )
    scores.append(row)

  out = []  # (char, starts_word), built back to front.
  h, r = n_h, n_r
  while h > 0 or r > 0:
    if h == 0:
      r -= 1  # Deletion: nothing in the hypothesis.
      continue
    if r == 0:
      h -= 1
      out.append(hyp_toks[h])
      continue
    diag = scores[h - 1][r - 1] + (h_chars[h - 1] != r_chars[r - 1])
    insert, delete = scores[h - 1][r] + 1, scores[h][r - 1] + 1
    if diag <= min(insert, delete):
      h, r = h - 1, r - 1
      same = h_chars[h] == r_chars[r]
      out.append(ref_toks[r] if same else hyp_toks[h])
    elif insert < delete:
      h -= 1
      out.append(hyp_toks[h])
    else:
      r -= 1
  out.reverse()
  pieces = []
  for char, starts_word in out:
    if starts_word and pieces:
      pieces.append(' ')
    pieces.append(char)
  return ''.join(pieces)


def _char_tokens(text: str) -> list[tuple[str, bool]]:
  return [(c, i == 0) for word in text.split() for i, c in enumerate(word)]


@dataclasses.dataclass(frozen=True)
class UtteranceErrors:
  """Edit counts of one (reference, hypothesis) pair.

  Attributes:
    char_edits: character edits, whitespace removed (KoSpeech CER).
    ref_chars: reference characters, whitespace removed.
    spaced_char_edits: character edits with single spaces as characters.
    ref_spaced_chars: reference characters with single spaces.
    word_edits: word edits.
    ref_words: reference words.
    sword_edits: word edits after `space_normalize` (sWER; its denominator
      is `ref_words`).
  """

  char_edits: int
  ref_chars: int
  spaced_char_edits: int
  ref_spaced_chars: int
  word_edits: int
  ref_words: int
  sword_edits: int


def utterance_errors(ref: str, hyp: str) -> UtteranceErrors:
  """Counts the edits of one pair for every metric (for per-utterance logs)."""
  ref_words = ref.split()
  ref_nosp, ref_sp = _chars_no_space(ref), _chars_with_space(ref)
  return UtteranceErrors(
    char_edits=editdistance.eval(ref_nosp, _chars_no_space(hyp)),
    ref_chars=len(ref_nosp),
    spaced_char_edits=editdistance.eval(ref_sp, _chars_with_space(hyp)),
    ref_spaced_chars=len(ref_sp),
    word_edits=editdistance.eval(ref_words, hyp.split()),
    ref_words=len(ref_words),
    sword_edits=editdistance.eval(ref_words, space_normalize(ref, hyp).split()),
  )


@dataclasses.dataclass(frozen=True)
class ErrorRates:
  """Corpus error rates (fractions, not percent) and their counts.

  Rates are NaN where the reference total is 0.
  """

  cer: float
  cer_with_spaces: float
  wer: float
  swer: float
  n_utterances: int
  char_edits: int
  ref_chars: int
  spaced_char_edits: int
  ref_spaced_chars: int
  word_edits: int
  ref_words: int
  sword_edits: int

  @property
  def crr(self) -> float:
    """Character recognition rate, 1 - CER, as in KoSpeech's tables."""
    return 1.0 - self.cer

  @classmethod
  def from_utterances(cls, utts: Sequence[UtteranceErrors]) -> ErrorRates:
    """Sums per-utterance counts into corpus rates."""
    total = {
      f.name: sum(getattr(u, f.name) for u in utts)
      for f in dataclasses.fields(UtteranceErrors)
    }
    return cls(
      cer=_rate(total['char_edits'], total['ref_chars']),
      cer_with_spaces=_rate(
        total['spaced_char_edits'], total['ref_spaced_chars']
      ),
      wer=_rate(total['word_edits'], total['ref_words']),
      swer=_rate(total['sword_edits'], total['ref_words']),
      n_utterances=len(utts),
      **total,
    )


def error_rates(refs: Sequence[str], hyps: Sequence[str]) -> ErrorRates:
  """All corpus rates at once.

  Raises:
    ValueError: `refs` and `hyps` differ in length.
    TypeError: a single string was passed instead of a sequence.
  """
  _check_pairs(refs, hyps)
  return ErrorRates.from_utterances(
    [utterance_errors(r, h) for r, h in zip(refs, hyps, strict=True)]
  )


def _corpus_rate(
  refs: Sequence[str], hyps: Sequence[str], units: Callable[[str], Sequence]
) -> float:
  """Total edits / total reference units, with `units` splitting a text."""
  _check_pairs(refs, hyps)
  edits = total = 0
  for ref, hyp in zip(refs, hyps, strict=True):
    ref_units = units(ref)
    edits += editdistance.eval(ref_units, units(hyp))
    total += len(ref_units)
  return _rate(edits, total)


def cer(
  refs: Sequence[str], hyps: Sequence[str], remove_spaces: bool = True
) -> float:
  """Corpus character error rate.

  Args:
    refs: reference texts.
    hyps: hypothesis texts, same length.
    remove_spaces: True (KoSpeech's CER) removes all whitespace before
      comparing; False keeps single spaces as characters.

  Returns:
    Total character edits / total reference characters (NaN if 0).
  """
  units = _chars_no_space if remove_spaces else _chars_with_space
  return _corpus_rate(refs, hyps, units)


def crr(refs: Sequence[str], hyps: Sequence[str]) -> float:
  """Character recognition rate, 1 - CER (spaces removed), as KoSpeech."""
  return 1.0 - cer(refs, hyps)


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
  """Corpus word error rate over whitespace-separated words."""
  return _corpus_rate(refs, hyps, str.split)


def swer(refs: Sequence[str], hyps: Sequence[str]) -> float:
  """Corpus space-normalized WER (KsponSpeech sWER; see `space_normalize`)."""
  _check_pairs(refs, hyps)
  return wer(
    refs, [space_normalize(r, h) for r, h in zip(refs, hyps, strict=True)]
  )


def looks_like_loop(
  units: Sequence, max_units: int | None = None, min_repeats: int = 3
) -> bool:
  """Whether a hypothesis looks like a decoding loop.

  True when an n-gram of 2 or more units occurs `min_repeats` or more times
  in a row ("부모 부모 부모 ..."), or when it has more units than the
  search allowed (`max_units`, EOS excluded) minus one: it ran into the
  token limit instead of ending. Single repeated units ("하하하") are
  ordinary text.

  Args:
    units: the hypothesis' output units (token strings or ids).
    max_units: the search's limit for this utterance, or None.
    min_repeats: consecutive occurrences that make a loop.

  Returns:
    bool.
  """
  units = list(units)
  n_units = len(units)
  if max_units is not None and n_units > max_units - 1:
    return True
  for n in range(2, n_units // min_repeats + 1):
    for start in range(n_units - n * min_repeats + 1):
      gram = units[start : start + n]
      if all(
        units[start + r * n : start + (r + 1) * n] == gram
        for r in range(1, min_repeats)
      ):
        return True
  return False
