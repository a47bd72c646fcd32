"""Korean text: KsponSpeech transcript normalization and token vocabularies.

Normalization follows KoSpeech's `dataset/kspon/preprocess/preprocess.py`
(`bracket_filter` + `special_filter`), with its accidents made explicit:

1. Noise tags `o/ n/ u/ b/ l/` (overlap, noise, unintelligible, breath,
   laughter) are removed wherever they are tags: anywhere but right after
   a Latin letter or a digit. The transcription rules mark events with
   these one-letter tags and write words in Hangul (Latin only inside
   spelled forms), so a tag glued to the previous word (`입증책임을b/`, as
   transcribers sometimes wrote it) is still a tag, while `b/` ending a
   Latin word is that word's last letter and a filler or disfluency slash
   (`(job/)`, `Bob/`). KoSpeech removes the two characters anywhere,
   eating such words. This runs on the raw text, where a tag glued to a
   dual transcription (`(PDF)/(피디에프)n/`) follows a parenthesis, not the
   Latin spelling it would follow after step 2.
2. Dual transcriptions `(spelling)/(phonetic)` become one of the groups:
   the second in 'phonetic' mode (KoSpeech default), the first in 'spelling'
   mode (ESPnet's `--notation-type char`). Whitespace around the joining
   `/` is tolerated, as ESPnet does, and so is a missing `/`: KoSpeech's
   documentation quotes the corpus line `... (100%)(백 프로)가 왜 안돼?`
   and its filter reads any `(A)(B)` pair as a dual transcription. This
   runs before step 3: the `/` between the groups would otherwise look
   like a disfluency mark.
3. Special characters: `/ + * - @ $ ^ & [ ] = : ; ,` are deleted (the
   filler `/`, repetition `+` and noisy-speech `*` marks among them),
   `. ? !` are kept, `#` becomes `샾`. Parentheses left over after step 2
   (unbalanced or single groups, which KoSpeech's character-level filter
   mishandles by dropping text up to the next `(`) are deleted and their
   contents kept: `(학교)/(핵교 갔어` gives `학교핵교 갔어`. Nested dual
   groups resolve from the inside out.
4. `%`: kept in 'spelling' mode. In 'phonetic' mode a `%` only survives step
   2 where the transcriber wrote it outside a dual transcription; KoSpeech
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
its own unit in both. 'spm_char' and 'spm_jamo' are SentencePiece subwords
over either, trained on the train transcripts (`Vocabulary.build`); jamo
units spell any Hangul syllable, seen in training or not.

`Vocabulary.decode` is the exact inverse of `encode`. A model's hypothesis
may hold what no normalized transcript does: stray spaces, and with jamo
units letters that form no syllable; `Vocabulary.words` and `transcript`
give the text users read of it (`write_hangul`), and word timestamps time
those same words.
"""

from __future__ import annotations

import base64
import binascii
import collections
import io
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

TRANSCRIPTIONS = ('phonetic', 'spelling')
SPM_UNITS = ('spm_char', 'spm_jamo')
UNITS = ('char', 'jamo', *SPM_UNITS)
# SentencePiece's space symbol; piece 4 of an spm model.
_SPM_SPACE = '\u2581'

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
# One or more noise tags, not ending a Latin word or number (docstring).
_NOISE_RE = re.compile(r'(?<![A-Za-z0-9])(?:[onubl]/)+')


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
  text = _NOISE_RE.sub('', unicodedata.normalize('NFC', raw))
  # Repeat so that nested groups resolve from the inside out.
  while True:
    text, n_subs = _DUAL_RE.subn(lambda m: m.group(group), text)
    if not n_subs:
      break
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


# The 2,350 precomposed syllables of KS X 1001 (EUC-KR rows 0xB0-0xC8), the
# Hangul of everyday Korean text (of the 11,172 that Unicode encodes).
KS_X_1001_SYLLABLES = frozenset(
  bytes([row, col]).decode('euc_kr')
  for row in range(0xB0, 0xC9)
  for col in range(0xA1, 0xFF)
)


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
  return _join_jamo(text, readable=False)


