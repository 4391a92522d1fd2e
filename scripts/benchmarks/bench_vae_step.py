r"""Training throughput of the default MLP VAE: the whole runner loop, against its limits.

The model is the default config's (``experiments/configs/vae.py``): MLP
784-200-200-50 encoder with two Dense(50) heads (mean, log-scale), mirrored
decoder, Bernoulli likelihood, one reparametrized sample, analytic KL, Adam
1e-3, the embedded ``mnist_5k`` data with dynamic binarization. For each batch
size, in one process on the same machine:

* ``vae_jax_runner``: ``trainer.train`` itself, the loop ``python -m
  experiments.main`` runs (steps fused ``train.steps_per_jit = k`` per
  dispatch, the device feed, logging every 100 steps, the final checkpoint and
  evaluation), once per k of ``--ks``, each call in a fresh temporary workdir.
  Every setting is run once untimed first; XLA's persistent compilation cache
  (a temporary directory) then serves the timed calls, which still trace and
  lower as a fresh process would. Reported three ways: the trainer's own
  ``TrainResult.steps_per_s``; the wall clock of the whole call; and the
  loop's marginal rate, the steps over the call's seconds less those of the
  same call with ``num_steps=0`` (setup, checkpoint, final evaluation).
* ``vae_jax_step_fn``: the jitted ``vae_jax.training.step.train_step`` alone, one step per
  dispatch, on batches binarized once and uploaded beforehand.
* ``matmul_limit``: the machine's limit for this model: the 20 matrix products
  of one training step (forward 7, weight gradients 7, input gradients 6:
  all but the first layer's), float32, the same shapes (read from the
  model's parameters), N steps in one ``lax.fori_loop`` so that dispatch is
  not counted. Every product feeds the next step's input (through a scalar,
  zero at run time), so XLA can neither hoist nor drop any; the glue around
  them is O(B*D) element-wise work and one sum over each weight gradient.
  Timed ``--repeats`` times before the runner and once in every repeat of it
  (after that repeat's independent limit); the limit is the best of them.
* ``torch_eager``: a plain PyTorch eager loop of the same model and optimizer
  that also draws each step's rows (a permutation per epoch) and binarizes
  them (``torch.bernoulli``) on the host, reading the loss every 100 steps;
  timed only if torch imports (``pip install torch``).

* ``independent_products_limit``: the stricter limit, each of those products
  timed alone in a loop of its own and the times summed. It is timed at the
  start of every repeat of the runner (each product the best of
  ``LIMIT_REPEATS`` loops), so that each runner call has a limit measured
  seconds before it on the machine as it was then; the reported limit is each
  product's best over all repeats.

* ``families``: the runner loop (batch 100, the largest k) of each family of
  ``--families`` (a posterior or prior variant of ``experiments/configs/vae.py``;
  every flow with ``--flow_steps`` maps, so that the flows' times compare),
  interleaved within each repeat, beside the Gaussian's. ``coupling_affine`` is
  the coupling posterior with affine layers in place of its splines (what the
  spline costs).

Each vae_jax and torch figure also appears as a fraction of ``matmul_limit``
and of ``independent_products_limit``. The runner's figures also appear as
``paired_fraction_of_independent_limit``: per repeat, its rate over the limit
of the same repeat, and the median over repeats (this VM's speed drifts by
10-20% within minutes, which moves a ratio of two figures measured minutes
apart); the chained products get the same per-repeat fraction,
``chained_fraction_of_independent_limit``: the ceiling of a step that did
nothing but its products. ``target`` checks the issue's goal on those paired medians: the runner
loop at >= 60% of the independent-products limit at batch 100, with the
largest k, for each of the three runner figures.

  python scripts/benchmarks/bench_vae_step.py                        # batch 100 and 1000, k = 1, 10, 50
  python scripts/benchmarks/bench_vae_step.py --batch_sizes=100 --steps=200 --repeats=1 --ks=1,10
  python scripts/benchmarks/bench_vae_step.py --only_families --ks=50 \
      --families=gaussian,iaf,coupling,coupling_affine --flow_steps=2   # the families alone

``--steps`` is the steps per measurement at batch 100; batch b runs
steps * 100 / b of them (the same number of examples). Prints one JSON object.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import tempfile
import time
from typing import Callable, NamedTuple

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import vae as vae_config
from vae_jax import data as data_lib
from vae_jax.training import feed as feed_lib
from vae_jax.training import optim
from vae_jax import sharding
from vae_jax.training import step as step_lib
from vae_jax import tasks
from vae_jax.training import trainer
import machine  # this folder (scripts/benchmarks/) is on sys.path
import step_products

_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["100", "1000"], "Batch sizes to time.")
_KS = flags.DEFINE_list("ks", ["1", "10", "50"], "train.steps_per_jit values of the runner loop.")
_STEPS = flags.DEFINE_integer("steps", 1000, "Steps per measurement at batch 100; batch b "
                              "runs steps * 100 / b (the same number of examples).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Measurements per setting; the median is reported.")
_TORCH = flags.DEFINE_bool("torch", True, "Time the PyTorch eager reference if torch imports.")
_FAMILIES = flags.DEFINE_list(
    "families", ["gaussian", "iaf", "coupling", "vamp"],
    "Posterior/prior families whose runner loop (batch 100, the largest k) is timed beside "
    "the Gaussian: gaussian, planar, iaf, coupling (spline coupling layers), "
    "coupling_affine (the same with affine layers), mog (10), vamp (500 pseudo-inputs). "
    "Empty: skip.")
_FLOW_STEPS = flags.DEFINE_integer(
    "flow_steps", 2, "Maps of every flow family of --families (the same for each, so that "
    "their times compare); 0: each variant's own (planar 4, iaf 2, coupling 4).")
_ONLY_FAMILIES = flags.DEFINE_bool("only_families", False,
                                   "Time only the families (no batch sizes, limit, torch).")

# The family variants of experiments/configs/vae.py that --families names, and the
# coupling layers' transformer where it is not the family's own (the spline):
# vae_jax.families.posteriors.coupling.TRANSFORM, set while that model is built.
FAMILY_VARIANTS = {"gaussian": "", "planar": "planar", "iaf": "iaf", "coupling": "coupling",
                   "coupling_affine": "coupling", "mog": "mog", "vamp": "vamp"}
COUPLING_TRANSFORMS = {"coupling_affine": "affine"}

REFERENCE_BATCH = 100       # --steps counts steps at this batch size
TARGET_FRACTION = 0.6       # the target: runner loop >= 60% of the independent limit
LIMIT_REPEATS = 2           # loops per product in each round's limit (the best)

NOTES = {
    "matmul_limit": "The 20 matrix products of one training step (forward, weight and input "
                    "gradients; float32, the model's shapes), N steps in one lax.fori_loop: the "
                    "machine's limit for this model (the best of the repeats before the runner "
                    "and of one loop per runner repeat; every other figure is a median). "
                    "flop_per_step counts 2 per multiply-add.",
    "independent_products_limit": "The same products, each alone in a fori_loop of its own, "
                                  "the times summed; timed at the start of every repeat of "
                                  "the runner (best of LIMIT_REPEATS loops per product), the "
                                  "reported limit being each product's best over all repeats.",
    "chained_fraction_of_independent_limit": "Per repeat: the chained products' loop, timed "
                                             "after the independent limit of the same "
                                             "repeat, as a fraction of it; median over "
                                             "repeats: the step's ceiling if it were its "
                                             "products alone.",
    "paired_fraction_of_independent_limit": "Per repeat: the runner figure times the seconds "
                                            "per step of the limit timed at the start of the "
                                            "same repeat; median over repeats. The target is "
                                            "checked on these medians.",
    "vae_jax_runner": "trainer.train on the default config (batch b, num_steps S, "
                      "steps_per_jit k, log_every 100, eval/checkpoint only at the end), fresh "
                      "workdir, compilation from the persistent cache. trainer_steps_per_s: "
                      "TrainResult.steps_per_s (excludes the first dispatch and host time at "
                      "log/eval/checkpoint boundaries). wall_steps_per_s: S / seconds of the "
                      "whole call. loop_steps_per_s: S / (call seconds - fixed_cost_s), "
                      "fixed_cost_s being the same call with num_steps=0 (setup, checkpoint, "
                      "final evaluation); it still counts the step program's tracing, cache "
                      "load and first dispatch. mean_steps_per_dispatch: dispatches are also "
                      "cut at log, eval, checkpoint and epoch boundaries. final_eval_neg_elbo: "
                      "the run's final evaluation, equal for every k (the trainer runs the "
                      "same steps whatever k).",
    "vae_jax_step_fn": "The jitted vae_jax.training.step.train_step alone, one step per dispatch, on 8 "
                       "batches binarized once and uploaded beforehand (no feed, no "
                       "binarization, no logging).",
    "families": "trainer.train as vae_jax_runner (batch 100, the largest k), one config per "
                "family: its experiments/configs/vae.py variant, flows with flow_steps maps "
                "(None: the variant's own). trainer_steps_per_s and ms_per_step: the median "
                "of the repeats' TrainResult.steps_per_s (rounds_steps_per_s), the families "
                "interleaved within each repeat; time_per_step_vs_gaussian: the Gaussian's "
                "median rate over this one's; paired_time_vs_gaussian: the same ratio in "
                "each repeat (rounds) and its median. coupling_transform: the coupling layers' "
                "transformer (coupling_affine: affine in place of the family's spline).",
    "torch_eager": "PyTorch eager: the same model and Adam, with per-step row selection "
                   "(a torch.randperm per epoch) and torch.bernoulli binarization on the host, "
                   "loss read every 100 steps.",
}


def _median(values) -> float:
  return float(np.median(values))


def _steps_at(batch_size: int) -> int:
  return max(1, round(_STEPS.value * REFERENCE_BATCH / batch_size))


def _config(batch_size: int, num_steps: int, steps_per_jit: int, variants: str = ""):
  """The default VAE config (with ``variants``), run for ``num_steps`` with only the
  final eval and checkpoint."""
  config = vae_config.get_config(variants)
  config.train.update(batch_size=batch_size, num_steps=num_steps, steps_per_jit=steps_per_jit,
                      eval_every=max(num_steps, 1), checkpoint_every=max(num_steps, 1))
  return config


def _dispatches(config, ds: data_lib.Dataset) -> int:
  """How many dispatches ``trainer.train`` makes (its ``next_stop`` rule)."""
  t = config.train
  periods = (t.log_every, t.eval_every, t.checkpoint_every,
             trainer.steps_per_epoch(ds, t.batch_size))
  step, count = 0, 0
  while step < t.num_steps:
    step = trainer.next_stop(step, t.num_steps, t.steps_per_jit, periods)
    count += 1
  return count


def _feed_kind(config, ds: data_lib.Dataset) -> str:
  """The feed ``trainer.train`` picks for ``config`` (``feed_lib.make_feed``)."""
  b = int(config.train.batch_size)
  stream = data_lib.BatchStream(ds.train_x, b, seed=0)
  shardings = sharding.make_shardings({"config.train.batch_size": b})
  return feed_lib.make_feed(config.train.feed, stream, shardings,
                            int(config.train.steps_per_jit)).kind


def _timed_train(config, ds: data_lib.Dataset) -> tuple[float, trainer.TrainResult]:
  """Seconds of one whole ``trainer.train`` call in a fresh workdir, and its result."""
  task = tasks.build_task(config, ds.image_shape, len(ds.train_x))
  workdir = tempfile.mkdtemp(prefix="bench_vae_step_")
  try:
    t0 = time.perf_counter()
    result = trainer.train(task, config, ds, workdir)
    return time.perf_counter() - t0, result
  finally:
    shutil.rmtree(workdir, ignore_errors=True)


# ----------------------------------------------------------------------------
# The measurements.
# ----------------------------------------------------------------------------


def bench_runner(ds: data_lib.Dataset, batch_size: int, steps: int, ks: list[int],
                 repeats: int, products: step_products.IndependentProducts,
                 chained: ChainedProducts) -> dict:
  """``trainer.train`` for each k; settings interleaved within each repeat.

  Each repeat (round) first times the independent products
  (``LIMIT_REPEATS`` loops each, the best) and the chained ones (one loop),
  so every runner figure also has a fraction of a limit measured seconds,
  not minutes, before it: the ``paired_fraction_of_independent_limit`` of
  each round, and their median; the chained products get the same fraction
  (``chained_fraction_of_independent_limit``): what the step would reach if
  it were its products alone.
  """
  fixed = _config(batch_size, 0, 1)
  configs = {k: _config(batch_size, steps, k) for k in ks}
  for config in [fixed, *configs.values()]:     # compile once, filling the persistent cache
    _timed_train(config, ds)
  fixed_s, secs, rates, evals = [], {k: [] for k in ks}, {k: [] for k in ks}, {}
  limit_rounds, chained_s = [], []
  for _ in range(repeats):
    limit_rounds.append(step_products.time_independent(products, LIMIT_REPEATS))
    chained_s.append(chained.seconds_per_step())
    fixed_s.append(_timed_train(fixed, ds)[0])
    for k, config in configs.items():
      s, result = _timed_train(config, ds)
      secs[k].append(s)
      rates[k].append(result.steps_per_s if result.steps_per_s else float("nan"))
      evals[k] = result.final_eval["neg_elbo"]
  fixed_cost = _median(fixed_s)
  limit_s = [sum(r) for r in limit_rounds]     # seconds per step of each round's limit
  out = {"num_steps": steps, "feed": _feed_kind(configs[ks[0]], ds),
         "fixed_cost_s": fixed_cost, "limit_rounds_ms": [t * 1e3 for t in limit_s],
         "independent_limit_seconds": [min(p) for p in zip(*limit_rounds)],
         "chained_limit_seconds": chained_s,
         "chained_fraction_of_independent_limit": {
             "median": _median([t / c for t, c in zip(limit_s, chained_s)]),
             "rounds": [t / c for t, c in zip(limit_s, chained_s)]},
         "k": {}}
  for k, config in configs.items():
    call = _median(secs[k])
    loop = call - fixed_cost
    per_round = {
        "trainer": [r * t for r, t in zip(rates[k], limit_s)],
        "wall": [steps / c * t for c, t in zip(secs[k], limit_s)],
        "loop": [steps / (c - f) * t if c > f else float("nan")
                 for c, f, t in zip(secs[k], fixed_s, limit_s)]}
    out["k"][str(k)] = {
        "trainer_steps_per_s": _median(rates[k]),
        "wall_steps_per_s": steps / call,
        "loop_steps_per_s": steps / loop if loop > 0 else float("nan"),
        "train_call_s": call,
        "mean_steps_per_dispatch": steps / _dispatches(config, ds),
        "final_eval_neg_elbo": evals[k],
        "paired_fraction_of_independent_limit": {
            m: {"median": _median(v), "rounds": v} for m, v in per_round.items()}}
  return out


def _family_config(family: str, steps: int, k: int, flow_steps: int):
  """The runner's config of ``family`` (its vae.py variant; a flow with ``flow_steps``
  maps unless 0)."""
  config = _config(REFERENCE_BATCH, steps, k, FAMILY_VARIANTS[family])
  if flow_steps and config.model.flow_steps is not None:
    config.model.flow_steps = flow_steps
  return config


@contextlib.contextmanager
def _transform(family: str):
  """While ``family``'s model is built: its coupling layers' transformer, if not the spline."""
  if family not in COUPLING_TRANSFORMS:
    yield
    return
  from vae_jax.families.posteriors import coupling  # pylint: disable=g-import-not-at-top
  saved, coupling.TRANSFORM = coupling.TRANSFORM, COUPLING_TRANSFORMS[family]
  try:
    yield
  finally:
    coupling.TRANSFORM = saved


def _timed_family(family: str, config, ds: data_lib.Dataset):
  with _transform(family):
    return _timed_train(config, ds)


def bench_families(ds: data_lib.Dataset, families: list[str], steps: int, k: int,
                   repeats: int, flow_steps: int) -> dict:
  """The whole runner loop (batch 100, k fused steps) for each family, interleaved
  within each repeat; steps/s, ms per step and the ratio of the Gaussian's time per
  step, each a median over the repeats."""
  configs = {f: _family_config(f, steps, k, flow_steps) for f in families}
  for f, config in configs.items():          # compile once, filling the persistent cache
    _timed_family(f, config, ds)
  rates = {f: [] for f in families}
  for _ in range(repeats):
    for f, config in configs.items():
      rates[f].append(_timed_family(f, config, ds)[1].steps_per_s)
  out = {"batch_size": REFERENCE_BATCH, "k": k, "num_steps": steps, "repeats": repeats,
         "flow_steps": flow_steps or None, "families": {}}
  base = _median(rates["gaussian"]) if "gaussian" in rates else None
  for f in families:
    rate = _median(rates[f])
    out["families"][f] = {
        "variant": FAMILY_VARIANTS[f] or "(default)", "trainer_steps_per_s": rate,
        "ms_per_step": 1e3 / rate, "rounds_steps_per_s": rates[f],
        "flow_steps": configs[f].model.flow_steps,
        "coupling_transform": COUPLING_TRANSFORMS.get(
            f, "spline" if FAMILY_VARIANTS[f] == "coupling" else None),
        "time_per_step_vs_gaussian": base / rate if base else None}
    if base:     # the same ratio per round (this VM's speed drifts between rounds)
      paired = [g / r for g, r in zip(rates["gaussian"], rates[f])]
      out["families"][f]["paired_time_vs_gaussian"] = {"median": _median(paired),
                                                       "rounds": paired}
  return out


def bench_step_fn(ds: data_lib.Dataset, batch_size: int, steps: int, repeats: int) -> dict:
  """The jitted ``step_lib.train_step`` (vae_jax.training.step), one step per dispatch."""
  config = _config(batch_size, steps, 1)
  task = tasks.build_task(config, ds.image_shape, len(ds.train_x))
  tx = optim.make_optimizer(config.train, trainer.steps_per_epoch(ds, batch_size))
  state = trainer.create_train_state(jax.random.key(0), jax.random.key(1), task, tx)
  step = jax.jit(functools.partial(step_lib.train_step, task=task, tx=tx), donate_argnums=0)
  batches = [jnp.asarray(b) for b in step_products.binarized_batches(ds, batch_size)]
  t0 = time.perf_counter()
  state, metrics = step(state, batches[0])
  jax.block_until_ready(state)
  compile_s = time.perf_counter() - t0
  rates = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    for i in range(steps):
      state, metrics = step(state, batches[i % len(batches)])
    jax.block_until_ready(state)
    rates.append(steps / (time.perf_counter() - t0))
  return {"steps_per_s": _median(rates), "compile_s": compile_s,
          "final_loss": float(metrics["loss"])}


class ChainedProducts(NamedTuple):
  """The step's products chained in one compiled loop (``chained_products``)."""
  seconds_per_step: Callable[[], float]   # one timed loop of ``steps`` steps
  flop_per_step: int
  products_per_step: int


