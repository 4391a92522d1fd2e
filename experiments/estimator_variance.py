"""The lecture's claim, measured: gradient variance of every estimator vs S and step.

One VAE is trained with the reparametrized ELBO through ``vae_jax.training.trainer`` in
``WORKDIR/vae``, stopping (checkpointed) at each of ``variance.steps``. At each
stop, on one fixed held-out batch, every estimator's encoder gradient is drawn
R = ``variance.draws`` times and its total variance (trace of the covariance)
and mean SNR are recorded, for S = ``variance.num_samples[0]`` and, at the last
stop, for every S.

Beside that VAE's posterior family (``model.posterior``), each family of
``variance.posteriors`` (e.g. ``coupling``, a flow with log q at any z; flows
with ``variance.flow_steps`` maps) gets a VAE of its own, the same in every
other setting, trained in ``WORKDIR/vae_<family>`` and measured the same way,
on the same batch and draws: the lecture's comparison of estimators on a
posterior that is not a Gaussian.

summary.json: ``variance`` {estimator: total variance at the last step, first
S}, ``variance_ratio`` {S: score / reparam}, ``variance_by_num_samples``,
``variance_by_step``, all of ``model.posterior``'s VAE; ``families`` {family:
the same keys (and ``flow_steps``)} for it and every family of
``variance.posteriors`` (a total variance sums over that family's encoder
parameters, a flow's layers included: compare estimators within a family).
metrics.jsonl: split ``variance``, one line per (step, estimator, S), with
``posterior`` on the lines of ``variance.posteriors``' families; TensorBoard:
one tag per series, ``variance/total_variance/ESTIMATOR/num_samples_S`` (and
``mean_snr``, ``mean_norm``;
``variance/total_variance/FAMILY/ESTIMATOR/num_samples_S`` for the other
families); figures ``estimator_variance.png`` (``model.posterior``'s VAE) and,
with other families, ``estimator_variance_families.png`` (every family's
variance per estimator at the last step).
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

from experiments import vae
from vae_jax.training import checkpointing
from vae_jax.families.posteriors import REGISTRY as POSTERIORS
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


def save_families_plot(path: str, families: dict, ref_samples: int) -> str:
  """Each family's total variance per estimator at the last step (S = ref), log scale."""
  names = list(next(iter(families.values()))["variance"])
  fig, ax = plots.new_figure(figsize=(2.0 + 1.1 * len(names), 4.2))
  width = 0.8 / len(families)
  for i, (f, fam) in enumerate(families.items()):
    xs = np.arange(len(names)) + (i - (len(families) - 1) / 2) * width
    ax.bar(xs, [fam["variance"][n] for n in names], width, color=f"C{i}", label=f)
  ax.set_yscale("log")
  ax.set_xticks(np.arange(len(names)), names, fontsize=9)
  ax.set_ylabel("total variance of the encoder gradient")
  ax.set_title(f"each posterior family's VAE at its last step, S = {ref_samples} (a sum over "
               "that encoder's own parameters:\ncompare estimators within a family)",
               fontsize=10)
  ax.grid(alpha=0.3, axis="y", which="both")
  ax.legend(fontsize=9)
  return plots.save(fig, path)


def family_config(config, posterior: str):
  """The run's config with q of family ``posterior`` (its keys from ``config.variance``)."""
  return vae.with_posterior(config, posterior, config.variance)


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
  others = tuple(v.posteriors)
  if len(set(others)) != len(others) or config.model.posterior in others:
    raise UserError(f"--config.variance.posteriors must name distinct families other than "
                    f"--config.model.posterior={config.model.posterior!r} (measured "
                    f"anyway), got {others!r}.")
  unknown = [f for f in others if f not in POSTERIORS]
  if unknown:
    raise UserError(f"--config.variance.posteriors: {', '.join(map(repr, unknown))} not a "
                    f"posterior family; choose from {', '.join(POSTERIORS.names())}.")
  if others:
    check_positive(v.flow_steps, "config.variance.flow_steps", integer=True)
  return names, counts, steps, int(v.draws)


def _check_model_allows(config, names: list[str], sample_counts: list[int],
                        where: str = "--config.variance.estimators") -> None:
  """Each measured estimator against the VAE it measures, by the VAE's own validation
  (e.g. the score function needs log q at any z, which the planar and IAF flows lack)."""
  for name in names:
    trial = copy.deepcopy(config)
    trial.objective.update(estimator=name, num_samples=max(sample_counts), free_bits=0.0,
                           kl_warmup_steps=0)
    try:
      vae_model.validate(trial)
    except UserError as e:
      raise UserError(f"{where}: {e}") from None


def _measured(workdir: str) -> dict:
  """{(posterior, step, estimator, S): stats} already in ``metrics.jsonl`` (a resumed
  run); posterior None for ``model.posterior``'s VAE (its lines carry no family)."""
  if not os.path.exists(os.path.join(workdir, wd.METRICS_FILE)):
    return {}
  return {(r.get("posterior"), r["step"], r["estimator"], r["num_samples"]):
          {k: r[k] for k in ("total_variance", "mean_snr", "mean_norm")}
          for r in wd.read_metrics(workdir) if r["split"] == "variance"}


