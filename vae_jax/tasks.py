"""Trainable models as ``trainer.Task``s, built from a run's config, and reloaded.

Everything a notebook needs to rebuild a trained model from its workdir lives
here: the model from ``config.model``, the data from ``config.data``, the
train state's structure, and ``load_checkpoint``. The experiments build their
tasks with ``build_task`` and hand them to ``trainer.train``.

The model is named by ``config.model.name`` (so any experiment that trains one,
``amortization`` and ``estimator_variance`` included, rebuilds it the same way):

================  ============================  ===================================
``model.name``    model                         loss (its gradient trains it)
================  ============================  ===================================
``vae``           ``models.make_vae``           ``estimators.vae_surrogate``
``discrete_vae``  ``discrete_vae.DiscreteVAE``  ``discrete_vae.elbo_surrogate``
``made``          ``autoregressive.MADE``       ``autoregressive.nll_loss`` (MLE)
================  ============================  ===================================
"""

from __future__ import annotations

import functools
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import autoregressive
from vae_jax import checkpointing
from vae_jax import data as data_lib
from vae_jax import discrete_vae
from vae_jax import estimators
from vae_jax import iwae
from vae_jax import keys
from vae_jax import models
from vae_jax import objectives
from vae_jax import optim
from vae_jax import trainer
from vae_jax import workdir as wd
from vae_jax.errors import UserError, check_choice, check_positive



# ----------------------------------------------------------------------------
# Config checks and data.
# ----------------------------------------------------------------------------


def hidden_dims(value, name: str = "config.model.hidden_dims") -> tuple[int, ...]:
  """(200, 200), [200, 200] or '200,200' -> (200, 200); () or '' -> ()."""
  if isinstance(value, int):
    value = (value,)
  if isinstance(value, (list, tuple)):
    try:
      dims = tuple(int(v) for v in value)
    except (TypeError, ValueError):
      dims = None
  else:
    try:
      dims = tuple(int(v) for v in str(value or "").split(",") if v.strip())
    except ValueError:
      dims = None
  if dims is None or any(d <= 0 for d in dims):
    raise UserError(f"--{name} must be a tuple of positive integers like (200, 200), "
                    f"or () for a linear map; got {value!r}.")
  return dims


def validate_data_config(config) -> None:
  check_choice(config.data.dataset, data_lib.DATASETS, "config.data.dataset")
  check_choice(config.data.binarize, data_lib.BINARIZATIONS, "config.data.binarize")


def load_data(config) -> data_lib.Dataset:
  """The run's data as ``config.data`` says; static binarization from the ``binarize`` stream."""
  validate_data_config(config)
  return data_lib.load_arrays(
      config.data.dataset, config.data.get("data_dir"), binarize=config.data.binarize,
      seed=keys.numpy_seed(keys.stream(keys.root(config.seed), "binarize")))


def _check_estimator_settings(config, allowed: Sequence[str]) -> None:
  o = config.objective
  check_choice(o.estimator, allowed, "config.objective.estimator")
  check_positive(o.num_samples, "config.objective.num_samples", integer=True)
  if o.estimator in ("score_loo", "vimco") and int(o.num_samples) < 2:
    raise UserError(f"--config.objective.estimator={o.estimator} needs "
                    f"--config.objective.num_samples >= 2 (the baseline of each sample "
                    f"comes from the others), got {o.num_samples}.")
  if not 0.0 <= float(o.get("baseline_decay", 0.9)) < 1.0:
    raise UserError(f"--config.objective.baseline_decay must be in [0, 1), got "
                    f"{o.baseline_decay}.")


