"""Data parallelism: multi-host start-up, the `data` mesh, batch sharding.

The training step is written pmap-style: it runs per device under
`jax.shard_map` over a 1-D mesh named `data`, and reduces across devices
explicitly with `lax.psum`/`lax.pmean`. Parameters are replicated; the batch
is split along its first axis.

Multi-host: set `JAX_COORDINATOR_ADDRESS` (host:port of process 0),
`JAX_NUM_PROCESSES` and `JAX_PROCESS_ID` on every host (or pass
`--config.train.distributed=True` on clusters JAX detects by itself: Cloud
TPU, SLURM, Open MPI, GKE). Every host then feeds only its own share of each
global batch (`host_batch_size`), and `global_batch` stitches the host-local
arrays into one global array.
"""

import os
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

# Name of the single mesh axis; collectives in the step use it.
AXIS = 'data'


def initialize_distributed(force: bool = False) -> None:
  """Calls `jax.distributed.initialize` when the environment asks for it.

  Args:
    force: initialize even without the environment variables, letting JAX
      auto-detect the cluster (config.train.distributed).
  """
  address = os.environ.get('JAX_COORDINATOR_ADDRESS')
  if not address and not force:
    return
  if jax.distributed.is_initialized():
    return
  kwargs = {}
  if address:
    for var in ('JAX_NUM_PROCESSES', 'JAX_PROCESS_ID'):
      if var not in os.environ:
        raise ValueError(
          f'JAX_COORDINATOR_ADDRESS={address} is set but {var} is not; set '
          'JAX_NUM_PROCESSES and JAX_PROCESS_ID on every host.'
        )
    kwargs = dict(
      coordinator_address=address,
      num_processes=int(os.environ['JAX_NUM_PROCESSES']),
      process_id=int(os.environ['JAX_PROCESS_ID']),
    )
  # CPU hosts need a collectives backend for cross-process psum (GPU and
  # TPU bring their own); gloo ships with jaxlib.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(**kwargs)
  logging.info(
    'Process %d of %d, %d local / %d global devices.',
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
  )


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D `data` mesh over all devices, or over the first `num_devices`.

  `jax.make_mesh` defaults to Explicit axis types, with which `shard_map`
  over unsharded inputs fails; a plain `Mesh` has Auto axes.

  Args:
    num_devices: use only this many devices (single-process only; tests and
      benchmarks compare 1 against 8 devices). None or 0 means all.
  """
  devices = jax.devices()
  if num_devices:
    if jax.process_count() > 1 and num_devices != len(devices):
      raise ValueError(
        'config.train.num_devices must be 0 (all) in a multi-host run, got '
        f'{num_devices} with {len(devices)} devices.'
      )
    if num_devices > len(devices):
      raise ValueError(
        f'config.train.num_devices={num_devices} but only {len(devices)} '
        'devices are visible.'
      )
    devices = devices[:num_devices]
  return Mesh(np.array(devices), (AXIS,))


def sync_batch_norm(model: Any, axis_name: str = AXIS) -> int:
  """Makes batch norms that support it average statistics across devices.

  Sets `axis_name` on every batch norm (a module whose class name ends in
  `BatchNorm`) that has that attribute (flax's BatchNorm and batch norms
  following its convention), so training-time statistics are those of the
  global batch: 1 and N devices then compute the same function. Layer
  norms also have `axis_name` but must stay per example.

  Returns:
    How many modules were switched (0: statistics stay per device).
  """
  from flax import nnx  # noqa: PLC0415

  count = 0
  for _, node in nnx.iter_graph(model):
    if (
      isinstance(node, nnx.Module)
      and type(node).__name__.endswith('BatchNorm')
      and hasattr(node, 'axis_name')
    ):
      node.axis_name = axis_name
      count += 1
  return count


def host_batch_size(global_batch_size: int, mesh: Mesh) -> int:
  """This host's share of the global batch; checks that it divides evenly.

  Raises:
    ValueError: when the global batch is not a multiple of the device count.
  """
  n = mesh.devices.size
  if global_batch_size % n:
    raise ValueError(
      f'config.input.batch_size={global_batch_size} is not divisible by the '
      f'{n} devices of the mesh; use a multiple of {n}.'
    )
  local_devices = sum(
    d.process_index == jax.process_index() for d in mesh.devices.flat
  )
  return global_batch_size // n * local_devices


def global_batch(local_batch: Any, mesh: Mesh) -> Any:
  """Host-local numpy batch -> global arrays split along `data`.

  Args:
    local_batch: pytree of numpy arrays whose leading axis is this host's
      share of the global batch.
    mesh: the `data` mesh.
  """
  sharding = NamedSharding(mesh, P(AXIS))
  return jax.tree.map(
    lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
    local_batch,
  )


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding that keeps a full copy on every device of `mesh`."""
  return NamedSharding(mesh, P())


def fetch(tree: Any) -> Any:
  """Global (possibly multi-host) arrays -> numpy on every host.

  Replicated arrays are read from a local shard; sharded ones are gathered.
  """

  def one(x):
    if not isinstance(x, jax.Array):
      return x
    if x.is_fully_replicated:
      return np.asarray(x.addressable_data(0))
    if x.is_fully_addressable:
      return np.asarray(x)
    from jax.experimental import multihost_utils  # noqa: PLC0415

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))

  return jax.tree.map(one, tree)


def local_rows(x: jax.Array) -> np.ndarray:
  """This host's rows of an array split along `data`, as numpy.

  The inverse of `global_batch`: rows come back in the order this host
  supplied them, without gathering other hosts' rows.
  """
  shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
  rows, seen = [], set()
  for shard in shards:
    start = shard.index[0].start or 0
    if start not in seen:  # Skip copies held by several local devices.
      seen.add(start)
      rows.append(np.asarray(shard.data))
  return np.concatenate(rows)
