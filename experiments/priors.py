"""Standard vs learned priors, each evaluated by IWAE-5000 (Tomczak & Welling, 2018).

For each prior of ``priors.priors`` (``standard``, ``mog``, ``vamp``) a VAE
is trained (or resumed) by ``experiments.vae.train`` in ``WORKDIR/vae_<prior>``
with ``priors.components`` mixture components and everything else equal;
then the first ``priors.eval_examples`` held-out images are scored by the
IWAE bound with ``priors.iw_samples`` draws (``vae_jax.inference.iwae.evaluate_iwae``,
the same key for every prior).

summary.json: ``table[prior]`` = ``log_px`` (IWAE-K, nats per image, with
``log_px_stderr``), ``neg_elbo`` (the training run's held-out -ELBO),
``vs_standard`` (log p(x) minus the standard prior's, per image on the same
images, with its paired standard error) and ``paper`` (Tomczak & Welling's
reported log p(x), where they report one); figure ``priors.png``.
"""

from __future__ import annotations

import os
import time

from absl import logging
import jax
import numpy as np

from experiments import evaluate
from experiments import vae
from vae_jax.inference import evaluation
from vae_jax.inference import iwae
from vae_jax import keys
from vae_jax.families.priors import REGISTRY as PRIORS
from vae_jax import plots
from vae_jax.training import workdir as wd
from vae_jax.errors import check_positive


def prior_config(config, prior: str):
  """The run's config with p(z) = ``prior`` (K = ``priors.components`` for mixtures)."""
  own_keys = PRIORS.get(prior).KEYS
  return vae.with_model(config, prior=prior, prior_components=(
      int(config.priors.components) if "prior_components" in own_keys else None))


def validate(config) -> None:
  p = config.priors
  for name in ("components", "iw_samples", "eval_examples"):
    check_positive(p[name], f"config.priors.{name}", integer=True)
  vae.validate_sweep(config, p.priors, PRIORS, "priors.priors",
                     {"prior": "standard", "prior_components": None},
                     lambda name: prior_config(config, name))


def save_plot(path: str, table: dict, paper: dict) -> str:
  names = list(table)
  fig, ax = plots.new_figure(figsize=(2 + 1.6 * len(names), 4))
  x = np.arange(len(names))
  vals = [table[n]["log_px"] for n in names]
  errs = [table[n]["log_px_stderr"] for n in names]
  ax.errorbar(x, vals, yerr=errs, fmt="o", color="k", capsize=4, label="this run (IWAE)")
  for i, v in enumerate(vals):
    ax.annotate(f"{v:.2f}", (i, v), textcoords="offset points", xytext=(8, 0), fontsize=9)
  ax.set_xticks(x, names)
  ax.set_xlim(-0.5, len(names) - 0.3)
  ax.set_ylabel("held-out log p(x), nats per image")
  ax.set_title("learned priors vs N(0, I), everything else equal", fontsize=10)
  if paper:
    ax2 = ax.twinx()
    px = [i for i, n in enumerate(names) if n in paper]
    ax2.plot(px, [paper[names[i]] for i in px], "s", color="C3", label="paper (right axis)")
    ax2.set_ylabel("Tomczak & Welling (2018), MNIST", color="C3")
    ax2.legend(loc="lower right", fontsize=8)
  ax.legend(loc="upper left", fontsize=8)
  ax.grid(alpha=0.3)
  return plots.save(fig, path)


def run(config, workdir: str) -> dict:
  """Trains one VAE per prior, evaluates each by IWAE-K; returns the summary."""
  validate(config)
  p = config.priors
  wd.prepare(workdir, config)
  wd.write_config(workdir, config)
  t0 = time.perf_counter()
  key = keys.stream(keys.root(config.seed), "eval")
  table, log_px = {}, {}
  paper = {k: float(v) for k, v in config.paper.items() if k in PRIORS}
  for name in p.priors:
    summary, task, result, ds = vae.train(prior_config(config, name),
                                          os.path.join(workdir, f"vae_{name}"))
    x = ds.eval_x[:int(p.eval_examples)]
    log_px[name] = iwae.evaluate_iwae(jax.device_get(result.state.params), x, key,
                                      model=task.model, num_samples=int(p.iw_samples),
                                      progress=evaluate.progress_logger(len(x)))
    mean, se = evaluation.mean_and_stderr(log_px[name])
    table[name] = {"log_px": mean, "log_px_stderr": se,
                   "neg_elbo": summary["eval_neg_elbo"], "step": int(result.state.step),
                   "components": (int(p.components) if "prior_components" in PRIORS.get(name).KEYS
                                  else None),
                   "paper": paper.get(name)}
    logging.info("prior %s: log p(x) %.3f ± %.3f nats (IWAE-%d, %d images)", name, mean, se,
                 int(p.iw_samples), len(x))
  if "standard" in log_px:
    for name in table:
      diff, diff_se = evaluation.mean_and_stderr(log_px[name] - log_px["standard"])
      table[name]["vs_standard"], table[name]["vs_standard_stderr"] = diff, diff_se
  out = {"experiment": "priors", "dataset": ds.name, "eval_examples": int(len(x)),
         "iw_samples": int(p.iw_samples), "table": table,
         "paper_table": config.paper.table, "seconds": time.perf_counter() - t0}
  save_plot(os.path.join(workdir, "priors.png"), table, paper)
  write_metrics(workdir, table)
  wd.write_summary(workdir, out)
  return out


def write_metrics(workdir: str, table: dict) -> None:
  """metrics.jsonl and TensorBoard: one ``priors`` record per prior, at its
  VAE's final step (tag ``priors/log_px/<prior>``: one chart line per prior)."""
  writer = wd.MetricWriter(workdir)
  writer.truncate_after(-1)            # a rerun starts the metrics afresh
  try:
    for name, row in table.items():
      writer.write(row["step"], "priors", {"prior": name, **row}, series=("prior",))
  finally:
    writer.close()
