"""Recognizer: restore a saved tiny run, transcribe files and arrays.

The run is written by the training code itself (`create_train_state`, then
`Checkpointer.save` of `state.checkpointed()`, config.json, vocab file), so
these tests pin the checkpoint layout the recognizer reads. Parameters are
random: hypotheses are arbitrary, but the whole decode path is
deterministic, so invariances (file format, batching, padding) are exact.
"""

import copy
import functools
import json

import jax
import numpy as np
import pytest
import soundfile as sf

from las_jax import audio, checkpoint, optim, parallel, run_layout
from las_jax import train as train_lib
from las_jax.inference import restore
from las_jax.inference.recognizer import Hypothesis, Recognizer
from las_jax.text import Vocabulary

pytestmark = pytest.mark.usefixtures('fast_compile')

SR = 16000
TEXTS = ['가나다 라마바', '사아자 차카타 파하']


def tiny_config():
  """configs/tiny.py with short buckets and a CTC head, no trimming."""
  from configs import tiny

  config = tiny.get_config()
  config.input.audio_buckets_s = (0.5, 1.0, 2.0)
  config.input.token_buckets = (8, 12)
  config.input.trim_silence = False  # Keeps librosa off the test's path.
  config.model.ctc_weight = 0.3
  config.decode.batch_size = 4
  return config


def lm_config():
  """A tiny LSTM language model over the same units."""
  config = tiny_config()
  config.model.name = 'lstm_lm'
  config.model.lm_hidden = 16
  config.model.lm_layers = 2
  return config


def make_run(workdir, config=None, step=5, texts=TEXTS):
  """Writes a training run with one (random-parameter) checkpoint."""
  config = config or tiny_config()
  vocab = Vocabulary.build(texts)
  mesh = parallel.make_mesh(1)
  tx, _ = optim.make_optimizer(config.train)
  _, state = train_lib.create_train_state(config, len(vocab), tx, mesh)
  run_layout.check_or_write_config(workdir, config)
  vocab.save(workdir / run_layout.VOCAB_FILE)
  ckpt = checkpoint.Checkpointer(workdir, keep=2, async_save=False)
  ckpt.save(step, state.checkpointed(), {'epoch': 0, 'position': 0})
  ckpt.save_best(step - 1, state.checkpointed(), {}, dev_metric=0.5)
  ckpt.close()
  return workdir


def signal(seconds, seed):
  """A chirp plus noise: speech-like enough to give varied hypotheses."""
  rng = np.random.default_rng(seed)
  t = np.arange(int(SR * seconds)) / SR
  f0 = 150 + 100 * seed
  x = 0.3 * np.sin(2 * np.pi * (f0 + 400 * t) * t)
  return x + 0.05 * rng.standard_normal(t.size)


def to_int16(x):
  return np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  return make_run(tmp_path_factory.mktemp('run'))


@pytest.fixture(scope='module')
def run(run_dir):
  return restore.load_run(run_dir)


@pytest.fixture(scope='module')
def recognizer(run):
  return Recognizer(run.model, run.config, run.vocab, beam_size=3)


def test_restores_the_saved_parameters(run_dir):
  config = tiny_config()
  vocab = Vocabulary.load(run_dir / run_layout.VOCAB_FILE)
  mesh = parallel.make_mesh(1)
  tx, _ = optim.make_optimizer(config.train)
  _, state = train_lib.create_train_state(config, len(vocab), tx, mesh)
  run = restore.load_run(run_dir)
  from flax import nnx

  _, params, variables, _ = nnx.split(
    run.model, nnx.Param, nnx.Not(nnx.RngState), nnx.RngState
  )
  jax.tree.map(np.testing.assert_array_equal, params, state.params)
  jax.tree.map(np.testing.assert_array_equal, variables, state.variables)
  assert run.checkpoint.name == '5'


