"""End-to-end training runs through `train_and_evaluate` on generated speech.

A 24-utterance KsponSpeech-layout corpus (espeak-ng) is generated once per
session and built into TFDS; every run goes through the real pipeline:
vocabulary from the train transcripts, bucketed batches, the shard_map
step, evaluation and orbax checkpoints. The model is configs/tiny.py on 8
mel bins, so a step takes about a second on two loaded cores.

Resumption is checked for what it restores, not only for where it ends: a
run that ignored its checkpoint and retrained from step 0 with the same
seed would end with the same parameters.
"""

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx
from jax import lax

from configs import tiny
from las_jax import (
  checkpoint,
  data,
  logging_utils,
  models,
  optim,
  parallel,
  steps,
)
from las_jax import train as train_lib
from las_jax.text import Vocabulary
from las_jax.train_state import abstract_checkpointed, create_train_state
from tests.child_processes import Child, run_cluster

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


@pytest.fixture(scope='module')
def corpus(kspon_corpus):
  return kspon_corpus


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


def _train_records(workdir):
  return [r for r in logging_utils.read_metrics(workdir) if 'train/loss' in r]


def _spy_on_restores(monkeypatch):
  """Records every `(state, data_state)` that `Checkpointer.restore` returns.

  As numpy copies: the first train step donates the restored arrays.
  """
  restored = []
  original = checkpoint.Checkpointer.restore

  def restore(self, *args, **kwargs):
    state, data_state = original(self, *args, **kwargs)
    restored.append((parallel.fetch(state), data_state))
    return state, data_state

  monkeypatch.setattr(checkpoint.Checkpointer, 'restore', restore)
  return restored


def _spy_on_background_saves(monkeypatch):
  """Records, for every orbax save, whether it was still being written
  when `save` returned: never when saving synchronously."""
  in_background = []
  original = ocp.CheckpointManager.save

  def save(self, *args, **kwargs):
    saved = original(self, *args, **kwargs)
    in_background.append(self.is_saving_in_progress())
    return saved

  monkeypatch.setattr(ocp.CheckpointManager, 'save', save)
  return in_background


def _assert_checkpoint_holds(workdir, step, want):
  """The complete checkpoint `step` of `workdir` holds the state `want`."""
  with ocp.StandardCheckpointer() as ckpt:
    saved = ckpt.restore(
      Path(workdir) / 'checkpoints' / str(step) / 'state',
      jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), want),
    )
  _assert_trees_equal(saved, want)


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


def test_resume_repeats_the_uninterrupted_run(
  corpus, two_step_run, tmp_path, monkeypatch
):
  # 20 train utterances in batches of 8: steps 4-6 are the second epoch, so
  # the resumed run must restore the iterator position and reshuffle alike.
  # Both runs save asynchronously, the default: the production save path
  # (the step donates the state the background save was given).
  six = dict(train__num_steps=6, train__async_checkpointing=True)
  in_background = _spy_on_background_saves(monkeypatch)
  straight = train_lib.train_and_evaluate(
    _config(corpus, **six), tmp_path / 'straight'
  )
  resumed_dir = tmp_path / 'resumed'
  shutil.copytree(two_step_run[0], resumed_dir)
  restored = _spy_on_restores(monkeypatch)
  resumed = train_lib.train_and_evaluate(_config(corpus, **six), resumed_dir)

  # It trained exactly the steps after its checkpoint (the log of steps
  # 1-2 came with the copied workdir)...
  assert [r['step'] for r in _train_records(resumed_dir)] == [1, 2, 3, 4, 5, 6]
  # ...from what step 2 saved: step, parameters, optimizer moments, RNG,
  # skip count, and the iterator 2 batches into epoch 0.
  assert len(restored) == 1
  saved_state, data_state = restored[0]
  _assert_trees_equal(saved_state, two_step_run[1])
  assert int(two_step_run[1]['step']) == 2
  assert jax.tree.leaves(two_step_run[1]['opt_state'])  # Adam's moments.
  assert data_state == {'epoch': 0, 'position': 2}
  # Bit-exact: randomness is a function of (seed, step), the data order of
  # (seed, epoch), and both runs execute the same compiled step.
  _assert_trees_equal(_params(resumed), _params(straight))
  loss = {
    r['step']: r['train/loss'] for r in _train_records(tmp_path / 'straight')
  }
  assert {
    r['step']: r['train/loss'] for r in _train_records(resumed_dir)
  } == loss
  # The background saves were finished and committed before the run
  # returned: the last three steps are complete and hold the final state.
  for workdir, state in (
    (resumed_dir, resumed),
    (tmp_path / 'straight', straight),
  ):
    assert sorted(os.listdir(workdir / 'checkpoints'), key=int) == [
      '4',
      '5',
      '6',
    ]
    _assert_checkpoint_holds(workdir, 6, _params(state))
  # ...and were written in the background: a synchronous save returns no
  # save unfinished, while the background writes and renames of the 12
  # saves (6 + 4 latest, one best per run) never all finish before the
  # statement after `save`.
  assert len(in_background) >= 10 and any(in_background), in_background


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
  a, b = _train_records(a_dir), _train_records(b_dir)
  assert [r['step'] for r in a] == [r['step'] for r in b] == [1, 2]
  # The loss and the gradient norm (taken before clipping) of the global
  # batch: Adam would hide a gradient summed on one device only, or
  # averaged instead of summed, but not its norm.
  for name in ('train/loss', 'train/grad_norm'):
    np.testing.assert_allclose(
      [r[name] for r in a], [r[name] for r in b], rtol=1e-5, err_msg=name
    )
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


