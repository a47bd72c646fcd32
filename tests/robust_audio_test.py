"""Audio that used to be misread silently (issue 14, items 1-9).

Every input is generated here (espeak-ng speech, numpy, soundfile) and the
right value is known: a converted file must give exactly the samples of its
PCM16 original; a file that cannot be used must be refused by name; a
conversion that changes the signal must be reported by name.
"""

import io
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from configs import default, tiny
from las_jax import audio, models
from las_jax.inference import inputs
from las_jax.inference.recognizer import Recognizer, min_samples

SR = 16000


@pytest.fixture(scope='module')
def speech():
  """Korean speech by espeak-ng: 16 kHz int16, peak at half scale."""
  wav = subprocess.run(
    ['espeak-ng', '-v', 'ko', '--stdout', '입증 책임을 다하는 사람'],
    capture_output=True,
    check=True,
  ).stdout
  x, rate = sf.read(io.BytesIO(wav), dtype='float32')
  x = soxr.resample(x, rate, SR)
  return np.round(x / np.max(np.abs(x)) * 16384).astype(np.int16)


def _read(path, **kwargs):
  """read_audio's samples and the warnings it gave."""
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    out = audio.read_audio(path, **kwargs)
  return out, [str(w.message) for w in caught]


def _config(model=None, **fields):
  config = default.get_config() if model is None else model.get_config()
  for dotted, value in fields.items():
    *path, name = dotted.split('__')
    node = config
    for key in path:
      node = node[key]
    node[name] = value
  return config


def _recognizer(**fields):
  """A Recognizer for `prepare` only: shapes, no weights, nothing compiled."""
  from flax import nnx

  from las_jax.text import Vocabulary

  config = _config(tiny, **fields)
  vocab = Vocabulary.build(['가나다'])
  model = nnx.eval_shape(
    lambda: models.build_model(config.model, len(vocab), nnx.Rngs(0))
  )
  return Recognizer(model, config, vocab)


# --------------------------------------------- 1. float samples, 16 kHz --

FLOAT_FILES = [
  ('WAV', 'FLOAT', 'wav'),
  ('WAV', 'DOUBLE', 'wav'),
  ('W64', 'FLOAT', 'w64'),
  ('RF64', 'DOUBLE', 'rf64'),
  ('AIFF', 'FLOAT', 'aiff'),
  ('CAF', 'FLOAT', 'caf'),
  ('AU', 'DOUBLE', 'au'),
  ('FLAC', 'PCM_24', 'flac'),
  ('WAV', 'PCM_32', 'wav'),
]


@pytest.mark.parametrize('fmt,subtype,ext', FLOAT_FILES)
def test_float_files_at_16k_mono_give_the_pcm16_samples(
  tmp_path, speech, fmt, subtype, ext
):
  path = tmp_path / f'a.{ext}'
  sf.write(path, speech / 32768, SR, format=fmt, subtype=subtype)
  out, notes = _read(path)
  np.testing.assert_array_equal(out, speech)
  assert notes == []


def test_float_arrays_give_the_pcm16_samples(speech):
  for dtype in (np.float32, np.float64):
    np.testing.assert_array_equal(
      audio.to_mono((speech / 32768).astype(dtype), SR), speech
    )


def test_manifest_build_stores_float_audio_as_its_pcm16_samples(
  tmp_path, speech
):
  from las_jax import data

  corpus = tmp_path / 'corpus'
  corpus.mkdir()
  sf.write(corpus / 'f.wav', speech / 32768, SR, subtype='FLOAT')
  sf.write(corpus / 'i.wav', speech, SR, subtype='PCM_16')
  (corpus / 'train.tsv').write_text('f.wav\t가나\ni.wav\t다라\n')
  builder = data.build_dataset('manifest', tmp_path / 'tfds', corpus, 'none')
  source = builder.as_data_source('train')
  for i in range(2):
    np.testing.assert_array_equal(source[i]['audio'], speech)
  assert data.read_skipped(builder.data_dir, 'train') == []


# ------------------------------------------------- 2. past full scale --


def _clipped(x):
  return np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)


