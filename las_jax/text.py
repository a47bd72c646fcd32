"""Korean text: KsponSpeech transcript normalization and token vocabularies.

Normalization follows KoSpeech's `dataset/kspon/preprocess/preprocess.py`
(`bracket_filter` + `special_filter`), with its accidents made explicit:

1. Dual transcriptions `(spelling)/(phonetic)` become one of the groups:
   the second in 'phonetic' mode (KoSpeech default), the first in 'spelling'
   mode (ESPnet's `--notation-type char`). Whitespace around the joining
   `/` is tolerated, as ESPnet does, and so is a missing `/`: KoSpeech's
   documentation quotes the corpus line `... (100%)(백 프로)가 왜 안돼?`
   and its filter reads any `(A)(B)` pair as a dual transcription. This
   runs first: the `/` between the groups would otherwise look like a
   disfluency mark.
2. Noise tags `o/ n/ u/ b/ l/` (overlap, noise, unintelligible, breath,
   laughter) are removed when they are tags: at the start of the text, after
   whitespace, after `(` or after another tag. KoSpeech removes these two
   characters anywhere, which would also eat the end of a spelled word such
   as `(job/)`; we do not.
3. Special characters: `/ + * - @ $ ^ & [ ] = : ; ,` are deleted (the
   filler `/`, repetition `+` and noisy-speech `*` marks among them),
   `. ? !` are kept, `#` becomes `샾`. Parentheses left over after step 1
   (unbalanced or single groups, which KoSpeech's character-level filter
   mishandles by dropping text up to the next `(`) are deleted and their
   contents kept: `(학교)/(핵교 갔어` gives `학교핵교 갔어`. Nested dual
   groups resolve from the inside out.
4. `%`: kept in 'spelling' mode. In 'phonetic' mode a `%` only survives step
   1 where the transcriber wrote it outside a dual transcription; KoSpeech
   hard-codes the spoken word for the 8 such utterances of the corpus
   (`퍼센트` or `프로`), reproduced here by `utterance_id`; other utterances
   get `퍼센트`.
5. Whitespace runs collapse to one space; the ends are stripped.

The text is NFC-normalized (before and after) so that decomposed Hangul
(never produced by the CP949 corpus files, but possible from other sources)
gets the same characters as precomposed Hangul.

Vocabularies map text to ids, with `<pad>`=0, `<sos>`=1, `<eos>`=2,
`<unk>`=3, space=4, then units by descending training-set frequency (ties
by code point). Units are characters (KoSpeech's default) or, with
`unit='jamo'`, Hangul syllables decomposed into conjoining jamo (KoSpeech's
"grapheme" units); everything that is not a precomposed Hangul syllable is
its own unit in both.
"""

from __future__ import annotations

import collections
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

TRANSCRIPTIONS = ('phonetic', 'spelling')
UNITS = ('char', 'jamo')

# KoSpeech's `special_filter` deletes these; parentheses join them because
# every well-formed group is gone by the time the filter runs.
_DELETED_CHARS = frozenset('/+*-@$^&[]=:;,()')
# KoSpeech's `percent_files`: spoken form of a bare '%' per utterance number.
_PERCENT_WORDS = {
  '087797': '퍼센트',
  '215401': '퍼센트',
  '284574': '퍼센트',
  '397184': '퍼센트',
  '501006': '프로',
  '502173': '프로',
  '542363': '프로',
  '581483': '퍼센트',
}
_DEFAULT_PERCENT_WORD = '퍼센트'

# `(A)/(B)` (or `(A)(B)`) with no parentheses inside either group; empty
# groups allowed.
_DUAL_RE = re.compile(r'\(([^()]*)\)\s*/?\s*\(([^()]*)\)')
# One or more noise tags at a tag boundary (see module docstring).
_NOISE_RE = re.compile(r'(?:(?<=[\s(])|^)(?:[onubl]/)+')


def _percent_word(utterance_id: str | None) -> str:
  if utterance_id is None:
    return _DEFAULT_PERCENT_WORD
  # 'KsponSpeech_087797' and 'KsponSpeech_087797.txt' both end in digits
  # that KoSpeech reads as `file[12:18]`.
  match = re.search(r'(\d{6})(?:\.\w+)?$', utterance_id)
  number = match.group(1) if match else ''
  return _PERCENT_WORDS.get(number, _DEFAULT_PERCENT_WORD)


