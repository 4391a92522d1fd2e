r"""Gradient estimators for grad_phi E_{q(z|phi)}[f(z)], and their use in the VAE.

Every estimator is written as a *surrogate*: a scalar whose value is the
Monte-Carlo estimate of E_q[f] and whose ``jax.grad`` is the estimator. So
one ``value_and_grad`` gives both, under ``jit``, with explicit keys.

* ``reparam``: z = g(phi, eps), eps ~ r(eps); grad = mean_s grad_phi f(g(phi, eps_s))
  (the lecture's reparametrization trick; needs a reparametrizable q and a
  differentiable f).
* ``score``: the log-derivative (REINFORCE) estimator,
  grad = mean_s f(z_s) grad_phi log q(z_s|phi), z_s ~ q (works for any q, any f).
* ``score_baseline``: the same with f(z_s) - b, b a running mean of f over
  previous steps (an exponential moving average kept in the estimator state;
  computed before the current samples, so the estimator stays unbiased).
* ``score_loo``: the leave-one-out baseline over S >= 2 samples,
  b_s = mean_{s' != s} f(z_s') (Kool et al., 2019; Mnih & Rezende, 2016):
  unbiased because b_s does not depend on z_s.
* Multi-sample bounds (the VAE only, objective = IWAE bound
  log (1/S) sum_s w_s, w_s = p(x, z_s) / q(z_s|x)):
  ``vimco``: score function with per-sample leave-one-out control variates
  that replace log w_s by the mean of the other samples' log-weights
  (Mnih & Rezende, 2016, "Variational inference for Monte Carlo objectives");
  ``dreg``: doubly reparametrized gradient (Tucker et al., 2019, "Doubly
  reparameterized gradient estimators for Monte Carlo objectives"), encoder
  surrogate sum_s stop_grad(w~_s^2) log w_s with q's parameters stopped inside
  log q; ``iwae``: the plain reparametrized IWAE gradient (Burda et al., 2015).
* ``stl``: "sticking the landing" (Roeder et al., 2017): the reparametrized
  gradient of the single-bound MC ELBO log p(x, z) - log q(z|x) with q's
  parameters stopped inside log q, dropping the zero-mean score term.

``ESTIMATORS`` is the table of them, name -> ``Estimator``: what each trains
(the ELBO or the IWAE bound), what it needs of q (differentiable draws, log q at
any z, S samples), which KL options apply, its state and its surrogate.
``validate`` checks a config's ``objective`` section against an entry once,
where the config is read; nothing is checked again at trace time.

The entries with an ``expectation`` also estimate grad E_q[f] for a generic q,
a distribution object (``vae_jax.inference.gradients.grad_estimate(name, q, f,
key, S)`` returns the gradient as a q of cotangents), and
``gradients.gradient_statistics`` measures any of them over R independent draws.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

from vae_jax.inference import iwae
from vae_jax.inference import objectives
from vae_jax.inference import refinement as refinement_lib
from vae_jax.errors import UserError, check_positive

Array = jax.Array
sg = jax.lax.stop_gradient


def _stopped(dist):
  """The same distribution with its parameters held fixed (no gradient through them)."""
  return jax.tree_util.tree_map(sg, dist)


# ----------------------------------------------------------------------------
# What a VAE surrogate reads: one batch's draws and densities.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Draws:
  """S draws z_s ~ q(z|x) for a batch of B examples, and their densities.

  Attributes:
    q, prior: q(z|x) and p(z) as distribution objects (``vae_jax.families``).
    z: [S, B, L] the draws.
    log_q: [S, B] log q(z_s|x). Drawn by a reparametrized estimator, it carries
      phi's gradient along z = g(phi, eps) and through q's parameters; otherwise
      z is held fixed and only q's parameters carry it.
    log_lik: [S, B] log p(x|z_s).
    log_prior: [S, B] log p(z_s).
    kl: [B] KL(q || p): in closed form, or the Monte-Carlo
      mean_s [log q(z_s|x) - log p(z_s)] (no gradient).
    kl_dims: [B, L] the closed-form KL per latent dimension, or None.
    kl_term: [B] the closed-form KL as the loss weighs it (beta, free bits),
      or None without a closed form.
    kl_weight: beta (KL warm-up), a scalar.
    baseline_decay: the running baseline's decay.
    decoder: the decoder's parameters theta.
    log_lik_at: (decoder parameters, z [S, B, L]) -> log p(x|z) [S, B].
  """
  q: Any
  prior: Any
  z: Array
  log_q: Array
  log_lik: Array
  log_prior: Array
  kl: Array
  kl_dims: Array | None
  kl_term: Array | None
  kl_weight: Array | float
  baseline_decay: float
  decoder: Any
  log_lik_at: Callable[[Any, Array], Array]

  @property
  def log_w(self) -> Array:
    """log w_s = log p(x|z_s) + log p(z_s) - log q(z_s|x): [S, B]."""
    return self.log_lik + self.log_prior - self.log_q

  def integrand(self, log_q: Array) -> Array:
    """The ELBO's f(z_s): [S, B]. log p(x|z) where the KL is subtracted in closed
    form (``minus_kl``), else log p(x|z) + beta (log p(z) - log q(z|x))."""
    if self.kl_dims is None:
      return self.log_lik + self.kl_weight * (self.log_prior - log_q)
    return self.log_lik

  def minus_kl(self, per_sample: Array) -> Array:
    """mean_s of ``per_sample`` [S, B], less the weighted KL where it is in closed form: [B]."""
    sur = jnp.mean(per_sample, 0)
    return sur if self.kl_dims is None else sur - self.kl_term


@dataclasses.dataclass(frozen=True)
class Bound:
  """A bound the VAE trains: its name (summaries), the trainer's metric name, its
  title (messages) and its per-example value from the draws, [B]."""
  name: str
  metric: str
  title: str
  value: Callable[[Draws], Array]


ELBO = Bound("elbo", "elbo", "ELBO", lambda d: jnp.mean(d.log_lik, 0) - d.kl)
IWAE = Bound("iwae", "iwae_bound", "IWAE bound", lambda d: iwae.log_mean_exp(d.log_w))


@dataclasses.dataclass(frozen=True)
class Estimator:
  """One gradient estimator: what it trains, what it needs, its surrogate.

  Attributes:
    objective: the bound the VAE trains with it (``ELBO`` or ``IWAE``).
    surrogate: (Draws, state) -> (per-example surrogate [B], next state): its
      value is the bound's estimate, its gradient the estimator.
    expectation: (q, f, key, S, state, decay) -> (scalar, next state): the
      estimator of grad E_q[f] for any q and f; None where it is defined for the
      VAE's bound only.
    reparametrized: draws z = g(phi, eps), differentiable in phi (else z is
      drawn and held fixed).
    needs_density: needs log q at any z (``q.has_density``).
    min_samples: the least S.
    free_bits: the KL enters in closed form where there is one (free bits apply).
    kl_warmup: the objective has a KL part to weigh (KL warm-up applies).
    init_state: () -> the estimator state (a running baseline's; {} for none).
  """
  objective: Bound
  surrogate: Callable[[Draws, dict], tuple[Array, dict]]
  expectation: Callable[..., tuple[Array, dict]] | None = None
  reparametrized: bool = False
  needs_density: bool = False
  min_samples: int = 1
  free_bits: bool = False
  kl_warmup: bool = False
  init_state: Callable[[], dict] = dict


# ----------------------------------------------------------------------------
# Baselines b_s of the score function: (f [S, ...] held fixed, state, decay) -> (b, state).
# ----------------------------------------------------------------------------


def loo_baseline(f_values: Array, axis: int = 0) -> Array:
  """b_s = mean of f over the other S - 1 samples (same shape as f_values)."""
  s = f_values.shape[axis]
  return (jnp.sum(f_values, axis=axis, keepdims=True) - f_values) / (s - 1)


def init_baseline() -> dict:
  return {"baseline": jnp.zeros((), jnp.float32), "count": jnp.zeros((), jnp.int32)}


def update_baseline(state: dict, f_mean: Array, decay: float) -> dict:
  """Running mean b <- decay b + (1 - decay) mean f (b <- mean f on the first call)."""
  b = jnp.where(state["count"] > 0, decay * state["baseline"] + (1 - decay) * f_mean, f_mean)
  return {"baseline": b, "count": state["count"] + 1}


def _no_baseline(f, state, decay):
  del f, decay
  return 0.0, state


def _running_baseline(f, state, decay):
  """b = the mean of f over previous steps; this step's f enters the next state only."""
  return state["baseline"], update_baseline(state, jnp.mean(f), decay)


def _leave_one_out(f, state, decay):
  del decay
  return loo_baseline(f), state


# ----------------------------------------------------------------------------
# The surrogates.
# ----------------------------------------------------------------------------


def _pathwise_expectation(q, f, key, num_samples, state, decay):
  """E_q[f] ~ mean_s f(z_s), z_s = g(phi, eps_s): its gradient is the pathwise one."""
  del decay
  return jnp.mean(f(q.sample(key, (num_samples,)))), state


def _score_expectation(q, f, key, num_samples, state, decay, *, baseline):
  """Value mean_s f(z_s); gradient mean_s (f(z_s) - b_s) grad_phi log q(z_s), z_s fixed."""
  z = sg(q.sample(key, (num_samples,)))
  f_values = f(z)
  log_q = q.log_prob(z)
  b, state = baseline(sg(f_values), state, decay)
  return jnp.mean(sg(f_values) + sg(f_values - b) * (log_q - sg(log_q))), state


def _reparam_elbo(d: Draws, state):
  """mean_s f(z_s) - beta KL: the pathwise gradient of the lecture's ELBO."""
  return d.minus_kl(d.integrand(d.log_q)), state


def _score_elbo(d: Draws, state, *, baseline):
  """Value mean_s f(z_s) - beta KL. theta: the direct gradient of f (z fixed); phi:
  mean_s (f(z_s) - b_s) grad_phi log q(z_s|x) (log q's own zero-mean gradient in f
  dropped), plus the closed-form KL's."""
  f_direct = d.integrand(sg(d.log_q))
  f = sg(f_direct)
  b, state = baseline(f, state, d.baseline_decay)
  return d.minus_kl(f_direct + sg(f - b) * (d.log_q - sg(d.log_q))), state


def _stl_elbo(d: Draws, state):
  """mean_s [log p(x|z_s) + beta (log p(z_s) - log q(z_s|x))] with phi stopped inside
  log q: the pathwise gradient only (no analytic KL; the value is that estimate)."""
  log_q_stopped = _stopped(d.q).log_prob(d.z)
  return jnp.mean(d.log_lik + d.kl_weight * (d.log_prior - log_q_stopped), 0), state


def _iwae_bound(d: Draws, state):
  """log (1/S) sum_s w_s, differentiated along the paths z_s = g(phi, eps_s)."""
  return iwae.log_mean_exp(d.log_w), state


def _vimco(d: Draws, state):
  """theta: the bound's direct gradient. phi: sum_s (L - L_{-s}) grad log q(z_s|x), z_s
  fixed, L_{-s} the bound with log w_s replaced by the mean of the other log-weights."""
  lw = sg(d.log_w)
  s = lw.shape[0]
  lw_mean_others = (jnp.sum(lw, 0, keepdims=True) - lw) / (s - 1)                 # [S, B]
  lw_minus = jnp.where(jnp.eye(s, dtype=bool)[:, :, None], lw_mean_others[None], lw[None])
  baseline = jax.nn.logsumexp(lw_minus, 1) - math.log(s)                          # [S, B]
  bound = iwae.log_mean_exp(d.log_w)
  learning_signal = sg(bound)[None] - baseline
  return bound + jnp.sum(sg(learning_signal) * (d.log_q - sg(d.log_q)), 0), state


def _dreg(d: Draws, state):
  """theta and p's parameters: the bound's direct gradient (z fixed). phi:
  sum_s w~_s^2 grad log w_s along z_s = g(phi, eps_s), q's parameters stopped in log q."""
  zs = sg(d.z)
  log_w_dec = d.log_lik_at(d.decoder, zs) + d.prior.log_prob(zs) - sg(d.log_q)
  bound_dec = iwae.log_mean_exp(log_w_dec)
  log_q_stopped = _stopped(d.q).log_prob(d.z)          # before the decoder: the recorded bits
  log_w_enc = (d.log_lik_at(sg(d.decoder), d.z) + _stopped(d.prior).log_prob(d.z)
               - log_q_stopped)
  w_tilde = sg(jax.nn.softmax(log_w_enc, 0))
  enc_sur = jnp.sum(w_tilde**2 * log_w_enc, 0)
  return bound_dec + enc_sur - sg(enc_sur), state


# ----------------------------------------------------------------------------
# The table.
# ----------------------------------------------------------------------------

ESTIMATORS: dict[str, Estimator] = {
    "reparam": Estimator(
        objective=ELBO, surrogate=_reparam_elbo, expectation=_pathwise_expectation,
        reparametrized=True, free_bits=True, kl_warmup=True),
    "score": Estimator(
        objective=ELBO, surrogate=functools.partial(_score_elbo, baseline=_no_baseline),
        expectation=functools.partial(_score_expectation, baseline=_no_baseline),
        needs_density=True, free_bits=True, kl_warmup=True),
    "score_baseline": Estimator(
        objective=ELBO, surrogate=functools.partial(_score_elbo, baseline=_running_baseline),
        expectation=functools.partial(_score_expectation, baseline=_running_baseline),
        needs_density=True, free_bits=True, kl_warmup=True, init_state=init_baseline),
    "score_loo": Estimator(
        objective=ELBO, surrogate=functools.partial(_score_elbo, baseline=_leave_one_out),
        expectation=functools.partial(_score_expectation, baseline=_leave_one_out),
        needs_density=True, min_samples=2, free_bits=True, kl_warmup=True),
    "stl": Estimator(
        objective=ELBO, surrogate=_stl_elbo, reparametrized=True, needs_density=True,
        kl_warmup=True),
    "iwae": Estimator(objective=IWAE, surrogate=_iwae_bound, reparametrized=True),
    "vimco": Estimator(objective=IWAE, surrogate=_vimco, needs_density=True, min_samples=2),
    "dreg": Estimator(objective=IWAE, surrogate=_dreg, reparametrized=True,
                      needs_density=True),
}


def names_where(keep: Callable[[Estimator], bool]) -> str:
  return ", ".join(n for n, e in ESTIMATORS.items() if keep(e))


# ----------------------------------------------------------------------------
# Validation: once, where the config is read.
# ----------------------------------------------------------------------------


def validate(objective, *, has_density: bool, closed_form_kl: bool,
             reparametrized: bool = True, bounds: tuple[Bound, ...] = (ELBO, IWAE),
             family: str = "") -> Estimator:
  """Every rule about ``config.objective``'s estimator settings; returns the entry.

  Checks ``estimator``, ``num_samples``, ``baseline_decay``, ``free_bits`` and
  ``kl_warmup_steps`` (the last two where the section has them) against the
  model; UserError names the key. What the model's q lacks is said first: no
  other setting fixes it.

  Args:
    objective: the config's ``objective`` section.
    has_density: whether q has log q at any z.
    closed_form_kl: whether KL(q || p) has a closed form per latent dimension.
    reparametrized: whether q's draws are differentiable, z = g(phi, eps).
    bounds: the bounds the model can train.
    family: names q and p in messages, e.g. ``posterior=iaf, prior=standard``.
  """
  name = objective.estimator
  entry = ESTIMATORS.get(name)
  usable = names_where(lambda e: (has_density or not e.needs_density) and e.objective in bounds
                  and (reparametrized or not e.reparametrized))
  setting = f"--config.objective.estimator={name}"
  here = f" ({family})" if family else ""
  lacks = f"which this model's q does not have{here}; use one of {usable}."
  if entry is None:
    raise UserError(f"unknown --config.objective.estimator={name!r}; choose one of {usable}.")
  if entry.needs_density and not has_density:
    raise UserError(f"{setting} needs log q(z|x) at a given z, {lacks}")
  if entry.reparametrized and not reparametrized:
    raise UserError(f"{setting} needs the reparametrization trick (a differentiable draw "
                    f"z = g(phi, eps)), {lacks}")
  if entry.objective not in bounds:
    raise UserError(f"{setting} trains the {entry.objective.title}, which this model does "
                    f"not train{here}; use one of {usable}.")
  check_positive(objective.num_samples, "config.objective.num_samples", integer=True)
  if int(objective.num_samples) < entry.min_samples:
    raise UserError(f"{setting} needs --config.objective.num_samples >= {entry.min_samples} "
                    f"(the baseline of each sample comes from the others), got "
                    f"{objective.num_samples}.")
  if not 0.0 <= float(objective.baseline_decay) < 1.0:
    raise UserError(f"--config.objective.baseline_decay must be in [0, 1), got "
                    f"{objective.baseline_decay}.")
  warmup, free_bits = objective.get("kl_warmup_steps", 0), objective.get("free_bits", 0.0)
  check_positive(warmup, "config.objective.kl_warmup_steps", integer=True, minimum=0,
                 meaning="0: no warm-up")
  if warmup and not entry.kl_warmup:
    raise UserError(f"--config.objective.kl_warmup_steps needs an objective with a KL part "
                    f"({names_where(lambda e: e.kl_warmup)}); {name} trains the "
                    f"{entry.objective.title}.")
  check_positive(free_bits, "config.objective.free_bits", minimum=0,
                 meaning="nats per latent dimension; 0: off")
  if free_bits and not closed_form_kl:
    raise UserError(f"--config.objective.free_bits needs a closed-form KL per latent "
                    f"dimension, which this model does not have{here}; set free_bits=0.")
  if free_bits and not entry.free_bits:
    raise UserError(f"--config.objective.free_bits needs the analytic KL term "
                    f"({names_where(lambda e: e.free_bits)}), not {name}.")
  return entry


# ----------------------------------------------------------------------------
# The VAE with a chosen encoder estimator.
# ----------------------------------------------------------------------------


def _split(params):
  return params["params"]["encoder"], params["params"]["decoder"]


def _join(params, enc, dec):
  return {**params, "params": {**params["params"], "encoder": enc, "decoder": dec}}


def vae_surrogate(params: Any, x: Array, key: Array, est_state: dict, *, model,
                  estimator: str, num_samples: int, baseline_decay: float = 0.9,
                  kl_weight: float | Array = 1.0, free_bits: float = 0.0,
                  refinement=None) -> tuple[Array, tuple[dict, dict]]:
  """Negative surrogate objective of a VAE for one batch, any q and p(z).

  q(z|x) and p(z) are the model's distribution objects (``vae_jax.families``).
  The encoder phi gets the chosen estimator (its entry's ``surrogate``); the
  decoder theta (and a learned prior's parameters) always get the direct
  gradient of the Monte-Carlo objective (z held fixed). How the KL enters
  depends on the estimator and on whether KL(q || p) has a closed form (a
  Gaussian q and p = N(0, I)):

  * ``reparam``, ``score``, ``score_baseline``, ``score_loo``: the lecture's
    split, mean_s log p(x|z_s) - KL(q || p(z)) with grad_phi of the
    reconstruction term by the estimator and the KL in closed form; without a
    closed form the KL is mean_s [log q(z_s|x) - log p(z_s)] and joins the
    estimated term (for the score family, as part of f with log q's
    zero-mean direct gradient dropped).
  * ``stl``: no analytic KL; the surrogate is the Monte-Carlo ELBO
    mean_s [log p(x|z_s) + log p(z_s) - log q(z_s|x)] with phi stopped inside
    log q (so its value is that estimate, not recon - KL).
  * ``iwae``, ``vimco``, ``dreg``: the S-sample IWAE bound, with log p(z_s)
    and log q(z_s|x) evaluated at the samples (no analytic KL).

  The loss is the negated per-example mean of the surrogate (the full-data
  estimate (n / B) sum_b ELBO_b is ``objectives.full_data_elbo_estimate``).

  Two training-time changes of the KL term (the ELBO family only; ``aux``
  always reports the true ELBO):

  * ``kl_weight`` beta multiplies the KL (KL warm-up: beta ramps from 0 to 1;
    for ``stl`` and a Monte-Carlo KL it multiplies log p(z) - log q(z|x));
  * ``free_bits`` lambda > 0 (Kingma et al., 2016, nats per latent dimension;
    analytic-KL estimators and families only) replaces KL by
    sum_l max(lambda, E_batch KL_l): per example, dimension l contributes its
    KL where the batch mean of KL_l exceeds lambda and the constant lambda
    (no gradient) elsewhere.

  Semi-amortized inference (``refinement``, ``vae_jax.inference.refinement``):
  the surrogate is evaluated at q_K, the encoder's q after K gradient steps on
  each example's ELBO (drawn from ``fold_in(key, 1)``; z from ``key`` as
  without it). Unrolled, its gradient flows through the steps to the encoder;
  stopped, q_K is a constant for the decoder and the encoder gets the
  surrogate of its own q (decoder and prior held fixed there), whose estimator
  state is the one kept.

  The settings are those ``validate`` accepted; nothing is checked here.

  Args:
    params: VAE parameters.
    x: [B, D] batch.
    key: PRNG key for z.
    est_state: the entry's state ({"baseline", "count"} for score_baseline; {} otherwise).
    kl_weight: beta, a scalar (may be traced: a warm-up schedule).
    free_bits: lambda in nats per latent dimension; 0 disables it.
    refinement: a ``refinement.Refinement``, or None for the plain VAE.

  Returns:
    (loss, (aux, new_est_state)); aux holds per-example [B] ``recon``
    (mean_s log p(x|z_s)), ``kl`` (KL(q || p(z)), analytic or Monte-Carlo)
    and ``elbo`` (recon - kl for the ELBO-family estimators, stl included;
    the S-sample bound for the IWAE-objective ones), of q_K when refining;
    then also ``elbo_amortized``, the one-draw ELBO of the encoder's q (the
    refinement's first step).
  """
  entry = ESTIMATORS[estimator]
  q, prior = objectives.posterior_and_prior(params, x, model=model)
  settings = dict(entry=entry, num_samples=num_samples, baseline_decay=baseline_decay,
                  kl_weight=kl_weight, free_bits=free_bits)
  if refinement is None:
    sur, aux, new_state = _surrogate_at(params, x, key, est_state, q, prior, model=model,
                                        **settings)
    return -jnp.mean(sur), (aux, new_state)
  k_refine = jax.random.fold_in(key, 1)
  if refinement.unrolled:
    q_ref, trace = refinement_lib.refine(params, x, k_refine, q, model=model,
                                         refinement=refinement)
    sur, aux, new_state = _surrogate_at(params, x, key, est_state, q_ref, prior, model=model,
                                        **settings)
  else:
    q_ref, trace = sg(refinement_lib.refine(sg(params), x, k_refine, sg(q), model=model,
                                            refinement=refinement))
    sur, aux, _ = _surrogate_at(params, x, key, est_state, q_ref, prior, model=model,
                                **settings)
    held = {**params, "params": {k: (v if k == "encoder" else sg(v))
                                 for k, v in params["params"].items()}}
    sur_enc, _, new_state = _surrogate_at(held, x, key, est_state, q, _stopped(prior),
                                          model=model, **settings)
    sur = sur + sur_enc - sg(sur_enc)
  return -jnp.mean(sur), ({**aux, "elbo_amortized": sg(trace[0])}, new_state)


def _surrogate_at(params, x, key, est_state, q, prior, *, model, entry: Estimator,
                  num_samples: int, baseline_decay: float, kl_weight, free_bits: float):
  """(per-example surrogate [B], aux, next state) of ``entry`` at q: ``vae_surrogate``'s
  draws and densities, the decoder's and prior's gradient from ``params``."""
  enc, dec = _split(params)
  # (The order of these lines is the order in which the gradient's sums accumulate:
  # kept as it was, so that every estimator's gradient keeps its recorded bits.)
  kl_dims = q.kl_per_dim(prior)                                             # [B, L] or None

  def log_lik_at(dec_params, z):
    return objectives.log_likelihood(
        x, model.apply(_join(params, enc, dec_params), z, method="decode"))

  if entry.reparametrized:
    z, log_q = q.sample_and_log_prob(key, (num_samples,))                 # [S, B, L], [S, B]
  else:
    z = sg(q.sample(key, (num_samples,)))
    log_q = q.log_prob(z)                                                   # grad to phi
  log_lik = log_lik_at(dec, z)                                              # [S, B]
  log_prior = prior.log_prob(z)                                             # [S, B]
  if kl_dims is None:
    kl, kl_term = sg(jnp.mean(log_q - log_prior, 0)), None                  # MC KL: [B]
  else:
    kl = jnp.sum(kl_dims, -1)                                               # [B]
    kl_term = kl_weight * kl
    if free_bits:
      above = jnp.mean(kl_dims, 0) > free_bits                              # [L]
      kl_term = kl_weight * jnp.sum(jnp.where(above, kl_dims, free_bits), -1)
  draws = Draws(q=q, prior=prior, z=z, log_q=log_q, log_lik=log_lik, log_prior=log_prior,
                kl=kl, kl_dims=kl_dims, kl_term=kl_term, kl_weight=kl_weight,
                baseline_decay=baseline_decay, decoder=dec, log_lik_at=log_lik_at)
  sur, new_state = entry.surrogate(draws, est_state)
  aux = {"recon": sg(jnp.mean(log_lik, 0)), "kl": sg(kl),
         "elbo": sg(entry.objective.value(draws))}
  return sur, aux, new_state


def make_vae_loss(model, estimator: str, num_samples: int, *, baseline_decay: float = 0.9,
                  free_bits: float = 0.0, refinement=None):
  """(loss_fn, est_state0): loss_fn(params, x, key, est_state[, kl_weight=beta]).

  The settings are those ``validate`` accepted; ``refinement`` (a
  ``refinement.Refinement`` or None) makes it the semi-amortized VAE.
  ``vae_jax.models.vae.build`` wraps it as the trainer's loss.
  """
  loss_fn = functools.partial(vae_surrogate, model=model, estimator=estimator,
                              num_samples=num_samples, baseline_decay=baseline_decay,
                              free_bits=float(free_bits), refinement=refinement)
  return loss_fn, ESTIMATORS[estimator].init_state()
