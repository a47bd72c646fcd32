"""The text of `mini_kspon`: Korean that konlpy installs, cut into utterances.

Every source is a file of the `konlpy` package (PyPI), read without Java:

- law: the constitution (`kolaw`) and ten National Assembly bills
  (`kobill`), cut into clauses of at most `MAX_SYLLABLES`.
- eojeols: the 42,504 distinct Korean word forms (eojeol: a word with its
  particles and endings, '가능할까요', '가겠습니다') that open-korean-text
  (in konlpy's jars) ships as `example_chunks.txt`, collected from social
  media text. Utterances of 2-6 of them drawn at random read as word
  sequences with real inflections.
- coverage: words that spell the KS X 1001 syllables the rest of the
  train text lacks: for each, the shortest word with it from the first of
  these lists that has one: the eojeols above, nouns and adverbs of
  open-korean-text's lexicon, verbs and adjectives of open-korean-text and
  Hannanum's system dictionary (in konlpy) in citation form and plain past
  ('버티다', '버텼다'), Hannanum's nouns and adverbs, open-korean-text's
  Korean Wikipedia titles.
- tweets: open-korean-text's `example_tweets.txt` (1,000 tweets), cut into
  clauses: the out-of-domain test split `eval_other` and nothing else. Only
  25% of the tweets' words are among the eojeols above, no more than for
  unrelated text (the Debian FAQ in Korean: 24%).

Splits: `train`, `dev` and `eval_clean` are in-domain: `LAW_SHARE` of each
is law clauses (each split its own disjoint block of clauses), the rest
eojeol sequences, of which `train` gives up to `COVERAGE_MAX_SHARE` to
coverage utterances.
`eval_other` is tweet clauses. No sentence (spaces ignored) is in two
splits; a split with more utterances than sentences of its own reads them
again (the generator gives each reading another voice).

Language-model text (`lm_text`): further eojeol sequences drawn like
train's, none of them a sentence of any split: in-domain text the
recognizer never hears, for the language model of shallow fusion
(`configs/mini_lm.py`). No tweet is in it.

Words offensive per open-korean-text's own list (`profane.txt`) are left
out of every source. Numbers are read in Sino-Korean and transcribed as
KsponSpeech does, `(1948년)/(천구백사십팔년)`.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import math
import os
import re
import zipfile
from collections.abc import Iterable, Mapping

import numpy as np

from las_jax.text import KS_X_1001_SYLLABLES

SPLITS = ('train', 'dev', 'eval_clean', 'eval_other')
IN_DOMAIN = ('train', 'dev', 'eval_clean')
# Share of each in-domain split's utterances that are law clauses (the
# rest are eojeol sequences), and how the law clauses are divided.
LAW_SHARE = 0.4
_LAW_BLOCKS = {'train': 0.8, 'dev': 0.1, 'eval_clean': 0.1}
# Sentences of the language-model text (`lm_text`): ~1.5 MB, ~12x the
# train text, what a 1x256 LSTM LM reads about twice in 3 minutes.
LM_SENTENCES = 30_000
# At most this share of train is coverage utterances.
COVERAGE_MAX_SHARE = 0.25
# Utterance length bounds in Hangul syllables of the spoken form: espeak-ng
# reads Korean at about 4-5 syllables/s, so this gives roughly 1-6 s.
MIN_SYLLABLES, MAX_SYLLABLES = 5, 20
# Dictionary words longer than this are compounds and names, not needed.
_MAX_DICTIONARY_WORD = 6

_SINO_DIGITS = '영일이삼사오육칠팔구'
_SINO_UNITS = ('', '십', '백', '천')
_SINO_GROUPS = ('', '만', '억', '조')
# Months whose Sino-Korean reading drops a final consonant.
_MONTHS = {'6월': '유월', '10월': '시월'}
_WORD_RE = re.compile(r'^[가-힣0-9%]+$')
_HANGUL_WORD_RE = re.compile(r'^[가-힣]+$')
# Item markers of the bills' lists ('... 가', '... 나'), not words.
_LIST_MARKERS = frozenset('가나다라마바사아')
# Hannanum's tags of common and proper nouns (nc*, nq*) and adverbs (mag),
# and of verbs and adjectives without an irregular conjugation mark.
_HANNANUM_NOUN_ADVERB = re.compile(r'^(nc|nq|mag)')
_HANNANUM_REGULAR_VERB = re.compile(r'^(pvg|paa)$')
_OKT_DIR = 'org/openkoreantext/processor/util/'


def sino_korean(number: int) -> str:
  """Reads an integer in [0, 10^16) in Sino-Korean: 1948 -> 천구백사십팔."""
  if number == 0:
    return '영'
  out, group = [], 0
  while number:
    number, part = divmod(number, 10000)
    if part:
      digits = []
      for place in range(3, -1, -1):
        d = part // 10**place % 10
        if d:
          # 십, 백, 천 alone mean one of them; 만 alone too (not 일만).
          one = d == 1 and (place > 0 or (group == 1 and part == 1))
          digits.append(('' if one else _SINO_DIGITS[d]) + _SINO_UNITS[place])
      out.append(''.join(digits) + _SINO_GROUPS[group])
    group += 1
  return ''.join(reversed(out))


def spoken_word(word: str) -> str:
  """The spoken (phonetic) form of a word with digits or '%'."""
  for month, reading in _MONTHS.items():
    if word.startswith(month):
      return reading + word[len(month) :]
  word = re.sub(r'\d+', lambda m: sino_korean(int(m.group())), word)
  return word.replace('%', ' 퍼센트').strip()


def _syllable_count(word: str) -> int:
  return len(spoken_word(word).replace(' ', ''))


@dataclasses.dataclass(frozen=True)
class Sentence:
  """The text of one utterance: its words as written, and its source."""

  words: tuple[str, ...]
  source: str = dataclasses.field(default='', compare=False)

  @property
  def spoken(self) -> str:
    return ' '.join(spoken_word(w) for w in self.words)

  @property
  def transcript(self) -> str:
    """KsponSpeech-style: `(spelling)/(phonetic)` where the two differ."""
    return ' '.join(
      w if spoken_word(w) == w else f'({w})/({spoken_word(w)})'
      for w in self.words
    )

  @property
  def key(self) -> str:
    """The spoken text without spaces: equal keys sound the same."""
    return ''.join(self.spoken.split())


# --- Sources ---------------------------------------------------------------


def _konlpy_java_dir() -> str:
  import konlpy

  return os.path.join(os.path.dirname(konlpy.__file__), 'java')


@functools.cache
def _okt_text(name: str) -> str:
  """A text file of open-korean-text's jar (shipped in konlpy)."""
  jars = sorted(
    glob.glob(os.path.join(_konlpy_java_dir(), 'open-korean-*.jar'))
  )
  if not jars:
    raise FileNotFoundError(
      f'open-korean-text jar not found in {_konlpy_java_dir()}; reinstall '
      'konlpy (pip install konlpy)'
    )
  with zipfile.ZipFile(jars[-1]) as jar:
    return jar.read(_OKT_DIR + name).decode('utf-8')