def test_file_formats_decode_alike(recognizer, tmp_path):
  x = signal(0.8, seed=1)
  samples = to_int16(x)
  wav, flac, pcm = tmp_path / 'a.wav', tmp_path / 'a.flac', tmp_path / 'a.pcm'
  sf.write(wav, samples, SR, subtype='PCM_16')
  sf.write(flac, samples, SR, subtype='PCM_16')
  samples.astype('<i2').tofile(pcm)
  stereo = tmp_path / 'b.wav'
  t44 = np.arange(int(44100 * 0.8)) / 44100
  mono44 = 0.3 * np.sin(2 * np.pi * (250 + 400 * t44) * t44)
  sf.write(stereo, np.stack([mono44, mono44], 1), 44100, subtype='PCM_16')

  nbest = recognizer.transcribe([wav, flac, pcm, stereo], nbest=True)
  assert len(nbest) == 4
  for hyps in nbest:
    assert 1 <= len(hyps) <= 3
    assert all(isinstance(h, Hypothesis) for h in hyps)
    assert all(isinstance(h.text, str) for h in hyps)
    scores = [h.score for h in hyps]
    assert scores == sorted(scores, reverse=True)
  # The same samples in three containers: the same n-best, bit for bit.
  assert nbest[0] == nbest[1] == nbest[2]
  texts = recognizer.transcribe([str(wav), stereo])
  assert texts == [nbest[0][0].text, nbest[3][0].text]


def test_arrays_decode_like_files(recognizer, tmp_path):
  x = signal(0.8, seed=2)
  path = tmp_path / 'c.wav'
  sf.write(path, to_int16(x), SR, subtype='PCM_16')
  from_file = recognizer.transcribe([path], nbest=True)
  as_int16 = recognizer.transcribe([to_int16(x)], nbest=True)
  # Float input is scaled as libsndfile scales int16 (x / 32768).
  as_float = recognizer.transcribe([to_int16(x) / 32768.0], nbest=True)
  assert from_file == as_int16 == as_float


@pytest.mark.parametrize('ctc_mode', ['joint', 'off'])
def test_batch_and_padding_invariance(run, ctc_mode):
  short = to_int16(signal(0.4, seed=3))
  longer = [to_int16(signal(s, seed=4 + i)) for i, s in enumerate((1.9, 1.3))]
  options = dict(beam_size=3, ctc_mode=ctc_mode)
  recognizer = Recognizer(run.model, run.config, run.vocab, **options)
  alone = recognizer.transcribe([short], nbest=True)[0]
  # One 2 s bucket: the short utterance is padded 5x and batched with two
  # longer ones (a 4-row batch with one padding row).
  config = copy.deepcopy(run.config)
  config.input.audio_buckets_s = (2.0,)
  one_bucket = Recognizer(run.model, config, run.vocab, **options)
  batched = one_bucket.transcribe([longer[0], short, longer[1]], nbest=True)
  assert [h.text for h in batched[1]] == [h.text for h in alone]
  np.testing.assert_allclose(
    [h.score for h in batched[1]], [h.score for h in alone], atol=1e-4
  )
  assert sorted(one_bucket._compiled) == [(4, 32000, False)]


def test_streams_by_bucket_and_compiles_once_per_shape(run):
  rec = Recognizer(run.model, run.config, run.vocab, beam_size=1, batch_size=2)
  lengths = [0.3, 0.9, 0.4, 0.8, 0.45, 1.5]
  utts = [(i, to_int16(signal(s, seed=i))) for i, s in enumerate(lengths)]
  out = list(rec.decode_stream(utts))
  # Full batches as their bucket fills, then leftovers by bucket length.
  assert [k for k, _ in out] == [0, 2, 1, 3, 4, 5]
  assert sorted(rec._compiled) == [
    (1, 8000, False),
    (1, 32000, False),
    (2, 8000, False),
    (2, 16000, False),
  ]
  compile_s = rec.compile_seconds
  assert compile_s > 0
  again = list(rec.decode_stream(utts))
  assert rec.compile_seconds == compile_s  # Cached: nothing recompiled.
  assert again == out
  # The 1.5 s utterance first, alone in its bucket: at the end without
  # max_wait; with it, once 3 later ones were read (same batch shapes).
  long_first = [utts[i] for i in (5, 0, 2, 1, 3, 4)]
  keys = [k for k, _ in rec.decode_stream(long_first)]
  assert keys == [0, 2, 1, 3, 4, 5]
  keys = [k for k, _ in rec.decode_stream(long_first, max_wait=3)]
  assert keys == [0, 2, 5, 1, 3, 4]
  assert rec.compile_seconds == compile_s
  # Greedy search: a one-entry n-best whose score is a sum of log-probs.
  assert all(len(h) == 1 and h[0].score < 0 for _, h in out)
  # 30 tokens/s (configs/default.py): 1 s of audio may give 30 + EOS.
  assert rec.options.max_tokens(1.0) == 31


