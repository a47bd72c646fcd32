"""Tests for las_jax.data.corpus_stats: the statistics of a corpus."""

import math

import pytest

from las_jax.data import corpus_stats


def test_split_stats_counts_normalized_syllables():
  transcripts = {
    # Tags and the dual transcription are normalized away first: the
    # phonetic '(2)/(이)' is 이.
    'train': ['b/ 가나 다', '가나 다', '(2)/(이) 가'],
    'dev': ['가라 n/', '라라'],
  }
  seconds = {'train': [1.0, 2.0, 3600.0], 'dev': [1800.0, 0.5]}
  stats = corpus_stats.split_stats(transcripts, seconds)
  assert stats['splits']['train'] == dict(
    utterances=3,
    sentences=2,
    hours=pytest.approx(1.0008, abs=1e-4),
    syllables=8,
    distinct_syllables=4,
    in_train=1.0,
    distinct_in_train=1.0,
  )
  dev = stats['splits']['dev']
  # 가 라 라 라: one of four running syllables, one of two distinct.
  assert (dev['syllables'], dev['distinct_syllables']) == (4, 2)
  assert (dev['in_train'], dev['distinct_in_train']) == (0.25, 0.5)
  assert dev['sentences'] == 2
  assert dev['hours'] == pytest.approx(0.5001, abs=1e-4)
  # 가, 나, 다, 이 are all KS X 1001 syllables.
  assert stats['train_ks_x_1001'] == 4


def test_split_stats_errors_and_empty_text():
  with pytest.raises(ValueError, match='needs the train split'):
    corpus_stats.split_stats({'dev': ['가']}, {'dev': [1.0]})
  with pytest.raises(ValueError, match='dev: 1 transcripts but 2'):
    corpus_stats.split_stats(
      {'train': ['가'], 'dev': ['가']}, {'train': [1.0], 'dev': [1.0, 2.0]}
    )
  stats = corpus_stats.split_stats({'train': ['b/']}, {'train': [1.0]})
  assert math.isnan(stats['splits']['train']['in_train'])


def test_corpus_stats_reads_trn_and_pcm_sizes(tmp_path):
  (tmp_path / 'scripts').mkdir()
  (tmp_path / 'a').mkdir()
  (tmp_path / 'a' / '1.pcm').write_bytes(b'\0' * 32000 * 36)
  (tmp_path / 'a' / '2.pcm').write_bytes(b'\0' * 32000 * 72)
  (tmp_path / 'scripts' / 'train.trn').write_text(
    'a/1.pcm :: 가나\na/2.pcm :: 다\n', encoding='utf-8'
  )
  (tmp_path / 'scripts' / 'eval_other.trn').write_text(
    'a/2.pcm :: 라\n', encoding='utf-8'
  )
  stats = corpus_stats.corpus_stats(tmp_path)
  assert list(stats['splits']) == ['train', 'eval_other']
  assert stats['splits']['train']['hours'] == 0.03
  assert stats['splits']['eval_other']['in_train'] == 0.0
  table = corpus_stats.format_stats(stats)
  assert '| eval_other | 1 | 1 | 0.02 | 1 | 1 | 0.00% | 0.00% |' in table
  assert 'train has 3 of the 2350 KS X 1001 syllables (0.1%)' in table
  (tmp_path / 'a' / '1.pcm').unlink()
  with pytest.raises(FileNotFoundError, match='1.pcm'):
    corpus_stats.corpus_stats(tmp_path)
