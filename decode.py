r"""Transcribes audio with a trained model; scores it when references exist.

  python decode.py --workdir runs/kspon a.wav b.flac recordings/
  python decode.py --workdir runs/kspon --which=best \
      data/KsponSpeech/scripts/eval_clean.trn --beam_size=10
  python decode.py --workdir runs/kspon --split=eval_other --batch_size=64
  python decode.py --checkpoint runs/kspon/checkpoints/20000 --audio a.pcm
  python decode.py --workdir runs/kspon --long_form --format=srt lecture.mp3

Inputs: audio files (WAV, FLAC, Ogg Vorbis/Opus, MP3, AIFF, CAF, ...,
headerless 16 kHz PCM; any rate, channel count and sample format),
directories (searched recursively for every extension the audio reader
reads), KsponSpeech .trn lists (`path :: transcript`, references known) or
a split of the run's TFDS dataset. Prints `id<TAB>hypothesis` lines, writes
a JSONL file (default <workdir>/decode/<name>.jsonl) and a summary with
CER/WER/sWER, the real-time factor and how many hypotheses look like
loops (each such hypothesis also gets a warning naming its file).
Unreadable, silent or too short files are reported and skipped, and so are
files without speech (noise, tones, music): with a CTC head, a file whose
CTC best path emits fewer than --no_speech_units_per_second confident
units in every second, and that is no short reply the CTC head hears
(--no_speech_short_units), is not decoded into invented text
(las_jax/inference/no_speech.py gives the rule and the figures it was
chosen by); conversions worth
knowing are reported as warnings, one line per file each; the exit status is 0 when at least one input was decoded. JAX options are flags too (`--jax_platforms=cpu`).
Compiled programs are cached on disk, so a second run starts at once
(`--jax_compilation_cache_dir=` turns that off; see
las_jax/compilation_cache.py and las_jax/inference/aot.py).

LAS with a CTC head decodes with one-pass joint CTC/attention beam search
by default (--ctc_mode, --ctc_weight); --lm_workdir fuses a language model
trained by train.py (--lm_weight):

  python decode.py --workdir runs/mini --split=eval_clean \
      --lm_workdir runs/mini_lm --lm_weight=0.3
"""

import gc
import sys

import jax
from absl import app, flags, logging

from las_jax import compilation_cache
from las_jax.inference import transcription

