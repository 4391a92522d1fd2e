"""The VAE as a trainable model: validate its config, build its task, estimate log p(x).

The model of ``model.name = "vae"``: an encoder q(z|x) of any posterior family
and a prior p(z) (``vae_jax.families``), a decoder p(x|z) (``networks``),
trained with any estimator of ``vae_jax.inference.estimators``. Every rule about its
config is checked here, once, by ``validate``; ``build`` turns a validated
config into the trainer's ``Task``; ``log_likelihood`` is its evaluation
estimate of log p(x): the IWAE bound with K samples (``NLL_METHOD``).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import data as data_lib
from vae_jax.inference import estimators
from vae_jax.inference import iwae
from vae_jax.inference import objectives
from vae_jax.inference import refinement as refinement_lib
from vae_jax.training import task as task_lib
from vae_jax.errors import UserError, check_choice, check_positive
from vae_jax.models import common
from vae_jax.models import networks
from vae_jax.families.posteriors import REGISTRY as POSTERIORS
from vae_jax.families.priors import REGISTRY as PRIORS

NAME = "vae"
# How evaluation estimates log p(x): the IWAE bound (no closed form).
NLL_METHOD = "iwae"


def validate(config) -> None:
  """Checks the VAE's model and objective settings; UserError names the key."""
  m, o = config.model, config.objective
  check_choice(m.kind, ("mlp", "conv"), "config.model.kind")
  check_choice(m.likelihood, networks.LIKELIHOODS, "config.model.likelihood")
  check_choice(m.gaussian_scale, networks.GAUSSIAN_SCALES, "config.model.gaussian_scale")
  check_choice(m.activation, networks.ACTIVATIONS, "config.model.activation")
  check_positive(m.latent_dim, "config.model.latent_dim", integer=True)
  common.hidden_dims(m.hidden_dims)
  validate_family(config)
  refinement_lib.validate(m, refinable=getattr(parts(m)[0], "REFINABLE", False),
                          family=f"posterior={m.posterior}")
  estimators.validate(o, has_density=parts(m)[0].HAS_DENSITY, closed_form_kl=analytic_kl(m),
                      family=f"posterior={m.posterior}, prior={m.prior}")
  check_positive(config.eval.iw_samples, "config.eval.iw_samples", integer=True, minimum=0,
                 meaning="0 skips the importance-weighted estimate")
  for name in ("e_steps", "m_steps"):
    check_positive(o[name], f"config.objective.{name}", integer=True)


def parts(model_config):
  """(posterior module, prior module) of ``config.model`` (``vae_jax.families``)."""
  return POSTERIORS.get(model_config.posterior), PRIORS.get(model_config.prior)


def analytic_kl(model_config) -> bool:
  """Whether KL(q || p) has a closed form: both families have one, one stochastic layer."""
  posterior, prior = parts(model_config)
  return (posterior.CLOSED_FORM_KL and prior.CLOSED_FORM_KL
          and model_config.top_latent_dim is None)


def validate_family(config) -> None:
  """Checks the posterior family, the prior and the second stochastic layer (each part
  its own keys: ``vae_jax.families``) and what they support of ``config.objective``;
  UserError names the key."""
  m = config.model
  posterior = POSTERIORS.validate(m)
  prior = PRIORS.validate(m)
  if m.top_latent_dim is None:
    if tuple(common.hidden_dims(m.top_hidden_dims, "config.model.top_hidden_dims")):
      raise UserError(f"--config.model.top_hidden_dims={tuple(m.top_hidden_dims)!r} is for a "
                      f"second stochastic layer; set --config.model.top_latent_dim too, or "
                      f"leave it ().")
  else:
    check_positive(m.top_latent_dim, "config.model.top_latent_dim", integer=True)
    common.hidden_dims(m.top_hidden_dims, "config.model.top_hidden_dims")
    if m.kind != "mlp":
      raise UserError(f"--config.model.top_latent_dim (two stochastic layers) is implemented "
                      f"for --config.model.kind=mlp, not {m.kind}.")
    if not (posterior.TWO_LAYERS and prior.TWO_LAYERS):
      raise UserError(f"--config.model.top_latent_dim (two stochastic layers) has its own "
                      f"prior p(z2) p(z|z2) over Gaussian layers; it takes "
                      f"--config.model.posterior=gaussian and --config.model.prior=standard "
                      f"(here {m.posterior}, {m.prior}).")


