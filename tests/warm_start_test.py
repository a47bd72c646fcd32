"""A warm start of decoding: exported decode programs, modules not imported.

With the compilation cache on, the recognizer's decode programs are stored
as exported StableHLO (`inference/aot.py`); a later recognizer of the same
configuration compiles them from disk instead of tracing the search. These
tests decode a tiny random-parameter run (recognizer_test.make_run) with
the cache off (traced, as before) and on (exported), and compare n-best
texts and scores exactly: the same computation, compiled the same way.
"""

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import soundfile as sf
from flax import nnx
from recognizer_test import SR, make_run, signal, to_int16

from las_jax.inference import aot, pretrained, restore
from las_jax.inference.recognizer import Recognizer

pytestmark = pytest.mark.usefixtures('fast_compile')

ROOT = Path(__file__).resolve().parents[1]
# Two utterances of one audio bucket (1 s): one program of 2 rows.
AUDIO = [to_int16(signal(0.7, 1)), to_int16(signal(0.9, 2))]


@contextlib.contextmanager
def cache_at(directory):
  """The compilation cache (and so `aot`) in `directory`; '' turns it off."""
  previous = jax.config.jax_compilation_cache_dir
  jax.config.update('jax_compilation_cache_dir', str(directory))
  try:
    yield
  finally:
    jax.config.update('jax_compilation_cache_dir', previous)


@pytest.fixture
def traces(monkeypatch):
  """Counts the traces of the recognizer's decode function."""
  count = [0]
  decode_fn = Recognizer._decode_fn

  def counted(self, *args, **kwargs):
    count[0] += 1
    return decode_fn(self, *args, **kwargs)

  monkeypatch.setattr(Recognizer, '_decode_fn', counted)
  return count


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  return make_run(tmp_path_factory.mktemp('run'))


@pytest.fixture(scope='module')
def run(run_dir):
  return restore.load_run(run_dir)


def decode(model, run):
  recognizer = Recognizer(model, run.config, run.vocab, beam_size=3)
  return recognizer.transcribe(AUDIO, nbest=True)


@pytest.fixture(scope='module')
def traced(run):
  with cache_at(''):
    return decode(run.model, run)


@pytest.fixture(scope='module')
def stored(run, tmp_path_factory):
  """A cache directory holding the run's exported decode program."""
  directory = tmp_path_factory.mktemp('jax_cache')
  with cache_at(directory):
    decode(run.model, run)
  return directory


def entries(directory):
  return sorted((Path(directory) / aot.SUBDIR).glob(f'*{aot.SUFFIX}'))


def test_warm_start_decodes_as_traced_without_tracing(
  run, traced, tmp_path, traces
):
  with cache_at(tmp_path):
    first = decode(run.model, run)  # Traced, exported and stored.
    assert traces[0] == 1 and len(entries(tmp_path)) == 1
    second = decode(run.model, run)  # Compiled from the stored program.
  assert traces[0] == 1
  assert first == traced and second == traced
  assert all(len(hyps) == 3 for hyps in traced)


def test_stored_program_takes_the_weights_as_arguments(
  run, traced, stored, traces
):
  graphdef, params, rest = nnx.split(run.model, nnx.Param, ...)
  scaled = jax.tree.map(lambda x: 1.5 * x, params)
  other = nnx.merge(graphdef, scaled, rest)
  with cache_at(''):
    expected = decode(other, run)
  assert expected != traced  # The weights matter...
  traces[0] = 0
  with cache_at(stored):
    assert decode(other, run) == expected  # ...and are not in the file.
  assert traces[0] == 0
  largest = max(jax.tree.leaves(params), key=lambda x: x.size)
  (entry,) = entries(stored)
  assert np.asarray(largest).tobytes()[:64] not in entry.read_bytes()


def _damaged(data, how):
  header, _, blob = data.partition(b'\n')
  if how == 'truncated':
    return data[: len(header) + 1 + len(blob) // 2]
  changed = json.loads(header)  # Another JAX's program, same file name.
  changed['jax'] = '0.0.1'
  return json.dumps(changed).encode() + b'\n' + blob


@pytest.mark.parametrize('how', ['truncated', 'another_header'])
def test_unusable_entry_is_traced_again_and_replaced(
  run, traced, stored, tmp_path, traces, caplog, how
):
  (entry,) = entries(stored)
  copy = tmp_path / aot.SUBDIR / entry.name
  copy.parent.mkdir()
  damaged = _damaged(entry.read_bytes(), how)
  copy.write_bytes(damaged)
  with cache_at(tmp_path):
    assert decode(run.model, run) == traced
    assert traces[0] == 1
    assert f'{copy} is unusable' in caplog.text
    assert copy.read_bytes() != damaged  # Stored again...
    assert decode(run.model, run) == traced
  assert traces[0] == 1  # ...and used.


def test_program_export_refuses_is_compiled_without_storing(
  run, traced, tmp_path, monkeypatch, caplog
):
  def refuse(*args, **kwargs):
    raise ValueError('Cannot serialize code with custom calls')

  monkeypatch.setattr(aot.export, 'export', refuse)
  with cache_at(tmp_path):
    assert decode(run.model, run) == traced
  assert 'Cannot export program decode 2x16000' in caplog.text
  assert not entries(tmp_path)


# Modules decode.py must not import to transcribe files (slow imports it
# does not use): the dataset builders' TFDS, scipy.signal (an STFT
# window), grain (the training input pipeline, which imports orbax).
NOT_FOR_FILES = ('tensorflow_datasets', 'scipy.signal', 'grain')
# Run decode.py's main in this process, then list the modules it imported.
_IMPORTED = """
import json, runpy, sys
sys.argv = ['decode.py', *sys.argv[1:]]
sys.path.insert(0, {root!r})
try:
  runpy.run_path({script!r}, run_name='__main__')
except SystemExit as e:
  assert not e.code, e.code
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize(
  'source, unused',
  [
    ('workdir', NOT_FOR_FILES),
    # An exported model needs no orbax either.
    ('model', (*NOT_FOR_FILES, 'orbax.checkpoint')),
  ],
)
def test_decoding_files_leaves_slow_modules_unimported(
  run_dir, tmp_path, source, unused
):
  wav = tmp_path / 'a.wav'
  sf.write(wav, AUDIO[0], SR)
  if source == 'model':
    location = pretrained.export_run(run_dir, tmp_path / 'model', which='best')
  else:
    location = run_dir
  code = _IMPORTED.format(root=str(ROOT), script=str(ROOT / 'decode.py'))
  proc = subprocess.run(
    [
      sys.executable,
      '-c',
      code,
      f'--{source}={location}',
      '--beam_size=2',
      f'--output={tmp_path / "out.jsonl"}',
      str(wav),
    ],
    capture_output=True,
    text=True,
    env=dict(os.environ, JAX_PLATFORMS='cpu'),
    cwd=tmp_path,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr
  imported = set(json.loads(proc.stdout.splitlines()[-1]))
  assert 'las_jax.inference.recognizer' in imported  # It did decode.
  assert imported.isdisjoint(unused), sorted(imported & set(unused))
