"""Amortized vs per-example variational inference: the gaps of Cremer et al. (2018).

For a trained decoder theta and examples x_i, three numbers bound each other:

  log p(x)  >=  ELBO(q*_i)  >=  ELBO(q(z|x_i, phi))
  (IW estimate)  (per-example optimum)  (the encoder's amortized q)

* approximation gap = log p(x) - ELBO(q*): the price of the variational
  family itself (diagonal Gaussians, or a Gaussian through planar or IAF
  maps: ``vae_jax.families``);
* amortization gap = ELBO(q*) - ELBO(q_phi): the price of predicting q from x
  with one network instead of optimizing it per example.

``optimize_local`` is the non-amortized E-step of variational EM: the decoder
and prior fixed, each example's q (every array of its distribution object:
(mu_i, log sigma_i), and a flow's parameters, shared ones such as IAF's
MADE weights copied per example) is free, initialized at the encoder's output
and moved by Adam on the reparametrized ELBO, one example at a time (``vmap``).

q is passed as the distribution object the encoder returns, so every family
takes part in the same code: ``q = model.apply(params, x, method="encode")``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from vae_jax.inference import iwae
from vae_jax.inference import objectives
from vae_jax.errors import UserError

Array = jax.Array


def elbo_given_q(params: Any, x: Array, key: Array, q, *, model, num_samples: int) -> Array:
  """Per-example ELBO [B] of an explicit q(z) (a distribution object with batch [B]).

  Reparametrized Monte-Carlo reconstruction term; the KL to the model's prior
  in closed form where there is one, else on the same draws
  (``objectives.kl_terms``).
  """
  z, log_q = q.sample_and_log_prob(key, (num_samples,))                 # [S, B, L], [S, B]
  dec_out = model.apply(params, z, method="decode")
  recon = jnp.mean(objectives.log_likelihood(x, dec_out), 0)
  prior = model.apply(params, method="prior_distribution")
  return recon - objectives.kl_terms(q, prior, z, log_q)


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


def elbo_estimate(params: Any, x: Array, key: Array, q, *, model, num_samples: int,
                  chunk: int = 100) -> Array:
  """``elbo_given_q`` with ``num_samples`` samples drawn in chunks: [B].

  Any positive ``num_samples`` is used exactly (chunks of ``chunk`` plus a
  remainder), with memory O(chunk x B x D).
  """
  def weighted(k, n):  # the chunk's share n / num_samples of the mean
    return (n / num_samples) * elbo_given_q(params, x, k, q, model=model, num_samples=n)
  return _over_chunks(weighted, jnp.add, key, num_samples, chunk)


def iw_log_likelihood(params: Any, x: Array, key: Array, q, *, model, num_samples: int,
                      chunk: int = 100) -> Array:
  """Importance-weighted estimate of log p(x) with proposal q: [B].

  log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k), z_k ~ q, accumulated over chunks
  of samples with a running logsumexp (memory O(chunk x B x D)); any positive
  K = num_samples is used exactly. A consistent, downward-biased estimate
  (the IWAE bound, Burda et al. 2015), with ``iwae.log_weights``.
  """
  prior = model.apply(params, method="prior_distribution")

  def log_sum_w(k, n):
    z, log_q = q.sample_and_log_prob(k, (n,))                              # [n, B, L]
    return jax.nn.logsumexp(iwae.log_weights(params, x, z, log_q, prior, model=model), 0)

  return _over_chunks(log_sum_w, jnp.logaddexp, key, num_samples, chunk) - math.log(num_samples)


def _per_example_axes(q, shared_batched: bool = False):
  """vmap axes of q's arrays: 0 for per-example ones, None for those shared by
  every example (``q.shared_fields``: IAF's MADE weights, the second layer's
  MLP), unless ``shared_batched`` (an optimized q*, whose every array has a
  leading example axis)."""
  axes = jax.tree_util.tree_map(lambda _: 0, q)
  if shared_batched:
    return axes
  return axes.replace(**{f: jax.tree_util.tree_map(lambda _: None, getattr(q, f))
                         for f in getattr(q, "shared_fields", ())})


def _add_batch(q1):
  """One example's q (its per-example arrays without the example axis) as a batch of 1."""
  shared = getattr(q1, "shared_fields", ())
  batched = jax.tree_util.tree_map(lambda a: a[None], q1)
  return batched.replace(**{f: getattr(q1, f) for f in shared}) if shared else batched