@functools.cache
def _profane() -> tuple[str, ...]:
  return tuple(_okt_text('noun/profane.txt').split())


def _clean(word: str) -> bool:
  """False for words that start with an entry of the profanity list."""
  return not word.startswith(_profane())


def _law_documents() -> list[str]:
  from konlpy.corpus import kobill, kolaw

  docs = [kolaw.open('constitution.txt').read()]
  for name in sorted(kobill.fileids()):
    bill = kobill.open(name).read()
    # Keep the prose: from the reasons to the old/new comparison table.
    start = max(bill.find('제안이유'), 0)
    end = re.search(r'신\s*·\s*구조문대비표', bill)
    bill = bill[start : end.start() if end else len(bill)]
    lines = [
      line
      for line in bill.splitlines()
      if line.strip() and not re.fullmatch(r'[\s\d-]*', line)
    ]
    # The bills are hard-wrapped, often mid-word: a line ending without a
    # space continues the word on the next line.
    docs.append(''.join(lines))
  return docs


def _chunks(words: list[str]) -> list[list[str]]:
  """Cuts a word list into near-equal runs of at most MAX_SYLLABLES."""
  sizes = [_syllable_count(w) for w in words]
  n = math.ceil(sum(sizes) / MAX_SYLLABLES)
  target, chunks, current, length = sum(sizes) / n, [], [], 0
  for word, size in zip(words, sizes, strict=True):
    if current and length + size > max(target, size) * 1.15:
      chunks.append(current)
      current, length = [], 0
    current.append(word)
    length += size
  return chunks + [current]


