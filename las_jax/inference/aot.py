"""Compiled entry points that start without tracing: exported programs on disk.

JAX's persistent compilation cache (`las_jax.compilation_cache`) saves
XLA's compilation, but finding a program there needs the program first:
on 2 CPU cores, tracing and lowering the beam search (its scans and while
loops, the joint CTC prefix scores) takes about a second of every
`decode.py` run, cache hit or not. `compile` keeps each program it compiles
as a serialized `jax.export.Exported` (StableHLO) beside the compilation
cache, `<jax_compilation_cache_dir>/las_jax_exported/<key>.exported`; a
later process deserializes it and compiles it, a compilation-cache hit,
instead of tracing the Python code again.

Parameters and other arrays are arguments of the exported program, never
constants in it: the file holds the computation only (about 0.5 MB for the
mini LAS beam search), and a model fine-tuned to other weights reuses it.
What the program is built from besides its arguments goes into the key: a
description the caller gives (configuration, search options, compute
dtype...), the argument shapes, dtypes and tree structure, a digest of the
las_jax source (a changed search is a new program), the JAX and jaxlib
versions and the device. The file repeats the key in a header, checked on
reading.

Off with the compilation cache: when `jax_compilation_cache_dir` is unset
or empty (`--jax_compilation_cache_dir=` on the command lines), programs
are traced and compiled as plain `jax.jit` ones and nothing is written. A
missing entry is traced, exported and stored; an entry that cannot be read,
deserialized or compiled is reported (a warning naming the file and the
reason) and replaced by a fresh trace, so a damaged cache never stops a
decode; a program `jax.export` refuses is compiled as a plain `jax.jit`
one, with a warning. Entries are small and never evicted; deleting the
directory is always safe.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jaxlib
from absl import logging
from jax import export

# Bumped when the file layout or the key changes meaning.
FORMAT_VERSION = 1
# Subdirectory of the compilation cache directory holding the programs.
SUBDIR = 'las_jax_exported'
SUFFIX = '.exported'


def cache_dir() -> Path | None:
  """Where exported programs go: beside the compilation cache, or None
  when the compilation cache is off."""
  base = jax.config.jax_compilation_cache_dir
  return Path(base) / SUBDIR if base else None


@functools.cache
def source_digest() -> str:
  """SHA-256 of the las_jax package's Python source, file names included."""
  root = Path(__file__).resolve().parent.parent
  digest = hashlib.sha256()
  for path in sorted(root.rglob('*.py')):
    digest.update(path.relative_to(root).as_posix().encode() + b'\0')
    digest.update(path.read_bytes() + b'\0')
  return digest.hexdigest()


def _header(
  name: str, key: Mapping[str, Any], specs: list[Any], treedef: Any
) -> dict[str, Any]:
  device = jax.devices()[0]
  return {
    'format': FORMAT_VERSION,
    'name': name,
    'key': key,
    'arguments': {
      'tree': str(treedef),
      'leaves': [[list(s.shape), str(s.dtype)] for s in specs],
    },
    'source': source_digest(),
    'jax': jax.__version__,
    'jaxlib': jaxlib.__version__,
    'platform': device.platform,
    'device_kind': device.device_kind,
  }


def _digest(header: Mapping[str, Any]) -> str:
  text = json.dumps(header, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()


def _read(path: Path, header: Mapping[str, Any]) -> export.Exported:
  """The program stored at `path`.

  Raises:
    OSError, ValueError: unreadable, not this program, or not deserializable.
  """
  data = path.read_bytes()
  line, newline, blob = data.partition(b'\n')
  if not newline:
    raise ValueError('no header line')
  stored = json.loads(line)
  if json.dumps(stored, sort_keys=True, default=str) != json.dumps(
    header, sort_keys=True, default=str
  ):
    raise ValueError('its header describes another program')
  try:
    return export.deserialize(bytearray(blob))
  except Exception as e:  # flatbuffers and MLIR raise several types.
    raise ValueError(f'cannot deserialize it ({type(e).__name__}: {e})') from e


def _write(path: Path, header: Mapping[str, Any], blob: bytes) -> None:
  """Stores atomically: readers see the old file or the whole new one."""
  path.parent.mkdir(parents=True, exist_ok=True)
  line = json.dumps(header, sort_keys=True, default=str).encode()
  fd, tmp = tempfile.mkstemp(dir=path.parent, suffix='.tmp')
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(line + b'\n' + blob)
    os.replace(tmp, path)
  except BaseException:
    Path(tmp).unlink(missing_ok=True)
    raise


def compile(  # noqa: A001  As jax.stages' `.compile()`.
  fn: Callable[..., Any],
  args: tuple[Any, ...],
  *,
  name: str,
  key: Mapping[str, Any],
) -> Callable[..., Any]:
  """`jax.jit(fn)` compiled for `args`' shapes, from disk when it is there.

  Args:
    fn: a jit-able function of `args` (pytrees of arrays); whatever else
      it depends on must be described by `key`.
    args: example arguments, arrays or `jax.ShapeDtypeStruct`s.
    name: the program's name in messages (e.g. 'decode 4x56000').
    key: JSON-able description of what `fn` closes over (configuration,
      options, dtypes), so that a different program never matches.

  Returns:
    A function of arguments shaped like `args` (same tree structure,
    shapes and dtypes) returning what `fn` returns.

  Raises:
    Whatever tracing or compiling `fn` raises; problems with a stored
    program are logged and recovered from instead.
  """
  leaves, treedef = jax.tree.flatten(args)
  specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves]

  def flat_fn(*leaves):
    return fn(*jax.tree.unflatten(treedef, leaves))

  directory = cache_dir()
  if directory is None:
    compiled = jax.jit(flat_fn).lower(*specs).compile()
  else:
    header = _header(name, key, specs, treedef)
    path = directory / f'{_digest(header)}{SUFFIX}'
    compiled = None
    if path.exists():
      try:
        compiled = _compile_exported(_read(path, header), specs)
      except Exception as e:  # Any failure: trace again, as on a miss.
        logging.warning(
          'Exported program %s at %s is unusable (%s); tracing it again.',
          name,
          path,
          e,
        )
    if compiled is None:
      compiled = _export_and_compile(flat_fn, specs, name, path, header)

  def call(*call_args):
    return compiled(*jax.tree.leaves(call_args))

  return call


def _compile_exported(exported: export.Exported, specs: list[Any]):
  return jax.jit(exported.call).lower(*specs).compile()


def _export_and_compile(flat_fn, specs, name, path, header):
  """Traces, stores and compiles the program; without storing it when it
  cannot be exported (a custom call `jax.export` refuses, say)."""
  try:
    blob = export.export(jax.jit(flat_fn))(*specs).serialize()
  except Exception as e:  # Tracing errors come again below.
    logging.warning(
      'Cannot export program %s (%s: %s); compiled without storing it.',
      name,
      type(e).__name__,
      e,
    )
    return jax.jit(flat_fn).lower(*specs).compile()
  try:
    _write(path, header, blob)
  except OSError as e:
    logging.warning('Cannot store exported program %s: %s', path, e)
  # Compiled from its serialized form, so the compilation cache holds the
  # executable the next start looks up.
  return _compile_exported(export.deserialize(blob), specs)
