"""Training and decoding figures on one accelerator, in one command.

  python benchmarks/device_bench.py --out device_bench.json
  python benchmarks/device_bench.py --quick --out /tmp/quick.json  # a CPU
      # check of the script itself: tiny model and shapes

For configs/kspon.py on the first device (GPU or TPU; CPU works too):

- train_float32, train_bfloat16: the train step (log-mel, SpecAugment,
  forward, backward, Adam) at batch 32 of synthetic utterances of 4-8 s
  (uniform; padded to the 8 s bucket) with 10 target tokens per second:
  compile seconds, step seconds (mean of 10 back-to-back steps after 2
  warm-up steps), utterances/s, audio hours per hour (valid audio only),
  and the device's peak memory (`memory_stats()['peak_bytes_in_use']`);
- decode_float32, decode_bfloat16: beam 5 with the config's decoding
  options (joint CTC/attention; batch 16 of 4-8 s, the speller's EOS
  logit pinned to 0 so every hypothesis runs to the 10 tokens/s limit:
  an upper bound) with features and encoder in the same program: compile seconds, median seconds, real-time factor;
- memory: `memory_bench`'s table (XLA's memory analysis of the compiled
  train step; nothing runs) for batch 32 x 15 s and 8 x 20 s in float32 /
  bfloat16 with remat off / on: eight compilations, run side by side
  (half the host's cores, at most eight; no device memory preallocated).

Each measurement runs in a Python process of its own: the peak-memory
counter starts from zero, and a crash, an out-of-memory error or a hang
costs only that measurement (its error is recorded, the others still
run). The whole run keeps to --budget_s (default 450 s: under 8 minutes
with start-up and transfers); what cannot finish in the time left is
skipped or stopped, and said so. Results go to --out (JSON, rewritten
after each section) and a table is printed at the end.

Imports only jax, flax, optax, orbax-checkpoint, numpy, scipy,
ml_collections and absl-py: no librosa, tensorflow-datasets, grain,
soundfile, tensorboardX or matplotlib.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

GIB = 2**30
TOKENS_PER_SECOND = 10.0
# Sections in order, and the seconds each may take at most (None: what is
# left of the budget).
SECTIONS = {
  'train_float32': 150,
  'train_bfloat16': 150,
  'decode_float32': 120,
  'decode_bfloat16': 120,
  'memory': None,
}


def settings(quick: bool) -> dict:
  """Sizes of the full run and of --quick (tiny, for a CPU check)."""
  if quick:
    return dict(
      config='tiny',
      vocab=64,
      train_batch=4,
      seconds=(1.0, 2.0),
      warmup=1,
      steps=2,
      decode_batch=2,
      beam=2,
      decode_runs=1,
      memory=((4, 2.0), (2, 3.0)),
    )
  return dict(
    config='kspon',
    vocab=2000,
    train_batch=32,
    seconds=(4.0, 8.0),
    warmup=2,
    steps=10,
    decode_batch=16,
    beam=5,
    decode_runs=3,
    memory=((32, 15.0), (8, 20.0)),
  )


def load_config(name: str):
  """configs/kspon.py, or the tiny test model on 16 mel bins (--quick)."""
  if name == 'kspon':
    from configs import kspon  # noqa: PLC0415

    return kspon.get_config()
  from configs import tiny  # noqa: PLC0415

  config = tiny.get_config()
  config.features.num_mels = 16
  config.model.input_dim = 16
  config.model.vgg_channels = (4, 8)
  return config


def synthetic_batch(config, rows, seconds, vocab, seed):
  """Noise utterances of uniform length in `seconds`, padded to the
  longest; random targets of TOKENS_PER_SECOND tokens per second + EOS,
  padded to the config's token bucket."""
  import numpy as np  # noqa: PLC0415

  from benchmarks import memory_bench  # noqa: PLC0415

  rng = np.random.default_rng(seed)
  sr = config.features.sample_rate
  padded = int(seconds[1] * sr)
  lengths = rng.integers(int(seconds[0] * sr), padded + 1, rows)
  audio = rng.integers(-3000, 3000, (rows, padded)).astype(np.int16)
  audio[np.arange(padded)[None, :] >= lengths[:, None]] = 0
  width = memory_bench.token_length(config, seconds[1], TOKENS_PER_SECOND)
  token_lengths = np.minimum(
    np.ceil(TOKENS_PER_SECOND * lengths / sr).astype(np.int32) + 1, width
  )
  tokens = rng.integers(4, vocab, (rows, width)).astype(np.int32)
  tokens[np.arange(width)[None, :] >= token_lengths[:, None]] = 0
  tokens[np.arange(rows), token_lengths - 1] = 2  # EOS.
  return dict(
    audio=audio,
    audio_lengths=lengths.astype(np.int32),
    tokens=tokens,
    token_lengths=token_lengths,
  )


