"""Gaussian mixture by EM (``config.experiment = "gmm"``).

Fits a GMM with ``vae_jax.classical.gmm`` in float64 (``jax.enable_x64``, so the EM
invariants hold to round-off), either to 2-D points from a known 5-component
mixture (``config.gmm.data = "toy2d"``) or to ``config.data.dataset`` images
projected on their top ``config.gmm.pca_dim`` principal components
(``"dataset"``: fitted on the train split, scored on the eval split).
Then it chooses K: one fit per K of ``config.gmm.selection_components``, by
our EM and by scikit-learn's, each scored by BIC and by the held-out
log-likelihood (the toy's held-out points come from the same mixture), and
each fit's BIC computed both ways (``gmm.bic`` and ``GaussianMixture.bic``).

Outputs in the workdir: ``config.json``, ``metrics.jsonl`` and
``tensorboard/`` (one record per EM iteration t, split "em": the average
log p(x | theta_t) and ELBO(q_t, theta_{t+1}) after the M-step),
``summary.json`` (the choice of K in its ``selection`` section),
``em_bounds.png``, ``gmm_components.png``, ``gmm_selection.png`` (BIC and
held-out log-likelihood against K) and, for image data, ``gmm_means.png``.
Keys: the toy mixture and its points from the ``simulate`` stream (its
held-out points from ``fold_in(simulate, 1)``), the EM initializations from
``init`` (``vae_jax.keys``): the fit of K in the selection from
``fold_in(init, K)``, scikit-learn's from ``numpy_seed`` of that key.

The EM-trace writer and the bound figure here are shared with
``experiments/ppca.py``.

  python -m experiments.main --config=experiments/configs/gmm.py --workdir=/tmp/gmm
  python -m experiments.main --config=experiments/configs/gmm.py:mnist_pca --workdir=/tmp/gmm
"""

from __future__ import annotations

import functools
import os
import time
import warnings

from absl import logging
import jax
import jax.numpy as jnp
from matplotlib import colormaps
import ml_collections
import numpy as np

from vae_jax import data as data_lib
from vae_jax.classical import gmm
from vae_jax import keys
from vae_jax import plots
from vae_jax.training import workdir as wd
from vae_jax.errors import UserError, check_choice, check_positive

GMM_DATA = ("toy2d", "dataset")
COVARIANCE_TYPES = ("full", "diag", "spherical")
INIT_METHODS = ("random", "kmeans++")
# Compiled once rather than dispatched op by op (the library function is not jitted).
_elbo_decomposition = jax.jit(gmm.elbo_decomposition)


# ----------------------------------------------------------------------------
# Shared with experiments/ppca.py: config checks, the EM trace and its figure.
# ----------------------------------------------------------------------------


def check_seed(config: ml_collections.ConfigDict) -> None:
  """``config.seed`` must be an integer (it is the root of every key)."""
  seed = config.seed
  if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
    raise UserError(f"--config.seed must be an integer, got {seed!r}.")


def check_dataset(config: ml_collections.ConfigDict) -> None:
  """``config.data.dataset`` must name a dataset of ``vae_jax.data``."""
  check_choice(config.data.dataset, data_lib.DATASETS, "config.data.dataset")


