"""Tests for the generated mini_kspon corpus and its trip through TFDS."""

import filecmp
import os
import re
import shutil

import numpy as np
import pytest

from las_jax import data, text
from las_jax.data import make_mini_kspon as mk

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
  assert mk.sino_korean(number) == reading


def test_spoken_words_and_dual_transcripts():
  assert mk.spoken_word('6월에') == '유월에'
  assert mk.spoken_word('30%로') == '삼십 퍼센트로'
  clause = mk.Clause(('제1조', '국민은', '30%'))
  assert clause.transcript == '(제1조)/(제일조) 국민은 (30%)/(삼십 퍼센트)'
  assert clause.spoken == '제일조 국민은 삼십 퍼센트'
  assert text.normalize_transcript(clause.transcript) == clause.spoken
  assert (
    text.normalize_transcript(clause.transcript, 'spelling')
    == '제1조 국민은 30%'
  )


def test_corpus_clauses_are_short_clean_korean():
  clauses = mk.corpus_clauses()
  assert len(clauses) > 1000
  assert len(set(clauses)) == len(clauses)
  for clause in clauses:
    assert re.fullmatch(r'[가-힣 ]+', clause.spoken), clause
    syllables = len(clause.spoken.replace(' ', ''))
    assert mk.MIN_SYLLABLES <= syllables <= mk.MAX_SYLLABLES * 1.2
  assert sum('(' in c.transcript for c in clauses) > 100


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


def _clause(raw):
  """The corpus clause of a transcript: without tags and fillers."""
  return ' '.join(w for w in raw.split() if not re.fullmatch(r'\S/', w))


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
  clauses = {s: {_clause(raw) for _, raw in e} for s, e in lists.items()}
  for a in clauses:
    for b in clauses:
      assert a == b or not clauses[a] & clauses[b], (a, b)


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
