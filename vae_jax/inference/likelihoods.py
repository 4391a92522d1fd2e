"""The decoder's p(x|z): log-likelihood, mean and samples of its output dict.

The decoder returns ``{"logits": [..., D]}`` (Bernoulli) or
``{"mean": [..., D], "log_scale": [..., D]}`` (Gaussian); these three
functions are the only places that read that dict.
"""

from __future__ import annotations

import jax

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
