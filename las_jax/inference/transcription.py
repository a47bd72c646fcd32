"""Batch transcription with reports: what `decode.py` runs.

`run(...)` restores a model into a `Recognizer`, streams the inputs
through it and writes:
- stdout: one `id<TAB>hypothesis` line per utterance, in input order
  (each as soon as it and every input before it are decoded or skipped);
- a JSONL file, in the same order, one object per utterance with `id`,
  `hypothesis`, `reference` (null when unknown), `errors`
  (`metrics.utterance_errors` as a dict, null without a reference),
  `nbest` (`[{"text", "score"}]`, best first), `audio_seconds` and `loop`
  (the hypothesis looks like a loop);
- `<output>.summary.json` and a summary on stderr: utterances, skipped
  inputs, CER (spaces removed, KoSpeech's metric), CER with spaces, WER,
  sWER (when references exist), the real-time factor (decoding wall
  time, compilation excluded, over seconds of audio; null when nothing
  was decoded) and the number of hypotheses that look like loops (each
  also gets a `Warning NAME:` line).

Inputs that cannot be decoded (missing, unreadable or corrupt files, silent
or too short audio, malformed .trn lines) and inputs without speech (the
no-speech rule, `no_speech`: noise, tones, music) are reported by name on
stderr (`Skipping NAME: reason`) and counted; the rest are decoded. Inputs decoded
after a conversion worth knowing about (clipping, int16-scale floats, a
container behind a .pcm name, a trim that removed most of the file) get a
`Warning NAME: reason` line each (`audio.AudioWarning`) and are counted too.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from las_jax import audio, metrics, run_layout
from las_jax.inference import inputs, subtitles
from las_jax.inference.long_form import Segment
from las_jax.inference.no_speech import NoSpeech
from las_jax.inference.recognizer import Hypothesis, Recognizer

# How many batches' worth of later utterances may be read while one waits
# in a partly filled length bucket (`Recognizer.decode_stream`'s
# max_wait): with input-order output, results fall at most this far
# behind; a bucket that holds fewer than 1 in this many utterances is
# decoded in smaller batches.
_MAX_WAIT_BATCHES = 16


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
  # Of the skipped inputs, those without speech: refused by the no-speech
  # rule (`no_speech`), or long recordings with no speech region.
  no_speech: int = 0
  # How the figures were made: the model (as given, and the checkpoint it
  # resolved to), the search, language model, compute dtype, trimming and
  # no-speech rule (`Recognizer.settings`), timestamps and long-form.
  settings: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def real_time_factor(self) -> float | None:
    """Decoding seconds per second of audio (None without audio)."""
    if not self.audio_seconds:
      return None
    return self.decode_seconds / self.audio_seconds

  def to_dict(self) -> dict[str, Any]:
    out = dataclasses.asdict(self)
    out['real_time_factor'] = self.real_time_factor
    return out

  def report(self) -> str:
    """Human-readable lines for the end of a run."""
    if not self.utterances:
      if not self.skipped:
        return 'Nothing was decoded: the inputs hold no utterances.'
      return (
        f'Nothing was decoded: all {self.skipped} input(s) were skipped, '
        f'{self.no_speech} of them for holding no speech (reasons above).'
      )
    lines = [
      f'Decoded {self.utterances} utterances, {self.audio_seconds:.1f} s of '
      f'audio, {self.warned} with warnings; skipped {self.skipped} '
      f'input(s), {self.no_speech} of them for holding no speech (reported '
      'above).'
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
      f'{self.loops} '
      f'{"hypothesis looks" if self.loops == 1 else "hypotheses look"} like '
      'loops (a 2+ unit n-gram repeated 3+ times in a row, or as many units '
      'as the token limit allows).'
    )
    if self.settings:
      lines.append(
        'Settings: '
        + ', '.join(
          f'{k}={v}' for k, v in self.settings.items() if v is not None
        )
        + '.'
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
  timestamps: bool = False,
  long_form: bool = False,
  formats: Sequence[str] = (),
  format_dir: Path | None = None,
) -> Summary:
  """Decodes items, writing transcripts and a JSONL record for each.

  Items longer than the longest audio the model decodes in one pass
  (`Recognizer.is_long`), or every item with `long_form`, are decoded as
  segments split at pauses (`Recognizer.transcribe_long`; a file is then
  read in blocks, never whole) and say so on stderr.

  Args:
    recognizer: the model.
    items: what to decode (`inputs`).
    jsonl: receives one JSON object per decoded utterance.
    rejected: inputs already found bad, reported and counted as skipped.
    stdout: receives `id<TAB>hypothesis` lines (default sys.stdout).
    stderr: receives problems (default sys.stderr).
    timestamps: add each word's start and end seconds to the records.
    long_form: decode every item as segments.
    formats: also write each item's segments as these `subtitles.FORMATS`.
    format_dir: where those files go, as `<output_stem>.<format>`
      (`inputs.DecodeItem.output_stem`; the id when it has none).

  Returns:
    The run's totals and error rates.
  """
  stdout = stdout or sys.stdout
  stderr = stderr or sys.stderr
  for bad in rejected:
    print(f'Skipping {bad.name}: {bad.reason}', file=stderr)
  skipped, warned = len(rejected), 0
  audio_seconds = 0.0
  # key -> (item, seconds, seconds searched, first sample kept; negative
  # after a margin put in front, `Recognizer.prepare_span`).
  pending: dict[int, tuple[inputs.DecodeItem, float, float, int]] = {}
  # Items decoded as segments: key, item, the samples kept
  # (`prepare_span`), the first one's index and the input's length, or
  # None for a file read in blocks.
  long_items: list[
    tuple[int, inputs.DecodeItem, np.ndarray | None, tuple[int, int | None]]
  ] = []
  # Outputs wait here until every item before them is done: key -> the
  # arguments of `write`, or None for a skipped item.
  done: dict[int, tuple | None] = {}
  next_key = 0
  sample_rate = recognizer.sample_rate

  def named(item: inputs.DecodeItem, message: str) -> str:
    # Audio messages usually start with the name or the path already.
    if message.startswith(item.name):
      return message
    if item.path and message.startswith(f'{item.path}: '):
      message = message[len(item.path) + 2 :]
    return f'{item.name}: {message}'

  def reported(item: inputs.DecodeItem, fn):
    """fn() with audio problems reported by name; None when it failed."""
    nonlocal skipped, warned
    # Single-threaded here, so catching warnings process-wide is safe.
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter('always', audio.AudioWarning)
      try:
        result = fn()
      except audio.AudioError as e:
        result = None
        print(f'Skipping {named(item, str(e))}', file=stderr)
        skipped += 1
    notes = [w for w in caught if issubclass(w.category, audio.AudioWarning)]
    for w in caught:
      if w not in notes:  # Not ours: let Python report it as usual.
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for w in notes:
      print(f'Warning {named(item, str(w.message))}', file=stderr)
    warned += bool(notes) and result is not None
    return result

  def prepared() -> Iterator[tuple[int, Any]]:
    for key, item in enumerate(items):
      if long_form and item.path is not None:
        long_items.append((key, item, None, (0, None)))  # Read in blocks.
        continue

      def load(item=item):
        samples_N = item.load()
        kept_N, first = recognizer.prepare_span(samples_N, item.name)
        return samples_N.size, kept_N, first

      loaded = reported(item, load)
      if loaded is None:
        finish(key, None)
        continue
      size, kept_N, first = loaded
      if long_form or recognizer.is_long(kept_N.size):
        long_items.append((key, item, kept_N, (first, size)))
        continue
      # The search's token limit follows the trimmed audio.
      pending[key] = (
        item,
        size / sample_rate,
        kept_N.size / sample_rate,
        first,
      )
      yield key, kept_N

  decoded, loops, no_speech, per_utterance = 0, 0, 0, []

  def write(item, hyps, seconds, segments, loop):
    nonlocal decoded, loops
    hypothesis = hyps[0].text if hyps else ''
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
      segments=[dict(start=g.start, end=g.end, text=g.text) for g in segments],
    )
    if timestamps:
      record['words'] = [
        dataclasses.asdict(w) for g in segments for w in (g.words or ())
      ]
    jsonl.write(json.dumps(record, ensure_ascii=False) + '\n')
    for fmt in formats:
      path = format_dir / f'{_output_stem(item)}.{fmt}'
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_text(subtitles.render(segments, fmt), encoding='utf-8')
    decoded += 1

  def finish(key: int, output: tuple | None) -> None:
    """Writes the outputs of `key` and of the keys after it that are done
    (stdout and the JSONL in input order, however batches finish)."""
    nonlocal next_key
    done[key] = output
    while next_key in done:
      output = done.pop(next_key)
      if output is not None:
        write(*output)
      next_key += 1

  compile_before = recognizer.compile_seconds
  start = time.perf_counter()
  # Results are written in input order: an utterance waits at most this
  # many reads in a partly filled bucket, so output keeps flowing.
  max_wait = _MAX_WAIT_BATCHES * recognizer.batch_size
  for key, hyps in recognizer.decode_stream(prepared(), timestamps, max_wait):
    item, seconds, searched_seconds, first = pending.pop(key)
    if isinstance(hyps, NoSpeech):
      print(f'Skipping {item.name}: {hyps.reason}', file=stderr)
      skipped += 1
      no_speech += 1
      finish(key, None)
      continue
    audio_seconds += seconds
    within = 0, round(seconds * sample_rate)  # Margins excluded.
    hyps = [recognizer.shifted(h, first, within) for h in hyps]
    best = hyps[0] if hyps else None
    loop = bool(best) and metrics.looks_like_loop(
      recognizer.vocab.encode(best.text),
      recognizer.max_units(searched_seconds),
    )
    segments = []
    if best is not None:
      segments = [
        Segment(
          round(max(first, 0) / sample_rate, 3),
          round(min(seconds, first / sample_rate + searched_seconds), 3),
          best.text,
          best.score,
          best.words,
        )
      ]
    if loop:
      _warn_loop(item, stderr)
    finish(key, (item, hyps, seconds, segments, loop))
  for key, item, kept_N, (first, size) in long_items:
    source = item.path if kept_N is None else kept_N
    segments = reported(
      item,
      lambda source=source: recognizer.transcribe_long(
        source, timestamps=timestamps
      ),
    )
    if segments is None:
      finish(key, None)
      continue
    if not segments:  # As a short input that trims to nothing is.
      print(
        f'Skipping {item.name}: no speech found (silence, or only sounds '
        'the no-speech rule refused)',
        file=stderr,
      )
      skipped += 1
      no_speech += 1
      finish(key, None)
      continue
    within = None if size is None else (0, size)  # Margins excluded.
    segments = [recognizer.shifted_segment(g, first, within) for g in segments]
    seconds = _duration(item, size, sample_rate)
    audio_seconds += seconds
    print(
      f'Long-form {item.name}: {seconds:.1f} s decoded as {len(segments)} '
      f'segments split at pauses (the model decodes at most '
      f'{recognizer.max_seconds:g} s in one pass)',
      file=stderr,
    )
    text = ' '.join(g.text for g in segments if g.text)
    score = sum(g.score for g in segments)
    loop = any(
      metrics.looks_like_loop(
        recognizer.vocab.encode(g.text), recognizer.max_units(g.end - g.start)
      )
      for g in segments
    )
    if loop:
      _warn_loop(item, stderr)
    finish(key, (item, [Hypothesis(text, score)], seconds, segments, loop))
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
    no_speech=no_speech,
    settings=recognizer.settings
    | dict(timestamps=timestamps, long_form=long_form),
  )


def _warn_loop(item: inputs.DecodeItem, stderr: TextIO) -> None:
  print(
    f'Warning {item.name}: the hypothesis looks like a decoding loop (a 2+ '
    'unit n-gram repeated 3+ times in a row, or as many units as the token '
    'limit allows): check it before use',
    file=stderr,
  )


def _duration(item, size: int | None, sample_rate) -> float:
  """Seconds of a long item: its file's, or of the samples it had."""
  if size is not None:
    return size / sample_rate
  return audio.duration(item.path)


