"""Learning-rate and teacher-forcing schedules, and the optimizer chain."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import default
from las_jax import optim


def test_tri_stage_matches_kospeech_stages():
  sched = optim.tri_stage_schedule(
    peak_lr=1e-3,
    init_lr_scale=0.01,
    final_lr_scale=0.05,
    warmup_steps=10,
    hold_steps=5,
    decay_steps=20,
  )
  # Warm-up: linear from 1e-5 to the peak.
  np.testing.assert_allclose(sched(0), 1e-5, rtol=1e-6)
  np.testing.assert_allclose(sched(5), 1e-5 + 0.5 * (1e-3 - 1e-5), rtol=1e-6)
  # Hold.
  np.testing.assert_allclose(sched(10), 1e-3, rtol=1e-6)
  np.testing.assert_allclose(sched(14), 1e-3, rtol=1e-6)
  # Exponential decay: halfway through it is peak * sqrt(final_scale).
  np.testing.assert_allclose(sched(25), 1e-3 * math.sqrt(0.05), rtol=1e-5)
  # Floor.
  np.testing.assert_allclose(sched(35), 5e-5, rtol=1e-5)
  np.testing.assert_allclose(sched(10_000), 5e-5, rtol=1e-5)


def test_transformer_schedule_peaks_at_warmup():
  sched = optim.transformer_schedule(peak_lr=2e-3, warmup_steps=100)
  np.testing.assert_allclose(sched(50), 1e-3, rtol=1e-6)
  np.testing.assert_allclose(sched(100), 2e-3, rtol=1e-6)
  np.testing.assert_allclose(sched(400), 1e-3, rtol=1e-6)
  steps = jnp.arange(1, 1000)
  assert int(jnp.argmax(sched(steps))) + 1 == 100


def test_teacher_forcing_decays_to_floor():
  sched = optim.teacher_forcing_schedule(1.0, 0.8, 100)
  np.testing.assert_allclose(
    [sched(0), sched(50), sched(100), sched(500)],
    [1.0, 0.9, 0.8, 0.8],
    rtol=1e-6,
  )
  assert float(optim.teacher_forcing_schedule(0.9, 0.5, 0)(1000)) == (
    pytest.approx(0.9)
  )
  with pytest.raises(ValueError, match='teacher forcing'):
    optim.teacher_forcing_schedule(1.0, 1.5, 10)


def test_scheduled_sampling_draws_per_batch_or_per_token():
  keys = jax.random.split(jax.random.key(0), 2000)

  def per_batch(ratio):
    draw = jax.vmap(lambda k: optim.teacher_forcing_p('batch', ratio, k))
    return np.asarray(draw(keys))

  batch_p = per_batch(0.7)
  # Per batch: all ground truth (1) or all own predictions (0), at the
  # schedule's rate.
  assert set(np.unique(batch_p)) == {0.0, 1.0}
  assert abs(batch_p.mean() - 0.7) < 0.04
  assert np.all(per_batch(1.0) == 1.0)
  assert float(optim.teacher_forcing_p('token', 0.7, keys[0])) == (
    pytest.approx(0.7)
  )
  with pytest.raises(ValueError, match='config.train.scheduled_sampling'):
    optim.teacher_forcing_p('utterance', 0.7, keys[0])


def test_optimizer_clips_global_norm():
  cfg = default.get_config().train
  cfg.lr_schedule = 'constant'
  cfg.peak_lr = 1.0
  cfg.max_grad_norm = 1.0
  tx, sched = optim.make_optimizer(cfg)
  params = {'w': jnp.zeros(4)}
  state = tx.init(params)
  # Adam normalizes the first update to ~lr * sign(g) whatever the scale;
  # clipping shows in the second moment: a huge gradient, once clipped,
  # leaves the same state as a gradient of norm 1 in the same direction.
  huge = {'w': jnp.array([3e6, 4e6, 0.0, 0.0])}
  unit = {'w': jnp.array([0.6, 0.8, 0.0, 0.0])}
  _, s_huge = tx.update(huge, state, params)
  _, s_unit = tx.update(unit, state, params)
  np.testing.assert_allclose(s_huge[1][0].nu['w'], s_unit[1][0].nu['w'])
  assert float(sched(123)) == 1.0


def test_unknown_schedule_names_field():
  cfg = ml_collections.ConfigDict(dict(lr_schedule='cosine'))
  with pytest.raises(ValueError, match='lr_schedule'):
    optim.learning_rate_schedule(cfg)
