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

A semi-amortized VAE (``vae_jax.inference.refinement``) has a third q between
the two: the encoder's q after its K refinement steps, whose ELBO ``gaps``
reports beside the others (``refinement``). Whether q* is the optimum it stands
for is measured, not assumed: ``check_convergence`` runs the local
optimization again from q* for as many steps and reports how much further each
example's ELBO rises (the same draws, so the difference is not noise).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

from vae_jax.inference import iwae
from vae_jax.inference import objectives
from vae_jax.inference import refinement as refinement_lib
from vae_jax.errors import check_positive

Array = jax.Array


# Samples per chunk of ``elbo_estimate`` and of the IW estimate in ``gaps``
# (memory O(CHUNK x B x D)); the draws depend on it (``iwae.over_chunks``).
CHUNK = 100


def elbo_estimate(params: Any, x: Array, key: Array, q, *, model, num_samples: int,
                  chunk: int = CHUNK) -> Array:
  """The ELBO of an explicit q (``objectives.elbo`` with q given) from
  ``num_samples`` draws taken ``chunk`` at a time: [B].

  Chunk i holds C_i draws from fold_in(key, i) (``iwae.over_chunks``) and
  adds C_i / num_samples of its ELBO, so any positive ``num_samples`` is used
  exactly, with memory O(chunk x B x D).
  """
  def weighted(k, n):  # the chunk's share n / num_samples of the mean
    per_example = objectives.elbo(params, x, k, model=model, num_samples=n, q=q)[1]["elbo"]
    return (n / num_samples) * per_example

  return iwae.over_chunks(weighted, jnp.add, 0.0, key, num_samples, chunk)


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
  """One example's q (per-example arrays without their batch axis) as a batch of 1."""
  axes = _per_example_axes(q1)
  return jax.tree_util.tree_map(lambda a, ax: a if ax is None else a[None], q1, axes,
                                is_leaf=lambda a: a is None)


def per_example(fn, q, x: Array, key: Array, *, shared_batched: bool = False) -> Array:
  """fn(x_i[None], fold_in(key, i), q_i) -> [1] for every example i, as [B] (``vmap``).

  Evaluates an optimized q* (whose shared arrays became per-example) the same
  way as the encoder's q.
  """
  axes = _per_example_axes(q, shared_batched)
  return jax.vmap(lambda q1, x1, i: fn(x1[None], jax.random.fold_in(key, i), _add_batch(q1))[0],
                  in_axes=(axes, 0, 0))(q, x, jnp.arange(x.shape[0]))


@functools.partial(jax.jit, static_argnames=("model", "num_steps", "num_samples",
                                             "learning_rate", "shared_batched"))
