"""Tests for the TFDS builders: ksponspeech and manifest, skips reported."""

import json
import logging
import os

import numpy as np
import pytest
import soundfile as sf
import tensorflow_datasets as tfds

from las_jax import data
from las_jax.data import transcripts

_DIR = 'KsponSpeech_01/KsponSpeech_0001'


def _pcm(root, rel, samples):
  path = root / rel
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(samples.astype('<i2').tobytes())


def _signal(seed, n):
  return np.random.default_rng(seed).integers(-3000, 3000, n, dtype=np.int16)


# (relative path, transcript, samples or None when the file is bad/absent).
_GOOD = {
  'train': [
    (f'{_DIR}/KsponSpeech_000001.pcm', 'b/ 아/ 그래서 (3)/(삼) 개요 n/', 1),
    (f'{_DIR}/KsponSpeech_000002.pcm', '네 (70%)/(칠십 퍼센트) 맞아요', 2),
    (f'{_DIR}/KsponSpeech_000003.pcm', '*어 그+ 그렇죠, 뭐.', 3),
  ],
  'dev': [(f'{_DIR}/KsponSpeech_000010.pcm', 'o/ 좋아요?', 10)],
  'eval_clean': [
    ('KsponSpeech_eval/eval_clean/KsponSpeech_E00001.pcm', '(1시)/(한 시)', 20)
  ],
  'eval_other': [
    ('KsponSpeech_eval/eval_other/KsponSpeech_E00002.pcm', 'l/ 하하 네', 21)
  ],
}
_TEXT = {
  'phonetic': [
    '아 그래서 삼 개요',
    '네 칠십 퍼센트 맞아요',
    '어 그 그렇죠 뭐.',
  ],
  'spelling': ['아 그래서 3 개요', '네 70% 맞아요', '어 그 그렇죠 뭐.'],
}


@pytest.fixture(scope='module')
def kspon_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('kspon')
  lists = {}
  for split, items in _GOOD.items():
    lists[split] = []
    for rel, raw, seed in items:
      _pcm(root, rel, _signal(seed, 800 + 100 * seed))
      lists[split].append(f'{rel} :: {raw}')
  (root / f'{_DIR}/KsponSpeech_000004.pcm').write_bytes(b'\x01\x02\x03')
  (root / f'{_DIR}/KsponSpeech_000005.pcm').write_bytes(b'')
  _pcm(root, f'{_DIR}/KsponSpeech_000007.pcm', _signal(7, 500))
  lists['train'][2:2] = [
    f'{_DIR}/KsponSpeech_000004.pcm :: 홀수 바이트',
    f'{_DIR}/KsponSpeech_000005.pcm :: 빈 파일',
    'this line has no separator',
    f'{_DIR}/KsponSpeech_000006.pcm :: 없는 파일',
    f'{_DIR}/KsponSpeech_000007.pcm :: b/ n/',
    '',
  ]
  # Some copies of the eval lists start their paths with '/'.
  lists['eval_other'] = ['/' + line for line in lists['eval_other']]
  (root / 'scripts').mkdir()
  for split, lines in lists.items():
    (root / 'scripts' / f'{split}.trn').write_text('\n'.join(lines) + '\n')
  return root


@pytest.fixture(scope='module')
def kspon_builders(kspon_dir, tmp_path_factory):
  data_dir = tmp_path_factory.mktemp('tfds')
  return {
    t: data.build_dataset('ksponspeech', data_dir, kspon_dir, t)
    for t in ('phonetic', 'spelling')
  }


@pytest.mark.parametrize('transcription', ['phonetic', 'spelling'])
def test_ksponspeech_splits_read_back(kspon_builders, transcription):
  builder = kspon_builders[transcription]
  assert set(builder.info.splits) == set(_GOOD)
  for split, items in _GOOD.items():
    source = builder.as_data_source(split)
    assert len(source) == len(items)
    for i, (rel, raw, seed) in enumerate(items):
      example = source[i]
      assert example['id'] == os.path.basename(rel)[:-4].encode()
      assert example['audio'].dtype == np.int16
      np.testing.assert_array_equal(
        example['audio'], _signal(seed, 800 + 100 * seed)
      )
      assert example['raw_text'].decode() == raw
  texts = [
    builder.as_data_source('train')[i]['text'].decode() for i in range(3)
  ]
  assert texts == _TEXT[transcription]
  eval_clean = builder.as_data_source('eval_clean')[0]['text'].decode()
  assert eval_clean == {'phonetic': '한 시', 'spelling': '1시'}[transcription]


def test_tfds_data_source_by_name(kspon_builders):
  builder = kspon_builders['phonetic']
  source = tfds.data_source(
    'ksponspeech/phonetic', split='dev', data_dir=builder.data_dir_root
  )
  assert [source[0]['text']] == [b'\xec\xa2\x8b\xec\x95\x84\xec\x9a\x94?']
  assert source[0]['text'].decode() == '좋아요?'


def test_ksponspeech_reports_every_skipped_line(kspon_builders):
  builder = kspon_builders['phonetic']
  skipped = data.read_skipped(builder.data_dir, 'train')
  # Malformed lines are found while parsing, before any audio is read.
  assert [s.source for s in skipped] == [
    'train.trn:5',
    'train.trn:3',
    'train.trn:4',
    'train.trn:6',
    'train.trn:7',
  ]
  reasons = {s.source: s.reason for s in skipped}
  assert 'malformed line' in reasons['train.trn:5']
  assert 'odd count' in reasons['train.trn:3']
  assert 'KsponSpeech_000004.pcm' in reasons['train.trn:3']
  assert 'empty file (0 bytes)' in reasons['train.trn:4']
  assert 'no such file' in reasons['train.trn:6']
  assert 'empty after normalization' in reasons['train.trn:7']
  for split in ('dev', 'eval_clean', 'eval_other'):
    assert data.read_skipped(builder.data_dir, split) == []


