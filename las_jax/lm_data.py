"""Text batches for training a language model over a recognizer's units.

The sentences are the normalized transcripts of the speech dataset's
train split (never dev or test: ESPnet's KsponSpeech recipe trains its LM
on `data/train/text` alone), plus the lines of an optional UTF-8 text file
(`config.data.lm_text`, normalized like transcripts); dev perplexity is
measured on the dev split's transcripts. Sentences are tokenized with the
vocabulary the run uses (`config.data.vocab_from`: the recognizer's) and
batched by `input_pipeline.BatchIterator` with the fixed token buckets of
`config.input.token_buckets`, so a text run resumes exactly and compiles
once per bucket like a speech run:

  tokens         int32 [B, L_bucket]   token ids then EOS, 0-padded
  token_lengths  int32 [B]             including the EOS; 0 = padding row
  ids, texts     str   [B]             host-only

A split's transcripts come from the dataset's utterance index
(`data.read_index`), never from the audio records.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np
from absl import logging

from las_jax import input_pipeline, text
from las_jax.text import Vocabulary


def read_text_file(path: str, transcription: str) -> list[str]:
  """Non-empty normalized lines of a UTF-8 text file.

  Lines are normalized as transcripts are (`text.normalize_transcript`;
  NFC and whitespace only for the manifest's 'none').

  Raises:
    FileNotFoundError: naming `path`.
    ValueError: the file is not UTF-8 (naming the line).
  """
  lines = []
  with open(path, 'rb') as f:
    for number, raw in enumerate(f, 1):
      try:
        line = raw.decode('utf-8-sig' if number == 1 else 'utf-8')
      except UnicodeDecodeError as e:
        raise ValueError(
          f'{path}:{number}: not UTF-8 ({e}); convert the file with iconv'
        ) from None
      if transcription == 'none':
        line = ' '.join(unicodedata.normalize('NFC', line).split())
      else:
        line = text.normalize_transcript(line, transcription)
      if line:
        lines.append(line)
  return lines


@dataclasses.dataclass(frozen=True)
class _LoadTextBatch:
  """Pads this host's rows of one planned batch of sentences."""

  token_ids: Sequence[np.ndarray]
  texts: Sequence[str]
  buckets: input_pipeline.Buckets
  rows: slice

  def __call__(self, entry: tuple[int, int, np.ndarray]) -> dict[str, Any]:
    _, t, indices = entry
    indices = indices[self.rows]
    ell, b = self.buckets.tokens[t], len(indices)
    batch = {
      'tokens': np.zeros((b, ell), np.int32),
      'token_lengths': np.zeros((b,), np.int32),
      'ids': np.full((b,), '', object),
      'texts': np.full((b,), '', object),
    }
    for row, index in enumerate(indices):
      if index < 0:
        continue
      tokens_L = self.token_ids[index]
      batch['tokens'][row, : tokens_L.size] = tokens_L
      batch['token_lengths'][row] = tokens_L.size
      batch['ids'][row] = str(index)
      batch['texts'][row] = self.texts[index]
    batch['ids'] = batch['ids'].astype(str)
    batch['texts'] = batch['texts'].astype(str)
    return batch


def make_iterator(
  texts: Sequence[str],
  vocab: Vocabulary,
  config: ml_collections.ConfigDict,
  *,
  train: bool,
  process_index: int,
  process_count: int,
) -> input_pipeline.BatchIterator:
  """Bucketed batches of sentences (shuffled, forever, for training; one
  unshuffled pass for evaluation).

  Training drops sentences longer than the largest token bucket (counted
  in `stats`); evaluation adds a bucket for them instead. Empty sentences
  are dropped.
  """
  inp = config.input
  global_batch = inp.batch_size if train else inp.eval_batch_size
  if global_batch % process_count:
    raise ValueError(
      f'config.input.{"" if train else "eval_"}batch_size={global_batch} is '
      f'not divisible by the {process_count} hosts'
    )
  per_host = global_batch // process_count
  token_ids = [
    np.array(vocab.encode(t) + [vocab.eos_id], np.int32) for t in texts
  ]
  lengths = np.array([ids.size for ids in token_ids], np.int64)
  tokens = tuple(int(t) for t in inp.token_buckets)
  empty = lengths <= 1
  stats = {'sentences': len(texts), 'dropped_empty': int(empty.sum())}
  if train:
    too_long = lengths > tokens[-1]
    stats['dropped_long'] = int((too_long & ~empty).sum())
    keep = ~(empty | too_long)
  else:
    keep = ~empty
    if keep.any() and lengths[keep].max() > tokens[-1]:
      tokens += (-(-int(lengths[keep].max()) // 16) * 16,)
  stats['kept'] = int(keep.sum())
  logging.info('%s text pipeline: %s', 'Train' if train else 'Dev', stats)
  if not keep.any():
    raise ValueError(f'no sentence to train on: {stats}')
  buckets = input_pipeline.Buckets(audio=(1,), tokens=tokens)
  rows = slice(process_index * per_host, (process_index + 1) * per_host)
  return input_pipeline.BatchIterator(
    _LoadTextBatch(token_ids, list(texts), buckets, rows),
    np.flatnonzero(keep),
    np.zeros(len(texts), np.int64),
    np.searchsorted(tokens, lengths),
    global_batch_size=global_batch,
    seed=config.seed,
    shuffle=train,
    num_epochs=None if train else 1,
    num_threads=0,
    prefetch_buffer_size=inp.prefetch_buffer_size,
    num_workers=0,
    stats=stats,
  )


def make_iterators(
  builder,
  vocab: Vocabulary,
  config: ml_collections.ConfigDict,
  *,
  process_index: int,
  process_count: int,
) -> tuple[input_pipeline.BatchIterator, input_pipeline.BatchIterator]:
  """(train, dev) iterators of a language model run (module doc)."""
  from las_jax import data  # noqa: PLC0415  (registers the builders)

  dcfg = config.data
  train_texts = data.read_index(builder.data_dir, dcfg.train_split).texts
  if dcfg.lm_text:
    extra = read_text_file(dcfg.lm_text, dcfg.transcription)
    logging.info('%d sentences from %s.', len(extra), dcfg.lm_text)
    train_texts = list(train_texts) + extra
  dev_texts = data.read_index(builder.data_dir, dcfg.dev_split).texts
  if config.train.eval_utterances:
    dev_texts = dev_texts[: config.train.eval_utterances]
  hosts = dict(process_index=process_index, process_count=process_count)
  return (
    make_iterator(train_texts, vocab, config, train=True, **hosts),
    make_iterator(dev_texts, vocab, config, train=False, **hosts),
  )
