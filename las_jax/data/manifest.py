"""TFDS builder for users' own speech: audio files listed with transcripts.

The manual directory holds one list per split, named after the split
(`train.tsv`, `dev.jsonl`, `test.tsv`, ...), in either format:

  TSV:   audio_path<TAB>transcript          (one utterance per line)
  JSONL: {"audio": "a.wav", "text": "...", "id": "optional-id"}

Relative audio paths are resolved against the list's directory. Audio is
anything `las_jax.audio.read_audio` reads (PCM, WAV, FLAC, ... at any rate;
stereo is down-mixed). Blank lines and lines starting with '#' are ignored,
as is a first TSV line `audio_path<TAB>transcript` or `audio<TAB>text`.
Configs: 'phonetic' and 'spelling' normalize transcripts as KsponSpeech
ones (plain text passes through, minus KoSpeech's special characters);
'none' keeps them as written with whitespace collapsed.

  python -m las_jax.data.build --dataset=manifest --transcription=none \
      --manual_dir=my_corpus --data_dir=data/tfds_my_corpus

Each prepared dataset lives at <data_dir>/manifest/<config>/<version>: give
each corpus its own data_dir.
"""

from __future__ import annotations

import json
import os
import re

import tensorflow_datasets as tfds

from las_jax.data import common, transcripts

# List formats, by extension.
FORMATS = ('.tsv', '.jsonl')
_HEADERS = ('audio_path\ttranscript', 'audio\ttext')
_SPLIT_NAME_RE = re.compile(r'^\w+$')


def find_lists(manual_dir: str) -> dict[str, str]:
  """Maps split name to its list file in `manual_dir`.

  Raises:
    ValueError: a split has both a .tsv and a .jsonl list, or a list's name
      is not a valid split name.
  """
  found = {}
  for entry in sorted(os.listdir(manual_dir)):
    split, ext = os.path.splitext(entry)
    if ext not in FORMATS:
      continue
    path = os.path.join(manual_dir, entry)
    if not _SPLIT_NAME_RE.match(split):
      raise ValueError(
        f'{path}: {split!r} is not a split name (letters, digits, _ only)'
      )
    if split in found:
      raise ValueError(f'{path}: split {split!r} also listed in {found[split]}')
    found[split] = path
  return found


def _utterance(
  audio_ref: str, raw_text: str, utt_id: str | None, base: str, source: str
) -> transcripts.Utterance:
  audio_path = os.path.join(base, os.path.expanduser(audio_ref))
  if utt_id is None:
    utt_id = os.path.splitext(audio_ref)[0]
  return transcripts.Utterance(utt_id, audio_path, raw_text, source)


def read_list(
  list_path: str,
) -> tuple[list[transcripts.Utterance], list[transcripts.Skipped]]:
  """Parses a .tsv or .jsonl list into utterances and malformed lines.

  Lines are decoded one by one (UTF-8, else CP949; UTF-16 with a
  byte-order mark), see `transcripts.read_text_lines`; lines that do not decode
  or parse are skipped, named `<list>:<line>`.
  """
  base = os.path.dirname(os.path.abspath(list_path))
  name = os.path.basename(list_path)
  is_tsv = list_path.endswith('.tsv')
  lines, skipped = transcripts.read_text_lines(list_path)
  utterances = []
  for line_no, line in lines:
    source = f'{name}:{line_no}'
    if not line.strip() or line.startswith('#'):
      continue
    if is_tsv and not utterances and line in _HEADERS:
      continue
    if is_tsv:
      audio_ref, tab, raw_text = line.partition('\t')
      if not tab or not audio_ref.strip():
        reason = f'malformed line {line!r}: expected AUDIO_PATH<TAB>TEXT'
        skipped.append(transcripts.Skipped(source, '', reason))
        continue
      utt_id = None
    else:
      try:
        record = json.loads(line)
        audio_ref, raw_text = record['audio'], record['text']
        utt_id = record.get('id')
        if not all(isinstance(v, str) for v in (audio_ref, raw_text)):
          raise TypeError('"audio" and "text" must be strings')
      except (ValueError, KeyError, TypeError, AttributeError) as e:
        reason = (
          f'malformed line {line!r}: expected {{"audio": ..., "text": ...}}'
          f' ({type(e).__name__}: {e})'
        )
        skipped.append(transcripts.Skipped(source, '', reason))
        continue
    utterances.append(
      _utterance(audio_ref.strip(), raw_text.strip(), utt_id, base, source)
    )
  return utterances, transcripts.in_line_order(skipped)


class Manifest(tfds.core.GeneratorBasedBuilder):
  """Speech listed in per-split TSV/JSONL manifests (users' own data)."""

  name = 'manifest'
  VERSION = tfds.core.Version('1.2.0')
  RELEASE_NOTES = {
    '1.0.0': 'First release.',
    '1.1.0': 'Noise tags glued to a word are removed; lists decoded per '
    'line; float audio scaled, not cast, to int16.',
    '1.2.0': common.INDEX_RELEASE_NOTE,
  }
  BUILDER_CONFIGS = common.builder_configs(
    (transcripts.PHONETIC, transcripts.SPELLING, transcripts.NONE)
  )
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    'Put one list per split in the manual directory: <split>.tsv lines '
    '`audio_path<TAB>transcript` or <split>.jsonl lines '
    '`{"audio": ..., "text": ...}`, audio paths relative to the list.'
  )

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description='Speech from a user manifest, 16 kHz mono int16.',
      features=common.features(),
      supervised_keys=('audio', 'text'),
      # Keep the list order (evaluation output lines up with the lists).
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    lists = find_lists(manual_dir)
    if not lists:
      raise FileNotFoundError(
        f'{manual_dir}: no <split>.tsv or <split>.jsonl lists found. '
        f'{self.MANUAL_DOWNLOAD_INSTRUCTIONS}'
      )
    return {
      split: self._generate_examples(split, path)
      for split, path in lists.items()
    }

  def _generate_examples(self, split: str, list_path: str):
    utterances, skipped = read_list(list_path)
    yield from common.generate_examples(
      utterances,
      self.builder_config.name,
      split,
      report_dir=self.data_path,
      skipped=skipped,
    )