def peak_memory_gib():
  """The first device's peak bytes in use (None where not reported)."""
  import jax  # noqa: PLC0415

  stats = jax.local_devices()[0].memory_stats() or {}
  peak = stats.get('peak_bytes_in_use')
  return None if peak is None else peak / GIB


def train_program(dtype: str, s: dict):
  """(jitted train step, its arguments, the host batch, config)."""
  from las_jax import optim, parallel, steps  # noqa: PLC0415
  from las_jax.train_state import create_train_state  # noqa: PLC0415

  config = load_config(s['config'])
  config.train.compute_dtype = dtype
  mesh = parallel.make_mesh(1)
  tx, _ = optim.make_optimizer(config.train)
  graphdef, state = create_train_state(config, s['vocab'], tx, mesh)
  train_fn, _, _ = steps.compile_steps(config, graphdef, tx, mesh)
  host = synthetic_batch(config, s['train_batch'], s['seconds'], s['vocab'], 0)
  return train_fn, (state, parallel.global_batch(host, mesh)), host, config


def run_train(dtype: str, s: dict) -> dict:
  import jax  # noqa: PLC0415

  from las_jax import parallel  # noqa: PLC0415

  train_fn, (state, batch), host, config = train_program(dtype, s)
  start = time.perf_counter()
  compiled = train_fn.lower(state, batch).compile()
  compile_s = time.perf_counter() - start
  for _ in range(s['warmup']):
    state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(s['steps']):  # Dispatched back to back, as in training.
    state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  step_s = (time.perf_counter() - start) / s['steps']
  audio_s = float(host['audio_lengths'].sum()) / config.features.sample_rate
  return dict(
    compile_s=compile_s,
    step_s=step_s,
    utterances_per_s=s['train_batch'] / step_s,
    audio_hours_per_hour=audio_s / step_s,
    batch=s['train_batch'],
    padded_seconds=s['seconds'][1],
    mean_seconds=audio_s / s['train_batch'],
    target_tokens=int(host['tokens'].shape[1]),
    loss=float(parallel.fetch(metrics)['loss']),
    peak_memory_gib=peak_memory_gib(),
  )


def decode_program(dtype: str, s: dict):
  """(jitted beam search from audio, its arguments, the host batch,
  config): the recognizer's program (features, encoder, joint
  CTC/attention search: `batch_search.search_batch` with the config's
  decoding options) without the host-side text and audio reading."""
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415
  from flax import nnx  # noqa: PLC0415

  from las_jax.inference import batch_search  # noqa: PLC0415
  from las_jax.models import build_model, execution  # noqa: PLC0415
  from las_jax.text import Vocabulary  # noqa: PLC0415

  config = load_config(s['config'])
  model = build_model(config.model, s['vocab'], nnx.Rngs(0))
  # EOS logit 0 against the largest of many random logits: it never wins,
  # so every hypothesis runs to its limit.
  out = model.speller.out.kernel
  out[...] = out[...].at[:, Vocabulary.EOS_ID].set(0.0)
  execution.set_compute_dtype(model, dtype, 'compute_dtype')
  graphdef, state = nnx.split(model)
  host = synthetic_batch(config, s['decode_batch'], s['seconds'], s['vocab'], 1)
  options = batch_search.SearchOptions.resolve(
    config,
    beam_size=s['beam'],
    max_tokens_per_second=TOKENS_PER_SECOND,
    lm_weight=0.0,
  )

  @jax.jit
  def decode(state, audio_BxN, lengths_B):
    return batch_search.search_batch(
      nnx.merge(graphdef, state), None, audio_BxN, lengths_B, config, options
    )

  args = (state, jnp.asarray(host['audio']), jnp.asarray(host['audio_lengths']))
  return decode, args, host, config


def run_decode(dtype: str, s: dict) -> dict:
  import jax  # noqa: PLC0415

  decode, args, host, config = decode_program(dtype, s)
  start = time.perf_counter()
  compiled = decode.lower(*args).compile()
  compile_s = time.perf_counter() - start
  nbest = jax.block_until_ready(compiled(*args))  # Warm-up.
  times = []
  for _ in range(s['decode_runs']):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  seconds = statistics.median(times)
  audio_s = float(host['audio_lengths'].sum()) / config.features.sample_rate
  return dict(
    compile_s=compile_s,
    decode_s=seconds,
    real_time_factor=seconds / audio_s,
    batch=s['decode_batch'],
    beam=s['beam'],
    audio_s=audio_s,
    mean_best_tokens=float(jax.device_get(nbest.lengths)[:, 0].mean()),
    peak_memory_gib=peak_memory_gib(),
  )


