"""A web page to try a recognizer: upload or record audio, see the result.

`create_app(recognizer, model)` is an ASGI application (Starlette) that
`python -m las_jax.serve` runs with uvicorn:

  GET  /                the page (web_demo.html: no external resources, so
                        it works offline)
  GET  /api/info        the model's description and the upload limit
  POST /api/transcribe  the body is one audio file (any format the audio
                        reader takes), `?name=` its file name; answers JSON:
                        text, n-best with scores, the attention plot of the
                        best hypothesis, audio seconds, decoding seconds,
                        warnings. Errors answer {"error": message} with
                        413 (over the size limit), 415 (not audio this
                        server can read) or 400 (empty, silent, too
                        short), and the server goes on serving.

  curl --data-binary @a.wav 'http://127.0.0.1:8000/api/transcribe?name=a.wav'

The microphone recorder of the page encodes what it records as a 16-bit
WAV file in the browser and posts it like an upload. Browsers only allow
the microphone on a secure page: http://127.0.0.1 or localhost, or https.

Attention plots: the search does not keep attention weights, so they are
computed for the best hypothesis by one teacher-forced pass of the LAS
model over the same (trimmed) audio, as training plots them
(`AttentionPlotter`).
"""

from __future__ import annotations

import base64
import re
import tempfile
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from las_jax import audio, features, plots
from las_jax.inference.recognizer import Recognizer
from las_jax.text import Vocabulary

PAGE_FILE = Path(__file__).with_name('web_demo.html')
# Default upload limit: a minute of 44.1 kHz stereo 16-bit WAV is 10 MiB.
DEFAULT_MAX_UPLOAD_BYTES = 20 * 2**20
# Hypotheses longer than this get no row labels in the plot.
_MAX_LABELED_ROWS = 60
# Row labels for units that would print as nothing.
_VISIBLE = {' ': '\u2423'}


class RequestError(Exception):
  """A request the server refuses: an HTTP status and a message for users."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status


class AttentionPlotter:
  """Attention weights of a LAS hypothesis by a teacher-forced pass.

  `model(feats, lengths, tokens_in)` with the hypothesis as the decoder
  input returns the weights of each output step (the hypothesis' units,
  then `<eos>`) over the encoder frames, as training's attention plots.
  Audio is padded to the recognizer's bucket and the decoder input to its
  token limit for that bucket, so each bucket compiles once; padding
  changes no weight (features, encoder and attention mask it, and the
  decoder is causal).
  """

  def __init__(self, model: nnx.Module, recognizer: Recognizer):
    """Args: model: the recognizer's LAS model; recognizer: its buckets."""
    self._graphdef, self._state = nnx.split(model)
    self._recognizer = recognizer
    self._fn = jax.jit(self._attention)

  def _attention(self, state, audio_BxN, lengths_B, tokens_in_BxL):
    model = nnx.merge(self._graphdef, state)
    feats_BxTxF, flen_B = features.featurize(
      None, audio_BxN, lengths_B, self._recognizer.config.features, False
    )
    out = model(feats_BxTxF, flen_B, tokens_in_BxL)
    return out['attention_BxLxS'], out['enc_lengths_B']

  def weights(self, samples_N: np.ndarray, ids: list[int]) -> np.ndarray:
    """Attention of output steps over encoder frames.

    Args:
      samples_N: the int16 samples the search decoded (`prepare`d).
      ids: the hypothesis' unit ids, without `<sos>`/`<eos>`.

    Returns:
      attention_LxS: float32, L = len(ids) + 1 steps (the last emits
      `<eos>`), S = the utterance's encoder frames; rows sum to 1.
    """
    rec = self._recognizer
    padded = rec.padded_length(samples_N.size)
    steps = len(ids) + 1
    width = max(rec.options.max_tokens(padded / rec.sample_rate), steps)
    audio_1xN = np.zeros((1, padded), np.int16)
    audio_1xN[0, : samples_N.size] = samples_N
    tokens_in_1xL = np.full((1, width), Vocabulary.PAD_ID, np.int32)
    tokens_in_1xL[0, :steps] = [Vocabulary.SOS_ID, *ids]
    attn_1xLxS, enc_len_1 = self._fn(
      self._state,
      jnp.asarray(audio_1xN),
      jnp.asarray([samples_N.size], jnp.int32),
      jnp.asarray(tokens_in_1xL),
    )
    return np.asarray(attn_1xLxS[0, :steps, : int(enc_len_1[0])], np.float32)

  def png(self, samples_N: np.ndarray, text: str) -> bytes:
    """The attention plot (PNG) of hypothesis `text` on `samples_N`."""
    vocab = self._recognizer.vocab
    ids = vocab.encode(text)
    attn_LxS = self.weights(samples_N, ids)
    labels = [_VISIBLE.get(vocab.tokens[i], vocab.tokens[i]) for i in ids]
    labels.append('<eos>')
    return plots.attention_png(
      attn_LxS,
      attn_LxS.shape[0],
      attn_LxS.shape[1],
      title=text,
      tokens=labels if len(labels) <= _MAX_LABELED_ROWS else None,
    )


