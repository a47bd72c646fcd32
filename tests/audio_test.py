"""Tests for las_jax.audio: formats, resampling, down-mixing, errors."""

import numpy as np
import pytest
import soundfile as sf

from las_jax import audio


def _sine(freq, rate, seconds, amplitude=0.5):
  t = np.arange(int(rate * seconds)) / rate
  return amplitude * np.sin(2 * np.pi * freq * t)


def _int16(signal):
  return np.round(signal * 32767).astype(np.int16)


def _peak_hz(samples, rate):
  spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
  return np.argmax(spectrum) * rate / len(samples)


@pytest.mark.parametrize(
  'name,subtype',
  [('a.wav', 'PCM_16'), ('a.flac', 'PCM_16'), ('a.WAV', 'PCM_16')],
)
def test_16k_mono_files_round_trip_exactly(tmp_path, name, subtype):
  samples = _int16(_sine(440, 16000, 0.5))
  path = tmp_path / name
  sf.write(path, samples, 16000, subtype=subtype)
  out = audio.read_audio(path)
  assert out.dtype == np.int16
  np.testing.assert_array_equal(out, samples)


@pytest.mark.parametrize('name', ['a.pcm', 'a.raw', 'a.PCM'])
def test_headerless_pcm_is_little_endian_int16(tmp_path, name):
  samples = np.array([0, 1, -1, 32767, -32768, 258], np.int16)
  path = tmp_path / name
  path.write_bytes(samples.astype('<i2').tobytes())
  np.testing.assert_array_equal(audio.read_audio(path), samples)
  # 258 = 0x0102 is stored low byte first.
  assert path.read_bytes()[-2:] == b'\x02\x01'


def test_44k_stereo_becomes_16k_mono_with_frequency_kept(tmp_path):
  rate, seconds = 44100, 1.0
  left = _sine(1000, rate, seconds, 0.4)
  right = _sine(1000, rate, seconds, 0.2)
  path = tmp_path / 'stereo.wav'
  sf.write(path, np.stack([left, right], 1), rate, subtype='PCM_16')
  out = audio.read_audio(path)
  assert out.dtype == np.int16
  assert out.shape == (16000,)
  assert _peak_hz(out, 16000) == pytest.approx(1000, abs=2)
  # The down-mix is the mean of the channels: amplitude 0.3, away from
  # the edges where the resampling filter rings.
  middle = out[2000:-2000].astype(np.float64) / 32768
  assert np.max(np.abs(middle)) == pytest.approx(0.3, abs=0.01)


def test_resampling_matches_direct_synthesis(tmp_path):
  path = tmp_path / 'a.flac'
  sf.write(path, _int16(_sine(300, 8000, 0.5)), 8000, subtype='PCM_16')
  out = audio.read_audio(path)
  expected = _int16(_sine(300, 16000, 0.5))
  assert out.shape == expected.shape
  # Interior only: the filter's edge transients are not part of the tone.
  np.testing.assert_allclose(out[400:-400], expected[400:-400], atol=40)


def test_float_wav_and_other_target_rate(tmp_path):
  path = tmp_path / 'a.wav'
  sf.write(path, _sine(500, 16000, 0.5), 16000, subtype='FLOAT')
  out = audio.read_audio(path, sample_rate=8000)
  assert out.shape == (4000,)
  assert _peak_hz(out, 8000) == pytest.approx(500, abs=2)


def test_pcm_at_another_rate_is_resampled(tmp_path):
  path = tmp_path / 'a.pcm'
  path.write_bytes(_int16(_sine(440, 8000, 0.5)).tobytes())
  out = audio.read_audio(path, pcm_sample_rate=8000)
  assert out.shape == (8000,)
  assert _peak_hz(out, 16000) == pytest.approx(440, abs=2)


