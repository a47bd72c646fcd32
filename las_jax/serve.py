r"""Serves a web page to try a model: upload or record audio, read the text.

  python -m las_jax.serve --model models/mini_las
  python -m las_jax.serve --workdir runs/mini --which=best --beam_size=10
  python -m las_jax.serve --model models/kspon_las --lm models/kspon_lm

then open http://127.0.0.1:8000. The page (`las_jax.web_demo`) shows the
transcript, the n-best list with scores and the attention plot of the best
hypothesis. It binds to 127.0.0.1 (this machine only) unless --host says
otherwise; browsers allow the microphone on 127.0.0.1/localhost or https
pages only. The first upload of each length bucket compiles its decode
program (seconds); later ones reuse it.
"""

import sys

import jax
import uvicorn
from absl import app, flags, logging

from las_jax import compilation_cache
from las_jax.inference import pretrained, restore, web_demo
from las_jax.inference.recognizer import Recognizer

_MODEL = flags.DEFINE_string(
  'model', None, 'An exported model directory (python -m las_jax.export).'
)
_WORKDIR = flags.DEFINE_string(
  'workdir', None, 'A training run directory, instead of --model.'
)
_WHICH = flags.DEFINE_enum(
  'which', 'best', ['best', 'latest'], 'Checkpoint of --workdir to serve.'
)
_LM = flags.DEFINE_string(
  'lm', None, 'An exported language model directory for shallow fusion.'
)
_LM_WORKDIR = flags.DEFINE_string(
  'lm_workdir', None, 'A language model training run, instead of --lm.'
)
_HOST = flags.DEFINE_string(
  'host', '127.0.0.1', 'Address to listen on; 0.0.0.0 opens it to the network.'
)
_PORT = flags.DEFINE_integer('port', 8000, 'Port to listen on.')
_MAX_UPLOAD_MB = flags.DEFINE_float(
  'max_upload_mb',
  web_demo.DEFAULT_MAX_UPLOAD_BYTES / 2**20,
  'Larger uploads are refused.',
)
_BEAM_SIZE = flags.DEFINE_integer(
  'beam_size', None, 'Beam width, 1 = greedy (default: config.decode).'
)
_CTC_MODE = flags.DEFINE_enum(
  'ctc_mode',
  None,
  ['joint', 'rescore', 'ctc', 'off'],
  'How LAS uses its CTC head (default: config.decode).',
)
_LM_WEIGHT = flags.DEFINE_float(
  'lm_weight', None, 'Shallow fusion weight (default: config.decode).'
)


def load(
  model: str | None,
  workdir: str | None,
  which: str,
  lm: str | None,
  lm_workdir: str | None,
  **options,
) -> tuple[Recognizer, restore.Run, str]:
  """The recognizer, its restored run and a description for the page."""
  if (model is None) == (workdir is None):
    raise ValueError('give exactly one of --model and --workdir')
  if lm is not None and lm_workdir is not None:
    raise ValueError('give at most one of --lm and --lm_workdir')
  if model is not None:
    run = pretrained.load(model)
    description = f'{model} ({pretrained.read_manifest(model)["model"]})'
  else:
    run = restore.load_run(workdir, which=which)
    description = f'{workdir}, step {run.checkpoint.name} ({which})'
  options = {k: v for k, v in options.items() if v is not None}
  if lm is not None:
    options['language_model'] = pretrained.load(lm, language_model=True)
    description += f' + language model {lm}'
  elif lm_workdir:
    options['language_model'] = restore.load_language_model(lm_workdir)
    description += f' + language model {lm_workdir}'
  recognizer = Recognizer(run.model, run.config, run.vocab, **options)
  return recognizer, run, description


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  compilation_cache.enable_by_default()
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # orbax's INFO lines.
  try:
    recognizer, run, description = load(
      _MODEL.value,
      _WORKDIR.value,
      _WHICH.value,
      _LM.value,
      _LM_WORKDIR.value,
      beam_size=_BEAM_SIZE.value,
      ctc_mode=_CTC_MODE.value,
      lm_weight=_LM_WEIGHT.value,
    )
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f'las_jax.serve: {e}')
  application = web_demo.create_app(
    recognizer,
    run.model,
    description=description,
    max_upload_bytes=int(_MAX_UPLOAD_MB.value * 2**20),
  )
  host = _HOST.value
  if host not in ('127.0.0.1', 'localhost', '::1'):
    print(
      f'Listening on {host}: anyone who can reach this machine can use the '
      'page; browsers allow its microphone only over https.',
      file=sys.stderr,
    )
  print(
    f'Serving {description} at http://{host}:{_PORT.value}', file=sys.stderr
  )
  uvicorn.run(application, host=host, port=_PORT.value, log_level='warning')


if __name__ == '__main__':
  jax.config.config_with_absl()
  app.run(main)