class Transcriber:
  """Uploaded bytes to the JSON answer of /api/transcribe; one at a time."""

  def __init__(
    self,
    recognizer: Recognizer,
    model: nnx.Module | None,
    max_upload_bytes: int,
  ):
    self.recognizer = recognizer
    self.max_upload_bytes = int(max_upload_bytes)
    has_attention = (
      model is not None
      and recognizer.config.model.name == 'las'
      and recognizer.ctc_mode != 'ctc'
    )
    self.plotter = (
      AttentionPlotter(model, recognizer) if has_attention else None
    )
    # Decoding is compute-bound, and one request's warnings must not mix
    # with another's: requests take turns.
    self._lock = threading.Lock()

  def __call__(self, name: str, data: bytes) -> dict[str, Any]:
    """Decodes one uploaded file.

    Raises:
      RequestError: 400 (empty, silent, too short, no speech) or 415
        (unreadable).
    """
    if not data:
      raise RequestError(400, f'{name}: the upload is empty')
    with self._lock, tempfile.TemporaryDirectory() as tmp:
      # The reader picks the format by content; the suffix only marks
      # headerless .pcm/.raw files and the extension checks.
      path = Path(tmp) / _safe_name(name)
      path.write_bytes(data)

      def named(message: str) -> str:
        return message.replace(str(path), name)

      notes: list[str] = []
      rec = self.recognizer
      try:
        samples_N = audio.read_audio(
          path, rec.sample_rate, warn=lambda m: notes.append(named(m))
        )
      except audio.AudioError as e:
        raise RequestError(
          415,
          f'{named(str(e)).rstrip(".")}. This server reads audio files: '
          'WAV, FLAC, Ogg '
          'Vorbis/Opus, MP3, AIFF, CAF, headerless 16 kHz .pcm, ...',
        ) from e
      start = time.perf_counter()
      compile_before = rec.compile_seconds
      with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always', audio.AudioWarning)
        try:
          prepared_N = rec.prepare(samples_N, name)
        except audio.AudioError as e:
          raise RequestError(400, str(e)) from e
      notes += [
        str(w.message) for w in caught if w.category is audio.AudioWarning
      ]
      with warnings.catch_warnings():
        # `transcribe` prepares the samples again, as above: same warnings.
        warnings.simplefilter('ignore', audio.AudioWarning)
        nbest = rec.transcribe(
          [samples_N], nbest=True, timestamps=rec.has_ctc_head
        )[0]
      if not nbest:  # Refused by the no-speech rule, with a warning.
        raise RequestError(
          400,
          f'{name}: no speech found (noise, a tone or music; see '
          'las_jax/inference/no_speech.py)',
        )
      # Word times of the best hypothesis (CTC forced alignment), seconds.
      timestamps = None
      if nbest and nbest[0].words is not None:
        timestamps = [
          {'text': w.text, 'start': w.start, 'end': w.end}
          for w in nbest[0].words
        ]
      decode_seconds = time.perf_counter() - start
      png = None
      if self.plotter is not None and nbest:
        png = self.plotter.png(prepared_N, nbest[0].text)
    return {
      'name': name,
      'text': nbest[0].text if nbest else '',
      'nbest': [{'text': h.text, 'score': h.score} for h in nbest],
      'timestamps': timestamps,
      'attention_png': (
        None
        if png is None
        else 'data:image/png;base64,' + base64.b64encode(png).decode('ascii')
      ),
      'audio_seconds': samples_N.size / rec.sample_rate,
      'decode_seconds': decode_seconds,
      'compile_seconds': rec.compile_seconds - compile_before,
      'warnings': notes,
    }


