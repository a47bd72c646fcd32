"""Evaluation during training: dev loss, greedy CER and alignment plots.

`evaluate` runs the compiled eval and greedy-decode steps over the dev
iterator's host-local batches. Every host scores its own rows; CER edit
counts and loss sums are summed over hosts, so every host gets the same
numbers. `write_eval_outputs` renders attention alignments of a few dev
utterances (PNG files and TensorBoard images) and the loss/CER curves.
"""

import math
from pathlib import Path
from typing import Any

import jax
import numpy as np

from las_jax import logging_utils, losses, metrics, parallel, plots
from las_jax.input_pipeline import BatchIterator
from las_jax.steps import DEVICE_FIELDS
from las_jax.text import Vocabulary
from las_jax.train_state import TrainState


def _sum_over_hosts(values_N: np.ndarray) -> np.ndarray:
  if jax.process_count() == 1:
    return values_N
  from jax.experimental import multihost_utils  # noqa: PLC0415

  gathered = multihost_utils.process_allgather(values_N)
  return np.asarray(gathered).reshape(-1, len(values_N)).sum(0)


def evaluate(
  state: TrainState,
  dev_iter: BatchIterator,
  evaluate_fn,
  decode_fn,
  mesh: jax.sharding.Mesh,
  vocab: Vocabulary,
  ctc_weight: float,
  fields: tuple[str, ...] = DEVICE_FIELDS,
  num_examples: int = 8,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
  """Dev loss and greedy CER over one pass of `dev_iter` (rewound first).

  Args:
    state: the training state.
    dev_iter: the eval iterator (one epoch, host-local batches).
    evaluate_fn: compiled `steps.eval_step`.
    decode_fn: compiled `steps.greedy_decode`; None for a language model
      (no CER: its dev loss and perplexity only).
    mesh: the `data` mesh.
    vocab: decodes hypotheses.
    ctc_weight: weight of the CTC term of the loss.
    fields: the batch fields the steps read (`steps.device_fields`).
    num_examples: how many utterances to return for plots.

  Returns:
    `(metrics, examples)`: metrics `dev/loss`, `dev/cer`, `dev/accuracy`
    (attention models and language models), `dev/perplexity` (language
    models) and `dev/utterances`; examples are this host's first
    utterances with id, reference, hypothesis, attention (None when the
    model is trained on CTC alone: DeepSpeech2) and lengths.
  """
  dev_iter.set_state({'epoch': 0, 'position': 0})
  total = None
  edits = ref_chars = utterances = 0
  examples = []
  for local in dev_iter:
    batch = parallel.global_batch({k: local[k] for k in fields}, mesh)
    sums, attention = evaluate_fn(state, batch)
    sums = parallel.fetch(sums)
    total = sums if total is None else jax.tree.map(np.add, total, sums)
    if decode_fn is None:
      utterances += int(np.sum(np.asarray(local['token_lengths']) > 0))
      continue
    tokens_BxL, lengths_B = (
      parallel.local_rows(x) for x in decode_fn(state, batch)
    )
    attention_BxLxS = None
    rows = np.flatnonzero(np.asarray(local['audio_lengths']) > 0)
    for i in rows:
      ref = str(local['texts'][i])
      hyp = vocab.transcript(tokens_BxL[i, : lengths_B[i]])
      errors = metrics.utterance_errors(ref, hyp)
      edits += errors.char_edits
      ref_chars += errors.ref_chars
      utterances += 1
      if len(examples) < num_examples:
        if attention_BxLxS is None and ctc_weight < 1.0:
          attention_BxLxS = parallel.local_rows(attention)
        examples.append(
          dict(
            id=str(local['ids'][i]),
            ref=ref,
            hyp=hyp,
            cer=errors.char_edits / max(errors.ref_chars, 1),
            attention=None if attention_BxLxS is None else attention_BxLxS[i],
            tokens=int(local['token_lengths'][i]),
          )
        )
  if total is None:
    raise ValueError('the dev split yielded no batches')
  edits, ref_chars, utterances = _sum_over_hosts(
    np.array([edits, ref_chars, utterances], np.int64)
  )
  total = jax.tree.map(lambda x: np.asarray(x, np.float64), total)
  result = {
    'dev/loss': float(losses.combine(total, ctc_weight)),
    'dev/utterances': float(utterances),
  }
  if decode_fn is None:
    result['dev/perplexity'] = float(np.exp(result['dev/loss']))
  else:
    result['dev/cer'] = float(edits / ref_chars) if ref_chars else math.nan
  if total.tokens > 0:
    result['dev/accuracy'] = float(total.correct / total.tokens)
  return result, examples


def best_metric(config) -> str:
  """The dev metric that picks the best checkpoint (lower is better)."""
  return 'dev/perplexity' if config.model.name == 'lstm_lm' else 'dev/cer'


def write_eval_outputs(
  writer: logging_utils.MetricWriter,
  workdir: Path,
  step: int,
  examples: list[dict[str, Any]],
  num_plots: int,
) -> None:
  """Attention PNGs (workdir/plots and TensorBoard), transcripts (TensorBoard)
  and workdir/curves.png.

  Only process 0 writes. Attention rows are the reference tokens (teacher
  forced) and columns all encoder frames of the padded batch; examples
  without attention (CTC models) get their transcripts only.
  """
  if jax.process_index() != 0:
    return
  plot_dir = Path(workdir) / 'plots'
  plot_dir.mkdir(exist_ok=True)
  for i, ex in enumerate(examples[:num_plots]):
    if ex['attention'] is not None:
      title = (
        f'{ex["id"]}  step {step}  CER {ex["cer"]:.2f}\n'
        f'ref: {ex["ref"]}\nhyp: {ex["hyp"]}'
      )
      png = plots.attention_png(
        ex['attention'], ex['tokens'], ex['attention'].shape[-1], title
      )
      (plot_dir / f'attention_{i}_step{step:08d}.png').write_bytes(png)
      writer.image(step, f'attention/{i}', png)
    writer.text(
      step, f'transcript/{i}', f'ref: {ex["ref"]}  \nhyp: {ex["hyp"]}'
    )
  writer.flush()
  records = logging_utils.read_metrics(workdir)
  (Path(workdir) / 'curves.png').write_bytes(plots.curves_png(records))
