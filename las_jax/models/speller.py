"""The LAS speller: embedding -> stacked LSTM -> attention -> output.

One decoder step (KoSpeech's LAS decoder, `kospeech/models/las/decoder.py`):

  x     = dropout(embed(token))          (concat previous context if
                                          `input_feeding`, as ESPnet does)
  q     = LSTM_N(...LSTM_1(x))            (dropout between layers)
  c, a  = attention(q, encoder, previous attention weights)
  o     = LayerNorm(c + q)                (KoSpeech's AddNorm)
  o     = LayerNorm(W_p o + b_p + o)      (AddNorm(Linear))
  logit = W_out tanh(o)                   (no bias)

`step` is the single pure step shared by training (inside `lax.scan`),
greedy and beam search. A batch fed only the ground truth (teacher
forcing) needs no step's logits, so the output layer runs once on all
steps after the scan: one [L*B, D] @ [D, V] matmul (and one in the
backward pass) instead of L small ones. With content-based attention and
no input feeding nothing but the LSTM state passes from step to step, and
teacher forcing runs in parallel over time as KoSpeech's does: each LSTM
layer is one input matmul plus `lstm_recurrence` (whose backward pass
takes the weight gradient in one matmul after the loop), then attention,
norms and the output layer take all steps at once (speller forward +
backward 0.24 -> 0.08 s on the peers' benchmark, CPU).

The step's carry is a dict of arrays with a leading batch axis (so beam
search can gather it): `h`, `c` [B, layers, D] LSTM state (float32),
`context` [B, D] the previous context vector (the encoder's dtype), `attn`
[B, S] the previous attention weights (float32; location-aware
attention's input).

Mixed precision (`dtype` set, models/execution.py): matmuls run in
`dtype`; LSTM gate sums and states, attention weights and the logits are
float32.
"""

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from las_jax.models.attention import build_attention
from las_jax.models.execution import cast
from las_jax.models.rnn import cell_update, pytorch_uniform
from las_jax.ops.loop_matmul import dense, matmul
from las_jax.ops.lstm import lstm_recurrence

Carry = dict[str, jax.Array]
F32 = jnp.float32


class LSTMCell(nnx.Module):
  """A unidirectional LSTM cell (PyTorch gate order, one bias)."""

  def __init__(self, in_features: int, hidden: int, rngs: nnx.Rngs):
    self.w_ih = nnx.Param(
      pytorch_uniform(rngs.params(), (in_features, 4 * hidden), hidden)
    )
    self.b = nnx.Param(pytorch_uniform(rngs.params(), (4 * hidden,), hidden))
    self.w_hh = nnx.Param(
      pytorch_uniform(rngs.params(), (hidden, 4 * hidden), hidden)
    )
    # Compute dtype of the matmuls; None = float32 (execution.py).
    self.dtype = None

  def _matmul(self, x_BxI, w_IxG):
    """x @ w in the compute dtype, as float32 (for the gate sums)."""
    d = self.dtype
    return matmul(cast(x_BxI, d), cast(w_IxG, d)).astype(F32)

  def __call__(self, x_BxI, h_BxH, c_BxH):
    x_proj = self._matmul(x_BxI, self.w_ih[...]) + self.b[...]
    w_hh = self.w_hh[...]
    return cell_update(
      'lstm', x_proj, h_BxH, c_BxH, lambda h: self._matmul(h, w_hh), 0.0
    )

  def over_time(self, x_LxBxI: jax.Array) -> jax.Array:
    """The cell from zero state over all steps: [L, B, I] -> [L, B, H]."""
    d = self.dtype
    x_proj = jnp.einsum(
      'lbi,ig->lbg', cast(x_LxBxI, d), cast(self.w_ih[...], d)
    ).astype(F32)
    w_hh = cast(self.w_hh[...], d)
    return lstm_recurrence((x_proj + self.b[...])[:, None], w_hh[None])[:, 0]


