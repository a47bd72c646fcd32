"""Tests for the generated mini_kspon corpus and its trip through TFDS."""

import filecmp
import json
import os
import re
import shutil

import numpy as np
import pytest

from las_jax import data, text
from las_jax.data import corpus_stats, unseen_sentences
from las_jax.data import make_mini_kspon as mk
from las_jax.data import mini_kspon_text as mt

needs_espeak = pytest.mark.skipif(
  shutil.which('espeak-ng') is None,
  reason='needs espeak-ng (apt-get install espeak-ng)',
)
_N = 20
_PATH_RE = {
  'train': r'KsponSpeech_01/KsponSpeech_0001/KsponSpeech_\d{6}\.pcm',
  'dev': r'KsponSpeech_01/KsponSpeech_0001/KsponSpeech_\d{6}\.pcm',
  'eval_clean': r'KsponSpeech_eval/eval_clean/KsponSpeech_E\d{5}\.pcm',
  'eval_other': r'KsponSpeech_eval/eval_other/KsponSpeech_E\d{5}\.pcm',
}


@pytest.mark.parametrize(
  'number,reading',
  [
    (0, '영'),
    (1, '일'),
    (10, '십'),
    (15, '십오'),
    (110, '백십'),
    (1948, '천구백사십팔'),
    (10000, '만'),
    (21000, '이만천'),
    (100000000, '일억'),
    (300000012, '삼억십이'),
  ],
)
def test_sino_korean(number, reading):
  assert mt.sino_korean(number) == reading


def test_spoken_words_and_dual_transcripts():
  assert mt.spoken_word('6월에') == '유월에'
  assert mt.spoken_word('30%로') == '삼십 퍼센트로'
  clause = mt.Sentence(('제1조', '국민은', '30%'))
  assert clause.transcript == '(제1조)/(제일조) 국민은 (30%)/(삼십 퍼센트)'
  assert clause.spoken == '제일조 국민은 삼십 퍼센트'
  assert text.normalize_transcript(clause.transcript) == clause.spoken
  assert (
    text.normalize_transcript(clause.transcript, 'spelling')
    == '제1조 국민은 30%'
  )


@pytest.mark.parametrize(
  'stem,past',
  [
    ('버티', '버텼다'),  # ㅣ + 었 -> ㅕ
    ('이루', '이뤘다'),  # ㅜ + 었 -> ㅝ
    ('쏘', '쐈다'),  # ㅗ + 았 -> ㅘ
    ('되', '됐다'),  # ㅚ + 었 -> ㅙ
    ('건너', '건넜다'),  # ㅓ + 었: one ㅓ
    ('건네', '건넸다'),
    ('짜', '짰다'),
    ('아프', '아팠다'),  # ㅡ drops; ㅏ after a ㅏ/ㅗ syllable
    ('기쁘', '기뻤다'),  # ㅡ drops; ㅓ otherwise
    ('쓰', '썼다'),
    ('공부하', '공부했다'),
    ('부르', None),  # 르-irregular
    ('얇', None),  # consonant-final
    ('뛰', None),  # ㅟ does not contract
  ],
)
def test_past_tense(stem, past):
  assert mt.past_tense(stem) == past


def test_sources_are_short_clean_korean_clauses():
  for clauses in (mt.law_clauses(), mt.tweet_clauses()):
    assert len(clauses) > 1000
    assert len(set(clauses)) == len(clauses)
    for clause in clauses:
      assert re.fullmatch(r'[가-힣 ]+', clause.spoken), clause
      syllables = len(clause.key)
      assert mt.MIN_SYLLABLES <= syllables <= mt.MAX_SYLLABLES * 1.2
  assert sum('(' in c.transcript for c in mt.law_clauses()) > 100
  assert len(mt.eojeols()) > 40000


def test_clauses_drop_words_glued_to_letters():
  doc = (
    'dpkg를 써서 패키지를 설치합니다. ㅋㅋ그거 정말 아주 좋은 생각이에요ㅋㅋ'
    ' 진짜로'
  )
  got = [c.words for c in mt._clauses([doc], 'x')]
  # '를' belonged to dpkg, '그거' and '생각이에요' to the ㅋㅋ around them.
  assert got == [('써서', '패키지를', '설치합니다'), ('정말', '아주', '좋은')]


