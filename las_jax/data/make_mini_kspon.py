r"""Generates `mini_kspon`, a synthetic Korean corpus in KsponSpeech layout.

  python -m las_jax.data.make_mini_kspon data/mini_kspon \
      [--num_utterances=3000] [--seed=0]
  python -m las_jax.data.build --manual_dir=data/mini_kspon \
      --data_dir=data/tfds_mini

Text: real Korean from konlpy's bundled corpora (the constitution and ten
National Assembly bills), cut into short clauses. Numbers become
KsponSpeech dual transcriptions, `(1948년)/(천구백사십팔년)`, and some
utterances get noise tags (`b/ n/ o/ l/`) and fillers (`어/`), so the
transcripts exercise the same normalization as the real corpus. Every
distinct clause belongs to exactly one split.

Audio: espeak-ng's Korean voice reads the PHONETIC form with a random voice
variant, speed and pitch; tags get a short noise burst where they stand;
coloured background noise is added at a random SNR (harder for
eval_other). Output is headerless 16 kHz s16le PCM plus the corpus' CP949
per-utterance .txt files and `scripts/{train,dev,eval_clean,eval_other}.trn`.

The same seed gives a byte-identical corpus (with the same espeak-ng
version): every random choice comes from a generator seeded by (seed,
split, utterance). Needs the espeak-ng program (`apt-get install
espeak-ng`); resampling happens in-process with soxr, so sox is not needed.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import math
import os
import re
import shutil
import subprocess

import numpy as np
import soundfile as sf
import soxr
from absl import app, flags

SAMPLE_RATE = 16000
# Split -> share of the distinct clauses and of the utterances.
SPLIT_SHARES = {
  'train': 0.8,
  'dev': 0.1,
  'eval_clean': 0.05,
  'eval_other': 0.05,
}
# Clause length bounds in Hangul syllables of the spoken form: espeak-ng
# reads Korean at about 4-5 syllables/s, so this gives roughly 1-6 s.
MIN_SYLLABLES, MAX_SYLLABLES = 5, 20
# espeak-ng Korean voice variants (`ko+VARIANT`) that stay intelligible.
VOICES = (
  'm1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7',
  'f1', 'f2', 'f3', 'f4', 'f5', 'klatt', 'klatt2', 'klatt3', 'croak',
)  # fmt: skip
NOISE_TAGS = ('b/', 'n/', 'o/', 'l/')
FILLERS = ('어', '음', '아')
# Folders as in the corpus: 1000 utterances each, 124 folders per archive.
_PER_FOLDER, _FOLDERS_PER_ARCHIVE = 1000, 124

_SINO_DIGITS = '영일이삼사오육칠팔구'
_SINO_UNITS = ('', '십', '백', '천')
_SINO_GROUPS = ('', '만', '억', '조')
# Months whose Sino-Korean reading drops a final consonant.
_MONTHS = {'6월': '유월', '10월': '시월'}
_WORD_RE = re.compile(r'^[가-힣0-9%]+$')
# Item markers of the bills' lists ('... 가', '... 나'), not words.
_LIST_MARKERS = frozenset('가나다라마바사아')


def sino_korean(number: int) -> str:
  """Reads an integer in [0, 10^16) in Sino-Korean: 1948 -> 천구백사십팔."""
  if number == 0:
    return '영'
  out, group = [], 0
  while number:
    number, part = divmod(number, 10000)
    if part:
      digits = []
      for place in range(3, -1, -1):
        d = part // 10**place % 10
        if d:
          # 십, 백, 천 alone mean one of them; 만 alone too (not 일만).
          one = d == 1 and (place > 0 or (group == 1 and part == 1))
          digits.append(('' if one else _SINO_DIGITS[d]) + _SINO_UNITS[place])
      out.append(''.join(digits) + _SINO_GROUPS[group])
    group += 1
  return ''.join(reversed(out))


def spoken_word(word: str) -> str:
  """The spoken (phonetic) form of a word with digits or '%'."""
  for month, reading in _MONTHS.items():
    if word.startswith(month):
      return reading + word[len(month) :]
  word = re.sub(r'\d+', lambda m: sino_korean(int(m.group())), word)
  return word.replace('%', ' 퍼센트').strip()


@dataclasses.dataclass(frozen=True)
class Clause:
  """A clause of corpus text: its words as written and as spoken."""

  words: tuple[str, ...]

  @property
  def spoken(self) -> str:
    return ' '.join(spoken_word(w) for w in self.words)

  @property
  def transcript(self) -> str:
    """KsponSpeech-style: `(spelling)/(phonetic)` where the two differ."""
    return ' '.join(
      w if spoken_word(w) == w else f'({w})/({spoken_word(w)})'
      for w in self.words
    )


def _documents() -> list[str]:
  from konlpy.corpus import kobill, kolaw

  docs = [kolaw.open('constitution.txt').read()]
  for name in sorted(kobill.fileids()):
    bill = kobill.open(name).read()
    # Keep the prose: from the reasons to the old/new comparison table.
    start = max(bill.find('제안이유'), 0)
    end = re.search(r'신\s*·\s*구조문대비표', bill)
    bill = bill[start : end.start() if end else len(bill)]
    lines = [
      line
      for line in bill.splitlines()
      if line.strip() and not re.fullmatch(r'[\s\d-]*', line)
    ]
    # The bills are hard-wrapped, often mid-word: a line ending without a
    # space continues the word on the next line.
    docs.append(''.join(lines))
  return docs


def _chunks(words: list[str]) -> list[list[str]]:
  """Cuts a word list into near-equal runs of at most MAX_SYLLABLES."""
  sizes = [len(spoken_word(w).replace(' ', '')) for w in words]
  n = math.ceil(sum(sizes) / MAX_SYLLABLES)
  target, chunks, current, length = sum(sizes) / n, [], [], 0
  for word, size in zip(words, sizes, strict=True):
    if current and length + size > max(target, size) * 1.15:
      chunks.append(current)
      current, length = [], 0
    current.append(word)
    length += size
  return chunks + [current]


def corpus_clauses() -> list[Clause]:
  """All distinct usable clauses of konlpy's kolaw + kobill, sorted."""
  clauses = set()
  for doc in _documents():
    # Anything but Hangul, digits, '%' and spaces ends a clause ('·' joins
    # listed nouns, so it only separates words).
    for piece in re.split(r'[^가-힣0-9% ]+', doc.replace('·', ' ')):
      words = [w for w in piece.split() if _WORD_RE.match(w)]
      if len(words) < 2 or any(len(w) > 12 for w in words):
        continue
      for chunk in _chunks(words):
        syllables = [len(spoken_word(w).replace(' ', '')) for w in chunk]
        # Spaced-out table headings ('연 도 구 분') are not sentences.
        if (
          len(chunk) >= 2
          and chunk[-1] not in _LIST_MARKERS
          and MIN_SYLLABLES <= sum(syllables) <= MAX_SYLLABLES * 1.2
          and sum(s == 1 for s in syllables) * 2 < len(chunk)
        ):
          clauses.add(Clause(tuple(chunk)))
  return sorted(clauses, key=lambda c: c.words)


