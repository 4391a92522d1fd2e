"""Diagonal Gaussians as distribution objects: the encoder's q(z|x) and the N(0, I) prior.

A distribution object is a pytree of arrays (a ``flax.struct`` dataclass), so
it crosses ``jit``, ``vmap`` and ``grad`` like any array, with the
interface of distrax / TFP on JAX:

* ``sample(seed, sample_shape)`` -> z ``[*sample_shape, *batch, L]``,
  reparametrized (differentiable in the parameters);
* ``sample_and_log_prob(seed, sample_shape)`` -> (z, log q(z)) in one pass;
* ``log_prob(z)`` -> ``[...]`` summed over the event (the last axis);
* ``kl_per_dim(prior)`` / ``kl_divergence(prior)``: KL(q || prior) in closed
  form where one exists (``None`` otherwise: the ELBO then uses the
  Monte-Carlo KL, log q(z) - log p(z) at the samples).

The densities are written out in plain jnp, q's in the order of distrax's
``Independent(Normal)`` (``.distrax()`` builds that object; the tests check
the draws agree bit for bit and the densities to an ulp), so that the
Gaussian families import no distrax or TensorFlow Probability: seconds of
every run's start-up. The draws are
distrax's arithmetic on eps from ``vae_jax.prng.normal``: the same numbers as
``distrax``'s ``jax.random.normal``, in a form XLA:CPU fuses. The closed-form
KL to N(0, I) is the lecture's formula in ``vae_jax.distributions``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from vae_jax import distributions as D
from vae_jax import prng

Array = jax.Array
HALF_LOG_2PI = 0.5 * D.LOG_2PI     # distrax's constant, so that log q matches it bit for bit


def _log_prob_in_distrax_order(z: Array, loc: Array, scale: Array) -> Array:
  """log N(z | loc, diag scale^2) summed over the last axis.

  ``vae_jax.distributions.normal_log_prob`` is the same formula; this one
  keeps distrax's order of operations, so that q's log-density (and every
  recorded IWAE estimate) keeps the numbers it had when q was distrax's."""
  log_unnormalized = -0.5 * jnp.square((z - loc) / scale)
  return jnp.sum(log_unnormalized - (HALF_LOG_2PI + jnp.log(scale)), axis=-1)


def _distrax_normal(loc: Array, scale: Array):
  """The same diagonal Gaussian as a distrax distribution (for comparisons)."""
  import distrax  # pylint: disable=g-import-not-at-top  (seconds: only where asked for)
  return distrax.Independent(distrax.Normal(loc, scale), 1)


class NoClosedFormKL:
  """For families whose KL to any prior has no closed form: the objectives then use
  the Monte-Carlo KL (``objectives.kl_terms``)."""

  def kl_per_dim(self, prior) -> None:
    del prior
    return None

  def kl_divergence(self, prior) -> None:
    del prior
    return None


@struct.dataclass
class StandardNormal:
  """p(z) = N(0, I_L): the VAE's fixed prior (no parameters)."""
  latent_dim: int = struct.field(pytree_node=False)
  name = "standard"
  description = "z ~ N(0, I)"      # how a draw is made, for figures' titles

  def distrax(self):
    """The same prior as a ``distrax.Distribution``."""
    zeros = jnp.zeros((self.latent_dim,), jnp.float32)
    return _distrax_normal(zeros, jnp.ones_like(zeros))

  def log_prob(self, z: Array) -> Array:
    """log N(z | 0, I): [..., L] -> [...]."""
    return D.std_normal_log_prob(z)

  def sample(self, seed: Array, sample_shape: tuple[int, ...] = ()) -> Array:
    """z ~ N(0, I): [*sample_shape, L] (distrax's draw: one normal array of n rows)."""
    shape = tuple(sample_shape)
    n = int(np.prod(shape, dtype=np.int64))
    return jax.random.normal(seed, (n, self.latent_dim), jnp.float32).reshape(
        shape + (self.latent_dim,))


@struct.dataclass
class DiagNormal:
  """q = N(loc, diag(exp(log_scale)^2)) with batch shape ``loc.shape[:-1]``.

  Attributes:
    loc: [..., L] means.
    log_scale: [..., L] log standard deviations.
  """
  loc: Array
  log_scale: Array
  name = "gaussian"
  # log_prob at any z (so the score-function estimators, STL and DReG apply).
  has_density = True
  # Draws are a differentiable function of the parameters (the pathwise estimators apply).
  reparametrized = True

  @property
  def latent_dim(self) -> int:
    return self.loc.shape[-1]

  def mean(self) -> Array:
    return self.loc

  def point(self) -> Array:
    """The z the figures decode for this q (its mean): [..., L]."""
    return self.loc

  def distrax(self):
    """The same q as a ``distrax.Distribution`` (event: the last axis)."""
    return _distrax_normal(self.loc, jnp.exp(self.log_scale))

  def _draw(self, seed: Array, sample_shape) -> tuple[Array, Array, Array]:
    """(eps, scale, z = scale * eps + loc): distrax.Normal's draw and arithmetic,
    with its ``jax.random.normal`` eps drawn by ``prng.normal`` (the same bits,
    fused on CPU)."""
    scale = jnp.exp(self.log_scale)
    eps = prng.normal(seed, tuple(sample_shape) + jnp.broadcast_shapes(self.loc.shape, scale.shape),
                      jnp.result_type(self.loc, scale))
    return eps, scale, scale * eps + self.loc

  def sample(self, seed: Array, sample_shape: tuple[int, ...] = ()) -> Array:
    """z = loc + exp(log_scale) * eps, eps ~ N(0, I): [*sample_shape, ..., L]."""
    return self._draw(seed, sample_shape)[2]

  def sample_and_log_prob(self, seed: Array, sample_shape: tuple[int, ...] = ()
                          ) -> tuple[Array, Array]:
    """(z, log q(z)); log q from eps directly: -|eps|^2/2 - sum log sigma - L log(2 pi)/2.

    The same numbers as ``self.distrax().sample_and_log_prob`` (its formula, in its order).
    """
    eps, scale, z = self._draw(seed, sample_shape)
    return z, jnp.sum(-0.5 * jnp.square(eps) - HALF_LOG_2PI - jnp.log(scale), -1)

  def log_prob(self, z: Array) -> Array:
    """log q(z): [*S, ..., L] -> [*S, ...]."""
    return _log_prob_in_distrax_order(z, self.loc, jnp.exp(self.log_scale))

  def entropy(self) -> Array:
    return D.normal_entropy(self.log_scale)

  def kl_per_dim(self, prior) -> Array | None:
    """KL(q_l || p_l) per latent dimension, [..., L], where closed: a N(0, I) prior."""
    if isinstance(prior, StandardNormal):
      # The lecture's closed form, written out (distrax's Normal-Normal KL costs an
      # extra expm1 per latent in the training step: 2% more transcendentals).
      return D.kl_normal_std_normal(self.loc, self.log_scale, event_ndims=0)
    return None

  def kl_divergence(self, prior) -> Array | None:
    """KL(q || p) in closed form, [...], or None where there is none."""
    per_dim = self.kl_per_dim(prior)
    return None if per_dim is None else jnp.sum(per_dim, -1)
