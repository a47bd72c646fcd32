"""Long-form decoding of a trained model on a synthetic long recording.

  PYTHONPATH=. python benchmarks/long_form_bench.py --workdir runs/mini \
      --minutes 10

Builds a recording from the test split's utterances (`--split`, default
eval_clean) joined by pauses of 0.5-2 s under noise at `--snr_db`, writes it
as a 16 kHz WAV, then:
1. segments it with `long_form.Splitter` (energy, `librosa.effects.split`'s
   rule) and, when the `webrtcvad` package is installed (`pip install
   webrtcvad-wheels`), with
   WebRTC's voice activity detector (aggressiveness 0-3, 30 ms frames,
   the same pause bridging, padding and cutting), and prints for each how
   many true utterance boundaries (start and end of each utterance's
   trimmed speech) have a segment boundary within 0.3 s, and how many
   segments hold speech of two utterances;
2. decodes it with `Recognizer.transcribe_long` (reading the file in
   blocks) and prints how many true boundaries the decoded segments' times
   (trimmed speech, what users get) have within 0.3 s, and the CER of the
   joined segments against the joined references, beside the CER of the
   same utterances decoded one by one: as they sound in the recording (each
   utterance's samples cut from it, pauses and noise as long-form decoding
   hears them: the cost of segmenting) and as clean files (the cost of
   segmenting and of the noise together); the real-time factor (decoding
   seconds, compilation excluded, over seconds of audio); and the
   process's peak resident memory.
"""

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from las_jax import audio, metrics
from las_jax.inference import Recognizer, long_form

SR = 16000


def build_recording(rec, split, minutes, snr_db, seed):
  """(int16 signal, references, [(start, end)] seconds of their speech,
  [(first, end)] samples of each utterance's whole file in the signal)."""
  source = _source(rec, split)
  rng = np.random.default_rng(seed)
  parts, refs, truth, extents, pos, i = [], [], [], [], 0, 0
  while pos < minutes * 60 * SR:
    record = source[i % len(source)]
    i += 1
    x = np.asarray(record['audio'], np.int16)
    gap = int(rng.uniform(0.5, 2.0) * SR)
    a, b = audio.trim_bounds(x)
    parts += [np.zeros(gap, np.int16), x]
    truth.append(((pos + gap + a) / SR, (pos + gap + b) / SR))
    extents.append((pos + gap, pos + gap + x.size))
    refs.append(record['text'].decode())
    pos += gap + x.size
  signal = np.concatenate(parts).astype(np.float32)
  signal += rng.normal(size=signal.size) * signal.std() * 10 ** (-snr_db / 20)
  signal = np.clip(signal, -32768, 32767).astype(np.int16)
  return signal, refs, truth, extents


def webrtc_regions(signal, splitter, aggressiveness):
  """Regions from WebRTC's VAD, post-processed like `Splitter.regions`."""
  import webrtcvad

  vad = webrtcvad.Vad(aggressiveness)
  frame = int(0.03 * SR)
  voiced = [
    vad.is_speech(signal[i : i + frame].tobytes(), SR)
    for i in range(0, signal.size - frame + 1, frame)
  ]
  spans, start = [], None
  for k, v in enumerate(voiced + [False]):
    if v and start is None:
      start = k * frame
    elif not v and start is not None:
      spans.append([start, k * frame])
      start = None
  pause = int(splitter.min_pause * SR)
  merged = []
  for s, e in spans:
    if merged and s - merged[-1][1] < pause:
      merged[-1][1] = e
    else:
      merged.append([s, e])
  pad = int(splitter.pad * SR)
  regions = []
  for s, e in merged:
    if e - s < splitter.min_speech * SR:
      continue
    lo, hi = max(0, s - pad), min(signal.size, e + pad)
    regions += [(a, b) for a, b in splitter.cut(signal, lo, hi)]
  return regions


