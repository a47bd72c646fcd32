"""What the las_jax TFDS builders share: features, example generation, build.

Both builders turn a list of `Utterance`s (audio file + transcript) into
examples. Utterances whose audio cannot be read or whose transcript
normalizes to nothing are skipped, never fatal: one bad file in 600,000
must not lose a day of preparation. Each skip is logged, counted per split
and written to `skipped_<split>.tsv` in the prepared dataset's directory;
audio read with a warning (`audio.AudioWarning`: clipped, rescaled,
mislabeled) is kept, and each warning is logged and counted.

Transcript lists are read by `transcripts` (no TFDS there, so decoding
never imports it).

Beside the examples, each split gets its utterance index,
`utterances_<split>.npz` (`utterance_index`): ids, transcripts, sample
counts and leading/trailing-silence trim offsets, so training plans its
batches without reading the audio.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from las_jax import audio
from las_jax.data import utterance_index
from las_jax.data.transcripts import (
  NONE,
  PHONETIC,
  SPELLING,
  Skipped,
  Utterance,
  normalize,
)

# Release note of the builders' version 1.2.0, which added the index.
INDEX_RELEASE_NOTE = (
  'Each split has an utterance index, utterances_<split>.npz: ids, '
  'transcripts, sample counts and leading/trailing-silence trim offsets '
  '(audio.trim_bounds at 30 dB), so training starts without a pass over '
  'the audio.'
)
# How many audio files are read ahead by the thread pool.
_READ_AHEAD = 64


def features() -> tfds.features.FeaturesDict:
  """The features every las_jax speech dataset has."""
  return tfds.features.FeaturesDict(
    {
      'id': tfds.features.Text(),
      # Raw bytes: TFDS's default int64 lists spend 10 bytes per negative
      # sample.
      'audio': tfds.features.Tensor(
        shape=(None,), dtype=np.int16, encoding=tfds.features.Encoding.BYTES
      ),
      'text': tfds.features.Text(),
      'raw_text': tfds.features.Text(),
    }
  )


def builder_configs(
  names: Sequence[str] = (PHONETIC, SPELLING),
) -> list[tfds.core.BuilderConfig]:
  """Builder configs named after the transcription mode they apply."""
  descriptions = {
    PHONETIC: 'Dual transcriptions (A)/(B) keep the phonetic B (KoSpeech).',
    SPELLING: 'Dual transcriptions (A)/(B) keep the spelling A (ESPnet).',
    NONE: 'Transcripts as written, whitespace runs collapsed.',
  }
  return [
    tfds.core.BuilderConfig(name=n, description=descriptions[n]) for n in names
  ]


# What `_read_ahead` gives per utterance: the samples and their trim span
# (`audio.trim_bounds` at utterance_index.TRIM_TOP_DB), or the read error.
_Read = tuple[np.ndarray, tuple[int, int]] | audio.AudioError


def _read_ahead(
  utterances: Sequence[Utterance],
) -> Iterator[tuple[Utterance, _Read, list[str]]]:
  """Yields (utterance, (samples, trim span) or the error, warnings).

  Reading is I/O bound (file system latency on real corpora) and releases
  the GIL, as does most of the trimming's numpy work, so a small pool
  overlaps both with serialization; the window keeps memory bounded on a
  600k-file corpus. Each read collects its own warnings (Python's
  `warnings` machinery is not thread-safe).
  """

  def read(utt: Utterance):
    notes = []
    try:
      samples_N = audio.read_audio(utt.audio_path, warn=notes.append)
    except audio.AudioError as e:
      return e, notes
    span = audio.trim_bounds(samples_N, utterance_index.TRIM_TOP_DB)
    return (samples_N, span), notes

  workers = min(8, (os.cpu_count() or 1) + 2)
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    pending = collections.deque()
    for utt in utterances:
      pending.append((utt, pool.submit(read, utt)))
      if len(pending) >= _READ_AHEAD:
        first, future = pending.popleft()
        yield first, *future.result()
    for utt, future in pending:
      yield utt, *future.result()


def generate_examples(
  utterances: Sequence[Utterance],
  transcription: str,
  split: str,
  report_dir: os.PathLike[str] | str,
  skipped: Sequence[Skipped] = (),
) -> Iterator[tuple[int, dict[str, object]]]:
  """Yields TFDS (key, example) pairs, skipping and reporting bad lines.

  When the last example has been taken, writes the split's utterance
  index (`utterance_index.file_name(split)`) and `skipped_<split>.tsv`.

  Args:
    utterances: the split's utterances, in output order.
    transcription: 'phonetic', 'spelling' or 'none'.
    split: split name, for the log and the report file names.
    report_dir: directory that receives the index and the report.
    skipped: lines already rejected while parsing the transcript list.

  Yields:
    (index in `utterances`, example dict with id/audio/text/raw_text).
  """
  skipped = list(skipped)
  for s in skipped:
    logging.warning('Skipping %s: %s', s.source, s.reason)
  entries, warned = [], 0
  for key, (utt, read, notes) in enumerate(_read_ahead(utterances)):
    for note in notes:
      logging.warning('Warning for %s: %s', utt.source, note)
    if isinstance(read, audio.AudioError):
      skipped.append(Skipped(utt.source, utt.audio_path, str(read)))
      logging.warning('Skipping %s: %s', utt.source, read)
      continue
    samples, (trim_start, trim_end) = read
    normalized = normalize(utt.raw_text, transcription, utt.id)
    if not normalized:
      reason = f'transcript {utt.raw_text!r} is empty after normalization'
      skipped.append(Skipped(utt.source, utt.audio_path, reason))
      logging.warning('Skipping %s: %s', utt.source, reason)
      continue
    entries.append(
      utterance_index.Entry(
        utt.id, normalized, samples.size, trim_start, trim_end
      )
    )
    warned += bool(notes)
    yield (
      key,
      {
        'id': utt.id,
        'audio': samples,
        'text': normalized,
        'raw_text': utt.raw_text,
      },
    )
  # TFDS stores the examples in key order, which is this order.
  utterance_index.UtteranceIndex.from_entries(
    entries, utterance_index.TRIM_TOP_DB
  ).save(os.path.join(report_dir, utterance_index.file_name(split)))
  _write_report(os.path.join(report_dir, f'skipped_{split}.tsv'), skipped)
  logging.log(
    logging.WARNING if skipped or warned else logging.INFO,
    'Split %s: %d examples, %d skipped (listed in skipped_%s.tsv); %d read '
    'with warnings.',
    split,
    len(entries),
    len(skipped),
    split,
    warned,
  )


def _write_report(path: str, skipped: Sequence[Skipped]) -> None:
  # Written even when empty: a missing report would be ambiguous.
  with open(path, 'w', encoding='utf-8') as f:
    f.write('source\tpath\treason\n')
    for s in skipped:
      reason = ' '.join(s.reason.split())
      f.write(f'{s.source}\t{s.path}\t{reason}\n')


def read_skipped(data_dir: str | os.PathLike[str], split: str) -> list[Skipped]:
  """Reads `skipped_<split>.tsv` of a prepared dataset directory.

  Args:
    data_dir: the builder's `data_dir` (.../<name>/<config>/<version>).
    split: split name.

  Returns:
    The skipped lines, in the order they were met.
  """
  path = os.path.join(data_dir, f'skipped_{split}.tsv')
  with open(path, encoding='utf-8') as f:
    rows = f.read().splitlines()[1:]
  return [Skipped(*row.split('\t', 2)) for row in rows]


def read_index(
  data_dir: str | os.PathLike[str], split: str
) -> utterance_index.UtteranceIndex:
  """Reads the utterance index of a prepared dataset's split.

  Args:
    data_dir: the builder's `data_dir` (.../<name>/<config>/<version>).
    split: split name.

  Raises:
    FileNotFoundError: the dataset has no index for `split` (it was
      prepared by an earlier las_jax); the message says how to rebuild.
  """
  path = os.path.join(data_dir, utterance_index.file_name(split))
  if not os.path.exists(path):
    raise FileNotFoundError(
      f'{path} not found: {data_dir} was not prepared by this version of '
      'the las_jax builders (which write it). Delete that directory and '
      'prepare the dataset again (python -m las_jax.data.build ...)'
    )
  return utterance_index.UtteranceIndex.load(path)


def earlier_versions(builder: tfds.core.DatasetBuilder) -> list[str]:
  """Prepared directories of older versions of `builder`'s dataset/config.

  Returns:
    Paths of `<data_dir>/<name>/<config>/<version>` directories holding a
    complete dataset of a version below `builder.version`, oldest first.
  """
  parent = os.path.dirname(os.fspath(builder.data_path))
  found = []
  for entry in os.listdir(parent) if os.path.isdir(parent) else ():
    path = os.path.join(parent, entry)
    if not os.path.isfile(os.path.join(path, 'dataset_info.json')):
      continue
    try:
      version = tfds.core.Version(entry)
    except ValueError:
      continue  # TFDS's incomplete.* directories and others.
    if version < builder.version:
      found.append((version, path))
  return [path for _, path in sorted(found)]


def build_dataset(
  name: str,
  data_dir: str | os.PathLike[str],
  manual_dir: str | os.PathLike[str],
  transcription: str = PHONETIC,
) -> tfds.core.DatasetBuilder:
  """Prepares a las_jax dataset (once) and returns its builder.

  A prepared dataset is reused: TFDS skips preparation when
  `<data_dir>/<name>/<transcription>/<version>` is complete. A dataset
  prepared by an earlier version of the builder is not read: this version
  is built from `manual_dir` beside it (with a warning naming the old
  directory, which can then be deleted).

  Args:
    name: 'ksponspeech' or 'manifest'.
    data_dir: TFDS data directory to write to / read from.
    manual_dir: the corpus (KsponSpeech layout, or the manifest files).
    transcription: builder config, 'phonetic' or 'spelling' ('none' for
      'manifest' too).

  Returns:
    The prepared builder; read splits with `builder.as_data_source(split)`
    and their utterance indexes with `read_index(builder.data_dir, split)`.

  Raises:
    FileNotFoundError: `manual_dir` holds no corpus; when an earlier
      version is prepared in `data_dir`, the message names it and says
      how to rebuild.
  """
  from las_jax import data  # noqa: PLC0415  (a cycle at import time)

  data.register_builders()
  builder = tfds.builder(
    f'{name}/{transcription}', data_dir=os.fspath(data_dir)
  )
  earlier = [] if builder.is_prepared() else earlier_versions(builder)
  change = f'{builder.version}: {builder.release_notes[str(builder.version)]}'
  if earlier:
    logging.warning(
      '%s was prepared by an earlier las_jax; this one reads version %s '
      'and builds it from %s now. Delete the old directory when done.',
      earlier[-1],
      change,
      manual_dir,
    )
  try:
    builder.download_and_prepare(
      file_format='array_record',
      download_config=tfds.download.DownloadConfig(
        manual_dir=os.fspath(manual_dir)
      ),
    )
  except (FileNotFoundError, AssertionError) as e:
    # TFDS reports a missing or empty manual_dir by an AssertionError.
    if not earlier:
      raise
    raise FileNotFoundError(
      f'{earlier[-1]} was prepared by an earlier las_jax; this one reads '
      f'version {change}. Rebuilding it needs the corpus, which {manual_dir} '
      f'does not hold ({e}). Rebuild with: python -m las_jax.data.build '
      f'--dataset={name} --transcription={transcription} '
      f'--manual_dir=<the corpus> --data_dir={os.fspath(data_dir)}'
    ) from e
  return builder
