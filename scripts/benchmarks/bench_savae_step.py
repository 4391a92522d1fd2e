r"""The semi-amortized VAE's training step: its time against refine_steps, scan or unrolled.

The default config's VAE (``experiments/configs/vae.py``: MLP 784-200-200-50,
Bernoulli, one reparametrized sample, Adam, batch 100 of ``mnist_5k``) with
``model.refine_steps`` = K gradient steps on each example's q
(``vae_jax.inference.refinement``), for each K of ``--refine_steps`` (0 is the
plain VAE, the reference), each traced two ways:

* ``scan``: the K steps in one ``lax.scan`` (one step's program, its reverse
  pass a second scan);
* ``python``: the K steps unrolled by a Python loop (K copies of the step in
  one program, which XLA can fuse across steps).

``refinement.LOOP`` is set while each model is built. Every variant is the jitted
``vae_jax.training.step.train_step`` (the state donated, one step per dispatch, on
8 batches binarized once beforehand), compiled and warmed, then timed for
``--steps`` steps in each of ``--rounds`` rounds with the variants interleaved
(this VM's speed drifts within minutes). Reported per variant: the median ms per
step, its 90% bootstrap interval, its time over the plain VAE's (paired by
round), and the compile seconds; per K, python's time over scan's (paired by
round). ``stopped`` adds K = 5 with ``refine_gradient = stopped`` (no
differentiation through the steps). Prints one JSON object.

  python scripts/benchmarks/bench_savae_step.py
  python scripts/benchmarks/bench_savae_step.py --refine_steps=0,1,5 --steps=50 --rounds=2
"""

from __future__ import annotations

import functools
import json
import os
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import vae as vae_config
from vae_jax import tasks
from vae_jax.inference import refinement
from vae_jax.models import vae as vae_model
from vae_jax.training import optim
from vae_jax.training import step as step_lib
from vae_jax.training import trainer
import machine  # this folder (scripts/benchmarks/) is on sys.path
import paired
import step_products

_REFINE_STEPS = flags.DEFINE_list("refine_steps", ["0", "1", "5", "20"],
                                  "model.refine_steps values to time (0: the plain VAE).")
_LOOPS = flags.DEFINE_list("loops", ["scan", "python"], "How the K steps are traced.")
_STEPS = flags.DEFINE_integer("steps", 100, "Training steps per timed measurement.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Interleaved rounds; medians are reported.")
_STOPPED = flags.DEFINE_bool("stopped", True, "Also time K = 5 with refine_gradient=stopped.")


def _variant(config, ds, loop: str):
  """(step function, initial state) of ``config``, its refinement traced with ``loop``."""
  saved, refinement.LOOP = refinement.LOOP, loop
  try:
    task = vae_model.build(config, ds.image_shape, len(ds.train_x))
  finally:
    refinement.LOOP = saved
  tx = optim.make_optimizer(config.train, trainer.steps_per_epoch(ds, config.train.batch_size))
  state = trainer.create_train_state(jax.random.key(0), jax.random.key(1), task, tx)
  return jax.jit(functools.partial(step_lib.train_step, task=task, tx=tx), donate_argnums=0), state


def main(argv):
  del argv
  base = vae_config.get_config()
  ds = tasks.load_data(base)
  batches = [jnp.asarray(b) for b in step_products.binarized_batches(ds, base.train.batch_size)]
  ks = [int(k) for k in _REFINE_STEPS.value]
  specs = {}
  for k in ks:
    for loop in (_LOOPS.value if k else ["scan"]):
      specs["plain" if not k else f"K={k} {loop}"] = (k, loop, "unrolled")
  if _STOPPED.value:
    specs["K=5 scan, stopped"] = (5, "scan", "stopped")
  out = {"benchmark": "savae_train_step",
         "model": "the default VAE (mlp 784-200-200-50, bernoulli, adam 1e-3), batch "
                  f"{base.train.batch_size} of {ds.name}, refine_lr {base.model.refine_lr}",
         "machine": machine.describe(),
         "flags": {"refine_steps": ks, "loops": list(_LOOPS.value), "steps": _STEPS.value,
                   "rounds": _ROUNDS.value, "stopped": _STOPPED.value},
         "variants": {}}
  runners = {}
  for name, (k, loop, gradient) in specs.items():
    config = vae_config.get_config()
    config.model.update(refine_steps=k, refine_gradient=gradient)
    step, state = _variant(config, ds, loop)
    t0 = time.perf_counter()
    state, metrics = step(state, batches[0])
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - t0
    holder = {"state": state}

    def run(step=step, holder=holder):
      t0 = time.perf_counter()
      s = holder["state"]
      for i in range(_STEPS.value):
        s, m = step(s, batches[i % len(batches)])
      jax.block_until_ready(s)
      holder["state"], holder["loss"] = s, float(m["loss"])
      return time.perf_counter() - t0

    run()                                          # warm
    runners[name] = run
    out["variants"][name] = {"refine_steps": k, "loop": loop, "refine_gradient": gradient,
                             "compile_s": round(compile_s, 3)}
  secs = paired.interleaved(runners, _ROUNDS.value, shuffle_seed=0)
  ms = {n: [1e3 * s / _STEPS.value for s in v] for n, v in secs.items()}
  for name, v in ms.items():
    entry = out["variants"][name]
    entry["ms_per_step"] = float(np.median(v))
    entry["ms_per_step_interval"] = paired.median_interval(v)
    entry["rounds_ms"] = [round(x, 3) for x in v]
    entry["time_vs_plain"] = float(np.median(np.asarray(v) / np.asarray(ms["plain"])))
  out["python_over_scan"] = {
      str(k): float(np.median(np.asarray(ms[f"K={k} python"]) / np.asarray(ms[f"K={k} scan"])))
      for k in ks if k and f"K={k} python" in ms and f"K={k} scan" in ms}
  out["machine"]["load_average_at_end"] = os.getloadavg()[0]
  print(json.dumps(out, indent=2))


if __name__ == "__main__":
  app.run(main)