def test_profane_words_are_left_out():
  assert mt._profane()
  for word in mt.eojeols():
    assert not word.startswith(mt._profane()), word
  assert not mt._clauses(['오늘 존나 덥네요 진짜'], 'x')


_SIZES = mk._split_sizes(3000)


@pytest.fixture(scope='module')
def default_text():
  return mt.corpus_text(_SIZES, seed=0)


def _jamo(texts):
  return set(text.decompose_hangul(''.join(texts))) - {' '}


def test_default_text_covers_korean_syllables(default_text):
  assert {s: len(v) for s, v in default_text.items()} == _SIZES
  train = mt._syllables(default_text['train'])
  assert len(train) >= 1800
  # Most of KS X 1001 (the measured figure is 2014 of 2350).
  assert len(train & text.KS_X_1001_SYLLABLES) >= 1950
  # Every lead, vowel and tail jamo: jamo units can spell any syllable.
  leads = {chr(0x1100 + i) for i in range(19)}
  vowels = {chr(0x1161 + i) for i in range(21)}
  tails = {chr(0x11A8 + i) for i in range(27)}
  spoken = [s.spoken for s in default_text['train']]
  assert leads | vowels | tails <= _jamo(spoken)
  sources = {s.source for s in default_text['train']}
  assert sources == {'law', 'eojeols', 'coverage'}
  for split in ('dev', 'eval_clean'):
    assert {s.source for s in default_text[split]} == {'law', 'eojeols'}
  assert {s.source for s in default_text['eval_other']} == {'tweets'}


def test_every_utterance_is_a_few_words_of_bounded_length(default_text):
  for sentences in default_text.values():
    for s in sentences:
      assert len(s.words) >= 2, s
      assert mt.MIN_SYLLABLES <= len(s.key) <= mt.MAX_SYLLABLES * 1.2, s
  # The last group of coverage words is topped up, never left short.
  rng = np.random.default_rng(0)
  for words in (['샅'], ['가나다라마바사아자', '샅']):
    (packed,) = mt._pack(words, rng)
    assert set(words) <= set(packed.words) and len(packed.words) >= 2
    assert len(packed.key) >= mt.MIN_SYLLABLES + 3


def test_no_sentence_is_in_two_splits(default_text):
  keys = {split: {s.key for s in v} for split, v in default_text.items()}
  for a in keys:
    for b in keys:
      assert a == b or not keys[a] & keys[b], (a, b)


def test_word_sequences_never_repeat_a_sentence(monkeypatch):
  # From two words, random sequences collide often: none may repeat, in a
  # split or across splits.
  monkeypatch.setattr(mt, 'eojeols', lambda: ('가나다', '라마바'))
  sizes = dict(train=60, dev=30, eval_clean=30, eval_other=5)
  keys = [
    s.key
    for split in mt.IN_DOMAIN
    for s in mt.corpus_text(sizes, seed=0)[split]
    if s.source == 'eojeols'
  ]
  assert len(keys) > 50
  assert len(set(keys)) == len(keys)


def test_eval_other_drops_tweets_that_train_has(default_text, monkeypatch):
  # A tweet clause that is also a train sentence must not reach eval_other.
  twin = default_text['train'][0]
  tweets = (mt.Sentence(twin.words, 'tweets'), *mt.tweet_clauses())
  monkeypatch.setattr(mt, 'tweet_clauses', lambda: tweets)
  sizes = dict(_SIZES, eval_other=len(tweets))
  text_again = mt.corpus_text(sizes, seed=0)
  assert twin.key not in {s.key for s in text_again['eval_other']}
  assert len(text_again['eval_other']) == len(tweets)


def test_lm_text_is_new_in_domain_text(default_text):
  lm = mt.lm_text(default_text, count=3000, seed=0)
  keys = {s.key for s in lm}
  assert len(keys) == 3000
  for split, sentences in default_text.items():
    assert not keys & {s.key for s in sentences}, split
  assert not keys & {c.key for c in mt.tweet_clauses()}
  assert {s.source for s in lm} == {'eojeols'}
  assert lm == mt.lm_text(default_text, count=3000, seed=0)
  assert lm != mt.lm_text(default_text, count=3000, seed=1)


