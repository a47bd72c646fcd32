"""Metric sinks of a training run: JSONL, TensorBoard and the console.

Only process 0 writes; on other hosts the writer is a no-op so the training
loop can call it unconditionally. `log_to_workdir` keeps library INFO logs
(orbax, TFDS, grain...) off the console, in a log file of the run.
"""

import json
import os
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import tqdm
from absl import flags
from absl import logging as absl_logging

# The run's log file in its workdir (one per process in multi-host runs).
LOG_FILE = 'train.log'


def log_to_workdir(workdir: str | Path) -> Path | None:
  """Sends absl and Python logging to workdir/train.log; console: warnings.

  Every record at the `--verbosity` level (INFO by default) goes to the
  file (train.process_<i>.log when JAX_PROCESS_ID is set), appended across
  resumptions; the console (stderr) keeps warnings
  and errors, next to the progress bar and evaluation summaries. As in
  absl: `--alsologtostderr`, or an explicit `--verbosity`, puts every
  record on the console too; `--stderrthreshold` sets the console level;
  `--logtostderr` keeps everything on the console and writes no file.
  Call after flags are parsed (inside `app.run`'s main).

  Args:
    workdir: the run directory.

  Returns:
    The log file, or None with `--logtostderr`.
  """
  if flags.FLAGS.logtostderr:
    return None
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  # Not jax.process_index(): it would start the backend before
  # jax.distributed.initialize(). Multi-host runs set the id (README).
  index = os.environ.get('JAX_PROCESS_ID')
  path = workdir / (f'train.process_{index}.log' if index else LOG_FILE)
  handler = absl_logging.get_absl_handler().python_handler
  handler.setStream(open(path, 'a', encoding='utf-8'))  # noqa: SIM115
  if not flags.FLAGS['stderrthreshold'].present:
    everything = flags.FLAGS['verbosity'].present
    flags.FLAGS.stderrthreshold = 'debug' if everything else 'warning'
  return path


class MetricWriter:
  """Writes scalars to workdir/metrics.jsonl and TensorBoard event files."""

  def __init__(self, workdir: str | Path):
    """Opens the sinks (appending: a resumed run continues the same files)."""
    self._active = jax.process_index() == 0
    self._jsonl = None
    self._tb = None
    if not self._active:
      return
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    self._jsonl = open(workdir / 'metrics.jsonl', 'a', encoding='utf-8')  # noqa: SIM115
    # tensorboardX is imported lazily: it pulls in protobuf, which tests and
    # non-zero processes never need.
    from tensorboardX import SummaryWriter  # noqa: PLC0415

    self._tb = SummaryWriter(str(workdir / 'tensorboard'))

  def scalars(self, step: int, metrics: dict[str, Any]) -> None:
    """Writes one JSONL record and one TensorBoard point per metric."""
    if not self._active:
      return
    record = {'step': int(step), 'time': time.time()}
    for name, value in metrics.items():
      record[name] = float(np.asarray(value))
      self._tb.add_scalar(name, record[name], int(step))
    self._jsonl.write(json.dumps(record) + '\n')
    self._jsonl.flush()

  def image(self, step: int, tag: str, png: bytes) -> None:
    """Adds a PNG image (e.g. an attention plot) to TensorBoard."""
    if not self._active:
      return
    import io  # noqa: PLC0415

    from PIL import Image  # noqa: PLC0415  (matplotlib depends on pillow)

    array = np.asarray(Image.open(io.BytesIO(png)).convert('RGB'))
    self._tb.add_image(tag, array, int(step), dataformats='HWC')

  def text(self, step: int, tag: str, text: str) -> None:
    """Adds text (e.g. reference/hypothesis pairs) to TensorBoard."""
    if self._active:
      self._tb.add_text(tag, text, int(step))

  def flush(self) -> None:
    """Pushes buffered TensorBoard events to disk."""
    if self._active:
      self._tb.flush()

  def close(self) -> None:
    """Closes the files."""
    if self._active:
      self._jsonl.close()
      self._tb.close()


def read_metrics(workdir: str | Path) -> list[dict[str, float]]:
  """All records of workdir/metrics.jsonl (for plots and tests)."""
  path = Path(workdir) / 'metrics.jsonl'
  if not path.exists():
    return []
  with open(path, encoding='utf-8') as f:
    return [json.loads(line) for line in f if line.strip()]


class Progress:
  """tqdm bar over training steps showing loss, LR, TF ratio and utt/s."""

  def __init__(self, first_step: int, num_steps: int, enabled: bool = True):
    self._bar = tqdm.tqdm(
      total=num_steps,
      initial=first_step,
      disable=not enabled or jax.process_index() != 0,
      dynamic_ncols=True,
      unit='step',
    )

  def update(self, steps: int, **values: float) -> None:
    """Advances by `steps` and shows the latest values."""
    self._bar.set_postfix(
      {k: f'{v:.4g}' for k, v in values.items()}, refresh=False
    )
    self._bar.update(steps)

  def write(self, message: str) -> None:
    """Prints a line above the bar."""
    self._bar.write(message)

  def close(self) -> None:
    """Closes the bar."""
    self._bar.close()
