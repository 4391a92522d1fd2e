"""The lecture's claim, measured: gradient variance of every estimator vs S and step.

One VAE is trained with the reparametrized ELBO through ``vae_jax.training.trainer`` in
``WORKDIR/vae``, stopping (checkpointed) at each of ``variance.steps``. At each
stop, on one fixed held-out batch, every estimator's encoder gradient is drawn
R = ``variance.draws`` times and its total variance (trace of the covariance)
and mean SNR are recorded, for S = ``variance.num_samples[0]`` and, at the last
stop, for every S.

summary.json: ``variance`` {estimator: total variance at the last step, first
S}, ``variance_ratio`` {S: score / reparam}, ``variance_by_num_samples``,
``variance_by_step``; metrics.jsonl: split ``variance``, one line per
(step, estimator, S); TensorBoard: one tag per series,
``variance/total_variance/ESTIMATOR/num_samples_S`` (and ``mean_snr``,
``mean_norm``); figure ``estimator_variance.png``.
"""

from __future__ import annotations

import copy
import functools
import os
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from vae_jax.training import checkpointing
from vae_jax.inference import estimators
from vae_jax.inference import gradients
from vae_jax import keys
from vae_jax import plots
from vae_jax import tasks
from vae_jax.models import vae as vae_model
from vae_jax.training import trainer
from vae_jax.training import workdir as wd
from vae_jax.errors import UserError, check_positive


def _measurement_state(loss_fn, state0, params, x, key):
  """Estimator state for a measurement: a running-mean baseline is set to an
  independent estimate of the mean learning signal (what training would hold)."""
  if "baseline" not in state0:
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
    state = _measurement_state(loss_fn, state0, params, x, jax.random.fold_in(key, 1))
    return gradients.gradient_statistics(
        gradients.encoder_grad_fn(loss_fn, params, x, state), jax.random.fold_in(key, 0),
        num_draws)

  return fn


def measure_variances(model, params, x, key, names, num_samples, num_draws) -> dict:
  """{estimator: {"total_variance", "mean_snr", "mean_norm"}} of the encoder gradient.

  Every estimator sees the same parameters, batch x: [B, D], S and R draws.
  """
  out = {}
  for name in names:
    stats = _stats_fn(model, name, num_samples, num_draws)(params, x, key)
    out[name] = {k: float(stats[k]) for k in ("total_variance", "mean_snr", "mean_norm")}
  return out


