"""End-to-end training runs through `train_and_evaluate` on generated speech.

A 24-utterance KsponSpeech-layout corpus (espeak-ng) is generated once per
session and built into TFDS; every run goes through the real pipeline:
vocabulary from the train transcripts, bucketed batches, the shard_map
step, evaluation and orbax checkpoints. The model is configs/tiny.py on 8
mel bins, so a step takes about a second on two loaded cores.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import tiny
from las_jax import data, logging_utils, optim, parallel, steps
from las_jax import train as train_lib
from las_jax.data.make_mini_kspon import make_mini_kspon
from las_jax.text import Vocabulary
from las_jax.train_state import abstract_checkpointed, create_train_state

# Not jax_disable_most_optimizations: unoptimized XLA:CPU gives NaN filter
# gradients in the VGG extractor's first blocks after one Adam step (the
# optimized compile does not), and these tests train for real.

ROOT = Path(__file__).resolve().parents[1]

# Test-run settings; also passed to train.py as --config.<name>=<value>.
RUN = {
  'input.batch_size': 8,
  'input.eval_batch_size': 8,
  'input.audio_buckets_s': (6.0,),
  'input.token_buckets': (64,),
  'input.num_threads': 0,
  'features.num_mels': 8,
  'train.lr_schedule': 'constant',
  'train.peak_lr': 3e-3,
  'train.teacher_forcing_steps': 20,
  'train.min_teacher_forcing_ratio': 0.8,
  'data.vocab_max_size': None,
  'train.log_every': 1,
  'train.eval_every': 0,
  'train.eval_utterances': 2,
  'train.plot_utterances': 1,
  'train.checkpoint_every': 1,
  'train.keep_checkpoints': 3,
  'train.async_checkpointing': False,
  'train.progress_bar': False,
}


@pytest.fixture(scope='module', autouse=True)
def compilation_cache(tmp_path_factory):
  """Runs with the same step config share compiled executables."""
  options = {
    'jax_compilation_cache_dir': str(tmp_path_factory.mktemp('jax_cache')),
    'jax_persistent_cache_min_compile_time_secs': 0.0,
    'jax_persistent_cache_min_entry_size_bytes': 0,
  }
  previous = {name: getattr(jax.config, name) for name in options}
  for name, value in options.items():
    jax.config.update(name, value)
  yield options['jax_compilation_cache_dir']
  for name, value in previous.items():
    jax.config.update(name, value)


@pytest.fixture(scope='session')
def corpus(tmp_path_factory):
  """(manual_dir, data_dir) of a generated corpus prepared once."""
  root = tmp_path_factory.mktemp('mini_kspon')
  manual_dir, data_dir = root / 'corpus', root / 'tfds'
  make_mini_kspon(manual_dir, num_utterances=24, seed=0)
  data.build_dataset('ksponspeech', data_dir, manual_dir, 'phonetic')
  return str(manual_dir), str(data_dir)


def _set(config, dotted, value):
  *path, name = dotted.split('.')
  node = config
  for key in path:
    node = node[key]
  node[name] = value


def _config(corpus, **overrides):
  config = tiny.get_config()
  config.data.manual_dir, config.data.data_dir = corpus
  for dotted, value in {**RUN, **overrides}.items():
    _set(config, dotted.replace('__', '.'), value)
  return config


def _params(state):
  return parallel.fetch(state.checkpointed())


def _assert_trees_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.fixture(scope='module')
def two_step_run(corpus, tmp_path_factory):
  workdir = tmp_path_factory.mktemp('two_steps')
  state = train_lib.train_and_evaluate(
    _config(corpus, train__num_steps=2), workdir
  )
  return workdir, _params(state)


def test_two_steps_write_a_complete_run(corpus, two_step_run):
  workdir, state = two_step_run
  assert int(state['step']) == 2 and int(state['skipped']) == 0
  records = logging_utils.read_metrics(workdir)
  train = [r for r in records if 'train/loss' in r]
  assert [r['step'] for r in train] == [1, 2]
  assert all(np.isfinite(r['train/loss']) for r in train)
  assert train[0]['train/teacher_forcing'] == 1.0
  assert train[1]['train/teacher_forcing'] == pytest.approx(0.99)
  dev = [r for r in records if 'dev/cer' in r]
  assert [r['step'] for r in dev] == [2] and dev[0]['dev/utterances'] == 2
  # The vocabulary is that of the train split's transcripts.
  source = data.build_dataset(
    'ksponspeech', corpus[1], corpus[0], 'phonetic'
  ).as_data_source('train')
  texts = [source[i]['text'].decode() for i in range(len(source))]
  vocab = Vocabulary.load(workdir / 'vocab.txt')
  assert vocab == Vocabulary.build(texts, 'char')
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['1', '2']
  assert os.listdir(workdir / 'checkpoints_best') == ['2']
  assert (workdir / 'plots' / 'attention_0_step00000002.png').stat().st_size
  assert (workdir / 'curves.png').stat().st_size
  assert any(
    f.startswith('events.out.tfevents')
    for f in os.listdir(workdir / 'tensorboard')
  )
  saved = json.loads((workdir / 'config.json').read_text())
  assert saved['train']['num_steps'] == 2


def test_resume_repeats_the_uninterrupted_run(corpus, two_step_run, tmp_path):
  # 20 train utterances in batches of 8: steps 4-6 are the second epoch, so
  # the resumed run must restore the iterator position and reshuffle alike.
  straight = train_lib.train_and_evaluate(
    _config(corpus, train__num_steps=6), tmp_path / 'straight'
  )
  resumed_dir = tmp_path / 'resumed'
  shutil.copytree(two_step_run[0], resumed_dir)
  resumed = train_lib.train_and_evaluate(
    _config(corpus, train__num_steps=6), resumed_dir
  )
  # Bit-exact: randomness is a function of (seed, step), the data order of
  # (seed, epoch), and both runs execute the same compiled step.
  _assert_trees_equal(_params(resumed), _params(straight))
  straight_m = logging_utils.read_metrics(tmp_path / 'straight')
  resumed_m = logging_utils.read_metrics(resumed_dir)
  loss = {r['step']: r['train/loss'] for r in straight_m if 'train/loss' in r}
  for r in resumed_m:
    if 'train/loss' in r:
      assert r['train/loss'] == loss[r['step']]


def test_incompatible_workdir_is_refused(corpus, two_step_run, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(two_step_run[0], workdir)
  with pytest.raises(ValueError, match='model.encoder_hidden'):
    train_lib.train_and_evaluate(
      _config(corpus, model__encoder_hidden=24), workdir
    )
  vocab = Vocabulary.load(workdir / 'vocab.txt')
  Vocabulary(vocab.tokens[:-1], vocab.unit).save(workdir / 'vocab.txt')
  with pytest.raises(ValueError, match='differs from the vocabulary'):
    train_lib.train_and_evaluate(_config(corpus, train__num_steps=3), workdir)


def test_spm_vocabulary_is_trained_once_and_kept(tmp_path):
  config = tiny.get_config()
  config.data.vocab_unit = 'spm_jamo'
  config.data.vocab_max_size = 60
  texts = ['국민의 권리와 의무는 법률로 정한다', '모든 국민은 법 앞에 평등하다']
  vocab = train_lib.load_or_build_vocabulary(config, tmp_path, texts * 5)
  assert vocab.unit == 'spm_jamo'
  assert Vocabulary.load(tmp_path / 'vocab.txt') == vocab
  # A resumed run reads the saved model instead of training another.
  assert train_lib.load_or_build_vocabulary(config, tmp_path, texts[:1]) == (
    vocab
  )
  config.data.vocab_unit = 'jamo'
  with pytest.raises(ValueError, match="has unit 'spm_jamo' but"):
    train_lib.load_or_build_vocabulary(config, tmp_path, texts)


def test_loss_decreases(corpus, tmp_path):
  config = _config(corpus, train__num_steps=30, train__checkpoint_every=0)
  train_lib.train_and_evaluate(config, tmp_path)
  losses = [
    r['train/loss']
    for r in logging_utils.read_metrics(tmp_path)
    if 'train/loss' in r
  ]
  assert len(losses) == 30
  # From ~ln(vocab) = 5.3 nats; 30 steps of Adam at 3e-3 reach ~4.3 here.
  assert np.mean(losses[-6:]) < np.mean(losses[:6]) - 0.4, losses


# Dropout, SpecAugment and per-token scheduled sampling draw per device
# (keys fold in the device index), so runs on different device counts agree
# only without them; everything else (batch norm statistics and the
# per-batch teacher-forcing draw included) is global.
DETERMINISTIC = {
  'model.dropout': 0.0,
  'features.spec_augment': False,
  'train.min_teacher_forcing_ratio': 1.0,
  'train.num_steps': 2,
  # Adam moves a parameter by ~lr * g / (|g| + eps): with the default eps
  # a gradient at rounding-noise level (~1e-8, where 1 and 8 devices sum
  # in different orders) still moves it by up to lr, in either direction.
  'train.adam_eps': 1e-3,
}


@pytest.fixture(scope='module')
def eight_device_run(corpus, tmp_path_factory):
  workdir = tmp_path_factory.mktemp('eight')
  config = _config(corpus, train__num_devices=8)
  for dotted, value in DETERMINISTIC.items():
    _set(config, dotted, value)
  state = train_lib.train_and_evaluate(config, workdir)
  return workdir, state


def _assert_close_runs(a_dir, a_params, b_dir, b_params):
  loss_a = [
    r['train/loss']
    for r in logging_utils.read_metrics(a_dir)
    if 'train/loss' in r
  ]
  loss_b = [
    r['train/loss']
    for r in logging_utils.read_metrics(b_dir)
    if 'train/loss' in r
  ]
  np.testing.assert_allclose(loss_a, loss_b, rtol=1e-5)
  # Sums are reduced in another order across devices: float tolerance.
  # Gradients that nearly cancel (e.g. of a bias feeding a conv + batch
  # norm) keep only rounding noise, which Adam turns into up to
  # lr * |noise| / eps per step (DETERMINISTIC's large eps bounds it);
  # unsynced batch statistics would move parameters by whole steps (lr).
  atol = 0.1 * RUN['train.peak_lr']
  jax.tree.map(
    lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=atol),
    a_params['params'],
    b_params['params'],
  )


def test_one_and_eight_devices_agree(corpus, eight_device_run, tmp_path):
  config = _config(corpus, train__num_devices=1)
  for dotted, value in DETERMINISTIC.items():
    _set(config, dotted, value)
  one = train_lib.train_and_evaluate(config, tmp_path)
  eight_dir, eight = eight_device_run
  _assert_close_runs(tmp_path, _params(one), eight_dir, _params(eight))


def _cli(workdir, overrides, env=None):
  args = [sys.executable, str(ROOT / 'train.py'), '--config', 'configs/tiny.py']
  args += [f'--workdir={workdir}']
  for dotted, value in overrides.items():
    text = str(value) if not isinstance(value, tuple) else repr(value)
    args.append(f'--config.{dotted}={text}')
  full_env = {**os.environ, 'PYTHONPATH': str(ROOT), **(env or {})}
  return subprocess.Popen(
    args,
    cwd=ROOT,
    env=full_env,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )


def _cli_overrides(corpus, **extra):
  run = {k: v for k, v in RUN.items() if v is not None}
  run['data.manual_dir'], run['data.data_dir'] = corpus
  run['data.vocab_max_size'] = 1000  # CLI can't set None; no cap here.
  return {**run, **extra}


def test_two_processes_agree_with_one(corpus, eight_device_run, tmp_path):
  with socket.socket() as s:
    s.bind(('localhost', 0))
    port = s.getsockname()[1]
  overrides = _cli_overrides(corpus, **DETERMINISTIC)
  procs = [
    _cli(
      tmp_path,
      overrides,
      env={
        'JAX_COORDINATOR_ADDRESS': f'localhost:{port}',
        'JAX_NUM_PROCESSES': '2',
        'JAX_PROCESS_ID': str(i),
        'JAX_PLATFORMS': 'cpu',
        'XLA_FLAGS': '--xla_force_host_platform_device_count=4',
      },
    )
    for i in range(2)
  ]
  outputs = [p.communicate(timeout=300)[0] for p in procs]
  for p, out in zip(procs, outputs, strict=True):
    assert p.returncode == 0, out[-3000:]
  eight_dir, eight = eight_device_run
  step_dir = tmp_path / 'checkpoints' / '2'
  for i in range(2):  # Each host saved its own iterator position.
    saved = json.loads(
      (step_dir / 'data_iter' / f'process_{i}-of-2.json').read_text()
    )
    assert saved == {'epoch': 0, 'position': 2}
  with ocp.StandardCheckpointer() as ckpt:
    saved = ckpt.restore(step_dir / 'state', abstract_checkpointed(eight))
  _assert_close_runs(tmp_path, parallel.fetch(saved), eight_dir, _params(eight))


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(
  corpus, compilation_cache, tmp_path
):
  overrides = _cli_overrides(
    corpus,
    **{
      'train.num_steps': 1000,
      'train.checkpoint_every': 0,
      'train.num_devices': 1,
    },
  )
  env = {
    'JAX_PLATFORMS': 'cpu',
    # The in-process runs compiled the same step: reuse it.
    'JAX_COMPILATION_CACHE_DIR': compilation_cache,
    'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
    'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES': '0',
  }
  proc = _cli(tmp_path, overrides, env=env)
  deadline = time.time() + 240
  while not logging_utils.read_metrics(tmp_path):
    assert proc.poll() is None and time.time() < deadline, proc.stdout.read()
    time.sleep(0.5)
  proc.send_signal(signal.SIGTERM)
  out = proc.communicate(timeout=120)[0]
  assert proc.returncode == 0, out[-3000:]
  last = max(r['step'] for r in logging_utils.read_metrics(tmp_path))
  assert os.listdir(tmp_path / 'checkpoints') == [str(last)]
  assert last < 1000


def test_non_finite_step_is_skipped_and_counted(corpus):
  config = _config(corpus)
  mesh = parallel.make_mesh(2)
  tx, _ = optim.make_optimizer(config.train)
  graphdef, state = create_train_state(config, 12, tx, mesh)
  train_fn, _, _ = steps.compile_steps(config, graphdef, tx, mesh)
  # One NaN weight (as after a bad update) makes the loss and every
  # gradient upstream of it NaN.
  params = jax.tree_util.tree_map_with_path(
    lambda path, x: (
      x.at[0, 0].set(np.nan)
      if "['speller']['out']['kernel']" in jax.tree_util.keystr(path)
      else x
    ),
    state.params,
  )
  state = state.replace(params=params)
  rng = np.random.default_rng(0)
  tokens = rng.integers(4, 12, (4, 6)).astype(np.int32)
  tokens[:, -1] = Vocabulary.EOS_ID
  batch = dict(
    audio=rng.normal(0, 3000, (4, 8000)).astype(np.int16),
    audio_lengths=np.full(4, 8000, np.int32),
    tokens=tokens,
    token_lengths=np.full(4, 6, np.int32),
  )
  before = parallel.fetch(state.checkpointed())
  state, m = train_fn(state, parallel.global_batch(batch, mesh))
  assert parallel.fetch(m)['finite'] == 0
  after = parallel.fetch(state.checkpointed())
  assert int(after['step']) == 1 and int(after['skipped']) == 1
  # Nothing moved: Adam's moments are not poisoned by the NaN gradients.
  for name in ('params', 'variables', 'opt_state'):
    _assert_trees_equal(after[name], before[name])


def test_ctc_warmup_trains_ctc_alone_then_the_joint_loss(corpus):
  config = _config(
    corpus, **{'model.ctc_weight': 0.25, 'train.ctc_warmup_steps': 2}
  )
  mesh = parallel.make_mesh(1)
  tx, _ = optim.make_optimizer(config.train)
  graphdef, state = create_train_state(config, 12, tx, mesh)
  train_fn, _, _ = steps.compile_steps(config, graphdef, tx, mesh)
  rng = np.random.default_rng(1)
  tokens = rng.integers(4, 12, (4, 6)).astype(np.int32)
  tokens[:, -1] = Vocabulary.EOS_ID
  batch = parallel.global_batch(
    dict(
      audio=rng.normal(0, 3000, (4, 16000)).astype(np.int16),
      audio_lengths=np.full(4, 16000, np.int32),
      tokens=tokens,
      token_lengths=np.full(4, 6, np.int32),
    ),
    mesh,
  )

  def speller(state):
    flat = jax.tree_util.tree_flatten_with_path(_params(state)['params'])[0]
    return {
      jax.tree_util.keystr(path): x
      for path, x in flat
      if "['speller']" in jax.tree_util.keystr(path)
    }

  before = speller(state)
  assert before
  for step in range(3):
    state, m = train_fn(state, batch)
    m = parallel.fetch(m)
    if step < 2:
      # CTC alone: the loss is the CTC term and the speller gets no update.
      np.testing.assert_allclose(m['loss'], m['ctc'], rtol=1e-6)
      _assert_trees_equal(speller(state), before)
    else:
      np.testing.assert_allclose(
        m['loss'], 0.75 * m['ce'] + 0.25 * m['ctc'], rtol=1e-5
      )
      assert any(
        not np.array_equal(v, before[k]) for k, v in speller(state).items()
      )
