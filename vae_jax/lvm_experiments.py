"""Runner experiments for the exact latent-variable models: GMM and PPCA.

Each ``run_*(config, workdir)`` writes ``config.json``, ``metrics.jsonl`` (one
line per EM iteration, split "em": the average log p(x | theta_t) and the
ELBO(q_t, theta_{t+1}) after the M-step), ``summary.json`` and figures, and
returns the summary. Both run in float64 (``jax.enable_x64``) so that the EM
invariants hold to round-off.

  python -m experiments.main --experiment=gmm --workdir=/tmp/gmm
  python -m experiments.main --experiment=gmm --gmm_data=dataset --dataset=digits
  python -m experiments.main --experiment=ppca --dataset=mnist_5k --workdir=/tmp/ppca
"""

from __future__ import annotations

import os
import time

from absl import logging
import jax
import jax.numpy as jnp
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np

from vae_jax import data as data_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from vae_jax import gmm
from vae_jax import plots
from vae_jax import ppca
from vae_jax import workdir as wd
from vae_jax.errors import UserError, check_positive

LVM_DEFAULTS = dict(
    seed=0, dataset="mnist_5k", data_dir=None,
    gmm_data="toy2d", num_components=5, covariance_type="full", em_iters=200,
    em_tol=1e-8, num_restarts=4, init_method="random", reg_covar=1e-6,
    gmm_pca_dim=10, toy_num_points=1500, ppca_latent_dim=2)
GMM_DATA = ("toy2d", "dataset")


def _resolve(config: dict) -> dict:
  config = {**LVM_DEFAULTS, **{k: v for k, v in config.items() if v is not None or
                                k == "data_dir"}}
  for name in ("num_components", "em_iters", "num_restarts", "toy_num_points",
               "ppca_latent_dim"):
    check_positive(config[name], name, integer=True)
  if config["em_tol"] is None or not config["em_tol"] >= 0:
    raise UserError(f"--em_tol must be >= 0, got {config['em_tol']!r}.")
  check_positive(config["reg_covar"], "reg_covar")
  return config


def _write_em_trace(writer: wd.MetricWriter, log_likelihood, elbo) -> None:
  """One metrics line per EM iteration t: log p(x | theta_t) and ELBO(q_t, theta_{t+1})."""
  writer.truncate_after(-1)
  for t, ll in enumerate(log_likelihood):
    row = {"log_likelihood": float(ll)}
    if t < len(elbo):
      row["elbo"] = float(elbo[t])
    writer.write(t, "em", row)


def save_bound_plot(path: str, log_likelihood, elbo, *, reference: float | None = None,
                    reference_label: str = "", title: str = "") -> str:
  """log p(x | theta_t) and the ELBO per EM iteration, and the gap the E-step closes.

  Left: log p(x|theta_t) (dots at integer t) and ELBO(q_t, theta_{t+1}) (drawn
  at t + 1, just below the next likelihood): the bound touches the
  likelihood after every E-step and is pushed up by every M-step.
  Right: KL(q_t || p(z|x, theta_{t+1})) = log p(x|theta_{t+1}) - ELBO(q_t, theta_{t+1}),
  the gap the next E-step closes, on a log scale.
  """
  ll, el = np.asarray(log_likelihood), np.asarray(elbo)
  t = np.arange(len(ll))
  fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
  ax.plot(t, ll, ".-", label="log p(x | θ_t)  (after E-step: = ELBO)", color="C0")
  ax.plot(t[1:len(el) + 1], el, "x", label="ELBO(q_t, θ_{t+1})  (after M-step)",
          color="C3", markersize=4)
  if reference is not None:
    ax.axhline(reference, color="k", ls="--", lw=1, label=reference_label)
  lo = np.nanpercentile(np.concatenate([ll, el]), 5)
  hi = max(np.nanmax(ll), reference if reference is not None else -np.inf)
  ax.set_ylim(lo - 0.05 * (hi - lo + 1e-12), hi + 0.05 * (hi - lo + 1e-12))
  ax.set_xlabel("EM iteration t")
  ax.set_ylabel("nats per example")
  ax.set_title(title or "EM: the bound and the likelihood")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  gap = ll[1:len(el) + 1] - el
  ax2.semilogy(t[1:len(el) + 1], np.maximum(gap, 1e-16), ".-", color="C2")
  ax2.set_xlabel("EM iteration t + 1")
  ax2.set_ylabel("KL(q_t || p(z|x, θ_{t+1}))  [nats]")
  ax2.set_title("gap closed by the next E-step")
  ax2.grid(alpha=0.3, which="both")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