@dataclasses.dataclass(frozen=True)
class _Job:
  path: str
  spoken: str
  lead_burst: bool
  trail_burst: bool
  voice: str
  speed: int
  pitch: int
  snr_db: float
  seed: tuple[int, ...]


def _utterance(clause: Clause, rng: np.random.Generator, hard: bool):
  """Draws annotations and voice; returns (transcript, job fields)."""
  words, spoken = [clause.transcript], [clause.spoken]
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
    speed=int(rng.integers(190, 240) if hard else rng.integers(160, 210)),
    pitch=int(rng.integers(20, 80)),
    snr_db=float(rng.uniform(5, 12) if hard else rng.uniform(12, 35)),
  )
  return ' '.join(words), fields


def _coloured_noise(rng: np.random.Generator, n: int) -> np.ndarray:
  """Unit-power noise with a 1/f^alpha spectrum, alpha in [0, 1.5]."""
  spectrum = np.fft.rfft(rng.standard_normal(n))
  freqs = np.maximum(np.arange(spectrum.size), 1.0)
  noise = np.fft.irfft(spectrum / freqs ** (rng.uniform(0, 1.5) / 2), n)
  return noise / max(float(np.sqrt(np.mean(noise**2))), 1e-9)


def _synthesize(job: _Job) -> float:
  """Speaks, mixes and writes one utterance; returns its duration in s."""
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
  """Writes the corpus; returns the audio durations (s) per split.

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
  clauses = corpus_clauses()
  order = np.random.default_rng(seed).permutation(len(clauses))
  sizes = _split_sizes(num_utterances)
  jobs, lists, start, numbers = [], {}, 0, {'kspon': 0, 'eval': 0}
  for split_index, (split, share) in enumerate(SPLIT_SHARES.items()):
    # Each split owns a disjoint block of clauses; a split with more
    # utterances than clauses reads them again with other voices.
    count = max(1, round(len(clauses) * share))
    own = [clauses[i] for i in order[start : start + count]]
    start += count
    lines = []
    for j in range(sizes[split]):
      rng = np.random.default_rng([seed, split_index, j])
      transcript, fields = _utterance(
        own[j % len(own)], rng, hard=split == 'eval_other'
      )
      group = 'eval' if split.startswith('eval') else 'kspon'
      numbers[group] += 1
      rel = _relative_path(split, numbers[group])
      lines.append(f'{rel} :: {transcript}')
      path = os.path.join(out_dir, rel)
      seed_tuple = (seed, split_index, j, 1)
      jobs.append(_Job(path=path, seed=seed_tuple, **fields))
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path[:-4] + '.txt', 'w', encoding='cp949') as f:
        f.write(transcript + '\n')
    lists[split] = lines
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    durations = list(pool.map(_synthesize, jobs))
  os.makedirs(os.path.join(out_dir, 'scripts'), exist_ok=True)
  result, offset = {}, 0
  for split, lines in lists.items():
    path = os.path.join(out_dir, 'scripts', f'{split}.trn')
    with open(path, 'w', encoding='utf-8') as f:
      f.write(''.join(line + '\n' for line in lines))
    result[split] = durations[offset : offset + len(lines)]
    offset += len(lines)
  return result


_NUM_UTTERANCES = flags.DEFINE_integer(
  'num_utterances', 3000, 'Utterances over all splits.'
)
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of every random choice.')
_WORKERS = flags.DEFINE_integer('workers', 2, 'Parallel espeak-ng processes.')


def main(argv: list[str]) -> None:
  if len(argv) != 2:
    raise app.UsageError('Usage: make_mini_kspon OUT_DIR [--flags]')
  durations = make_mini_kspon(
    argv[1], _NUM_UTTERANCES.value, _SEED.value, _WORKERS.value
  )
  for split, secs in durations.items():
    print(
      f'{split}: {len(secs)} utterances, {sum(secs) / 60:.1f} min, '
      f'{min(secs):.1f}-{max(secs):.1f} s each'
    )


if __name__ == '__main__':
  app.run(main)
