"""Training and evaluation of the VAE: one jitted train step, one jitted eval step.

``train_and_evaluate(config, workdir)`` is what ``python -m experiments.main``
calls for ``--experiment=vae``. It writes into ``workdir``:

* ``config.json``, ``metrics.jsonl``, ``summary.json`` (see ``vae_jax.workdir``),
* ``samples.png`` (decoder means for z ~ N(0, I)), ``reconstructions.png``,
  ``training_curves.png``,
* ``checkpoints/<step>/`` orbax checkpoints of the full train state.

Determinism: the batch at step t, its dynamic binarization and the key of the
ELBO's noise are pure functions of (seed, t): the per-step key is
``fold_in(key, t)``. Restoring params, optimizer state, step and key therefore
reproduces an uninterrupted run bit for bit.

Variational EM (the lecture's E-step on phi, M-step on theta): the encoder and
decoder have separate optimizer states. With ``e_steps = m_steps = 1`` (the
default) both are updated at every step (joint training); otherwise each
cycle makes ``e_steps`` updates of the encoder only, then ``m_steps`` of the
decoder only.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any, Callable

from absl import logging
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from vae_jax import checkpointing
from vae_jax import data as data_lib
from vae_jax import estimators
from vae_jax import models
from vae_jax import objectives
from vae_jax import plots
from vae_jax import workdir as wd
from vae_jax.errors import UserError, check_positive

# Config keys that change the model or the data: a workdir whose saved config
# differs in one of these cannot be resumed with the new flags.
MODEL_DATA_KEYS = ("dataset", "data_dir", "binarize", "model", "likelihood",
                   "gaussian_scale", "latent_dim", "hidden_dims", "batch_size",
                   "seed", "estimator", "num_samples", "e_steps", "m_steps",
                   "baseline_decay")

DEFAULT_CONFIG = dict(
    experiment="vae", dataset="mnist_5k", data_dir=None, binarize="dynamic",
    model="mlp", likelihood="bernoulli", gaussian_scale="shared",
    latent_dim=50, hidden_dims="200,200", batch_size=100, num_steps=5000,
    learning_rate=1e-3, seed=0, num_samples=1, estimator="reparam",
    e_steps=1, m_steps=1, eval_every=1000, checkpoint_every=1000,
    log_every=100, eval_batch_size=500, eval_iw_samples=100,
    grad_stats_every=0, grad_stats_draws=16, baseline_decay=0.9)


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs (a pytree of arrays).

  Attributes:
    step: [] int32, number of updates done.
    params: VAE parameters {"params": {"encoder": phi, "decoder": theta}}.
    opt_state: (encoder optimizer state, decoder optimizer state).
    est_state: estimator state (e.g. a running-mean baseline); {} for reparam.
    key: [2] uint32 base key data; step t uses fold_in(key, t).
  """
  step: jax.Array
  params: Any
  opt_state: Any
  est_state: Any
  key: jax.Array


def parse_hidden_dims(value) -> tuple[int, ...]:
  """'200,200' -> (200, 200); '' -> () (a linear encoder/decoder)."""
  if isinstance(value, (list, tuple)):
    dims = tuple(int(v) for v in value)
  else:
    text = str(value or "").strip()
    try:
      dims = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
      raise UserError(f"--hidden_dims must be comma-separated integers like "
                      f"200,200, got {value!r}.") from None
  if any(d <= 0 for d in dims):
    raise UserError(f"--hidden_dims must be positive, got {value!r}.")
  return dims