def write_em_trace(writer: wd.MetricWriter, log_likelihood, elbo) -> None:
  """One metrics record per EM iteration t: log p(x | theta_t) and ELBO(q_t, theta_{t+1}).

  Args:
    writer: an open MetricWriter (already truncated).
    log_likelihood: [T + 1] average log p(x | theta_t), t = 0..T.
    elbo: [T] average ELBO(q_t, theta_{t+1}) after the M-step of iteration t.
  """
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
  likelihood after every E-step and is pushed up by every M-step. Every
  iteration is in view; where the first ones lie far below the rest, an
  inset zooms in on the approach to the maximum.
  Right: KL(q_t || p(z|x, theta_{t+1})) = log p(x|theta_{t+1}) - ELBO(q_t, theta_{t+1}),
  the gap the next E-step closes, on a log scale.

  Args:
    path: the PNG to write.
    log_likelihood: [T + 1] nats per example.
    elbo: [T] nats per example.
    reference: an optional horizontal line (e.g. the closed-form maximum).
    reference_label: its legend entry.
    title: the left panel's title.

  Returns:
    ``path``.
  """
  ll, el = np.asarray(log_likelihood), np.asarray(elbo)
  t = np.arange(len(ll))
  fig, (ax, ax2) = plots.new_figure(1, 2, figsize=(11, 4))
  ax.plot(t, ll, ".-", label="log p(x | θ_t)  (after E-step: = ELBO)", color="C0")
  ax.plot(t[1:len(el) + 1], el, "x", label="ELBO(q_t, θ_{t+1})  (after M-step)",
          color="C3", markersize=4)
  if reference is not None:
    ax.axhline(reference, color="k", ls="--", lw=1, label=reference_label)
  both = np.concatenate([ll, el])
  hi = max(np.nanmax(ll), reference if reference is not None else -np.inf)
  pad = lambda lo: (lo - 0.05 * (hi - lo + 1e-12), hi + 0.05 * (hi - lo + 1e-12))
  ax.set_ylim(*pad(np.nanmin(both)))
  ax.set_xlabel("EM iteration t")
  ax.set_ylabel("nats per example")
  ax.set_title(title or "EM: the bound and the likelihood")
  ax.grid(alpha=0.3)
  # The first iterations can lie far below the rest (PPCA from a random start):
  # the inset shows the last 95% of the values at their own scale.
  lo = np.nanpercentile(both, 5)
  if hi - np.nanmin(both) > 3 * (hi - lo):
    inset = ax.inset_axes([0.4, 0.08, 0.56, 0.46])
    start = int(np.argmax(ll >= lo))
    inset.plot(t[start:], ll[start:], ".-", color="C0")
    shown = np.arange(1, len(el) + 1) >= start
    inset.plot(t[1:len(el) + 1][shown], el[shown], "x", color="C3", markersize=4)
    if reference is not None:
      inset.axhline(reference, color="k", ls="--", lw=1)
    inset.set_xlim(start - 0.5, t[-1] + 0.5)
    inset.set_ylim(*pad(lo))
    inset.tick_params(labelsize=7)
    inset.grid(alpha=0.3)
    ax.indicate_inset_zoom(inset, edgecolor="0.5")
    ax.legend(fontsize=8, loc="upper right", bbox_to_anchor=(0.98, 0.9))
  else:
    ax.legend(fontsize=8)
  gap = ll[1:len(el) + 1] - el
  ax2.semilogy(t[1:len(el) + 1], np.maximum(gap, 1e-16), ".-", color="C2")
  ax2.set_xlabel("EM iteration t + 1")
  ax2.set_ylabel("KL(q_t || p(z|x, θ_{t+1}))  [nats]")
  ax2.set_title("gap closed by the next E-step")
  ax2.grid(alpha=0.3, which="both")
  return plots.save(fig, path)


# ----------------------------------------------------------------------------
# GMM data and figures.
# ----------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("num_points", "num_components"))
def make_toy2d(key: jax.Array, num_points: int, num_components: int = 5):
  """2-D data from a known mixture of anisotropic Gaussians (call under ``jax.enable_x64``).

  Args:
    key: draws the mixture (radii, rotations, scales, weights) and the points.
    num_points: N.
    num_components: K of the generating mixture.

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
  (line width ~ mixing weight), and the generating components if known.

  Args:
    path: the PNG to write.
    x: [N, D] data; the first two coordinates are drawn.
    params: the fitted mixture (its first two coordinates are drawn).
    true: the generating mixture, if known.
    title: the figure title.
    axis_labels: names of the two coordinates.

  Returns:
    ``path``.
  """
  x2 = np.asarray(x)[:, :2]
  means = np.asarray(params.means)[:, :2]
  covs = np.asarray(gmm.full_covariances(params))[:, :2, :2]
  resp = np.asarray(gmm.posterior(params, jnp.asarray(x)))
  labels = resp.argmax(1)
  fig, ax = plots.new_figure(figsize=(6.5, 6))
  cmap = colormaps["tab10" if params.num_components <= 10 else "tab20"]
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
  return plots.save(fig, path)


# ----------------------------------------------------------------------------
# Choosing K.
# ----------------------------------------------------------------------------


def sklearn_mixture(params: gmm.GMMParams):
  """A fitted ``sklearn.mixture.GaussianMixture`` holding ``params`` (to score them)."""
  from sklearn.mixture import GaussianMixture  # pylint: disable=g-import-not-at-top
  cov = np.asarray(params.covariances, np.float64)
  sk = GaussianMixture(params.num_components, covariance_type=params.covariance_type)
  sk.weights_, sk.means_ = np.asarray(params.weights, np.float64), np.asarray(params.means)
  sk.covariances_ = cov
  if params.covariance_type == "full":
    sk.precisions_cholesky_ = np.linalg.inv(np.linalg.cholesky(cov)).transpose(0, 2, 1)
  else:
    sk.precisions_cholesky_ = 1.0 / np.sqrt(cov)
  return sk


def select_num_components(key: jax.Array, x, eval_x, c: ml_collections.ConfigDict) -> dict:
  """Fits every K of ``c.selection_components`` (ours and scikit-learn's EM) and scores it.

  Args:
    key: the ``init`` stream; K's fit starts from ``fold_in(key, K)``.
    x: [N, D] training data (float64).
    eval_x: [M, D] held-out data.
    c: the ``gmm`` config section (covariance type, EM options, restarts).

  Returns:
    Lists over K (``num_components``): ``bic``, ``train_log_likelihood``,
    ``eval_log_likelihood`` (nats per point) and ``num_parameters`` of our
    fits, ``sklearn_bic`` and ``sklearn_eval_log_likelihood`` of
    scikit-learn's; the K each criterion picks (``bic_choice``,
    ``eval_choice``, ``sklearn_bic_choice``, ``sklearn_eval_choice``); and
    the largest relative difference between ``gmm.bic`` and
    ``GaussianMixture.bic`` on the same parameters, over our fits and over
    scikit-learn's (``bic_max_rel_diff_*``).
  """
  # pylint: disable=g-import-not-at-top
  from sklearn.exceptions import ConvergenceWarning
  from sklearn.mixture import GaussianMixture
  # pylint: enable=g-import-not-at-top
  x_np, eval_np = np.asarray(x), np.asarray(eval_x)
  ks = sorted(int(k) for k in c.selection_components)
  out = {name: [] for name in ("bic", "train_log_likelihood", "eval_log_likelihood",
                               "num_parameters", "sklearn_bic", "sklearn_eval_log_likelihood")}
  rel_ours, rel_sk = [], []
  for k in ks:
    k_key = jax.random.fold_in(key, k)
    params, _ = gmm.fit_with_trace(
        k_key, x, k, covariance_type=c.covariance_type, max_iters=int(c.em_iters),
        tol=float(c.em_tol), num_restarts=int(c.num_restarts), reg_covar=float(c.reg_covar),
        init_method=c.init_method)
    ours = gmm.bic(params, x)
    rel_ours.append(abs(ours - sklearn_mixture(params).bic(x_np)) / abs(ours))
    out["bic"].append(ours)
    out["train_log_likelihood"].append(float(jnp.mean(gmm.log_prob(params, x))))
    out["eval_log_likelihood"].append(float(jnp.mean(gmm.log_prob(params, eval_x))))
    out["num_parameters"].append(gmm.num_parameters(params))

    sk = GaussianMixture(k, covariance_type=c.covariance_type, tol=float(c.em_tol),
                         max_iter=int(c.em_iters), n_init=int(c.num_restarts),
                         reg_covar=float(c.reg_covar), random_state=keys.numpy_seed(k_key) % 2**32)
    with warnings.catch_warnings():      # a restart that hits max_iter: its BIC still counts
      warnings.simplefilter("ignore", ConvergenceWarning)
      sk.fit(x_np)
    theirs = sk.bic(x_np)
    sk_params = gmm.GMMParams(jnp.asarray(sk.weights_), jnp.asarray(sk.means_),
                              jnp.asarray(sk.covariances_), c.covariance_type)
    rel_sk.append(abs(gmm.bic(sk_params, x) - theirs) / abs(theirs))
    out["sklearn_bic"].append(float(theirs))
    out["sklearn_eval_log_likelihood"].append(float(sk.score(eval_np)))
  pick = lambda values, best: ks[int(best(values))]
  return dict(
      num_components=ks, **out,
      bic_choice=pick(out["bic"], np.argmin),
      eval_choice=pick(out["eval_log_likelihood"], np.argmax),
      sklearn_bic_choice=pick(out["sklearn_bic"], np.argmin),
      sklearn_eval_choice=pick(out["sklearn_eval_log_likelihood"], np.argmax),
      bic_max_rel_diff_our_fits=float(max(rel_ours)),
      bic_max_rel_diff_sklearn_fits=float(max(rel_sk)))


def save_selection_plot(path: str, selection: dict, *, true_k: int | None = None,
                        title: str = "") -> str:
  """BIC and held-out log-likelihood against K, ours and scikit-learn's fits.

  Args:
    path: the PNG to write.
    selection: ``select_num_components``'s result.
    true_k: the generating mixture's K, if known.
    title: the figure's title.

  Returns:
    ``path``.
  """
  ks = np.asarray(selection["num_components"])
  fig, axes = plots.new_figure(1, 2, figsize=(12, 4.3))
  panels = (("bic", "BIC = −2 log p(X | θ) + P log N  (lower is better)", "bic_choice"),
            ("eval_log_likelihood", "held-out log p(x)  [nats per point]", "eval_choice"))
  for ax, (key, ylabel, choice) in zip(axes, panels):
    ax.plot(ks, selection[key], "o-", color="C0", label="vae_jax EM")
    ax.plot(ks, selection[f"sklearn_{key}"], "x--", color="C1", ms=8,
            label="scikit-learn EM (its own fits)")
    ax.axvline(selection[choice], color="C0", lw=1.5, alpha=0.7,
               label=f"chosen K = {selection[choice]} (scikit-learn: "
                     f"{selection['sklearn_' + choice]})")
    if true_k is not None:
      ax.axvline(true_k, color="k", ls=":", lw=1.5, label=f"true K = {true_k}")
    ax.set_xlabel("number of components K")
    ax.set_ylabel(ylabel)
    ax.set_xticks(ks)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  axes[0].set_title("BIC: the evidence's Laplace approximation", fontsize=10)
  axes[1].set_title("Held-out log-likelihood", fontsize=10)
  agree = max(selection["bic_max_rel_diff_our_fits"], selection["bic_max_rel_diff_sklearn_fits"])
  fig.suptitle(f"{title}{': ' if title else ''}gmm.bic and GaussianMixture.bic on the same "
               f"parameters agree to {agree:.0e} relative", fontsize=10)
  return plots.save(fig, path)


def _pca_basis(x: np.ndarray, dim: int):
  """Mean [D] and top-`dim` principal directions [D, dim] (for projecting images)."""
  mean = x.mean(0)
  _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
  return mean, vt[:dim].T


# ----------------------------------------------------------------------------
# The run.
# ----------------------------------------------------------------------------


def _validate(config: ml_collections.ConfigDict) -> None:
  """Checks every config value that does not need the data; UserError names the key."""
  check_seed(config)
  c = config.gmm
  check_choice(c.data, GMM_DATA, "config.gmm.data")
  check_choice(c.covariance_type, COVARIANCE_TYPES, "config.gmm.covariance_type")
  check_choice(c.init_method, INIT_METHODS, "config.gmm.init_method")
  for name in ("num_components", "em_iters", "num_restarts"):
    check_positive(c[name], f"config.gmm.{name}", integer=True)
  check_positive(c.em_tol, "config.gmm.em_tol", minimum=0)
  check_positive(c.reg_covar, "config.gmm.reg_covar")
  ks = c.selection_components
  if not isinstance(ks, (tuple, list)) or not all(
      isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k > 0 for k in ks) or (
          len(set(ks)) != len(ks)):
    raise UserError(f"--config.gmm.selection_components must be a tuple of distinct positive "
                    f"integers (the K to choose from; () for none), got {ks!r}; e.g. "
                    f"--config.gmm.selection_components='(1, 2, 3, 4, 5, 6)'.")
  if c.data == "toy2d":
    check_positive(c.toy_num_points, "config.gmm.toy_num_points", integer=True)
    check_positive(c.toy_num_eval_points, "config.gmm.toy_num_eval_points", integer=True)
  else:
    check_positive(c.pca_dim, "config.gmm.pca_dim", integer=True)
    check_dataset(config)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Fits a GMM by EM and writes the bound history, figures and summary.

  Args:
    config: ``experiments/configs/gmm.py``; reads ``seed``, ``data.dataset``,
      ``data.data_dir`` (with ``gmm.data = "dataset"``) and the ``gmm`` section.
    workdir: output directory (created if needed).

  Returns:
    The summary written to ``summary.json``.

  Raises:
    UserError: a bad config value (the message names its key), workdir or dataset.
  """
  _validate(config)
  c = config.gmm
  workdir = wd.prepare(workdir, config)
  root = keys.root(config.seed)
  with jax.enable_x64(True):
    true, eval_x, labels, basis = None, None, None, None
    if c.data == "toy2d":
      simulate = keys.stream(root, "simulate")
      x, labels, true = make_toy2d(simulate, int(c.toy_num_points))
      eval_x, _ = gmm.sample(jax.random.fold_in(simulate, 1), true, int(c.toy_num_eval_points))
      data_name = "toy2d"
    else:
      ds = data_lib.load_arrays(config.data.dataset, config.data.data_dir, binarize="none")
      dim = int(c.pca_dim)
      if not 1 <= dim <= ds.num_dims:
        raise UserError(f"--config.gmm.pca_dim must be in [1, {ds.num_dims}] for "
                        f"{ds.name}, got {dim}.")
      mean, basis = _pca_basis(ds.train_x.astype(np.float64), dim)
      x = jnp.asarray((ds.train_x - mean) @ basis)
      eval_x = jnp.asarray((ds.eval_x - mean) @ basis)
      labels = ds.train_y
      data_name = f"{ds.name} (top {dim} principal components)"
    k = int(c.num_components)
    if k > x.shape[0]:
      raise UserError(f"--config.gmm.num_components={k} exceeds the number of points "
                      f"{x.shape[0]}.")
    if c.selection_components and max(c.selection_components) > x.shape[0]:
      raise UserError(f"--config.gmm.selection_components has K = "
                      f"{max(c.selection_components)} above the number of points {x.shape[0]}.")
    wd.write_config(workdir, config)
    writer = wd.MetricWriter(workdir)
    writer.truncate_after(-1)  # a rerun starts the metrics afresh
    try:
      t0 = time.perf_counter()
      params, trace = gmm.fit_with_trace(
          keys.stream(root, "init"), x, k, covariance_type=c.covariance_type,
          max_iters=int(c.em_iters), tol=float(c.em_tol), num_restarts=int(c.num_restarts),
          reg_covar=float(c.reg_covar), init_method=c.init_method)
      jax.block_until_ready(params)
      fit_s = time.perf_counter() - t0
      n_it = int(trace.num_iters)
      final_ll = float(jnp.mean(gmm.log_prob(params, x)))
      # log p(x | theta_t) for t = 0..n_it (the last after the final M-step).
      ll = np.append(np.asarray(trace.log_likelihood)[:n_it], final_ll)
      elbo = np.asarray(trace.elbo)[:n_it]
      q = gmm.posterior(params, x)
      decomposition = _elbo_decomposition(params, x, q)
      summary = {
          "experiment": "gmm", "data": data_name, "num_points": int(x.shape[0]),
          "dim": int(x.shape[1]), "num_components": k,
          "covariance_type": c.covariance_type, "num_iters": n_it,
          "converged": bool(n_it < int(c.em_iters)),
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
      if true is not None:
        summary["true_params_log_likelihood"] = float(jnp.mean(gmm.log_prob(true, x)))
      if labels is not None:
        from sklearn.metrics import adjusted_rand_score  # pylint: disable=g-import-not-at-top
        summary["adjusted_rand_index"] = float(adjusted_rand_score(
            np.asarray(labels), np.asarray(q).argmax(1)))
      if c.selection_components:
        summary["selection"] = select_num_components(keys.stream(root, "init"), x, eval_x, c)
        if true is not None:
          summary["selection"]["true_num_components"] = true.num_components
      write_em_trace(writer, ll, elbo)
    finally:
      writer.close()

    save_bound_plot(os.path.join(workdir, "em_bounds.png"), ll, elbo,
                    reference=summary.get("true_params_log_likelihood"),
                    reference_label="log p(x) under the generating mixture",
                    title=f"GMM EM on {data_name}, K={k}, {c.covariance_type}")
    save_gmm_components(
        os.path.join(workdir, "gmm_components.png"), x, params, true=true,
        title=(f"GMM, K={k} ({c.covariance_type}): avg log p(x) = {final_ll:.3f}, "
               f"BIC = {summary['bic']:.0f}"),
        axis_labels=("x1", "x2") if basis is None else ("PC 1", "PC 2"))
    if "selection" in summary:
      save_selection_plot(os.path.join(workdir, "gmm_selection.png"), summary["selection"],
                          true_k=None if true is None else true.num_components,
                          title=f"Choosing K on {data_name} ({c.covariance_type} covariances)")
    if basis is not None:
      images = np.clip(np.asarray(params.means) @ basis.T + mean, 0, 1)
      order = np.argsort(-np.asarray(params.weights))
      plots.save_image_grid(os.path.join(workdir, "gmm_means.png"), images[order],
                            ds.image_shape, title="component means (decoded from PCA), "
                            "by decreasing weight")
  wd.write_summary(workdir, summary)
  logging.info("GMM: %d iterations, avg log p(x) %.4f, BIC %.1f", n_it, final_ll, summary["bic"])
  if "selection" in summary:
    sel = summary["selection"]
    logging.info("GMM: K by BIC %d (scikit-learn %d), by held-out log-likelihood %d "
                 "(scikit-learn %d)", sel["bic_choice"], sel["sklearn_bic_choice"],
                 sel["eval_choice"], sel["sklearn_eval_choice"])
  return summary
