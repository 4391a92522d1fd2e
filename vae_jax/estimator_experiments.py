"""Runner experiments on gradient estimators and amortization.

``run_estimator_variance``: the lecture's claim, measured. One VAE (the
runner's model and data flags) is trained with the reparametrized ELBO; at
several training steps, on one fixed batch, every estimator's encoder
gradient is drawn R times for several sample counts S, and the total
variance (trace of the gradient covariance) and mean SNR are recorded.

``run_amortization``: trains (or resumes) a VAE in ``workdir/vae`` with the
ordinary training loop, then on held-out examples compares the amortized
ELBO, the per-example optimized ELBO and an importance-weighted log p(x)
(Cremer et al., 2018).
"""

from __future__ import annotations

import functools
import os
import time

from absl import logging
import jax
import jax.numpy as jnp
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np

from vae_jax import amortization  # pylint: disable=g-import-not-at-top,wrong-import-position
from vae_jax import data as data_lib
from vae_jax import estimators
from vae_jax import train
from vae_jax import workdir as wd
from vae_jax.errors import UserError, check_positive

ESTIMATOR_DEFAULTS = dict(
    variance_estimators="reparam,score,score_baseline,score_loo,stl,iwae,vimco,dreg",
    variance_num_samples="2,8,32", variance_steps="0,200,1000,3000", variance_draws=64,
    amortization_examples=200, amortization_local_steps=1000,
    amortization_local_lr=1e-2, amortization_eval_samples=1000,
    num_importance_samples=1000)


def _int_list(value, name: str) -> list[int]:
  try:
    out = [int(v) for v in str(value).split(",") if v.strip()]
  except ValueError:
    raise UserError(f"--{name} must be comma-separated integers, got {value!r}.") from None
  if not out or any(v < 0 for v in out):
    raise UserError(f"--{name} must be a non-empty list of integers >= 0, got {value!r}.")
  return out


def _resolve(config: dict) -> dict:
  config = {**train.DEFAULT_CONFIG, **ESTIMATOR_DEFAULTS,
            **{k: v for k, v in config.items() if v is not None or k == "data_dir"}}
  return config


# ----------------------------------------------------------------------------
# Estimator variance.
# ----------------------------------------------------------------------------


def _measurement_state(name: str, loss_fn, state0, params, x, key):
  """Estimator state for a measurement: the running-mean baseline is set to an
  independent estimate of the mean learning signal (what training would hold)."""
  if name != "score_baseline":
    return state0
  _, (aux, _) = loss_fn(params, x, key, state0)
  return {"baseline": jnp.mean(aux["recon"]).astype(jnp.float32),
          "count": jnp.ones((), jnp.int32)}


@functools.lru_cache(maxsize=None)
def _stats_fn(model, name: str, num_samples: int, num_draws: int):
  """Jitted (params, x, key) -> encoder-gradient statistics of one estimator (cached)."""
  loss_fn, state0 = estimators.make_vae_loss(model, name, num_samples)

  @jax.jit
  def fn(params, x, key):
    state = _measurement_state(name, loss_fn, state0, params, x, jax.random.fold_in(key, 99))
    return estimators.gradient_statistics(
        estimators.encoder_grad_fn(loss_fn, params, x, state), key, num_draws)

  return fn


def measure_variances(model, params, x, key, names, num_samples, num_draws) -> dict:
  """{estimator: {"total_variance", "mean_snr", "mean_norm"}} of the encoder gradient.

  Every estimator sees the same parameters, batch x: [B, D], S and R draws.
  """
  out = {}
  for name in names:
    stats = _stats_fn(model, name, num_samples, num_draws)(params, x, key)
    out[name] = {"total_variance": float(stats["total_variance"]),
                 "mean_snr": float(stats["mean_snr"]),
                 "mean_norm": float(stats["mean_norm"])}
  return out


