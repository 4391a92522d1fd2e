"""Amortized vs per-example variational inference: the gaps of Cremer et al. (2018).

For a trained decoder theta and examples x_i, three numbers bound each other:

  log p(x)  >=  ELBO(q*_i)  >=  ELBO(q(z|x_i, phi))
  (IW estimate)  (per-example optimum)  (the encoder's amortized q)

* approximation gap = log p(x) - ELBO(q*): the price of the variational
  family (diagonal Gaussians) itself;
* amortization gap = ELBO(q*) - ELBO(q_phi): the price of predicting q from x
  with one network instead of optimizing it per example.

``optimize_local`` is the non-amortized E-step of variational EM: the decoder
fixed, each example's (mu_i, log sigma_i) are free parameters, initialized at
the encoder's output and moved by Adam on the reparametrized ELBO. The ELBO
decomposes over examples, so one batched optimizer optimizes them all.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from vae_jax import distributions as D
from vae_jax import objectives
from vae_jax.errors import UserError

Array = jax.Array


def elbo_given_q(params: Any, x: Array, key: Array, q_mean: Array, q_log_scale: Array, *,
                 model, num_samples: int) -> Array:
  """Per-example ELBO [B] of an explicit diagonal q(z) = N(q_mean, exp(q_log_scale)^2).

  Reparametrized Monte-Carlo reconstruction term, analytic KL to N(0, I).
  """
  z = D.normal_sample(key, q_mean, q_log_scale, (num_samples,))            # [S, B, L]
  dec_out = model.apply(params, z, method="decode")
  recon = jnp.mean(objectives.log_likelihood(x, dec_out), 0)
  return recon - D.kl_normal_std_normal(q_mean, q_log_scale)


def check_count(name: str, value: int) -> None:
  """Raises UserError unless ``value`` is a positive integer (a number of samples or steps)."""
  if int(value) != value or value < 1:
    raise UserError(f"{name} must be a positive integer, got {value}.")


def _over_chunks(fn, combine, key: Array, num_samples: int, chunk: int) -> Array:
  """Combines fn(k, n) over chunks that hold exactly ``num_samples`` samples.

  The chunks are num_samples // chunk of ``chunk`` samples (a ``scan``) and,
  if needed, one of the remaining num_samples % chunk; chunk i draws with
  fold_in(key, i). ``fn(k, n)`` summarizes n samples as [B] (a sum or a
  logsumexp); ``combine`` merges two summaries (``jnp.add``, ``jnp.logaddexp``).
  Memory is O(chunk x B x D).
  """
  check_count("num_samples", num_samples)
  check_count("chunk", chunk)
  chunk = min(chunk, num_samples)
  num_full, rest = divmod(num_samples, chunk)
  total = fn(jax.random.fold_in(key, 0), chunk)
  if num_full > 1:
    total, _ = jax.lax.scan(
        lambda acc, i: (combine(acc, fn(jax.random.fold_in(key, i), chunk)), None),
        total, jnp.arange(1, num_full))
  if rest:
    total = combine(total, fn(jax.random.fold_in(key, num_full), rest))
  return total


def elbo_estimate(params: Any, x: Array, key: Array, q_mean: Array, q_log_scale: Array, *,
                  model, num_samples: int, chunk: int = 100) -> Array:
  """``elbo_given_q`` with ``num_samples`` samples drawn in chunks: [B].

  Any positive ``num_samples`` is used exactly (chunks of ``chunk`` plus a
  remainder), with memory O(chunk x B x D).
  """
  def weighted(k, n):  # the chunk's share n / num_samples of the mean
    return (n / num_samples) * elbo_given_q(params, x, k, q_mean, q_log_scale, model=model,
                                            num_samples=n)
  return _over_chunks(weighted, jnp.add, key, num_samples, chunk)


def iw_log_likelihood(params: Any, x: Array, key: Array, q_mean: Array, q_log_scale: Array,
                      *, model, num_samples: int, chunk: int = 100) -> Array:
  """Importance-weighted estimate of log p(x) with proposal q: [B].

  log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k), z_k ~ q, accumulated over chunks
  of samples with a running logsumexp (memory O(chunk x B x D)); any positive
  K = num_samples is used exactly. A consistent, downward-biased estimate
  (the IWAE bound, Burda et al. 2015).
  """
  def log_sum_w(k, n):
    z = D.normal_sample(k, q_mean, q_log_scale, (n,))                      # [n, B, L]
    dec_out = model.apply(params, z, method="decode")
    log_w = (objectives.log_likelihood(x, dec_out) + D.std_normal_log_prob(z)
             - D.normal_log_prob(z, q_mean, q_log_scale))                    # [n, B]
    return jax.nn.logsumexp(log_w, 0)

  return _over_chunks(log_sum_w, jnp.logaddexp, key, num_samples, chunk) - math.log(num_samples)


@functools.partial(jax.jit, static_argnames=("model", "num_steps", "num_samples",
                                             "learning_rate"))
def optimize_local(params: Any, x: Array, key: Array, q_mean: Array, q_log_scale: Array, *,
                   model, num_steps: int, num_samples: int = 8,
                   learning_rate: float = 1e-2) -> tuple[Array, Array, Array]:
  """Per-example q* = argmax_q ELBO(q) with the decoder fixed (non-amortized E-step).

  Args:
    params: VAE parameters (only the decoder is used).
    x: [B, D] examples.
    key: PRNG key; step t uses fold_in(key, t).
    q_mean, q_log_scale: [B, L] initial variational parameters (e.g. the
      encoder's output).
    num_steps: Adam steps (learning rate cosine-decayed to 1% over them).
    num_samples: reparametrized samples per step.

  Returns:
    (q_mean [B, L], q_log_scale [B, L], trace [num_steps]): the optimized
    parameters and the mean ELBO estimate along the way.
  """
  # Cosine decay to 1% of the rate: the Monte-Carlo noise floor of Adam shrinks
  # with the step size, so q settles at the optimum instead of jittering around it.
  tx = optax.adam(optax.cosine_decay_schedule(learning_rate, num_steps, alpha=0.01))

  def loss(q, k):
    return -jnp.sum(elbo_given_q(params, x, k, q[0], q[1], model=model,
                                 num_samples=num_samples))

  def step(carry, t):
    q, opt = carry
    value, g = jax.value_and_grad(loss)(q, jax.random.fold_in(key, t))
    updates, opt = tx.update(g, opt, q)
    return (optax.apply_updates(q, updates), opt), -value / x.shape[0]

  q0 = (q_mean, q_log_scale)
  (q, _), trace = jax.lax.scan(step, (q0, tx.init(q0)), jnp.arange(num_steps))
  return q[0], q[1], trace


def gaps(params: Any, x: Array, key: Array, *, model, local_steps: int = 1000,
         local_learning_rate: float = 1e-2, local_samples: int = 8,
         eval_samples: int = 1000, iw_samples: int = 1000) -> dict[str, Array]:
  """Amortized ELBO, optimized ELBO, IW log p(x) and the two gaps, per example.

  Args:
    params: VAE parameters (a trained decoder; the encoder gives the amortized q).
    x: [B, D] examples.
    key: PRNG key (split into optimization, ELBO and IW streams).
    local_steps, local_learning_rate, local_samples: ``optimize_local``'s settings.
    eval_samples: samples of each ELBO estimate (the same draws for both q's).
    iw_samples: samples of the IW estimate of log p(x). Every count is used
      exactly; counts below 1 raise UserError.

  Returns:
    dict of [B] arrays: ``amortized_elbo``, ``optimized_elbo``,
    ``log_likelihood_iw`` (IW estimate with the optimized q* as proposal),
    ``amortization_gap``, ``approximation_gap``, and the per-example
    optimized q (``q_mean``, ``q_log_scale``) and ``trace`` of the local
    optimization (mean ELBO per step).
  """
  for name, value in (("local_steps", local_steps), ("local_samples", local_samples),
                      ("eval_samples", eval_samples), ("iw_samples", iw_samples)):
    check_count(name, value)
  k_opt, k_eval, k_iw = jax.random.split(key, 3)
  enc_mean, enc_log_scale = model.apply(params, x, method="encode")
  q_mean, q_log_scale, trace = optimize_local(
      params, x, k_opt, enc_mean, enc_log_scale, model=model, num_steps=local_steps,
      num_samples=local_samples, learning_rate=local_learning_rate)
  # Same noise for both ELBOs (common random numbers): the gap is less noisy.
  evaluate = jax.jit(functools.partial(elbo_estimate, params, x, k_eval, model=model,
                                       num_samples=eval_samples))
  amortized = evaluate(enc_mean, enc_log_scale)
  optimized = evaluate(q_mean, q_log_scale)
  iw = jax.jit(functools.partial(iw_log_likelihood, model=model, num_samples=iw_samples))
  # The optimized q* is the better proposal; with a poor proposal the IW
  # estimate has heavy-tailed weights (it is a lower bound only on average).
  log_px = iw(params, x, k_iw, q_mean, q_log_scale)
  return {"amortized_elbo": amortized, "optimized_elbo": optimized,
          "log_likelihood_iw": log_px, "amortization_gap": optimized - amortized,
          "approximation_gap": log_px - optimized, "q_mean": q_mean,
          "q_log_scale": q_log_scale, "trace": trace}