def _cli_command(workdir, overrides, env=None):
  """`(args, env)` of a train.py run with `--config.<name>=<value>`s."""
  args = [sys.executable, str(ROOT / 'train.py'), '--config', 'configs/tiny.py']
  args += [f'--workdir={workdir}']
  for dotted, value in overrides.items():
    text = str(value) if not isinstance(value, tuple) else repr(value)
    args.append(f'--config.{dotted}={text}')
  # The test session's environment: its compilation cache (conftest.py)
  # holds the steps the in-process runs compiled.
  full_env = {**os.environ, 'PYTHONPATH': str(ROOT), **(env or {})}
  return args, full_env


def _cli_overrides(corpus, **extra):
  run = {k: v for k, v in RUN.items() if v is not None}
  run['data.manual_dir'], run['data.data_dir'] = corpus
  run['data.vocab_max_size'] = 1000  # CLI can't set None; no cap here.
  return {**run, **extra}


@pytest.mark.timeout(900)
def test_two_processes_agree_with_one(corpus, eight_device_run, tmp_path):
  overrides = _cli_overrides(corpus, **DETERMINISTIC)

  def commands(port):
    return [
      _cli_command(
        tmp_path,
        overrides,
        env={
          'JAX_COORDINATOR_ADDRESS': f'localhost:{port}',
          'JAX_NUM_PROCESSES': '2',
          'JAX_PROCESS_ID': str(i),
          'XLA_FLAGS': '--xla_force_host_platform_device_count=4',
        },
      )
      for i in range(2)
    ]

  for returncode, out in run_cluster(commands, timeout=600, cwd=ROOT):
    assert returncode == 0, out[-3000:]
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


