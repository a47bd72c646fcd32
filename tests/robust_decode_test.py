"""decode.py on a directory mixing every kind of bad input (issue 14).

One run of the CLI over generated files: PCM16 speech and the same samples
in other containers and sample formats, files that must be refused (NaN,
too short, DC, silence, corrupt, odd PCM), files that decode with a warning
(loud Vorbis, int16-scale floats, a WAV named .pcm, FLAC named .wav, a
mostly silent file) and files that are not audio. The right values: every
converted file gets the transcript of its PCM16 original; every refusal and
warning is one line naming the file and the reason; the summary counts
them; the exit status is 0 because some decoded (1 when none does).

The run directory's config.json uses the field names of older runs
(`train.vocab_unit`, `train.vocab_max_size`), so decoding it also checks
that old runs still load (issue 14, item 14).
"""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from recognizer_test import make_run, tiny_config

ROOT = Path(__file__).resolve().parents[1]
SR = 16000


def _speech(text):
  wav = subprocess.run(
    ['espeak-ng', '-v', 'ko', '-s', '200', '--stdout', text],
    capture_output=True,
    check=True,
  ).stdout
  x, rate = sf.read(io.BytesIO(wav), dtype='float32')
  x = soxr.resample(x, rate, SR)
  return np.round(x / np.max(np.abs(x)) * 16000).astype(np.int16)


@pytest.fixture(scope='module')
def old_run(tmp_path_factory):
  """A random-parameter run whose config.json has the old field names."""
  config = tiny_config()
  config.input.trim_silence = True
  config.input.audio_buckets_s = (1.0, 2.0)
  workdir = make_run(tmp_path_factory.mktemp('run'), config)
  path = workdir / 'config.json'
  saved = json.loads(path.read_text())
  saved['train']['vocab_unit'] = saved['data'].pop('vocab_unit')
  saved['train']['vocab_max_size'] = saved['data'].pop('vocab_max_size')
  path.write_text(json.dumps(saved))
  return workdir


def _decode(run_dir, inputs, cache_dir):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  return subprocess.run(
    [
      sys.executable,
      str(ROOT / 'decode.py'),
      f'--workdir={run_dir}',
      '--beam_size=1',
      # JAX options as flags (config_with_absl): the cache must fill.
      f'--jax_compilation_cache_dir={cache_dir}',
      '--jax_persistent_cache_min_compile_time_secs=0',
      '--jax_disable_most_optimizations',
      *map(str, inputs),
    ],
    capture_output=True,
    text=True,
    env=env,
    cwd=ROOT,
    timeout=600,
  )


