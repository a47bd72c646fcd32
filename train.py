"""Trains a las_jax model.

  python train.py --config configs/kspon.py --workdir runs/kspon
  python train.py --config configs/mini.py --workdir runs/mini \
      --config.train.num_steps=2000

Rerunning the same command with the same --workdir resumes from the latest
checkpoint (a finished run exits at once). Multi-host: set
JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID on every host
(or --config.train.distributed=True where JAX detects the cluster itself).

The console shows the progress bar, evaluation summaries, warnings and
errors; library logs (INFO and up) go to <workdir>/train.log, and to the
console too with --alsologtostderr or --verbosity=0. JAX options are flags
(`--jax_platforms=cpu`, `--jax_debug_nans`).
"""

import jax
from absl import app, flags
from ml_collections import config_flags

from las_jax import compilation_cache, logging_utils, train

config_flags.DEFINE_config_file(
  'config', 'configs/default.py', 'Training configuration.', lock_config=True
)
flags.DEFINE_string('workdir', None, 'Run directory (checkpoints, logs).')
flags.mark_flags_as_required(['workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging_utils.log_to_workdir(flags.FLAGS.workdir)
  compilation_cache.enable_by_default()
  train.train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == '__main__':
  jax.config.config_with_absl()
  app.run(main)
