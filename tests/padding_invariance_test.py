"""An utterance's outputs do not depend on the padding of its batch."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from las_jax.models import build_model
from tests.models_test import VOCAB, tiny_model_config

T_ALONE, L_ALONE = 23, 5  # The utterance under test, unpadded.
T_BATCH, L_BATCH = 41, 8  # Its batch: longer audio and longer targets.


def _build(config, seed):
  """The model, its zero-initialized parameters (biases, norm shifts)
  given random values as training gives them: at zero, a padded frame's
  zero input maps to exactly zero and a missing mask goes unseen."""
  model = build_model(config, VOCAB, nnx.Rngs(seed))
  params = nnx.state(model, nnx.Param)
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  nnx.update(
    model,
    jax.tree.unflatten(
      treedef,
      [
        x if jnp.any(x) else 0.5 * jax.random.normal(k, x.shape, x.dtype)
        for x, k in zip(leaves, keys, strict=True)
      ],
    ),
  )
  return model


def _inputs():
  keys = jax.random.split(jax.random.key(7), 2)
  feats = jax.random.normal(keys[0], (3, T_BATCH, 16))
  lengths = jnp.array([T_BATCH, T_ALONE, 30], jnp.int32)
  # Garbage past the length must not matter either.
  tokens = jax.random.randint(keys[1], (3, L_BATCH), 3, VOCAB)
  return feats, lengths, tokens


@pytest.mark.parametrize(
  'extractor,rnn_type,attention,input_feeding,ctc_weight',
  [
    # Every extractor x RNN x attention, with the joint CTC head...
    *(
      (*combination, False, 0.5)
      for combination in itertools.product(
        ['vgg', 'ds2'],
        ['lstm', 'gru', 'rnn'],
        ['multi-head', 'location', 'additive'],
      )
    ),
    # ...and input feeding (the previous context fed to the decoder LSTM,
    # as the mini recipe does) with each attention, without the CTC head.
    ('vgg', 'lstm', 'multi-head', True, 0.0),
    ('vgg', 'lstm', 'location', True, 0.0),
    ('ds2', 'gru', 'additive', True, 0.0),
  ],
)
def test_las_eval_logits_padding_invariant(
  extractor, rnn_type, attention, input_feeding, ctc_weight
):
  config = tiny_model_config(
    extractor=extractor,
    encoder_rnn_type=rnn_type,
    attention=attention,
    input_feeding=input_feeding,
    ctc_weight=ctc_weight,
  )
  model = _build(config, 1)
  feats, lengths, tokens = _inputs()

  @nnx.jit
  def run(model):
    batched = model(feats, lengths, tokens, train=False)
    alone = model(
      feats[1:2, :T_ALONE], lengths[1:2], tokens[1:2, :L_ALONE], train=False
    )
    return batched, alone

  batched, alone = run(model)
  np.testing.assert_allclose(
    alone['logits_BxLxV'][0],
    batched['logits_BxLxV'][1, :L_ALONE],
    atol=1e-5,
    rtol=1e-5,
  )
  s = int(alone['enc_lengths_B'][0])
  assert s == int(batched['enc_lengths_B'][1]) > 0
  np.testing.assert_allclose(
    alone['attention_BxLxS'][0, :, :s],
    batched['attention_BxLxS'][1, :L_ALONE, :s],
    atol=1e-6,
  )
  # Padded encoder frames get exactly zero attention.
  assert np.all(batched['attention_BxLxS'][1, :, s:] == 0.0)
  assert (alone['ctc_logits_BxSxV'] is not None) == (ctc_weight > 0)
  if ctc_weight > 0:
    np.testing.assert_allclose(
      alone['ctc_logits_BxSxV'][0, :s],
      batched['ctc_logits_BxSxV'][1, :s],
      atol=1e-5,
    )
    # Padded frames' logits are exactly zero, like the encoder's frames.
    assert np.all(batched['ctc_logits_BxSxV'][1, s:] == 0.0)


@pytest.mark.parametrize(
  'name,extractor', [('las', 'vgg'), ('deepspeech2', 'ds2')]
)
def test_train_mode_invariant_to_extra_padding(name, extractor):
  """Masked batch statistics: more padding, same batch -> same outputs."""
  config = tiny_model_config(
    name=name, extractor=extractor, encoder_rnn_type='gru'
  )
  model = _build(config, 2)
  feats, lengths, tokens = _inputs()
  lengths = lengths.at[0].set(35)
  key = 'ctc_logits_BxSxV' if name == 'deepspeech2' else 'logits_BxLxV'

  @nnx.jit
  def run(model):
    if name == 'deepspeech2':
      a = model(feats[:, :35], lengths, train=True)
      b = model(feats, lengths, train=True)
    else:
      a = model(feats[:, :35], lengths, tokens[:, :6], train=True)
      b = model(feats, lengths, tokens, train=True)
    return a, b

  short, long = run(model)
  for i, s in enumerate(np.asarray(short['enc_lengths_B'])):
    n = s if name == 'deepspeech2' else 6
    np.testing.assert_allclose(
      short[key][i, :n], long[key][i, :n], atol=1e-5, rtol=1e-5
    )
    if name == 'deepspeech2':  # Its CTC logits are zero past the length.
      assert np.all(long[key][i, n:] == 0.0)