def boundary_scores(regions, truth):
  """(boundaries within 0.3 s of a segment boundary, of all; segments
  holding speech of two utterances)."""
  starts = np.array([a / SR for a, _ in regions])
  ends = np.array([b / SR for _, b in regions])
  hit = sum(
    int(np.min(np.abs(starts - a)) <= 0.3)
    + int(np.min(np.abs(ends - b)) <= 0.3)
    for a, b in truth
  )
  merged = sum(
    sum(a < e / SR and s / SR < b for a, b in truth) > 1 for s, e in regions
  )
  return hit, 2 * len(truth), merged


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', default='runs/mini')
  parser.add_argument('--which', default='best')
  parser.add_argument('--split', default='eval_clean')
  parser.add_argument('--minutes', type=float, default=10.0)
  parser.add_argument('--snr_db', type=float, default=25.0)
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()

  rec = Recognizer.from_workdir(args.workdir, which=args.which)
  signal, refs, truth, extents = build_recording(
    rec, args.split, args.minutes, args.snr_db, args.seed
  )
  seconds = signal.size / SR
  print(
    f'{seconds / 60:.1f} min recording: {len(refs)} utterances of '
    f'{args.split}, pauses 0.5-2 s, noise at {args.snr_db:g} dB SNR'
  )
  splitter = long_form.Splitter(SR, max_seconds=rec.max_seconds)
  energy = [
    (first, first + x.size)
    for first, x in splitter.regions([signal], splitter.loudest([signal]))
  ]
  hit, total, merged = boundary_scores(energy, truth)
  print(
    f"energy (librosa.effects.split's rule): {len(energy)} segments, {hit}/{total} "
    f'boundaries within 0.3 s, {merged} segments span two utterances'
  )
  try:
    for level in (1, 2, 3):
      regions = webrtc_regions(signal, splitter, level)
      hit, total, merged = boundary_scores(regions, truth)
      print(
        f'webrtcvad (aggressiveness {level}): {len(regions)} segments, '
        f'{hit}/{total} boundaries within 0.3 s, {merged} segments span '
        'two utterances'
      )
  except ImportError:
    print('webrtcvad not installed (pip install webrtcvad-wheels): skipped')

  with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / 'recording.wav'
    sf.write(path, signal, SR, subtype='PCM_16')
    rec.transcribe_long(path)  # Compiles every bucket.
    compile_s = rec.compile_seconds
    start = time.perf_counter()
    segments = rec.transcribe_long(path)
    decode_s = time.perf_counter() - start
  hit, total, merged = boundary_scores(
    [(g.start * SR, g.end * SR) for g in segments], truth
  )
  print(
    f'decoded segments: {len(segments)}, {hit}/{total} boundaries within '
    f'0.3 s, {merged} span two utterances'
  )
  joined = ' '.join(refs)
  long_cer = metrics.cer(
    [joined], [' '.join(g.text for g in segments if g.text)]
  )
  in_recording = rec.transcribe([signal[a:b] for a, b in extents])
  clean = rec.transcribe(
    [np.asarray(x, np.int16) for x in _utterances(rec, args.split, len(refs))]
  )
  print(
    f'CER {100 * long_cer:.2f}% long-form vs one utterance at a time: '
    f'{100 * metrics.cer([joined], [" ".join(in_recording)]):.2f}% cut from '
    f'the recording, {100 * metrics.cer([joined], [" ".join(clean)]):.2f}% '
    'clean'
  )
  peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print(
    f'real-time factor {decode_s / seconds:.4f} ({decode_s:.1f} s for '
    f'{seconds:.0f} s; compilation {compile_s:.1f} s apart); peak RSS '
    f'{peak_mib:.0f} MiB'
  )


def _source(rec, split):
  """The run's dataset split (built from its corpus if need be)."""
  from las_jax import data as data_lib

  data = rec.config.data
  return data_lib.build_dataset(
    data.dataset, data.data_dir, data.manual_dir, data.transcription
  ).as_data_source(split)


def _utterances(rec, split, n):
  source = _source(rec, split)
  return [source[i % len(source)]['audio'] for i in range(n)]


if __name__ == '__main__':
  main()
