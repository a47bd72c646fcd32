r"""Host input pipeline: throughput per core, and cores per GPU step.

  python -m benchmarks.input_pipeline_bench [--manual_dir=data/mini_kspon] \
      [--data_dir=data/tfds_mini] [--num_workers=0,1,2] [--epochs=2] \
      [--step_seconds=S]

Generates the mini_kspon corpus first if `--manual_dir` does not exist
(`las_jax.data.make_mini_kspon`), builds its TFDS dataset, then runs the
host pipeline of `configs/kspon.py` (batch 32, its buckets, silence trimmed
by the dataset's stored spans) over the train split, once per grain worker
count (`config.input.num_workers`):

- start-up: building the iterator from the stored utterance index, and
  without it (indexing every record: the pass over the audio that the
  index saves a first training run);
- per worker count, over `--epochs` epochs after each epoch's first
  batch (worker start-up apart, reported as "first batch"): batches of
  utterances and audio-seconds per second of wall time, and per second of
  CPU time of this process and its workers together (per core);
- how many host cores keep one GPU of `configs/kspon.py` fed: a step of 32
  utterances of KsponSpeech's mean length (`--utterance_seconds`) every
  `--step_seconds`, divided by the audio-seconds one core prepares per
  second.

The host pipeline reads, cuts to the trim span, tokenizes and pads; log-mel
features are computed on the accelerator inside the train step.
"""

import gc
import os
import time

import psutil
from absl import app, flags

from configs import kspon
from las_jax import data, input_pipeline
from las_jax.data import make_mini_kspon
from las_jax.text import Vocabulary

# PLACEHOLDER until measured on a GPU: seconds per configs/kspon.py train
# step at batch 32, e.g. the float32 figure of benchmarks/device_bench.py.
_PLACEHOLDER_STEP_SECONDS = 0.5

_MANUAL_DIR = flags.DEFINE_string(
  'manual_dir', 'data/mini_kspon', 'mini_kspon corpus (made if absent).'
)
_DATA_DIR = flags.DEFINE_string('data_dir', 'data/tfds_mini', 'TFDS dir.')
_CORPUS_UTTERANCES = flags.DEFINE_integer(
  'corpus_utterances', 3000, 'Corpus size when it has to be generated.'
)
_WORKERS = flags.DEFINE_list(
  'num_workers', ['0', '1', '2'], 'config.input.num_workers values to time.'
)
_THREADS = flags.DEFINE_integer(
  'num_threads', None, 'Reader threads per process; default: the config.'
)
_EPOCHS = flags.DEFINE_integer('epochs', 2, 'Timed epochs per worker count.')
_STEP_SECONDS = flags.DEFINE_float(
  'step_seconds',
  _PLACEHOLDER_STEP_SECONDS,
  'Seconds per configs/kspon.py train step on one GPU (batch 32).',
)
_UTTERANCE_SECONDS = flags.DEFINE_float(
  'utterance_seconds',
  5.6,
  'Mean KsponSpeech utterance length in seconds (969 h / 622,545 '
  'utterances, Bang et al. 2020).',
)


def _cpu_seconds(process: psutil.Process) -> float:
  """CPU time of `process` and all its children, live or reaped."""
  times = process.cpu_times()
  total = times.user + times.system + times.children_user
  total += times.children_system
  for child in process.children(recursive=True):
    try:
      times = child.cpu_times()
    except psutil.NoSuchProcess:  # Reaped meanwhile: in children_* next.
      continue
    total += times.user + times.system
  return total


def _time_epochs(it, epochs: int, sample_rate: int) -> dict[str, float]:
  """Wall and CPU seconds, utterances and audio seconds after each epoch's
  first batch, and the mean wait for that first batch."""
  me = psutil.Process()
  totals = dict(wall=0.0, cpu=0.0, utts=0, audio_s=0.0, first=0.0)
  for epoch in range(epochs):
    it.set_state({'epoch': epoch, 'position': 0})
    batches = len(it.epoch_plan(epoch))
    start = time.perf_counter()
    next(it)
    totals['first'] += (time.perf_counter() - start) / epochs
    wall, cpu = time.perf_counter(), _cpu_seconds(me)
    for _ in range(batches - 1):
      batch = next(it)
      totals['utts'] += int((batch['audio_lengths'] > 0).sum())
      totals['audio_s'] += batch['audio_lengths'].sum() / sample_rate
    totals['wall'] += time.perf_counter() - wall
    totals['cpu'] += _cpu_seconds(me) - cpu
  return totals


def main(argv):
  del argv
  if not os.path.isdir(_MANUAL_DIR.value):
    make_mini_kspon.make_mini_kspon(_MANUAL_DIR.value, _CORPUS_UTTERANCES.value)
  builder = data.build_dataset(
    'ksponspeech', _DATA_DIR.value, _MANUAL_DIR.value
  )
  source = builder.as_data_source('train')
  config = kspon.get_config()
  if _THREADS.value is not None:
    config.input.num_threads = _THREADS.value
  sr = config.features.sample_rate

  start = time.perf_counter()
  index = data.read_index(builder.data_dir, 'train')
  vocab = Vocabulary.build(index.texts)
  input_pipeline.make_train_iterator(source, vocab, config, index=index)
  stored = time.perf_counter() - start
  start = time.perf_counter()
  input_pipeline.make_train_iterator(source, vocab, config)
  measured = time.perf_counter() - start
  hours = index.num_samples.sum() / sr / 3600
  print(
    f'{len(source)} train utterances, {hours:.2f} h; configs/kspon.py input '
    f'(batch {config.input.batch_size}, {config.input.num_threads} reader '
    f'threads per process), {psutil.cpu_count()} host cores'
  )
  print(
    f'start-up: iterator from the stored index (vocabulary included) '
    f'{stored:.2f} s; indexing every record instead {measured:.1f} s '
    f'({len(source) / measured:.0f} utterances/s)'
  )
  print(
    'workers  utt/s  audio-s/s  cores busy  utt/core-s  audio-s/core-s  '
    'first batch'
  )
  rates = {}
  for workers in map(int, _WORKERS.value):
    config.input.num_workers = workers
    it = input_pipeline.make_train_iterator(source, vocab, config, index=index)
    t = _time_epochs(it, _EPOCHS.value, sr)
    del it  # Stops its worker processes before the next count starts.
    gc.collect()
    rates[workers] = t['audio_s'] / t['cpu']
    print(
      f'{workers:7d}  {t["utts"] / t["wall"]:5.0f}  '
      f'{t["audio_s"] / t["wall"]:9.0f}  {t["cpu"] / t["wall"]:10.2f}  '
      f'{t["utts"] / t["cpu"]:10.0f}  {rates[workers]:14.0f}  '
      f'{t["first"]:9.2f} s'
    )
  step_audio_s = config.input.batch_size * _UTTERANCE_SECONDS.value
  need = step_audio_s / _STEP_SECONDS.value
  placeholder = (
    ''
    if flags.FLAGS['step_seconds'].present
    else ' (a placeholder: pass --step_seconds measured on the GPU)'
  )
  print(
    f'One GPU at {_STEP_SECONDS.value:g} s per configs/kspon.py step'
    f'{placeholder} consumes {config.input.batch_size} x '
    f'{_UTTERANCE_SECONDS.value:g} s = {step_audio_s:.0f} audio-s per step, '
    f'{need:.0f} audio-s/s; host cores that keep it fed:'
  )
  for workers, rate in rates.items():
    print(f'  num_workers={workers}: {need / rate:.2f}')


if __name__ == '__main__':
  app.run(main)
