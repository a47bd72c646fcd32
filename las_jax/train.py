"""The training loop: `train_and_evaluate(config, workdir)`.

One call prepares everything from `config` and trains, resuming from the
workdir's latest checkpoint when there is one:

1. the TFDS dataset of `config.data` (built once, reused afterwards);
2. the vocabulary, built from the train split's transcripts on the first
   run and saved as workdir/vocab.txt, loaded from there on resumption;
3. per-host input iterators (`input_pipeline`), whose position is saved
   with every checkpoint so a resumed run sees the same batches;
4. the replicated state and the compiled steps (`train_state`, `steps`);
5. the loop: a tqdm bar, metrics to JSONL and TensorBoard every
   `log_every` steps, dev loss/CER and alignment plots every `eval_every`
   steps and at the end (`evaluate`), checkpoints every `checkpoint_every`
   steps, at the end and on SIGTERM/SIGINT (`checkpoint`).

A run killed at any point reruns cleanly with the same command: at a step
that has both, the evaluation (and its best-checkpoint save) comes before
the checkpoint, so a checkpoint at step s means everything due at s is
done, and a rerun resumes after it (a finished run exits at once); a rerun
that repeats an evaluation finds its best checkpoint saved already
(`Checkpointer` saves are idempotent).
"""

import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from las_jax import (
  checkpoint,
  data,
  input_pipeline,
  lm_data,
  logging_utils,
  optim,
  parallel,
  run_layout,
  steps,
)
from las_jax import evaluate as eval_lib
from las_jax.text import Vocabulary
from las_jax.train_state import (
  TrainState,
  abstract_checkpointed,
  create_train_state,
)

__all__ = ['TrainState', 'create_train_state', 'train_and_evaluate']


class _Head(Sequence):
  """The first `n` records of a random-access source (dev subsets)."""

  def __init__(self, source: Sequence, n: int):
    self._source, self._n = source, min(n, len(source)) if n else len(source)

  def __len__(self) -> int:
    return self._n

  def __getitem__(self, index: int):
    if not -self._n <= index < self._n:
      raise IndexError(index)
    return self._source[index % self._n]


def load_or_build_vocabulary(
  config: ml_collections.ConfigDict, workdir: Path, train_texts: Sequence[str]
) -> Vocabulary:
  """workdir/vocab.txt if present, else `config.data.vocab_from`'s, else
  built from the train transcripts.

  Every process builds the same vocabulary (the build is deterministic);
  process 0 writes it, atomically, so a later resumption loads it.

  Raises:
    ValueError: the saved vocabulary's unit is not `config.data.vocab_unit`.
  """
  path = workdir / run_layout.VOCAB_FILE
  unit = config.data.vocab_unit
  if config.data.vocab_from:
    source = Path(config.data.vocab_from) / run_layout.VOCAB_FILE
    if not source.is_file():
      raise FileNotFoundError(
        f'config.data.vocab_from: {source} not found; give the run '
        'directory of the recognizer whose vocabulary this run shares'
      )
    vocab = Vocabulary.load(source)
    if path.exists() and Vocabulary.load(path) != vocab:
      raise ValueError(
        f'{path} differs from {source} (config.data.vocab_from); use a new '
        '--workdir or the original vocab_from'
      )
    unit = vocab.unit
  if path.exists():
    vocab = Vocabulary.load(path)
    if vocab.unit != unit:
      raise ValueError(
        f'{path} has unit {vocab.unit!r} but config.data.vocab_unit is '
        f'{unit!r}; use a new --workdir or the original config'
      )
    return vocab
  if config.data.vocab_from:
    logging.info('Vocabulary %r from %s.', vocab, config.data.vocab_from)
  else:
    start = time.time()
    vocab = Vocabulary.build(train_texts, unit, config.data.vocab_max_size)
    logging.info(
      'Built %r from %d transcripts in %.1f s.',
      vocab,
      len(train_texts),
      time.time() - start,
    )
  if jax.process_index() == 0:
    tmp = path.with_suffix('.tmp')
    vocab.save(tmp)
    os.replace(tmp, path)
  return vocab


def _check_resumable(
  ckpt: checkpoint.Checkpointer, workdir: Path, vocab: Vocabulary
) -> None:
  """Refuses a workdir whose checkpoints were trained on another vocab."""
  saved = ckpt.restore_run_info()['vocab']
  if saved != vocab.to_dict():
    raise ValueError(
      f'{workdir / run_layout.VOCAB_FILE} differs from the vocabulary of the '
      f'checkpoint at step {ckpt.latest_step()}; restore the original '
      'vocab.txt or use a new --workdir'
    )


class _StopFlag:
  """Set by SIGTERM/SIGINT; the loop checkpoints and exits at a step end."""

  def __init__(self):
    self.requested = False
    self._previous = {}

  def _handler(self, signum, frame):
    del frame
    logging.warning('Signal %d: saving a checkpoint and stopping.', signum)
    self.requested = True

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handler)
      except ValueError:  # Not the main thread: leave signals alone.
        pass
    return self

  def __exit__(self, *exc):
    for sig, previous in self._previous.items():
      signal.signal(sig, previous)


