"""Build-time trimming: the utterance index the builders store, its use by
the input pipeline, and datasets prepared by an earlier builder version."""

import json
import logging
import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from configs import default
from las_jax import audio, data, input_pipeline
from las_jax.data import utterance_index
from las_jax.text import Vocabulary

_SR = 16000


def _utterance(seed, lead, speech, tail, quiet_edge=0):
  """Noise floor, `quiet_edge` samples 8 dB above it, a loud burst 44 dB
  above it, the floor again: int16, with known silent edges."""
  rng = np.random.default_rng(seed)
  n = lead + quiet_edge + speech + tail
  x = rng.normal(0, 2.0, n)
  x[lead : lead + quiet_edge] += rng.normal(0, 5.0, quiet_edge)
  burst = slice(lead + quiet_edge, lead + quiet_edge + speech)
  x[burst] += 320 * np.sin(2 * np.pi * 440 * np.arange(speech) / _SR)
  return np.round(x).astype(np.int16)


# id -> (samples, transcript); trimmed at their edges, except the silent one.
_SIGNALS = {
  'a': (_utterance(0, 6000, 9000, 7000), '첫 번째 문장'),
  'b': (_utterance(1, 0, 12000, 300), '두 번째'),
  'c': (_utterance(2, 5000, 4000, 5000, quiet_edge=5000), '세 번째 문장입니다'),
  'silent': (np.full(9000, -7, np.int16), '쉿'),  # Digital silence, DC.
}


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  """A manifest corpus of _SIGNALS plus a 44.1 kHz stereo WAV, and two
  lines that give no example (the index must stay aligned): a file that
  cannot be read and an empty transcript."""
  root = tmp_path_factory.mktemp('corpus')
  lines = []
  for uid, (samples, text) in _SIGNALS.items():
    samples.astype('<i2').tofile(root / f'{uid}.pcm')
    lines.append(f'{uid}.pcm\t{text}')
  (root / 'odd.pcm').write_bytes(b'\x01\x02\x03')
  lines.insert(2, 'odd.pcm\t홀수')
  lines.insert(4, 'a.pcm\t ')
  t = np.arange(44100) / 44100
  stereo = np.zeros((44100, 2))
  stereo[11025:33075, 0] = 0.3 * np.sin(2 * np.pi * 300 * t[11025:33075])
  stereo[11025:33075, 1] = stereo[11025:33075, 0]
  sf.write(root / 'stereo.wav', stereo, 44100, subtype='PCM_16')
  lines.append('stereo.wav\t스테레오')
  (root / 'train.tsv').write_text('\n'.join(lines) + '\n')
  (root / 'dev.tsv').write_text('\n'.join(lines[:2]) + '\n')
  return root


@pytest.fixture(scope='module')
def built(corpus, tmp_path_factory):
  data_dir = tmp_path_factory.mktemp('tfds')
  return data.build_dataset('manifest', data_dir, corpus, 'none')


def test_build_stores_the_spans_of_audio_trim_silence(built):
  for split, count in (('train', 5), ('dev', 2)):
    source = built.as_data_source(split)
    index = data.read_index(built.data_dir, split)
    assert len(index) == len(source) == count
    assert (index.trim_rule, index.trim_top_db) == (audio.TRIM_RULE, 30.0)
    for i in range(len(source)):
      record = source[i]
      samples_N = record['audio']
      assert index.ids[i] == record['id'].decode()
      assert index.texts[i] == record['text'].decode()
      assert index.num_samples[i] == samples_N.size
      start, end = index.trim_start[i], index.trim_end[i]
      np.testing.assert_array_equal(
        samples_N[start:end], audio.trim_silence(samples_N, top_db=30)
      )
      assert (start, end) == audio.trim_bounds(samples_N, top_db=30)
  index = data.read_index(built.data_dir, 'train')
  assert index.ids == ['a', 'b', 'c', 'silent', 'stereo']
  spans = {
    uid: (start, end)
    for uid, start, end in zip(
      index.ids, index.trim_start, index.trim_end, strict=True
    )
  }

  def near(span, start, end):  # Within a frame (2048 samples) outside.
    return start - 2048 < span[0] <= start and end <= span[1] < end + 2048

  assert near(spans['a'], 6000, 15000)
  assert spans['b'][0] == 0
  assert spans['silent'][0] == spans['silent'][1]  # All silence.
  # The stereo file's tone, 0.25-0.75 s, trimmed after resampling.
  assert near(spans['stereo'], 4000, 12000)
  assert index.num_samples[index.ids.index('stereo')] == _SR


