"""Model behaviour: exact lengths, step == scan, sampling, grads, sizes."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from configs import default, kspon
from las_jax.inference import search
from las_jax.models import CTC_BLANK_ID, build_model, count_params
from las_jax.models.extractors import DeepSpeech2Extractor, VGGExtractor
from las_jax.models.masking import sequence_mask

VOCAB = 13


def tiny_model_config(**overrides) -> ml_collections.ConfigDict:
  config = default.get_config().model
  config.update(
    input_dim=16,
    encoder_hidden=8,
    encoder_layers=2,
    pyramid_layers=(1,),
    decoder_hidden=16,
    decoder_layers=2,
    num_heads=2,
    dropout=0.0,
  )
  config.update(overrides)
  return config


def batch(b=3, t=40, length=7, seed=0):
  keys = jax.random.split(jax.random.key(seed), 3)
  feats = jax.random.normal(keys[0], (b, t, 16))
  lengths = jnp.array([t, t - 17, t - 9][:b], jnp.int32)
  tokens = jax.random.randint(keys[2], (b, length), 3, VOCAB)
  return feats, lengths, tokens.at[:, 0].set(1)


# The DeepSpeech2 extractor at 40 ms frames (configs/mini_ds2.py).
_DS2_STRIDED = functools.partial(DeepSpeech2Extractor, time_strides=(2, 2))


@pytest.mark.parametrize(
  'cls,lengths,expected',
  [
    # VGG: two floor-mode 2x2 max-pools.
    (VGGExtractor, [40, 37, 9, 3], [10, 9, 2, 0]),
    # DS2: time stride 2 with padding 5, kernel 11: (L - 1) // 2 + 1.
    (DeepSpeech2Extractor, [40, 37, 9, 1], [20, 19, 5, 1]),
    # Both convs strided in time: that twice.
    (_DS2_STRIDED, [40, 37, 9, 1], [10, 10, 3, 1]),
  ],
)
def test_extractor_lengths_and_zeroed_padding(cls, lengths, expected):
  ex = cls(16, rngs=nnx.Rngs(0))
  feats = jax.random.normal(jax.random.key(0), (4, 40, 16)) + 3.0
  out, out_lengths = ex(feats, jnp.array(lengths), train=True)
  np.testing.assert_array_equal(out_lengths, expected)
  valid = np.asarray(sequence_mask(out_lengths, out.shape[1]))
  assert np.all(np.asarray(out)[~valid] == 0.0)
  assert np.all(np.abs(np.asarray(out)[valid]).sum(-1) > 0)
  assert out.shape[-1] == ex.output_dim


def test_vgg_output_width_matches_kospeech():
  assert VGGExtractor(80, rngs=nnx.Rngs(0)).output_dim == 2560
  assert DeepSpeech2Extractor(80, rngs=nnx.Rngs(0)).output_dim == 640


def _reference_extractor(ex, feats_BxTxF, lengths_B):
  """Eval-mode extractor in the plain [B, T, F, C] layout, kernels read as
  stored ([time, freq, in, out]), windows by lax.reduce_window."""
  x = jnp.where(
    sequence_mask(lengths_B, feats_BxTxF.shape[1])[..., None], feats_BxTxF, 0.0
  )[..., None]
  pools = (1, 3) if isinstance(ex, VGGExtractor) else ()
  for i, block in enumerate(ex.blocks):
    x = jax.lax.conv_general_dilated(
      x,
      block.conv.kernel[...],
      block.conv.strides,
      block.conv.padding,
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
    )
    lengths_B = (
      lengths_B + 2 * block.pad_t - block.kernel_t
    ) // block.stride_t + 1
    bn = block.bn
    x = (x - bn.mean[...]) / jnp.sqrt(bn.var[...] + bn.epsilon)
    x = jnp.clip(x * bn.scale[...] + bn.bias[...], 0.0, 20.0)
    if i in pools:
      x = jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), 'VALID'
      )
      lengths_B = lengths_B // 2
    mask = sequence_mask(lengths_B, x.shape[1])[:, :, None, None]
    x = jnp.where(mask, x, 0.0)
  b, t, f, c = x.shape
  return jnp.transpose(x, (0, 1, 3, 2)).reshape(b, t, c * f), lengths_B


@pytest.mark.parametrize(
  'cls', [VGGExtractor, DeepSpeech2Extractor, _DS2_STRIDED]
)
def test_extractor_equals_plain_time_major_reference(cls):
  # The extractors run in a [B, F, T, C] layout; kernels keep KoSpeech's
  # (time, freq) meaning, so trained checkpoints decode the same.
  ex = cls(16, rngs=nnx.Rngs(0))
  keys = iter(jax.random.split(jax.random.key(5), 20))
  for block in ex.blocks:  # Distinct per-channel statistics and affine.
    for var, lo in [
      ('mean', -1.0),
      ('var', 0.5),
      ('scale', 0.5),
      ('bias', -1.0),
    ]:
      v = getattr(block.bn, var)
      v[...] = lo + jax.random.uniform(next(keys), v[...].shape) * 2.0
  feats = jax.random.normal(next(keys), (3, 37, 16)) + 1.0
  lengths = jnp.array([37, 30, 13], jnp.int32)
  got, got_lengths = ex(feats, lengths, train=False)
  want, want_lengths = _reference_extractor(ex, feats, lengths)
  np.testing.assert_array_equal(got_lengths, want_lengths)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('attention', ['location', 'multi-head'])
def test_beam_step_runs_each_row_as_its_utterance(attention):
  # The step on B * K rows attends K rows to each utterance's one memory:
  # row b * K + j must step exactly as utterance b alone does.
  model = build_model(
    tiny_model_config(attention=attention), VOCAB, nnx.Rngs(0)
  )
  feats, lengths, _ = batch()
  enc = model.encode(feats, lengths, train=False)
  k = 3
  carry_B, step = model.scorer(enc.enc_BxSxH, enc.enc_lengths_B)
  carry_N = search.tile_beams(carry_B, k)
  carries = [carry_B] * k  # Beam j of every utterance, as a batch of B.
  for seed in range(3):
    tokens_N = jax.random.randint(jax.random.key(seed), (3 * k,), 3, VOCAB)
    lp_N, carry_N = step(tokens_N, carry_N)
    for j in range(k):
      lp_B, carries[j] = step(tokens_N[j::k], carries[j])
      np.testing.assert_allclose(lp_N[j::k], lp_B, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
  'attention,input_feeding',
  [
    ('location', False),  # Scanned teacher forcing.
    ('multi-head', True),  # Scanned teacher forcing.
    ('multi-head', False),  # Parallel over time.
    ('additive', False),  # Parallel over time.
  ],
)
def test_teacher_forcing_reproduces_stepped_decoder(attention, input_feeding):
  # The teacher-forced paths (scan with the output layer after it, or
  # parallel over time) against `step` called L times: values and the
  # speller's gradients.
  model = build_model(
    tiny_model_config(attention=attention, input_feeding=input_feeding),
    VOCAB,
    nnx.Rngs(0),
  )
  feats, lengths, tokens = batch()
  weights = jax.random.normal(jax.random.key(5), tokens.shape + (VOCAB,))

  def forced(speller, enc, mask):
    logits, _ = speller(enc, mask, tokens)
    return logits

  def stepped(speller, enc, mask):
    carry = speller.init_carry(enc, mask)
    logits = []
    for t in range(tokens.shape[1]):
      step_logits, carry, _ = speller.step(tokens[:, t], carry, enc, mask)
      logits.append(step_logits)
    return jnp.stack(logits, axis=1)

  @nnx.jit
  def run(model):
    enc = model.encode(feats, lengths, train=False)
    mask = sequence_mask(enc.enc_lengths_B, enc.enc_BxSxH.shape[1])
    out = []
    for decoder in (forced, stepped):

      def loss(speller, enc_BxSxH, decoder=decoder):
        logits = decoder(speller, enc_BxSxH, mask)
        return jnp.sum(jnp.tanh(logits) * weights), logits

      grads, logits = nnx.grad(loss, argnums=(0, 1), has_aux=True)(
        model.speller, enc.enc_BxSxH
      )
      out.append((logits, grads))
    # With a sample key and p = 1 the same teacher-forced path runs.
    sampled, _ = model.speller(
      enc.enc_BxSxH,
      mask,
      tokens,
      teacher_forcing_p=1.0,
      sample_key=jax.random.key(1),
    )
    return out, sampled

  ((forced_logits, forced_grads), (stepped_logits, stepped_grads)), sampled = (
    run(model)
  )
  np.testing.assert_allclose(forced_logits, stepped_logits, atol=1e-5)
  np.testing.assert_array_equal(sampled, forced_logits)
  flat_forced = jax.tree.leaves(forced_grads)
  flat_stepped = jax.tree.leaves(stepped_grads)
  assert len(flat_forced) == len(flat_stepped) > 10
  # One scale for all: the attention score's bias has an exactly zero
  # gradient (softmax is shift-invariant), left as rounding noise.
  scale = max(float(jnp.max(jnp.abs(g))) for g in flat_stepped)
  for a, b in zip(flat_forced, flat_stepped, strict=True):
    np.testing.assert_allclose(a / scale, b / scale, atol=1e-5)


def test_scheduled_sampling_p0_feeds_argmax():
  model = build_model(tiny_model_config(), VOCAB, nnx.Rngs(0))
  feats, lengths, tokens = batch()

  @nnx.jit
  def run(model, p):
    out = model(
      feats,
      lengths,
      tokens,
      teacher_forcing_p=p,
      sample_key=jax.random.key(3),
    )
    enc = model.encode(feats, lengths)
    carry, step_fn = model.scorer(enc.enc_BxSxH, enc.enc_lengths_B)
    token, logps = tokens[:, 0], []
    for _ in range(tokens.shape[1]):
      logp, carry = step_fn(token, carry)
      logps.append(logp)
      token = jnp.argmax(logp, axis=-1).astype(tokens.dtype)
    return out['logits_BxLxV'], jnp.stack(logps, axis=1)

  logits, manual_logp = run(model, 0.0)
  np.testing.assert_allclose(
    jax.nn.log_softmax(logits), manual_logp, atol=1e-5, rtol=1e-5
  )
  # Same compiled function, p = 1: now the ground truth is fed, which
  # changes later steps (the argmax differs from random targets).
  forced, _ = run(model, 1.0)
  np.testing.assert_allclose(forced[:, 0], logits[:, 0], atol=1e-6)
  assert not np.allclose(forced[:, 1:], logits[:, 1:], atol=1e-3)


def _ce_ctc_loss(model, feats, lengths, tokens):
  tokens_in = jnp.concatenate([jnp.ones_like(tokens[:, :1]), tokens[:, :-1]], 1)
  out = model(feats, lengths, tokens_in, train=True)
  loss = optax.softmax_cross_entropy_with_integer_labels(
    out['logits_BxLxV'], tokens
  ).mean()
  if out['ctc_logits_BxSxV'] is not None:
    s = out['ctc_logits_BxSxV'].shape[1]
    loss += optax.ctc_loss(
      out['ctc_logits_BxSxV'],
      1.0 - sequence_mask(out['enc_lengths_B'], s),
      tokens[:, :2],
      jnp.zeros_like(tokens[:, :2], jnp.float32),
      blank_id=CTC_BLANK_ID,
    ).mean()
  return loss


# Parameters whose gradient is exactly zero in theory (left as rounding
# noise), by path prefix:
ZERO_GRADIENT_IN_THEORY = (
  # Softmax is shift-invariant, and these add the same amount to every
  # frame's score: the score layer's bias (location-aware, additive) and
  # multi-head attention's key bias (q . b_k, constant over frames).
  "['speller']['attention']['score']['bias']",
  "['speller']['attention']['key']['bias']",
  # DeepSpeech2: the next batch norm (before the first BiRNN) divides out
  # the extractor's last batch-norm scale (hardtanh commutes with a
  # positive scale below its clip at 20, which these inputs never reach).
  "['extractor']['blocks'][1]['bn']['scale']",
)
# Every other parameter's largest gradient entry is at least this fraction
# of the model's largest: rounding noise of float32 sums is ~1e-7 of it
# (the parameters above measure 3e-10 to 3e-6), real gradients 2e-4 and
# up (additive attention's query kernel is the smallest).
MIN_RELATIVE_GRADIENT = 1e-5


@pytest.mark.parametrize(
  'overrides',
  [
    dict(attention='multi-head', ctc_weight=0.3, encoder_rnn_type='gru'),
    dict(attention='location', extractor='ds2', encoder_rnn_type='rnn'),
    dict(attention='additive', input_feeding=True),
    dict(name='deepspeech2', extractor='ds2', encoder_rnn_type='gru'),
  ],
)
def test_gradients_finite_and_nonzero_for_every_param(overrides):
  model = build_model(tiny_model_config(**overrides), VOCAB, nnx.Rngs(0))
  feats, lengths, tokens = batch()

  def loss_fn(model):
    if overrides.get('name') == 'deepspeech2':
      out = model(feats, lengths, train=True)
      s = out['ctc_logits_BxSxV'].shape[1]
      return optax.ctc_loss(
        out['ctc_logits_BxSxV'],
        1.0 - sequence_mask(out['enc_lengths_B'], s),
        tokens[:, 1:4],
        jnp.zeros_like(tokens[:, 1:4], jnp.float32),
        blank_id=CTC_BLANK_ID,
      ).mean()
    return _ce_ctc_loss(model, feats, lengths, tokens)

  grads = nnx.jit(nnx.grad(loss_fn))(model)
  flat = [
    (jax.tree_util.keystr(path), np.asarray(g))
    for path, g in jax.tree_util.tree_leaves_with_path(
      nnx.state(grads, nnx.Param)
    )
  ]
  assert flat
  for name, g in flat:
    assert np.all(np.isfinite(g)), name
  largest = max(float(np.max(np.abs(g))) for _, g in flat)
  checked = [
    (name, float(np.max(np.abs(g))) / largest)
    for name, g in flat
    if not name.startswith(ZERO_GRADIENT_IN_THEORY)
  ]
  assert len(checked) >= len(flat) - 1
  too_small = [(n, r) for n, r in checked if r < MIN_RELATIVE_GRADIENT]
  assert not too_small, too_small


def test_kspon_param_count_closed_form():
  config = kspon.get_config().model
  v, h, d = 2000, config.encoder_hidden, config.decoder_hidden
  assert config.pyramid_layers == (1,)
  vgg_convs = 9 * (1 * 64 + 64 * 64 + 64 * 128 + 128 * 128)
  vgg_bn = 2 * (64 + 64 + 128 + 128)  # scale + bias per channel

  def bilstm(n_in):  # w_ih, b_ih, w_hh for two directions, 4 gates
    return 2 * (n_in * 4 * h + 4 * h + h * 4 * h)

  listener = (
    bilstm(2560)  # VGG's 128 channels x 20 bins
    + bilstm(2 * 2 * h)  # pyramidal pairs of the 2h-wide BiLSTM frames
    + bilstm(2 * h)
  )
  embed = v * d
  lstm = 2 * (d * 4 * d + 4 * d + d * 4 * d)  # two decoder layers
  attention = 3 * (d * d + d)  # query, key, value (enc width 2h == d)
  add_norms = 2 * (2 * d)  # two LayerNorms
  proj = d * d + d
  out = d * v  # no bias
  ctc_head = 2 * h * v + v  # joint CTC (model.ctc_weight 0.3)
  expected = (
    vgg_convs
    + vgg_bn
    + listener
    + embed
    + lstm
    + attention
    + add_norms
    + proj
    + out
    + ctc_head
  )
  model = build_model(config, v, nnx.Rngs(0))
  assert count_params(model) == expected == 56_765_712


@pytest.mark.parametrize(
  'overrides,field',
  [
    (dict(name='rnnt'), 'config.model.name'),
    (dict(extractor='resnet'), 'config.model.extractor'),
    (dict(activation='tanh'), 'config.model.activation'),
    (dict(encoder_rnn_type='sru'), 'rnn_type'),
    (dict(attention='dot'), 'config.model.attention'),
    (dict(num_heads=3), 'config.model.num_heads'),
    (dict(pyramid_layers=(5,)), 'config.model.pyramid_layers'),
    (
      dict(extractor='ds2', ds2_time_strides=(2, 0)),
      'config.model.ds2_time_strides',
    ),
  ],
)
def test_bad_config_names_the_field(overrides, field):
  with pytest.raises(ValueError, match=field):
    build_model(tiny_model_config(**overrides), VOCAB, nnx.Rngs(0))