def test_silent_and_unreadable_inputs_are_named(recognizer, tmp_path):
  with pytest.raises(audio.AudioError, match='array 1: audio is silent'):
    recognizer.transcribe([signal(0.3, 1), np.zeros(8000)])
  broken = tmp_path / 'broken.wav'
  broken.write_bytes(b'RIFF\x00\x00not really a wave file')
  with pytest.raises(audio.AudioError, match='broken.wav'):
    recognizer.transcribe([broken])
  with pytest.raises(TypeError, match='sequence'):
    recognizer.transcribe('a.wav')


def test_loads_by_workdir_or_checkpoint_path(run_dir, run):
  x = to_int16(signal(0.5, seed=9))
  by_workdir = Recognizer.from_workdir(run_dir, beam_size=1)
  by_path = Recognizer.from_checkpoint(
    run_dir / 'checkpoints' / '5', beam_size=1
  )
  assert by_workdir.transcribe([x], nbest=True) == by_path.transcribe(
    [x], nbest=True
  )
  best = run_layout.checkpoint_dir(run_dir, which='best')
  assert best == run_dir.absolute() / 'checkpoints_best' / '4'
  with pytest.raises(ValueError, match="'latest', 'best'|'best', 'latest'"):
    run_layout.checkpoint_dir(run_dir, which='newest')
  with pytest.raises(FileNotFoundError, match='no checkpoint at step 7'):
    Recognizer.from_workdir(run_dir, step=7)
  with pytest.raises(FileNotFoundError, match='config.json'):
    Recognizer.from_checkpoint(run_dir.parent)


def test_ctc_rescoring_reorders_by_joint_score(run):
  x = to_int16(signal(0.7, seed=5))
  attention = Recognizer(
    run.model, run.config, run.vocab, beam_size=3, ctc_weight=0.0
  )
  joint = Recognizer(
    run.model,
    run.config,
    run.vocab,
    beam_size=3,
    ctc_mode='rescore',
    ctc_weight=0.5,
  )
  assert joint.ctc_weight == 0.5
  assert Recognizer(run.model, run.config, run.vocab).ctc_weight == 0.3
  att = attention.transcribe([x], nbest=True)[0]
  both = joint.transcribe([x], nbest=True)[0]
  # Same hypotheses, new scores: (1 - w) * attention + w * log p_ctc <
  # attention alone, since log p_ctc < 0.
  assert sorted(h.text for h in att) == sorted(h.text for h in both)
  scores = [h.score for h in both]
  assert scores == sorted(scores, reverse=True)
  assert max(scores) != pytest.approx(att[0].score)


def test_modes_and_their_defaults(run):
  def rec(**options):
    return Recognizer(run.model, run.config, run.vocab, **options)

  # A LAS with a CTC head decodes jointly, with its training weight.
  assert (rec().ctc_mode, rec().ctc_weight) == ('joint', 0.3)
  assert rec(ctc_mode='ctc').ctc_weight == 1.0
  assert rec(ctc_mode='off').ctc_weight == 0.0
  # Weight 0 is attention alone, whatever the mode.
  assert rec(ctc_mode='rescore', ctc_weight=0.0).ctc_mode == 'off'
  with pytest.raises(ValueError, match='ctc_mode must be one of'):
    rec(ctc_mode='both')
  with pytest.raises(ValueError, match=r'ctc_weight must be in \(0, 1\]'):
    rec(ctc_weight=1.5)
  x = to_int16(signal(0.7, seed=5))
  # The CTC head alone: best path (greedy) or prefix beam search.
  [[best_path]] = rec(ctc_mode='ctc', beam_size=1).transcribe([x], nbest=True)
  prefixes = rec(ctc_mode='ctc', beam_size=3).transcribe([x], nbest=True)[0]
  assert prefixes[0].score >= best_path.score - 1e-4