def chained_products(ds: data_lib.Dataset, batch_size: int, steps: int) -> ChainedProducts:
  """``steps`` steps' matrix products in one ``fori_loop``, compiled and warmed."""
  task = tasks.build_task(vae_config.get_config(), ds.image_shape)
  kernels = step_products.model_kernels(task.init_params(jax.random.key(0)))
  x = jnp.asarray(step_products.binarized_batches(ds, batch_size, 1)[0])

  @functools.partial(jax.jit, static_argnums=3)
  def loop(x, kernels, zero, n):
    def body(_, scale):   # scale stays 1.0, but XLA cannot know: every product is live
      grads = step_products.matmul_products(x * scale, *kernels)
      return 1.0 + zero * sum(jnp.sum(g) for g in grads)
    return jax.lax.fori_loop(0, n, body, jnp.ones((), jnp.float32))

  zero = jnp.zeros((), jnp.float32)
  compiled = loop.lower(x, kernels, zero, steps).compile()
  jax.block_until_ready(compiled(x, kernels, zero))

  def seconds_per_step() -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(x, kernels, zero))
    return (time.perf_counter() - t0) / steps

  return ChainedProducts(seconds_per_step, step_products.flop_per_step(batch_size, *kernels),
                         len(re.findall(r"\bdot\(", compiled.as_text())))