def save_variance_plot(path: str, by_samples: dict, by_step: dict, ref_samples: int) -> str:
  """Log-scale variance vs S (at the last step) and vs training step (at S = ref)."""
  fig, (ax1, ax2) = plots.new_figure(1, 2, figsize=(12, 4.5))
  names = list(next(iter(by_samples.values())))
  for i, name in enumerate(names):
    style = "--" if estimators.ESTIMATORS[name].objective == estimators.IWAE else "-"
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
  # One legend for both panels, below them: inside, it covered the score
  # estimator's line, which runs along the top.
  columns = min(len(names), 4)
  rows = -(-len(names) // columns)
  fig.legend(*ax2.get_legend_handles_labels(), loc="lower center", ncol=columns,
             fontsize=9, frameon=False)
  fig.tight_layout(rect=(0, 0.01 + 0.05 * rows, 1, 1))
  return plots.save(fig, path, tight=False)


def validate(config) -> tuple[list[str], list[int], list[int], int]:
  """(estimators, sample counts, steps, draws) of ``config.variance``."""
  v = config.variance
  names = list(v.estimators)
  unknown = [n for n in names if n not in estimators.ESTIMATORS]
  if unknown or not names:
    raise UserError(f"--config.variance.estimators: unknown {unknown}; choose from "
                    f"{', '.join(estimators.ESTIMATORS)}.")
  counts = [int(s) for s in v.num_samples]
  if not counts or min(counts) < 1:
    raise UserError(f"--config.variance.num_samples must be a non-empty tuple of "
                    f"integers >= 1, got {tuple(v.num_samples)}.")
  needing = [n for n in names if estimators.ESTIMATORS[n].min_samples > min(counts)]
  if needing:
    least = max(estimators.ESTIMATORS[n].min_samples for n in needing)
    raise UserError(f"{', '.join(needing)} need S >= {least}: raise the smallest of "
                    f"--config.variance.num_samples={tuple(v.num_samples)}.")
  steps = sorted({int(t) for t in v.steps})
  if not steps or steps[0] < 0:
    raise UserError(f"--config.variance.steps must be a non-empty tuple of integers "
                    f">= 0, got {tuple(v.steps)}.")
  check_positive(v.draws, "config.variance.draws", integer=True, minimum=2)
  return names, counts, steps, int(v.draws)


def _check_model_allows(config, names: list[str], sample_counts: list[int]) -> None:
  """Each measured estimator against the VAE it measures, by the VAE's own validation
  (e.g. the score function needs log q at any z, which a flow posterior lacks)."""
  for name in names:
    trial = copy.deepcopy(config)
    trial.objective.update(estimator=name, num_samples=max(sample_counts), free_bits=0.0,
                           kl_warmup_steps=0)
    try:
      vae_model.validate(trial)
    except UserError as e:
      raise UserError(f"--config.variance.estimators: {e}") from None


def _measured(workdir: str) -> dict:
  """{(step, estimator, S): stats} already in ``metrics.jsonl`` (a resumed run)."""
  if not os.path.exists(os.path.join(workdir, wd.METRICS_FILE)):
    return {}
  return {(r["step"], r["estimator"], r["num_samples"]):
          {k: r[k] for k in ("total_variance", "mean_snr", "mean_norm")}
          for r in wd.read_metrics(workdir) if r["split"] == "variance"}


def run(config, workdir: str) -> dict:
  """Gradient variance of every estimator vs S and vs training step (see module doc).

  Resumable: the VAE's checkpoints are in ``WORKDIR/vae``; a stop that lies
  before its newest checkpoint is taken from ``metrics.jsonl`` (the earlier
  parameters are not kept), so a killed run re-run gives the same numbers.
  """
  names, sample_counts, steps, draws = validate(config)
  train_config = copy.deepcopy(config)
  train_config.objective.estimator = "reparam"
  train_config.objective.num_samples = 1
  train_config.eval.iw_samples = 0          # the stops need no IWAE estimate
  vae_model.validate(train_config)
  _check_model_allows(config, names, sample_counts)
  wd.prepare(workdir, config)
  ds = tasks.load_data(config)
  vae_model.validate_data(ds, config)
  batch_size = int(config.train.batch_size)
  if batch_size > len(ds.eval_x):
    raise UserError(f"--config.train.batch_size={batch_size} is larger than the held-out "
                    f"split ({len(ds.eval_x)} examples) the measurements draw one fixed "
                    f"batch from; lower it.")
  wd.write_config(workdir, config)
  task = vae_model.build(train_config, ds.image_shape, len(ds.train_x))
  stream = keys.stream(keys.root(config.seed), "variance")
  # One fixed held-out batch for every measurement.
  rng = np.random.default_rng(keys.numpy_seed(jax.random.fold_in(stream, 0)))
  x = jnp.asarray(ds.eval_x[rng.choice(len(ds.eval_x), batch_size, replace=False)])
  vae_dir = os.path.join(workdir, "vae")
  done = checkpointing.available_steps(vae_dir)
  measured = _measured(workdir)
  writer = wd.MetricWriter(workdir)
  writer.truncate_after(-1)
  ref_s = sample_counts[0]
  by_step, by_samples = {}, {}
  t0 = time.perf_counter()
  for target in steps:
    counts = sample_counts if target == steps[-1] else [ref_s]
    if done and target < done[-1]:
      if not all((target, n, s) in measured for n in names for s in counts):
        raise UserError(f"{vae_dir} holds a VAE trained to step {done[-1]}, past the "
                        f"measurement at step {target}, which metrics.jsonl lacks; use a "
                        f"new --workdir.")
      params = None
    else:
      train_config.train.num_steps = target
      params = jax.device_get(trainer.train(task, train_config, ds, vae_dir).state.params)
    for s in counts:
      key = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(stream, 1), target), s)
      result = ({n: measured[(target, n, s)] for n in names} if params is None else
                measure_variances(task.model, params, x, key, names, s, draws))
      for name, stats in result.items():
        writer.write(target, "variance", {"estimator": name, "num_samples": s, **stats},
                     series=("estimator", "num_samples"))
      if s == ref_s:
        by_step[target] = result
      if target == steps[-1]:
        by_samples[s] = result
    logging.info("step %d: %s", target, {n: f"{v['total_variance']:.3g}"
                                         for n, v in by_step[target].items()})
  writer.close()
  final = by_samples[ref_s]
  summary = {
      "experiment": "estimator_variance", "dataset": ds.name, "batch_size": int(x.shape[0]),
      "num_samples": ref_s, "num_draws": draws, "step": steps[-1],
      "objective": {n: estimators.ESTIMATORS[n].objective.name for n in names},
      "variance": {n: final[n]["total_variance"] for n in names},
      "snr": {n: final[n]["mean_snr"] for n in names},
      "variance_by_num_samples": {str(s): v for s, v in by_samples.items()},
      "variance_by_step": {str(t): v for t, v in by_step.items()},
      "seconds": time.perf_counter() - t0,
  }
  if "score" in names and "reparam" in names:
    ratio = lambda v: v["score"]["total_variance"] / v["reparam"]["total_variance"]
    summary["variance_ratio"] = {str(s): ratio(v) for s, v in by_samples.items()}
    summary["variance_ratio_by_step"] = {str(t): ratio(v) for t, v in by_step.items()}
  save_variance_plot(os.path.join(workdir, "estimator_variance.png"), by_samples, by_step,
                     ref_s)
  wd.write_summary(workdir, summary)
  return summary
