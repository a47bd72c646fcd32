"""Decoding time and real-time factor of LAS (not a test).

  JAX_PLATFORMS=cpu PYTHONPATH=. python benchmarks/decode_bench.py

The peers' decoding benchmark (research/environment.md): batch 8 of 4 s
utterances (400 frames of 80 log-mel), the benchmark LAS (non-pyramidal;
VGG + 3 x BiLSTM 256, 2 x LSTM 512 speller, 4-head attention, vocab 2000)
with a CTC head and random weights, decoding the full 30 tokens. It runs
the real path, `Recognizer.decode_stream`: one compiled program does
log-mel features, the encoder and the search, then the host turns token
ids into text. The searches, one after the other in one process:
- greedy and beam 5, attention only (`ctc_mode='off'`);
- beam 5 with one-pass joint CTC/attention scoring, ctc_weight 0.3
  (`ctc_mode='joint'`, pre-beam ceil(1.5 * 5) = 8 candidates + EOS);
- the same fused with an LSTM language model of 2 x 512 units
  (`lm_weight` 0.3), random weights.

30 tokens: `max_tokens_per_second` is set so the limit is exactly 30, and
the output layers' EOS columns are zeroed, so the EOS logit is 0 while the
largest of 1997 random logits is positive: EOS never wins. The script
checks that every hypothesis has 30 tokens rather than assuming it.

Prints per search: compile seconds (apart), median / min / max decode
seconds of `--runs` calls after `--warmup`, the real-time factor (decode
seconds / audio seconds), the encoder's share (the encoder alone, jitted,
same inputs), and the ratio to attention-only beam 5.
"""

import os
import statistics
import string
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from configs import default
from las_jax import features
from las_jax.inference import restore
from las_jax.inference.recognizer import Recognizer
from las_jax.models import build_model
from las_jax.text import Vocabulary

BATCH, VOCAB, TOKENS, RUNS, WARMUP = 8, 2000, 30, 5, 2
# 4 s bucket; 63840 samples give exactly 400 frames (10 ms hop, 25 ms win).
SAMPLES = 4 * 16000 - 160


def make_vocab(size: int) -> Vocabulary:
  """Specials, space, then single characters (Hangul syllables)."""
  units = [chr(0xAC00 + i) for i in range(size - 5)]
  assert not set(units) & set(string.printable)
  return Vocabulary([*Vocabulary.SPECIALS, ' ', *units])


def make_model(config):
  """Random benchmark LAS whose EOS logit is 0 (EOS never wins)."""
  model = build_model(config.model, VOCAB, nnx.Rngs(0))
  out = model.speller.out.kernel
  out[...] = out[...].at[:, Vocabulary.EOS_ID].set(0.0)
  return model


def make_language_model(config, vocab):
  """Random 2 x 512 LSTM LM whose EOS logit is its bias, 0."""
  lm_config = default.get_config()
  lm_config.model.name = 'lstm_lm'
  lm_config.model.lm_hidden = 512
  lm_config.model.lm_layers = 2
  lm = build_model(lm_config.model, VOCAB, nnx.Rngs(1))
  out = lm.out.kernel
  out[...] = out[...].at[:, Vocabulary.EOS_ID].set(0.0)
  return restore.Run(lm, lm_config, vocab, checkpoint=None)


def timed(fn, runs: int, warmup: int) -> list[float]:
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(runs):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times


def main() -> None:
  config = default.get_config()
  config.input.trim_silence = False
  config.model.ctc_weight = 0.3  # Adds the CTC head.
  vocab = make_vocab(VOCAB)
  model = make_model(config)
  language_model = make_language_model(config, vocab)
  rng = np.random.default_rng(0)
  audio = [
    rng.integers(-3000, 3000, SAMPLES).astype(np.int16) for _ in range(BATCH)
  ]
  audio_s = BATCH * SAMPLES / config.features.sample_rate
  print(
    f'LAS {config.model.extractor} + {config.model.encoder_layers}x'
    f'Bi{config.model.encoder_rnn_type.upper()} {config.model.encoder_hidden}'
    f', pyramid={tuple(config.model.pyramid_layers)}, speller '
    f'{config.model.decoder_layers}x{config.model.decoder_hidden}, vocab '
    f'{VOCAB}; batch {BATCH} x {SAMPLES / 16000:.2f} s ({audio_s:.1f} s '
    f'audio), {TOKENS} tokens; median of {RUNS} after {WARMUP} warm-ups; '
    f'load average {os.getloadavg()[0]:.1f}'
  )

  # The encoder alone, on the same features, for its share of the time.
  graphdef, state = nnx.split(model)
  audio_BxN = jnp.asarray(np.stack(audio))
  lengths_B = jnp.full((BATCH,), SAMPLES, jnp.int32)

  @jax.jit
  def encode(state, audio_BxN, lengths_B):
    feats, flen = features.featurize(
      None, audio_BxN, lengths_B, config.features, False
    )
    return nnx.merge(graphdef, state).encode(feats, flen, train=False)

  jax.block_until_ready(encode(state, audio_BxN, lengths_B))
  enc_times = timed(
    lambda: jax.block_until_ready(encode(state, audio_BxN, lengths_B)),
    RUNS,
    WARMUP,
  )
  enc_s = statistics.median(enc_times)
  print(f'encoder (features + listener): median {enc_s:.3f} s')

  searches = {
    'greedy': dict(beam_size=1, ctc_mode='off'),
    'beam 5': dict(beam_size=5, ctc_mode='off'),
    'beam 5 joint CTC 0.3': dict(beam_size=5, ctc_mode='joint'),
    'beam 5 joint + LM': dict(
      beam_size=5,
      ctc_mode='joint',
      language_model=language_model,
      lm_weight=0.3,
    ),
  }
  medians = {}
  for name, options in searches.items():
    rec = Recognizer(
      model,
      config,
      vocab,
      batch_size=BATCH,
      # ceil(rate * 4 s) + 1 = 30 tokens, EOS included.
      max_tokens_per_second=(TOKENS - 1) / 4,
      # Random parameters on noise: every hypothesis is searched, none
      # refused by the no-speech rule.
      no_speech_units_per_second=0,
      **options,
    )

    def decode(rec=rec):
      return list(rec.decode_stream(enumerate(audio)))

    results = decode()  # Compiles.
    lengths = {len(h.text) for _, hyps in results for h in hyps}
    if lengths != {TOKENS}:
      sys.exit(f'{name}: hypotheses of {lengths} tokens, not {TOKENS}')
    times = timed(decode, RUNS, WARMUP)
    med = medians[name] = statistics.median(times)
    ratio = ''
    if 'beam 5' in medians and name != 'beam 5':
      ratio = f'; {med / medians["beam 5"]:.2f}x attention-only beam 5'
    print(
      f'{name:20s}: decode median {med:.3f} s (min {min(times):.3f}, max '
      f'{max(times):.3f}); RTF {med / audio_s:.4f}; compile '
      f'{rec.compile_seconds:.1f} s; encoder share {enc_s / med:.0%}; '
      f'{len(results[0][1])} hypotheses x {TOKENS} tokens{ratio}',
      flush=True,
    )
  joint, fused = medians['beam 5 joint CTC 0.3'], medians['beam 5 joint + LM']
  print(f'LM fusion adds {fused / joint - 1:.0%} to joint beam 5.')


if __name__ == '__main__':
  main()
