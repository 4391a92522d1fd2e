r"""Where the default VAE's training step spends its time, from a profile.

The program is the one the runner executes (``bench_step_levers.build``: the
trainer's ``train_steps`` loop on the default config, device feed, dynamic
binarization, Adam). It runs ``--dispatches`` dispatches of ``--steps``
steps under ``jax.profiler``; every XLA operation the trace records is then
given to one part of the step (``PARTS``):

* ``matrix products``: ``dot`` operations and the YNNPACK fusions around one;
* ``batch gather``, ``binarization``, ``gradient norm``, ``optimizer (Adam)``:
  the operations under the trainer's named scopes ``feed``, ``binarize``,
  ``grad_norm`` and ``optimizer``;
* ``loss and gradient, element-wise``: every other operation (the draws of
  eps, the activations, the Bernoulli log-likelihood, their derivatives,
  transposes and bias sums).

XLA:CPU runs independent operations on both cores at once, so each instant
is shared equally among the operations running in it: the parts then add up
to the time some operation was running, and ``between operations`` (loop
control, dispatch, thread hand-offs) is the rest of the step. The same
products, each compiled alone in a loop of its own (the limit of
``bench_vae_step.py``), are timed in the same run for comparison:

  python scripts/benchmarks/profile_step.py
  python scripts/benchmarks/profile_step.py --steps=40 --dispatches=5

Prints one JSON object.
"""

from __future__ import annotations

import collections
import json
import os
import re
import tempfile
import time
from typing import Iterable, NamedTuple

from absl import app
from absl import flags
import jax

from experiments.configs import vae as vae_config
from vae_jax import tasks
import bench_step_levers  # the runner's program, as the levers build it
import machine
import paired
import step_products

# --steps (per dispatch) and --dispatches (traced, and timed untraced) are
# bench_step_levers' flags, defined when it is imported.
_LIMIT_REPEATS = flags.DEFINE_integer("limit_repeats", 3,
                                      "Loops per product alone; the best is kept.")

PRODUCTS = "matrix products"
ELEMENTWISE = "loss and gradient, element-wise"
BETWEEN = "between operations"
SCOPES = {"feed": "batch gather", "binarize": "binarization", "grad_norm": "gradient norm",
          "optimizer": "optimizer (Adam)"}
PARTS = (PRODUCTS, ELEMENTWISE, *SCOPES.values(), BETWEEN)
_CONTROL = {"while", "conditional", "call", "tuple", "get-tuple-element", "parameter",
            "bitcast"}   # no kernel of their own, or their time is their body's

_INSTRUCTION = re.compile(
    r"^\s*(ROOT )?%([\w.\-]+) = (\([^=]*?\)|\S+) ([\w\-]+)\((.*)$")
_COMPUTATION = re.compile(r"^(?:ENTRY )?%([\w.\-]+) ")


class Op(NamedTuple):
  opcode: str
  op_name: str        # the metadata's name stack ("" when absent)
  root_opcode: str    # for a fusion: its computation's root opcode; else opcode
  inner_names: tuple = ()   # for a fusion: the name stacks inside it


def hlo_ops(hlo_text: str) -> dict[str, Op]:
  """The instructions of a compiled HLO module that run as operations of their
  own, by name: those of the entry computation and of loop and branch bodies,
  not those inside a fusion or a reduction's computation."""
  raw, roots, inner, computation = {}, {}, set(), None
  names = collections.defaultdict(list)   # computation -> the name stacks in it
  for line in hlo_text.splitlines():
    m = _COMPUTATION.match(line)
    if m and line.rstrip().endswith("{"):
      computation = m.group(1)
      continue
    m = _INSTRUCTION.match(line)
    if not m:
      continue
    root, name, _, opcode, rest = m.groups()
    calls = re.search(r"calls=%([\w.\-]+)", rest)
    inner.update(re.findall(r"(?:calls|to_apply)=%([\w.\-]+)", rest))
    op_name = re.search(r'op_name="([^"]*)"', rest)
    op_name = op_name.group(1) if op_name else ""
    raw[name] = (computation, opcode, op_name, calls.group(1) if calls else None)
    if op_name:
      names[computation].append(op_name)
    if root:
      roots[computation] = (opcode, op_name)
  ops = {}
  for name, (computation, opcode, op_name, calls) in raw.items():
    if computation in inner:
      continue
    root_opcode, root_name = roots.get(calls, (opcode, op_name))
    ops[name] = Op(opcode, op_name or root_name, root_opcode,
                   tuple(names[calls]) if calls else ())
  return ops


def part_of(op: Op) -> str | None:
  """The part of the step an operation belongs to (None: not timed on its own)."""
  if op.opcode in _CONTROL:
    return None
  if op.root_opcode == "dot" or op.opcode == "dot":
    return PRODUCTS
  # Its own name stack; a fusion with none at all (YNNPACK's reduce-windows)
  # takes the first scoped one inside it. A fusion that carries a name keeps
  # it: the loss's gradient recomputes the binarization inside its fusion.
  for op_name in (op.op_name,) if op.op_name else op.inner_names:
    scopes = op_name.split("/")
    for scope, part in SCOPES.items():
      if scope in scopes:
        return part
  return ELEMENTWISE


