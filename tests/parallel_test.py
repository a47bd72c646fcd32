"""Mesh, batch sharding and a two-process run on localhost."""

import os
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.sharding import PartitionSpec as P

from configs import deepspeech2
from las_jax import optim, parallel, steps
from las_jax.train_state import create_train_state
from tests.child_processes import run_cluster


def test_mesh_size_and_batch_split():
  assert parallel.make_mesh().devices.size == jax.device_count() == 8
  mesh = parallel.make_mesh(4)
  assert mesh.axis_names == ('data',) and mesh.devices.size == 4
  assert parallel.host_batch_size(32, mesh) == 32
  with pytest.raises(ValueError, match='batch_size=30 is not divisible'):
    parallel.host_batch_size(30, mesh)
  with pytest.raises(ValueError, match='only 8 devices'):
    parallel.make_mesh(16)


def test_global_batch_is_split_along_data():
  mesh = parallel.make_mesh(8)
  local = {'x': np.arange(16 * 3).reshape(16, 3)}
  batch = parallel.global_batch(local, mesh)
  assert batch['x'].sharding.spec == P('data')
  shards = batch['x'].addressable_shards
  assert len(shards) == 8 and shards[1].data.shape == (2, 3)
  np.testing.assert_array_equal(parallel.fetch(batch)['x'], local['x'])


def _weighted_mean_step(mesh):
  """psum(num)/psum(den) under shard_map, as the train step reduces."""

  def step(x_B, w_B):
    num = lax.psum(jnp.sum(x_B * w_B), 'data')
    den = lax.psum(jnp.sum(w_B), 'data')
    return num / den

  return jax.jit(
    jax.shard_map(
      step,
      mesh=mesh,
      in_specs=(P('data'), P('data')),
      out_specs=P(),
      check_vma=False,
    )
  )


def test_token_weighted_mean_is_device_count_independent():
  x = np.arange(8, dtype=np.float32)
  w = np.array([5, 1, 1, 1, 0, 0, 2, 3], np.float32)
  want = (x * w).sum() / w.sum()
  for n in (1, 2, 8):
    mesh = parallel.make_mesh(n)
    got = _weighted_mean_step(mesh)(
      parallel.global_batch(x, mesh), parallel.global_batch(w, mesh)
    )
    np.testing.assert_allclose(got, want, rtol=1e-6)


_WORKER = textwrap.dedent(
  """
  import sys
  import jax, jax.numpy as jnp, numpy as np
  from jax import lax
  from jax.sharding import PartitionSpec as P
  from las_jax import parallel
  parallel.initialize_distributed()
  mesh = parallel.make_mesh()
  assert jax.process_count() == 2 and mesh.devices.size == 4
  n = parallel.host_batch_size(8, mesh)
  pid = jax.process_index()
  x = np.arange(8, dtype=np.float32)[pid * n:(pid + 1) * n]
  def step(x_B):
    return lax.psum(jnp.sum(x_B * x_B), 'data')
  f = jax.jit(jax.shard_map(step, mesh=mesh, in_specs=P('data'),
                            out_specs=P(), check_vma=False))
  print('RESULT', pid, float(parallel.fetch(f(parallel.global_batch(x, mesh)))))
  """
)


def test_two_processes_reduce_together(tmp_path):
  script = tmp_path / 'worker.py'
  script.write_text(_WORKER)

  def commands(port):
    return [
      (
        [sys.executable, str(script)],
        dict(
          os.environ,
          JAX_COORDINATOR_ADDRESS=f'127.0.0.1:{port}',
          JAX_NUM_PROCESSES='2',
          JAX_PROCESS_ID=str(pid),
          XLA_FLAGS='--xla_force_host_platform_device_count=2',
        ),
      )
      for pid in range(2)
    ]

  results = run_cluster(commands, timeout=120)
  want = float(np.sum(np.arange(8.0) ** 2))
  for pid, (returncode, out) in enumerate(results):
    assert returncode == 0, out
    assert f'RESULT {pid} {want}' in out, out


def test_coordinator_without_process_id_is_refused(monkeypatch):
  monkeypatch.setenv('JAX_COORDINATOR_ADDRESS', '127.0.0.1:1')
  monkeypatch.delenv('JAX_PROCESS_ID', raising=False)
  monkeypatch.setenv('JAX_NUM_PROCESSES', '2')
  with pytest.raises(ValueError, match='JAX_PROCESS_ID'):
    parallel.initialize_distributed()


