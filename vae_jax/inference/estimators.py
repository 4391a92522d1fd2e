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

``gradient_statistics`` measures any of them: over R independent draws, the
per-parameter mean, variance and signal-to-noise ratio, and the total variance.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from vae_jax import distributions as D
from vae_jax.inference import iwae
from vae_jax.inference import objectives
from vae_jax.errors import UserError, check_positive

Array = jax.Array
sg = jax.lax.stop_gradient

# Estimators of grad E_q[f] on a generic q (and in the VAE's ELBO).
GENERIC_ESTIMATORS = ("reparam", "score", "score_baseline", "score_loo")
# name -> objective the VAE trains with it ("elbo" or "iwae").
ESTIMATORS = {"reparam": "elbo", "score": "elbo", "score_baseline": "elbo",
              "score_loo": "elbo", "stl": "elbo", "iwae": "iwae", "vimco": "iwae",
              "dreg": "iwae"}
REPARAMETRIZABLE = ("reparam", "stl", "iwae", "dreg")
# Estimators that need only draws with their log q (no log q at a given z):
# what a flow posterior supports.
FLOW_ESTIMATORS = ("reparam", "iwae")


# ----------------------------------------------------------------------------
# Families q(z | phi): sample, log-density, and (where possible) reparametrization.
# ----------------------------------------------------------------------------


class Family(NamedTuple):
  """A parametric q(z|phi) with event shape given by its parameters.

  sample(key, phi, S) -> z [S, ...] (no gradient path needed).
  log_prob(phi, z) -> [S] (summed over the event).
  reparam(key, phi, S) -> z [S, ...] differentiable in phi, or None.
  """
  sample: Callable
  log_prob: Callable
  reparam: Callable | None


def _gauss_reparam(key, phi, num_samples):
  mean, log_scale = phi
  return D.normal_sample(key, mean, log_scale, (num_samples,))


gaussian = Family(
    sample=lambda key, phi, s: sg(_gauss_reparam(key, phi, s)),
    log_prob=lambda phi, z: D.normal_log_prob(z, phi[0], phi[1]),
    reparam=_gauss_reparam)
"""Diagonal Gaussian, phi = (mean [L], log_scale [L])."""

bernoulli = Family(
    sample=lambda key, logits, s: D.bernoulli_sample(key, logits, (s,)),
    log_prob=lambda logits, z: D.bernoulli_log_prob(z, logits),
    reparam=None)
"""Independent Bernoullis, phi = logits [L]; z in {0, 1}^L."""

categorical = Family(
    sample=lambda key, logits, s: D.categorical_sample(key, logits, (s,)),
    log_prob=lambda logits, z: D.categorical_log_prob(z, logits),
    reparam=None)
"""One categorical, phi = logits [K]; z in {0..K-1}."""


def _score_term(f_values: Array, log_q: Array, baseline: Array) -> Array:
  """Surrogate with value mean(f) and gradient mean((f - b) grad log q): [S] -> []."""
  return jnp.mean(sg(f_values) + sg(f_values - baseline) * (log_q - sg(log_q)))


def loo_baseline(f_values: Array, axis: int = 0) -> Array:
  """b_s = mean of f over the other S - 1 samples (same shape as f_values)."""
  s = f_values.shape[axis]
  return (jnp.sum(f_values, axis=axis, keepdims=True) - f_values) / (s - 1)


