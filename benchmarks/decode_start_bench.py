"""How long `decode.py` takes on one short file, cold and warm.

  python benchmarks/decode_start_bench.py --model models/mini_las
  python benchmarks/decode_start_bench.py --workdir runs/mini --which best \
      --audio short.wav

Runs `decode.py` twice on the same file, each in a fresh process, with a
new, empty compilation cache directory: the first run compiles (and stores
the exported decode program, `las_jax/inference/aot.py`), the second finds
both. Repeats that `--repeats` times and prints the medians, per run, of:
- import: importing decode.py (JAX, Flax, las_jax's inference modules);
- load: restoring the model and listing the inputs (decode.py's main,
  less compile and decode);
- compile: decode programs, from the run's summary (tracing, or loading
  the exported program, and XLA compilation or a compilation-cache hit);
- decode: decoding, from the run's summary;
- wall: the whole process, interpreter start-up included.
and the load average (1 minute) before and after: on a shared machine the
wall times depend on it.

Without --audio, a 3 s Korean sentence is synthesized with espeak-ng.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Times the import of decode.py, then runs its main as `python decode.py`.
DRIVER = """
import json, sys, time
start = time.perf_counter()
sys.path.insert(0, {root!r})
import decode
imported = time.perf_counter()
import jax
from absl import app
jax.config.config_with_absl()
try:
  app.run(decode.main, argv=['decode.py', *sys.argv[1:]])
except SystemExit as e:
  if e.code:
    raise
print('TIMES', json.dumps(dict(
  import_seconds=imported - start,
  main_seconds=time.perf_counter() - imported)))
"""
SENTENCE = '오늘 날씨가 정말 좋아서 공원에 산책을 갔습니다'


def one_run(args, audio, cache_dir, output):
  command = [
    sys.executable,
    '-c',
    DRIVER.format(root=str(ROOT)),
    f'--jax_compilation_cache_dir={cache_dir}',
    f'--output={output}',
    *args,
    str(audio),
  ]
  start = time.perf_counter()
  proc = subprocess.run(command, capture_output=True, text=True, check=False)
  wall = time.perf_counter() - start
  if proc.returncode:
    sys.exit(f'decode.py failed:\n{proc.stderr}')
  line = next(
    line for line in proc.stdout.splitlines() if line.startswith('TIMES ')
  )
  times = json.loads(line.removeprefix('TIMES '))
  summary = json.loads(Path(output).with_suffix('.summary.json').read_text())
  compile_s, decode_s = summary['compile_seconds'], summary['decode_seconds']
  return {
    'import': times['import_seconds'],
    'load': times['main_seconds'] - compile_s - decode_s,
    'compile': compile_s,
    'decode': decode_s,
    'wall': wall,
  }


def synthesize(directory):
  if shutil.which('espeak-ng') is None:
    sys.exit('give --audio: espeak-ng is not installed to make a test file')
  path = Path(directory) / 'short.wav'
  subprocess.run(
    ['espeak-ng', '-v', 'ko', '-w', str(path), SENTENCE], check=True
  )
  return path


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument('--workdir', help='a training run')
  source.add_argument('--model', help='an exported model directory')
  parser.add_argument('--which', default='latest', help='with --workdir')
  parser.add_argument('--audio', help='a short file (default: synthesized)')
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()
  if args.workdir:
    decode_args = [f'--workdir={args.workdir}', f'--which={args.which}']
  else:
    decode_args = [f'--model={args.model}']
  with tempfile.TemporaryDirectory() as tmp:
    audio = Path(args.audio) if args.audio else synthesize(tmp)
    load_before = os.getloadavg()[0]
    runs = {'first': [], 'second': []}
    for i in range(args.repeats):
      cache_dir = Path(tmp) / f'cache{i}'
      for name in runs:
        output = Path(tmp) / f'{name}{i}.jsonl'
        runs[name].append(one_run(decode_args, audio, cache_dir, output))
    load_after = os.getloadavg()[0]
  print(
    f'decode.py {" ".join(decode_args)} {audio.name}, medians of '
    f'{args.repeats} (fresh processes; load average {load_before:.1f} '
    f'before, {load_after:.1f} after, {os.cpu_count()} CPUs)'
  )
  columns = ['import', 'load', 'compile', 'decode', 'wall']
  print(f'{"run":<8}' + ''.join(f'{c:>9}' for c in columns))
  for name, results in runs.items():
    medians = [statistics.median(r[c] for r in results) for c in columns]
    print(f'{name:<8}' + ''.join(f'{m:>8.2f}s' for m in medians))


if __name__ == '__main__':
  main()