def test_sync_batch_norm_switches_batch_norms_only():
  from flax import nnx  # noqa: PLC0415

  from las_jax.models.masking import MaskedBatchNorm  # noqa: PLC0415

  class Net(nnx.Module):
    def __init__(self):
      self.bn = MaskedBatchNorm(3)
      self.flax_bn = nnx.BatchNorm(3, rngs=nnx.Rngs(0))
      self.ln = nnx.LayerNorm(3, rngs=nnx.Rngs(0))

  net = Net()
  assert parallel.sync_batch_norm(net) == 2
  assert net.bn.axis_name == 'data' and net.flax_bn.axis_name == 'data'
  # Layer norm statistics are per example: never averaged across devices.
  assert net.ln.axis_name is None


def test_masked_batch_norm_statistics_are_global_across_devices():
  from flax import nnx  # noqa: PLC0415

  from las_jax.models.masking import MaskedBatchNorm  # noqa: PLC0415

  rng = np.random.default_rng(0)
  x_BxTxC = rng.normal(size=(8, 5, 3)).astype(np.float32)
  lengths_B = np.array([5, 1, 3, 0, 5, 2, 4, 5], np.int32)
  want = MaskedBatchNorm(3)(x_BxTxC, lengths_B, train=True)
  mesh = parallel.make_mesh(8)
  bn = MaskedBatchNorm(3, axis_name='data')
  graphdef, state = nnx.split(bn)

  def step(state, x, lengths):
    return nnx.merge(graphdef, state)(x, lengths, train=True)

  got = jax.jit(
    jax.shard_map(
      step,
      mesh=mesh,
      in_specs=(P(), P('data'), P('data')),
      out_specs=P('data'),
      check_vma=False,
    )
  )(state, *parallel.global_batch((x_BxTxC, lengths_B), mesh))
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)


def test_local_rows_inverts_global_batch():
  mesh = parallel.make_mesh(8)
  x = np.arange(16 * 3).reshape(16, 3)
  np.testing.assert_array_equal(
    parallel.local_rows(parallel.global_batch(x, mesh)), x
  )


@pytest.mark.parametrize(
  'randomness', ['none', 'model.dropout', 'features.spec_augment']
)
def test_devices_draw_their_own_dropout_and_spec_augment(randomness):
  # One utterance on one device against two copies of it on two devices.
  # Device 0 of both runs draws with the same key; without per-device
  # draws the copies would be masked alike and both runs would have the
  # same loss, as they do with no randomness at all (batch statistics
  # are global, so two equal rows are one row's statistics).
  config = deepspeech2.get_config()
  # Frequency masks narrower than the 8 bins: wider ones may mask them all
  # on both devices, whatever their keys.
  config.features.update(num_mels=8, spec_augment=False, freq_mask_param=3)
  config.model.update(
    input_dim=8, ds2_channels=4, encoder_hidden=16, encoder_layers=2
  )
  config.model.dropout = 0.0
  if randomness == 'model.dropout':
    config.model.dropout = 0.5
  elif randomness == 'features.spec_augment':
    config.features.spec_augment = True
  rng = np.random.default_rng(0)
  row = dict(
    audio=rng.normal(0, 3000, (1, 16000)).astype(np.int16),
    audio_lengths=np.array([16000], np.int32),
    tokens=np.array([[5, 6, 7, 8, 2, 0]], np.int32),
    token_lengths=np.array([5], np.int32),
  )
  losses = []
  for devices in (1, 2):
    mesh = parallel.make_mesh(devices)
    tx, _ = optim.make_optimizer(config.train)
    graphdef, state = create_train_state(config, 12, tx, mesh)
    train_fn, _, _ = steps.compile_steps(config, graphdef, tx, mesh)
    batch = {k: np.repeat(x, devices, axis=0) for k, x in row.items()}
    _, metrics = train_fn(state, parallel.global_batch(batch, mesh))
    losses.append(float(parallel.fetch(metrics)['loss']))
  one, two = losses
  assert np.isfinite(one) and np.isfinite(two)
  # Rounding alone keeps them within 1e-6; the second device's masks move
  # the mean loss by ~1e-3 (dropout between the BiGRUs) and more.
  if randomness == 'none':
    np.testing.assert_allclose(two, one, rtol=1e-6)
  else:
    assert abs(two - one) > 1e-4 * abs(one), (one, two)
