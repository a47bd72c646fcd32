"""Memory of one training step, from XLA's own analysis (not a test).

  JAX_PLATFORMS=cpu PYTHONPATH=. python benchmarks/memory_bench.py \
      [--config configs/kspon.py] [--shapes 32x15,8x20] [--json out.json]

Compiles the train step of --config (one device, the global batch on it)
for each batch shape `<utterances>x<seconds>` in float32 and bfloat16
(`train.compute_dtype`), with rematerialization off and on
(`train.remat`: 'none', 'nothing_saveable'), and prints what XLA's
buffer assignment reserves: arguments (state and batch), outputs, the
part of the outputs that reuses the donated state, and temporaries (the
activations kept for the backward pass and every other intermediate).
Nothing runs: the step is only compiled, so this works for shapes that
would not fit. A device needs about arguments + outputs - aliased + temp
bytes (plus the allocator's fragmentation); the figures are per device,
so with N devices divide the global batch by N before choosing a shape.

On CPU the compilation keeps the optimization barriers that make
`jax.checkpoint` recompute (XLA option `xla_disable_hlo_passes=
cse_barrier_expander`): XLA:CPU otherwise removes them before common
subexpression elimination, which merges the recomputation back into the
forward pass (remat then changes nothing on CPU, in training too); GPU and
TPU keep them. CPU figures are an estimate for an accelerator in other
ways as well: XLA:CPU computes bfloat16 matmuls and convolutions in
float32 (converted copies), and GPU libraries add workspace of their own.

Target lengths: `--tokens_per_second` times the seconds, rounded up to
the config's token bucket (KsponSpeech runs about 10 characters with
spaces per second of speech). Audio is padded to exactly the seconds
given. Vocabulary: --vocab (KoSpeech's 2000).
"""

import argparse
import json
import math
import sys
import time

import jax
import jax.numpy as jnp

from las_jax import optim, parallel, steps
from las_jax.train_state import create_train_state

GIB = 2**30
DTYPES = ('float32', 'bfloat16')
REMATS = ('none', 'nothing_saveable')


def parse_shape(text: str) -> tuple[int, float]:
  """'32x15' -> (32 utterances, 15.0 seconds)."""
  try:
    utterances, seconds = text.lower().split('x')
    return int(utterances), float(seconds)
  except ValueError as e:
    raise ValueError(
      f'--shapes: {text!r} is not <utterances>x<seconds>, e.g. 32x15'
    ) from e


def token_length(config, seconds: float, tokens_per_second: float) -> int:
  """Padded target length for `seconds` of speech (EOS included)."""
  need = math.ceil(tokens_per_second * seconds) + 1
  fitting = [b for b in sorted(config.input.token_buckets) if b >= need]
  return fitting[0] if fitting else need


def abstract_batch(config, utterances: int, seconds: float, tokens: int):
  """ShapeDtypeStructs of a training batch of that shape."""
  samples = int(round(seconds * config.features.sample_rate))
  s = jax.ShapeDtypeStruct
  return dict(
    audio=s((utterances, samples), jnp.int16),
    audio_lengths=s((utterances,), jnp.int32),
    tokens=s((utterances, tokens), jnp.int32),
    token_lengths=s((utterances,), jnp.int32),
  )


def compile_step(config, vocab: int, batch):
  """The compiled train step of `config` for `batch` shapes on one device,
  and the compile seconds."""
  mesh = parallel.make_mesh(1)
  tx, _ = optim.make_optimizer(config.train)
  graphdef = None

  def init():
    nonlocal graphdef
    graphdef, state = create_train_state(config, vocab, tx, mesh)
    return state

  state = jax.eval_shape(init)  # Shapes only: nothing is allocated.
  train_fn, _, _ = steps.compile_steps(config, graphdef, tx, mesh)
  options = None
  if mesh.devices.flat[0].platform == 'cpu':  # Module doc.
    options = {'xla_disable_hlo_passes': 'cse_barrier_expander'}
  start = time.perf_counter()
  compiled = train_fn.lower(state, batch).compile(compiler_options=options)
  return compiled, time.perf_counter() - start


