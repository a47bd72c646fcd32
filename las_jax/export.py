r"""Exports a training run's checkpoint as a self-contained model directory.

  python -m las_jax.export --workdir runs/kspon --which best \
      --out models/kspon_las
  python -m las_jax.export --workdir runs/kspon_lm --out models/kspon_lm

The directory (`las_jax.pretrained`: model.json, config.json, vocab.txt,
weights.npz and a model card README.md) holds what inference needs and
nothing else: no optimizer state, no data-iterator state. Load it with
`Recognizer.from_pretrained('models/kspon_las')`, fuse an exported
language model with `Recognizer.from_pretrained(dir, lm='models/kspon_lm')`,
or serve it with `python -m las_jax.serve --model models/kspon_las`.
"""

import sys

from absl import app, flags, logging

from las_jax.inference import pretrained

_WORKDIR = flags.DEFINE_string('workdir', None, 'Training run directory.')
_WHICH = flags.DEFINE_enum(
  'which',
  'best',
  ['best', 'latest'],
  'Checkpoint to export: lowest dev CER (perplexity for a language model) '
  'or the newest.',
)
_STEP = flags.DEFINE_integer(
  'step', None, 'A particular step of --which instead of the newest.'
)
_OUT = flags.DEFINE_string('out', None, 'Directory to write.')
_OVERWRITE = flags.DEFINE_bool(
  'overwrite', False, 'Replace --out if it exists.'
)
flags.mark_flags_as_required(['workdir', 'out'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # orbax's INFO lines.
  try:
    out = pretrained.export_run(
      _WORKDIR.value,
      _OUT.value,
      _WHICH.value,
      _STEP.value,
      overwrite=_OVERWRITE.value,
    )
  except (ValueError, FileNotFoundError, FileExistsError) as e:
    sys.exit(f'las_jax.export: {e}')
  print(pretrained.describe(out))


if __name__ == '__main__':
  app.run(main)
