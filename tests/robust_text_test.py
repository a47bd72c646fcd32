"""Transcript lists and corpora that used to abort or mislabel (issue 14).

Item 10: lists in mixed or broken encodings decode line by line; only the
lines that are no text are lost, each named by file and line, in
`decode.py` inputs and both dataset builds. Item 11: noise tags glued to a
word leave no letter behind, and words ending like a tag keep theirs.
"""

import json

import numpy as np
import pytest

from las_jax import data
from las_jax.data import transcripts
from las_jax.inference import inputs
from las_jax.text import normalize_transcript

# ------------------------------------------------------ 10. encodings --

STRAY = b'KsponSpeech_01/c.pcm :: \xff\xfe\x80 \xea\xb0\x80'  # Not text.


def _mixed_lines(root):
  """A .trn mixing UTF-8, CP949, a stray-byte line and CRLF endings."""
  return b''.join(
    [
      'KsponSpeech_01/a.pcm :: 입증책임을b/ 하는\n'.encode(),
      'KsponSpeech_01/b.pcm :: 무슨 (70%)/(칠십 퍼센트)\r\n'.encode('cp949'),
      STRAY + b'\n',
      'KsponSpeech_01/d.pcm :: 그래서 n/ 갔어\n'.encode(),
    ]
  )


def test_lines_decode_one_by_one(tmp_path):
  path = tmp_path / 'mixed.trn'
  path.write_bytes(_mixed_lines(tmp_path))
  lines, bad = transcripts.read_text_lines(path)
  assert lines == [
    (1, 'KsponSpeech_01/a.pcm :: 입증책임을b/ 하는'),
    (2, 'KsponSpeech_01/b.pcm :: 무슨 (70%)/(칠십 퍼센트)'),
    (4, 'KsponSpeech_01/d.pcm :: 그래서 n/ 갔어'),
  ]
  assert [(s.source, s.reason[:34]) for s in bad] == [
    ('mixed.trn:3', 'line is not UTF-8 or CP949 text: b')
  ]


@pytest.mark.parametrize(
  'encoding', ['utf-16', 'utf-16-be', 'utf-32', 'utf-8-sig']
)
def test_byte_order_marks_select_the_encoding(tmp_path, encoding):
  text = 'a.pcm :: 가나다\nb.pcm :: 라마 바\n'
  path = tmp_path / 'list.trn'
  body = text.encode(encoding)
  if encoding == 'utf-16-be':
    body = b'\xfe\xff' + body
  path.write_bytes(body)
  lines, bad = transcripts.read_text_lines(path)
  assert lines == [(1, 'a.pcm :: 가나다'), (2, 'b.pcm :: 라마 바')] and not bad


def test_utf16_without_a_bom_is_named(tmp_path):
  path = tmp_path / 'list.tsv'
  path.write_bytes('a.wav\t가나\n'.encode('utf-16-le'))
  lines, bad = transcripts.read_text_lines(path)
  assert lines == []
  assert {s.source for s in bad} == {'list.tsv:1', 'list.tsv:2'}
  assert all('UTF-16 without a byte-order mark' in s.reason for s in bad)


def test_decode_inputs_keep_every_good_line(tmp_path):
  (tmp_path / 'scripts').mkdir()
  trn = tmp_path / 'scripts' / 'eval_clean.trn'
  trn.write_bytes(_mixed_lines(tmp_path))
  items, rejected = inputs.trn_items(str(trn), None, 'phonetic')
  assert [(i.id, i.reference) for i in items] == [
    ('a', '입증책임을 하는'),
    ('b', '무슨 칠십 퍼센트'),
    ('d', '그래서 갔어'),
  ]
  # A .trn line is named by its audio file and its line.
  audio_path = tmp_path / 'KsponSpeech_01' / 'a.pcm'
  assert items[0].name == f'{audio_path} (eval_clean.trn:1)'
  assert [r.name for r in rejected] == ['eval_clean.trn:3']
  assert 'not UTF-8 or CP949' in rejected[0].reason


def _pcm(path, seconds=0.3, seed=0):
  rng = np.random.default_rng(seed)
  path.parent.mkdir(parents=True, exist_ok=True)
  samples = rng.normal(0, 3000, int(16000 * seconds)).astype('<i2')
  samples.tofile(path)
  return samples