def write_hangul(text: str) -> str:
  """Conjoining jamo written as Korean text is: syllables, and letters.

  As `compose_hangul`, but the jamo that form no syllable (a jamo model's
  hypothesis can hold them, e.g. `발생ᆸ니다`) are written as Korean
  writes them: a lone vowel, a syllable of its own when spoken, gets the
  silent initial ㅇ that Korean orthography writes before every vowel
  (`ᅱ` -> `위`, `ᅡᆫ` -> `안`); a lone initial or final consonant, no
  syllable, becomes the compatibility letter that writes a consonant on
  its own (U+3131..; `ᆸ` -> `ㅂ`, as in `ㅂ니다`). Bare conjoining jamo
  render as broken glyphs, or merge with their neighbours, in most fonts
  and editors; the letters keep what the model emitted readable, neither
  dropped nor guessed. Other characters are unchanged.
  """
  return _join_jamo(text, readable=True)


# ᄋ (ieung): the silent initial of vowel-initial syllables.
_IEUNG_LEAD = 0x110B - _L_BASE


def _join_jamo(text: str, readable: bool) -> str:
  out = []
  i, n = 0, len(text)
  while i < n:
    lead = ord(text[i]) - _L_BASE
    vowel = ord(text[i + 1]) - _V_BASE if i + 1 < n else -1
    if 0 <= lead < _L_COUNT and 0 <= vowel < _V_COUNT:
      i += 2
    elif readable and 0 <= ord(text[i]) - _V_BASE < _V_COUNT:
      lead, vowel = _IEUNG_LEAD, ord(text[i]) - _V_BASE
      i += 1
    else:
      out.append(_letter(text[i]) if readable else text[i])
      i += 1
      continue
    tail = ord(text[i]) - _T_BASE if i < n else 0
    if 0 < tail < _T_COUNT:
      i += 1
    else:
      tail = 0
    out.append(chr(_S_BASE + (lead * _V_COUNT + vowel) * _T_COUNT + tail))
  return ''.join(out)


def _letter(ch: str) -> str:
  """The compatibility letter (U+3131..) of a conjoining jamo, else `ch`."""
  if not 0x1100 <= ord(ch) <= 0x11FF:
    return ch
  name = unicodedata.name(ch, '')
  for position in ('CHOSEONG ', 'JUNGSEONG ', 'JONGSEONG '):
    if position in name:
      try:
        return unicodedata.lookup(name.replace(position, 'LETTER '))
      except KeyError:  # Archaic jamo without a letter.
        return ch
  return ch


class Word(NamedTuple):
  """A word of a hypothesis (`Vocabulary.words`)."""

  text: str
  # Indices of its units in the ids it came from.
  units: range