def test_shallow_fusion_follows_the_weighted_sum(run_dir, run, tmp_path):
  """Greedy search with an LM picks argmax(att + w * lm) at each step and
  scores the sum, as computed here from the two models separately."""
  from las_jax import features

  lm_dir = make_run(tmp_path / 'lm', lm_config(), step=3)
  weight = 0.7
  fused = Recognizer.from_workdir(
    run_dir,
    lm_workdir=str(lm_dir),
    lm_weight=weight,
    ctc_mode='off',
    beam_size=1,
  )
  x = to_int16(signal(0.7, seed=3))
  [[hyp]] = fused.transcribe([x], nbest=True)

  lm = restore.load_language_model(lm_dir).model
  padded = fused.padded_length(x.size)
  audio_BxN = np.zeros((1, padded), np.int16)
  audio_BxN[0, : x.size] = x
  feats, flen = features.featurize(
    None, audio_BxN, np.array([x.size]), run.config.features, False
  )
  enc = run.model.encode(feats, flen)
  att_carry, att_step = run.model.scorer(enc.enc_BxSxH, enc.enc_lengths_B)
  lm_carry, lm_step = lm.scorer(1)
  token, total, units = np.array([Vocabulary.SOS_ID]), 0.0, []
  for _ in range(fused.options.max_tokens(x.size / SR)):
    att_lp, att_carry = att_step(token, att_carry)
    lm_lp, lm_carry = lm_step(token, lm_carry)
    scores = np.array(att_lp + weight * lm_lp)[0]
    scores[[Vocabulary.PAD_ID, Vocabulary.SOS_ID]] = -np.inf
    token = np.array([int(np.argmax(scores))])
    total += scores[token[0]]
    if token[0] == Vocabulary.EOS_ID:
      break
    units.append(int(token[0]))
  assert hyp.text == run.vocab.transcript(units)
  np.testing.assert_allclose(hyp.score, total, rtol=1e-4)
  # Fusion changes the search: attention alone differs in score.
  alone = Recognizer.from_workdir(run_dir, ctc_mode='off', beam_size=1)
  assert alone.transcribe([x], nbest=True)[0][0].score != hyp.score


@pytest.mark.parametrize('ctc_mode,beam', [('joint', 3), ('ctc', 3)])
def test_timestamps_are_the_forced_alignment_of_the_best(run, ctc_mode, beam):
  """Word times equal a forced alignment computed here from the model's
  own CTC log-probabilities, shifted by the leading silence trimmed."""
  import jax

  from las_jax import features
  from las_jax.inference import alignment

  config = copy.deepcopy(run.config)
  config.input.trim_silence = True
  rec = Recognizer(
    run.model, config, run.vocab, beam_size=beam, ctc_mode=ctc_mode
  )
  speech = to_int16(signal(0.8, seed=7))
  lead = np.zeros(4000, np.int16)  # 0.25 s of silence, trimmed.
  [best] = rec.transcribe([np.concatenate([lead, speech])], timestamps=True)
  samples, start = rec.prepare_span(np.concatenate([lead, speech]), 'x')
  assert 3000 <= start <= 4000
  audio_BxN = np.zeros((1, rec.padded_length(samples.size)), np.int16)
  audio_BxN[0, : samples.size] = samples
  feats, flen = features.featurize(
    None, audio_BxN, np.array([samples.size]), config.features, False
  )
  enc = run.model.encode(feats, flen)
  frames = int(enc.enc_lengths_B[0])
  log_probs = np.asarray(jax.nn.log_softmax(enc.ctc_logits_BxSxV[0, :frames]))
  ids = run.vocab.encode(best.text)
  timed = alignment.forced_align(log_probs, ids, Vocabulary.PAD_ID)
  assert timed is not None
  want = alignment.word_spans(
    ids, timed, run.vocab, rec.frame_seconds, offset=start / SR
  )
  # The transcript's words, one space apart (this hypothesis has repeated
  # spaces), and their times as plain floats.
  assert best.text == ' '.join(best.text.split())
  assert best.words and [w.text for w in best.words] == best.text.split()
  assert all(type(t) is float for w in best.words for t in (w.start, w.end))
  # Speech reaches the input's end: a margin follows it, and times in the
  # margin are put at the input's end.
  end = (lead.size + speech.size) / SR
  np.testing.assert_allclose(
    [(w.start, w.end) for w in best.words],
    [(min(w.start, end), min(w.end, end)) for w in want],
    atol=2e-3,
  )
  assert all(start / SR <= w.start < w.end <= 1.05 for w in best.words)
  # Without timestamps, no words; with nbest, words on the best only.
  assert rec.transcribe([speech], nbest=True)[0][0].words is None
  nbest = rec.transcribe([speech], nbest=True, timestamps=True)[0]
  assert nbest[0].words is not None and nbest[-1].words is None


