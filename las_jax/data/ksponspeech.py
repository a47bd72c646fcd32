"""TFDS builder for KsponSpeech (AI Hub), read from the official .trn lists.

The manual directory holds the corpus as unpacked from AI Hub:

  <manual_dir>/KsponSpeech_01/KsponSpeech_0001/KsponSpeech_000001.pcm
  ...
  <manual_dir>/KsponSpeech_eval/eval_clean/KsponSpeech_E00001.pcm
  <manual_dir>/scripts/{train,dev,eval_clean,eval_other}.trn

(`KsponSpeech_scripts/` is accepted for `scripts/`.) Each .trn line is
`RELATIVE/PATH.pcm :: transcript`; the splits are the .trn files present.
The generated `mini_kspon` corpus (`make_mini_kspon.py`) has the same
layout and goes through this builder too.

  python -m las_jax.data.build --dataset=ksponspeech \
      --manual_dir=data/KsponSpeech --data_dir=data/tfds
"""

from __future__ import annotations

import os
import re

import tensorflow_datasets as tfds

from las_jax.data import common

# The official split lists, in the order they are built.
SPLITS = ('train', 'dev', 'eval_clean', 'eval_other')
# Where the .trn lists may live, relative to the manual directory.
SCRIPT_DIRS = ('scripts', 'KsponSpeech_scripts')
# `PATH :: TEXT`; the text may be empty (then skipped as empty).
_TRN_LINE_RE = re.compile(r'^(\S+?)\s*::\s*(.*)$')


def find_scripts(manual_dir: str) -> dict[str, str]:
  """Maps split name to its .trn file for the lists present in `manual_dir`."""
  found = {}
  for split in SPLITS:
    for sub in SCRIPT_DIRS:
      path = os.path.join(manual_dir, sub, f'{split}.trn')
      if os.path.isfile(path):
        found[split] = path
        break
  return found


def read_trn(
  trn_path: str, manual_dir: str
) -> tuple[list[common.Utterance], list[common.Skipped]]:
  """Parses a .trn list into utterances and malformed lines.

  Args:
    trn_path: the .trn file: UTF-8 or CP949 (as the corpus .txt files),
      per line, or UTF-16 with a byte-order mark (`common.read_text_lines`).
    manual_dir: directory the audio paths are relative to.

  Returns:
    (utterances, skipped lines), each in file order; lines that do not
    decode or parse are skipped, named `<list>:<line>`.
  """
  lines, skipped = common.read_text_lines(trn_path)
  name = os.path.basename(trn_path)
  utterances = []
  for line_no, line in lines:
    line = line.strip()
    if not line:
      continue
    source = f'{name}:{line_no}'
    match = _TRN_LINE_RE.match(line)
    if not match:
      reason = f"malformed line {line!r}: expected 'PATH :: TEXT'"
      skipped.append(common.Skipped(source, '', reason))
      continue
    rel_path, raw_text = match.group(1), (match.group(2) or '').strip()
    # Some copies of the lists write corpus paths with a leading '/'; an
    # absolute path that exists as written (a user's own list) is kept.
    audio_path = os.path.join(manual_dir, rel_path.lstrip('/'))
    if os.path.isabs(rel_path) and not os.path.exists(audio_path):
      if os.path.exists(rel_path):
        audio_path = rel_path
    utt_id = os.path.splitext(os.path.basename(rel_path))[0]
    utterances.append(common.Utterance(utt_id, audio_path, raw_text, source))
  return utterances, common.in_line_order(skipped)


class Ksponspeech(tfds.core.GeneratorBasedBuilder):
  """KsponSpeech: 969 h of Korean spontaneous speech (Bang et al., 2020)."""

  name = 'ksponspeech'
  VERSION = tfds.core.Version('1.2.0')
  RELEASE_NOTES = {
    '1.0.0': 'First release.',
    '1.1.0': 'Noise tags glued to a word are removed; lists decoded per '
    'line; float audio scaled, not cast, to int16.',
    '1.2.0': common.INDEX_RELEASE_NOTE,
  }
  BUILDER_CONFIGS = common.builder_configs()
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    'Download KsponSpeech from AI Hub (https://aihub.or.kr), unpack the '
    'KsponSpeech_0N and KsponSpeech_eval archives into the manual directory '
    'and the scripts archive into <manual_dir>/scripts, so that '
    '<manual_dir>/scripts/train.trn lists KsponSpeech_01/... paths. Or '
    'generate a small corpus in the same layout: python -m '
    'las_jax.data.make_mini_kspon <manual_dir>.'
  )

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description=(
        'Korean spontaneous speech, 16 kHz int16 PCM, with transcripts '
        'normalized as in KoSpeech (noise tags removed, dual '
        'transcriptions resolved per the config).'
      ),
      features=common.features(),
      supervised_keys=('audio', 'text'),
      homepage='https://aihub.or.kr/aihubdata/data/view.do?dataSetSn=123',
      # Keep the .trn order, so evaluation output lines up with the lists;
      # training shuffles in the input pipeline.
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    scripts = find_scripts(manual_dir)
    if not scripts:
      wanted = ', '.join(f'{s}.trn' for s in SPLITS)
      raise FileNotFoundError(
        f'{manual_dir}: no split lists found; expected one of {wanted} in '
        f'{" or ".join(SCRIPT_DIRS)}/. {self.MANUAL_DOWNLOAD_INSTRUCTIONS}'
      )
    return {
      split: self._generate_examples(split, path, manual_dir)
      for split, path in scripts.items()
    }

  def _generate_examples(self, split: str, trn_path: str, manual_dir: str):
    utterances, skipped = read_trn(trn_path, manual_dir)
    yield from common.generate_examples(
      utterances,
      self.builder_config.name,
      split,
      report_dir=self.data_path,
      skipped=skipped,
    )
