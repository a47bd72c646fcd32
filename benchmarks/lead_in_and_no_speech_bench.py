"""Speech from the first sample, and inputs without speech, on a trained model.

  PYTHONPATH=. python benchmarks/lead_in_and_no_speech_bench.py \
      --workdir runs/mini --which=best \
      --trn data/mini_kspon/scripts/eval_clean.trn \
      --trn data/mini_kspon/scripts/eval_other.trn

1. Lead-in: 20 Korean sentences spoken by espeak-ng (whose output starts
   with speech at its first sample), clean and under white or pink noise
   at 20 and 10 dB SNR, with 0, 0.05, 0.1 and 0.3 s of (noisy) silence
   before them; prints the CER of each condition.
2. No speech: units the CTC head's best path emits in the densest second
   (`las_jax/inference/no_speech.py`) for noise, tones, chords, a melody,
   hum and clicks, for the utterances of each `--trn` list, for the
   espeak-ng sentences at 10 dB SNR and for lone words in 3 s of noise;
   prints each group's range and how many the threshold
   (`--no_speech_units_per_second`, default the run's) refuses.

Needs the espeak-ng program (`apt-get install espeak-ng`).
"""

import argparse
import io
import subprocess

import numpy as np
import soundfile as sf
import soxr

from las_jax import audio, metrics
from las_jax.inference import Recognizer, inputs, no_speech

SR = 16000
SENTENCES = (
  '오늘 날씨가 좋아서 공원에 갔어요',
  '저는 학교에서 한국어를 공부합니다',
  '내일 아침에 회의가 있습니다',
  '이 법률은 공포한 날부터 시행한다',
  '대한민국은 민주공화국이다',
  '국회는 법률을 제정한다',
  '어제 친구와 함께 영화를 봤어요',
  '모든 국민은 법 앞에 평등하다',
  '서울은 대한민국의 수도입니다',
  '우리는 주말마다 산에 올라갑니다',
  '회의는 오후 세시에 시작합니다',
  '대통령은 국가의 원수이다',
  '저녁에 가족과 함께 밥을 먹었어요',
  '이 책은 정말 재미있습니다',
  '비가 와서 우산을 가지고 나갔어요',
  '국민의 모든 자유와 권리는 보장된다',
  '지하철역까지 걸어서 십분 걸립니다',
  '다음 주에 부산으로 여행을 갑니다',
  '선생님께서 숙제를 내주셨어요',
  '커피 한잔 주시겠어요',
)
WORDS = ('네', '아니요', '안녕하세요', '감사합니다')


def speak(text: str) -> np.ndarray:
  """espeak-ng's Korean voice at 16 kHz, float, silence after it cut."""
  wav = subprocess.run(
    ['espeak-ng', '-v', 'ko', '--stdout', text],
    capture_output=True,
    check=True,
  ).stdout
  x, rate = sf.read(io.BytesIO(wav), dtype='float64')
  x = soxr.resample(x, rate, SR)
  return x[: np.flatnonzero(np.abs(x) > 1e-3)[-1] + 1]


def coloured(rng, n: int, alpha: float) -> np.ndarray:
  """Unit-power noise with a 1/f^alpha power spectrum."""
  spectrum = np.fft.rfft(rng.standard_normal(n))
  freqs = np.maximum(np.arange(spectrum.size), 1.0)
  x = np.fft.irfft(spectrum / freqs ** (alpha / 2), n)
  return x / x.std()


def int16(x: np.ndarray) -> np.ndarray:
  return np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)


def noisy(rng, x, speech, snr_db, alpha):
  """x plus noise `snr_db` below the power of `speech`'s voiced samples."""
  power = np.mean(speech[np.abs(speech) > 1e-3] ** 2)
  return x + np.sqrt(power / 10 ** (snr_db / 10)) * coloured(rng, x.size, alpha)