def validate_vae_config(config) -> None:
  """Checks the VAE's model and objective settings; UserError names the key."""
  m, o = config.model, config.objective
  check_choice(m.kind, ("mlp", "conv"), "config.model.kind")
  check_choice(m.likelihood, models.LIKELIHOODS, "config.model.likelihood")
  check_choice(m.gaussian_scale, models.GAUSSIAN_SCALES, "config.model.gaussian_scale")
  check_choice(m.activation, models.ACTIVATIONS, "config.model.activation")
  check_positive(m.latent_dim, "config.model.latent_dim", integer=True)
  hidden_dims(m.hidden_dims)
  _check_estimator_settings(config, tuple(estimators.ESTIMATORS))
  validate_family(config)
  iw = config.eval.get("iw_samples", 0)
  if not isinstance(iw, int) or iw < 0:
    raise UserError(f"--config.eval.iw_samples must be an integer >= 0 (0 skips the "
                    f"importance-weighted estimate), got {iw!r}.")
  for name in ("e_steps", "m_steps"):
    check_positive(o[name], f"config.objective.{name}", integer=True)
  warmup, free_bits = o.get("kl_warmup_steps", 0), o.get("free_bits", 0.0)
  if not isinstance(warmup, int) or warmup < 0:
    raise UserError(f"--config.objective.kl_warmup_steps must be an integer >= 0 (0: no "
                    f"warm-up), got {warmup!r}.")
  if not free_bits >= 0:
    raise UserError(f"--config.objective.free_bits must be >= 0 nats per latent dimension "
                    f"(0: off), got {free_bits!r}.")
  if warmup and o.estimator not in estimators.KL_WEIGHTED_ESTIMATORS:
    raise UserError(f"--config.objective.kl_warmup_steps needs an objective with a KL part "
                    f"({', '.join(estimators.KL_WEIGHTED_ESTIMATORS)}); {o.estimator} trains "
                    f"the IWAE bound.")
  if free_bits and o.estimator not in estimators.KL_ESTIMATORS:
    raise UserError(f"--config.objective.free_bits needs the analytic KL term "
                    f"({', '.join(estimators.KL_ESTIMATORS)}), not {o.estimator}.")


def analytic_kl(model_config) -> bool:
  """Whether KL(q || p) has a closed form: a Gaussian q and p = N(0, I), one layer."""
  return (model_config.posterior == "gaussian" and model_config.prior == "standard"
          and model_config.top_latent_dim is None)


def validate_family(config) -> None:
  """Checks ``model.posterior``, ``flow_steps``, ``prior``, ``prior_components`` and
  what the family supports of ``config.objective``; UserError names the key."""
  m, o = config.model, config.objective
  check_choice(m.posterior, models.POSTERIORS, "config.model.posterior")
  check_choice(m.prior, models.PRIORS, "config.model.prior")
  if m.posterior == "gaussian":
    if m.flow_steps is not None:
      raise UserError(f"--config.model.flow_steps={m.flow_steps!r} is for a flow posterior "
                      f"(--config.model.posterior=planar or iaf); the gaussian posterior has "
                      f"no flow. Leave it unset.")
  elif (isinstance(m.flow_steps, bool) or not isinstance(m.flow_steps, int)
        or m.flow_steps < 1):
    raise UserError(f"--config.model.flow_steps must be an integer >= 1 (the number of "
                    f"{m.posterior} maps) for --config.model.posterior={m.posterior}, got "
                    f"{m.flow_steps!r}.")
  if m.prior == "standard":
    if m.prior_components is not None:
      raise UserError(f"--config.model.prior_components={m.prior_components!r} is for a "
                      f"mixture prior (--config.model.prior=mog or vamp); the standard "
                      f"prior N(0, I) has none. Leave it unset.")
  elif (isinstance(m.prior_components, bool) or not isinstance(m.prior_components, int)
        or m.prior_components < 1):
    raise UserError(f"--config.model.prior_components must be an integer >= 1 (K, the "
                    f"mixture's components) for --config.model.prior={m.prior}, got "
                    f"{m.prior_components!r}.")
  if m.top_latent_dim is None:
    if tuple(hidden_dims(m.top_hidden_dims, "config.model.top_hidden_dims")):
      raise UserError(f"--config.model.top_hidden_dims={tuple(m.top_hidden_dims)!r} is for a "
                      f"second stochastic layer; set --config.model.top_latent_dim too, or "
                      f"leave it ().")
  else:
    if (isinstance(m.top_latent_dim, bool) or not isinstance(m.top_latent_dim, int)
        or m.top_latent_dim < 1):
      raise UserError(f"--config.model.top_latent_dim must be an integer >= 1 (the size of "
                      f"the second stochastic layer z2), got {m.top_latent_dim!r}.")
    hidden_dims(m.top_hidden_dims, "config.model.top_hidden_dims")
    if m.kind != "mlp":
      raise UserError(f"--config.model.top_latent_dim (two stochastic layers) is implemented "
                      f"for --config.model.kind=mlp, not {m.kind}.")
    if m.posterior != "gaussian" or m.prior != "standard":
      raise UserError(f"--config.model.top_latent_dim (two stochastic layers) has its own "
                      f"prior p(z2) p(z|z2) over Gaussian layers; it takes "
                      f"--config.model.posterior=gaussian and --config.model.prior=standard "
                      f"(here {m.posterior}, {m.prior}).")
  if m.posterior != "gaussian" and o.estimator not in estimators.FLOW_ESTIMATORS:
    raise UserError(f"--config.objective.estimator={o.estimator} needs log q(z|x) at a given "
                    f"z, which a {m.posterior} flow posterior does not have here; use one of "
                    f"{', '.join(estimators.FLOW_ESTIMATORS)}.")
  if o.free_bits and not analytic_kl(m):
    raise UserError(f"--config.objective.free_bits needs a closed-form KL per latent "
                    f"dimension, which only --config.model.posterior=gaussian with "
                    f"--config.model.prior=standard has (here posterior={m.posterior}, "
                    f"prior={m.prior}); set free_bits=0.")


