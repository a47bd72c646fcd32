"""A run killed with SIGKILL at any point reruns cleanly (issue 14).

Item 12: `train.py` is killed (a hook sends SIGKILL to the process right
after a chosen checkpoint save) at three points of a 4-step run that
evaluates and saves every 2 steps, each rerun resuming the previous one:

1. right after the step-2 save is queued (its async write in flight);
2. after the final evaluation's best-checkpoint save, before the final
   checkpoint;
3. after the final checkpoint and its best save, before the process exits
   (orbax's StepAlreadyExistsError on every rerun before the fix).

The last rerun finds the run finished and exits at once. Parameters,
optimizer state and the best checkpoint then equal those of an
uninterrupted run of the same command, bit for bit.

Item 15: the consoles of these runs carry no library INFO logs (they go to
<workdir>/train.log), unless --alsologtostderr asks for them. Item 14:
the runs take JAX options as flags (`--jax_compilation_cache_dir`, which
also lets every process reuse the first one's compiled programs).
"""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from las_jax import data
from las_jax.data.make_mini_kspon import make_mini_kspon

ROOT = Path(__file__).resolve().parents[1]

# A 4-step tiny run: evaluation and checkpoints every 2 steps.
OVERRIDES = {
  'input.batch_size': 4,
  'input.eval_batch_size': 4,
  'input.audio_buckets_s': (6.0,),
  'input.token_buckets': (64,),
  'input.num_threads': 0,
  'features.num_mels': 8,
  'model.dropout': 0.1,
  'train.num_devices': 1,
  'train.lr_schedule': 'constant',
  'train.peak_lr': 3e-3,
  'train.num_steps': 4,
  'train.eval_every': 2,
  'train.eval_utterances': 4,
  'train.plot_utterances': 1,
  'train.checkpoint_every': 2,
  'train.log_every': 1,
  'train.progress_bar': False,
}

# Runs train.py as `python train.py ...` does, after wrapping one
# Checkpointer method: SIGKILL right after it saved step KILL_STEP (and,
# with KILL_WAIT, after the write is on disk).
DRIVER = textwrap.dedent(
  """
  import os, runpy, signal, sys
  from las_jax import checkpoint

  method = os.environ['KILL_METHOD']
  step, wait = int(os.environ['KILL_STEP']), os.environ.get('KILL_WAIT')
  original = getattr(checkpoint.Checkpointer, method)

  def killing(self, at, *args, **kwargs):
    original(self, at, *args, **kwargs)
    if at == step:
      if wait:
        self.wait()
      os.kill(os.getpid(), signal.SIGKILL)

  setattr(checkpoint.Checkpointer, method, killing)
  sys.argv[0] = os.path.join(os.getcwd(), 'train.py')
  runpy.run_path(sys.argv[0], run_name='__main__')
  """
)
# An absl INFO line: `I1130 12:00:00.000000 1234 file.py:12] ...`.
INFO_LINE = re.compile(r'^I\d{4} \d\d:\d\d:\d\d', re.MULTILINE)


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  root = tmp_path_factory.mktemp('kill_corpus')
  manual_dir, data_dir = root / 'corpus', root / 'tfds'
  make_mini_kspon(manual_dir, num_utterances=16, seed=1)
  data.build_dataset('ksponspeech', data_dir, manual_dir, 'phonetic')
  return {'data.manual_dir': str(manual_dir), 'data.data_dir': str(data_dir)}


@pytest.fixture(scope='module')
def jax_cache(tmp_path_factory):
  return tmp_path_factory.mktemp('jax_cache')


def _train(workdir, corpus, jax_cache, kill=None, flags=()):
  """Runs train.py (killed as `kill` = (method, step, wait) says)."""
  args = [sys.executable]
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': str(ROOT)}
  if kill is None:
    args.append(str(ROOT / 'train.py'))
  else:
    args += ['-c', DRIVER]
    method, step, wait = kill
    env.update(KILL_METHOD=method, KILL_STEP=str(step))
    if wait:
      env['KILL_WAIT'] = '1'
  args += ['--config', 'configs/tiny.py', f'--workdir={workdir}']
  for dotted, value in {**OVERRIDES, **corpus}.items():
    text = repr(value) if isinstance(value, tuple) else str(value)
    args.append(f'--config.{dotted}={text}')
  args += [
    f'--jax_compilation_cache_dir={jax_cache}',
    '--jax_persistent_cache_min_compile_time_secs=0',
    '--jax_persistent_cache_min_entry_size_bytes=0',
    *flags,
  ]
  return subprocess.run(
    args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
  )


def _state(step_dir):
  with ocp.PyTreeCheckpointer() as ckpt:
    return ckpt.restore(step_dir / 'state')


def _assert_same_state(a_dir, b_dir):
  a, b = _state(a_dir), _state(b_dir)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  jax.tree.map(np.testing.assert_array_equal, a, b)


def _dev_cers(workdir):
  lines = (workdir / 'metrics.jsonl').read_text().splitlines()
  return {
    r['step']: r['dev/cer'] for r in map(json.loads, lines) if 'dev/cer' in r
  }


def test_killed_anywhere_reruns_to_the_uninterrupted_result(
  corpus, jax_cache, tmp_path
):
  straight = tmp_path / 'straight'
  done = _train(straight, corpus, jax_cache)
  assert done.returncode == 0, done.stderr[-3000:]
  # Item 15: the console shows evaluations, not library INFO logs.
  console = done.stdout + done.stderr
  assert re.search(r'^step 2: .*dev/cer', console, re.MULTILINE)
  assert re.search(r'^step 4: .*dev/cer', console, re.MULTILINE)
  assert not INFO_LINE.search(console), console[:3000]
  log = (straight / 'train.log').read_text()
  assert INFO_LINE.search(log) and 'orbax' in log
  assert any(jax_cache.iterdir())  # Item 14: --jax_* flags reach JAX.

  killed = tmp_path / 'killed'
  for kill in [('save', 2, False), ('save_best', 4, True), ('save', 4, True)]:
    run = _train(killed, corpus, jax_cache, kill=kill)
    assert run.returncode == -9, (kill, run.stderr[-3000:])
  rerun = _train(killed, corpus, jax_cache, flags=['--alsologtostderr'])
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert f'{killed} finished at step 4: nothing to do.' in rerun.stdout
  assert INFO_LINE.search(rerun.stderr)  # --alsologtostderr: INFO too.

  for name in ('checkpoints', 'checkpoints_best'):
    assert os.listdir(straight / name) == os.listdir(killed / name), name
  _assert_same_state(
    straight / 'checkpoints' / '4', killed / 'checkpoints' / '4'
  )
  [best] = os.listdir(straight / 'checkpoints_best')
  _assert_same_state(
    straight / 'checkpoints_best' / best, killed / 'checkpoints_best' / best
  )
  assert _dev_cers(killed) == _dev_cers(straight)
