"""Test-wide setup: 8 virtual CPU devices, one compilation cache per run.

Tests build the same tiny models over and over (every `train_and_evaluate`
jits its steps anew; CLI tests start fresh processes), so compiled
executables go to JAX's persistent compilation cache in a directory made
for this pytest run: every pytest-xdist worker and every child process
(through `JAX_COMPILATION_CACHE_DIR` in the environment) reads and writes
the same one, and it is removed at the end of the run. A per-run
directory, not a user-wide one: executables compiled by another version of
the code are never trusted.
"""

import os
import shutil
import tempfile

import pytest

# Must happen before jax is imported anywhere in the test session.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

# Compilations faster than this are not worth a cache file (most of the
# suite's are; the train and decode steps take seconds).
CACHE_MIN_COMPILE_SECONDS = 0.5


def pytest_configure(config):
  workerinput = getattr(config, 'workerinput', None)
  if workerinput is not None:  # A pytest-xdist worker: the run's directory.
    cache_dir = workerinput['las_jax_compilation_cache']
  else:
    cache_dir = tempfile.mkdtemp(prefix='las_jax_test_jax_cache_')
    config.las_jax_compilation_cache = cache_dir
  # Environment variables reach child processes (train.py, decode.py) too;
  # this process reads them when jax is first imported below.
  os.environ['JAX_COMPILATION_CACHE_DIR'] = cache_dir
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = str(
    CACHE_MIN_COMPILE_SECONDS
  )
  import jax  # noqa: PLC0415  (after XLA_FLAGS above)

  jax.config.update('jax_compilation_cache_dir', cache_dir)
  jax.config.update(
    'jax_persistent_cache_min_compile_time_secs', CACHE_MIN_COMPILE_SECONDS
  )


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
  """pytest-xdist (controller): hands the run's cache to each worker."""
  node.workerinput['las_jax_compilation_cache'] = (
    node.config.las_jax_compilation_cache
  )


def pytest_unconfigure(config):
  cache_dir = getattr(config, 'las_jax_compilation_cache', None)
  if cache_dir is not None:  # The controller (or a run without xdist).
    shutil.rmtree(cache_dir, ignore_errors=True)


@pytest.fixture(scope='session')
def kspon_corpus(tmp_path_factory):
  """(manual_dir, data_dir) of a 24-utterance generated corpus, built once.

  KsponSpeech layout (espeak-ng speech, make_mini_kspon's seed 0) and its
  TFDS dataset: 20 train, 2 dev, 1 + 1 eval utterances.
  """
  from las_jax import data  # noqa: PLC0415  (after XLA_FLAGS above)
  from las_jax.data.make_mini_kspon import make_mini_kspon  # noqa: PLC0415

  root = tmp_path_factory.mktemp('mini_kspon')
  manual_dir, data_dir = root / 'corpus', root / 'tfds'
  make_mini_kspon(manual_dir, num_utterances=24, seed=0)
  data.build_dataset('ksponspeech', data_dir, manual_dir, 'phonetic')
  return str(manual_dir), str(data_dir)


@pytest.fixture(scope='module')
def fast_compile():
  """XLA without most optimizations, for one module's tests only.

  For modules that compile many large decode programs and run each a few
  times. Set at import time instead, the flag leaked into every module
  the same pytest-xdist worker ran afterwards (a 30 s test took 300 s).
  """
  import jax  # noqa: PLC0415  (after XLA_FLAGS above)

  previous = jax.config.read('jax_disable_most_optimizations')
  jax.config.update('jax_disable_most_optimizations', True)
  yield
  jax.config.update('jax_disable_most_optimizations', previous)
