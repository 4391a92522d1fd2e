"""Conjugate posteriors on simulated data (``config.experiment = "bayes"``).

For each conjugate model of ``vae_jax.classical.bayes`` (known true parameters, fixed
priors, see ``default_settings``), ``config.bayes.trials`` independent training
streams of length max(sizes) and held-out sets of size ``config.bayes.heldout``
are drawn from the true p(x | theta*); the training set of size n is the first
n points of a stream (data arriving one by one), the held-out set is shared by
all n of a trial. Per (model, n), averaged over trials:

* ``posterior_std``: std of p(theta | X) (for the Dirichlet the total
  sqrt(sum_k Var[theta_k | X])): how the posterior concentrates, ~ 1/sqrt(n).
* ``abs_error``: |E[theta | X] - theta*| (Euclidean norm for the Dirichlet).
* held-out log-loss in nats/example, -mean_j log q(x_j), of the posterior
  predictive (``logloss_predictive``), the MAP plug-in p(x | theta_MAP)
  (``logloss_map``), the MLE plug-in (``logloss_mle``) and the true model
  (``logloss_true``, whose expectation is the entropy H(p*)); all four on the
  same held-out data, so differences between them are paired.
* ``map_minus_predictive`` (and its standard error ``..._se`` over trials):
  logloss_map - logloss_predictive, > 0 where the predictive wins.
* ``mle_inf_fraction``: the fraction of trials where the MLE plug-in gives
  some held-out point probability 0 (e.g. theta_MLE = 0 after n zeros), i.e.
  infinite log-loss. ``logloss_mle`` is then +inf, which JSON cannot hold: it
  is written as the string "inf" (``workdir.to_jsonable``), and so is the
  returned summary.
* ``log_evidence_per_example``: log p(X) / n under the prior, which by the
  chain rule is minus the average sequential (prequential) log-loss
  (1/n) sum_i log p(x_i | x_<i).

Outputs in the workdir: ``config.json``, ``metrics.jsonl`` and
``tensorboard/`` (one record per (model, n), step = n, split "bayes"; one
TensorBoard tag per model and metric, ``bayes/logloss_map/normal_normal``),
``summary.json`` ({"table": {model: {str(n): row}}, "models": {model: prior,
truth, entropy}, ...}) and ``bayes.png``. Deterministic given ``config.seed``:
model i's data come from ``fold_in(keys.stream(root, "simulate"), i)``.

  python -m experiments.main --config=experiments/configs/bayes.py --workdir=/tmp/bayes
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any, NamedTuple

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vae_jax.classical import bayes
from vae_jax import keys
from vae_jax import plots
from vae_jax.training import workdir as wd
from vae_jax.errors import UserError, check_positive

FIGURE_FILE = "bayes.png"
ROW_KEYS = ("posterior_std", "abs_error", "logloss_predictive", "logloss_map",
            "logloss_mle", "logloss_true", "mle_inf_fraction", "map_minus_predictive",
            "map_minus_predictive_se", "log_evidence_per_example")


class Setting(NamedTuple):
  """One simulated problem: a conjugate model (its prior) and the true parameter."""
  name: str
  label: str
  model: Any          # a vae_jax.classical.bayes model
  truth: Any          # theta*: [] or [K]
  num_params: int     # free parameters d, for the d / (2n) excess-loss reference
  prior: dict         # the hyperparameters, for summary.json


def default_settings() -> list[Setting]:
  """The three problems: weakly informative priors and fixed true parameters.

  The truths are chosen so that at n = 1 the posterior predictive has the
  lower expected held-out log-loss than the MAP plug-in for every possible
  training point in the two discrete models (theta* in (0.37, 0.63) for Beta(2, 2);
  every theta*_k < 0.37 for Dir(2, 2, 2, 2)); that is not true for every
  truth: for a fixed theta* near 0 or 1 the MAP plug-in can win at small n. The
  Normal prior is two prior standard deviations away from mu*, so for small n
  the posterior mean is visibly pulled towards mu0 (a wrong-ish prior): the
  posterior predictive still beats both plug-ins at n = 1 (its extra variance
  tau_N^2 covers the bias), but the unbiased MLE plug-in wins for n ~ 2..10.
  """
  probs = (0.32, 0.28, 0.24, 0.16)
  return [
      Setting("beta_bernoulli", "Beta(2, 2) – Bernoulli,  θ* = 0.4",
              bayes.BetaBernoulli(a=2.0, b=2.0), 0.4, 1, dict(a=2.0, b=2.0)),
      Setting("dirichlet_categorical", "Dir(2, 2, 2, 2) – Categorical,  θ* = (.32, .28, .24, .16)",
              bayes.DirichletCategorical(alpha=jnp.full(len(probs), 2.0)),
              np.asarray(probs), len(probs) - 1, dict(alpha=[2.0] * len(probs))),
      Setting("normal_normal", "N(0, 1) – Normal(μ, σ² = 1),  μ* = 2",
              bayes.NormalNormal(mu0=0.0, tau2=1.0, sigma2=1.0), 2.0, 1,
              dict(mu0=0.0, tau2=1.0, sigma2=1.0)),
  ]


def _is_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A validated copy of ``config`` with ``bayes.sizes`` sorted and deduplicated.

  Raises:
    UserError: naming the config key, for a bad seed, size, trial or held-out count.
  """
  config = config.copy_and_resolve_references()
  if not _is_int(config.seed):
    raise UserError(f"--config.seed must be an integer, got {config.seed!r}.")
  sizes = config.bayes.sizes
  if not isinstance(sizes, (tuple, list)) or not sizes or not all(
      _is_int(n) and n > 0 for n in sizes):
    raise UserError(f"--config.bayes.sizes must be a non-empty tuple of positive integers, "
                    f"got {sizes!r}; e.g. --config.bayes.sizes='(1, 10, 100)'.")
  config.bayes.sizes = tuple(sorted({int(n) for n in sizes}))
  for name in ("trials", "heldout"):
    check_positive(config.bayes[name], f"config.bayes.{name}", integer=True)
  return config