def non_speech(rng) -> dict[str, list[np.ndarray]]:
  """Noise, tones, music-like sounds, hum and clicks, 3 s each."""
  t = np.arange(3 * SR) / SR
  groups = {'noise': [], 'tones': [], 'chords, melody': [], 'hum': []}
  for level in (-20, -40):
    for alpha in (0, 1, 2):  # White, pink, brown.
      groups['noise'].append(10 ** (level / 20) * coloured(rng, t.size, alpha))
  for f in (100, 220, 440, 1000, 3000):
    groups['tones'].append(0.3 * np.sin(2 * np.pi * f * t))
  groups['tones'].append(0.3 * np.sin(2 * np.pi * (200 + 500 * t) * t))
  triads = ((261.6, 329.6, 392.0), (220.0, 261.6, 329.6), (174.6, 220.0))
  for seconds in (0.75, 0.25):
    x, n = np.zeros(t.size), int(seconds * SR)
    for k in range(0, t.size, n):
      seg = t[k : k + n] - t[k]
      for f0 in triads[(k // n) % len(triads)]:
        for h in (1, 2, 3, 4):
          x[k : k + n] += (
            np.exp(-3 * seg) * np.sin(2 * np.pi * f0 * h * seg) / h
          )
    groups['chords, melody'].append(0.3 * x / np.abs(x).max())
  notes = (261.6, 293.7, 329.6, 349.2, 392.0, 440.0, 493.9, 523.3)
  x, n = np.zeros(t.size), SR // 4
  for i, k in enumerate(range(0, t.size, n)):
    seg = t[k : k + n] - t[k]
    f0 = notes[i % len(notes)] * (1 + 0.01 * np.sin(2 * np.pi * 5 * seg))
    x[k : k + n] = np.sin(2 * np.pi * np.cumsum(f0) / SR) * np.exp(-2 * seg)
  groups['chords, melody'].append(0.3 * x)
  for f in (50, 60):
    h = sum(np.sin(2 * np.pi * f * k * t) / k for k in (1, 2, 3, 5))
    groups['hum'].append(0.2 * h / np.abs(h).max())
    groups['hum'].append(groups['hum'][-1] + 0.003 * coloured(rng, t.size, 1))
  clicks = np.zeros(t.size)
  clicks[[4000, 20000, 33000]] = 0.8
  groups['clicks'] = [
    clicks,
    clicks + 1e-3 * coloured(rng, t.size, 0),
    clicks + 3e-3 * coloured(rng, t.size, 1),
  ]
  return groups


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--which', default='best')
  parser.add_argument('--trn', action='append', default=[])
  parser.add_argument('--no_speech_units_per_second', type=float)
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()
  rng = np.random.default_rng(args.seed)
  rec = Recognizer.from_workdir(args.workdir, which=args.which)
  sentences = [speak(s) for s in SENTENCES]

  print('1. CER of espeak-ng sentences by lead-in (s) and noise:')
  for snr_db, alpha, name in (
    (None, 0, 'clean'),
    (20, 1, 'pink 20 dB'),
    (10, 1, 'pink 10 dB'),
    (10, 0, 'white 10 dB'),
  ):
    # Noise over 0.3 s of silence and the sentence; leads are cut from it.
    signals = []
    for s in sentences:
      x = np.concatenate([np.zeros(int(0.3 * SR)), s])
      signals.append(x if snr_db is None else noisy(rng, x, s, snr_db, alpha))
    cers = []
    for lead in (0.0, 0.05, 0.1, 0.3):
      cut = int((0.3 - lead) * SR)
      hyps = rec.transcribe([int16(x[cut:]) for x in signals])
      cers.append(f'{lead:g}: {100 * metrics.cer(SENTENCES, hyps):.1f}%')
    print(f'  {name:12s}', '  '.join(cers))

  threshold = (
    rec.no_speech_units_per_second
    if args.no_speech_units_per_second is None
    else args.no_speech_units_per_second
  )
  print(
    f'2. Units of the CTC best path in its densest '
    f'{no_speech.WINDOW_SECONDS:g} s; refused below {threshold:g}:'
  )
  groups = {k: [int16(x) for x in v] for k, v in non_speech(rng).items()}
  for path in args.trn:
    items, _ = inputs.trn_items(path, None, rec.config.data.transcription)
    groups[path] = [item.load() for item in items]
  groups['espeak-ng at 10 dB SNR'] = [
    int16(noisy(rng, np.concatenate([np.zeros(SR // 4), s]), s, 10, a))
    for s in sentences
    for a in (0, 1)
  ]
  words = []
  for w in WORDS:
    s = speak(w)
    x = np.zeros(3 * SR)
    x[SR : SR + s.size] = s
    words += [int16(noisy(rng, x, s, snr, 1)) for snr in (20, 10)]
  groups['a word in 3 s of pink noise'] = words
  # A threshold nothing reaches: every input comes back with its count.
  counter = Recognizer.from_workdir(
    args.workdir, which=args.which, beam_size=1, no_speech_units_per_second=1e9
  )
  for name, signals in groups.items():
    prepared, unreadable = [], 0
    for i, x in enumerate(signals):
      try:
        prepared.append((i, counter.prepare(x, name)))
      except audio.AudioError:  # Silent or too short: skipped before.
        unreadable += 1
    units = sorted(r.units for _, r in counter.decode_stream(prepared))
    refused = sum(u < threshold for u in units)
    print(
      f'  {name}: {units[0]}-{units[-1]} units, refused {refused} of '
      f'{len(units)}'
      + (f' ({unreadable} silent or too short)' * bool(unreadable))
    )


if __name__ == '__main__':
  main()
