"""Training plots as PNG bytes: attention alignments and loss/CER curves.

matplotlib runs with the Agg backend (no display) and figures are closed
after rendering so a long run does not accumulate them.
"""

import io
import warnings
from collections.abc import Sequence

import matplotlib

matplotlib.use('Agg')

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import font_manager  # noqa: E402

# Fonts with Hangul, most common first (`make` installs NanumGothic from
# Debian's fonts-nanum); matplotlib's own DejaVu Sans has none.
_HANGUL_FONTS = (
  'NanumGothic',
  'Noto Sans CJK KR',
  'Noto Sans KR',
  'Malgun Gothic',
  'AppleGothic',
  'UnDotum',
)


def _hangul_font() -> str | None:
  """The first installed font of `_HANGUL_FONTS`, or None."""
  manager = font_manager.fontManager
  if not {font.name for font in manager.ttflist} & set(_HANGUL_FONTS):
    # matplotlib's font cache may predate the font's installation.
    for path in font_manager.findSystemFonts():
      if any(k in path.lower() for k in ('nanum', 'cjk', 'noto', 'undotum')):
        manager.addfont(path)
  installed = {font.name for font in manager.ttflist}
  return next((name for name in _HANGUL_FONTS if name in installed), None)


_FONT = _hangul_font()
# Korean titles and tick labels in that font, the rest in the default; set
# per figure, so importing this module leaves the user's rcParams alone.
_STYLE = {'font.family': [_FONT, 'DejaVu Sans']} if _FONT else {}


def _png(fig) -> bytes:
  buf = io.BytesIO()
  with warnings.catch_warnings():
    # Titles carry Korean transcripts; without a Hangul font installed
    # the glyphs render as boxes and matplotlib warns once per character.
    warnings.filterwarnings('ignore', message='Glyph .* missing')
    fig.savefig(buf, format='png', dpi=100, bbox_inches='tight')
  plt.close(fig)
  return buf.getvalue()


@plt.rc_context(_STYLE)
def attention_png(
  attention_LxS: np.ndarray,
  num_tokens: int,
  num_frames: int,
  title: str = '',
  tokens: Sequence[str] | None = None,
) -> bytes:
  """Heat map of one utterance's attention weights (decoder step vs frame).

  Args:
    attention_LxS: weights for the padded utterance.
    num_tokens: valid decoder steps (rows) to show.
    num_frames: valid encoder frames (columns) to show.
    title: figure title (e.g. the utterance id and CER).
    tokens: labels for the rows (output units), optional.

  Returns:
    PNG bytes.
  """
  attn = np.asarray(attention_LxS, np.float32)[:num_tokens, :num_frames]
  height = 2 + 0.18 * max(num_tokens, 8)
  fig, ax = plt.subplots(figsize=(8, min(height, 12)))
  ax.imshow(attn, aspect='auto', origin='lower', interpolation='nearest')
  ax.set_xlabel('encoder frame')
  ax.set_ylabel('output step')
  if tokens is not None and len(tokens) <= 60:
    ax.set_yticks(range(len(tokens[:num_tokens])))
    # Without a Hangul font, ticks show the step index, not boxes.
    labels = tokens[:num_tokens] if _FONT else range(len(tokens[:num_tokens]))
    ax.set_yticklabels([str(label) for label in labels])
  ax.set_title(title, fontsize=9)
  return _png(fig)


@plt.rc_context(_STYLE)
def curves_png(records: Sequence[dict]) -> bytes:
  """Train/dev loss and dev CER (or perplexity) against the step.

  Args:
    records: dicts as written to metrics.jsonl (`step` plus metric names).

  Returns:
    PNG bytes.
  """

  def series(name):
    pts = [(r['step'], r[name]) for r in records if name in r]
    return np.array(pts, np.float64).reshape(-1, 2)

  fig, (ax_loss, ax_cer) = plt.subplots(1, 2, figsize=(11, 4))
  for name in ('train/loss', 'dev/loss'):
    pts = series(name)
    if len(pts):
      ax_loss.plot(pts[:, 0], pts[:, 1], label=name)
  ax_loss.set_xlabel('step')
  ax_loss.set_ylabel('loss')
  ax_loss.set_yscale('log')
  ax_loss.legend()
  pts = series('dev/cer')
  if len(pts):
    ax_cer.plot(pts[:, 0], 100 * pts[:, 1], marker='o', label='dev CER')
    ax_cer.set_ylabel('CER %')
  else:  # A language model.
    pts = series('dev/perplexity')
    ax_cer.plot(pts[:, 0], pts[:, 1], marker='o', label='dev perplexity')
    ax_cer.set_ylabel('perplexity')
  ax_cer.set_xlabel('step')
  ax_cer.legend()
  fig.tight_layout()
  return _png(fig)
