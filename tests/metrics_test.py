"""Tests for las_jax.metrics: CER, WER, sWER on hand-checked Korean pairs."""

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from las_jax import metrics


def test_split_word_golden():
  ref, hyp = '나는 학교에 간다', '나는 학교 에 간다'
  # Without spaces both are 나는학교에간다 (7 chars): 0 edits.
  assert metrics.cer([ref], [hyp]) == 0.0
  # With spaces: ref has 9 characters, hyp inserts one space: 1/9.
  assert metrics.cer([ref], [hyp], remove_spaces=False) == pytest.approx(1 / 9)
  # Words [나는 학교에 간다] vs [나는 학교 에 간다]: 학교에->학교 plus
  # inserted 에 = 2 edits / 3 words.
  assert metrics.wer([ref], [hyp]) == pytest.approx(2 / 3)
  # Every character matches, so the hypothesis takes the reference spacing.
  assert metrics.space_normalize(ref, hyp) == ref
  assert metrics.swer([ref], [hyp]) == 0.0


def test_merged_words_golden():
  ref, hyp = '그 뭐 일 학년', '그뭐 일학년'
  assert metrics.cer([ref], [hyp]) == 0.0
  # [그 뭐 일 학년] vs [그뭐 일학년]: 2 substitutions + 2 deletions = 4/4.
  assert metrics.wer([ref], [hyp]) == 1.0
  assert metrics.swer([ref], [hyp]) == 0.0


def test_substitution_keeps_hypothesis_spacing():
  ref, hyp = '칠십 퍼센트 확률', '칠십퍼 센트 학률'
  # Characters 칠십퍼센트확률 vs 칠십퍼센트학률: 확->학, 1/7.
  assert metrics.cer([ref], [hyp]) == pytest.approx(1 / 7)
  # 퍼 and 센 match and take the reference spacing; 학 is a substitution and
  # keeps its own word start (it started a word in both anyway).
  assert metrics.space_normalize(ref, hyp) == '칠십 퍼센트 학률'
  # sWER: [칠십 퍼센트 확률] vs [칠십 퍼센트 학률] = 1/3; WER: [칠십퍼 센트
  # 학률] = 3 substitutions / 3.
  assert metrics.swer([ref], [hyp]) == pytest.approx(1 / 3)
  assert metrics.wer([ref], [hyp]) == 1.0


def test_inserted_characters_keep_their_spacing():
  ref, hyp = '학교 간다', '학교 안 간다'
  # The inserted 안 keeps its word start; the rest already matches.
  assert metrics.space_normalize(ref, hyp) == '학교 안 간다'
  assert metrics.swer([ref], [hyp]) == pytest.approx(1 / 2)
  # Character-level: 학교간다 vs 학교안간다, 1 insertion / 4.
  assert metrics.cer([ref], [hyp]) == pytest.approx(1 / 4)
  # The glued insertion 교안 is respaced at 간 only: [학교안 간다].
  assert metrics.space_normalize(ref, '학교안간다') == '학교안 간다'


def test_space_normalize_follows_espnet_tie_breaking():
  # ESPnet's traceback prefers the diagonal on ties, then deletion over
  # insertion: 가 vs 나다 aligns 가 with 다 (substitution) and inserts 나.
  assert metrics.space_normalize('가', '나 다') == '나 다'
  # 나가가 vs 나 가: on the tie the last 가 is matched (taking the word
  # start) and the middle one inserted; insertion first would give 나 가가.
  assert metrics.space_normalize('나 가', '나가가') == '나가 가'
  assert metrics.space_normalize('가 나', '나가') == '나가'
  assert metrics.space_normalize('가나', '가 나') == '가나'
  assert metrics.space_normalize('', '가 나') == '가 나'
  assert metrics.space_normalize('가 나', '') == ''


def test_corpus_rates_sum_edits_over_references():
  refs = ['안녕하세요', '감사 합니다']
  hyps = ['안녕하세', '감사 함니다']
  # Edits 1 (deleted 요) + 1 (합->함) over 5 + 5 characters.
  assert metrics.cer(refs, hyps) == pytest.approx(2 / 10)
  assert metrics.crr(refs, hyps) == pytest.approx(0.8)
  # Words: 1/1 + 1/2 -> 2/3 (not the mean of 1.0 and 0.5).
  assert metrics.wer(refs, hyps) == pytest.approx(2 / 3)