def prior_is_fixed(model_config) -> bool:
  """N(0, I) has no parameters; a mixture, the VampPrior and p(z1 | z2) do."""
  return model_config.prior == "standard" and model_config.top_latent_dim is None


def validate_vae_data(ds: data_lib.Dataset, config) -> None:
  """Refuses data the chosen likelihood or architecture cannot model."""
  bernoulli = config.model.likelihood == "bernoulli"
  data_lib.check_pixels(ds, "--config.model.likelihood=bernoulli" if bernoulli else None,
                        "rescale it or use --config.model.likelihood=gaussian")
  if config.model.kind == "conv" and (ds.image_shape[0] % 4 or ds.image_shape[1] % 4):
    raise UserError(f"--config.model.kind=conv needs image sides divisible by 4; {ds.name} "
                    f"images are {tuple(ds.image_shape)}. Use --config.model.kind=mlp.")


# ----------------------------------------------------------------------------
# The VAE.
# ----------------------------------------------------------------------------


COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(config):
  """``train.compute_dtype`` as a dtype: float32 (default) or bfloat16."""
  name = config.get("train", {}).get("compute_dtype", "float32")
  return COMPUTE_DTYPES[check_choice(name, tuple(COMPUTE_DTYPES), "config.train.compute_dtype")]


def build_vae(model_config, image_shape: Sequence[int], dtype=None) -> models.VAE:
  """The VAE of ``config.model`` for images of ``image_shape`` (H, W, C), computing
  in ``dtype`` (None: float32) with float32 parameters and outputs."""
  return models.make_vae(
      kind=model_config.kind, image_shape=tuple(image_shape),
      latent_dim=int(model_config.latent_dim), hidden_dims=hidden_dims(model_config.hidden_dims),
      likelihood=model_config.likelihood, gaussian_scale=model_config.gaussian_scale,
      activation=model_config.activation, dtype=dtype, posterior=model_config.posterior,
      flow_steps=model_config.flow_steps or 0, prior=model_config.prior,
      prior_components=model_config.prior_components or 0,
      top_latent_dim=model_config.top_latent_dim or 0,
      top_hidden_dims=hidden_dims(model_config.top_hidden_dims, "config.model.top_hidden_dims"))


def vae_eval_step(params: Any, x: jax.Array, mask: jax.Array, key: jax.Array, *,
                  model, iw_samples: int = 0) -> dict:
  """Sums of per-example terms over the unmasked rows of one eval batch.

  Args:
    x: [B, D] batch (zero-padded), mask: [B] 1 for real rows.

  Returns:
    Scalar sums: neg_elbo (one reparametrized sample, analytic KL), recon, kl,
    count, and neg_log_likelihood_iw (the K = iw_samples IWAE bound) when
    iw_samples > 0. Always the true ELBO, whatever the training objective.
  """
  _, aux = objectives.elbo(params, x, jax.random.fold_in(key, 0), model=model, num_samples=1)
  out = {"neg_elbo": -jnp.sum(aux["elbo"] * mask), "recon": jnp.sum(aux["recon"] * mask),
         "kl": jnp.sum(aux["kl"] * mask), "count": jnp.sum(mask)}
  if iw_samples:
    # Streamed in chunks (vae_jax.iwae): memory does not grow with K.
    ll = iwae.iwae_bound_streamed(params, x, jax.random.fold_in(key, 1), model=model,
                                  num_samples=iw_samples)
    out["neg_log_likelihood_iw"] = -jnp.sum(ll * mask)
  return out


def _elbo_metrics(aux: dict, dataset_size: int | None = None, bound: str = "elbo") -> dict:
  """Batch means of recon, kl and the training bound (``elbo``, or ``iwae_bound``
  for the IWAE-objective estimators), and the bound's full-data estimate."""
  out = {k: jnp.mean(aux[k]) for k in ("recon", "kl")}
  out[bound] = jnp.mean(aux["elbo"])
  if dataset_size:
    out[f"{bound}_full_data"] = objectives.full_data_elbo_estimate(aux["elbo"], dataset_size)
  return out


