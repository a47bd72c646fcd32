"""Load a trained model once, transcribe many utterances: `Recognizer`.

  rec = Recognizer.from_workdir('runs/kspon', which='best', beam_size=5)
  rec.transcribe(['a.wav', 'b.flac'])               # ['안녕하세요', ...]
  rec.transcribe([samples_N], sample_rate=44100, nbest=True)

Utterances are grouped by the input pipeline's audio length buckets and
padded to the bucket's length, with batches of a power-of-two number of
rows up to `batch_size`; each (rows, samples) shape is compiled once, ahead
of time, and cached, so a stream of any lengths compiles a handful of
programs. One compiled program does the whole path on the accelerator:
log-mel features, encoder, then the search. LAS searches with its
speller's single step, fused with a language model's when one is given
(shallow fusion), and uses its CTC head as `ctc_mode` says:
- 'joint': one-pass joint CTC/attention beam search, CTC prefix scores of
  a pre-beam of candidates inside the search (`ctc_prefix_score`);
- 'rescore': attention beam search, then the n-best rescored with CTC;
- 'ctc': the CTC head alone, as DeepSpeech2 decodes: the best CTC path,
  or CTC prefix beam search (`ctc.ctc_prefix_beam_search`, on the host, on
  the log-probabilities the program returns);
- 'off': attention alone.

Decoding is padding- and batch-invariant: an utterance gets the same
hypotheses alone or batched with longer ones, because features, encoder
and attention mask every padded sample and frame, and `decoding` freezes
finished utterances.
"""

from __future__ import annotations

import collections
import math
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from las_jax import (
  audio,
  ctc,
  ctc_prefix_score,
  decoding,
  features,
  input_pipeline,
  models,
  pretrained,
  restore,
)
from las_jax.text import Vocabulary

AudioInput = str | os.PathLike | np.ndarray
# How LAS uses its CTC head (`config.decode.ctc_mode`).
CTC_MODES = ('joint', 'rescore', 'ctc', 'off')


