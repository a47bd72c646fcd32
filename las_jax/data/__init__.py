"""Speech datasets as TFDS builders; importing this package registers them.

- `ksponspeech` (configs 'phonetic', 'spelling'): KsponSpeech, or the
  generated `mini_kspon` corpus, in the AI Hub layout.
- `manifest` (configs 'phonetic', 'spelling', 'none'): users' own audio
  listed in per-split TSV/JSONL files.

Every example has `id`, `audio` (int16 [N], 16 kHz mono), `text`
(normalized per the config) and `raw_text`; every split has an utterance
index (ids, transcripts, lengths, silence-trim offsets). Prepare with
`build_dataset` or `python -m las_jax.data.build`; read with
`builder.as_data_source(split)` and `read_index(builder.data_dir, split)`.
"""

from las_jax.data.common import build_dataset, read_index, read_skipped
from las_jax.data.ksponspeech import Ksponspeech
from las_jax.data.manifest import Manifest
from las_jax.data.utterance_index import UtteranceIndex

__all__ = [
  'Ksponspeech',
  'Manifest',
  'UtteranceIndex',
  'build_dataset',
  'read_index',
  'read_skipped',
]
