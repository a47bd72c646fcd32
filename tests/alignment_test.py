"""CTC forced alignment against exhaustive search, and word times."""

import itertools

import numpy as np
import pytest

from las_jax.inference import alignment
from las_jax.text import Vocabulary

BLANK = 0


def collapse(path):
  merged = [c for i, c in enumerate(path) if i == 0 or c != path[i - 1]]
  return tuple(c for c in merged if c != BLANK)


def best_path_by_enumeration(lp_TxV, tokens):
  best, best_score = None, -np.inf
  for path in itertools.product(range(lp_TxV.shape[1]), repeat=len(lp_TxV)):
    if collapse(path) == tuple(tokens):
      score = sum(lp_TxV[t, c] for t, c in enumerate(path))
      if score > best_score:
        best, best_score = path, score
  return best


def runs(path):
  """[first frame, one past last] of each unit's run on an alignment path."""
  frames = []
  for f, c in enumerate(path):
    if c == BLANK:
      continue
    if f > 0 and path[f - 1] == c:
      frames[-1][1] = f + 1
    else:
      frames.append([f, f + 1])
  return np.array(frames)


@pytest.mark.parametrize('tokens', [(1,), (1, 2), (2, 2), (1, 2, 1), ()])
def test_viterbi_path_equals_exhaustive_search(tokens):
  rng = np.random.default_rng(len(tokens))
  for _ in range(3):
    logits = 2 * rng.normal(size=(6, 3))
    lp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    want = best_path_by_enumeration(lp, tokens)
    got = alignment.forced_align(lp, tokens, BLANK)
    if not tokens:
      assert got.shape == (0, 2)
      continue
    np.testing.assert_array_equal(got, runs(want))


def test_impossible_alignment_gives_none():
  lp = np.log(np.full((3, 3), 1 / 3))
  assert alignment.forced_align(lp, [1, 1, 1], BLANK) is None  # needs 5
  assert alignment.forced_align(lp, [1, 2, 1], BLANK) is not None


def test_word_times_from_peaky_frames():
  """Frames that spell known words at known frames give their times."""
  vocab = Vocabulary.build(['가나 다'])
  ga, na, da = (vocab.encode(c)[0] for c in '가나다')
  space = Vocabulary.SPACE_ID
  truth = {ga: (3, 5), na: (6, 7), space: (9, 10), da: (12, 15)}
  lp = np.full((20, len(vocab)), np.log(1e-4))
  lp[:, BLANK] = 0.0
  for unit, (a, b) in truth.items():
    lp[a:b, :] = np.log(1e-4)
    lp[a:b, unit] = 0.0
  tokens = [ga, na, space, da]
  frames = alignment.forced_align(lp, tokens, BLANK)
  np.testing.assert_array_equal(frames, [truth[u] for u in tokens])
  words = alignment.word_spans(tokens, frames, vocab, 0.04, offset=10.0)
  assert words == [
    alignment.Span('가나', 10.12, 10.28),
    alignment.Span('다', 10.48, 10.6),
  ]


def test_stray_spaces_are_not_timed():
  """The units the transcript spells are aligned: leading, trailing and
  repeated spaces are dropped, one space stays between words, and the
  words' times are plain floats."""
  vocab = Vocabulary.build(['가나 다'])
  ga, na, da = (vocab.encode(c)[0] for c in '가나다')
  space = Vocabulary.SPACE_ID
  tokens = [space, ga, na, space, space, da, space]
  kept = alignment.transcript_units(tokens, vocab)
  np.testing.assert_array_equal(kept, [1, 2, 3, 5])
  assert vocab.encode(vocab.transcript(tokens)) == [tokens[i] for i in kept]
  frames = np.array(
    [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 12], [13, 14]]
  )
  words = alignment.word_spans(tokens, frames, vocab, 0.04, offset=np.int64(1))
  assert words == [
    alignment.Span('가나', 1.08, 1.2),
    alignment.Span('다', 1.4, 1.48),
  ]
  assert all(type(t) is float for w in words for t in (w.start, w.end))
  assert repr(words[1]) == "Span(text='다', start=1.4, end=1.48)"