def surrogate(estimator: str, family: Family, f: Callable[[Array], Array], phi: Any,
              key: Array, num_samples: int, baseline: Array | float = 0.0) -> Array:
  """Scalar with value ~ E_q[f] and jax.grad w.r.t. phi = the chosen estimator.

  Args:
    estimator: one of ``GENERIC_ESTIMATORS``.
    family: the q family (``gaussian``, ``bernoulli``, ``categorical`` or your own).
    f: z [S, ...] -> [S]; must be differentiable for ``reparam`` only.
    phi: parameters of q (a pytree).
    key: PRNG key for the S samples.
    num_samples: S.
    baseline: b for ``score_baseline`` (a number, not differentiated).
  """
  if estimator == "reparam":
    if family.reparam is None:
      raise UserError("the reparametrization estimator needs a reparametrizable q "
                      "(e.g. Gaussian); use a score-function estimator for discrete z.")
    return jnp.mean(f(family.reparam(key, phi, num_samples)))
  z = family.sample(key, phi, num_samples)
  f_values = f(z)
  log_q = family.log_prob(phi, z)
  if estimator == "score":
    return _score_term(f_values, log_q, 0.0)
  if estimator == "score_baseline":
    return _score_term(f_values, log_q, sg(jnp.asarray(baseline)))
  if estimator == "score_loo":
    if num_samples < 2:
      raise UserError("score_loo needs num_samples >= 2 (a leave-one-out baseline).")
    return _score_term(f_values, log_q, loo_baseline(f_values))
  raise UserError(f"unknown estimator {estimator!r}; choose one of {GENERIC_ESTIMATORS}.")


def grad_estimate(estimator: str, family: Family, f: Callable, phi: Any, key: Array,
                  num_samples: int, baseline: Array | float = 0.0) -> tuple[Array, Any]:
  """(MC estimate of E_q[f], estimate of grad_phi E_q[f]) for one draw of S samples."""
  return jax.value_and_grad(
      lambda p: surrogate(estimator, family, f, p, key, num_samples, baseline))(phi)


def update_baseline(state: dict, f_mean: Array, decay: float) -> dict:
  """Running mean b <- decay b + (1 - decay) mean f (b <- mean f on the first call)."""
  b = jnp.where(state["count"] > 0, decay * state["baseline"] + (1 - decay) * f_mean, f_mean)
  return {"baseline": b, "count": state["count"] + 1}


def init_baseline() -> dict:
  return {"baseline": jnp.zeros((), jnp.float32), "count": jnp.zeros((), jnp.int32)}


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
  if num_draws < 2:
    raise UserError(f"gradient statistics need num_draws >= 2, got {num_draws}.")
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


# ----------------------------------------------------------------------------
# The VAE with a chosen encoder estimator.
# ----------------------------------------------------------------------------


def _split(params):
  return params["params"]["encoder"], params["params"]["decoder"]


def _join(params, enc, dec):
  return {**params, "params": {**params["params"], "encoder": enc, "decoder": dec}}


# Estimators whose objective has the analytic KL term (free bits apply), and
# those whose objective separates a KL part at all (KL warm-up applies).
KL_ESTIMATORS = ("reparam", "score", "score_baseline", "score_loo")
KL_WEIGHTED_ESTIMATORS = KL_ESTIMATORS + ("stl",)


def check_estimator(estimator: str, num_samples: int, baseline_decay: float = 0.9, *,
                    allowed: tuple[str, ...] | None = None) -> None:
  """Every rule about the estimator settings, in one place.

  The models' ``validate`` calls it with the config's values, the loss
  builders with their arguments; UserError names the config key.

  Args:
    estimator: a name of ``ESTIMATORS`` (``objective.estimator``).
    num_samples: S >= 1 (``objective.num_samples``); 2 or more for the
      leave-one-out baselines (``score_loo``, ``vimco``).
    baseline_decay: in [0, 1) (``objective.baseline_decay``).
    allowed: the estimators the model can use (default: all of them).
  """
  allowed = tuple(ESTIMATORS) if allowed is None else tuple(allowed)
  if estimator not in allowed:
    raise UserError(f"unknown --config.objective.estimator={estimator!r}; choose one of "
                    f"{', '.join(allowed)}.")
  check_positive(num_samples, "config.objective.num_samples", integer=True)
  if estimator in ("score_loo", "vimco") and int(num_samples) < 2:
    raise UserError(f"--config.objective.estimator={estimator} needs "
                    f"--config.objective.num_samples >= 2 (the baseline of each sample "
                    f"comes from the others), got {num_samples}.")
  if not 0.0 <= float(baseline_decay) < 1.0:
    raise UserError(f"--config.objective.baseline_decay must be in [0, 1), got "
                    f"{baseline_decay}.")


