"""decode.py end to end: directories, .trn lists, TFDS splits, reports.

A tiny random-parameter run (see recognizer_test.make_run) decodes real
files; the tests check what users rely on: bad files are named and skipped
without failing the run, JSONL lines carry the documented fields, and the
summary's error rates are the corpus rates of the JSONL's own lines.
"""

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from recognizer_test import SR, make_run, signal, to_int16

from las_jax import metrics
from las_jax.inference import inputs, transcription

pytestmark = pytest.mark.usefixtures('fast_compile')

ROOT = Path(__file__).resolve().parents[1]
JSONL_FIELDS = {
  'id',
  'hypothesis',
  'reference',
  'errors',
  'nbest',
  'audio_seconds',
  'loop',
  'segments',
}
TRN_TEXTS = ['가나다 라마바', '사아자 차카타', '나다 마바 (사아)/(싸아)']
MISSING_PCM = 'KsponSpeech_E00099.pcm'


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  return make_run(tmp_path_factory.mktemp('run'))


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  """A KsponSpeech-layout corpus: PCM files and scripts/eval_clean.trn."""
  root = tmp_path_factory.mktemp('kspon')
  audio_dir = root / 'KsponSpeech_eval' / 'eval_clean'
  audio_dir.mkdir(parents=True)
  lines = []
  for i, text in enumerate(TRN_TEXTS):
    name = f'KsponSpeech_E{i:05d}.pcm'
    to_int16(signal(0.4 + 0.3 * i, seed=i)).astype('<i2').tofile(
      audio_dir / name
    )
    lines.append(f'KsponSpeech_eval/eval_clean/{name} :: {text}')
  lines.insert(1, 'this line has no separator')
  # A line whose audio file is not there (a partial download).
  lines.insert(3, f'KsponSpeech_eval/eval_clean/{MISSING_PCM} :: 없는 파일')
  (root / 'scripts').mkdir()
  (root / 'scripts' / 'eval_clean.trn').write_text('\n'.join(lines) + '\n')
  return root


