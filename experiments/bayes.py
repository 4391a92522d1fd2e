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

Then a model is chosen by its evidence: the fair coin H0 (theta = 1/2, no
free parameter) against Beta-Bernoulli H1 (theta ~ Beta(a, b),
``config.bayes.factor_prior``), by the Bayes factor
log BF_01 = log p(X | H0) - log p(X | H1) (``evidence.log_bayes_factor``), for
``config.bayes.trials`` streams of each true coin of
``config.bayes.factor_truths`` at every n (in float64). Per (truth, n): its
mean, standard error and 10/50/90% quantiles over trials, the fraction of
trials that favour H0 (BF_01 > 1), and two references computed with SciPy
only: the exact expectation, sum_k Binomial(k | n, theta*) log BF_01(k), and
the Laplace approximation -n KL(theta* || 1/2) + log(n / (2 pi theta*(1 - theta*)))/2
- log p_H1(theta*) - 1/2. Each trial's first stream is also integrated
numerically (``scipy.integrate.quad``), and the largest difference from the
closed form is recorded.

Outputs in the workdir: ``config.json``, ``metrics.jsonl`` and
``tensorboard/`` (one record per (model, n), step = n, split "bayes"; one
TensorBoard tag per model and metric, ``bayes/logloss_map/normal_normal``;
one per (truth, n), split "bayes_factor"),
``summary.json`` ({"table": {model: {str(n): row}}, "models": {model: prior,
truth, entropy}, "bayes_factor": {...}, ...}), ``bayes.png`` and
``bayes_factor.png``. Deterministic given ``config.seed``: model i's data
come from ``fold_in(keys.stream(root, "simulate"), i)``, the Bayes factor's
coin j's from ``fold_in(simulate, 3 + j)`` (numbered after the three models).

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
from vae_jax.classical import evidence
from vae_jax import keys
from vae_jax import plots
from vae_jax.training import workdir as wd
from vae_jax.errors import UserError, check_positive

FIGURE_FILE = "bayes.png"
FACTOR_FIGURE_FILE = "bayes_factor.png"
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


def _is_probability(value) -> bool:
  return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
          and 0 < value < 1)


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
  truths = config.bayes.factor_truths
  if not isinstance(truths, (tuple, list)) or not all(_is_probability(t) for t in truths):
    raise UserError(f"--config.bayes.factor_truths must be a tuple of coin biases in (0, 1) "
                    f"(() for none), got {truths!r}; e.g. "
                    f"--config.bayes.factor_truths='(0.5, 0.6)'.")
  prior = config.bayes.factor_prior
  if not isinstance(prior, (tuple, list)) or len(prior) != 2:
    raise UserError(f"--config.bayes.factor_prior must be a pair (a, b) of Beta prior "
                    f"pseudo-counts, got {prior!r}; e.g. --config.bayes.factor_prior='(1.0, 1.0)'.")
  for value in prior:
    check_positive(value, "config.bayes.factor_prior", meaning="Beta pseudo-counts a, b")
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


# ----------------------------------------------------------------------------
# The fair coin against Beta-Bernoulli: the Bayes factor as n grows.
# ----------------------------------------------------------------------------

NULL_THETA = 0.5   # H0: the fair coin


@functools.partial(jax.jit, static_argnames=("sizes", "trials"))
def _simulate_bayes_factor(model, truth, key: jax.Array, *, sizes: tuple[int, ...],
                           trials: int) -> tuple[jax.Array, jax.Array]:
  """log BF_01 of the fair coin against ``model`` for trials x sizes nested prefixes.

  Returns:
    (log_bf [S, T], ones [S, T]): the Bayes factor and the number of ones k.
  """
  x_all = model.sample(key, truth, (trials, max(sizes)))
  log_bf, ones = [], []
  for n in sizes:
    x = x_all[:, :n]
    log_bf.append(jax.vmap(lambda xs: evidence.log_bayes_factor(model, NULL_THETA, xs))(x))
    ones.append(jnp.sum(x, axis=1))
  return jnp.stack(log_bf), jnp.stack(ones)


def _log_bf_reference(n: int, k, a: float, b: float):
  """SciPy's log BF_01 for k ones in n flips: n log(1/2) - log B(a + k, b + n - k) + log B(a, b)."""
  from scipy import special  # pylint: disable=g-import-not-at-top
  k = np.asarray(k, np.float64)
  return n * np.log(NULL_THETA) - special.betaln(a + k, b + n - k) + special.betaln(a, b)


