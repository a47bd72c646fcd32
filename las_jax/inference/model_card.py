"""The model card (README.md) of an exported model.

What someone handed the directory needs to know before using it: what the
model is (architecture, parameter count, output units, input features),
what it was trained on and for how long, how well it did (the dev metric
of the exported checkpoint from the run's metrics.jsonl, and the test
figures `decode.py` wrote to `<workdir>/decode/*.summary.json`), and how
to load it.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import ml_collections

from las_jax.text import Vocabulary

_ATTENTION = {
  'multi-head': 'multi-head scaled dot-product ({heads} heads)',
  'location': 'location-aware (Chorowski et al., 2015)',
  'additive': 'additive (Bahdanau et al., 2015)',
}
_RNN = {'lstm': 'LSTM', 'gru': 'GRU', 'rnn': 'RNN'}


def _rows(rows: list[tuple[str, str]]) -> list[str]:
  return ['| | |', '|---|---|', *(f'| {k} | {v} |' for k, v in rows)]


def _layers(n: int) -> str:
  return f'{n} layer{"s" if n != 1 else ""}'


def _architecture(config: ml_collections.ConfigDict) -> list[tuple[str, str]]:
  m = config.model
  if m.name == 'lstm_lm':
    return [
      ('Model', 'LSTM language model over the recognizer units'),
      ('Layers', f'{_layers(m.lm_layers)} LSTM of {m.lm_hidden} units'),
    ]
  rnn = _RNN.get(m.encoder_rnn_type, m.encoder_rnn_type)
  bi = 'bidirectional ' if m.bidirectional else ''
  extractor = (
    f'VGG, channels {tuple(m.vgg_channels)} (time / 4)'
    if m.extractor == 'vgg'
    else 'DeepSpeech2 strided convolutions (time / 2)'
  )
  rows = [('Feature extractor', f'{extractor}, {m.activation}')]
  if m.name == 'deepspeech2':
    rows.insert(0, ('Model', 'DeepSpeech2 with a CTC output (blank id 0)'))
    rows.append(
      (
        'Encoder',
        f'{_layers(m.encoder_layers)} {bi}{rnn} of {m.encoder_hidden} units',
      )
    )
    return rows
  ctc = (
    f'with a CTC head (joint CTC-attention training, CTC weight {m.ctc_weight})'
    if m.ctc_weight > 0
    else 'without a CTC head'
  )
  pyramid = (
    f', pyramidal time reduction after layers {tuple(m.pyramid_layers)}'
    if len(m.pyramid_layers)
    else ''
  )
  attention = _ATTENTION.get(m.attention, m.attention).format(heads=m.num_heads)
  feeding = ', input feeding' if m.input_feeding else ''
  rows.insert(0, ('Model', f'Listen, Attend and Spell {ctc}'))
  rows += [
    (
      'Listener',
      f'{_layers(m.encoder_layers)} {bi}{rnn} of {m.encoder_hidden} units'
      f'{pyramid}',
    ),
    ('Attention', attention),
    (
      'Speller',
      f'{_layers(m.decoder_layers)} LSTM of {m.decoder_hidden} units{feeding}',
    ),
  ]
  return rows


def _features(config: ml_collections.ConfigDict) -> str:
  f = config.features
  reverse = ', time-reversed input' if f.input_reverse else ''
  return (
    f'{f.sample_rate} Hz mono (other rates, channel counts and formats are '
    f'converted on reading); {f.num_mels} log-mel bins, '
    f'{f.frame_length_ms} ms {f.window} window, {f.frame_shift_ms} ms hop, '
    f'{f.normalize} normalization{reverse}. Silence trimmed at the ends: '
    f'{"yes, top_db " + str(config.input.trim_top_db) if config.input.trim_silence else "no"}.'
  )


def dev_metrics(workdir: Path, step: int) -> dict[str, float]:
  """The dev metrics logged at `step` in workdir/metrics.jsonl ({} if none)."""
  path = workdir / 'metrics.jsonl'
  if not path.is_file():
    return {}
  found: dict[str, float] = {}
  for line in path.read_text(encoding='utf-8').splitlines():
    try:
      record = json.loads(line)
    except json.JSONDecodeError:
      continue  # A line cut by a killed run.
    if record.get('step') == step:
      found.update({k: v for k, v in record.items() if k.startswith('dev/')})
  return found


def decode_summaries(workdir: Path) -> list[tuple[str, dict[str, Any], str]]:
  """`(name, summary, date written)` of each <workdir>/decode/*.summary.json
  with error rates: decodes of inputs with references (test sets), not
  one-off transcriptions of files."""
  found = []
  for path in sorted((workdir / 'decode').glob('*.summary.json')):
    try:
      summary = json.loads(path.read_text(encoding='utf-8'))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
      continue
    if not isinstance(summary, dict) or not summary.get('rates'):
      continue
    written = datetime.datetime.fromtimestamp(path.stat().st_mtime)
    name = path.name.removesuffix('.summary.json')
    found.append((name, summary, written.strftime('%Y-%m-%d %H:%M')))
  return found


def _percent(value: Any) -> str:
  return f'{100 * value:.2f}' if isinstance(value, (int, float)) else '-'


def _test_figures(workdir: Path) -> list[str]:
  summaries = decode_summaries(workdir)
  if not summaries:
    return [
      f'No test figures: {workdir}/decode held no `*.summary.json` when the '
      'model was exported (`python decode.py --workdir RUN --which=best '
      '--split=eval_clean` writes one).'
    ]
  lines = [
    'As `decode.py` reported them (`<run>/decode/*.summary.json`; CER with '
    'spaces removed, as KoSpeech). The summaries do not record which '
    'checkpoint or search options produced them: the date says when.',
    '',
    '| Test set | Utterances | CER % | CER with spaces % | WER % | sWER % '
    '| Real-time factor | Written |',
    '|---|---|---|---|---|---|---|---|',
  ]
  for name, s, written in summaries:
    rates = s.get('rates') or {}
    rtf = s.get('real_time_factor')
    lines.append(
      f'| {name} | {s.get("utterances", "-")} | {_percent(rates.get("cer"))} '
      f'| {_percent(rates.get("cer_with_spaces"))} '
      f'| {_percent(rates.get("wer"))} | {_percent(rates.get("swer"))} '
      f'| {f"{rtf:.3f}" if isinstance(rtf, (int, float)) else "-"} '
      f'| {written} |'
    )
  return lines


def model_card(
  name: str,
  config: ml_collections.ConfigDict,
  vocab: Vocabulary,
  num_params: int,
  workdir: Path,
  step: int,
  which: str,
  date: str,
) -> str:
  """The README.md text of an exported model.

  Args:
    name: the exported directory as the user named it (title and
      examples).
    config: the run's configuration.
    vocab: its vocabulary.
    num_params: trainable parameters.
    workdir: the training run directory (metrics.jsonl, decode/).
    step: the exported checkpoint's step.
    which: 'latest' or 'best' checkpoint.
    date: the export date.
  """
  is_lm = config.model.name == 'lstm_lm'
  d, t = config.data, config.train
  dev = dev_metrics(workdir, step)
  if 'dev/cer' in dev:
    dev_line = f'dev CER {_percent(dev["dev/cer"])}% (greedy search)'
  elif 'dev/perplexity' in dev:
    dev_line = f'dev perplexity {dev["dev/perplexity"]:.2f}'
  else:
    dev_line = 'no dev evaluation logged at this step'
  rows = _architecture(config) + [
    (
      'Output units',
      f'{len(vocab)} ({vocab.unit}; ids 0-3 `<pad>` `<sos>` `<eos>` '
      '`<unk>`, 4 space)',
    ),
    (
      'Parameters',
      f'{num_params:,} ({num_params * 4 / 2**20:.1f} MiB as float32)',
    ),
  ]
  training = [
    ('Data', f'`{d.dataset}` ({d.manual_dir}), split `{d.train_split}`'),
    ('Transcripts', f'{d.transcription} form of dual transcriptions'),
    ('Steps', f'{step:,} of {t.num_steps:,} ({which} checkpoint)'),
    ('Batch', f'{config.input.batch_size} utterances'),
    (
      'Optimizer',
      f'Adam{"W" if t.weight_decay else ""}, peak learning rate '
      f'{t.peak_lr:g}, {t.lr_schedule} schedule',
    ),
    ('At this step', f'{dev_line} on split `{d.dev_split}`'),
  ]
  if is_lm:
    use = [
      '```python',
      'from las_jax.inference import Recognizer',
      f"rec = Recognizer.from_pretrained('models/RECOGNIZER', lm='{name}')",
      '```',
      '',
      'Fused with the recognizer whose vocabulary it was trained on '
      '(shallow fusion, `lm_weight`).',
    ]
  else:
    use = [
      '```python',
      'from las_jax.inference import Recognizer',
      f"rec = Recognizer.from_pretrained('{name}')",
      "rec.transcribe(['a.wav', 'b.flac'])",
      '```',
      '',
      f'A web page to try it: `python -m las_jax.serve --model {name}`.',
    ]
  kind = 'language model' if is_lm else 'speech recognizer'
  lines = [
    f'# {Path(name).name}: Korean {kind} (las_jax)',
    '',
    f'Exported {date} from the training run `{workdir}`, step {step}, with '
    '`python -m las_jax.export`. Files: `model.json` (manifest), '
    '`config.json` (configuration; `features` is the input front end), '
    '`vocab.txt` (vocabulary), `weights.npz` (parameters).',
    '',
    '## Use',
    '',
    *use,
    '',
    '## Model',
    '',
    *_rows(rows),
  ]
  if not is_lm:
    lines += ['', '## Input', '', _features(config)]
  lines += ['', '## Training', '', *_rows(training)]
  if not is_lm:
    lines += ['', '## Test figures', '', *_test_figures(workdir)]
  return '\n'.join(lines) + '\n'