def _records(path):
  return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_directory_with_bad_files_decodes_the_rest(run_dir, tmp_path):
  inputs = tmp_path / 'inputs'
  (inputs / 'sub').mkdir(parents=True)
  sf.write(inputs / 'a.wav', to_int16(signal(0.6, 1)), SR)
  # 0.9 s of samples declared as 22.05 kHz: 0.653 s, resampled.
  sf.write(inputs / 'sub' / 'b.flac', to_int16(signal(0.9, 2)), 22050)
  (inputs / 'corrupt.wav').write_bytes(b'RIFF....WAVEfmt garbage')
  sf.write(inputs / 'silent.wav', np.zeros(8000, np.int16), SR)
  (inputs / 'notes.txt').write_text('not audio')
  missing = tmp_path / 'missing.wav'  # Named on the command line, not there.
  env = dict(
    os.environ,
    JAX_PLATFORMS='cpu',
    JAX_DISABLE_MOST_OPTIMIZATIONS='true',
  )
  proc = subprocess.run(
    [
      sys.executable,
      str(ROOT / 'decode.py'),
      f'--workdir={run_dir}',
      '--beam_size=2',
      str(inputs),
      str(missing),
    ],
    capture_output=True,
    text=True,
    env=env,
    cwd=ROOT,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr
  assert f'Skipping {inputs / "corrupt.wav"}' in proc.stderr
  assert f'Skipping {inputs / "silent.wav"}' in proc.stderr
  assert f'Skipping {missing}' in proc.stderr
  assert 'Decoded 2 utterances' in proc.stderr
  assert 'skipped 3 input(s)' in proc.stderr
  assert 'Real-time factor' in proc.stderr and 'compilation' in proc.stderr
  assert 'CER' not in proc.stderr  # No references, no error rates.
  lines = dict(line.split('\t') for line in proc.stdout.splitlines())
  assert sorted(lines) == [str(inputs / 'a.wav'), str(inputs / 'sub/b.flac')]
  # Two inputs: the JSONL is named 'audio' (a single input names it).
  records = _records(run_dir / 'decode' / 'audio.jsonl')
  assert {r['id']: r['hypothesis'] for r in records} == lines
  for r in records:
    assert set(r) == JSONL_FIELDS
    assert r['reference'] is None and r['errors'] is None
    assert 1 <= len(r['nbest']) <= 2
    assert r['nbest'][0]['text'] == r['hypothesis']
  assert sorted(r['audio_seconds'] for r in records) == [0.6, 0.6531]


def _decode(**kwargs):
  out, err = io.StringIO(), io.StringIO()
  summary = transcription.run(stdout=out, stderr=err, **kwargs)
  return summary, out.getvalue(), err.getvalue()


def test_trn_list_reports_error_rates(run_dir, corpus, tmp_path):
  output = tmp_path / 'eval.jsonl'
  summary, out, err = _decode(
    workdir=str(run_dir),
    paths=[str(corpus / 'scripts' / 'eval_clean.trn')],
    output=str(output),
    beam_size=1,
  )
  assert 'eval_clean.trn:2' in err and "expected 'PATH :: TEXT'" in err
  assert MISSING_PCM in err
  assert summary.utterances == 3 and summary.skipped == 2
  records = _records(output)
  assert [r['id'] for r in records] == [
    f'KsponSpeech_E{i:05d}' for i in range(3)
  ]
  # References are normalized as the run's config says (phonetic).
  assert records[2]['reference'] == '나다 마바 싸아'
  for r in records:
    assert set(r) == JSONL_FIELDS
    expected = metrics.utterance_errors(r['reference'], r['hypothesis'])
    assert r['errors'] == expected.__dict__
  rates = metrics.error_rates(
    [r['reference'] for r in records], [r['hypothesis'] for r in records]
  )
  assert summary.rates == rates
  assert f'CER {100 * rates.cer:.2f}% (spaces removed' in err
  assert f'WER {100 * rates.wer:.2f}%' in err
  assert f'sWER {100 * rates.swer:.2f}%' in err
  assert summary.audio_seconds == pytest.approx(0.4 + 0.7 + 1.0)
  assert summary.real_time_factor > 0
  # Loops are counted from the same flags the JSONL carries.
  assert summary.loops == sum(r['loop'] for r in records)
  assert f'{summary.loops} hypothes' in err and 'like loops' in err
  saved = json.loads(output.with_suffix('.summary.json').read_text())
  assert saved['utterances'] == 3 and saved['rates']['cer'] == rates.cer
  assert len(out.splitlines()) == 3
  # How the figures were made: the model as given and as resolved (the
  # latest checkpoint is step 5), the search as given (beam 1) and as the
  # run's config resolves it (joint CTC/attention at the training weight).
  settings = saved['settings']
  assert settings == summary.settings
  assert settings['workdir'] == str(run_dir) and settings['which'] == 'latest'
  assert settings['checkpoint'] == str(
    (run_dir / 'checkpoints' / '5').absolute()
  )
  assert settings['model'] == 'las' and settings['language_model'] is None
  assert settings['beam_size'] == 1 and settings['ctc_mode'] == 'joint'
  assert settings['ctc_weight'] == 0.3 and settings['lm_weight'] == 0.0
  assert settings['length_bonus'] == 0.0 and settings['length_penalty'] == 0.6
  assert settings['compute_dtype'] == 'float32'
  assert settings['no_speech_units_per_second'] is None  # Off (tiny).
  assert settings['timestamps'] is False and settings['long_form'] is False
  assert f'Settings: workdir={run_dir}, which=latest, checkpoint=' in err


def test_tfds_split_decodes_like_its_trn_list(run_dir, corpus, tmp_path):
  from las_jax import data

  data_dir = tmp_path / 'tfds'
  data.build_dataset('ksponspeech', data_dir, corpus)
  from_split, _, _ = _decode(
    workdir=str(run_dir),
    split='eval_clean',
    data_dir=str(data_dir),
    output=str(tmp_path / 'split.jsonl'),
    beam_size=1,
  )
  from_trn, _, _ = _decode(
    workdir=str(run_dir),
    paths=[str(corpus / 'scripts' / 'eval_clean.trn')],
    output=str(tmp_path / 'trn.jsonl'),
    beam_size=1,
  )
  assert from_split.rates == from_trn.rates
  split_records = _records(tmp_path / 'split.jsonl')
  trn_records = _records(tmp_path / 'trn.jsonl')
  key = lambda r: r['id']  # noqa: E731
  for a, b in zip(
    sorted(split_records, key=key), sorted(trn_records, key=key), strict=True
  ):
    assert (a['id'], a['reference'], a['nbest']) == (
      b['id'],
      b['reference'],
      b['nbest'],
    )


def test_argument_errors(run_dir):
  with pytest.raises(ValueError, match='exactly one of --workdir'):
    _decode(workdir=str(run_dir), checkpoint='x', paths=['a.wav'])
  with pytest.raises(ValueError, match='not both'):
    _decode(workdir=str(run_dir), paths=['a.wav'], split='dev')
  with pytest.raises(FileNotFoundError, match='no such transcript list'):
    inputs.trn_items('missing.trn', None, 'phonetic')


def test_finds_audio_recursively_in_sorted_order(tmp_path):
  for rel in ['b/z.flac', 'a.WAV', 'b/a.pcm', 'c.txt', 'b/c/d.raw']:
    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / rel).write_bytes(b'')
  found, passed_over = inputs.find_audio_files(str(tmp_path))
  found = [os.path.relpath(p, tmp_path) for p in found]
  assert found == ['a.WAV', 'b/a.pcm', 'b/z.flac', 'b/c/d.raw']
  assert passed_over == {'.txt': 1}