def _config(**input_fields):
  config = default.get_config()
  config.input.update(
    audio_buckets_s=(0.5, 1.0, 2.0),
    token_buckets=(16,),
    batch_size=2,
    eval_batch_size=2,
    num_threads=0,
    **input_fields,
  )
  return config


def _records():
  return [
    {'id': uid.encode(), 'audio': samples, 'text': text.encode()}
    for uid, (samples, text) in _SIGNALS.items()
  ]


def _rows(iterator):
  """{id: the audio row the batches hold}."""
  rows = {}
  for batch in iterator:
    for uid, n, row in zip(
      batch['ids'], batch['audio_lengths'], batch['audio'], strict=True
    ):
      if uid:
        rows[uid] = row[:n]
  return rows


def test_trim_settings_pick_the_stored_spans_or_reindex(caplog):
  records = _records()
  vocab = Vocabulary.build([text for _, text in _SIGNALS.values()])
  stored = utterance_index.UtteranceIndex.from_records(records)
  # 'c' has a quiet edge between 30 and 40 dB below its burst.
  c = records[2]['audio']
  assert audio.trim_bounds(c, 40) != audio.trim_bounds(c, 30)
  for fields, top_db in (({}, 30), ({'trim_top_db': 40}, 40)):
    caplog.clear()
    with caplog.at_level(logging.WARNING):
      rows = _rows(
        input_pipeline.make_eval_iterator(
          records, vocab, _config(**fields), index=stored
        )
      )
    assert ('trims by rule' in caplog.text) == (top_db != 30)
    for record in records:
      want = (
        audio.trim_silence(record['audio'], top_db)
        if (record['id'] != b'silent')
        else record['audio']
      )  # All silence is kept whole.
      np.testing.assert_array_equal(rows[record['id'].decode()], want)
  # No trimming: whole files, whatever the index says.
  rows = _rows(
    input_pipeline.make_eval_iterator(
      records, vocab, _config(trim_silence=False), index=stored
    )
  )
  for record in records:
    np.testing.assert_array_equal(rows[record['id'].decode()], record['audio'])


def test_index_of_other_data_is_refused():
  records = _records()
  vocab = Vocabulary.build([text for _, text in _SIGNALS.values()])
  stored = utterance_index.UtteranceIndex.from_records(records)
  with pytest.raises(ValueError, match='4 entries for 3 records'):
    input_pipeline.make_eval_iterator(
      records[:3], vocab, _config(), index=stored
    )
  records[1] = dict(records[1], audio=records[1]['audio'][:-1])
  it = input_pipeline.make_eval_iterator(
    records, vocab, _config(), index=stored
  )
  with pytest.raises(ValueError, match=r"'b', 12299 samples\) is not what"):
    list(it)


def _earlier_version(builder, data_dir, version='1.1.0'):
  """A copy of a prepared dataset in `data_dir` as an earlier builder
  version made it: the same examples, without the utterance indexes."""
  old = os.path.join(data_dir, 'manifest', 'none', version)
  shutil.copytree(builder.data_dir, old)
  info_path = os.path.join(old, 'dataset_info.json')
  with open(info_path) as f:
    info = json.load(f)
  info['version'] = version
  with open(info_path, 'w') as f:
    json.dump(info, f)
  for name in os.listdir(old):
    if name.startswith('utterances_'):
      os.remove(os.path.join(old, name))
  return old


def test_earlier_version_is_refused_or_rebuilt(built, corpus, tmp_path, caplog):
  data_dir = tmp_path / 'tfds'
  old = _earlier_version(built, data_dir)
  with pytest.raises(FileNotFoundError, match='not prepared by this version'):
    data.read_index(old, 'train')
  with pytest.raises(FileNotFoundError) as refused:
    data.build_dataset('manifest', data_dir, tmp_path / 'gone', 'none')
  message = str(refused.value)
  assert f'{old} was prepared by an earlier las_jax' in message
  assert 'utterance index' in message  # The 1.2.0 release note.
  assert (
    'python -m las_jax.data.build --dataset=manifest --transcription=none '
    f'--manual_dir=<the corpus> --data_dir={data_dir}'
  ) in message
  with caplog.at_level(logging.WARNING):
    builder = data.build_dataset('manifest', data_dir, corpus, 'none')
  assert f'{old} was prepared by an earlier las_jax' in caplog.text
  assert str(builder.version) == '1.2.0'
  assert data.read_index(builder.data_dir, 'train').ids == (
    data.read_index(built.data_dir, 'train').ids
  )
