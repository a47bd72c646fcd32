"""las_jax.ops: each CPU kernel's gradients equal its reference's, and a
train step exported for GPU or TPU holds none of the CPU code.

The references are the plain formulations GPU and TPU run (JAX's
autodiff); conv_test.py and fused_grads_test.py check them and the CPU
paths against independent formulas as well.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from las_jax import optim, parallel, steps
from las_jax.models.extractors import ACTIVATIONS
from las_jax.ops import batch_norm, conv, lstm, max_pool
from las_jax.ops import loop_matmul as lm
from las_jax.train_state import create_train_state

BF16 = jnp.bfloat16


def _keys(n, seed=0):
  return jax.random.split(jax.random.key(seed), n)


def _grads(fn, args, cotangent):
  """Gradients of <fn(*args), cotangent> for every float argument."""
  argnums = tuple(
    i for i, a in enumerate(args) if jnp.issubdtype(a.dtype, jnp.floating)
  )

  def loss(*a):
    out = fn(*a)
    out = out[0] if isinstance(out, tuple) else out
    return jnp.sum(out.astype(jnp.float32) * cotangent)

  return jax.jit(jax.grad(loss, argnums))(*args)


def _assert_close(got, want, rtol, atol):
  for g, w in zip(got, want, strict=True):
    assert g.dtype == w.dtype
    np.testing.assert_allclose(
      np.asarray(g, np.float32), np.asarray(w, np.float32), rtol, atol
    )


@pytest.mark.parametrize('dtype', [jnp.float32, BF16])
def test_conv_same(dtype):
  k = _keys(3)
  args = (
    jax.random.normal(k[0], (2, 9, 11, 8)).astype(dtype),
    (0.3 * jax.random.normal(k[1], (3, 3, 8, 5))).astype(dtype),
  )
  cot = jax.random.normal(k[2], (2, 9, 11, 5))
  want = _grads(conv.conv_same_reference, args, cot)
  got = _grads(conv.conv_same_cpu, args, cot)
  if dtype == jnp.float32:
    _assert_close(got, want, 1e-4, 1e-4)
  else:  # The CPU backward pass runs in float32: closer to the truth.
    exact = _grads(
      conv.conv_same_reference, [a.astype(jnp.float32) for a in args], cot
    )
    _assert_close([g.astype(jnp.float32) for g in got], exact, 2e-2, 5e-2)


@pytest.mark.parametrize('dtype', [jnp.float32, BF16])
def test_lstm_recurrence(dtype):
  k = _keys(3, 1)
  args = (
    jax.random.normal(k[0], (7, 2, 3, 16)),  # [T, D, B, 4H], H = 4.
    (0.5 * jax.random.normal(k[1], (2, 4, 16))).astype(dtype),
  )
  cot = jax.random.normal(k[2], (7, 2, 3, 4))
  got = _grads(lstm.lstm_recurrence_cpu, args, cot)
  want = _grads(lstm.lstm_recurrence_reference, args, cot)
  tol = 1e-5 if dtype == jnp.float32 else 2e-2
  _assert_close(got, want, tol, tol)
  assert lstm.lstm_recurrence_cpu(*args).dtype == jnp.float32


@pytest.mark.parametrize('dtype', [jnp.float32, BF16])
@pytest.mark.parametrize('activation', ['hardtanh', 'relu', 'elu'])
def test_masked_batch_norm(dtype, activation):
  k = _keys(4, 2)
  lengths = jnp.array([9, 6, 3])
  # [B, F, T, C] with time on axis 2, as the VGG blocks call it.
  mask = (jnp.arange(9)[None, :] < lengths[:, None])[:, None, :, None]
  mask = mask.astype(dtype)
  x = (4.0 * jax.random.normal(k[0], (3, 4, 9, 5)) + 1.0).astype(dtype) * mask
  args = (
    x,
    mask,
    1.0 + 0.5 * jax.random.normal(k[1], (5,)),
    jax.random.normal(k[2], (5,)),
  )
  cot = jax.random.normal(k[3], x.shape)
  static = (1e-5, None, ACTIVATIONS[activation])
  got = _grads(
    lambda *a: batch_norm.masked_batch_norm_cpu(*a, *static), args, cot
  )
  want = _grads(
    lambda *a: batch_norm.masked_batch_norm_reference(*a, *static), args, cot
  )
  # The mask gets no gradient from the CPU pass (it is not a parameter).
  got, want = (got[0], *got[2:]), (want[0], *want[2:])
  tol = 2e-4 if dtype == jnp.float32 else 2e-2
  _assert_close(got, want, tol, tol)
  y = batch_norm.masked_batch_norm_cpu(*args, *static)[0]
  assert y.dtype == dtype
  assert not np.any(np.asarray(y, np.float32)[1, :, 6:])


@pytest.mark.parametrize('dtype', [jnp.float32, BF16])
def test_max_pool_2x2_with_ties(dtype):
  # Hardtanh outputs tie often (at 0 and 20): both versions pass each
  # window's gradient to its first maximal tap, so they agree exactly.
  x = jax.random.normal(jax.random.key(3), (2, 6, 8, 3))
  x = jnp.clip(4.0 * x, 0.0, 2.0).astype(dtype)
  assert np.mean(np.asarray(x) == 0) > 0.3
  cot = jax.random.normal(jax.random.key(4), (2, 3, 4, 3))
  (got,) = _grads(max_pool.max_pool_2x2_cpu, (x,), cot)
  (want,) = _grads(max_pool.max_pool_2x2_reference, (x,), cot)
  np.testing.assert_array_equal(got, want)
  # Each window's gradient lands on one tap.
  nonzero = (np.asarray(got, np.float32) != 0).reshape(2, 3, 2, 4, 2, 3)
  assert nonzero.sum(axis=(2, 4)).max() == 1
  np.testing.assert_array_equal(
    max_pool.max_pool_2x2_cpu(x), max_pool.max_pool_2x2_reference(x)
  )


@pytest.mark.parametrize('dtype', [jnp.float32, BF16])
def test_loop_matmul_in_scan(dtype):
  k = _keys(3, 5)
  h0 = jax.random.normal(k[0], (3, 6))
  w = (0.5 * jax.random.normal(k[1], (6, 6))).astype(dtype)
  xs = jax.random.normal(k[2], (4, 3, 6))

  def run(matmul):
    def fn(h0, w):
      def body(h, x):
        h = jnp.tanh(matmul(h.astype(w.dtype), w).astype(jnp.float32) + x)
        return h, h

      return jax.lax.scan(body, h0, xs)[1]

    return fn

  cot = jnp.ones((4, 3, 6))
  got = _grads(run(lm.matmul_cpu), (h0, w), cot)
  want = _grads(run(lm.matmul_reference), (h0, w), cot)
  tol = 1e-5 if dtype == jnp.float32 else 2e-2
  _assert_close(got, want, tol, tol)


# ------------------------------------------------------- exported steps --


def _step_config():
  """Tiny joint CTC-attention LAS: VGG (convs, batch norms, pools), LSTM
  listener; its speller's stepwise (sampled) and parallel teacher-forced
  paths are both in the program. Every CPU kernel is on its path."""
  config = tiny.get_config()
  config.features.num_mels = 16
  config.model.input_dim = 16
  config.model.vgg_channels = (4, 8)
  config.model.ctc_weight = 0.3
  config.train.scheduled_sampling = 'token'
  config.train.teacher_forcing_ratio = 0.8
  return config


@pytest.fixture(scope='module')
def train_step():
  """What `steps.compile_steps` needs, and abstract arguments."""
  config = _step_config()
  mesh = parallel.make_mesh(1)
  tx, _ = optim.make_optimizer(config.train)
  graphdef, state = create_train_state(config, 12, tx, mesh)
  batch = dict(
    audio=jax.ShapeDtypeStruct((2, 8000), jnp.int16),
    audio_lengths=jax.ShapeDtypeStruct((2,), jnp.int32),
    tokens=jax.ShapeDtypeStruct((2, 6), jnp.int32),
    token_lengths=jax.ShapeDtypeStruct((2,), jnp.int32),
  )
  return config, graphdef, tx, mesh, (state, batch)


# Each CPU kernel names its ops with a `jax.named_scope` of its name.
CPU_KERNELS = (
  'conv_same_cpu',
  'lstm_recurrence_cpu',
  'masked_batch_norm_cpu',
  'max_pool_2x2_cpu',
  'matmul_cpu',
)


def _kernels_in(module_text):
  """The kernels named in the name stacks of the module's locations."""
  scopes = set(re.findall(r'[(/]([a-z_0-9]+_cpu)[)/]', module_text))
  return scopes & set(CPU_KERNELS)


def test_exported_train_step_for_gpu_and_tpu_holds_no_cpu_kernel(train_step):
  config, graphdef, tx, mesh, args = train_step
  train_fn, _, _ = steps.compile_steps(config, graphdef, tx, mesh)
  export = lambda platforms: jax.export.export(  # noqa: E731
    train_fn, platforms=platforms
  )(*args).mlir_module()
  # The CPU program holds every kernel (the check can see them)...
  assert _kernels_in(export(['cpu'])) == set(CPU_KERNELS)
  # ...the GPU and TPU programs none.
  device = export(['cuda', 'tpu'])
  assert not _kernels_in(device)
  # No custom call meant for the host (LAPACK, Python callbacks).
  targets = set(re.findall(r'call_target_name = "([^"]+)"', device))
  assert not {t for t in targets if 'cpu' in t.lower() or 'lapack' in t}
