"""What `decode.py` can transcribe: files, directories, .trn lists, splits.

Every source becomes a stream of `DecodeItem`s, each with an id, a reference
when one is known, and a loader that returns 16 kHz mono int16 samples. The
loaders run lazily, one item at a time, so a directory of 100,000 files or
a whole TFDS split never sits in memory, and a file that cannot be read
fails alone (its `AudioError` names it) instead of stopping the run.
Directories contribute every file whose extension the audio reader reads
(`audio.readable_extensions()`: libsndfile's formats, MP3 and Opus where
it supports them, headerless .pcm/.raw); the others are counted by
extension, so nothing is passed over without a word.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from las_jax import audio
from las_jax.data import transcripts

# Extension of KsponSpeech transcript lists.
TRN_EXTENSION = '.trn'


@dataclasses.dataclass(frozen=True)
class DecodeItem:
  """One utterance to transcribe.

  Attributes:
    id: utterance id, unique among the items of one decode: the path as
      given (or found in a directory) for files; the corpus id (the file
      name without extension) for .trn lists, or where several lines
      share it, the path relative to their common directory; the record's
      id for dataset splits.
    name: how messages refer to it: the path for files, the path and its
      line for .trn lists ('x.pcm (eval_clean.trn:12)'), 'eval_clean[3]'
      for dataset records.
    reference: normalized reference transcript, or None when unknown.
    load: returns the samples (int16, mono, 16 kHz); raises
      `audio.AudioError` naming the file when it cannot.
    path: the audio file, when the item is one (long-form decoding reads
      it in blocks instead of calling `load`); None for dataset records.
    output_stem: the item's per-input output files (subtitles) are named
      this plus their extension; unique among one decode's items, stable
      for the same inputs: the file's path relative to the inputs' common
      directory without its extension (with it where two inputs differ
      only there, as a.wav and a.flac); None: the id.
  """

  id: str
  name: str
  reference: str | None
  load: Callable[[], np.ndarray]
  path: str | None = None
  output_stem: str | None = None


@dataclasses.dataclass(frozen=True)
class Rejected:
  """An input line or path that yields no item (reported, not fatal)."""

  name: str
  reason: str


def _file_item(path: str) -> DecodeItem:
  return DecodeItem(
    id=path,
    name=path,
    reference=None,
    load=lambda: audio.read_audio(path),
    path=path,
  )


def find_audio_files(directory: str) -> tuple[list[str], dict[str, int]]:
  """Audio files under `directory` (recursively), and what was passed over.

  Returns:
    (paths whose extension `audio.readable_extensions()` lists, in sorted
    path order; number of other files per lower-case extension, '' for
    none).
  """
  readable = set(audio.readable_extensions())
  found, passed_over = [], collections.Counter()
  for root, dirs, files in os.walk(directory):
    dirs.sort()  # os.walk visits subdirectories in this list's order.
    for name in sorted(files):
      extension = os.path.splitext(name)[1].lower()
      if extension in readable:
        found.append(os.path.join(root, name))
      else:
        passed_over[extension] += 1
  return found, dict(passed_over)


def _passed_over_note(directory: str, passed_over: dict[str, int]) -> str:
  counts = sorted(passed_over.items(), key=lambda kv: (-kv[1], kv[0]))
  listed = ', '.join(f'{n} {ext or "(no extension)"}' for ext, n in counts)
  total = sum(passed_over.values())
  return (
    f'{directory}: {total} file(s) not read, their extension is not an '
    f'audio format: {listed}'
  )


def trn_audio_root(trn_path: str) -> str:
  """Directory a .trn list's audio paths are relative to, by default.

  KsponSpeech keeps its lists in `<corpus>/scripts/` (or
  `KsponSpeech_scripts/`) with paths relative to `<corpus>`; a list
  anywhere else is taken to sit in its corpus root.
  """
  parent = os.path.dirname(os.path.abspath(trn_path))
  if os.path.basename(parent) in transcripts.SCRIPT_DIRS:
    return os.path.dirname(parent)
  return parent


def trn_items(
  trn_path: str, audio_root: str | None, transcription: str
) -> tuple[list[DecodeItem], list[Rejected]]:
  """Items of a KsponSpeech `.trn` list (`path :: transcript` lines).

  Args:
    trn_path: the list.
    audio_root: directory the listed paths are relative to; None for
      `trn_audio_root(trn_path)`.
    transcription: 'phonetic', 'spelling' or 'none', how references are
      normalized (the trained model's `data.transcription`).

  Returns:
    (items, rejected lines) in file order. Lines that do not parse and
    transcripts that normalize to nothing are rejected, as the dataset
    builder rejects them.
  """
  if not os.path.isfile(trn_path):
    raise FileNotFoundError(f'{trn_path}: no such transcript list')
  root = audio_root or trn_audio_root(trn_path)
  utterances, skipped = transcripts.read_trn(trn_path, root)
  rejected = [Rejected(s.source, s.reason) for s in skipped]
  items = []
  for utt in utterances:
    reference = transcripts.normalize(utt.raw_text, transcription, utt.id)
    if not reference:
      reason = f'transcript {utt.raw_text!r} is empty after normalization'
      rejected.append(Rejected(utt.source, reason))
      continue
    path = utt.audio_path
    items.append(
      DecodeItem(
        id=utt.id,
        name=f'{path} ({utt.source})',
        reference=reference,
        load=lambda path=path: audio.read_audio(path),
        path=path,
      )
    )
  return items, rejected


def path_items(
  paths: Sequence[str],
  audio_root: str | None = None,
  transcription: str = transcripts.PHONETIC,
) -> tuple[list[DecodeItem], list[Rejected], list[str]]:
  """Items for command-line inputs: audio files, directories, .trn lists.

  A path that does not exist is kept as a file item: its loader raises the
  `AudioError` that reports it, in input order with the other failures.

  Args:
    paths: files, directories (searched recursively, see
      `find_audio_files`) and `.trn` lists, in any mix.
    audio_root: root of the audio paths in .trn lists (see `trn_items`).
    transcription: reference normalization for .trn lists.

  Returns:
    (items, rejected, notes): items in the order given (directory contents
    sorted), with unique ids and output stems (see `DecodeItem`); a file
    given again (by any path) is rejected, decoded once; notes count the
    files of each directory that were passed over by extension.
  """
  items, rejected, notes = [], [], []
  for path in paths:
    path = os.fspath(path)
    if os.path.isdir(path):
      found, passed_over = find_audio_files(path)
      if passed_over:
        notes.append(_passed_over_note(path, passed_over))
      if not found:
        rejected.append(Rejected(path, 'directory holds no audio files'))
      items.extend(_file_item(p) for p in found)
    elif path.lower().endswith(TRN_EXTENSION):
      trn, bad = trn_items(path, audio_root, transcription)
      items.extend(trn)
      rejected.extend(bad)
    else:
      items.append(_file_item(path))
  items = _distinct(items, rejected)
  return items, rejected, notes


def _distinct(
  items: list[DecodeItem], rejected: list[Rejected]
) -> list[DecodeItem]:
  """Items with unique ids and output stems, each file once (the later
  listings of a file are appended to `rejected`)."""
  first: dict[str, DecodeItem] = {}
  for item in items:
    key = os.path.realpath(item.path)
    if key in first:
      reason = f'the same file as {first[key].name}, decoded once'
      rejected.append(Rejected(item.name, reason))
    else:
      first[key] = item
  items = list(first.values())
  # Ids shared by several files (corpus ids of .trn lines: x.wav and x.flac,
  # or d1/x.wav and d2/x.wav) become their paths from a common directory.
  by_id = collections.defaultdict(list)
  for i, item in enumerate(items):
    by_id[item.id].append(i)
  ids = [item.id for item in items]
  for shared in by_id.values():
    if len(shared) > 1:
      paths = _relative_paths([items[i].path for i in shared])
      for i, path in zip(shared, paths, strict=True):
        ids[i] = path
  relative = _relative_paths([item.path for item in items])
  stems = [os.path.splitext(path)[0] for path in relative]
  count = collections.Counter(stems)
  return [
    dataclasses.replace(
      item, id=id_, output_stem=stem if count[stem] == 1 else path
    )
    for item, id_, stem, path in zip(items, ids, stems, relative, strict=True)
  ]


def _relative_paths(paths: Sequence[str]) -> list[str]:
  """`paths` relative to the deepest directory that holds them all."""
  if not paths:
    return []
  absolute = [os.path.abspath(p) for p in paths]
  root = os.path.commonpath([os.path.dirname(p) for p in absolute])
  return [os.path.relpath(p, root) for p in absolute]


def split_items(
  dataset: str,
  transcription: str,
  split: str,
  data_dir: str,
  manual_dir: str | None = None,
) -> tuple[int, Iterator[DecodeItem]]:
  """Items of a TFDS split, read lazily in stored order.

  A dataset not prepared at the builder's current version (never built, or
  built by an older las_jax) is built first from `manual_dir`, as
  `train.py` does.

  Args:
    dataset: builder name ('ksponspeech', 'manifest').
    transcription: builder config ('phonetic', 'spelling', 'none').
    split: split name, e.g. 'eval_clean'.
    data_dir: the TFDS data directory the dataset was prepared in.
    manual_dir: the corpus to build from when it is not prepared.

  Returns:
    (number of examples, iterator of items whose reference is the
    example's normalized `text`).

  Raises:
    ValueError: no such split, or the dataset is not prepared and there is
      no corpus to build it from (naming the versions on disk and the
      command that builds it).
  """
  import tensorflow_datasets as tfds  # noqa: PLC0415  Deferred: a slow import.

  from las_jax import data  # noqa: PLC0415
  from las_jax.data import common  # noqa: PLC0415

  data.register_builders()

  builder = tfds.builder(f'{dataset}/{transcription}', data_dir=data_dir)
  if not builder.info.splits:  # Not prepared at this version.
    if manual_dir and os.path.isdir(manual_dir):
      builder = common.build_dataset(
        dataset, data_dir, manual_dir, transcription
      )
    else:
      config_dir = os.path.join(data_dir, dataset, transcription)
      found = (
        sorted(os.listdir(config_dir)) if os.path.isdir(config_dir) else []
      )
      raise ValueError(
        f'{dataset}/{transcription} version {builder.version} is not '
        f'prepared in {data_dir} (versions there: {found or "none"}) and its '
        f'corpus {manual_dir!r} is not a directory; build it with '
        f'python -m las_jax.data.build --dataset={dataset} '
        f'--transcription={transcription} --manual_dir=CORPUS '
        f'--data_dir={data_dir}'
        + (
          ''
          if os.path.isabs(data_dir)
          else f' (relative paths are taken from the current directory, '
          f'{os.getcwd()}: run from where training ran, or give --data_dir)'
        )
      )
  if split not in builder.info.splits:
    raise ValueError(
      f'{dataset}/{transcription} in {data_dir} has no split {split!r}; '
      f'it has {sorted(builder.info.splits)}'
    )
  source = builder.as_data_source(split)

  def items() -> Iterator[DecodeItem]:
    for i in range(len(source)):
      record = source[i]
      samples = np.asarray(record['audio'], np.int16)
      yield DecodeItem(
        id=record['id'].decode(),
        name=f'{split}[{i}]',
        reference=record['text'].decode(),
        load=lambda samples=samples: samples,
      )

  return len(source), items()
