"""The pure train, eval and greedy-decode steps, and their compilation.

The train and eval steps run per device under `jax.shard_map` over the 1-D
`data` mesh (pmap-style): every device holds a replica of the parameters
and a slice of the batch; loss numerators and denominators and the
gradients are summed across devices with `lax.psum`, so the loss of a
global batch does not depend on the device count.

Batches hold the device fields of the input pipeline: `audio` int16
[B, N], `audio_lengths` [B] (0 = padding row), `tokens` [B, L] (ids then
EOS) and `token_lengths` [B] (with the EOS). A language model's batches
(`lm_data`) hold only the token fields (0 tokens = padding row).

Gradient accumulation (`config.train.grad_accum_steps` = k > 1): each
device's rows are split into k micro-batches that run one after another
in a `lax.scan` inside the one jitted step, their gradients summed. The
loss denominators (target tokens, CTC labels) are the whole global
batch's, counted before the scan, so the update is that of one batch of
all the rows. Batch norm normalizes each micro-batch by its own
statistics (as on k times smaller batches), and its running averages
take ONE update per step, with the mean of the k micro-batches' batch
statistics (momentum is applied once, not k times).
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx
from jax import lax
from jax.sharding import PartitionSpec as P

from las_jax import features, losses, optim, parallel
from las_jax import train_state as state_lib
from las_jax.inference import batch_search
from las_jax.text import Vocabulary
from las_jax.train_state import TrainState

AXIS = parallel.AXIS
# Batch fields that go to the device (the rest, ids/texts, stay on host).
DEVICE_FIELDS = ('audio', 'audio_lengths', 'tokens', 'token_lengths')
LM_DEVICE_FIELDS = ('tokens', 'token_lengths')


def is_ctc_only(config: ml_collections.ConfigDict) -> bool:
  """True for models without an attention decoder (DeepSpeech2)."""
  return config.model.name == 'deepspeech2'


def is_language_model(config: ml_collections.ConfigDict) -> bool:
  """True for text-only models (`lstm_lm`)."""
  return config.model.name == 'lstm_lm'


def device_fields(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The batch fields the steps of this model read."""
  return LM_DEVICE_FIELDS if is_language_model(config) else DEVICE_FIELDS


def ctc_weight(config: ml_collections.ConfigDict) -> float:
  """Weight of the CTC term of the objective (1 for DeepSpeech2, 0 for a
  language model)."""
  if is_language_model(config):
    return 0.0
  return 1.0 if is_ctc_only(config) else float(config.model.ctc_weight)


def _decoder_inputs(tokens_BxL: jax.Array, sos_id: int) -> jax.Array:
  """SOS + targets[:-1]: the teacher-forced decoder inputs."""
  sos_Bx1 = jnp.full((tokens_BxL.shape[0], 1), sos_id, tokens_BxL.dtype)
  return jnp.concatenate([sos_Bx1, tokens_BxL[:, :-1]], axis=1)