def optimize_local(params: Any, x: Array, key: Array, q, *, model, num_steps: int,
                   num_samples: int = 8, learning_rate: float = 1e-2,
                   shared_batched: bool = False) -> tuple[Any, Array]:
  """Per-example q* = argmax_q ELBO(q) within q's family, decoder and prior fixed.

  Args:
    params: VAE parameters (the decoder and prior are used).
    x: [B, D] examples.
    key: PRNG key; step t uses fold_in(key, t) (the same for every example).
    q: the initial q, a distribution object with batch [B] (e.g. the encoder's).
    num_steps: Adam steps (learning rate cosine-decayed to 1% over them).
    num_samples: reparametrized samples per step.
    shared_batched: q's shared arrays have a leading example axis too (q is an
      optimized q*, optimized further).

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
      return -jnp.sum(objectives.elbo(params, x1[None], k, model=model, num_samples=num_samples,
                                      q=_add_batch(q1))[1]["elbo"])

    def step(carry, t):
      q1, opt = carry
      value, g = jax.value_and_grad(loss)(q1, jax.random.fold_in(key, t))
      updates, opt = tx.update(g, opt, q1)
      return (optax.apply_updates(q1, updates), opt), -value

    (q1, _), trace = jax.lax.scan(step, (q0, tx.init(q0)), jnp.arange(num_steps))
    return q1, trace

  q_star, traces = jax.vmap(one_example,
                            in_axes=(_per_example_axes(q, shared_batched), 0))(q, x)
  # q_star: every array now has a leading example axis
  return q_star, jnp.mean(traces, 0)


def gaps(params: Any, x: Array, key: Array, *, model, local_steps: int = 1000,
         local_learning_rate: float = 1e-2, local_samples: int = 8,
         eval_samples: int = 1000, iw_samples: int = 1000, refinement=None,
         check_convergence: bool = False) -> dict[str, Array]:
  """Amortized ELBO, optimized ELBO, IW log p(x) and the two gaps, per example.

  Args:
    params: VAE parameters (a trained decoder; the encoder gives the amortized q).
    x: [B, D] examples.
    key: PRNG key (split into optimization, ELBO and IW streams).
    local_steps, local_learning_rate, local_samples: ``optimize_local``'s settings.
    eval_samples: samples of each ELBO estimate (the same draws for both q's).
    iw_samples: samples of the IW estimate of log p(x). Every count is used
      exactly; counts below 1 raise UserError.
    refinement: a semi-amortized VAE's ``refinement.Refinement``: also the
      ELBO of its refined q (refined from ``fold_in(key, 3)``).
    check_convergence: also optimize q* again for ``local_steps`` steps (a
      fresh schedule, from ``fold_in(key, 4)``) and report the further gain.

  Returns:
    dict of [B] arrays: ``amortized_elbo``, ``optimized_elbo``,
    ``log_likelihood_iw`` (IW estimate with the optimized q* as proposal),
    ``amortization_gap``, ``approximation_gap``; the optimized q* (``q``, a
    distribution object of q's family) and ``trace`` of the local
    optimization (mean ELBO per step). With a refinement, also
    ``refined_elbo`` and ``refined_amortization_gap`` = optimized - refined;
    with ``check_convergence``, ``local_convergence``: ELBO(q* optimized
    again) - ELBO(q*) on the same draws, [B] (about 0 where q* had converged).
  """
  for name, value in (("local_steps", local_steps), ("local_samples", local_samples),
                      ("eval_samples", eval_samples), ("iw_samples", iw_samples)):
    check_positive(value, name, integer=True)
  k_opt, k_eval, k_iw = jax.random.split(key, 3)
  q_enc = model.apply(params, x, method="encode")
  q_star, trace = optimize_local(
      params, x, k_opt, q_enc, model=model, num_steps=local_steps,
      num_samples=local_samples, learning_rate=local_learning_rate)
  # Same noise for both ELBOs (common random numbers): the gap is less noisy.
  def elbo_fn(xi, k, qi):
    return elbo_estimate(params, xi, k, qi, model=model, num_samples=eval_samples)

  def iw_fn(xi, k, qi):
    prior = model.apply(params, method="prior_distribution")
    return iwae.iwae_terms_given_q(params, xi, k, qi, prior, model=model,
                                   num_samples=iw_samples, chunk_size=CHUNK)["iwae"]

  amortized = jax.jit(lambda q: per_example(elbo_fn, q, x, k_eval))(q_enc)
  optimized = jax.jit(lambda q: per_example(elbo_fn, q, x, k_eval, shared_batched=True))(q_star)
  # The optimized q* is the better proposal; with a poor proposal the IW
  # estimate has heavy-tailed weights (it is a lower bound only on average).
  log_px = jax.jit(lambda q: per_example(iw_fn, q, x, k_iw, shared_batched=True))(q_star)
  out = {"amortized_elbo": amortized, "optimized_elbo": optimized,
         "log_likelihood_iw": log_px, "amortization_gap": optimized - amortized,
         "approximation_gap": log_px - optimized, "q": q_star, "trace": trace}
  if refinement is not None:
    q_ref, _ = jax.jit(lambda q: refinement_lib.refine(
        params, x, jax.random.fold_in(key, 3), q, model=model, refinement=refinement))(q_enc)
    out["refined_elbo"] = jax.jit(lambda q: per_example(elbo_fn, q, x, k_eval))(q_ref)
    out["refined_amortization_gap"] = optimized - out["refined_elbo"]
  if check_convergence:
    q_again, _ = optimize_local(
        params, x, jax.random.fold_in(key, 4), q_star, model=model, num_steps=local_steps,
        num_samples=local_samples, learning_rate=local_learning_rate, shared_batched=True)
    again = jax.jit(lambda q: per_example(elbo_fn, q, x, k_eval, shared_batched=True))(q_again)
    out["local_convergence"] = again - optimized
  return out