@pytest.mark.timeout(900)
def test_sigterm_checkpoint_resumes_like_the_uninterrupted_run(
  corpus, tmp_path, monkeypatch
):
  # The production path: train.py in its own process, saving
  # asynchronously (the default), stopped by SIGTERM as on preemption.
  single = {
    'train.checkpoint_every': 0,
    'train.num_devices': 1,
    'train.async_checkpointing': True,
    'data.vocab_max_size': 1000,  # As _cli_overrides (no None on a CLI).
  }
  args, env = _cli_command(
    tmp_path / 'stopped',
    _cli_overrides(corpus, **single, **{'train.num_steps': 1000}),
  )
  # Start-up and compilation take minutes on a loaded machine: no deadline
  # here but the test's own (pytest-timeout), after which the child is
  # killed on the way out of this block.
  with Child(args, env=env, cwd=ROOT) as child:
    while not _train_records(tmp_path / 'stopped'):
      if not child.running():
        pytest.fail(f'no step logged; output:\n{child.kill().output[-3000:]}')
      time.sleep(0.5)
    child.proc.send_signal(signal.SIGTERM)
    # One step and a save, then it exits; a child that ignores SIGTERM is
    # killed and its output shown.
    returncode, out = child.wait(timeout=300)
  assert returncode == 0, out[-3000:]
  stopped = max(r['step'] for r in _train_records(tmp_path / 'stopped'))
  assert stopped < 1000
  assert os.listdir(tmp_path / 'stopped' / 'checkpoints') == [str(stopped)]

  # Resumed in this process for two more steps, it repeats a run that was
  # never stopped: the SIGTERM checkpoint is complete and exact.
  config = _config(
    corpus, **{k.replace('.', '__'): v for k, v in single.items()}
  )
  config.train.num_steps = stopped + 2
  restored = _spy_on_restores(monkeypatch)
  resumed = train_lib.train_and_evaluate(config, tmp_path / 'stopped')
  records = _train_records(tmp_path / 'stopped')
  assert [r['step'] for r in records] == list(range(1, stopped + 3))
  assert len(restored) == 1
  assert int(restored[0][0]['step']) == stopped
  straight = train_lib.train_and_evaluate(config, tmp_path / 'straight')
  _assert_trees_equal(_params(resumed), _params(straight))
  straight_loss = [
    r['train/loss'] for r in _train_records(tmp_path / 'straight')
  ]
  assert [r['train/loss'] for r in records] == straight_loss


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


@jax.custom_vjp
def _nan_gradient_if(x, bad):
  """Identity whose gradient is NaN when `bad` (a traced bool) is set."""
  del bad
  return x


def _nan_gradient_fwd(x, bad):
  return x, bad


def _nan_gradient_bwd(bad, g):
  return jnp.where(bad, jnp.nan, g), None


_nan_gradient_if.defvjp(_nan_gradient_fwd, _nan_gradient_bwd)


class _NaNGradientsOnDevice(nnx.Module):
  """A real model whose logits' gradient is NaN on one device's rows.

  Its forward pass is untouched, so the loss stays finite: only the
  gradient check sees the fault, and before the cross-device sum only the
  faulty device does. (A bad weight would show in every device's loss.)
  """

  def __init__(self, model: nnx.Module, device: int):
    self.model, self.device = model, device

  def __call__(self, *args, **kwargs):
    out = dict(self.model(*args, **kwargs))
    bad = lax.axis_index(parallel.AXIS) == self.device
    out['logits_BxLxV'] = _nan_gradient_if(out['logits_BxLxV'], bad)
    return out

  def encode(self, *args, **kwargs):
    return self.model.encode(*args, **kwargs)

  def scorer(self, *args, **kwargs):
    return self.model.scorer(*args, **kwargs)


def test_nan_gradients_on_one_device_skip_the_step_on_every_device(
  corpus, tmp_path, monkeypatch
):
  build = models.build_model
  monkeypatch.setattr(
    models,
    'build_model',
    lambda *args, **kwargs: _NaNGradientsOnDevice(build(*args, **kwargs), 1),
  )
  # Batch statistics per device: synced batch norm would also carry the
  # NaN to the other device's gradients (through the statistics' psum), so
  # every device would see it even if each decided alone. Here only the
  # step's own cross-device sums join the devices.
  monkeypatch.setattr(parallel, 'sync_batch_norm', lambda model: 0)
  config = _config(corpus, train__num_devices=2, train__num_steps=2)
  state = train_lib.train_and_evaluate(config, tmp_path)
  records = _train_records(tmp_path)
  assert all(np.isfinite(r['train/loss']) for r in records), records
  assert [r['train/skipped_steps'] for r in records] == [1, 2]
  # Each device's copy of the state is still the initial one: no device
  # applied the (summed, NaN) gradients, nor moved Adam's moments.
  vocab = Vocabulary.load(tmp_path / 'vocab.txt')
  tx, _ = optim.make_optimizer(config.train)
  _, init = create_train_state(config, len(vocab), tx, parallel.make_mesh(2))
  want = _params(init)
  want.update(step=np.int32(2), skipped=np.int32(2))
  got = state.checkpointed()
  for name in want:
    for x, expected in zip(
      jax.tree.leaves(got[name]), jax.tree.leaves(want[name]), strict=True
    ):
      assert len(x.addressable_shards) == 2
      for shard in x.addressable_shards:
        np.testing.assert_array_equal(shard.data, expected, err_msg=name)


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