# ----------------------------------------------------------------------------
# GMM.
# ----------------------------------------------------------------------------


def make_toy2d(key: jax.Array, num_points: int, num_components: int = 5):
  """2-D data from a known mixture of anisotropic Gaussians.

  Returns:
    (x [N, 2] float64, z [N] int, true GMMParams).
  """
  k_mu, k_rot, k_scale, k_w, k_sample = jax.random.split(key, 5)
  angles = jnp.linspace(0.0, 2 * jnp.pi, num_components, endpoint=False)
  radius = 4.0 + jax.random.uniform(k_mu, (num_components,), jnp.float64)
  means = jnp.stack([radius * jnp.cos(angles), radius * jnp.sin(angles)], 1)
  theta = jax.random.uniform(k_rot, (num_components,), jnp.float64, 0, jnp.pi)
  rot = jnp.stack([jnp.stack([jnp.cos(theta), -jnp.sin(theta)], -1),
                   jnp.stack([jnp.sin(theta), jnp.cos(theta)], -1)], -2)
  scales = jax.random.uniform(k_scale, (num_components, 2), jnp.float64, 0.3, 1.3)
  covs = jnp.einsum("kij,kj,klj->kil", rot, scales**2, rot)
  weights = jax.random.dirichlet(k_w, 5.0 * jnp.ones(num_components, jnp.float64))
  true = gmm.GMMParams(weights, means, covs, "full")
  x, z = gmm.sample(k_sample, true, num_points)
  return x, z, true


def _ellipse(ax, mean, cov, color, n_std=2.0, **kw):
  vals, vecs = np.linalg.eigh(np.asarray(cov))
  t = np.linspace(0, 2 * np.pi, 100)
  circle = np.stack([np.cos(t), np.sin(t)])
  pts = np.asarray(mean)[:, None] + vecs @ (n_std * np.sqrt(np.maximum(vals, 0))[:, None] * circle)
  ax.plot(pts[0], pts[1], color=color, **kw)


