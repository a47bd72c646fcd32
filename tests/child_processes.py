"""Child processes in tests: no orphans, and coordinator ports that retry.

A port found free by binding and closing a socket can be taken by another
program before the child binds it (two pytest-xdist workers probing at
once, or anything else on the machine). JAX's coordinator then fails to
start ("Failed to add port to server") and its peers wait for it until
their own timeout. `run_cluster` starts the group again on a new port
instead. A child that misses its deadline is killed before its output is
read, so a hung child fails the test instead of hanging it; output goes to
files, so a chatty child never blocks on a full pipe.
"""

import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

# What the coordinator (gRPC) prints when its port is already taken.
PORT_TAKEN = ('Failed to add port to server', 'Address already in use')


class Result(NamedTuple):
  returncode: int
  output: str  # stdout and stderr interleaved


def free_port() -> int:
  """A TCP port that was free a moment ago (on every interface)."""
  with socket.socket(socket.AF_INET6) as s:
    s.bind(('::', 0))
    return s.getsockname()[1]


class Child:
  """A subprocess whose stdout and stderr go to a temporary file."""

  def __init__(self, args: Sequence[str], **popen_kwargs):
    self._log = tempfile.TemporaryFile(mode='w+', encoding='utf-8')
    self.proc = subprocess.Popen(
      list(args),
      stdout=self._log,
      stderr=subprocess.STDOUT,
      text=True,
      **popen_kwargs,
    )

  def output(self) -> str:
    self._log.flush()
    self._log.seek(0)
    return self._log.read()

  def running(self) -> bool:
    return self.proc.poll() is None

  def kill(self) -> Result:
    """Kills the child if it still runs; its exit code and output."""
    if self.running():
      self.proc.kill()
    self.proc.wait()
    return Result(self.proc.returncode, self.output())

  def wait(self, timeout: float) -> Result:
    """Waits up to `timeout` s; a child still running then is killed.

    Raises:
      TimeoutError: it missed the deadline (the message ends its output).
    """
    try:
      self.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      out = self.kill().output
      raise TimeoutError(
        f'{self.proc.args} still running after {timeout:.0f} s, killed; '
        f'its output ends:\n{out[-3000:]}'
      ) from None
    return Result(self.proc.returncode, self.output())

  def __enter__(self) -> 'Child':
    return self

  def __exit__(self, *exc) -> None:
    self.kill()
    self._log.close()


def run_cluster(
  commands: Callable[[int], Sequence[tuple[Sequence[str], dict]]],
  timeout: float,
  attempts: int = 3,
  **popen_kwargs,
) -> list[Result]:
  """Runs processes that meet at a coordinator port until all exit.

  Args:
    commands: `(args, env)` per process for a given port; process 0 hosts
      the coordinator.
    timeout: seconds the whole group may take, per attempt.
    attempts: ports tried; a new one only when the coordinator's port was
      taken.
    **popen_kwargs: passed to `subprocess.Popen` (cwd...).

  Returns:
    Each process's exit code and output.

  Raises:
    TimeoutError: the group missed its deadline (all were killed).
  """
  for attempt in range(attempts):
    children = [
      Child(args, env=env, **popen_kwargs)
      for args, env in commands(free_port())
    ]
    try:
      deadline = time.monotonic() + timeout
      while any(c.running() for c in children):
        failed = [c for c in children if not c.running() and c.proc.returncode]
        if failed:
          port_taken = failed[0] is children[0] and any(
            t in children[0].output() for t in PORT_TAKEN
          )
          if port_taken and attempt + 1 < attempts:
            break  # Its peers wait for it in vain: start again.
          return [c.kill() for c in children]  # The rest would wait.
        if time.monotonic() > deadline:
          outs = [c.kill().output[-2000:] for c in children]
          raise TimeoutError(
            f'processes still running after {timeout:.0f} s, killed; '
            'their outputs end:\n' + '\n-----\n'.join(outs)
          )
        time.sleep(0.2)
      else:
        return [c.kill() for c in children]
    finally:
      for c in children:
        c.__exit__()
  raise AssertionError('unreachable: the last attempt returns or raises')
