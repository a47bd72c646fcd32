"""float32 training and decoding give the same bits as before mixed precision.

The golden values below were computed on the code before `las_jax/ops/`,
`train.compute_dtype`, `train.grad_accum_steps` and `train.remat` existed
(commit 80928dc; the greedy decoding's since the dev decode moved to
`inference.batch_search` and its token limit), with jax/jaxlib 0.10.2 on this project's x86-64 CPU
machine: the train-step loss and gradient norm of two steps, a digest of
every parameter after them, the teacher-forced eval sums and greedy
decoding. Refactoring that changes a single bit of a float32 result fails
here. XLA's CPU code differs between CPU generations and XLA versions:
on another machine or jax version, recompute them with
`XLA_FLAGS=--xla_force_host_platform_device_count=8 python
tests/float32_golden_test.py` on the old commit first (the flag is the
test suite's, and XLA:CPU compiles differently without it).
"""

import hashlib

import jax
import numpy as np
import pytest

from configs import tiny
from las_jax import optim, parallel, steps
from las_jax.train_state import create_train_state

VOCAB = 12


def _config(variant: str):
  config = tiny.get_config()
  config.train.lr_schedule = 'constant'
  config.train.peak_lr = 1e-2
  model = config.model
  if variant == 'las':
    # VGG (Winograd gradients), LSTM listener with a pyramid, multi-head
    # attention (parallel teacher forcing in eval), joint CTC, and
    # per-token scheduled sampling (the step-by-step speller) in training.
    model.vgg_channels = (8, 16)
    model.ctc_weight = 0.3
    config.train.scheduled_sampling = 'token'
    config.train.teacher_forcing_ratio = 0.7
  elif variant == 'location':
    # Location-aware attention with input feeding: the scanned speller.
    model.vgg_channels = (4, 8)
    model.attention = 'location'
    model.input_feeding = True
  elif variant == 'ds2':
    model.name = 'deepspeech2'
    model.extractor = 'ds2'
    model.encoder_rnn_type = 'gru'
  else:
    raise ValueError(variant)
  return config


def _batch():
  rng = np.random.default_rng(0)
  n = 16000
  lengths = np.array([n, n - 3000, n - 6100, n - 9000], np.int32)
  audio = rng.integers(-3000, 3000, (4, n)).astype(np.int16)
  audio[np.arange(n)[None, :] >= lengths[:, None]] = 0
  tokens = rng.integers(3, VOCAB, (4, 7)).astype(np.int32)
  token_lengths = np.array([7, 5, 3, 6], np.int32)
  tokens[np.arange(7)[None, :] >= token_lengths[:, None]] = 0
  tokens[np.arange(4), token_lengths - 1] = 2  # EOS.
  return dict(
    audio=audio,
    audio_lengths=lengths,
    tokens=tokens,
    token_lengths=token_lengths,
  )


def _digest(tree) -> str:
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(parallel.fetch(tree)):
    h.update(np.ascontiguousarray(leaf).tobytes())
  return h.hexdigest()[:16]


def run(variant: str) -> dict:
  """Two train steps on one device; for 'las' also an eval step and greedy
  decoding (the other variants' are left out: compilations take most of
  this test's time)."""
  config = _config(variant)
  mesh = parallel.make_mesh(1)
  tx, _ = optim.make_optimizer(config.train)
  graphdef, state = create_train_state(config, VOCAB, tx, mesh)
  train_fn, eval_fn, decode_fn = steps.compile_steps(config, graphdef, tx, mesh)
  batch = parallel.global_batch(_batch(), mesh)
  out = {'loss': [], 'grad_norm': []}
  for _ in range(2):
    state, metrics = train_fn(state, batch)
    metrics = parallel.fetch(metrics)
    out['loss'].append(float(metrics['loss']).hex())
    out['grad_norm'].append(float(metrics['grad_norm']).hex())
  out['params'] = _digest(state.params)
  out['variables'] = _digest(state.variables)
  if variant != 'las':
    return out
  out['eval'] = _digest(eval_fn(state, batch))
  tokens, lengths = parallel.fetch(decode_fn(state, batch))
  out['decode'] = [
    row[:n].tolist() for row, n in zip(tokens, lengths, strict=True)
  ]
  return out


GOLDEN = {
  'las': {
    'loss': ['0x1.914a320000000p+1', '0x1.6784860000000p+1'],
    'grad_norm': ['0x1.1ba7ac0000000p+1', '0x1.90e5920000000p-1'],
    'params': 'a73e4958515b910b',
    'variables': '2dd2d4c333164406',
    'eval': 'd2eb4c2cbe29f36f',
    'decode': [[11] * n for n in (31, 26, 20, 15)],
  },
  'location': {
    'loss': ['0x1.4b80a20000000p+1', '0x1.3bdd760000000p+1'],
    'grad_norm': ['0x1.dd567c0000000p+0', '0x1.fe16020000000p-1'],
    'params': 'dc59a02cba1d68a3',
    'variables': 'cba03e9d73cd9ca2',
  },
  'ds2': {
    'loss': ['0x1.1b47c20000000p+4', '0x1.fdaf6e0000000p+3'],
    'grad_norm': ['0x1.7a5e260000000p+5', '0x1.043d400000000p+4'],
    'params': 'c50ca8d0bd27e7fd',
    'variables': '7bdc192221e50adb',
  },
}


@pytest.mark.parametrize('variant', sorted(GOLDEN))
def test_float32_bits_unchanged(variant):
  assert run(variant) == GOLDEN[variant]


if __name__ == '__main__':
  for v in ('las', 'location', 'ds2'):
    print(repr(v), ':', run(v), ',', flush=True)