class Hypothesis(NamedTuple):
  """One entry of an n-best list (a `(text, score)` tuple)."""

  text: str
  # Log-probability: for LAS the weighted sum of the attention, CTC prefix
  # and language model log-probabilities and the length bonus (beam
  # search: divided by the length penalty; 'rescore': rescored with CTC);
  # log p(y|x) for CTC prefix beam search; the best path's log-prob for
  # CTC greedy.
  score: float


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
        `max_tokens`.

    Raises:
      ValueError: an option is out of range, a CTC mode was asked of a
        model without a CTC head, or the language model's vocabulary is
        not this model's.
    """
    dcfg = config.decode
    self.config = config
    self.vocab = vocab

    def option(value, default):
      return default if value is None else value

    self.beam_size = int(option(beam_size, dcfg.beam_size))
    self.batch_size = int(option(batch_size, dcfg.batch_size))
    self.length_penalty = float(option(length_penalty, dcfg.length_penalty))
    self.length_bonus = float(option(length_bonus, dcfg.length_bonus))
    self.max_tokens_per_second = float(
      option(max_tokens_per_second, dcfg.max_tokens_per_second)
    )
    self.ctc_prebeam_ratio = float(
      option(ctc_prebeam_ratio, dcfg.ctc_prebeam_ratio)
    )
    if self.beam_size < 1:
      raise ValueError(f'beam_size must be >= 1, got {self.beam_size}')
    if self.batch_size < 1:
      raise ValueError(f'batch_size must be >= 1, got {self.batch_size}')
    if self.ctc_prebeam_ratio <= 0:
      raise ValueError(
        f'ctc_prebeam_ratio must be > 0, got {self.ctc_prebeam_ratio}'
      )
    self.is_ctc_model = config.model.name == 'deepspeech2'
    self.has_ctc_head = self.is_ctc_model or config.model.ctc_weight > 0
    self.ctc_mode = self._resolve_ctc_mode(option(ctc_mode, dcfg.ctc_mode))
    self.ctc_weight = self._resolve_ctc_weight(ctc_weight)
    self.lm_weight = float(option(lm_weight, dcfg.lm_weight))
    if self.lm_weight < 0:
      raise ValueError(f'lm_weight must be >= 0, got {self.lm_weight}')
    if language_model is not None and language_model.vocab != vocab:
      raise ValueError(
        f'the language model of {language_model.checkpoint} was trained on '
        f'another vocabulary ({len(language_model.vocab)} units) than this '
        f'model ({len(vocab)} units); train it with '
        "--config.data.vocab_from=<this model's run directory>"
      )
    self.language_model = language_model if self.lm_weight else None
    if self.language_model is not None and self.ctc_mode == 'ctc':
      raise ValueError(
        "shallow fusion needs a label-synchronous search: use ctc_mode 'joint'"
        ", 'rescore' or 'off' with a language model, or lm_weight=0"
      )
    self._graphdef, state = nnx.split(model)
    lm_graphdef, lm_state = (None, None)
    if self.language_model is not None:
      lm_graphdef, lm_state = nnx.split(self.language_model.model)
    self._lm_graphdef = lm_graphdef
    self._state = (state, lm_state)
    # Padded audio lengths in samples, the training pipeline's buckets.
    self._buckets = input_pipeline.buckets_from_config(config).audio
    self._compiled: dict[tuple[int, int], Any] = {}
    self.min_samples = min_samples(config)
    # Seconds spent compiling, so callers can report it apart from decoding.
    self.compile_seconds = 0.0

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
    return cls(run.model, run.config, run.vocab, **options)

  def _resolve_ctc_mode(self, mode: str | None) -> str:
    if self.is_ctc_model:
      if mode not in (None, 'ctc'):
        raise ValueError(
          f'ctc_mode={mode!r}: DeepSpeech2 has no attention decoder; it '
          "decodes with its CTC head only ('ctc')"
        )
      return 'ctc'
    if mode is None:
      return 'joint' if self.has_ctc_head else 'off'
    if mode not in CTC_MODES:
      raise ValueError(f'ctc_mode must be one of {CTC_MODES}, got {mode!r}')
    if mode != 'off' and not self.has_ctc_head:
      raise ValueError(
        f'ctc_mode={mode!r} needs a model with a CTC head; this LAS has '
        "none (config.model.ctc_weight was 0): use ctc_mode='off'"
      )
    return mode

  def _resolve_ctc_weight(self, ctc_weight: float | None) -> float:
    """lambda of 'joint' and 'rescore'; 1 for 'ctc', 0 for 'off'."""
    if ctc_weight and not self.has_ctc_head:
      raise ValueError(
        f'ctc_weight={ctc_weight} needs a model with a CTC head; this LAS '
        'has none (config.model.ctc_weight was 0)'
      )
    if self.ctc_mode in ('ctc', 'off'):
      return 1.0 if self.ctc_mode == 'ctc' else 0.0
    weight = ctc_weight
    if weight is None:
      weight = self.config.decode.ctc_weight
    if weight is None:
      weight = self.config.model.ctc_weight
    weight = float(weight)
    if weight == 0.0:
      self.ctc_mode = 'off'  # (1 - 0) * attention + 0 * CTC.
      return 0.0
    if not 0.0 < weight <= 1.0:
      raise ValueError(
        f'ctc_weight must be in (0, 1] for ctc_mode={self.ctc_mode!r}, got '
        f"{weight}; ctc_mode='off' decodes with attention alone"
      )
    return weight

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
    """Trims silence as training did; rejects silent or too short input.

    Silence is judged on the mean-removed signal (`audio.is_silent`), so
    a constant offset is silent too. Trimming removes only leading and
    trailing silence (`audio.trim_silence`) and warns (`AudioWarning`)
    when it removes more than half of the input.

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
    if inp.trim_silence:
      trimmed_N = audio.trim_silence(samples_N, inp.trim_top_db)
      if trimmed_N.size == 0:
        raise audio.AudioError(
          f'{name}: nothing left after trimming silence (top_db '
          f'{inp.trim_top_db})'
        )
      self._check_length(trimmed_N, name, ' after trimming silence')
      if trimmed_N.size < samples_N.size / 2:
        rate = self.sample_rate
        warnings.warn(
          f'{name}: trimming silence kept {trimmed_N.size / rate:.2f} s of '
          f'{samples_N.size / rate:.2f} s',
          audio.AudioWarning,
          stacklevel=2,
        )
      samples_N = trimmed_N
    return samples_N

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
  ) -> list[str] | list[list[Hypothesis]]:
    """Transcribes files and/or sample arrays.

    Args:
      inputs: audio file paths (WAV, FLAC, PCM, ... any rate, mono or
        stereo) and/or sample arrays, in any mix.
      sample_rate: rate of the array inputs in Hz (default: the model's).
      nbest: return each input's n-best list instead of its best text.

    Returns:
      One text per input, or one list of `(text, score)` per input, best
      first, in input order.

    Raises:
      audio.AudioError: an input is unreadable or silent (naming it).
    """
    if isinstance(inputs, (str, os.PathLike, np.ndarray)):
      raise TypeError('transcribe takes a sequence of inputs; wrap it in [ ]')

    def prepared():  # Read lazily: only a few batches are held at once.
      for i, item in enumerate(inputs):
        path = isinstance(item, (str, os.PathLike))
        name = os.fspath(item) if path else f'array {i}'
        yield i, self.prepare(self.load(item, sample_rate, name), name)

    results: list[Any] = [None] * len(inputs)
    for i, hyps in self.decode_stream(prepared()):
      results[i] = hyps
    return results if nbest else [hyps[0].text for hyps in results]

  def decode_stream(
    self, utterances: Iterable[tuple[Any, np.ndarray]]
  ) -> Iterator[tuple[Any, list[Hypothesis]]]:
    """Decodes `(key, samples)` pairs as they come; yields `(key, n-best)`.

    Utterances wait in their length bucket until it holds `batch_size`;
    the rest are decoded at the end. Results therefore come in batch order,
    not input order. One batch is kept in flight: the next one is read and
    dispatched while the accelerator works on it.

    Args:
      utterances: keys (anything) with `prepare`d int16 samples.
    """
    pending: dict[int, list[tuple[Any, np.ndarray]]] = collections.defaultdict(
      list
    )
    in_flight = None
    for key, samples_N in utterances:
      padded = self.padded_length(samples_N.size)
      pending[padded].append((key, samples_N))
      if len(pending[padded]) == self.batch_size:
        launched = self._launch(pending.pop(padded), padded)
        if in_flight is not None:
          yield from self._finish(*in_flight)
        in_flight = launched
    for padded in sorted(pending):
      launched = self._launch(pending[padded], padded)
      if in_flight is not None:
        yield from self._finish(*in_flight)
      in_flight = launched
    if in_flight is not None:
      yield from self._finish(*in_flight)

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

  def max_tokens(self, num_samples: int) -> int:
    """LAS output limit (EOS included) for `num_samples` of audio.

    `max_tokens_per_second` times the duration, plus one for EOS; without
    a rate, the largest token bucket. Per padded shape, it sets the width
    of the search state, so short buckets search small arrays.
    """
    rate = self.max_tokens_per_second
    if rate <= 0:
      return max(self.config.input.token_buckets)
    return math.ceil(rate * num_samples / self.sample_rate) + 1

  def max_units(self, seconds: float) -> int | None:
    """Output units (EOS excluded) the LAS search allows for `seconds` of
    audio, or None when unlimited (CTC, or no rate)."""
    if self.ctc_mode == 'ctc' or self.max_tokens_per_second <= 0:
      return None
    return math.ceil(self.max_tokens_per_second * seconds)

  def _rows(self, n: int) -> int:
    """Rows of a batch of n utterances: the next power of two, capped."""
    return min(self.batch_size, 1 << max(0, n - 1).bit_length())

  def _launch(self, batch: list[tuple[Any, np.ndarray]], padded: int):
    rows = self._rows(len(batch))
    audio_BxN = np.zeros((rows, padded), np.int16)
    lengths_B = np.zeros((rows,), np.int32)  # 0 marks a padding row.
    for b, (_, samples_N) in enumerate(batch):
      audio_BxN[b, : samples_N.size] = samples_N
      lengths_B[b] = samples_N.size
    outputs = self._program(rows, padded)(self._state, audio_BxN, lengths_B)
    return [key for key, _ in batch], outputs

  def _program(self, rows: int, padded: int):
    """The compiled decode program for one batch shape (compiled once)."""
    if (rows, padded) not in self._compiled:
      start = time.perf_counter()
      self._compiled[rows, padded] = (
        jax.jit(self._decode_fn)
        .lower(
          self._state,
          jax.ShapeDtypeStruct((rows, padded), jnp.int16),
          jax.ShapeDtypeStruct((rows,), jnp.int32),
        )
        .compile()
      )
      self.compile_seconds += time.perf_counter() - start
    return self._compiled[rows, padded]

  def _finish(self, keys: list[Any], outputs) -> Iterator[tuple[Any, list]]:
    outputs = jax.device_get(outputs)
    if self._host_prefix_search:
      log_probs_BxSxV, lengths_B = outputs
      tokens, lengths, scores = ctc.ctc_prefix_beam_search(
        log_probs_BxSxV[: len(keys)],
        lengths_B[: len(keys)],
        self.beam_size,
        blank_id=Vocabulary.PAD_ID,
      )
    else:
      tokens, lengths, scores = outputs
    for b, key in enumerate(keys):
      yield (
        key,
        [
          Hypothesis(self.vocab.decode(tokens[b, k, : lengths[b, k]]), float(s))
          for k, s in enumerate(scores[b])
          if np.isfinite(s)
        ],
      )

  @property
  def _host_prefix_search(self) -> bool:
    """CTC prefix beam search runs on the host, after the program."""
    return self.ctc_mode == 'ctc' and self.beam_size > 1

  def _decode_fn(self, state, audio_BxN, lengths_B):
    """Audio to fixed-shape n-best arrays (or CTC log-probs); jitted."""
    asr_state, lm_state = state
    model = nnx.merge(self._graphdef, asr_state)
    feats_BxTxF, flen_B = features.featurize(
      None, audio_BxN, lengths_B, self.config.features, False
    )
    enc = model.encode(feats_BxTxF, flen_B, train=False)
    if self.ctc_mode == 'ctc':
      return self._ctc_search(enc.ctc_logits_BxSxV, enc.enc_lengths_B)
    lm = None
    if lm_state is not None:
      lm = nnx.merge(self._lm_graphdef, lm_state)
    return self._label_search(model, lm, enc, audio_BxN.shape[1], lengths_B)

  def _ctc_search(self, logits_BxSxV, lengths_B):
    log_probs_BxSxV = jax.nn.log_softmax(logits_BxSxV.astype(jnp.float32))
    if self._host_prefix_search:
      return log_probs_BxSxV, lengths_B
    tokens_BxS, tok_lengths_B = ctc.ctc_greedy_decode(
      log_probs_BxSxV, lengths_B, Vocabulary.PAD_ID
    )
    valid_BxS = jnp.arange(logits_BxSxV.shape[1])[None] < lengths_B[:, None]
    path_B = jnp.sum(jnp.where(valid_BxS, log_probs_BxSxV.max(-1), 0.0), 1)
    return tokens_BxS[:, None], tok_lengths_B[:, None], path_B[:, None]

  def _label_search(self, model, lm, enc, padded, audio_lengths_B):
    """Greedy or beam search over output units ('joint', 'rescore', 'off')."""
    enc_len_B = enc.enc_lengths_B
    b = enc_len_B.shape[0]
    max_len = self.max_tokens(padded)
    # In seconds of audio, not encoder frames: the frame rate depends on
    # the extractor and pyramid layers, speech rate does not.
    seconds_B = audio_lengths_B.astype(jnp.float32) / self.sample_rate
    limits_B = decoding.max_lens_from_encoder(
      seconds_B, self.max_tokens_per_second, max_len
    )
    ids = dict(sos_id=Vocabulary.SOS_ID, eos_id=Vocabulary.EOS_ID)
    joint = self.ctc_mode == 'joint'
    att_carry, att_step = model.decode_fns(enc.enc_BxSxH, enc_len_B)
    scorers = [(1.0 - self.ctc_weight if joint else 1.0, att_step)]
    carries = [att_carry]
    if lm is not None:
      lm_carry, lm_step = lm.decode_fns(b)
      scorers.append((self.lm_weight, lm_step))
      carries.append(lm_carry)
    # <pad> (the CTC blank) and <sos> are never training targets. Label
    # smoothing gives them a little probability; emitted, they would decode
    # to nothing and fill the n-best with duplicates.
    step_fn = decoding.weighted_sum(
      scorers, len(self.vocab), never_ids=(Vocabulary.PAD_ID, Vocabulary.SOS_ID)
    )
    prefix_scorer = None
    if joint:
      prefix_scorer = ctc_prefix_score.CTCPrefixScorer.from_logits(
        enc.ctc_logits_BxSxV,
        enc_len_B,
        weight=self.ctc_weight,
        pre_beam_ratio=self.ctc_prebeam_ratio,
        eos_id=Vocabulary.EOS_ID,
        blank_id=Vocabulary.PAD_ID,
      )
    k = self.beam_size
    if k == 1 and prefix_scorer is None:
      r = decoding.greedy_search(
        step_fn, tuple(carries), b, max_len, max_lens_B=limits_B, **ids
      )
      nbest = decoding.NBest(
        r.tokens[:, None], r.lengths[:, None], r.scores[:, None]
      )
    else:
      nbest = decoding.beam_search(
        step_fn,
        tuple(carries),
        b,
        k,
        max_len,
        length_penalty_alpha=self.length_penalty,
        length_norm=self.config.decode.length_norm,
        max_lens_B=limits_B,
        prefix_scorer=prefix_scorer,
        length_bonus=self.length_bonus,
        **ids,
      )
    if self.ctc_mode == 'rescore':
      nbest = decoding.rescore_with_ctc(
        nbest.tokens,
        nbest.lengths,
        nbest.scores,
        enc.ctc_logits_BxSxV,
        enc_len_B,
        self.ctc_weight,
        Vocabulary.EOS_ID,
        blank_id=Vocabulary.PAD_ID,
      )
    return nbest.tokens, nbest.lengths, nbest.scores


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
