"""The LSTM language model: trained by train_and_evaluate on transcripts.

A 24-utterance generated corpus (espeak-ng) is built into TFDS; the model
reads only its transcripts. Runs go through the real loop: text batches,
the shard_map step, dev perplexity, orbax checkpoints, exact resume.
"""

import json

import jax
import numpy as np
import pytest

from configs import tiny
from las_jax import lm_data
from las_jax import train as train_lib
from las_jax.text import Vocabulary


@pytest.fixture(scope='module')
def corpus(kspon_corpus):
  return kspon_corpus


def lm_config(corpus, num_steps, **train):
  config = tiny.get_config()
  config.data.manual_dir, config.data.data_dir = corpus
  config.model.name = 'lstm_lm'
  config.model.lm_hidden = 32
  config.model.lm_layers = 2
  config.model.dropout = 0.1
  config.input.batch_size = 8
  config.input.eval_batch_size = 8
  config.input.token_buckets = (32, 64)
  config.train.update(
    num_steps=num_steps,
    vocab_max_size=None,
    lr_schedule='constant',
    peak_lr=3e-3,
    label_smoothing=0.0,
    log_every=1,
    eval_every=3,
    eval_utterances=0,
    checkpoint_every=10,
    async_checkpointing=False,
    progress_bar=False,
    **train,
  )
  return config


def records(workdir, name):
  lines = (workdir / 'metrics.jsonl').read_text().splitlines()
  return [(r['step'], r[name]) for r in map(json.loads, lines) if name in r]


def params(state):
  return jax.device_get(state.checkpointed()['params'])


@pytest.fixture(scope='module')
def full_run(corpus, tmp_path_factory):
  workdir = tmp_path_factory.mktemp('lm_full')
  state = train_lib.train_and_evaluate(lm_config(corpus, 30), workdir)
  return workdir, params(state)


def test_dev_perplexity_falls(full_run):
  workdir, _ = full_run
  vocab = Vocabulary.load(workdir / 'vocab.txt')
  ppl = records(workdir, 'dev/perplexity')
  assert [s for s, _ in ppl] == list(range(3, 31, 3))
  # From about a uniform guess over the units to a model of the text (on
  # 20 training sentences it overfits later: the best step is kept).
  assert ppl[0][1] < 1.2 * len(vocab)
  best_step, best = min(ppl, key=lambda r: r[1])
  assert best < 0.8 * ppl[0][1]
  assert [p.name for p in (workdir / 'checkpoints_best').iterdir()] == [
    str(best_step)
  ]
  # The dev split's transcripts, read once and kept in the run directory.
  # Every dev transcript, from the dataset's index.
  assert records(workdir, 'dev/utterances')[0][1] == 2


def test_resumes_exactly(corpus, full_run, tmp_path):
  _, want = full_run
  train_lib.train_and_evaluate(lm_config(corpus, 15), tmp_path)
  assert [s for s, _ in records(tmp_path, 'train/loss')] == list(range(1, 16))
  state = train_lib.train_and_evaluate(lm_config(corpus, 30), tmp_path)
  # The resumed run trained steps 16..30 only, from the saved state.
  steps = [s for s, _ in records(tmp_path, 'train/loss')]
  assert steps == list(range(1, 31))
  jax.tree.map(np.testing.assert_array_equal, params(state), want)


def test_vocabulary_comes_from_the_recognizer_run(corpus, tmp_path):
  asr_run = tmp_path / 'asr'
  asr_run.mkdir()
  # A recognizer's vocabulary with units the transcripts lack.
  vocab = Vocabulary.build(['가나다 라마바 사아자', '차카타 파하'])
  vocab.save(asr_run / 'vocab.txt')
  lm_dir = tmp_path / 'lm'
  config = lm_config(corpus, 1)
  config.data.vocab_from = str(asr_run)
  train_lib.train_and_evaluate(config, lm_dir)
  assert Vocabulary.load(lm_dir / 'vocab.txt') == vocab
  other = tmp_path / 'other'
  other.mkdir()
  Vocabulary.build(['다른 글자']).save(other / 'vocab.txt')
  config.data.vocab_from = str(other)
  with pytest.raises(ValueError, match='differs from'):
    train_lib.train_and_evaluate(config, lm_dir)
  config.data.vocab_from = str(tmp_path / 'missing')
  with pytest.raises(FileNotFoundError, match='vocab_from'):
    train_lib.train_and_evaluate(config, tmp_path / 'lm2')


def test_extra_text_file_is_normalized_and_added(tmp_path):
  path = tmp_path / 'extra.txt'
  path.write_bytes(
    '\ufeff국민은 (2)/(이) 권리를 가진다\n\n  o/ 법률로   정한다 \n'.encode()
  )
  assert lm_data.read_text_file(str(path), 'phonetic') == [
    '국민은 이 권리를 가진다',
    '법률로 정한다',
  ]
  path.write_bytes(b'\xea\xb0\x80\n\xff\xfe\n')
  with pytest.raises(ValueError, match=r'extra.txt:2: not UTF-8'):
    lm_data.read_text_file(str(path), 'phonetic')


def test_text_batches_are_bucketed_and_drop_long_sentences():
  config = tiny.get_config()
  config.input.batch_size = 2
  config.input.token_buckets = (4, 8)
  vocab = Vocabulary.build(['가나다라마바사아자'])
  texts = ['가', '가나다', '가나다라마', '가나다라마바사아자', '']
  it = lm_data.make_iterator(
    texts, vocab, config, train=True, process_index=0, process_count=1
  )
  assert it.stats == {
    'sentences': 5,
    'dropped_empty': 1,
    'dropped_long': 1,
    'kept': 3,
  }
  seen = []
  for _ in range(2):
    batch = next(it)
    assert batch['tokens'].shape[1] in (4, 8)
    for row in range(2):
      n = batch['token_lengths'][row]
      if n:
        assert batch['tokens'][row, n - 1] == vocab.eos_id
        seen.append(vocab.decode(batch['tokens'][row, : n - 1]))
  assert sorted(seen) == ['가', '가나다', '가나다라마']
