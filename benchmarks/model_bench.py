"""Forward+backward time and peak memory of LAS on the peers' benchmark.

  JAX_PLATFORMS=cpu PYTHONPATH=. python benchmarks/model_bench.py

Configuration (research/environment.md): batch 8 x 400 frames of 80 log-mel,
30-token targets, VGG + 3 x BiLSTM 256 + 2 x LSTM 512 decoder, 4-head
attention, vocab 2000, non-pyramidal (as the peers), then the pyramidal
variant. Prints the median of 5 steps after 2 warm-ups. Peak memory is the
process's max RSS on CPU (taken right after the first configuration), the
device's peak bytes in use elsewhere.

Then, for the benchmark configuration, the same for each part alone (each
jitted on its own, gradients of its parameters under a random cotangent):
the VGG extractor, the BiLSTM stack and the speller, forward and
forward+backward, measured in rounds that alternate the parts so machine
load hits them alike. On a shared CPU compare ratios within one run.

glibc's malloc returns large buffers to the kernel after every step, and
page faults then cost up to a third of a CPU step here. The peers' "tuned
malloc" figures use MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736;
for XLA add MALLOC_ARENA_MAX=1 MALLOC_TOP_PAD_=1073741824 (its buffers are
allocated from worker threads' arenas otherwise). The settings in effect
are printed.
"""

import os
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
from las_jax.models.masking import sequence_mask

BATCH, FRAMES, TOKENS, VOCAB = 8, 400, 30, 2000
RUNS, WARMUP = 5, 2
MALLOC_VARS = (
  'MALLOC_MMAP_MAX_',
  'MALLOC_TRIM_THRESHOLD_',
  'MALLOC_ARENA_MAX',
  'MALLOC_TOP_PAD_',
)


def inputs():
  keys = jax.random.split(jax.random.key(0), 3)
  feats = jax.random.normal(keys[0], (BATCH, FRAMES, 80))
  lengths = jnp.full((BATCH,), FRAMES, jnp.int32).at[1:].add(-40)
  tokens = jax.random.randint(keys[1], (BATCH, TOKENS), 3, VOCAB)
  return feats, lengths, tokens


def fwd_bwd_fn(module, loss_fn):
  """Jitted (params, rest, *args) -> (loss, grads) of `loss_fn(module, ...)`.

  split/merge inside jit (flax's gemma pattern): batch-norm statistics and
  RNG counters are updated in place and stay inside.
  """
  graphdef, params, rest = nnx.split(module, nnx.Param, ...)

  @jax.jit
  def fn(params, rest, *args):
    model = nnx.merge(graphdef, params, rest)
    return nnx.value_and_grad(lambda m: loss_fn(m, *args))(model)

  return fn, (params, rest)


def fwd_fn(module, out_fn):
  graphdef, params, rest = nnx.split(module, nnx.Param, ...)

  @jax.jit
  def fn(params, rest, *args):
    return out_fn(nnx.merge(graphdef, params, rest), *args)

  return fn, (params, rest)


def run_rounds(calls: dict, runs: int = RUNS, warmup: int = WARMUP):
  """Median seconds per call; rounds alternate the calls."""
  for call in calls.values():
    for _ in range(warmup):
      jax.block_until_ready(call())
  times = {name: [] for name in calls}
  for _ in range(runs):
    for name, call in calls.items():
      start = time.perf_counter()
      jax.block_until_ready(call())
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times.items()}


def bench(pyramid_layers: tuple[int, ...]) -> None:
  config = default.get_config().model
  config.pyramid_layers = pyramid_layers
  model = build_model(config, VOCAB, nnx.Rngs(0))
  feats, lengths, tokens = inputs()

  def loss_fn(model):
    out = model(feats, lengths, tokens, train=True)
    ce = optax.softmax_cross_entropy_with_integer_labels(
      out['logits_BxLxV'], tokens
    )
    return ce.mean()

  fn, state = fwd_bwd_fn(model, loss_fn)
  start = time.perf_counter()
  loss, _ = jax.block_until_ready(fn(*state))
  compile_s = time.perf_counter() - start
  step_s = run_rounds({'step': lambda: fn(*state)})['step']
  device = jax.devices()[0]
  if device.platform == 'cpu':
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  else:
    peak = device.memory_stats()['peak_bytes_in_use'] / 2**30
  print(
    f'pyramid_layers={pyramid_layers!s:6}'
    f' params={count_params(model) / 1e6:.2f}M'
    f' fwd+bwd median={step_s:.3f}s (first call {compile_s:.1f}s)'
    f' peak_mem={peak:.2f}GiB ({device.platform}) loss={float(loss):.3f}',
    flush=True,
  )


def bench_parts() -> None:
  """Per-part forward and forward+backward times (benchmark config)."""
  config = default.get_config().model
  model = build_model(config, VOCAB, nnx.Rngs(0))
  feats, lengths, tokens = inputs()
  vgg = model.listener.extractor
  x_BxSxD, s_lengths = vgg(feats, lengths, train=True)

  def rnn_stack(layers, x, lens):
    for layer in layers:
      x = layer(x, lens)
    return x

  rnns = model.listener.layers
  enc = rnn_stack(rnns, x_BxSxD, s_lengths)
  mask = sequence_mask(s_lengths, enc.shape[1])
  parts = {
    'vgg': (vgg, lambda m, f, n: m(f, n, train=True)[0], (feats, lengths)),
    'bilstm x3': (rnns, rnn_stack, (x_BxSxD, s_lengths)),
    'speller': (
      model.speller,
      lambda m, e, k, t: m(e, k, t, train=True)[0],
      (enc, mask, tokens),
    ),
  }
  calls = {}
  key = jax.random.key(1)
  for name, (module, out_fn, args) in parts.items():
    f, state = fwd_fn(module, out_fn)
    cot = 1e-3 * jax.random.normal(key, jax.eval_shape(f, *state, *args).shape)
    fb, fb_state = fwd_bwd_fn(
      module, lambda m, c, *a, out_fn=out_fn: jnp.sum(out_fn(m, *a) * c)
    )
    calls[f'{name} fwd'] = lambda f=f, s=state, a=args: f(*s, *a)
    calls[f'{name} fwd+bwd'] = lambda f=fb, s=fb_state, c=cot, a=args: f(
      *s, c, *a
    )
  times = run_rounds(calls)
  total = sum(t for name, t in times.items() if name.endswith('fwd+bwd'))
  for name, t in times.items():
    print(f'  {name:20s} median {t:.3f}s', flush=True)
  print(f'  {"sum of fwd+bwd":20s} {total:.3f}s', flush=True)


if __name__ == '__main__':
  sys.stdout.reconfigure(line_buffering=True)
  env = {v: os.environ[v] for v in MALLOC_VARS if v in os.environ}
  print(
    f'jax {jax.__version__}, {jax.devices()[0].device_kind}, '
    f'{os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}, '
    f'malloc settings: {env or "glibc defaults"}'
  )
  bench(())
  bench((1,))
  print('per part (benchmark config, pyramid_layers=()):')
  bench_parts()
