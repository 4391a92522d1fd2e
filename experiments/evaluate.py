"""Evaluate a trained run: log-likelihood at K = 5000, latent diagnostics, figures.

``run(config, workdir)`` loads ``config.checkpoint`` (any workdir of a trained
VAE, discrete VAE or MADE), rebuilds its data from the run's own config, and
writes into ``workdir``:

* ``evaluation.json``:
  - ``nll`` with ``nll_stderr`` (over examples) and ``bits_per_dim``, in nats
    per example, and ``nll_method``: ``iwae`` (a VAE: the IWAE bound with
    ``iw_samples`` = K, Burda et al. 2015; also as ``nll_iw``, ``nll_iw_stderr``,
    ``bits_per_dim_iw``) or ``exact`` (MADE; the discrete VAE by enumeration);
  - the ELBO with ``recon`` and ``kl`` (the true ELBO, whatever the training
    objective), ``kl_per_dim`` (a list of L numbers) and ``active_units``
    (Cov_x(E_q[z_u]) > 0.01) for the VAE; all of the encoder's q;
  - for a semi-amortized VAE (the run's ``model.refine_steps`` > 0,
    ``vae_jax.inference.refinement``), the same bound with the refined q as
    the proposal (the run's refine_steps and refine_lr): ``nll_iw_refined``
    with ``nll_iw_refined_stderr`` and ``bits_per_dim_iw_refined``, the
    refined q's ``elbo_refined`` (the same draws as ``elbo``), and
    ``iw_gain_refined``, the mean of log p(x) refined - encoder's per example
    (paired), with ``iw_gain_refined_stderr``; ``refine_steps`` is 0 and these
    keys are absent otherwise;
  - ``num_examples``, ``iw_samples``, ``seconds`` and ``examples_per_s``;
* the run files every experiment writes (``vae_jax.training.workdir``): ``config.json``;
  ``summary.json``, the same numbers as evaluation.json; ``metrics.jsonl`` and
  ``tensorboard/``: one record of the numbers at the checkpoint's step, split
  ``config.split`` (tags ``eval/nll``, ``eval/elbo``, ...), and for a VAE with
  closed-form KLs one record per latent dimension, split ``kl_per_dim``, step
  the dimension (tag ``kl_per_dim/kl``);
* for a VAE, ``interpolations.png`` (decoder means along straight lines
  between the latent means of held-out pairs), ``kl_per_dim.png``,
  ``latent_space.png`` (latent means coloured by label, on their first two
  principal components when L > 2) and, when L = 2, ``manifold.png`` (decoder
  means over a grid of the prior's quantiles).

The evaluation is a pure function of the run and ``config.seed`` (the ``eval``
key stream). While the IWAE estimate runs, a progress line in the trainer's
format (``iwae 2000/10000 examples | 81.3 examples/s, ETA 0:01:38``) is logged
at every tenth of the examples and at least once a minute.
"""

from __future__ import annotations

import importlib
import os
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from experiments.vae import spread_rows
from vae_jax.training import checkpointing
from vae_jax import data as data_lib
from vae_jax.inference import evaluation
from vae_jax.inference import iwae
from vae_jax import keys
from vae_jax import models
from vae_jax.inference import objectives
from vae_jax.inference import refinement as refinement_lib
from vae_jax import plots
from vae_jax import tasks
from vae_jax.training import workdir as wd
from vae_jax.training.progress import CountMeter
from vae_jax.errors import UserError, check_choice, check_positive

SPLITS = ("eval", "train")
ESTIMATES = ("auto", "iwae", "exact")
RESULT_FILE = "evaluation.json"


def validate(config) -> None:
  """The evaluation's own settings; UserError names the key."""
  if not config.checkpoint:
    raise UserError("--config.checkpoint is required: the workdir of the run to evaluate.")
  for name in ("iw_samples", "chunk_size", "batch_size", "elbo_samples"):
    if config[name] is not None or name != "chunk_size":
      check_positive(config[name], f"config.{name}", integer=True)
  check_choice(config.split, SPLITS, "config.split")
  check_choice(config.estimate, ESTIMATES, "config.estimate")
  check_positive(config.max_examples, "config.max_examples", integer=True, minimum=0,
                 meaning="0: all")


def config_file_defaults(experiment: str):
  """The defaults of experiments/configs/<experiment>.py (no variant), which fill
  the keys a run was written before (a ConfigDict); None for an experiment without
  a config file."""
  try:
    module = importlib.import_module(f"experiments.configs.{experiment}")
  except ImportError:
    return None
  return module.get_config()


