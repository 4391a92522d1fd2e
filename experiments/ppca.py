"""Probabilistic PCA: closed form vs EM (``config.experiment = "ppca"``).

Fits ``vae_jax.classical.ppca`` to ``config.data.dataset`` (grey levels) in float64:
the closed-form maximum-likelihood solution, EM from a random W against it,
PCA-EM (sigma^2 -> 0) against the eigenvector subspace, and the exact
posterior of the held-out images, and the latent dimension chosen by the
Laplace-approximated evidence log p(X | M) for every M (Minka, 2000), on the
data and on data drawn from the fitted PPCA (whose M is known), each checked
against scikit-learn's ``_assess_dimension`` (what ``PCA(n_components="mle")``
maximizes) at a few M.

Outputs in the workdir: ``config.json``, ``metrics.jsonl`` and
``tensorboard/`` (one record per EM iteration, split "em", as in
``experiments/gmm.py``), ``summary.json``, ``em_bounds.png`` (EM's log p(x)
and ELBO per iteration against the closed-form maximum), ``ppca_latent.png``
(posterior means of the held-out images, coloured by label, when
``config.ppca.latent_dim >= 2``), ``ppca_components.png`` (the mean image
and the columns of W) and ``ppca_evidence.png`` (the log evidence and the
maximum log-likelihood per M; ``summary.json``'s ``evidence`` section holds
the curves). Keys: EM's and PCA-EM's random initial W are the two halves of
``split(keys.stream(root, "init"))``; the simulated data set is drawn from
``keys.stream(root, "simulate")``.

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


def sklearn_evidence_check(eigenvalues, num_samples: int, log_evidence, ranks) -> dict:
  """Our log p(X | M) against scikit-learn's ``_assess_dimension`` at the given M.

  sklearn drops the constant -N D/2 (log 2 pi + 1) that ``ppca.log_evidence``
  keeps (the same for every M); evaluated on the same eigenvalues, the two
  differ by exactly that. Its loops are Python (O(M D) per M), so only a few M
  are checked here; the tests compare every M, and the choice of
  ``PCA(n_components="mle")``, on smaller data.

  Args:
    eigenvalues: [D] descending (``ppca.spectrum``).
    num_samples: N.
    log_evidence: [D - 1] ours.
    ranks: the M to check.

  Returns:
    {"ranks", "offset", "max_abs_diff"} (inf where one is finite and the other not).
  """
  from sklearn.decomposition._pca import _assess_dimension  # pylint: disable=g-import-not-at-top
  lam = np.asarray(eigenvalues, np.float64)
  n, d = int(num_samples), len(lam)
  offset = -0.5 * n * d * (np.log(2 * np.pi) + 1.0)
  diffs = []
  for m in ranks:
    ours, theirs = float(log_evidence[m - 1]), float(_assess_dimension(lam, m, n))
    same_inf = np.isinf(ours) and ours == theirs
    diffs.append(0.0 if same_inf else abs(ours - (theirs + offset)))
  return {"ranks": [int(m) for m in ranks], "offset": offset,
          "max_abs_diff": float(np.nan_to_num(max(diffs), nan=np.inf))}


def _checked_ranks(chosen: int, d: int) -> list[int]:
  """M = 1, 2, the chosen one and its neighbours, and D - 1 (the priciest for sklearn)."""
  return sorted({m for m in (1, 2, chosen - 1, chosen, chosen + 1, d - 1) if 1 <= m <= d - 1})


def evidence_summary(x) -> dict:
  """The evidence of every M for the data x: [N, D] (float64), checked against sklearn.

  Returns:
    ``chosen_latent_dim``, ``log_evidence`` and ``max_log_likelihood`` ([D - 1]
    lists, entry M - 1 for M; nats for the whole data set), ``rank``
    (eigenvalues >= the floor) and ``sklearn`` (``sklearn_evidence_check``).
  """
  num_samples = int(x.shape[0])
  lam = ppca.spectrum(x)
  evidence = np.asarray(ppca.log_evidence(lam, num_samples))
  chosen = int(np.argmax(evidence)) + 1
  d = lam.shape[0]
  return {
      "chosen_latent_dim": chosen,
      "rank": int(np.sum(np.asarray(lam) >= ppca.EVIDENCE_FLOOR)),
      "log_evidence": evidence.tolist(),
      "max_log_likelihood": np.asarray(ppca.max_log_likelihood(lam, num_samples)).tolist(),
      "sklearn": sklearn_evidence_check(lam, num_samples, evidence, _checked_ranks(chosen, d)),
  }


def save_evidence_plot(path: str, data: dict, simulated: dict, *, num_samples: int,
                       name: str, true_dim: int) -> str:
  """Three panels: the data's max log-likelihood and evidence per M, the Occam term
  (their difference) for both data sets, and the simulated data's evidence near its M.

  Args:
    path: the PNG to write.
    data, simulated: ``evidence_summary`` of the data and of the PPCA draws.
    num_samples: N (the curves are drawn per example).
    name: the data set's name.
    true_dim: the M the simulated data were drawn with.

  Returns:
    ``path``.
  """
  per = lambda v: np.asarray(v, np.float64) / num_samples
  ev, ll = per(data["log_evidence"]), per(data["max_log_likelihood"])
  ev_sim, ll_sim = per(simulated["log_evidence"]), per(simulated["max_log_likelihood"])
  ms = np.arange(1, len(ev) + 1)
  fig, axes = plots.new_figure(1, 3, figsize=(17, 4.6))
  ax = axes[0]
  ax.plot(ms, ll, color="C0", label="max log-likelihood  log p(X | θ_ML(M)) / N")
  ax.plot(ms, np.where(np.isfinite(ev), ev, np.nan), color="C3",
          label="Laplace log evidence  log p(X | M) / N")
  m = data["chosen_latent_dim"]
  ax.axvline(m, color="k", ls="--", lw=1, label=f"chosen M = {m}")
  if m == data["rank"]:
    ax.annotate("v_M = 0 here, floored at 1e-15\n(as scikit-learn does)", (m, ev[m - 1]),
                xytext=(-12, -4), textcoords="offset points", ha="right", va="top", fontsize=8)
  if data["rank"] < len(ms) + 1:
    ax.axvspan(data["rank"] + 0.5, ms[-1] + 0.5, color="0.9",
               label=f"λ_M < 1e-15: the data span {data['rank']} directions")
  ax.set_xlabel("latent dimension M")
  ax.set_ylabel("nats per example")
  ax.set_title(f"{name}: the evidence of every latent dimension", fontsize=10)
  ax.legend(fontsize=8, loc="lower right")
  ax.grid(alpha=0.3)

  ax = axes[1]
  curves = ((ev, ll, "C3", name), (ev_sim, ll_sim, "C2", f"drawn from PPCA, M = {true_dim}"))
  for values, likelihood, color, label in curves:
    occam = np.where(np.isfinite(values), values - likelihood, np.nan)
    ax.plot(ms, occam, color=color, label=label)
  ax.set_xlabel("latent dimension M")
  ax.set_ylabel("log p(X | M) − max log-likelihood  [nats / example]")
  ax.set_title("The Occam term: each direction's parameters cost evidence", fontsize=10)
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)

  ax = axes[2]
  shown = ms <= max(4 * true_dim, 10)
  total = lambda v: np.asarray(v, np.float64)[shown]
  rel = total(simulated["log_evidence"]) - simulated["log_evidence"][true_dim - 1]
  rel_ll = total(simulated["max_log_likelihood"]) - simulated["max_log_likelihood"][true_dim - 1]
  ax.plot(ms[shown], rel, "o-", color="C2", ms=4, label="log evidence")
  ax.plot(ms[shown], rel_ll, "s:", color="C0", ms=3, label="max log-likelihood")
  ax.axvline(true_dim, color="k", ls="--", lw=1, label=f"true M = {true_dim}")
  ax.axvline(simulated["chosen_latent_dim"], color="C3", ls=":", lw=2,
             label=f"chosen M = {simulated['chosen_latent_dim']}")
  beyond = ms[shown] > true_dim
  span = max(np.max(np.abs(rel[beyond])), np.max(np.abs(rel_ll[beyond])), 1.0)
  ax.set_ylim(-1.3 * span, 1.3 * span)
  below = [f"M = {mm}: {r:,.0f}" for mm, r in zip(ms[shown], rel) if r < -1.3 * span]
  if below:
    ax.text(0.02, 0.03, "off the axis, evidence " + ", ".join(below), transform=ax.transAxes,
            fontsize=8)
  ax.set_xlabel("latent dimension M")
  ax.set_ylabel(f"nats (whole data set), relative to M = {true_dim}")
  ax.set_title(f"Drawn from the fitted PPCA (M = {true_dim}): the evidence peaks there",
               fontsize=10)
  ax.legend(fontsize=8, loc="upper left")
  ax.grid(alpha=0.3)
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
      n = int(x.shape[0])
      evidence = evidence_summary(x)
      x_sim = ppca.sample(keys.stream(keys.root(config.seed), "simulate"), closed, n)
      simulated = evidence_summary(x_sim)
      evidence["simulated"] = dict(simulated, true_latent_dim=m)
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
          "evidence": evidence,
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
    save_evidence_plot(os.path.join(workdir, "ppca_evidence.png"), evidence, simulated,
                       num_samples=n, name=ds.name, true_dim=m)
  wd.write_summary(workdir, summary)
  logging.info("PPCA: closed form %.4f, EM %.4f nats/example", closed_ll, ll[-1])
  logging.info("PPCA evidence: M = %d on %s (%d directions above 1e-15); M = %d on data "
               "drawn with M = %d", evidence["chosen_latent_dim"], ds.name, evidence["rank"],
               simulated["chosen_latent_dim"], m)
  return summary
