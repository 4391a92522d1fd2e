"""Gradients of E_q[f] for any q, and how to measure an estimator.

``surrogate`` / ``grad_estimate``: the estimators of ``ESTIMATORS`` that have
an ``expectation`` (reparam and the score-function family) applied to a
generic E_q[f], q any distribution object (``DiagNormal``, ``Bernoulli``,
``Categorical``, ...): the lecture's comparison of the score function and the
reparametrization trick. ``gradient_statistics`` measures any stochastic
gradient over R independent draws (its mean, variance and signal-to-noise
ratio); ``encoder_grad_fn`` gives one draw of a VAE loss's encoder gradient.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from vae_jax.errors import UserError, check_positive
from vae_jax.inference.estimators import ESTIMATORS, names_where

Array = jax.Array


# ----------------------------------------------------------------------------
# Estimators of grad E_q[f] for any q.
# ----------------------------------------------------------------------------


def surrogate(estimator: str, q: Any, f: Callable[[Array], Array], key: Array,
              num_samples: int, baseline: Array | float = 0.0) -> Array:
  """Scalar with value ~ E_q[f] and jax.grad w.r.t. q's parameters = the chosen estimator.

  Args:
    estimator: a name of ``ESTIMATORS`` with an ``expectation`` (reparam and
      the score-function estimators).
    q: a distribution object (a pytree of its parameters) with ``sample`` and
      ``log_prob``; differentiate the surrogate with respect to it.
    f: z [S, ...] -> [S]; must be differentiable for ``reparam`` only.
    key: PRNG key for the S samples.
    num_samples: S.
    baseline: b for ``score_baseline`` (a number, not differentiated).
  """
  entry = ESTIMATORS.get(estimator)
  if entry is None or entry.expectation is None:
    raise UserError(f"{estimator!r} is not an estimator of grad E_q[f]; choose one of "
                    f"{names_where(lambda e: e.expectation is not None)}.")
  if entry.reparametrized and not getattr(q, "reparametrized", True):
    raise UserError(f"{estimator} needs a reparametrizable q (e.g. Gaussian); a "
                    f"{type(q).__name__} has none: use a score-function estimator.")
  if entry.needs_density and not getattr(q, "has_density", True):
    raise UserError(f"{estimator} needs log q at any z, which this {type(q).__name__} lacks.")
  if num_samples < entry.min_samples:
    raise UserError(f"{estimator} needs num_samples >= {entry.min_samples}, got {num_samples}.")
  state = {"baseline": jnp.asarray(baseline), "count": jnp.ones((), jnp.int32)}
  return entry.expectation(q, f, key, num_samples, state, 0.0)[0]


def grad_estimate(estimator: str, q: Any, f: Callable, key: Array, num_samples: int,
                  baseline: Array | float = 0.0) -> tuple[Array, Any]:
  """(MC estimate of E_q[f], estimate of grad E_q[f] w.r.t. q: a q of gradients)."""
  return jax.value_and_grad(
      lambda q_: surrogate(estimator, q_, f, key, num_samples, baseline))(q)


# ----------------------------------------------------------------------------
# Measuring an estimator.
# ----------------------------------------------------------------------------


def gradient_statistics(grad_fn: Callable[[Array], Any], key: Array, num_draws: int,
                        ) -> dict[str, Any]:
  """Mean, variance and SNR of a stochastic gradient over R independent draws.

  Args:
    grad_fn: key -> gradient pytree (one draw of the estimator; close over
      everything else, e.g. the batch and the estimator state).
    key: PRNG key; draw r uses fold_in(key, r).
    num_draws: R >= 2.

  Returns:
    dict with pytrees ``mean``, ``variance`` (unbiased, ddof = 1) and ``snr``
    (|mean| / std per parameter), and scalars ``total_variance`` (sum of the
    per-parameter variances, the trace of the gradient's covariance),
    ``mean_snr`` (average over parameters) and ``mean_norm`` (norm of the mean).
  """
  check_positive(num_draws, "num_draws", integer=True, minimum=2,
                 meaning="gradient statistics need two draws at least")
  keys = jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.arange(num_draws))
  grads = jax.lax.map(grad_fn, keys)                                   # [R, ...] leaves
  mean = jax.tree_util.tree_map(lambda g: jnp.mean(g, 0), grads)
  var = jax.tree_util.tree_map(lambda g: jnp.var(g, 0, ddof=1), grads)
  snr = jax.tree_util.tree_map(lambda m, v: jnp.abs(m) / jnp.sqrt(v + 1e-30), mean, var)
  return {"mean": mean, "variance": var, "snr": snr, **summarize(mean, var, snr)}


def summarize(mean: Any, variance: Any, snr: Any) -> dict[str, Array]:
  """Scalars of (sub)trees of ``gradient_statistics``' output: ``total_variance``
  (sum of the per-parameter variances), ``mean_snr`` and ``mean_norm``."""
  leaves = jax.tree_util.tree_leaves
  size = sum(x.size for x in leaves(variance))
  return {"total_variance": sum(jnp.sum(v) for v in leaves(variance)),
          "mean_snr": sum(jnp.sum(s) for s in leaves(snr)) / size,
          "mean_norm": jnp.sqrt(sum(jnp.sum(m * m) for m in leaves(mean)))}


def encoder_grad_fn(loss_fn: Callable, params: Any, x: Array, est_state: Any) -> Callable:
  """key -> gradient of the encoder parameters of one estimator draw (for statistics)."""
  def grad_fn(key):
    g = jax.grad(lambda p: loss_fn(p, x, key, est_state)[0])(params)
    return g["params"]["encoder"]
  return grad_fn
