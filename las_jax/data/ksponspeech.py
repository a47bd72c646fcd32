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

import tensorflow_datasets as tfds

from las_jax.data import common, transcripts

# The official split lists, in the order they are built.
SPLITS = ('train', 'dev', 'eval_clean', 'eval_other')


def find_scripts(manual_dir: str) -> dict[str, str]:
  """Maps split name to its .trn file for the lists present in `manual_dir`."""
  found = {}
  for split in SPLITS:
    for sub in transcripts.SCRIPT_DIRS:
      path = os.path.join(manual_dir, sub, f'{split}.trn')
      if os.path.isfile(path):
        found[split] = path
        break
  return found


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
      where = ' or '.join(transcripts.SCRIPT_DIRS)
      raise FileNotFoundError(
        f'{manual_dir}: no split lists found; expected one of {wanted} in '
        f'{where}/. {self.MANUAL_DOWNLOAD_INSTRUCTIONS}'
      )
    return {
      split: self._generate_examples(split, path, manual_dir)
      for split, path in scripts.items()
    }

  def _generate_examples(self, split: str, trn_path: str, manual_dir: str):
    utterances, skipped = transcripts.read_trn(trn_path, manual_dir)
    yield from common.generate_examples(
      utterances,
      self.builder_config.name,
      split,
      report_dir=self.data_path,
      skipped=skipped,
    )
