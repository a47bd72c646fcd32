"""Library INFO logs go to <workdir>/train.log, not the console (issue 14).

Item 15: a program set up as train.py is (absl app.run, then
`logging_utils.log_to_workdir`) logs like orbax (a Python logger) and like
las_jax (absl); the console keeps warnings and errors, the file gets
everything, and absl's flags bring the INFO lines back to the console.
(A real training run's console: kill_resume_test.)
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = textwrap.dedent(
  """
  import logging as py_logging
  import sys
  from absl import app, logging
  from las_jax import logging_utils

  def main(argv):
    logging_utils.log_to_workdir(sys.argv[1])
    py_logging.getLogger('orbax.checkpoint').info('orbax info')
    logging.info('absl info')
    logging.warning('absl warning')
    py_logging.getLogger('jax').error('jax error')

  app.run(main)
  """
)
EVERYTHING = ['orbax info', 'absl info', 'absl warning', 'jax error']


def _run(workdir, *flags):
  return subprocess.run(
    [sys.executable, '-c', PROGRAM, str(workdir), *flags],
    capture_output=True,
    text=True,
    cwd=ROOT,
    check=True,
  ).stderr


def _has(text, messages):
  return [m for m in EVERYTHING if m in text] == messages


@pytest.mark.parametrize(
  'flags,console',
  [
    ((), ['absl warning', 'jax error']),
    (('--alsologtostderr',), EVERYTHING),
    (('--verbosity=0',), EVERYTHING),
    (('--stderrthreshold=error',), ['jax error']),
  ],
)
def test_console_and_log_file(tmp_path, flags, console):
  stderr = _run(tmp_path, *flags)
  assert _has(stderr, console), stderr
  assert _has((tmp_path / 'train.log').read_text(), EVERYTHING)


def test_logtostderr_keeps_everything_on_the_console(tmp_path):
  stderr = _run(tmp_path, '--logtostderr')
  assert _has(stderr, EVERYTHING)
  assert not (tmp_path / 'train.log').exists()


def test_the_log_file_is_appended_across_resumptions(tmp_path):
  _run(tmp_path)
  _run(tmp_path)
  assert (tmp_path / 'train.log').read_text().count('orbax info') == 2
