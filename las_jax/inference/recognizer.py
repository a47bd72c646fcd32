"""Load a trained model once, transcribe many utterances: `Recognizer`.

  rec = Recognizer.from_workdir('runs/kspon', which='best', beam_size=5)
  rec.transcribe(['a.wav', 'b.flac'])               # ['안녕하세요', ...]
  rec.transcribe([samples_N], sample_rate=44100, nbest=True)

Utterances are grouped by the input pipeline's audio length buckets and
padded to the bucket's length, with batches of a power-of-two number of
rows up to `batch_size`; each (rows, samples) shape is compiled once, ahead
of time, and cached, so a stream of any lengths compiles a handful of
programs. One compiled program, `batch_search.search_batch`, does the
whole path on the accelerator: log-mel features, encoder, then the search
`ctc_mode` selects (one-pass joint CTC/attention by default for a LAS with
a CTC head; see `batch_search`), fused with a language model when one is
given.

Decoding is padding- and batch-invariant: an utterance gets the same
hypotheses alone or batched with longer ones, because features, encoder
and attention mask every padded sample and frame, and `search` freezes
finished utterances.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from las_jax import audio, features, input_pipeline, models
from las_jax.inference import (
  alignment,
  aot,
  batch_search,
  long_form,
  no_speech,
  pretrained,
  restore,
)
from las_jax.models import execution
from las_jax.text import Vocabulary

AudioInput = str | os.PathLike | np.ndarray


class Hypothesis(NamedTuple):
  """One entry of an n-best list (a `(text, score)` tuple)."""

  text: str
  # Log-probability: for LAS the weighted sum of the attention, CTC prefix
  # and language model log-probabilities and the length bonus (beam
  # search: divided by the length penalty; 'rescore': rescored with CTC);
  # log p(y|x) for CTC prefix beam search; the best path's log-prob for
  # CTC greedy.
  score: float
  # With timestamps, for the best hypothesis: its words with start and end
  # seconds from CTC forced alignment (`alignment`); None otherwise, or
  # when no CTC path of the frames spells the hypothesis.
  words: tuple[alignment.Span, ...] | None = None


class Recognizer:
  """A restored model with jit-compiled, bucketed batch decoding."""

  def __init__(
    self,
    model: nnx.Module,
    config: ml_collections.ConfigDict,
    vocab: Vocabulary,
    *,
    beam_size: int | None = None,
    batch_size: int | None = None,
    ctc_mode: str | None = None,
    ctc_weight: float | None = None,
    ctc_prebeam_ratio: float | None = None,
    language_model: restore.Run | None = None,
    lm_weight: float | None = None,
    length_bonus: float | None = None,
    length_penalty: float | None = None,
    max_tokens_per_second: float | None = None,
    compute_dtype: str | None = None,
    no_speech_units_per_second: float | None = None,
    no_speech_short_units: float | None = None,
    checkpoint: str | os.PathLike | None = None,
  ):
    """Wraps a model for decoding; options default to `config.decode`.

    Args:
      model: LAS or DeepSpeech2 built by `models.build_model`, restored.
      config: the run's configuration.
      vocab: the run's vocabulary.
      beam_size: beam width; 1 is greedy search.
      batch_size: most utterances decoded together.
      ctc_mode: 'joint', 'rescore', 'ctc' or 'off' (see the module doc);
        None uses `config.decode.ctc_mode`, whose None means 'joint' for a
        LAS with a CTC head and 'off' without. DeepSpeech2 is always 'ctc'.
      ctc_weight: lambda of 'joint' and 'rescore', (1 - lambda) * attention
        + lambda * CTC; None uses `config.decode.ctc_weight`, whose None
        means the run's joint training weight `model.ctc_weight`.
      ctc_prebeam_ratio: 'joint': CTC-scored candidates per hypothesis,
        ceil(ratio * beam_size).
      language_model: a restored `lstm_lm` run on the same vocabulary, for
        shallow fusion (`restore.load_language_model`), or None.
      lm_weight: weight of the language model's log-probabilities.
      length_bonus: added to a hypothesis' score per emitted token (LAS).
      length_penalty: beam search length penalty exponent (LAS).
      max_tokens_per_second: LAS token limit per second of audio, see
        `batch_search.SearchOptions.max_tokens`.
      compute_dtype: 'float32' or 'bfloat16' (`models.execution`: mixed
        precision); None uses `config.decode.compute_dtype`, whose None
        means the run's `train.compute_dtype`. Sets the dtype of the model
        (and of the language model) in place.
      no_speech_units_per_second: an input whose CTC best path emits fewer
        confident units (each counted by its posterior) in every second of
        it is refused as holding no speech, unless it is a short reply
        (`no_speech_short_units`; `no_speech`); 0 turns the rule off; None
        uses `config.decode.no_speech_units_per_second`. Ignored without
        a CTC head (`detects_no_speech`).
      no_speech_short_units: fewer confident units are speech too when
        they are at least this many and the transcript is what the CTC
        head hears (`no_speech.judge`); None uses
        `config.decode.no_speech_short_units`.
      checkpoint: where the model's weights came from (a checkpoint step
        or an exported model's directory), for `settings`; None for a
        model built in Python.

    Raises:
      ValueError: an option is out of range, a CTC mode was asked of a
        model without a CTC head, or the language model's vocabulary is
        not this model's.
    """
    self.config = config
    self.vocab = vocab
    self.options = batch_search.SearchOptions.resolve(
      config,
      beam_size=beam_size,
      ctc_mode=ctc_mode,
      ctc_weight=ctc_weight,
      ctc_prebeam_ratio=ctc_prebeam_ratio,
      lm_weight=lm_weight,
      length_bonus=length_bonus,
      length_penalty=length_penalty,
      max_tokens_per_second=max_tokens_per_second,
    )
    self.batch_size = int(
      config.decode.batch_size if batch_size is None else batch_size
    )
    self.no_speech_units_per_second = float(
      config.decode.no_speech_units_per_second
      if no_speech_units_per_second is None
      else no_speech_units_per_second
    )
    self.no_speech_short_units = float(
      config.decode.no_speech_short_units
      if no_speech_short_units is None
      else no_speech_short_units
    )
    for name in ('no_speech_units_per_second', 'no_speech_short_units'):
      if getattr(self, name) < 0:
        raise ValueError(f'{name} must be >= 0, got {getattr(self, name)}')
    if self.batch_size < 1:
      raise ValueError(f'batch_size must be >= 1, got {self.batch_size}')
    if language_model is not None and language_model.vocab != vocab:
      raise ValueError(
        f'the language model of {language_model.checkpoint} was trained on '
        f'another vocabulary ({len(language_model.vocab)} units) than this '
        f'model ({len(vocab)} units); train it with '
        "--config.data.vocab_from=<this model's run directory>"
      )
    self.language_model = language_model if self.options.lm_weight else None
    if self.language_model is None:
      # What the search does, and what its summary reports.
      self.options = dataclasses.replace(self.options, lm_weight=0.0)
    dtype = (
      compute_dtype or config.decode.compute_dtype or config.train.compute_dtype
    )
    execution.set_compute_dtype(model, dtype, 'compute_dtype')
    self._compute_dtype = dtype
    self._graphdef, state = nnx.split(model)
    lm_graphdef, lm_state = (None, None)
    if self.language_model is not None:
      execution.set_compute_dtype(
        self.language_model.model, dtype, 'compute_dtype'
      )
      lm_graphdef, lm_state = nnx.split(self.language_model.model)
    self._lm_graphdef = lm_graphdef
    self._state = (state, lm_state)
    # Padded audio lengths in samples, the training pipeline's buckets.
    self._buckets = input_pipeline.buckets_from_config(config).audio
    self._compiled: dict[tuple[int, int], Any] = {}
    self.min_samples = min_samples(config)
    # Seconds of audio per encoder frame, for timestamps.
    self.frame_seconds = alignment.encoder_frame_seconds(config)
    # Seconds spent compiling, so callers can report it apart from decoding.
    self.compile_seconds = 0.0
    self.checkpoint = None if checkpoint is None else Path(checkpoint)

  # ------------------------------------------------------------ loading --

  @classmethod
  def from_workdir(
    cls,
    workdir: str | os.PathLike,
    which: str = 'latest',
    step: int | None = None,
    **options: Any,
  ) -> Recognizer:
    """Restores a training run's latest or best-dev-CER checkpoint.

    Args:
      workdir: the run directory (config.json, vocab.txt, checkpoints/).
      which: 'latest' or 'best' (lowest dev CER).
      step: a particular step instead of the newest of `which`.
      **options: `Recognizer` options (beam_size, batch_size, ctc_mode,
        ...), and `lm_workdir`: a language model run for shallow fusion
        (None: `config.decode.lm_workdir`).
    """
    run = restore.load_run(workdir, which=which, step=step)
    return cls._from_run(run, **options)

  @classmethod
  def from_pretrained(
    cls,
    model_dir: str | os.PathLike,
    lm: str | os.PathLike | None = None,
    **options: Any,
  ) -> Recognizer:
    """Loads a model exported by `python -m las_jax.export`.

      rec = Recognizer.from_pretrained('models/kspon_las', beam_size=10)
      rec = Recognizer.from_pretrained('models/kspon_las',
                                       lm='models/kspon_lm', lm_weight=0.3)

    Args:
      model_dir: the exported recognizer's directory (`las_jax.pretrained`).
      lm: an exported language model's directory, fused by shallow fusion
        (weight `lm_weight`, default `config.decode.lm_weight`); None: no
        language model. The exported config never names one.
      **options: `Recognizer` options (beam_size, batch_size, ctc_mode,
        ...); `lm_workdir` fuses a language model training run instead of
        `lm`.

    Raises:
      FileNotFoundError: the directory or one of its files is missing.
      ValueError: a file cannot be interpreted, `model_dir` holds a
        language model or `lm` a recognizer, or the language model's
        vocabulary is not the recognizer's. Messages name the file and
        the fix.
    """
    run = pretrained.load(model_dir)
    if lm is not None:
      if options.get('lm_workdir'):
        raise ValueError('give lm (an exported model) or lm_workdir, not both')
      lm_run = pretrained.load(lm, language_model=True)
      restore.check_same_vocabulary(run, lm_run)
      options['language_model'] = lm_run
    options.setdefault('lm_workdir', '')
    return cls._from_run(run, **options)

  @classmethod
  def from_checkpoint(
    cls, path: str | os.PathLike, **options: Any
  ) -> Recognizer:
    """Restores one checkpoint step directory (e.g. run/checkpoints/2000).

    The run's config.json and vocab.txt are found in the nearest directory
    above `path` that holds them.
    """
    run = restore.load_checkpoint(path)
    return cls._from_run(run, **options)

  @classmethod
  def _from_run(
    cls, run: restore.Run, lm_workdir: str | None = None, **options: Any
  ) -> Recognizer:
    """`lm_workdir`: a language model run for shallow fusion; None uses
    `config.decode.lm_workdir` ('' = none)."""
    if lm_workdir is None:
      lm_workdir = run.config.decode.lm_workdir
    if lm_workdir and options.get('lm_weight', 1.0) != 0:
      lm_run = restore.load_language_model(lm_workdir)
      restore.check_same_vocabulary(run, lm_run)
      options['language_model'] = lm_run
    return cls(
      run.model, run.config, run.vocab, checkpoint=run.checkpoint, **options
    )

  @property
  def settings(self) -> dict[str, Any]:
    """What decides the transcripts besides the audio, JSON-able: the
    model's and language model's weights (`checkpoint`: a checkpoint step
    or an exported model's directory; null when built in Python), the
    search (`batch_search.SearchOptions`; `lm_weight` 0 without a
    language model), the compute dtype, silence trimming and the no-speech
    rule (its thresholds null when it is off)."""
    lm = self.language_model
    no_speech_rule = self.detects_no_speech
    return dict(
      checkpoint=None if self.checkpoint is None else str(self.checkpoint),
      model=self.config.model.name,
      language_model=None if lm is None else str(lm.checkpoint),
      **dataclasses.asdict(self.options),  # lm_weight 0 without an LM.
      compute_dtype=self._compute_dtype,
      trim_silence=bool(self.config.input.trim_silence),
      trim_top_db=(
        float(self.config.input.trim_top_db)
        if self.config.input.trim_silence
        else None
      ),
      no_speech_units_per_second=(
        self.no_speech_units_per_second if no_speech_rule else None
      ),
      no_speech_short_units=(
        self.no_speech_short_units if no_speech_rule else None
      ),
    )

  @property
  def beam_size(self) -> int:
    return self.options.beam_size

  @property
  def ctc_mode(self) -> str:
    return self.options.ctc_mode

  @property
  def ctc_weight(self) -> float:
    return self.options.ctc_weight

  # -------------------------------------------------------- audio input --

  @property
  def sample_rate(self) -> int:
    return int(self.config.features.sample_rate)

  def load(
    self,
    item: AudioInput,
    sample_rate: int | None = None,
    name: str | None = None,
  ) -> np.ndarray:
    """Reads a file or converts an array to the model's int16 mono samples.

    Conversions that change the signal (clipping, int16-scale floats, a
    container in a .pcm file...) are reported as `audio.AudioWarning`s.

    Args:
      item: an audio file path, or samples shaped [N], [N, channels] or
        [channels, N] (at most `audio.MAX_CHANNELS`): int16, or float in
        [-1, 1].
      sample_rate: rate of an array input in Hz (default: the model's).
      name: how messages refer to an array input (default 'array').

    Raises:
      audio.AudioError: the file cannot be read, or the array has an
        ambiguous shape, a wrong dtype or non-finite samples.
    """
    if isinstance(item, (str, os.PathLike)):
      return audio.read_audio(item, self.sample_rate)
    name = name or 'array'
    return audio.to_mono(
      audio.channels_last(np.asarray(item), name),
      sample_rate or self.sample_rate,
      self.sample_rate,
      name=name,
    )

  def prepare(self, samples_N: np.ndarray, name: str) -> np.ndarray:
    """The samples `prepare_span` keeps."""
    return self.prepare_span(samples_N, name)[0]

  def prepare_span(
    self, samples_N: np.ndarray, name: str
  ) -> tuple[np.ndarray, int]:
    """The model's input for a signal: trimmed as training trims, with the
    margins trimming leaves; rejects silent or too short input.

    Returns `(samples, first)`: `first` is the input index of the first
    sample, negative when background was put in front; it places
    timestamps on the input's time line (`shifted`).

    Silence is judged on the mean-removed signal (`audio.is_silent`), so
    a constant offset is silent too. Trimming removes only leading and
    trailing silence (`audio.trim_silence`) and warns (`AudioWarning`)
    when it removes more than half of the input. Where what is kept
    reaches the input's first or last sample (speech from the first
    sample, or no trimming), the input's background goes around it
    (`audio.add_margins`): every training utterance has some before and
    after its speech once trimmed, and a model never shown speech at its
    first frame misreads it (with the demo model, the CER of espeak-ng
    sentences fell from 37% without lead-in to 11%; README).

    Raises:
      audio.AudioError: silence, or fewer samples than one encoder frame
        needs (`min_samples`) before or after trimming (naming `name`).
    """
    if audio.is_silent(samples_N):
      raise audio.AudioError(
        f'{name}: audio is silent (its peak, mean removed, is below '
        f'{audio.SILENCE_PEAK_DBFS:.0f} dBFS)'
      )
    self._check_length(samples_N, name, '')
    inp = self.config.input
    start, end = 0, samples_N.size
    if inp.trim_silence:
      start, end = audio.trim_bounds(samples_N, inp.trim_top_db)
      if end == start:
        raise audio.AudioError(
          f'{name}: nothing left after trimming silence (top_db '
          f'{inp.trim_top_db})'
        )
      self._check_length(samples_N[start:end], name, ' after trimming silence')
      if end - start < samples_N.size / 2:
        rate = self.sample_rate
        warnings.warn(
          f'{name}: trimming silence kept {(end - start) / rate:.2f} s of '
          f'{samples_N.size / rate:.2f} s',
          audio.AudioWarning,
          stacklevel=2,
        )
    kept_N, lead = audio.add_margins(samples_N, start, end)
    return kept_N, start - lead

  def _check_length(self, samples_N: np.ndarray, name: str, when: str):
    if samples_N.size < self.min_samples:
      rate = self.sample_rate
      raise audio.AudioError(
        f'{name}: {1000 * samples_N.size / rate:.0f} ms of audio{when}, '
        f'shorter than the {1000 * self.min_samples / rate:.0f} ms one '
        'encoder frame needs'
      )

  # ----------------------------------------------------------- decoding --

  def transcribe(
    self,
    inputs: Sequence[AudioInput],
    *,
    sample_rate: int | None = None,
    nbest: bool = False,
    timestamps: bool = False,
  ) -> list[str] | list[Hypothesis] | list[list[Hypothesis]]:
    """Transcribes files and/or sample arrays.

    Args:
      inputs: audio file paths (WAV, FLAC, PCM, ... any rate, mono or
        stereo) and/or sample arrays, in any mix.
      sample_rate: rate of the array inputs in Hz (default: the model's).
      nbest: return each input's n-best list instead of its best text.
      timestamps: time the best hypothesis' words (`Hypothesis.words`, in
        seconds from the input's first sample) by CTC forced alignment; a
        model with a CTC head only.

    Returns:
      One text per input; with `timestamps`, one best `Hypothesis` per
      input; with `nbest`, one list of `Hypothesis` per input, best first;
      in input order. An input the no-speech rule refuses (`no_speech`:
      noise, a tone, music) gets '' (an empty list with `nbest`) and an
      `audio.AudioWarning` naming it and saying why.

    Raises:
      audio.AudioError: an input is unreadable or silent (naming it).
      ValueError: timestamps of a model without a CTC head.
    """
    if isinstance(inputs, (str, os.PathLike, np.ndarray)):
      raise TypeError('transcribe takes a sequence of inputs; wrap it in [ ]')

    offsets, long, names = {}, {}, {}

    def prepared():  # Read lazily: only a few batches are held at once.
      for i, item in enumerate(inputs):
        path = isinstance(item, (str, os.PathLike))
        name = names[i] = os.fspath(item) if path else f'array {i}'
        input_N = self.load(item, sample_rate, name)
        samples_N, first = self.prepare_span(input_N, name)
        offsets[i] = first, (0, input_N.size)
        if self.is_long(samples_N.size):
          long[i] = (samples_N, name)
          continue
        yield i, samples_N

    results: list[Any] = [None] * len(inputs)
    for i, hyps in self.decode_stream(prepared(), timestamps=timestamps):
      if isinstance(hyps, no_speech.NoSpeech):
        warnings.warn(
          f'{names[i]}: {hyps.reason}', audio.AudioWarning, stacklevel=2
        )
        results[i] = []
        continue
      results[i] = [self.shifted(h, *offsets[i]) for h in hyps]
    for i, (samples_N, name) in long.items():
      segments = self.transcribe_long(samples_N, timestamps=timestamps)
      self._warn_long(name, samples_N.size, len(segments))
      if not segments:
        warnings.warn(
          f'{name}: no speech found in any segment',
          audio.AudioWarning,
          stacklevel=2,
        )
        results[i] = []
        continue
      joined = Hypothesis(
        ' '.join(seg.text for seg in segments if seg.text),
        sum(seg.score for seg in segments),
        sum((seg.words for seg in segments), ()) if timestamps else None,
      )
      results[i] = [self.shifted(joined, *offsets[i])]
    if nbest:
      return results
    if timestamps:
      return [
        hyps[0] if hyps else Hypothesis('', -math.inf, ()) for hyps in results
      ]
    return [hyps[0].text if hyps else '' for hyps in results]

  def decode_stream(
    self,
    utterances: Iterable[tuple[Any, np.ndarray]],
    timestamps: bool = False,
    max_wait: int | None = None,
  ) -> Iterator[tuple[Any, list[Hypothesis]]]:
    """Decodes `(key, samples)` pairs as they come; yields `(key, n-best)`.

    Utterances wait in their length bucket until it holds `batch_size`
    (or, with `max_wait`, until they have waited that long); the rest are
    decoded at the end. Results therefore come in batch order, not input
    order. One batch is kept in flight: the next one is read and
    dispatched while the accelerator works on it.

    Args:
      utterances: keys (anything) with `prepare`d int16 samples.
      timestamps: time the best hypothesis' words (`Hypothesis.words`).
      max_wait: a bucket is decoded, full or not, once its first
        utterance has waited while this many later ones were read: this
        bounds how far behind the input a result can come (a rare length
        bucket would otherwise hold its first utterance to the end of the
        stream); None: only full buckets are decoded before the end.

    Yields:
      `(key, n-best list)`, or `(key, no_speech.NoSpeech)` for an
      utterance the no-speech rule refuses (`detects_no_speech`).
    """
    if timestamps and not self.has_ctc_head:
      raise ValueError(
        'timestamps come from the CTC head; this LAS has none '
        '(config.model.ctc_weight was 0)'
      )
    pending: dict[int, list[tuple[Any, np.ndarray]]] = collections.defaultdict(
      list
    )
    # Bucket -> how many utterances had been read when its first came.
    first_read: dict[int, int] = {}
    in_flight = None
    for read, (key, samples_N) in enumerate(utterances, start=1):
      padded = self.padded_length(samples_N.size)
      if padded not in pending:
        first_read[padded] = read
      pending[padded].append((key, samples_N))
      due = [
        p
        for p in pending
        if len(pending[p]) == self.batch_size
        or (max_wait is not None and read - first_read[p] >= max_wait)
      ]
      for p in sorted(due, key=first_read.__getitem__):
        launched = self._launch(pending.pop(p), p, timestamps)
        if in_flight is not None:
          yield from self._finish(*in_flight)
        in_flight = launched
    for padded in sorted(pending):
      launched = self._launch(pending[padded], padded, timestamps)
      if in_flight is not None:
        yield from self._finish(*in_flight)
      in_flight = launched
    if in_flight is not None:
      yield from self._finish(*in_flight)

  @property
  def max_seconds(self) -> float:
    """The largest audio bucket, the longest input decoded in one pass."""
    return self._buckets[-1] / self.sample_rate

  def is_long(self, num_samples: int) -> bool:
    """Longer than the largest audio bucket: decoded as segments."""
    return num_samples > self._buckets[-1]

  def _warn_long(self, name: str, num_samples: int, segments: int) -> None:
    warnings.warn(
      f'{name}: {num_samples / self.sample_rate:.1f} s, longer than the '
      f'longest audio the model decodes in one pass ({self.max_seconds:g} '
      f's): decoded as {segments} segments split at pauses (long-form)',
      audio.AudioWarning,
      stacklevel=3,
    )

  def transcribe_long(
    self,
    item: AudioInput,
    *,
    sample_rate: int | None = None,
    timestamps: bool = False,
    block_seconds: float = 60.0,
  ) -> list[long_form.Segment]:
    """Transcribes a recording of any length as timed segments.

    The recording is read in blocks (a file is never loaded whole), split
    into speech regions at pauses, none longer than `max_seconds`
    (`long_form`), and the regions are decoded in bucketed batches.

    Args:
      item: an audio file path, or samples (see `load`).
      sample_rate: rate of an array input in Hz (default: the model's).
      timestamps: time each segment's words too (`Segment.words`).
      block_seconds: seconds read at a time.

    Returns:
      The segments in time order, with start and end seconds from the
      recording's first sample; regions without speech (too short or
      silent once trimmed, or refused by the no-speech rule: each of those
      with an `audio.AudioWarning` naming its times) are left out.

    Raises:
      audio.AudioError: the file cannot be read (naming it).
    """
    rate = self.sample_rate
    if isinstance(item, (str, os.PathLike)):
      name = os.fspath(item)

      def blocks():
        return audio.read_blocks(item, rate, block_seconds=block_seconds)

    else:
      name = 'array'
      samples_N = self.load(item, sample_rate, name)
      step = int(block_seconds * rate)

      def blocks():
        return (samples_N[i : i + step] for i in range(0, samples_N.size, step))

    splitter = long_form.Splitter(rate, max_seconds=self.max_seconds)
    regions = splitter.regions(blocks(), splitter.loudest(blocks()))
    spans = {}

    def prepared():
      for i, (first, region_N) in enumerate(regions):
        try:
          with warnings.catch_warnings():
            warnings.simplefilter('ignore', audio.AudioWarning)
            kept_N, offset = self.prepare_span(region_N, name)
        except audio.AudioError:
          continue  # A click or a breath: nothing to decode.
        # The kept samples on the recording's time line, margins excluded.
        end = first + region_N.size
        spans[i] = (
          first + offset,
          (
            max(first, first + offset),
            min(end, first + offset + kept_N.size),
          ),
        )
        yield i, kept_N

    segments = []
    for i, hyps in self.decode_stream(prepared(), timestamps=timestamps):
      first, (start, end) = spans[i]
      if isinstance(hyps, no_speech.NoSpeech):
        # Left out, but said: a short word between sentences can be refused.
        warnings.warn(
          f'{name}: the region at {start / rate:.2f}-{end / rate:.2f} s is '
          f'left out: {hyps.reason}',
          audio.AudioWarning,
          stacklevel=2,
        )
        continue
      if not hyps:
        continue
      best = self.shifted(hyps[0], first, (start, end))
      segments.append(
        long_form.Segment(
          round(start / rate, 3),
          round(end / rate, 3),
          best.text,
          best.score,
          best.words,
        )
      )
    return sorted(segments, key=lambda seg: seg.start)

  def shifted(
    self,
    hyp: Hypothesis,
    samples: int,
    within: tuple[int, int] | None = None,
  ) -> Hypothesis:
    """`hyp` with its word times moved `samples` later and kept `within`.

    Args:
      hyp: times on the model input's time line.
      samples: where the model input starts on the input's time line
        (`prepare_span`'s `first`: a trim's offset, negative after a
        margin put in front).
      within: (first, end) samples of the input the times are clipped to:
        a word the alignment starts or ends in a margin added by
        `prepare_span` is put at the input's edge. None: no clipping.
    """
    if not hyp.words or not (samples or within):
      return hyp
    moved = functools.partial(self._moved, samples=samples, within=within)
    return hyp._replace(
      words=tuple(
        alignment.Span(w.text, moved(w.start), moved(w.end)) for w in hyp.words
      )
    )

  def shifted_segment(
    self,
    segment: long_form.Segment,
    samples: int,
    within: tuple[int, int] | None = None,
  ) -> long_form.Segment:
    """`segment` moved `samples` later and kept `within`, its words too
    (see `shifted`)."""
    if not (samples or within):
      return segment
    moved = functools.partial(self._moved, samples=samples, within=within)
    words = self.shifted(
      Hypothesis('', 0.0, segment.words), samples, within
    ).words
    return dataclasses.replace(
      segment, start=moved(segment.start), end=moved(segment.end), words=words
    )

  def _moved(
    self, seconds: float, samples: int, within: tuple[int, int] | None
  ) -> float:
    """A time `samples` later, clipped to `within` (`shifted`), rounded."""
    t = seconds * self.sample_rate + samples
    if within is not None:
      t = min(max(t, within[0]), within[1])
    return round(t / self.sample_rate, 3)

  def padded_length(self, num_samples: int) -> int:
    """Samples an utterance is padded to: its audio bucket.

    Beyond the largest bucket, lengths round up to a multiple of it, so
    long recordings add few compiled shapes.
    """
    i = int(np.searchsorted(self._buckets, num_samples))
    if i < len(self._buckets):
      return self._buckets[i]
    largest = self._buckets[-1]
    return -(-num_samples // largest) * largest

  def max_units(self, seconds: float) -> int | None:
    """Output units (EOS excluded) the LAS search allows for `seconds` of
    audio, or None when unlimited (`SearchOptions.max_units`)."""
    return self.options.max_units(seconds)

  def _rows(self, n: int) -> int:
    """Rows of a batch of n utterances: the next power of two, capped."""
    return min(self.batch_size, 1 << max(0, n - 1).bit_length())

  @property
  def detects_no_speech(self) -> bool:
    """Inputs without speech are refused (`no_speech`): the model has a CTC
    head and `no_speech_units_per_second` is above 0."""
    return self.has_ctc_head and self.no_speech_units_per_second > 0

  @property
  def has_ctc_head(self) -> bool:
    """The model has a CTC head (DeepSpeech2, or joint CTC-attention LAS)."""
    model = self.config.model
    return model.name == 'deepspeech2' or model.ctc_weight > 0

  def _launch(
    self,
    batch: list[tuple[Any, np.ndarray]],
    padded: int,
    timestamps: bool,
  ):
    rows = self._rows(len(batch))
    audio_BxN = np.zeros((rows, padded), np.int16)
    lengths_B = np.zeros((rows,), np.int32)  # 0 marks a padding row.
    for b, (_, samples_N) in enumerate(batch):
      audio_BxN[b, : samples_N.size] = samples_N
      lengths_B[b] = samples_N.size
    program = self._program(rows, padded, timestamps)
    outputs = program(self._state, audio_BxN, lengths_B)
    return [key for key, _ in batch], outputs, timestamps

  def _program(self, rows: int, padded: int, timestamps: bool):
    """The compiled program for one batch shape (compiled once; from its
    exported form on disk when the compilation cache is on, `aot`)."""
    key = rows, padded, timestamps
    if key not in self._compiled:
      start = time.perf_counter()
      lm = self.language_model
      self._compiled[key] = aot.compile(
        functools.partial(self._decode_fn, timestamps=timestamps),
        (
          self._state,
          jax.ShapeDtypeStruct((rows, padded), jnp.int16),
          jax.ShapeDtypeStruct((rows,), jnp.int32),
        ),
        name=f'decode {rows}x{padded}',
        # All `_decode_fn` closes over besides the state.
        key=dict(
          program='Recognizer._decode_fn',
          config=self.config.to_dict(),
          lm_config=None if lm is None else lm.config.to_dict(),
          compute_dtype=self._compute_dtype,
          options=dataclasses.asdict(self.options),
          timestamps=timestamps,
          # The no-speech rule's outputs (`batch_search.search_batch`).
          no_speech_cues=self.detects_no_speech,
        ),
      )
      self.compile_seconds += time.perf_counter() - start
    return self._compiled[key]

  def _finish(
    self, keys: list[Any], outputs, timestamps: bool
  ) -> Iterator[tuple[Any, list]]:
    out = batch_search.finish_on_host(outputs, len(keys), self.options)
    for b, key in enumerate(keys):
      if self.detects_no_speech:
        refused = no_speech.judge(
          float(out['confident_units'][b]),
          None
          if self.options.ctc_mode == 'ctc'
          else no_speech.disagreement(
            out['best_path'][b, : out['best_path_lengths'][b]],
            _units(out, b, 0),
          ),
          self.no_speech_units_per_second,
          self.no_speech_short_units,
        )
        if refused is not None:
          yield key, refused
          continue
      hyps = []
      for k, score in enumerate(out['scores'][b]):
        if not np.isfinite(score):
          continue
        ids = out['tokens'][b, k, : out['lengths'][b, k]]
        words = self._words(out, b, ids) if timestamps and k == 0 else None
        hyps.append(Hypothesis(self.vocab.transcript(ids), float(score), words))
      yield key, hyps

  def _words(self, out, b: int, ids: np.ndarray):
    """Word times of row b's best hypothesis (`Hypothesis.words`): the
    forced alignment of the units its transcript spells."""
    n = ids.size - int(ids.size > 0 and ids[-1] == Vocabulary.EOS_ID)
    kept = alignment.transcript_units(ids[:n], self.vocab)
    frames = out['enc_lengths'][b]
    timed = alignment.align_columns(
      out['unit_log_probs'][b, :frames][:, kept],
      out['blank_log_probs'][b, :frames],
      ids[kept],
    )
    if timed is None:
      return None
    return tuple(
      alignment.word_spans(ids[kept], timed, self.vocab, self.frame_seconds)
    )

  def _decode_fn(self, state, audio_BxN, lengths_B, *, timestamps):
    """`batch_search.search_batch` of the restored models; jitted."""
    asr_state, lm_state = state
    lm = None
    if lm_state is not None:
      lm = nnx.merge(self._lm_graphdef, lm_state)
    return batch_search.search_batch(
      nnx.merge(self._graphdef, asr_state),
      lm,
      audio_BxN,
      lengths_B,
      self.config,
      self.options,
      timestamps,
      no_speech_cues=self.detects_no_speech,
    )


def _units(out: dict[str, np.ndarray], b: int, k: int) -> np.ndarray:
  """Unit ids of row b's k-th hypothesis, end of sentence excluded (none
  for an empty slot)."""
  if not np.isfinite(out['scores'][b, k]):
    return np.zeros(0, np.int32)
  ids = out['tokens'][b, k, : out['lengths'][b, k]]
  return ids[ids != Vocabulary.EOS_ID]


def min_samples(config: ml_collections.ConfigDict) -> int:
  """Fewest samples that give one encoder frame (and one STFT window).

  VGG (time / 4) on a 10 ms hop needs 4 feature frames, 30 ms; each
  pyramid layer doubles that; DeepSpeech2 needs one frame. Never less than
  one analysis window (`features.frame_length_ms`).
  """
  n_fft, hop = features.stft_params(config.features)
  frames = 1  # features.frame_lengths: 1 + n // hop frames for n samples.
  while models.encoder_lengths(config.model, frames) < 1:
    frames += 1
  return max(n_fft, (frames - 1) * hop)
