"""A tiny LAS and a tiny DeepSpeech2 each memorize four utterances, in
float32 and with bfloat16 mixed precision.

Features are learnable but synthetic: every token owns a random 16-bin
spectral pattern, held for 6-9 frames with noise, so a transcript can be
read off the audio only through the model's alignment.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from las_jax.models import CTC_BLANK_ID, build_model, execution
from las_jax.models.masking import sequence_mask
from tests.models_test import tiny_model_config

EOS, SOS, VOCAB = 2, 1, 10
TARGETS = [[4, 5, 6], [7, 4, 8, 9], [9, 9, 5], [6, 8, 7, 4, 5]]


def _data():
  rng = np.random.default_rng(0)
  patterns = rng.normal(size=(VOCAB, 16)).astype(np.float32)
  feats, lengths = [], []
  for tokens in TARGETS:
    frames = [
      np.repeat(patterns[t][None], rng.integers(6, 10), 0) for t in tokens
    ]
    x = np.concatenate([np.zeros((3, 16))] + frames + [np.zeros((3, 16))])
    feats.append(x + 0.1 * rng.normal(size=x.shape))
    lengths.append(len(x))
  t_max = max(lengths) + 5
  feats = np.stack([np.pad(f, ((0, t_max - len(f)), (0, 0))) for f in feats])
  l_max = max(map(len, TARGETS)) + 1
  targets = np.zeros((len(TARGETS), l_max), np.int32)
  for i, tokens in enumerate(TARGETS):
    targets[i, : len(tokens) + 1] = tokens + [EOS]
  return (
    jnp.asarray(feats, jnp.float32),
    jnp.asarray(lengths, jnp.int32),
    jnp.asarray(targets),
  )


def _train(model, loss_fn, steps):
  optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

  @nnx.jit
  def train_step(model, optimizer):
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  for _ in range(steps):
    loss = train_step(model, optimizer)
  return float(loss)


@pytest.mark.parametrize('compute_dtype', ['float32', 'bfloat16'])
def test_las_overfits_four_utterances(compute_dtype):
  config = tiny_model_config(
    encoder_hidden=32, decoder_hidden=64, pyramid_layers=()
  )
  model = build_model(config, VOCAB, nnx.Rngs(0))
  execution.set_compute_dtype(model, compute_dtype)
  feats, lengths, targets = _data()
  tokens_in = jnp.concatenate(
    [jnp.full_like(targets[:, :1], SOS), targets[:, :-1]], axis=1
  )
  weights = (targets != 0).astype(jnp.float32)

  def loss_fn(model):
    logits = model(feats, lengths, tokens_in, train=True)['logits_BxLxV']
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    return jnp.sum(ce * weights) / jnp.sum(weights)

  loss = _train(model, loss_fn, 250)
  assert loss < 0.05

  @nnx.jit
  def greedy(model):
    enc = model.encode(feats, lengths)
    carry, step_fn = model.scorer(enc.enc_BxSxH, enc.enc_lengths_B)

    def body(state, _):
      token, carry = state
      logp, carry = step_fn(token, carry)
      token = jnp.argmax(logp, -1).astype(jnp.int32)
      return (token, carry), token

    start = jnp.full((feats.shape[0],), SOS, jnp.int32)
    _, out = jax.lax.scan(body, (start, carry), None, length=8)
    return out.T

  for hyp, ref in zip(np.asarray(greedy(model)).tolist(), TARGETS, strict=True):
    assert hyp[: hyp.index(EOS)] == ref


@pytest.mark.parametrize('compute_dtype', ['float32', 'bfloat16'])
def test_deepspeech2_overfits_four_utterances(compute_dtype):
  config = tiny_model_config(
    name='deepspeech2',
    extractor='ds2',
    encoder_rnn_type='gru',
    encoder_hidden=32,
    encoder_layers=2,
  )
  model = build_model(config, VOCAB, nnx.Rngs(0))
  execution.set_compute_dtype(model, compute_dtype)
  feats, lengths, targets = _data()
  labels = jnp.where(targets == EOS, 0, targets)  # CTC: no EOS.

  def loss_fn(model):
    out = model(feats, lengths, train=True)
    s = out['ctc_logits_BxSxV'].shape[1]
    return optax.ctc_loss(
      out['ctc_logits_BxSxV'],
      1.0 - sequence_mask(out['enc_lengths_B'], s),
      labels,
      (labels == 0).astype(jnp.float32),
      blank_id=CTC_BLANK_ID,
    ).mean()

  _train(model, loss_fn, 300)
  out = nnx.jit(lambda m: m(feats, lengths, train=False))(model)
  best = np.asarray(jnp.argmax(out['ctc_logits_BxSxV'], -1))
  for row, n, ref in zip(
    best, np.asarray(out['enc_lengths_B']), TARGETS, strict=True
  ):
    collapsed = [t for i, t in enumerate(row[:n]) if i == 0 or t != row[i - 1]]
    assert [t for t in collapsed if t != CTC_BLANK_ID] == ref