def test_utterance_errors_and_summary():
  refs = ['나는 학교에 간다', '안녕']
  hyps = ['나는 학교 에 간다', '안녕 하세요']
  first = metrics.utterance_errors(refs[0], hyps[0])
  assert first == metrics.UtteranceErrors(
    char_edits=0,
    ref_chars=7,
    spaced_char_edits=1,
    ref_spaced_chars=9,
    word_edits=2,
    ref_words=3,
    sword_edits=0,
  )
  second = metrics.utterance_errors(refs[1], hyps[1])
  # 안녕 vs 안녕하세요: 3 char insertions; with spaces 4; 1 inserted word.
  assert (second.char_edits, second.spaced_char_edits) == (3, 4)
  assert (second.word_edits, second.sword_edits) == (1, 1)
  rates = metrics.error_rates(refs, hyps)
  assert rates.n_utterances == 2
  assert rates.cer == pytest.approx(3 / 9)
  assert rates.cer_with_spaces == pytest.approx(5 / 11)
  assert rates.wer == pytest.approx(3 / 4)
  assert rates.swer == pytest.approx(1 / 4)
  assert rates.crr == pytest.approx(1 - 3 / 9)
  assert rates == metrics.ErrorRates.from_utterances([first, second])
  assert rates.cer == metrics.cer(refs, hyps)
  assert rates.wer == metrics.wer(refs, hyps)
  assert rates.swer == metrics.swer(refs, hyps)
  # JSON-ready for decode.py's per-utterance and summary records.
  assert dataclasses.asdict(first)['ref_chars'] == 7


def test_empty_references():
  # An empty reference adds its edits but nothing to the denominator.
  assert metrics.cer(['', '가나'], ['다', '가나']) == pytest.approx(1 / 2)
  assert metrics.utterance_errors('', '다 라').word_edits == 2
  # A corpus with no reference characters has an undefined rate: NaN.
  assert math.isnan(metrics.cer([''], ['다']))
  assert math.isnan(metrics.wer([' '], ['']))
  rates = metrics.error_rates([], [])
  assert rates.n_utterances == 0 and math.isnan(rates.cer)
  assert math.isnan(rates.swer)


def test_bad_arguments():
  with pytest.raises(ValueError, match='differ in length: 2 vs 1'):
    metrics.cer(['가', '나'], ['가'])
  with pytest.raises(TypeError, match='sequences of strings'):
    metrics.wer('가나', '가나')


_KOREAN = st.text(alphabet=st.sampled_from(list('가나다라 ')), max_size=12)


@settings(max_examples=200, deadline=None)
@given(ref=_KOREAN, hyp=_KOREAN)
def test_space_normalize_properties(ref, hyp):
  normed = metrics.space_normalize(ref, hyp)
  # Only spaces change, so CER without spaces is untouched.
  assert normed.replace(' ', '') == ''.join(hyp.split())
  # Spacing-only differences vanish entirely.
  respaced = metrics.space_normalize(ref, ' '.join(''.join(ref.split())))
  assert respaced == ' '.join(ref.split())
  if ref.split():
    assert metrics.swer([ref], [ref]) == 0.0


@pytest.mark.parametrize(
  'units,max_units,loop',
  [
    ('부모 부모 부모 부모', None, True),  # "부모 " repeated 3+ times.
    ('부모 부모 부모', None, False),  # The last repeat lacks its space.
    ('하하하하하', None, False),  # One unit repeated: ordinary text.
    ('사무사무사무', None, True),
    ('국민의 권리와 의무', None, False),
    ('가나다라마', 6, False),
    ('가나다라마바', 6, True),  # Ran into the token limit (6 units).
    ('가나다라마', 5, True),  # More than 5 - 1 units.
    ('', 1, False),
  ],
)
def test_looks_like_loop(units, max_units, loop):
  assert metrics.looks_like_loop(list(units), max_units) is loop
