"""Inputs without speech: refused by the CTC head, never decoded into text.

An attention decoder always writes something: given noise, a tone, music or
hum, the demo LAS wrote loops of syllables and bare jamo ('쳋ㅈ쳋쳋쨎챚찮앗',
'분분분분분분분븡분큼'). Its CTC head is trained to emit blank where nothing
is said. The rule (`judge`) has two cues, both from the CTC head:

1. Confident units: the units its best path (per-frame argmax, repeats
   merged, blanks dropped) emits in each `WINDOW_SECONDS` stretch of the
   input (all of it when shorter), each counted by its peak posterior (a
   CTC spike's height: a confident spike counts about 1, a unit the head
   barely prefers over blank and the other labels less). An input with
   `decode.no_speech_units_per_second` or more in its densest stretch is
   speech. Counting in the densest second keeps a short word in a long
   noisy recording apart from sparse units spread over music; counting
   units instead of frames makes the rule the same at any encoder frame
   rate; weighting them by their posterior keeps the diffuse units noise
   draws out of the count.
2. Short replies ('네', '아니요'): one or two syllables give one to three
   units, as noise does, so no count separates them. An input with fewer
   confident units is speech too when they still add up to
   `decode.no_speech_short_units` and the transcript is what the CTC head
   hears: not empty, and at most `MAX_DISAGREEMENT` of its units differ
   from the best path. Where there is nothing to hear, the attention
   decoder writes what the CTC head does not ('쳋ㅈ쳋쳋' over one weak
   'ㅈ'); the two agree on a word that is said. A CTC-only search
   (DeepSpeech2, 'ctc' mode) has no second transcript: its own always
   agrees with its best path, noise or not, so only the count applies.

Measured with the demo model (runs/mini of `make demo`: LAS with a CTC
head, spm_jamo units; 2026-11-30; benchmarks/lead_in_and_no_speech_bench.py
reproduces it). Confident units in the densest second: white, pink and
brown noise at -20 and -40 dBFS 0.14-2.75, pure tones and a sweep 0-0.44,
chords and a melody 0.67-2.12, 50/60 Hz hum 0.26-0.72, clicks 0-0.30:
all 22 refused (the bare unit count of the earlier rule let 3 through:
noise and chords gave 3-5 units); every eval_clean and eval_other
utterance (300) 4.27-10.32 and 40 espeak-ng sentences at 10 dB SNR
4.83-9.40: none refused. Over 10 draws of the noises (`--noise_draws
10`), 219 of 220 sounds were refused (a white noise at -20 dBFS reached
3.55; the bare count refused 195). Of the non-speech sounds, only hum
heard as '음' had a transcript the CTC head hears (at most 0.72 confident
units), hence `no_speech_short_units` 0.75. Short replies (10
one-syllable and 7 two-syllable words, 4 espeak-ng voices, 3 speeds) are
kept far more often than by the bare count, which refused 98% of
one-syllable words, but not always: the demo model, trained on
sentences, hears many lone words weakly (no unit at all for some).
Cues that separated less well: the share of blank frames, the mean
non-blank posterior and the non-blank posterior mass (hum and noise as
high as speech); the highest unit posterior alone (chords 0.98, noise
0.89); WebRTC's VAD (noise, tones and chords called speech).

A model without a CTC head has no such evidence: the rule is off for it
(`Recognizer.detects_no_speech`) and decode.py says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import ml_collections

from las_jax.inference import alignment

# Length of the stretch units are counted in, seconds.
WINDOW_SECONDS = 1.0
# Most a short transcript may differ from the CTC head's best path and
# still be what the head hears: unit edit distance over the longer of the
# two (1 in 3: one unit of a three-unit word; none of a one- or two-unit
# one).
MAX_DISAGREEMENT = 1 / 3


def window_frames(config: ml_collections.ConfigDict) -> int:
  """Encoder frames in `WINDOW_SECONDS` of audio (at least one)."""
  return max(1, round(WINDOW_SECONDS / alignment.encoder_frame_seconds(config)))


def disagreement(best_path: Sequence[int], hypothesis: Sequence[int]) -> float:
  """Unit edit distance between the CTC best path and a transcript, over
  the longer of the two; 0 when both are empty."""
  # Host-side only: the compiled search imports this module, and the
  # accelerator hosts' images need not carry editdistance.
  import editdistance  # noqa: PLC0415

  longer = max(len(best_path), len(hypothesis))
  if not longer:
    return 0.0
  return editdistance.eval(list(best_path), list(hypothesis)) / longer


@dataclasses.dataclass(frozen=True)
class NoSpeech:
  """What `Recognizer.decode_stream` gives for an input the rule refuses.

  Attributes:
    units: confident units in the densest second (`judge`).
    disagreement: of the transcript with the CTC best path (`disagreement`);
      None when the search was the CTC head's own (no second opinion).
    threshold: the `no_speech_units_per_second` it fell short of.
    short_threshold: the `no_speech_short_units` a short transcript the
      head hears needs.
  """

  units: float
  disagreement: float | None
  threshold: float
  short_threshold: float

  @property
  def reason(self) -> str:
    """Why the input was skipped, for 'Skipping NAME: reason' lines."""
    if self.disagreement is None:
      short = (
        'and a CTC-only search gives no second transcript to admit a short '
        'reply'
      )
    elif self.disagreement > MAX_DISAGREEMENT:
      short = (
        'and the transcript is not what it hears '
        f'({self.disagreement:.0%} of units differ from its best path)'
      )
    else:
      short = (
        f'and fewer than the no_speech_short_units={self.short_threshold:g} '
        'a short reply needs'
      )
    return (
      f'no speech found: the CTC head hears {self.units:.2f} confident '
      'unit(s) in its densest second, fewer than '
      f'no_speech_units_per_second={self.threshold:g}, {short} (noise, a '
      'tone or music, or a word the model hears weakly; '
      '--no_speech_units_per_second=0 turns the rule off; see '
      'las_jax/inference/no_speech.py)'
    )


def judge(
  units: float,
  differs: float | None,
  units_per_second: float,
  short_units: float,
) -> NoSpeech | None:
  """The rule: None for speech, else why not.

  Args:
    units: confident units of the CTC best path in the densest second
      (`ctc.densest_confident_units`).
    differs: `disagreement` of the best transcript with the best path;
      None when the transcript is the CTC head's own (CTC-only search:
      DeepSpeech2, 'ctc' mode), which agrees with its best path whatever
      it hears, noise included, so it cannot admit a short reply.
    units_per_second: `no_speech_units_per_second`: speech at this many
      confident units or more.
    short_units: `no_speech_short_units`: fewer units are speech too when
      they are at least this many and the transcript is what the head
      hears (`MAX_DISAGREEMENT`; an empty transcript of a non-empty best
      path differs in all of its units).
  """
  if units >= units_per_second:
    return None
  if (
    differs is not None and differs <= MAX_DISAGREEMENT and units >= short_units
  ):
    return None
  return NoSpeech(
    float(units),
    None if differs is None else float(differs),
    units_per_second,
    short_units,
  )
