"""Long recordings: block reading, speech regions, segments, subtitles.

The recording is built from espeak-ng sentences joined by 0.5-2 s pauses
under noise (25 dB SNR), so the true speech boundaries are known.
"""

import io
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from recognizer_test import make_run, tiny_config

from las_jax import audio
from las_jax.inference import long_form, subtitles, transcription
from las_jax.inference.recognizer import Recognizer

SR = 16000
SENTENCES = [
  '국민의 권리와 의무는 법률로 정한다',
  '대통령은 국가의 원수이며 외국에 대하여 국가를 대표한다',
  '모든 국민은 법 앞에 평등하다',
  '비가 그치면 아이들이 마당에서 뛸 거예요',
]


@pytest.fixture(scope='module')
def recording(tmp_path_factory):
  """(path of a 16 kHz WAV, [(start, end)] of its sentences in seconds)."""
  rng = np.random.default_rng(0)
  parts, truth, pos = [], [], 0
  for text in SENTENCES:
    wav = subprocess.run(
      ['espeak-ng', '-v', 'ko', '--stdout', text],
      capture_output=True,
      check=True,
    ).stdout
    x, rate = sf.read(io.BytesIO(wav), dtype='float32')
    speech = audio.to_mono(x, rate, SR)
    a, b = audio.trim_bounds(speech)
    gap = int(rng.uniform(0.5, 2.0) * SR)
    parts.append(np.zeros(gap, np.int16))
    truth.append(((pos + gap + a) / SR, (pos + gap + b) / SR))
    parts.append(speech)
    pos += gap + speech.size
  parts.append(np.zeros(SR, np.int16))
  signal = np.concatenate(parts).astype(np.float32)
  signal += rng.normal(size=signal.size) * signal.std() * 10 ** (-25 / 20)
  path = tmp_path_factory.mktemp('long') / 'recording.wav'
  sf.write(path, np.clip(signal, -32768, 32767).astype(np.int16), SR)
  return path, truth


def test_blocks_join_into_the_whole_file(tmp_path):
  t = np.arange(int(44100 * 3.3)) / 44100
  x = 0.3 * np.sin(2 * np.pi * 300 * t)
  path = tmp_path / 'a.flac'
  sf.write(path, np.stack([x, 0.5 * x], 1), 44100, subtype='PCM_16')
  whole = audio.read_audio(path)
  blocks = list(audio.read_blocks(path, block_seconds=0.7))
  assert len(blocks) > 4
  np.testing.assert_array_equal(np.concatenate(blocks), whole)
  pcm = tmp_path / 'b.pcm'
  whole.tofile(pcm)
  np.testing.assert_array_equal(
    np.concatenate(list(audio.read_blocks(pcm, block_seconds=0.5))), whole
  )
  assert audio.duration(path) == pytest.approx(3.3, abs=1e-4)
  assert audio.duration(pcm) == pytest.approx(whole.size / SR)


@pytest.mark.parametrize('block_seconds', [60.0, 2.5])
def test_regions_start_and_end_within_0_3_s_of_the_speech(
  recording, block_seconds
):
  """Whatever the block size, every sentence's start and end lies within
  0.3 s of a region boundary, and no region holds two sentences."""
  path, truth = recording
  splitter = long_form.Splitter(SR, max_seconds=6.5)

  def blocks():
    return audio.read_blocks(path, SR, block_seconds=block_seconds)

  regions = [
    (first / SR, (first + x.size) / SR)
    for first, x in splitter.regions(blocks(), splitter.loudest(blocks()))
  ]
  starts = np.array([s for s, _ in regions])
  ends = np.array([e for _, e in regions])
  for a, b in truth:
    assert np.min(np.abs(starts - a)) <= 0.3, (a, regions)
    assert np.min(np.abs(ends - b)) <= 0.3, (b, regions)
  for s, e in regions:
    assert sum(a < e and s < b for a, b in truth) == 1


