"""Forward+backward time and peak memory of LAS on the peers' benchmark.

  JAX_PLATFORMS=cpu PYTHONPATH=. python benchmarks/model_bench.py

Configuration (research/environment.md): batch 8 x 400 frames of 80 log-mel,
30-token targets, VGG + 3 x BiLSTM 256 + 2 x LSTM 512 decoder, 4-head
attention, vocab 2000, non-pyramidal (as the peers), then the pyramidal
variant. Prints the median of 5 steps after 2 warm-ups. Peak memory is the
process's max RSS on CPU, the device's peak bytes in use elsewhere.
"""

import resource
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from configs import default
from las_jax.models import build_model, count_params

BATCH, FRAMES, TOKENS, VOCAB = 8, 400, 30, 2000


def bench(pyramid_layers: tuple[int, ...]) -> None:
  config = default.get_config().model
  config.pyramid_layers = pyramid_layers
  model = build_model(config, VOCAB, nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  keys = jax.random.split(jax.random.key(0), 3)
  feats = jax.random.normal(keys[0], (BATCH, FRAMES, 80))
  lengths = jnp.full((BATCH,), FRAMES, jnp.int32).at[1:].add(-40)
  tokens = jax.random.randint(keys[1], (BATCH, TOKENS), 3, VOCAB)

  @jax.jit
  def fwd_bwd(params, rest):
    # split/merge inside jit (flax's gemma pattern): batch-norm statistics
    # are updated in place and come back as state.
    model = nnx.merge(graphdef, params, rest)

    def loss_fn(model):
      out = model(feats, lengths, tokens, train=True)
      ce = optax.softmax_cross_entropy_with_integer_labels(
        out['logits_BxLxV'], tokens
      )
      return ce.mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    return loss, grads, nnx.state(model, nnx.Not(nnx.Param))

  times = []
  for i in range(7):
    start = time.perf_counter()
    loss, grads, rest = jax.block_until_ready(fwd_bwd(params, rest))
    if i >= 2:
      times.append(time.perf_counter() - start)
  device = jax.devices()[0]
  if device.platform == 'cpu':
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  else:
    peak = device.memory_stats()['peak_bytes_in_use'] / 2**30
  print(
    f'pyramid_layers={pyramid_layers!s:6}'
    f' params={count_params(model) / 1e6:.2f}M'
    f' fwd+bwd median={statistics.median(times):.3f}s'
    f' min={min(times):.3f}s max={max(times):.3f}s'
    f' peak_mem={peak:.2f}GiB ({device.platform}) loss={float(loss):.3f}',
    flush=True,
  )


if __name__ == '__main__':
  sys.stdout.reconfigure(line_buffering=True)
  bench(())
  bench((1,))
