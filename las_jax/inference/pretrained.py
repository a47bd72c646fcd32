"""Exported models: one directory holding a trained model for inference.

`python -m las_jax.export` writes it from a training run (`save`);
`load` reads it, and `Recognizer.from_pretrained` decodes with it. It
needs neither the training run nor orbax, and holds no optimizer state:

  model.json   the manifest: format name and version, model family,
               vocabulary size, parameter count, where the model came from
               (run directory, checkpoint step) and when it was exported
  config.json  the run's configuration, with every field of this version
               (`run_layout.load_config`); its `features` section is the input
               front end (sample rate, log-mel bins, window, hop,
               normalization), `decode` the default search options
  vocab.txt    the vocabulary (`text.Vocabulary.save`; SentencePiece units
               carry their model inside)
  weights.npz  the parameters and batch norm statistics, one array per
               variable, named by its path in the model
               ('speller/attention/query/kernel')
  README.md    the model card (`model_card.py`)

The weights are a NumPy `.npz` archive rather than an orbax checkpoint:
reading it takes numpy alone (no tensorstore, no asynchronous checkpoint
machinery, no orbax on-disk layout that changes between releases), takes
milliseconds, never executes code from the file (`allow_pickle=False`),
and numpy checks each member's CRC-32 as it reads, so a damaged copy is
refused rather than loaded with wrong values. Any NumPy user can inspect
it.

A directory `load` cannot interpret is refused with a message that names
the file and the fix: a missing file, a format version newer than this
code, a vocabulary whose size is not the weights', a configuration that
is not JSON or does not build the model the weights belong to, a damaged
weights archive.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from las_jax import models, run_layout
from las_jax.inference import model_card, restore
from las_jax.text import Vocabulary

# The manifest's "format" value: what this directory is.
FORMAT = 'las_jax-model'
# Bumped when a change would make older code misread the directory; older
# directories stay readable.
FORMAT_VERSION = 1
MANIFEST_FILE = 'model.json'
CONFIG_FILE = run_layout.CONFIG_FILE
VOCAB_FILE = run_layout.VOCAB_FILE
WEIGHTS_FILE = 'weights.npz'
CARD_FILE = 'README.md'
FILES = (MANIFEST_FILE, CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE, CARD_FILE)
# Model families (`config.model.name`) that are language models.
LANGUAGE_MODELS = ('lstm_lm',)

_EXPORT = 'python -m las_jax.export --workdir RUN --out DIR'


def _path_name(path: tuple[Any, ...]) -> str:
  """'listener/rnn/0/fwd/kernel' for a variable's path in the model."""
  return '/'.join(
    str(getattr(key, 'key', getattr(key, 'idx', getattr(key, 'name', key))))
    for key in path
    if getattr(key, 'name', None) != 'value'  # nnx.Variable's own field.
  )


def named_arrays(state: Any) -> dict[str, Any]:
  """A model state's leaves by `_path_name`, in the state's order."""
  leaves = jax.tree_util.tree_flatten_with_path(state)[0]
  return {_path_name(path): leaf for path, leaf in leaves}


def export_run(
  workdir: str | os.PathLike,
  out_dir: str | os.PathLike,
  which: str = 'best',
  step: int | None = None,
  *,
  overwrite: bool = False,
) -> Path:
  """Exports a training run's checkpoint as a model directory.

  Args:
    workdir: the training run directory.
    out_dir: the directory to write.
    which: 'best' (lowest dev CER or perplexity) or 'latest' checkpoint.
    step: a particular step of `which` instead of the newest.
    overwrite: replace an existing `out_dir`.

  Returns:
    The directory's path.

  Raises:
    FileNotFoundError: no such run or checkpoint (`run_layout.checkpoint_dir`).
    FileExistsError: `out_dir` exists and `overwrite` is False.
  """
  workdir = Path(workdir).absolute()
  run = restore.load_run(workdir, which=which, step=step)
  step = int(run.checkpoint.name)
  date = datetime.date.today().isoformat()
  card = model_card.model_card(
    os.fspath(out_dir),
    run.config,
    run.vocab,
    models.count_params(run.model),
    workdir,
    step,
    which,
    date,
  )
  source = {
    'workdir': str(workdir),
    'which': which,
    'step': step,
    'checkpoint': str(run.checkpoint),
  }
  return save(out_dir, run, card, source, overwrite=overwrite)