def vae_surrogate(params: Any, x: Array, key: Array, est_state: dict, *, model,
                  estimator: str, num_samples: int, baseline_decay: float = 0.9,
                  kl_weight: float | Array = 1.0, free_bits: float = 0.0,
                  ) -> tuple[Array, tuple[dict, dict]]:
  """Negative surrogate objective of a VAE for one batch, any q and p(z).

  q(z|x) and p(z) are the model's distribution objects (``vae_jax.families``).
  The encoder phi gets the chosen estimator; the decoder theta (and a learned
  prior's parameters) always get the direct gradient of the Monte-Carlo
  objective (z held fixed). How the KL enters depends on the estimator and on
  whether KL(q || p) has a closed form (a Gaussian q and p = N(0, I)):

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

  The score family, ``stl``, ``vimco`` and ``dreg`` need log q at a given z
  (``q.has_density``): refused for flow posteriors.

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

  Args:
    params: VAE parameters.
    x: [B, D] batch.
    key: PRNG key for z.
    est_state: {"baseline", "count"} for score_baseline; {} otherwise.
    kl_weight: beta, a scalar (may be traced: a warm-up schedule).
    free_bits: lambda in nats per latent dimension; 0 disables it.

  Returns:
    (loss, (aux, new_est_state)); aux holds per-example [B] ``recon``
    (mean_s log p(x|z_s)), ``kl`` (KL(q || p(z)), analytic or Monte-Carlo)
    and ``elbo`` (recon - kl for the ELBO-family estimators, stl included;
    the S-sample bound for the IWAE-objective ones).
  """
  check_estimator(estimator, num_samples, baseline_decay)
  enc, dec = _split(params)
  q, prior = objectives.posterior_and_prior(params, x, model=model)
  kl_dims = q.kl_per_dim(prior)                                             # [B, L] or None
  if not q.has_density and estimator not in FLOW_ESTIMATORS:
    raise UserError(f"estimator {estimator!r} needs log q(z|x) at a given z; the {q.name} "
                    f"posterior has none (use one of {', '.join(FLOW_ESTIMATORS)}).")

  def decode(dec_params, z):
    return model.apply(_join(params, enc, dec_params), z, method="decode")

  if estimator in REPARAMETRIZABLE:
    z, log_q = q.sample_and_log_prob(key, (num_samples,))                 # [S, B, L], [S, B]
  else:
    z = sg(q.sample(key, (num_samples,)))
    log_q = q.log_prob(z)                                                   # grad to phi
  log_lik = objectives.log_likelihood(x, decode(dec, z))                    # [S, B]
  log_prior = prior.log_prob(z)                                             # [S, B]
  if kl_dims is None:
    kl = sg(jnp.mean(log_q - log_prior, 0))                                 # MC KL: [B]
  else:
    kl = jnp.sum(kl_dims, -1)                                               # [B]
  kl_term = kl_weight * kl
  if free_bits:
    above = jnp.mean(kl_dims, 0) > free_bits                                # [L]
    kl_term = kl_weight * jnp.sum(jnp.where(above, kl_dims, free_bits), -1)
  new_state = est_state
  kind = ESTIMATORS[estimator]

  if kind == "elbo":
    if estimator == "reparam":
      if kl_dims is None:
        sur = jnp.mean(log_lik + kl_weight * (log_prior - log_q), 0)
      else:
        sur = jnp.mean(log_lik, 0) - kl_term
    elif estimator == "stl":
      log_q_stopped = jax.tree_util.tree_map(sg, q).log_prob(z)             # phi stopped
      sur = jnp.mean(log_lik + kl_weight * (log_prior - log_q_stopped), 0)
    else:
      if kl_dims is None:   # f = log p(x|z) + beta (log p(z) - log q(z|x)), z fixed
        f_direct = log_lik + kl_weight * (log_prior - sg(log_q))
      else:
        f_direct = log_lik
      f = sg(f_direct)
      if estimator == "score":
        b = 0.0
      elif estimator == "score_baseline":
        b = est_state["baseline"]
        new_state = update_baseline(est_state, jnp.mean(f), baseline_decay)
      else:
        b = loo_baseline(f)
      # value: mean_s f_s; grad_theta direct; grad_phi the score term.
      sur = jnp.mean(f_direct + sg(f - b) * (log_q - sg(log_q)), 0)
      if kl_dims is not None:
        sur = sur - kl_term
    recon = jnp.mean(log_lik, 0)
    per_example = recon - kl
  else:
    log_w = log_lik + log_prior - log_q                                     # [S, B]
    bound = iwae.log_mean_exp(log_w)                                        # [B]
    if estimator == "iwae":
      sur = bound
    elif estimator == "dreg":
      # Decoder and prior: direct IWAE gradient (z fixed). Encoder: DReG surrogate.
      zs = sg(z)
      log_w_dec = (objectives.log_likelihood(x, decode(dec, zs)) + prior.log_prob(zs)
                   - sg(log_q))
      bound_dec = iwae.log_mean_exp(log_w_dec)
      log_q_stopped = jax.tree_util.tree_map(sg, q).log_prob(z)
      log_w_enc = (objectives.log_likelihood(x, decode(sg(dec), z))
                   + jax.tree_util.tree_map(sg, prior).log_prob(z) - log_q_stopped)
      w_tilde = sg(jax.nn.softmax(log_w_enc, 0))
      enc_sur = jnp.sum(w_tilde**2 * log_w_enc, 0)
      sur = bound_dec + enc_sur - sg(enc_sur)
    else:  # vimco: z was drawn stopped; log q carries the gradient to phi
      # theta: direct gradient; phi: pathwise only through log q (z stopped).
      lw = sg(log_w)
      s = num_samples
      # Replace log w_s by the mean of the others' log-weights (geometric mean).
      lw_mean_others = (jnp.sum(lw, 0, keepdims=True) - lw) / (s - 1)
      lw_minus = jnp.where(jnp.eye(s, dtype=bool)[:, :, None], lw_mean_others[None], lw[None])
      baseline = jax.nn.logsumexp(lw_minus, 1) - math.log(s)                # [S, B]
      learning_signal = sg(bound)[None] - baseline
      score = jnp.sum(sg(learning_signal) * (log_q - sg(log_q)), 0)
      sur = bound + score
    recon = jnp.mean(log_lik, 0)
    per_example = recon - kl
  loss = -jnp.mean(sur)
  return loss, ({"recon": sg(recon), "kl": sg(kl), "elbo": sg(bound if kind == "iwae"
                                                              else per_example)}, new_state)


def make_vae_loss(model, estimator: str, num_samples: int, *, baseline_decay: float = 0.9,
                  free_bits: float = 0.0):
  """(loss_fn, est_state0): loss_fn(params, x, key, est_state[, kl_weight=beta]).

  ``vae_jax.tasks.vae_task`` wraps it as the trainer's loss.
  """
  check_estimator(estimator, num_samples, baseline_decay)
  if free_bits and estimator not in KL_ESTIMATORS:
    raise UserError(f"free bits need an analytic KL term; estimator {estimator!r} has none "
                    f"(use one of {', '.join(KL_ESTIMATORS)}).")
  loss_fn = functools.partial(vae_surrogate, model=model, estimator=estimator,
                              num_samples=num_samples, baseline_decay=baseline_decay,
                              free_bits=float(free_bits))
  return loss_fn, (init_baseline() if estimator == "score_baseline" else {})


def encoder_grad_fn(loss_fn: Callable, params: Any, x: Array, est_state: Any) -> Callable:
  """key -> gradient of the encoder parameters of one estimator draw (for statistics)."""
  def grad_fn(key):
    g = jax.grad(lambda p: loss_fn(p, x, key, est_state)[0])(params)
    return g["params"]["encoder"]
  return grad_fn