class Speller(nnx.Module):
  """Attention LSTM decoder over listener outputs."""

  def __init__(
    self,
    vocab_size: int,
    enc_dim: int,
    *,
    hidden: int,
    num_layers: int,
    attention: str,
    num_heads: int,
    dropout: float,
    input_feeding: bool,
    rngs: nnx.Rngs,
  ):
    self.hidden = hidden
    self.num_layers = num_layers
    self.input_feeding = input_feeding
    self.embed = nnx.Embed(vocab_size, hidden, rngs=rngs)
    in0 = 2 * hidden if input_feeding else hidden
    self.cells = nnx.List(
      [
        LSTMCell(in0 if i == 0 else hidden, hidden, rngs)
        for i in range(num_layers)
      ]
    )
    self.attention = build_attention(
      attention, enc_dim, hidden, num_heads, rngs
    )
    self.attn_norm = nnx.LayerNorm(hidden, epsilon=1e-5, rngs=rngs)
    self.proj = nnx.Linear(hidden, hidden, rngs=rngs)
    self.proj_norm = nnx.LayerNorm(hidden, epsilon=1e-5, rngs=rngs)
    self.out = nnx.Linear(hidden, vocab_size, use_bias=False, rngs=rngs)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)
    # Compute dtype (dropout masks); None = float32 (execution.py).
    self.dtype = None

  def precompute(self, enc_BxSxH: jax.Array):
    """Encoder-side attention projections; pass as `step(..., memory=)`."""
    return self.attention.precompute(enc_BxSxH)

  def init_carry(self, enc_BxSxH: jax.Array, enc_mask_BxS: jax.Array) -> Carry:
    """Zero LSTM state, zero context and zero previous attention."""
    b, s = enc_mask_BxS.shape
    zeros = jnp.zeros((b, self.num_layers, self.hidden), F32)
    return {
      'h': zeros,
      'c': zeros,
      'context': jnp.zeros((b, self.hidden), enc_BxSxH.dtype),
      'attn': jnp.zeros((b, s), F32),
    }

  def _head(self, o_xD: jax.Array) -> jax.Array:
    """Output layer: float32 logits [..., V] from the normalized features."""
    return dense(self.out, jnp.tanh(o_xD)).astype(F32)

  def _output_features(self, context_xD, query_xD):
    """The two AddNorms after attention: o_xD, the output layer's input."""
    o = self.attn_norm(context_xD + query_xD)
    return self.proj_norm(dense(self.proj, o) + o)

  def _features(self, token_B, carry, memory, enc_mask_BxS, masks):
    """A step up to the output layer: (o_BxD, new carry, attn_BxS).

    `masks`: dropout masks (emb_BxI, between_layers (N-1)xBxD) or None.
    """
    x = self.embed(token_B)
    if self.input_feeding:
      x = jnp.concatenate([x, carry['context']], axis=-1)
    if masks is not None:
      x = x * masks[0]
    hs, cs = [], []
    for i, cell in enumerate(self.cells):
      h, c = cell(x, carry['h'][:, i], carry['c'][:, i])
      hs.append(h)
      cs.append(c)
      x = h if masks is None or i == self.num_layers - 1 else h * masks[1][i]
    context, attn = self.attention(x, memory, enc_mask_BxS, carry['attn'])
    o = self._output_features(context, x)
    new_carry = {
      'h': jnp.stack(hs, axis=1),
      'c': jnp.stack(cs, axis=1),
      'context': context,
      'attn': attn,
    }
    return o, new_carry, attn

  def step(
    self,
    token_N: jax.Array,
    carry: Carry,
    enc_BxSxH: jax.Array,
    enc_mask_BxS: jax.Array,
    *,
    memory=None,
  ) -> tuple[jax.Array, Carry, jax.Array]:
    """One decoder step without dropout.

    Args:
      token_N: int32 [N] previous tokens (SOS first); N = B * K rows, K
        consecutive rows per utterance (beam search's hypotheses; K = 1
        otherwise), all attending to their utterance's frames.
      carry: from `init_carry` (per row) or a previous step.
      enc_BxSxH: listener output.
      enc_mask_BxS: True on valid encoder frames.
      memory: `precompute(enc_BxSxH)`; computed here when None (pass it
        when stepping many times: it is the expensive part).

    Returns:
      (logits_NxV, new carry, attention weights_NxS).
    """
    if memory is None:
      memory = self.precompute(enc_BxSxH)
    o, carry, attn = self._features(token_N, carry, memory, enc_mask_BxS, None)
    return self._head(o), carry, attn

  def _forced_over_time(self, tokens_LxB, memory, enc_mask_BxS, masks):
    """Teacher forcing in parallel over time (module doc): requires
    content-based attention and no input feeding."""
    emb_masks, mid_masks = masks
    x = self.embed(tokens_LxB) * emb_masks
    for i, cell in enumerate(self.cells):
      x = cell.over_time(x)
      if i < self.num_layers - 1:
        x = x * mid_masks[:, i]
    length, b, d = x.shape
    # Batch-major rows: attention takes L consecutive queries per utterance.
    query_NxD = jnp.swapaxes(x, 0, 1).reshape(b * length, d)
    context, attn_NxS = self.attention(query_NxD, memory, enc_mask_BxS, None)
    logits_NxV = self._head(self._output_features(context, query_NxD))
    return (
      logits_NxV.reshape(b, length, -1),
      attn_NxS.reshape(b, length, -1),
    )

  def __call__(
    self,
    enc_BxSxH: jax.Array,
    enc_mask_BxS: jax.Array,
    tokens_in_BxL: jax.Array,
    *,
    teacher_forcing_p: float | jax.Array = 1.0,
    sample_key: jax.Array | None = None,
    train: bool = False,
  ) -> tuple[jax.Array, jax.Array]:
    """Runs the decoder over all target positions.

    Per token and utterance, the input is the ground truth with probability
    `teacher_forcing_p` (a traced scalar: changing it never recompiles) and
    the model's own previous argmax otherwise (scheduled sampling); the
    first input is always `tokens_in_BxL[:, 0]` (SOS). Without
    `sample_key`, or when `teacher_forcing_p` is 1, every input is the
    ground truth (the teacher-forced paths of the module doc).

    Returns:
      (logits_BxLxV, attention_BxLxS).
    """
    b, length = tokens_in_BxL.shape
    memory = self.precompute(enc_BxSxH)
    carry = self.init_carry(enc_BxSxH, enc_mask_BxS)
    in0 = self.cells[0].w_ih[...].shape[0]
    # Dropout masks drawn outside the scan: the body stays free of RNG
    # state (ones when not training, so eval matches `step` exactly).
    ones = functools.partial(jnp.ones, dtype=self.dtype or F32)
    emb_masks = self.dropout(ones((length, b, in0)), deterministic=not train)
    mid_masks = self.dropout(
      ones((length, max(self.num_layers - 1, 1), b, self.hidden)),
      deterministic=not train,
    )
    tokens_LxB = tokens_in_BxL.T
    masks = (emb_masks, mid_masks)

    def forced_scan():
      # No step needs its logits: the output layer runs after the scan.
      def body(carry, xs):
        token_B, step_masks = xs
        o, carry, attn = self._features(
          token_B, carry, memory, enc_mask_BxS, step_masks
        )
        return carry, (o, attn)

      _, (o_LxBxD, attn_LxBxS) = jax.lax.scan(body, carry, (tokens_LxB, masks))
      logits_BxLxV = self._head(jnp.transpose(o_LxBxD, (1, 0, 2)))
      return logits_BxLxV, jnp.transpose(attn_LxBxS, (1, 0, 2))

    def forced():
      if self.input_feeding or self.attention.reads_previous_weights:
        return forced_scan()
      return self._forced_over_time(tokens_LxB, memory, enc_mask_BxS, masks)

    if sample_key is None:
      return forced()

    draws = jax.random.uniform(sample_key, (length, b))
    use_truth_LxB = (draws < teacher_forcing_p).at[0].set(True)

    def sampled():
      def body(state, xs):
        carry, prev_pred_B = state
        truth_B, use_truth_B, step_masks = xs
        token_B = jnp.where(use_truth_B, truth_B, prev_pred_B)
        o, carry, attn = self._features(
          token_B, carry, memory, enc_mask_BxS, step_masks
        )
        logits = self._head(o)
        pred_B = jnp.argmax(logits, axis=-1).astype(tokens_in_BxL.dtype)
        return (carry, pred_B), (logits, attn)

      _, (logits_LxBxV, attn_LxBxS) = jax.lax.scan(
        body, (carry, tokens_LxB[0]), (tokens_LxB, use_truth_LxB, masks)
      )
      return (
        jnp.transpose(logits_LxBxV, (1, 0, 2)),
        jnp.transpose(attn_LxBxS, (1, 0, 2)),
      )

    # Only the branch taken runs: p = 1 (every batch early in the decay,
    # most batches under per-batch sampling) takes the teacher-forced path.
    return jax.lax.cond(jnp.asarray(teacher_forcing_p) >= 1.0, forced, sampled)