def _train_metrics(fetched: list[dict[str, Any]], elapsed: float):
  mean = {
    f'train/{k}': float(np.mean([m[k] for m in fetched]))
    for k in ('loss', 'ce', 'ctc', 'accuracy', 'grad_norm')
  }
  mean['train/teacher_forcing'] = float(fetched[-1]['teacher_forcing'])
  utts = sum(float(m['utterances']) for m in fetched)
  mean['train/utterances_per_s'] = utts / elapsed
  mean['train/audio_s_per_s'] = (
    sum(float(m['audio_seconds']) for m in fetched) / elapsed
  )
  return mean


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str | os.PathLike
) -> TrainState:
  """Trains (resuming from workdir's latest checkpoint) and evaluates.

  Args:
    config: the full configuration (configs/default.py).
    workdir: run directory: checkpoints, config.json, vocab.txt,
      metrics.jsonl, tensorboard/, plots/ and curves.png.

  Returns:
    The final training state.

  Raises:
    ValueError: the workdir holds a run with another architecture or
      vocabulary (the message names what differs).
  """
  tcfg = config.train
  workdir = Path(workdir).absolute()
  parallel.initialize_distributed(tcfg.distributed)
  mesh = parallel.make_mesh(tcfg.num_devices)
  workdir.mkdir(parents=True, exist_ok=True)
  run_layout.check_or_write_config(workdir, config)

  dcfg = config.data
  builder = data.build_dataset(
    dcfg.dataset, dcfg.data_dir, dcfg.manual_dir, dcfg.transcription
  )
  train_source = builder.as_data_source(dcfg.train_split)
  train_index = data.read_index(builder.data_dir, dcfg.train_split)
  vocab = load_or_build_vocabulary(config, workdir, train_index.texts)
  ckpt = checkpoint.Checkpointer(
    workdir,
    tcfg.keep_checkpoints,
    tcfg.async_checkpointing,
    run_info=dict(
      config=run_layout.config_to_dict(config),
      vocab=vocab.to_dict(),
    ),
  )
  if ckpt.latest_step() is not None:
    _check_resumable(ckpt, workdir, vocab)

  hosts = dict(
    process_index=jax.process_index(), process_count=jax.process_count()
  )
  # Each host's rows must be exactly its devices' share of the batch.
  parallel.host_batch_size(config.input.batch_size, mesh)
  parallel.host_batch_size(config.input.eval_batch_size, mesh)
  if steps.is_language_model(config):
    train_iter, dev_iter = lm_data.make_iterators(
      builder, vocab, config, **hosts
    )
  else:
    train_iter = input_pipeline.make_train_iterator(
      train_source, vocab, config, index=train_index, seed=config.seed, **hosts
    )
    dev_index = data.read_index(builder.data_dir, dcfg.dev_split)
    dev_iter = input_pipeline.make_eval_iterator(
      _Head(builder.as_data_source(dcfg.dev_split), tcfg.eval_utterances),
      vocab,
      config,
      index=dev_index.head(tcfg.eval_utterances),
      **hosts,
    )
  fields = steps.device_fields(config)

  tx, lr_schedule = optim.make_optimizer(tcfg)
  graphdef, state = create_train_state(config, len(vocab), tx, mesh)
  train_fn, evaluate_fn, decode_fn = steps.compile_steps(
    config, graphdef, tx, mesh
  )
  if ckpt.latest_step() is not None:
    saved, data_state = ckpt.restore(abstract_checkpointed(state))
    state = state.with_checkpointed(saved)
    train_iter.set_state(data_state)
  step = int(parallel.fetch(state.step))

  writer = logging_utils.MetricWriter(workdir)
  progress = logging_utils.Progress(step, tcfg.num_steps, tcfg.progress_bar)
  if step >= tcfg.num_steps:
    progress.write(f'{workdir} finished at step {step}: nothing to do.')
  elif step:
    progress.write(f'Resumed from step {step}.')

  def save():
    ckpt.save(step, state.checkpointed(), train_iter.get_state())

  def run_eval():
    results, examples = eval_lib.evaluate(
      state,
      dev_iter,
      evaluate_fn,
      decode_fn,
      mesh,
      vocab,
      steps.ctc_weight(config),
      fields,
    )
    ckpt.save_best(
      step,
      state.checkpointed(),
      train_iter.get_state(),
      results[eval_lib.best_metric(config)],
    )
    writer.scalars(step, results)
    eval_lib.write_eval_outputs(
      writer, workdir, step, examples, tcfg.plot_utterances
    )
    progress.write(
      f'step {step}: '
      + ', '.join(f'{k} {v:.4g}' for k, v in sorted(results.items()))
    )

  pending, t0 = [], time.perf_counter()
  with _StopFlag() as stop:
    while step < tcfg.num_steps and not stop.requested:
      local = next(train_iter)
      batch = parallel.global_batch({k: local[k] for k in fields}, mesh)
      state, step_metrics = train_fn(state, batch)
      step += 1
      pending.append(step_metrics)
      if step % tcfg.log_every == 0 or step == tcfg.num_steps:
        fetched = parallel.fetch(pending)
        metrics = _train_metrics(fetched, time.perf_counter() - t0)
        metrics['train/lr'] = float(lr_schedule(step - 1))
        metrics['train/skipped_steps'] = int(parallel.fetch(state.skipped))
        writer.scalars(step, metrics)
        shown = dict(loss=metrics['train/loss'], lr=metrics['train/lr'])
        if config.model.name == 'las':  # Scheduled sampling.
          shown['tf'] = metrics['train/teacher_forcing']
        unit = 'sent_s' if steps.is_language_model(config) else 'utt_s'
        shown[unit] = metrics['train/utterances_per_s']
        progress.update(len(fetched), **shown)
        pending, t0 = [], time.perf_counter()
      last = step == tcfg.num_steps
      # Evaluation first: a checkpoint at a step implies its evaluation.
      if last or (tcfg.eval_every and step % tcfg.eval_every == 0):
        run_eval()
      if last or (tcfg.checkpoint_every and step % tcfg.checkpoint_every == 0):
        save()
    if stop.requested:
      save()
  ckpt.close()
  progress.close()
  writer.close()
  return state
