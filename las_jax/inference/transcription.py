"""Batch transcription with reports: what `decode.py` runs.

`run(...)` restores a model into a `Recognizer`, streams the inputs
through it and writes:
- stdout: one `id<TAB>hypothesis` line per utterance, as it is decoded
  (batch order, not input order);
- a JSONL file, one object per utterance with `id`, `hypothesis`,
  `reference` (null when unknown), `errors` (`metrics.utterance_errors` as
  a dict, null without a reference), `nbest` (`[{"text", "score"}]`, best
  first), `audio_seconds` and `loop` (the hypothesis looks like a loop);
- `<output>.summary.json` and a summary on stderr: utterances, skipped
  inputs, CER (spaces removed, KoSpeech's metric), CER with spaces, WER,
  sWER (when references exist), the real-time factor (decoding wall
  time, compilation excluded, over seconds of audio) and the number of
  hypotheses that look like loops.

Inputs that cannot be decoded (missing, unreadable or corrupt files, silent
or too short audio, malformed .trn lines) are reported by name on stderr
(`Skipping NAME: reason`) and counted; the rest are decoded. Inputs decoded
after a conversion worth knowing about (clipping, int16-scale floats, a
container behind a .pcm name, a trim that removed most of the file) get a
`Warning NAME: reason` line each (`audio.AudioWarning`) and are counted too.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from las_jax import audio, metrics, run_layout
from las_jax.inference import inputs
from las_jax.inference.recognizer import Recognizer


@dataclasses.dataclass(frozen=True)
class Summary:
  """Totals of a decoding run."""

  # Utterances decoded.
  utterances: int
  # Inputs reported and skipped (unreadable, silent, malformed lines).
  skipped: int
  # Decoded inputs that got a warning (clipped, rescaled, mislabeled...).
  warned: int
  # Seconds of audio decoded (before silence trimming).
  audio_seconds: float
  # Wall time of the run, input reading included, compilation excluded.
  decode_seconds: float
  # Wall time spent compiling decode programs.
  compile_seconds: float
  # Corpus error rates over the utterances with a reference, else None.
  rates: metrics.ErrorRates | None
  # Hypotheses that look like loops (`metrics.looks_like_loop`).
  loops: int = 0

  @property
  def real_time_factor(self) -> float:
    """Decoding seconds per second of audio (NaN without audio)."""
    if not self.audio_seconds:
      return math.nan
    return self.decode_seconds / self.audio_seconds

  def to_dict(self) -> dict[str, Any]:
    out = dataclasses.asdict(self)
    out['real_time_factor'] = self.real_time_factor
    return out

  def report(self) -> str:
    """Human-readable lines for the end of a run."""
    lines = [
      f'Decoded {self.utterances} utterances, {self.audio_seconds:.1f} s of '
      f'audio, {self.warned} with warnings; skipped {self.skipped} '
      'input(s) (reported above).'
    ]
    r = self.rates
    if r is not None:
      lines.append(
        f'CER {100 * r.cer:.2f}% (spaces removed, as KoSpeech), CER with '
        f'spaces {100 * r.cer_with_spaces:.2f}%, WER {100 * r.wer:.2f}%, '
        f'sWER {100 * r.swer:.2f}% over {r.n_utterances} references.'
      )
    lines.append(
      f'Real-time factor {self.real_time_factor:.4f} ('
      f'{self.decode_seconds:.2f} s decoding, compilation excluded); '
      f'compilation {self.compile_seconds:.2f} s.'
    )
    lines.append(
      f'{self.loops} hypothes{"i" if self.loops == 1 else "e"}s look like '
      'loops (a 2+ unit n-gram repeated 3+ times in a row, or as many units '
      'as the token limit allows).'
    )
    return '\n'.join(lines)


def transcribe_items(
  recognizer: Recognizer,
  items: Iterable[inputs.DecodeItem],
  jsonl: TextIO,
  *,
  rejected: Sequence[inputs.Rejected] = (),
  stdout: TextIO | None = None,
  stderr: TextIO | None = None,
) -> Summary:
  """Decodes items, writing transcripts and a JSONL record for each.

  Args:
    recognizer: the model.
    items: what to decode (`decode_inputs`).
    jsonl: receives one JSON object per decoded utterance.
    rejected: inputs already found bad, reported and counted as skipped.
    stdout: receives `id<TAB>hypothesis` lines (default sys.stdout).
    stderr: receives problems (default sys.stderr).

  Returns:
    The run's totals and error rates.
  """
  stdout = stdout or sys.stdout
  stderr = stderr or sys.stderr
  for bad in rejected:
    print(f'Skipping {bad.name}: {bad.reason}', file=stderr)
  skipped, warned = len(rejected), 0
  audio_seconds = 0.0
  pending: dict[int, tuple[inputs.DecodeItem, float, float]] = {}
  sample_rate = recognizer.sample_rate

  def named(item: inputs.DecodeItem, message: str) -> str:
    # Audio messages usually start with the path already.
    return (
      message if message.startswith(item.name) else f'{item.name}: {message}'
    )

  def prepared() -> Iterator[tuple[int, Any]]:
    nonlocal skipped, warned, audio_seconds
    for key, item in enumerate(items):
      # Single-threaded here, so catching warnings process-wide is safe.
      with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always', audio.AudioWarning)
        try:
          samples_N = item.load()
          seconds = samples_N.size / sample_rate
          samples_N = recognizer.prepare(samples_N, item.name)
        except audio.AudioError as e:
          samples_N = None
          print(f'Skipping {named(item, str(e))}', file=stderr)
          skipped += 1
      notes = [w for w in caught if issubclass(w.category, audio.AudioWarning)]
      for w in caught:
        if w not in notes:  # Not ours: let Python report it as usual.
          warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
      for w in notes:
        print(f'Warning {named(item, str(w.message))}', file=stderr)
      if samples_N is None:
        continue
      warned += bool(notes)
      audio_seconds += seconds
      # The search's token limit follows the trimmed audio.
      pending[key] = (item, seconds, samples_N.size / sample_rate)
      yield key, samples_N

  compile_before = recognizer.compile_seconds
  start = time.perf_counter()
  decoded, loops, per_utterance = 0, 0, []
  for key, hyps in recognizer.decode_stream(prepared()):
    item, seconds, searched_seconds = pending.pop(key)
    hypothesis = hyps[0].text if hyps else ''
    loop = metrics.looks_like_loop(
      recognizer.vocab.encode(hypothesis),
      recognizer.max_units(searched_seconds),
    )
    loops += loop
    errors = None
    if item.reference is not None:
      errors = metrics.utterance_errors(item.reference, hypothesis)
      per_utterance.append(errors)
    print(f'{item.id}\t{hypothesis}', file=stdout, flush=True)
    record = dict(
      id=item.id,
      hypothesis=hypothesis,
      reference=item.reference,
      errors=None if errors is None else dataclasses.asdict(errors),
      nbest=[dict(text=h.text, score=h.score) for h in hyps],
      audio_seconds=round(seconds, 4),
      loop=loop,
    )
    jsonl.write(json.dumps(record, ensure_ascii=False) + '\n')
    decoded += 1
  compile_seconds = recognizer.compile_seconds - compile_before
  return Summary(
    utterances=decoded,
    skipped=skipped,
    warned=warned,
    audio_seconds=audio_seconds,
    decode_seconds=time.perf_counter() - start - compile_seconds,
    compile_seconds=compile_seconds,
    rates=(
      metrics.ErrorRates.from_utterances(per_utterance)
      if per_utterance
      else None
    ),
    loops=loops,
  )


def default_output(run_dir: Path, name: str) -> Path:
  """Where a run's decodes go by default: <run_dir>/decode/<name>.jsonl."""
  return run_dir / 'decode' / f'{name}.jsonl'