def test_speech_from_the_first_sample_decodes_as_with_silence_around(run):
  """Speech from an input's first to its last sample is given the margins
  trimming keeps in training (`audio.add_margins`): the model reads the
  same samples as for the recording with silence around it, and word times
  stay on each input's own time line."""
  config = copy.deepcopy(run.config)
  config.input.trim_silence = True
  rec = Recognizer(run.model, config, run.vocab, beam_size=2)
  pause = np.zeros(1024, np.int16)
  speech = np.concatenate(
    [to_int16(signal(0.384, 1)), pause, to_int16(signal(0.448, 2))]
  )
  silence = np.zeros(4096, np.int16)  # On the trimming hop grid.
  recorded = np.concatenate([silence, speech, silence])
  alone, first = rec.prepare_span(speech, 'speech')
  trimmed, start = rec.prepare_span(recorded, 'recorded')
  np.testing.assert_array_equal(alone, trimmed)
  assert (first, start) == (-512, silence.size - 512)
  bare, around = rec.transcribe([speech, recorded], timestamps=True)
  assert bare.text == around.text and bare.words
  shift = silence.size / SR
  for w, v in zip(bare.words, around.words, strict=True):
    # The same frames, `shift` apart; times in the margins are clipped to
    # the bare input.
    assert w.start == pytest.approx(max(v.start - shift, 0.0), abs=1e-3)
    assert w.end == pytest.approx(
      min(v.end - shift, speech.size / SR), abs=1e-3
    )
    assert 0 <= w.start <= w.end <= speech.size / SR


def test_no_speech_rule_refuses_inputs_below_its_thresholds(run):
  """The rule's cues are the CTC head's (computed here from the model's own
  CTC logits): the best path's units in the densest second, each counted
  by its peak posterior, and how much the transcript differs from the best
  path. Below both thresholds an input gets '' and a warning naming it;
  at either it decodes as without the rule."""
  import jax

  from las_jax import features
  from las_jax.inference import no_speech

  x = to_int16(signal(1.5, seed=5))
  off = Recognizer(
    run.model, run.config, run.vocab, beam_size=2, no_speech_units_per_second=0
  )
  assert not off.detects_no_speech
  samples, _ = off.prepare_span(x, 'x')
  feats, flen = features.featurize(
    None, samples[None], np.array([samples.size]), run.config.features, False
  )
  enc = run.model.encode(feats, flen)
  frames = int(enc.enc_lengths_B[0])
  probs = np.asarray(jax.nn.softmax(enc.ctc_logits_BxSxV[0, :frames]))
  best = probs.argmax(-1)
  weight = np.zeros(frames)
  for f in np.flatnonzero((best != 0) & (best != np.r_[-1, best[:-1]])):
    end = f + 1
    while end < frames and best[end] == best[f]:
      end += 1
    weight[f] = probs[f:end, best[f]].max()
  window = no_speech.window_frames(run.config)
  assert window < frames  # The densest second, not the whole input.
  units = max(weight[t : t + window].sum() for t in range(frames))
  assert units > 0
  [text] = off.transcribe([x])
  differs = no_speech.disagreement(best[weight > 0], run.vocab.encode(text))

  def rec(threshold, short):
    return Recognizer(
      run.model,
      run.config,
      run.vocab,
      beam_size=2,
      no_speech_units_per_second=threshold,
      no_speech_short_units=short,
    )

  at = rec(units - 1e-4, 1e9)
  assert at.detects_no_speech and at.transcribe([x]) == [text]
  above = rec(units + 1e-4, 1e9)
  with pytest.warns(
    audio.AudioWarning,
    match=rf'^array 0: no speech found: the CTC head hears {units:.2f} '
    'confident unit',
  ):
    assert above.transcribe([x]) == ['']
  with pytest.warns(audio.AudioWarning):
    assert above.transcribe([x], nbest=True) == [[]]
  [(key, result)] = list(above.decode_stream([('k', samples)]))
  assert key == 'k' and result == no_speech.NoSpeech(
    pytest.approx(units, abs=1e-4), pytest.approx(differs), units + 1e-4, 1e9
  )
  # Fewer units, but as many as a short reply needs: kept when the
  # transcript is what the CTC head hears.
  short = rec(units + 1e-4, units - 1e-4)
  if differs <= no_speech.MAX_DISAGREEMENT:
    assert short.transcribe([x]) == [text]
  else:
    with pytest.warns(audio.AudioWarning, match='not what it hears'):
      assert short.transcribe([x]) == ['']
  # A CTC-only search's transcript agrees with the best path whatever it
  # hears: no short-reply exemption, the count alone decides.
  ctc_only = Recognizer(
    run.model,
    run.config,
    run.vocab,
    ctc_mode='ctc',
    no_speech_units_per_second=units + 1e-4,
    no_speech_short_units=0.0,
  )
  with pytest.warns(audio.AudioWarning, match='CTC-only search'):
    assert ctc_only.transcribe([x]) == ['']
  # Without a CTC head there is no evidence: the rule is off.
  config = copy.deepcopy(run.config)
  config.model.ctc_weight = 0.0
  assert not Recognizer(
    run.model, config, run.vocab, no_speech_units_per_second=3
  ).detects_no_speech
  with pytest.raises(ValueError, match='no_speech_units_per_second'):
    rec(-1, 0)
  with pytest.raises(ValueError, match='no_speech_short_units'):
    rec(3, -1)