def _measure_stops(task, train_config, ds, vae_dir: str, x, stream, *, names, sample_counts,
                   steps, draws, measured, writer, family: str | None):
  """Trains one VAE in ``vae_dir`` stop by stop and measures it (module doc):
  (by_step {step: {estimator: stats}} at S = sample_counts[0], by_samples {S: ...} at
  the last step). ``family``: None for ``model.posterior``'s VAE, else the family
  its metrics lines name."""
  done = checkpointing.available_steps(vae_dir)
  tag = {} if family is None else {"posterior": family}
  series = ("estimator", "num_samples") if family is None else (
      "posterior", "estimator", "num_samples")
  ref_s = sample_counts[0]
  by_step, by_samples = {}, {}
  for target in steps:
    counts = sample_counts if target == steps[-1] else [ref_s]
    if done and target < done[-1]:
      if not all((family, target, n, s) in measured for n in names for s in counts):
        raise UserError(f"{vae_dir} holds a VAE trained to step {done[-1]}, past the "
                        f"measurement at step {target}, which metrics.jsonl lacks; use a "
                        f"new --workdir.")
      params = None
    else:
      train_config.train.num_steps = target
      params = jax.device_get(trainer.train(task, train_config, ds, vae_dir).state.params)
    for s in counts:
      key = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(stream, 1), target), s)
      result = ({n: measured[(family, target, n, s)] for n in names} if params is None else
                measure_variances(task.model, params, x, key, names, s, draws))
      for name, stats in result.items():
        writer.write(target, "variance", {**tag, "estimator": name, "num_samples": s, **stats},
                     series=series)
      if s == ref_s:
        by_step[target] = result
      if target == steps[-1]:
        by_samples[s] = result
    logging.info("%sstep %d: %s", f"{family}: " if family else "", target,
                 {n: f"{v['total_variance']:.3g}" for n, v in by_step[target].items()})
  return by_step, by_samples


def _variances(names, by_step, by_samples, ref_s) -> dict:
  """The summary's variance keys of one VAE's measurements."""
  final = by_samples[ref_s]
  out = {"variance": {n: final[n]["total_variance"] for n in names},
         "snr": {n: final[n]["mean_snr"] for n in names},
         "variance_by_num_samples": {str(s): v for s, v in by_samples.items()},
         "variance_by_step": {str(t): v for t, v in by_step.items()}}
  if "score" in names and "reparam" in names:
    ratio = lambda v: v["score"]["total_variance"] / v["reparam"]["total_variance"]
    out["variance_ratio"] = {str(s): ratio(v) for s, v in by_samples.items()}
    out["variance_ratio_by_step"] = {str(t): ratio(v) for t, v in by_step.items()}
  return out


def run(config, workdir: str) -> dict:
  """Gradient variance of every estimator vs S and vs training step (see module doc).

  Resumable: the VAEs' checkpoints are in ``WORKDIR/vae`` (and
  ``WORKDIR/vae_<family>``); a stop that lies before its newest checkpoint is
  taken from ``metrics.jsonl`` (the earlier parameters are not kept), so a
  killed run re-run gives the same numbers.
  """
  names, sample_counts, steps, draws = validate(config)
  # model.posterior's VAE first (WORKDIR/vae), then one per family of variance.posteriors.
  family_configs = {None: config}
  for f in config.variance.posteriors:
    family_configs[f] = family_config(config, f)
  train_configs = {}
  for f, fc in family_configs.items():
    train_config = copy.deepcopy(fc)
    train_config.objective.estimator = "reparam"
    train_config.objective.num_samples = 1
    train_config.eval.iw_samples = 0          # the stops need no IWAE estimate
    vae_model.validate(train_config)
    _check_model_allows(fc, names, sample_counts, "--config.variance.estimators" if f is None
                        else f"--config.variance.posteriors: {f}")
    train_configs[f] = train_config
  wd.prepare(workdir, config)
  ds = tasks.load_data(config)
  vae_model.validate_data(ds, config)
  batch_size = int(config.train.batch_size)
  if batch_size > len(ds.eval_x):
    raise UserError(f"--config.train.batch_size={batch_size} is larger than the held-out "
                    f"split ({len(ds.eval_x)} examples) the measurements draw one fixed "
                    f"batch from; lower it.")
  wd.write_config(workdir, config)
  stream = keys.stream(keys.root(config.seed), "variance")
  # One fixed held-out batch for every measurement.
  rng = np.random.default_rng(keys.numpy_seed(jax.random.fold_in(stream, 0)))
  x = jnp.asarray(ds.eval_x[rng.choice(len(ds.eval_x), batch_size, replace=False)])
  measured = _measured(workdir)
  writer = wd.MetricWriter(workdir)
  writer.truncate_after(-1)
  ref_s = sample_counts[0]
  t0 = time.perf_counter()
  measurements = {}
  for f, train_config in train_configs.items():
    task = vae_model.build(train_config, ds.image_shape, len(ds.train_x))
    vae_dir = os.path.join(workdir, "vae" if f is None else f"vae_{f}")
    measurements[f] = _measure_stops(
        task, train_config, ds, vae_dir, x, stream, names=names, sample_counts=sample_counts,
        steps=steps, draws=draws, measured=measured, writer=writer, family=f)
  writer.close()
  by_step, by_samples = measurements[None]
  families = {config.model.posterior if f is None else f: {
      "flow_steps": train_configs[f].model.flow_steps,
      **_variances(names, *measurements[f], ref_s)} for f in train_configs}
  summary = {
      "experiment": "estimator_variance", "dataset": ds.name, "batch_size": int(x.shape[0]),
      "num_samples": ref_s, "num_draws": draws, "step": steps[-1],
      "objective": {n: estimators.ESTIMATORS[n].objective.name for n in names},
      **_variances(names, by_step, by_samples, ref_s),
      "families": families,
      "seconds": time.perf_counter() - t0,
  }
  save_variance_plot(os.path.join(workdir, "estimator_variance.png"), by_samples, by_step,
                     ref_s)
  if len(families) > 1:
    save_families_plot(os.path.join(workdir, "estimator_variance_families.png"), families,
                       ref_s)
  wd.write_summary(workdir, summary)
  return summary