def measure(
  config,
  shapes,
  *,
  vocab: int = 2000,
  tokens_per_second: float = 10.0,
  dtypes=DTYPES,
  remats=REMATS,
  report=print,
):
  """One row per shape x dtype x remat; a row with `error` when one fails.

  Rows are also passed to `report` as they come (a slow compile shows
  progress; a failure does not lose the rows before it).
  """
  rows = []
  for utterances, seconds in shapes:
    tokens = token_length(config, seconds, tokens_per_second)
    batch = abstract_batch(config, utterances, seconds, tokens)
    for dtype in dtypes:
      for remat in remats:
        cfg = config.copy_and_resolve_references()
        cfg.train.compute_dtype = dtype
        cfg.train.remat = remat
        row = dict(
          batch=utterances,
          seconds=seconds,
          tokens=tokens,
          compute_dtype=dtype,
          remat=remat,
        )
        try:
          compiled, compile_s = compile_step(cfg, vocab, batch)
          stats = compiled.memory_analysis()
          row.update(
            argument_gib=stats.argument_size_in_bytes / GIB,
            output_gib=stats.output_size_in_bytes / GIB,
            alias_gib=stats.alias_size_in_bytes / GIB,
            temp_gib=stats.temp_size_in_bytes / GIB,
            compile_s=compile_s,
          )
          row['total_gib'] = (
            row['argument_gib']
            + row['output_gib']
            - row['alias_gib']
            + row['temp_gib']
          )
        except Exception as e:  # noqa: BLE001  (report it, keep going)
          row['error'] = f'{type(e).__name__}: {e}'[:300]
        rows.append(row)
        report(row)
  return rows


def format_table(rows) -> str:
  """The rows as an aligned text table, temp memory relative to the first
  row (float32, no remat) of each shape."""
  lines = [
    f'{"batch":>11} {"dtype":>8} {"remat":>16} {"args":>7} {"out":>7} '
    f'{"alias":>7} {"temp":>7} {"total":>7} {"temp vs f32":>11} '
    f'{"compile":>8}',
    f'{"":>11} {"":>8} {"":>16} {"GiB":>7} {"GiB":>7} {"GiB":>7} '
    f'{"GiB":>7} {"GiB":>7} {"no remat":>11} {"s":>8}',
  ]
  base = {}
  for r in rows:
    shape = f'{r["batch"]} x {r["seconds"]:g} s'
    if 'error' in r:
      lines.append(
        f'{shape:>11} {r["compute_dtype"]:>8} {r["remat"]:>16} '
        f'failed: {r["error"]}'
      )
      continue
    ref = base.setdefault(shape, r['temp_gib'])
    lines.append(
      f'{shape:>11} {r["compute_dtype"]:>8} {r["remat"]:>16} '
      f'{r["argument_gib"]:7.2f} {r["output_gib"]:7.2f} '
      f'{r["alias_gib"]:7.2f} {r["temp_gib"]:7.2f} {r["total_gib"]:7.2f} '
      f'{r["temp_gib"] / ref - 1:+11.0%} {r["compile_s"]:8.1f}'
    )
  return '\n'.join(lines)


def _load_config(path: str):
  import importlib.util  # noqa: PLC0415

  spec = importlib.util.spec_from_file_location('bench_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='configs/kspon.py')
  parser.add_argument('--shapes', default='32x15,8x20')
  parser.add_argument('--vocab', type=int, default=2000)
  parser.add_argument('--tokens_per_second', type=float, default=10.0)
  parser.add_argument('--dtypes', default=','.join(DTYPES))
  parser.add_argument('--remats', default=','.join(REMATS))
  parser.add_argument('--json', help='Also write the rows here.')
  args = parser.parse_args(argv)
  config = _load_config(args.config)
  shapes = [parse_shape(s) for s in args.shapes.split(',')]
  print(
    f'{args.config} train step on one {jax.devices()[0].device_kind}; '
    f'vocab {args.vocab}, {args.tokens_per_second:g} tokens/s',
    flush=True,
  )
  rows = measure(
    config,
    shapes,
    vocab=args.vocab,
    tokens_per_second=args.tokens_per_second,
    dtypes=args.dtypes.split(','),
    remats=args.remats.split(','),
    report=lambda row: print(json.dumps(row), file=sys.stderr, flush=True),
  )
  print(format_table(rows))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(rows, f, indent=1)


if __name__ == '__main__':
  main()
