"""Speech datasets as TFDS builders.

- `ksponspeech` (configs 'phonetic', 'spelling'): KsponSpeech, or the
  generated `mini_kspon` corpus, in the AI Hub layout.
- `manifest` (configs 'phonetic', 'spelling', 'none'): users' own audio
  listed in per-split TSV/JSONL files.

Every example has `id`, `audio` (int16 [N], 16 kHz mono), `text`
(normalized per the config) and `raw_text`; every split has an utterance
index (ids, transcripts, lengths, silence-trim offsets). Prepare with
`build_dataset` or `python -m las_jax.data.build`; read with
`builder.as_data_source(split)` and `read_index(builder.data_dir, split)`.

The builders are registered with TFDS by `register_builders()` and by the
first use of any name below. Importing the package alone imports neither
them nor tensorflow_datasets (half a second), so its TFDS-free modules
(`transcripts`, `utterance_index`) serve decoding without it.
"""

import importlib

# Public name -> the module that defines it.
_EXPORTS = {
  'Ksponspeech': 'ksponspeech',
  'Manifest': 'manifest',
  'UtteranceIndex': 'utterance_index',
  'build_dataset': 'common',
  'read_index': 'common',
  'read_skipped': 'common',
}

__all__ = [*_EXPORTS, 'register_builders']


def register_builders() -> None:
  """Registers the `ksponspeech` and `manifest` builders with TFDS."""
  for module in ('ksponspeech', 'manifest'):
    importlib.import_module(f'{__name__}.{module}')


def __getattr__(name: str):
  if name in _EXPORTS:
    register_builders()
    return getattr(
      importlib.import_module(f'{__name__}.{_EXPORTS[name]}'), name
    )
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