def test_ksponspeech_logs_skips(kspon_dir, tmp_path, caplog):
  with caplog.at_level(logging.WARNING):
    data.build_dataset('ksponspeech', tmp_path, kspon_dir, 'phonetic')
  log = caplog.text
  assert 'Skipping train.trn:3' in log
  assert 'Skipping train.trn:5: malformed line' in log
  assert 'Split train: 3 examples, 5 skipped' in log


def test_read_trn_accepts_cp949(tmp_path):
  trn = tmp_path / 'dev.trn'
  trn.write_bytes('a/b.pcm :: 안녕하세요\n'.encode('cp949'))
  utterances, skipped = transcripts.read_trn(str(trn), '/corpus')
  assert skipped == []
  assert utterances[0].raw_text == '안녕하세요'
  assert utterances[0].audio_path == '/corpus/a/b.pcm'
  assert utterances[0].id == 'b'
  assert utterances[0].source == 'dev.trn:1'


def test_ksponspeech_without_lists_says_what_is_missing(tmp_path):
  (tmp_path / 'corpus/KsponSpeech_01').mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match='train.trn'):
    data.build_dataset('ksponspeech', tmp_path / 'd', tmp_path / 'corpus')


def _sine(freq, rate, n):
  return 0.3 * np.sin(2 * np.pi * freq * np.arange(n) / rate)


@pytest.fixture(scope='module')
def manifest_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('manifest')
  (root / 'clips').mkdir()
  mono = np.round(_sine(300, 16000, 1600) * 32767).astype(np.int16)
  sf.write(root / 'clips/a.wav', mono, 16000, subtype='PCM_16')
  sf.write(root / 'clips/b.flac', mono, 16000, subtype='PCM_16')
  stereo = np.stack([_sine(500, 44100, 4410)] * 2, 1)
  sf.write(root / 'clips/c.flac', stereo, 44100, subtype='PCM_16')
  (root / 'clips/bad.wav').write_bytes(b'RIFF not really a wave file')
  (root / 'train.tsv').write_text(
    'audio_path\ttranscript\n'
    '# a comment\n'
    'clips/a.wav\t  첫째   문장 (3)/(삼)  \n'
    'clips/bad.wav\t망가진 파일\n'
    'no tab on this line\n'
    f'{root}/clips/b.flac\t둘째, 문장!\n'
  )
  (root / 'dev.jsonl').write_text(
    json.dumps({'audio': 'clips/c.flac', 'text': '셋째 문장', 'id': 'c1'})
    + '\n{"audio": "clips/a.wav"}\n'
  )
  return root, mono


@pytest.mark.parametrize(
  'transcription,texts',
  [
    ('none', ['첫째 문장 (3)/(삼)', '둘째, 문장!']),
    ('phonetic', ['첫째 문장 삼', '둘째 문장!']),
  ],
)
def test_manifest_builds_wav_and_flac(
  manifest_dir, tmp_path, transcription, texts
):
  root, mono = manifest_dir
  builder = data.build_dataset('manifest', tmp_path, root, transcription)
  train = builder.as_data_source('train')
  assert len(train) == 2
  assert [train[i]['text'].decode() for i in range(2)] == texts
  assert [train[i]['id'] for i in range(2)] == [
    b'clips/a',
    f'{root}/clips/b'.encode(),
  ]
  for i in range(2):
    np.testing.assert_array_equal(train[i]['audio'], mono)
  dev = builder.as_data_source('dev')
  assert len(dev) == 1
  assert dev[0]['id'] == b'c1'
  # 0.1 s of 44.1 kHz stereo comes back as 0.1 s of 16 kHz mono.
  assert dev[0]['audio'].shape == (1600,)
  assert dev[0]['raw_text'] == '셋째 문장'.encode()
  train_skips = data.read_skipped(builder.data_dir, 'train')
  assert [s.source for s in train_skips] == ['train.tsv:5', 'train.tsv:4']
  assert 'bad.wav' in train_skips[1].reason
  dev_skips = data.read_skipped(builder.data_dir, 'dev')
  assert [s.source for s in dev_skips] == ['dev.jsonl:2']
  assert "KeyError: 'text'" in dev_skips[0].reason


def test_manifest_rejects_two_lists_for_one_split(tmp_path):
  (tmp_path / 'train.tsv').write_text('a.wav\tx\n')
  (tmp_path / 'train.jsonl').write_text('')
  with pytest.raises(ValueError, match="split 'train' also listed"):
    data.build_dataset('manifest', tmp_path / 'd', tmp_path, 'none')


def test_read_trn_paths_with_a_leading_slash(tmp_path):
  """'/a/b.pcm' is a corpus path (as some list copies write them) unless
  only the path as written exists (a user's own list of absolute paths)."""
  corpus = tmp_path / 'corpus'
  (corpus / 'a').mkdir(parents=True)
  (corpus / 'a' / 'b.pcm').write_bytes(b'\0\0')
  own = tmp_path / 'own.wav'
  own.write_bytes(b'RIFF')
  trn = tmp_path / 'x.trn'
  trn.write_text(f'/a/b.pcm :: 가\n{own} :: 나\n', encoding='utf-8')
  utterances, skipped = transcripts.read_trn(str(trn), str(corpus))
  assert skipped == []
  assert [u.audio_path for u in utterances] == [
    str(corpus / 'a' / 'b.pcm'),
    str(own),
  ]