def _posteriors(model, x_all: jax.Array, sizes) -> tuple:
  """The data-dependent part for every n: posterior, MLE and log evidence.

  Args:
    model: the prior (a vae_jax.classical.bayes model).
    x_all: [T, n_max] training streams; size n uses the first n points of each,
      so the training sets grow as nested prefixes.
    sizes: the training sizes.

  Returns:
    (posteriors, mle, log_evidence), each stacked over sizes: a model pytree
    with leaves [S, T, ...], [S, T(, K)] and [S, T].
  """
  posts, mles, log_evs = [], [], []
  for n in sizes:
    x = x_all[:, :n]
    posts.append(jax.vmap(model.posterior)(x))
    mles.append(jax.vmap(model.mle)(x))
    log_evs.append(jax.vmap(model.log_evidence)(x))
  stack = lambda *leaves: jnp.stack([jnp.asarray(l) for l in leaves])
  return jax.tree.map(stack, *posts), jnp.stack(mles), jnp.stack(log_evs)


def _evaluate(model, truth, post, mle: jax.Array, x_new: jax.Array) -> dict:
  """Per-trial metrics for one posterior p(theta | X), its MLE and held-out x_new: [M]."""
  err = post.mean() - truth
  theta_map = post.mode()  # model.map(x) is posterior(x).mode()
  return {
      "posterior_std": jnp.sqrt(jnp.sum(jnp.square(post.std()))),
      "abs_error": jnp.sqrt(jnp.sum(jnp.square(err))),
      "logloss_predictive": -jnp.mean(post.predictive_log_prob(x_new)),
      "logloss_map": -jnp.mean(model.plugin_log_prob(theta_map, x_new)),
      "logloss_mle": -jnp.mean(model.plugin_log_prob(mle, x_new)),
      "logloss_true": -jnp.mean(model.plugin_log_prob(truth, x_new)),
  }