_WORKDIR = flags.DEFINE_string(
  'workdir', None, 'Training run directory to load a checkpoint from.'
)
_WHICH = flags.DEFINE_enum(
  'which', 'latest', ['latest', 'best'], 'Checkpoint of --workdir to load.'
)
_CHECKPOINT = flags.DEFINE_string(
  'checkpoint', None, 'A checkpoint step directory, instead of --workdir.'
)
_MODEL = flags.DEFINE_string(
  'model',
  None,
  'A model directory `python -m las_jax.export` wrote, instead of '
  '--workdir (default output: ./decode/<name>.jsonl).',
)
_AUDIO = flags.DEFINE_multi_string(
  'audio',
  [],
  'Audio file, directory or .trn list (repeatable; positional '
  'arguments are inputs too).',
)
_AUDIO_ROOT = flags.DEFINE_string(
  'audio_root',
  None,
  'Root of the paths in .trn lists (default: the '
  "corpus root, the parent of the list's scripts/ directory).",
)
_SPLIT = flags.DEFINE_string(
  'split', None, "Decode this split of the run's TFDS dataset instead."
)
_DATASET = flags.DEFINE_string(
  'dataset', None, 'TFDS builder for --split (default: the run config).'
)
_DATA_DIR = flags.DEFINE_string(
  'data_dir', None, 'TFDS data directory for --split (default: the run config).'
)
_BEAM_SIZE = flags.DEFINE_integer(
  'beam_size', None, 'Beam width, 1 = greedy (default: config.decode).'
)
_BATCH_SIZE = flags.DEFINE_integer(
  'batch_size', None, 'Utterances per batch (default: config.decode).'
)
_CTC_MODE = flags.DEFINE_enum(
  'ctc_mode',
  None,
  ['joint', 'rescore', 'ctc', 'off'],
  "How LAS uses its CTC head: 'joint' (CTC prefix scores inside the beam "
  "search), 'rescore' (of the attention n-best), 'ctc' (CTC alone) or "
  "'off' (default: config.decode; 'joint' with a CTC head).",
)
_CTC_WEIGHT = flags.DEFINE_float(
  'ctc_weight',
  None,
  "CTC weight of 'joint' and 'rescore': (1 - w) * attention + w * CTC "
  '(default: config.decode, else the training weight).',
)
_LM_WORKDIR = flags.DEFINE_string(
  'lm_workdir',
  None,
  'Language model run (train.py with configs/*_lm.py) for shallow fusion '
  "(default: config.decode.lm_workdir; '' = none).",
)
_LM_WEIGHT = flags.DEFINE_float(
  'lm_weight', None, 'Shallow fusion weight (default: config.decode).'
)
_LENGTH_BONUS = flags.DEFINE_float(
  'length_bonus',
  None,
  'Score added per output unit in beam search (default: config.decode).',
)
_LENGTH_PENALTY = flags.DEFINE_float(
  'length_penalty',
  None,
  'Beam search length penalty alpha (default: config.decode).',
)
_COMPUTE_DTYPE = flags.DEFINE_enum(
  'compute_dtype',
  None,
  ['float32', 'bfloat16'],
  'Precision of matmuls and convolutions (bfloat16: mixed precision, for '
  'GPUs with bfloat16 tensor cores and TPUs; default: config.decode, '
  "whose None is the run's train.compute_dtype).",
)
_NO_SPEECH = flags.DEFINE_float(
  'no_speech_units_per_second',
  None,
  'Skip inputs whose CTC best path emits fewer confident units (each '
  'counted by its posterior) than this in every second as holding no '
  'speech, short replies apart (las_jax/inference/no_speech.py); 0 = off; '
  'models with a CTC head (default: config.decode).',
)
_NO_SPEECH_SHORT = flags.DEFINE_float(
  'no_speech_short_units',
  None,
  'Fewer confident units are speech too when they add up to this and the '
  'transcript is what the CTC head hears: a short reply (default: '
  'config.decode).',
)
_TIMESTAMPS = flags.DEFINE_bool(
  'timestamps',
  False,
  'Word start and end seconds in the JSONL (CTC forced alignment; models '
  'with a CTC head).',
)
_LONG_FORM = flags.DEFINE_bool(
  'long_form',
  False,
  'Decode every input as segments split at pauses, reading files in '
  'blocks (inputs longer than the largest audio bucket always are).',
)
_FORMAT = flags.DEFINE_multi_enum(
  'format',
  [],
  ['srt', 'vtt', 'txt'],
  'Also write each input as SubRip/WebVTT subtitles or text lines, one '
  'segment each, in <output without .jsonl>/ (repeatable).',
)
_OUTPUT = flags.DEFINE_string(
  'output', None, 'JSONL output path (default: <workdir>/decode/<name>.jsonl).'
)


def main(argv: list[str]) -> None:
  compilation_cache.enable_by_default()
  if not flags.FLAGS['verbosity'].present:
    # stderr carries skipped files and the summary; library INFO logs
    # (orbax) would bury them. --verbosity=0 brings them back.
    logging.set_verbosity(logging.WARNING)
  try:
    summary = transcription.run(
      workdir=_WORKDIR.value,
      which=_WHICH.value,
      checkpoint=_CHECKPOINT.value,
      model=_MODEL.value,
      paths=[*_AUDIO.value, *argv[1:]],
      audio_root=_AUDIO_ROOT.value,
      split=_SPLIT.value,
      dataset=_DATASET.value,
      data_dir=_DATA_DIR.value,
      output=_OUTPUT.value,
      timestamps=_TIMESTAMPS.value,
      long_form=_LONG_FORM.value,
      formats=_FORMAT.value,
      beam_size=_BEAM_SIZE.value,
      batch_size=_BATCH_SIZE.value,
      ctc_mode=_CTC_MODE.value,
      ctc_weight=_CTC_WEIGHT.value,
      lm_workdir=_LM_WORKDIR.value,
      lm_weight=_LM_WEIGHT.value,
      length_bonus=_LENGTH_BONUS.value,
      length_penalty=_LENGTH_PENALTY.value,
      compute_dtype=_COMPUTE_DTYPE.value,
      no_speech_units_per_second=_NO_SPEECH.value,
      no_speech_short_units=_NO_SPEECH_SHORT.value,
    )
  except (ValueError, FileNotFoundError) as e:
    # Bad arguments or a missing run: a message, not a traceback.
    sys.exit(f'decode.py: {e}')
  if not summary.utterances:
    sys.exit('decode.py: no input could be decoded')
  # The interpreter's exit would garbage-collect every object JAX and Flax
  # made, 0.6 s of a short run on 2 busy cores; nothing left needs it.
  gc.freeze()


if __name__ == '__main__':
  jax.config.config_with_absl()
  app.run(main)
