"""The web demo: a real server on 127.0.0.1, HTTP clients and Chromium.

A tiny random-parameter run (recognizer_test.make_run) with one audio
bucket, so every upload of the tests decodes with one compiled program.
The server answers what the recognizer itself says (same n-best, same
scores), refuses bad uploads with a message and keeps serving, and the
page shows it all in a headless Chromium (Debian's chromium and
chromium-driver, driven by selenium; skipped where they are missing):
uploads, errors, and the microphone recorder with Chromium's fake device.
"""

import io
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import uvicorn
from flax import nnx
from recognizer_test import SR, make_run, signal, tiny_config, to_int16

from las_jax import features
from las_jax.inference import pretrained, restore, web_demo
from las_jax.inference.recognizer import Recognizer
from las_jax.text import Vocabulary

pytestmark = pytest.mark.usefixtures('fast_compile')

ROOT = Path(__file__).resolve().parents[1]
MAX_UPLOAD_BYTES = 200_000
# Debian's chromium in a container: no sandbox, no GPU, nothing fetched.
CHROMIUM_FLAGS = (
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--window-size=1100,1400',
  # The microphone: a fake device playing a file, permission granted.
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
)


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  config = tiny_config()
  config.input.audio_buckets_s = (2.5,)  # One bucket: one compile.
  return restore.load_run(make_run(tmp_path_factory.mktemp('run'), config))