def memory_jobs(s: dict) -> list[str]:
  """One job per memory table row: 'memory:<B>x<seconds>:<dtype>:<remat>'."""
  from benchmarks import memory_bench  # noqa: PLC0415

  return [
    f'memory:{b}x{seconds:g}:{dtype}:{remat}'
    for b, seconds in s['memory']
    for dtype in memory_bench.DTYPES
    for remat in memory_bench.REMATS
  ]


def _job_row(job: str) -> dict:
  """The row fields a memory job stands for."""
  _, shape, dtype, remat = job.split(':')
  batch, seconds = shape.split('x')
  return dict(
    batch=int(batch), seconds=float(seconds), compute_dtype=dtype, remat=remat
  )


def run_memory(job: str, s: dict) -> dict:
  from benchmarks import memory_bench  # noqa: PLC0415

  row = _job_row(job)
  (row,) = memory_bench.measure(
    load_config(s['config']),
    [(row['batch'], row['seconds'])],
    vocab=s['vocab'],
    tokens_per_second=TOKENS_PER_SECOND,
    dtypes=[row['compute_dtype']],
    remats=[row['remat']],
    report=lambda row: None,
  )
  return row


def child(name: str, quick: bool, result_path: str) -> None:
  """Runs one measurement in this process; writes its result as JSON."""
  s = settings(quick)
  try:
    if name.startswith('train_'):
      result = run_train(name.split('_', 1)[1], s)
    elif name.startswith('decode_'):
      result = run_decode(name.split('_', 1)[1], s)
    else:
      result = run_memory(name, s)
  except Exception as e:  # noqa: BLE001  (recorded, the run goes on)
    result = dict(error=f'{type(e).__name__}: {e}'[:2000])
  Path(result_path).write_text(json.dumps(result))


class Child:
  """One measurement's process, its log and its result file."""

  def __init__(self, name: str, quick: bool, workdir: str, env_extra=None):
    self.name = name
    safe = name.replace(':', '_')
    self.result_path = os.path.join(workdir, f'{safe}.json')
    self.log_path = os.path.join(workdir, f'{safe}.log')
    env = dict(os.environ, **(env_extra or {}))
    env['PYTHONPATH'] = os.pathsep.join(
      [str(ROOT), *filter(None, [env.get('PYTHONPATH')])]
    )
    cmd = [sys.executable, __file__, '--child', name]
    cmd += ['--result', self.result_path] + (['--quick'] if quick else [])
    self.start = time.perf_counter()
    with open(self.log_path, 'w') as log:
      self.proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
      )

  def done(self) -> bool:
    return self.proc.poll() is not None

  def stop(self) -> None:
    if not self.done():
      os.killpg(self.proc.pid, 9)
      self.proc.wait()

  def result(self, why_stopped: str | None = None) -> dict:
    """Its result, or an error with the log's tail."""
    if os.path.exists(self.result_path):
      result = json.loads(Path(self.result_path).read_text())
    else:
      tail = Path(self.log_path).read_text()[-1500:]
      reason = why_stopped or f'exit code {self.proc.returncode}'
      result = dict(error=f'{reason}; log tail: {tail}')
    result['wall_s'] = time.perf_counter() - self.start
    return result


def run_section(name: str, quick: bool, limit_s: float, workdir: str) -> dict:
  child_ = Child(name, quick, workdir)
  try:
    child_.proc.wait(timeout=limit_s)
    return child_.result()
  except subprocess.TimeoutExpired:
    child_.stop()
    return child_.result(f'stopped after {limit_s:.0f} s')