def _forward_sums(
  model: nnx.Module,
  feats_BxTxF: jax.Array,
  flen_B: jax.Array,
  batch: dict[str, jax.Array],
  *,
  config: ml_collections.ConfigDict,
  teacher_forcing_p: jax.Array,
  sample_key: jax.Array | None,
  train: bool,
  label_smoothing: float | None = None,
) -> tuple[losses.LossSums, jax.Array | None]:
  """Local loss sums of one batch, and the attention weights (LAS).

  `label_smoothing` defaults to `config.train.label_smoothing`.
  """
  if label_smoothing is None:
    label_smoothing = config.train.label_smoothing
  tokens_BxL = batch['tokens']
  if is_language_model(config):
    tlen_B = batch['token_lengths']
    logits_BxLxV = model(
      _decoder_inputs(tokens_BxL, Vocabulary.SOS_ID), train=train
    )
    mask_BxL = losses.length_mask(tlen_B, tokens_BxL.shape[1])
    ce, tokens, correct = losses.label_smoothed_cross_entropy(
      logits_BxLxV, tokens_BxL, mask_BxL, label_smoothing
    )
    zero = jnp.zeros((), jnp.float32)
    return losses.LossSums(ce, tokens, correct, zero, zero), None
  valid_B = batch['audio_lengths'] > 0
  tlen_B = jnp.where(valid_B, batch['token_lengths'], 0)
  zero = jnp.zeros((), jnp.float32)
  ce = tokens = correct = ctc_sum = ctc_count = zero
  attention = None
  weight = ctc_weight(config)
  if is_ctc_only(config):
    out = model(feats_BxTxF, flen_B, train=train)
  else:
    out = model(
      feats_BxTxF,
      flen_B,
      _decoder_inputs(tokens_BxL, Vocabulary.SOS_ID),
      teacher_forcing_p=teacher_forcing_p,
      sample_key=sample_key,
      train=train,
    )
    mask_BxL = losses.length_mask(tlen_B, tokens_BxL.shape[1])
    ce, tokens, correct = losses.label_smoothed_cross_entropy(
      out['logits_BxLxV'], tokens_BxL, mask_BxL, label_smoothing
    )
    attention = out['attention_BxLxS']
  if weight > 0:
    # CTC targets exclude the EOS that ends every token row.
    ctc_sum, ctc_count = losses.ctc_loss_sum(
      out['ctc_logits_BxSxV'],
      out['enc_lengths_B'],
      tokens_BxL,
      jnp.maximum(tlen_B - 1, 0),
      valid_B,
      blank_id=Vocabulary.PAD_ID,
    )
  sums = losses.LossSums(ce, tokens, correct, ctc_sum, ctc_count)
  return sums, attention


def _features(key, batch, config, *, train: bool):
  """Log-mel features of the batch's audio; (None, None) for text models."""
  if is_language_model(config):
    return None, None
  return features.featurize(
    key, batch['audio'], batch['audio_lengths'], config.features, train
  )


def _valid_rows(batch: dict[str, jax.Array]) -> jax.Array:
  """True for real rows (padding rows have no audio, or no tokens)."""
  if 'audio_lengths' in batch:
    return batch['audio_lengths'] > 0
  return batch['token_lengths'] > 0


def _all_finite(tree: Any) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _pmean_floats(tree: Any) -> Any:
  return jax.tree.map(
    lambda x: (
      lax.pmean(x, AXIS) if jnp.issubdtype(x.dtype, jnp.floating) else x
    ),
    tree,
  )


