"""Training-step throughput, compile time and memory (not a test).

  JAX_PLATFORMS=cpu python benchmarks/train_bench.py \
      --config configs/default.py --steps 5 --warmup 2

Defaults match the peer benchmark of research/environment.md: batch 8 of
4 s audio (400 frames), 30-token targets, vocab 2000; the model comes from
--config (default.py is the peers' LAS: VGG, 3x BiLSTM 256, 2x LSTM 512,
4-head attention). Several audio buckets (--buckets) count compilations:
one per bucket shape, none per step.
Prints JSON: median step seconds, utterances/s, audio seconds/s, first-call
(compile) seconds per bucket, number of compilations, peak RSS.
"""

import json
import resource
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from las_jax import optim, parallel, steps
from las_jax.train_state import create_train_state

config_flags.DEFINE_config_file(
  'config', 'configs/default.py', lock_config=True
)
flags.DEFINE_integer('batch', 8, 'Global batch size.')
flags.DEFINE_list(
  'buckets', ['4.0', '3.0'], 'Audio lengths in seconds, one shape each.'
)
flags.DEFINE_integer('tokens', 30, 'Target length (EOS included).')
flags.DEFINE_integer('vocab', 2000, 'Vocabulary size.')
flags.DEFINE_integer('steps', 5, 'Timed steps per bucket.')
flags.DEFINE_integer('warmup', 2, 'Untimed steps per bucket after compiling.')
flags.DEFINE_integer('num_devices', 0, 'Mesh size (0 = all).')
FLAGS = flags.FLAGS


def _batch(batch, seconds, tokens, vocab, seed):
  rng = np.random.default_rng(seed)
  # 4 s of audio -> 1 + 64000 // 160 = 401 frames (peers use 400).
  n = int(16000 * seconds) - 160
  toks = rng.integers(4, vocab, (batch, tokens)).astype(np.int32)
  toks[:, -1] = 2
  return dict(
    audio=rng.integers(-3000, 3000, (batch, n)).astype(np.int16),
    audio_lengths=np.full(batch, n, np.int32),
    tokens=toks,
    token_lengths=np.full(batch, tokens, np.int32),
  )


def main(argv):
  del argv
  config = FLAGS.config
  compiles = []
  jax.monitoring.register_event_duration_secs_listener(
    lambda name, secs, **kw: (
      compiles.append(secs)
      if name == '/jax/core/compile/backend_compile_duration'
      else None
    )
  )
  mesh = parallel.make_mesh(FLAGS.num_devices)
  tx, _ = optim.make_optimizer(config.train)
  graphdef, state = create_train_state(config, FLAGS.vocab, tx, mesh)
  n_params = sum(x.size for x in jax.tree.leaves(state.params))
  train_fn, _, _ = steps.compile_steps(config, graphdef, tx, mesh)
  report = dict(
    device=str(jax.devices()[0].device_kind),
    devices=mesh.devices.size,
    params_millions=round(n_params / 1e6, 2),
    batch=FLAGS.batch,
    buckets={},
  )
  for i, seconds in enumerate(float(s) for s in FLAGS.buckets):
    batch = parallel.global_batch(
      _batch(FLAGS.batch, seconds, FLAGS.tokens, FLAGS.vocab, i), mesh
    )
    n_before = len(compiles)
    t0 = time.perf_counter()
    state, m = train_fn(state, batch)
    jax.block_until_ready(m)
    first = time.perf_counter() - t0
    for _ in range(FLAGS.warmup):
      state, m = train_fn(state, batch)
    jax.block_until_ready(m)
    times = []
    for _ in range(FLAGS.steps):
      t0 = time.perf_counter()
      state, m = train_fn(state, batch)
      jax.block_until_ready(m)
      times.append(time.perf_counter() - t0)
    step_s = float(np.median(times))
    report['buckets'][f'{seconds}s'] = dict(
      first_call_s=round(first, 2),
      compilations=len(compiles) - n_before,
      step_s=round(step_s, 3),
      utterances_per_s=round(FLAGS.batch / step_s, 2),
      audio_s_per_s=round(FLAGS.batch * seconds / step_s, 2),
      loss=float(parallel.fetch(m)['loss']),
    )
  report['total_compilations'] = len(compiles)
  report['peak_rss_gib'] = round(
    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2
  )
  print(json.dumps(report, indent=2))


if __name__ == '__main__':
  app.run(main)
