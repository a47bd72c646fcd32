r"""Three sentences written for the demo: text no corpus source has.

  python -m las_jax.data.unseen_sentences speak OUT_DIR \
      [--corpus=data/mini_kspon]
  python decode.py --workdir runs/mini --which=best \
      OUT_DIR/scripts/unseen.trn --output=OUT_DIR/decode.jsonl
  python -m las_jax.data.unseen_sentences report OUT_DIR/decode.jsonl

The sentences were written for this project, not taken from any text, and
each has syllables that the default mini_kspon train text (3,000
utterances, seed 0) lacks: a model with character units cannot spell them,
one with jamo units can. `speak` has espeak-ng read them as the corpus
does (same synthesis, voices, mild noise) into headerless 16 kHz PCM with
a KsponSpeech `.trn` list beside it, and, given the corpus, prints the
syllables of each that its train text lacks. `report` prints each
reference with the model's transcript and its CER from decode.py's JSONL.
"""

from __future__ import annotations

import json
import os
import re

from absl import app, flags

from las_jax import metrics, text
from las_jax.data import make_mini_kspon

SENTENCES = (
  '비가 그치면 아이들이 마당에서 신나게 뛸 거예요',
  '점심에 먹은 똠양꿍과 쫀득한 떡이 입맛에 잘 맞았어요',
  '오랫동안 견뎌 온 사람들은 작은 변화도 크게 느낍니다',
)
LIST_NAME = 'unseen.trn'
# One voice per sentence; a clean recording (30 dB SNR), normal speed.
_VOICES = ('m3', 'f2', 'm1')


def speak(out_dir: str | os.PathLike[str]) -> str:
  """Speaks `SENTENCES` into out_dir; returns the path of the .trn list."""
  make_mini_kspon.check_tools()
  lines = []
  for i, (sentence, voice) in enumerate(zip(SENTENCES, _VOICES, strict=True)):
    rel = f'unseen_{i + 1}.pcm'
    job = make_mini_kspon.SpeechJob(
      path=os.path.join(out_dir, rel),
      spoken=sentence,
      lead_burst=False,
      trail_burst=False,
      voice=voice,
      speed=180,
      pitch=50,
      snr_db=30.0,
      seed=(i,),
    )
    make_mini_kspon.synthesize(job)
    lines.append(f'{rel} :: {sentence}\n')
  path = os.path.join(out_dir, 'scripts', LIST_NAME)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(''.join(lines))
  return path


def train_syllables(corpus: str | os.PathLike[str]) -> set[str]:
  """Hangul syllables of a corpus's normalized train transcripts."""
  path = os.path.join(corpus, 'scripts', 'train.trn')
  with open(path, encoding='utf-8') as f:
    raw = [line.rstrip('\n').partition(' :: ')[2] for line in f]
  return set(re.findall('[가-힣]', text.normalize_transcript(' '.join(raw))))


def report(jsonl_path: str | os.PathLike[str]) -> str:
  """Each reference, the model's transcript and its CER, from decode.py."""
  out = []
  with open(jsonl_path, encoding='utf-8') as f:
    for line in f:
      record = json.loads(line)
      ref, hyp = record['reference'], record['hypothesis']
      cer = metrics.cer([ref], [hyp])
      out.append(f'reference:  {ref}\ntranscript: {hyp}\nCER {100 * cer:.1f}%')
  return '\n\n'.join(out)


_CORPUS = flags.DEFINE_string(
  'corpus', None, 'With `speak`: print the syllables its train text lacks.'
)


def main(argv: list[str]) -> None:
  if len(argv) != 3 or argv[1] not in ('speak', 'report'):
    raise app.UsageError(
      'Usage: unseen_sentences speak OUT_DIR [--corpus=DIR] | '
      'report DECODE_JSONL'
    )
  if argv[1] == 'report':
    print(report(argv[2]))
    return
  path = speak(argv[2])
  known = train_syllables(_CORPUS.value) if _CORPUS.value else None
  for sentence in SENTENCES:
    print(sentence)
    if known is not None:
      new = sorted(set(re.findall('[가-힣]', sentence)) - known)
      print(f'  syllables not in the training text: {" ".join(new)}')
  print(f'Wrote {path}.')


if __name__ == '__main__':
  app.run(main)
