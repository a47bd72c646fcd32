"""Long recordings: read in blocks, cut at pauses, decode the segments.

An attention model decodes one utterance of the length it was trained on;
given minutes of audio in one pass it stops after the first sentence. A
long recording is therefore split into speech regions first:

1. the file is read in blocks (`audio.read_blocks`): an hour of audio never
   sits in memory as float, and as int16 only the regions being decoded;
2. a first pass finds the loudest frame; a second finds speech block by
   block as `librosa.effects.split` does (frames within `top_db` of that
   frame are speech; KoSpeech's silence rule, on energy), on frame powers
   with each frame's mean removed (`audio.frame_powers`: a DC offset is no
   sound; plain numpy, where librosa's first call in a process compiles
   numba kernels: 3 s, or 15-40 s with an empty numba cache, on 2 CPU
   cores);
3. speech intervals closer than `min_pause` join into one region, padded
   by `pad` on both sides (regions with less than `min_speech` of speech,
   clicks and breaths, are dropped); a region longer than `max_seconds` (the largest
   audio bucket the model was trained on) is cut at the quietest frame of
   the last `cut_window` before the limit, again and again;
4. regions go through the recognizer's usual path (trimming, bucketed
   batches, one compiled program per bucket) and come back as `Segment`s
   with start and end seconds, text, score and, on request, word times.

The energy detector, librosa's rule (already a dependency), against WebRTC's
voice activity detector (`webrtcvad`, a C extension) with the same
bridging, padding and cutting, on a 10-minute recording of the mini
corpus's eval_clean utterances under noise at 25 dB SNR
(`benchmarks/long_form_bench.py`, 2026-11-30): start and end of 127
utterances, 254 boundaries; within 0.3 s of a segment boundary: energy
240, webrtcvad 232 / 247 / 246 at aggressiveness 1 / 2 / 3; no segment
held two utterances with either. Energy at top_db 40 or 45 did worse
(189, 39). The small gain did not justify a C dependency.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

import numpy as np

from las_jax import audio
from las_jax.inference import alignment

# Analysis frames of the energy detector: 25 ms windows every 10 ms.
FRAME_SECONDS = 0.025
HOP_SECONDS = 0.010


@dataclasses.dataclass(frozen=True)
class Segment:
  """A decoded region of a long recording (times in seconds)."""

  start: float
  end: float
  text: str
  score: float
  # Word times, with `timestamps` (else None).
  words: tuple[alignment.Span, ...] | None = None

  def __post_init__(self):
    # Plain floats, whatever arithmetic made them: JSON-able, short repr.
    object.__setattr__(self, 'start', float(self.start))
    object.__setattr__(self, 'end', float(self.end))
    object.__setattr__(self, 'score', float(self.score))


@dataclasses.dataclass(frozen=True)
class Splitter:
  """Energy-based speech regions (module doc, steps 2-3).

  Attributes:
    sample_rate: of the samples given, in Hz.
    max_seconds: longest region; longer ones are cut at quiet frames.
    top_db: frames this far below the loudest frame are silence.
    min_pause: shorter pauses do not end a region (seconds).
    pad: seconds of audio kept around each region's speech.
    min_speech: speech shorter than this (a click, a breath) is no region.
    cut_window: where a long region is cut: its quietest frame in the last
      `cut_window` seconds before `max_seconds`.
  """

  sample_rate: int
  max_seconds: float
  top_db: float = 35.0
  min_pause: float = 0.3
  pad: float = 0.15
  min_speech: float = 0.15
  cut_window: float = 2.0

  def __post_init__(self):
    if self.max_seconds <= self.cut_window or self.cut_window <= 0:
      raise ValueError(
        f'need 0 < cut_window ({self.cut_window}) < max_seconds '
        f'({self.max_seconds})'
      )

  def _samples(self, seconds: float) -> int:
    return int(round(seconds * self.sample_rate))

  def loudest(self, blocks: Iterable[np.ndarray]) -> float:
    """The RMS of the loudest analysis frame (the reference of `top_db`)."""
    peak = 0.0
    for block in blocks:
      if block.size >= self._samples(FRAME_SECONDS):
        peak = max(peak, float(np.sqrt(self._powers(block).max())))
    return peak

  def _powers(self, block: np.ndarray) -> np.ndarray:
    """Mean square of each analysis frame of int16 samples, full scale 1."""
    frame, hop = self._samples(FRAME_SECONDS), self._samples(HOP_SECONDS)
    return audio.frame_powers(block.astype(np.float64) / 32768, frame, hop)

  def regions(
    self, blocks: Iterable[np.ndarray], loudest: float
  ) -> Iterator[tuple[int, np.ndarray]]:
    """Speech regions of consecutive blocks: `(first sample, samples)`.

    A region is emitted once a pause of `min_pause` follows it (or the
    recording ends); a region still open at a block's end waits for the
    next block, unless it is already longer than `max_seconds`, whose cut
    pieces go out at once.

    Args:
      blocks: int16 mono blocks (`audio.read_blocks`), the same recording
        `loudest` was measured on.
      loudest: `loudest(blocks)`.
    """
    pause, pad = self._samples(self.min_pause), self._samples(self.pad)
    pending = iter(blocks)
    buf, start = np.zeros(0, np.int16), 0
    while True:
      block = next(pending, None)
      final = block is None
      if not final:
        buf = np.concatenate([buf, block])
      keep = max(0, buf.size - pad)  # Without an open region: the tail.
      for s, e in self._speech(buf, loudest, pause):
        lo = max(0, s - pad)
        if not final and buf.size - e < pause:  # It may go on.
          *done, (keep, _) = self.cut(buf, lo, e)
          for a, b in done:
            yield start + a, buf[a:b].copy()
          break
        for a, b in self.cut(buf, lo, min(buf.size, e + pad)):
          yield start + a, buf[a:b].copy()
      if final:
        return
      buf, start = buf[keep:], start + keep

  def _speech(self, buf, loudest, pause) -> list[list[int]]:
    """Speech intervals of `buf` (`librosa.effects.split`'s rule), pauses
    < `pause` bridged."""
    hop = self._samples(HOP_SECONDS)
    if loudest <= 0 or buf.size < self._samples(FRAME_SECONDS):
      return []
    # librosa's amplitude_to_db floor (amin 1e-5) on both sides.
    floor = 1e-10
    speech_F = np.maximum(self._powers(buf), floor) > max(
      loudest**2, floor
    ) * 10 ** (-self.top_db / 10)
    # Runs of speech frames as [first, end) frames, then samples.
    edges = np.flatnonzero(np.diff(np.r_[False, speech_F, False]))
    intervals = np.minimum(edges * hop, buf.size).reshape(-1, 2)
    spans: list[list[int]] = []
    for s, e in intervals:
      if spans and s - spans[-1][1] < pause:
        spans[-1][1] = int(e)
      else:
        spans.append([int(s), int(e)])
    shortest = self._samples(self.min_speech)
    # A short span at the end may grow in the next block: kept for now.
    return [
      span
      for span in spans
      if span[1] - span[0] >= shortest or buf.size - span[1] < pause
    ]

  def cut(self, buf, lo, hi) -> list[tuple[int, int]]:
    """[a, b) pieces of buf[lo:hi], none longer than `max_seconds`, each
    cut at the quietest 10 ms of the `cut_window` before its limit."""
    limit = self._samples(self.max_seconds)
    window = self._samples(self.cut_window)
    hop = self._samples(HOP_SECONDS)
    pieces = []
    while hi - lo > limit:
      search = buf[lo + limit - window : lo + limit].astype(np.float64)
      power = np.mean(
        search[: search.size // hop * hop].reshape(-1, hop) ** 2, 1
      )
      cut = lo + limit - window + int(np.argmin(power)) * hop
      pieces.append((lo, cut))
      lo = cut
    pieces.append((lo, hi))
    return pieces
