"""An LSTM language model over a recognizer's output units.

  logits = W_out dropout(LSTM_N(...dropout(LSTM_1(dropout(embed(y)))))) + b

The recurrent language model of shallow fusion (Gulcehre et al. 2015;
Kannan et al. 2018 for attention models; ESPnet's `RNNLM`: embedding,
stacked LSTM, linear output). Trained by `train.py` like the acoustic
models (`model.name = 'lstm_lm'`) on the transcripts the recognizer was
trained on, tokenized with the recognizer's vocabulary, so its step can be
fused into the beam search (`search.weighted_sum`): the carry is a dict
of [N, layers, H] LSTM states, gathered by the search like the speller's.
A teacher-forced batch runs each LSTM layer in parallel over time
(`LSTMCell.over_time`).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from las_jax.models.speller import LSTMCell
from las_jax.ops.loop_matmul import dense

Carry = dict[str, jax.Array]


class LSTMLM(nnx.Module):
  """Embedding, stacked LSTM and output layer; predicts the next unit."""

  def __init__(self, config, vocab_size: int, *, rngs: nnx.Rngs):
    """Builds from `config.model` (`lm_hidden`, `lm_layers`, `dropout`)."""
    hidden = int(config.lm_hidden)
    self.hidden = hidden
    self.num_layers = int(config.lm_layers)
    if self.num_layers < 1 or hidden < 1:
      raise ValueError(
        f'config.model.lm_layers and lm_hidden must be >= 1, got '
        f'{self.num_layers} and {hidden}'
      )
    self.embed = nnx.Embed(vocab_size, hidden, rngs=rngs)
    self.cells = nnx.List(
      [LSTMCell(hidden, hidden, rngs) for _ in range(self.num_layers)]
    )
    self.out = nnx.Linear(hidden, vocab_size, rngs=rngs)
    self.dropout = nnx.Dropout(config.dropout, rngs=rngs)

  def __call__(
    self, tokens_in_BxL: jax.Array, *, train: bool = False
  ) -> jax.Array:
    """Teacher-forced next-unit logits.

    Args:
      tokens_in_BxL: SOS followed by the targets but the last.
      train: dropout on.

    Returns:
      logits_BxLxV: scores of the unit following each input position.
    """
    x_LxBxH = self.embed(tokens_in_BxL.T)
    for cell in self.cells:
      x_LxBxH = cell.over_time(self.dropout(x_LxBxH, deterministic=not train))
    x_LxBxH = self.dropout(x_LxBxH, deterministic=not train)
    return dense(self.out, jnp.swapaxes(x_LxBxH, 0, 1))

  def init_carry(self, batch_size: int) -> Carry:
    """Zero LSTM state for `batch_size` rows."""
    zeros = jnp.zeros((batch_size, self.num_layers, self.hidden), jnp.float32)
    return {'h': zeros, 'c': zeros}

  def step(self, token_N: jax.Array, carry: Carry) -> tuple[jax.Array, Carry]:
    """One step without dropout: (logits_NxV, new carry)."""
    x = self.embed(token_N)
    hs, cs = [], []
    for i, cell in enumerate(self.cells):
      x, c = cell(x, carry['h'][:, i], carry['c'][:, i])
      hs.append(x)
      cs.append(c)
    carry = {'h': jnp.stack(hs, axis=1), 'c': jnp.stack(cs, axis=1)}
    return dense(self.out, x), carry

  def scorer(
    self, batch_size: int
  ) -> tuple[Carry, Callable[[jax.Array, Carry], tuple[jax.Array, Carry]]]:
    """Initial carry ([B, ...]) and `step_fn(token_N, carry) ->
    (log_probs_NxV, carry)`, the step contract of `las_jax.inference.search`."""

    def step_fn(token_N, carry):
      logits, carry = self.step(token_N, carry)
      return jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1), carry

    return self.init_carry(batch_size), step_fn
