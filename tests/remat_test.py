"""Rematerialization (config.train.remat): the same gradients and batch
statistics, with every extractor block and recurrent layer recomputed in
the backward pass, and less memory.

XLA:CPU removes the optimization barriers that keep a recomputation apart
from the forward pass before merging common subexpressions, so on CPU
remat changes nothing unless that pass is turned off (as
benchmarks/memory_bench.py does); GPU and TPU keep the barriers.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from las_jax.models import build_model, execution
from tests.models_test import tiny_model_config

VARIANTS = {
  'las': dict(input_dim=32, vgg_channels=(8, 16), ctc_weight=0.3),
  'ds2': dict(name='deepspeech2', extractor='ds2', input_dim=32),
}


def _grad_fn(variant, policy):
  model = build_model(tiny_model_config(**VARIANTS[variant]), 13, nnx.Rngs(0))
  execution.set_remat(model, policy)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  keys = jax.random.split(jax.random.key(0), 2)
  feats = jax.random.normal(keys[0], (4, 200, 32))
  lengths = jnp.array([200, 150, 120, 77], jnp.int32)
  tokens = jax.random.randint(keys[1], (4, 9), 3, 13)

  def loss(model):
    if variant == 'ds2':
      out = model(feats, lengths, train=True)
      return jnp.sum(jnp.sin(out['ctc_logits_BxSxV']))
    out = model(feats, lengths, tokens, train=True)
    return jnp.sum(jnp.sin(out['logits_BxLxV'])) + jnp.sum(
      jnp.sin(out['ctc_logits_BxSxV'])
    )

  @jax.jit
  def grads(params, rest):
    model = nnx.merge(graphdef, params, rest)
    g = nnx.grad(loss)(model)
    return g, nnx.state(model, nnx.BatchStat)

  return grads, (params, rest)


@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_remat_keeps_gradients_and_recomputes_every_block(variant):
  plain, args = _grad_fn(variant, 'none')
  remat, _ = _grad_fn(variant, 'nothing_saveable')
  want, got = plain(*args), remat(*args)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
  # One barrier per rematerialized block: VGG's 4 conv blocks and 2 BiLSTM
  # layers; DeepSpeech2's 2 conv blocks and 2 BN-ReLU-BiRNN layers.
  barriers = [
    f.trace(*args)
    .lower(lowering_platforms=('cuda',))
    .as_text()
    .count('stablehlo.optimization_barrier')
    for f in (plain, remat)
  ]
  assert barriers == [0, 6 if variant == 'las' else 4]
  # With the barriers kept (GPU and TPU do), less temporary memory.
  options = {'xla_disable_hlo_passes': 'cse_barrier_expander'}
  temp = [
    f.lower(*args)
    .compile(compiler_options=options)
    .memory_analysis()
    .temp_size_in_bytes
    for f in (plain, remat)
  ]
  assert temp[1] < 0.8 * temp[0], temp