@pytest.mark.parametrize('rate,channels', [(SR, 1), (44100, 2), (8000, 1)])
def test_past_full_scale_is_clipped_never_wrapped(tmp_path, rate, channels):
  t = np.arange(rate) / rate
  x = 1.6 * np.sin(2 * np.pi * 200 * t)  # +4 dBFS
  x = np.stack([x] * channels, 1) if channels > 1 else x
  path = tmp_path / 'loud.wav'
  sf.write(path, x.astype(np.float32), rate, subtype='FLOAT')
  out, notes = _read(path)
  mono = x.mean(1) if channels > 1 else x
  if rate == SR:
    np.testing.assert_array_equal(out, _clipped(mono))
  else:
    # Resampled: the same rule after soxr, so the crests sit at the rails.
    assert out.max() == 32767 and out.min() == -32768
  # The sign of every sample follows the signal (a wrap-around flips it).
  reference = _clipped(soxr.resample(mono, rate, SR) if rate != SR else mono)
  agree = np.sign(out.astype(int)) == np.sign(reference.astype(int))
  assert agree[np.abs(reference) > 1000].all()
  [note] = notes
  assert str(path) in note and 'past full scale' in note
  assert 'clipped' in note and '+4.1 dBFS' in note


def test_loud_vorbis_is_clipped_like_its_float_decode(tmp_path, speech):
  path = tmp_path / 'loud.ogg'
  sf.write(path, speech / 32768 * 2.5, SR, format='OGG', subtype='VORBIS')
  decoded, rate = sf.read(path, dtype='float32')  # libsndfile's decode.
  assert rate == SR and np.abs(decoded).max() > 1.0
  out, notes = _read(path)
  np.testing.assert_array_equal(out, _clipped(decoded))
  assert len(notes) == 1 and 'past full scale' in notes[0]


# ------------------------------------------ 3. content vs. extension --