def kl_weight(step: jax.Array, warmup_steps: int) -> jax.Array:
  """KL warm-up: beta = min(1, step / warmup_steps), rising linearly from 0; 1 without it."""
  if not warmup_steps:
    return jnp.ones((), jnp.float32)
  return jnp.minimum(1.0, step.astype(jnp.float32) / warmup_steps)


def _vae_loss(params, x, key, est_state, step, *, base, warmup_steps):
  return base(params, x, key, est_state, kl_weight=kl_weight(step, warmup_steps))


def _no_step(loss_fn):
  """A (params, x, key, est_state) loss as the trainer's (..., step) loss."""
  return lambda params, x, key, est_state, step: loss_fn(params, x, key, est_state)


def _init_fn(model, num_dims: int):
  return lambda key: model.init(key, jnp.zeros((1, num_dims), jnp.float32))


def vae_task(config, image_shape: Sequence[int], num_train: int | None = None) -> trainer.Task:
  """The VAE of ``config.model`` trained with ``config.objective``'s estimator.

  With ``train.compute_dtype = "bfloat16"`` the training loss runs the networks
  in bfloat16 (mixed precision: float32 parameters, optimizer state and
  log-likelihood sums); evaluation always runs in float32.
  """
  validate_vae_config(config)
  model = build_vae(config.model, image_shape)
  dtype = compute_dtype(config)
  train_model = model if dtype == jnp.float32 else build_vae(config.model, image_shape, dtype)
  o = config.objective
  base, est0 = estimators.make_vae_loss(train_model, o.estimator, int(o.num_samples),
                                        baseline_decay=float(o.baseline_decay),
                                        free_bits=float(o.get("free_bits", 0.0)))
  iw = int(config.eval.get("iw_samples", 0))
  return trainer.Task(
      name="vae", model=model, init_params=_init_fn(model, int(np.prod(image_shape))),
      loss_fn=functools.partial(_vae_loss, base=base,
                                warmup_steps=int(o.get("kl_warmup_steps", 0))),
      est_state=est0,
      train_metrics=functools.partial(
          _elbo_metrics, dataset_size=num_train,
          bound="iwae_bound" if estimators.ESTIMATORS[o.estimator] == "iwae" else "elbo"),
      eval_step=functools.partial(vae_eval_step, model=model),
      final_eval_step=functools.partial(vae_eval_step, model=model, iw_samples=iw),
      bits_per_dim={"neg_elbo": "bits_per_dim", "neg_log_likelihood_iw": "bits_per_dim_iw"},
      headline=("loss", "recon", "kl"), eval_headline="neg_elbo",
      groups=("encoder", "decoder") + (() if prior_is_fixed(config.model) else ("prior",)),
      phases=(int(o.e_steps), int(o.m_steps)))


# ----------------------------------------------------------------------------
# The discrete-latent VAE.
# ----------------------------------------------------------------------------


def build_discrete_vae(model_config, num_dims: int) -> discrete_vae.DiscreteVAE:
  return discrete_vae.DiscreteVAE(hidden_dims=hidden_dims(model_config.hidden_dims),
                                  latent_dim=int(model_config.latent_dim), output_dim=num_dims)


def _float32_only(config, what: str) -> None:
  if compute_dtype(config) != jnp.float32:
    raise UserError(f"--config.train.compute_dtype=bfloat16 is implemented for the VAE; "
                    f"{what} trains in float32.")


def discrete_vae_task(config, image_shape: Sequence[int],
                      num_train: int | None = None) -> trainer.Task:
  """Bernoulli latents trained with a score-function estimator; exact eval when small."""
  _float32_only(config, "the discrete VAE")
  check_positive(config.model.latent_dim, "config.model.latent_dim", integer=True)
  check_positive(config.objective.num_samples, "config.objective.num_samples", integer=True)
  discrete_vae.check_estimator(config.objective.estimator, config.objective.num_samples)
  _check_estimator_settings(config, discrete_vae.DISCRETE_ESTIMATORS)
  num_dims = int(np.prod(image_shape))
  model = build_discrete_vae(config.model, num_dims)
  o = config.objective
  loss_fn, est0 = discrete_vae.make_loss(model, o.estimator, int(o.num_samples),
                                         float(o.baseline_decay))
  exact = model.latent_dim <= discrete_vae.MAX_EXACT_LATENT_DIM
  return trainer.Task(
      name="discrete_vae", model=model, init_params=_init_fn(model, num_dims),
      loss_fn=_no_step(loss_fn), est_state=est0,
      train_metrics=functools.partial(_elbo_metrics, dataset_size=num_train),
      eval_step=functools.partial(discrete_vae.eval_step, model=model, exact=exact),
      bits_per_dim={"neg_elbo": "bits_per_dim", "exact_nll": "exact_bits_per_dim"},
      headline=("loss", "recon", "kl"), eval_headline="exact_nll" if exact else "neg_elbo",
      groups=("encoder", "decoder"), eval_at_start=True)