class Vocabulary:
  """Token <-> id mapping over characters, jamo, or SentencePiece pieces.

  Ids: `<pad>`=0, `<sos>`=1, `<eos>`=2, `<unk>`=3, space=4, then units by
  descending training frequency ('char', 'jamo') or the pieces of a
  SentencePiece unigram model ('spm_char', 'spm_jamo'; see `build`).
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

  def __init__(
    self,
    tokens: Sequence[str],
    unit: str = 'char',
    spm_model: bytes | None = None,
  ):
    """Creates a vocabulary from its token list (index = id).

    Args:
      tokens: the 4 special tokens, ' ', then single-character units
        ('char', 'jamo') or the model's pieces ('spm_*').
      unit: one of `UNITS`.
      spm_model: the serialized SentencePiece model of an 'spm_*' unit
        (`build` trains it); None for the others.

    Raises:
      ValueError: the token list, unit or model is malformed, or the model's
        pieces are not `tokens`.
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
    pieces = unit in SPM_UNITS
    for i, token in enumerate(tokens[5:], start=5):
      if not isinstance(token, str) or not token or ' ' in token:
        raise ValueError(f'token {i} must be a non-empty string, got {token!r}')
      if not pieces and len(token) != 1:
        raise ValueError(f'token {i} must be one character, got {token!r}')
      if _base_unit(unit) == 'jamo' and any(
        _S_BASE <= ord(ch) <= _S_LAST for ch in token
      ):
        raise ValueError(
          f'token {i} {token!r} has a Hangul syllable in a jamo vocabulary'
        )
    if len(set(tokens)) != len(tokens):
      dupes = [t for t, c in collections.Counter(tokens).items() if c > 1]
      raise ValueError(f'duplicate tokens: {dupes}')
    self._tokens = tuple(tokens)
    self._unit = unit
    self._ids = {token: i for i, token in enumerate(tokens) if i >= 4}
    self._spm_model = spm_model
    self._spm = _load_spm(tokens, spm_model) if pieces else None
    # Characters of an spm model: its one-character pieces and space (with
    # character_coverage=1 every character of the train text is one).
    chars = ''.join(t for t in tokens[4:] if len(t) == 1)
    self._spm_unknown = re.compile(f'([^{re.escape(chars)}])')
    if not pieces and spm_model is not None:
      raise ValueError(f'unit {unit!r} takes no SentencePiece model')

  @classmethod
  def build(
    cls,
    texts: Iterable[str],
    unit: str = 'char',
    max_size: int | None = None,
  ) -> Vocabulary:
    """Builds a vocabulary from (normalized) training transcripts.

    'spm_char' and 'spm_jamo' train a SentencePiece unigram model (Kudo,
    2018; `sentencepiece`, as ESPnet's recipes) of `max_size` pieces on the
    train words (split at spaces; characters, or for 'spm_jamo' the words
    decomposed into jamo). Every character of the text is a piece, so only
    characters the text lacks are `<unk>`: with 'spm_jamo' no Hangul
    syllable is, and decoded jamo are recomposed into syllables. The model
    is deterministic for a text (one training thread).

    Args:
      texts: training transcripts.
      unit: one of `UNITS`.
      max_size: keep at most this many tokens, specials and space included
        (KoSpeech keeps 2000); the rarest units are dropped. For 'spm_*',
        required: the model's size (fewer if the text has fewer pieces).

    Returns:
      The vocabulary.

    Raises:
      ValueError: unknown unit, `max_size` < 5, or for 'spm_*' a missing
        `max_size`, one below the text's distinct characters + 5, or no
        text.
    """
    if unit not in UNITS:
      raise ValueError(f'unit must be one of {UNITS}, got {unit!r}')
    if max_size is not None and max_size < cls.SPACE_ID + 1:
      raise ValueError(
        f'max_size must be >= {cls.SPACE_ID + 1} (specials and space), '
        f'got {max_size}'
      )
    if unit in SPM_UNITS:
      return cls._build_spm(texts, unit, max_size)
    counts = collections.Counter()
    for text in texts:
      counts.update(_units(text, unit))
    counts.pop(' ', None)
    units = sorted(counts, key=lambda u: (-counts[u], u))
    if max_size is not None:
      units = units[: max_size - cls.SPACE_ID - 1]
    return cls([*cls.SPECIALS, ' ', *units], unit)

  @classmethod
  def _build_spm(
    cls, texts: Iterable[str], unit: str, max_size: int | None
  ) -> Vocabulary:
    import sentencepiece

    words = collections.Counter()
    for text in texts:
      words.update(_units(text, unit).split())
    if not words:
      raise ValueError(f'no text to train the {unit} model on')
    symbols = len(set(''.join(words)))
    if max_size is None or max_size < symbols + cls.SPACE_ID + 1:
      raise ValueError(
        f'unit {unit!r} needs max_size (config.data.vocab_max_size) >= '
        f"{symbols + cls.SPACE_ID + 1}: the text's {symbols} distinct "
        f'{_base_unit(unit)} units, specials and space; got {max_size}'
      )
    model = io.BytesIO()
    # The words with their counts, sorted: the model depends on the text
    # alone. '▁' (SentencePiece's space) is piece 4, never inside a piece.
    sentencepiece.SentencePieceTrainer.train(
      sentence_iterator=iter(f'{w}\t{c}' for w, c in sorted(words.items())),
      input_format='tsv',
      model_writer=model,
      model_type='unigram',
      vocab_size=max_size,
      hard_vocab_limit=False,
      character_coverage=1.0,
      normalization_rule_name='identity',
      add_dummy_prefix=False,
      remove_extra_whitespaces=False,
      pad_id=cls.PAD_ID,
      bos_id=cls.SOS_ID,
      eos_id=cls.EOS_ID,
      unk_id=cls.UNK_ID,
      pad_piece=cls.SPECIALS[cls.PAD_ID],
      bos_piece=cls.SPECIALS[cls.SOS_ID],
      eos_piece=cls.SPECIALS[cls.EOS_ID],
      unk_piece=cls.SPECIALS[cls.UNK_ID],
      user_defined_symbols=[_SPM_SPACE],
      num_threads=1,
      minloglevel=2,
    )
    processor = sentencepiece.SentencePieceProcessor(
      model_proto=model.getvalue()
    )
    pieces = [processor.id_to_piece(i) for i in range(len(processor))]
    return cls([*pieces[:4], ' ', *pieces[5:]], unit, model.getvalue())

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
    return self.to_dict() == other.to_dict()

  def __hash__(self) -> int:
    return hash((self._unit, self._tokens, self._spm_model))

  def __repr__(self) -> str:
    return f'Vocabulary(unit={self._unit!r}, size={len(self)})'

  def encode(self, text: str) -> list[int]:
    """Maps text to ids (no `<sos>`/`<eos>`); unknown units get `<unk>`.

    One `<unk>` per unknown character, with every unit.
    """
    units = _units(text, self._unit)
    if self._spm is None:
      return [self._ids.get(u, self.UNK_ID) for u in units]
    # Runs of known characters go to the model; an unknown character is a
    # piece boundary for it anyway.
    ids = []
    for i, run in enumerate(self._spm_unknown.split(units)):
      if i % 2:  # an unknown character
        ids.append(self.UNK_ID)
      elif run:
        ids.extend(self._spm.encode(run))
    return ids

  def decode(self, ids: Iterable[int]) -> str:
    """Maps ids back to text: the exact inverse of `encode`.

    Stops at the first `<eos>`, skips `<pad>` and `<sos>`, and writes
    `UNK_CHAR` for `<unk>`. Jamo are recomposed into syllables. Spaces and
    jamo that form no syllable are kept as the ids spell them; what users
    should read of a model's output is `transcript`.

    Raises:
      ValueError: an id is outside [0, len(self)).
    """
    text = ''.join(self._token_texts(ids))
    return compose_hangul(text) if _base_unit(self._unit) == 'jamo' else text

  def words(self, ids: Iterable[int]) -> list[Word]:
    """A hypothesis' words, as users read them, with their units.

    Words are the units between space units; leading, trailing and
    repeated spaces separate nothing and are dropped. Jamo are written as
    Korean text (`write_hangul`: syllables; a lone vowel gets the silent
    initial ㅇ, a lone consonant is its compatibility letter). Stops at
    the first `<eos>` and skips `<pad>` and `<sos>`, as `decode`.

    Returns:
      Each word's text and the indices of its units in `ids`: the one
      split of the hypothesis that its transcript (`transcript`) and its
      word times (`inference.alignment.word_spans`) share.

    Raises:
      ValueError: an id is outside [0, len(self)).
    """
    jamo = _base_unit(self._unit) == 'jamo'
    words, pieces, first, stop = [], [], 0, 0
    for index, piece in enumerate([*self._token_texts(ids), ' ']):
      if not piece:  # <pad> or <sos>.
        continue
      if piece != ' ':
        if not pieces:
          first = index
        pieces.append(piece)
        stop = index + 1
        continue
      if pieces:
        text = ''.join(pieces)
        words.append(
          Word(write_hangul(text) if jamo else text, range(first, stop))
        )
      pieces = []
    return words

  def transcript(self, ids: Iterable[int]) -> str:
    """The text users read of a hypothesis: its `words`, one space apart."""
    return ' '.join(word.text for word in self.words(ids))

  def _token_texts(self, ids: Iterable[int]) -> list[str]:
    """Each id's text up to `<eos>`; '' for `<pad>` and `<sos>`."""
    out = []
    for raw_id in ids:
      i = int(raw_id)
      if i == self.EOS_ID:
        break
      if i in (self.PAD_ID, self.SOS_ID):
        out.append('')
      elif not 0 <= i < len(self._tokens):
        raise ValueError(f'id {i} is outside the vocabulary (size {len(self)})')
      else:
        out.append(self.UNK_CHAR if i == self.UNK_ID else self._tokens[i])
    return out

  def to_dict(self) -> dict:
    """JSON-able description: unit, tokens, and an spm model (base64)."""
    data = {'unit': self._unit, 'tokens': list(self._tokens)}
    if self._spm_model is not None:
      data['spm_model'] = base64.b64encode(self._spm_model).decode('ascii')
    return data

  @classmethod
  def from_dict(cls, data: object) -> Vocabulary:
    """The inverse of `to_dict`.

    Raises:
      ValueError: `data` is not such a description.
    """
    if (
      not isinstance(data, dict)
      or not isinstance(data.get('unit'), str)
      or not isinstance(data.get('tokens'), list)
      or not isinstance(data.get('spm_model', ''), str)
    ):
      raise ValueError(
        'expected a JSON object with "unit" (string), "tokens" (list of '
        'strings) and, for SentencePiece units, "spm_model" (base64 string)'
      )
    model = None
    if 'spm_model' in data:
      try:
        model = base64.b64decode(data['spm_model'], validate=True)
      except binascii.Error as e:
        raise ValueError(f'"spm_model" is not base64: {e}') from e
    return cls(data['tokens'], data['unit'], model)

  def save(self, path: str | Path) -> None:
    """Writes the vocabulary as UTF-8 JSON, one token per line."""
    Path(path).write_text(
      json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + '\n',
      encoding='utf-8',
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
    try:
      return cls.from_dict(data)
    except ValueError as e:
      raise ValueError(f'{path}: {e}') from e


def _base_unit(unit: str) -> str:
  """'char' or 'jamo': what a unit's tokens are made of."""
  return 'jamo' if unit.endswith('jamo') else 'char'


def _units(text: str, unit: str) -> str:
  return decompose_hangul(text) if _base_unit(unit) == 'jamo' else text


def _load_spm(tokens: Sequence[str], model: bytes | None):
  """A SentencePieceProcessor whose pieces must be `tokens`."""
  import sentencepiece

  if model is None:
    raise ValueError('SentencePiece units need their model (spm_model)')
  processor = sentencepiece.SentencePieceProcessor()
  try:
    processor.LoadFromSerializedProto(model)
  except RuntimeError as e:
    raise ValueError(f'not a SentencePiece model: {e}') from e
  pieces = [processor.id_to_piece(i) for i in range(len(processor))]
  if len(pieces) <= Vocabulary.SPACE_ID or pieces[4] != _SPM_SPACE:
    raise ValueError(f'SentencePiece piece 4 must be {_SPM_SPACE!r}')
  if pieces[:4] + [' '] + pieces[5:] != list(tokens):
    raise ValueError("the SentencePiece model's pieces differ from tokens")
  return processor