def save_variance_plot(path: str, by_samples: dict, by_step: dict, ref_samples: int) -> str:
  """Log-scale variance vs S (at the last step) and vs training step (at S = ref)."""
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
  names = list(next(iter(by_samples.values())))
  for i, name in enumerate(names):
    style = "--" if estimators.ESTIMATORS[name] == "iwae" else "-"
    s_vals = sorted(by_samples)
    ax1.plot(s_vals, [by_samples[s][name]["total_variance"] for s in s_vals], style,
             marker="o", color=f"C{i}", label=name)
    steps = sorted(by_step)
    ax2.plot(steps, [by_step[t][name]["total_variance"] for t in steps], style,
             marker="o", color=f"C{i}", label=name)
  ax1.set_xscale("log", base=2)
  for ax in (ax1, ax2):
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.set_ylabel("total variance of the encoder gradient")
  ax1.set_xlabel("samples S per example")
  ax1.set_title("at the final step (solid: ELBO gradient; dashed: S-sample IWAE bound)",
                fontsize=9)
  ax2.set_xlabel("training step (reparametrized VAE)")
  ax2.set_title(f"during training, S = {ref_samples}", fontsize=9)
  ax2.legend(fontsize=8, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def run_estimator_variance(config: dict, workdir: str) -> dict:
  """Gradient variance of every estimator vs S and vs training step (see module doc).

  summary.json: ``variance`` {estimator: total encoder-gradient variance at
  the final step with S = num_samples (the first of --variance_num_samples)},
  ``variance_ratio`` {S: score / reparam}, ``variance_by_num_samples``
  {S: {estimator: stats}}, ``variance_by_step`` {step: {estimator: stats}}.
  """
  config = _resolve(config)
  train.validate_config({**config, "estimator": "reparam"})
  names = [n.strip() for n in str(config["variance_estimators"]).split(",") if n.strip()]
  unknown = [n for n in names if n not in estimators.ESTIMATORS]
  if unknown or not names:
    raise UserError(f"--variance_estimators: unknown {unknown}; choose from "
                    f"{', '.join(estimators.ESTIMATORS)}.")
  sample_counts = _int_list(config["variance_num_samples"], "variance_num_samples")
  if min(sample_counts) < 1:
    raise UserError("--variance_num_samples must be >= 1.")
  if min(sample_counts) < 2 and ({"score_loo", "vimco"} & set(names)):
    raise UserError("score_loo and vimco need S >= 2: drop 1 from --variance_num_samples.")
  steps = sorted(set(_int_list(config["variance_steps"], "variance_steps")))
  check_positive(config["variance_draws"], "variance_draws", integer=True)
  draws = int(config["variance_draws"])
  if draws < 2:
    raise UserError("--variance_draws must be >= 2.")

  os.makedirs(workdir, exist_ok=True)
  wd.write_config(workdir, config)
  ds = data_lib.load_arrays(config["dataset"], config["data_dir"],
                            binarize=config["binarize"], seed=int(config["seed"]))
  train.validate_data(ds, config)
  model = train.build_model(config, ds.image_shape)
  loss_fn, est0 = train.make_loss_fn(model, {**config, "estimator": "reparam",
                                             "num_samples": 1})
  tx = train.make_optimizer(float(config["learning_rate"]))
  root = jax.random.key(int(config["seed"]))
  state = train.create_train_state(root, model, tx, ds.num_dims, est0)
  step_fn = jax.jit(functools.partial(train.train_step, loss_fn=loss_fn, tx=tx,
                                      e_steps=1, m_steps=1), donate_argnums=0)
  stream = data_lib.BatchStream(ds.train_x, int(config["batch_size"]), int(config["seed"]),
                                dynamic_binarize=config["binarize"] == "dynamic")
  # One fixed batch for every measurement (binarized once if dynamic).
  rng = np.random.default_rng(int(config["seed"]) + 1)
  batch = ds.eval_x[rng.choice(len(ds.eval_x), int(config["batch_size"]), replace=False)]
  x = jnp.asarray(batch)
  writer = wd.MetricWriter(workdir)
  writer.truncate_after(-1)
  ref_s = sample_counts[0]
  by_step, by_samples = {}, {}
  t0 = time.perf_counter()
  measure_key = jax.random.key(int(config["seed"]) + 12345)
  for target in steps:
    while int(state.step) < target:
      state, metrics = step_fn(state, jnp.asarray(next(stream)))
    at = int(state.step)
    counts = sample_counts if target == steps[-1] else [ref_s]
    for s in counts:
      result = measure_variances(model, state.params, x, jax.random.fold_in(measure_key, s),
                                 names, s, draws)
      for name, stats in result.items():
        writer.write(at, "variance", {"estimator": name, "num_samples": s, **stats})
      if s == ref_s:
        by_step[at] = result
      if target == steps[-1]:
        by_samples[s] = result
    logging.info("step %d: %s", at, {n: f"{v['total_variance']:.3g}"
                                      for n, v in by_step[at].items()})
  final = by_samples[ref_s]
  summary = {
      "experiment": "estimator_variance", "dataset": ds.name, "batch_size": int(x.shape[0]),
      "num_samples": ref_s, "num_draws": draws, "step": steps[-1],
      "objective": {n: estimators.ESTIMATORS[n] for n in names},
      "variance": {n: final[n]["total_variance"] for n in names},
      "snr": {n: final[n]["mean_snr"] for n in names},
      "variance_by_num_samples": {str(s): v for s, v in by_samples.items()},
      "variance_by_step": {str(t): v for t, v in by_step.items()},
      "seconds": time.perf_counter() - t0,
  }
  if "score" in names and "reparam" in names:
    summary["variance_ratio"] = {
        str(s): v["score"]["total_variance"] / v["reparam"]["total_variance"]
        for s, v in by_samples.items()}
    summary["variance_ratio_by_step"] = {
        str(t): v["score"]["total_variance"] / v["reparam"]["total_variance"]
        for t, v in by_step.items()}
  save_variance_plot(os.path.join(workdir, "estimator_variance.png"), by_samples, by_step,
                     ref_s)
  wd.write_summary(workdir, summary)
  return summary


# ----------------------------------------------------------------------------
# Amortization gaps.
# ----------------------------------------------------------------------------


def save_gap_plot(path: str, gaps: dict, trace) -> str:
  """Per-example bars of the three quantities and the local optimization curve."""
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
  keys = ["amortized_elbo", "optimized_elbo", "log_likelihood_iw"]
  per_example = [np.asarray(gaps[k], np.float64) for k in keys]
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
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def run_amortization(config: dict, workdir: str) -> dict:
  """Amortization and approximation gaps of a trained VAE on held-out examples.

  The VAE is trained (or resumed) by ``train.train_and_evaluate`` in
  ``workdir/vae`` with the runner's model flags; then the first
  --amortization_examples held-out examples get a per-example q* optimized
  for --amortization_local_steps Adam steps from the encoder's output.

  summary.json (averages over the examples, nats): ``amortized_elbo``,
  ``optimized_elbo``, ``log_likelihood_iw`` (with ``num_importance_samples``),
  ``amortization_gap`` = optimized - amortized, ``approximation_gap`` =
  log_likelihood_iw - optimized, plus their standard errors.
  """
  config = _resolve(config)
  for name in ("amortization_examples", "amortization_local_steps",
               "amortization_eval_samples", "num_importance_samples"):
    check_positive(config[name], name, integer=True)
  check_positive(config["amortization_local_lr"], "amortization_local_lr")
  if int(config["num_importance_samples"]) % min(100, int(config["num_importance_samples"])):
    raise UserError("--num_importance_samples must be below 100 or a multiple of 100.")
  if int(config["amortization_eval_samples"]) % min(100, int(config["amortization_eval_samples"])):
    raise UserError("--amortization_eval_samples must be below 100 or a multiple of 100.")
  os.makedirs(workdir, exist_ok=True)
  wd.write_config(workdir, config)
  vae_dir = os.path.join(workdir, "vae")
  vae_config = {k: v for k, v in config.items() if k in train.DEFAULT_CONFIG}
  train_summary = train.train_and_evaluate({**vae_config, "experiment": "vae"}, vae_dir)
  model, state, _ = train.load_checkpoint(vae_dir)
  ds = data_lib.load_arrays(config["dataset"], config["data_dir"],
                            binarize=config["binarize"], seed=int(config["seed"]))
  n = min(int(config["amortization_examples"]), len(ds.eval_x))
  x = jnp.asarray(ds.eval_x[:n])
  t0 = time.perf_counter()
  result = amortization.gaps(
      state.params, x, jax.random.key(int(config["seed"]) + 2018), model=model,
      local_steps=int(config["amortization_local_steps"]),
      local_learning_rate=float(config["amortization_local_lr"]),
      eval_samples=int(config["amortization_eval_samples"]),
      iw_samples=int(config["num_importance_samples"]))
  keys = ("amortized_elbo", "optimized_elbo", "log_likelihood_iw", "amortization_gap",
          "approximation_gap")
  summary = {"experiment": "amortization", "dataset": ds.name, "num_examples": n,
             "num_importance_samples": int(config["num_importance_samples"]),
             "local_steps": int(config["amortization_local_steps"]),
             "vae_step": int(state.step), "vae_eval_neg_elbo": train_summary["eval_neg_elbo"],
             "seconds": time.perf_counter() - t0}
  for k in keys:
    v = np.asarray(result[k], np.float64)
    summary[k] = float(v.mean())
    summary[f"{k}_stderr"] = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None
  summary["inference_gap"] = summary["log_likelihood_iw"] - summary["amortized_elbo"]
  writer = wd.MetricWriter(workdir)
  writer.truncate_after(-1)
  trace = np.asarray(result["trace"])
  for t in range(0, len(trace), max(1, len(trace) // 100)):
    writer.write(t, "local_opt", {"elbo": float(trace[t])})
  save_gap_plot(os.path.join(workdir, "amortization_gaps.png"), result, trace)
  wd.write_summary(workdir, summary)
  logging.info("amortization gap %.3f, approximation gap %.3f nats",
               summary["amortization_gap"], summary["approximation_gap"])
  return summary
