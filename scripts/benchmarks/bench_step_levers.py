r"""Levers on the default VAE's training step, each measured against the step as it ships.

Each lever is one change to the program the runner executes: the trainer's
``train_steps`` (a fused ``lax.fori_loop`` of Adam steps, each gathering its
batch from the device feed and binarizing it), built and compiled with the
change, on the default config (MLP 784-200-200-50, Bernoulli, batch 100).
All programs are compiled first; then every round runs each program for
``--dispatches`` dispatches of ``--steps`` steps (the order rotated each
round, shuffled), so a lever is read against the baseline of the same round:

  python scripts/benchmarks/bench_step_levers.py                      # every lever, 30 rounds
  python scripts/benchmarks/bench_step_levers.py --levers=gather_promise_in_bounds,sgd --rounds=60

Reported per lever: ms per step (median over rounds), the paired difference
from the reference (median over rounds, with a 90% bootstrap interval, and a
verdict: ``faster`` or ``slower`` when the interval excludes 0 and the
median is beyond the noise floor below), XLA's cost
analysis of the compiled program over the baseline's (bytes accessed, flops,
transcendentals: load-independent), and whether its first steps compute the
baseline's numbers (``same_numbers``: the loss sum and the parameters after
3 steps from the same state, bit for bit, or their largest relative
difference). ``baseline_again`` is the baseline compiled a second time: the
same HLO compiled twice can run a few percent apart on this VM, a difference
that more rounds do not shrink. With it, each lever is read against the mean
of the two copies, and its verdict needs a median beyond half the larger end
(in absolute value) of the copies' own interval: the run's noise floor.

The levers (``LEVERS``) are the ones this project tried for the step; each is
a patch applied while the program is traced (never to the library on disk) or
XLA compile options.
A patch that leaves the compiled program as the baseline's (the step never
calls what it replaces) stops the run; an option that does is reported as
``same_hlo``.
Prints one JSON object.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import time
from typing import Callable, Iterator, NamedTuple

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.configs import vae as vae_config
from vae_jax import data as data_lib
from vae_jax import distributions
from vae_jax import prng
from vae_jax import tasks
from vae_jax.training import feed as feed_lib
from vae_jax.training import optim
from vae_jax import sharding
from vae_jax.training import step as step_lib
from vae_jax.training import task as task_lib
from vae_jax.training import trainer
import machine  # this folder (scripts/benchmarks/) is on sys.path
import paired

BATCH_SIZE = 100
CHECK_STEPS = 3   # steps run from one state by every lever to compare their numbers


# ----------------------------------------------------------------------------
# The levers: patches in force while a variant's program is traced.
# ----------------------------------------------------------------------------


@contextlib.contextmanager
def _patched(obj, name: str, value) -> Iterator[None]:
  old = getattr(obj, name)
  setattr(obj, name, value)
  try:
    yield
  finally:
    setattr(obj, name, old)


def _tree_norm_by_dot(tree, squared: bool = False) -> jax.Array:
  """``optax.tree_utils.tree_norm`` (the trainer's per-group gradient norms) from
  ``vdot``s."""
  total = sum((jnp.vdot(x, x) for x in jax.tree_util.tree_leaves(tree)),
              jnp.zeros((), jnp.float32))
  return total if squared else jnp.sqrt(total)


def _tree_norm_variadic(tree, squared: bool = False) -> jax.Array:
  """``optax.tree_utils.tree_norm`` from two-output reductions (sum of squares and
  the largest |x|), which XLA's tree-reduction rewrite leaves alone; the largest
  |x| enters as 0 * m so that XLA keeps both outputs (and an inf still shows)."""
  total = jnp.zeros((), jnp.float32)
  for x in jax.tree_util.tree_leaves(tree):
    s, m = jax.lax.reduce((x * x, jnp.abs(x)), (np.float32(0), np.float32(0)),
                          lambda a, b: (a[0] + b[0], jnp.maximum(a[1], b[1])),
                          tuple(range(x.ndim)))
    total = total + s + 0.0 * m
  return total if squared else jnp.sqrt(total)


def _stacked(*patches) -> contextlib.ExitStack:
  stack = contextlib.ExitStack()
  for obj, name, value in patches:
    stack.enter_context(_patched(obj, name, value))
  return stack


def _gather(mode: str) -> Callable:
  def batch(self, args, i, step):
    del i
    x, perm = args
    return jax.lax.with_sharding_constraint(x.at[self.rows(perm, step)].get(mode=mode),
                                            self.shardings.batch)
  return lambda: _patched(feed_lib.DeviceFeed, "batch", batch)


def _uint8_batch(self, args, i, step):
  del i
  x, perm = args                 # x: uint8 k with k / 255 the feed's float32 pixel
  x = jnp.take(x, self.rows(perm, step), axis=0).astype(jnp.float32) / np.float32(255)
  return jax.lax.with_sharding_constraint(x, self.shardings.batch)


def _binarize_bitcast(x: jax.Array, key: jax.Array) -> jax.Array:
  """``data.binarize`` with each word's 16-bit halves taken by a bitcast
  instead of a mask, a shift and a concatenate (the same pixels)."""
  d = x.shape[-1]
  h = (d + 1) // 2
  halves = jax.lax.bitcast_convert_type(prng.bits(key, x.shape[:-1] + (h,)), jnp.uint16)
  u = jnp.swapaxes(halves, -1, -2).reshape(x.shape[:-1] + (2 * h,))[..., :d]
  return ((u.astype(jnp.float32) + 0.5) * (1.0 / 65536) < x).astype(x.dtype)


@jax.custom_jvp
def _softplus_shared_exp(x):
  return jnp.maximum(x, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(x)))


@_softplus_shared_exp.defjvp
def _softplus_shared_exp_jvp(primals, tangents):
  (x,), (t,) = primals, tangents
  e = jnp.exp(-jnp.abs(x))          # one exp for the value and sigmoid(x)
  sigmoid = jnp.where(x >= 0, 1.0, e) / (1.0 + e)
  return jnp.maximum(x, 0.0) + jnp.log1p(e), sigmoid * t


def _update_without_cond(do, params, opt_state, grads, tx):
  del do   # not a NaN guard: only the cost of the lax.cond around the update
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


class Lever(NamedTuple):
  description: str
  patch: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
  compile_options: dict | None = None
  uint8_data: bool = False
  sgd: bool = False


LEVERS: dict[str, Lever] = {
    "baseline_again": Lever("the baseline compiled again: the run's noise floor"),
    "jax_random_draws": Lever(
        "jax.random's threefry for the binarization and q's noise in place of "
        "vae_jax.prng's unrolled one (the same bits)",
        lambda: _stacked(
            (prng, "bits", lambda key, shape=(): jax.random.bits(key, shape, jnp.uint32)),
            (prng, "normal", lambda key, shape=(), dtype=jnp.float32:
             jax.random.normal(key, shape, dtype)))),
    "no_grad_norm": Lever(
        "no gradient norm: the NaN guard on the loss alone (the per-group norms, zero)",
        lambda: _patched(optax.tree_utils, "tree_norm",
                         lambda tree, squared=False: jnp.zeros((), jnp.float32))),
    "grad_norm_by_dot": Lever(
        "the gradient norm's sums of squares as dot products (vdot of each array with "
        "itself) instead of reductions",
        lambda: _patched(optax.tree_utils, "tree_norm", _tree_norm_by_dot)),
    "grad_norm_variadic": Lever(
        "the gradient norm's sums of squares in a two-output reduction (with the largest "
        "|g|), which XLA's tree rewrite skips",
        lambda: _patched(optax.tree_utils, "tree_norm", _tree_norm_variadic)),
    "softplus_shared_exp": Lever(
        "softplus and its derivative sigmoid from one exp",
        lambda: _patched(distributions, "softplus", _softplus_shared_exp)),
    "gather_promise_in_bounds": Lever(
        "the batch gather without bounds checks (mode='promise_in_bounds')",
        _gather("promise_in_bounds")),
    "gather_clip": Lever("the batch gather clipping its indices (mode='clip')", _gather("clip")),
    "binarize_bitcast": Lever(
        "the binarization's 16-bit halves by a bitcast instead of a mask, a shift and a "
        "concatenate", lambda: _patched(data_lib, "binarize", _binarize_bitcast)),
    "data_uint8": Lever(
        "the training split held as uint8 on the device (a quarter of the bytes), each batch "
        "converted to float32 k / 255 (the same pixels)",
        lambda: _patched(feed_lib.DeviceFeed, "batch", _uint8_batch), uint8_data=True),
    "update_without_cond": Lever(
        "Adam's update without the lax.cond of the NaN guard (not a guard; for scale)",
        lambda: _patched(step_lib, "_update", _update_without_cond)),
    "xla_ynnpack_off": Lever("XLA:CPU without YNNPACK fusions",
                             compile_options={"xla_cpu_experimental_ynn_fusion_type": ""}),
    "xla_tree_reduction": Lever(
        "XLA:CPU's tree-reduction rewrite back on (the trainer turns it off on CPU): the "
        "gradient norm's long reductions as 32x32 windows in YNNPACK",
        compile_options={"xla_disable_hlo_passes": ""}),
    "xla_ynn_dots_only": Lever(
        "XLA:CPU's YNNPACK fusions for the products only (no reductions or element-wise "
        "work)", compile_options={
            "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}),
    "xla_concurrency_scheduler": Lever(
        "XLA:CPU's concurrency-optimized scheduler",
        compile_options={"xla_cpu_enable_concurrency_optimized_scheduler": True}),
    "xla_platform_math": Lever(
        "XLA:CPU's platform-dependent math",
        compile_options={"xla_cpu_enable_platform_dependent_math": True}),
    "xla_xnnpack": Lever("XLA:CPU with XNNPACK", compile_options={"xla_cpu_use_xnnpack": True}),
    "sgd": Lever("plain SGD (lr 1e-3) in place of Adam: for scale, Adam's share", sgd=True),
}


_LEVERS = flags.DEFINE_list("levers", list(LEVERS), f"Levers to measure, of: {', '.join(LEVERS)}.")
_ROUNDS = flags.DEFINE_integer("rounds", 30, "Rounds; each times every program once.")
_DISPATCHES = flags.DEFINE_integer("dispatches", 4, "Dispatches per program per round.")
_STEPS = flags.DEFINE_integer("steps", 40, "Steps per dispatch.")


# ----------------------------------------------------------------------------
# Building and checking the programs.
# ----------------------------------------------------------------------------


class Program(NamedTuple):
  compiled: Callable
  state0: task_lib.TrainState
  feed_args: tuple
  cost: dict
  hlo_text: str   # the compiled (optimized) HLO module


def build(lever: Lever | None, config, ds: data_lib.Dataset, steps: int) -> Program:
  """The trainer's ``train_steps`` program with ``lever`` (None: as it ships)."""
  lever = lever or Lever("baseline")
  stream = data_lib.BatchStream(ds.train_x, BATCH_SIZE, seed=0)
  feed = feed_lib.DeviceFeed(stream, sharding.make_shardings(
      {"config.train.batch_size": BATCH_SIZE}))
  feed_args = feed.args(0, steps)
  if lever.uint8_data:
    k = np.rint(np.asarray(ds.train_x, np.float64) * 255)
    if not np.array_equal((k.astype(np.float32) / np.float32(255)), ds.train_x):
      raise ValueError("the training split is not k / 255 for integers k: no uint8 form")
    feed_args = (jnp.asarray(k.astype(np.uint8)), feed_args[1])
  tx = (optax.sgd(1e-3) if lever.sgd
        else optim.make_optimizer(config.train, trainer.steps_per_epoch(ds, BATCH_SIZE)))
  with lever.patch():
    task = tasks.build_task(config, ds.image_shape, len(ds.train_x))
    state = trainer.create_train_state(jax.random.key(0), jax.random.key(1), task, tx)
    fn = step_lib.jit_train_steps(task, tx, feed.batch, True,
                                 step_lib.step_compiler_options())
    binarize_key = jax.random.key_data(jax.random.key(2))
    compiled = fn.lower(state, feed_args, binarize_key, jnp.int32(steps)).compile(
        lever.compile_options)
  run = functools.partial(_run, compiled, feed_args=feed_args, binarize_key=binarize_key)
  return Program(run, state, feed_args, paired.xla_cost(compiled), compiled.as_text())


def _run(compiled, state, num_steps: int, *, feed_args, binarize_key):
  return compiled(state, feed_args, binarize_key, jnp.int32(num_steps))


def first_steps(program: Program) -> tuple[float, list[np.ndarray]]:
  """The loss sum and the parameters after ``CHECK_STEPS`` steps from the program's
  initial state (the same parameters for every program; SGD's optimizer state has
  no moments)."""
  state, sums = program.compiled(paired.copy_tree(program.state0), CHECK_STEPS)
  return float(sums["loss"]), jax.tree_util.tree_leaves(jax.device_get(state.params))


def same_numbers(program: Program, baseline: tuple[float, list[np.ndarray]]) -> dict:
  """``program``'s ``first_steps`` against the baseline's."""
  (loss, params), (base_loss, base_params) = first_steps(program), baseline
  rel = max(float(np.max(np.abs(a.astype(np.float64) - b) / np.maximum(np.abs(b), 1e-30)))
            for a, b in zip(params, base_params))
  identical = loss == base_loss and all(np.array_equal(a, b) for a, b in zip(params, base_params))
  return {"bit_identical": bool(identical), "loss_sum": loss, "baseline_loss_sum": base_loss,
          "max_rel_param_diff": rel}


# ----------------------------------------------------------------------------
# The measurement.
# ----------------------------------------------------------------------------


def measure(programs: dict[str, Program], rounds: int, dispatches: int,
            steps: int) -> dict[str, list[float]]:
  """ms per step of each program, once per round (interleaved)."""
  states = {name: paired.copy_tree(p.state0) for name, p in programs.items()}

  def timed(name):
    def run():
      state, _ = programs[name].compiled(states[name], steps)   # warm, off the clock
      jax.block_until_ready(state)
      t0 = time.perf_counter()
      for _ in range(dispatches):
        state, _ = programs[name].compiled(state, steps)
      jax.block_until_ready(state)
      states[name] = state
      return (time.perf_counter() - t0) / (dispatches * steps) * 1e3
    return run

  return paired.interleaved({name: timed(name) for name in programs}, rounds, shuffle_seed=0)


def bench(levers: list[str], rounds: int, dispatches: int, steps: int) -> dict:
  unknown = [name for name in levers if name not in LEVERS]
  if unknown:
    raise ValueError(f"unknown lever(s) {unknown}; known: {', '.join(LEVERS)}")
  config = vae_config.get_config()
  ds = tasks.load_data(config)
  programs = {"baseline": build(None, config, ds, steps)}
  for name in levers:
    programs[name] = build(LEVERS[name], config, ds, steps)
  base_hlo = paired.hlo_body(programs["baseline"].hlo_text)
  same_hlo = {name: paired.hlo_body(programs[name].hlo_text) == base_hlo for name in levers}
  unapplied = [name for name in levers
               if same_hlo[name] and name != "baseline_again" and not LEVERS[name].compile_options]
  if unapplied:   # a patch the traced step never calls would measure the baseline twice
    raise RuntimeError(f"lever(s) {unapplied} compiled to the baseline's program: "
                       "their patch does not reach the trainer's step")
  baseline = first_steps(programs["baseline"])
  checks = {name: same_numbers(p, baseline) for name, p in programs.items()
            if name != "baseline"}
  ms = measure(programs, rounds, dispatches, steps)
  reference, floor, diffs = "baseline", 0.0, {}
  if "baseline_again" in ms:
    # The same program compiled twice runs this differently (buffer placement,
    # the machine's drift within a round): the levers are read against the
    # mean of the two copies, and must move the step by more than half the
    # larger end of the copies' own interval.
    aa = paired.paired_differences(
        {k: ms[k] for k in ("baseline", "baseline_again")}, "baseline")["baseline_again"]
    floor = max(abs(v) for v in aa["interval"]) / 2
    reference = "baseline_mean"
    ms[reference] = list((np.asarray(ms["baseline"]) + np.asarray(ms["baseline_again"])) / 2)
    diffs["baseline_again"] = {**aa, "verdict": f"noise floor: {floor:.2f} ms"}
  diffs.update(paired.paired_differences(
      {k: v for k, v in ms.items() if k != "baseline_again"}, reference, floor=floor))
  base_cost = programs["baseline"].cost
  return {
      "benchmark": "bench_step_levers",
      "model": "default VAE config: mlp 784-200-200-50, bernoulli, adam 1e-3, batch 100; "
               "mnist_5k, device feed, dynamic binarization",
      "flags": {"levers": levers, "rounds": rounds, "dispatches": dispatches, "steps": steps},
      "notes": {
          "ms_per_step": "median over rounds of one program's dispatches (not counting one "
                         "warm-up dispatch per round)",
          "paired_ms": "lever minus the reference, round by round (the order shuffled each "
                       "round): median, 90% bootstrap interval of the median, verdict "
                       "(faster/slower when the interval excludes 0 and the median is beyond "
                       "the noise floor). With baseline_again measured, the reference is the "
                       "mean of the baseline's two copies and the floor half the larger end "
                       "(absolute) of baseline_again's own interval against baseline; else the "
                       "reference is the baseline and the floor 0.",
          "cost_vs_baseline": "XLA's cost analysis of the compiled program over the "
                              "baseline's: independent of load",
          "same_numbers": f"loss sum and parameters after {CHECK_STEPS} steps from the same "
                          "state, against the baseline",
          "same_hlo": "the optimized HLO equals the baseline's but for metadata: an XLA "
                      "option that acts, if at all, below HLO (a patch that left the "
                      "program unchanged stops the run)",
      },
      "baseline": {"ms_per_step": float(np.median(ms["baseline"])), "cost": base_cost,
                   "reference": reference,
                   "reference_ms_per_step": float(np.median(ms[reference]))},
      "levers": {
          name: {"description": LEVERS[name].description,
                 "ms_per_step": float(np.median(ms[name])),
                 "paired_ms": diffs[name],
                 "cost_vs_baseline": {k: v / base_cost[k] for k, v in programs[name].cost.items()
                                      if base_cost.get(k)},
                 "same_numbers": checks[name], "same_hlo": same_hlo[name]}
          for name in levers},
  }


def main(argv):
  del argv
  machine_before = machine.describe()
  result = bench(_LEVERS.value, _ROUNDS.value, _DISPATCHES.value, _STEPS.value)
  result["machine"] = {**machine_before, "load_average_at_end": os.getloadavg()[0]}
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  app.run(main)
