"""Amortization and approximation gaps of a trained VAE (Cremer et al., 2018).

The VAE is trained (or resumed) by ``experiments.vae.run`` in ``WORKDIR/vae``
(so it has the VAE's checkpoints, figures and summary there); then the first
``amortization.examples`` held-out examples get a per-example q* optimized
from the encoder's output (``vae_jax.amortization.gaps``).

summary.json (averages over the examples, nats): ``amortized_elbo``,
``optimized_elbo``, ``log_likelihood_iw`` (with ``iw_samples``),
``amortization_gap`` = optimized - amortized, ``approximation_gap`` =
log_likelihood_iw - optimized, ``inference_gap``, plus standard errors;
metrics.jsonl split ``local_opt`` (the per-example optimization's mean ELBO);
figure ``amortization_gaps.png``.
"""

from __future__ import annotations

import os
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from experiments import vae
from vae_jax import amortization
from vae_jax import keys
from vae_jax import plots
from vae_jax import tasks
from vae_jax import workdir as wd
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


def run(config, workdir: str) -> dict:
  """Trains the VAE in WORKDIR/vae, then measures the gaps (see module doc)."""
  a = config.amortization
  for name in ("examples", "local_steps", "eval_samples", "iw_samples"):
    check_positive(a[name], f"config.amortization.{name}", integer=True)
  check_positive(a.local_lr, "config.amortization.local_lr")
  wd.prepare(workdir, config)
  wd.write_config(workdir, config)
  vae_dir = os.path.join(workdir, "vae")
  tasks.validate_vae_config(config)
  train_summary, task, trained, ds = vae.train(config, vae_dir)
  model, state = task.model, trained.state
  n = min(int(a.examples), len(ds.eval_x))
  x = jnp.asarray(ds.eval_x[:n])
  t0 = time.perf_counter()
  result = amortization.gaps(
      jax.device_get(state.params), x, keys.stream(keys.root(config.seed), "local"),
      model=model, local_steps=int(a.local_steps), local_learning_rate=float(a.local_lr),
      eval_samples=int(a.eval_samples), iw_samples=int(a.iw_samples))
  summary = {"experiment": "amortization", "dataset": ds.name, "num_examples": n,
             "num_importance_samples": int(a.iw_samples), "local_steps": int(a.local_steps),
             "vae_step": int(state.step), "vae_eval_neg_elbo": train_summary["eval_neg_elbo"],
             "seconds": time.perf_counter() - t0}
  for k in GAP_KEYS:
    v = np.asarray(result[k], np.float64)
    summary[k] = float(v.mean())
    summary[f"{k}_stderr"] = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None
  summary["inference_gap"] = summary["log_likelihood_iw"] - summary["amortized_elbo"]
  writer = wd.MetricWriter(workdir)
  writer.truncate_after(-1)
  trace = np.asarray(result["trace"])
  for t in range(0, len(trace), max(1, len(trace) // 100)):
    writer.write(t, "local_opt", {"elbo": float(trace[t])})
  writer.close()
  save_gap_plot(os.path.join(workdir, "amortization_gaps.png"), result, trace)
  wd.write_summary(workdir, summary)
  logging.info("amortization gap %.3f, approximation gap %.3f nats",
               summary["amortization_gap"], summary["approximation_gap"])
  return summary
