"""Inputs without speech: refused by the CTC head, never decoded into text.

An attention decoder always writes something: given noise, a tone, music or
hum, the demo LAS wrote loops of syllables and bare jamo ('틎척츶측츧츠츳츳',
'꿈무부무무무부무무무 물꿈'). Its CTC head is trained to emit blank where
nothing is said, and on such inputs its best path (per-frame argmax,
repeats merged, blanks dropped) emits almost nothing. The rule: count the
units the best path emits in each `WINDOW_SECONDS` stretch of the input
(all of it when shorter); an input whose densest stretch has fewer than
`decode.no_speech_units_per_second` units holds no speech, and is reported
and skipped like a silent one. Counting in the densest second instead of
over the whole input keeps a short word in a long noisy recording (that
trimming keeps whole) apart from sparse units spread over music; counting
units instead of frames makes the rule the same at any encoder frame rate.

Measured with the demo model (runs/mini of `make demo`: LAS with a CTC
head, spm_jamo units; 2026-11-30; benchmarks/lead_in_and_no_speech_bench.py
reproduces it), units in the densest second: white, pink and brown noise
at -20 and -40 dBFS, pure tones of 100 Hz to 3 kHz and a sweep, 50/60 Hz
hum with harmonics, clicks in silence or noise: 0 or 1; chords and a
melody: 1 or 2; every eval_clean and eval_other utterance (300): 5 to 14;
20 espeak-ng sentences at 10 dB SNR in white or pink noise: 6 to 11; a
lone word in 3 s of pink noise: 0 to 4 (3 of 8 refused at 3, among them
every one-syllable '네'). Frame-share rules separated less well: the
share of frames whose best label is blank was 0.93-1.00 for non-speech
against up to 0.87 for speech; the mean non-blank posterior overlapped
(tones up to 0.27, speech down to 0.13); WebRTC's VAD called tones, hum
and noise speech.
A model without a CTC head has no such evidence: the rule is off for it
(`Recognizer.detects_no_speech`) and decode.py says so.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from las_jax.inference import alignment

# Length of the stretch units are counted in, seconds.
WINDOW_SECONDS = 1.0


def window_frames(config: ml_collections.ConfigDict) -> int:
  """Encoder frames in `WINDOW_SECONDS` of audio (at least one)."""
  return max(1, round(WINDOW_SECONDS / alignment.encoder_frame_seconds(config)))


@dataclasses.dataclass(frozen=True)
class NoSpeech:
  """What `Recognizer.decode_stream` gives for an input the rule refuses.

  Attributes:
    units: units the CTC head's best path emits in the densest second.
    threshold: the `no_speech_units_per_second` it fell short of.
  """

  units: int
  threshold: float

  @property
  def reason(self) -> str:
    """Why the input was skipped, for 'Skipping NAME: reason' lines."""
    return (
      f'no speech found: the CTC head hears {self.units} unit(s) in its '
      f'densest second, fewer than no_speech_units_per_second='
      f'{self.threshold:g} (noise, a tone or music; see '
      'las_jax/inference/no_speech.py)'
    )
