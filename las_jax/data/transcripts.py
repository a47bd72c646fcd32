"""Transcript lists read without TFDS: KsponSpeech .trn files, text lines.

What both the dataset builders (`common`, `ksponspeech`, `manifest`) and
`decode.py` on a user's .trn list need: decoding a list line by line
(`read_text_lines`: a list mixing UTF-8 and CP949 lines, or with one stray
byte, loses only the lines that are neither, each reported by file and line
number), parsing KsponSpeech's `PATH :: TEXT` lines (`read_trn`) and
normalizing a transcript for a builder config (`normalize`). Kept apart
from the builders so that decoding audio files never imports
tensorflow_datasets (half a second of start-up).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence

from las_jax import text

# Transcription modes; 'none' (manifest builder only) collapses whitespace.
PHONETIC, SPELLING, NONE = 'phonetic', 'spelling', 'none'
# Where the .trn lists may live, relative to the manual directory.
SCRIPT_DIRS = ('scripts', 'KsponSpeech_scripts')
# `PATH :: TEXT`; the text may be empty (then skipped as empty).
_TRN_LINE_RE = re.compile(r'^(\S+?)\s*::\s*(.*)$')
# Byte-order marks, longest first (UTF-32 LE starts like UTF-16 LE).
_BOMS = (
  (b'\xff\xfe\x00\x00', 'utf-32-le'),
  (b'\x00\x00\xfe\xff', 'utf-32-be'),
  (b'\xef\xbb\xbf', 'utf-8'),
  (b'\xff\xfe', 'utf-16-le'),
  (b'\xfe\xff', 'utf-16-be'),
)


@dataclasses.dataclass(frozen=True)
class Utterance:
  """One line of a transcript list.

  Attributes:
    id: utterance id, e.g. 'KsponSpeech_000001'.
    audio_path: absolute path of the audio file.
    raw_text: transcript as written in the list.
    source: where the line came from, e.g. 'train.trn:12', for reports.
  """

  id: str
  audio_path: str
  raw_text: str
  source: str


@dataclasses.dataclass(frozen=True)
class Skipped:
  """A line of a transcript list that produced no example."""

  source: str
  path: str
  reason: str


def _split_lines(data: bytes, encoding: str) -> list[bytes]:
  """Raw lines of BOM-less data in `encoding`, split at its '\\n' units."""
  width = {'utf-16-le': 2, 'utf-16-be': 2, 'utf-32-le': 4, 'utf-32-be': 4}
  unit = width.get(encoding, 1)
  if unit == 1:  # UTF-8 and CP949: no multi-byte character holds 0x0A.
    lines = data.split(b'\n')
  else:
    newline = '\n'.encode(encoding)
    lines, start = [], 0
    # A dangling partial unit stays in the last line (and fails there).
    for at in range(0, len(data) - unit + 1, unit):
      if data[at : at + unit] == newline:
        lines.append(data[start:at])
        start = at + unit
    lines.append(data[start:])
  if lines[-1] == b'':
    lines.pop()  # After the final line break (or of an empty file).
  return lines


def _decode(raw: bytes, encodings: Sequence[str]) -> str | None:
  for encoding in encodings:
    try:
      return raw.decode(encoding)
    except UnicodeDecodeError:
      pass
  return None


def read_text_lines(
  path: str | os.PathLike[str],
) -> tuple[list[tuple[int, str]], list[Skipped]]:
  """The lines of a text file, decoded one by one; undecodable ones reported.

  A byte-order mark selects UTF-8, UTF-16 or UTF-32 for the whole file.
  Without one, each line is UTF-8 if it decodes as UTF-8, else CP949 (the
  encoding of KsponSpeech's own transcripts), so files mixing the two
  decode fully. Lines that decode as neither, and lines holding NUL
  characters (UTF-16 without its mark), are reported, not returned.

  Args:
    path: the file.

  Returns:
    ([(line number, text without the line break)], [Skipped]) where each
    Skipped names `<file>:<line>` and the reason.

  Raises:
    OSError: the file cannot be read.
  """
  with open(path, 'rb') as f:
    data = f.read()
  encoding = None
  for bom, name in _BOMS:
    if data.startswith(bom):
      encoding, data = name, data[len(bom) :]
      break
  name = os.path.basename(os.fspath(path))
  lines, bad = [], []
  encodings = (encoding,) if encoding else ('utf-8', 'cp949')
  for line_no, raw in enumerate(_split_lines(data, encoding or 'utf-8'), 1):
    if encoding is None and b'\x00' in raw:
      reason = 'line holds NUL bytes (UTF-16 without a byte-order mark?)'
    else:
      text = _decode(raw, encodings)
      if text is not None:
        lines.append((line_no, text.removesuffix('\r')))
        continue
      tried = ' or '.join(e.upper() for e in encodings)
      reason = f'line is not {tried} text: {raw[:60]!r}'
    bad.append(Skipped(f'{name}:{line_no}', '', reason))
  return lines, bad


def in_line_order(skipped: Sequence[Skipped]) -> list[Skipped]:
  """Skipped lines of one list (sources `<file>:<line>`) by line number."""
  return sorted(skipped, key=lambda s: int(s.source.rpartition(':')[2]))


def normalize(raw: str, transcription: str, utterance_id: str) -> str:
  """Normalizes a transcript for the builder config `transcription`."""
  if transcription == NONE:
    return ' '.join(raw.split())
  return text.normalize_transcript(
    raw, transcription, utterance_id=utterance_id
  )


def read_trn(
  trn_path: str, manual_dir: str
) -> tuple[list[Utterance], list[Skipped]]:
  """Parses a .trn list into utterances and malformed lines.

  Args:
    trn_path: the .trn file: UTF-8 or CP949 (as the corpus .txt files),
      per line, or UTF-16 with a byte-order mark (`read_text_lines`).
    manual_dir: directory the audio paths are relative to.

  Returns:
    (utterances, skipped lines), each in file order; lines that do not
    decode or parse are skipped, named `<list>:<line>`.
  """
  lines, skipped = read_text_lines(trn_path)
  name = os.path.basename(trn_path)
  utterances = []
  for line_no, line in lines:
    line = line.strip()
    if not line:
      continue
    source = f'{name}:{line_no}'
    match = _TRN_LINE_RE.match(line)
    if not match:
      reason = f"malformed line {line!r}: expected 'PATH :: TEXT'"
      skipped.append(Skipped(source, '', reason))
      continue
    rel_path, raw_text = match.group(1), (match.group(2) or '').strip()
    # Some copies of the lists write corpus paths with a leading '/'; an
    # absolute path that exists as written (a user's own list) is kept.
    audio_path = os.path.join(manual_dir, rel_path.lstrip('/'))
    if os.path.isabs(rel_path) and not os.path.exists(audio_path):
      if os.path.exists(rel_path):
        audio_path = rel_path
    utt_id = os.path.splitext(os.path.basename(rel_path))[0]
    utterances.append(Utterance(utt_id, audio_path, raw_text, source))
  return utterances, in_line_order(skipped)
