"""The VAE objective: the evidence lower bound (ELBO) and friends.

For one example x, a posterior q(z|x, phi) and a prior p(z) (distribution
objects, ``vae_jax.families``: q = ``model.apply(params, x, method="encode")``,
p = ``model.apply(params, method="prior_distribution")``):

  ELBO(x) = E_q[log p(x|z, theta)] - KL(q(z|x, phi) || p(z)),

with the expectation estimated by S reparametrized samples (the lecture's
reparametrization trick; for a Gaussian q, z_s = mu + sigma * eps_s) and the
KL in closed form where one exists (a Gaussian q and p = N(0, I)); otherwise
the Monte-Carlo KL mean_s [log q(z_s|x) - log p(z_s)] on the same samples.
Every function returns per-example terms ``[B]`` in nats; the scalar loss is
their negated mean, reduced last.

``iwae_bound`` is the importance-weighted bound of Burda et al. (2015),
log (1/K) sum_k p(x, z_k) / q(z_k|x), which tends to log p(x) as K grows: the
streamed one of ``vae_jax.inference.iwae`` with every sample in one chunk.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vae_jax.inference import iwae
from vae_jax.inference.likelihoods import decoder_mean, decoder_sample, log_likelihood  # noqa: F401

Array = jax.Array


def posterior_and_prior(params: Any, x: Array, *, model: nn.Module):
  """(q(z|x), p(z)): the encoder's posterior for x: [B, D] and the prior, as objects."""
  return (model.apply(params, x, method="encode"),
          model.apply(params, method="prior_distribution"))


def kl_terms(q, prior, z: Array, log_q: Array) -> Array:
  """KL(q || p) per example, [B]: in closed form where q and p have one, else the
  Monte-Carlo estimate mean_s [log q(z_s) - log p(z_s)] on the draws z: [S, B, L]
  with their log q: [S, B]."""
  kl = q.kl_divergence(prior)
  if kl is not None:
    return kl
  return jnp.mean(log_q - prior.log_prob(z), axis=0)


def elbo(params: Any, x: Array, key: Array, *, model: nn.Module,
         num_samples: int = 1, beta: float = 1.0, q=None) -> tuple[Array, dict]:
  """Reparametrized Monte-Carlo ELBO, with the analytic KL where there is one.

  Bind the model with ``functools.partial(elbo, model=vae)`` to get
  ``elbo(params, x, key, num_samples=...)``. The one ELBO: of the encoder's
  q(z|x) (training), or of any q given (the per-example q* of
  ``vae_jax.inference.amortization``).

  Args:
    params: the VAE's parameters (``{"params": {"encoder", "decoder"[, "prior"]}}``).
    x: [B, D] data batch.
    key: PRNG key for the S draws z ~ q(z|x).
    model: the ``vae_jax.models.VAE`` module (static).
    num_samples: S, the number of z samples per example.
    beta: weight of the KL term (1 gives the ELBO; other values are a
      beta-VAE objective and no longer a bound).
    q: None for the encoder's q(z|x); else q itself, a distribution object
      with batch [B] (then the encoder is not used).

  Returns:
    (loss, aux): loss = -mean_b(recon_b - beta * kl_b), a scalar;
    aux has per-example [B] arrays ``recon`` (E_q log p(x|z)), ``kl``
    (KL(q||p(z)), analytic or Monte-Carlo) and ``elbo`` (recon - kl), in nats.
  """
  if q is None:
    q, prior = posterior_and_prior(params, x, model=model)
  else:
    prior = model.apply(params, method="prior_distribution")
  z, log_q = q.sample_and_log_prob(key, (num_samples,))          # [S, B, L], [S, B]
  dec_out = model.apply(params, z, method="decode")              # [S, B, D]
  recon = jnp.mean(log_likelihood(x, dec_out), axis=0)           # [B]
  kl = kl_terms(q, prior, z, log_q)                              # [B]
  per_example = recon - kl
  loss = -jnp.mean(recon - beta * kl)
  return loss, {"recon": recon, "kl": kl, "elbo": per_example}


def iwae_bound(params: Any, x: Array, key: Array, *, model: nn.Module,
               num_samples: int) -> Array:
  """Importance-weighted lower bound on log p(x) with K = num_samples.

  log p(x) >= log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x),  z_k ~ q(z|x); all
  K draws in one chunk of ``iwae.iwae_bound_streamed`` (the same code path
  and draws as the streamed evaluation with ``chunk_size = K``).

  Returns:
    [B] bounds in nats (K = 1 is the single-sample ELBO).
  """
  return iwae.iwae_bound_streamed(params, x, key, model=model, num_samples=num_samples,
                                  chunk_size=num_samples)


def sample_prior(key: Array, params: Any, *, model: nn.Module,
                 num_samples: int) -> dict[str, Array]:
  """Decodes z ~ p(z) (the model's prior): the decoder output for [num_samples] z's."""
  z = model.apply(params, method="prior_distribution").sample(key, (num_samples,))
  return model.apply(params, z, method="decode")


def reconstruct(params: Any, x: Array, *, model: nn.Module) -> Array:
  """Decoder mean at q's central point (the Gaussian's mean, pushed through a
  flow if any), E[x | z = point(q(z|x))]: [B, D]."""
  q = model.apply(params, x, method="encode")
  return decoder_mean(model.apply(params, q.point(), method="decode"))


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
