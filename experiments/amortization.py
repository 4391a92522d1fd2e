"""Amortization and approximation gaps per posterior family (Cremer et al., 2018).

For each family f of ``amortization.posteriors`` (``gaussian``, ``planar``,
``iaf``; flows with ``amortization.flow_steps`` maps) a VAE with q of that
family is trained (or resumed) by ``experiments.vae.train`` in
``WORKDIR/vae_<f>`` (the VAE's checkpoints, figures and summary there), on
the same data, seed and settings; then the first ``amortization.examples``
held-out examples get a per-example q* of the same family optimized from the
encoder's output (``vae_jax.inference.amortization.gaps``).

summary.json (averages over the examples, nats): ``families[f]`` holds
``amortized_elbo``, ``optimized_elbo``, ``log_likelihood_iw`` (with
``iw_samples`` draws from q*), ``amortization_gap`` = optimized - amortized,
``approximation_gap`` = log_likelihood_iw - optimized, ``inference_gap``,
each with its standard error over examples; the first family's numbers are
also at the top level. metrics.jsonl split ``local_opt`` (each family's
per-example optimization, mean ELBO per step, as ``elbo/<f>``); figures
``amortization_gaps.png`` (the first family) and ``amortization_families.png``
(every family side by side). When ``model.latent_dim`` is 2,
``posterior_2d.png`` draws the true posterior p(z|x) of a few held-out images,
p(x|z) p(z) normalized by quadrature on a grid, beside 20,000 draws of each
family's amortized q, with KL(q || p(z|x)) = E_q[log q(z|x) - log p(x, z)] +
log p(x) (log p(x) by the same quadrature): the lecture's gap, drawn.

Semi-amortized inference (Kim et al., 2018): with ``amortization.savae_refine_steps``
= K > 0, a VAE of the first family whose q is refined by K gradient steps
(``model.refine_lr``, ``model.refine_gradient``; ``vae_jax.inference.refinement``)
is trained in ``WORKDIR/savae_<f>``, the same encoder and settings otherwise,
and its gaps are measured on the same examples. summary.json ``savae`` holds
``vae`` and ``savae``, each with the gaps above (the SA-VAE's also
``refined_elbo``, its K-step q's ELBO, and ``refined_amortization_gap`` =
optimized - refined) and ``local_convergence``: how much further each
example's ELBO rises when q* is optimized again for ``local_steps`` steps (the
same draws; near 0: the gaps measure converged optima); and
``amortization_gap_change`` = the SA-VAE's amortization gap (of its encoder's
q) - the plain VAE's, and ``refined_amortization_gap_change`` = the gap left
after its K steps - the plain VAE's, each paired over the examples, with its
standard error and a verdict (``shrinks`` or ``grows`` when the difference is
beyond two standard errors, else ``no change measured``). metrics.jsonl's ``local_opt`` split holds their traces as
``elbo/savae_<f>``.
"""

from __future__ import annotations

import os
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from experiments import vae
from vae_jax.inference import amortization
from vae_jax.inference import evaluation
from vae_jax import keys
from vae_jax.families.posteriors import REGISTRY as POSTERIORS
from vae_jax.inference import objectives
from vae_jax import plots
from vae_jax.inference import refinement
from vae_jax.models import vae as vae_model
from vae_jax.training import workdir as wd
from vae_jax.errors import check_positive

GAP_KEYS = ("amortized_elbo", "optimized_elbo", "log_likelihood_iw", "amortization_gap",
            "approximation_gap")