def _output_stem(item: inputs.DecodeItem) -> Path:
  """`item.output_stem` (or its id) as a path inside the output folder."""
  parts = Path(item.output_stem or item.id).parts
  return Path(*[p for p in parts if p != '..' and not Path(p).anchor] or ['_'])


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
  model: str | None = None,
  paths: Sequence[str] = (),
  audio_root: str | None = None,
  split: str | None = None,
  dataset: str | None = None,
  data_dir: str | None = None,
  output: str | None = None,
  stdout: TextIO | None = None,
  stderr: TextIO | None = None,
  timestamps: bool = False,
  long_form: bool = False,
  formats: Sequence[str] = (),
  **options: Any,
) -> Summary:
  """Restores a model, decodes files or a dataset split, writes reports.

  Args:
    workdir: training run whose `which` checkpoint to use.
    which: 'latest' or 'best' (lowest dev CER).
    checkpoint: a checkpoint step directory instead of `workdir`.
    model: a directory `python -m las_jax.export` wrote, instead of
      `workdir`; its decodes go to `./decode/` by default.
    paths: audio files, directories and .trn lists.
    audio_root: root of the audio paths in .trn lists.
    split: a split of the run's TFDS dataset, instead of `paths`.
    dataset: TFDS builder name for `split` (default: the run's).
    data_dir: TFDS data directory for `split` (default: the run's).
    output: JSONL path (default `<run>/decode/<name>.jsonl`).
    stdout: receives transcripts (default sys.stdout).
    stderr: receives problems and the summary (default sys.stderr).
    timestamps: word start and end seconds in the JSONL records.
    long_form: decode every input as segments split at pauses (inputs
      longer than the model's largest audio bucket always are).
    formats: also write each input's segments as subtitles or text
      (`subtitles.FORMATS`), in `<output without .jsonl>/<input>.<fmt>`,
      <input> the file's path from the inputs' common directory (see
      `inputs.DecodeItem.output_stem`).
    **options: `Recognizer` options (beam_size, batch_size, ctc_mode,
      ctc_weight, lm_workdir, lm_weight, length_bonus, length_penalty,
      max_tokens_per_second, compute_dtype); None values mean the config's.

  Returns:
    The run's summary (also printed to stderr and written next to the
    JSONL file as `<name>.summary.json`).

  Raises:
    ValueError: not exactly one of workdir/checkpoint/model, or both or
      neither of paths/split.
  """
  stderr = stderr or sys.stderr
  if sum(x is not None for x in (workdir, checkpoint, model)) != 1:
    raise ValueError('give exactly one of --workdir, --checkpoint and --model')
  if bool(paths) == bool(split):
    raise ValueError('give audio inputs or --split, not both and not neither')
  options = {k: v for k, v in options.items() if v is not None}
  if checkpoint is not None:
    recognizer = Recognizer.from_checkpoint(checkpoint, **options)
    run_dir = run_layout.find_run_dir(checkpoint)
  elif model is not None:
    recognizer = Recognizer.from_pretrained(model, **options)
    run_dir = Path('.')
  else:
    recognizer = Recognizer.from_workdir(workdir, which=which, **options)
    run_dir = Path(workdir)
  if not recognizer.detects_no_speech:
    print(
      'Note: inputs without speech (noise, tones, music) are not detected: '
      + (
        'no_speech_units_per_second is 0.'
        if recognizer.has_ctc_head
        else 'the no-speech rule needs a CTC head, which this model lacks '
        '(config.model.ctc_weight was 0).'
      ),
      file=stderr,
    )
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
  for fmt in formats:
    if fmt not in subtitles.FORMATS:
      raise ValueError(
        f'format must be one of {subtitles.FORMATS}, got {fmt!r}'
      )
  with out_path.open('w', encoding='utf-8') as jsonl:
    summary = transcribe_items(
      recognizer,
      items,
      jsonl,
      rejected=rejected,
      stdout=stdout,
      stderr=stderr,
      timestamps=timestamps,
      long_form=long_form,
      formats=formats,
      format_dir=out_path.with_suffix(''),
    )
  # The model as given, beside the checkpoint it resolved to: a run
  # directory and which of its checkpoints, or an exported model.
  given = dict(workdir=workdir, which=which) if workdir is not None else {}
  given |= dict(model_dir=model) if model is not None else {}
  summary = dataclasses.replace(summary, settings=given | summary.settings)
  summary_path = out_path.with_suffix('.summary.json')
  summary_path.write_text(json.dumps(summary.to_dict(), indent=2) + '\n')
  print(summary.report(), file=stderr)
  print(f'Wrote {out_path} and {summary_path}.', file=stderr)
  if formats:
    print(
      f'Wrote {", ".join(formats)} files to {out_path.with_suffix("")}/.',
      file=stderr,
    )
  return summary