@functools.partial(jax.jit, static_argnames=("sizes", "trials", "heldout"))
def _simulate(model, truth, key: jax.Array, *, sizes: tuple[int, ...], trials: int,
              heldout: int) -> dict:
  """All trials and sizes of one problem in one compiled function.

  Draws trials x (max(sizes) + heldout) points from p(x | truth): the first
  max(sizes) of each row are the training stream, the rest the held-out set
  (shared by all n of that trial, so curves over n are paired too).

  Returns:
    {metric: [S, T]} per size and trial.
  """
  n_max = max(sizes)
  data = model.sample(key, truth, (trials, n_max + heldout))
  x_all, x_new = data[:, :n_max], data[:, n_max:]
  posts, mles, log_evs = _posteriors(model, x_all, sizes)
  per_trial = jax.vmap(_evaluate, in_axes=(None, None, 0, 0, 0))
  per_size = jax.vmap(per_trial, in_axes=(None, None, 0, 0, None))
  metrics = per_size(model, truth, posts, mles, x_new)
  metrics["log_evidence_per_example"] = log_evs / jnp.asarray(sizes, log_evs.dtype)[:, None]
  return metrics


def _run_setting(setting: Setting, key: jax.Array, sizes, trials: int,
                 heldout: int) -> dict[int, dict]:
  """Returns {n: {metric: per-trial values [T]}} (NumPy) for one problem."""
  metrics = jax.device_get(_simulate(setting.model, jnp.asarray(setting.truth), key,
                                     sizes=tuple(sizes), trials=trials, heldout=heldout))
  return {n: {k: np.asarray(v[i]) for k, v in metrics.items()} for i, n in enumerate(sizes)}


def _aggregate(per_trial: dict) -> dict:
  """Means over trials (float64 on the host) plus the MLE infinities and the paired gap."""
  t = {k: np.asarray(v, np.float64) for k, v in per_trial.items()}
  trials = len(t["logloss_map"])
  row = {k: float(np.mean(v)) for k, v in t.items()}
  row["mle_inf_fraction"] = float(np.mean(np.isinf(t["logloss_mle"])))
  gap = t["logloss_map"] - t["logloss_predictive"]
  row["map_minus_predictive"] = float(np.mean(gap))
  row["map_minus_predictive_se"] = (float(np.std(gap, ddof=1) / np.sqrt(trials))
                                    if trials > 1 else float("nan"))
  return {k: row[k] for k in ROW_KEYS}


def _reference_sqrt(ax, sizes, anchor):
  """A dashed c / sqrt(n) guide through the last point."""
  sizes = np.asarray(sizes, np.float64)
  ax.plot(sizes, anchor * np.sqrt(sizes[-1] / sizes), ":", color="0.5", label="∝ 1/√n")


