"""Checkpoints of a training run, and the run's identity in its workdir.

Layout of a workdir:
  checkpoints/<step>/state        params, optimizer state, step, RNG (orbax)
  checkpoints/<step>/data_iter    one JSON file per process: that host's
                                  input-iterator state
  checkpoints/<step>/run          JSON: the run's config and vocabulary, so
                                  a step directory is self-contained
  checkpoints_best/<step>/...     the same items for the best dev CER so far
  config.json                     the configuration of the run
  vocab.txt                       the vocabulary (a copy of the one trained on)

`checkpoints/` keeps the last `keep` steps; `checkpoints_best/` keeps one,
chosen by orbax's `best_fn` on the dev CER. A second manager rather than one
with `best_fn` because orbax's `best_fn` would replace "keep the latest"
with "keep the best", and resuming needs the latest.
"""

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from las_jax import run_layout


class IteratorStateHandler(ocp.CheckpointHandler):
  """Saves each process's data-iterator state to its own JSON file.

  orbax's JsonCheckpointHandler writes from process 0 only, but every host
  reads a different shard of the data and has its own iterator position.
  """

  def save(self, directory: epath.Path, args: 'IteratorStateSave') -> None:
    state = args.state
    if isinstance(state, bytes):  # grain.DataLoader iterators give JSON bytes.
      state = {'__bytes__': state.decode()}
    name = f'process_{jax.process_index()}-of-{jax.process_count()}.json'
    (directory / name).write_text(json.dumps(state))

  def restore(
    self, directory: epath.Path, args: 'IteratorStateRestore | None' = None
  ) -> Any:
    del args
    name = f'process_{jax.process_index()}-of-{jax.process_count()}.json'
    path = directory / name
    if not path.exists():
      raise ValueError(
        f'{path} does not exist: the checkpoint was written by a run with a '
        'different number of processes.'
      )
    state = json.loads(path.read_text())
    if isinstance(state, dict) and set(state) == {'__bytes__'}:
      state = state['__bytes__'].encode()
    return state

  def structure(self, directory: epath.Path) -> None:
    del directory

  def metadata(self, directory: epath.Path) -> None:
    del directory

  def finalize(self, directory: epath.Path) -> None:
    del directory

  def close(self) -> None:
    pass


@ocp.args.register_with_handler(IteratorStateHandler, for_save=True)
@dataclasses.dataclass
class IteratorStateSave(ocp.args.CheckpointArgs):
  # JSON-able dict or bytes from the iterator's `get_state()`.
  state: Any


@ocp.args.register_with_handler(IteratorStateHandler, for_restore=True)
@dataclasses.dataclass
class IteratorStateRestore(ocp.args.CheckpointArgs):
  pass


class Checkpointer:
  """The latest-K and best-by-CER orbax managers of one workdir."""

  def __init__(
    self,
    workdir: str | Path,
    keep: int,
    async_save: bool = True,
    run_info: dict[str, Any] | None = None,
  ):
    """Opens (or creates) the managers.

    Args:
      workdir: the run directory.
      keep: how many of the latest checkpoints to keep.
      async_save: write in a background thread (the step loop goes on).
      run_info: JSON-able description of the run (config, vocabulary)
        written into every checkpoint as item `run`; None = no such item.
    """
    workdir = Path(workdir).absolute()
    self._run_info = run_info
    # A save killed midway leaves a temporary directory; clean it up.
    options = dict(
      create=True,
      enable_async_checkpointing=async_save,
      cleanup_tmp_directories=True,
    )
    self._latest = ocp.CheckpointManager(
      workdir / run_layout.CHECKPOINT_DIRS['latest'],
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, **options),
      item_names=run_layout.ITEMS,
    )
    self._best = ocp.CheckpointManager(
      workdir / run_layout.CHECKPOINT_DIRS['best'],
      options=ocp.CheckpointManagerOptions(
        max_to_keep=1,
        # Runs before the language models saved 'dev_cer'.
        best_fn=lambda metrics: metrics.get(
          'dev_metric', metrics.get('dev_cer')
        ),
        best_mode='min',
        keep_checkpoints_without_metrics=False,
        **options,
      ),
      item_names=run_layout.ITEMS,
    )

  def latest_step(self) -> int | None:
    """The step of the newest complete checkpoint, or None."""
    return self._latest.latest_step()

  def best_step(self) -> int | None:
    """The step of the best-CER checkpoint, or None."""
    return self._best.best_step()

  def _args(self, state: Any, data_state: Any) -> ocp.args.Composite:
    items = dict(
      state=ocp.args.StandardSave(state),
      data_iter=IteratorStateSave(data_state),
    )
    if self._run_info is not None:
      items['run'] = ocp.args.JsonSave(self._run_info)
    return ocp.args.Composite(**items)

  def save(self, step: int, state: Any, data_state: Any) -> None:
    """Saves `state` (a pytree of arrays) and the iterator state at `step`.

    Idempotent: a step already saved (by this run, or by a run killed
    after saving it) is left as it is; training is deterministic, so it
    holds the same values.
    """
    if step in self._latest.all_steps():
      return
    self._latest.save(step, args=self._args(state, data_state), force=True)

  def save_best(
    self, step: int, state: Any, data_state: Any, dev_metric: float
  ) -> None:
    """Offers the step to the best-dev manager (kept if `dev_metric`, the
    dev CER or a language model's dev perplexity, is the lowest).

    Idempotent like `save`: a rerun that repeats an evaluation offers the
    step again; if it was kept, it is there already.
    """
    if step in self._best.all_steps():
      return
    self._best.save(
      step,
      args=self._args(state, data_state),
      metrics={'dev_metric': float(dev_metric)},
      force=True,
    )

  def restore(
    self, abstract_state: Any, step: int | None = None, best: bool = False
  ) -> tuple[Any, Any]:
    """Restores `(state, data_state)`.

    Args:
      abstract_state: pytree of `jax.ShapeDtypeStruct` (with shardings) that
        says how to lay the arrays out; restoring against it keeps optax
        state types (NamedTuples) instead of plain lists.
      step: which step; default the latest (or the best with `best`).
      best: read from the best-CER manager.
    """
    manager = self._best if best else self._latest
    if step is None:
      step = manager.best_step() if best else manager.latest_step()
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {manager.directory}')
    restored = manager.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data_iter=IteratorStateRestore(),
      ),
    )
    return restored['state'], restored['data_iter']

  def restore_run_info(self, step: int | None = None) -> Any:
    """The `run` item of a latest-K checkpoint (default the newest)."""
    step = self._latest.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {self._latest.directory}')
    restored = self._latest.restore(
      step, args=ocp.args.Composite(run=ocp.args.JsonRestore())
    )
    return restored['run']

  def wait(self) -> None:
    """Blocks until background saves are on disk."""
    self._latest.wait_until_finished()
    self._best.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases the managers."""
    self._latest.close()
    self._best.close()