def train_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  *,
  graphdef: nnx.GraphDef,
  tx: optax.GradientTransformation,
  config: ml_collections.ConfigDict,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step on this device's slice of the batch (under shard_map).

  Args:
    state: replicated training state.
    batch: this device's rows of the `DEVICE_FIELDS`.
    graphdef: the model's static structure.
    tx: the optimizer.
    config: the full config.

  Returns:
    The new state and replicated metrics (loss, ce, ctc, accuracy, grad
    norm, teacher-forcing ratio, finite flag, utterances, audio seconds).
  """
  tcfg = config.train
  rows = batch['tokens'].shape[0]
  if tcfg.grad_accum_steps > 1 and 'audio' not in batch:
    raise ValueError(
      'config.train.grad_accum_steps > 1 is for recognizers; a language '
      'model trains on whole batches (set it to 1)'
    )
  if rows % tcfg.grad_accum_steps:
    raise ValueError(
      f'config.train.grad_accum_steps={tcfg.grad_accum_steps} does not '
      f'divide the {rows} rows each device gets of input.batch_size; use a '
      f'batch size that is a multiple of {tcfg.grad_accum_steps} x the '
      'device count.'
    )
  # One key for draws shared by the global batch, one per device for the rest.
  k_batch, k_devices = jax.random.split(
    jax.random.fold_in(state.rng, state.step)
  )
  key = jax.random.fold_in(k_devices, lax.axis_index(AXIS))
  k_feat, k_model, k_sample = jax.random.split(key, 3)
  # Scheduled sampling: a traced scalar, so its decay never recompiles.
  tf_ratio = optim.teacher_forcing_schedule(
    tcfg.teacher_forcing_ratio,
    tcfg.min_teacher_forcing_ratio,
    tcfg.teacher_forcing_steps,
  )(state.step)
  tf_p = optim.teacher_forcing_p(tcfg.scheduled_sampling, tf_ratio, k_batch)

  model = state_lib.merge_model(graphdef, state)
  state_lib.reseed(model, k_model)
  feats_BxTxF, flen_B = _features(k_feat, batch, config, train=True)
  weight = ctc_weight(config)
  if 0.0 < weight < 1.0 and tcfg.ctc_warmup_steps > 0:
    # CTC alone first: the listener learns frame-level features before the
    # speller can learn to read a whole-utterance summary off one frame.
    weight = jnp.where(state.step < tcfg.ctc_warmup_steps, 1.0, weight)

  def loss_fn(model, feats_BxTxF, flen_B, batch, sample_key, totals):
    sums, _ = _forward_sums(
      model,
      feats_BxTxF,
      flen_B,
      batch,
      config=config,
      teacher_forcing_p=tf_p,
      sample_key=sample_key,
      train=True,
    )
    # Global denominators: the local objective is this device's share of the
    # global mean, so summing gradients over devices gives its gradient.
    if totals is None:
      totals = lax.stop_gradient(
        jax.tree.map(lambda x: lax.psum(x, AXIS), sums)
      )
    local = sums._replace(tokens=totals.tokens, ctc_labels=totals.ctc_labels)
    return losses.combine(local, weight), sums

  grad_fn = nnx.value_and_grad(loss_fn, has_aux=True)
  if tcfg.grad_accum_steps == 1:
    (_, sums), grads = grad_fn(
      model, feats_BxTxF, flen_B, batch, k_sample, None
    )
    _, _, new_variables, new_rng_streams = state_lib.split_model(model)
  else:
    grads, sums, new_variables = _accumulate(
      grad_fn,
      state,
      graphdef,
      feats_BxTxF,
      flen_B,
      batch,
      _loss_totals(model, feats_BxTxF, flen_B, batch, config),
      (k_model, k_sample),
      tcfg.grad_accum_steps,
    )
    new_rng_streams = state.rng_streams  # Re-seeded at every step anyway.
  grads = lax.psum(grads, AXIS)
  sums = jax.tree.map(lambda x: lax.psum(x, AXIS), sums)
  loss = losses.combine(sums, weight)
  grad_norm = optax.tree.norm(grads)
  finite = jnp.isfinite(loss) & _all_finite(grads)

  def apply(params, opt_state):
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  # A non-finite step would poison Adam's moments forever: it is skipped.
  # Only the branch taken runs (selecting old or new values would cost a
  # pass over every parameter and moment: ~25 ms a step on CPU).
  new_params, new_opt_state = lax.cond(
    finite, apply, lambda *old: old, state.params, state.opt_state
  )
  # Batch statistics are already global with synced batch norm; the pmean
  # keeps replicas bit-identical either way.
  new_variables = jax.tree.map(
    lambda new, old: jnp.where(finite, new, old),
    _pmean_floats(new_variables),
    state.variables,
  )
  new_state = state.replace(
    step=state.step + 1,
    params=new_params,
    variables=new_variables,
    rng_streams=new_rng_streams,
    opt_state=new_opt_state,
    skipped=state.skipped + (~finite).astype(jnp.int32),
  )
  valid_B = _valid_rows(batch)
  step_metrics = dict(
    loss=loss,
    ce=sums.ce / jnp.maximum(sums.tokens, 1.0),
    ctc=sums.ctc / jnp.maximum(sums.ctc_labels, 1.0),
    accuracy=sums.correct / jnp.maximum(sums.tokens, 1.0),
    grad_norm=grad_norm,
    teacher_forcing=tf_ratio,
    finite=finite.astype(jnp.float32),
    utterances=lax.psum(jnp.sum(valid_B, dtype=jnp.float32), AXIS),
    audio_seconds=lax.psum(
      jnp.sum(batch.get('audio_lengths', 0), dtype=jnp.float32), AXIS
    )
    / config.features.sample_rate,
  )
  return new_state, step_metrics


def _loss_totals(
  model: nnx.Module,
  feats_BxTxF: jax.Array,
  flen_B: jax.Array,
  batch: dict[str, jax.Array],
  config: ml_collections.ConfigDict,
) -> losses.LossSums:
  """The global batch's loss denominators, before any forward pass.

  `tokens` and `ctc_labels` are what `_forward_sums` counts (psummed over
  devices); the other fields are 0. The CTC count needs each utterance's
  encoder length: it comes from an evaluation-mode `encode` of which only
  the lengths are used, so XLA drops the rest of that pass. (An utterance
  whose CTC loss is not finite still counts here; such a step is skipped
  as non-finite anyway.)
  """
  valid_B = batch['audio_lengths'] > 0
  tlen_B = jnp.where(valid_B, batch['token_lengths'], 0)
  mask_BxL = losses.length_mask(tlen_B, batch['tokens'].shape[1])
  tokens = jnp.sum(mask_BxL.astype(jnp.float32))
  ctc_labels = jnp.zeros((), jnp.float32)
  if ctc_weight(config) > 0:
    enc_lengths_B = model.encode(feats_BxTxF, flen_B, train=False).enc_lengths_B
    labels_B = jnp.maximum(tlen_B - 1, 0)  # CTC targets exclude the EOS.
    ctc_labels = losses.ctc_label_count(
      labels_B, losses.ctc_alignable(enc_lengths_B, labels_B, valid_B)
    )
  zero = jnp.zeros((), jnp.float32)
  totals = losses.LossSums(zero, tokens, zero, zero, ctc_labels)
  return jax.tree.map(lambda x: lax.psum(x, AXIS), totals)


def _accumulate(
  grad_fn,
  state: TrainState,
  graphdef: nnx.GraphDef,
  feats_BxTxF: jax.Array,
  flen_B: jax.Array,
  batch: dict[str, jax.Array],
  totals: losses.LossSums,
  keys: tuple[jax.Array, jax.Array],
  num_micro: int,
) -> tuple[Any, losses.LossSums, Any]:
  """Summed gradients and loss sums of `num_micro` micro-batches (module
  doc), and the batch-norm running statistics after one update with the
  micro-batches' mean statistics.

  Every micro-batch starts from the step's model: the running averages
  update `(1 - m) old + m stat_i` of micro-batch i averaged over i is one
  update with the mean statistic.
  """
  rows = feats_BxTxF.shape[0]
  inputs = dict(batch, feats=feats_BxTxF, flen=flen_B)
  micro_KxMx = jax.tree.map(
    lambda x: x.reshape(num_micro, rows // num_micro, *x.shape[1:]), inputs
  )
  k_model, k_sample = keys

  def body(carry, xs):
    grads_sum, sums_sum = carry
    i, micro = xs
    model = state_lib.merge_model(graphdef, state)
    state_lib.reseed(model, jax.random.fold_in(k_model, i))
    feats, flen = micro.pop('feats'), micro.pop('flen')
    sample_key = jax.random.fold_in(k_sample, i)
    (_, sums), grads = grad_fn(model, feats, flen, micro, sample_key, totals)
    _, _, variables, _ = state_lib.split_model(model)
    return (
      jax.tree.map(jnp.add, grads_sum, grads),
      jax.tree.map(jnp.add, sums_sum, sums),
    ), variables

  zeros = jax.tree.map(jnp.zeros_like, state.params)
  zero_sums = jax.tree.map(jnp.zeros_like, totals)
  (grads, sums), variables_K = lax.scan(
    body, (zeros, zero_sums), (jnp.arange(num_micro), micro_KxMx)
  )
  variables = jax.tree.map(
    lambda x: (
      jnp.mean(x, axis=0) if jnp.issubdtype(x.dtype, jnp.floating) else x[-1]
    ),
    variables_K,
  )
  return grads, sums, variables


def eval_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  *,
  graphdef: nnx.GraphDef,
  config: ml_collections.ConfigDict,
) -> tuple[losses.LossSums, jax.Array]:
  """Teacher-forced dev loss sums (psummed) and attention for plots.

  Returns:
    `(sums, attention_BxLxS)`; the attention is this device's rows (zeros
    of width 1 for CTC-only models).
  """
  model = state_lib.merge_model(graphdef, state)
  feats_BxTxF, flen_B = _features(None, batch, config, train=False)
  sums, attention = _forward_sums(
    model,
    feats_BxTxF,
    flen_B,
    batch,
    config=config,
    teacher_forcing_p=jnp.ones((), jnp.float32),
    sample_key=None,  # Pure teacher forcing.
    train=False,
    # A language model's dev loss is its perplexity's log: no smoothing.
    label_smoothing=0.0 if is_language_model(config) else None,
  )
  sums = jax.tree.map(lambda x: lax.psum(x, AXIS), sums)
  if attention is None:
    attention = jnp.zeros(batch['tokens'].shape + (1,), jnp.float32)
  return sums, attention


def greedy_decode(
  state: TrainState,
  batch: dict[str, jax.Array],
  *,
  graphdef: nnx.GraphDef,
  config: ml_collections.ConfigDict,
) -> tuple[jax.Array, jax.Array]:
  """Greedy transcription of a batch for the dev CER: `(tokens_BxL,
  lengths_B)`.

  The search `decode.py` runs with beam 1 (`batch_search.search_batch`):
  LAS's attention alone, DeepSpeech2's best CTC path. Runs under plain
  `jax.jit`: the batch is sharded along `data` and XLA keeps the work on
  each shard.
  """
  options = batch_search.SearchOptions.resolve(
    config,
    beam_size=1,
    ctc_mode='ctc' if is_ctc_only(config) else 'off',
    lm_weight=0.0,
  )
  out = batch_search.search_batch(
    state_lib.merge_model(graphdef, state),
    None,
    batch['audio'],
    batch['audio_lengths'],
    config,
    options,
  )
  return out['tokens'][:, 0], out['lengths'][:, 0]


def compile_steps(
  config: ml_collections.ConfigDict,
  graphdef: nnx.GraphDef,
  tx: optax.GradientTransformation,
  mesh: jax.sharding.Mesh,
) -> tuple[Any, Any, Any]:
  """The jitted `(train, eval, decode)` functions over `mesh` (decode is
  None for a language model).

  `check_vma=False` gives pmap semantics: gradients of replicated parameters
  come back per device and are summed explicitly (with `check_vma=True`,
  shard_map would insert that sum itself and an explicit psum would count
  every device N times). The train step donates the old state.
  """
  accum = config.train.grad_accum_steps
  if not isinstance(accum, int) or accum < 1:
    raise ValueError(
      f'config.train.grad_accum_steps must be an integer >= 1, got {accum!r}'
    )
  batch_spec = P(AXIS)
  train = jax.jit(
    jax.shard_map(
      functools.partial(train_step, graphdef=graphdef, tx=tx, config=config),
      mesh=mesh,
      in_specs=(P(), batch_spec),
      out_specs=(P(), P()),
      check_vma=False,
    ),
    donate_argnums=0,
  )
  evaluate = jax.jit(
    jax.shard_map(
      functools.partial(eval_step, graphdef=graphdef, config=config),
      mesh=mesh,
      in_specs=(P(), batch_spec),
      out_specs=(P(), batch_spec),
      check_vma=False,
    )
  )
  decode = None
  if not is_language_model(config):
    decode = jax.jit(
      functools.partial(greedy_decode, graphdef=graphdef, config=config)
    )
  return train, evaluate, decode