@pytest.mark.parametrize(
  'name,content,message',
  [
    ('odd.pcm', b'\x00\x01\x02', 'odd'),
    ('empty.pcm', b'', r'empty file \(0 bytes\)'),
    ('corrupt.wav', b'RIFF\x00\x00garbage' * 10, 'cannot read'),
    ('corrupt.flac', b'fLaC' + bytes(range(200)), 'cannot read'),
  ],
)
def test_bad_files_raise_audio_error_naming_the_file(
  tmp_path, name, content, message
):
  path = tmp_path / name
  path.write_bytes(content)
  with pytest.raises(audio.AudioError, match=message) as info:
    audio.read_audio(path)
  assert str(path) in str(info.value)
  assert isinstance(info.value, ValueError)


def test_empty_wav_raises(tmp_path):
  path = tmp_path / 'empty.wav'
  sf.write(path, np.zeros(0, np.int16), 16000, subtype='PCM_16')
  with pytest.raises(audio.AudioError, match='no samples'):
    audio.read_audio(path)


@pytest.mark.parametrize('name', ['missing.pcm', 'missing.wav'])
def test_missing_empty_and_directory_paths_say_so(tmp_path, name):
  for read in (audio.read_audio, audio.duration, audio.read_blocks):
    with pytest.raises(audio.AudioError, match=f'{name}: no such file'):
      list(read(tmp_path / name))
  (tmp_path / name).write_bytes(b'')
  with pytest.raises(audio.AudioError, match=r'empty file \(0 bytes\)'):
    audio.read_audio(tmp_path / name)
  with pytest.raises(audio.AudioError, match='is a directory'):
    audio.read_audio(tmp_path)


def test_trim_silence_keeps_the_speech_and_the_pauses_between():
  rate = 16000
  tone = _int16(_sine(440, rate, 0.512))  # 8192 samples: whole frames.
  silence = np.zeros(rate, np.int16)
  samples = np.concatenate([silence, tone, silence, tone, silence])
  out = audio.trim_silence(samples, top_db=30)
  assert out.dtype == np.int16
  # Leading and trailing silence go, to within one 2048-sample frame (the
  # decision is per 512-sample hop); the pause between the tones stays.
  first, last = rate, 2 * rate + 2 * len(tone)
  assert 2 * len(tone) + rate <= len(out) <= last - first + 2 * 2048
  offset = next(
    i
    for i in range(first - 2048, first + 1)
    if np.array_equal(samples[i : i + len(out)], out)
  )
  assert offset <= first and offset + len(out) >= last


def test_trim_silence_of_nothing():
  empty = np.zeros(0, np.int16)
  assert audio.trim_silence(empty).shape == (0,)


@pytest.mark.parametrize('subtype,rate', [('VORBIS', 22050), ('OPUS', 24000)])
def test_ogg_is_read_as_16k_mono(tmp_path, subtype, rate):
  # Lossy codecs: the right answer is the tone itself, within what the
  # encoder changes.
  path = tmp_path / 'a.ogg'
  sf.write(path, _sine(700, rate, 1.0, 0.4), rate, subtype=subtype)
  out = audio.read_audio(path)
  assert out.dtype == np.int16
  assert abs(out.shape[0] - 16000) <= 16  # Codec padding, < 1 ms.
  assert _peak_hz(out, 16000) == pytest.approx(700, abs=2)
  middle = out[2000:-2000].astype(np.float64) / 32768
  assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.4 / np.sqrt(2), rel=0.1)


def _stereo_tone_44k():
  """0.4 and 0.2 amplitude 300 Hz channels: their mean is a 0.3 tone."""
  t = np.arange(44100) / 44100
  tone = np.sin(2 * np.pi * 300 * t)
  return np.stack([0.4 * tone, 0.2 * tone], 1).astype(np.float32)


