"""The training step the trainer runs: pure functions, jitted once.

* ``train_step``: one gradient step on a task's loss, with the NaN guard (a
  non-finite loss or gradient leaves the state as it was), the gradient norm
  (per parameter group) and variational-EM phases over the groups;
* ``step_batch``: step t's batch from the feed, binarized from
  ``fold_in(binarize_key, t)``;
* ``train_steps``: many steps in one ``lax.fori_loop`` (one dispatch), and
  ``jit_train_steps`` which jits it as ``trainer.train`` runs it, with
  ``step_compiler_options``;
* ``grad_stats_step``: variance and SNR of the training gradient.

``trainer`` (the loop: checkpoints, resume, logging, evaluation) drives them;
benchmarks and tests build the same program from here.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from vae_jax import data as data_lib
from vae_jax.inference import gradients
from vae_jax.training import task as task_lib


def _select(pred, new, old):
  return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), new, old)


def _active(step: jax.Array, groups: tuple[str, ...], phases) -> dict:
  """{group: bool} updated at this step: all, or the current phase's group."""
  if phases is None or all(int(p) == 1 for p in phases):
    return {g: jnp.array(True) for g in groups}
  pos = step % sum(int(p) for p in phases)
  out, start = {}, 0
  for g, p in zip(groups, phases):
    out[g] = (pos >= start) & (pos < start + int(p))
    start += int(p)
  for g in groups[len(phases):]:             # e.g. the prior: with the decoder
    out[g] = out[groups[len(phases) - 1]]
  return out


def _update(do: jax.Array, params: Any, opt_state: Any, grads: Any,
            tx: optax.GradientTransformation) -> tuple[Any, Any]:
  """One optimizer update if ``do``, else the inputs unchanged.

  A ``lax.cond`` rather than ``jnp.where`` over every array: the skipped
  branch costs nothing, and the taken one adds no pass over the parameters
  and optimizer state (a where cost ~10% of the default VAE's step on CPU).
  """
  def apply(operands):
    p, o, g = operands
    updates, o_new = tx.update(g, o, p)
    return optax.apply_updates(p, updates), o_new
  with jax.named_scope("optimizer"):
    return jax.lax.cond(do, apply, lambda operands: operands[:2], (params, opt_state, grads))


def train_step(state: task_lib.TrainState, x: jax.Array, *, task: task_lib.Task,
               tx: optax.GradientTransformation) -> tuple[task_lib.TrainState, dict]:
  """One gradient step on ``task.loss_fn`` (jit with task and tx static).

  Args:
    state: the train state (donated).
    x: [B, D] batch.

  Returns:
    (new_state, metrics): scalars loss, grad_norm (and per group),
    param_norm, finite (1.0 if the update was applied) and the task's
    ``train_metrics``. A non-finite loss or gradient leaves the state
    unchanged (finite = 0).
  """
  key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
  (loss, (aux, est_state)), grads = jax.value_and_grad(task.loss_fn, has_aux=True)(
      state.params, x, key, state.est_state, state.step)
  metrics = {"loss": loss}
  with jax.named_scope("grad_norm"):
    if task.groups:
      # The total norm from the groups' squared norms: one pass over the gradient.
      squares = {g: optax.tree_utils.tree_norm(grads["params"][g], squared=True)
                 for g in task.groups}
      rest = {k: v for k, v in grads.items() if k != "params"}   # no other collections: 0
      grad_norm = jnp.sqrt(sum(squares.values())
                           + optax.tree_utils.tree_norm(rest, squared=True))
    else:
      grad_norm = optax.global_norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  metrics["grad_norm"] = grad_norm
  if task.groups:
    active = _active(state.step, task.groups, task.phases)
    new_params, new_opt = dict(state.params["params"]), {}
    for g in task.groups:
      new_params[g], new_opt[g] = _update(active[g] & finite, state.params["params"][g],
                                          state.opt_state[g], grads["params"][g], tx)
      metrics[f"grad_norm_{g}"] = jnp.sqrt(squares[g])
    params = {**state.params, "params": new_params}
  else:
    params, new_opt = _update(finite, state.params, state.opt_state, grads, tx)
  new_state = state.replace(step=state.step + 1, params=params, opt_state=new_opt,
                            est_state=_select(finite, est_state, state.est_state))
  metrics.update(task.train_metrics(aux))
  metrics["param_norm"] = optax.global_norm(params)
  metrics["finite"] = finite.astype(jnp.float32)
  return new_state, metrics


def step_batch(feed_batch: Callable, feed_args: Any, i: jax.Array, step: jax.Array, *,
               binarize_key: jax.Array, binarize: bool) -> jax.Array:
  """Step ``step``'s [B, D] batch, the i-th of its dispatch: the feed's rows,
  binarized from ``fold_in(binarize_key, step)`` when ``binarize``."""
  with jax.named_scope("feed"):   # the named scopes label the step's parts in profiles
    x = feed_batch(feed_args, i, step)
  if not binarize:
    return x
  with jax.named_scope("binarize"):
    return data_lib.binarize(x, jax.random.fold_in(jax.random.wrap_key_data(binarize_key),
                                                   step))


