"""Tests for las_jax.features: librosa parity, padding, augmentation."""

import functools

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest

from configs import default
from las_jax import features

SR = 16000


@pytest.fixture
def cfg():
  return default.get_config().features


def _chirp_noise(n: int, seed: int = 0) -> np.ndarray:
  """int16 chirp 100 Hz -> 6 kHz plus noise, like a real-ish recording."""
  t = np.arange(n) / SR
  dur = n / SR
  x = 0.5 * np.sin(2 * np.pi * (100 * t + (6000 - 100) * t**2 / (2 * dur)))
  x += 0.05 * np.random.default_rng(seed).standard_normal(n)
  return np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)


def _librosa_log_mel(x_int16: np.ndarray) -> np.ndarray:
  """KoSpeech's librosa path on one utterance: [T, F].

  Its settings written out, not read from the code under test: 80 mel
  bins, 20 ms Hann windows (320 samples at 16 kHz), 10 ms hop (160),
  power spectrogram, dB below the utterance's peak clipped at 80.
  """
  mel = librosa.feature.melspectrogram(
    y=x_int16.astype(np.float32) / 32767,
    sr=16000,
    n_fft=320,
    hop_length=160,
    n_mels=80,
    window='hann',
    center=True,
    pad_mode='constant',
    power=2.0,
  )
  return librosa.power_to_db(mel, ref=np.max, amin=1e-10, top_db=80.0).T


def _rel_l2(a, b):
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_log_mel_matches_librosa(cfg):
  lengths = [21_337, 12_001]
  audio = np.zeros((2, 21_400), np.int16)
  for i, n in enumerate(lengths):
    audio[i, :n] = _chirp_noise(n, seed=i)
  feats, flen = jax.jit(functools.partial(features.log_mel, cfg=cfg))(
    audio, np.array(lengths)
  )
  feats = np.asarray(feats)
  for i, n in enumerate(lengths):
    ref = _librosa_log_mel(audio[i, :n])
    assert int(flen[i]) == ref.shape[0]
    assert _rel_l2(feats[i, : flen[i]], ref) < 1e-5  # Measured ~2e-7.
    np.testing.assert_array_equal(feats[i, flen[i] :], 0.0)


# librosa warns that n_fft exceeds short signals; the framing is still defined.
@pytest.mark.filterwarnings('ignore:n_fft=')
@pytest.mark.parametrize('n', [1, 100, 159, 160, 161, 319, 320, 321, 16_000])
def test_frame_lengths_match_librosa(cfg, n):
  audio = _chirp_noise(max(n, 400))[:n]
  ref = _librosa_log_mel(audio)
  assert int(features.frame_lengths(n, cfg)) == ref.shape[0]
  padded = np.zeros((1, n + 333), np.int16)
  padded[0, :n] = audio
  feats, flen = features.log_mel(padded, np.array([n]), cfg)
  assert int(flen[0]) == ref.shape[0]
  assert feats.shape[1] == features.num_frames(n + 333, cfg)


@pytest.mark.parametrize(
  'sample_rate, n_fft, num_mels, fmin, fmax',
  [
    (16000, 320, 80, 0.0, None),  # KoSpeech's.
    (16000, 320, 40, 0.0, None),
    (16000, 400, 80, 20.0, 7600.0),
    (22050, 512, 128, 0.0, None),
    (8000, 256, 23, 300.0, 3400.0),  # Both ends in the linear region.
  ],
)
def test_filterbank_is_librosas_bit_for_bit(
  sample_rate, n_fft, num_mels, fmin, fmax
):
  # Built without librosa (accelerator hosts need no numba): the same bits.
  mel_KxF, win_W = features._filterbank(
    sample_rate, n_fft, num_mels, fmin, fmax, 'hann'
  )
  want = librosa.filters.mel(
    sr=sample_rate, n_fft=n_fft, n_mels=num_mels, fmin=fmin, fmax=fmax
  )
  np.testing.assert_array_equal(mel_KxF, want.T)
  window = librosa.filters.get_window('hann', n_fft, fftbins=True)
  np.testing.assert_array_equal(win_W, window.astype(np.float32))


