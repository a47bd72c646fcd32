r"""Text and duration statistics of a corpus in KsponSpeech layout.

  python -m las_jax.data.corpus_stats data/mini_kspon [--json=stats.json]

Per split of `scripts/*.trn` (train, dev, eval_clean, eval_other, those
present): utterances, distinct sentences, hours (from the sizes of the
headerless 16 kHz s16le PCM files), Hangul syllables and distinct
syllables, and how much of the split train's text covers: the share of its
running syllables, and of its distinct syllables, that occur in train. For
train, the share of the 2,350 KS X 1001 syllables it has. Text is
normalized as for training (`text.normalize_transcript`, phonetic).

`make_mini_kspon` prints this table and writes it beside the corpus
(`corpus_stats.txt`, `corpus_stats.json`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence

from absl import app, flags

from las_jax import text

SPLITS = ('train', 'dev', 'eval_clean', 'eval_other')
_BYTES_PER_SECOND = 2 * 16000
_HANGUL = re.compile('[가-힣]')


def split_stats(
  transcripts: Mapping[str, Sequence[str]],
  seconds: Mapping[str, Sequence[float]],
) -> dict:
  """Statistics of splits given their raw transcripts and durations.

  Args:
    transcripts: split -> raw KsponSpeech transcripts, one per utterance;
      must have 'train'.
    seconds: split -> durations in seconds, one per utterance.

  Returns:
    {'splits': {split: {utterances, sentences, hours, syllables,
    distinct_syllables, in_train, distinct_in_train}}, 'train_ks_x_1001'}:
    `sentences` counts distinct normalized texts; `in_train` and
    `distinct_in_train` are shares in [0, 1].

  Raises:
    ValueError: no 'train', or a split's two lists differ in length.
  """
  if 'train' not in transcripts:
    raise ValueError('split_stats needs the train split')
  normalized = {
    split: [text.normalize_transcript(t) for t in texts]
    for split, texts in transcripts.items()
  }
  train = set(_HANGUL.findall(' '.join(normalized['train'])))
  out = {}
  for split, texts in normalized.items():
    if len(texts) != len(seconds[split]):
      raise ValueError(
        f'{split}: {len(texts)} transcripts but {len(seconds[split])} durations'
      )
    running = _HANGUL.findall(' '.join(texts))
    distinct = set(running)
    out[split] = dict(
      utterances=len(texts),
      sentences=len(set(texts)),
      hours=round(sum(seconds[split]) / 3600, 4),
      syllables=len(running),
      distinct_syllables=len(distinct),
      in_train=_share(sum(s in train for s in running), len(running)),
      distinct_in_train=_share(len(distinct & train), len(distinct)),
    )
  return dict(
    splits=out,
    train_ks_x_1001=len(train & text.KS_X_1001_SYLLABLES),
  )


def _share(part: int, whole: int) -> float:
  return round(part / whole, 4) if whole else float('nan')


def corpus_stats(root: str | os.PathLike[str]) -> dict:
  """`split_stats` of the corpus at `root` (its scripts/*.trn and PCM).

  Raises:
    FileNotFoundError: no scripts/train.trn, or a listed PCM file is
      missing (the message names it).
  """
  transcripts, seconds = {}, {}
  for split in SPLITS:
    path = os.path.join(root, 'scripts', f'{split}.trn')
    if split != 'train' and not os.path.exists(path):
      continue
    transcripts[split], seconds[split] = [], []
    with open(path, encoding='utf-8') as f:
      for line in f:
        if not line.strip():
          continue
        rel, _, raw = line.rstrip('\n').partition(' :: ')
        size = os.path.getsize(os.path.join(root, rel))
        transcripts[split].append(raw)
        seconds[split].append(size / _BYTES_PER_SECOND)
  return split_stats(transcripts, seconds)


def format_stats(stats: dict) -> str:
  """The statistics as a Markdown table (shares in percent)."""
  lines = [
    '| split | utterances | sentences | hours | syllables | distinct '
    'syllables | syllables in train | distinct in train |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for split, s in stats['splits'].items():
    lines.append(
      f'| {split} | {s["utterances"]} | {s["sentences"]} | '
      f'{s["hours"]:.2f} | {s["syllables"]} | {s["distinct_syllables"]} | '
      f'{100 * s["in_train"]:.2f}% | {100 * s["distinct_in_train"]:.2f}% |'
    )
  n = stats['train_ks_x_1001']
  total = len(text.KS_X_1001_SYLLABLES)
  lines.append(
    f'\ntrain has {n} of the {total} KS X 1001 syllables '
    f'({100 * n / total:.1f}%).'
  )
  # Utterances per text source, where the generator recorded them.
  for split, counts in stats.get('sources', {}).items():
    parts = ', '.join(f'{name} {count}' for name, count in counts.items())
    lines.append(f'{split} utterances by source: {parts}')
  if 'lm_text_sentences' in stats:
    lines.append(
      f'language-model text: {stats["lm_text_sentences"]} sentences of no split'
    )
  return '\n'.join(lines)


def write_stats(stats: dict, out_dir: str | os.PathLike[str]) -> None:
  """Writes corpus_stats.txt (the table) and corpus_stats.json."""
  with open(os.path.join(out_dir, 'corpus_stats.txt'), 'w') as f:
    f.write(format_stats(stats) + '\n')
  with open(os.path.join(out_dir, 'corpus_stats.json'), 'w') as f:
    f.write(json.dumps(stats, ensure_ascii=False, indent=1) + '\n')


_JSON = flags.DEFINE_string('json', None, 'Also write the statistics here.')


def main(argv: list[str]) -> None:
  if len(argv) != 2:
    raise app.UsageError('Usage: corpus_stats CORPUS_ROOT [--json=PATH]')
  stats = corpus_stats(argv[1])
  print(format_stats(stats))
  if _JSON.value:
    with open(_JSON.value, 'w') as f:
      f.write(json.dumps(stats, ensure_ascii=False, indent=1) + '\n')


if __name__ == '__main__':
  app.run(main)