def attribute(intervals: Iterable[tuple[int, int, str]]) -> dict[str, float]:
  """Time per label, each instant shared equally among the intervals covering it.

  intervals: (start, end, label). The values add up to the length of the
  intervals' union.
  """
  edges = []
  for start, end, label in intervals:
    if end > start:
      edges += [(start, 1, label), (end, -1, label)]
  edges.sort(key=lambda e: (e[0], e[1]))
  out, active, last = collections.defaultdict(float), collections.Counter(), None
  for t, change, label in edges:
    n = sum(active.values())
    if n and last is not None and t > last:
      for running, count in active.items():
        out[running] += (t - last) * count / n
    active[label] += change
    if not active[label]:
      del active[label]
    last = t
  return dict(out)


def trace_events(path: str) -> list[tuple[int, int, str]]:
  """(start_ns, end_ns, name) of every event of a saved trace, every plane and thread."""
  data = jax.profiler.ProfileData.from_file(path)
  return [(e.start_ns, e.end_ns, e.name)
          for plane in data.planes for line in plane.lines for e in line.events]


def profile(steps: int, dispatches: int, limit_repeats: int) -> dict:
  config = vae_config.get_config()
  ds = tasks.load_data(config)
  # Compiled afresh: XLA's persistent cache keys ignore the named scopes, so an
  # entry compiled before they existed would come back without them.
  cache = jax.config.jax_enable_compilation_cache
  jax.config.update("jax_enable_compilation_cache", False)
  try:
    program = bench_step_levers.build(None, config, ds, steps)
  finally:
    jax.config.update("jax_enable_compilation_cache", cache)
  state = paired.copy_tree(program.state0)

  def run(state):
    for _ in range(dispatches):
      state, _ = program.compiled(state, steps)
    return jax.block_until_ready(state)

  state = run(state)                       # warm
  t0 = time.perf_counter()
  state = run(state)
  untraced_s = time.perf_counter() - t0
  with tempfile.TemporaryDirectory() as logdir:
    jax.profiler.start_trace(logdir)
    t0 = time.perf_counter()
    state = run(state)
    traced_s = time.perf_counter() - t0
    jax.profiler.stop_trace()
    (path,) = [os.path.join(d, f) for d, _, fs in os.walk(logdir) for f in fs
               if f.endswith(".xplane.pb")]
    events = trace_events(path)

  ops = hlo_ops(program.hlo_text)
  part = {name: part_of(op) for name, op in ops.items()}   # None: not timed on its own
  unnamed = [scope for scope, p in SCOPES.items() if p not in part.values()]
  if unnamed:
    raise RuntimeError(f"no operation of the compiled step is under the named scope(s) "
                       f"{unnamed}: was it loaded from a persistent-cache entry compiled "
                       "before vae_jax named them? (the cache key ignores names)")
  n = steps * dispatches
  timed = [(s, e, name) for s, e, name in events if part.get(name)]
  if not timed:
    raise RuntimeError("the trace has no event named after an operation of the program")
  window = max(e for _, e, _ in timed) - min(s for s, _, _ in timed)
  shares = attribute((s, e, part[name]) for s, e, name in timed)
  busy = sum(shares.values())
  shares[BETWEEN] = window - busy
  own = collections.Counter()   # each operation's own duration, not shared
  for s, e, name in timed:
    own[name] += e - s
  product_names = [name for name in own if part[name] == PRODUCTS]
  products_own = sum(own[name] for name in product_names)

  alone = step_products.independent_products(ds, bench_step_levers.BATCH_SIZE, 200)
  alone_ms = sum(step_products.time_independent(alone, limit_repeats)) * 1e3
  ms = lambda ns: ns / n / 1e6
  return {
      "benchmark": "profile_step",
      "model": "default VAE config: mlp 784-200-200-50, bernoulli, adam 1e-3, batch 100; "
               "mnist_5k, device feed, dynamic binarization",
      "flags": {"steps": steps, "dispatches": dispatches, "limit_repeats": limit_repeats},
      "notes": {
          "parts": "ms per step of each part: every instant of the traced window shared "
                   "equally among the operations running in it, so the parts add up to the "
                   "window; 'between operations' is the window when none ran",
          "ms_per_step": "the same dispatches timed without the profiler (untraced) and "
                         "with it (traced)",
          "products": "in_step_own_ms: the products' own durations added (two running at "
                      "once both count); alone_ms: the same products, each compiled alone "
                      "in a loop (bench_vae_step's independent limit, best of "
                      "limit_repeats)",
      },
      "ms_per_step": {"untraced": untraced_s / n * 1e3, "traced": traced_s / n * 1e3,
                      "trace_window": ms(window)},
      "parts": [{"part": part, "ms_per_step": ms(shares.get(part, 0.0)),
                 "share": shares.get(part, 0.0) / window} for part in PARTS],
      "products": {"count": len(product_names), "in_step_own_ms": ms(products_own),
                   "in_step_shared_ms": ms(shares.get(PRODUCTS, 0.0)),
                   "alone_ms": alone_ms, "alone_count": len(alone.programs)},
      "top_operations": [
          {"name": name, "part": part[name], "own_ms_per_step": ms(v)}
          for name, v in own.most_common(12)],
  }


def main(argv):
  del argv
  machine_before = machine.describe()
  result = profile(flags.FLAGS.steps, flags.FLAGS.dispatches, _LIMIT_REPEATS.value)
  result["machine"] = {**machine_before, "load_average_at_end": os.getloadavg()[0]}
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  app.run(main)