def test_no_speech_rule_keeps_short_transcripts_the_ctc_head_hears():
  """Below `no_speech_units_per_second`, a transcript is speech when its
  confident units reach `no_speech_short_units` and it differs from the
  CTC best path in at most a third of its units."""
  from las_jax.inference import no_speech

  assert no_speech.disagreement([], []) == 0
  assert no_speech.disagreement([5, 6, 7], [5, 6, 7]) == 0
  assert no_speech.disagreement([5, 6, 7], [5, 9, 7]) == pytest.approx(1 / 3)
  assert no_speech.disagreement([5], [5, 6, 6, 6]) == pytest.approx(3 / 4)
  assert no_speech.disagreement([5, 6], []) == 1  # Nothing written.
  judge = functools.partial(
    no_speech.judge, units_per_second=3.0, short_units=0.75
  )
  assert judge(3.0, 1.0) is None  # Enough units, whatever is written.
  assert judge(0.75, 0.0) is None and judge(2.9, 1 / 3) is None
  assert judge(0.7, 0.0) == no_speech.NoSpeech(0.7, 0.0, 3.0, 0.75)
  assert judge(2.9, 0.5) == no_speech.NoSpeech(2.9, 0.5, 3.0, 0.75)
  assert 'not what it hears (50% of' in judge(2.9, 0.5).reason
  assert 'no_speech_short_units=0.75' in judge(0.7, 0.0).reason
  # A CTC-only search's transcript is no second opinion: the count alone.
  assert judge(2.9, None) == no_speech.NoSpeech(2.9, None, 3.0, 0.75)
  assert 'CTC-only search' in judge(2.9, None).reason
  assert judge(3.0, None) is None


def test_language_model_must_share_the_vocabulary(run_dir, tmp_path):
  other = make_run(tmp_path / 'lm', lm_config(), texts=['다른 글자들'])
  with pytest.raises(ValueError, match='does not match') as e:
    Recognizer.from_workdir(run_dir, lm_workdir=str(other))
  assert str(other / 'vocab.txt') in str(e.value)
  assert str(run_dir / 'vocab.txt') in str(e.value)
  assert 'vocab_from' in str(e.value)
  with pytest.raises(ValueError, match='not a language model'):
    Recognizer.from_workdir(run_dir, lm_workdir=str(run_dir))


def test_ctc_weight_needs_a_ctc_head(run):
  config = copy.deepcopy(run.config)
  config.model.ctc_weight = 0.0
  with pytest.raises(ValueError, match='CTC head'):
    Recognizer(run.model, config, run.vocab, ctc_weight=0.5)


def test_deepspeech2_greedy_and_prefix_beam(tmp_path):
  from flax import nnx

  from configs import deepspeech2
  from las_jax import models

  config = deepspeech2.get_config()
  config.model.encoder_hidden = 16
  config.model.encoder_layers = 1
  config.input.audio_buckets_s = (1.0,)
  config.input.trim_silence = False
  # Random weights hear no speech anywhere.
  config.decode.no_speech_units_per_second = 0.0
  vocab = Vocabulary.build(TEXTS)
  model = models.build_model(config.model, len(vocab), nnx.Rngs(0))
  x = to_int16(signal(0.6, seed=6))
  greedy = Recognizer(model, config, vocab, beam_size=1)
  beam = Recognizer(model, config, vocab, beam_size=4)
  [[best_path]] = greedy.transcribe([x], nbest=True)
  prefixes = beam.transcribe([x], nbest=True)[0]
  assert len(prefixes) == 4
  assert len({h.text for h in prefixes}) == 4  # Prefixes are merged.
  # A label sequence's probability sums over its alignments, so it is at
  # least that of the best single path.
  assert prefixes[0].score >= best_path.score - 1e-4


