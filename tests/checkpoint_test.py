"""Checkpointer round trips, retention, best-CER and run-config checks."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default
from las_jax import checkpoint, run_layout


def _state(scale):
  params = {'w': jnp.full((3, 2), scale, jnp.float32), 'b': jnp.zeros(2)}
  opt_state = optax.adam(1e-3).init(params)
  return dict(
    step=jnp.int32(scale),
    params=params,
    opt_state=opt_state,
    rng=jax.random.PRNGKey(7),
  )


def _abstract(state):
  return jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
    state,
  )


def test_round_trip_keeps_types_and_iterator_state(tmp_path):
  ckpt = checkpoint.Checkpointer(tmp_path, keep=2)
  state = _state(3)
  ckpt.save(3, state, {'next_index': 48, 'epoch': 1})
  ckpt.wait()
  restored, data_state = ckpt.restore(_abstract(_state(0)))
  assert data_state == {'next_index': 48, 'epoch': 1}
  # Restoring against the abstract target keeps optax's NamedTuples.
  assert type(restored['opt_state'][0]) is type(state['opt_state'][0])
  jax.tree.map(np.testing.assert_array_equal, restored, state)
  ckpt.close()


def test_bytes_iterator_state_round_trips(tmp_path):
  ckpt = checkpoint.Checkpointer(tmp_path, keep=1, async_save=False)
  ckpt.save(1, _state(1), b'{"last_seen_indices": {"0": 5}}')
  _, data_state = ckpt.restore(_abstract(_state(0)))
  assert data_state == b'{"last_seen_indices": {"0": 5}}'
  ckpt.close()


def test_keeps_last_k_and_best_by_cer(tmp_path):
  ckpt = checkpoint.Checkpointer(tmp_path, keep=2, async_save=False)
  for step, cer in [(1, 0.5), (2, 0.3), (3, 0.4), (4, 0.6)]:
    ckpt.save(step, _state(step), {'i': step})
    ckpt.save_best(step, _state(step), {'i': step}, cer)
  ckpt.wait()
  assert sorted(int(p.name) for p in (tmp_path / 'checkpoints').iterdir()) == [
    3,
    4,
  ]
  assert ckpt.latest_step() == 4
  assert ckpt.best_step() == 2
  best, data_state = ckpt.restore(_abstract(_state(0)), best=True)
  assert int(best['step']) == 2 and data_state == {'i': 2}
  ckpt.close()


def test_restore_without_checkpoint_raises(tmp_path):
  ckpt = checkpoint.Checkpointer(tmp_path, keep=1)
  with pytest.raises(FileNotFoundError, match='no checkpoint'):
    ckpt.restore(_abstract(_state(0)))
  ckpt.close()


def test_run_config_refuses_architecture_change(tmp_path):
  config = default.get_config()
  config.model.hidden = 256
  run_layout.check_or_write_config(tmp_path, config)
  saved = json.loads((tmp_path / 'config.json').read_text())
  assert saved['model']['hidden'] == 256
  # Training-only fields may change on resume; the file follows.
  config.train.peak_lr = 3e-4
  run_layout.check_or_write_config(tmp_path, config)
  saved = json.loads((tmp_path / 'config.json').read_text())
  assert saved['train']['peak_lr'] == 3e-4
  changed = default.get_config()
  changed.model.hidden = 512
  changed.features.num_mels = 40
  with pytest.raises(ValueError) as err:
    run_layout.check_or_write_config(tmp_path, changed)
  assert 'model.hidden: saved 256, now 512' in str(err.value)
  assert 'features.num_mels: saved 80, now 40' in str(err.value)


def test_run_info_is_saved_with_every_checkpoint(tmp_path):
  info = {'config': {'seed': 3}, 'vocab': {'unit': 'char', 'tokens': ['가']}}
  ckpt = checkpoint.Checkpointer(
    tmp_path, keep=2, async_save=False, run_info=info
  )
  ckpt.save(1, _state(1), {'i': 1})
  ckpt.save(2, _state(2), {'i': 2})
  assert ckpt.restore_run_info() == info
  assert ckpt.restore_run_info(step=1) == info
  # The training state restores as before; the extra item is not needed.
  restored, data_state = ckpt.restore(_abstract(_state(0)))
  assert int(restored['step']) == 2 and data_state == {'i': 2}
  ckpt.close()
