"""Learned priors: a mixture of diagonal Gaussians (``mog``) and the VampPrior (``vamp``).

  p(z) = sum_k pi_k N(z | mu_k, diag sigma_k^2),

* ``mog``: pi, mu and sigma are free parameters (K components);
* ``vamp`` (Tomczak & Welling, 2018): pi_k = 1/K and N(mu_k, sigma_k^2) is the
  encoder's q(z | u_k) at K learned pseudo-inputs u_k, so the prior is the
  aggregate posterior of K points. With a flow posterior the components are
  the encoder's Gaussian before the flow.

Neither has a closed-form KL to a Gaussian q: the ELBO uses the Monte-Carlo
KL, log q(z) - log p(z) at the samples.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct

from vae_jax import distributions as D
from vae_jax import prng

Array = jax.Array


@struct.dataclass
class DiagNormalMixture:
  """sum_k softmax(logits)_k N(loc_k, diag exp(log_scale_k)^2).

  Attributes:
    logits: [K] mixture weights' logits.
    loc: [K, L] component means.
    log_scale: [K, L] component log standard deviations.
  """
  logits: Array
  loc: Array
  log_scale: Array
  name: str = struct.field(pytree_node=False, default="mog")
  description: str = struct.field(pytree_node=False, default="z ~ a mixture of Gaussians")

  @property
  def latent_dim(self) -> int:
    return self.loc.shape[-1]

  @property
  def num_components(self) -> int:
    return self.loc.shape[0]

  def component_log_probs(self, z: Array) -> Array:
    """log N(z | mu_k, sigma_k^2) for every k: [..., L] -> [..., K].

    The squared distance as matrix products, |z|^2/s^2 - 2 z.mu/s^2 + |mu|^2/s^2,
    so the cost is two [N, L] x [L, K] products instead of a [N, K, L] tensor
    (what makes 500 pseudo-inputs affordable at IWAE-5000: 43x faster than
    distrax's MixtureSameFamily with its gradient). The three terms cancel where
    z is near mu_k and sigma_k is small: about 1e-3 nats of float32 error for 50
    components of scale 0.05 at |mu| ~ 3, against 3e-6 for the direct [N, K, L]
    form (measured in tests/test_families.py's setting).
    """
    inv_var = jnp.exp(-2.0 * self.log_scale)                            # [K, L]
    quad = (jnp.square(z) @ inv_var.T - 2.0 * (z @ (self.loc * inv_var).T)
            + jnp.sum(jnp.square(self.loc) * inv_var, -1))                # [..., K]
    log_norm = -jnp.sum(self.log_scale, -1) - 0.5 * self.latent_dim * D.LOG_2PI
    return -0.5 * jnp.maximum(quad, 0.0) + log_norm

  def log_prob(self, z: Array) -> Array:
    """log p(z) = logsumexp_k [log pi_k + log N(z | mu_k, sigma_k^2)]: [..., L] -> [...]."""
    log_pi = jax.nn.log_softmax(self.logits)
    return jax.nn.logsumexp(self.component_log_probs(z) + log_pi, -1)

  def sample(self, seed: Array, sample_shape: tuple[int, ...] = ()) -> Array:
    """k ~ Categorical(pi), z = mu_k + sigma_k * eps: [*sample_shape, L]."""
    k_key, e_key = jax.random.split(seed)
    k = jax.random.categorical(k_key, self.logits, shape=tuple(sample_shape))
    eps = prng.normal(e_key, tuple(sample_shape) + (self.latent_dim,))
    return self.loc[k] + jnp.exp(self.log_scale[k]) * eps


def uniform_logits(num_components: int) -> Array:
  """Equal weights (the VampPrior's 1/K)."""
  return jnp.full((num_components,), -math.log(num_components), jnp.float32)
