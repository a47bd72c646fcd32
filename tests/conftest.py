"""Test-wide setup: 8 virtual CPU devices for the multi-device tests."""

import os

import pytest

# Must happen before jax is imported anywhere in the test session.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')


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
