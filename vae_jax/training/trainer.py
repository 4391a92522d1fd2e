"""The one training loop: every model that trains plugs a ``Task`` into it.

A ``Task`` (``vae_jax.training.task``) supplies the model-specific parts: the
parameters' initialization, a loss function ``(params, x, key, est_state) ->
(loss, (aux, est_state))`` whose gradient is the model's estimator, the scalar
metrics to log from ``aux``, and an eval step. The trainer supplies the rest,
once for every model:

* one jitted, donated train step (``train_step``, in ``vae_jax.training.step``)
  with the NaN guard, gradient and parameter norms, and variational-EM phases
  over parameter groups, run ``train.steps_per_jit`` at a time in one device
  loop (``train_steps``) fed
  by ``vae_jax.training.feed`` (batches gathered and binarized on device when the
  training split fits there);
* data parallelism over the local devices (``vae_jax.sharding``);
* orbax checkpoints (``vae_jax.training.checkpointing``) and bit-exact resume: the
  batch of step t, its dynamic binarization and the noise key
  ``fold_in(noise, t)`` are pure functions of (seed, t), whatever the feed,
  the steps per dispatch or the number of devices;
* the NaN stop, which keeps the last good checkpoint;
* ``metrics.jsonl`` and TensorBoard events (``vae_jax.training.workdir``), a progress
  line with steps/s and ETA, periodic evaluation and gradient statistics;
* the refusal to resume a workdir whose run has other data, model or objective.

The loop reads ``config.seed``, ``config.data.binarize``, ``config.train``
(batch_size, num_steps, learning_rate, log_every, eval_every,
checkpoint_every, grad_stats_every, grad_stats_draws, steps_per_jit, feed) and
``config.eval.batch_size``. Keys come from ``vae_jax.keys``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time

from absl import logging
import jax
import jax.numpy as jnp
import optax

from vae_jax.training import checkpointing
from vae_jax import data as data_lib
from vae_jax.inference import evaluation
from vae_jax.training import feed as feed_lib
from vae_jax import keys
from vae_jax.training import optim
from vae_jax.training import progress
from vae_jax.training.progress import NonFiniteLossError, StepMeter, format_eta  # pylint: disable=unused-import
from vae_jax import sharding
from vae_jax.training import step as step_lib
from vae_jax.training import task as task_lib
from vae_jax.training import workdir as wd
from vae_jax.errors import check_choice, check_positive


@dataclasses.dataclass
class TrainResult:
  """What ``train`` returns: the final state and evaluations."""
  state: task_lib.TrainState
  final_eval: dict
  initial_eval: dict | None
  steps_per_s: float | None
  resumed_from: int | None
  # Wall seconds: setup (state, checkpoints, feed), first_step (its dispatch:
  # compiling the step, or reading it from the cache), train (the other
  # steps with their logging, evaluations and checkpoints), final_eval.
  timings: dict = dataclasses.field(default_factory=dict)


def create_train_state(init_key: jax.Array, noise_key: jax.Array, task: task_lib.Task,
                       tx: optax.GradientTransformation) -> task_lib.TrainState:
  """Initializes parameters and optimizer state(s), in one compiled program."""
  @jax.jit
  def init(init_key, noise_key):
    params = task.init_params(init_key)
    if task.groups:
      opt_state = {g: tx.init(params["params"][g]) for g in task.groups}
    else:
      opt_state = tx.init(params)
    return task_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                               opt_state=opt_state, est_state=task.est_state,
                               key=jax.random.key_data(noise_key))
  return init(init_key, noise_key)


def logged_eval(workdir: str, step: int) -> dict | None:
  """The ``eval`` record of ``metrics.jsonl`` at ``step`` (without step/split), if any."""
  if not os.path.exists(os.path.join(workdir, wd.METRICS_FILE)):
    return None
  rows = [r for r in wd.read_metrics(workdir) if r["split"] == "eval" and r["step"] == step]
  return {k: v for k, v in rows[-1].items() if k not in ("step", "split")} if rows else None


def steps_per_epoch(ds: data_lib.Dataset, batch_size: int) -> int:
  """Updates per pass over the training split (the batch stream drops the remainder)."""
  return max(1, len(ds.train_x) // int(batch_size))


def next_stop(step: int, num_steps: int, steps_per_jit: int, periods) -> int:
  """Where the dispatch that starts at ``step`` ends: after ``steps_per_jit``
  steps, at ``num_steps``, or at the next multiple of any of ``periods``
  (logging, evaluation, checkpoints, gradient statistics, epochs)."""
  return min([num_steps, step + steps_per_jit] + [(step // p + 1) * p for p in periods if p])


def validate_train_config(config) -> None:
  """The ``train`` and ``eval`` settings the loop reads; UserError with the key."""
  t = config.train
  for name in ("batch_size", "log_every", "eval_every", "checkpoint_every"):
    check_positive(t[name], f"config.train.{name}", integer=True)
  check_positive(t.steps_per_jit, "config.train.steps_per_jit", integer=True)
  check_choice(t.feed, feed_lib.FEEDS, "config.train.feed")
  check_positive(t.num_steps, "config.train.num_steps", integer=True, minimum=0,
                 meaning="0 evaluates the initialization")
  check_positive(t.learning_rate, "config.train.learning_rate")
  optim.validate(t)
  check_positive(config.eval.batch_size, "config.eval.batch_size", integer=True)
  check_positive(t.grad_stats_every, "config.train.grad_stats_every", integer=True, minimum=0,
                 meaning="0: no gradient statistics")
  if t.grad_stats_every > 0:
    check_positive(t.grad_stats_draws, "config.train.grad_stats_draws", integer=True,
                   minimum=2, meaning="gradients per statistic, when grad_stats_every > 0")


def train(task: task_lib.Task, config, ds: data_lib.Dataset, workdir: str) -> TrainResult:
  """Trains ``task`` on ``ds`` as ``config`` says, resuming from ``workdir``.

  Writes ``config.json`` and ``data_spec.json`` once the workdir's
  checkpoints (if any) are found to be this model's, then checkpoints,
  ``metrics.jsonl`` and TensorBoard events as it goes. The caller writes the
  summary and figures from the returned ``TrainResult``.

  Raises:
    UserError: bad settings, a workdir of another run, a NaN loss (after the
      last good checkpoint), or checkpoints that cannot be restored.
  """
  started = time.perf_counter()
  validate_train_config(config)
  # Everything that can refuse the settings comes before the workdir is touched:
  # a refused run leaves nothing behind (not even an empty checkpoints/).
  tc = config.train
  batch_size, eval_batch_size = int(tc.batch_size), int(config.eval.batch_size)
  shardings = sharding.make_shardings(
      {"config.train.batch_size": batch_size, "config.eval.batch_size": eval_batch_size})
  root = keys.root(config.seed)
  tx = optim.make_optimizer(tc, steps_per_epoch(ds, batch_size))
  stream = data_lib.BatchStream(ds.train_x, batch_size,
                                keys.numpy_seed(keys.stream(root, "data")))
  steps_per_jit = int(tc.steps_per_jit)
  feed = feed_lib.make_feed(tc.feed, stream, shardings, steps_per_jit)
  wd.prepare(workdir, config)
  state = create_train_state(keys.stream(root, "init"), keys.stream(root, "noise"), task, tx)
  state = jax.tree_util.tree_map(   # every process builds the same state
      lambda a: sharding.global_array(jax.device_get(a), shardings.replicated), state)

  manager = checkpointing.make_manager(workdir)
  try:
    restored = checkpointing.restore_latest(manager, state)
  except BaseException:
    checkpointing.close(manager)
    raise
  wd.write_config(workdir, config)     # after the checkpoints were found to be this run's
  wd.write_data_spec(workdir, ds)
  writer = wd.MetricWriter(workdir)
  resumed_from = None
  if restored is not None:
    state, meta, resumed_from, bad_steps = restored
    if bad_steps:
      checkpointing.close(manager)
      checkpointing.quarantine(workdir, bad_steps)
      manager = checkpointing.make_manager(workdir)
      logging.warning("Resumed from the newest intact checkpoint (step %d).", resumed_from)
    stream.restore(meta["data"])
    writer.truncate_after(resumed_from)
    progress.info("Resumed from checkpoint at step %d in %s", resumed_from, workdir)
  else:
    writer.truncate_after(-1)

  binarize = config.data.binarize == "dynamic"
  binarize_key = sharding.global_array(
      jax.device_get(jax.random.key_data(keys.stream(root, "binarize"))), shardings.replicated)
  steps_fn = step_lib.jit_train_steps(task, tx, feed.batch, binarize,
                                      step_lib.step_compiler_options())

  batch_fn = jax.jit(functools.partial(   # a step's batch, for gradient statistics
      step_lib.step_batch, feed.batch, binarize_key=binarize_key, binarize=binarize))

  param_norm_fn = jax.jit(optax.global_norm)
  eval_fn = jax.jit(task.eval_step)
  final_eval_fn = jax.jit(task.final_eval_step) if task.final_eval_step else eval_fn
  eval_key = keys.stream(root, "eval")
  stats_every = int(tc.grad_stats_every)
  stats_fn = jax.jit(functools.partial(
      step_lib.grad_stats_step, loss_fn=task.loss_fn, groups=task.groups,
      num_draws=int(tc.grad_stats_draws)))
  stats_root = keys.stream(root, "grad_stats")

  num_steps = int(tc.num_steps)
  log_every, eval_every = int(tc.log_every), int(tc.eval_every)
  ckpt_every = int(tc.checkpoint_every)
  periods = (log_every, eval_every, ckpt_every, stats_every, stream.steps_per_epoch)
  start_step = int(state.step)
  last_ckpt = resumed_from

  def save_checkpoint(step):
    checkpointing.save(manager, step, state, {"data": stream.state(),
                                              "seed": int(config.seed)})

  def run_eval(step, fn=eval_fn):
    result = evaluation.evaluate(fn, state.params, ds.eval_x, eval_batch_size, eval_key,
                                 ds.num_dims, bits_per_dim=task.bits_per_dim,
                                 sharding=shardings.batch)
    writer.write(step, "eval", result)
    progress.info("step %d eval: %s %.3f nats", step, task.eval_headline,
                 result[task.eval_headline])
    return result

  initial = None
  if task.eval_at_start:   # a resumed run reads it back: the summary stays the same
    initial = run_eval(0) if start_step == 0 else logged_eval(workdir, 0)
  meter = StepMeter(start_step)
  timings = {"setup": time.perf_counter() - started}
  started = time.perf_counter()
  progress.info("%s: %s feed, up to %d steps per dispatch, %d device(s) in %d process(es).",
               task.name, feed.kind, steps_per_jit, jax.device_count(), jax.process_count())
  try:
    step = start_step
    while step < num_steps:
      # The first dispatch runs one step (it compiles), so the first log has a rate.
      done = next_stop(step, num_steps, 1 if step == start_step else steps_per_jit, periods)
      n = done - step
      feed_args = feed.args(step, n)
      state, sums = sharding.wait(steps_fn(state, feed_args, binarize_key, n))
      meter.add(state, sums, n)
      if "first_step" not in timings:
        timings["first_step"] = time.perf_counter() - started
      stream.step = step = done
      stats_now = stats_every and done % stats_every == 0
      if not (done % log_every == 0 or done == num_steps or done % ckpt_every == 0 or
              done % eval_every == 0 or stats_now):
        continue
      means = meter.flush(done, lambda first, last: (
          f"the loss or its gradient became NaN/Inf between steps {first} and {last}; "
          f"stopped. " + (f"The last good checkpoint (step {last_ckpt}) is intact in "
                          f"{checkpointing.checkpoint_dir(workdir)}. " if last_ckpt is not None
                          else "No checkpoint had been saved yet. ")
          + "Lower --config.train.learning_rate or check the data."))
      means["param_norm"] = float(sharding.wait(param_norm_fn(state.params)))
      rate = means["steps_per_s"]
      writer.write(done, "train", means)
      progress.info("step %d/%d %s grad_norm %.3g | %.1f steps/s, ETA %s", done, num_steps,
                   " ".join(f"{k} {means[k]:.3f}" for k in task.headline if k in means),
                   means["grad_norm"], rate,
                   format_eta((num_steps - done) / rate) if rate > 0 else "?")
      if stats_now:
        x = sharding.wait(batch_fn(feed_args, n - 1, done - 1))   # the last step's batch
        stats = sharding.wait(stats_fn(state.params, x, state.est_state, state.step,
                                       jax.random.fold_in(stats_root, done)))
        writer.write(done, "grad_stats", jax.device_get(stats))
      if done % eval_every == 0 and done != num_steps:
        run_eval(done)
      if done % ckpt_every == 0 or done == num_steps:
        save_checkpoint(done)
        last_ckpt = done
      writer.flush()
      meter.end_host()

    steps_per_s = meter.steps_per_s(num_steps) if num_steps - start_step > 1 else None
    if start_step > num_steps:
      logging.warning("%s holds step %d, past config.train.num_steps=%d; nothing to train.",
                      workdir, start_step, num_steps)
    if last_ckpt is None or int(state.step) != last_ckpt:
      save_checkpoint(int(state.step))
    timings["train"] = time.perf_counter() - started - timings.get("first_step", 0.0)
    started = time.perf_counter()
    # A finished run re-run trains nothing: its final evaluation is already logged.
    final = ((resumed_from is not None and start_step >= num_steps
              and logged_eval(workdir, int(state.step)))
             or run_eval(int(state.step), final_eval_fn))
    timings["final_eval"] = time.perf_counter() - started
  finally:
    writer.close()
    checkpointing.close(manager)
  return TrainResult(state=state, final_eval=final, initial_eval=initial,
                     steps_per_s=steps_per_s, resumed_from=resumed_from,
                     timings={k: round(v, 3) for k, v in timings.items()})


def run_summary(workdir: str, result: TrainResult, ds: data_lib.Dataset, config,
                **extra) -> dict:
  """The summary every trained model writes: ``eval_*`` of the final evaluation,
  step, throughput, data and devices, the XLA options the train step was compiled
  with (``step_compiler_options``), plus ``extra``; written to summary.json.

  A re-run that trained nothing keeps the previous run's throughput.
  """
  steps_per_s = result.steps_per_s
  path = os.path.join(workdir, wd.SUMMARY_FILE)
  if steps_per_s is None and os.path.exists(path):
    try:
      steps_per_s = wd.read_json(path).get("steps_per_s")
    except (OSError, json.JSONDecodeError):
      steps_per_s = None
  summary = {f"eval_{k}": v for k, v in result.final_eval.items()}
  if result.initial_eval is not None:
    summary.update({f"eval_initial_{k}": v for k, v in result.initial_eval.items()})
  summary.update(
      step=int(result.state.step), eval_examples=int(len(ds.eval_x)),
      steps_per_s=steps_per_s,
      examples_per_s=steps_per_s * int(config.train.batch_size) if steps_per_s else None,
      dataset=ds.name, device=jax.devices()[0].platform, device_count=jax.device_count(),
      step_compiler_options=step_lib.step_compiler_options(), **extra)
  wd.write_summary(workdir, summary)
  return summary