def per_example(fn, q, x: Array, key: Array, *, shared_batched: bool = False) -> Array:
  """fn(x_i[None], fold_in(key, i), q_i) -> [1] for every example i, as [B] (``vmap``).

  Evaluates an optimized q* (whose shared arrays became per-example) the same
  way as the encoder's q.
  """
  axes = _per_example_axes(q, shared_batched)
  return jax.vmap(lambda q1, x1, i: fn(x1[None], jax.random.fold_in(key, i), _add_batch(q1))[0],
                  in_axes=(axes, 0, 0))(q, x, jnp.arange(x.shape[0]))


@functools.partial(jax.jit, static_argnames=("model", "num_steps", "num_samples",
                                             "learning_rate"))
def optimize_local(params: Any, x: Array, key: Array, q, *, model, num_steps: int,
                   num_samples: int = 8, learning_rate: float = 1e-2) -> tuple[Any, Array]:
  """Per-example q* = argmax_q ELBO(q) within q's family, decoder and prior fixed.

  Args:
    params: VAE parameters (the decoder and prior are used).
    x: [B, D] examples.
    key: PRNG key; step t uses fold_in(key, t) (the same for every example).
    q: the initial q, a distribution object with batch [B] (e.g. the encoder's).
    num_steps: Adam steps (learning rate cosine-decayed to 1% over them).
    num_samples: reparametrized samples per step.

  Returns:
    (q*, trace [num_steps]): the optimized q (the same family; shared arrays
    such as IAF's MADE weights now have a leading [B] axis) and the mean
    ELBO estimate along the way.
  """
  # Cosine decay to 1% of the rate: the Monte-Carlo noise floor of Adam shrinks
  # with the step size, so q settles at the optimum instead of jittering around it.
  tx = optax.adam(optax.cosine_decay_schedule(learning_rate, num_steps, alpha=0.01))

  def one_example(q0, x1):
    def loss(q1, k):
      return -jnp.sum(elbo_given_q(params, x1[None], k, _add_batch(q1), model=model,
                                   num_samples=num_samples))

    def step(carry, t):
      q1, opt = carry
      value, g = jax.value_and_grad(loss)(q1, jax.random.fold_in(key, t))
      updates, opt = tx.update(g, opt, q1)
      return (optax.apply_updates(q1, updates), opt), -value

    (q1, _), trace = jax.lax.scan(step, (q0, tx.init(q0)), jnp.arange(num_steps))
    return q1, trace

  q_star, traces = jax.vmap(one_example, in_axes=(_per_example_axes(q), 0))(q, x)
  # q_star: every array now has a leading example axis
  return q_star, jnp.mean(traces, 0)


def _add_batch(q1):
  """One example's q (per-example arrays without their batch axis) as a batch of 1."""
  axes = _per_example_axes(q1)
  return jax.tree_util.tree_map(lambda a, ax: a if ax is None else a[None], q1, axes,
                                is_leaf=lambda a: a is None)


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
    ``amortization_gap``, ``approximation_gap``; the optimized q* (``q``, a
    distribution object of q's family) and ``trace`` of the local
    optimization (mean ELBO per step).
  """
  for name, value in (("local_steps", local_steps), ("local_samples", local_samples),
                      ("eval_samples", eval_samples), ("iw_samples", iw_samples)):
    check_count(name, value)
  k_opt, k_eval, k_iw = jax.random.split(key, 3)
  q_enc = model.apply(params, x, method="encode")
  q_star, trace = optimize_local(
      params, x, k_opt, q_enc, model=model, num_steps=local_steps,
      num_samples=local_samples, learning_rate=local_learning_rate)
  # Same noise for both ELBOs (common random numbers): the gap is less noisy.
  def elbo_fn(xi, k, qi):
    return elbo_estimate(params, xi, k, qi, model=model, num_samples=eval_samples)

  def iw_fn(xi, k, qi):
    return iw_log_likelihood(params, xi, k, qi, model=model, num_samples=iw_samples)

  amortized = jax.jit(lambda q: per_example(elbo_fn, q, x, k_eval))(q_enc)
  optimized = jax.jit(lambda q: per_example(elbo_fn, q, x, k_eval, shared_batched=True))(q_star)
  # The optimized q* is the better proposal; with a poor proposal the IW
  # estimate has heavy-tailed weights (it is a lower bound only on average).
  log_px = jax.jit(lambda q: per_example(iw_fn, q, x, k_iw, shared_batched=True))(q_star)
  return {"amortized_elbo": amortized, "optimized_elbo": optimized,
          "log_likelihood_iw": log_px, "amortization_gap": optimized - amortized,
          "approximation_gap": log_px - optimized, "q": q_star, "trace": trace}