def expected_log_bayes_factor(n: int, truth: float, a: float, b: float) -> float:
  """E[log BF_01] when the flips come from theta* = truth: a sum over k ~ Binomial(n, theta*)."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  k = np.arange(n + 1)
  return float(stats.binom(n, truth).pmf(k) @ _log_bf_reference(n, k, a, b))


def laplace_log_bayes_factor(n, truth: float, a: float, b: float):
  """E[log BF_01] by Laplace's method, to O(1/n): -n KL(theta* || 1/2)
  + log(n / (2 pi theta*(1 - theta*)))/2 - log Beta(theta* | a, b) - 1/2 (the -1/2: the
  expected fitted log-likelihood ratio, chi^2_1 / 2)."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  n = np.asarray(n, np.float64)
  t = truth
  kl = t * np.log(t / NULL_THETA) + (1 - t) * np.log((1 - t) / (1 - NULL_THETA))
  return (-n * kl + 0.5 * np.log(n / (2 * np.pi * t * (1 - t)))
          - stats.beta(a, b).logpdf(t) - 0.5)


def quadrature_log_evidence(k: int, n: int, a: float, b: float) -> float:
  """log int theta^k (1 - theta)^(n - k) Beta(theta | a, b) d theta by ``scipy.integrate.quad``.

  The integrand is scaled by its value at the posterior mode (it underflows for
  large n otherwise), and quad is told where the peak is.
  """
  from scipy import integrate, stats  # pylint: disable=g-import-not-at-top
  from scipy.special import xlog1py, xlogy  # pylint: disable=g-import-not-at-top
  prior = stats.beta(a, b)
  log_f = lambda t: xlogy(k, t) + xlog1py(n - k, -t) + prior.logpdf(t)
  mode = min(max((k + a - 1) / (n + a + b - 2), 1e-12), 1 - 1e-12) if n + a + b > 2 else 0.5
  peak = log_f(mode)
  value, _ = integrate.quad(lambda t: np.exp(log_f(t) - peak), 0.0, 1.0, points=[mode],
                            epsabs=0.0, epsrel=1e-12, limit=200)
  return float(peak + np.log(value))


def run_bayes_factor(coin_keys, truths, prior, sizes, trials: int) -> dict:
  """The Bayes-factor experiment: per true coin and n, summaries over trials and references.

  Args:
    coin_keys: one key per true coin, for its flips.
    truths: the true coin biases theta*.
    prior: (a, b) of H1's Beta prior.
    sizes: the n (nested prefixes of each trial's stream).
    trials: streams per coin.

  Returns:
    {"null_theta", "prior", "truths": {str(theta*): {"kl_to_null", "rows":
    {str(n): row}}}, "quadrature_max_abs_diff", "quadrature_checks"}.
  """
  a, b = (float(v) for v in prior)
  model = bayes.BetaBernoulli(a=a, b=b)
  out, quad_diffs = {}, []
  with jax.enable_x64(True):   # log BF_01 is O(n): float32 would blur it at n ~ 1e3
    for coin_key, truth in zip(coin_keys, truths):
      log_bf, ones = jax.device_get(_simulate_bayes_factor(
          model, jnp.asarray(truth, jnp.float64), coin_key, sizes=tuple(sizes), trials=trials))
      rows = {}
      for i, n in enumerate(sizes):
        v = np.asarray(log_bf[i], np.float64)
        k0 = int(ones[i][0])
        quad = n * np.log(NULL_THETA) - quadrature_log_evidence(k0, n, a, b)
        quad_diffs.append(abs(float(v[0]) - quad))
        q10, q50, q90 = np.quantile(v, (0.1, 0.5, 0.9))
        rows[str(n)] = dict(
            mean_log_bf=float(np.mean(v)),
            se_log_bf=float(np.std(v, ddof=1) / np.sqrt(trials)) if trials > 1 else float("nan"),
            q10_log_bf=float(q10), median_log_bf=float(q50), q90_log_bf=float(q90),
            favours_null=float(np.mean(v > 0)),
            exact_expected_log_bf=expected_log_bayes_factor(n, truth, a, b),
            laplace_log_bf=float(laplace_log_bayes_factor(n, truth, a, b)),
            max_abs_diff_vs_scipy=float(np.max(np.abs(
                v - _log_bf_reference(n, ones[i], a, b)))))
      kl = truth * np.log(truth / NULL_THETA) + (1 - truth) * np.log((1 - truth) / NULL_THETA)
      out[str(truth)] = {"kl_to_null": float(kl), "rows": rows}
  return {"null_theta": NULL_THETA, "prior": {"a": a, "b": b}, "truths": out,
          "quadrature_checks": len(quad_diffs),
          "quadrature_max_abs_diff": float(max(quad_diffs)) if quad_diffs else None}


