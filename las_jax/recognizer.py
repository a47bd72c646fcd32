"""Load a trained model once, transcribe many utterances: `Recognizer`.

  rec = Recognizer.from_workdir('runs/kspon', which='best', beam_size=5)
  rec.transcribe(['a.wav', 'b.flac'])               # ['안녕하세요', ...]
  rec.transcribe([samples_N], sample_rate=44100, nbest=True)

Utterances are grouped by the input pipeline's audio length buckets and
padded to the bucket's length, with batches of a power-of-two number of
rows up to `batch_size`; each (rows, samples) shape is compiled once, ahead
of time, and cached, so a stream of any lengths compiles a handful of
programs. One compiled program does the whole path on the accelerator:
log-mel features, encoder, then greedy or beam search with the speller's
single step (LAS, optionally rescored with the CTC head), or the best CTC
path (DeepSpeech2). DeepSpeech2's prefix beam search runs on the host
(`ctc.ctc_prefix_beam_search`) on the log-probabilities the program
returns.

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
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from las_jax import audio, ctc, decoding, features, input_pipeline, restore
from las_jax.models import execution
from las_jax.text import Vocabulary

AudioInput = str | os.PathLike | np.ndarray


class Hypothesis(NamedTuple):
  """One entry of an n-best list (a `(text, score)` tuple)."""

  text: str
  # Log-probability: length-normalized for LAS beam search, the sum of token
  # log-probs for greedy search, log p(y|x) for CTC prefix beam search,
  # the best path's log-prob for CTC greedy; CTC-rescored when enabled.
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
    ctc_weight: float | None = None,
    length_penalty: float | None = None,
    max_tokens_per_second: float | None = None,
    compute_dtype: str | None = None,
  ):
    """Wraps a model for decoding; options default to `config.decode`.

    Args:
      model: LAS or DeepSpeech2 built by `models.build_model`, restored.
      config: the run's configuration.
      vocab: the run's vocabulary.
      beam_size: beam width; 1 is greedy search.
      batch_size: most utterances decoded together.
      ctc_weight: joint CTC-attention rescoring weight (LAS with a CTC
        head only); None uses `config.decode.ctc_weight`, whose None means
        the run's joint training weight `model.ctc_weight`.
      length_penalty: beam search length penalty exponent (LAS).
      max_tokens_per_second: LAS token limit per second of audio, see
        `max_tokens`.
      compute_dtype: 'float32' or 'bfloat16' (`models.execution`); None
        uses `config.decode.compute_dtype`, whose None means the run's
        `train.compute_dtype`. Sets the model's dtype in place.

    Raises:
      ValueError: an option is out of range, or CTC rescoring was asked of
        a model without a CTC head.
    """
    dcfg = config.decode
    self.config = config
    self.vocab = vocab
    self.beam_size = int(dcfg.beam_size if beam_size is None else beam_size)
    self.batch_size = int(dcfg.batch_size if batch_size is None else batch_size)
    self.length_penalty = float(
      dcfg.length_penalty if length_penalty is None else length_penalty
    )
    self.max_tokens_per_second = float(
      dcfg.max_tokens_per_second
      if max_tokens_per_second is None
      else max_tokens_per_second
    )
    if self.beam_size < 1:
      raise ValueError(f'beam_size must be >= 1, got {self.beam_size}')
    if self.batch_size < 1:
      raise ValueError(f'batch_size must be >= 1, got {self.batch_size}')
    self.is_ctc_model = config.model.name == 'deepspeech2'
    execution.set_compute_dtype(
      model,
      compute_dtype or dcfg.compute_dtype or config.train.compute_dtype,
      'compute_dtype',
    )
    self._graphdef, self._state = nnx.split(model)
    # Padded audio lengths in samples, the training pipeline's buckets.
    self._buckets = input_pipeline.buckets_from_config(config).audio
    self.has_ctc_head = self.is_ctc_model or config.model.ctc_weight > 0
    self.ctc_weight = self._resolve_ctc_weight(ctc_weight)
    self._compiled: dict[tuple[int, int], Any] = {}
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
      **options: `Recognizer` options (beam_size, batch_size, ...).
    """
    run = restore.load_run(workdir, which=which, step=step)
    return cls(run.model, run.config, run.vocab, **options)

  @classmethod
  def from_checkpoint(
    cls, path: str | os.PathLike, **options: Any
  ) -> Recognizer:
    """Restores one checkpoint step directory (e.g. run/checkpoints/2000).

    The run's config.json and vocab.txt are found in the nearest directory
    above `path` that holds them.
    """
    run = restore.load_checkpoint(path)
    return cls(run.model, run.config, run.vocab, **options)

  def _resolve_ctc_weight(self, ctc_weight: float | None) -> float:
    if self.is_ctc_model:
      return 1.0
    weight = ctc_weight
    if weight is None:
      weight = self.config.decode.ctc_weight
    if weight is None:
      weight = self.config.model.ctc_weight if self.has_ctc_head else 0.0
    weight = float(weight)
    if not 0.0 <= weight <= 1.0:
      raise ValueError(f'ctc_weight must be in [0, 1], got {weight}')
    if weight > 0 and not self.has_ctc_head:
      raise ValueError(
        f'ctc_weight={weight} needs a model with a CTC head; this LAS has '
        'none (config.model.ctc_weight was 0)'
      )
    return weight

  # -------------------------------------------------------- audio input --

  @property
  def sample_rate(self) -> int:
    return int(self.config.features.sample_rate)

  def load(
    self, item: AudioInput, sample_rate: int | None = None
  ) -> np.ndarray:
    """Reads a file or converts an array to the model's int16 mono samples.

    Args:
      item: an audio file path, or samples shaped [N] or [N, channels]:
        int16, or float in [-1, 1].
      sample_rate: rate of an array input in Hz (default: the model's).

    Raises:
      audio.AudioError: the file cannot be read.
      ValueError: the array has the wrong shape or dtype.
    """
    if isinstance(item, (str, os.PathLike)):
      return audio.read_audio(item, self.sample_rate)
    return audio.to_mono(
      np.asarray(item), sample_rate or self.sample_rate, self.sample_rate
    )

  def prepare(self, samples_N: np.ndarray, name: str) -> np.ndarray:
    """Trims silence as training did; rejects silent input.

    Raises:
      audio.AudioError: nothing but silence (naming `name`).
    """
    if not np.any(samples_N):
      raise audio.AudioError(f'{name}: audio is silent (all samples zero)')
    inp = self.config.input
    if inp.trim_silence:
      samples_N = audio.trim_silence(samples_N, inp.trim_top_db)
      if samples_N.size == 0:
        raise audio.AudioError(
          f'{name}: nothing left after trimming silence (top_db '
          f'{inp.trim_top_db})'
        )
    return samples_N

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
        yield i, self.prepare(self.load(item, sample_rate), name)

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
    if self.is_ctc_model and self.beam_size > 1:
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

  def _decode_fn(self, state, audio_BxN, lengths_B):
    """Audio to fixed-shape n-best arrays (or CTC log-probs); jitted."""
    model = nnx.merge(self._graphdef, state)
    feats_BxTxF, flen_B = features.featurize(
      None, audio_BxN, lengths_B, self.config.features, False
    )
    enc = model.encode(feats_BxTxF, flen_B, train=False)
    if self.is_ctc_model:
      return self._ctc_search(enc.ctc_logits_BxSxV, enc.enc_lengths_B)
    return self._attention_search(model, enc, audio_BxN.shape[1], lengths_B)

  def _ctc_search(self, logits_BxSxV, lengths_B):
    log_probs_BxSxV = jax.nn.log_softmax(logits_BxSxV.astype(jnp.float32))
    if self.beam_size > 1:
      return log_probs_BxSxV, lengths_B  # Prefix search runs on the host.
    tokens_BxS, tok_lengths_B = ctc.ctc_greedy_decode(
      log_probs_BxSxV, lengths_B, Vocabulary.PAD_ID
    )
    valid_BxS = jnp.arange(logits_BxSxV.shape[1])[None] < lengths_B[:, None]
    path_B = jnp.sum(jnp.where(valid_BxS, log_probs_BxSxV.max(-1), 0.0), 1)
    return tokens_BxS[:, None], tok_lengths_B[:, None], path_B[:, None]

  def _attention_search(self, model, enc, padded, audio_lengths_B):
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
    k = self.beam_size
    init_carry, step_fn = model.decode_fns(enc.enc_BxSxH, enc_len_B)
    step_fn = _never_special(step_fn)
    if k == 1:
      r = decoding.greedy_search(
        step_fn, init_carry, b, max_len, max_lens_B=limits_B, **ids
      )
      nbest = decoding.NBest(
        r.tokens[:, None], r.lengths[:, None], r.scores[:, None]
      )
    else:
      nbest = decoding.beam_search(
        step_fn,
        init_carry,
        b,
        k,
        max_len,
        length_penalty_alpha=self.length_penalty,
        length_norm=self.config.decode.length_norm,
        max_lens_B=limits_B,
        **ids,
      )
    if self.ctc_weight > 0:
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


def _never_special(step_fn):
  """Forbids <pad> and <sos> as outputs (never training targets).

  Label smoothing gives them a little probability; emitted, they would
  decode to nothing and fill the n-best with duplicates. The masked
  log-probs stay <= 0, which beam search's stopping bound needs.
  """
  forbidden = jnp.array([Vocabulary.PAD_ID, Vocabulary.SOS_ID])

  def masked(token_N, carry):
    log_probs_NxV, carry = step_fn(token_N, carry)
    return log_probs_NxV.at[:, forbidden].set(-jnp.inf), carry

  return masked
