r"""Generates `mini_kspon`, a synthetic Korean corpus in KsponSpeech layout.

  python -m las_jax.data.make_mini_kspon data/mini_kspon \
      [--num_utterances=3000] [--seed=0]
  python -m las_jax.data.build --manual_dir=data/mini_kspon \
      --data_dir=data/tfds_mini

Text (`mini_kspon_text`): Korean that konlpy installs. In-domain splits
(train, dev, eval_clean): clauses of the constitution and ten National
Assembly bills, and sequences of real Korean word forms; train also gets
dictionary words for the rare syllables, so it spells 2,014 of the 2,350
KS X 1001 syllables at the default size. eval_other: clauses of tweets, a source that
gives train and dev nothing (out-of-domain text). Numbers become
KsponSpeech dual transcriptions, `(1948년)/(천구백사십팔년)`, and some
utterances get noise tags (`b/ n/ o/ l/`) and fillers (`어/`), so the
transcripts exercise the same normalization as the real corpus. No
sentence is in two splits.

Audio: espeak-ng's Korean voice reads the PHONETIC form with a random voice
variant, speed and pitch; tags get a short noise burst where they stand;
coloured background noise is added at a random SNR. All splits share these
conditions, so eval_other differs from eval_clean in its text alone.
Output is headerless 16 kHz s16le PCM plus the corpus' CP949
per-utterance .txt files and `scripts/{train,dev,eval_clean,eval_other}.trn`
(written last), the statistics of `corpus_stats` in
`corpus_stats.{txt,json}`, and `lm_text.txt`: one transcript per line of
in-domain sentences no split has, for the language model
(`configs/mini_lm.py`'s `data.lm_text`).

The same seed gives a byte-identical corpus (with the same espeak-ng and
konlpy versions): every random choice comes from a generator seeded by
the seed and the purpose (split, utterance). Needs the espeak-ng program (`apt-get install
espeak-ng`); resampling happens in-process with soxr, so sox is not needed.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import io
import os
import re
import shutil
import subprocess
import time

import numpy as np
import soundfile as sf
import soxr
from absl import app, flags

from las_jax.data import corpus_stats, mini_kspon_text
from las_jax.data.mini_kspon_text import Sentence

SAMPLE_RATE = 16000
# The language-model text, beside the corpus (`mini_kspon_text.lm_text`).
LM_TEXT = 'lm_text.txt'
# Split -> share of the utterances.
SPLIT_SHARES = {
  'train': 0.8,
  'dev': 0.1,
  'eval_clean': 0.05,
  'eval_other': 0.05,
}
# espeak-ng Korean voice variants (`ko+VARIANT`) that stay intelligible.
VOICES = (
  'm1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7',
  'f1', 'f2', 'f3', 'f4', 'f5', 'klatt', 'klatt2', 'klatt3', 'croak',
)  # fmt: skip
NOISE_TAGS = ('b/', 'n/', 'o/', 'l/')
FILLERS = ('어', '음', '아')
# Folders as in the corpus: 1000 utterances each, 124 folders per archive.
_PER_FOLDER, _FOLDERS_PER_ARCHIVE = 1000, 124


@dataclasses.dataclass(frozen=True)
class SpeechJob:
  """One utterance to speak: text, voice, noise, and where it goes."""

  path: str
  spoken: str
  lead_burst: bool
  trail_burst: bool
  voice: str
  speed: int
  pitch: int
  snr_db: float
  seed: tuple[int, ...]


def _utterance(sentence: Sentence, rng: np.random.Generator):
  """Draws annotations and voice; returns (transcript, job fields)."""
  words, spoken = [sentence.transcript], [sentence.spoken]
  if rng.random() < 0.1:
    filler = str(rng.choice(FILLERS))
    words.insert(0, f'{filler}/')
    spoken.insert(0, filler)
  lead = rng.random() < 0.12
  trail = rng.random() < 0.08
  if lead:
    words.insert(0, str(rng.choice(NOISE_TAGS)))
  if trail:
    words.append(str(rng.choice(NOISE_TAGS)))
  fields = dict(
    spoken=' '.join(spoken),
    lead_burst=lead,
    trail_burst=trail,
    voice=str(rng.choice(VOICES)),
    speed=int(rng.integers(160, 210)),
    pitch=int(rng.integers(20, 80)),
    snr_db=float(rng.uniform(12, 35)),
  )
  return ' '.join(words), fields


def _coloured_noise(rng: np.random.Generator, n: int) -> np.ndarray:
  """Unit-power noise with a 1/f^alpha spectrum, alpha in [0, 1.5]."""
  spectrum = np.fft.rfft(rng.standard_normal(n))
  freqs = np.maximum(np.arange(spectrum.size), 1.0)
  noise = np.fft.irfft(spectrum / freqs ** (rng.uniform(0, 1.5) / 2), n)
  return noise / max(float(np.sqrt(np.mean(noise**2))), 1e-9)


def synthesize(job: SpeechJob) -> float:
  """Speaks, mixes and writes one utterance; returns its duration in s.

  The output is headerless 16 kHz s16le PCM at `job.path`. Every random
  choice (pauses, bursts, noise colour, gain) comes from `job.seed`.
  """
  cmd = ['espeak-ng', '-v', f'ko+{job.voice}', '-s', str(job.speed)]
  cmd += ['-p', str(job.pitch), '--stdout', job.spoken]
  wav = subprocess.run(cmd, capture_output=True, check=True).stdout
  speech, rate = sf.read(io.BytesIO(wav), dtype='float32')
  speech = soxr.resample(speech, rate, SAMPLE_RATE, quality='HQ')
  rng = np.random.default_rng(job.seed)
  rms = float(np.sqrt(np.mean(speech**2)))

  def silence() -> np.ndarray:
    return np.zeros(int(SAMPLE_RATE * rng.uniform(0.05, 0.3)), np.float32)

  def burst() -> np.ndarray:
    n = int(SAMPLE_RATE * rng.uniform(0.15, 0.35))
    level = rms * rng.uniform(0.3, 1.0)
    return _coloured_noise(rng, n) * np.hanning(n) * level

  parts = [silence()]
  if job.lead_burst:
    parts += [burst(), silence()]
  parts.append(speech)
  if job.trail_burst:
    parts += [silence(), burst()]
  parts.append(silence())
  signal = np.concatenate(parts)
  noise_rms = rms / 10 ** (job.snr_db / 20)
  signal = signal + _coloured_noise(rng, signal.size) * noise_rms
  signal *= rng.uniform(0.25, 0.9) / max(float(np.max(np.abs(signal))), 1e-9)
  pcm = np.round(signal * 32767).astype('<i2')
  os.makedirs(os.path.dirname(job.path), exist_ok=True)
  pcm.tofile(job.path)
  return pcm.size / SAMPLE_RATE


def _relative_path(split: str, number: int) -> str:
  """KsponSpeech path of the `number`-th (1-based) file of a split group."""
  if split.startswith('eval'):
    return f'KsponSpeech_eval/{split}/KsponSpeech_E{number:05d}.pcm'
  folder = (number - 1) // _PER_FOLDER + 1
  archive = (folder - 1) // _FOLDERS_PER_ARCHIVE + 1
  return (
    f'KsponSpeech_{archive:02d}/KsponSpeech_{folder:04d}/'
    f'KsponSpeech_{number:06d}.pcm'
  )


def _split_sizes(total: int) -> dict[str, int]:
  sizes = {s: max(1, round(total * f)) for s, f in SPLIT_SHARES.items()}
  sizes['train'] = max(1, total - sum(sizes.values()) + sizes['train'])
  return sizes


def check_tools() -> None:
  """Raises RuntimeError unless espeak-ng with its Korean voice is there."""
  if shutil.which('espeak-ng') is None:
    raise RuntimeError(
      'espeak-ng not found: the mini corpus is spoken by espeak-ng. Install '
      'it, e.g. `sudo apt-get install espeak-ng`.'
    )
  voices = subprocess.run(
    ['espeak-ng', '--voices=ko'], capture_output=True, text=True, check=True
  ).stdout
  if not re.search(r'\bko\b', voices):
    raise RuntimeError('espeak-ng has no Korean voice (ko); reinstall it.')


def make_mini_kspon(
  out_dir: str | os.PathLike[str],
  num_utterances: int = 3000,
  seed: int = 0,
  workers: int = 2,
) -> dict[str, list[float]]:
  """Writes the corpus and its statistics; returns the audio durations.

  Args:
    out_dir: output directory; must be empty or absent.
    num_utterances: total over the four splits (at least 4).
    seed: all random choices derive from it.
    workers: concurrent espeak-ng processes.

  Returns:
    split -> durations of its utterances in seconds, in .trn order.
  """
  out_dir = os.fspath(out_dir)
  if num_utterances < len(SPLIT_SHARES):
    raise ValueError(f'num_utterances must be >= 4, got {num_utterances}')
  if os.path.isdir(out_dir) and os.listdir(out_dir):
    raise FileExistsError(f'{out_dir}: output directory is not empty')
  check_tools()
  sentences = mini_kspon_text.corpus_text(_split_sizes(num_utterances), seed)
  jobs, lists, numbers = [], {}, {'kspon': 0, 'eval': 0}
  for split_index, split in enumerate(SPLIT_SHARES):
    lines = []
    for j, sentence in enumerate(sentences[split]):
      rng = np.random.default_rng([seed, split_index, j])
      transcript, fields = _utterance(sentence, rng)
      group = 'eval' if split.startswith('eval') else 'kspon'
      numbers[group] += 1
      rel = _relative_path(split, numbers[group])
      lines.append((rel, transcript))
      path = os.path.join(out_dir, rel)
      seed_tuple = (seed, split_index, j, 1)
      jobs.append(SpeechJob(path=path, seed=seed_tuple, **fields))
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path[:-4] + '.txt', 'w', encoding='cp949') as f:
        f.write(transcript + '\n')
    lists[split] = lines
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    durations = list(pool.map(synthesize, jobs))
  result, offset = {}, 0
  for split, lines in lists.items():
    result[split] = durations[offset : offset + len(lines)]
    offset += len(lines)
  stats = corpus_stats.split_stats(
    {split: [t for _, t in lines] for split, lines in lists.items()}, result
  )
  stats['sources'] = {
    split: dict(collections.Counter(s.source for s in sentences[split]))
    for split in SPLIT_SHARES
  }
  lm_sentences = mini_kspon_text.lm_text(sentences, seed=seed)
  stats['lm_text_sentences'] = len(lm_sentences)
  with open(os.path.join(out_dir, LM_TEXT), 'w', encoding='utf-8') as f:
    f.write(''.join(s.transcript + '\n' for s in lm_sentences))
  corpus_stats.write_stats(stats, out_dir)
  # The lists last: their presence marks a complete corpus.
  os.makedirs(os.path.join(out_dir, 'scripts'), exist_ok=True)
  for split, lines in lists.items():
    path = os.path.join(out_dir, 'scripts', f'{split}.trn')
    with open(path, 'w', encoding='utf-8') as f:
      f.write(''.join(f'{rel} :: {t}\n' for rel, t in lines))
  return result


_NUM_UTTERANCES = flags.DEFINE_integer(
  'num_utterances', 3000, 'Utterances over all splits.'
)
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of every random choice.')
_WORKERS = flags.DEFINE_integer('workers', 2, 'Parallel espeak-ng processes.')


def main(argv: list[str]) -> None:
  if len(argv) != 2:
    raise app.UsageError('Usage: make_mini_kspon OUT_DIR [--flags]')
  start = time.time()
  durations = make_mini_kspon(
    argv[1], _NUM_UTTERANCES.value, _SEED.value, _WORKERS.value
  )
  for split, secs in durations.items():
    print(
      f'{split}: {len(secs)} utterances, {sum(secs) / 60:.1f} min, '
      f'{min(secs):.1f}-{max(secs):.1f} s each'
    )
  with open(os.path.join(argv[1], 'corpus_stats.txt')) as f:
    print('\n' + f.read(), end='')
  print(f'\nWrote {argv[1]} in {time.time() - start:.0f} s.')


if __name__ == '__main__':
  app.run(main)