def normalize_transcript(
  raw: str,
  transcription: str = 'phonetic',
  *,
  utterance_id: str | None = None,
) -> str:
  """Normalizes one KsponSpeech transcript (see the module docstring).

  Args:
    raw: transcript as in the corpus `.txt`/`.trn` files.
    transcription: 'phonetic' keeps the second group of `(A)/(B)`,
      'spelling' the first.
    utterance_id: e.g. 'KsponSpeech_501006'; only picks the spoken word for a
      bare '%' in phonetic mode, as KoSpeech does.

  Returns:
    The normalized text; '' when nothing is left (e.g. only noise tags).

  Raises:
    ValueError: `transcription` is not 'phonetic' or 'spelling'.
  """
  if transcription not in TRANSCRIPTIONS:
    raise ValueError(
      f'transcription must be one of {TRANSCRIPTIONS}, got {transcription!r}'
    )
  group = 2 if transcription == 'phonetic' else 1
  text = unicodedata.normalize('NFC', raw)
  # Repeat so that nested groups resolve from the inside out.
  while True:
    text, n_subs = _DUAL_RE.subn(lambda m: m.group(group), text)
    if not n_subs:
      break
  text = _NOISE_RE.sub('', text)
  percent = '%' if transcription == 'spelling' else _percent_word(utterance_id)
  out = []
  for ch in text:
    if ch in _DELETED_CHARS:
      continue
    if ch == '#':
      out.append('샾')
    elif ch == '%':
      out.append(percent)
    else:
      out.append(ch)
  # NFC again: deleting a mark between two jamo can make them composable,
  # and the output must be a fixed point of this function.
  return unicodedata.normalize('NFC', ' '.join(''.join(out).split()))


# Hangul syllables (U+AC00..U+D7A3) are (lead * 21 + vowel) * 28 + tail.
_S_BASE, _S_LAST = 0xAC00, 0xD7A3
_L_BASE, _V_BASE, _T_BASE = 0x1100, 0x1161, 0x11A7
_L_COUNT, _V_COUNT, _T_COUNT = 19, 21, 28


def decompose_hangul(text: str) -> str:
  """Splits Hangul syllables into conjoining jamo; other chars unchanged.

  Equal to `unicodedata.normalize('NFD', ...)` on Hangul syllables, but
  leaves every other character as it is (NFD would also split e.g. 'é').
  """
  out = []
  for ch in text:
    code = ord(ch)
    if _S_BASE <= code <= _S_LAST:
      index = code - _S_BASE
      lead, rest = divmod(index, _V_COUNT * _T_COUNT)
      vowel, tail = divmod(rest, _T_COUNT)
      out.append(chr(_L_BASE + lead))
      out.append(chr(_V_BASE + vowel))
      if tail:
        out.append(chr(_T_BASE + tail))
    else:
      out.append(ch)
  return ''.join(out)


def compose_hangul(text: str) -> str:
  """Joins conjoining jamo (lead, vowel, optional tail) into syllables.

  The inverse of `decompose_hangul`. Jamo that do not form a syllable
  (a lone vowel or tail, as a jamo model may emit) stay as they are. Other
  characters are unchanged, unlike `unicodedata.normalize('NFC', ...)`.
  """
  out = []
  i, n = 0, len(text)
  while i < n:
    lead = ord(text[i]) - _L_BASE
    vowel = ord(text[i + 1]) - _V_BASE if i + 1 < n else -1
    if 0 <= lead < _L_COUNT and 0 <= vowel < _V_COUNT:
      tail = ord(text[i + 2]) - _T_BASE if i + 2 < n else 0
      if not 0 < tail < _T_COUNT:
        tail = 0
      out.append(chr(_S_BASE + (lead * _V_COUNT + vowel) * _T_COUNT + tail))
      i += 3 if tail else 2
    else:
      out.append(text[i])
      i += 1
  return ''.join(out)