def validate_config(config: dict) -> None:
  """Checks user-settable values; raises UserError with the fix."""
  for name in ("batch_size", "num_steps", "latent_dim", "num_samples",
               "eval_every", "checkpoint_every", "log_every", "eval_batch_size"):
    check_positive(config[name], name, integer=True)
  check_positive(config["learning_rate"], "learning_rate")
  for name in ("e_steps", "m_steps"):
    check_positive(config[name], name, integer=True)
  if config["likelihood"] not in models.LIKELIHOODS:
    raise UserError(f"--likelihood must be one of {', '.join(models.LIKELIHOODS)}, "
                    f"got {config['likelihood']!r}.")
  if config["gaussian_scale"] not in models.GAUSSIAN_SCALES:
    raise UserError(f"--gaussian_scale must be one of "
                    f"{', '.join(models.GAUSSIAN_SCALES)}, got {config['gaussian_scale']!r}.")
  if config["model"] not in ("mlp", "conv"):
    raise UserError(f"--model must be mlp or conv, got {config['model']!r}.")
  parse_hidden_dims(config["hidden_dims"])
  validate_grad_stats(config)
  estimators.check_vae_estimator(config["estimator"], config["num_samples"])
  estimators.check_baseline_decay(config["baseline_decay"])


def validate_grad_stats(config: dict) -> None:
  """--grad_stats_every >= 0, and >= 2 draws when it is on."""
  if int(config["grad_stats_every"]) < 0:
    raise UserError(f"--grad_stats_every must be >= 0, got {config['grad_stats_every']}.")
  if int(config["grad_stats_every"]) > 0 and int(config["grad_stats_draws"]) < 2:
    raise UserError(f"--grad_stats_draws must be >= 2, got {config['grad_stats_draws']}.")


def validate_data(ds: data_lib.Dataset, config: dict) -> None:
  """Refuses data the chosen likelihood cannot model."""
  data_lib.check_pixels(
      ds, "--likelihood=bernoulli" if config["likelihood"] == "bernoulli" else None,
      "rescale it or use --likelihood=gaussian")
  if config["model"] == "conv" and (ds.image_shape[0] % 4 or ds.image_shape[1] % 4):
    raise UserError(f"--model=conv needs image sides divisible by 4; {ds.name} "
                    f"images are {ds.image_shape}. Use --model=mlp.")


def build_model(config: dict, image_shape) -> models.VAE:
  return models.make_vae(
      model=config["model"], image_shape=image_shape,
      latent_dim=int(config["latent_dim"]),
      hidden_dims=parse_hidden_dims(config["hidden_dims"]),
      likelihood=config["likelihood"], gaussian_scale=config["gaussian_scale"])


def make_loss_fn(model, config: dict):
  """(loss_fn, est_state0): loss_fn(params, x, key, est_state) ->
  (loss, (aux, new_est_state)), its encoder gradient given by --estimator."""
  return estimators.make_vae_loss(
      model, config.get("estimator", "reparam"), int(config.get("num_samples", 1)),
      baseline_decay=float(config.get("baseline_decay", 0.9)))


def make_optimizer(learning_rate: float) -> optax.GradientTransformation:
  return optax.adam(learning_rate)


def create_train_state(key: jax.Array, model, tx: optax.GradientTransformation,
                       input_dim: int, est_state: Any) -> TrainState:
  """Initializes parameters and the two optimizer states (phi, theta)."""
  init_key, run_key = jax.random.split(key)
  params = model.init(init_key, jnp.zeros((1, input_dim), jnp.float32))
  enc, dec = params["params"]["encoder"], params["params"]["decoder"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=(tx.init(enc), tx.init(dec)),
                    est_state=est_state,
                    key=jax.random.key_data(run_key))


def _select(pred, new, old):
  return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), new, old)