def load_run(config):
  """(model, state, run config) of ``config.checkpoint``; UserError if it is no run."""
  path = config.checkpoint
  if not os.path.isdir(path):
    raise UserError(f"--config.checkpoint={path} is not a directory.")
  if not checkpointing.available_steps(path) or not os.path.exists(
      os.path.join(path, wd.DATA_SPEC_FILE)):
    raise UserError(f"--config.checkpoint={path} is not a training run: it needs "
                    f"{wd.CONFIG_FILE}, {wd.DATA_SPEC_FILE} and checkpoints/.")
  saved = tasks.read_run_config(path)
  return tasks.load_checkpoint(path, config.step,
                               defaults=config_file_defaults(saved.get("experiment")))


def split_data(config, run_config, eval_key: jax.Array) -> tuple[data_lib.Dataset, np.ndarray,
                                                                 np.ndarray]:
  """(dataset, x [N, D], labels [N]) of ``config.split`` as the run saw it.

  The eval split is binarized as in training. A dynamically binarized run's
  training split is binarized once here, from the evaluation's key.
  """
  ds = tasks.load_data(run_config)
  if config.split == "eval":
    x, y = ds.eval_x, ds.eval_y
  else:
    x, y = ds.train_x, ds.train_y
    if run_config.data.binarize == "dynamic":
      x = data_lib.binarize_array(x, keys.numpy_seed(jax.random.fold_in(eval_key, 1)))
  if config.max_examples:
    x, y = x[:config.max_examples], y[:config.max_examples]
  return ds, x, y


def _batched(fn, x: np.ndarray, batch_size: int, key: jax.Array) -> dict:
  """Per-example outputs of a jitted ``fn(xb, key)`` over padded batches."""
  parts = []
  for j, (xb, mb) in enumerate(data_lib.eval_batches(x, min(batch_size, len(x)))):
    out = jax.device_get(fn(xb, jax.random.fold_in(key, j)))
    parts.append({k: np.asarray(v)[mb > 0] for k, v in out.items()})
  return {k: np.concatenate([p[k] for p in parts]).astype(np.float64) for k in parts[0]}


def progress_logger(total: int):
  """A ``progress(examples_done)`` callback that logs the trainer's kind of line
  (count, rate, ETA) when its ``CountMeter`` says one is due."""
  meter = CountMeter(total)

  def progress(done: int) -> None:
    if meter.update(done):
      logging.info("iwae %d/%d examples | %.1f examples/s, ETA %s", done, total,
                   meter.per_s(), meter.eta())
  return progress


def write_run_files(workdir: str, result: dict) -> None:
  """summary.json (the result), and metrics.jsonl and TensorBoard: one record of the
  numbers at the checkpoint's step, split ``result["split"]``, and the KL of each
  latent dimension (split ``kl_per_dim``, step the dimension)."""
  wd.write_summary(workdir, result)
  writer = wd.MetricWriter(workdir)
  writer.truncate_after(-1)            # a rerun starts the metrics afresh
  try:
    writer.write(result["step"], result["split"],
                 {k: v for k, v in result.items() if not isinstance(v, (list, dict))})
    for u, kl in enumerate(result.get("kl_per_dim") or ()):
      writer.write(u, "kl_per_dim", {"kl": kl})
  finally:
    writer.close()


