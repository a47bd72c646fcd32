"""A padded audio batch to n-best arrays: features, encoder, search.

`search_batch` is the one jit-able function both users of a model's search
call: `Recognizer` (decode.py, the Python API) compiles it once per batch
shape, and training's dev evaluation runs it greedily (`steps`), so the dev
CER is measured by the same search, with the same special-token mask and
per-utterance length limits, as decoding.

LAS searches with its speller's single step, fused with a language model's
when one is given (shallow fusion, `search.weighted_sum`), and uses its CTC
head as `SearchOptions.ctc_mode` says:
- 'joint': one-pass joint CTC/attention beam search, CTC prefix scores of
  a pre-beam of candidates inside the search (`ctc_prefix_score`);
- 'rescore': attention beam search, then the n-best rescored with CTC;
- 'ctc': the CTC head alone, as DeepSpeech2 decodes: the best CTC path,
  or CTC prefix beam search (`ctc.ctc_prefix_beam_search`, on the host, on
  the log-probabilities `search_batch` returns; `finish_on_host`); with a
  language model, the label-synchronous beam search led by CTC prefix
  scores of every unit, fused with the LM (ESPnet's decoding of a CTC
  model with `ctc_weight=1` and an LM);
- 'off': attention alone.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from las_jax import ctc, features
from las_jax.inference import ctc_prefix_score, no_speech, search
from las_jax.text import Vocabulary

# How LAS uses its CTC head (`config.decode.ctc_mode`).
CTC_MODES = ('joint', 'rescore', 'ctc', 'off')


@dataclasses.dataclass(frozen=True)
class SearchOptions:
  """What `search_batch` does; build with `resolve`. Static under jit.

  Attributes:
    beam_size: beam width; 1 is greedy search.
    ctc_mode: 'joint', 'rescore', 'ctc' or 'off' (module doc).
    ctc_weight: lambda of 'joint' and 'rescore' ((1 - lambda) * attention
      + lambda * CTC); 1 for 'ctc', 0 for 'off'.
    ctc_prebeam_ratio: 'joint': CTC-scored candidates per hypothesis,
      ceil(ratio * beam_size).
    lm_weight: shallow fusion weight (used when a language model is given).
    length_bonus: added to a hypothesis' score per emitted token.
    length_penalty: beam search length penalty exponent alpha.
    length_norm: its form, 'gnmt' or 'length' (`search.length_penalty`).
    max_tokens_per_second: LAS token limit per second of audio (0: the
      largest token bucket).
    max_tokens_cap: the largest token bucket, the limit without a rate.
  """

  beam_size: int
  ctc_mode: str
  ctc_weight: float
  ctc_prebeam_ratio: float
  lm_weight: float
  length_bonus: float
  length_penalty: float
  length_norm: str
  max_tokens_per_second: float
  max_tokens_cap: int

  @classmethod
  def resolve(
    cls,
    config: ml_collections.ConfigDict,
    *,
    beam_size: int | None = None,
    ctc_mode: str | None = None,
    ctc_weight: float | None = None,
    ctc_prebeam_ratio: float | None = None,
    lm_weight: float | None = None,
    length_bonus: float | None = None,
    length_penalty: float | None = None,
    max_tokens_per_second: float | None = None,
  ) -> SearchOptions:
    """Options given here, else `config.decode`'s, checked for the model.

    `ctc_mode` None means `config.decode.ctc_mode`, whose None is 'joint'
    for a LAS with a CTC head and 'off' without; DeepSpeech2 is always
    'ctc'. `ctc_weight` None means `config.decode.ctc_weight`, whose None
    is the run's joint training weight `model.ctc_weight`; a weight of 0
    is attention alone ('off') whatever the mode.

    Raises:
      ValueError: an option is out of range, or a CTC mode or weight was
        asked of a model without a CTC head.
    """
    dcfg, model = config.decode, config.model

    def option(value, default):
      return default if value is None else value

    beam_size = int(option(beam_size, dcfg.beam_size))
    if beam_size < 1:
      raise ValueError(f'beam_size must be >= 1, got {beam_size}')
    ratio = float(option(ctc_prebeam_ratio, dcfg.ctc_prebeam_ratio))
    if ratio <= 0:
      raise ValueError(f'ctc_prebeam_ratio must be > 0, got {ratio}')
    lm_weight = float(option(lm_weight, dcfg.lm_weight))
    if lm_weight < 0:
      raise ValueError(f'lm_weight must be >= 0, got {lm_weight}')
    is_ctc_model = model.name == 'deepspeech2'
    has_ctc_head = is_ctc_model or model.ctc_weight > 0
    if ctc_weight and not has_ctc_head:
      raise ValueError(
        f'ctc_weight={ctc_weight} needs a model with a CTC head; this LAS '
        'has none (config.model.ctc_weight was 0)'
      )
    mode = option(ctc_mode, dcfg.ctc_mode)
    if is_ctc_model:
      if mode not in (None, 'ctc'):
        raise ValueError(
          f'ctc_mode={mode!r}: DeepSpeech2 has no attention decoder; it '
          "decodes with its CTC head only ('ctc')"
        )
      mode = 'ctc'
    elif mode is None:
      mode = 'joint' if has_ctc_head else 'off'
    elif mode not in CTC_MODES:
      raise ValueError(f'ctc_mode must be one of {CTC_MODES}, got {mode!r}')
    elif mode != 'off' and not has_ctc_head:
      raise ValueError(
        f'ctc_mode={mode!r} needs a model with a CTC head; this LAS has '
        "none (config.model.ctc_weight was 0): use ctc_mode='off'"
      )
    if mode in ('ctc', 'off'):
      weight = 1.0 if mode == 'ctc' else 0.0
    else:
      weight = float(
        option(ctc_weight, option(dcfg.ctc_weight, model.ctc_weight))
      )
      if weight == 0.0:
        mode = 'off'  # (1 - 0) * attention + 0 * CTC.
      elif not 0.0 < weight <= 1.0:
        raise ValueError(
          f'ctc_weight must be in (0, 1] for ctc_mode={mode!r}, got '
          f"{weight}; ctc_mode='off' decodes with attention alone"
        )
    return cls(
      beam_size=beam_size,
      ctc_mode=mode,
      ctc_weight=weight,
      ctc_prebeam_ratio=ratio,
      lm_weight=lm_weight,
      length_bonus=float(option(length_bonus, dcfg.length_bonus)),
      length_penalty=float(option(length_penalty, dcfg.length_penalty)),
      length_norm=dcfg.length_norm,
      max_tokens_per_second=float(
        option(max_tokens_per_second, dcfg.max_tokens_per_second)
      ),
      max_tokens_cap=max(config.input.token_buckets),
    )

  @property
  def host_prefix_search(self) -> bool:
    """CTC prefix beam search runs on the host, after `search_batch`
    (CTC alone, beam > 1, no language model fused)."""
    return self.ctc_mode == 'ctc' and self.beam_size > 1 and not self.fused

  @property
  def fused(self) -> bool:
    """A language model is fused (`lm_weight` > 0; callers without one
    resolve with `lm_weight=0`)."""
    return self.lm_weight > 0

  def max_tokens(self, seconds: float) -> int:
    """LAS output limit (EOS included) for `seconds` of audio.

    `max_tokens_per_second` times the duration, plus one for EOS; without
    a rate, the largest token bucket. Per padded shape, it sets the width
    of the search state, so short buckets search small arrays.
    """
    if self.max_tokens_per_second <= 0:
      return self.max_tokens_cap
    return math.ceil(self.max_tokens_per_second * seconds) + 1

  def max_units(self, seconds: float) -> int | None:
    """Output units (EOS excluded) the LAS search allows for `seconds` of
    audio, or None when unlimited (CTC, or no rate)."""
    if self.ctc_mode == 'ctc' or self.max_tokens_per_second <= 0:
      return None
    return math.ceil(self.max_tokens_per_second * seconds)


def search_batch(
  model: nnx.Module,
  language_model: nnx.Module | None,
  audio_BxN: jax.Array,
  lengths_B: jax.Array,
  config: ml_collections.ConfigDict,
  options: SearchOptions,
  timestamps: bool = False,
  no_speech_cues: bool = False,
) -> dict[str, jax.Array]:
  """Transcribes a padded batch; jit-able.

  Args:
    model: LAS or DeepSpeech2, restored (`models.build_model`).
    language_model: an `LSTMLM` on the same vocabulary for shallow fusion
      with weight `options.lm_weight`, or None.
    audio_BxN: int16 samples, 0-padded.
    lengths_B: valid samples per row; 0 marks a padding row.
    config: the run's configuration (`features`, `model`).
    options: the search.
    timestamps: also return what `alignment` needs to time the best
      hypothesis' units (a model with a CTC head only).
    no_speech_cues: also return what the no-speech rule judges by
      (`no_speech`; a model with a CTC head only): `confident_units` [B]
      float32, the best path's units in the densest second, each counted
      by its peak posterior; `best_path` [B, S] int32 and
      `best_path_lengths` [B] int32, the CTC head's best path.

  Returns:
    `tokens` [B, K, L] int32 (0 after each length), `lengths` [B, K] int32
    (EOS included when emitted), `scores` [B, K] float32 (-inf for empty
    slots), best first; or, when `options.host_prefix_search`, the CTC
    `log_probs` [B, S, V] for `finish_on_host`. With `timestamps`, also
    `unit_log_probs` [B, S, L] (the CTC log-probabilities of the best
    hypothesis' units per encoder frame), `blank_log_probs` [B, S] and
    `enc_lengths` [B]. With `no_speech_cues`, also `confident_units`,
    `best_path` and `best_path_lengths`.

  Raises:
    ValueError: timestamps of a model without a CTC head; a fusion weight
      (`options.lm_weight` > 0) without a language model.
  """
  if options.fused and language_model is None:
    raise ValueError(
      f'lm_weight={options.lm_weight} without a language model: resolve the '
      'options with lm_weight=0 to decode without one'
    )
  feats_BxTxF, flen_B = features.featurize(
    None, audio_BxN, lengths_B, config.features, False
  )
  enc = model.encode(feats_BxTxF, flen_B, train=False)
  if (timestamps or no_speech_cues) and enc.ctc_logits_BxSxV is None:
    raise ValueError(
      'timestamps and the no-speech rule need the CTC head; this LAS has '
      'none (config.model.ctc_weight was 0)'
    )
  if options.ctc_mode == 'ctc' and not options.fused:
    out = _ctc_search(enc.ctc_logits_BxSxV, enc.enc_lengths_B, options)
  else:
    seconds = audio_BxN.shape[1] / config.features.sample_rate
    seconds_B = lengths_B.astype(jnp.float32) / config.features.sample_rate
    nbest = _label_search(
      model, language_model, enc, seconds, seconds_B, options
    )
    out = dict(tokens=nbest.tokens, lengths=nbest.lengths, scores=nbest.scores)
  if timestamps and not options.host_prefix_search:
    log_probs_BxSxV = jax.nn.log_softmax(
      enc.ctc_logits_BxSxV.astype(jnp.float32)
    )
    out['unit_log_probs'] = jnp.take_along_axis(
      log_probs_BxSxV, out['tokens'][:, 0][:, None, :], axis=2
    )
    out['blank_log_probs'] = log_probs_BxSxV[..., Vocabulary.PAD_ID]
  if timestamps or options.host_prefix_search:
    out['enc_lengths'] = enc.enc_lengths_B
  if no_speech_cues:
    out['confident_units'] = ctc.densest_confident_units(
      enc.ctc_logits_BxSxV,
      enc.enc_lengths_B,
      no_speech.window_frames(config),
      Vocabulary.PAD_ID,
    )
    out['best_path'], out['best_path_lengths'] = ctc.ctc_greedy_decode(
      enc.ctc_logits_BxSxV, enc.enc_lengths_B, Vocabulary.PAD_ID
    )
  return out


def finish_on_host(
  outputs: dict[str, jax.Array], rows: int, options: SearchOptions
) -> dict[str, np.ndarray]:
  """`search_batch`'s outputs for the first `rows` rows as numpy arrays,
  after the host's CTC prefix beam search when `options.host_prefix_search`
  (then `unit_log_probs` and `blank_log_probs` come from its best
  hypothesis, when the CTC `log_probs` were returned for timestamps)."""
  out = {k: v[:rows] for k, v in jax.device_get(outputs).items()}
  if not options.host_prefix_search:
    return out
  log_probs_BxSxV = out.pop('log_probs')
  out['tokens'], out['lengths'], out['scores'] = ctc.ctc_prefix_beam_search(
    log_probs_BxSxV,
    out['enc_lengths'],
    options.beam_size,
    blank_id=Vocabulary.PAD_ID,
  )
  out['unit_log_probs'] = np.take_along_axis(
    log_probs_BxSxV, out['tokens'][:, 0][:, None, :], axis=2
  )
  out['blank_log_probs'] = log_probs_BxSxV[..., Vocabulary.PAD_ID]
  return out


def _ctc_search(logits_BxSxV, lengths_B, options):
  log_probs_BxSxV = jax.nn.log_softmax(logits_BxSxV.astype(jnp.float32))
  if options.host_prefix_search:
    return dict(log_probs=log_probs_BxSxV)
  tokens_BxS, tok_lengths_B = ctc.ctc_greedy_decode(
    log_probs_BxSxV, lengths_B, Vocabulary.PAD_ID
  )
  valid_BxS = jnp.arange(logits_BxSxV.shape[1])[None] < lengths_B[:, None]
  path_B = jnp.sum(jnp.where(valid_BxS, log_probs_BxSxV.max(-1), 0.0), 1)
  return dict(
    tokens=tokens_BxS[:, None],
    lengths=tok_lengths_B[:, None],
    scores=path_B[:, None],
  )


def _label_search(model, language_model, enc, seconds, seconds_B, options):
  """Greedy or beam search over output units ('joint', 'rescore', 'off',
  and 'ctc' with a language model: CTC prefix scores and the LM alone)."""
  enc_len_B = enc.enc_lengths_B
  b = enc_len_B.shape[0]
  max_len = options.max_tokens(seconds)
  # In seconds of audio, not encoder frames: the frame rate depends on the
  # extractor and pyramid layers, speech rate does not.
  limits_B = search.max_lens_from_encoder(
    seconds_B, options.max_tokens_per_second, max_len
  )
  ids = dict(sos_id=Vocabulary.SOS_ID, eos_id=Vocabulary.EOS_ID)
  joint = options.ctc_mode in ('joint', 'ctc')
  scorers, carries = [], []
  if options.ctc_mode != 'ctc':
    att_carry, att_step = model.scorer(enc.enc_BxSxH, enc_len_B)
    scorers.append((1.0 - options.ctc_weight if joint else 1.0, att_step))
    carries.append(att_carry)
  if options.fused:
    lm_carry, lm_step = language_model.scorer(b)
    scorers.append((options.lm_weight, lm_step))
    carries.append(lm_carry)
  # The vocabulary size, for a search led by CTC alone (weight 1).
  vocab_size = enc.ctc_logits_BxSxV.shape[-1] if joint else None
  # <pad> (the CTC blank) and <sos> are never training targets. Label
  # smoothing gives them a little probability; emitted, they would decode
  # to nothing and fill the n-best with duplicates.
  step_fn = search.weighted_sum(
    scorers, vocab_size, never_ids=(Vocabulary.PAD_ID, Vocabulary.SOS_ID)
  )
  prefix_scorer = None
  if joint:
    prefix_scorer = ctc_prefix_score.CTCPrefixScorer.from_logits(
      enc.ctc_logits_BxSxV,
      enc_len_B,
      weight=options.ctc_weight,
      pre_beam_ratio=options.ctc_prebeam_ratio,
      eos_id=Vocabulary.EOS_ID,
      blank_id=Vocabulary.PAD_ID,
    )
  if options.beam_size == 1 and prefix_scorer is None:
    r = search.greedy_search(
      step_fn, tuple(carries), b, max_len, max_lens_B=limits_B, **ids
    )
    nbest = search.NBest(
      r.tokens[:, None], r.lengths[:, None], r.scores[:, None]
    )
  else:
    nbest = search.beam_search(
      step_fn,
      tuple(carries),
      b,
      options.beam_size,
      max_len,
      length_penalty_alpha=options.length_penalty,
      length_norm=options.length_norm,
      max_lens_B=limits_B,
      prefix_scorer=prefix_scorer,
      length_bonus=options.length_bonus,
      **ids,
    )
  if options.ctc_mode == 'rescore':
    nbest = search.rescore_with_ctc(
      nbest.tokens,
      nbest.lengths,
      nbest.scores,
      enc.ctc_logits_BxSxV,
      enc_len_B,
      options.ctc_weight,
      Vocabulary.EOS_ID,
      blank_id=Vocabulary.PAD_ID,
    )
  return nbest