def train_step(state: TrainState, x: jax.Array, *, loss_fn: Callable,
               tx: optax.GradientTransformation, e_steps: int,
               m_steps: int, dataset_size: int | None = None) -> tuple[TrainState, dict]:
  """One gradient step on the negative ELBO (jit with loss_fn/tx/e/m static).

  Args:
    state: the train state (donated).
    x: [B, D] batch.

  Returns:
    (new_state, metrics) with scalar metrics: loss, elbo, recon, kl,
    grad_norm, param_norm, finite (1.0 if the update was applied). A
    non-finite loss or gradient leaves the state unchanged (finite = 0).
  """
  key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
  (loss, (aux, est_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params, x, key, state.est_state)
  g_enc = grads["params"]["encoder"]
  g_dec = grads["params"]["decoder"]
  p_enc = state.params["params"]["encoder"]
  p_dec = state.params["params"]["decoder"]
  u_enc, o_enc = tx.update(g_enc, state.opt_state[0], p_enc)
  u_dec, o_dec = tx.update(g_dec, state.opt_state[1], p_dec)
  new_enc, new_dec = optax.apply_updates(p_enc, u_enc), optax.apply_updates(p_dec, u_dec)

  if e_steps == 1 and m_steps == 1:
    do_e = do_m = jnp.array(True)
  else:  # variational EM: e_steps updates of phi, then m_steps of theta.
    pos = state.step % (e_steps + m_steps)
    do_e, do_m = pos < e_steps, pos >= e_steps
  grad_norm = optax.global_norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  do_e, do_m = do_e & finite, do_m & finite

  params = {**state.params, "params": {
      **state.params["params"],
      "encoder": _select(do_e, new_enc, p_enc),
      "decoder": _select(do_m, new_dec, p_dec)}}
  new_state = state.replace(
      step=state.step + 1, params=params,
      opt_state=(_select(do_e, o_enc, state.opt_state[0]),
                 _select(do_m, o_dec, state.opt_state[1])),
      est_state=_select(finite, est_state, state.est_state))
  metrics = {"loss": loss, "elbo": jnp.mean(aux["elbo"]),
             "recon": jnp.mean(aux["recon"]), "kl": jnp.mean(aux["kl"]),
             "grad_norm": grad_norm,
             "grad_norm_encoder": optax.global_norm(g_enc),
             "grad_norm_decoder": optax.global_norm(g_dec),
             "param_norm": optax.global_norm(params),
             "finite": finite.astype(jnp.float32)}
  if dataset_size is not None:
    metrics["elbo_full_data"] = objectives.full_data_elbo_estimate(aux["elbo"], dataset_size)
  return new_state, metrics


def grad_stats_step(params: Any, x: jax.Array, est_state: Any, key: jax.Array, *,
                    loss_fn: Callable, num_draws: int) -> dict:
  """Variance and SNR of the encoder and decoder gradients on one batch x: [B, D].

  ``num_draws`` independent draws of the whole training gradient (same batch,
  parameters and estimator state; one ``estimators.gradient_statistics``
  call), reduced per half: ``grad_var_*`` (trace of the covariance),
  ``grad_snr_*`` (mean |mean| / std over parameters) and ``grad_mean_norm_*``.
  """
  grad_fn = lambda k: jax.grad(lambda p: loss_fn(p, x, k, est_state)[0])(params)["params"]
  stats = estimators.gradient_statistics(grad_fn, key, num_draws)
  out = {}
  for half in ("encoder", "decoder"):
    scalars = estimators.summarize(*(stats[k][half] for k in ("mean", "variance", "snr")))
    out[f"grad_var_{half}"] = scalars["total_variance"]
    out[f"grad_snr_{half}"] = scalars["mean_snr"]
    out[f"grad_mean_norm_{half}"] = scalars["mean_norm"]
  return out


def eval_step(params: Any, x: jax.Array, mask: jax.Array, key: jax.Array, *,
              model, num_samples: int = 1, iw_samples: int = 0) -> dict:
  """Sums of per-example terms over the unmasked rows of one eval batch.

  Args:
    x: [B, D] batch (zero-padded), mask: [B] 1 for real rows.

  Returns:
    dict of scalar sums: neg_elbo, recon, kl, count (and neg_log_likelihood_iw
    when iw_samples > 0).
  """
  _, aux = objectives.elbo(params, x, key, model=model, num_samples=num_samples)
  out = {"neg_elbo": -jnp.sum(aux["elbo"] * mask),
         "recon": jnp.sum(aux["recon"] * mask),
         "kl": jnp.sum(aux["kl"] * mask), "count": jnp.sum(mask)}
  if iw_samples:
    ll = objectives.iwae_bound(params, x, jax.random.fold_in(key, 1),
                               model=model, num_samples=iw_samples)
    out["neg_log_likelihood_iw"] = -jnp.sum(ll * mask)
  return out


# Per-example negative log-likelihoods (or bounds) in nats -> their bits/dim key.
BITS_PER_DIM_KEYS = {"neg_elbo": "bits_per_dim", "nll": "bits_per_dim",
                     "neg_log_likelihood_iw": "bits_per_dim_iw",
                     "exact_nll": "exact_bits_per_dim"}


def evaluate(eval_fn: Callable, params: Any, x: np.ndarray, batch_size: int,
             key: jax.Array, num_dims: int, sharding=None) -> dict:
  """Per-example averages over the whole split (fixed key: comparable numbers).

  ``eval_fn(params, x [B, D], mask [B], key)`` returns sums over the unmasked
  rows and their ``count``; every key of ``BITS_PER_DIM_KEYS`` it returns also
  gets its bits/dim.
  """
  totals = None
  for i, (xb, mb) in enumerate(data_lib.eval_batches(x, batch_size)):
    xb, mb = jax.device_put((xb, mb), sharding) if sharding is not None else (xb, mb)
    out = eval_fn(params, xb, mb, jax.random.fold_in(key, i))
    totals = out if totals is None else jax.tree_util.tree_map(jnp.add, totals, out)
  totals = jax.device_get(totals)
  count = float(totals.pop("count"))
  result = {k: float(v) / count for k, v in totals.items()}
  for nats, bits in BITS_PER_DIM_KEYS.items():
    if nats in result:
      result[bits] = float(objectives.bits_per_dim(result[nats], num_dims))
  return result


def check_workdir_config(workdir: str, config: dict) -> None:
  """Refuses to resume a workdir trained with a different model or data."""
  path = os.path.join(workdir, wd.CONFIG_FILE)
  if not os.path.exists(path):
    return
  try:
    saved = wd.read_json(path)
  except (OSError, json.JSONDecodeError):
    raise UserError(f"{path} is not valid JSON; fix or remove it, or use a new --workdir.") from None
  diffs = [f"{k}: saved {saved.get(k)!r}, now {config.get(k)!r}"
           for k in MODEL_DATA_KEYS
           if k in saved and wd.to_jsonable(saved.get(k)) != wd.to_jsonable(config.get(k))]
  if diffs:
    raise UserError(f"--workdir={workdir} holds a run with a different model or data "
                    f"({'; '.join(diffs)}); use a new --workdir or the saved flags.")


class NonFiniteLossError(UserError):
  """Raised when the loss or the gradient became NaN/Inf."""


def make_shardings(batch_sizes: tuple[int, ...]) -> tuple[NamedSharding, NamedSharding]:
  """Data parallelism over every local device: (replicated, batch-sharded).

  The train state is replicated and each batch is split along its first axis
  over a 1-D ``data`` mesh; jit then inserts the gradient all-reduce. With a
  single device (the usual CPU case) both shardings are trivial.
  """
  n = jax.device_count()
  for b in batch_sizes:
    if b % n:
      raise UserError(f"batch size {b} is not divisible by the {n} devices; "
                      f"use a multiple of {n} for --batch_size and --eval_batch_size.")
  if n > 1 and jax.default_backend() == "cpu" and jax.config.values["jax_cpu_enable_async_dispatch"]:
    # Several host "devices" (--xla_force_host_platform_device_count) share one
    # small thread pool; with asynchronous dispatch a later program's part can
    # take the thread that an all-reduce's other participant needs, and XLA
    # aborts after its 40 s rendezvous timeout (seen on 2 loaded cores).
    # Synchronous dispatch keeps one program in flight.
    logging.info("%d CPU devices: dispatching synchronously (XLA:CPU collectives).", n)
    jax.config.update("jax_cpu_enable_async_dispatch", False)
  mesh = jax.make_mesh((n,), ("data",))
  return NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))