def test_ksponspeech_build_loses_only_the_undecodable_line(tmp_path):
  corpus = tmp_path / 'corpus'
  audio = {
    name: _pcm(corpus / 'KsponSpeech_01' / f'{name}.pcm', seed=i)
    for i, name in enumerate('abcd')
  }
  (corpus / 'scripts').mkdir()
  (corpus / 'scripts' / 'train.trn').write_bytes(_mixed_lines(corpus))
  # A UTF-16 list (with its BOM) for another split.
  (corpus / 'scripts' / 'dev.trn').write_text(
    'KsponSpeech_01/c.pcm :: 이건 u/ 유티에프\n', encoding='utf-16'
  )
  builder = data.build_dataset('ksponspeech', tmp_path / 'tfds', corpus)
  train = builder.as_data_source('train')
  got = {train[i]['id'].decode(): train[i] for i in range(len(train))}
  assert {k: v['text'].decode() for k, v in got.items()} == {
    'a': '입증책임을 하는',
    'b': '무슨 칠십 퍼센트',
    'd': '그래서 갔어',
  }
  for name, record in got.items():
    np.testing.assert_array_equal(record['audio'], audio[name])
  [skipped] = data.read_skipped(builder.data_dir, 'train')
  assert skipped.source == 'train.trn:3'
  dev = builder.as_data_source('dev')
  assert dev[0]['text'].decode() == '이건 유티에프'


@pytest.mark.parametrize('fmt', ['tsv', 'jsonl'])
def test_cp949_manifests_build(tmp_path, fmt):
  corpus = tmp_path / 'corpus'
  for name in ('x', 'y'):
    _pcm(corpus / f'{name}.pcm')
  texts = {'x': '안녕하세요 여러분', 'y': '감사합니다'}
  if fmt == 'tsv':
    lines = [f'{k}.pcm\t{v}' for k, v in texts.items()]
  else:
    lines = [
      json.dumps({'audio': f'{k}.pcm', 'text': v}, ensure_ascii=False)
      for k, v in texts.items()
    ]
  body = '\n'.join(lines).encode('cp949') + b'\n' + b'z.pcm\t\xff\xff\n'
  (corpus / f'train.{fmt}').write_bytes(body)
  builder = data.build_dataset('manifest', tmp_path / 'tfds', corpus, 'none')
  train = builder.as_data_source('train')
  assert [train[i]['text'].decode() for i in range(len(train))] == list(
    texts.values()
  )
  [skipped] = data.read_skipped(builder.data_dir, 'train')
  assert skipped.source == f'train.{fmt}:3'


# ---------------------------------------------------- 11. noise tags --

# (raw transcript, phonetic, spelling): KsponSpeech's conventions write
# words in Hangul and tags as one Latin letter and a slash; a tag glued to
# the word before it is still a tag.
GLUED_TAGS = [
  ('입증책임을b/ 하는', '입증책임을 하는', '입증책임을 하는'),
  ('그거l/ 뭐야', '그거 뭐야', '그거 뭐야'),
  ('그래서o/n/ 갔어', '그래서 갔어', '그래서 갔어'),
  ('아니 그게b/', '아니 그게', '아니 그게'),
  ('했어요.b/ 네', '했어요. 네', '했어요. 네'),
  ('(PDF)/(피디에프)n/ 파일', '피디에프 파일', 'PDF 파일'),
  ('(3)/(삼)b/ 번', '삼 번', '3 번'),
  ('음/b/ 그러니까', '음 그러니까', '음 그러니까'),
]
# Words that end like a tag: a Latin letter or digit before the slash makes
# the letter part of the word (the slash is a filler mark, deleted).
WORDS_LIKE_TAGS = [
  ('(job/)/(잡) 구해', '잡 구해', 'job 구해'),
  ('Bob/ 왔어', 'Bob 왔어', 'Bob 왔어'),
  ('hello/ 안녕', 'hello 안녕', 'hello 안녕'),
  ('(10l/)/(십 리터) 물', '십 리터 물', '10l 물'),
  ('the (sun/)/(썬) b/', 'the 썬', 'the sun'),
]


@pytest.mark.parametrize('raw,phonetic,spelling', GLUED_TAGS + WORDS_LIKE_TAGS)
def test_noise_tags_golden(raw, phonetic, spelling):
  assert normalize_transcript(raw, 'phonetic') == phonetic
  assert normalize_transcript(raw, 'spelling') == spelling
  # Idempotent: a normalized transcript is a fixed point.
  assert normalize_transcript(phonetic, 'phonetic') == phonetic
