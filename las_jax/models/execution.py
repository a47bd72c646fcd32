"""How a built model computes, apart from what: precision and remat.

Neither setting changes the parameters, so a checkpoint trained with one
restores under any other. Both are set on a built model, before it is
split for jit (they are static attributes of its modules):

  model = build_model(config.model, vocab_size, rngs)
  set_compute_dtype(model, 'bfloat16')
  set_remat(model, 'nothing_saveable')

Mixed precision (`set_compute_dtype(model, 'bfloat16')`): parameters stay
float32 (so do the optimizer state and the gradients, which flow back
through the casts); matmuls and convolutions take bfloat16 operands, and
activations between layers are bfloat16. The LSTM gate pre-activation
sums and cell states, batch-norm and layer-norm statistics, attention
scores and weights, and the logits (so the losses, CTC and log-softmax of
decoding) stay float32, as does the log-mel front end. 'float32' leaves
every module as built: the computation is exactly the float32 one.

Rematerialization (`set_remat`): the extractor's conv blocks and the
listener's recurrent layers run under `jax.checkpoint` with the named
policy, so their internals are recomputed in the backward pass instead of
being kept from the forward pass.
"""

import jax
import jax.numpy as jnp
from flax import nnx

# Names of config.train.compute_dtype / config.decode.compute_dtype.
COMPUTE_DTYPES = {'float32': None, 'bfloat16': jnp.bfloat16}
# Names of config.train.remat: 'none', or a `jax.checkpoint_policies`
# policy (what the forward pass keeps inside each rematerialized block).
REMAT_POLICIES = (
  'none',
  'nothing_saveable',
  'dots_saveable',
  'dots_with_no_batch_dims_saveable',
)


def cast(x: jax.Array, dtype: jnp.dtype | None) -> jax.Array:
  """x in `dtype`; None keeps it as it is (float32 computation)."""
  return x if dtype is None else x.astype(dtype)


def _set_attribute(model: nnx.Module, name: str, value) -> int:
  count = 0
  for _, node in nnx.iter_graph(model):
    if isinstance(node, nnx.Module) and hasattr(node, name):
      setattr(node, name, value)
      count += 1
  return count


def set_compute_dtype(
  model: nnx.Module, name: str, field: str = 'config.train.compute_dtype'
) -> None:
  """Sets the compute dtype of every module of `model` that has one.

  These are flax's layers (`nnx.Linear`, `nnx.Conv`, `nnx.Embed`,
  `nnx.LayerNorm`: their `dtype`) and this package's modules that hold
  matmuls or convolutions.

  Args:
    model: a built model.
    name: 'float32' or 'bfloat16' (module doc).
    field: the config field named in errors.

  Raises:
    ValueError: unknown name.
  """
  if name not in COMPUTE_DTYPES:
    raise ValueError(
      f'{field}: unknown compute dtype {name!r}; expected one of '
      f'{sorted(COMPUTE_DTYPES)}'
    )
  _set_attribute(model, 'dtype', COMPUTE_DTYPES[name])


def set_remat(
  model: nnx.Module, policy: str, field: str = 'config.train.remat'
) -> None:
  """Rematerializes the extractor blocks and recurrent layers of `model`.

  Args:
    model: a built model.
    policy: one of `REMAT_POLICIES`; 'none' turns rematerialization off.
    field: the config field named in errors.

  Raises:
    ValueError: unknown policy.
  """
  if policy not in REMAT_POLICIES:
    raise ValueError(
      f'{field}: unknown remat policy {policy!r}; expected one of '
      f'{list(REMAT_POLICIES)}'
    )
  _set_attribute(model, 'remat_policy', policy)


def maybe_remat(fn, policy: str):
  """`fn` (taking modules and arrays) under `nnx.remat` with the named
  `jax.checkpoint_policies` policy; `fn` itself for 'none'."""
  if policy == 'none':
    return fn
  return nnx.remat(fn, policy=getattr(jax.checkpoint_policies, policy))
