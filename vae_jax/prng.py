"""Threefry draws equal to ``jax.random``'s bit for bit, written for XLA:CPU.

JAX lowers its threefry2x32 hash on CPU as a rolled loop of five iterations
(to keep compile times short): each iteration is a kernel of its own, and the
loop copies its carried buffers between them. Written out in ``jnp``, the same
20 rounds are one element-wise expression that XLA fuses with the draw's
consumer (the Bernoulli threshold of ``data.binarize``, the Normal's inverse
error function). In the default VAE's training step on a 2-core CPU the two
draws (dynamic binarization and the reparametrized eps) written this way save
0.43 ms of 4.7 ms a step, and 1.4 ms of 27 ms per image in the IWAE-5000
evaluation (paired against ``jax.random`` in one process; scripts/benchmarks/README.md).

``bits(key, shape)`` equals ``jax.random.bits(key, shape, jnp.uint32)`` and
``normal(key, shape, dtype)`` equals ``jax.random.normal(key, shape, dtype)``
exactly (``tests/test_prng.py``), so a run's numbers do not change: they are
JAX's default threefry implementation with ``jax_threefry_partitionable``
(JAX's default, under which draws do not depend on sharding). For any other
key implementation, setting, dtype, or an array of 2**32 draws or more, both
call ``jax.random`` itself.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def threefry2x32(k0: jax.Array, k1: jax.Array, x0: jax.Array,
                 x1: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The Threefry-2x32 hash (20 rounds; Salmon et al. 2011), unrolled.

  Args:
    k0, k1: [] uint32, the key words.
    x0, x1: [...] uint32 counter words (broadcast together).

  Returns:
    the two [...] uint32 output words.
  """
  ks = (k0, k1, k0 ^ k1 ^ _PARITY)
  x0, x1 = x0 + ks[0], x1 + ks[1]
  for i in range(5):
    for r in _ROTATIONS[i % 2]:
      x0 = x0 + x1
      x1 = (x1 << np.uint32(r)) | (x1 >> np.uint32(32 - r))
      x1 = x0 ^ x1
    x0 = x0 + ks[(i + 1) % 3]
    x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
  return x0, x1


def _fast_words(key: jax.Array, shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array] | None:
  """The two uint32 words of a threefry key (typed or raw) when the unrolled draw
  reproduces ``jax.random``'s for ``shape``; None otherwise (another impl, the
  non-partitionable setting, 2**32 draws or more)."""
  if not jax.config.jax_threefry_partitionable or math.prod(shape) >= 2**32:
    return None
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    if key.shape or str(jax.random.key_impl(key)) != "threefry2x32":
      return None
    data = jax.random.key_data(key)
  elif (jax.config.jax_default_prng_impl == "threefry2x32" and key.shape == (2,)
        and key.dtype == jnp.uint32):
    data = key
  else:
    return None
  return data[0], data[1]


def _flat_index(shape: tuple[int, ...]) -> jax.Array:
  """[*shape] uint32 row-major element index, from one iota per axis (partitionable)."""
  index = jnp.zeros(shape, jnp.uint32)
  stride = 1
  for axis in reversed(range(len(shape))):
    index = index + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * np.uint32(stride)
    stride *= shape[axis]
  return index


def _threefry_bits(words: tuple[jax.Array, jax.Array], shape: tuple[int, ...]) -> jax.Array:
  index = _flat_index(shape)     # JAX's 64-bit counter: high word 0 below 2**32 draws
  y0, y1 = threefry2x32(words[0], words[1], jnp.zeros_like(index), index)
  return y0 ^ y1


def bits(key: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
  """[*shape] uint32 uniform bits, equal to ``jax.random.bits(key, shape, jnp.uint32)``."""
  shape = tuple(int(d) for d in shape)
  words = _fast_words(key, shape)
  if words is None:
    return jax.random.bits(key, shape, jnp.uint32)
  return _threefry_bits(words, shape)


def normal(key: jax.Array, shape: tuple[int, ...] = (), dtype=jnp.float32) -> jax.Array:
  """[*shape] standard Normal draws, equal to ``jax.random.normal(key, shape, dtype)``.

  JAX's construction: u uniform on (-1, 1) from the top 23 bits of each word
  (as a float in [1, 2) less 1, scaled), then sqrt(2) erfinv(u).
  """
  shape = tuple(int(d) for d in shape)
  words = _fast_words(key, shape) if jnp.dtype(dtype) == jnp.float32 else None
  if words is None:
    return jax.random.normal(key, shape, dtype)
  one = np.array(1.0, np.float32).view(np.uint32)
  floats = jax.lax.bitcast_convert_type((_threefry_bits(words, shape) >> np.uint32(9)) | one,
                                        jnp.float32) - np.float32(1.0)
  lo = np.nextafter(np.float32(-1.0), np.float32(0.0))
  u = jnp.maximum(lo, floats * (np.float32(1.0) - lo) + lo)
  return np.float32(np.sqrt(2)) * jax.lax.erf_inv(u)