def _clauses(docs: Iterable[str], source: str) -> list[Sentence]:
  """Distinct clauses of running text, sorted.

  Anything but Hangul, digits, '%' and spaces ends a clause ('·' joins
  listed nouns, so it only separates words). A word glued to a letter or
  jamo that ends the clause ('dpkg를', 'ㅋㅋ그거') is a fragment and is
  dropped.
  """
  clauses = set()
  for doc in docs:
    parts = re.split(r'([^가-힣0-9% ]+)', doc.replace('·', ' '))
    for i in range(0, len(parts), 2):
      piece = parts[i]
      words = piece.split()
      if words and i > 0 and parts[i - 1][-1].isalnum() and piece[0] != ' ':
        words = words[1:]
      if words and i + 1 < len(parts) and parts[i + 1][0].isalnum():
        if piece[-1] != ' ':
          words = words[:-1]
      if (
        len(words) < 2
        or any(len(w) > 12 or not _WORD_RE.match(w) for w in words)
        or not all(_clean(w) for w in words)
      ):
        continue
      for chunk in _chunks(words):
        syllables = [_syllable_count(w) for w in chunk]
        # Spaced-out table headings ('연 도 구 분') are not sentences.
        if (
          len(chunk) >= 2
          and chunk[-1] not in _LIST_MARKERS
          and MIN_SYLLABLES <= sum(syllables) <= MAX_SYLLABLES * 1.2
          and sum(s == 1 for s in syllables) * 2 < len(chunk)
        ):
          clauses.add(Sentence(tuple(chunk), source))
  return sorted(clauses, key=lambda c: c.words)


@functools.cache
def law_clauses() -> tuple[Sentence, ...]:
  """Clauses of konlpy's kolaw (constitution) and kobill (ten bills)."""
  return tuple(_clauses(_law_documents(), 'law'))


@functools.cache
def tweet_clauses() -> tuple[Sentence, ...]:
  """Clauses of open-korean-text's 1,000 example tweets (eval_other)."""
  return tuple(_clauses([_okt_text('example_tweets.txt')], 'tweets'))


@functools.cache
def eojeols() -> tuple[str, ...]:
  """open-korean-text's example word forms: Hangul/digits, sorted."""
  words = _okt_text('example_chunks.txt').split()
  return tuple(
    sorted(
      {w for w in words if _WORD_RE.match(w) and len(w) <= 12 and _clean(w)}
    )
  )


# Vowel contraction of a vowel-final stem with the past tense 았/었 (Hangul
# orthography, articles 34-36): vowel index (0 = ㅏ ... 20 = ㅣ) -> the
# contracted vowel. ㅡ (18) drops: ㅏ after ㅏ/ㅗ syllables, else ㅓ.
_PAST_VOWEL = {0: 0, 1: 1, 4: 4, 5: 5, 6: 6, 8: 9, 11: 10, 13: 14, 20: 6}
_BRIGHT_VOWELS = (0, 8)  # ㅏ, ㅗ


def _jamo_indices(syllable: str) -> tuple[int, int, int]:
  """(lead, vowel, tail) indices of a precomposed Hangul syllable."""
  index = ord(syllable) - 0xAC00
  return index // 588, index % 588 // 28, index % 28


def past_tense(stem: str) -> str | None:
  """The plain past form of a regular vowel-final verb or adjective stem.

  '버티' -> '버텼다', '이루' -> '이뤘다', '아프' -> '아팠다', '하' ->
  '했다'. None where the stem ends in a consonant, in 르 (irregular) or in
  a vowel that does not contract (ㅟ, ㅢ, ...): their past forms are
  regular syllables the other sources spell anyway.
  """
  if stem.endswith('하'):
    return stem[:-1] + '했다'
  lead, vowel, tail = _jamo_indices(stem[-1])
  if tail or stem.endswith('르'):
    return None
  if vowel == 18:  # ㅡ
    bright = len(stem) > 1 and _jamo_indices(stem[-2])[1] in _BRIGHT_VOWELS
    merged = 0 if bright else 4
  elif vowel in _PAST_VOWEL:
    merged = _PAST_VOWEL[vowel]
  else:
    return None
  return stem[:-1] + chr(0xAC00 + lead * 588 + merged * 28 + 20) + '다'


def _hannanum_entries(tags: re.Pattern) -> list[str]:
  """Hannanum system dictionary words with a tag matching `tags`."""
  path = os.path.join(_konlpy_java_dir(), 'data', 'kE', 'dic_system.txt')
  with open(path, encoding='utf-8') as f:
    rows = (line.rstrip('\n').split('\t') for line in f)
    return [r[0] for r in rows if any(tags.match(t) for t in r[1:])]