def test_speech_frames_follow_librosa_effects_split(recording):
  """The energy rule is librosa.effects.split's (the numerical
  reference), frame for frame, on a zero-mean recording."""
  import librosa

  path, _ = recording
  x = audio.read_audio(path)
  splitter = long_form.Splitter(SR, max_seconds=6.5, min_speech=0.0)
  loudest = splitter.loudest([x])
  frame, hop = (
    int(long_form.FRAME_SECONDS * SR),
    int(long_form.HOP_SECONDS * SR),
  )
  y = x.astype(np.float32) / 32768
  rms = librosa.feature.rms(y=y, frame_length=frame, hop_length=hop)
  assert loudest == pytest.approx(float(rms.max()), rel=1e-3)
  want = librosa.effects.split(
    y, top_db=splitter.top_db, ref=loudest, frame_length=frame, hop_length=hop
  )
  got = splitter._speech(x, loudest, pause=0)
  np.testing.assert_array_equal(np.array(got), want)


def test_long_form_decoding_never_loads_librosa(recording):
  """librosa's energy functions compile numba kernels on first use: 3 s
  of every long-form run with a warm numba cache, 15-60 s with a cold one
  (counted as decoding time). The decode path loads neither."""
  path, _ = recording
  code = (
    'import sys\n'
    'from las_jax.inference import long_form\n'
    'from las_jax import audio\n'
    f'blocks = lambda: audio.read_blocks({str(path)!r}, 16000)\n'
    'splitter = long_form.Splitter(16000, max_seconds=6.5)\n'
    'assert list(splitter.regions(blocks(), splitter.loudest(blocks())))\n'
    "print(sorted(m for m in sys.modules if m.split('.')[0] in "
    "('librosa', 'numba')))\n"
  )
  out = subprocess.run(
    [sys.executable, '-c', code], capture_output=True, text=True, check=True
  )
  assert out.stdout.strip() == '[]'


def test_long_regions_are_cut_at_their_quietest_point():
  """8 s of tone with a dip at 5.2 s: cut there, below max_seconds."""
  t = np.arange(8 * SR) / SR
  tone = 0.3 * np.sin(2 * np.pi * 220 * t)
  tone[int(5.2 * SR) : int(5.25 * SR)] *= 0.05
  samples = np.round(tone * 32767).astype(np.int16)
  splitter = long_form.Splitter(SR, max_seconds=6.0, cut_window=2.0)
  regions = list(splitter.regions([samples], splitter.loudest([samples])))
  assert [first for first, _ in regions][1] / SR == pytest.approx(5.2, abs=0.02)
  assert all(x.size <= 6.0 * SR for _, x in regions)
  np.testing.assert_array_equal(
    np.concatenate([x for _, x in regions]), samples
  )


def test_subtitle_formats():
  segments = [
    long_form.Segment(1.25, 4.5, '가나다', -1.0),
    long_form.Segment(3661.0, 3662.005, '라마', -2.0),
  ]
  assert subtitles.render(segments, 'srt') == (
    '1\n00:00:01,250 --> 00:00:04,500\n가나다\n\n'
    '2\n01:01:01,000 --> 01:01:02,005\n라마\n'
  )
  assert subtitles.render(segments, 'vtt') == (
    'WEBVTT\n\n00:00:01.250 --> 00:00:04.500\n가나다\n\n'
    '01:01:01.000 --> 01:01:02.005\n라마\n'
  )
  assert subtitles.render(segments, 'txt') == '가나다\n라마\n'
  with pytest.raises(ValueError, match='format must be one of'):
    subtitles.render(segments, 'ass')


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  config = tiny_config()
  config.input.audio_buckets_s = (2.0, 6.5)
  config.input.trim_silence = True
  return make_run(tmp_path_factory.mktemp('run'), config)


