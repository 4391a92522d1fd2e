"""Probabilistic PCA: closed form vs EM (``config.experiment = "ppca"``).

Fits ``vae_jax.classical.ppca`` to ``config.data.dataset`` (grey levels) in float64:
the closed-form maximum-likelihood solution, EM from a random W against it,
PCA-EM (sigma^2 -> 0) against the eigenvector subspace, and the exact
posterior of the held-out images.

Outputs in the workdir: ``config.json``, ``metrics.jsonl`` and
``tensorboard/`` (one record per EM iteration, split "em", as in
``experiments/gmm.py``), ``summary.json``, ``em_bounds.png`` (EM's log p(x)
and ELBO per iteration against the closed-form maximum), ``ppca_latent.png``
(posterior means of the held-out images, coloured by label, when
``config.ppca.latent_dim >= 2``) and ``ppca_components.png`` (the mean image
and the columns of W). Keys: EM's and PCA-EM's random initial W are the two
halves of ``split(keys.stream(root, "init"))``.

  python -m experiments.main --config=experiments/configs/ppca.py --workdir=/tmp/ppca
"""

from __future__ import annotations

import os
import time

from absl import logging
import jax
import jax.numpy as jnp
from matplotlib import colormaps
import ml_collections
import numpy as np

from experiments.gmm import check_dataset, check_seed, save_bound_plot, write_em_trace
from vae_jax import data as data_lib
from vae_jax import keys
from vae_jax import plots
from vae_jax.classical import ppca
from vae_jax.training import workdir as wd
from vae_jax.errors import UserError, check_positive


def save_latent_scatter(path: str, z, labels, *, title: str = "") -> str:
  """2-D posterior means coloured by class label.

  Args:
    path: the PNG to write.
    z: [N, 2] posterior means.
    labels: [N] integer class labels.
    title: the figure title.

  Returns:
    ``path``.
  """
  z, labels = np.asarray(z), np.asarray(labels)
  fig, ax = plots.new_figure(figsize=(6.5, 6))
  cmap = colormaps["tab10"]
  for c in np.unique(labels):
    sel = labels == c
    ax.scatter(z[sel, 0], z[sel, 1], s=5, color=cmap(int(c) % 10), label=str(c), alpha=0.6,
               linewidths=0)
  ax.legend(title="label", markerscale=3, fontsize=8, loc="best")
  ax.set_xlabel("E[z_1 | x]")
  ax.set_ylabel("E[z_2 | x]")
  ax.set_title(title, fontsize=10)
  return plots.save(fig, path)


def _validate(config: ml_collections.ConfigDict) -> None:
  """Checks every config value that does not need the data; UserError names the key."""
  check_seed(config)
  check_dataset(config)
  check_positive(config.ppca.latent_dim, "config.ppca.latent_dim", integer=True)
  check_positive(config.ppca.em_iters, "config.ppca.em_iters", integer=True)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """PPCA on ``config.data.dataset``: closed form vs EM, posterior latent space.

  Args:
    config: ``experiments/configs/ppca.py``; reads ``seed``, ``data.dataset``,
      ``data.data_dir``, ``ppca.latent_dim`` and ``ppca.em_iters``.
    workdir: output directory (created if needed).

  Returns:
    The summary written to ``summary.json``.

  Raises:
    UserError: a bad config value (the message names its key), workdir or dataset.
  """
  _validate(config)
  workdir = wd.prepare(workdir, config)
  ds = data_lib.load_arrays(config.data.dataset, config.data.data_dir, binarize="none")
  m = int(config.ppca.latent_dim)
  iters = int(config.ppca.em_iters)
  if m >= ds.num_dims:
    raise UserError(f"--config.ppca.latent_dim must be below the data dimension "
                    f"{ds.num_dims} of {ds.name}, got {m}.")
  wd.write_config(workdir, config)
  k_em, k_pca = jax.random.split(keys.stream(keys.root(config.seed), "init"))
  writer = wd.MetricWriter(workdir)
  writer.truncate_after(-1)  # a rerun starts the metrics afresh
  with jax.enable_x64(True):
    try:
      x = jnp.asarray(ds.train_x, jnp.float64)
      x_eval = jnp.asarray(ds.eval_x, jnp.float64)
      t0 = time.perf_counter()
      closed = ppca.fit(x, m)
      closed_ll = float(jnp.mean(ppca.log_prob(closed, x)))
      closed_s = time.perf_counter() - t0
      t0 = time.perf_counter()
      em_params, ll, elbo = ppca.em_with_trace(x, m, k_em, iters)
      em_s = time.perf_counter() - t0
      basis = ppca.pca_em(x, m, k_pca, iters)
      u = np.linalg.qr(np.asarray(closed.W))[0]
      # Largest principal angle between the PCA-EM and eigenvector subspaces.
      cosines = np.linalg.svd(u.T @ np.asarray(basis), compute_uv=False)
      angle = float(np.degrees(np.arccos(np.clip(cosines.min(), -1.0, 1.0))))
      post_mean, post_cov = ppca.posterior(closed, x_eval)
      decomposition = ppca.elbo_decomposition(closed, x_eval, post_mean, post_cov)
      total_var = float(jnp.sum(jnp.var(x, axis=0)))
      summary = {
          "experiment": "ppca", "dataset": ds.name, "num_train": int(x.shape[0]),
          "num_eval": int(x_eval.shape[0]), "dim": ds.num_dims, "latent_dim": m,
          "closed_form_log_likelihood": closed_ll,
          "eval_log_likelihood": float(jnp.mean(ppca.log_prob(closed, x_eval))),
          "em_log_likelihood": float(ll[-1]), "em_iters": iters,
          "em_gap_to_closed_form": float(closed_ll - ll[-1]),
          "min_log_likelihood_increase": float(np.min(np.diff(ll))),
          "sigma2": float(closed.sigma2),
          "explained_variance_fraction": float(jnp.sum(closed.W**2) / total_var),
          "pca_em_max_principal_angle_deg": angle,
          "max_elbo_gap_at_posterior": float(jnp.max(jnp.abs(
              decomposition["log_px"] - decomposition["elbo"]))),
          "closed_form_seconds": closed_s, "em_seconds": em_s,
      }
      write_em_trace(writer, ll, elbo)
    finally:
      writer.close()
    save_bound_plot(os.path.join(workdir, "em_bounds.png"), ll, elbo,
                    reference=closed_ll, reference_label="closed-form maximum likelihood",
                    title=f"PPCA EM on {ds.name}, M={m}")
    if m >= 2:
      save_latent_scatter(
          os.path.join(workdir, "ppca_latent.png"), post_mean[:, :2], ds.eval_y,
          title=f"PPCA (M={m}) posterior means E[z|x] of held-out {ds.name} images")
    w = np.asarray(closed.W)
    comps = np.concatenate([np.asarray(closed.mean)[None],
                            (w / np.abs(w).max(0)).T * 0.5 + 0.5], 0)
    plots.save_image_grid(os.path.join(workdir, "ppca_components.png"), comps[:33],
                          ds.image_shape, title="mean image, then columns of W (grey = 0)")
  wd.write_summary(workdir, summary)
  logging.info("PPCA: closed form %.4f, EM %.4f nats/example", closed_ll, ll[-1])
  return summary
