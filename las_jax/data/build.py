r"""Prepares a las_jax speech dataset as TFDS array_record files.

  python -m las_jax.data.build --dataset=ksponspeech \
      --transcription=phonetic --manual_dir=data/KsponSpeech \
      --data_dir=data/tfds

Writes <data_dir>/<dataset>/<transcription>/<version>/, including one
`skipped_<split>.tsv` per split listing the lines that gave no example.
A dataset already prepared there is left as it is.
"""

from absl import app, flags

from las_jax import data

_DATASET = flags.DEFINE_enum(
  'dataset', 'ksponspeech', ['ksponspeech', 'manifest'], 'TFDS builder.'
)
_TRANSCRIPTION = flags.DEFINE_enum(
  'transcription',
  'phonetic',
  ['phonetic', 'spelling', 'none'],
  "Builder config ('none': manifest only).",
)
_MANUAL_DIR = flags.DEFINE_string(
  'manual_dir', None, 'Corpus directory.', required=True
)
_DATA_DIR = flags.DEFINE_string('data_dir', 'data/tfds', 'TFDS data dir.')


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  builder = data.build_dataset(
    _DATASET.value, _DATA_DIR.value, _MANUAL_DIR.value, _TRANSCRIPTION.value
  )
  for split, info in builder.info.splits.items():
    skipped = data.read_skipped(builder.data_dir, split)
    print(f'{split}: {info.num_examples} examples, {len(skipped)} skipped')
  print(f'Prepared {builder.data_dir}')


if __name__ == '__main__':
  app.run(main)