# ----------------------------------------------------------------------------
# MADE, the exact-likelihood baseline.
# ----------------------------------------------------------------------------


def build_made(model_config) -> autoregressive.MADE:
  return autoregressive.MADE(hidden_dims=hidden_dims(model_config.hidden_dims))


def _made_loss(params, x, key, est_state, step, *, model):
  del key, step
  loss, aux = autoregressive.nll_loss(params, x, model=model)
  return loss, ({"nll": -aux["log_prob"]}, est_state)


def _made_metrics(aux: dict, num_dims: int) -> dict:
  nll = jnp.mean(aux["nll"])
  return {"nll": nll, "bits_per_dim": objectives.bits_per_dim(nll, num_dims)}


def made_task(config, image_shape: Sequence[int], num_train: int | None = None) -> trainer.Task:
  """MADE trained by maximum likelihood (no noise: the key is unused)."""
  del num_train
  _float32_only(config, "MADE")
  model = build_made(config.model)
  num_dims = int(np.prod(image_shape))
  return trainer.Task(
      name="made", model=model, init_params=_init_fn(model, num_dims),
      loss_fn=functools.partial(_made_loss, model=model), est_state={},
      train_metrics=functools.partial(_made_metrics, num_dims=num_dims),
      eval_step=functools.partial(autoregressive.eval_step, model=model),
      bits_per_dim={"nll": "bits_per_dim"}, headline=("nll", "bits_per_dim"),
      eval_headline="nll")


MODELS = {"vae": vae_task, "discrete_vae": discrete_vae_task, "made": made_task}


def build_task(config, image_shape: Sequence[int], num_train: int | None = None
               ) -> trainer.Task:
  """The task of ``config.model.name`` for data of ``image_shape``."""
  name = config.get("model", {}).get("name")
  if name not in MODELS:
    raise UserError(f"this config trains no model (config.model.name={name!r}); the "
                    f"trained models are {', '.join(MODELS)}.")
  return MODELS[name](config, image_shape, num_train)


# ----------------------------------------------------------------------------
# Reloading a run.
# ----------------------------------------------------------------------------


def read_run_config(workdir: str):
  """The saved ``config.json`` of a run as a ConfigDict."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, wd.CONFIG_FILE)
  if not os.path.exists(path):
    raise UserError(f"{workdir} holds no {wd.CONFIG_FILE}; is it a vae_jax workdir?")
  return ml_collections.ConfigDict(wd.upgrade_config(wd.read_json(path)))


def load_checkpoint(workdir: str, step: int | None = None):
  """Loads a trained model from its workdir (for notebooks, evaluation, tests).

  Args:
    workdir: a run's ``--workdir`` (VAE, discrete VAE or MADE).
    step: checkpoint step; the newest intact one when None.

  Returns:
    (model, state, config): the Flax module, the restored
    ``trainer.TrainState`` (``state.params`` are the model's variables) and
    the run's config (a ConfigDict).
  """
  config = read_run_config(workdir)
  spec_path = os.path.join(workdir, wd.DATA_SPEC_FILE)
  if not os.path.exists(spec_path):
    raise UserError(f"{workdir} holds no {wd.DATA_SPEC_FILE}; it is not a training run.")
  spec = wd.read_json(spec_path)
  task = build_task(config, tuple(spec["image_shape"]))
  tx = optim.make_optimizer(
      config.train, max(1, int(spec["num_train"]) // int(config.train.batch_size)))
  template = trainer.create_train_state(jax.random.key(0), jax.random.key(0), task, tx)
  manager = checkpointing.make_manager(workdir)
  try:
    if step is None:
      restored = checkpointing.restore_latest(manager, template)
      if restored is None:
        raise UserError(f"no checkpoint in {checkpointing.checkpoint_dir(workdir)}.")
      state = restored[0]
    else:
      state, _ = checkpointing.restore(manager, step, template)
  finally:
    checkpointing.close(manager)
  return task.model, state, config