@pytest.fixture(scope='module')
def recognizer(run):
  return Recognizer(run.model, run.config, run.vocab, beam_size=3)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
  root = tmp_path_factory.mktemp('uploads')
  sf.write(root / 'speech.wav', to_int16(signal(0.8, seed=1)), SR)
  sf.write(root / 'other.flac', to_int16(signal(1.1, seed=2)), SR)
  sf.write(root / 'silent.wav', np.zeros(SR // 2, np.int16), SR)
  (root / 'notes.txt').write_text('these are notes, not audio\n')
  return root


@pytest.fixture(scope='module')
def server(run, recognizer):
  """The app under uvicorn on a free 127.0.0.1 port: (URL, transcriber)."""
  app = web_demo.create_app(
    recognizer,
    run.model,
    description='tiny test model',
    max_upload_bytes=MAX_UPLOAD_BYTES,
  )
  sock = socket.socket()
  sock.bind(('127.0.0.1', 0))
  # Keep-alive connections of the browser must not hold up the shutdown.
  uv = uvicorn.Server(
    uvicorn.Config(app, log_level='warning', timeout_graceful_shutdown=2)
  )
  thread = threading.Thread(
    target=uv.run, kwargs={'sockets': [sock]}, daemon=True
  )
  thread.start()
  deadline = time.monotonic() + 30
  while not uv.started and time.monotonic() < deadline:
    time.sleep(0.05)
  assert uv.started, 'uvicorn did not start'
  url = f'http://127.0.0.1:{sock.getsockname()[1]}'
  yield url, app.state.transcriber
  uv.should_exit = True
  thread.join(30)
  sock.close()
  assert not thread.is_alive(), 'uvicorn did not stop'


def post(server, name, data, headers=None):
  """POSTs `data` to /api/transcribe; returns (status, JSON answer)."""
  url, _ = server
  request = urllib.request.Request(
    f'{url}/api/transcribe?name={name}',
    data=data,
    headers=headers or {},
    method='POST',
  )
  try:
    with urllib.request.urlopen(request, timeout=300) as response:
      return response.status, json.loads(response.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


def expected_nbest(recognizer, path):
  return [
    {'text': h.text, 'score': h.score}
    for h in recognizer.transcribe([path], nbest=True)[0]
  ]


def test_answers_what_the_recognizer_says(server, recognizer, files):
  status, answer = post(
    server, 'speech.wav', (files / 'speech.wav').read_bytes()
  )
  assert status == 200, answer
  nbest = expected_nbest(recognizer, files / 'speech.wav')
  assert answer['nbest'] == nbest and len(nbest) == 3
  assert answer['text'] == nbest[0]['text']
  assert answer['audio_seconds'] == pytest.approx(0.8)
  assert answer['attention_png'].startswith('data:image/png;base64,iVBOR')
  assert answer['warnings'] == []
  # Word times: the recognizer's own forced alignment of the best.
  [best] = recognizer.transcribe([files / 'speech.wav'], timestamps=True)
  assert answer['timestamps'] == [
    {'text': w.text, 'start': w.start, 'end': w.end} for w in best.words
  ]


def test_refuses_bad_uploads_and_keeps_serving(server, files):
  wav = (files / 'speech.wav').read_bytes()
  status, answer = post(server, 'notes.txt', (files / 'notes.txt').read_bytes())
  assert status == 415
  assert (
    answer['error'].startswith('notes.txt: ') and 'audio' in answer['error']
  )
  status, answer = post(
    server, 'silent.wav', (files / 'silent.wav').read_bytes()
  )
  assert (status, answer['error']) == (
    400,
    'silent.wav: audio is silent (its peak, mean removed, is below -60 dBFS)',
  )
  status, answer = post(server, 'empty.wav', b'')
  assert status == 400 and 'empty' in answer['error']
  big = wav + bytes(MAX_UPLOAD_BYTES)
  status, answer = post(server, 'big.wav', big)  # Declares its length.
  assert status == 413
  assert answer['error'].endswith(f'({len(big) / 1024:.0f} KB)')
  chunks = iter([big[i : i + 65536] for i in range(0, len(big), 65536)])
  status, answer = post(server, 'big.wav', chunks)  # Chunked: no length.
  assert status == 413 and 'big.wav is larger than' in answer['error']
  status, answer = post(server, 'speech.wav', wav)
  assert status == 200 and answer['nbest']


def test_refuses_uploads_without_speech(run, files):
  """An upload the no-speech rule refuses is a 400 naming it, not text."""
  rec = Recognizer(
    run.model,
    run.config,
    run.vocab,
    no_speech_units_per_second=1000,
    no_speech_short_units=1000,
  )
  transcriber = web_demo.Transcriber(rec, None, MAX_UPLOAD_BYTES)
  with pytest.raises(web_demo.RequestError) as refused:
    transcriber('speech.wav', (files / 'speech.wav').read_bytes())
  assert refused.value.status == 400
  assert str(refused.value).startswith('speech.wav: no speech found')


def test_converts_uploads_and_reports_what_it_changed(
  server, recognizer, files
):
  # 44.1 kHz stereo with the right channel silent: resampled, mixed down.
  x = signal(0.8, seed=3)
  x44 = np.interp(
    np.arange(int(0.8 * 44100)) / 44100, np.arange(x.size) / SR, x
  )
  stereo = np.stack([x44, np.zeros_like(x44)], 1)
  buffer = io.BytesIO()
  sf.write(buffer, stereo, 44100, format='WAV', subtype='PCM_16')
  path = files / 'stereo.wav'
  path.write_bytes(buffer.getvalue())
  status, answer = post(server, 'stereo.wav', buffer.getvalue())
  assert status == 200
  assert answer['nbest'] == expected_nbest(recognizer, path)
  # A FLAC upload under a .wav name: read as FLAC, with a warning.
  status, answer = post(
    server, 'mislabeled.wav', (files / 'other.flac').read_bytes()
  )
  assert status == 200
  assert answer['nbest'] == expected_nbest(recognizer, files / 'other.flac')
  assert answer['warnings'] and 'mislabeled.wav' in answer['warnings'][0]


def test_attention_is_the_teacher_forced_pass(run, server):
  plotter = server[1].plotter
  samples_N = to_int16(signal(0.7, seed=4))
  ids = run.vocab.encode('가나다 라')
  # Padded to the bucket and the token limit, compiled ...
  attn_LxS = plotter.weights(samples_N, ids)

  # ... against the model on exactly this utterance and hypothesis.
  @nnx.jit
  def attention(model, audio_BxN, lengths_B, tokens_in_BxL):
    feats, flen = features.featurize(
      None, audio_BxN, lengths_B, run.config.features, False
    )
    return model(feats, flen, tokens_in_BxL)

  tokens_in = np.array([[Vocabulary.SOS_ID, *ids]], np.int32)
  out = attention(
    run.model, samples_N[None], np.array([samples_N.size]), tokens_in
  )
  expected_LxS = np.asarray(out['attention_BxLxS'][0])
  assert (
    attn_LxS.shape
    == expected_LxS.shape
    == (len(ids) + 1, int(out['enc_lengths_B'][0]))
  )
  np.testing.assert_allclose(attn_LxS, expected_LxS, atol=1e-5)
  np.testing.assert_allclose(attn_LxS.sum(1), 1.0, atol=1e-5)


def test_cli_serves_an_exported_model_on_localhost(run, tmp_path):
  model_dir = pretrained.export_run(run.checkpoint.parents[1], tmp_path / 'm')
  sock = socket.socket()
  sock.bind(('127.0.0.1', 0))
  port = sock.getsockname()[1]
  sock.close()
  command = [sys.executable, '-m', 'las_jax.serve', f'--model={model_dir}']
  process = subprocess.Popen(
    [*command, f'--port={port}'],
    cwd=ROOT,
    stderr=subprocess.PIPE,
    text=True,
  )
  try:
    deadline = time.monotonic() + 120
    while True:
      try:
        url = f'http://127.0.0.1:{port}'
        with urllib.request.urlopen(f'{url}/api/info', timeout=5) as r:
          info = json.loads(r.read())
        break
      except OSError:
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, 'the server did not start'
        time.sleep(0.5)
    assert info['model'] == f'{model_dir} (las)'
    assert info['max_upload_bytes'] == web_demo.DEFAULT_MAX_UPLOAD_BYTES
    with urllib.request.urlopen(url, timeout=5) as r:
      assert 'id="file"' in r.read().decode()
  finally:
    process.terminate()
    process.wait(30)
  both = subprocess.run(
    [*command, f'--workdir={tmp_path}'],
    cwd=ROOT,
    capture_output=True,
    text=True,
  )
  assert both.returncode != 0
  assert 'give exactly one of --model and --workdir' in both.stderr


# ------------------------------------------------------------ browser --


@pytest.fixture(scope='module')
def browser(server, files):
  """Chromium on the page; quits before the server stops."""
  del server  # Set up first, torn down last.
  webdriver = pytest.importorskip(
    'selenium.webdriver',
    reason='selenium is not installed (pip install .[dev])',
  )
  chromium = shutil.which('chromium') or shutil.which('chromium-browser')
  chromedriver = shutil.which('chromedriver')
  if not chromium or not chromedriver:
    pytest.skip(
      'no headless browser: the web demo test needs Chromium and its driver '
      '(apt-get install chromium chromium-driver; make test installs them)'
    )
  options = webdriver.ChromeOptions()
  options.binary_location = chromium
  for flag in CHROMIUM_FLAGS:
    options.add_argument(flag)
  options.add_argument(
    f'--use-file-for-fake-audio-capture={files / "speech.wav"}'
  )
  # A fresh profile, removed at teardown (thousands of small files).
  profile = tempfile.TemporaryDirectory(prefix='chromium-profile-')
  options.add_argument(f'--user-data-dir={profile.name}')
  driver = webdriver.Chrome(
    options=options,
    # In a session of its own: when it stops, the SIGINT its process group
    # gets reached the pytest-xdist worker (a KeyboardInterrupt warning).
    service=webdriver.ChromeService(
      executable_path=chromedriver, popen_kw={'start_new_session': True}
    ),
  )
  yield driver
  driver.quit()
  profile.cleanup()


def _finish(driver, start):
  """Runs `start` on a page marked idle; returns its final state."""
  from selenium.webdriver.support.ui import WebDriverWait

  driver.execute_script("document.body.dataset.state = 'idle'")
  start()
  return WebDriverWait(driver, 300).until(
    lambda d: d.execute_script(
      'const s = document.body.dataset.state;'
      "return s === 'done' || s === 'error' ? s : null"
    )
  )


def _upload(driver, path):
  from selenium.webdriver.common.by import By

  field = driver.find_element(By.ID, 'file')
  return _finish(driver, lambda: field.send_keys(str(path)))


def _text(driver, element_id):
  from selenium.webdriver.common.by import By

  return driver.find_element(By.ID, element_id).text


def test_page_uploads_show_transcripts_and_errors(
  browser, server, recognizer, files
):
  from selenium.webdriver.common.by import By

  browser.get(server[0])
  expected = expected_nbest(recognizer, files / 'speech.wav')
  assert _upload(browser, files / 'speech.wav') == 'done'
  assert _text(browser, 'transcript') == expected[0]['text'].strip()
  rows = browser.find_elements(By.CSS_SELECTOR, '#nbest tbody tr')
  assert len(rows) == len(expected)
  assert rows[0].text.endswith(f'{expected[0]["score"]:.3f}')
  assert (
    browser.execute_script(
      "return document.getElementById('attention').naturalWidth"
    )
    > 100
  )
  assert _upload(browser, files / 'notes.txt') == 'error'
  assert _text(browser, 'error').startswith('notes.txt: cannot read audio')
  assert not browser.find_element(By.ID, 'result').is_displayed()
  assert _upload(browser, files / 'speech.wav') == 'done'
  assert _text(browser, 'transcript') == expected[0]['text'].strip()
  assert 'tiny test model' in _text(browser, 'model')


def test_page_records_from_the_microphone(browser, server):
  from selenium.webdriver.common.by import By

  browser.get(server[0])
  button = browser.find_element(By.ID, 'record')

  def record():
    button.click()
    time.sleep(1.2)
    button.click()

  assert _finish(browser, record) == 'done', _text(browser, 'error')
  meta = _text(browser, 'meta')
  assert meta.startswith('recording.wav: ')
  seconds = float(meta.split(': ')[1].split(' s')[0])
  assert 0.8 < seconds < 2.5  # What was recorded, not the fake file's 0.8 s.
