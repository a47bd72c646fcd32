"""VGG max-pool gradients stay finite when XLA skips its optimizations.

jnp.max's gradient divides by the number of window taps equal to the max;
XLA without its usual passes recomputed the fused batch norm + hardtanh
with different rounding for the max and for that comparison, the count
came out 0 and every VGG gradient NaN after one optimizer step (exact
scale 1 / bias 0 at init hid it). The pool now uses elementwise maxima.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from las_jax.models.extractors import VGGExtractor


def _vgg_grads(disable_optimizations: bool) -> list[np.ndarray]:
  ext = VGGExtractor(16, channels=(8, 16), rngs=nnx.Rngs(0))
  # Move every parameter off its init value, as one Adam step does: with
  # batch norm scale exactly 1 and bias 0 both roundings agreed.
  params = nnx.state(ext, nnx.Param)
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(7), len(leaves))
  leaves = [
    x + 1e-3 * jnp.sign(jax.random.normal(k, x.shape))
    for x, k in zip(leaves, keys, strict=True)
  ]
  nnx.update(ext, jax.tree.unflatten(treedef, leaves))
  feats = jax.random.normal(jax.random.key(1), (2, 16, 16))
  lengths = jnp.array([16, 11], jnp.int32)

  def loss_fn(ext):
    return jnp.sum(jnp.sin(ext(feats, lengths, train=True)[0]))

  # A fresh jitted function per call, so the flag is read when compiling.
  grad_fn = nnx.jit(nnx.grad(loss_fn))
  jax.config.update('jax_disable_most_optimizations', disable_optimizations)
  try:
    grads = grad_fn(ext)
  finally:
    jax.config.update('jax_disable_most_optimizations', False)
  return [np.asarray(x) for x in jax.tree.leaves(nnx.state(grads))]


def test_vgg_grads_finite_and_equal_without_xla_optimizations():
  plain = _vgg_grads(disable_optimizations=True)
  optimized = _vgg_grads(disable_optimizations=False)
  for got, want in zip(plain, optimized, strict=True):
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
