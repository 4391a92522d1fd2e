"""The VAE: train with the chosen estimator, evaluate, sample from the prior.

``run(config, workdir)`` trains through ``vae_jax.training.trainer`` (checkpoints and
resume in ``workdir``), then writes ``summary.json`` (final eval -ELBO, recon,
KL, bits/dim, the K = ``eval.iw_samples`` IWAE estimate of -log p(x),
throughput; for a semi-amortized VAE, ``model.refine_steps`` > 0, also
``eval_neg_elbo_refined`` and ``eval_neg_log_likelihood_iw_refined``: the same
estimates with the refined q, ``vae_jax.inference.refinement``) and three figures:

* ``samples.png``: decoder means E[x|z] for z drawn from the model's prior;
* ``reconstructions.png``: held-out inputs and E[x|z] at the mean of q(z|x);
* ``training_curves.png``: train and eval -ELBO per step (the train -IWAE
  bound when the estimator trains on it, the final IWAE estimate of -log p(x)
  when the run made one; a semi-amortized VAE's eval -ELBO of its refined q),
  on a y-range that leaves out the first steps.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import keys
from vae_jax.inference import objectives
from vae_jax import plots
from vae_jax import tasks
from vae_jax.models import vae as vae_model
from vae_jax.training import trainer
from vae_jax.training import workdir as wd
from vae_jax.errors import UserError, check_choice
from vae_jax.families.posteriors import REGISTRY as POSTERIORS

# Several processes can train it (config.distributed: vae_jax.training.distributed).
MULTI_PROCESS = True


def sampled_from(prior) -> str:
  """How z ~ ``prior`` (a prior distribution object) was drawn, for a title: the
  object's own ``description``, or a generic line (an added prior never breaks a
  finished run's figures)."""
  return getattr(prior, "description", None) or "z ~ p(z), the model's prior"


def spread_rows(x: np.ndarray, n: int = 50) -> np.ndarray:
  """n rows spread over the split (it is sorted by label for some sets)."""
  return x[np.linspace(0, len(x) - 1, min(n, len(x))).astype(int)]


def write_figures(workdir: str, config, ds, model, params, step: int) -> None:
  """samples.png, reconstructions.png and training_curves.png."""
  key = keys.stream(keys.root(config.seed), "figures")
  x = spread_rows(ds.eval_x)

  @jax.jit   # one program for both figures' decodes
  def decode(params, key, x):
    dec = objectives.sample_prior(key, params, model=model, num_samples=100)
    return objectives.decoder_mean(dec), objectives.reconstruct(params, x, model=model)

  samples, recon = jax.device_get(decode(params, key, x))
  # The prior object's static fields only: nothing is computed.
  prior = jax.eval_shape(lambda p: model.apply(p, method="prior_distribution"), params)
  plots.save_image_grid(os.path.join(workdir, "samples.png"), np.asarray(samples),
                        ds.image_shape,
                        title=f"decoder means E[x|z], {sampled_from(prior)} (step {step})")
  plots.save_reconstructions(os.path.join(workdir, "reconstructions.png"), x,
                             np.asarray(recon), ds.image_shape)
  save_training_curves(workdir, config, ds.name)


def save_training_curves(workdir: str, config, dataset: str) -> str:
  """training_curves.png from metrics.jsonl: train and eval -ELBO, the train -IWAE
  bound and the final IWAE estimate of -log p(x) when logged, on ``focus_ylim``'s range."""
  iwae = f"eval IWAE estimate of -log p(x), K = {config.eval.iw_samples}"
  curves = plots.metric_curves(wd.read_metrics(workdir), {
      "train -ELBO (batch avg)": ("train", "elbo", -1.0),
      "train -IWAE bound (batch avg)": ("train", "iwae_bound", -1.0),
      "eval -ELBO": ("eval", "neg_elbo", 1.0),
      "eval -ELBO, refined q": ("eval", "neg_elbo_refined", 1.0),
      iwae: ("eval", "neg_log_likelihood_iw", 1.0)})
  return plots.save_curves(
      os.path.join(workdir, "training_curves.png"), curves, xlabel="step",
      ylabel="nats per example", title=f"VAE on {dataset}", ylim=plots.focus_ylim(curves),
      styles={iwae: {"marker": "*", "markersize": 11, "linestyle": "none"}})


def train(config, workdir: str):
  """Trains (or resumes) the VAE of ``config`` in ``workdir`` and writes its outputs.

  Returns:
    (summary, task, result, ds): the summary also written to summary.json, the
    trainer task (``task.model``), the ``trainer.TrainResult`` and the data.
  """
  started = time.perf_counter()
  ds = tasks.load_data(config)
  vae_model.validate_data(ds, config)
  timings = {"data": time.perf_counter() - started}
  task = vae_model.build(config, ds.image_shape, len(ds.train_x))
  result = trainer.train(task, config, ds, workdir)
  started = time.perf_counter()
  write_figures(workdir, config, ds, task.model, result.state.params, int(result.state.step))
  timings = {**timings, **result.timings, "figures": time.perf_counter() - started}
  extra = {"estimator": config.objective.estimator,
           "timings_s": {k: round(v, 3) for k, v in timings.items()}}
  if "neg_log_likelihood_iw" in result.final_eval:
    extra["eval_iw_samples"] = int(config.eval.iw_samples)
  summary = trainer.run_summary(workdir, result, ds, config, **extra)
  return summary, task, result, ds


def run(config, workdir: str) -> dict:
  """Trains (or resumes) the VAE of ``config`` in ``workdir``; returns the summary."""
  vae_model.validate(config)     # before the data is loaded
  return train(config, workdir)[0]


# ----------------------------------------------------------------------------
# Sweeps: one VAE per value of a model setting (amortization, priors).
# ----------------------------------------------------------------------------


def with_model(config, **model):
  """A copy of ``config`` whose ``model`` section has ``model``'s settings."""
  c = config.copy_and_resolve_references()
  with c.unlocked():
    c.model.update(model)
  return c


def with_posterior(config, posterior: str, section):
  """A copy of ``config`` whose q is of family ``posterior``: its own keys (e.g.
  ``flow_steps``) take ``section``'s values (an experiment's sweep settings), every
  other family's keys are unset."""
  own = POSTERIORS.get(posterior).KEYS
  keys = {k for name in POSTERIORS.names() for k in POSTERIORS.get(name).KEYS}
  return with_model(config, posterior=posterior,
                    **{k: (section[k] if k in own else None) for k in sorted(keys)})


def validate_sweep(config, values, allowed, key: str, fixed: dict, make) -> None:
  """Checks a sweep over ``values`` (``--config.<key>``): non-empty, distinct, each of
  ``allowed``; the swept ``model`` settings left at ``fixed``; and every VAE
  ``make(value)`` builds validated."""
  if not values or len(set(values)) != len(values):
    raise UserError(f"--config.{key} must name one or more distinct values of "
                    f"{', '.join(allowed)}, got {tuple(values)!r}.")
  for v in values:
    check_choice(v, allowed, f"config.{key}")
  if any(config.model[k] != v for k, v in fixed.items()):
    raise UserError(f"this experiment trains one VAE per value of --config.{key}; leave "
                    + ", ".join(f"config.model.{k} at {v!r}" for k, v in fixed.items()) + ".")
  for v in values:
    vae_model.validate(make(v))
