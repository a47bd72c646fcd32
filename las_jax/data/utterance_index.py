"""Per-split utterance index: ids, transcripts, lengths and trim offsets.

Length bucketing needs every utterance's audio and transcript length
before the first training step. Read from the examples, that is a pass
over the whole corpus (KsponSpeech: 620,000 files, about 110 GB of int16
audio), plus the silence trimming of each. So the builders write, beside
each split's examples, `utterances_<split>.npz` with one entry per example
in stored order: its id, its normalized transcript, its sample count, and
the span [trim_start, trim_end) that `audio.trim_bounds` keeps at
TRIM_TOP_DB, together with the rule's name (`audio.TRIM_RULE`) and that
threshold. The input pipeline then plans batches from this file alone.

Why offsets rather than trimmed audio: the examples keep the audio as
read, so `config.input.trim_silence=False` still trains on whole files,
decoding a split hears what was recorded, and another threshold or a
revised rule needs one pass to recompute the spans (`from_records`),
not a rebuild. The recorded rule and threshold say when the stored spans
apply (`trims_as`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from las_jax import audio

# Threshold (dB below the loudest frame) of the offsets the builders store:
# configs/default.py's input.trim_top_db (KoSpeech's 30).
TRIM_TOP_DB = 30.0


def file_name(split: str) -> str:
  """Name of a split's index file in a prepared dataset's directory."""
  return f'utterances_{split}.npz'


def _as_str(value: Any) -> str:
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def _pack(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
  """UTF-8 bytes of all strings (uint8) and their offsets (int64 [N+1])."""
  encoded = [s.encode('utf-8') for s in strings]
  offsets = np.zeros(len(encoded) + 1, np.int64)
  np.cumsum([len(b) for b in encoded], out=offsets[1:])
  return np.frombuffer(b''.join(encoded), np.uint8), offsets


def _unpack(blob: np.ndarray, offsets: np.ndarray) -> list[str]:
  data = blob.tobytes()
  bounds = offsets.tolist()
  return [
    data[a:b].decode('utf-8') for a, b in zip(bounds, bounds[1:], strict=False)
  ]


def record_fields(record: dict[str, Any]) -> tuple[str, str, np.ndarray]:
  """(id, text, int16 samples [N]) of a record, checked.

  Raises:
    KeyError: the record lacks a field (naming the fields it has).
    ValueError: its audio is not int16 [N] (naming the record).
  """
  try:
    uid, text = _as_str(record['id']), _as_str(record['text'])
    samples_N = np.asarray(record['audio'])
  except KeyError as e:
    raise KeyError(f'record lacks field {e}; has {sorted(record)}') from None
  if samples_N.ndim != 1 or samples_N.dtype != np.int16:
    raise ValueError(
      f'record {uid!r}: field audio must be int16 [N], got '
      f'{samples_N.dtype} {samples_N.shape}'
    )
  return uid, text, samples_N


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
  """One utterance's line of the index (see `UtteranceIndex`)."""

  id: str
  text: str
  num_samples: int
  trim_start: int
  trim_end: int


@dataclasses.dataclass(frozen=True, eq=False)
class UtteranceIndex:
  """Ids, transcripts, sample counts and trim spans of a split's examples.

  Attributes:
    ids: utterance ids, in the split's order.
    texts: normalized transcripts (the examples' `text`).
    num_samples: int64 [N], audio samples of each example.
    trim_start: int64 [N], first sample `audio.trim_bounds` keeps.
    trim_end: int64 [N], one past its last; trim_start == trim_end when
      the utterance is all silence.
    trim_rule: `audio.TRIM_RULE` of the code that computed the spans.
    trim_top_db: the threshold they were computed with, in dB.
  """

  ids: list[str]
  texts: list[str]
  num_samples: np.ndarray
  trim_start: np.ndarray
  trim_end: np.ndarray
  trim_rule: str
  trim_top_db: float

  def __len__(self) -> int:
    return len(self.ids)

  @classmethod
  def from_entries(
    cls, entries: Iterable[Entry], top_db: float
  ) -> UtteranceIndex:
    """The index of `entries`, trimmed by today's rule at `top_db`."""
    entries = list(entries)

    def column(name):
      return np.array([getattr(e, name) for e in entries], np.int64)

    return cls(
      ids=[e.id for e in entries],
      texts=[e.text for e in entries],
      num_samples=column('num_samples'),
      trim_start=column('trim_start'),
      trim_end=column('trim_end'),
      trim_rule=audio.TRIM_RULE,
      trim_top_db=float(top_db),
    )

  @classmethod
  def from_records(
    cls,
    records: Sequence[dict[str, Any]],
    top_db: float = TRIM_TOP_DB,
    num_threads: int = 0,
  ) -> UtteranceIndex:
    """Indexes records by reading them all: one pass over their audio.

    For sources without a stored index (in-memory lists of records) and
    for trimming settings other than the stored ones.

    Args:
      records: random-access dicts with `id`, `text` and `audio` (int16
        [N]), e.g. a TFDS data source.
      top_db: trimming threshold in dB (`audio.trim_bounds`).
      num_threads: reader threads; 0 = read in this thread.

    Raises:
      KeyError, ValueError: a malformed record (`record_fields`).
    """

    def index(record):
      uid, text, samples_N = record_fields(record)
      start, end = audio.trim_bounds(samples_N, top_db)
      return Entry(uid, text, samples_N.size, start, end)

    # Deferred: grain imports orbax (half a second); decoding needs neither.
    import grain  # noqa: PLC0415

    ds = grain.MapDataset.source(records).map(index)
    if num_threads:
      entries = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads))
    else:
      entries = (ds[i] for i in range(len(ds)))
    return cls.from_entries(entries, top_db)

  def trims_as(self, top_db: float) -> bool:
    """Whether the stored spans are today's rule at `top_db`."""
    return self.trim_rule == audio.TRIM_RULE and self.trim_top_db == top_db

  def head(self, n: int) -> UtteranceIndex:
    """The index of the first `n` utterances (all of them if n is 0)."""
    n = n or len(self)
    return dataclasses.replace(
      self,
      ids=self.ids[:n],
      texts=self.texts[:n],
      num_samples=self.num_samples[:n],
      trim_start=self.trim_start[:n],
      trim_end=self.trim_end[:n],
    )

  def save(self, path: str | os.PathLike[str]) -> None:
    """Writes the index as an .npz file (no pickled objects)."""
    ids, id_offsets = _pack(self.ids)
    texts, text_offsets = _pack(self.texts)
    with open(path, 'wb') as f:
      np.savez(
        f,
        ids=ids,
        id_offsets=id_offsets,
        texts=texts,
        text_offsets=text_offsets,
        num_samples=self.num_samples,
        trim_start=self.trim_start,
        trim_end=self.trim_end,
        trim_rule=np.array(self.trim_rule),
        trim_top_db=np.array(self.trim_top_db),
      )

  @classmethod
  def load(cls, path: str | os.PathLike[str]) -> UtteranceIndex:
    """Reads an index written by `save`."""
    with np.load(path) as f:
      return cls(
        ids=_unpack(f['ids'], f['id_offsets']),
        texts=_unpack(f['texts'], f['text_offsets']),
        num_samples=f['num_samples'],
        trim_start=f['trim_start'],
        trim_end=f['trim_end'],
        trim_rule=str(f['trim_rule']),
        trim_top_db=float(f['trim_top_db']),
      )