def save(
  out_dir: str | os.PathLike,
  run: restore.Run,
  card: str,
  source: dict[str, Any],
  *,
  overwrite: bool = False,
) -> Path:
  """Writes `run`'s model, configuration and vocabulary as a directory.

  The directory is written next to `out_dir` under a temporary name and
  renamed into place when complete, so an interrupted export leaves no
  half-written model behind.

  Args:
    out_dir: the directory to create.
    run: a restored model (`restore.load_run`); its parameters and batch
      norm statistics are saved, not its RNG streams.
    card: the model card (README.md) text.
    source: where the model came from, recorded in the manifest (e.g.
      the run directory and checkpoint step).
    overwrite: replace an existing `out_dir`.

  Returns:
    The directory's path.

  Raises:
    FileExistsError: `out_dir` exists and `overwrite` is False.
  """
  out_dir = Path(out_dir).absolute()
  if out_dir.exists() and not overwrite:
    raise FileExistsError(
      f'{out_dir} exists: choose another directory, or replace it with '
      '--overwrite'
    )
  state = nnx.state(run.model, nnx.Not(nnx.RngState))
  arrays = {k: np.asarray(v) for k, v in named_arrays(state).items()}
  manifest = {
    'format': FORMAT,
    'format_version': FORMAT_VERSION,
    'model': run.config.model.name,
    'vocab_size': len(run.vocab),
    'vocab_unit': run.vocab.unit,
    'num_params': models.count_params(run.model),
    'source': source,
    'exported': datetime.datetime.now(datetime.UTC).isoformat(
      timespec='seconds'
    ),
    'las_jax_version': importlib.metadata.version('las_jax'),
  }
  config = run.config.copy_and_resolve_references()
  # A language model path of the training machine means nothing where the
  # model goes; `Recognizer.from_pretrained(..., lm=...)` takes one.
  config.decode.lm_workdir = ''
  out_dir.parent.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(prefix=f'.{out_dir.name}.', dir=out_dir.parent))
  try:
    np.savez(tmp / WEIGHTS_FILE, **arrays)
    (tmp / CONFIG_FILE).write_text(config.to_json(indent=2) + '\n')
    run.vocab.save(tmp / VOCAB_FILE)
    (tmp / CARD_FILE).write_text(card, encoding='utf-8')
    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + '\n')
    tmp.chmod(0o755)  # mkdtemp's 0o700 would keep the model private.
    if out_dir.exists():
      old = Path(
        tempfile.mkdtemp(prefix=f'.{out_dir.name}.old.', dir=out_dir.parent)
      )
      out_dir.rename(old / out_dir.name)
      tmp.rename(out_dir)
      shutil.rmtree(old)
    else:
      tmp.rename(out_dir)
  finally:
    if tmp.exists():
      shutil.rmtree(tmp)
  return out_dir


def describe(model_dir: str | os.PathLike) -> str:
  """One line on an exported model: family, parameters, origin, size."""
  model_dir = Path(model_dir)
  m = read_manifest(model_dir)
  sizes = {name: (model_dir / name).stat().st_size for name in FILES}
  source = m.get('source', {})
  files = ', '.join(f'{name} {_size(n)}' for name, n in sizes.items())
  return (
    f'{model_dir}: {m["model"]}, {m.get("num_params", 0):,} parameters, '
    f'{m["vocab_size"]} units; step {source.get("step")} ({source.get("which")}'
    f') of {source.get("workdir")}; {_size(sum(sizes.values()))} on disk '
    f'({files})'
  )


