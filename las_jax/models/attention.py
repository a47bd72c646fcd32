"""Decoder attention over encoder frames: multi-head, location, additive.

All three share one interface so the speller does not care which it holds:
- `precompute(enc_BxSxE) -> memory`: the encoder-side projections, done
  once per utterance (not once per decoder step);
- `__call__(query_NxD, memory, enc_mask_BxS, prev_attn_NxS)` ->
  `(context_NxD, attn_NxS)`: padded encoder frames get a -1e9 score, hence
  exactly zero weight. `attn_NxS` is what an alignment plot shows; for
  multi-head attention it is the MEAN over heads.

Queries come in N = B * K rows, K consecutive rows per utterance: K = 1
in training, the beam in beam search. The memory stays one per utterance
(never tiled to the beams), so a decoder step reads it once, not K times.

Following KoSpeech, location-aware and additive attention weight the raw
encoder frames when their width equals the decoder's (a learned projection
is added only when the widths differ); multi-head attention always
projects queries, keys and values (with biases) and has no output
projection, as in KoSpeech's MultiHeadAttention.

Mixed precision (the layers' `dtype` set, models/execution.py):
projections, scores and the context are computed in `dtype`; the softmax
and the attention weights are float32 (as flax's attention does).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from las_jax.ops.loop_matmul import dense

NEG_INF = -1e9
ATTENTIONS = ('multi-head', 'location', 'additive')


def masked_softmax(score_BxS: jax.Array, mask_BxS: jax.Array) -> jax.Array:
  """float32 softmax over the frames where `mask_BxS` is True."""
  score_BxS = score_BxS.astype(jnp.float32)
  return jax.nn.softmax(jnp.where(mask_BxS, score_BxS, NEG_INF), axis=-1)


def _per_utterance(x_NxD: jax.Array, batch: int) -> jax.Array:
  """[N, ...] rows -> [B, K, ...] with K = N // B rows per utterance."""
  return x_NxD.reshape(batch, x_NxD.shape[0] // batch, *x_NxD.shape[1:])


class _ValueProjection(nnx.Module):
  """Identity when enc width == decoder width, else a Linear (no bias)."""

  def __init__(self, enc_dim: int, dim: int, rngs: nnx.Rngs):
    self.proj = (
      nnx.Linear(enc_dim, dim, use_bias=False, rngs=rngs)
      if enc_dim != dim
      else None
    )

  def __call__(self, enc_BxSxE):
    return enc_BxSxE if self.proj is None else self.proj(enc_BxSxE)


class MultiHeadAttention(nnx.Module):
  """Scaled dot-product attention with `num_heads` heads (KoSpeech's)."""

  # Whether a step reads the previous step's weights (`prev_attn_NxS`).
  reads_previous_weights = False

  def __init__(self, enc_dim: int, dim: int, num_heads: int, *, rngs):
    if dim % num_heads:
      raise ValueError(
        f'config.model.num_heads: decoder_hidden {dim} is not divisible '
        f'by {num_heads} heads'
      )
    self.num_heads = num_heads
    self.query = nnx.Linear(dim, dim, rngs=rngs)
    self.key = nnx.Linear(enc_dim, dim, rngs=rngs)
    self.value = nnx.Linear(enc_dim, dim, rngs=rngs)

  def precompute(self, enc_BxSxE):
    # Heads before frames: the layout both per-step products read, so no
    # step (nor its backward pass) transposes the memory again.
    b, s, _ = enc_BxSxE.shape

    def split(x_BxSxD):
      return jnp.transpose(
        x_BxSxD.reshape(b, s, self.num_heads, -1), (0, 2, 1, 3)
      )

    return split(self.key(enc_BxSxE)), split(self.value(enc_BxSxE))

  def __call__(self, query_NxD, memory, enc_mask_BxS, prev_attn_NxS):
    del prev_attn_NxS  # Content-based only.
    k_BxHxSxd, v_BxHxSxd = memory
    n, d = query_NxD.shape
    q_BxKxHxd = _per_utterance(
      dense(self.query, query_NxD).reshape(n, self.num_heads, -1),
      k_BxHxSxd.shape[0],
    )
    score = jnp.einsum('bkhd,bhsd->bkhs', q_BxKxHxd, k_BxHxSxd)
    score = score.astype(jnp.float32) / jnp.sqrt(
      jnp.float32(q_BxKxHxd.shape[-1])
    )
    attn_BxKxHxS = masked_softmax(score, enc_mask_BxS[:, None, None, :])
    context = jnp.einsum(
      'bkhs,bhsd->bkhd', attn_BxKxHxS.astype(v_BxHxSxd.dtype), v_BxHxSxd
    )
    attn_NxS = jnp.mean(attn_BxKxHxS, axis=2).reshape(n, -1)
    return context.reshape(n, d), attn_NxS


class AdditiveAttention(nnx.Module):
  """Bahdanau attention: score_s = w . tanh(W_k h_s + W_q q + b) + b_w."""

  reads_previous_weights = False

  def __init__(self, enc_dim: int, dim: int, *, rngs: nnx.Rngs):
    self.query = nnx.Linear(dim, dim, use_bias=False, rngs=rngs)
    self.key = nnx.Linear(enc_dim, dim, use_bias=False, rngs=rngs)
    self.bias = nnx.Param(
      jax.random.uniform(rngs.params(), (dim,), jnp.float32, -0.1, 0.1)
    )
    self.score = nnx.Linear(dim, 1, rngs=rngs)
    self.value = _ValueProjection(enc_dim, dim, rngs)

  def precompute(self, enc_BxSxE):
    keys_BxSxD = self.key(enc_BxSxE)
    bias = self.bias[...].astype(keys_BxSxD.dtype)
    return keys_BxSxD + bias, self.value(enc_BxSxE)

  def _attend(self, query_NxD, memory, enc_mask_BxS, extra_NxSxD=None):
    keys_BxSxD, values_BxSxD = memory
    b, s, _ = keys_BxSxD.shape
    pre_BxKxSxD = (
      _per_utterance(dense(self.query, query_NxD), b)[:, :, None, :]
      + keys_BxSxD[:, None]
    )
    if extra_NxSxD is not None:
      pre_BxKxSxD = pre_BxKxSxD + _per_utterance(extra_NxSxD, b)
    score_BxKxS = self.score(jnp.tanh(pre_BxKxSxD))[..., 0]
    attn_BxKxS = masked_softmax(score_BxKxS, enc_mask_BxS[:, None, :])
    context = jnp.einsum(
      'bks,bsd->bkd', attn_BxKxS.astype(values_BxSxD.dtype), values_BxSxD
    )
    n = query_NxD.shape[0]
    return context.reshape(n, -1), attn_BxKxS.reshape(n, s)

  def __call__(self, query_NxD, memory, enc_mask_BxS, prev_attn_NxS):
    del prev_attn_NxS  # Content-based only.
    return self._attend(query_NxD, memory, enc_mask_BxS)


class LocationAwareAttention(AdditiveAttention):
  """Chorowski et al. 2015 / KoSpeech: additive + conv(previous weights).

  score_s = w . tanh(W_q q + W_v h_s + conv(prev_attn)_s + b) + b_w,
  normalized with a softmax (KoSpeech's `smoothing` sigmoid branch is not
  offered: it references an undefined variable there).
  """

  reads_previous_weights = True

  def __init__(
    self, enc_dim: int, dim: int, *, kernel: int = 3, rngs: nnx.Rngs
  ):
    super().__init__(enc_dim, dim, rngs=rngs)
    self.kernel = kernel
    self.loc_conv = nnx.Conv(
      1, dim, (kernel,), padding=[(kernel // 2, kernel // 2)], rngs=rngs
    )

  def __call__(self, query_NxD, memory, enc_mask_BxS, prev_attn_NxS):
    loc_NxSxD = self.loc_conv(prev_attn_NxS[..., None])
    return self._attend(query_NxD, memory, enc_mask_BxS, loc_NxSxD)


def build_attention(
  kind: str, enc_dim: int, dim: int, num_heads: int, rngs: nnx.Rngs
):
  """Builds the attention named by `config.model.attention`."""
  if kind == 'multi-head':
    return MultiHeadAttention(enc_dim, dim, num_heads, rngs=rngs)
  if kind == 'location':
    return LocationAwareAttention(enc_dim, dim, rngs=rngs)
  if kind == 'additive':
    return AdditiveAttention(enc_dim, dim, rngs=rngs)
  raise ValueError(
    f'config.model.attention: unknown attention {kind!r}; expected one of '
    f'{ATTENTIONS}'
  )