def train_steps(state: task_lib.TrainState, feed_args: Any, binarize_key: jax.Array,
                num_steps: jax.Array, *, task: task_lib.Task, tx: optax.GradientTransformation,
                feed_batch: Callable, binarize: bool) -> tuple[task_lib.TrainState, dict]:
  """``num_steps`` train steps in one dispatch (jit with the keywords static).

  The steps run in one ``lax.fori_loop`` whose trip count is an argument,
  so one compiled program serves every count: a run with
  ``train.steps_per_jit=1`` executes exactly the loop body that a run with 10
  does, and their parameters are bit-identical. Step t takes its batch from
  the feed, ``feed_batch(feed_args, i, t)`` for the i-th step of the dispatch,
  binarized from ``fold_in(binarize_key, t)`` when ``binarize``.

  Args:
    state: the train state (donated).
    feed_args: the feed's device input for this dispatch (``vae_jax.training.feed``).
    binarize_key: [2] uint32 key data of the ``binarize`` stream.
    num_steps: [] int, how many steps to run.

  Returns:
    (new_state, sums): the sum over the steps of each metric of
    ``train_step`` but ``param_norm`` (``finite`` counts the applied updates).
  """
  batch = functools.partial(step_batch, feed_batch, feed_args, binarize_key=binarize_key,
                            binarize=binarize)

  def step(state, i):   # param_norm is read at logging time (a pass over the parameters)
    state, metrics = train_step(state, batch(i, state.step), task=task, tx=tx)
    return state, {k: v for k, v in metrics.items() if k != "param_norm"}

  def body(i, carry):
    state, metrics = step(carry[0], i)
    return state, jax.tree_util.tree_map(jnp.add, carry[1], metrics)

  shapes = jax.eval_shape(lambda s: step(s, 0)[1], state)
  sums = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)
  return jax.lax.fori_loop(0, num_steps, body, (state, sums))


# XLA:CPU's tree-reduction rewrite splits each long reduction of the step (the
# gradient norm's sums of squares, the bias gradients' sums over the batch)
# into 32-wide windows run as library calls, which inside the step cost more
# than the plain reductions they replace: 0.35 ms (90% interval 0.13-0.46) of
# the default VAE's 4.1 ms step, 8.5% (scripts/benchmarks/bench_step_levers.py,
# lever xla_tree_reduction). Without it only the order of those sums changes.
# Chosen here, not by a config key; ``trainer.run_summary`` writes it into
# summary.json (``step_compiler_options``).
_NO_TREE_REDUCTION = {"xla_disable_hlo_passes": "tree_reduction_rewriter"}


def step_compiler_options(platform: str | None = None) -> dict[str, str]:
  """The XLA options the train-step program is compiled with on ``platform``
  (default: JAX's default backend): on CPU, the tree-reduction rewrite off;
  none elsewhere (measured on XLA:CPU only; GPU and TPU compile their
  reductions their own way)."""
  if (platform or jax.default_backend()) != "cpu":
    return {}
  return dict(_NO_TREE_REDUCTION)


def jit_train_steps(task: task_lib.Task, tx: optax.GradientTransformation, feed_batch: Callable,
                    binarize: bool, compiler_options: dict[str, str]) -> Callable:
  """``train_steps`` jitted as ``train`` runs it: the state donated, compiled with
  ``compiler_options`` (``step_compiler_options``)."""
  return jax.jit(functools.partial(train_steps, task=task, tx=tx, feed_batch=feed_batch,
                                   binarize=binarize), donate_argnums=0,
                 compiler_options=compiler_options or None)


def grad_stats_step(params: Any, x: jax.Array, est_state: Any, step: jax.Array,
                    key: jax.Array, *, loss_fn: Callable, num_draws: int,
                    groups: tuple[str, ...] | None = None) -> dict:
  """Variance and SNR of the training gradient on one batch x: [B, D].

  ``num_draws`` independent draws of the whole gradient (same batch,
  parameters and estimator state; one ``gradients.gradient_statistics``
  call), reduced per group: ``grad_var_<group>`` (trace of the covariance),
  ``grad_snr_<group>`` (mean |mean| / std over parameters) and
  ``grad_mean_norm_<group>``; the group is ``all`` without groups.
  """
  grad_fn = lambda k: jax.grad(lambda p: loss_fn(p, x, k, est_state, step)[0])(params)["params"]
  stats = gradients.gradient_statistics(grad_fn, key, num_draws)
  out = {}
  for group in groups or (None,):
    pick = (lambda t: t[group]) if group else (lambda t: t)
    scalars = gradients.summarize(*(pick(stats[k]) for k in ("mean", "variance", "snr")))
    name = group or "all"
    out[f"grad_var_{name}"] = scalars["total_variance"]
    out[f"grad_snr_{name}"] = scalars["mean_snr"]
    out[f"grad_mean_norm_{name}"] = scalars["mean_norm"]
  return out