class StepMeter:
  """Per-step metrics summed on device, flushed at logging boundaries, and throughput.

  Throughput excludes the first step of the loop (compilation) and the host
  time spent between ``flush`` and ``end_host`` (logging, evaluation,
  checkpointing). Shared by every training loop of the package.
  """

  def __init__(self, start_step: int = 0):
    self.start_step = start_step
    self._acc, self._n = None, 0
    self._t_first, self._t_host, self._overhead = None, None, 0.0

  def add(self, state: Any, metrics: dict) -> None:
    """Adds one step's metrics (device arrays, no sync except after the first step)."""
    self._acc = metrics if self._acc is None else jax.tree_util.tree_map(
        jnp.add, self._acc, metrics)
    self._n += 1
    if self._t_first is None:
      jax.block_until_ready(state)
      self._t_first = time.perf_counter()

  def flush(self, done: int, nonfinite_message: Callable[[int, int], str]) -> dict:
    """Host sync: the mean of each metric since the last flush, plus ``steps_per_s``.

    Raises NonFiniteLossError(nonfinite_message(first_step, done)) if any step
    since the last flush had ``finite == 0``.
    """
    host = jax.device_get(self._acc)
    self._t_host = time.perf_counter()
    n = self._n
    self._acc, self._n = None, 0
    if host.pop("finite") < n:
      raise NonFiniteLossError(nonfinite_message(done - n, done))
    means = {k: float(v) / n for k, v in host.items()}
    means["steps_per_s"] = self.steps_per_s(done, self._t_host)
    return means

  def end_host(self) -> None:
    """Marks the end of the host work that followed ``flush``."""
    self._overhead += time.perf_counter() - self._t_host

  def steps_per_s(self, done: int, now: float | None = None) -> float:
    timed = done - self.start_step - 1
    if self._t_first is None or timed <= 0:
      return float("nan")
    elapsed = (time.perf_counter() if now is None else now) - self._t_first - self._overhead
    return timed / elapsed if elapsed > 0 else float("nan")


