"""bfloat16 mixed precision (config.train.compute_dtype).

The overfit tests (overfit_test.py) run in bfloat16 too; float32's bits
are pinned by float32_golden_test.py.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import tiny
from las_jax import optim, parallel, steps
from las_jax.models import build_model, execution
from las_jax.train_state import create_train_state
from tests.models_test import batch, tiny_model_config

VARIANTS = {
  'las': dict(ctc_weight=0.3),
  'location': dict(attention='location', input_feeding=True),
  'ds2': dict(name='deepspeech2', extractor='ds2', encoder_rnn_type='gru'),
}


@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_gpu_and_tpu_run_every_matmul_and_conv_in_bfloat16(variant):
  # Forward and backward, as lowered for GPU (the CPU kernels' backward
  # passes compute in float32); parameters, their gradients and the
  # outputs the losses read stay float32.
  model = build_model(tiny_model_config(**VARIANTS[variant]), 13, nnx.Rngs(0))
  execution.set_compute_dtype(model, 'bfloat16')
  feats, lengths, tokens = batch()[:3]
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  outputs = {}

  def loss(model):
    if variant == 'ds2':
      out = model(feats, lengths, train=True)
    else:
      out = model(feats, lengths, tokens, train=True)
    outputs.update(out)
    logits = out['ctc_logits_BxSxV' if variant == 'ds2' else 'logits_BxLxV']
    return jnp.sum(logits**2)

  def grads(params, rest):
    return nnx.grad(loss)(nnx.merge(graphdef, params, rest))

  traced = jax.jit(grads).trace(params, rest)
  text = traced.lower(lowering_platforms=('cuda',)).as_text()
  ops = re.findall(
    r'stablehlo\.(?:dot_general|convolution) .*? : \((.*?)\) ->', text
  )
  assert len(ops) > 10
  assert all(o.count('bf16') == 2 for o in ops), ops
  for name, value in outputs.items():
    if value is not None and name != 'enc_lengths_B':
      assert value.dtype == jnp.float32, name
  assert {x.dtype for x in jax.tree.leaves(traced.out_info)} == {
    np.dtype('float32')
  }


def _losses(compute_dtype):
  """30 steps of the real train step on one batch."""
  config = tiny.get_config()
  config.features.num_mels = 16
  config.model.input_dim = 16
  config.model.vgg_channels = (4, 8)
  config.model.ctc_weight = 0.3
  config.train.lr_schedule = 'constant'
  config.train.peak_lr = 3e-3
  config.train.compute_dtype = compute_dtype
  mesh = parallel.make_mesh(1)
  tx, _ = optim.make_optimizer(config.train)
  graphdef, state = create_train_state(config, 12, tx, mesh)
  train_fn, _, _ = steps.compile_steps(config, graphdef, tx, mesh)
  rng = np.random.default_rng(0)
  lengths = np.array([12000, 10000, 9900, 8000], np.int32)
  audio = rng.integers(-3000, 3000, (4, 12000)).astype(np.int16)
  audio[np.arange(12000)[None, :] >= lengths[:, None]] = 0
  tokens = rng.integers(3, 12, (4, 6)).astype(np.int32)
  tokens[:, -1] = 2
  data = parallel.global_batch(
    dict(
      audio=audio,
      audio_lengths=lengths,
      tokens=tokens,
      token_lengths=np.full(4, 6, np.int32),
    ),
    mesh,
  )
  losses = []
  for _ in range(30):
    state, metrics = train_fn(state, data)
    losses.append(float(parallel.fetch(metrics)['loss']))
  dtypes = {x.dtype for x in jax.tree.leaves((state.params, state.opt_state))}
  return np.array(losses), dtypes


def test_bfloat16_loss_falls_like_float32():
  want, _ = _losses('float32')
  got, dtypes = _losses('bfloat16')
  # Parameters and Adam's moments stay float32 (plus Adam's int32 count).
  assert dtypes == {np.dtype('float32'), np.dtype('int32')}
  assert got[-1] < 0.7 * got[0]
  np.testing.assert_allclose(got, want, rtol=0.03)


def test_unknown_compute_dtype_and_remat_policy_are_named():
  model = build_model(tiny_model_config(), 13, nnx.Rngs(0))
  with pytest.raises(ValueError, match="compute_dtype: unknown .* 'float16'"):
    execution.set_compute_dtype(model, 'float16')
  with pytest.raises(ValueError, match="train.remat: unknown .* 'full'"):
    execution.set_remat(model, 'full')