def evaluate_vae(config, module, model, params, x, key, run_config) -> dict:
  """IWAE-K log p(x) (the model's ``log_likelihood``), the ELBO, KL per dimension and
  active units of a VAE; for a semi-amortized one, the same with its refined q."""
  if config.estimate == "exact":
    raise UserError("a VAE's log p(x) has no closed form; use --config.estimate=iwae "
                    "(or auto).")
  log_px = module.log_likelihood(params, x, jax.random.fold_in(key, 0), model=model,
                                 num_samples=int(config.iw_samples),
                                 chunk_size=config.chunk_size,
                                 batch_size=int(config.batch_size),
                                 progress=progress_logger(len(x)))
  elbo_fn = jax.jit(lambda xb, k: objectives.elbo(params, xb, k, model=model,
                                                  num_samples=int(config.elbo_samples))[1])
  terms = _batched(elbo_fn, x, 500, jax.random.fold_in(key, 1))
  means, kl_dims = evaluation.encoder_statistics(params, x, model=model,
                                                 key=jax.random.fold_in(key, 2))
  active = evaluation.active_units(means)
  nll, nll_se = evaluation.mean_and_stderr(-log_px)
  refinement = refinement_lib.from_config(run_config.model)
  refined = {"refine_steps": 0}
  if refinement is not None:
    log_px_ref = module.log_likelihood(params, x, jax.random.fold_in(key, 3), model=model,
                                       num_samples=int(config.iw_samples),
                                       chunk_size=config.chunk_size,
                                       batch_size=int(config.batch_size),
                                       progress=progress_logger(len(x)),
                                       refinement=refinement)

    def refined_elbo(xb, k):   # the encoder's ELBO's draws (k), refined from fold_in(k, 1)
      q, _ = refinement_lib.refined_posterior(params, xb, jax.random.fold_in(k, 1),
                                              model=model, refinement=refinement)
      return objectives.elbo(params, xb, k, model=model, num_samples=int(config.elbo_samples),
                             q=q)[1]

    terms_ref = _batched(jax.jit(refined_elbo), x, 500, jax.random.fold_in(key, 1))
    nll_ref, nll_ref_se = evaluation.mean_and_stderr(-log_px_ref)
    gain, gain_se = evaluation.mean_and_stderr(log_px_ref - log_px)
    refined = {"refine_steps": refinement.steps, "nll_iw_refined": nll_ref,
               "nll_iw_refined_stderr": nll_ref_se, "elbo_refined":
               float(terms_ref["elbo"].mean()), "iw_gain_refined": gain,
               "iw_gain_refined_stderr": gain_se}
  return {"nll_method": "iwae", "nll": nll, "nll_stderr": nll_se, **refined,
          "nll_iw": nll, "nll_iw_stderr": nll_se,
          "elbo": float(terms["elbo"].mean()), "recon": float(terms["recon"].mean()),
          "kl": float(terms["kl"].mean()),
          # Closed-form per-dimension KLs exist for a Gaussian q and p = N(0, I) only.
          "kl_per_dim": None if kl_dims is None else kl_dims.mean(0).tolist(),
          "active_units": int(active.sum()), "latent_dim": int(means.shape[1]),
          # Two stochastic layers: active units of z1 and of z2 (Burda et al.'s "a+b").
          "active_units_per_layer": ([int(active[:model.decoder_dim].sum()),
                                      int(active[model.decoder_dim:].sum())]
                                     if getattr(model, "decoder_dim", 0) else None),
          "iw_samples": int(config.iw_samples),
          "chunk_size": config.chunk_size or iwae.default_chunk_size(int(config.batch_size)),
          "_means": means, "_active": active}


def evaluate_exact(config, module, model, params, x) -> dict:
  """The exact NLL of a model whose ``NLL_METHOD`` is exact (MADE, the discrete VAE)."""
  if config.estimate == "iwae":
    raise UserError(f"the IWAE estimate is for VAEs with a continuous z; a {module.NAME} run "
                    f"has an exact log-likelihood: use --config.estimate=exact (or auto).")
  log_px = module.log_likelihood(params, x, model=model)
  nll, nll_se = evaluation.mean_and_stderr(-log_px)
  result = {"nll_method": "exact", "nll": nll, "nll_stderr": nll_se}
  if hasattr(module, "exact_elbo_per_example"):
    result["elbo"] = float(module.exact_elbo_per_example(params, x, model=model).mean())
  return result


