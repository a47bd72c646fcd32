"""Optimizer, learning-rate schedules and the teacher-forcing schedule.

The optimizer is KoSpeech's: global-norm gradient clipping followed by Adam,
driven by either the tri-stage schedule (linear warm-up, hold, exponential
decay to a floor) or the Transformer ("Noam") schedule. The teacher-forcing
ratio for scheduled sampling is also a function of the step so that it can be
passed into the jitted step as a traced scalar (no recompilation as it
decays).
"""

import math

import jax
import jax.numpy as jnp
import ml_collections
import optax


def tri_stage_schedule(
  peak_lr: float,
  init_lr_scale: float,
  final_lr_scale: float,
  warmup_steps: int,
  hold_steps: int,
  decay_steps: int,
) -> optax.Schedule:
  """KoSpeech's TriStageLRScheduler as a pure function of the step.

  Stage 1 ramps linearly from `peak_lr * init_lr_scale` to `peak_lr` over
  `warmup_steps`; stage 2 holds `peak_lr` for `hold_steps`; stage 3 decays
  exponentially to `peak_lr * final_lr_scale` over `decay_steps`, which is
  kept afterwards.

  Args:
    peak_lr: the learning rate after warm-up.
    init_lr_scale: initial learning rate as a fraction of `peak_lr`.
    final_lr_scale: final learning rate as a fraction of `peak_lr` (> 0).
    warmup_steps: length of the linear warm-up.
    hold_steps: how long the peak is held.
    decay_steps: length of the exponential decay.

  Returns:
    An optax schedule (step -> learning rate).
  """
  if not 0 < final_lr_scale <= 1:
    raise ValueError(f'final_lr_scale must be in (0, 1], got {final_lr_scale}')
  init_lr = peak_lr * init_lr_scale
  final_lr = peak_lr * final_lr_scale
  decay_factor = -math.log(final_lr_scale) / max(decay_steps, 1)

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    warm = init_lr + (peak_lr - init_lr) * step / max(warmup_steps, 1)
    in_decay = step - warmup_steps - hold_steps
    decay = peak_lr * jnp.exp(-decay_factor * jnp.maximum(in_decay, 0.0))
    return jnp.where(
      step < warmup_steps,
      warm,
      jnp.where(
        in_decay < 0,
        peak_lr,
        jnp.where(in_decay < decay_steps, decay, final_lr),
      ),
    )

  return schedule


def transformer_schedule(peak_lr: float, warmup_steps: int) -> optax.Schedule:
  """The Transformer (Noam) schedule, normalized to reach `peak_lr`.

  `lr = peak_lr * min(step / warmup, sqrt(warmup / step))`: linear warm-up,
  then inverse-square-root decay. Vaswani et al.'s `d_model ** -0.5` factor is
  folded into `peak_lr` so that the peak is stated directly.

  Args:
    peak_lr: learning rate at the end of warm-up.
    warmup_steps: warm-up length (> 0).

  Returns:
    An optax schedule.
  """
  if warmup_steps <= 0:
    raise ValueError(f'warmup_steps must be > 0, got {warmup_steps}')

  def schedule(step):
    step = jnp.maximum(jnp.asarray(step, jnp.float32), 1.0)
    return peak_lr * jnp.minimum(
      step / warmup_steps, jnp.sqrt(warmup_steps / step)
    )

  return schedule


def learning_rate_schedule(cfg: ml_collections.ConfigDict) -> optax.Schedule:
  """Builds the schedule named by `cfg.lr_schedule` from `config.train`."""
  if cfg.lr_schedule == 'tri_stage':
    return tri_stage_schedule(
      peak_lr=cfg.peak_lr,
      init_lr_scale=cfg.init_lr_scale,
      final_lr_scale=cfg.final_lr_scale,
      warmup_steps=cfg.warmup_steps,
      hold_steps=cfg.hold_steps,
      decay_steps=cfg.decay_steps,
    )
  if cfg.lr_schedule == 'transformer':
    return transformer_schedule(cfg.peak_lr, cfg.warmup_steps)
  if cfg.lr_schedule == 'constant':
    return optax.constant_schedule(cfg.peak_lr)
  raise ValueError(
    f"config.train.lr_schedule must be 'tri_stage', 'transformer' or "
    f"'constant', got {cfg.lr_schedule!r}"
  )


def make_optimizer(
  cfg: ml_collections.ConfigDict,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Global-norm clipping + Adam(W) with the configured schedule.

  Args:
    cfg: `config.train`.

  Returns:
    `(tx, schedule)`; the schedule is returned too so that the training loop
    can log the learning rate of the current step.
  """
  schedule = learning_rate_schedule(cfg)
  adam = optax.adamw(
    schedule,
    b1=cfg.adam_b1,
    b2=cfg.adam_b2,
    eps=cfg.adam_eps,
    weight_decay=cfg.weight_decay,
  )
  return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), adam), (
    schedule
  )


def teacher_forcing_schedule(
  start: float, floor: float, decay_steps: int
) -> optax.Schedule:
  """Probability of feeding the ground truth token, decaying linearly.

  KoSpeech lowers `teacher_forcing_ratio` by `teacher_forcing_step` each
  epoch down to `min_teacher_forcing_ratio`; here the same ramp is expressed
  in steps, which does not depend on the epoch size.

  Args:
    start: ratio at step 0 (1.0 = always teacher forcing).
    floor: ratio reached after `decay_steps` and kept afterwards.
    decay_steps: length of the ramp; 0 keeps `start` forever.

  Returns:
    A schedule (step -> ratio in [0, 1]).
  """
  if not 0 <= floor <= 1 or not 0 <= start <= 1:
    raise ValueError(
      f'teacher forcing ratios must be in [0, 1], got {start}, {floor}'
    )
  if decay_steps <= 0:
    return optax.constant_schedule(start)
  return optax.linear_schedule(start, floor, decay_steps)


SAMPLING_UNITS = ('batch', 'token')


def teacher_forcing_p(unit: str, ratio: jax.Array, key: jax.Array) -> jax.Array:
  """The speller's per-token probability of the ground truth for one batch.

  Args:
    unit: `config.train.scheduled_sampling`. 'batch' (KoSpeech's
      `random.random() < teacher_forcing_ratio` per batch): the whole batch
      is fed the ground truth (returns 1) with probability `ratio`, else
      its own predictions at every step (returns 0); a teacher-forced
      batch with content-based attention runs in parallel over time.
      'token' (Bengio et al. 2015): each token independently (returns
      `ratio`).
    ratio: the teacher-forcing schedule's value at this step.
    key: the draw's key, the same on every device (one global batch).

  Returns:
    A traced float32 scalar in [0, 1].
  """
  if unit not in SAMPLING_UNITS:
    raise ValueError(
      f'config.train.scheduled_sampling: unknown unit {unit!r}; expected '
      f'one of {SAMPLING_UNITS}'
    )
  ratio = jnp.asarray(ratio, jnp.float32)
  if unit == 'token':
    return ratio
  return (jax.random.uniform(key) < ratio).astype(jnp.float32)
