"""Reading speech audio as 16 kHz mono int16; silence and edge trimming.

KsponSpeech ships headerless PCM (16 kHz, signed 16-bit little-endian,
mono); users bring WAV/FLAC/MP3/Ogg... at any rate, channel count and
sample format (KoSpeech issue #179: 44.1 kHz stereo input failed).
Everything that reads audio in las_jax goes through `read_audio` (files) or
`to_mono` (arrays), so every model sees the same representation, made by
one rule whatever the rate, channel count or format:

1. samples as float: integer formats divided by their full scale (int16 by
   32768, exactly as libsndfile does), floating-point formats as stored;
2. non-finite samples (NaN, Inf) refuse the input, naming it;
3. floats past 2 (6 dB over full scale) that are all whole numbers, or
   past 256 (48 dB over) at all, are int16-scale values and are divided
   by 32768, with a warning; other samples past full scale (a float file
   mixed too hot) are counted and clipped, with a warning;
4. channels averaged, soxr HQ resampling, rounding to int16 with clipping.

Problems that do not stop a file are reported as `AudioWarning`s naming
it, through Python's `warnings` unless the caller passes a `warn`
callback (the dataset builders do, to log them per utterance).
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import soundfile as sf
import soxr

# Extensions read as headerless signed 16-bit little-endian PCM.
PCM_EXTENSIONS = ('.pcm', '.raw')
# KsponSpeech's PCM rate; headerless files carry no rate of their own.
PCM_SAMPLE_RATE = 16000
# Most channels an array may have; more makes [C, N] vs [N, C] ambiguous.
MAX_CHANNELS = 8
# Floats peaking above INT16_SCALE_PEAK whose samples are all whole numbers
# (integers converted to float), or peaking above HOT_FLOAT_PEAK whatever
# they are, are read as int16-scale values (divided by 32768); others, as
# [-1, 1] audio that went past full scale (clipped).
INT16_SCALE_PEAK = 2.0
HOT_FLOAT_PEAK = 256.0
# An input whose mean-removed peak stays below this is silent (-60 dBFS,
# 32 on the int16 scale): constant (DC) signals and dither noise.
SILENCE_PEAK_DBFS = -60.0

# libsndfile major formats (`soundfile.available_formats()` keys) and the
# extensions that name them. RF64 and NIST SPHERE files often keep `.wav`
# (TIMIT). Left out: MAT4/MAT5 (`.mat` is MATLAB data), HTK (`.htk` files
# are usually features), XI/SDS (instrument dumps), MPC2K (`.mpc` is also
# Musepack) and RAW (headerless; see PCM_EXTENSIONS).
FORMAT_EXTENSIONS = {
  'WAV': ('.wav', '.wave'),
  'WAVEX': ('.wav', '.wave'),
  'RF64': ('.rf64', '.wav'),
  'W64': ('.w64',),
  'AIFF': ('.aif', '.aiff', '.aifc'),
  'AU': ('.au', '.snd'),
  'CAF': ('.caf',),
  'FLAC': ('.flac',),
  'OGG': ('.ogg', '.oga', '.opus'),
  'MP3': ('.mp3',),
  'NIST': ('.sph', '.nist', '.wav'),
  'VOC': ('.voc',),
  'IRCAM': ('.sf',),
  'AVR': ('.avr',),
  'SVX': ('.8svx', '.16sv', '.iff', '.svx'),
  'PAF': ('.paf',),
  'PVF': ('.pvf',),
  'SD2': ('.sd2',),
  'WVE': ('.wve',),
}

# Container signatures at the start of a file: (offset, bytes, format).
_MAGIC = (
  (0, b'RIFF', 'WAV'),
  (0, b'RIFX', 'WAV'),
  (0, b'RF64', 'RF64'),
  (0, b'BW64', 'RF64'),
  (0, b'riff\x2e\x91\xcf\x11\xa5\xd6\x28\xdb\x04\xc1\x00\x00', 'W64'),
  (0, b'fLaC', 'FLAC'),
  (0, b'OggS', 'OGG'),
  (0, b'caff', 'CAF'),
  (0, b'.snd', 'AU'),
  (0, b'dns.', 'AU'),
  (0, b'NIST_1A', 'NIST'),
  (0, b'Creative Voice File', 'VOC'),
)
# FORM chunks: the form type at offset 8 tells AIFF from Amiga IFF.
_FORM_TYPES = {b'AIFF': 'AIFF', b'AIFC': 'AIFF', b'8SVX': 'SVX', b'16SV': 'SVX'}
# Bytes read to sniff a container (three MPEG frames fit in it).
_SNIFF_BYTES = 4096

Warn = Callable[[str], None]


class AudioError(ValueError):
  """An audio input is unreadable, corrupt, empty, silent or too short."""


class AudioWarning(UserWarning):
  """An audio input was read, but not as it claimed to be (see message)."""


def _default_warn(message: str) -> None:
  warnings.warn(message, AudioWarning, stacklevel=3)


# ------------------------------------------------------ container sniffing --

# MPEG audio frame header fields (ISO 11172-3 / 13818-3), kbit/s by
# (version is MPEG-1, layer) and sample rates by version.
_MPEG_BITRATES = {
  (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
  (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
  (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
  (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
  (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
  (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}  # fmt: skip
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000)}
_MPEG_RATES[0] = (11025, 12000, 8000)  # MPEG-2.5


# Consecutive MPEG frame headers that identify MP3 without an ID3 tag.
_MPEG_FRAMES = 3


def _mpeg_frame(head: bytes, at: int) -> tuple[int, tuple] | None:
  """(frame length, header id) of a layer II/III frame at `at`, or None.

  Layer I is left out: its sync word is FF Fx, two bytes that the int16
  sample -1 (FF FF) of near-silent PCM already matches.
  """
  if len(head) < at + 4 or head[at] != 0xFF or head[at + 1] & 0xE0 != 0xE0:
    return None
  version = (head[at + 1] >> 3) & 3
  layer = 4 - ((head[at + 1] >> 1) & 3)
  bitrate_index, rate_index = head[at + 2] >> 4, (head[at + 2] >> 2) & 3
  if version == 1 or layer not in (2, 3) or rate_index == 3:
    return None
  if bitrate_index in (0, 15):  # Free format cannot be checked; reserved.
    return None
  mpeg1 = version == 3
  bitrate = 1000 * _MPEG_BITRATES[mpeg1, layer][bitrate_index]
  rate = _MPEG_RATES[version][rate_index]
  padding = (head[at + 2] >> 1) & 1
  if layer == 1:
    length = (12 * bitrate // rate + padding) * 4
  else:
    length = (144 if mpeg1 or layer == 2 else 72) * bitrate // rate + padding
  return length, (version, layer, rate_index)


def sniff_container(head: bytes) -> str | None:
  """The libsndfile format whose signature starts `head`, or None.

  Signatures are those of the common containers (RIFF/RIFX/RF64/BW64 WAV,
  Sony Wave64, FLAC, Ogg, AIFF/AIFC, Amiga IFF, CAF, AU, NIST SPHERE, VOC)
  and MP3 (an ID3v2 tag, or three consecutive MPEG layer II/III frame
  headers alike: a frame sync alone occurs in PCM).

  Args:
    head: the first bytes of a file (4096 suffice).
  """
  for offset, magic, fmt in _MAGIC:
    if head[offset : offset + len(magic)] == magic:
      return fmt
  if head[:4] == b'FORM' and head[8:12] in _FORM_TYPES:
    return _FORM_TYPES[head[8:12]]
  # ID3v2: version 2-4, revision 0, a size of four 7-bit bytes.
  if (
    head[:3] == b'ID3'
    and head[3:5] in (b'\x02\x00', b'\x03\x00', b'\x04\x00')
    and all(b < 0x80 for b in head[6:10])
  ):
    return 'MP3'
  at, kinds = 0, set()
  for _ in range(_MPEG_FRAMES):
    frame = _mpeg_frame(head, at)
    if frame is None:
      return None
    at += frame[0]
    kinds.add(frame[1])
  return 'MP3' if len(kinds) == 1 else None


def readable_extensions() -> tuple[str, ...]:
  """File extensions `read_audio` reads with this libsndfile, sorted.

  The extensions of FORMAT_EXTENSIONS whose format this libsndfile build
  reads (MP3 since libsndfile 1.1; `.opus` where its Ogg has Opus), plus
  PCM_EXTENSIONS.
  """
  available = sf.available_formats()
  found = set(PCM_EXTENSIONS)
  for fmt, extensions in FORMAT_EXTENSIONS.items():
    if fmt in available:
      found.update(extensions)
  if 'OPUS' not in sf.available_subtypes('OGG'):
    found.discard('.opus')
  return tuple(sorted(found))


# ------------------------------------------------------------- reading --


def _pcm_samples(path: str, data: bytes) -> np.ndarray:
  if len(data) % 2:
    raise AudioError(
      f'{path}: {len(data)} bytes is an odd count, not 16-bit PCM'
    )
  # '<i2' then native int16: the files are little-endian on any host.
  return np.frombuffer(data, dtype='<i2').astype(np.int16)


def _soundfile_samples(
  path: str, data: bytes | None = None
) -> tuple[np.ndarray, int, str]:
  """(float32 [N, C] samples, rate, libsndfile format) of a file.

  With `data` (the file's bytes), libsndfile reads them instead of the
  file, finding the format from the content alone (soundfile would take
  a .raw name to mean its RAW format).
  """
  try:
    with sf.SoundFile(path if data is None else io.BytesIO(data)) as f:
      # float32 holds 16- and 24-bit integer samples exactly; libsndfile
      # scales integers by their full scale, floats come as stored.
      samples = f.read(dtype='float32', always_2d=True)
      return samples, f.samplerate, f.format
  except (sf.LibsndfileError, RuntimeError, OSError, EOFError) as e:
    raise AudioError(f'{path}: cannot read audio file: {e}') from e


def _float_signal(samples: np.ndarray, name: str, warn: Warn) -> np.ndarray:
  """Checks float samples (rule steps 2-3 of the module docstring)."""
  finite = np.isfinite(samples)
  if not finite.all():
    bad = samples.size - int(np.count_nonzero(finite))
    raise AudioError(
      f'{name}: {bad} of {samples.size} samples are not finite (NaN or Inf)'
    )
  peak = float(np.max(np.abs(samples)))
  if peak > HOT_FLOAT_PEAK or (
    peak > INT16_SCALE_PEAK and np.array_equal(samples, np.round(samples))
  ):
    if peak > 2 * 32768:
      raise AudioError(
        f'{name}: float samples reach {peak:.4g}, beyond both the [-1, 1] '
        'and the int16 scale'
      )
    warn(
      f'{name}: float samples reach {peak:.0f}'
      f'{" in whole numbers" if peak <= HOT_FLOAT_PEAK else ""}, so they '
      'were taken as int16-scale values and divided by 32768 (float audio '
      'should lie in [-1, 1])'
    )
    samples = samples / np.float32(32768)
  return samples


def _clip_warning(signal_N: np.ndarray, name: str, warn: Warn) -> None:
  past = int(np.count_nonzero(np.abs(signal_N) > 1.0))
  if past:
    peak = float(np.max(np.abs(signal_N)))
    warn(
      f'{name}: {past} samples ({100 * past / signal_N.size:.2g}%) past full '
      f'scale (peak {20 * np.log10(peak):+.1f} dBFS) were clipped'
    )


def _to_int16(signal_N: np.ndarray) -> np.ndarray:
  # libsndfile maps int16 to float as x / 32768, so this inverts it exactly.
  scaled = np.round(signal_N * 32768.0)
  return np.clip(scaled, -32768, 32767).astype(np.int16)


def channels_last(samples: np.ndarray, name: str = 'audio') -> np.ndarray:
  """An in-memory signal as [N] or [N, C], accepting [C, N] too.

  soundfile gives [N, C]; torchaudio and `librosa.load(mono=False)` give
  [C, N]. The channel axis is the one of at most MAX_CHANNELS entries,
  which must be shorter than the other.

  Args:
    samples: [N], [N, C] or [C, N].
    name: how messages refer to the input.

  Raises:
    AudioError: not 1-D or 2-D, or 2-D with no clear channel axis.
  """
  if samples.ndim == 1:
    return samples
  if samples.ndim != 2:
    raise AudioError(
      f'{name}: audio must be [N], [N, channels] or [channels, N], got '
      f'shape {samples.shape}'
    )
  rows, cols = samples.shape
  if cols <= MAX_CHANNELS < rows:
    return samples
  if rows <= MAX_CHANNELS < cols:
    return samples.T
  raise AudioError(
    f'{name}: cannot tell channels from samples in shape {samples.shape}: '
    f'give [N], [N, channels] or [channels, N] with at most {MAX_CHANNELS} '
    'channels and more samples than channels'
  )


def to_mono(
  samples: np.ndarray,
  sample_rate: int,
  target_rate: int = 16000,
  *,
  name: str = 'audio',
  warn: Warn | None = None,
) -> np.ndarray:
  """Converts a signal to mono int16 at `target_rate` (the module's rule).

  The one conversion every input goes through, files (`read_audio`) and
  arrays (`Recognizer.transcribe`) alike. A 16 kHz mono int16 signal comes
  back unchanged.

  Args:
    samples: [N] or [N, channels] (see `channels_last` for [C, N]); int16,
      or float in [-1, 1] (int16-scale floats are recognized).
    sample_rate: its rate in Hz.
    target_rate: the rate of the result in Hz.
    name: how messages refer to the input (a path, 'array 3').
    warn: receives warnings (clipping, rescaling); default: Python's
      `warnings` with category `AudioWarning`.

  Returns:
    samples_N: int16 mono samples at `target_rate`.

  Raises:
    AudioError (a ValueError): wrong rank or dtype, no samples, or samples
      that are not finite or on no known scale; the message names `name`.
  """
  warn = warn or _default_warn
  if samples.ndim not in (1, 2):
    raise AudioError(
      f'{name}: audio must be [N] or [N, channels], got shape {samples.shape}'
    )
  if samples.size == 0:
    raise AudioError(f'{name}: audio holds no samples')
  if samples.dtype == np.int16:
    if samples.ndim == 1 and sample_rate == target_rate:
      return samples
    signal = samples.astype(np.float32) / np.float32(32768)
  elif np.issubdtype(samples.dtype, np.floating):
    signal = _float_signal(samples.astype(np.float32), name, warn)
  else:
    raise AudioError(
      f'{name}: audio must be int16 or float, got {samples.dtype}'
    )
  signal_N = signal.mean(axis=1) if signal.ndim == 2 else signal
  _clip_warning(signal_N, name, warn)
  if sample_rate != target_rate:
    signal_N = soxr.resample(signal_N, sample_rate, target_rate, quality='HQ')
  return _to_int16(signal_N)


def _check_file(path: str) -> None:
  """Names the common reasons a path holds no audio before a reader's
  generic message (libsndfile says 'System error' for a missing file)."""
  if not os.path.exists(path):
    raise AudioError(f'{path}: no such file')
  if os.path.isdir(path):
    raise AudioError(f'{path}: is a directory, not an audio file')
  if os.path.getsize(path) == 0:
    raise AudioError(f'{path}: empty file (0 bytes)')


def read_audio(
  path: str | os.PathLike[str],
  sample_rate: int = 16000,
  *,
  pcm_sample_rate: int = PCM_SAMPLE_RATE,
  warn: Warn | None = None,
) -> np.ndarray:
  """Reads an audio file as mono int16 samples at `sample_rate`.

  `.pcm`/`.raw` files are headerless signed 16-bit little-endian mono at
  `pcm_sample_rate` (KsponSpeech), unless they start with a container
  signature (`sniff_container`): then they are read as that container,
  with a warning. Every other file is read by libsndfile (WAV, FLAC, Ogg
  Vorbis/Opus, MP3, AIFF, CAF, ...), with a warning when its content is
  not the format its extension names. Then `to_mono`'s rule applies.

  Args:
    path: the audio file.
    sample_rate: rate of the returned samples, in Hz.
    pcm_sample_rate: rate of headerless PCM files, in Hz.
    warn: receives warnings; default: Python's `warnings` (`AudioWarning`).

  Returns:
    samples_N: int16 array of the mono signal at `sample_rate`.

  Raises:
    AudioError: the file is missing, unreadable, corrupt, has an odd byte
      count (PCM), holds no samples or non-finite ones. The message names
      the file.
  """
  warn = warn or _default_warn
  path = os.fspath(path)
  _check_file(path)
  extension = os.path.splitext(path)[1].lower()
  if extension in PCM_EXTENSIONS:
    try:
      with open(path, 'rb') as f:
        data = f.read()
    except OSError as e:
      raise AudioError(f'{path}: cannot read audio file: {e}') from e
    container = sniff_container(data[:_SNIFF_BYTES])
    if container is None:
      samples, rate = _pcm_samples(path, data), pcm_sample_rate
    else:
      warn(
        f'{path}: content is {container}, not headerless PCM as the '
        f'{extension} extension says; read as {container}'
      )
      samples, rate, _ = _soundfile_samples(path, data)
  else:
    samples, rate, fmt = _soundfile_samples(path)
    named = [f for f, exts in FORMAT_EXTENSIONS.items() if extension in exts]
    if named and fmt not in named:
      warn(
        f'{path}: content is {fmt}, not what the {extension} extension '
        f'says; read as {fmt}'
      )
  if samples.size == 0:
    raise AudioError(f'{path}: audio file holds no samples')
  return to_mono(samples, rate, sample_rate, name=path, warn=warn)


# ------------------------------------------------------------- silence --


def duration(
  path: str | os.PathLike[str], *, pcm_sample_rate: int = PCM_SAMPLE_RATE
) -> float:
  """Seconds of audio in a file, from its header (or size, for PCM).

  Raises:
    AudioError: the file cannot be read (naming it).
  """
  path = os.fspath(path)
  _check_file(path)
  try:
    if os.path.splitext(path)[1].lower() in PCM_EXTENSIONS:
      with open(path, 'rb') as f:
        if sniff_container(f.read(_SNIFF_BYTES)) is None:
          return os.path.getsize(path) / 2 / pcm_sample_rate
    return float(sf.info(path).duration)
  except (sf.LibsndfileError, RuntimeError, OSError) as e:
    raise AudioError(f'{path}: cannot read audio file: {e}') from e


def read_blocks(
  path: str | os.PathLike[str],
  sample_rate: int = 16000,
  *,
  block_seconds: float = 30.0,
  pcm_sample_rate: int = PCM_SAMPLE_RATE,
  warn: Warn | None = None,
) -> Iterator[np.ndarray]:
  """`read_audio` in consecutive blocks, for recordings too long to hold.

  The same formats, container sniffing and conversion rule as
  `read_audio`, applied block by block (the int16-scale test of rule 3 too,
  so a file whose float samples change scale midway is not one this
  handles), with one streaming resampler (`soxr.ResampleStream`) so the
  blocks join without seams. Only one block is ever in memory as float.

  Args:
    path: the audio file.
    sample_rate: rate of the returned samples, in Hz.
    block_seconds: length of the blocks read, in seconds of the file.
    pcm_sample_rate: rate of headerless PCM files, in Hz.
    warn: receives warnings; default: Python's `warnings` (`AudioWarning`).

  Yields:
    int16 mono blocks at `sample_rate` whose concatenation is what
    `read_audio` returns (up to the resampler's rounding).

  Raises:
    AudioError: as `read_audio`, when the block that shows it is read.
  """
  warn = warn or _default_warn
  path = os.fspath(path)
  _check_file(path)
  extension = os.path.splitext(path)[1].lower()
  headerless = False
  if extension in PCM_EXTENSIONS:
    try:
      with open(path, 'rb') as f:
        head = f.read(_SNIFF_BYTES)
    except OSError as e:
      raise AudioError(f'{path}: cannot read audio file: {e}') from e
    container = sniff_container(head)
    headerless = container is None
    if not headerless:
      warn(
        f'{path}: content is {container}, not headerless PCM as the '
        f'{extension} extension says; read as {container}'
      )
  if headerless:
    if os.path.getsize(path) % 2:
      raise AudioError(f'{path}: an odd byte count, not 16-bit PCM')
    rate = pcm_sample_rate
    frames = max(1, int(block_seconds * rate))
    raw = np.memmap(path, dtype='<i2', mode='r')
    blocks = (
      raw[i : i + frames].astype(np.float32)[:, None] / np.float32(32768)
      for i in range(0, raw.size, frames)
    )
  else:
    try:
      sound = sf.SoundFile(path)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
      raise AudioError(f'{path}: cannot read audio file: {e}') from e
    rate = sound.samplerate
    frames = max(1, int(block_seconds * rate))
    blocks = sound.blocks(blocksize=frames, dtype='float32', always_2d=True)
  resampler = None
  if rate != sample_rate:
    resampler = soxr.ResampleStream(rate, sample_rate, 1, dtype='float32')
  empty = True
  try:
    for block in blocks:
      empty = False
      signal_N = _float_signal(block, path, warn).mean(axis=1)
      _clip_warning(signal_N, path, warn)
      if resampler is not None:
        signal_N = resampler.resample_chunk(signal_N)
      yield _to_int16(signal_N)
    if empty:
      raise AudioError(f'{path}: audio file holds no samples')
    if resampler is not None:
      tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
      if tail.size:
        yield _to_int16(tail)
  except (sf.LibsndfileError, RuntimeError) as e:
    raise AudioError(f'{path}: cannot read audio file: {e}') from e
  finally:
    if not headerless:
      sound.close()


def is_silent(samples_N: np.ndarray) -> bool:
  """Whether an int16 signal is silence: its mean-removed peak < -60 dBFS.

  Removing the mean makes a constant (DC) signal silent, as it sounds.
  """
  if samples_N.size == 0:
    return True
  x = samples_N.astype(np.float64)
  peak = float(np.max(np.abs(x - x.mean())))
  return peak < 32768 * 10 ** (SILENCE_PEAK_DBFS / 20)


# Frames of the silence decision: librosa.effects.trim's defaults, which
# KoSpeech's del_silence (librosa.effects.split) uses.
_TRIM_FRAME, _TRIM_HOP = 2048, 512
# Noise floor: this percentile of the frame powers, but no lower than
# _TRIM_FLOOR_DBFS; a frame within _TRIM_MARGIN_DB of it is background.
_TRIM_FLOOR_PERCENTILE = 10
_TRIM_FLOOR_DBFS = -100.0
_TRIM_MARGIN_DB = 10.0
# Names the trimming rule (`trim_bounds`); datasets record it with the trim
# offsets they store. Change it whenever the rule changes.
TRIM_RULE = 'edges, top_db and noise floor, v2'


def frame_powers(
  x_N: np.ndarray, frame: int = _TRIM_FRAME, hop: int = _TRIM_HOP
) -> np.ndarray:
  """Mean square per centered frame, each frame's own mean removed.

  librosa.feature.rms's frames (`frame` samples every `hop`, centered,
  zero padding, divided by `frame`), so a zero-mean signal gets its
  values squared; a constant offset, in part of a file or all of it, adds
  nothing. Plain numpy: librosa's own first call compiles numba kernels
  (seconds, tens of seconds with an empty numba cache).

  Args:
    x_N: float mono signal.
    frame, hop: frame length and hop in samples.

  Returns:
    float64 [1 + N // hop].
  """
  n = x_N.size
  # Frame f covers samples [f * hop - frame / 2, f * hop + frame / 2) of
  # the zero-padded signal: clipped to the signal, the padding adds nothing
  # to the running sums (exactly: adding 0.0 is exact).
  starts = np.arange(0, n + 1, hop) - frame // 2
  lo, hi = np.clip(starts, 0, n), np.clip(starts + frame, 0, n)
  x_N = x_N.astype(np.float64)
  sums = [np.concatenate([[0.0], np.cumsum(v)]) for v in (x_N, x_N * x_N)]
  total, squares = (c[hi] - c[lo] for c in sums)
  return (squares - total**2 / np.maximum(hi - lo, 1)) / frame


def trim_bounds(samples_N: np.ndarray, top_db: float = 30) -> tuple[int, int]:
  """Where the speech of a signal starts and ends: `trim_silence`'s slice.

  A frame is silent only when it is both `top_db` below the loudest frame
  (KoSpeech's rule) and within 10 dB of the background level (the 10th
  percentile of frame powers, at least -100 dBFS), frame powers taken
  with each frame's mean removed (a DC offset is no sound). The span runs
  from the first non-silent frame to the last, as `librosa.effects.trim`
  does with 2048-sample frames and a 512 hop. This rule is named by
  TRIM_RULE; the dataset builders store its result (`las_jax.data`).

  Args:
    samples_N: int16 (or float) mono signal.
    top_db: threshold below the peak frame power, in dB.

  Returns:
    (start, end) sample offsets, 0 <= start <= end <= N; start == end
    when every frame is silent (and for an empty signal).
  """
  if samples_N.size == 0:
    return 0, 0
  scale = 32768.0 if samples_N.dtype == np.int16 else 1.0
  power_F = frame_powers(samples_N.astype(np.float64) / scale)
  below_peak_F = power_F <= power_F.max() * 10 ** (-top_db / 10)
  floor = max(
    float(np.percentile(power_F, _TRIM_FLOOR_PERCENTILE)),
    10 ** (_TRIM_FLOOR_DBFS / 10),
  )
  background_F = power_F <= floor * 10 ** (_TRIM_MARGIN_DB / 10)
  kept = np.flatnonzero(~(below_peak_F & background_F))
  if kept.size == 0:
    return 0, 0
  start = int(kept[0]) * _TRIM_HOP
  end = min(samples_N.size, (int(kept[-1]) + 1) * _TRIM_HOP)
  return start, end


def trim_silence(samples_N: np.ndarray, top_db: float = 30) -> np.ndarray:
  """Drops leading and trailing silence; never anything in between.

  KoSpeech's `del_silence` keeps the frames within `top_db` of the loudest
  frame and concatenates them, deleting interior pauses and any speech 30
  dB below a beep, click or nearer talker elsewhere in the file. Here only
  the silence before the first and after the last non-silent frame goes;
  `trim_bounds` gives the rule.

  Args:
    samples_N: int16 (or float) mono signal.
    top_db: threshold below the peak frame power, in dB.

  Returns:
    A slice of the input (same dtype); empty when every frame is silent.
  """
  start, end = trim_bounds(samples_N, top_db)
  return samples_N[start:end]


# The background `trim_bounds` keeps around a sound that starts and ends on
# its hop grid, with silence before and after: the first kept frame is the
# first whose window (half a frame each side of its centre) reaches the
# sound, one hop after the last that does not; the last kept frame's hop
# ends half a frame past the sound. So every trimmed training utterance
# has background before its first sound and after its last; `add_margins`
# gives inference input the same where its sound reaches an end.
TRIM_LEAD_SAMPLES = _TRIM_FRAME // 2 - _TRIM_HOP
TRIM_TRAIL_SAMPLES = _TRIM_FRAME // 2


def _variance(x_N: np.ndarray) -> float:
  return float(np.var(x_N.astype(np.float64))) if x_N.size else 0.0


def background(samples_N: np.ndarray, n: int) -> np.ndarray:
  """`n` samples of a signal's quietest stretch: its background.

  The stretch of one trimming hop (512 samples, 32 ms at 16 kHz) of least
  variance, at any offset, repeated to `n` samples; the whole signal when
  it is shorter. So short that even speech without pauses has one in a
  stop closure or between words, where it is digital silence for
  synthetic speech and the room's noise (DC offset included) for a
  recording: the stretch joins the signal without a step in level.

  Args:
    samples_N: int16 (or float) mono signal, not empty.
    n: samples wanted.

  Returns:
    [n] samples of `samples_N`'s dtype.
  """
  x = samples_N.astype(np.float64)
  width = min(_TRIM_HOP, x.size)
  sums = [np.concatenate([[0.0], np.cumsum(v)]) for v in (x, x * x)]
  total, squares = (c[width:] - c[:-width] for c in sums)
  quietest = int(np.argmin(squares - total**2 / width))
  return np.resize(samples_N[quietest : quietest + width], n)


def add_margins(
  samples_N: np.ndarray, start: int, end: int
) -> tuple[np.ndarray, int]:
  """`samples_N[start:end]` with the background trimming leaves around it.

  Where the span starts at the signal's first sample and that sample's
  hop (512 samples) is sound, more than 10 dB above the `background` (the
  margin by which `trim_bounds` tells background from sound),
  TRIM_LEAD_SAMPLES of that background go in front; likewise
  TRIM_TRAIL_SAMPLES after a span that ends in sound at the last sample.
  That is what `trim_bounds` keeps of a recording of the same sound with
  silence around it (exactly so for a digitally silent pause and a sound
  that starts and ends on the hop grid). A side with room left by
  trimming, or with background at the edge (a noisy recording that
  trimming keeps whole), is left as it is.

  Args:
    samples_N: int16 (or float) mono signal.
    start, end: the span kept, 0 <= start < end <= N (`trim_bounds`, or
      the whole signal).

  Returns:
    (the span with its margins, samples added in front).
  """
  fill_N = background(samples_N, max(TRIM_LEAD_SAMPLES, TRIM_TRAIL_SAMPLES))
  sound = _variance(fill_N) * 10 ** (_TRIM_MARGIN_DB / 10)
  lead = trail = 0
  if start == 0 and _variance(samples_N[:_TRIM_HOP]) > sound:
    lead = TRIM_LEAD_SAMPLES
  if end == samples_N.size and _variance(samples_N[-_TRIM_HOP:]) > sound:
    trail = TRIM_TRAIL_SAMPLES
  out_N = np.concatenate([fill_N[:lead], samples_N[start:end], fill_N[:trail]])
  return out_N, lead
