"""The training state pytree and its replicated initialization.

The model is Flax NNX. It travels through jit as `(graphdef, state)` and is
merged back inside the step (the pattern of flax's gemma example), since
`nnx.RNN` mutates RNG state on every call. Dropout and RNN RNG streams are
re-seeded at every step from `fold_in(state.rng, step, device)`: randomness
is then a pure function of (seed, step, device), which is what makes a
resumed run repeat the uninterrupted one exactly, and why the streams are
not checkpointed.
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx, struct

from las_jax import models, parallel
from las_jax.models import execution


@struct.dataclass
class TrainState:
  """Everything that changes during training, as a pytree."""

  # [] int32: batches consumed (skipped non-finite steps included).
  step: jax.Array
  # nnx.State of the model's nnx.Param variables.
  params: Any
  # nnx.State of other variables (BatchNorm running statistics...).
  variables: Any
  # nnx.State of RNG streams; re-seeded each step, so not checkpointed.
  rng_streams: Any
  # optax state of `optim.make_optimizer`.
  opt_state: Any
  # [2] uint32: base PRNG key of the run.
  rng: jax.Array
  # [] int32: steps skipped because the loss or a gradient was not finite.
  skipped: jax.Array

  def checkpointed(self) -> dict[str, Any]:
    """The part of the state that is saved (RNG streams are derived)."""
    return dict(
      step=self.step,
      params=self.params,
      variables=self.variables,
      opt_state=self.opt_state,
      rng=self.rng,
      skipped=self.skipped,
    )

  def with_checkpointed(self, saved: dict[str, Any]) -> 'TrainState':
    """This state with the checkpointed fields replaced by `saved`."""
    return self.replace(**saved)


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, Any, Any, Any]:
  """`(graphdef, params, other variables, rng streams)` of a model."""
  return nnx.split(model, nnx.Param, nnx.Not(nnx.RngState), nnx.RngState)


def merge_model(graphdef: nnx.GraphDef, state: TrainState) -> nnx.Module:
  """The model of `state` (inside jit: a traced copy).

  `copy=True`: without it the model's variables alias those of `state`, so
  a forward pass that updates batch statistics would also change
  `state.variables`, and a skipped (non-finite) step could not keep them.
  """
  return nnx.merge(
    graphdef, state.params, state.variables, state.rng_streams, copy=True
  )


def reseed(model: nnx.Module, key: jax.Array) -> None:
  """Re-seeds every RNG stream of `model` from `key` (one fold per tag)."""
  tags = sorted(
    {
      node.key.tag
      for _, node in nnx.iter_graph(model)
      if isinstance(node, nnx.RngStream)
    }
  )
  if tags:
    nnx.reseed(
      model,
      **{t: jax.random.fold_in(key, i) for i, t in enumerate(tags)},
    )


def create_train_state(
  config: ml_collections.ConfigDict,
  vocab_size: int,
  tx: optax.GradientTransformation,
  mesh: jax.sharding.Mesh,
) -> tuple[nnx.GraphDef, TrainState]:
  """Builds the model and a replicated initial state on `mesh`.

  Initialization runs inside `jax.jit` with replicated output shardings, so
  every host computes the same parameters from the seed without a transfer.
  Batch norms are switched to cross-device statistics
  (`parallel.sync_batch_norm`), so 1 and N devices train the same function.
  The model computes in `config.train.compute_dtype` and rematerializes
  as `config.train.remat` says (`models.execution`); the parameters are
  float32 either way.

  Args:
    config: the full config (`model` and `seed` are read).
    vocab_size: output classes.
    tx: the optimizer whose state is initialized.
    mesh: the `data` mesh.

  Returns:
    `(graphdef, state)`.
  """

  def build():
    model = models.build_model(config.model, vocab_size, nnx.Rngs(config.seed))
    parallel.sync_batch_norm(model)
    execution.set_compute_dtype(model, config.train.compute_dtype)
    execution.set_remat(model, config.train.remat)
    return model

  def init() -> TrainState:
    _, params, variables, rng_streams = split_model(build())
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      variables=variables,
      rng_streams=rng_streams,
      opt_state=tx.init(params),
      rng=jax.random.PRNGKey(config.seed + 1),
      skipped=jnp.zeros((), jnp.int32),
    )

  graphdef = nnx.graphdef(nnx.eval_shape(build))
  state = jax.jit(init, out_shardings=parallel.replicated(mesh))()
  return graphdef, state


def abstract_checkpointed(state: TrainState) -> dict[str, Any]:
  """Shapes, dtypes and shardings of `state.checkpointed()` (restore target)."""
  return jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
    state.checkpointed(),
  )
