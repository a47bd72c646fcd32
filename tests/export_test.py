"""Exported models: round trip against the training run, and refusals.

A tiny random-parameter run (recognizer_test.make_run) is exported once;
`Recognizer.from_pretrained` of the export must decode exactly as
`Recognizer.from_workdir` of the run (same n-best texts and scores, with
and without a fused language model), and each way a copied directory can
go wrong is refused with a message naming the file and the fix.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx
from recognizer_test import lm_config, make_run, signal, tiny_config, to_int16

from las_jax.inference import pretrained, restore
from las_jax.inference.recognizer import Recognizer
from las_jax.text import Vocabulary

pytestmark = pytest.mark.usefixtures('fast_compile')

ROOT = Path(__file__).resolve().parents[1]
AUDIO = [to_int16(signal(0.8, seed=1)), to_int16(signal(0.9, seed=2))]


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  config = tiny_config()
  # A path on the training machine: the export must not carry it.
  config.decode.lm_workdir = '/training/machine/runs/lm'
  workdir = make_run(tmp_path_factory.mktemp('run'), config)
  decode_dir = workdir / 'decode'
  decode_dir.mkdir()
  summary = {
    'utterances': 3000,
    'rates': {'cer': 0.0345, 'cer_with_spaces': 0.05, 'wer': 0.1, 'swer': 0.09},
    'real_time_factor': 0.021,
  }
  (decode_dir / 'eval_clean.summary.json').write_text(json.dumps(summary))
  # A one-off transcription of files without references: not a test set.
  one_off = {'utterances': 2, 'rates': None, 'real_time_factor': 0.03}
  (decode_dir / 'recordings.summary.json').write_text(json.dumps(one_off))
  (workdir / 'metrics.jsonl').write_text(
    json.dumps({'step': 4, 'dev/cer': 0.25, 'dev/loss': 1.0}) + '\n'
  )
  return workdir


@pytest.fixture(scope='module')
def lm_dir(tmp_path_factory):
  return make_run(tmp_path_factory.mktemp('lm'), lm_config())


@pytest.fixture(scope='module')
def exported(run_dir, tmp_path_factory):
  out = tmp_path_factory.mktemp('models') / 'tiny_las'
  return pretrained.export_run(run_dir, out, which='best')


@pytest.fixture(scope='module')
def exported_lm(lm_dir, tmp_path_factory):
  out = tmp_path_factory.mktemp('models') / 'tiny_lm'
  return pretrained.export_run(lm_dir, out, which='best')


@pytest.fixture
def copy(exported, tmp_path):
  """A fresh copy of the export, for a test to damage."""
  return Path(shutil.copytree(exported, tmp_path / 'copy'))


def test_directory_holds_inference_state_only(exported, run_dir):
  assert sorted(p.name for p in exported.iterdir()) == sorted(pretrained.FILES)
  manifest = json.loads((exported / 'model.json').read_text())
  assert manifest['format_version'] == pretrained.FORMAT_VERSION
  assert manifest['source']['step'] == 4  # make_run's best step.
  run = restore.load_run(run_dir, which='best')
  state = nnx.state(run.model, nnx.Not(nnx.RngState))
  with np.load(exported / 'weights.npz') as weights:
    # Exactly the model's variables, bit for bit: no optimizer moments.
    expected = pretrained.named_arrays(state)
    assert sorted(weights.files) == sorted(expected)
    for name, value in expected.items():
      np.testing.assert_array_equal(weights[name], value)
  card = (exported / 'README.md').read_text()
  assert f'{manifest["num_params"]:,}' in card
  assert 'dev CER 25.00%' in card  # metrics.jsonl at the exported step.
  assert '| eval_clean | 3000 | 3.45 |' in card  # decode/*.summary.json.
  assert 'recordings' not in card
  assert 'from las_jax.inference import Recognizer' in card
  config = json.loads((exported / 'config.json').read_text())
  assert config['model']['decoder_hidden'] == tiny_config().model.decoder_hidden
  assert config['decode']['lm_workdir'] == ''  # A path of the source machine.


def test_from_pretrained_decodes_as_from_workdir(exported, run_dir):
  options = dict(beam_size=3, lm_workdir='')
  from_run = Recognizer.from_workdir(run_dir, which='best', **options)
  from_export = Recognizer.from_pretrained(exported, beam_size=3)
  expected = from_run.transcribe(AUDIO, nbest=True)
  assert from_export.transcribe(AUDIO, nbest=True) == expected
  assert all(len(hyps) == 3 for hyps in expected)


def test_decode_cli_takes_an_exported_model(exported, run_dir, tmp_path):
  import soundfile as sf  # noqa: PLC0415

  from las_jax.inference import transcription  # noqa: PLC0415

  paths = []
  for i, samples in enumerate(AUDIO):
    paths.append(str(tmp_path / f'{i}.wav'))
    sf.write(paths[-1], samples, 16000)
  texts = {}
  for source in (dict(model=str(exported)), dict(workdir=str(run_dir))):
    out = tmp_path / f'{sorted(source)[0]}.jsonl'
    transcription.run(
      **source,
      which='best',
      paths=paths,
      output=str(out),
      beam_size=3,
      lm_workdir='',
    )
    texts[sorted(source)[0]] = [
      json.loads(line)['hypothesis'] for line in out.read_text().splitlines()
    ]
  assert texts['model'] == texts['workdir']
  with pytest.raises(ValueError, match='exactly one of --workdir'):
    transcription.run(model=str(exported), workdir=str(run_dir), paths=paths)


def test_language_model_fuses_as_from_workdir(
  exported, exported_lm, run_dir, lm_dir
):
  options = dict(beam_size=3, ctc_mode='off', lm_weight=0.5)
  from_run = Recognizer.from_workdir(
    run_dir, which='best', lm_workdir=lm_dir, **options
  )
  from_export = Recognizer.from_pretrained(exported, lm=exported_lm, **options)
  assert from_export.language_model is not None
  expected = from_run.transcribe(AUDIO[:1], nbest=True)
  assert from_export.transcribe(AUDIO[:1], nbest=True) == expected
  # Fusion changes the scores: the language model is really in the search.
  plain = Recognizer.from_pretrained(exported, **options)
  assert plain.transcribe(AUDIO[:1], nbest=True) != expected


def test_export_cli(run_dir, tmp_path):
  out = tmp_path / 'cli_model'
  args = [sys.executable, '-m', 'las_jax.export', f'--workdir={run_dir}']
  result = subprocess.run(
    [*args, f'--out={out}', '--which=latest'],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=True,
  )
  assert 'weights.npz' in result.stdout and 'step 5 (latest)' in result.stdout
  assert json.loads((out / 'model.json').read_text())['source']['step'] == 5
  again = subprocess.run(
    [*args, f'--out={out}'], cwd=ROOT, capture_output=True, text=True
  )
  assert again.returncode != 0 and '--overwrite' in again.stderr
  pretrained.export_run(run_dir, out, which='best', overwrite=True)
  assert json.loads((out / 'model.json').read_text())['source']['step'] == 4
  assert not list(tmp_path.glob('.cli_model*'))  # No temporary left.


@pytest.mark.parametrize(
  'name', ['model.json', 'config.json', 'vocab.txt', 'weights.npz']
)
def test_refuses_a_missing_file(copy, name):
  (copy / name).unlink()
  with pytest.raises(FileNotFoundError, match=f'{copy / name}.*export'):
    pretrained.load(copy)


def test_refuses_a_training_run_directory(run_dir):
  with pytest.raises(FileNotFoundError, match='training run.*from_workdir'):
    Recognizer.from_pretrained(run_dir)


def test_refuses_a_newer_format_version(copy):
  path = copy / 'model.json'
  manifest = json.loads(path.read_text())
  manifest['format_version'] = pretrained.FORMAT_VERSION + 1
  path.write_text(json.dumps(manifest))
  with pytest.raises(ValueError, match=f'{path}: format version 2 .*upgrade'):
    pretrained.load(copy)


def test_refuses_a_vocabulary_of_another_size(copy):
  trained_on = len(Vocabulary.load(copy / 'vocab.txt'))
  other = Vocabulary.build(['가나다라 마바사아자차'])
  other.save(copy / 'vocab.txt')
  with pytest.raises(
    ValueError,
    match=f'{copy / "vocab.txt"} holds {len(other)} units.*trained on '
    f'{trained_on}.*export',
  ):
    pretrained.load(copy)


@pytest.mark.parametrize(
  'text',
  ['{"model": {"name": "las",', '[1, 2]', '{"model": {"name": "transformer"}}'],
)
def test_refuses_a_corrupt_config(copy, text):
  (copy / 'config.json').write_text(text)
  with pytest.raises(ValueError, match=f'{copy / "config.json"}.*export'):
    pretrained.load(copy)


def test_refuses_a_config_that_does_not_match_the_weights(copy):
  path = copy / 'config.json'
  config = json.loads(path.read_text())
  config['model']['decoder_hidden'] += 8
  path.write_text(json.dumps(config))
  with pytest.raises(
    ValueError, match='weights.npz: variable .* do not belong'
  ):
    pretrained.load(copy)


def test_refuses_weights_of_another_model(copy):
  path = copy / 'weights.npz'
  with np.load(path) as weights:
    arrays = dict(weights)
  arrays['speller/extra/kernel'] = np.zeros((2, 2), np.float32)
  np.savez(path, **arrays)
  with pytest.raises(ValueError, match='speller/extra/kernel.*same export'):
    pretrained.load(copy)


def test_refuses_damaged_weights(copy):
  path = copy / 'weights.npz'
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 0xFF  # One flipped byte inside an array.
  path.write_bytes(bytes(data))
  with pytest.raises(ValueError, match=f'{path}: damaged'):
    pretrained.load(copy)


def test_refuses_a_model_of_the_wrong_kind(exported, exported_lm):
  with pytest.raises(ValueError, match='language model.*lm='):
    Recognizer.from_pretrained(exported_lm)
  with pytest.raises(ValueError, match='recognizer.*not a language model'):
    Recognizer.from_pretrained(exported, lm=exported)


def test_loaded_parameters_are_the_run_s(exported, run_dir):
  run = restore.load_run(run_dir, which='best')
  loaded = pretrained.load(exported)
  jax.tree.map(
    np.testing.assert_array_equal,
    nnx.state(loaded.model, nnx.Not(nnx.RngState)),
    nnx.state(run.model, nnx.Not(nnx.RngState)),
  )
  assert loaded.vocab == run.vocab