def run_memory_table(quick: bool, deadline: float, workdir: str) -> dict:
  """The memory table's compilations, side by side, until the deadline."""
  jobs = memory_jobs(settings(quick))
  parallel = max(1, min(8, (os.cpu_count() or 2) // 2))
  # Compiling needs no device memory: no process takes 75% of it up front.
  env = {'XLA_PYTHON_CLIENT_PREALLOCATE': 'false'}
  pending, running, results = list(jobs), [], {}
  while pending or running:
    while pending and len(running) < parallel:
      running.append(Child(pending.pop(0), quick, workdir, env))
    time.sleep(0.5)
    late = time.perf_counter() > deadline
    for c in [c for c in running if c.done() or late]:
      c.stop()
      stopped = None if c.done() and not late else 'budget spent'
      results[c.name] = {**_job_row(c.name), **c.result(stopped)}
      running.remove(c)
    if late:
      for name in pending:
        results[name] = dict(_job_row(name), error='not started: budget spent')
      pending = []
  return dict(rows=[results[name] for name in jobs], parallel=parallel)


def _environment() -> dict:
  import jax  # noqa: PLC0415

  device = jax.devices()[0]
  return dict(
    date=datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
    jax=jax.__version__,
    platform=device.platform,
    device=device.device_kind,
    devices=jax.device_count(),
  )


def _fmt(value, spec: str) -> str:
  """`value` formatted, or '-' right-aligned to the same width."""
  if value is None:
    return '-'.rjust(int(spec.split('.')[0]))
  return format(value, spec)


def format_report(report: dict) -> str:
  from benchmarks import memory_bench  # noqa: PLC0415

  env = report['environment']
  lines = [
    f'{env["device"]} ({env["platform"]}), jax {env["jax"]}, {env["date"]}',
    f'{report["config"]}: training at batch {report["train_batch"]} of '
    f'{report["seconds"][0]:g}-{report["seconds"][1]:g} s; decoding beam '
    f'{report["beam"]} at batch {report["decode_batch"]}',
    '',
    f'{"section":16} {"compile s":>9} {"step s":>8} {"utt/s":>7} '
    f'{"audio h/h":>9} {"RTF":>7} {"peak GiB":>8}',
  ]
  sections = report['sections']
  for name, r in sections.items():
    if name == 'memory':
      continue
    if 'error' in r or 'skipped' in r:
      lines.append(f'{name:16} {r.get("skipped") or r["error"][:300]}')
      continue
    lines.append(
      f'{name:16} {_fmt(r.get("compile_s"), "9.1f")} '
      f'{_fmt(r.get("step_s"), "8.3f")} '
      f'{_fmt(r.get("utterances_per_s"), "7.1f")} '
      f'{_fmt(r.get("audio_hours_per_hour"), "9.0f")} '
      f'{_fmt(r.get("real_time_factor"), "7.4f")} '
      f'{_fmt(r.get("peak_memory_gib"), "8.2f")}'
    )
  memory = sections.get('memory', {})
  if memory.get('rows'):
    lines += ['', 'XLA memory analysis of the train step (per device):']
    lines.append(memory_bench.format_table(memory['rows']))
  elif 'skipped' in memory:
    lines.append(f'memory: {memory["skipped"]}')
  return '\n'.join(lines)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', default='device_bench.json')
  parser.add_argument('--quick', action='store_true')
  parser.add_argument('--budget_s', type=float, default=450.0)
  parser.add_argument(
    '--sections', default=','.join(SECTIONS), help='Comma-separated subset.'
  )
  parser.add_argument('--child', help=argparse.SUPPRESS)
  parser.add_argument('--result', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    child(args.child, args.quick, args.result)
    return
  sections = args.sections.split(',')
  unknown = set(sections) - set(SECTIONS)
  if unknown:
    raise SystemExit(f'--sections: unknown {sorted(unknown)}; of {[*SECTIONS]}')
  deadline = time.perf_counter() + args.budget_s
  s = settings(args.quick)
  report = dict(
    environment=_environment(),
    config=f'configs/{s["config"]}.py',
    train_batch=s['train_batch'],
    seconds=s['seconds'],
    decode_batch=s['decode_batch'],
    beam=s['beam'],
    budget_s=args.budget_s,
    sections={},
  )
  print(
    f'{report["environment"]["device"]}: {report["config"]}, budget '
    f'{args.budget_s:.0f} s',
    flush=True,
  )
  with tempfile.TemporaryDirectory() as workdir:
    for section in sections:
      left = deadline - time.perf_counter()
      limit = min(SECTIONS[section] or left, left)
      if limit < 30:
        result = dict(skipped=f'skipped: {left:.0f} s of the budget left')
      elif section == 'memory':
        result = run_memory_table(args.quick, deadline, workdir)
      else:
        result = run_section(section, args.quick, limit, workdir)
      report['sections'][section] = result
      shown = {k: v for k, v in result.items() if k != 'rows'}
      print(f'{section}: {json.dumps(shown)[:600]}', flush=True)
      tmp = args.out + '.tmp'
      with open(tmp, 'w') as f:
        json.dump(report, f, indent=1)
      os.replace(tmp, args.out)
  print()
  print(format_report(report))


if __name__ == '__main__':
  main()