def matmul_limit(chained: ChainedProducts, seconds: list[float]) -> dict:
  """The chained limit from its timed loops: the best (a limit, and the
  conservative side for the fractions)."""
  step_s = min(seconds)
  return {"steps_per_s": 1.0 / step_s, "ms_per_step": step_s * 1e3,
          "flop_per_step": chained.flop_per_step,
          "gflop_per_s": chained.flop_per_step / step_s / 1e9,
          "products_per_step": chained.products_per_step}


def bench_torch(ds: data_lib.Dataset, batch_size: int, steps: int, repeats: int) -> dict | None:
  """A plain PyTorch eager loop; None if torch does not import."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  from torch import nn  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  log_every = int(vae_config.get_config().train.log_every)

  class TorchVAE(nn.Module):

    def __init__(self):
      super().__init__()
      self.enc = nn.Sequential(nn.Linear(784, 200), nn.ReLU(), nn.Linear(200, 200), nn.ReLU())
      self.mean = nn.Linear(200, 50)
      self.log_scale = nn.Linear(200, 50)
      self.dec = nn.Sequential(nn.Linear(50, 200), nn.ReLU(), nn.Linear(200, 200), nn.ReLU(),
                               nn.Linear(200, 784))

    def forward(self, x):
      h = self.enc(x)
      mean, log_scale = self.mean(h), self.log_scale(h)
      z = mean + torch.exp(log_scale) * torch.randn_like(mean)
      logits = self.dec(z)
      recon = -nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
      kl = 0.5 * (mean**2 + torch.exp(2 * log_scale) - 1).sum(-1) - log_scale.sum(-1)
      return -(recon - kl).mean()

  model = TorchVAE()
  opt = torch.optim.Adam(model.parameters(), lr=vae_config.get_config().train.learning_rate)
  train_x = torch.from_numpy(ds.train_x)
  per_epoch = len(train_x) // batch_size

  def batches():   # shuffled rows, a permutation per epoch, binarized at each step
    while True:
      perm = torch.randperm(len(train_x))
      for i in range(per_epoch):
        yield torch.bernoulli(train_x[perm[i * batch_size:(i + 1) * batch_size]])

  def run(n, stream):
    loss = None
    for t in range(n):
      opt.zero_grad(set_to_none=True)
      loss = model(next(stream))
      loss.backward()
      opt.step()
      if (t + 1) % log_every == 0:
        loss.item()
    return loss.item()

  stream = batches()
  run(10, stream)   # warm-up
  rates = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    loss = run(steps, stream)
    rates.append(steps / (time.perf_counter() - t0))
  return {"steps_per_s": _median(rates), "final_loss": loss,
          "torch_version": torch.__version__, "torch_threads": torch.get_num_threads()}


# ----------------------------------------------------------------------------


def bench_batch(ds: data_lib.Dataset, batch_size: int, ks: list[int]) -> dict:
  steps, repeats = _steps_at(batch_size), _REPEATS.value
  chained = chained_products(ds, batch_size, steps)
  first = [chained.seconds_per_step() for _ in range(repeats)]
  products = step_products.independent_products(ds, batch_size, steps)
  runner = bench_runner(ds, batch_size, steps, ks, repeats, products, chained)
  # The chained limit: its best over the loops before the runner and in every round.
  limit = matmul_limit(chained, first + runner.pop("chained_limit_seconds"))
  # The limit: each product's best over every round.
  independent = step_products.independent_limit(products, runner.pop("independent_limit_seconds"))
  for row in runner["k"].values():
    row["fraction_of_matmul_limit"] = {
        m: row[f"{m}_steps_per_s"] / limit["steps_per_s"] for m in ("trainer", "wall", "loop")}
    row["fraction_of_independent_limit"] = {
        m: row[f"{m}_steps_per_s"] / independent["steps_per_s"]
        for m in ("trainer", "wall", "loop")}
  out = {"steps": steps, "matmul_limit": limit, "independent_products_limit": independent,
         "vae_jax_runner": runner,
         "vae_jax_step_fn": bench_step_fn(ds, batch_size, steps, repeats)}
  if _TORCH.value and (ref := bench_torch(ds, batch_size, steps, repeats)) is not None:
    out["torch_eager"] = ref
  for name in ("vae_jax_step_fn", "torch_eager"):
    if name in out:
      out[name]["fraction_of_matmul_limit"] = out[name]["steps_per_s"] / limit["steps_per_s"]
  return out


def _target(results: dict, ks: list[int]) -> dict | None:
  """The issue's target at batch 100 with the most fused steps, per runner figure:
  the median over rounds of the runner's rate over the same round's limit."""
  if str(REFERENCE_BATCH) not in results:
    return None
  k = str(max(ks))
  paired = results[str(REFERENCE_BATCH)]["vae_jax_runner"]["k"][k][
      "paired_fraction_of_independent_limit"]
  fractions = {m: v["median"] for m, v in paired.items()}
  return {"batch_size": REFERENCE_BATCH, "k": int(k), "want_fraction": TARGET_FRACTION,
          "of": "independent_products_limit, paired by round (median over rounds)",
          "got": fractions, "met": {m: f >= TARGET_FRACTION for m, f in fractions.items()}}


def main(argv):
  del argv
  ks = [int(k) for k in _KS.value]
  cache_dir = tempfile.mkdtemp(prefix="bench_vae_step_xla_cache_")
  jax.config.update("jax_compilation_cache_dir", cache_dir)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  try:
    config = vae_config.get_config()
    ds = tasks.load_data(config)
    out = {"benchmark": "vae_train_runner_loop",
           "model": "mlp 784-200-200-50 (two Dense(50) heads), bernoulli, adam 1e-3; "
                    f"{ds.name}, {config.data.binarize} binarization",
           "machine": machine.describe(),
           "flags": {"batch_sizes": [int(b) for b in _BATCH_SIZES.value], "ks": ks,
                     "steps": _STEPS.value, "repeats": _REPEATS.value, "torch": _TORCH.value,
                     "families": list(_FAMILIES.value), "flow_steps": _FLOW_STEPS.value,
                     "only_families": _ONLY_FAMILIES.value},
           "notes": NOTES}
    if not _ONLY_FAMILIES.value:
      out["results"] = {b: bench_batch(ds, int(b), ks) for b in _BATCH_SIZES.value}
      out["target"] = _target(out["results"], ks)
    if _FAMILIES.value:
      out["families"] = bench_families(ds, list(_FAMILIES.value), _STEPS.value, max(ks),
                                       _REPEATS.value, _FLOW_STEPS.value)
    out["machine"]["load_average_at_end"] = os.getloadavg()[0]
  finally:
    shutil.rmtree(cache_dir, ignore_errors=True)
  print(json.dumps(out, indent=2))


if __name__ == "__main__":
  app.run(main)
