"""The discrete-latent VAE: Bernoulli codes trained with score-function estimators.

``run(config, workdir)`` trains through ``vae_jax.training.trainer`` and writes
``summary.json`` (the Monte-Carlo -ELBO and, for L <= 12, the exact -ELBO and
-log p(x) by enumerating the 2^L codes, also at step 0; the last encoder
gradient variance when ``train.grad_stats_every`` > 0) and figures:

* ``samples.png``: decoder means for z ~ Bernoulli(1/2)^L;
* ``reconstructions.png``: held-out inputs and E[x|z] at the mode of q(z|x);
* ``training_curves.png``: train and eval -ELBO, exact -ELBO and -log p(x).
"""

from __future__ import annotations

import functools
import os

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from experiments.vae import spread_rows
from vae_jax import data as data_lib
from vae_jax.models import discrete_vae
from vae_jax import keys
from vae_jax import plots
from vae_jax import tasks
from vae_jax.training import trainer
from vae_jax.training import workdir as wd

# Several processes can train it (config.distributed: vae_jax.training.distributed).
MULTI_PROCESS = True


def check_binary(ds: data_lib.Dataset, what: str) -> bool:
  """Refuses pixels outside [0, 1]; warns when the eval split is not binary."""
  binary = data_lib.check_pixels(ds, f"{what} models pixels as Bernoulli and",
                                 "rescale it and use --config.data.binarize=dynamic or static")
  if not binary:
    logging.warning("The eval split of %s is not binary (binarize=none): the eval "
                    "numbers are cross-entropies, not normalized likelihoods.", ds.name)
  return binary


def write_figures(workdir: str, config, ds, model, params, step: int) -> None:
  params = jax.device_get(params)
  key = keys.stream(keys.root(config.seed), "figures")
  x = spread_rows(ds.eval_x)
  means, recon = jax.jit(functools.partial(discrete_vae.sample_and_reconstruct, model=model))(
      params, key, jnp.asarray(x))
  plots.save_image_grid(os.path.join(workdir, "samples.png"), np.asarray(means),
                        ds.image_shape,
                        title=f"decoder means E[x|z], z ~ Bernoulli(1/2)^{model.latent_dim} "
                              f"(step {step})")
  plots.save_reconstructions(
      os.path.join(workdir, "reconstructions.png"), x, np.asarray(recon), ds.image_shape,
      title="odd rows: held-out inputs; even rows: E[x|z] at the mode of q(z|x)")
  # Step 0 (the untrained model, several times worse) stays in metrics.jsonl only.
  curves = plots.metric_curves(wd.read_metrics(workdir), {
      "train -ELBO (batch avg)": ("train", "elbo", -1.0),
      "eval -ELBO (MC)": ("eval", "neg_elbo", 1.0),
      "eval -ELBO (exact)": ("eval", "exact_neg_elbo", 1.0),
      "eval -log p(x) (exact)": ("eval", "exact_nll", 1.0)}, min_step=1)
  # The Monte-Carlo -ELBO estimates the exact one and lies on it: dashed with
  # open markers, drawn on top, so that both show.
  plots.save_curves(os.path.join(workdir, "training_curves.png"), curves, xlabel="step",
                    ylabel="nats per example",
                    title=f"discrete VAE ({config.objective.estimator}, "
                          f"L = {model.latent_dim}) on {ds.name}",
                    styles={"eval -ELBO (exact)": dict(lw=3, alpha=0.6),
                            "eval -ELBO (MC)": dict(ls="--", marker="o", mfc="none",
                                                    zorder=3)})


def run(config, workdir: str) -> dict:
  """Trains (or resumes) the discrete VAE of ``config``; returns the summary."""
  ds = tasks.load_data(config)
  eval_binary = check_binary(ds, "the discrete VAE")
  task = tasks.build_task(config, ds.image_shape, len(ds.train_x))
  result = trainer.train(task, config, ds, workdir)
  extra = {"estimator": config.objective.estimator, "latent_dim": task.model.latent_dim,
           "num_samples": int(config.objective.num_samples), "eval_data_binary": eval_binary}
  stats = [r for r in wd.read_metrics(workdir) if r["split"] == "grad_stats"]
  if stats:
    extra["grad_var_encoder"] = stats[-1]["grad_var_encoder"]
  summary = trainer.run_summary(workdir, result, ds, config, **extra)
  write_figures(workdir, config, ds, task.model, result.state.params, int(result.state.step))
  return summary