def save_gap_plot(path: str, gaps: dict, trace) -> str:
  """Per-example means of the three quantities, and the local optimization curve."""
  fig, (ax1, ax2) = plots.new_figure(1, 2, figsize=(12, 4.2))
  per_example = [np.asarray(gaps[k], np.float64) for k in GAP_KEYS[:3]]
  vals = [float(v.mean()) for v in per_example]
  errs = [float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0 for v in per_example]
  labels = ["amortized ELBO(q_φ)", "optimized ELBO(q*)", "IW log p(x)"]
  ax1.errorbar(range(3), vals, yerr=errs, fmt="o-", color="k", capsize=4)
  for i, v in enumerate(vals):
    ax1.annotate(f"{v:.2f}", (i, v), textcoords="offset points", xytext=(8, -4), fontsize=9)
  for i, name in ((0, "amortization gap"), (1, "approximation gap")):
    ax1.annotate("", xy=(i + 0.5, vals[i + 1]), xytext=(i + 0.5, vals[i]),
                 arrowprops=dict(arrowstyle="<->", color=f"C{i + 1}"))
    ax1.text(i + 0.55, 0.5 * (vals[i] + vals[i + 1]), f"{name}\n{vals[i + 1] - vals[i]:.3f}",
             color=f"C{i + 1}", fontsize=9, va="center",
             bbox=dict(facecolor="white", edgecolor="none", alpha=0.85))
  ax1.set_xticks(range(3), labels)
  ax1.set_xlim(-0.4, 2.6)
  ax1.set_ylabel("nats per example (held-out mean ± s.e.)")
  ax1.set_title("log p(x) ≥ ELBO(q*) ≥ ELBO(q_φ)  (Cremer et al., 2018)", fontsize=10)
  ax1.grid(alpha=0.3)
  trace = np.asarray(trace)
  ax2.plot(trace, color="C0", alpha=0.3, lw=0.8)
  width = max(1, len(trace) // 50)
  smooth = np.convolve(trace, np.ones(width) / width, mode="valid")
  ax2.plot(np.arange(width - 1, len(trace)), smooth, color="C0", label="mean ELBO (smoothed)")
  ax2.axhline(vals[0], color="C0", ls="--", lw=1, label="amortized ELBO")
  ax2.axhline(vals[2], color="C2", ls="--", lw=1, label="IW log p(x)")
  ax2.set_xlabel("per-example optimization step (decoder fixed)")
  ax2.set_ylabel("mean ELBO estimate")
  ax2.set_title("non-amortized E-step from the encoder's q", fontsize=10)
  ax2.legend(fontsize=8)
  ax2.grid(alpha=0.3)
  return plots.save(fig, path)


def family_config(config, posterior: str):
  """The run's config with q of family ``posterior`` (its keys from ``config.amortization``)."""
  return vae.with_posterior(config, posterior, config.amortization)


def savae_config(config):
  """The SA-VAE's config: the first family's, refining with ``savae_refine_steps`` steps."""
  return vae.with_model(family_config(config, config.amortization.posteriors[0]),
                        refine_steps=int(config.amortization.savae_refine_steps))


def validate(config) -> None:
  a = config.amortization
  for name in ("examples", "local_steps", "eval_samples", "iw_samples", "flow_steps"):
    check_positive(a[name], f"config.amortization.{name}", integer=True)
  check_positive(a.local_lr, "config.amortization.local_lr")
  check_positive(a.savae_refine_steps, "config.amortization.savae_refine_steps", integer=True,
                 minimum=0, meaning="the SA-VAE's refinement steps; 0: no SA-VAE")
  vae.validate_sweep(config, a.posteriors, POSTERIORS, "amortization.posteriors",
                     {"posterior": "gaussian", "flow_steps": None, "refine_steps": 0},
                     lambda f: family_config(config, f))
  if a.savae_refine_steps:
    vae_model.validate(savae_config(config))


def _summarize(result: dict) -> dict:
  """Means over examples with their standard errors (None for a single example)."""
  extra = ("refined_elbo", "refined_amortization_gap", "local_convergence")
  per_example = {k: np.asarray(result[k], np.float64) for k in GAP_KEYS + extra if k in result}
  per_example["inference_gap"] = per_example["log_likelihood_iw"] - per_example["amortized_elbo"]
  out = {}
  for k, v in per_example.items():
    out[k], se = evaluation.mean_and_stderr(v)
    out[f"{k}_stderr"] = se if len(v) > 1 else None
  return out


def save_families_plot(path: str, families: dict) -> str:
  """Stacked bars per family: amortization gap and approximation gap (± s.e.)."""
  names = list(families)
  fig, ax = plots.new_figure(figsize=(1.8 + 1.6 * len(names), 4.2))
  x = np.arange(len(names))
  amort = np.array([families[f]["amortization_gap"] for f in names])
  approx = np.array([families[f]["approximation_gap"] for f in names])
  amort_se = np.array([families[f]["amortization_gap_stderr"] or 0.0 for f in names])
  approx_se = np.array([families[f]["approximation_gap_stderr"] or 0.0 for f in names])
  ax.bar(x, approx, 0.6, yerr=approx_se, capsize=4, color="C1", label="approximation gap")
  ax.bar(x, amort, 0.6, bottom=approx, yerr=amort_se, capsize=4, color="C2",
         label="amortization gap")
  for i, f in enumerate(names):
    ax.annotate(f"{approx[i]:.2f} + {amort[i]:.2f}", (i + 0.32, approx[i] + amort[i]),
                textcoords="offset points", xytext=(4, 0), ha="left", va="center", fontsize=9)
  ax.set_xlim(-0.6, len(names) - 0.1)
  ax.set_xticks(x, [f"{f}\nIW log p(x) {families[f]['log_likelihood_iw']:.2f}" for f in names],
                fontsize=9)
  ax.set_ylabel("nats per example (held-out mean ± s.e.)")
  ax.set_title("inference gap log p(x) - ELBO(q_φ) by posterior family", fontsize=10)
  ax.legend(fontsize=8, loc="upper right")
  ax.grid(alpha=0.3, axis="y")
  ax.set_ylim(0, 1.25 * max(1e-3, float(np.max(approx + amort + amort_se + approx_se))))
  return plots.save(fig, path)


def savae_summary(config, runs: dict) -> dict:
  """summary.json ``savae``: the plain VAE's and the SA-VAE's gaps on the same examples,
  and the change of the amortization gap, paired over the examples (module doc)."""
  out = {"posterior": config.amortization.posteriors[0],
         "refine_steps": int(config.amortization.savae_refine_steps),
         "refine_lr": float(config.model.refine_lr),
         "refine_gradient": config.model.refine_gradient}
  for name, (gaps, train_summary) in runs.items():
    out[name] = {**_summarize(gaps), "vae_eval_neg_elbo": train_summary["eval_neg_elbo"]}
    if "eval_neg_elbo_refined" in train_summary:
      out[name]["vae_eval_neg_elbo_refined"] = train_summary["eval_neg_elbo_refined"]
  plain = np.asarray(runs["vae"][0]["amortization_gap"], np.float64)
  for key, gap in (("amortization_gap_change", "amortization_gap"),
                   ("refined_amortization_gap_change", "refined_amortization_gap")):
    mean, se = evaluation.mean_and_stderr(
        np.asarray(runs["savae"][0][gap], np.float64) - plain)
    out[key], out[f"{key}_stderr"] = mean, se
    out[f"{key}_verdict"] = ("shrinks" if mean + 2 * se < 0 else "grows" if mean - 2 * se > 0
                             else "no change measured")
  return out


# posterior_2d.png: images shown, grid points per side, draws of each q.
POSTERIOR_2D_IMAGES = 4
POSTERIOR_2D_GRID = 161
POSTERIOR_2D_DRAWS = 20000


def posterior_grid(params, x1, key, *, model, half_width: float, center, num: int):
  """log p(x, z) on a num x num grid around ``center`` and log p(x) by quadrature.

  Returns (z1 [num], z2 [num], log_joint [num, num], log_px).
  """
  z1 = np.linspace(center[0] - half_width, center[0] + half_width, num)
  z2 = np.linspace(center[1] - half_width, center[1] + half_width, num)
  grid = np.stack(np.meshgrid(z1, z2), -1).reshape(-1, 2).astype(np.float32)   # [G, 2]
  prior = model.apply(params, method="prior_distribution")
  dec = model.apply(params, jnp.asarray(grid), method="decode")
  log_joint = np.asarray(objectives.log_likelihood(x1[None], dec) + prior.log_prob(grid),
                         np.float64).reshape(num, num)
  cell = (z1[1] - z1[0]) * (z2[1] - z2[0])
  m = log_joint.max()
  log_px = float(m + np.log(np.exp(log_joint - m).sum() * cell))
  del key
  return z1, z2, log_joint, log_px


def save_posterior_2d(path: str, trained: dict, x, key) -> dict:
  """The true p(z|x) of a few images beside each family's q (module doc); returns
  {family: [KL(q || p(z|x)) per image]}."""
  families = list(trained)
  rows = min(POSTERIOR_2D_IMAGES, len(x))
  picks = np.linspace(0, len(x) - 1, rows).astype(int)
  fig, axes = plots.new_figure(rows, len(families), figsize=(3.3 * len(families), 3.1 * rows),
                               squeeze=False)
  kls = {f: [] for f in families}
  for r, i in enumerate(picks):
    xi = jnp.asarray(x[i:i + 1])
    draws = {}
    for f in families:
      model, params = trained[f]
      q = model.apply(params, xi, method="encode")
      z, log_q = q.sample_and_log_prob(jax.random.fold_in(key, r), (POSTERIOR_2D_DRAWS,))
      draws[f] = (np.asarray(z[:, 0], np.float64), np.asarray(log_q[:, 0], np.float64))
    for c, f in enumerate(families):
      model, params = trained[f]
      z, log_q = draws[f]
      center = np.median(z, 0)
      half = float(max(6 * np.max(np.std(z, 0)), 0.3))
      z1, z2, log_joint, log_px = posterior_grid(params, x[i], key, model=model,
                                                 half_width=half, center=center,
                                                 num=POSTERIOR_2D_GRID)
      prior = model.apply(params, method="prior_distribution")
      dec = model.apply(params, jnp.asarray(z, jnp.float32)[:, None], method="decode")
      log_pxz = np.asarray(objectives.log_likelihood(xi, dec)[:, 0]
                           + prior.log_prob(jnp.asarray(z, jnp.float32)), np.float64)
      kl = float(np.mean(log_q - log_pxz) + log_px)
      kls[f].append(kl)
      ax = axes[r][c]
      post = np.exp(log_joint - log_px)
      ax.contourf(z1, z2, post, levels=12, cmap="Greys")
      h, e1, e2 = np.histogram2d(z[:, 0], z[:, 1], bins=60,
                                 range=[[z1[0], z1[-1]], [z2[0], z2[-1]]], density=True)
      ax.contour(0.5 * (e1[1:] + e1[:-1]), 0.5 * (e2[1:] + e2[:-1]), h.T, levels=5,
                 colors=f"C{c}", linewidths=1.0)
      ax.set_title(f"{f}: KL(q || p(z|x)) = {kl:.3f}", fontsize=9)
      if r == rows - 1:
        ax.set_xlabel("z1")
      if c == 0:
        ax.set_ylabel(f"image {int(i)}\nz2")
  fig.suptitle("true posterior p(z|x) ∝ p(x|z) p(z) (grey, by quadrature, under each "
               "family's own trained decoder)\nand that family's amortized q (contours of "
               "20,000 draws)", fontsize=10)
  plots.save(fig, path)
  return kls


def run(config, workdir: str) -> dict:
  """Trains one VAE per family in WORKDIR/vae_<family>, then measures the gaps."""
  validate(config)
  a = config.amortization
  wd.prepare(workdir, config)
  wd.write_config(workdir, config)
  t0 = time.perf_counter()
  families, trained, traces = {}, {}, {}
  key = keys.stream(keys.root(config.seed), "local")
  savae_runs = {}
  for f in a.posteriors:
    fc = family_config(config, f)
    train_summary, task, result, ds = vae.train(fc, os.path.join(workdir, f"vae_{f}"))
    model, state = task.model, result.state
    params = jax.device_get(state.params)
    n = min(int(a.examples), len(ds.eval_x))
    x = jnp.asarray(ds.eval_x[:n])
    compared = bool(a.savae_refine_steps) and f == a.posteriors[0]
    gaps = amortization.gaps(
        params, x, key, model=model, local_steps=int(a.local_steps),
        local_learning_rate=float(a.local_lr), eval_samples=int(a.eval_samples),
        iw_samples=int(a.iw_samples), check_convergence=compared)
    families[f] = {**_summarize(gaps), "vae_step": int(state.step),
                   "vae_eval_neg_elbo": train_summary["eval_neg_elbo"],
                   "flow_steps": fc.model.flow_steps}
    families[f].pop("local_convergence", None)
    families[f].pop("local_convergence_stderr", None)
    if compared:
      savae_runs["vae"] = (gaps, train_summary)
    trained[f] = (model, params)
    traces[f] = np.asarray(gaps["trace"])
    if f == a.posteriors[0]:
      save_gap_plot(os.path.join(workdir, "amortization_gaps.png"), gaps, traces[f])
    logging.info("%s: amortization gap %.3f, approximation gap %.3f nats", f,
                 families[f]["amortization_gap"], families[f]["approximation_gap"])
  if a.savae_refine_steps:
    sc = savae_config(config)
    f = a.posteriors[0]
    train_summary, task, result, _ = vae.train(sc, os.path.join(workdir, f"savae_{f}"))
    gaps = amortization.gaps(
        jax.device_get(result.state.params), x, key, model=task.model,
        local_steps=int(a.local_steps), local_learning_rate=float(a.local_lr),
        eval_samples=int(a.eval_samples), iw_samples=int(a.iw_samples),
        refinement=refinement.from_config(sc.model), check_convergence=True)
    savae_runs["savae"] = (gaps, train_summary)
    traces[f"savae_{f}"] = np.asarray(gaps["trace"])
  first = families[a.posteriors[0]]
  summary = {"experiment": "amortization", "dataset": ds.name, "num_examples": n,
             "num_importance_samples": int(a.iw_samples), "local_steps": int(a.local_steps),
             **first, "families": families}
  if savae_runs:
    summary["savae"] = savae_summary(config, savae_runs)
    logging.info("SA-VAE (%d steps): amortization gap %.3f (%.3f after its steps) vs the "
                 "VAE's %.3f nats", a.savae_refine_steps,
                 summary["savae"]["savae"]["amortization_gap"],
                 summary["savae"]["savae"]["refined_amortization_gap"],
                 summary["savae"]["vae"]["amortization_gap"])
  writer = wd.MetricWriter(workdir)
  writer.truncate_after(-1)
  for f, trace in traces.items():
    for t in range(0, len(trace), max(1, len(trace) // 100)):
      writer.write(t, "local_opt", {f"elbo/{f}": float(trace[t])})
  writer.close()
  save_families_plot(os.path.join(workdir, "amortization_families.png"), families)
  if int(config.model.latent_dim) == 2:
    kls = save_posterior_2d(os.path.join(workdir, "posterior_2d.png"), trained,
                            np.asarray(ds.eval_x[:n]), keys.stream(keys.root(config.seed),
                                                                   "figures"))
    summary["posterior_2d_kl"] = kls
  summary["seconds"] = time.perf_counter() - t0
  wd.write_summary(workdir, summary)
  return summary
