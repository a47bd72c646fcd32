"""Length-aware, scanned (bi)directional RNN layers: LSTM, GRU, vanilla.

Speed on CPU comes from two choices:
- the input projection `x @ W_ih` of every time step (and both directions)
  is one big matmul hoisted out of the scan; the scan body only does the
  small recurrent `h @ W_hh`;
- both directions run in ONE `lax.scan`: the backward direction's inputs
  are reversed within each utterance's length, stacked with the forward
  inputs on a direction axis, and the per-direction recurrent matmuls are
  one batched einsum (for LSTM, `las_jax.ops.lstm`).

Length awareness: reversing within the length puts every utterance's valid
frames first in both directions, so each direction starts from a zero state
at the utterance's own first (forward) or last (backward) valid frame;
padded steps come after all valid steps and cannot influence them. Outputs
at padded frames are zeroed.

Gate layouts follow PyTorch: LSTM (i, f, g, o); GRU (r, z, n) with
n = tanh(x W_in + b_in + r * (h W_hn + b_hn)).

Mixed precision (`dtype` set, see `models/execution.py`): the matmuls run
in `dtype`; gate sums, cell and hidden states are float32; a layer's
output is cast to `dtype`.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from las_jax.models.execution import cast
from las_jax.models.masking import zero_padding
from las_jax.ops.lstm import lstm_recurrence

GATES = {'lstm': 4, 'gru': 3, 'rnn': 1}


def check_rnn_type(rnn_type: str, field: str) -> None:
  """Raises a ValueError naming `field` for an unknown RNN type."""
  if rnn_type not in GATES:
    raise ValueError(
      f'{field}: unknown RNN type {rnn_type!r}; expected one of {sorted(GATES)}'
    )


def reverse_index(lengths_B: jax.Array, max_len: int) -> jax.Array:
  """[B, T] gather indices reversing each row within its length.

  The map is its own inverse; frames past the length stay in place.
  """
  t = jnp.arange(max_len)[None, :]
  return jnp.where(t < lengths_B[:, None], lengths_B[:, None] - 1 - t, t)


def pytorch_uniform(key, shape, hidden: int) -> jax.Array:
  """PyTorch's RNN init: U(-1/sqrt(hidden), 1/sqrt(hidden))."""
  bound = 1.0 / jnp.sqrt(hidden)
  return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def cell_update(rnn_type, x_proj, h, c, recur, b_hh):
  """One recurrent step for any batch of cells.

  Args:
    rnn_type: 'lstm', 'gru' or 'rnn'.
    x_proj: [..., G*H] input projection incl. its bias.
    h, c: [..., H] state (c is carried unchanged except by LSTM).
    recur: maps h to its [..., G*H] recurrent projection (h @ W_hh).
    b_hh: recurrent bias broadcastable to [..., G*H] (GRU; else 0).

  Returns:
    (h, c) new state.
  """
  h_proj = recur(h) + b_hh
  if rnn_type == 'lstm':
    i, f, g, o = jnp.split(x_proj + h_proj, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c
  if rnn_type == 'gru':
    xr, xz, xn = jnp.split(x_proj, 3, axis=-1)
    hr, hz, hn = jnp.split(h_proj, 3, axis=-1)
    r = jax.nn.sigmoid(xr + hr)
    z = jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * hn)
    return (1.0 - z) * n + z * h, c
  return jnp.tanh(x_proj + h_proj), c