@pytest.mark.parametrize('window', ['hann', 'hamming', 'blackman', 'cosine'])
def test_window_is_scipys_bit_for_bit(window):
  # NumPy computes the common windows (scipy.signal is a slow import); the
  # float32 values must be scipy's periodic window at every length.
  import scipy.signal  # noqa: PLC0415

  for n_fft in range(1, 4097):
    np.testing.assert_array_equal(
      features.window_samples(window, n_fft),
      scipy.signal.get_window(window, n_fft, fftbins=True).astype(np.float32),
      err_msg=f'{window} {n_fft}',
    )


def test_frame_lengths_zero_for_padding_rows(cfg):
  np.testing.assert_array_equal(
    features.frame_lengths(np.array([0, 1, 160, 480]), cfg), [0, 1, 2, 4]
  )


def test_padding_does_not_change_valid_frames(cfg):
  n = 9_999
  x = _chirp_noise(n, seed=3)
  alone, flen_alone = features.featurize(
    None, x[None], np.array([n]), cfg, train=False
  )
  # Same utterance followed by garbage samples, batched with a longer one.
  batch = np.random.default_rng(1).integers(-3000, 3000, (2, 20_000))
  batch = batch.astype(np.int16)
  batch[1, :n] = x
  both, flen = features.featurize(
    None, batch, np.array([20_000, n]), cfg, train=False
  )
  assert int(flen[1]) == int(flen_alone[0])
  t = int(flen[1])
  np.testing.assert_allclose(both[1, :t], alone[0, :t], atol=1e-4)
  np.testing.assert_array_equal(both[1, t:], 0.0)


def test_padding_row_is_all_zero(cfg):
  audio = np.stack([_chirp_noise(4000), _chirp_noise(4000, 1)])
  feats, flen = features.featurize(
    jax.random.key(0), audio, np.array([4000, 0]), cfg, train=True
  )
  assert int(flen[1]) == 0
  np.testing.assert_array_equal(feats[1], 0.0)
  assert np.all(np.isfinite(feats))


@pytest.mark.parametrize('mode', ['utterance', 'channel'])
def test_normalize_uses_valid_frames_only(mode):
  rng = np.random.default_rng(0)
  x = rng.normal(3.0, 2.0, (2, 50, 4)).astype(np.float32)
  lengths = np.array([50, 20])
  x[1, 20:] = 0.0
  out = np.asarray(features.normalize(x, lengths, mode))
  axes = (0, 1) if mode == 'utterance' else (0,)
  for i, n in enumerate(lengths):
    np.testing.assert_allclose(out[i, :n].mean(axes), 0.0, atol=1e-5)
    np.testing.assert_allclose(out[i, :n].std(axes), 1.0, atol=1e-4)
    ref = (x[i, :n] - x[i, :n].mean(axes)) / x[i, :n].std(axes)
    np.testing.assert_allclose(out[i, :n], ref, atol=1e-4)
  np.testing.assert_array_equal(out[1, 20:], 0.0)
  with pytest.raises(ValueError, match='normalize'):
    features.normalize(x, lengths, 'global')


def test_reverse_time_keeps_padding_at_end():
  x = np.arange(2 * 6 * 1, dtype=np.float32).reshape(2, 6, 1) + 1
  x[1, 4:] = 0
  out = np.asarray(features.reverse_time(x, np.array([6, 4])))
  np.testing.assert_array_equal(out[0, :, 0], x[0, ::-1, 0])
  np.testing.assert_array_equal(out[1, :, 0], [10, 9, 8, 7, 0, 0])
  again = features.reverse_time(out, np.array([6, 4]))
  np.testing.assert_array_equal(again, x)


def _kospeech_masked_fraction(cfg, t, f, n, seed=0):
  """KoSpeech's SpecAugment loop in numpy: expected masked fraction."""
  rng = np.random.default_rng(seed)
  total = 0.0
  for _ in range(n):
    m = np.zeros((t, f), bool)
    for _ in range(cfg.num_time_masks):
      w = int(rng.uniform(0.0, t * cfg.time_mask_ratio))
      t0 = rng.integers(0, t - w + 1)
      m[t0 : t0 + w] = True
    for _ in range(cfg.num_freq_masks):
      w = int(rng.uniform(0.0, cfg.freq_mask_param))
      f0 = rng.integers(0, f - w + 1)
      m[:, f0 : f0 + w] = True
    total += m.mean()
  return total / n


