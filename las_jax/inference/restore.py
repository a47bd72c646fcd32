"""Restoring a trained model for inference from a training run's checkpoint.

`checkpoint.Checkpointer` restores the whole training state (optimizer
moments and the data-iterator position included) to resume training.
Inference needs only the model: this module reads `params` and `variables`
out of a checkpoint's `state` item with orbax's partial restore, so the
optimizer state (twice the parameters' size, for Adam) is never read and no
optimizer has to be rebuilt. The layout it reads is `checkpoint.py`'s:

  <workdir>/config.json, <workdir>/vocab.txt
  <workdir>/checkpoints/<step>/state        latest steps
  <workdir>/checkpoints_best/<step>/state   best dev CER
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import jax
import ml_collections
from flax import nnx

from las_jax import models, run_layout
from las_jax.text import Vocabulary


@dataclasses.dataclass(frozen=True)
class Run:
  """A restored model with the configuration and vocabulary it was trained
  with."""

  model: nnx.Module
  config: ml_collections.ConfigDict
  vocab: Vocabulary
  # The checkpoint's step directory.
  checkpoint: Path


def _state_dir(path: Path) -> Path:
  if (path / run_layout.STATE_ITEM).is_dir():
    return path / run_layout.STATE_ITEM
  if path.name == run_layout.STATE_ITEM and path.is_dir():
    return path
  raise FileNotFoundError(
    f'{path}: not a checkpoint step directory (no {run_layout.STATE_ITEM}/ inside)'
  )


def abstract_model(
  config: ml_collections.ConfigDict, vocab_size: int
) -> tuple[nnx.GraphDef, nnx.State, nnx.State, nnx.State]:
  """The configured model without its weights, for loading them into.

  Returns:
    `(graphdef, params, variables, rng_streams)`: the module structure,
    the shapes and dtypes (`jax.ShapeDtypeStruct`) of its `nnx.Param`s and
    of its other variables (batch norm statistics), and its RNG streams
    (which checkpoints do not hold), built for real. `nnx.merge` of the
    four, shapes replaced by arrays, is the model.
  """

  def build() -> nnx.Module:
    return models.build_model(config.model, vocab_size, nnx.Rngs(config.seed))

  traced = {}

  def init_rng_streams() -> nnx.State:
    graphdef, params, variables, rng_streams = nnx.split(
      build(), nnx.Param, nnx.Not(nnx.RngState), nnx.RngState
    )
    # Shapes only: the weights come from the checkpoint, not an init.
    traced['abstract'] = (
      graphdef,
      *jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), (params, variables)
      ),
    )
    return rng_streams

  # One trace of the model's construction gives both (a second, under
  # nnx.eval_shape, took a third of a second of decode.py's start); XLA
  # drops the parameter initializers, whose results are unused.
  rng_streams = jax.jit(init_rng_streams)()
  return *traced['abstract'], rng_streams


def restore_model(
  config: ml_collections.ConfigDict,
  vocab_size: int,
  checkpoint: str | os.PathLike,
) -> nnx.Module:
  """Builds the configured model and loads a checkpoint's weights into it.

  Args:
    config: the run's configuration (its `model` section builds the model).
    vocab_size: size of the run's vocabulary.
    checkpoint: a step directory (holding `state/`) or its `state/`.

  Returns:
    The model with the checkpoint's parameters and other variables (batch
    norm statistics), on the default device.
  """
  # Deferred: a quarter second to import, which loading an exported model
  # (`pretrained`, also through this module) does not need.
  import orbax.checkpoint as ocp  # noqa: PLC0415

  state_dir = _state_dir(Path(checkpoint).absolute())
  graphdef, params, variables, rng_streams = abstract_model(config, vocab_size)
  target = {'params': params, 'variables': variables}
  abstract = jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), target
  )
  with ocp.PyTreeCheckpointer() as checkpointer:
    restored = checkpointer.restore(
      state_dir,
      args=ocp.args.PyTreeRestore(
        item=abstract,
        restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
        partial_restore=True,
      ),
    )
  # orbax gives NumPy arrays for targets without a sharding: put them on
  # the device once, not with every call of a compiled program.
  restored = jax.device_put(restored)
  return nnx.merge(
    graphdef, restored['params'], restored['variables'], rng_streams
  )


def load_checkpoint(checkpoint: str | os.PathLike) -> Run:
  """Restores a checkpoint step directory with its run's config and vocab."""
  run_dir = run_layout.find_run_dir(checkpoint)
  config = run_layout.load_config(run_dir)
  vocab = Vocabulary.load(run_dir / run_layout.VOCAB_FILE)
  model = restore_model(config, len(vocab), checkpoint)
  return Run(model, config, vocab, Path(checkpoint).absolute())


def load_run(
  workdir: str | os.PathLike, which: str = 'latest', step: int | None = None
) -> Run:
  """Restores a run's latest or best checkpoint (see `checkpoint_dir`)."""
  return load_checkpoint(run_layout.checkpoint_dir(workdir, which, step))


def load_language_model(workdir: str | os.PathLike) -> Run:
  """Restores a language model run (`model.name` 'lstm_lm') for fusion.

  Takes the best-dev-perplexity checkpoint, or the latest when the run
  has no best one yet.

  Raises:
    FileNotFoundError: no run or no checkpoint there.
    ValueError: the run is not a language model.
  """
  config = run_layout.load_config(workdir)
  if config.model.name != 'lstm_lm':
    raise ValueError(
      f'{Path(workdir) / run_layout.CONFIG_FILE}: model.name is {config.model.name!r}, '
      "not a language model ('lstm_lm'); give the workdir of a run trained "
      'with configs/kspon_lm.py or configs/mini_lm.py'
    )
  try:
    return load_run(workdir, which='best')
  except FileNotFoundError:
    return load_run(workdir, which='latest')


def check_same_vocabulary(asr: Run, lm: Run) -> None:
  """Refuses a language model trained on another vocabulary than `asr`.

  Raises:
    ValueError: naming both vocabulary files and the first difference.
  """
  if asr.vocab == lm.vocab:
    return
  asr_file = run_layout.find_run_dir(asr.checkpoint) / run_layout.VOCAB_FILE
  lm_file = run_layout.find_run_dir(lm.checkpoint) / run_layout.VOCAB_FILE
  diff = next(
    (
      f'unit {i}: {a!r} vs {b!r}'
      for i, (a, b) in enumerate(
        zip(asr.vocab.tokens, lm.vocab.tokens, strict=False)
      )
      if a != b
    ),
    f'{len(asr.vocab)} vs {len(lm.vocab)} units',
  )
  if asr.vocab.unit != lm.vocab.unit:
    diff = f'unit type {asr.vocab.unit!r} vs {lm.vocab.unit!r}'
  raise ValueError(
    f'the language model vocabulary {lm_file} does not match the '
    f'recognizer vocabulary {asr_file} ({diff}); train the language model '
    f'with --config.data.vocab_from={run_layout.find_run_dir(asr.checkpoint)}'
  )