def prior_is_fixed(model_config) -> bool:
  """Whether p(z) has no parameters (N(0, I)); a mixture, the VampPrior and p(z1 | z2) do."""
  return not PRIORS.get(model_config.prior).LEARNED and model_config.top_latent_dim is None


def validate_data(ds: data_lib.Dataset, config) -> None:
  """Refuses data the chosen likelihood or architecture cannot model."""
  bernoulli = config.model.likelihood == "bernoulli"
  data_lib.check_pixels(ds, "--config.model.likelihood=bernoulli" if bernoulli else None,
                        "rescale it or use --config.model.likelihood=gaussian")
  if config.model.kind == "conv":
    networks.check_conv_shape(ds.image_shape, f"{ds.name} images")


def build_network(model_config, image_shape: Sequence[int], dtype=None) -> networks.VAE:
  """The VAE of ``config.model`` for images of ``image_shape`` (H, W, C), computing
  in ``dtype`` (None: float32) with float32 parameters and outputs."""
  posterior, prior = parts(model_config)
  family = {k: model_config[k] for k in posterior.KEYS + prior.KEYS}
  return networks.make_vae(
      kind=model_config.kind, image_shape=tuple(image_shape),
      latent_dim=int(model_config.latent_dim),
      hidden_dims=common.hidden_dims(model_config.hidden_dims),
      likelihood=model_config.likelihood, gaussian_scale=model_config.gaussian_scale,
      activation=model_config.activation, dtype=dtype, posterior=model_config.posterior,
      prior=model_config.prior, top_latent_dim=model_config.top_latent_dim or 0,
      top_hidden_dims=common.hidden_dims(model_config.top_hidden_dims,
                                         "config.model.top_hidden_dims"),
      scale_head=model_config.scale_head, **family)


def eval_step(params: Any, x: jax.Array, mask: jax.Array, key: jax.Array, *,
              model, iw_samples: int = 0, refinement=None) -> dict:
  """Sums of per-example terms over the unmasked rows of one eval batch.

  Args:
    x: [B, D] batch (zero-padded), mask: [B] 1 for real rows.
    refinement: the semi-amortized VAE's ``refinement.Refinement`` (None: none).

  Returns:
    Scalar sums: neg_elbo (one reparametrized sample, analytic KL), recon, kl,
    count, and neg_log_likelihood_iw (the K = iw_samples IWAE bound) when
    iw_samples > 0: always of the encoder's q, the true ELBO whatever the
    training objective. With a refinement, also neg_elbo_refined (and
    neg_log_likelihood_iw_refined): the same estimates, on the same draws, with
    the refined q_K (refined from ``fold_in(key, 2)``) in place of the encoder's.
  """
  q = model.apply(params, x, method="encode")
  _, aux = objectives.elbo(params, x, jax.random.fold_in(key, 0), model=model, num_samples=1,
                           q=q)
  out = {"neg_elbo": -jnp.sum(aux["elbo"] * mask), "recon": jnp.sum(aux["recon"] * mask),
         "kl": jnp.sum(aux["kl"] * mask), "count": jnp.sum(mask)}
  proposals = {"": q}
  if refinement is not None:
    proposals["_refined"], _ = refinement_lib.refine(params, x, jax.random.fold_in(key, 2), q,
                                                     model=model, refinement=refinement)
    _, aux = objectives.elbo(params, x, jax.random.fold_in(key, 0), model=model,
                             num_samples=1, q=proposals["_refined"])
    out["neg_elbo_refined"] = -jnp.sum(aux["elbo"] * mask)
  if iw_samples:
    # Streamed in chunks (vae_jax.inference.iwae): memory does not grow with K.
    prior = model.apply(params, method="prior_distribution")
    for suffix, proposal in proposals.items():
      ll = iwae.iwae_terms_given_q(params, x, jax.random.fold_in(key, 1), proposal, prior,
                                   model=model, num_samples=iw_samples)["iwae"]
      out[f"neg_log_likelihood_iw{suffix}"] = -jnp.sum(ll * mask)
  return out


