"""Input pipeline: records -> fixed-shape, length-bucketed host batches.

Records are dicts with `id`, `audio` (int16 [N]), `text` (normalized) and
`raw_text`, from any random-access source: a TFDS array_record data source
(`builder.as_data_source(split)`) or a plain list of such dicts. Batches
are planned from the source's utterance index (`las_jax.data`): ids,
transcripts, sample counts and silence-trim spans.

Every batch has one of a FIXED set of shapes, so a jitted step compiles at
most once per (audio bucket, token bucket) pair:
  audio          int16 [B, N_bucket]   waveform, 0-padded
  audio_lengths  int32 [B]             valid samples; 0 marks a padding row
  tokens         int32 [B, L_bucket]   token ids then EOS, 0-padded
  token_lengths  int32 [B]             including the EOS
  ids, texts     str   [B]             host-only (never put on device)
B is the per-host batch (`config.input.batch_size / process_count`).

How batches are formed (deterministic, so resuming is exact):
1. Each utterance's audio length (its trim span with
   `config.input.trim_silence`, else all of it) and token count come from
   the utterance index: the one the dataset builders stored, or, for
   sources without one and for trimming settings other than the stored
   ones, an index made by reading every record (one pass over the audio).
   Training drops utterances longer than the largest bucket, counting and
   logging them; evaluation keeps everything by adding one extra bucket.
2. Per epoch the kept indices are shuffled with (seed, epoch) and dealt into
   per-bucket queues; a bucket emits a GLOBAL batch whenever it fills. At
   the epoch's end the leftovers, sorted by bucket, are cut into batches that
   take the largest bucket among their members; the last one is padded with
   padding rows. Each host takes its own slice of rows of every global batch,
   so all hosts step through the same shapes and the hosts' shards are
   disjoint and cover the epoch.
3. Batches are loaded (read, cut to the span, tokenize, pad) by grain, with
   reader threads and worker processes. The iterator's state is just
   (epoch, batches yielded in it): JSON-serializable for orbax.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from las_jax import audio as audio_lib
from las_jax.data.utterance_index import UtteranceIndex, record_fields
from las_jax.text import Vocabulary

# Eval overflow buckets are rounded up to these granularities.
_EVAL_AUDIO_ROUND_S = 1.0
_EVAL_TOKEN_ROUND = 16


def utterance_index(
  source: Sequence[dict[str, Any]],
  index: UtteranceIndex | None,
  config: ml_collections.ConfigDict,
) -> UtteranceIndex:
  """The index whose spans the batches use: `index`, or one made now.

  `index` serves unless trimming is on with settings other than its own;
  otherwise (and without one) every record is read once to index it.

  Args:
    source: the random-access records.
    index: their stored index (`las_jax.data.read_index`), or None.
    config: the full config (`input.trim_*`, `input.num_threads` are read).

  Raises:
    ValueError: `index` does not have one entry per record.
  """
  inp = config.input
  if index is not None and len(index) != len(source):
    raise ValueError(
      f'the utterance index has {len(index)} entries for {len(source)} '
      'records: it belongs to another dataset'
    )
  if index is not None:
    if not inp.trim_silence or index.trims_as(inp.trim_top_db):
      return index
    logging.warning(
      "The dataset's utterance index trims by rule %r at %g dB; this run "
      'trims by rule %r at %g dB (config.input.trim_top_db), so every '
      'record is read once now to index it. Train with the stored setting '
      'to start at once.',
      index.trim_rule,
      index.trim_top_db,
      audio_lib.TRIM_RULE,
      inp.trim_top_db,
    )
  start = time.time()
  index = UtteranceIndex.from_records(
    source, float(inp.trim_top_db), inp.num_threads
  )
  logging.info(
    'Indexed %d utterances (one pass over their audio) in %.1f s.',
    len(index),
    time.time() - start,
  )
  return index


def audio_spans(
  index: UtteranceIndex, trim_silence: bool
) -> tuple[np.ndarray, np.ndarray]:
  """The samples [start, end) of each utterance that the batches hold.

  With `trim_silence`, the index's trim span, except that an all-silent
  utterance is kept whole rather than made empty; else all of it.

  Returns:
    (start int64 [N], end int64 [N]).
  """
  whole_N = index.num_samples
  if not trim_silence:
    return np.zeros_like(whole_N), whole_N
  silent = index.trim_end <= index.trim_start
  return (
    np.where(silent, 0, index.trim_start),
    np.where(silent, whole_N, index.trim_end),
  )


@dataclasses.dataclass(frozen=True)
class Buckets:
  """Padded lengths: audio in samples, tokens including EOS (ascending)."""

  audio: tuple[int, ...]
  tokens: tuple[int, ...]

  @property
  def shapes(self) -> list[tuple[int, int]]:
    """All (N_bucket, L_bucket) batch shapes (audio x tokens)."""
    return [(a, t) for a in self.audio for t in self.tokens]


def buckets_from_config(config: ml_collections.ConfigDict) -> Buckets:
  """Buckets of `config.input` (audio seconds at `config.features` rate)."""
  sr = config.features.sample_rate
  audio = tuple(int(round(s * sr)) for s in config.input.audio_buckets_s)
  tokens = tuple(int(t) for t in config.input.token_buckets)
  for name, b in (('audio_buckets_s', audio), ('token_buckets', tokens)):
    if not b or any(x <= 0 for x in b) or list(b) != sorted(set(b)):
      raise ValueError(
        f'config.input.{name} must be positive and strictly increasing, got {b}'
      )
  return Buckets(audio, tokens)


def _extend_for(buckets: Buckets, audio_max: int, token_max: int, sr: int):
  """Adds one bucket per axis that the longest utterances need (eval)."""
  audio, tokens = buckets.audio, buckets.tokens
  if audio_max > audio[-1]:
    step = int(_EVAL_AUDIO_ROUND_S * sr)
    audio += (-(-audio_max // step) * step,)
  if token_max > tokens[-1]:
    tokens += (-(-token_max // _EVAL_TOKEN_ROUND) * _EVAL_TOKEN_ROUND,)
  if (audio, tokens) != (buckets.audio, buckets.tokens):
    logging.warning(
      'Eval utterances exceed the largest bucket; extra bucket (%d samples, '
      '%d tokens) added.',
      audio[-1],
      tokens[-1],
    )
  return Buckets(audio, tokens)


def plan_epoch(
  order: np.ndarray,
  audio_bucket: np.ndarray,
  token_bucket: np.ndarray,
  batch_size: int,
) -> list[tuple[int, int, np.ndarray]]:
  """Groups indices into global batches by bucket, in order of filling.

  Args:
    order: record indices in visiting order.
    audio_bucket: audio bucket of every record (indexed by record index).
    token_bucket: token bucket of every record.
    batch_size: global batch size.

  Returns:
    [(audio_bucket, token_bucket, indices [batch_size])], -1 = padding row.
  """
  queues: dict[tuple[int, int], list[int]] = {}
  plan = []
  for i in order:
    key = (int(audio_bucket[i]), int(token_bucket[i]))
    queue = queues.setdefault(key, [])
    queue.append(int(i))
    if len(queue) == batch_size:
      plan.append((*key, np.array(queue, np.int64)))
      queues[key] = []
  # Leftovers: neighbours in bucket order share a batch in their largest
  # bucket, so at most one batch per epoch has padding rows.
  rest = [(k, i) for k in sorted(queues) for i in queues[k]]
  for start in range(0, len(rest), batch_size):
    chunk = rest[start : start + batch_size]
    idx = np.full(batch_size, -1, np.int64)
    idx[: len(chunk)] = [i for _, i in chunk]
    plan.append(
      (
        max(k[0] for k, _ in chunk),
        max(k[1] for k, _ in chunk),
        idx,
      )
    )
  return plan


@dataclasses.dataclass(frozen=True, eq=False)
class _LoadBatch:
  """Reads, cuts to its span, tokenizes and pads this host's rows of one
  planned batch.

  Attributes:
    source: the random-access records.
    vocab: tokenizer for their `text`.
    buckets: the padded shapes.
    rows: this host's rows of each global batch.
    ids: the id of each record, per the index.
    num_samples: int64 [N], the sample count of each, per the index.
    start, end: int64 [N], the span of each that a batch holds.
  """

  source: Sequence[dict[str, Any]]
  vocab: Vocabulary
  buckets: Buckets
  rows: slice
  ids: Sequence[str]
  num_samples: np.ndarray
  start: np.ndarray
  end: np.ndarray

  def _load(self, index: int) -> tuple[str, str, np.ndarray, np.ndarray]:
    uid, text, audio_N = record_fields(self.source[index])
    if (uid, audio_N.size) != (self.ids[index], self.num_samples[index]):
      raise ValueError(
        f'record {index} ({uid!r}, {audio_N.size} samples) is not what '
        f'the utterance index says ({self.ids[index]!r}, '
        f'{self.num_samples[index]} samples): the data changed since it '
        'was indexed; prepare the dataset again'
      )
    tokens_L = np.array(self.vocab.encode(text) + [self.vocab.eos_id], np.int32)
    return uid, text, audio_N[self.start[index] : self.end[index]], tokens_L

  def __call__(self, entry: tuple[int, int, np.ndarray]) -> dict[str, Any]:
    a, t, indices = entry
    indices = indices[self.rows]
    n, ell, b = self.buckets.audio[a], self.buckets.tokens[t], len(indices)
    batch = {
      'audio': np.zeros((b, n), np.int16),
      'audio_lengths': np.zeros((b,), np.int32),
      'tokens': np.zeros((b, ell), np.int32),
      'token_lengths': np.zeros((b,), np.int32),
      'ids': np.full((b,), '', object),
      'texts': np.full((b,), '', object),
    }
    for row, index in enumerate(indices):
      if index < 0:
        continue
      uid, text, audio_N, tokens_L = self._load(int(index))
      batch['audio'][row, : audio_N.size] = audio_N
      batch['audio_lengths'][row] = audio_N.size
      batch['tokens'][row, : tokens_L.size] = tokens_L
      batch['token_lengths'][row] = tokens_L.size
      batch['ids'][row], batch['texts'][row] = uid, text
    batch['ids'] = batch['ids'].astype(str)
    batch['texts'] = batch['texts'].astype(str)
    return batch


class BatchIterator(Iterator[dict[str, Any]]):
  """Deterministic, resumable iterator over bucketed host batches.

  State is `{'epoch': e, 'position': p}`: p batches of epoch e were yielded.
  The plan of an epoch depends only on (seed, epoch), so `set_state`
  resumes exactly, with or without worker processes.
  """

  def __init__(
    self,
    load: _LoadBatch,
    kept: np.ndarray,
    audio_bucket: np.ndarray,
    token_bucket: np.ndarray,
    *,
    global_batch_size: int,
    seed: int,
    shuffle: bool,
    num_epochs: int | None,
    num_threads: int,
    prefetch_buffer_size: int,
    num_workers: int,
    stats: dict[str, int],
  ):
    self._load = load
    self._kept = kept
    self._audio_bucket, self._token_bucket = audio_bucket, token_bucket
    self._global_batch_size = global_batch_size
    self._seed, self._shuffle, self._num_epochs = seed, shuffle, num_epochs
    self._num_threads = num_threads
    self._prefetch_buffer_size = prefetch_buffer_size
    self._num_workers = num_workers
    self.stats = stats
    self._epoch, self._position = 0, 0
    self._it: Iterator[dict[str, Any]] | None = None

  @property
  def buckets(self) -> Buckets:
    """The fixed set of padded lengths the batches take."""
    return self._load.buckets

  def epoch_plan(self, epoch: int) -> list[tuple[int, int, np.ndarray]]:
    """The global batches of `epoch` (see `plan_epoch`)."""
    order = self._kept
    if self._shuffle:
      order = np.random.default_rng([self._seed, epoch]).permutation(order)
    return plan_epoch(
      order, self._audio_bucket, self._token_bucket, self._global_batch_size
    )

  def _start(self) -> Iterator[dict[str, Any]]:
    # Deferred: grain imports orbax (half a second); the recognizer uses
    # this module's buckets only.
    import grain  # noqa: PLC0415

    plan = self.epoch_plan(self._epoch)[self._position :]
    ds = grain.MapDataset.source(plan).map(self._load)
    if not self._num_threads and not self._num_workers:
      return (ds[i] for i in range(len(ds)))
    it_ds = ds.to_iter_dataset(
      grain.ReadOptions(
        num_threads=self._num_threads,
        prefetch_buffer_size=self._prefetch_buffer_size,
      )
    )
    if self._num_workers:
      it_ds = it_ds.mp_prefetch(
        grain.MultiprocessingOptions(num_workers=self._num_workers)
      )
    return iter(it_ds)

  def __next__(self) -> dict[str, Any]:
    while True:
      if self._num_epochs is not None and self._epoch >= self._num_epochs:
        raise StopIteration
      if self._it is None:
        self._it = self._start()
      try:
        batch = next(self._it)
      except StopIteration:
        self._it = None
        self._epoch, self._position = self._epoch + 1, 0
        continue
      self._position += 1
      return batch

  def get_state(self) -> dict[str, int]:
    """JSON-serializable position: the next batch `__next__` will yield."""
    return {'epoch': self._epoch, 'position': self._position}

  def set_state(self, state: dict[str, int]) -> None:
    """Resumes at a `get_state` state of an identically built iterator."""
    self._epoch, self._position = int(state['epoch']), int(state['position'])
    self._it = None


def _make_iterator(
  source: Sequence[dict[str, Any]],
  vocab: Vocabulary,
  config: ml_collections.ConfigDict,
  *,
  index: UtteranceIndex | None,
  train: bool,
  seed: int,
  num_epochs: int | None,
  process_index: int | None,
  process_count: int | None,
) -> BatchIterator:
  inp = config.input
  if process_index is None:
    process_index, process_count = jax.process_index(), jax.process_count()
  global_batch = inp.batch_size if train else inp.eval_batch_size
  if global_batch % process_count:
    raise ValueError(
      f'config.input.{"" if train else "eval_"}batch_size={global_batch} is '
      f'not divisible by the {process_count} hosts'
    )
  per_host = global_batch // process_count
  index = utterance_index(source, index, config)
  start_N, end_N = audio_spans(index, bool(inp.trim_silence))
  audio_len = end_N - start_N
  token_len = np.array(
    [len(vocab.encode(text)) + 1 for text in index.texts], np.int64
  )
  buckets = buckets_from_config(config)
  empty = audio_len == 0
  stats = {
    'utterances': len(audio_len),
    'dropped_empty_audio': int(empty.sum()),
  }
  if train:
    too_long_audio = audio_len > buckets.audio[-1]
    too_long_text = ~too_long_audio & (token_len > buckets.tokens[-1])
    stats['dropped_long_audio'] = int((too_long_audio & ~empty).sum())
    stats['dropped_long_text'] = int((too_long_text & ~empty).sum())
    keep = ~(empty | too_long_audio | too_long_text)
  else:
    keep = ~empty
    if keep.any():
      buckets = _extend_for(
        buckets,
        int(audio_len[keep].max()),
        int(token_len[keep].max()),
        config.features.sample_rate,
      )
  stats['kept'] = int(keep.sum())
  if stats['kept'] < stats['utterances']:
    logging.warning(
      '%s input pipeline: %s', 'Train' if train else 'Eval', stats
    )
  else:
    logging.info('%s input pipeline: %s', 'Train' if train else 'Eval', stats)
  # searchsorted 'left': the first bucket with boundary >= length.
  audio_bucket = np.searchsorted(buckets.audio, audio_len)
  token_bucket = np.searchsorted(buckets.tokens, token_len)
  rows = slice(process_index * per_host, (process_index + 1) * per_host)
  return BatchIterator(
    _LoadBatch(
      source,
      vocab,
      buckets,
      rows,
      index.ids,
      index.num_samples,
      start_N,
      end_N,
    ),
    np.flatnonzero(keep),
    audio_bucket,
    token_bucket,
    global_batch_size=global_batch,
    seed=seed,
    shuffle=train,
    num_epochs=num_epochs,
    num_threads=inp.num_threads,
    prefetch_buffer_size=inp.prefetch_buffer_size,
    num_workers=inp.num_workers,
    stats=stats,
  )


def make_train_iterator(
  source: Sequence[dict[str, Any]],
  vocab: Vocabulary,
  config: ml_collections.ConfigDict,
  *,
  index: UtteranceIndex | None = None,
  seed: int | None = None,
  num_epochs: int | None = None,
  process_index: int | None = None,
  process_count: int | None = None,
) -> BatchIterator:
  """Shuffled, bucketed training batches, epoch after epoch.

  Args:
    source: random-access records (TFDS data source or list of dicts).
    vocab: tokenizer for `text`.
    config: the full config (`input` and `features.sample_rate` are read).
    index: the source's utterance index (`las_jax.data.read_index`); None
      = index it now, one pass over its audio (see `utterance_index`).
    seed: shuffling seed; defaults to `config.seed`.
    num_epochs: stop after this many epochs; None = forever.
    process_index: this host (default `jax.process_index()`).
    process_count: number of hosts (default `jax.process_count()`).

  Returns:
    A `BatchIterator`; its `stats` count the utterances dropped for being
    longer than the largest bucket or empty.
  """
  return _make_iterator(
    source,
    vocab,
    config,
    index=index,
    train=True,
    seed=config.seed if seed is None else seed,
    num_epochs=num_epochs,
    process_index=process_index,
    process_count=process_count,
  )


def make_eval_iterator(
  source: Sequence[dict[str, Any]],
  vocab: Vocabulary,
  config: ml_collections.ConfigDict,
  *,
  index: UtteranceIndex | None = None,
  process_index: int | None = None,
  process_count: int | None = None,
) -> BatchIterator:
  """One pass over every utterance, unshuffled, in bucketed batches.

  Nothing is dropped for length (an extra bucket is added instead); only
  empty audio, which cannot be told from a padding row, is dropped and
  counted in `stats`.

  Args:
    source: random-access records (TFDS data source or list of dicts).
    vocab: tokenizer for `text`.
    config: the full config (`input` and `features.sample_rate` are read).
    index: the source's utterance index (`las_jax.data.read_index`); None
      = index it now, one pass over its audio (see `utterance_index`).
    process_index: this host (default `jax.process_index()`).
    process_count: number of hosts (default `jax.process_count()`).

  Returns:
    A `BatchIterator` that stops after one epoch.
  """
  return _make_iterator(
    source,
    vocab,
    config,
    index=index,
    train=False,
    seed=0,
    num_epochs=1,
    process_index=process_index,
    process_count=process_count,
  )