def save_gmm_components(path: str, x, params: gmm.GMMParams, *, true=None,
                        title: str = "", axis_labels=("x1", "x2")) -> str:
  """Points coloured by their MAP component, fitted 1- and 2-sigma ellipses
  (line width ~ mixing weight), and the generating components if known."""
  x2 = np.asarray(x)[:, :2]
  means = np.asarray(params.means)[:, :2]
  covs = np.asarray(gmm.full_covariances(params))[:, :2, :2]
  resp = np.asarray(gmm.posterior(params, jnp.asarray(x)))
  labels = resp.argmax(1)
  fig, ax = plt.subplots(figsize=(6.5, 6))
  cmap = plt.get_cmap("tab10" if params.num_components <= 10 else "tab20")
  ax.scatter(x2[:, 0], x2[:, 1], s=4, c=[cmap(i % cmap.N) for i in labels], alpha=0.5,
             linewidths=0)
  w = np.asarray(params.weights)
  for k in range(params.num_components):
    color = cmap(k % cmap.N)
    for n_std in (1.0, 2.0):
      _ellipse(ax, means[k], covs[k], color, n_std, lw=0.8 + 8 * w[k])
    ax.plot(*means[k], "o", color=color, mec="k", ms=6)
  if true is not None:
    for k in range(true.num_components):
      _ellipse(ax, np.asarray(true.means[k]), np.asarray(true.covariances[k]), "k",
               2.0, ls=":", lw=1)
    ax.plot([], [], "k:", label="true components (2σ)")
  ax.plot([], [], "-", color="gray", label="fitted components (1σ, 2σ; width ∝ π_k)")
  ax.legend(loc="upper right", fontsize=8)
  ax.set_xlabel(axis_labels[0])
  ax.set_ylabel(axis_labels[1])
  ax.set_aspect("equal", adjustable="datalim")
  ax.set_title(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def _pca_basis(x: np.ndarray, dim: int):
  """Mean [D] and top-`dim` principal directions [D, dim] (for projecting images)."""
  mean = x.mean(0)
  _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
  return mean, vt[:dim].T


def run_gmm(config: dict, workdir: str) -> dict:
  """Fits a GMM by EM and writes the bound history, figures and summary.

  config keys (see ``LVM_DEFAULTS``): gmm_data ("toy2d": 2-D points from a
  known mixture; "dataset": --dataset images projected on their top
  gmm_pca_dim principal components, fitted on the train split and scored on
  the eval split), num_components, covariance_type, em_iters, em_tol,
  num_restarts, init_method, reg_covar, seed.
  """
  config = _resolve(config)
  if config["gmm_data"] not in GMM_DATA:
    raise UserError(f"--gmm_data must be one of {', '.join(GMM_DATA)}, got "
                    f"{config['gmm_data']!r}.")
  os.makedirs(workdir, exist_ok=True)
  wd.write_config(workdir, config)
  key = jax.random.key(int(config["seed"]))
  k_data, k_fit = jax.random.split(key)
  with jax.enable_x64(True):
    true, eval_x, labels, basis = None, None, None, None
    if config["gmm_data"] == "toy2d":
      x, labels, true = make_toy2d(k_data, int(config["toy_num_points"]))
      data_name = "toy2d"
    else:
      ds = data_lib.load_arrays(config["dataset"], config["data_dir"], binarize="none",
                                seed=int(config["seed"]))
      dim = int(config["gmm_pca_dim"])
      if not 1 <= dim <= ds.num_dims:
        raise UserError(f"--gmm_pca_dim must be in [1, {ds.num_dims}], got {dim}.")
      mean, basis = _pca_basis(ds.train_x.astype(np.float64), dim)
      x = jnp.asarray((ds.train_x - mean) @ basis)
      eval_x = jnp.asarray((ds.eval_x - mean) @ basis)
      labels = ds.train_y
      data_name = f"{ds.name} (top {dim} principal components)"
    k = int(config["num_components"])
    if k > x.shape[0]:
      raise UserError(f"--num_components={k} exceeds the number of points {x.shape[0]}.")
    t0 = time.perf_counter()
    params, trace = gmm.fit_with_trace(
        k_fit, x, k, covariance_type=config["covariance_type"],
        max_iters=int(config["em_iters"]), tol=float(config["em_tol"]),
        num_restarts=int(config["num_restarts"]), reg_covar=float(config["reg_covar"]),
        init_method=config["init_method"])
    jax.block_until_ready(params)
    fit_s = time.perf_counter() - t0
    n_it = int(trace.num_iters)
    final_ll = float(jnp.mean(gmm.log_prob(params, x)))
    # log p(x | theta_t) for t = 0..n_it (the last after the final M-step).
    ll = np.append(np.asarray(trace.log_likelihood)[:n_it], final_ll)
    elbo = np.asarray(trace.elbo)[:n_it]
    q = gmm.posterior(params, x)
    decomposition = gmm.elbo_decomposition(params, x, q)
    summary = {
        "experiment": "gmm", "data": data_name, "num_points": int(x.shape[0]),
        "dim": int(x.shape[1]), "num_components": k,
        "covariance_type": config["covariance_type"], "num_iters": n_it,
        "converged": bool(n_it < int(config["em_iters"])),
        "train_log_likelihood": final_ll,
        "bic": gmm.bic(params, x), "num_parameters": gmm.num_parameters(params),
        "min_log_likelihood_increase": float(np.min(np.diff(ll))) if n_it > 1 else None,
        "max_elbo_gap_at_posterior": float(jnp.max(jnp.abs(
            decomposition["log_px"] - decomposition["elbo"]))),
        "fit_seconds": fit_s,
        "weights": np.asarray(params.weights).tolist(),
    }
    if eval_x is not None:
      summary["eval_log_likelihood"] = float(jnp.mean(gmm.log_prob(params, eval_x)))
    if labels is not None and config["gmm_data"] == "toy2d":
      summary["true_params_log_likelihood"] = float(jnp.mean(gmm.log_prob(true, x)))
    if labels is not None:
      from sklearn.metrics import adjusted_rand_score  # pylint: disable=g-import-not-at-top
      summary["adjusted_rand_index"] = float(adjusted_rand_score(
          np.asarray(labels), np.asarray(q).argmax(1)))

    _write_em_trace(wd.MetricWriter(workdir), ll, elbo)
    save_bound_plot(os.path.join(workdir, "em_bounds.png"), ll, elbo,
                    reference=summary.get("true_params_log_likelihood"),
                    reference_label="log p(x) under the generating mixture",
                    title=f"GMM EM on {data_name}, K={k}, {config['covariance_type']}")
    save_gmm_components(
        os.path.join(workdir, "gmm_components.png"), x, params, true=true,
        title=(f"GMM, K={k} ({config['covariance_type']}): avg log p(x) = {final_ll:.3f}, "
               f"BIC = {summary['bic']:.0f}"),
        axis_labels=("x1", "x2") if basis is None else ("PC 1", "PC 2"))
    if basis is not None:
      images = np.clip(np.asarray(params.means) @ basis.T + mean, 0, 1)
      order = np.argsort(-np.asarray(params.weights))
      plots.save_image_grid(os.path.join(workdir, "gmm_means.png"), images[order],
                            ds.image_shape, title="component means (decoded from PCA), "
                            "by decreasing weight")
  wd.write_summary(workdir, summary)
  logging.info("GMM: %d iterations, avg log p(x) %.4f, BIC %.1f", n_it, final_ll, summary["bic"])
  return summary


# ----------------------------------------------------------------------------
# PPCA.
# ----------------------------------------------------------------------------


def save_latent_scatter(path: str, z, labels, *, title: str = "") -> str:
  """2-D posterior means coloured by class label."""
  z, labels = np.asarray(z), np.asarray(labels)
  fig, ax = plt.subplots(figsize=(6.5, 6))
  cmap = plt.get_cmap("tab10")
  for c in np.unique(labels):
    sel = labels == c
    ax.scatter(z[sel, 0], z[sel, 1], s=5, color=cmap(int(c) % 10), label=str(c), alpha=0.6,
               linewidths=0)
  ax.legend(title="label", markerscale=3, fontsize=8, loc="best")
  ax.set_xlabel("E[z_1 | x]")
  ax.set_ylabel("E[z_2 | x]")
  ax.set_title(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def run_ppca(config: dict, workdir: str) -> dict:
  """PPCA on --dataset (grey levels): closed form vs EM, posterior latent space.

  Writes em_bounds.png (EM's log p(x) and ELBO per iteration against the
  closed-form maximum), ppca_latent.png (posterior means of the held-out
  images, coloured by label, when ppca_latent_dim >= 2) and ppca_components.png
  (the mean image and the columns of W).
  """
  config = _resolve(config)
  os.makedirs(workdir, exist_ok=True)
  ds = data_lib.load_arrays(config["dataset"], config["data_dir"], binarize="none",
                            seed=int(config["seed"]))
  m = int(config["ppca_latent_dim"])
  if m >= ds.num_dims:
    raise UserError(f"--ppca_latent_dim must be below the data dimension {ds.num_dims}, got {m}.")
  wd.write_config(workdir, config)
  with jax.enable_x64(True):
    x = jnp.asarray(ds.train_x, jnp.float64)
    x_eval = jnp.asarray(ds.eval_x, jnp.float64)
    t0 = time.perf_counter()
    closed = ppca.fit(x, m)
    closed_ll = float(jnp.mean(ppca.log_prob(closed, x)))
    closed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    em_params, ll, elbo = ppca.em_with_trace(x, m, jax.random.key(int(config["seed"])),
                                             int(config["em_iters"]))
    em_s = time.perf_counter() - t0
    basis = ppca.pca_em(x, m, jax.random.key(int(config["seed"]) + 1),
                        int(config["em_iters"]))
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
        "em_log_likelihood": float(ll[-1]), "em_iters": int(config["em_iters"]),
        "em_gap_to_closed_form": float(closed_ll - ll[-1]),
        "min_log_likelihood_increase": float(np.min(np.diff(ll))),
        "sigma2": float(closed.sigma2),
        "explained_variance_fraction": float(
            jnp.sum(closed.W**2) / total_var),
        "pca_em_max_principal_angle_deg": angle,
        "max_elbo_gap_at_posterior": float(jnp.max(jnp.abs(
            decomposition["log_px"] - decomposition["elbo"]))),
        "closed_form_seconds": closed_s, "em_seconds": em_s,
    }
    _write_em_trace(wd.MetricWriter(workdir), ll, elbo)
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
                          ds.image_shape,
                          title="mean image, then columns of W (grey = 0)")
  wd.write_summary(workdir, summary)
  logging.info("PPCA: closed form %.4f, EM %.4f nats/example", closed_ll, ll[-1])
  return summary
