"""Configuration a user can't get wrong (issue 14, item 14).

`model.input_dim` follows `features.num_mels`; the vocabulary fields live
in `data`, and configs saved by older runs under `train.vocab_unit` /
`train.vocab_max_size` still load, resume and decode. (Decoding an old run
end to end: robust_decode_test; `--jax_*` flags: robust_decode_test and
kill_resume_test.)
"""

import json

import pytest
from absl import flags
from ml_collections import config_flags

from configs import deepspeech2, default, kspon, mini, tiny
from las_jax import run_layout
from las_jax import train as train_lib


@pytest.mark.parametrize('module', [default, kspon, mini, tiny, deepspeech2])
def test_input_dim_is_always_num_mels(module):
  config = module.get_config()
  assert config.model.input_dim == config.features.num_mels
  config.features.num_mels = 24
  assert config.model.input_dim == 24
  config.model.input_dim = 32  # Setting either sets both.
  assert config.features.num_mels == 32


def test_command_line_overrides_keep_them_equal():
  argv = [
    'train.py',
    '--config=configs/mini.py',
    '--config.features.num_mels=24',
  ]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file(
    'config', flag_values=values, lock_config=True, sys_argv=argv
  )
  values(argv)
  assert values.config.model.input_dim == 24
  assert json.loads(values.config.to_json())['model']['input_dim'] == 24


def _old_style(config):
  """config.json as runs before the move wrote it."""
  saved = run_layout.config_to_dict(config)
  saved['train']['vocab_unit'] = saved['data'].pop('vocab_unit')
  saved['train']['vocab_max_size'] = saved['data'].pop('vocab_max_size')
  return saved


def test_old_names_are_read_as_the_new_ones(tmp_path):
  config = default.get_config()
  config.data.vocab_unit, config.data.vocab_max_size = 'jamo', 300
  saved = _old_style(config)
  upgraded = run_layout.upgrade_saved_config(saved)
  assert upgraded == run_layout.config_to_dict(config)
  assert 'vocab_unit' in saved['train']  # The input is not modified.
  # Where a file has both, the new name wins.
  both = dict(upgraded, train=dict(upgraded['train'], vocab_unit='char'))
  assert run_layout.upgrade_saved_config(both)['data']['vocab_unit'] == 'jamo'

  (tmp_path / 'config.json').write_text(json.dumps(saved))
  loaded = run_layout.load_config(tmp_path)
  assert (loaded.data.vocab_unit, loaded.data.vocab_max_size) == ('jamo', 300)
  assert 'vocab_unit' not in loaded.train


def test_old_runs_resume_and_changed_vocab_fields_are_named(tmp_path):
  config = tiny.get_config()
  (tmp_path / 'config.json').write_text(json.dumps(_old_style(config)))
  run_layout.check_or_write_config(tmp_path, config)  # Same run.
  rewritten = json.loads((tmp_path / 'config.json').read_text())
  assert rewritten['data']['vocab_unit'] == 'char'
  assert 'vocab_unit' not in rewritten['train']

  (tmp_path / 'config.json').write_text(json.dumps(_old_style(config)))
  config.data.vocab_unit = 'jamo'
  with pytest.raises(ValueError, match="data.vocab_unit: saved 'char'"):
    run_layout.check_or_write_config(tmp_path, config)


def test_vocabulary_unit_comes_from_data(tmp_path):
  from las_jax.text import Vocabulary

  config = tiny.get_config()
  Vocabulary.build(['가나다'], 'char').save(tmp_path / run_layout.VOCAB_FILE)
  config.data.vocab_unit = 'jamo'
  with pytest.raises(ValueError, match='config.data.vocab_unit is'):
    train_lib.load_or_build_vocabulary(config, tmp_path, [])
