"""Discrete distributions as distribution objects: independent Bernoullis and a Categorical.

The same interface as the Gaussian families (``vae_jax.families.normal``):
``sample(seed, sample_shape)``, ``log_prob(z)``, ``sample_and_log_prob``,
``has_density = True`` (log q at any z, so the score-function estimators
apply), but no reparametrization (``reparametrized = False``): there is no
differentiable path z = g(phi, eps) to a discrete z, so a draw carries no
gradient to the logits. The discrete VAE's q(z|x) is a ``Bernoulli``; the
estimators of grad E_q[f] take either (``vae_jax.inference.estimators``).

The draws and densities are ``vae_jax.distributions``' functions, so they are
the same numbers as before these objects existed.
"""

from __future__ import annotations

import jax
from flax import struct

from vae_jax import distributions as D

Array = jax.Array


@struct.dataclass
class Bernoulli:
  """q(z) = prod_l Bernoulli(z_l | sigmoid(logits_l)), z in {0, 1}^L; batch shape
  ``logits.shape[:-1]``.

  Attributes:
    logits: [..., L] log-odds.
  """
  logits: Array
  name = "bernoulli"
  has_density = True          # log q at any z
  reparametrized = False      # draws carry no gradient

  @property
  def latent_dim(self) -> int:
    return self.logits.shape[-1]

  def sample(self, seed: Array, sample_shape: tuple[int, ...] = ()) -> Array:
    """z in {0, 1}, as the logits' dtype: [*sample_shape, ..., L]."""
    return D.bernoulli_sample(seed, self.logits, tuple(sample_shape))

  def log_prob(self, z: Array) -> Array:
    """log q(z) = sum_l z_l a_l - softplus(a_l): [*S, ..., L] -> [*S, ...]."""
    return D.bernoulli_log_prob(z, self.logits)

  def sample_and_log_prob(self, seed: Array, sample_shape: tuple[int, ...] = ()
                          ) -> tuple[Array, Array]:
    z = self.sample(seed, sample_shape)
    return z, self.log_prob(z)

  def mode(self) -> Array:
    """The most probable z: each bit 1 iff its logit > 0, [..., L]."""
    return (self.logits > 0).astype(self.logits.dtype)

  def entropy(self) -> Array:
    """H(q) summed over the L bits: [...]."""
    return D.bernoulli_entropy(self.logits)


@struct.dataclass
class Categorical:
  """q(z) = Categorical(z | softmax(logits)), z in {0, ..., K - 1}; batch shape
  ``logits.shape[:-1]``.

  Attributes:
    logits: [..., K] unnormalized log-probabilities.
  """
  logits: Array
  name = "categorical"
  has_density = True
  reparametrized = False

  def sample(self, seed: Array, sample_shape: tuple[int, ...] = ()) -> Array:
    """Integer z: [*sample_shape, ...]."""
    return D.categorical_sample(seed, self.logits, tuple(sample_shape))

  def log_prob(self, z: Array) -> Array:
    """log softmax(logits)_z: [*S, ...] -> [*S, ...]."""
    return D.categorical_log_prob(z, self.logits)

  def sample_and_log_prob(self, seed: Array, sample_shape: tuple[int, ...] = ()
                          ) -> tuple[Array, Array]:
    z = self.sample(seed, sample_shape)
    return z, self.log_prob(z)
