"""Speech from the first sample, and inputs without speech, on a trained model.

  PYTHONPATH=. python benchmarks/lead_in_and_no_speech_bench.py \
      --workdir runs/mini --which=best \
      --trn data/mini_kspon/scripts/eval_clean.trn \
      --trn data/mini_kspon/scripts/eval_other.trn

1. Lead-in: 20 Korean sentences spoken by espeak-ng (whose output starts
   with speech at its first sample), clean and under white or pink noise
   at 20 and 10 dB SNR, with 0, 0.05, 0.1 and 0.3 s of (noisy) silence
   before them; prints the CER of each condition.
2. No speech (`las_jax/inference/no_speech.py`): for noise, tones, chords,
   a melody, hum and clicks (`--noise_draws` draws of the noise in them),
   for the utterances of each `--trn` list, for the espeak-ng sentences at
   10 dB SNR, for lone words in 3 s of noise, and for short replies (one-
   and two-syllable words by four espeak-ng voices at three speeds, alone,
   with 0.5 s of silence around them, and in pink noise at 20 and 10 dB
   SNR), prints each group's range of the rule's cues: units of the CTC
   best path in the densest second (the old rule counted these), the same
   units counted by their peak posteriors ("confident units"), and the
   share of the transcript's units that differ from the best path; then
   how many the rule refuses with the run's thresholds (or
   `--no_speech_units_per_second`, `--no_speech_short_units`), and how
   many the old count alone (below 3 units) refused.

Needs the espeak-ng program (`apt-get install espeak-ng`).
"""

import argparse
import collections
import io
import subprocess
import warnings

import numpy as np
import soundfile as sf
import soxr
from flax import nnx

from las_jax import audio, features, metrics
from las_jax.inference import Recognizer, inputs, no_speech, restore

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
# Short replies: one and two syllables.
SHORT_WORDS = {
  'one syllable': ('네', '예', '응', '뭐', '왜', '아', '물', '밥', '집', '책'),
  'two syllables': ('아니', '그래', '좋아', '싫어', '맞아', '진짜', '어디'),
}
SHORT_VOICES = ('ko', 'ko+f2', 'ko+m3', 'ko+klatt')
SHORT_SPEEDS = (130, 175, 230)  # espeak-ng words per minute.


def speak(text: str, voice: str = 'ko', speed: int = 175) -> np.ndarray:
  """espeak-ng's Korean voice at 16 kHz, float, silence after it cut."""
  wav = subprocess.run(
    ['espeak-ng', '-v', voice, '-s', str(speed), '--stdout', text],
    capture_output=True,
    check=True,
  ).stdout
  x, rate = sf.read(io.BytesIO(wav), dtype='float64')
  x = soxr.resample(x, rate, SR)
  return x[: np.flatnonzero(np.abs(x) > 1e-3)[-1] + 1]


def short_replies(rng) -> dict[str, list[np.ndarray]]:
  """SHORT_WORDS by each voice and speed, peak 0.5: as spoken (speech at
  the first and last sample), with 0.5 s of silence around, and with that
  silence in pink noise at 20 and 10 dB SNR."""
  groups = {}
  for name, words in SHORT_WORDS.items():
    spoken = [
      0.5 * x / np.abs(x).max()
      for w in words
      for v in SHORT_VOICES
      for s in SHORT_SPEEDS
      for x in [speak(w, v, s)]
    ]
    pad = np.zeros(SR // 2)
    around = [np.concatenate([pad, x, pad]) for x in spoken]
    groups[f'{name}, as spoken'] = spoken
    groups[f'{name}, 0.5 s silence around'] = around
    for snr_db in (20, 10):
      groups[f'{name}, pink noise {snr_db} dB SNR'] = [
        noisy(rng, x, s, snr_db, 1) for x, s in zip(around, spoken, strict=True)
      ]
  return groups


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
  parser.add_argument('--no_speech_short_units', type=float)
  parser.add_argument(
    '--noise_draws',
    type=int,
    default=1,
    help='draws of the non-speech sounds (new noise in each)',
  )
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

  counter = Recognizer.from_workdir(
    args.workdir,
    which=args.which,
    # Thresholds nothing reaches: every input comes back with its cues.
    no_speech_units_per_second=1e9,
    no_speech_short_units=1e9,
  )
  run = restore.load_run(args.workdir, which=args.which)
  threshold = (
    rec.no_speech_units_per_second
    if args.no_speech_units_per_second is None
    else args.no_speech_units_per_second
  )
  short = (
    rec.no_speech_short_units
    if args.no_speech_short_units is None
    else args.no_speech_short_units
  )
  print(
    f'2. No speech, {no_speech.WINDOW_SECONDS:g} s windows: units of the '
    'CTC best path in the densest one, the same counted by their peak '
    'posteriors (confident units), the share of the transcript differing '
    f'from the best path; refused: below {threshold:g} confident units, '
    f'unless at least {short:g} and at most '
    f'{no_speech.MAX_DISAGREEMENT:.0%} differing; the old rule: below 3 '
    'units.'
  )
  non_speech_groups = collections.defaultdict(list)
  for _ in range(args.noise_draws):
    for name, signals in non_speech(rng).items():
      non_speech_groups[name] += signals
  groups = {k: [int16(x) for x in v] for k, v in non_speech_groups.items()}
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
  for name, signals in short_replies(rng).items():
    groups[name] = [int16(x) for x in signals]
  for name, signals in groups.items():
    cues = _cues(counter, run, signals, name)
    units, confident, differs = (np.array(c) for c in zip(*cues, strict=True))
    refused = sum(
      no_speech.judge(c, d, threshold, short) is not None
      for c, d in zip(confident, differs, strict=True)
    )
    print(
      f'  {name}: units {units.min()}-{units.max()}, confident '
      f'{confident.min():.2f}-{confident.max():.2f}, differing '
      f'{differs.min():.0%}-{differs.max():.0%}; refused {refused} of '
      f'{len(cues)} (old rule: {np.sum(units < 3)})'
    )


def _cues(counter, run, signals, name) -> list[tuple[int, float, float]]:
  """(units, confident units, disagreement) of each decodable signal:
  the rule's cues from `counter` (thresholds nothing reaches, so every
  input comes back refused with its cues), the old count from `run`'s
  CTC head."""
  prepared = []
  for i, x in enumerate(signals):
    try:
      with warnings.catch_warnings():
        warnings.simplefilter('ignore', audio.AudioWarning)
        prepared.append((i, counter.prepare(x, f'{name} {i}')))
    except audio.AudioError:  # Silent or too short: skipped before.
      pass
  if len(prepared) < len(signals):
    print(f'  ({len(signals) - len(prepared)} of {name} silent or too short)')
  refused = dict(counter.decode_stream(prepared))
  window = no_speech.window_frames(run.config)
  cues = []
  for i, x in prepared:
    feats, flen = features.featurize(
      None, x[None], np.array([x.size]), run.config.features, False
    )
    enc = _encode(run.model, feats, flen)
    frames = int(enc.enc_lengths_B[0])
    best = np.asarray(enc.ctc_logits_BxSxV[0, :frames]).argmax(-1)
    starts = np.flatnonzero((best != 0) & (best != np.r_[-1, best[:-1]]))
    units = max(
      np.sum((starts >= t) & (starts < t + window)) for t in range(frames)
    )
    cues.append((int(units), refused[i].units, refused[i].disagreement))
  return cues


@nnx.jit
def _encode(model, feats_BxTxF, lengths_B):
  return model.encode(feats_BxTxF, lengths_B)


if __name__ == '__main__':
  main()
