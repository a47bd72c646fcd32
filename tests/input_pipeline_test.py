"""Tests for las_jax.input_pipeline: bucketing, coverage, sharding, resume."""

import json

import numpy as np
import pytest

from configs import default
from las_jax import audio as audio_lib
from las_jax import input_pipeline
from las_jax.data.utterance_index import UtteranceIndex
from las_jax.text import Vocabulary

_CHARS = '가나다라마바사아자차카타파하 '


def _records(n=150, seed=0):
  """In-memory records as a TFDS data source returns them."""
  rng = np.random.default_rng(seed)
  out = []
  for i in range(n):
    length = int(rng.integers(1, 4000))
    text = ''.join(rng.choice(list(_CHARS), int(rng.integers(0, 20))))
    out.append(
      {
        'id': f'utt_{i:04d}'.encode(),
        'audio': rng.integers(-2000, 2000, length).astype(np.int16),
        'text': text.encode(),
        'raw_text': text.encode(),
      }
    )
  return out


@pytest.fixture(scope='module')
def records():
  return _records()


@pytest.fixture(scope='module')
def vocab(records):
  return Vocabulary.build([r['text'].decode() for r in records])


@pytest.fixture
def config():
  config = default.get_config()
  # 800 / 1600 / 3200 samples at 16 kHz; records go up to 4000.
  config.input.audio_buckets_s = (0.05, 0.1, 0.2)
  config.input.token_buckets = (8, 16)
  config.input.batch_size = 8
  config.input.eval_batch_size = 8
  config.input.trim_silence = False
  config.input.num_threads = 0
  return config


def _fits(r, vocab, max_audio=3200, max_tokens=16):
  n_tok = len(vocab.encode(r['text'].decode())) + 1
  return 0 < len(r['audio']) <= max_audio and n_tok <= max_tokens


def _collect(it, n=None):
  out = []
  for batch in it:
    out.append(batch)
    if n is not None and len(out) == n:
      break
  return out


def _assert_same(batches_a, batches_b):
  assert len(batches_a) == len(batches_b)
  for a, b in zip(batches_a, batches_b, strict=True):
    assert a.keys() == b.keys()
    for k in a:
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_epoch_covers_kept_utterances_once_in_fixed_shapes(
  records, vocab, config
):
  it = input_pipeline.make_train_iterator(records, vocab, config, num_epochs=1)
  shapes = set(it.buckets.shapes)
  by_id = {r['id'].decode(): r for r in records}
  seen = []
  for batch in it:
    assert batch['audio'].dtype == np.int16
    assert batch['tokens'].dtype == np.int32
    assert batch['audio'].shape[0] == batch['tokens'].shape[0] == 8
    assert (batch['audio'].shape[1], batch['tokens'].shape[1]) in shapes
    for row, uid in enumerate(batch['ids']):
      n, ell = batch['audio_lengths'][row], batch['token_lengths'][row]
      if not uid:  # Padding row.
        assert n == 0 and ell == 0
        assert not batch['audio'][row].any() and not batch['tokens'][row].any()
        continue
      seen.append(uid)
      r = by_id[uid]
      np.testing.assert_array_equal(batch['audio'][row, :n], r['audio'])
      assert not batch['audio'][row, n:].any()
      want = vocab.encode(r['text'].decode()) + [vocab.eos_id]
      np.testing.assert_array_equal(batch['tokens'][row, :ell], want)
      assert batch['tokens'][row, ell - 1] == vocab.eos_id
      assert not batch['tokens'][row, ell:].any()
      assert batch['texts'][row] == r['text'].decode()
  kept = {r['id'].decode() for r in records if _fits(r, vocab)}
  assert len(seen) == len(set(seen))
  assert set(seen) == kept
  stats = it.stats
  assert stats['kept'] == len(kept)
  dropped = stats['dropped_long_audio'] + stats['dropped_long_text']
  assert dropped == len(records) - len(kept) > 0
  assert stats['dropped_long_audio'] == sum(
    len(r['audio']) > 3200 for r in records
  )