class RNNLayer(nnx.Module):
  """One (bi)directional recurrent layer over padded, length-aware input.

  Parameters: `w_ih` [in, D*G*H], `b_ih` [D*G*H], `w_hh` [D, H, G*H], and
  for GRU `b_hh` [D, G*H] (the r-gated bias); D = 2 if bidirectional.
  """

  def __init__(
    self,
    in_features: int,
    hidden: int,
    *,
    rnn_type: str = 'lstm',
    bidirectional: bool = True,
    rngs: nnx.Rngs,
  ):
    check_rnn_type(rnn_type, 'rnn_type')
    self.rnn_type = rnn_type
    self.hidden = hidden
    self.num_dirs = 2 if bidirectional else 1
    gh = GATES[rnn_type] * hidden
    d = self.num_dirs
    self.w_ih = nnx.Param(
      pytorch_uniform(rngs.params(), (in_features, d * gh), hidden)
    )
    self.b_ih = nnx.Param(pytorch_uniform(rngs.params(), (d * gh,), hidden))
    self.w_hh = nnx.Param(
      pytorch_uniform(rngs.params(), (d, hidden, gh), hidden)
    )
    if rnn_type == 'gru':
      self.b_hh = nnx.Param(pytorch_uniform(rngs.params(), (d, gh), hidden))
    else:
      self.b_hh = None
    # Compute dtype of the matmuls; None = float32 (models/execution.py).
    self.dtype = None

  @property
  def output_dim(self) -> int:
    return self.num_dirs * self.hidden

  def __call__(self, x_BxTxI: jax.Array, lengths_B: jax.Array) -> jax.Array:
    """Returns [B, T, D*H]; frames past each length are zero."""
    b, t, _ = x_BxTxI.shape
    d, h = self.num_dirs, self.hidden
    gh = GATES[self.rnn_type] * h
    # Hoisted input projection for all steps and directions: one
    # batch-major matmul, then time-major (with a time-major einsum XLA
    # transposed the wide input for the weight gradient: ~5% of a step).
    dtype = self.dtype
    x_proj = jnp.einsum(
      'bti,ig->btg', cast(x_BxTxI, dtype), cast(self.w_ih[...], dtype)
    ).astype(jnp.float32)
    xp_TxBxDxG = jnp.swapaxes(x_proj + self.b_ih[...], 0, 1).reshape(
      t, b, d, gh
    )
    # Direction-major inside the scan: the recurrent einsum is then a
    # plain batched matmul over d. With d in the middle ('bdh,dhg->bdg')
    # XLA:CPU transposes at every step and the scan ran 10x slower.
    xs_DxTxBxG = [xp_TxBxDxG[:, :, 0]]
    if d == 2:
      rev_BxT = reverse_index(lengths_B, t)
      xs_DxTxBxG.append(
        jnp.take_along_axis(xp_TxBxDxG[:, :, 1], rev_BxT.T[:, :, None], 0)
      )
    xp_TxDxBxG = jnp.stack(xs_DxTxBxG, axis=1)
    w_hh = cast(self.w_hh[...], dtype)
    b_hh = 0.0 if self.b_hh is None else self.b_hh[...][:, None, :]
    rnn_type = self.rnn_type

    def recur(h_DxBxH):
      h_proj = jnp.einsum('dbh,dhg->dbg', cast(h_DxBxH, dtype), w_hh)
      return h_proj.astype(jnp.float32)

    def body(carry, xp_DxBxG):
      h_new, c_new = cell_update(rnn_type, xp_DxBxG, *carry, recur, b_hh)
      return (h_new, c_new), h_new

    if rnn_type == 'lstm':
      hs_TxDxBxH = lstm_recurrence(xp_TxDxBxG, w_hh)
    else:
      zeros = jnp.zeros((d, b, h), jnp.float32)
      _, hs_TxDxBxH = jax.lax.scan(body, (zeros, zeros), xp_TxDxBxG)
    outs_TxBxH = [hs_TxDxBxH[:, 0]]
    if d == 2:
      outs_TxBxH.append(
        jnp.take_along_axis(hs_TxDxBxH[:, 1], rev_BxT.T[:, :, None], 0)
      )
    out_BxTxDH = jnp.concatenate(outs_TxBxH, axis=-1).transpose(1, 0, 2)
    return cast(zero_padding(out_BxTxDH, lengths_B), dtype)