def save_bayes_factor_figure(path: str, result: dict, sizes, trials: int) -> str:
  """log BF_01 against n for each true coin, and the fraction of trials favouring the fair coin."""
  n = np.asarray(sizes, np.float64)
  fine = np.geomspace(n[0], n[-1], 200)
  a, b = result["prior"]["a"], result["prior"]["b"]
  fig, axes = plots.new_figure(1, 2, figsize=(13, 4.6))
  for j, (truth, entry) in enumerate(result["truths"].items()):
    rows = [entry["rows"][str(k)] for k in sizes]
    col = lambda key: np.array([r[key] for r in rows])  # pylint: disable=cell-var-from-loop
    color = f"C{j}"
    label = f"θ* = {truth}" + (" (H0 true)" if float(truth) == NULL_THETA else "")
    ax = axes[0]
    ax.fill_between(n, col("q10_log_bf"), col("q90_log_bf"), color=color, alpha=0.15)
    ax.errorbar(n, col("mean_log_bf"), yerr=2 * col("se_log_bf"), fmt="o", color=color, ms=4,
                capsize=2, label=f"{label}: mean over trials ± 2 s.e. (band: 10–90%)")
    ax.plot(n, col("exact_expected_log_bf"), "-", color=color, lw=1,
            label="exact expectation (binomial sum, SciPy)")
    ax.plot(fine, laplace_log_bayes_factor(fine, float(truth), a, b), ":", color=color, lw=1.5,
            label="Laplace: −n KL(θ*‖½) + ½ log n + const")
    axes[1].semilogx(n, col("favours_null"), "o-", color=color, ms=4, label=label)
  ax = axes[0]
  ax.set_xscale("log")
  ax.axhline(0.0, color="k", lw=0.7)
  ax.set_xlabel("number of flips n")
  ax.set_ylabel("log BF₀₁ = log p(X | fair) − log p(X | Beta–Bernoulli)")
  ax.set_title(f"Fair coin vs Beta({a:g}, {b:g})–Bernoulli: > 0 favours the fair coin",
               fontsize=10)
  ax.legend(fontsize=7, loc="lower left")
  ax.grid(alpha=0.3, which="both")
  ax = axes[1]
  ax.axhline(0.5, color="0.5", lw=0.7, ls=":")
  ax.set_ylim(-0.03, 1.03)
  ax.set_xlabel("number of flips n")
  ax.set_ylabel("fraction of trials with BF₀₁ > 1")
  ax.set_title("How often the evidence prefers the fair coin", fontsize=10)
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3, which="both")
  fig.suptitle(f"Choosing a model by its evidence ({trials} simulated streams per coin; "
               f"closed form vs quadrature: max |diff| {result['quadrature_max_abs_diff']:.1e} "
               "nats)", fontsize=10)
  return plots.save(fig, path)


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
    truths = tuple(float(t) for t in config.bayes.factor_truths)
    bayes_factor = None
    if truths:
      coin_keys = [jax.random.fold_in(simulate, len(settings) + j) for j in range(len(truths))]
      bayes_factor = run_bayes_factor(coin_keys, truths, config.bayes.factor_prior, sizes, trials)
      for truth, entry in bayes_factor["truths"].items():
        for n in sizes:
          writer.write(n, "bayes_factor", {"truth": f"theta_{truth}", **entry["rows"][str(n)]},
                       series=("truth",))
        last = entry["rows"][str(sizes[-1])]
        logging.info("bayes factor, theta* = %s: mean log BF_01 %.3f at n = %d (exact %.3f), "
                     "%.0f%% of trials favour the fair coin", truth, last["mean_log_bf"],
                     sizes[-1], last["exact_expected_log_bf"], 100 * last["favours_null"])
  finally:
    writer.close()

  if bayes_factor is not None:
    save_bayes_factor_figure(os.path.join(workdir, FACTOR_FIGURE_FILE), bayes_factor, sizes,
                             trials)
  figure = save_bayes_figure(os.path.join(workdir, FIGURE_FILE), settings, table, sizes,
                             {k: v["entropy"] for k, v in models.items()}, trials, heldout)
  summary = wd.to_jsonable(dict(
      table=table, models=models, sizes=sizes, trials=trials, heldout=heldout,
      seed=config.seed, figure=os.path.basename(figure),
      **({} if bayes_factor is None else dict(bayes_factor=bayes_factor)),
      notes=("Means over trials; log-losses in nats/example on held-out data, "
             "paired across estimators. +inf (MLE plug-in giving a held-out point "
             "probability 0) is stored as the string 'inf'; mle_inf_fraction is the "
             "fraction of trials where that happened.")))
  wd.write_summary(workdir, summary)
  logging.info("bayes: %d models x %d sizes x %d trials in %.1f s", len(settings),
               len(sizes), trials, time.time() - start)
  return summary
