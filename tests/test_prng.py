"""vae_jax.prng: the unrolled threefry draws equal jax.random's, bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import data, prng
from vae_jax.families.normal import DiagNormal, StandardNormal

SHAPES = [(), (1,), (5,), (3, 7), (2, 3, 4), (100, 392), (1, 100, 50)]
KEYS = {"typed": jax.random.key(3), "raw": jax.random.PRNGKey(11),
        "folded": jax.random.fold_in(jax.random.key(3), 2**31 + 5)}


def test_threefry2x32_known_answers():
  # Random123's known-answer vectors for Threefry-2x32 with 20 rounds
  # (kat_vectors: key, counter -> output), an implementation independent of JAX.
  cases = [((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6b200159, 0x99ba4efe)),
           ((0xffffffff, 0xffffffff), (0xffffffff, 0xffffffff), (0x1cb996fc, 0xbb002be7)),
           ((0x13198a2e, 0x03707344), (0x243f6a88, 0x85a308d3), (0xc4923a9c, 0x483df7a0))]
  for key, counter, want in cases:
    got = prng.threefry2x32(*(jnp.uint32(v) for v in key + counter))
    assert tuple(int(v) for v in got) == want


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kind", list(KEYS))
def test_bits_and_normal_equal_jax_random(shape, kind):
  key = KEYS[kind]
  np.testing.assert_array_equal(prng.bits(key, shape), jax.random.bits(key, shape, jnp.uint32))
  np.testing.assert_array_equal(prng.normal(key, shape), jax.random.normal(key, shape))


def test_equal_under_jit_and_vmap():
  keys = jax.random.split(jax.random.key(0), 4)
  shape = (6, 5)
  np.testing.assert_array_equal(jax.vmap(lambda k: prng.normal(k, shape))(keys),
                                jax.vmap(lambda k: jax.random.normal(k, shape))(keys))
  np.testing.assert_array_equal(
      jax.jit(lambda k: prng.bits(k, shape))(keys[1]),
      jax.jit(lambda k: jax.random.bits(k, shape, jnp.uint32))(keys[1]))


def test_other_keys_settings_and_dtypes_fall_back_to_jax_random():
  rbg = jax.random.key(0, impl="rbg")
  np.testing.assert_array_equal(prng.normal(rbg, (4,)), jax.random.normal(rbg, (4,)))
  key = jax.random.key(1)
  np.testing.assert_array_equal(prng.normal(key, (4,), jnp.bfloat16),
                                jax.random.normal(key, (4,), jnp.bfloat16))
  before = jax.config.jax_threefry_partitionable
  jax.config.update("jax_threefry_partitionable", not before)
  try:   # the other counter layout: jax.random itself
    np.testing.assert_array_equal(prng.bits(key, (3, 5)), jax.random.bits(key, (3, 5), jnp.uint32))
  finally:
    jax.config.update("jax_threefry_partitionable", before)
  with pytest.raises(Exception):   # a batch of keys is jax.random's error, not a silent draw
    prng.normal(jax.random.split(key, 3), (2,))


@pytest.mark.slow
def test_diag_normal_draws_equal_distrax():
  loc = jax.random.normal(jax.random.key(1), (7, 5))
  q = DiagNormal(loc, 0.3 * jax.random.normal(jax.random.key(2), (7, 5)))
  key = jax.random.key(4)
  prior = StandardNormal(5)
  for sample_shape in [(), (3,), (2, 4)]:
    # Compared under jit, as the objectives run them (jit may use FMAs).
    ours = jax.jit(lambda k, s=sample_shape: q.sample_and_log_prob(k, s))
    ref = jax.jit(lambda k, s=sample_shape: q.distrax().sample_and_log_prob(seed=k,
                                                                           sample_shape=s))
    (z, log_q), (z_ref, log_q_ref) = ours(key), ref(key)
    np.testing.assert_array_equal(z, z_ref)
    # The same formula; XLA may fuse it differently from distrax's (1 ulp).
    np.testing.assert_allclose(log_q, log_q_ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(
        jax.jit(lambda k, s=sample_shape: q.sample(k, s))(key),
        jax.jit(lambda k, s=sample_shape: q.distrax().sample(seed=k, sample_shape=s))(key))
    # log q and log p(z) at any z: written out in jnp in distrax's order (XLA may fuse
    # the two programs differently: 1 ulp).
    np.testing.assert_allclose(jax.jit(q.log_prob)(z), jax.jit(q.distrax().log_prob)(z),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(
        jax.jit(lambda k, s=sample_shape: prior.sample(k, s))(key),
        jax.jit(lambda k, s=sample_shape: prior.distrax().sample(seed=k, sample_shape=s))(key))
    np.testing.assert_allclose(jax.jit(prior.log_prob)(z),
                               jax.jit(prior.distrax().log_prob)(z), rtol=1e-6, atol=1e-6)


def test_binarize_uses_the_same_bits_as_before():
  x = jax.random.uniform(jax.random.key(5), (9, 13))
  key = jax.random.key(6)
  bits = jax.random.bits(key, (9, 7), jnp.uint32)            # the jax.random formulation
  u = jnp.concatenate([bits & 0xFFFF, bits >> 16], axis=-1)[:, :13]
  want = ((u.astype(jnp.float32) + 0.5) / 65536 < x).astype(x.dtype)
  np.testing.assert_array_equal(jax.jit(data.binarize)(x, key), want)