def _format_eta(seconds: float) -> str:
  seconds = max(0, int(seconds))
  return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def train_and_evaluate(config: dict, workdir: str,
                       dataset: data_lib.Dataset | None = None) -> dict:
  """Trains the VAE described by ``config``, resuming from ``workdir``.

  Args:
    config: flat dict of settings (see ``DEFAULT_CONFIG``; the runner passes
      all its flags).
    workdir: output directory; created if needed, resumed if it holds
      checkpoints.
    dataset: optional preloaded ``Dataset`` (tests, notebooks); loaded from
      ``config["dataset"]`` otherwise.

  Returns:
    The summary dict also written to ``summary.json``.
  """
  config = {**DEFAULT_CONFIG, **config}
  validate_config(config)
  os.makedirs(workdir, exist_ok=True)
  check_workdir_config(workdir, config)

  ds = dataset or data_lib.load_arrays(config["dataset"], config["data_dir"],
                                       binarize=config["binarize"],
                                       seed=int(config["seed"]))
  validate_data(ds, config)
  wd.write_config(workdir, config)
  wd.write_json(os.path.join(workdir, "data_spec.json"),
                {"name": ds.name, "image_shape": list(ds.image_shape),
                 "num_train": len(ds.train_x), "num_eval": len(ds.eval_x)})

  model = build_model(config, ds.image_shape)
  loss_fn, est_state0 = make_loss_fn(model, config)
  tx = make_optimizer(float(config["learning_rate"]))
  root = jax.random.key(int(config["seed"]))
  replicated, batch_sharded = make_shardings(
      (int(config["batch_size"]), int(config["eval_batch_size"])))
  state = jax.device_put(create_train_state(root, model, tx, ds.num_dims, est_state0),
                         replicated)

  manager = checkpointing.make_manager(workdir)
  stream = data_lib.BatchStream(ds.train_x, int(config["batch_size"]),
                                int(config["seed"]),
                                dynamic_binarize=config["binarize"] == "dynamic")
  restored = checkpointing.restore_latest(manager, state)
  writer = wd.MetricWriter(workdir)
  if restored is not None:
    state, meta, ckpt_step, bad_steps = restored
    if bad_steps:
      checkpointing.quarantine(workdir, bad_steps)
      manager = checkpointing.make_manager(workdir)
      logging.warning("Resumed from the newest intact checkpoint (step %d).", ckpt_step)
    stream.restore(meta["data"])
    writer.truncate_after(ckpt_step)
    logging.info("Resumed from checkpoint at step %d in %s", ckpt_step, workdir)
  else:
    writer.truncate_after(-1)

  step_fn = jax.jit(functools.partial(
      train_step, loss_fn=loss_fn, tx=tx, e_steps=int(config["e_steps"]),
      m_steps=int(config["m_steps"]), dataset_size=len(ds.train_x)), donate_argnums=0)
  eval_fn = jax.jit(functools.partial(eval_step, model=model))
  final_eval_fn = jax.jit(functools.partial(
      eval_step, model=model, iw_samples=int(config["eval_iw_samples"])))
  eval_key = jax.random.key(12345)  # fixed: eval numbers compare across runs
  stats_every = int(config["grad_stats_every"])
  stats_fn = jax.jit(functools.partial(grad_stats_step, loss_fn=loss_fn,
                                       num_draws=int(config["grad_stats_draws"])))

  num_steps = int(config["num_steps"])
  log_every, eval_every = int(config["log_every"]), int(config["eval_every"])
  ckpt_every = int(config["checkpoint_every"])
  start_step = int(state.step)
  last_ckpt = start_step if restored is not None else None

  def save_checkpoint(step):
    checkpointing.save(manager, step, state, {"data": stream.state(),
                                              "seed": int(config["seed"])})

  def run_eval(step, fn=eval_fn):
    result = evaluate(fn, state.params, ds.eval_x, int(config["eval_batch_size"]),
                      eval_key, ds.num_dims, sharding=batch_sharded)
    writer.write(step, "eval", result)
    logging.info("step %d eval: neg_elbo %.3f nats (%.4f bits/dim)", step,
                 result["neg_elbo"], result["bits_per_dim"])
    return result

  meter = StepMeter(start_step)
  for step in range(start_step, num_steps):
    x = jax.device_put(next(stream), batch_sharded)
    state, metrics = step_fn(state, x)
    meter.add(state, metrics)
    done = step + 1
    if not (done % log_every == 0 or done == num_steps or done % ckpt_every == 0 or
            done % eval_every == 0 or (stats_every and done % stats_every == 0)):
      continue
    means = meter.flush(done, lambda first, last: (
        f"the loss or its gradient became NaN/Inf between steps {first} and {last}; "
        f"stopped. The last good checkpoint (step {last_ckpt}) is intact in "
        f"{checkpointing.checkpoint_dir(workdir)}. Lower --learning_rate or check the data."))
    rate = means["steps_per_s"]
    writer.write(done, "train", means)
    logging.info("step %d/%d loss %.3f (recon %.3f, kl %.3f) grad_norm %.3g | "
                 "%.1f steps/s, ETA %s", done, num_steps, means["loss"],
                 means["recon"], means["kl"], means["grad_norm"], rate,
                 _format_eta((num_steps - done) / rate) if rate > 0 else "?")
    if stats_every and done % stats_every == 0:
      stats_key = jax.random.fold_in(jax.random.key(int(config["seed"]) + 777), done)
      stats = stats_fn(state.params, x, state.est_state, stats_key)
      writer.write(done, "grad_stats", jax.device_get(stats))
    if done % eval_every == 0 and done != num_steps:
      run_eval(done)
    if done % ckpt_every == 0 or done == num_steps:
      save_checkpoint(done)
      last_ckpt = done
    meter.end_host()

  steps_per_s = meter.steps_per_s(num_steps) if num_steps - start_step > 1 else None
  if last_ckpt is None or int(state.step) != last_ckpt:
    save_checkpoint(int(state.step))
  final_step = int(state.step)
  final = run_eval(final_step, final_eval_fn)
  summary = _write_outputs(workdir, config, ds, model, state, final, steps_per_s)
  checkpointing.close(manager)
  return summary


