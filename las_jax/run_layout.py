"""The layout of a training run directory, shared by training and inference.

  <workdir>/config.json                 the run's configuration
  <workdir>/vocab.txt                   its vocabulary
  <workdir>/checkpoints/<step>/         the latest steps (`checkpoint.py`):
      state/                            params, optimizer state, step, RNG
      data_iter/                        each host's input-iterator state
      run/                              the config and vocabulary again
  <workdir>/checkpoints_best/<step>/    the best dev CER (or perplexity)
  <workdir>/metrics.jsonl, tensorboard/, plots/, curves.png, train.log

Training writes it (`train.py`, `checkpoint.Checkpointer`); inference reads
it (`inference.restore`). Configs saved by older versions are read with
today's field names and defaults.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import ml_collections

from configs import default

# Files of a run directory (written by training).
CONFIG_FILE = 'config.json'
VOCAB_FILE = 'vocab.txt'
# Checkpoint directories of a run, by `which`.
CHECKPOINT_DIRS = {'latest': 'checkpoints', 'best': 'checkpoints_best'}
# The orbax items of a step directory.
STATE_ITEM = 'state'
ITEMS = (STATE_ITEM, 'data_iter', 'run')
# Config sections/fields that define the network and its inputs: a workdir
# whose saved config differs in any of them cannot be resumed.
ARCHITECTURE_FIELDS = (
  'model',
  'features.num_mels',
  'features.normalize',
  'features.input_reverse',
  'data.transcription',
  'data.vocab_unit',
  'data.vocab_max_size',
)
# Fields renamed since runs were first saved: old dotted name -> new one.
# Saved configs are read with the new names (`upgrade_saved_config`).
RENAMED_FIELDS = {
  'train.vocab_unit': 'data.vocab_unit',
  'train.vocab_max_size': 'data.vocab_max_size',
}


def _fill_missing(
  config: ml_collections.ConfigDict, defaults: ml_collections.ConfigDict
) -> None:
  """Adds the fields of `defaults` that `config` lacks, recursively."""
  for key, value in defaults.items():
    if key not in config:
      config[key] = value
    elif isinstance(value, ml_collections.ConfigDict) and isinstance(
      config[key], ml_collections.ConfigDict
    ):
      _fill_missing(config[key], value)


def load_config(run_dir: str | os.PathLike) -> ml_collections.ConfigDict:
  """Reads a run's config.json as a ConfigDict.

  Fields renamed since the run was made are read under their new names
  (`RENAMED_FIELDS`), and fields added to `configs/default.py`
  take their default values, so older runs keep decoding.
  """
  path = Path(run_dir) / CONFIG_FILE
  try:
    saved = upgrade_saved_config(json.loads(path.read_text()))
    config = ml_collections.ConfigDict(saved)
  except FileNotFoundError as e:
    raise FileNotFoundError(
      f'{path} not found: {run_dir} is not a training run directory'
    ) from e
  except json.JSONDecodeError as e:
    raise ValueError(f'{path}: not valid JSON: {e}') from e
  _fill_missing(config, default.get_config())
  return config


def find_run_dir(checkpoint: str | os.PathLike) -> Path:
  """The nearest directory at or above `checkpoint` holding config.json."""
  path = Path(checkpoint).absolute()
  for candidate in (path, *path.parents):
    if (candidate / CONFIG_FILE).is_file():
      return candidate
  raise FileNotFoundError(
    f'no {CONFIG_FILE} in {path} or above it: give the checkpoint of a '
    'training run directory'
  )


def checkpoint_dir(
  workdir: str | os.PathLike, which: str = 'latest', step: int | None = None
) -> Path:
  """The step directory of a run's latest/best checkpoint (or of `step`).

  Raises:
    ValueError: `which` is not 'latest' or 'best'.
    FileNotFoundError: there is no such checkpoint (naming the directory).
  """
  if which not in CHECKPOINT_DIRS:
    raise ValueError(
      f'which must be one of {sorted(CHECKPOINT_DIRS)}, got {which!r}'
    )
  if not Path(workdir).is_dir():
    raise FileNotFoundError(f'{workdir}: no such run directory')
  directory = Path(workdir).absolute() / CHECKPOINT_DIRS[which]
  if not directory.is_dir():
    raise FileNotFoundError(f'{directory}: no {which} checkpoints here')
  # Deferred: orbax takes a quarter second to import, and only a training
  # run's checkpoints need it (not an exported model).
  import orbax.checkpoint as ocp  # noqa: PLC0415

  steps = ocp.utils.checkpoint_steps(directory)  # Finalized ones only.
  if step is None:
    if not steps:
      raise FileNotFoundError(f'{directory}: no complete checkpoint')
    step = max(steps)
  elif step not in steps:
    raise FileNotFoundError(
      f'{directory}: no checkpoint at step {step}; steps: {sorted(steps)}'
    )
  return directory / str(step)


def _lookup(config: dict, dotted: str) -> Any:
  node = config
  for key in dotted.split('.'):
    if not isinstance(node, dict) or key not in node:
      return None
    node = node[key]
  return node


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
  if isinstance(value, dict):
    out = {}
    for key, sub in value.items():
      out.update(_flatten(sub, f'{prefix}.{key}'))
    return out
  return {prefix: value}


def upgrade_saved_config(saved: dict) -> dict:
  """A saved config dict (config.json) with today's field names.

  Runs saved before a field moved (RENAMED_FIELDS) keep loading, decoding
  and resuming: the old field's value moves to the new name, unless the
  file has both (then the new one wins and the old one is dropped).

  Args:
    saved: the JSON object of a config.json; not modified.

  Returns:
    A copy with every renamed field under its new name.
  """
  saved = json.loads(json.dumps(saved))
  for old, new in RENAMED_FIELDS.items():
    *old_path, old_key = old.split('.')
    parent = _lookup(saved, '.'.join(old_path))
    if not isinstance(parent, dict) or old_key not in parent:
      continue
    value = parent.pop(old_key)
    *new_path, new_key = new.split('.')
    node = saved
    for key in new_path:
      node = node.setdefault(key, {})
    node.setdefault(new_key, value)
  return saved


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
  """The config as plain JSON-able data (tuples become lists)."""
  return json.loads(config.to_json_best_effort())


def architecture_differences(saved: dict, current: dict) -> list[str]:
  """Dotted names of architecture fields that differ between two configs."""
  diffs = []
  for field in ARCHITECTURE_FIELDS:
    a = _flatten(_lookup(saved, field), field)
    b = _flatten(_lookup(current, field), field)
    for key in sorted(set(a) | set(b)):
      if a.get(key) != b.get(key):
        diffs.append(f'{key}: saved {a.get(key)!r}, now {b.get(key)!r}')
  return diffs


def check_or_write_config(
  workdir: str | Path, config: ml_collections.ConfigDict
) -> None:
  """Writes workdir/config.json, or checks the existing one is compatible.

  Fields outside ARCHITECTURE_FIELDS (learning rate, number of steps, eval
  interval...) may change between a run and its resumption; the saved file
  is then updated to the current config.

  Raises:
    ValueError: naming every architecture field that differs.
  """
  path = Path(workdir) / CONFIG_FILE
  current = config_to_dict(config)
  if path.exists():
    saved = upgrade_saved_config(json.loads(path.read_text()))
    diffs = architecture_differences(saved, current)
    if diffs:
      raise ValueError(
        f'{workdir} holds a run with a different architecture; use a new '
        '--workdir or the original config. Differing fields:\n  '
        + '\n  '.join(diffs)
      )
  if jax.process_index() == 0:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=2, ensure_ascii=False))