class Vocabulary:
  """Token <-> id mapping over characters or jamo.

  Ids: `<pad>`=0, `<sos>`=1, `<eos>`=2, `<unk>`=3, space=4, then units by
  descending training frequency.
  """

  PAD_ID = 0
  SOS_ID = 1
  EOS_ID = 2
  UNK_ID = 3
  SPACE_ID = 4
  SPECIALS = ('<pad>', '<sos>', '<eos>', '<unk>')
  # What an `<unk>` id decodes to: one character, so that CER counts one
  # error for it rather than five.
  UNK_CHAR = '\u2047'

  def __init__(self, tokens: Sequence[str], unit: str = 'char'):
    """Creates a vocabulary from its token list (index = id).

    Args:
      tokens: the 4 special tokens, ' ', then single-character units.
      unit: 'char' or 'jamo'.

    Raises:
      ValueError: the token list or unit is malformed.
    """
    if unit not in UNITS:
      raise ValueError(f'unit must be one of {UNITS}, got {unit!r}')
    tokens = list(tokens)
    if tuple(tokens[:4]) != self.SPECIALS:
      raise ValueError(
        f'tokens must start with {list(self.SPECIALS)}, got {tokens[:4]}'
      )
    if len(tokens) <= self.SPACE_ID or tokens[self.SPACE_ID] != ' ':
      raise ValueError(f"token {self.SPACE_ID} must be ' ' (space)")
    for i, token in enumerate(tokens[4:], start=4):
      if not isinstance(token, str) or len(token) != 1:
        raise ValueError(f'token {i} must be one character, got {token!r}')
      if unit == 'jamo' and _S_BASE <= ord(token) <= _S_LAST:
        raise ValueError(
          f'token {i} {token!r} is a Hangul syllable in a jamo vocabulary'
        )
    if len(set(tokens)) != len(tokens):
      dupes = [t for t, c in collections.Counter(tokens).items() if c > 1]
      raise ValueError(f'duplicate tokens: {dupes}')
    self._tokens = tuple(tokens)
    self._unit = unit
    self._ids = {token: i for i, token in enumerate(tokens) if i >= 4}

  @classmethod
  def build(
    cls,
    texts: Iterable[str],
    unit: str = 'char',
    max_size: int | None = None,
  ) -> Vocabulary:
    """Builds a vocabulary from (normalized) training transcripts.

    Args:
      texts: training transcripts.
      unit: 'char' or 'jamo'.
      max_size: keep at most this many tokens, specials and space included
        (KoSpeech keeps 2000); the rarest units are dropped.

    Returns:
      The vocabulary.

    Raises:
      ValueError: unknown unit or `max_size` < 5.
    """
    if unit not in UNITS:
      raise ValueError(f'unit must be one of {UNITS}, got {unit!r}')
    if max_size is not None and max_size < cls.SPACE_ID + 1:
      raise ValueError(
        f'max_size must be >= {cls.SPACE_ID + 1} (specials and space), '
        f'got {max_size}'
      )
    counts = collections.Counter()
    for text in texts:
      counts.update(_units(text, unit))
    counts.pop(' ', None)
    units = sorted(counts, key=lambda u: (-counts[u], u))
    if max_size is not None:
      units = units[: max_size - cls.SPACE_ID - 1]
    return cls([*cls.SPECIALS, ' ', *units], unit)

  @property
  def pad_id(self) -> int:
    return self.PAD_ID

  @property
  def sos_id(self) -> int:
    return self.SOS_ID

  @property
  def eos_id(self) -> int:
    return self.EOS_ID

  @property
  def unk_id(self) -> int:
    return self.UNK_ID

  @property
  def unit(self) -> str:
    return self._unit

  @property
  def tokens(self) -> tuple[str, ...]:
    return self._tokens

  def __len__(self) -> int:
    return len(self._tokens)

  def __eq__(self, other: object) -> bool:
    if not isinstance(other, Vocabulary):
      return NotImplemented
    return self._unit == other._unit and self._tokens == other._tokens

  def __hash__(self) -> int:
    return hash((self._unit, self._tokens))

  def __repr__(self) -> str:
    return f'Vocabulary(unit={self._unit!r}, size={len(self)})'

  def encode(self, text: str) -> list[int]:
    """Maps text to ids (no `<sos>`/`<eos>`); unknown units get `<unk>`."""
    return [self._ids.get(u, self.UNK_ID) for u in _units(text, self._unit)]

  def decode(self, ids: Iterable[int]) -> str:
    """Maps ids back to text.

    Stops at the first `<eos>`, skips `<pad>` and `<sos>`, and writes
    `UNK_CHAR` for `<unk>`. Jamo are recomposed into syllables.

    Raises:
      ValueError: an id is outside [0, len(self)).
    """
    out = []
    for raw_id in ids:
      i = int(raw_id)
      if i == self.EOS_ID:
        break
      if i in (self.PAD_ID, self.SOS_ID):
        continue
      if not 0 <= i < len(self._tokens):
        raise ValueError(f'id {i} is outside the vocabulary (size {len(self)})')
      out.append(self.UNK_CHAR if i == self.UNK_ID else self._tokens[i])
    text = ''.join(out)
    return compose_hangul(text) if self._unit == 'jamo' else text

  def save(self, path: str | Path) -> None:
    """Writes the vocabulary as UTF-8 JSON, one token per line."""
    data = {'unit': self._unit, 'tokens': list(self._tokens)}
    Path(path).write_text(
      json.dumps(data, ensure_ascii=False, indent=1) + '\n', encoding='utf-8'
    )

  @classmethod
  def load(cls, path: str | Path) -> Vocabulary:
    """Reads a vocabulary written by `save`.

    Raises:
      ValueError: the file is not a valid vocabulary; the message names it.
      OSError: the file cannot be read.
    """
    try:
      data = json.loads(Path(path).read_text(encoding='utf-8'))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
      raise ValueError(f'{path}: not a UTF-8 JSON vocabulary file: {e}') from e
    if (
      not isinstance(data, dict)
      or not isinstance(data.get('unit'), str)
      or not isinstance(data.get('tokens'), list)
    ):
      raise ValueError(
        f'{path}: expected a JSON object with "unit" (string) and "tokens" '
        '(list of strings)'
      )
    try:
      return cls(data['tokens'], data['unit'])
    except ValueError as e:
      raise ValueError(f'{path}: {e}') from e


def _units(text: str, unit: str) -> str:
  return decompose_hangul(text) if unit == 'jamo' else text