@pytest.fixture
def own_list(tmp_path):
  """A user's .trn list: a long and a short recording, a silent one, and
  three files named a.* ('a.wav' and 'a.flac' differ in extension only).
  """
  (tmp_path / 'sub').mkdir()
  sf.write(tmp_path / 'a.wav', to_int16(signal(1.5, 1)), SR)
  sf.write(tmp_path / 'quiet.wav', np.zeros(SR, np.int16), SR)
  sf.write(tmp_path / 'a.flac', to_int16(signal(0.4, 2)), SR)
  sf.write(tmp_path / 'sub' / 'a.wav', to_int16(signal(0.6, 3)), SR)
  lines = ['a.wav :: 가나', 'quiet.wav :: 다라', 'a.flac :: 마바']
  lines += ['sub/a.wav :: 사아', './a.wav :: 가나']
  (tmp_path / 'list.trn').write_text('\n'.join(lines) + '\n')
  return tmp_path


def test_own_list_in_input_order_with_unique_names(run_dir, own_list):
  """Hypotheses come in input order (the short a.flac is decoded before
  the long a.wav: another bucket), ids and subtitle files are unique, and
  a silent line names its file and its line."""
  output = own_list / 'out' / 'list.jsonl'
  summary, out, err = _decode(
    workdir=str(run_dir),
    paths=[str(own_list / 'list.trn')],
    output=str(output),
    beam_size=1,
    formats=('srt',),
  )
  assert summary.utterances == 3 and summary.skipped == 2
  assert (
    f'Skipping {own_list / "quiet.wav"} (list.trn:2): audio is silent' in err
  )
  assert 'list.trn:5' in err and 'decoded once' in err  # ./a.wav again.
  ids = ['a.wav', 'a.flac', 'sub/a.wav']
  assert [line.split('\t')[0] for line in out.splitlines()] == ids
  assert [r['id'] for r in _records(output)] == ids
  written = sorted(
    str(p.relative_to(output.with_suffix('')))
    for p in output.parent.rglob('*.srt')
  )
  assert written == ['a.flac.srt', 'a.wav.srt', 'sub/a.srt']


def test_file_ids_and_output_stems_are_unique(tmp_path):
  for rel in ['a.wav', 'a.flac', 'sub/a.wav', 'sub/b.wav']:
    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / rel).write_bytes(b'')
  items, rejected, _ = inputs.path_items(
    [str(tmp_path), str(tmp_path / 'sub' / '..' / 'a.wav')]
  )
  assert [i.id for i in items] == [
    str(tmp_path / p) for p in ['a.flac', 'a.wav', 'sub/a.wav', 'sub/b.wav']
  ]
  assert [i.output_stem for i in items] == ['a.flac', 'a.wav', 'sub/a', 'sub/b']
  [again] = rejected
  assert again.name == str(tmp_path / 'sub' / '..' / 'a.wav')
  assert again.reason == f'the same file as {tmp_path / "a.wav"}, decoded once'


def test_no_speech_and_loops_are_reported_by_name(run_dir, corpus, tmp_path):
  """Inputs the no-speech rule refuses are skipped by name and counted,
  never written as hypotheses; each looping hypothesis gets a warning
  naming its input."""
  trn = str(corpus / 'scripts' / 'eval_clean.trn')
  output = tmp_path / 'refused.jsonl'
  # Thresholds no utterance reaches: every decodable input is refused.
  summary, out, err = _decode(
    workdir=str(run_dir),
    paths=[trn],
    output=str(output),
    beam_size=1,
    no_speech_units_per_second=1000,
    no_speech_short_units=1000,
  )
  # The readable lines of the list: 1, 3 and 5 (2 and 4 are bad lines),
  # each named by its audio file and its line.
  refused = re.findall(
    r'^Skipping (\S+) \(eval_clean\.trn:(\d)\): no speech found', err, re.M
  )
  assert [n for _, n in refused] == ['1', '3', '5']
  assert all(os.path.isfile(p) for p, _ in refused)
  assert summary.utterances == 0 and summary.audio_seconds == 0
  assert summary.skipped == 5 and summary.no_speech == 3
  assert 'all 5 input(s) were skipped, 3 of them for holding no speech' in err
  assert out == '' and _records(output) == []
  # A token limit of 3 units per second: hypotheses run into it.
  output = tmp_path / 'loops.jsonl'
  summary, _, err = _decode(
    workdir=str(run_dir),
    paths=[trn],
    output=str(output),
    beam_size=1,
    max_tokens_per_second=3.0,
  )
  records = _records(output)
  looping = [r['id'] for r in records if r['loop']]
  warned = [line for line in err.splitlines() if 'decoding loop' in line]
  assert looping and len(warned) == len(looping) == summary.loops
  lines = {r['id']: n for r, n in zip(records, (1, 3, 5), strict=True)}
  loop_warning = (
    r'^Warning \S+ \(eval_clean\.trn:(\d)\): the hypothesis looks like a '
    r'decoding loop \(a 2\+ unit n-gram repeated 3\+ times in a row, or as '
    r'many units as the token limit allows\): check it before use$'
  )
  assert [re.fullmatch(loop_warning, line)[1] for line in warned] == [
    str(lines[i]) for i in looping
  ]