def test_array_conversion_gives_the_16k_mono_tone(tmp_path):
  # The right answer is synthesized directly at 16 kHz: independent of
  # `to_mono`, which `read_audio` also goes through.
  expected = _int16(0.3 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000))
  path = tmp_path / 's.wav'
  sf.write(path, _stereo_tone_44k(), 44100, subtype='FLOAT')
  for out in (
    audio.to_mono(_stereo_tone_44k(), 44100, 16000),
    audio.read_audio(path),
  ):
    assert out.dtype == np.int16 and out.shape == expected.shape
    # Interior only: the resampling filter's edge transients.
    np.testing.assert_allclose(out[400:-400], expected[400:-400], atol=40)
  # 16 kHz mono int16 is returned as is; float is scaled as libsndfile
  # scales int16 (x / 32768), so the two round-trip exactly.
  samples = _int16(_sine(440, 16000, 0.1))
  assert audio.to_mono(samples, 16000) is samples
  np.testing.assert_array_equal(
    audio.to_mono(samples / 32768.0, 16000), samples
  )
  with pytest.raises(ValueError, match='int16 or float'):
    audio.to_mono(np.zeros(10, np.int32), 16000)
  with pytest.raises(ValueError, match='shape'):
    audio.to_mono(np.zeros((2, 2, 2), np.int16), 16000)


def _burst(seconds, seed, rate=16000):
  """Noise-like sound: a chirp under noise, peak near half scale."""
  rng = np.random.default_rng(seed)
  t = np.arange(int(rate * seconds)) / rate
  x = 0.3 * np.sin(2 * np.pi * (200 + 600 * t) * t)
  return _int16(x + 0.05 * rng.standard_normal(t.size))


@pytest.mark.parametrize('silence', [2048, 2560, 4096, 16000 - 16000 % 512])
def test_margins_are_what_trimming_keeps_around_the_same_sound(silence):
  """Sound from the first to the last sample gets exactly the background
  trimming keeps when the same sound was recorded with silence around it
  (`silence` samples, on the hop grid), whatever its length."""
  pause = np.zeros(1024, np.int16)
  sound = np.concatenate([_burst(0.384, 1), pause, _burst(0.256, 2)])
  assert sound.size % 512 == 0 and sound[0] and sound[-1]
  quiet = np.zeros(silence, np.int16)
  trained = audio.trim_silence(np.concatenate([quiet, sound, quiet]))
  out, lead = audio.add_margins(sound, 0, sound.size)
  assert lead == audio.TRIM_LEAD_SAMPLES == 512
  np.testing.assert_array_equal(out, trained)
  assert out.size == sound.size + 512 + audio.TRIM_TRAIL_SAMPLES


def test_margins_only_where_sound_reaches_an_edge():
  rng = np.random.default_rng(0)
  sound = _burst(0.5, 3)
  # Trimming left room on both sides: nothing added.
  quiet = np.zeros(8000, np.int16)
  padded = np.concatenate([quiet, sound, quiet])
  start, end = audio.trim_bounds(padded)
  out, lead = audio.add_margins(padded, start, end)
  assert lead == 0 and np.array_equal(out, padded[start:end])
  # Noise throughout, kept whole by trimming: its edges are background.
  noise = np.round(rng.standard_normal(32000) * 1000).astype(np.int16)
  noisy = noise.copy()
  noisy[8000 : 8000 + sound.size] += sound
  out, lead = audio.add_margins(noisy, 0, noisy.size)
  assert lead == 0 and np.array_equal(out, noisy)
  # Sound to the end of a noisy recording: the margin after it is a
  # stretch of the recording's own noise, not digital silence.
  cut = noisy[: 8000 + sound.size]
  out, lead = audio.add_margins(cut, 0, cut.size)
  assert lead == 0 and np.array_equal(out[: cut.size], cut)
  tail = out[cut.size :]
  assert tail.size == audio.TRIM_TRAIL_SAMPLES
  assert np.any(
    np.all(
      np.lib.stride_tricks.sliding_window_view(noise[:8000], 512) == tail[:512],
      axis=1,
    )
  )