def test_a_directory_of_every_bad_kind(old_run, tmp_path):
  speech = _speech('입증 책임')
  d = tmp_path / 'inputs'
  d.mkdir()
  x = speech / 32768
  sf.write(d / 'good.wav', speech, SR, subtype='PCM_16')
  # The same samples in other containers and sample formats.
  same = {
    'float.wav': ('WAV', 'FLOAT'),
    'double.w64': ('W64', 'DOUBLE'),
    'float.aiff': ('AIFF', 'FLOAT'),
    'float.caf': ('CAF', 'FLOAT'),
    'double.au': ('AU', 'DOUBLE'),
    'float.rf64': ('RF64', 'FLOAT'),
    'pcm24.flac': ('FLAC', 'PCM_24'),
  }
  for name, (fmt, subtype) in same.items():
    sf.write(d / name, x, SR, format=fmt, subtype=subtype)
  # The same samples, with a warning each.
  sf.write(d / 'int16_scale.wav', speech.astype(np.float32), SR, 'FLOAT')
  sf.write(d / 'wav_named.pcm', speech, SR, subtype='PCM_16', format='WAV')
  sf.write(d / 'flac_named.wav', speech, SR, subtype='PCM_16', format='FLAC')
  warned_same = ['int16_scale.wav', 'wav_named.pcm', 'flac_named.wav']
  # Decoded: other formats, and one with a warning each.
  sf.write(d / 'speech.mp3', x, SR, format='MP3', subtype='MPEG_LAYER_III')
  sf.write(d / 'speech.opus', x, SR, format='OGG', subtype='OPUS')
  sf.write(d / 'speech.wave', speech, SR, format='WAV', subtype='PCM_16')
  sf.write(d / 'speech.aif', speech, SR, format='AIFF', subtype='PCM_16')
  sf.write(d / 'loud.ogg', 2.5 * x, SR, format='OGG', subtype='VORBIS')
  quiet = np.zeros(3 * SR, np.int16)
  sf.write(d / 'mostly_silence.wav', np.concatenate([quiet, speech]), SR)
  warned = {
    'int16_scale.wav': 'taken as int16-scale values',
    'wav_named.pcm': 'content is WAV, not headerless PCM',
    'flac_named.wav': 'content is FLAC, not what the .wav extension says',
    'loud.ogg': 'past full scale',
    'mostly_silence.wav': 'trimming silence kept',
  }
  # Refused, each for its reason.
  nan = x.astype(np.float32)
  nan[100] = np.nan
  sf.write(d / 'nan.wav', nan, SR, subtype='FLOAT')
  peak = int(np.argmax(np.abs(speech)))
  sf.write(d / 'short.wav', speech[peak - 160 : peak + 160], SR)  # 20 ms.
  sf.write(d / 'dc.wav', np.full(SR, 1000, np.int16), SR)
  sf.write(d / 'zeros.flac', np.zeros(SR, np.int16), SR)
  (d / 'corrupt.wav').write_bytes(b'RIFF\x00\x00\x00\x00WAVEfmt garbage')
  (d / 'odd.raw').write_bytes(b'\x01\x02\x03')
  refused = {
    'nan.wav': '1 of',
    'short.wav': 'shorter than the 70 ms one encoder frame needs',
    'dc.wav': 'audio is silent',
    'zeros.flac': 'audio is silent',
    'corrupt.wav': 'cannot read audio file',
    'odd.raw': 'odd count',
  }
  (d / 'notes.txt').write_text('not audio')
  (d / 'meta.json').write_text('{}')
  # A transcript list with a line in no encoding.
  corpus = tmp_path / 'corpus'
  (corpus / 'scripts').mkdir(parents=True)
  speech.astype('<i2').tofile(corpus / 'a.pcm')
  (corpus / 'scripts' / 'eval_clean.trn').write_bytes(
    'a.pcm :: 입증b/ 책임\n'.encode('cp949') + b'b.pcm :: \xff\xfe\n'
  )

  cache = tmp_path / 'jax_cache'
  proc = _decode(old_run, [d, corpus / 'scripts' / 'eval_clean.trn'], cache)
  assert proc.returncode == 0, proc.stderr[-3000:]
  hyps = dict(line.split('\t') for line in proc.stdout.splitlines())
  good = hyps[str(d / 'good.wav')]
  assert good  # A random model, but a deterministic, non-empty transcript.
  for name in [*same, *warned_same, 'speech.wave', 'speech.aif']:
    assert hyps[str(d / name)] == good, name
  assert hyps['a'] == good  # The .trn line's PCM.
  decoded = {'good.wav', *same, 'speech.mp3', 'speech.opus', 'speech.wave'}
  decoded |= {'speech.aif', *warned}
  assert set(hyps) == {str(d / n) for n in decoded} | {'a'}

  lines = proc.stderr.splitlines()
  for name, reason in refused.items():
    [line] = [s for s in lines if s.startswith(f'Skipping {d / name}: ')]
    assert reason in line, line
  for name, reason in warned.items():
    # A random model's hypotheses may loop: that is another warning.
    [line] = [
      s
      for s in lines
      if s.startswith(f'Warning {d / name}: ') and 'decoding loop' not in s
    ]
    assert reason in line, line
  assert any(
    s.startswith('Skipping eval_clean.trn:2: line is not UTF-8 or CP949 ')
    for s in lines
  )
  assert (
    f'{d}: 2 file(s) not read, their extension is not an audio format: '
    '1 .json, 1 .txt'
  ) in lines
  n_skipped = len(refused) + 1
  assert (
    f'Decoded {len(decoded) + 1} utterances, ' in proc.stderr
    and f', {len(warned)} with warnings; skipped {n_skipped} input(s)'
    in proc.stderr
  )
  # The reference of the .trn line lost its glued noise tag.
  jsonl = old_run / 'decode' / 'audio.jsonl'
  records = {json.loads(r)['id']: json.loads(r) for r in open(jsonl)}
  assert records['a']['reference'] == '입증 책임'
  assert any(cache.iterdir())  # --jax_* flags reach JAX.


def test_exit_status_is_1_when_nothing_decodes(old_run, tmp_path):
  d = tmp_path / 'bad'
  d.mkdir()
  sf.write(d / 'zeros.wav', np.zeros(SR, np.int16), SR)
  (d / 'x.wav').write_bytes(b'not audio')
  proc = _decode(old_run, [d], tmp_path / 'cache')
  assert proc.returncode == 1
  assert proc.stderr.splitlines()[-1] == 'decode.py: no input could be decoded'
  assert 'Nothing was decoded: all 2 input(s) were skipped' in proc.stderr
  assert 'Real-time factor' not in proc.stderr and 'nan' not in proc.stderr
  summary = json.loads((old_run / 'decode' / 'bad.summary.json').read_text())
  assert summary['utterances'] == 0 and summary['real_time_factor'] is None