@functools.cache
def dictionary_words() -> tuple[tuple[str, ...], ...]:
  """Dictionary entries, in lists by preference (see the module doc).

  Hangul-only words of at most `_MAX_DICTIONARY_WORD` syllables (plus the
  ending): (1) open-korean-text's nouns (its general, named-entity and
  topic lists) and adverbs, (2) verbs and adjectives of open-korean-text
  and Hannanum (regular ones only) in citation form (stem + 다) and plain
  past (`past_tense`), (3) Hannanum's nouns and adverbs, (4) Wikipedia
  titles.
  """
  okt_lists = ['adverb/adverb.txt', 'noun/nouns.txt'] + [
    f'noun/{name}.txt'
    for name in (
      'entities', 'foreign', 'geolocations', 'names', 'congress',
      'company_names', 'bible', 'kpop',
    )
  ]  # fmt: skip
  okt = ' '.join(_okt_text(name) for name in okt_lists).split()
  stems = _okt_text('verb/verb.txt').split()
  stems += _okt_text('adjective/adjective.txt').split()
  stems += _hannanum_entries(_HANNANUM_REGULAR_VERB)
  stems = [s for s in stems if _HANGUL_WORD_RE.match(s)]
  verbs = [s + '다' for s in stems] + [
    p for p in map(past_tense, stems) if p is not None
  ]
  hannanum = _hannanum_entries(_HANNANUM_NOUN_ADVERB)
  wiki = _okt_text('noun/wikipedia_title_nouns.txt').split()
  tiers = []
  for words, extra in ((okt, 0), (verbs, 1), (hannanum, 0), (wiki, 0)):
    tiers.append(
      tuple(
        sorted(
          {
            w
            for w in words
            if _HANGUL_WORD_RE.match(w)
            and len(w) <= _MAX_DICTIONARY_WORD + extra
            and _clean(w)
          }
        )
      )
    )
  return tuple(tiers)


# --- Utterances ------------------------------------------------------------


def _word_sequence(
  rng: np.random.Generator, words: tuple[str, ...]
) -> Sentence:
  """2+ random words, about MIN+3..MAX syllables (never over MAX * 1.2)."""
  target = int(rng.integers(MIN_SYLLABLES + 3, MAX_SYLLABLES + 1))
  chosen, length = [], 0
  while length < target or len(chosen) < 2:
    word = words[int(rng.integers(len(words)))]
    size = _syllable_count(word)
    if length + size > MAX_SYLLABLES * 1.2:
      if len(chosen) >= 2 and length >= MIN_SYLLABLES:
        break
      continue
    chosen.append(word)
    length += size
  return Sentence(tuple(chosen), 'eojeols')


def coverage_words(
  covered: Iterable[str], rng: np.random.Generator
) -> list[str]:
  """Dictionary words that spell the KS X 1001 syllables not in `covered`.

  For each missing syllable in code point order (skipping those an earlier
  pick spelled): the shortest words with it from the first dictionary list
  that has any, one drawn at random.
  """
  covered = set(covered)
  missing = sorted(KS_X_1001_SYLLABLES - covered)
  tiers = [list(eojeols()), *dictionary_words()]
  # Per tier: syllable -> the tier's words with it.
  index = []
  targets = set(missing)
  for tier in tiers:
    by_syllable = {}
    for word in tier:
      for s in set(word) & targets:
        by_syllable.setdefault(s, []).append(word)
    index.append(by_syllable)
  picked = []
  for s in missing:
    if s in covered:
      continue
    for by_syllable in index:
      words = by_syllable.get(s)
      if words:
        shortest = min(len(w) for w in words)
        words = [w for w in words if len(w) == shortest]
        word = words[int(rng.integers(len(words)))]
        picked.append(word)
        covered.update(word)
        break
  return picked


def _pack(words: list[str], rng: np.random.Generator) -> list[Sentence]:
  """Groups words, in random order, into utterances of MIN+3..MAX syll.

  The last group, if short, is topped up with random eojeols.
  """
  words = [words[i] for i in rng.permutation(len(words))]
  out, current, length = [], [], 0
  target = int(rng.integers(MIN_SYLLABLES + 3, MAX_SYLLABLES + 1))
  for word in words:
    current.append(word)
    length += _syllable_count(word)
    if length >= target and len(current) >= 2:
      out.append(Sentence(tuple(current), 'coverage'))
      current, length = [], 0
      target = int(rng.integers(MIN_SYLLABLES + 3, MAX_SYLLABLES + 1))
  if current:
    fill = eojeols()
    while length < MIN_SYLLABLES + 3 or len(current) < 2:
      word = fill[int(rng.integers(len(fill)))]
      current.append(word)
      length += _syllable_count(word)
    out.append(Sentence(tuple(current), 'coverage'))
  return out


