r"""Semi-amortized inference (Kim et al., 2018): the encoder's q refined by K gradient steps.

For each example x, q's per-example parameters lambda start at the encoder's
output and climb that example's ELBO with the decoder and prior fixed:

  lambda_0 = enc(x; phi),
  lambda_{k+1} = lambda_k + alpha grad_lambda ELBO(x; lambda_k, theta),   k = 0 .. K-1,

with K = ``model.refine_steps`` and alpha = ``model.refine_lr`` (plain gradient
ascent: every step is differentiable, with no optimizer state to unroll).
lambda is every array of the q object except those shared by every example
(``q.shared_fields``): the Gaussian's mean and log sigma, a planar flow's
(u, w, b); IAF's and the coupling flow's per-example context; IAF's MADE weights
and the coupling layers' conditioners stay the encoder's. Step k's ELBO is the
one ELBO (``objectives.elbo`` with q given), from ``num_samples`` reparametrized
draws keyed ``fold_in(key, k)``; the examples are independent, so the gradient of
the batch's sum is each example's own gradient.

Training (``estimators.vae_surrogate``) evaluates the chosen estimator's
objective at q_K = q(lambda_K):

* ``gradient = "unrolled"`` (the SA-VAE): the objective is differentiated
  through the K steps (a ``jax.grad`` inside the differentiated loop), so the
  encoder phi gets d ELBO(lambda_K) / d lambda_K times d lambda_K / d lambda_0
  (Hessian-vector products, by reverse mode through each step), and the decoder
  and prior theta get the total derivative, the direct term plus the path
  through the steps (Kim et al.'s Algorithm 1).
* ``gradient = "stopped"``: q_K is a constant. The decoder trains on it; the
  encoder trains on its own q's objective, as in the plain VAE (Krishnan et
  al., 2018's "VAE + SVI", the comparison of Kim et al.).

The refinement always climbs the true ELBO (beta = 1, no free bits): it is the
per-example E-step, whatever the training objective weighs. ``refine_steps = 0``
is the plain VAE (no code of this module runs); ``refine_lr = 0`` gives q_K = q_0
exactly.

Evaluation (``vae_jax.models.vae.eval_step``, ``experiments/evaluate.py``) and the
amortization experiment refine with the same function; ``iwae_bound`` is the
IWAE bound with the refined q as the proposal.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

from vae_jax.errors import UserError, check_choice, check_positive
from vae_jax.inference import iwae
from vae_jax.inference import objectives

Array = jax.Array
# model.refine_gradient: the encoder's gradient through the steps, or the refined q held fixed.
GRADIENTS = ("unrolled", "stopped")
# How the K steps are traced: one lax.scan (one step's program, reused) or K copies of
# it unrolled in Python. scripts/benchmarks/bench_savae_step.py times both:
# results/bench_savae_step.json. Not a config key: it changes no number.
LOOP = "scan"


@dataclasses.dataclass(frozen=True)
class Refinement:
  """K gradient steps of size alpha on each example's ELBO (hashable: a static argument).

  Attributes:
    steps: K >= 1.
    learning_rate: alpha >= 0.
    unrolled: differentiate through the steps (the SA-VAE), else hold q_K fixed.
    num_samples: reparametrized draws of each step's ELBO.
    loop: ``scan`` or ``python`` (``LOOP``).
  """
  steps: int
  learning_rate: float
  unrolled: bool = True
  num_samples: int = 1
  loop: str = LOOP


def validate(model_config, *, refinable: bool, family: str) -> None:
  """``model.refine_steps``, ``refine_lr`` and ``refine_gradient``; UserError names the key.

  Args:
    model_config: the ``model`` section.
    refinable: the posterior family's ``REFINABLE`` (``vae_jax.families.posteriors``).
    family: names the family in the message, e.g. ``posterior=planar``.
  """
  steps, lr = model_config.refine_steps, model_config.refine_lr
  check_positive(steps, "config.model.refine_steps", integer=True, minimum=0,
                 meaning="gradient steps on each example's q; 0: the plain VAE")
  check_positive(lr, "config.model.refine_lr", minimum=0,
                 meaning="the step size alpha of each refinement step")
  check_choice(model_config.refine_gradient, GRADIENTS, "config.model.refine_gradient")
  if steps and not refinable:
    raise UserError(f"--config.model.refine_steps={steps} refines q's per-example parameters "
                    f"by gradient steps, which this posterior family does not offer "
                    f"({family}: its module does not declare REFINABLE = True); set "
                    f"refine_steps=0 or choose a refinable posterior.")


def from_config(model_config) -> Refinement | None:
  """The validated ``model`` section's refinement; None for the plain VAE (K = 0)."""
  steps = int(model_config.refine_steps)
  if not steps:
    return None
  return Refinement(steps, float(model_config.refine_lr),
                    unrolled=model_config.refine_gradient == GRADIENTS[0], loop=LOOP)


