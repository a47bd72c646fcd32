"""Kernels with hand-written gradients, each beside its plain reference.

XLA:CPU runs some autodiff formulations slowly (re-laid-out weights inside
loops, a filter gradient 3-5x slower than its convolution, activation-sized
temporaries kept alive). Each module here holds one such operation twice:

- a reference, written plainly and differentiated by JAX (on GPU and TPU
  XLA then uses cuDNN's or the TPU's own kernels);
- a CPU version with a hand-written backward pass (`jax.custom_vjp`),
  tested against the reference's gradients.

The public function of each module picks one per platform with
`lax.platform_dependent` when the computation is lowered: CPU takes the
hand-written version, GPU and TPU the reference (no device measurement has
shown a hand-written one faster there; a module's docstring records it if
one does). Each CPU version `<op>_cpu` runs under `jax.named_scope` of its
name, so its ops carry it in profiles and in the program's locations:
tests/ops_test.py checks that a train step exported for 'cuda' or 'tpu'
holds none of them.

Every operation accepts bfloat16 inputs (mixed precision): the CPU
versions then compute their backward pass in float32.
"""
