"""Speech features and augmentation as pure JAX functions on padded batches.

Everything here runs inside the jitted train/eval step on the accelerator:
padded waveforms `audio_BxN` (int16 or float) with per-utterance sample
lengths go in; log-mel features `feats_BxTxF` with exact per-utterance frame
lengths come out. Padding never influences an utterance's valid frames, and
frames at or past an utterance's frame length are always zero.

Conventions (KoSpeech's librosa 'mel' path, `librosa.feature.melspectrogram`
then `librosa.power_to_db(ref=np.max)`):
- int16 samples are scaled by 1/32767, as KoSpeech reads KsponSpeech PCM
  (`np.memmap(..., 'h') / 32767`); float input is used as is.
- STFT framing is librosa's `center=True, pad_mode='constant'`: frame t is
  centred on sample t*hop with zeros beyond both ends, so an utterance of n
  samples has exactly 1 + n // hop frames (0 for n == 0, a padding row).
  Samples at or past each utterance's length are zeroed before framing, which
  makes this exact per utterance, whatever the batch padding holds.
- power spectrum |rfft|^2 of windowed frames, librosa's Slaney mel
  filterbank, then decibels relative to the utterance's loudest valid bin,
  clipped `top_db` below it.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

# KoSpeech scales KsponSpeech PCM by 1/32767 (not librosa's 1/32768).
INT16_SCALE = 1.0 / 32767.0


def stft_params(cfg: ml_collections.ConfigDict) -> tuple[int, int]:
  """Returns (n_fft, hop) in samples from the ms settings, as KoSpeech."""
  n_fft = int(round(cfg.sample_rate * 0.001 * cfg.frame_length_ms))
  hop = int(round(cfg.sample_rate * 0.001 * cfg.frame_shift_ms))
  return n_fft, hop


def frame_lengths(sample_lengths_B, cfg: ml_collections.ConfigDict):
  """Valid frame count per utterance: 1 + n // hop, and 0 for n == 0.

  Works on numpy and JAX integer arrays alike (and Python ints).
  """
  _, hop = stft_params(cfg)
  xp = jnp if isinstance(sample_lengths_B, jax.Array) else np
  n = xp.asarray(sample_lengths_B)
  return xp.where(n > 0, 1 + n // hop, 0).astype(xp.int32)


def num_frames(num_samples: int, cfg: ml_collections.ConfigDict) -> int:
  """Frame axis size T of a batch padded to `num_samples` samples."""
  return 1 + num_samples // stft_params(cfg)[1]


# Slaney's mel scale: 200/3 Hz per mel up to 1 kHz (15 mels), then log steps
# of ln(6.4) / 27 per mel.
_MEL_F_SP = 200.0 / 3
_MIN_LOG_MEL = 1000.0 / _MEL_F_SP
_LOGSTEP = np.log(6.4) / 27.0


def _hz_to_mel(hz):
  """Slaney's mel scale (librosa's default, `htk=False`): linear below
  1 kHz, logarithmic above."""
  hz = np.asarray(hz, np.float64)
  mel = hz / _MEL_F_SP
  log_region = hz >= 1000.0
  return np.where(
    log_region,
    _MIN_LOG_MEL + np.log(np.where(log_region, hz, 1000.0) / 1000.0) / _LOGSTEP,
    mel,
  )


def _mel_to_hz(mel):
  """Inverse of `_hz_to_mel`."""
  mel = np.asarray(mel, np.float64)
  return np.where(
    mel >= _MIN_LOG_MEL,
    1000.0 * np.exp(_LOGSTEP * (mel - _MIN_LOG_MEL)),
    _MEL_F_SP * mel,
  )


@functools.lru_cache(maxsize=8)
def _filterbank(
  sample_rate: int,
  n_fft: int,
  num_mels: int,
  fmin: float,
  fmax: float | None,
  window: str,
) -> tuple[np.ndarray, np.ndarray]:
  """Mel filterbank [n_fft//2+1, num_mels] and window [n_fft], computed once.

  The filterbank is librosa's `filters.mel(htk=False, norm='slaney')`
  (Slaney's Auditory Toolbox): triangles between adjacent edges of
  `num_mels + 2` points evenly spaced in mels, scaled to unit area. Its
  float64 arithmetic is librosa's step for step, so the float32 result is
  bit for bit librosa's (tests/features_test.py), without librosa and its
  numba compiler on the accelerator hosts. The window is scipy's
  (`window_samples`), as librosa takes it.
  """
  fmax = sample_rate / 2 if fmax is None else fmax
  fft_hz = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
  edges_hz = _mel_to_hz(
    np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), num_mels + 2)
  )
  widths = np.diff(edges_hz)
  ramps = np.subtract.outer(edges_hz, fft_hz)
  rising = -ramps[:-2] / widths[:-1, None]
  falling = ramps[2:] / widths[1:, None]
  weights = np.maximum(0, np.minimum(rising, falling)).astype(np.float32)
  # Slaney's normalization, applied (as librosa does) to the float32
  # triangles in float64.
  area = 2.0 / (edges_hz[2:] - edges_hz[:-2])
  weights = (weights * area[:, None]).astype(np.float32)
  mel_KxF = np.ascontiguousarray(weights.T)
  win_W = window_samples(window, n_fft)
  for a in (mel_KxF, win_W):
    a.setflags(write=False)
  return mel_KxF, win_W


# Windows NumPy computes with the same float32 values as scipy's periodic
# ones (checked for every length to 4096 in tests/features_test.py):
# importing scipy.signal takes a second, a third of starting `decode.py`.
_NUMPY_WINDOWS = {
  'hann': np.hanning,
  'hamming': np.hamming,
  'blackman': np.blackman,
}


def window_samples(window: str, n_fft: int) -> np.ndarray:
  """float32 [n_fft]: `scipy.signal.get_window(window, n_fft)`, periodic.

  'hann', 'hamming' and 'blackman' come from NumPy (the symmetric window
  one sample longer, its last sample dropped, which is scipy's definition
  of the periodic one); any other scipy window name from scipy.
  """
  if window in _NUMPY_WINDOWS and n_fft > 1:  # scipy: [1.] for one sample.
    return _NUMPY_WINDOWS[window](n_fft + 1)[:-1].astype(np.float32)
  import scipy.signal  # noqa: PLC0415  Deferred: a slow import.

  return scipy.signal.get_window(window, n_fft, fftbins=True).astype(np.float32)


def _valid_mask(lengths_B, size: int):
  """Bool [B, size]: position < length."""
  return jnp.arange(size)[None, :] < jnp.asarray(lengths_B)[:, None]


def to_float(audio_BxN) -> jax.Array:
  """int16 samples scaled by 1/32767 (KoSpeech); float passes through."""
  audio_BxN = jnp.asarray(audio_BxN)
  if jnp.issubdtype(audio_BxN.dtype, jnp.integer):
    return audio_BxN.astype(jnp.float32) * INT16_SCALE
  return audio_BxN.astype(jnp.float32)


def power_mel(audio_BxN, lengths_B, cfg: ml_collections.ConfigDict):
  """Mel power spectrogram [B, T, F] (zero past each frame length)."""
  n_fft, hop = stft_params(cfg)
  mel_KxF, win_W = _filterbank(
    cfg.sample_rate,
    n_fft,
    cfg.num_mels,
    float(cfg.fmin),
    None if cfg.fmax is None else float(cfg.fmax),
    cfg.window,
  )
  x_BxN = to_float(audio_BxN)
  n = x_BxN.shape[1]
  x_BxN = jnp.where(_valid_mask(lengths_B, n), x_BxN, 0.0)
  # center=True with zeros: n_fft//2 zeros each side, frame t starts at t*hop.
  x_BxP = jnp.pad(x_BxN, ((0, 0), (n_fft // 2, n_fft // 2)))
  t = num_frames(n, cfg)
  idx_TxW = np.arange(t)[:, None] * hop + np.arange(n_fft)[None, :]
  frames_BxTxW = x_BxP[:, idx_TxW] * win_W
  spec_BxTxK = jnp.fft.rfft(frames_BxTxW, axis=-1)
  power_BxTxK = jnp.real(spec_BxTxK) ** 2 + jnp.imag(spec_BxTxK) ** 2
  mel_BxTxF = jnp.einsum(
    'btk,kf->btf', power_BxTxK, mel_KxF, precision=jax.lax.Precision.HIGHEST
  )
  flen_B = frame_lengths(jnp.asarray(lengths_B), cfg)
  return jnp.where(_valid_mask(flen_B, t)[..., None], mel_BxTxF, 0.0), flen_B


def log_mel(
  audio_BxN, lengths_B, cfg: ml_collections.ConfigDict
) -> tuple[jax.Array, jax.Array]:
  """Log-mel features, KoSpeech's `power_to_db(melspectrogram, ref=np.max)`.

  Args:
    audio_BxN: int16 or float padded waveforms.
    lengths_B: valid samples per row (0 marks a padding row).
    cfg: `config.features`.

  Returns:
    (feats_BxTxF float32 in dB relative to each utterance's maximum, clipped
    at -top_db, zero past each frame length; frame_lengths_B int32).
  """
  mel_BxTxF, flen_B = power_mel(audio_BxN, lengths_B, cfg)
  valid_BxTx1 = _valid_mask(flen_B, mel_BxTxF.shape[1])[..., None]
  db_BxTxF = 10.0 * jnp.log10(jnp.maximum(mel_BxTxF, cfg.amin))
  # ref=np.max over the utterance's valid frames only.
  ref_B = jnp.max(jnp.where(valid_BxTx1, db_BxTxF, -jnp.inf), axis=(1, 2))
  ref_B = jnp.where(flen_B > 0, ref_B, 0.0)
  db_BxTxF = db_BxTxF - ref_B[:, None, None]
  if cfg.top_db:
    db_BxTxF = jnp.maximum(db_BxTxF, -float(cfg.top_db))
  return jnp.where(valid_BxTx1, db_BxTxF, 0.0), flen_B


def normalize(feats_BxTxF, lengths_B, mode: str) -> jax.Array:
  """Per-utterance mean/variance normalization over valid frames only.

  Args:
    feats_BxTxF: features, zero past each length.
    lengths_B: valid frames per row.
    mode: 'utterance' (one mean and std per utterance, as KoSpeech's
      `feature -= feature.mean(); feature /= np.std(feature)`), 'channel'
      (per mel bin, CMVN) or 'none'.

  Returns:
    Normalized features; padding frames stay zero.
  """
  if mode == 'none':
    return feats_BxTxF
  if mode not in ('utterance', 'channel'):
    raise ValueError(
      f'config.features.normalize: unknown mode {mode!r}; expected '
      "'utterance', 'channel' or 'none'"
    )
  _, t, f = feats_BxTxF.shape
  valid_BxTx1 = _valid_mask(lengths_B, t)[..., None]
  axes = (1, 2) if mode == 'utterance' else (1,)
  count = jnp.asarray(lengths_B, jnp.float32) * (
    f if mode == 'utterance' else 1
  )
  count = jnp.maximum(count, 1.0)[:, None, None]
  x = jnp.where(valid_BxTx1, feats_BxTxF, 0.0)
  mean = jnp.sum(x, axis=axes, keepdims=True) / count
  var = jnp.sum(
    jnp.where(valid_BxTx1, (x - mean) ** 2, 0.0), axes, keepdims=True
  )
  std = jnp.sqrt(var / count)
  # A constant utterance (e.g. digital silence) has std 0: only centre it.
  out = (x - mean) / jnp.where(std > 1e-5, std, 1.0)
  return jnp.where(valid_BxTx1, out, 0.0)


def reverse_time(feats_BxTxF, lengths_B) -> jax.Array:
  """Reverses each utterance's valid frames (KoSpeech `input_reverse`).

  Padding stays at the end (and zero).
  """
  t = feats_BxTxF.shape[1]
  t_T = jnp.arange(t)[None, :]
  len_Bx1 = jnp.asarray(lengths_B)[:, None]
  src_BxT = jnp.where(t_T < len_Bx1, len_Bx1 - 1 - t_T, t_T)
  return jnp.take_along_axis(feats_BxTxF, src_BxT[..., None], axis=1)


def _band_masks(rng, n_masks, max_width_B, limit_B, size):
  """Bool [B, size]: union of `n_masks` random bands per row.

  Each band has width w = floor(U * max_width) (KoSpeech's
  `int(np.random.uniform(0, para))`) and start uniform in [0, limit - w], so
  it lies inside [0, limit).
  """
  b = limit_B.shape[0]
  kw, ks = jax.random.split(rng)
  u_w = jax.random.uniform(kw, (n_masks, b))
  u_s = jax.random.uniform(ks, (n_masks, b))
  w_MxB = jnp.floor(u_w * max_width_B[None, :]).astype(jnp.int32)
  w_MxB = jnp.minimum(w_MxB, limit_B[None, :])
  start_MxB = jnp.floor(u_s * (limit_B - w_MxB + 1)).astype(jnp.int32)
  pos = jnp.arange(size)[None, None, :]
  inside = (pos >= start_MxB[..., None]) & (
    pos < (start_MxB + w_MxB)[..., None]
  )
  return jnp.any(inside, axis=0)


def spec_augment(
  rng: jax.Array, feats_BxTxF, lengths_B, cfg: ml_collections.ConfigDict
) -> jax.Array:
  """SpecAugment frequency and time masks, KoSpeech style, per utterance.

  Frequency masks: `num_freq_masks` bands of width < `freq_mask_param`.
  Time masks: `num_time_masks` bands of width < length * `time_mask_ratio`
  (KoSpeech: `time_mask_para = length / 20`, after "SpecAugment on large
  scale datasets"), drawn inside each utterance's own frames, so padding is
  never touched. Masked values are set to 0 (the mean after normalization).

  Args:
    rng: PRNG key.
    feats_BxTxF: features, zero past each length.
    lengths_B: valid frames per row.
    cfg: `config.features`.

  Returns:
    Masked features.
  """
  b, t, f = feats_BxTxF.shape
  k_f, k_t = jax.random.split(rng)
  lengths_B = jnp.asarray(lengths_B, jnp.int32)
  freq_BxF = _band_masks(
    k_f,
    cfg.num_freq_masks,
    jnp.full((b,), float(cfg.freq_mask_param)),
    jnp.full((b,), f, jnp.int32),
    f,
  )
  time_BxT = _band_masks(
    k_t,
    cfg.num_time_masks,
    lengths_B.astype(jnp.float32) * cfg.time_mask_ratio,
    lengths_B,
    t,
  )
  masked_BxTxF = freq_BxF[:, None, :] | time_BxT[:, :, None]
  return jnp.where(masked_BxTxF, 0.0, feats_BxTxF)


def mix_noise(
  rng: jax.Array,
  audio_BxN,
  lengths_B,
  cfg: ml_collections.ConfigDict,
  noise_BxN=None,
) -> jax.Array:
  """Adds noise at a random SNR to a random subset of utterances.

  Each row gets noise with probability `noise_prob`, at an SNR drawn
  uniformly in [noise_snr_db_min, noise_snr_db_max] dB measured over its
  valid samples. Padding stays zero.

  Args:
    rng: PRNG key.
    audio_BxN: int16 or float padded waveforms.
    lengths_B: valid samples per row.
    cfg: `config.features`.
    noise_BxN: noise recordings [B, >= N] (int16 or float); white Gaussian
      noise when None.

  Returns:
    float32 waveforms [B, N] on the `to_float` scale.
  """
  x_BxN = to_float(audio_BxN)
  b, n = x_BxN.shape
  k_n, k_s, k_p = jax.random.split(rng, 3)
  if noise_BxN is None:
    noise_BxN = jax.random.normal(k_n, (b, n))
  elif noise_BxN.shape[0] != b or noise_BxN.shape[1] < n:
    raise ValueError(
      f'mix_noise: noise_BxN {noise_BxN.shape} must have {b} rows of at '
      f'least {n} samples (the audio batch)'
    )
  else:
    noise_BxN = to_float(noise_BxN)[:, :n]
  valid_BxN = _valid_mask(lengths_B, n)
  count_B = jnp.maximum(jnp.asarray(lengths_B, jnp.float32), 1.0)
  p_sig_B = jnp.sum(jnp.where(valid_BxN, x_BxN**2, 0.0), 1) / count_B
  p_noise_B = jnp.sum(jnp.where(valid_BxN, noise_BxN**2, 0.0), 1) / count_B
  snr_db_B = jax.random.uniform(
    k_s, (b,), minval=cfg.noise_snr_db_min, maxval=cfg.noise_snr_db_max
  )
  gain_B = jnp.sqrt(
    p_sig_B / (jnp.maximum(p_noise_B, 1e-12) * 10.0 ** (snr_db_B / 10.0))
  )
  gain_B = jnp.where(jax.random.uniform(k_p, (b,)) < cfg.noise_prob, gain_B, 0)
  return jnp.where(valid_BxN, x_BxN + gain_B[:, None] * noise_BxN, 0.0)


def featurize(
  rng: jax.Array | None,
  audio_BxN,
  lengths_B,
  cfg: ml_collections.ConfigDict,
  train: bool,
  noise_BxN=None,
) -> tuple[jax.Array, jax.Array]:
  """Waveforms to model inputs, in KoSpeech's order.

  noise (train) -> log-mel -> normalization -> time reversal (train and eval:
  it is part of the model's input convention) -> SpecAugment (train).

  Args:
    rng: PRNG key for augmentation; may be None when `train` is False.
    audio_BxN: int16 or float padded waveforms.
    lengths_B: valid samples per row (0 for padding rows).
    cfg: `config.features`.
    train: apply augmentation.
    noise_BxN: optional noise recordings for `mix_noise`.

  Returns:
    (feats_BxTxF float32, frame_lengths_B int32).
  """
  if train:
    k_noise, k_spec = jax.random.split(rng)
    if cfg.noise_prob > 0:
      audio_BxN = mix_noise(k_noise, audio_BxN, lengths_B, cfg, noise_BxN)
  feats_BxTxF, flen_B = log_mel(audio_BxN, lengths_B, cfg)
  feats_BxTxF = normalize(feats_BxTxF, flen_B, cfg.normalize)
  if cfg.input_reverse:
    feats_BxTxF = reverse_time(feats_BxTxF, flen_B)
  if train and cfg.spec_augment:
    feats_BxTxF = spec_augment(k_spec, feats_BxTxF, flen_B, cfg)
  return feats_BxTxF, flen_B