def _size(n: int) -> str:
  return f'{n / 2**20:.1f} MiB' if n >= 2**20 else f'{n / 2**10:.1f} KiB'


def read_manifest(model_dir: str | os.PathLike) -> dict[str, Any]:
  """The checked manifest (model.json) of an exported model directory.

  Raises:
    FileNotFoundError: no such directory, or no model.json in it (a
      training run directory is named as such).
    ValueError: model.json is not an exported model's manifest, or its
      format version is newer than this code reads.
  """
  model_dir = Path(model_dir)
  if not model_dir.is_dir():
    raise FileNotFoundError(f'{model_dir}: no such model directory')
  path = model_dir / MANIFEST_FILE
  if not path.is_file():
    if any(
      (model_dir / d).is_dir() for d in run_layout.CHECKPOINT_DIRS.values()
    ):
      raise FileNotFoundError(
        f'{model_dir} is a training run directory, not an exported model '
        f'(no {MANIFEST_FILE}): load it with Recognizer.from_workdir, or '
        f'export it with python -m las_jax.export --workdir {model_dir} '
        '--out DIR'
      )
    raise FileNotFoundError(
      f'{path} not found: {model_dir} is not an exported model, or an '
      'incomplete copy of one; copy the whole directory again, or export '
      f'it again ({_EXPORT})'
    )
  try:
    manifest = json.loads(path.read_text(encoding='utf-8'))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ValueError(
      f'{path}: not valid JSON ({e}); copy the model directory again or '
      f'export it again ({_EXPORT})'
    ) from e
  if not isinstance(manifest, dict) or manifest.get('format') != FORMAT:
    raise ValueError(
      f'{path}: not the manifest of an exported las_jax model (no '
      f'"format": "{FORMAT}"); export the model with {_EXPORT}'
    )
  version = manifest.get('format_version')
  if not isinstance(version, int) or version < 1:
    raise ValueError(
      f'{path}: "format_version" must be a positive integer, got '
      f'{version!r}; export the model again ({_EXPORT})'
    )
  if version > FORMAT_VERSION:
    raise ValueError(
      f'{path}: format version {version} is newer than this las_jax reads '
      f'(up to {FORMAT_VERSION}); upgrade las_jax to the version that '
      f'exported it ({manifest.get("las_jax_version", "unknown")}) or newer'
    )
  if not isinstance(manifest.get('vocab_size'), int):
    raise ValueError(
      f'{path}: "vocab_size" must be an integer, got '
      f'{manifest.get("vocab_size")!r}; export the model again ({_EXPORT})'
    )
  return manifest