def test_text_is_deterministic_per_seed():
  small = dict(train=200, dev=20, eval_clean=10, eval_other=10)
  assert mt.corpus_text(small, 3) == mt.corpus_text(small, 3)
  assert mt.corpus_text(small, 3) != mt.corpus_text(small, 4)


def test_unseen_sentences_are_new_text_with_new_syllables(default_text):
  train = mt._syllables(default_text['train'])
  sources = ''.join(
    c.key for c in (*mt.law_clauses(), *mt.tweet_clauses())
  ) + ''.join(mt.eojeols())
  for sentence in unseen_sentences.SENTENCES:
    syllables = set(sentence) - {' '}
    assert syllables - train, sentence
    assert ''.join(sentence.split()) not in sources
    # Written as the corpus is: a transcript normalization leaves alone.
    assert text.normalize_transcript(sentence) == sentence


def test_missing_espeak_is_explained(monkeypatch, tmp_path):
  monkeypatch.setenv('PATH', str(tmp_path))
  with pytest.raises(RuntimeError, match='apt-get install espeak-ng'):
    mk.make_mini_kspon(tmp_path / 'out', num_utterances=4)


def test_refuses_to_write_into_a_used_directory(tmp_path):
  (tmp_path / 'keep.txt').write_text('x')
  with pytest.raises(FileExistsError, match='not empty'):
    mk.make_mini_kspon(tmp_path, num_utterances=4)


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  out = tmp_path_factory.mktemp('mini') / 'seed0'
  durations = mk.make_mini_kspon(out, num_utterances=_N, seed=0)
  return out, durations


def _lists(root):
  lists = {}
  for split in _PATH_RE:
    lines = (root / 'scripts' / f'{split}.trn').read_text().splitlines()
    lists[split] = [line.split(' :: ', 1) for line in lines]
  return lists


def _sentence(raw):
  """Normalized text of a transcript without tags and fillers or spaces."""
  words = [w for w in raw.split() if not re.fullmatch(r'\S/', w)]
  return ''.join(text.normalize_transcript(' '.join(words)).split())


@needs_espeak
def test_same_seed_same_bytes_other_seed_other_corpus(corpus, tmp_path):
  root, _ = corpus
  mk.make_mini_kspon(tmp_path / 'again', num_utterances=_N, seed=0)
  mk.make_mini_kspon(tmp_path / 'other', num_utterances=_N, seed=1)
  files = sorted(
    os.path.relpath(os.path.join(d, f), root)
    for d, _, names in os.walk(root)
    for f in names
  )
  match, mismatch, errors = filecmp.cmpfiles(
    root, tmp_path / 'again', files, shallow=False
  )
  assert (len(match), mismatch, errors) == (len(files), [], [])
  assert _lists(root) != _lists(tmp_path / 'other')


@needs_espeak
def test_layout_and_disjoint_splits(corpus):
  root, durations = corpus
  lists = _lists(root)
  assert {s: len(v) for s, v in lists.items()} == {
    'train': 16,
    'dev': 2,
    'eval_clean': 1,
    'eval_other': 1,
  }
  for split, entries in lists.items():
    for rel, raw in entries:
      assert re.fullmatch(_PATH_RE[split], rel)
      pcm = root / rel
      assert pcm.stat().st_size % 2 == 0
      # The corpus' per-utterance transcript files are CP949.
      txt = pcm.with_suffix('.txt').read_bytes().decode('cp949')
      assert txt == raw + '\n'
    seconds = durations[split]
    assert all(1.0 <= s <= 7.0 for s in seconds), seconds
  ids = [rel for entries in lists.values() for rel, _ in entries]
  assert len(set(ids)) == len(ids)
  sentences = {s: {_sentence(raw) for _, raw in e} for s, e in lists.items()}
  for a in sentences:
    for b in sentences:
      assert a == b or not sentences[a] & sentences[b], (a, b)


@needs_espeak
def test_eval_other_is_unseen_text_the_rest_in_domain(corpus):
  root, _ = corpus
  lists = _lists(root)
  seen = {_sentence(raw) for s in ('train', 'dev') for _, raw in lists[s]}
  tweets = {c.key for c in mt.tweet_clauses()}
  law = {c.key for c in mt.law_clauses()}
  for _, raw in lists['eval_other']:
    assert _sentence(raw) not in seen
    assert _sentence(raw) in tweets
  assert any(_sentence(raw) in law for _, raw in lists['eval_clean'])
  assert not tweets & {_sentence(raw) for _, raw in lists['eval_clean']}


