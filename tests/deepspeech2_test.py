"""DeepSpeech2 end to end: train, restore, decode with CTC prefix beam search.

A tiny configs/deepspeech2.py trains through `train_and_evaluate` on the
generated 24-utterance corpus (the CTC-only branches of the train, eval
and greedy-decode steps), is restored by `Recognizer`, and decodes the
corpus's own audio files. The right answer for beam search is
`ctc.prefix_beam_search` run on the model's log-probabilities for each
utterance alone (unpadded, batch of one), so the recognizer's bucketing,
padding, length bookkeeping, blank id and vocabulary are all checked.
"""

from pathlib import Path

import jax
import numpy as np
import pytest

from configs import deepspeech2
from las_jax import ctc, features, logging_utils
from las_jax import train as train_lib
from las_jax.data import transcripts
from las_jax.inference import restore
from las_jax.inference.recognizer import Recognizer
from las_jax.text import Vocabulary

BEAM = 4
STEPS = 12


def _tiny_ds2_config(corpus):
  config = deepspeech2.get_config()
  config.data.manual_dir, config.data.data_dir = corpus
  config.features.num_mels = 8
  config.features.spec_augment = False
  config.input.update(
    batch_size=8,
    eval_batch_size=8,
    audio_buckets_s=(6.0,),
    token_buckets=(64,),
    num_threads=0,
  )
  config.model.update(
    input_dim=8, ds2_channels=4, encoder_hidden=16, encoder_layers=2
  )
  # 12 steps leave the CTC head emitting blank almost everywhere: the
  # no-speech rule would refuse every input the searches are compared on.
  config.decode.no_speech_units_per_second = 0.0
  config.train.update(
    num_steps=STEPS,
    lr_schedule='constant',
    peak_lr=3e-3,
    vocab_max_size=None,
    log_every=4,
    eval_every=0,
    eval_utterances=2,
    plot_utterances=1,
    checkpoint_every=0,
    async_checkpointing=False,
    progress_bar=False,
  )
  return config


@pytest.fixture(scope='module')
def ds2_run(kspon_corpus, tmp_path_factory):
  workdir = tmp_path_factory.mktemp('ds2')
  train_lib.train_and_evaluate(_tiny_ds2_config(kspon_corpus), workdir)
  return workdir


@pytest.fixture(scope='module')
def audio_files(kspon_corpus):
  """The corpus's dev and eval utterances (never trained on)."""
  manual_dir = Path(kspon_corpus[0])
  paths = []
  for split in ('dev', 'eval_clean', 'eval_other'):
    utterances, _ = transcripts.read_trn(
      str(manual_dir / 'scripts' / f'{split}.trn'), str(manual_dir)
    )
    paths += [u.audio_path for u in utterances]
  assert len(paths) == 4
  return paths


def test_ctc_training_logs_and_checkpoints(ds2_run):
  records = logging_utils.read_metrics(ds2_run)
  train = [r for r in records if 'train/loss' in r]
  assert [r['step'] for r in train] == [4, 8, 12]
  for r in train:
    # CTC alone: no attention cross entropy, the loss is the CTC term.
    assert r['train/ce'] == 0.0 and r['train/accuracy'] == 0.0
    assert r['train/loss'] == r['train/ctc'] and np.isfinite(r['train/loss'])
    assert r['train/skipped_steps'] == 0
  # From ~ln(vocab) plus the blank: CTC learns to emit blanks first.
  assert train[-1]['train/loss'] < train[0]['train/loss']
  [dev] = [r for r in records if 'dev/cer' in r]
  assert dev['step'] == STEPS and dev['dev/utterances'] == 2
  assert np.isfinite(dev['dev/loss']) and 'dev/accuracy' not in dev
  assert (ds2_run / 'checkpoints' / str(STEPS)).is_dir()
  # Alignment plots are for attention: a CTC model has none to draw.
  assert not list((ds2_run / 'plots').glob('attention_*.png'))


def _alone_log_probs(run, rec, path):
  """The model's CTC log-probs [S, V] of one utterance, unpadded."""
  samples_N = rec.prepare(rec.load(path), path)
  feats_BxTxF, flen_B = features.featurize(
    None,
    samples_N[None],
    np.array([samples_N.size]),
    run.config.features,
    False,
  )
  enc = run.model.encode(feats_BxTxF, flen_B, train=False)
  log_probs_SxV = jax.nn.log_softmax(enc.ctc_logits_BxSxV[0])
  return np.asarray(log_probs_SxV[: int(enc.enc_lengths_B[0])])


def test_recognizer_beam_search_is_ctc_prefix_beam_search(ds2_run, audio_files):
  run = restore.load_run(ds2_run)
  rec = Recognizer.from_workdir(ds2_run, beam_size=BEAM, batch_size=4)
  assert rec.ctc_mode == 'ctc'
  nbest = rec.transcribe(audio_files, nbest=True)
  assert len(nbest) == len(audio_files)
  for path, hyps in zip(audio_files, nbest, strict=True):
    want = ctc.prefix_beam_search(
      _alone_log_probs(run, rec, path), BEAM, Vocabulary.PAD_ID
    )
    assert [h.text for h in hyps] == [
      run.vocab.transcript(labels) for labels, _ in want
    ], path
    np.testing.assert_allclose(
      [h.score for h in hyps], [score for _, score in want], rtol=1e-5
    )


def test_recognizer_greedy_is_the_best_ctc_path(ds2_run, audio_files):
  run = restore.load_run(ds2_run)
  rec = Recognizer.from_workdir(ds2_run, beam_size=1, batch_size=4)
  nbest = rec.transcribe(audio_files, nbest=True)
  for path, hyps in zip(audio_files, nbest, strict=True):
    log_probs_SxV = _alone_log_probs(run, rec, path)
    best_S = log_probs_SxV.argmax(-1)
    # Collapse repeats, then drop blanks.
    labels = [
      int(t)
      for i, t in enumerate(best_S)
      if t != Vocabulary.PAD_ID and (i == 0 or t != best_S[i - 1])
    ]
    [hyp] = hyps
    assert hyp.text == run.vocab.transcript(labels), path
    np.testing.assert_allclose(
      hyp.score, log_probs_SxV.max(-1).sum(), rtol=1e-5
    )