def test_config_of_an_older_run_gets_new_fields_from_defaults(tmp_path):
  from configs import default

  saved = json.loads(default.get_config().to_json_best_effort())
  del saved['model']['vgg_channels']  # A field added after the run.
  saved['model']['encoder_hidden'] = 7
  (tmp_path / run_layout.CONFIG_FILE).write_text(json.dumps(saved))
  config = run_layout.load_config(tmp_path)
  assert tuple(config.model.vgg_channels) == (64, 128)
  assert config.model.encoder_hidden == 7


def test_bfloat16_decoding_is_close_to_float32(run):
  """compute_dtype='bfloat16' runs the matmuls in bfloat16 (the scores
  move) and finds what float32 finds; the run's own dtype is the default."""
  audio = [to_int16(signal(1.3, seed=5)), to_int16(signal(0.8, seed=6))]
  f32, bf16 = (
    Recognizer(run.model, run.config, run.vocab, beam_size=3, compute_dtype=d)
    for d in ('float32', 'bfloat16')
  )
  want, got = (r.transcribe(audio, nbest=True) for r in (f32, bf16))
  for w, g in zip(want, got, strict=True):
    assert g[0].text == w[0].text
    assert g[0].score != w[0].score
    np.testing.assert_allclose(g[0].score, w[0].score, rtol=0.02)
  default = Recognizer(run.model, run.config, run.vocab, beam_size=3)
  assert default.transcribe(audio, nbest=True) == want
  with pytest.raises(ValueError, match='compute_dtype.*float16'):
    Recognizer(run.model, run.config, run.vocab, compute_dtype='float16')


def test_ctc_mode_fuses_a_language_model_as_the_sum_of_its_parts(
  run_dir, run, tmp_path
):
  """'ctc' with a language model searches label by label: each n-best
  hypothesis scores log p_ctc(y | x) (its prefix scores telescope to the
  full-sequence probability at EOS) plus w * log p_lm(y, EOS), both
  computed here separately (CTC loss, LM stepped unit by unit)."""
  from las_jax import ctc, features
  from las_jax.inference import batch_search

  lm = restore.load_language_model(
    make_run(tmp_path / 'lm', lm_config(), step=3)
  ).model
  weight = 0.5
  options = batch_search.SearchOptions.resolve(
    run.config,
    beam_size=4,
    ctc_mode='ctc',
    lm_weight=weight,
    length_penalty=0.0,
  )
  assert not options.host_prefix_search
  x = to_int16(signal(0.7, seed=4))
  audio_BxN, lengths_B = x[None], np.array([x.size], np.int32)
  out = batch_search.search_batch(
    run.model, lm, audio_BxN, lengths_B, run.config, options
  )
  feats, flen = features.featurize(
    None, audio_BxN, lengths_B, run.config.features, False
  )
  enc = run.model.encode(feats, flen)
  checked = 0
  for k in range(options.beam_size):
    n = int(out['lengths'][0, k])
    if not np.isfinite(out['scores'][0, k]):
      continue
    tokens = np.asarray(out['tokens'][0, k, :n])
    assert tokens[-1] == Vocabulary.EOS_ID  # Every hypothesis ended.
    units = tokens[:-1]
    ctc_lp = -float(
      ctc.ctc_loss(
        enc.ctc_logits_BxSxV,
        enc.enc_lengths_B,
        np.maximum(units, 0)[None] if units.size else np.zeros((1, 1), int),
        np.array([units.size]),
        blank_id=Vocabulary.PAD_ID,
      )[0]
    )
    carry, step = lm.scorer(1)
    lm_lp, prev = 0.0, Vocabulary.SOS_ID
    for unit in tokens:
      scores, carry = step(np.array([prev]), carry)
      lm_lp += float(scores[0, unit])
      prev = unit
    np.testing.assert_allclose(
      out['scores'][0, k], ctc_lp + weight * lm_lp, rtol=1e-4, atol=1e-4
    )
    checked += 1
  assert checked >= 2
  assert np.all(np.diff(out['scores'][0, :checked]) <= 1e-6)  # Best first.