@pytest.mark.parametrize(
  'fmt,subtype,ext',
  [
    ('WAV', 'PCM_16', 'wav'),
    ('WAV', 'FLOAT', 'wav'),
    ('FLAC', 'PCM_16', 'flac'),
    ('OGG', 'VORBIS', 'ogg'),
    ('W64', 'PCM_16', 'w64'),
    ('RF64', 'PCM_16', 'rf64'),
    ('AIFF', 'PCM_16', 'aiff'),
    ('CAF', 'PCM_16', 'caf'),
    ('AU', 'PCM_16', 'au'),
    ('NIST', 'PCM_16', 'sph'),
    ('MP3', 'MPEG_LAYER_III', 'mp3'),
  ],
)
@pytest.mark.parametrize('lie', ['pcm', 'raw'])
def test_containers_named_pcm_are_read_as_containers(
  tmp_path, speech, fmt, subtype, ext, lie
):
  stereo = np.stack([speech, speech // 2], 1) / 32768
  honest, liar = tmp_path / f'a.{ext}', tmp_path / f'a.{lie}'
  sf.write(honest, stereo, 44100, format=fmt, subtype=subtype)
  liar.write_bytes(honest.read_bytes())
  expected, _ = _read(honest)
  out, notes = _read(liar)
  np.testing.assert_array_equal(out, expected)
  assert notes == [
    f'{liar}: content is {fmt}, not headerless PCM as the .{lie} '
    f'extension says; read as {fmt}'
  ]


def test_headerless_pcm_is_never_taken_for_a_container(tmp_path):
  # Near-silent starts hold -1 (FF FF, an MPEG frame sync) and other byte
  # patterns; loud ones anything. None may look like a container.
  rng = np.random.default_rng(0)
  for scale in (1, 2, 30, 3000, 30000):
    for _ in range(200):
      x = np.round(rng.normal(0, scale, 4096)).clip(-32768, 32767)
      assert audio.sniff_container(x.astype('<i2').tobytes()) is None
  # One valid MPEG-1 layer III frame header (FF FB 90 64: 128 kbit/s,
  # 44.1 kHz) at the start of PCM, where the next frame would begin.
  header = np.frombuffer(b'\xff\xfb\x90\x64', '<i2')
  x = np.round(rng.normal(0, 3000, 4096)).astype('<i2')
  x[:2] = header
  assert audio.sniff_container(x.tobytes()) is None
  path = tmp_path / 'a.pcm'
  x = np.full(SR, -1, np.int16)
  x[::3] = 0
  path.write_bytes(x.astype('<i2').tobytes())
  out, notes = _read(path)
  np.testing.assert_array_equal(out, x)
  assert notes == []


def test_a_container_under_another_containers_extension_is_named(
  tmp_path, speech
):
  path = tmp_path / 'a.wav'
  sf.write(path, speech, SR, format='FLAC', subtype='PCM_16')
  out, notes = _read(path)
  np.testing.assert_array_equal(out, speech)
  assert notes == [
    f'{path}: content is FLAC, not what the .wav extension says; read as FLAC'
  ]


# ------------------------------------------------ 4. channels first --


def test_channels_first_arrays_are_read_like_channels_last():
  rng = np.random.default_rng(1)
  for channels in (1, 2, 6, 8):
    x_NxC = rng.uniform(-0.5, 0.5, (44100, channels)).astype(np.float32)
    np.testing.assert_array_equal(
      audio.to_mono(audio.channels_last(x_NxC.T), 44100),
      audio.to_mono(audio.channels_last(x_NxC), 44100),
    )
  mono = rng.uniform(-0.5, 0.5, 1000).astype(np.float32)
  assert audio.channels_last(mono[None]).shape == (1000, 1)


def test_recognizer_reads_channels_first_arrays():
  rng = np.random.default_rng(2)
  x_NxC = rng.uniform(-0.5, 0.5, (44100, 2)).astype(np.float32)
  rec = _recognizer()
  channels_first = rec.load(x_NxC.T, 44100)
  np.testing.assert_array_equal(channels_first, rec.load(x_NxC, 44100))
  assert channels_first.shape == (16000,)  # Not 2 samples.
  with pytest.raises(audio.AudioError, match='array: cannot tell channels'):
    rec.load(np.zeros((16, 16000), np.float32))


@pytest.mark.parametrize('shape', [(4, 4), (16, 16000), (16000, 16), (2, 2, 9)])
def test_ambiguous_array_shapes_are_refused_with_their_shape(shape):
  with pytest.raises(audio.AudioError, match='array 3') as info:
    audio.channels_last(np.zeros(shape, np.float32), 'array 3')
  assert str(shape) in str(info.value)


@pytest.mark.parametrize('peak', [2.5, 10.0, 200.0])
def test_hot_float_files_are_clipped_not_rescaled(tmp_path, speech, peak):
  """A float file mixed far past full scale (not whole numbers) is [-1, 1]
  audio gone too loud: clipped, never read as int16-scale and silenced."""
  x = (speech / np.abs(speech).max() * peak).astype(np.float32)
  path = tmp_path / 'hot.wav'
  sf.write(path, x, SR, subtype='FLOAT')
  out, notes = _read(path)
  np.testing.assert_array_equal(out, _clipped(x))
  assert len(notes) == 1 and 'past full scale' in notes[0], notes


# --------------------------------------- 5. float range, non-finite --


def test_int16_scale_float_arrays_are_rescaled_with_a_warning(speech):
  notes = []
  out = audio.to_mono(
    speech.astype(np.float32), SR, name='array 0', warn=notes.append
  )
  np.testing.assert_array_equal(out, speech)
  [note] = notes
  assert note.startswith('array 0: float samples reach 16384')
  assert 'int16-scale values and divided by 32768' in note


def test_int16_scale_float_files_too(tmp_path, speech):
  path = tmp_path / 'scaled.wav'
  sf.write(path, speech.astype(np.float32), SR, subtype='FLOAT')
  out, notes = _read(path)
  np.testing.assert_array_equal(out, speech)
  assert len(notes) == 1 and 'int16-scale' in notes[0]
  assert str(path) in notes[0]


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_refused_by_name(tmp_path, speech, bad):
  x = (speech / 32768).astype(np.float32)
  x[[10, 500]] = bad
  with pytest.raises(audio.AudioError, match='array 2: 2 of') as info:
    audio.to_mono(x, SR, name='array 2')
  assert 'not finite' in str(info.value)
  path = tmp_path / 'nan.wav'
  sf.write(path, x, SR, subtype='FLOAT')
  with pytest.raises(audio.AudioError, match='not finite') as info:
    audio.read_audio(path)
  assert str(path) in str(info.value)


def test_beyond_any_scale_is_refused():
  with pytest.raises(audio.AudioError, match='beyond both'):
    audio.to_mono(np.array([0.0, 1e6, -3.0], np.float32), SR)


# --------------------------------------------------- 6. too short --


@pytest.mark.parametrize(
  'config,samples',
  [
    (_config(), 480),  # VGG: 4 frames of 10 ms, 30 ms.
    (_config(tiny), 1120),  # ... and one pyramid layer: 8 frames.
    (_config(model__name='deepspeech2', model__extractor='ds2'), 320),
    (_config(features__frame_shift_ms=20), 960),
  ],
)
def test_min_samples_give_exactly_one_encoder_frame(config, samples):
  from las_jax import features

  assert min_samples(config) == samples
  frames = features.frame_lengths(
    np.array([samples - 1, samples]), config.features
  )
  fewer, enough = models.encoder_lengths(config.model, frames)
  n_fft, _ = features.stft_params(config.features)
  # One encoder frame; one sample less gives none, or less than a window.
  assert enough >= 1 and (fewer == 0 or samples == n_fft)


@pytest.mark.parametrize(
  'name,extractor', [('las', 'vgg'), ('deepspeech2', 'ds2')]
)
def test_encoder_lengths_are_what_the_models_compute(name, extractor):
  import jax
  import jax.numpy as jnp
  from flax import nnx

  config = _config(
    tiny,
    model__name=name,
    model__extractor=extractor,
    model__vgg_channels=(2, 2),
    model__encoder_hidden=2,
    model__encoder_layers=3,
    model__pyramid_layers=(0, 2),
    model__input_dim=8,
  )
  frames_B = np.array([1, 3, 4, 7, 8, 15, 16, 17, 31, 33])

  @jax.jit  # One program builds and runs the model: fast on a CPU.
  def encoded_lengths(frames_B):
    model = models.build_model(config.model, 10, nnx.Rngs(0))
    feats = jnp.ones((frames_B.size, 33, 8), jnp.float32)
    return model.encode(feats, frames_B).enc_lengths_B

  np.testing.assert_array_equal(
    encoded_lengths(frames_B), models.encoder_lengths(config.model, frames_B)
  )


def test_too_short_input_is_refused_before_and_after_trimming(speech):
  rec = _recognizer(
    model__encoder_layers=3, model__pyramid_layers=(0, 1, 2)
  )  # 32 frames: 310 ms.
  assert rec.min_samples == 4960
  with pytest.raises(
    audio.AudioError, match=r'short: 300 ms of audio, shorter'
  ):
    rec.prepare(speech[:4800], 'short')
  blip = np.zeros(2 * SR, np.int16)
  blip[SR : SR + 800] = speech[8000:8800]
  with pytest.raises(
    audio.AudioError, match=r'blip: \d+ ms of audio after trimming silence'
  ):
    rec.prepare(blip, 'blip')


# ---------------------------------------------------- 7. trimming --


def _slice_of(whole, part):
  """Start of `part` inside `whole` (a slice of it), else None."""
  for start in range(whole.size - part.size + 1):
    if whole[start] == part[0] and np.array_equal(
      whole[start : start + part.size], part
    ):
      return start
  return None


def _librosa_trim(x):
  """KoSpeech's top_db trim of `x` alone: (start, end) in samples.

  Compare within one 512-sample hop: frames start at the file's start.
  """
  import librosa  # The reference; deferred, a slow import.

  return librosa.effects.trim(x.astype(np.float32), top_db=30)[1]


def test_trimming_keeps_speech_far_below_a_beep(speech):
  rng = np.random.default_rng(0)
  t = np.arange(int(0.1 * SR)) / SR
  beep = np.round(32000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
  quiet = (speech // 40).astype(np.int16)  # 38 dB below the beep.
  gap, tail = np.zeros(int(0.3 * SR), np.int16), np.zeros(SR // 2, np.int16)
  signal = np.concatenate([gap, beep, gap, quiet, tail])
  signal += rng.integers(-2, 3, signal.size).astype(np.int16)
  out = audio.trim_silence(signal, top_db=30)
  start = _slice_of(signal, out)
  assert start is not None  # A slice: nothing inside was removed.
  # The beep is kept, and of the quiet speech at least what trimming it
  # alone keeps (KoSpeech's rule deletes all of it: 30 dB below the beep).
  speech_start = signal.size - quiet.size - tail.size
  _, hi = _librosa_trim(signal[speech_start:])
  assert start <= gap.size
  assert start + out.size >= speech_start + hi - 512


def test_trimming_never_drops_interior_pauses(speech):
  pause = np.zeros(SR, np.int16)
  edge = np.zeros(SR // 4, np.int16)
  signal = np.concatenate([edge, speech, pause, speech // 50, edge])
  out = audio.trim_silence(signal, top_db=30)
  start = _slice_of(signal, out)
  assert start is not None  # A slice: nothing inside was removed.
  first_lo, _ = _librosa_trim(speech)
  _, last_hi = _librosa_trim(speech // 50)
  assert start <= edge.size + first_lo + 512
  end = edge.size + speech.size + pause.size + last_hi
  assert start + out.size >= end - 512


def test_trimming_matches_librosa_trim_where_that_is_safe(speech):
  edge = np.zeros(SR // 2, np.int16)
  signal = np.concatenate([edge, speech, edge])
  lo, hi = _librosa_trim(signal)
  out = audio.trim_silence(signal, top_db=30)
  start = _slice_of(signal, out)
  # KoSpeech's top_db frames (librosa), plus at most one 512-sample hop
  # kept on each side where a frame is 30 dB down but above the floor.
  assert lo - 512 <= start <= lo
  assert hi <= start + out.size <= hi + 512


def test_a_trim_that_removes_most_of_the_input_warns(speech):
  rec = _recognizer(input__trim_silence=True)
  silence = np.zeros(2 * SR, np.int16)
  signal = np.concatenate([silence, speech, silence])
  with pytest.warns(audio.AudioWarning, match=r'^clip: trimming silence kept'):
    out = rec.prepare(signal, 'clip')
  start = _slice_of(signal, out)
  lo, hi = _librosa_trim(speech)
  assert start <= silence.size + lo + 512
  assert start + out.size >= silence.size + hi - 512
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    rec.prepare(np.concatenate([silence[:SR], speech]), 'mostly speech')


# --------------------------------------------------- 8. DC silence --


def test_constant_and_dithered_offsets_are_silence(speech):
  rng = np.random.default_rng(0)
  for offset in (0, 1000, -20000):
    dc = np.full(SR, offset, np.int16)
    dither = dc + rng.integers(-3, 4, SR).astype(np.int16)
    assert audio.is_silent(dc) and audio.is_silent(dither)
  assert not audio.is_silent(speech + np.int16(3000))
  rec = _recognizer(input__trim_silence=True)
  with pytest.raises(audio.AudioError, match='dc: audio is silent'):
    rec.prepare(np.full(SR, 1000, np.int16), 'dc')


def test_trimming_ignores_a_dc_offset(speech):
  edge = np.zeros(SR // 2, np.int16)
  signal = np.concatenate([edge, speech, edge])
  out = audio.trim_silence(signal, top_db=30)
  shifted = audio.trim_silence(signal + np.int16(5000), top_db=30)
  assert _slice_of(signal, out) == _slice_of(signal + np.int16(5000), shifted)
  assert out.size == shifted.size < signal.size - SR // 2


# --------------------------------------------------- 9. directories --


def test_directories_take_every_readable_extension(tmp_path, speech):
  written = {
    'a.wav': ('WAV', 'PCM_16'),
    'b.wave': ('WAV', 'PCM_16'),
    'c.aif': ('AIFF', 'PCM_16'),
    'd.aiff': ('AIFF', 'PCM_24'),
    'e.mp3': ('MP3', 'MPEG_LAYER_III'),
    'f.opus': ('OGG', 'OPUS'),
    'g.oga': ('OGG', 'VORBIS'),
    'h.caf': ('CAF', 'PCM_16'),
    'sub/i.W64': ('W64', 'PCM_16'),
    'sub/j.au': ('AU', 'PCM_16'),
    'sub/k.sph': ('NIST', 'PCM_16'),
    'sub/l.flac': ('FLAC', 'PCM_16'),
  }
  for name, (fmt, subtype) in written.items():
    (tmp_path / name).parent.mkdir(exist_ok=True)
    sf.write(tmp_path / name, speech, SR, format=fmt, subtype=subtype)
  speech.astype('<i2').tofile(tmp_path / 'm.pcm')
  for name in ('notes.txt', 'list.json', 'sub/x.json', '.DS_Store', 'v.mat'):
    (tmp_path / name).write_text('not audio')
  found, passed_over = inputs.find_audio_files(str(tmp_path))
  names = sorted(Path(p).relative_to(tmp_path).as_posix() for p in found)
  assert names == sorted([*written, 'm.pcm'])
  assert passed_over == {'.txt': 1, '.json': 2, '': 1, '.mat': 1}
  for path in found:  # Each one reads, with no complaint.
    out, notes = _read(path)
    assert out.size > SR // 2 and notes == []
  _, _, [note] = inputs.path_items([str(tmp_path)])
  assert note == (
    f'{tmp_path}: 5 file(s) not read, their extension is not an audio '
    'format: 2 .json, 1 (no extension), 1 .mat, 1 .txt'
  )
