"""MADE, the exact-likelihood baseline: maximum likelihood and ancestral sampling.

``run(config, workdir)`` trains through ``vae_jax.training.trainer`` and writes
``summary.json`` (the exact held-out NLL in nats and bits/dim, the number of
parameters and of unmasked ones) and figures:

* ``samples.png``: 100 ancestral samples x_i ~ p(x_i | x_<i), i = 1..D;
* ``training_curves.png``: train and exact eval NLL per step.
"""

from __future__ import annotations

import functools
import os

import jax
import numpy as np

from experiments.discrete_vae import check_binary
from vae_jax.models import made as autoregressive
from vae_jax.models import common
from vae_jax import keys
from vae_jax import plots
from vae_jax import tasks
from vae_jax.training import trainer
from vae_jax.training import workdir as wd

# Several processes can train it (config.distributed: vae_jax.training.distributed).
MULTI_PROCESS = True


def write_figures(workdir: str, config, ds, model, params, step: int) -> None:
  params = jax.device_get(params)   # off the training mesh
  key = keys.stream(keys.root(config.seed), "figures")
  draws = jax.jit(functools.partial(autoregressive.sample, model=model, num_samples=100,
                                    num_dims=ds.num_dims))(key, params)
  plots.save_image_grid(os.path.join(workdir, "samples.png"), np.asarray(draws),
                        ds.image_shape, title=f"MADE ancestral samples (step {step})")
  curves = plots.metric_curves(wd.read_metrics(workdir), {
      "train NLL (batch avg)": ("train", "nll", 1.0),
      "eval NLL (exact)": ("eval", "nll", 1.0)})
  plots.save_curves(os.path.join(workdir, "training_curves.png"), curves, xlabel="step",
                    ylabel="nats per example", title=f"MADE on {ds.name}")


def run(config, workdir: str) -> dict:
  """Trains (or resumes) MADE by maximum likelihood; returns the summary."""
  hidden = common.hidden_dims(config.model.hidden_dims)
  ds = tasks.load_data(config)
  eval_binary = check_binary(ds, "the autoregressive baseline")
  task = tasks.build_task(config, ds.image_shape)
  result = trainer.train(task, config, ds, workdir)
  params = result.state.params
  summary = trainer.run_summary(
      workdir, result, ds, config, eval_data_binary=eval_binary, hidden_dims=list(hidden),
      num_parameters=int(sum(p.size for p in jax.tree_util.tree_leaves(params))),
      num_free_parameters=autoregressive.num_free_parameters(ds.num_dims, hidden))
  write_figures(workdir, config, ds, task.model, params, int(result.state.step))
  return summary