def test_plan_epoch_pads_at_most_one_batch_in_the_largest_bucket():
  audio_b = np.array([0, 0, 0, 1, 1, 2, 0])
  token_b = np.array([0, 1, 0, 0, 0, 1, 0])
  plan = input_pipeline.plan_epoch(np.arange(7), audio_b, token_b, 3)
  # (0,0) fills first with records 0, 2, 6; the rest are leftovers.
  assert plan[0][:2] == (0, 0)
  np.testing.assert_array_equal(plan[0][2], [0, 2, 6])
  # Leftovers in bucket order: 1 (0,1), 3 (1,0), 4 (1,0) | 5 (2,1) + pads.
  assert plan[1][:2] == (1, 1)
  np.testing.assert_array_equal(plan[1][2], [1, 3, 4])
  assert plan[2][:2] == (2, 1)
  np.testing.assert_array_equal(plan[2][2], [5, -1, -1])


def test_resume_mid_epoch_yields_exactly_the_rest(records, vocab, config):
  full = _collect(
    input_pipeline.make_train_iterator(records, vocab, config, num_epochs=2)
  )
  per_epoch = len(
    input_pipeline.make_train_iterator(records, vocab, config).epoch_plan(0)
  )
  for cut in (3, per_epoch, per_epoch + 2):
    it = input_pipeline.make_train_iterator(
      records, vocab, config, num_epochs=2
    )
    _assert_same(_collect(it, cut), full[:cut])
    state = json.loads(json.dumps(it.get_state()))
    resumed = input_pipeline.make_train_iterator(
      records, vocab, config, num_epochs=2
    )
    resumed.set_state(state)
    _assert_same(_collect(resumed), full[cut:])


def test_reader_threads_do_not_change_batches(records, vocab, config):
  sync = _collect(
    input_pipeline.make_train_iterator(records, vocab, config, num_epochs=1)
  )
  config.input.num_threads = 2
  it = input_pipeline.make_train_iterator(records, vocab, config, num_epochs=1)
  threaded = _collect(it, 4)
  _assert_same(threaded, sync[:4])
  want = UtteranceIndex.from_records(records)
  got = UtteranceIndex.from_records(records, num_threads=2)
  assert got.ids == want.ids and got.texts == want.texts
  for field in ('num_samples', 'trim_start', 'trim_end'):
    np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
  it.set_state({'epoch': 0, 'position': 2})
  _assert_same(_collect(it), sync[2:])


def test_deterministic_for_seed_and_reshuffled_per_epoch(
  records, vocab, config
):
  def ids(seed):
    it = input_pipeline.make_train_iterator(
      records, vocab, config, seed=seed, num_epochs=2
    )
    per_epoch = len(it.epoch_plan(0))
    out = [list(b['ids']) for b in it]
    return out[:per_epoch], out[per_epoch:]

  e0, e1 = ids(1)
  assert (e0, e1) == ids(1)
  assert e0 != e1
  assert sorted(sum(e0, [])) == sorted(sum(e1, []))
  assert ids(2)[0] != e0


def test_two_hosts_get_disjoint_shards_covering_everything(
  records, vocab, config
):
  single = _collect(
    input_pipeline.make_train_iterator(records, vocab, config, num_epochs=1)
  )
  hosts = [
    _collect(
      input_pipeline.make_train_iterator(
        records, vocab, config, num_epochs=1, process_index=p, process_count=2
      )
    )
    for p in (0, 1)
  ]
  assert len(hosts[0]) == len(hosts[1]) == len(single)
  for b0, b1, b in zip(hosts[0], hosts[1], single, strict=True):
    assert b0['audio'].shape == b1['audio'].shape  # Same step, same shape.
    assert b0['audio'].shape[0] == 4
    np.testing.assert_array_equal(
      np.concatenate([b0['audio'], b1['audio']]), b['audio']
    )
    np.testing.assert_array_equal(
      np.concatenate([b0['ids'], b1['ids']]), b['ids']
    )
  ids = [set(u for b in h for u in b['ids'] if u) for h in hosts]
  assert not ids[0] & ids[1]
  assert ids[0] | ids[1] == {u for b in single for u in b['ids'] if u}
  with pytest.raises(ValueError, match='batch_size=8 is not divisible'):
    input_pipeline.make_train_iterator(
      records, vocab, config, process_index=0, process_count=3
    )


def test_eval_keeps_long_utterances_in_an_extra_bucket(records, vocab, config):
  it = input_pipeline.make_eval_iterator(records, vocab, config)
  # Longest record: < 4000 samples -> 1 s bucket; < 21 tokens -> 32.
  assert it.buckets.audio == (800, 1600, 3200, 16000)
  assert it.buckets.tokens == (8, 16, 32)
  batches = _collect(it)
  ids = [u for b in batches for u in b['ids'] if u]
  assert sorted(ids) == sorted(r['id'].decode() for r in records)
  assert it.stats['kept'] == len(records)
  assert _collect(it) == []  # One pass only.


