"""Segments as subtitles and text: SubRip (.srt), WebVTT (.vtt), .txt.

SubRip: numbered cues, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, blank-line
separated. WebVTT (W3C): a `WEBVTT` header, then cues with `.` before the
milliseconds. Text: one segment per line.
"""

from __future__ import annotations

from collections.abc import Sequence

from las_jax.inference.long_form import Segment

FORMATS = ('srt', 'vtt', 'txt')


def _clock(seconds: float, separator: str) -> str:
  millis = int(round(max(0.0, seconds) * 1000))
  hours, millis = divmod(millis, 3_600_000)
  minutes, millis = divmod(millis, 60_000)
  secs, millis = divmod(millis, 1000)
  return f'{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}'


def render(segments: Sequence[Segment], fmt: str) -> str:
  """The segments' text in `fmt` ('srt', 'vtt' or 'txt').

  Raises:
    ValueError: an unknown format.
  """
  if fmt == 'txt':
    return ''.join(f'{s.text}\n' for s in segments)
  if fmt not in FORMATS:
    raise ValueError(f'format must be one of {FORMATS}, got {fmt!r}')
  sep = ',' if fmt == 'srt' else '.'
  cues = []
  for i, s in enumerate(segments, 1):
    times = f'{_clock(s.start, sep)} --> {_clock(s.end, sep)}'
    cues.append(
      f'{i}\n{times}\n{s.text}\n' if fmt == 'srt' else f'{times}\n{s.text}\n'
    )
  body = '\n'.join(cues)
  return body if fmt == 'srt' else f'WEBVTT\n\n{body}'