def _source_name(paths: Sequence[str], split: str | None) -> str:
  if split:
    return split
  if len(paths) == 1:
    return Path(os.path.normpath(paths[0])).stem or 'audio'
  return 'audio'


def run(
  *,
  workdir: str | None = None,
  which: str = 'latest',
  checkpoint: str | None = None,
  paths: Sequence[str] = (),
  audio_root: str | None = None,
  split: str | None = None,
  dataset: str | None = None,
  data_dir: str | None = None,
  output: str | None = None,
  stdout: TextIO | None = None,
  stderr: TextIO | None = None,
  **options: Any,
) -> Summary:
  """Restores a model, decodes files or a dataset split, writes reports.

  Args:
    workdir: training run whose `which` checkpoint to use.
    which: 'latest' or 'best' (lowest dev CER).
    checkpoint: a checkpoint step directory instead of `workdir`.
    paths: audio files, directories and .trn lists.
    audio_root: root of the audio paths in .trn lists.
    split: a split of the run's TFDS dataset, instead of `paths`.
    dataset: TFDS builder name for `split` (default: the run's).
    data_dir: TFDS data directory for `split` (default: the run's).
    output: JSONL path (default `<run>/decode/<name>.jsonl`).
    stdout: receives transcripts (default sys.stdout).
    stderr: receives problems and the summary (default sys.stderr).
    **options: `Recognizer` options (beam_size, batch_size, ctc_mode,
      ctc_weight, lm_workdir, lm_weight, length_bonus, length_penalty,
      max_tokens_per_second); None values mean the config's.

  Returns:
    The run's summary (also printed to stderr and written next to the
    JSONL file as `<name>.summary.json`).

  Raises:
    ValueError: both or neither of workdir/checkpoint, or both or neither
      of paths/split.
  """
  stderr = stderr or sys.stderr
  if (workdir is None) == (checkpoint is None):
    raise ValueError('give exactly one of --workdir and --checkpoint')
  if bool(paths) == bool(split):
    raise ValueError('give audio inputs or --split, not both and not neither')
  options = {k: v for k, v in options.items() if v is not None}
  if checkpoint is not None:
    recognizer = Recognizer.from_checkpoint(checkpoint, **options)
    run_dir = run_layout.find_run_dir(checkpoint)
  else:
    recognizer = Recognizer.from_workdir(workdir, which=which, **options)
    run_dir = Path(workdir)
  data = recognizer.config.data
  rejected = []
  if split:
    _, items = inputs.split_items(
      dataset or data.dataset,
      data.transcription,
      split,
      data_dir or data.data_dir,
      # The run's corpus, when the split is the run's own dataset.
      manual_dir=None if dataset or data_dir else data.manual_dir,
    )
  else:
    items, rejected, notes = inputs.path_items(
      paths, audio_root, data.transcription
    )
    for note in notes:
      print(note, file=stderr)
  out_path = (
    Path(output)
    if output
    else default_output(run_dir, _source_name(paths, split))
  )
  out_path.parent.mkdir(parents=True, exist_ok=True)
  with out_path.open('w', encoding='utf-8') as jsonl:
    summary = transcribe_items(
      recognizer,
      items,
      jsonl,
      rejected=rejected,
      stdout=stdout,
      stderr=stderr,
    )
  summary_path = out_path.with_suffix('.summary.json')
  summary_path.write_text(json.dumps(summary.to_dict(), indent=2) + '\n')
  print(summary.report(), file=stderr)
  print(f'Wrote {out_path} and {summary_path}.', file=stderr)
  return summary