def save_bayes_figure(path: str, settings: list[Setting], table: dict, sizes,
                      entropies: dict, trials: int, heldout: int) -> str:
  """3 rows x one column per model: concentration, held-out log-loss, excess log-loss."""
  n = np.asarray(sizes, np.float64)
  fig, axes = plots.new_figure(3, len(settings), figsize=(5.2 * len(settings), 12.5),
                               squeeze=False)
  colors = dict(predictive="C0", map="C3", mle="C2")
  labels = dict(predictive="posterior predictive", map="MAP plug-in", mle="MLE plug-in")
  for j, s in enumerate(settings):
    rows = [table[s.name][str(k)] for k in sizes]
    col = lambda key: np.array([r[key] for r in rows], np.float64)  # pylint: disable=cell-var-from-loop
    inf_frac = col("mle_inf_fraction")
    mle_inf = inf_frac > 0
    mle_label = labels["mle"]
    if mle_inf.any():
      mle_label += f" (= ∞ in some trials for n ≤ {int(n[mle_inf].max())})"

    ax = axes[0, j]
    ax.loglog(n, col("posterior_std"), "o-", color="C0", label="posterior std")
    ax.loglog(n, col("abs_error"), "s--", color="C1", label="|E[θ|X] − θ*|", markersize=4)
    _reference_sqrt(ax, n, col("posterior_std")[-1])
    ax.set_title(s.label, fontsize=10)
    ax.set_xlabel("training size n")
    ax.set_ylabel("posterior concentration")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)

    ax = axes[1, j]
    for key in ("predictive", "map"):
      ax.semilogx(n, col(f"logloss_{key}"), "o-", color=colors[key], label=labels[key],
                  markersize=4)
    mle = np.where(mle_inf, np.nan, col("logloss_mle"))
    ax.semilogx(n, mle, "^-", color=colors["mle"], label=mle_label, markersize=4)
    ax.axhline(entropies[s.name], color="k", ls="--", lw=1, label="entropy H(p*)")
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi + 0.3 * (hi - lo))  # room for the legend above the curves
    ax.set_xlabel("training size n")
    ax.set_ylabel("held-out log-loss [nats / example]")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(True, which="both", alpha=0.3)

    ax = axes[2, j]
    for key in ("predictive", "map", "mle"):
      excess = col(f"logloss_{key}") - col("logloss_true")
      excess = np.where(np.isfinite(excess) & (excess > 0), excess, np.nan)
      ax.loglog(n, excess, "o-" if key != "mle" else "^-", color=colors[key],
                label=labels[key], markersize=4)
    ax.loglog(n, s.num_params / (2 * n), ":", color="0.5", label=f"d / 2n (d = {s.num_params})")
    ax.set_xlabel("training size n")
    ax.set_ylabel("excess log-loss over the true model [nats]")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
  fig.suptitle(f"Conjugate Bayes on simulated data (mean over {trials} trials, {heldout} "
               "held-out points each): the posterior concentrates as 1/√n; for small n the "
               "plug-ins are overconfident", fontsize=11)
  return plots.save(fig, path, dpi=100)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the conjugate-Bayes experiment and writes its outputs into ``workdir``.

  Args:
    config: ``experiments/configs/bayes.py``; reads ``seed``, ``bayes.sizes``
      (training sizes), ``bayes.trials`` (repetitions averaged over) and
      ``bayes.heldout`` (held-out examples per trial).
    workdir: output directory (created if needed).

  Returns:
    The summary written to ``summary.json`` (JSON types; +inf as "inf").

  Raises:
    UserError: a bad config value (the message names its key) or workdir.
  """
  config = _resolve(config)
  workdir = wd.prepare(workdir, config)
  wd.write_config(workdir, config)
  sizes = list(config.bayes.sizes)
  trials, heldout = int(config.bayes.trials), int(config.bayes.heldout)
  settings = default_settings()
  simulate = keys.stream(keys.root(config.seed), "simulate")
  writer = wd.MetricWriter(workdir)
  writer.truncate_after(-1)  # a rerun starts the metrics afresh

  start = time.time()
  table, models = {}, {}
  try:
    for i, s in enumerate(settings):
      entropy = float(s.model.entropy(s.truth))
      models[s.name] = dict(label=s.label, prior=s.prior, truth=np.asarray(s.truth).tolist(),
                            entropy=entropy, num_params=s.num_params)
      table[s.name] = {}
      per_size = _run_setting(s, jax.random.fold_in(simulate, i), sizes, trials, heldout)
      for n in sizes:
        row = _aggregate(per_size[n])
        table[s.name][str(n)] = row
        writer.write(n, "bayes", {"model": s.name, **row}, series=("model",))
      first = table[s.name][str(sizes[0])]
      logging.info("bayes %s: n=%d log-loss predictive %.4f, MAP %.4f, MLE %s", s.name,
                   sizes[0], first["logloss_predictive"], first["logloss_map"],
                   first["logloss_mle"])
  finally:
    writer.close()

  figure = save_bayes_figure(os.path.join(workdir, FIGURE_FILE), settings, table, sizes,
                             {k: v["entropy"] for k, v in models.items()}, trials, heldout)
  summary = wd.to_jsonable(dict(
      table=table, models=models, sizes=sizes, trials=trials, heldout=heldout,
      seed=config.seed, figure=os.path.basename(figure),
      notes=("Means over trials; log-losses in nats/example on held-out data, "
             "paired across estimators. +inf (MLE plug-in giving a held-out point "
             "probability 0) is stored as the string 'inf'; mle_inf_fraction is the "
             "fraction of trials where that happened.")))
  wd.write_summary(workdir, summary)
  logging.info("bayes: %d models x %d sizes x %d trials in %.1f s", len(settings),
               len(sizes), trials, time.time() - start)
  return summary
