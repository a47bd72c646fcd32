"""Gradient accumulation: 4 micro-batches of 2 make the update of one batch
of 8 (config.train.grad_accum_steps).

The eight utterances share one recording (no SpecAugment), so every
micro-batch's batch-norm statistics equal the whole batch's and the
updates can be compared; their targets differ in length, one has more
CTC labels than encoder frames (left out of the CTC loss and its
denominator) and one row is padding. The optimizer is plain SGD with rate
1, so the parameter change is the gradient itself.
"""

import jax
import numpy as np
import optax
import pytest

from configs import tiny
from las_jax import parallel, steps
from las_jax.train_state import create_train_state

VOCAB = 12
TOKEN_LENGTHS = [3, 16, 5, 9, 2, 12, 7, 4]  # EOS included; 16: too long.


def _config(grad_accum_steps):
  config = tiny.get_config()
  config.features.num_mels = 16
  config.features.spec_augment = False
  config.model.input_dim = 16
  config.model.vgg_channels = (4, 8)
  config.model.dropout = 0.0
  config.model.ctc_weight = 0.3
  config.train.grad_accum_steps = grad_accum_steps
  return config


def _batch():
  rng = np.random.default_rng(0)
  samples = rng.integers(-3000, 3000, 16000).astype(np.int16)
  audio = np.tile(samples, (8, 1))
  lengths = np.full(8, 16000, np.int32)
  audio[6], lengths[6] = 0, 0  # A padding row.
  tokens = np.zeros((8, 16), np.int32)
  for i, n in enumerate(TOKEN_LENGTHS):
    tokens[i, : n - 1] = rng.integers(3, VOCAB, n - 1)
    tokens[i, n - 1] = 2
  return dict(
    audio=audio,
    audio_lengths=lengths,
    tokens=tokens,
    token_lengths=np.array(TOKEN_LENGTHS, np.int32),
  )


def _step(grad_accum_steps, num_devices):
  config = _config(grad_accum_steps)
  mesh = parallel.make_mesh(num_devices)
  tx = optax.sgd(1.0)
  graphdef, state = create_train_state(config, VOCAB, tx, mesh)
  before = parallel.fetch(state.params)
  train_fn, _, _ = steps.compile_steps(config, graphdef, tx, mesh)
  state, metrics = train_fn(state, parallel.global_batch(_batch(), mesh))
  after, variables = parallel.fetch((state.params, state.variables))
  grads = jax.tree.map(lambda a, b: a - b, before, after)
  return grads, variables, parallel.fetch(metrics)


@pytest.fixture(scope='module')
def one_batch():
  return _step(1, 1)


@pytest.mark.parametrize('grad_accum_steps, num_devices', [(4, 1), (2, 2)])
def test_micro_batches_give_the_update_of_one_batch(
  one_batch, grad_accum_steps, num_devices
):
  # (2, 2): two devices, each with two micro-batches of two.
  want_grads, want_vars, want_metrics = one_batch
  grads, variables, metrics = _step(grad_accum_steps, num_devices)
  # Rounding differs with the summation order and batch shapes (some
  # gradients are 0 up to it: ~1e-11).
  scale = max(np.abs(w).max() for w in jax.tree.leaves(want_grads))
  for g, w in zip(
    jax.tree.leaves(grads), jax.tree.leaves(want_grads), strict=True
  ):
    np.testing.assert_allclose(g, w, rtol=2e-4, atol=1e-5 * scale)
  # Batch-norm running averages: one update with the mean statistics.
  for v, w in zip(
    jax.tree.leaves(variables), jax.tree.leaves(want_vars), strict=True
  ):
    np.testing.assert_allclose(v, w, rtol=1e-4, atol=1e-6)
  for name in ('loss', 'ce', 'ctc', 'accuracy', 'utterances'):
    np.testing.assert_allclose(metrics[name], want_metrics[name], rtol=1e-5)


def test_micro_batches_must_divide_the_device_batch():
  with pytest.raises(ValueError, match='grad_accum_steps=3 does not divide'):
    _step(3, 1)
  with pytest.raises(ValueError, match='grad_accum_steps must be an integer'):
    _step(0, 1)
