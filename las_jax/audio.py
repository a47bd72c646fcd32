"""Reading speech audio as 16 kHz mono int16, and silence trimming.

KsponSpeech ships headerless PCM (16 kHz, signed 16-bit little-endian,
mono); users bring WAV/FLAC at any rate and channel count (KoSpeech issue
#179: 44.1 kHz stereo input failed). Everything that reads audio in las_jax
goes through `read_audio`, so every model sees the same representation.
"""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf
import soxr

# Extensions read as headerless signed 16-bit little-endian PCM.
PCM_EXTENSIONS = ('.pcm', '.raw')
# KsponSpeech's PCM rate; headerless files carry no rate of their own.
PCM_SAMPLE_RATE = 16000


class AudioError(ValueError):
  """An audio file is unreadable, corrupt or empty."""


def _pcm_samples(path: str) -> np.ndarray:
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise AudioError(f'{path}: cannot read audio file: {e}') from e
  if len(data) % 2:
    raise AudioError(
      f'{path}: {len(data)} bytes is an odd count, not 16-bit PCM'
    )
  # '<i2' then native int16: the files are little-endian on any host.
  return np.frombuffer(data, dtype='<i2').astype(np.int16)


def _to_int16(samples: np.ndarray) -> np.ndarray:
  # libsndfile maps int16 to float as x / 32768, so this inverts it exactly.
  scaled = np.round(samples * 32768.0)
  return np.clip(scaled, -32768, 32767).astype(np.int16)


def to_mono(
  samples: np.ndarray, sample_rate: int, target_rate: int = 16000
) -> np.ndarray:
  """Converts an in-memory signal to mono int16 at `target_rate`.

  The one conversion every input goes through, files (`read_audio`) and
  arrays (`Recognizer.transcribe`) alike: channels averaged, soxr HQ
  resampling, float scaled by 32768 as libsndfile does. A 16 kHz mono int16
  signal comes back unchanged.

  Args:
    samples: [N] or [N, channels]; int16, or float in [-1, 1].
    sample_rate: its rate in Hz.
    target_rate: the rate of the result in Hz.

  Returns:
    samples_N: int16 mono samples at `target_rate`.

  Raises:
    ValueError: wrong rank or dtype, or no samples.
  """
  if samples.ndim not in (1, 2):
    raise ValueError(
      f'audio must be [N] or [N, channels], got shape {samples.shape}'
    )
  if samples.size == 0:
    raise ValueError('audio holds no samples')
  if samples.dtype == np.int16:
    if samples.ndim == 1 and sample_rate == target_rate:
      return samples
    signal_N = samples.astype(np.float32) / 32768.0
  elif np.issubdtype(samples.dtype, np.floating):
    signal_N = samples.astype(np.float32)
  else:
    raise ValueError(f'audio must be int16 or float, got {samples.dtype}')
  if signal_N.ndim == 2:
    signal_N = signal_N.mean(axis=1)
  if sample_rate != target_rate:
    signal_N = soxr.resample(signal_N, sample_rate, target_rate, quality='HQ')
  return _to_int16(signal_N)


def read_audio(
  path: str | os.PathLike[str],
  sample_rate: int = 16000,
  *,
  pcm_sample_rate: int = PCM_SAMPLE_RATE,
) -> np.ndarray:
  """Reads an audio file as mono int16 samples at `sample_rate`.

  `.pcm`/`.raw` files are headerless signed 16-bit little-endian mono at
  `pcm_sample_rate` (KsponSpeech); every other file is read by libsndfile
  (WAV, FLAC, OGG, ...). Then `to_mono` averages channels and resamples.

  Args:
    path: the audio file.
    sample_rate: rate of the returned samples, in Hz.
    pcm_sample_rate: rate of headerless PCM files, in Hz.

  Returns:
    samples_N: int16 array of the mono signal at `sample_rate`.

  Raises:
    AudioError: the file is missing, unreadable, corrupt, has an odd byte
      count (PCM) or holds no samples. The message names the file.
  """
  path = os.fspath(path)
  if os.path.splitext(path)[1].lower() in PCM_EXTENSIONS:
    data, rate = _pcm_samples(path), pcm_sample_rate
  else:
    try:
      info = sf.info(path)
      # Exact int16 when nothing needs computing, float otherwise so that
      # mixing and resampling do not round twice.
      exact = info.channels == 1 and info.samplerate == sample_rate
      data, rate = sf.read(path, dtype='int16' if exact else 'float32')
    except (sf.LibsndfileError, RuntimeError, OSError, EOFError) as e:
      raise AudioError(f'{path}: cannot read audio file: {e}') from e
  if data.size == 0:
    raise AudioError(f'{path}: audio file holds no samples')
  return to_mono(data, rate, sample_rate)


def trim_silence(samples_N: np.ndarray, top_db: float = 30) -> np.ndarray:
  """Drops the silent stretches of a signal (KoSpeech's `del_silence`).

  Frames quieter than `top_db` below the loudest frame are silent
  (`librosa.effects.split`); the non-silent intervals are concatenated.

  Args:
    samples_N: int16 (or float) mono signal.
    top_db: threshold below the peak frame power, in dB.

  Returns:
    The non-silent samples, same dtype as the input.
  """
  import librosa  # Deferred: importing librosa costs about a second.

  if samples_N.size == 0:
    return samples_N
  intervals_Kx2 = librosa.effects.split(
    samples_N.astype(np.float32), top_db=top_db
  )
  if intervals_Kx2.size == 0:
    return samples_N[:0]
  return np.concatenate([samples_N[s:e] for s, e in intervals_Kx2])