def load(
  model_dir: str | os.PathLike, *, language_model: bool = False
) -> restore.Run:
  """Reads an exported model directory (see the module docstring).

  Args:
    model_dir: the directory `save` wrote.
    language_model: expect a language model ('lstm_lm') rather than a
      recognizer (LAS, DeepSpeech2).

  Returns:
    The model with its configuration and vocabulary; `checkpoint` is
    `model_dir`, so `run_layout.find_run_dir` finds its config.json and
    vocab.txt there.

  Raises:
    FileNotFoundError: the directory or one of its files is missing.
    ValueError: a file cannot be interpreted (see the module docstring),
      or the model is not of the expected kind.
  """
  model_dir = Path(model_dir).absolute()
  manifest = read_manifest(model_dir)
  for name in (CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE):
    if not (model_dir / name).is_file():
      raise FileNotFoundError(
        f'{model_dir / name} not found: the model directory is incomplete; '
        f'copy all of {", ".join(FILES)} from the source, or export it '
        f'again ({_EXPORT})'
      )
  config_path = model_dir / CONFIG_FILE
  fix = f'copy it again from the source, or export the model again ({_EXPORT})'
  try:
    config = run_layout.load_config(model_dir)
  except ValueError as e:  # Names the file already.
    raise ValueError(f'{e}; {fix}') from e
  except (TypeError, AttributeError, KeyError) as e:
    raise ValueError(
      f'{config_path}: not a configuration ({type(e).__name__}: {e}); {fix}'
    ) from e
  vocab_path = model_dir / VOCAB_FILE
  try:
    vocab = Vocabulary.load(vocab_path)
  except ValueError as e:
    raise ValueError(f'{e}; {fix}') from e
  _check_kind(config.model.name, language_model, model_dir)
  if len(vocab) != manifest['vocab_size']:
    raise ValueError(
      f'{vocab_path} holds {len(vocab)} units, but the weights in '
      f'{model_dir / WEIGHTS_FILE} were trained on {manifest["vocab_size"]} '
      f'({model_dir / MANIFEST_FILE} "vocab_size"): the vocabulary is not '
      f"this model's; copy the model's own {VOCAB_FILE} again, or export "
      f'the model again ({_EXPORT})'
    )
  try:
    graphdef, params, variables, rng_streams = restore.abstract_model(
      config, len(vocab)
    )
  except (ValueError, TypeError, AttributeError, KeyError) as e:
    raise ValueError(
      f'{config_path}: cannot build the model ({type(e).__name__}: {e}); {fix}'
    ) from e
  weights = _read_weights(model_dir / WEIGHTS_FILE)
  built = {*named_arrays(params), *named_arrays(variables)}
  extra = sorted(set(weights) - built)
  if extra:
    raise ValueError(
      f'{model_dir / WEIGHTS_FILE} holds variables the configuration '
      f'{config_path} does not build ({", ".join(extra[:3])}, ...): copy '
      f'both from the same export, or export the model again ({_EXPORT})'
    )
  params, variables = (
    _fill(part, weights, model_dir) for part in (params, variables)
  )
  model = nnx.merge(graphdef, params, variables, rng_streams)
  return restore.Run(model, config, vocab, model_dir)


def _check_kind(name: str, language_model: bool, model_dir: Path) -> None:
  is_lm = name in LANGUAGE_MODELS
  if is_lm and not language_model:
    raise ValueError(
      f'{model_dir} holds a language model ({name!r}), not a recognizer: '
      'give it as the language model for shallow fusion, '
      "Recognizer.from_pretrained(model_dir, lm='" + str(model_dir) + "')"
    )
  if language_model and not is_lm:
    raise ValueError(
      f'{model_dir} holds a recognizer ({name!r}), not a language model: '
      'export a language model run (configs/kspon_lm.py, configs/mini_lm.py) '
      'and give that directory'
    )


def _read_weights(path: Path) -> dict[str, np.ndarray]:
  """All arrays of a weights archive; refuses a damaged one."""
  try:
    with np.load(path, allow_pickle=False) as archive:
      # Reading each member to its end makes zipfile check its CRC-32.
      return {name: archive[name] for name in archive.files}
  except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
    raise ValueError(
      f'{path}: damaged or not a weights archive ({type(e).__name__}: {e}); '
      f'copy it again from the source, or export the model again ({_EXPORT})'
    ) from e


def _fill(abstract: Any, weights: dict[str, np.ndarray], model_dir: Path):
  """`abstract` (shapes) with the arrays of `weights` in its leaves."""
  leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract)
  arrays = []
  for path, leaf in leaves:
    name = _path_name(path)
    array = weights.get(name)
    problem = None
    if array is None:
      problem = 'is missing'
    elif array.shape != leaf.shape or array.dtype != leaf.dtype:
      problem = (
        f'is {array.dtype}{list(array.shape)}, the configuration builds '
        f'{leaf.dtype}{list(leaf.shape)}'
      )
    if problem:
      raise ValueError(
        f'{model_dir / WEIGHTS_FILE}: variable {name!r} {problem}: the '
        f'weights do not belong to the model {model_dir / CONFIG_FILE} '
        'describes; copy both from the same export, or export the model '
        f'again ({_EXPORT})'
      )
    arrays.append(jax.device_put(array))  # jnp.asarray compiles per shape.
  return jax.tree_util.tree_unflatten(treedef, arrays)