def _write_outputs(workdir, config, ds, model, state, final, steps_per_s):
  """summary.json, samples.png, reconstructions.png, training_curves.png."""
  previous = {}
  summary_path = os.path.join(workdir, wd.SUMMARY_FILE)
  if os.path.exists(summary_path):
    try:
      previous = wd.read_json(summary_path)
    except (OSError, json.JSONDecodeError):
      previous = {}
  if steps_per_s is None:  # nothing trained in this invocation
    steps_per_s = previous.get("steps_per_s")
  summary = {
      "step": int(state.step),
      "eval_neg_elbo": final["neg_elbo"],
      "eval_bits_per_dim": final["bits_per_dim"],
      "eval_recon": final["recon"], "eval_kl": final["kl"],
      "eval_examples": int(len(ds.eval_x)),
      "steps_per_s": steps_per_s,
      "examples_per_s": (steps_per_s * int(config["batch_size"])
                         if steps_per_s else None),
      "dataset": ds.name, "device": jax.devices()[0].platform,
      "device_count": jax.device_count(),
  }
  if "neg_log_likelihood_iw" in final:
    summary["eval_neg_log_likelihood_iw"] = final["neg_log_likelihood_iw"]
    summary["eval_bits_per_dim_iw"] = final["bits_per_dim_iw"]
    summary["eval_iw_samples"] = int(config["eval_iw_samples"])
  wd.write_summary(workdir, summary)

  key = jax.random.key(int(config["seed"]) + 7)
  dec = objectives.sample_prior(key, state.params, model=model, num_samples=100,
                                latent_dim=int(config["latent_dim"]))
  plots.save_image_grid(os.path.join(workdir, "samples.png"),
                        np.asarray(objectives.decoder_mean(dec)), ds.image_shape,
                        title=f"decoder means E[x|z], z ~ N(0, I) (step {int(state.step)})")
  # 50 held-out images spread over the split (it is sorted by label for some sets).
  x = ds.eval_x[np.linspace(0, len(ds.eval_x) - 1, min(50, len(ds.eval_x))).astype(int)]
  recon = objectives.reconstruct(state.params, jnp.asarray(x), model=model)
  plots.save_reconstructions(os.path.join(workdir, "reconstructions.png"), x,
                             np.asarray(recon), ds.image_shape)
  records = wd.read_metrics(workdir)
  train = [r for r in records if r["split"] == "train"]
  evals = [r for r in records if r["split"] == "eval"]
  curves = {"train -ELBO (batch avg)": ([r["step"] for r in train],
                                        [-r["elbo"] for r in train])}
  if evals:
    curves["eval -ELBO"] = ([r["step"] for r in evals], [r["neg_elbo"] for r in evals])
  plots.save_curves(os.path.join(workdir, "training_curves.png"), curves,
                    xlabel="step", ylabel="nats per example",
                    title=f"VAE on {ds.name}")
  return summary