def test_empty_audio_is_dropped_and_counted(vocab, config):
  recs = _records(20)
  recs[5] = dict(recs[5], audio=np.zeros((0,), np.int16))
  it = input_pipeline.make_eval_iterator(recs, vocab, config)
  ids = {u for b in it for u in b['ids'] if u}
  assert 'utt_0005' not in ids and len(ids) == 19
  assert it.stats['dropped_empty_audio'] == 1


def test_bad_records_are_named(vocab, config):
  recs = _records(4)
  recs[2] = dict(recs[2], audio=recs[2]['audio'].astype(np.float32))
  with pytest.raises(ValueError, match='utt_0002.*int16'):
    input_pipeline.make_eval_iterator(recs, vocab, config)
  recs[2] = {k: v for k, v in recs[2].items() if k != 'text'}
  with pytest.raises(KeyError, match='text'):
    input_pipeline.make_eval_iterator(recs, vocab, config)


@pytest.fixture(scope='module')
def mini_corpus(tmp_path_factory):
  """A built 16-utterance mini_kspon: (train data source, its index)."""
  from las_jax import data
  from las_jax.data import make_mini_kspon

  tmp = tmp_path_factory.mktemp('mini')
  make_mini_kspon.make_mini_kspon(tmp / 'raw', num_utterances=16)
  builder = data.build_dataset('ksponspeech', tmp / 'tfds', tmp / 'raw')
  index = data.read_index(builder.data_dir, 'train')
  # Trimming has work to do: the synthetic speech has silent edges.
  assert (index.trim_end - index.trim_start < index.num_samples).sum() > 4
  return builder.as_data_source('train'), index


def _old_path_batches(source, vocab, config, seed):
  """Epoch 0 as the pipeline made it before build-time trimming: every
  record read and trimmed while planning, and again while loading."""
  inp = config.input
  trimmed = []
  for i in range(len(source)):
    audio_N = source[i]['audio']
    if inp.trim_silence:
      cut_N = audio_lib.trim_silence(audio_N, top_db=inp.trim_top_db)
      audio_N = cut_N if cut_N.size else audio_N  # All silence: keep whole.
    trimmed.append(audio_N)
  tokens = [
    vocab.encode(source[i]['text'].decode()) for i in range(len(source))
  ]
  audio_len = np.array([a.size for a in trimmed])
  token_len = np.array([len(t) + 1 for t in tokens])
  buckets = input_pipeline.buckets_from_config(config)
  keep = (audio_len <= buckets.audio[-1]) & (token_len <= buckets.tokens[-1])
  order = np.random.default_rng([seed, 0]).permutation(np.flatnonzero(keep))
  plan = input_pipeline.plan_epoch(
    order,
    np.searchsorted(buckets.audio, audio_len),
    np.searchsorted(buckets.tokens, token_len),
    inp.batch_size,
  )
  for a, _, rows in plan:
    audio = np.zeros((len(rows), buckets.audio[a]), np.int16)
    for row, i in enumerate(rows):
      if i >= 0:
        audio[row, : audio_len[i]] = trimmed[i]
    yield audio, [source[i]['id'].decode() if i >= 0 else '' for i in rows]


@pytest.mark.parametrize('trim', [True, False])
def test_real_mini_corpus_batches_are_those_of_the_old_path(
  mini_corpus, config, trim
):
  """Build-time trimming changes no sample and no batch: the stored index
  gives the batches that trimming every record while planning gave."""
  source, index = mini_corpus
  vocab = Vocabulary.build(index.texts)
  config.input.audio_buckets_s = (2.0, 3.0, 4.0)
  config.input.token_buckets = (32, 64)
  config.input.batch_size = 2
  config.input.trim_silence = trim
  it = input_pipeline.make_train_iterator(
    source, vocab, config, index=index, num_epochs=1
  )
  batches = _collect(it)
  want = list(_old_path_batches(source, vocab, config, config.seed))
  assert len(batches) == len(want) > 2
  for batch, (audio, ids) in zip(batches, want, strict=True):
    assert list(batch['ids']) == ids
    np.testing.assert_array_equal(batch['audio'], audio)
  assert it.stats['dropped_long_audio'] > 0  # The 4 s bucket drops some.
  # Without the stored index, the pipeline indexes the records itself.
  alone = input_pipeline.make_train_iterator(
    source, vocab, config, num_epochs=1
  )
  _assert_same(_collect(alone), batches)