@needs_espeak
def test_statistics_are_written_beside_the_corpus(corpus):
  root, durations = corpus
  written = json.loads((root / 'corpus_stats.json').read_text())
  sources = written.pop('sources')
  assert written.pop('lm_text_sentences') == mt.LM_SENTENCES
  assert written == corpus_stats.corpus_stats(root)
  assert sum(sources['train'].values()) == len(durations['train'])
  assert set(sources['eval_other']) == {'tweets'}
  for split, stats in written['splits'].items():
    assert stats['utterances'] == len(durations[split])
    assert stats['hours'] == pytest.approx(
      sum(durations[split]) / 3600, abs=1e-4
    )
  assert written['splits']['train']['in_train'] == 1.0
  table = (root / 'corpus_stats.txt').read_text()
  assert table.startswith('| split | utterances |')
  assert 'KS X 1001' in table
  assert f'language-model text: {mt.LM_SENTENCES} sentences' in table


@needs_espeak
def test_lm_text_has_no_sentence_of_any_split(corpus):
  root, _ = corpus
  lines = (root / mk.LM_TEXT).read_text(encoding='utf-8').splitlines()
  assert len(lines) == mt.LM_SENTENCES
  corpus_sentences = {
    _sentence(raw) for entries in _lists(root).values() for _, raw in entries
  }
  assert not corpus_sentences & {_sentence(raw) for raw in lines}


@needs_espeak
def test_builds_with_the_ksponspeech_builder(corpus, tmp_path):
  root, _ = corpus
  builder = data.build_dataset('ksponspeech', tmp_path, root, 'phonetic')
  lists = _lists(root)
  for split, entries in lists.items():
    source = builder.as_data_source(split)
    assert len(source) == len(entries)
    assert data.read_skipped(builder.data_dir, split) == []
    for i, (rel, raw) in enumerate(entries):
      example = source[i]
      expected_audio = np.fromfile(root / rel, dtype='<i2')
      np.testing.assert_array_equal(example['audio'], expected_audio)
      # Loud enough to be speech, and noisy: never digital silence.
      assert np.abs(example['audio']).max() > 5000
      assert np.count_nonzero(example['audio'] == 0) < expected_audio.size / 10
      normalized = example['text'].decode()
      assert example['raw_text'].decode() == raw
      assert re.fullmatch(r'[가-힣 ]+', normalized), normalized
      spoken = ' '.join(
        w.rstrip('/') for w in raw.split() if not re.fullmatch(r'[onubl]/', w)
      )
      spoken = re.sub(r'\(([^)]*)\)/\(([^)]*)\)', r'\2', spoken)
      assert normalized == spoken


@needs_espeak
def test_unseen_sentences_are_spoken_and_reported(tmp_path):
  trn = unseen_sentences.speak(tmp_path)
  lines = open(trn, encoding='utf-8').read().splitlines()
  assert [line.split(' :: ')[1] for line in lines] == list(
    unseen_sentences.SENTENCES
  )
  for line in lines:
    pcm = np.fromfile(tmp_path / line.split(' :: ')[0], dtype='<i2')
    assert pcm.size > 16000 and np.abs(pcm).max() > 5000
  # decode.py's JSONL: one exact transcript, one with 1 of 22 syllables
  # wrong (CER ignores spaces).
  first, second = unseen_sentences.SENTENCES[:2]
  records = [
    dict(reference=first, hypothesis=first.replace(' ', '')),
    dict(reference=second, hypothesis=second.replace('똠', '떰')),
  ]
  jsonl = tmp_path / 'decode.jsonl'
  jsonl.write_text(
    ''.join(json.dumps(r, ensure_ascii=False) + '\n' for r in records),
    encoding='utf-8',
  )
  report = unseen_sentences.report(jsonl).split('\n\n')
  assert report[0].endswith('CER 0.0%')
  assert report[1] == (
    f'reference:  {second}\ntranscript: {second.replace("똠", "떰")}\nCER 4.5%'
  )