def _syllables(sentences: Iterable[Sentence]) -> set[str]:
  return {ch for s in sentences for ch in s.spoken if ch != ' '}


def corpus_text(
  sizes: Mapping[str, int], seed: int = 0
) -> dict[str, list[Sentence]]:
  """The sentence of every utterance of every split, in order.

  Args:
    sizes: utterances per split; keys `SPLITS`, each >= 1.
    seed: all random choices derive from it.

  Returns:
    split -> one `Sentence` per utterance.

  Raises:
    ValueError: `sizes` lacks a split or has one below 1.
  """
  if set(sizes) != set(SPLITS) or min(sizes.values()) < 1:
    raise ValueError(f'sizes must give each of {SPLITS} >= 1, got {sizes}')
  law = law_clauses()
  order = np.random.default_rng([seed, 0]).permutation(len(law))
  words = eojeols()
  used: set[str] = set()  # keys of the sentences of earlier splits

  def own(sentences: Iterable[Sentence]) -> list[Sentence]:
    return [s for s in sentences if s.key not in used]

  def fresh_sequences(rng, count: int, taken: set[str]) -> list[Sentence]:
    out = []
    while len(out) < count:
      s = _word_sequence(rng, words)
      if s.key not in used and s.key not in taken:
        taken.add(s.key)
        out.append(s)
    return out

  def cycle(sentences: list[Sentence], count: int) -> list[Sentence]:
    return [sentences[i % len(sentences)] for i in range(count)]

  text, start = {}, 0
  for split_index, split in enumerate(IN_DOMAIN):
    size = sizes[split]
    block = max(1, round(len(law) * _LAW_BLOCKS[split]))
    clauses = own(law[i] for i in order[start : start + block])
    start += block
    n_law = min(round(size * LAW_SHARE), size - 1) if size > 1 else size
    law_part = cycle(clauses, n_law)
    rng = np.random.default_rng([seed, 1, split_index])
    sequences = fresh_sequences(rng, size - n_law, {s.key for s in clauses})
    if split == 'train':
      sequences = _with_coverage(
        law_part, sequences, np.random.default_rng([seed, 2]), size
      )
    text[split] = law_part + sequences
    used.update(s.key for s in text[split])
  tweets = own(tweet_clauses())
  order = np.random.default_rng([seed, 3]).permutation(len(tweets))
  text['eval_other'] = cycle([tweets[i] for i in order], sizes['eval_other'])
  return text


def lm_text(
  text: Mapping[str, list[Sentence]], count: int = LM_SENTENCES, seed: int = 0
) -> list[Sentence]:
  """Extra in-domain sentences for the language model, none in `text`.

  Args:
    text: the corpus (`corpus_text`): no sentence of any split (spaces
      ignored) is drawn.
    count: sentences to draw.
    seed: random choices derive from it (apart from `corpus_text`'s).

  Returns:
    `count` distinct eojeol sequences.
  """
  taken = {s.key for split in text.values() for s in split}
  rng = np.random.default_rng([seed, 4])
  words = eojeols()
  out = []
  while len(out) < count:
    s = _word_sequence(rng, words)
    if s.key not in taken:
      taken.add(s.key)
      out.append(s)
  return out


def _with_coverage(
  law_part: list[Sentence],
  sequences: list[Sentence],
  rng: np.random.Generator,
  size: int,
) -> list[Sentence]:
  """Replaces the last sequences by coverage utterances.

  Dropping sequences can uncover syllables, so the coverage is computed
  again with as many sequences gone as the last pass needed, until it
  fits (at most `COVERAGE_MAX_SHARE` of the split).
  """
  budget = min(len(sequences), int(size * COVERAGE_MAX_SHARE))
  drop, packed = 0, []
  for _ in range(8):
    kept = sequences[: len(sequences) - drop]
    packed = _pack(coverage_words(_syllables(law_part + kept), rng), rng)
    if len(packed) <= drop or drop == budget:
      break
    drop = min(len(packed), budget)
  packed = packed[:budget]
  return sequences[: len(sequences) - len(packed)] + packed