def load_checkpoint(workdir: str, step: int | None = None):
  """Loads a trained VAE from a workdir (for notebooks and tests).

  Args:
    workdir: a run's ``--workdir``.
    step: checkpoint step; the newest intact one when None.

  Returns:
    (model, state, config): the Flax module, the restored ``TrainState``
    (``state.params`` are the VAE parameters) and the run's config.
  """
  path = os.path.join(workdir, wd.CONFIG_FILE)
  if not os.path.exists(path):
    raise UserError(f"{workdir} holds no {wd.CONFIG_FILE}; is it a vae_jax workdir?")
  config = {**DEFAULT_CONFIG, **wd.read_json(path)}
  shape = tuple(wd.read_json(os.path.join(workdir, "data_spec.json"))["image_shape"])
  model = build_model(config, shape)
  loss_fn, est_state0 = make_loss_fn(model, config)
  del loss_fn
  tx = make_optimizer(float(config["learning_rate"]))
  template = create_train_state(jax.random.key(0), model, tx, int(np.prod(shape)), est_state0)
  manager = checkpointing.make_manager(workdir)
  try:
    if step is None:
      restored = checkpointing.restore_latest(manager, template)
      if restored is None:
        raise UserError(f"no checkpoint in {checkpointing.checkpoint_dir(workdir)}.")
      state = restored[0]
    else:
      state, _ = checkpointing.restore(manager, step, template)
  finally:
    checkpointing.close(manager)
  return model, state, config