def _safe_name(name: str) -> str:
  """A file name for the upload's temporary copy, keeping its suffix."""
  base = re.sub(r'[^\w.\-]', '_', Path(name).name)[-100:].lstrip('.')
  return base or 'upload'


def _size(n: int) -> str:
  return f'{n / 2**20:.1f} MB' if n >= 2**20 else f'{n / 2**10:.0f} KB'


async def _read_body(request: Request, name: str, limit: int) -> bytes:
  """The request body, refused as soon as it passes `limit` bytes."""
  declared = request.headers.get('content-length')
  too_large = (
    f'{name} is larger than this server takes ({_size(limit)}; '
    '--max_upload_mb); send a shorter recording'
  )
  if declared is not None and declared.isdigit() and int(declared) > limit:
    raise RequestError(413, f'{too_large} ({_size(int(declared))})')
  body = bytearray()
  async for chunk in request.stream():
    body += chunk
    if len(body) > limit:  # Chunked uploads declare no length.
      raise RequestError(413, too_large)
  return bytes(body)


def create_app(
  recognizer: Recognizer,
  model: nnx.Module | None = None,
  *,
  description: str = '',
  max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
) -> Starlette:
  """The web demo as an ASGI application.

  Args:
    recognizer: decodes the uploads.
    model: the recognizer's model, for attention plots (LAS with an
      attention search only); None: no plots.
    description: what the page says the model is.
    max_upload_bytes: larger uploads are refused (413).

  Returns:
    The application; `app.state.transcriber` is its `Transcriber`.
  """
  transcriber = Transcriber(recognizer, model, max_upload_bytes)
  page = PAGE_FILE.read_text(encoding='utf-8')

  async def index(request: Request) -> HTMLResponse:
    del request
    return HTMLResponse(page)

  async def info(request: Request) -> JSONResponse:
    del request
    return JSONResponse(
      {
        'model': description,
        'max_upload_bytes': transcriber.max_upload_bytes,
        'sample_rate': recognizer.sample_rate,
        'attention': transcriber.plotter is not None,
      }
    )

  async def transcribe(request: Request) -> JSONResponse:
    name = request.query_params.get('name') or 'upload'
    try:
      data = await _read_body(request, name, transcriber.max_upload_bytes)
      result = await run_in_threadpool(transcriber, name, data)
    except RequestError as e:
      return JSONResponse({'error': str(e)}, status_code=e.status)
    except ClientDisconnect:
      return JSONResponse({'error': 'upload interrupted'}, status_code=400)
    except Exception as e:  # Reported, and the server goes on.
      traceback.print_exc()
      return JSONResponse(
        {'error': f'{name}: the server failed ({type(e).__name__}: {e})'},
        status_code=500,
      )
    return JSONResponse(result)

  application = Starlette(
    routes=[
      Route('/', index),
      Route('/api/info', info),
      Route('/api/transcribe', transcribe, methods=['POST']),
    ]
  )
  application.state.transcriber = transcriber
  return application
