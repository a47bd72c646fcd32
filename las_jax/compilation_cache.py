"""JAX's persistent compilation cache, on by default for the command lines.

Compiling a decode program takes seconds (on 2 CPU cores, 4.8 s of a 9 s
`decode.py` run on one short file). JAX keeps compiled executables on disk
keyed by the program, the JAX version and the device, so a second run of
the same model and bucket loads them instead of compiling. `decode.py`,
`train.py` and `las_jax.serve` use a per-user directory,
$XDG_CACHE_HOME/las_jax/jax (default ~/.cache/las_jax/jax);
`--jax_compilation_cache_dir=DIR` moves it and an empty value
(`--jax_compilation_cache_dir=`) turns it off, as does
JAX_COMPILATION_CACHE_DIR in the environment, which wins over the default.
The recognizer keeps its decode programs beside it in exported form
(`las_jax.inference.aot`), so that a warm start does not trace them
either; the same setting turns that off.
"""

import os

import jax
from absl import flags


def default_dir() -> str:
  """The per-user cache directory."""
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(
    os.path.expanduser('~'), '.cache'
  )
  return os.path.join(base, 'las_jax', 'jax')


def enable_by_default() -> None:
  """Turns the cache on in `default_dir()` unless the user chose.

  Call after `jax.config.config_with_absl()` and flag parsing (in `main`).
  A `--jax_compilation_cache_dir` flag, even empty, or the environment
  variable JAX_COMPILATION_CACHE_DIR is the user's choice and is kept.
  """
  flag = flags.FLAGS['jax_compilation_cache_dir']
  if flag.present or 'JAX_COMPILATION_CACHE_DIR' in os.environ:
    return
  jax.config.update('jax_compilation_cache_dir', default_dir())