def kl_weight(step: jax.Array, warmup_steps: int) -> jax.Array:
  """KL warm-up: beta = min(1, step / warmup_steps), rising linearly from 0; 1 without it."""
  if not warmup_steps:
    return jnp.ones((), jnp.float32)
  return jnp.minimum(1.0, step.astype(jnp.float32) / warmup_steps)


def train_metrics(aux: dict, dataset_size: int | None = None, bound: str = "elbo") -> dict:
  """``common.elbo_metrics``, and for the semi-amortized VAE ``elbo_amortized``: the
  batch mean of the encoder's own q's one-draw ELBO (``elbo`` is the refined q's)."""
  out = common.elbo_metrics(aux, dataset_size, bound)
  if "elbo_amortized" in aux:
    out["elbo_amortized"] = jnp.mean(aux["elbo_amortized"])
  return out


def _vae_loss(params, x, key, est_state, step, *, base, warmup_steps):
  return base(params, x, key, est_state, kl_weight=kl_weight(step, warmup_steps))


def build(config, image_shape: Sequence[int], num_train: int | None = None) -> task_lib.Task:
  """The VAE of ``config.model`` trained with ``config.objective``'s estimator
  (``config`` already ``validate``d).

  With ``train.compute_dtype = "bfloat16"`` the training loss runs the networks
  in bfloat16 (mixed precision: float32 parameters, optimizer state and
  log-likelihood sums); evaluation always runs in float32.
  """
  model = build_network(config.model, image_shape)
  dtype = common.compute_dtype(config)
  train_model = model if dtype == jnp.float32 else build_network(config.model, image_shape, dtype)
  o = config.objective
  refinement = refinement_lib.from_config(config.model)
  base, est0 = estimators.make_vae_loss(train_model, o.estimator, int(o.num_samples),
                                        baseline_decay=float(o.baseline_decay),
                                        free_bits=float(o.free_bits), refinement=refinement)
  iw = int(config.eval.iw_samples)
  bound = estimators.ESTIMATORS[o.estimator].objective.metric
  return task_lib.Task(
      name="vae", model=model, init_params=common.init_fn(model, int(np.prod(image_shape))),
      loss_fn=functools.partial(_vae_loss, base=base,
                                warmup_steps=int(o.kl_warmup_steps)),
      est_state=est0,
      train_metrics=functools.partial(train_metrics, dataset_size=num_train, bound=bound),
      eval_step=functools.partial(eval_step, model=model, refinement=refinement),
      final_eval_step=functools.partial(eval_step, model=model, iw_samples=iw,
                                        refinement=refinement),
      bits_per_dim={"neg_elbo": "bits_per_dim", "neg_log_likelihood_iw": "bits_per_dim_iw",
                    "neg_elbo_refined": "bits_per_dim_refined",
                    "neg_log_likelihood_iw_refined": "bits_per_dim_iw_refined"},
      headline=("loss", "recon", "kl"), eval_headline="neg_elbo",
      groups=("encoder", "decoder") + (() if prior_is_fixed(config.model) else ("prior",)),
      phases=(int(o.e_steps), int(o.m_steps)))


def log_likelihood(params: Any, x: np.ndarray, key: jax.Array, *, model, num_samples: int,
                   chunk_size: int | None = None, batch_size: int = iwae.DEFAULT_BATCH_SIZE,
                   progress=None, refinement=None) -> np.ndarray:
  """Per-example IWAE-K estimates of log p(x) over ``x``: [N] (``iwae.evaluate_iwae``;
  ``progress(examples_done)`` as each batch finishes); with a ``refinement``, the
  proposal is the refined q (``refinement.iwae_bound``), else the encoder's."""
  return iwae.evaluate_iwae(params, x, key, model=model, num_samples=num_samples,
                            chunk_size=chunk_size, batch_size=batch_size, progress=progress,
                            batch_fn=None if refinement is None
                            else refinement_lib.batch_fn(refinement))