def save_vae_figures(workdir: str, model, params, x, labels, means, active, kl_per_dim,
                     image_shape) -> None:
  """interpolations.png, kl_per_dim.png, latent_space.png and (L = 2) manifold.png."""
  decode_mean = jax.jit(lambda z: objectives.decoder_mean(
      model.apply(params, z, method="decode")))
  # Interpolations: 8 pairs of held-out examples spread over the split.
  ends = spread_rows(np.arange(len(x)), 16)
  pairs = [(ends[i], ends[-1 - i]) for i in range(min(8, len(ends) // 2))]
  t = np.linspace(0.0, 1.0, 10)[:, None]
  z = np.concatenate([(1 - t) * means[a] + t * means[b] for a, b in pairs])
  plots.save_image_grid(os.path.join(workdir, "interpolations.png"),
                        np.asarray(decode_mean(jnp.asarray(z, jnp.float32))), image_shape,
                        title="decoder means along straight lines between latent means "
                              "of held-out pairs")
  latent = means.shape[1]
  if kl_per_dim is not None:
    fig, ax = plots.new_figure(figsize=(max(6, latent * 0.12), 3.5))
    order = np.argsort(kl_per_dim)[::-1]
    # A log axis: inactive units' KLs are 1e-4 nats or less, active ones 1 to 10.
    ax.bar(range(latent), np.maximum(np.asarray(kl_per_dim)[order], 1e-6),
           color=["C0" if a else "C7" for a in active[order]])
    ax.set_yscale("log")
    ax.set_xlabel("latent dimension (sorted by KL)")
    ax.set_ylabel("KL(q(z_l|x) || N(0, 1)), nats (log)")
    ax.set_title(f"KL per dimension; blue: {int(active.sum())} active units "
                 f"(Cov_x E_q[z_u] > 0.01)", fontsize=9)
    plots.save(fig, os.path.join(workdir, "kl_per_dim.png"))
  # Latent means coloured by label, on their first two principal components if L > 2.
  if latent > 2:
    centred = means - means.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    coords, axis = centred @ vt[:2].T, "principal component"
  else:
    coords, axis = means if latent == 2 else np.c_[means, np.zeros(len(means))], "z"
  fig, ax = plots.new_figure(figsize=(6, 5))
  scatter = ax.scatter(coords[:, 0], coords[:, 1], c=labels, cmap="tab10", s=6)
  if labels.min() >= 0:
    fig.colorbar(scatter, ax=ax, label="label")
  ax.set_xlabel(f"{axis} 1")
  ax.set_ylabel(f"{axis} 2")
  ax.set_title("E_q[z|x] of the evaluated examples", fontsize=9)
  plots.save(fig, os.path.join(workdir, "latent_space.png"))
  if latent == 2:
    q = stats.norm.ppf(np.linspace(0.05, 0.95, 15))
    grid = np.array([[a, b] for b in q[::-1] for a in q], np.float32)
    plots.save_image_grid(os.path.join(workdir, "manifold.png"),
                          np.asarray(decode_mean(jnp.asarray(grid))), image_shape, ncols=15,
                          title="decoder means over the prior's 5%-95% quantiles")


def run(config, workdir: str) -> dict:
  """Evaluates ``config.checkpoint`` (see the module doc); returns evaluation.json."""
  validate(config)
  if os.path.abspath(workdir) == os.path.abspath(config.checkpoint):
    raise UserError("--workdir must differ from --config.checkpoint (the run's own files).")
  model, state, run_config = load_run(config)
  workdir = wd.prepare(workdir, config)
  eval_key = keys.stream(keys.root(config.seed), "eval")
  ds, x, labels = split_data(config, run_config, eval_key)
  wd.write_config(workdir, config)
  params = jax.device_get(state.params)
  t0 = time.perf_counter()
  module = models.get(run_config)       # the registry: one module per model
  if module.NLL_METHOD == "iwae":
    result = evaluate_vae(config, module, model, params, x, eval_key, run_config)
  else:
    result = evaluate_exact(config, module, model, params, x)
  seconds = time.perf_counter() - t0
  result["bits_per_dim"] = float(objectives.bits_per_dim(result["nll"], ds.num_dims))
  if result["nll_method"] == "iwae":
    result["bits_per_dim_iw"] = result["bits_per_dim"]
  if "nll_iw_refined" in result:
    result["bits_per_dim_iw_refined"] = float(objectives.bits_per_dim(result["nll_iw_refined"],
                                                                      ds.num_dims))
  means, active = result.pop("_means", None), result.pop("_active", None)
  result.update(checkpoint=os.path.abspath(config.checkpoint), step=int(state.step),
                model=run_config.model.name, dataset=ds.name, split=config.split,
                num_examples=int(len(x)), seconds=seconds, examples_per_s=len(x) / seconds,
                device=jax.devices()[0].platform)
  wd.write_json(os.path.join(workdir, RESULT_FILE), result)
  write_run_files(workdir, result)
  if means is not None:
    save_vae_figures(workdir, model, params, x, labels, means, active, result["kl_per_dim"],
                     ds.image_shape)
  logging.info("%s: nll %.3f ± %.3f nats (%s), %d examples, %.1f s", config.checkpoint,
               result["nll"], result["nll_stderr"], result["nll_method"], len(x), seconds)
  return result