def _split(q) -> tuple[Any, dict]:
  """(q with its shared arrays set to None, {field: shared array})."""
  shared = {f: getattr(q, f) for f in getattr(q, "shared_fields", ())}
  return q.replace(**{f: None for f in shared}), shared


def refine(params: Any, x: Array, key: Array, q, *, model, refinement: Refinement
           ) -> tuple[Any, Array]:
  """q_K from q_0 = q by K gradient-ascent steps on each example's ELBO.

  Differentiable in ``params`` and ``q`` (the SA-VAE differentiates through it).

  Args:
    params: the VAE's parameters (its decoder and prior are used).
    x: [B, D] examples.
    key: step k draws from ``fold_in(key, k)``.
    q: q_0, a distribution object with batch [B] (the encoder's).
    model: the VAE module (static).
    refinement: K, alpha and the loop (static).

  Returns:
    (q_K, trace [K, B]): the refined q (the same family; shared arrays are
    q's own) and each example's ELBO estimate at q_0 .. q_{K-1}, before each step.
  """
  local, shared = _split(q)
  alpha, s = refinement.learning_rate, refinement.num_samples

  def elbo_sum(lam, k):
    elbo = objectives.elbo(params, x, jax.random.fold_in(key, k), model=model, num_samples=s,
                           q=lam.replace(**shared))[1]["elbo"]              # [B]
    return jnp.sum(elbo), elbo

  def step(lam, k):
    grad, elbo = jax.grad(elbo_sum, has_aux=True)(lam, k)
    return jax.tree_util.tree_map(lambda a, g: a + alpha * g, lam, grad), elbo

  if refinement.loop == "scan":
    local, trace = jax.lax.scan(step, local, jnp.arange(refinement.steps))
  else:
    values = []
    for k in range(refinement.steps):
      local, elbo = step(local, k)
      values.append(elbo)
    trace = jnp.stack(values)
  return local.replace(**shared), trace


def refined_posterior(params: Any, x: Array, key: Array, *, model, refinement: Refinement):
  """(q_K, trace) for x: [B, D], from the encoder's q."""
  q = model.apply(params, x, method="encode")
  return refine(params, x, key, q, model=model, refinement=refinement)


def iwae_terms(params: Any, x: Array, key: Array, *, model, refinement: Refinement,
               num_samples: int, chunk_size: int | None = None) -> dict[str, Array]:
  """The K-sample IWAE bound and ELBO with the refined q as the proposal: [B] each.

  The refinement draws from ``fold_in(key, 1)``, the bound's chunks from
  ``fold_in(key, 0)`` (``iwae.iwae_terms_given_q``).
  """
  q_ref, _ = refined_posterior(params, x, jax.random.fold_in(key, 1), model=model,
                               refinement=refinement)
  prior = model.apply(params, method="prior_distribution")
  return iwae.iwae_terms_given_q(params, x, jax.random.fold_in(key, 0), q_ref, prior,
                                 model=model, num_samples=num_samples, chunk_size=chunk_size)


def iwae_bound(params: Any, x: Array, key: Array, *, model, refinement: Refinement,
               num_samples: int, chunk_size: int | None = None) -> Array:
  """log p(x) estimates [B] of ``iwae_terms`` (the refined q's IWAE bound)."""
  return iwae_terms(params, x, key, model=model, refinement=refinement,
                    num_samples=num_samples, chunk_size=chunk_size)["iwae"]


# One compiled program per (model, refinement, K, chunk, batch shape): iwae.evaluate_iwae's batch.
iwae_batch = jax.jit(iwae_bound, static_argnames=("model", "refinement", "num_samples",
                                                  "chunk_size"))


def batch_fn(refinement: Refinement):
  """``iwae.evaluate_iwae``'s ``batch_fn`` for the refined q."""
  return functools.partial(iwae_batch, refinement=refinement)
