"""The VAE objective: the evidence lower bound (ELBO) and friends.

For one example x and q(z|x, phi) = N(mu(x), diag sigma(x)^2):

  ELBO(x) = E_q[log p(x|z, theta)] - KL(q(z|x, phi) || p(z)),   p(z) = N(0, I),

with the expectation estimated by S reparametrized samples
z_s = mu + sigma * eps_s, eps_s ~ N(0, I) (the lecture's reparametrization
trick) and the KL in closed form. Every function returns per-example terms
``[B]`` in nats; the scalar loss is their negated mean, reduced last.

``iwae_bound`` is the importance-weighted bound of Burda et al. (2015),
log (1/K) sum_k p(x, z_k) / q(z_k|x), which tends to log p(x) as K grows.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vae_jax import distributions as D

Array = jax.Array


def log_likelihood(x: Array, dec_out: dict[str, Array]) -> Array:
  """log p(x|z) summed over data dimensions.

  Args:
    x: [B, D] data (broadcasts against a leading sample axis of dec_out).
    dec_out: decoder output, ``{"logits": [..., B, D]}`` or
      ``{"mean": ..., "log_scale": ...}``.

  Returns:
    [..., B] log-likelihoods in nats.
  """
  if "logits" in dec_out:
    return D.bernoulli_log_prob(x, dec_out["logits"])
  return D.normal_log_prob(x, dec_out["mean"], dec_out["log_scale"])


def decoder_mean(dec_out: dict[str, Array]) -> Array:
  """E[x|z] of the decoder's distribution: sigmoid(logits) or the mean."""
  if "logits" in dec_out:
    return jax.nn.sigmoid(dec_out["logits"])
  return dec_out["mean"]


def decoder_sample(key: Array, dec_out: dict[str, Array]) -> Array:
  """One draw x ~ p(x|z) for each row of the decoder output."""
  if "logits" in dec_out:
    return D.bernoulli_sample(key, dec_out["logits"])
  return D.normal_sample(key, dec_out["mean"], dec_out["log_scale"])


def elbo(params: Any, x: Array, key: Array, *, model: nn.Module,
         num_samples: int = 1, beta: float = 1.0) -> tuple[Array, dict]:
  """Reparametrized Monte-Carlo ELBO with an analytic KL.

  Bind the model with ``functools.partial(elbo, model=vae)`` to get
  ``elbo(params, x, key, num_samples=...)``.

  Args:
    params: the VAE's parameters (``{"params": {"encoder", "decoder"}}``).
    x: [B, D] data batch.
    key: PRNG key for eps ~ N(0, I).
    model: the ``vae_jax.models.VAE`` module (static).
    num_samples: S, the number of z samples per example.
    beta: weight of the KL term (1 gives the ELBO; other values are a
      beta-VAE objective and no longer a bound).

  Returns:
    (loss, aux): loss = -mean_b(recon_b - beta * kl_b), a scalar;
    aux has per-example [B] arrays ``recon`` (E_q log p(x|z)), ``kl``
    (KL(q||p(z))) and ``elbo`` (recon - kl), all in nats.
  """
  mean, log_scale = model.apply(params, x, method="encode")       # [B, L]
  z = D.normal_sample(key, mean, log_scale, (num_samples,))      # [S, B, L]
  dec_out = model.apply(params, z, method="decode")              # [S, B, D]
  recon = jnp.mean(log_likelihood(x, dec_out), axis=0)           # [B]
  kl = D.kl_normal_std_normal(mean, log_scale)                   # [B]
  per_example = recon - kl
  loss = -jnp.mean(recon - beta * kl)
  return loss, {"recon": recon, "kl": kl, "elbo": per_example}


def iwae_bound(params: Any, x: Array, key: Array, *, model: nn.Module,
               num_samples: int) -> Array:
  """Importance-weighted lower bound on log p(x) with K = num_samples.

  log p(x) >= log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x),  z_k ~ q(z|x).

  Returns:
    [B] bounds in nats (K = 1 is the single-sample ELBO).
  """
  mean, log_scale = model.apply(params, x, method="encode")
  z = D.normal_sample(key, mean, log_scale, (num_samples,))      # [K, B, L]
  dec_out = model.apply(params, z, method="decode")
  log_w = (log_likelihood(x, dec_out) + D.std_normal_log_prob(z)
           - D.normal_log_prob(z, mean, log_scale))               # [K, B]
  return jax.nn.logsumexp(log_w, axis=0) - math.log(num_samples)


def sample_prior(key: Array, params: Any, *, model: nn.Module,
                 num_samples: int, latent_dim: int) -> dict[str, Array]:
  """Decodes z ~ N(0, I): returns the decoder output for [num_samples] z's."""
  z = jax.random.normal(key, (num_samples, latent_dim))
  return model.apply(params, z, method="decode")


def reconstruct(params: Any, x: Array, *, model: nn.Module) -> Array:
  """Decoder mean at the encoder mean, E[x | z = mu(x)]: [B, D]."""
  mean, _ = model.apply(params, x, method="encode")
  return decoder_mean(model.apply(params, mean, method="decode"))


def full_data_elbo_estimate(per_example_elbo: Array, dataset_size: int) -> Array:
  """Mini-batch estimate of the full-data ELBO, sum_{i=1}^n ELBO_i ~ (n / B) sum_b ELBO_b.

  With the batch drawn uniformly (with or without replacement) and z ~ q, the
  estimate is unbiased for the full-data ELBO (the lecture's mini-batching +
  Monte-Carlo step); ``per_example_elbo`` is ``aux["elbo"]`` of ``elbo``: [B].
  """
  return dataset_size * jnp.mean(per_example_elbo)


def bits_per_dim(neg_log_prob_nats: Array, num_dims: int) -> Array:
  """Converts a per-example negative log-likelihood in nats to bits/dim."""
  return neg_log_prob_nats / (num_dims * math.log(2.0))


def bind(model: nn.Module):
  """Returns ``(elbo_fn, iwae_fn)`` with the model bound."""
  return (functools.partial(elbo, model=model),
          functools.partial(iwae_bound, model=model))
