"""benchmarks/device_bench.py needs nothing the accelerator hosts lack.

Those hosts have jax, flax, optax, orbax-checkpoint, numpy, scipy and
pytest, and take other packages as wheels: ml_collections and absl-py
(orbax's dependency) are what the benchmark adds. Here every host-only
package of las_jax is made unimportable (a sitecustomize on PYTHONPATH)
and the benchmark's train and decode programs are traced; `python
benchmarks/device_bench.py --quick` runs them for real (minutes on CPU).
"""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOST_ONLY = (
  'librosa',
  'numba',
  'tensorflow_datasets',
  'grain',
  'array_record',
  'soundfile',
  'soxr',
  'tensorboardX',
  'matplotlib',
  'editdistance',
  'tqdm',
  'konlpy',
)

BLOCKER = f"""
import sys

class _Blocked:
  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] in {HOST_ONLY!r}:
      raise ImportError(f'{{name}} is blocked: not on the accelerator hosts')
    return None

sys.meta_path.insert(0, _Blocked())
"""

TRACE = """
import jax
from benchmarks import device_bench as bench

s = bench.settings(quick=True)
for dtype in ('float32', 'bfloat16'):
  train_fn, args, _, _ = bench.train_program(dtype, s)
  jax.eval_shape(train_fn, *args)
  decode_fn, args, _, _ = bench.decode_program(dtype, s)
  jax.eval_shape(decode_fn, *args)
print('traced')
import librosa  # The blocker works: this must fail.
"""


def test_device_bench_traces_without_host_only_packages(tmp_path):
  (tmp_path / 'sitecustomize.py').write_text(textwrap.dedent(BLOCKER))
  proc = subprocess.run(
    [sys.executable, '-c', TRACE],
    cwd=ROOT,
    env={'PYTHONPATH': f'{tmp_path}:{ROOT}', 'JAX_PLATFORMS': 'cpu'},
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.stdout == 'traced\n', proc.stderr[-3000:]
  assert proc.stderr.rstrip().endswith(
    'ImportError: librosa is blocked: not on the accelerator hosts'
  )