def test_segments_decode_like_their_regions(run_dir, recording):
  """A random model: each segment is its speech region decoded alone
  (batching leaves no trace), segments are in order inside the recording,
  and a long input to `transcribe` is decoded this way with a warning."""
  path, truth = recording
  rec = Recognizer.from_workdir(run_dir, beam_size=2)
  segments = rec.transcribe_long(path, timestamps=True)
  assert len(segments) >= len(truth)
  assert [g.start for g in segments] == sorted(g.start for g in segments)
  assert 0 < segments[0].start and segments[-1].end < audio.duration(path)
  assert all(type(t) is float for g in segments for t in (g.start, g.end))
  splitter = long_form.Splitter(SR, max_seconds=rec.max_seconds)
  whole = audio.read_audio(path)
  regions = list(splitter.regions([whole], splitter.loudest([whole])))
  assert len(regions) == len(segments)
  for (first, region), g in zip(regions, segments, strict=True):
    kept, offset = rec.prepare_span(region, 'region')
    [(_, hyps)] = list(rec.decode_stream([(0, kept)]))
    assert hyps[0].text == g.text
    assert g.start == pytest.approx((first + offset) / SR, abs=1e-3)
    assert g.end == pytest.approx((first + offset + kept.size) / SR, abs=1e-3)
    assert g.words is not None
    assert all(g.start <= w.start <= w.end <= g.end + 0.05 for w in g.words)
  with pytest.warns(audio.AudioWarning, match='decoded as .* segments'):
    [text] = rec.transcribe([whole])
  # `transcribe` trims the input first, then splits what it kept.
  kept, _ = rec.prepare_span(whole, 'whole')
  assert text == ' '.join(g.text for g in rec.transcribe_long(kept) if g.text)


def test_regions_the_no_speech_rule_refuses_are_named(run_dir, recording):
  """A refused region is left out with a warning giving its times, one
  per region (a rule that refuses everything here)."""
  path, _ = recording
  rec = Recognizer.from_workdir(
    run_dir,
    beam_size=1,
    no_speech_units_per_second=1e9,
    no_speech_short_units=1e9,
  )
  with pytest.warns(audio.AudioWarning) as caught:
    assert rec.transcribe_long(path) == []
  left_out = [str(w.message) for w in caught if 'left out' in str(w.message)]
  splitter = long_form.Splitter(SR, max_seconds=rec.max_seconds)
  whole = audio.read_audio(path)
  regions = list(splitter.regions([whole], splitter.loudest([whole])))
  # Each region's speech times, as its segment's would be (in any order:
  # regions are decoded in length buckets).
  want = []
  for first, region in regions:
    kept, offset = rec.prepare_span(region, 'region')
    lo = max(first, first + offset)
    hi = min(first + region.size, first + offset + kept.size)
    want.append(f'{path}: the region at {lo / SR:.2f}-{hi / SR:.2f} s ')
  assert sorted(m[: m.index(' s ') + 3] for m in left_out) == sorted(want)
  assert 'no speech found' in left_out[0]


def test_decode_cli_writes_segments_and_subtitles(run_dir, recording, tmp_path):
  path, _ = recording
  silent = tmp_path / 'silent.wav'
  sf.write(silent, np.zeros(5 * SR, np.int16), SR)
  out, err = io.StringIO(), io.StringIO()
  summary = transcription.run(
    workdir=str(run_dir),
    paths=[str(path), str(silent)],
    output=str(tmp_path / 'rec.jsonl'),
    long_form=True,
    formats=('srt', 'vtt'),
    stdout=out,
    stderr=err,
  )
  assert summary.utterances == 1
  # Silence is skipped by name in long-form mode too, not decoded as empty.
  assert summary.skipped == 1 and f'Skipping {silent}' in err.getvalue()
  assert 'silent.wav' not in out.getvalue()
  assert 'decoded as' in err.getvalue() and 'segments' in err.getvalue()
  # Named by the path from the inputs' common folder (unique per decode).
  [srt_path] = (tmp_path / 'rec').rglob('recording.srt')
  srt = srt_path.read_text()
  times = re.findall(r'(\d\d):(\d\d):(\d\d),(\d{3}) --> ', srt)
  starts = [
    int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000
    for h, m, s, ms in times
  ]
  assert len(starts) >= len(SENTENCES) and starts == sorted(starts)
  vtt = srt_path.with_suffix('.vtt').read_text()
  assert vtt.startswith('WEBVTT')
