r"""Input-pipeline throughput: raw TFDS records -> featurized device batches.

  python -m benchmarks.input_pipeline_bench [--manual_dir=data/mini_kspon] \
      [--data_dir=data/tfds_mini] [--batch_size=32] [--passes=3]

Generates the mini_kspon corpus first if `--manual_dir` does not exist
(`las_jax.data.make_mini_kspon`), builds its TFDS dataset, then times full
epochs over the train split: the host pipeline alone (read, trim, tokenize,
bucket, pad) and end to end (plus `device_put` and the jitted `featurize`
with augmentation, `block_until_ready`). A warm-up epoch compiles every
bucket first; figures are medians over `--passes` epochs.
"""

import os
import statistics
import time

import jax
import numpy as np
from absl import app, flags

from configs import default
from las_jax import features, input_pipeline
from las_jax.data import common, make_mini_kspon
from las_jax.text import Vocabulary

_MANUAL_DIR = flags.DEFINE_string(
  'manual_dir', 'data/mini_kspon', 'mini_kspon corpus (made if absent).'
)
_DATA_DIR = flags.DEFINE_string('data_dir', 'data/tfds_mini', 'TFDS dir.')
_CORPUS_UTTERANCES = flags.DEFINE_integer(
  'corpus_utterances', 600, 'Corpus size when it has to be generated.'
)
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 32, 'Global batch size.')
_PASSES = flags.DEFINE_integer('passes', 3, 'Timed epochs (median).')
_THREADS = flags.DEFINE_integer('num_threads', 2, 'Reader threads.')
_WORKERS = flags.DEFINE_integer('num_workers', 0, 'Worker processes.')
_TRIM = flags.DEFINE_bool('trim_silence', True, 'Trim silence on the host.')


def _epoch(it, per_epoch, device_fn=None):
  """Runs one epoch; returns (seconds, utterances, audio seconds)."""
  start, utts, samples = time.perf_counter(), 0, 0
  for _ in range(per_epoch):
    batch = next(it)
    utts += int((batch['audio_lengths'] > 0).sum())
    samples += int(batch['audio_lengths'].sum())
    if device_fn is not None:
      audio, lengths = jax.device_put((batch['audio'], batch['audio_lengths']))
      jax.block_until_ready(device_fn(audio, lengths))
  return time.perf_counter() - start, utts, samples


def main(argv):
  del argv
  if not os.path.isdir(_MANUAL_DIR.value):
    make_mini_kspon.make_mini_kspon(_MANUAL_DIR.value, _CORPUS_UTTERANCES.value)
  builder = common.build_dataset(
    'ksponspeech', _DATA_DIR.value, _MANUAL_DIR.value
  )
  source = builder.as_data_source('train')
  vocab = Vocabulary.build(
    source[i]['text'].decode() for i in range(len(source))
  )
  config = default.get_config()
  config.input.batch_size = _BATCH_SIZE.value
  config.input.num_threads = _THREADS.value
  config.input.num_workers = _WORKERS.value
  config.input.trim_silence = _TRIM.value
  sr = config.features.sample_rate

  start = time.perf_counter()
  it = input_pipeline.make_train_iterator(source, vocab, config)
  print(
    f'{len(source)} train utterances; length scan + planning '
    f'{time.perf_counter() - start:.2f} s; {it.stats}'
  )
  key = jax.random.key(0)
  featurize = jax.jit(
    lambda audio, lengths: features.featurize(
      key, audio, lengths, config.features, train=True
    )
  )
  device = jax.devices()[0]
  print(f'device: {device.platform} {device.device_kind}')
  for name, fn in (('host pipeline', None), ('end to end', featurize)):
    times, utts, samples = [], 0, 0
    for p in range(_PASSES.value + 1):  # Pass 0 warms up and compiles.
      it.set_state({'epoch': p, 'position': 0})
      seconds, utts, samples = _epoch(it, len(it.epoch_plan(p)), fn)
      if p:
        times.append(seconds)
    t = statistics.median(times)
    print(
      f'{name:14s}: {utts / t:8.1f} utterances/s, '
      f'{samples / sr / t:8.1f} audio-s/s (median of {len(times)} epochs '
      f'of {utts} utts, {samples / sr:.0f} s, {np.round(times, 2)} s)'
    )


if __name__ == '__main__':
  app.run(main)