def test_spec_augment_masked_fraction_matches_kospeech(cfg):
  b, t, f = 256, 600, cfg.num_mels
  ones = jnp.ones((b, t, f))
  out = features.spec_augment(jax.random.key(0), ones, jnp.full((b,), t), cfg)
  got = 1.0 - float(out.mean())
  want = _kospeech_masked_fraction(cfg, t, f, 2000)
  assert abs(got - want) < 0.015, (got, want)


def test_spec_augment_time_masks_stay_inside_lengths(cfg):
  cfg.num_freq_masks = 0
  b, t = 64, 300
  lengths = np.random.default_rng(0).integers(1, t, b)
  # Ones everywhere, padding included: a time mask on padding would show.
  out = np.asarray(
    features.spec_augment(jax.random.key(1), jnp.ones((b, t, 8)), lengths, cfg)
  )
  for i, n in enumerate(lengths):
    np.testing.assert_array_equal(out[i, n:], 1.0)
  assert (out == 0).any()


def test_spec_augment_keys(cfg):
  x = jax.random.normal(jax.random.key(9), (4, 200, cfg.num_mels))
  lengths = jnp.array([200, 150, 90, 10])
  a = features.spec_augment(jax.random.key(0), x, lengths, cfg)
  b = features.spec_augment(jax.random.key(0), x, lengths, cfg)
  c = features.spec_augment(jax.random.key(1), x, lengths, cfg)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  cfg.num_freq_masks = cfg.num_time_masks = 0
  np.testing.assert_array_equal(
    features.spec_augment(jax.random.key(0), x, lengths, cfg), x
  )


def test_mix_noise_hits_snr_on_valid_samples(cfg):
  cfg.noise_prob = 1.0
  cfg.noise_snr_db_min = cfg.noise_snr_db_max = 10.0
  n = 8000
  audio = np.zeros((2, 12_000), np.int16)
  audio[0, :n] = _chirp_noise(n)
  audio[1] = _chirp_noise(12_000, 1)
  lengths = np.array([n, 12_000])
  out = np.asarray(features.mix_noise(jax.random.key(0), audio, lengths, cfg))
  clean = audio.astype(np.float32) / 32767
  np.testing.assert_array_equal(out[0, n:], 0.0)
  for i, m in enumerate(lengths):
    noise = out[i, :m] - clean[i, :m]
    snr = 10 * np.log10(np.mean(clean[i, :m] ** 2) / np.mean(noise**2))
    assert abs(snr - 10.0) < 0.05
  cfg.noise_prob = 0.0
  out = features.mix_noise(jax.random.key(0), audio, lengths, cfg)
  np.testing.assert_allclose(out[1], clean[1], rtol=1e-6)


def test_featurize_train_vs_eval(cfg):
  cfg.input_reverse = True
  audio = np.stack([_chirp_noise(8000), _chirp_noise(8000, 1)])
  lengths = np.array([8000, 5000])
  ev = jax.jit(lambda a, n: features.featurize(None, a, n, cfg, False))
  tr = jax.jit(lambda r, a, n: features.featurize(r, a, n, cfg, True))
  ev1, flen = ev(audio, lengths)
  ev2, _ = ev(audio, lengths)
  tr1, _ = tr(jax.random.key(0), audio, lengths)
  np.testing.assert_array_equal(ev1, ev2)
  assert not np.array_equal(ev1, tr1)
  # Eval is log-mel -> normalize -> reverse, nothing else.
  lm, _ = features.log_mel(audio, lengths, cfg)
  want = features.reverse_time(features.normalize(lm, flen, 'utterance'), flen)
  np.testing.assert_allclose(ev1, want, atol=1e-5)
  # Augmentation touches only valid frames.
  np.testing.assert_array_equal(tr1[1, int(flen[1]) :], 0.0)
