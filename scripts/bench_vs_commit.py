r"""The default Gaussian VAE, this working tree against an earlier commit: same machine, one run.

The project's issue asks that the default Gaussian path's training step and
IWAE-5000 evaluation stay within 5% of the code before the distribution
objects (``vae_jax.families``). This script measures both, old against new:

  python scripts/bench_vs_commit.py --ref=6644f40                 # 3 rounds of each
  python scripts/bench_vs_commit.py --ref=6644f40 --rounds=5
  python scripts/bench_vs_commit.py --ref=6644f40 --new=HEAD --train_rounds=0

"old" is ``--ref``, checked out with ``git worktree add --detach`` in a
temporary directory (removed at the end); "new" is, by default, a copy of this
working tree's files taken at the start (HEAD plus any uncommitted and
untracked files, not ignored ones; the JSON lists the uncommitted ones), so
that edits made while it runs do not leak into the later rounds; ``--new=REV``
checks out a revision instead. Every measurement
runs in its own subprocess whose working directory and PYTHONPATH are that
tree, so ``import vae_jax`` and ``import experiments`` resolve to it (checked
through ``vae_jax.__file__`` and ``experiments.__file__``, and the run stops if
not). Old and new alternate within each round, the order flipping every round
(old-new, new-old, ...), so that a drift of the machine's load hits both alike.

Measurements:

* ``train``: the runner a user runs, ``python -m experiments.main
  --config=experiments/configs/vae.py --config.train.num_steps=1000
  --config.train.eval_every=1000 --config.train.checkpoint_every=1000
  --config.eval.iw_samples=0 --workdir=TMP``; its summary.json's
  ``steps_per_s`` (the trainer's timer: it leaves out compilation, evaluation
  and checkpoints). Compared as ms per step = 1000 / steps_per_s.
* ``iwae``: a worker in each tree builds the default VAE
  (``tasks.build_vae(get_config().model, (28, 28, 1))``, ``model.init`` with
  PRNGKey(0)), loads the first ``--iwae_images`` eval images of ``mnist_5k``
  (``data.load_arrays("mnist_5k", None, binarize="static", seed=0).eval_x``)
  and times ``iwae.evaluate_iwae(..., num_samples=5000)`` after one warm-up
  call: ms per image (median of ``--iwae_repeats`` timed calls). It also
  times the jitted ``jax.value_and_grad`` of the task's loss
  (``tasks.vae_task(config, (28, 28, 1), 4500).loss_fn``) on a [100, 784]
  batch, ``--grad_calls`` calls (``grad_ms``: the step without the optimizer
  and the runner around it, for context).
* ``xla``: XLA's cost analysis (flops, transcendentals, bytes accessed) of
  the compiled programs, from the same worker (so once per round and tree;
  it does not depend on the load): ``train_grad`` (the value_and_grad above),
  ``iwae_batch`` (``iwae._iwae_batch``, batch 20, K = 5000, the default
  chunk) and ``iwae_chunk`` (the same with K = one chunk: one chunk's work,
  no loop; XLA's analysis counts a loop body once, not per trip, so
  ``iwae_batch`` is the encoder plus one chunk plus the loop's bookkeeping).
  Beside them, counts of transcendental and other ops in the optimized HLO,
  to say where a difference comes from.

Reported per quantity: each variant's values, median and min; the paired
ratios new/old of each round (times, so > 1 means new is slower), their
median and quartiles; ``within_5_percent``: the paired median <= 1.05. The
XLA counts: old, new, new/old and the same verdict. Plus a numerical check
that both trees compute the same IWAE estimates from the same parameters and
keys, and the machine (CPU, cores, load average at the start and the end).

Duration: each subprocess pays start-up (imports, the data, compilation; a
persistent JAX compilation cache per tree, in the temporary directory, trims
the later rounds' compilation). On a 2-core machine shared with other work
(load average 9-11) a runner process took 65-90 s and a worker 60-75 s, so
one round costs about 5 minutes there; about a third of that on an idle one.

Prints one JSON object (progress lines on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import machine  # scripts/machine.py: this folder is on sys.path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER_ARGS = ("--config=experiments/configs/vae.py", "--config.train.eval_every={n}",
               "--config.train.checkpoint_every={n}", "--config.train.num_steps={n}",
               "--config.eval.iw_samples=0")
COST_KEYS = ("flops", "transcendentals", "bytes accessed")
HLO_OPS = ("exponential", "log", "log-plus-one", "exponential-minus-one", "tanh", "logistic",
           "sqrt", "rsqrt", "power", "divide", "multiply", "add", "subtract", "maximum",
           "select", "compare", "dot", "reduce", "fusion", "rng-bit-generator", "while")
WORKER_RESULT = "BENCH_RESULT_JSON:"
GRAD_BLOCKS = 5


# ---------------------------------------------------------------------------
# The worker: runs inside one tree (its cwd and PYTHONPATH).
# ---------------------------------------------------------------------------


def _cost(compiled) -> dict:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):   # older JAX: one dict per program
    cost = cost[0]
  return {k: float(cost.get(k, float("nan"))) for k in COST_KEYS}


def _hlo_ops(compiled) -> dict:
  """How often each op of HLO_OPS appears in the optimized HLO (all computations)."""
  text = compiled.as_text()
  counts = {}
  for op in HLO_OPS:
    counts[op] = len(re.findall(rf"\s{re.escape(op)}\(", text))
  return counts


def _compiled_info(jitted, *args, **kwargs) -> dict:
  compiled = jitted.lower(*args, **kwargs).compile()
  return {"cost": _cost(compiled), "hlo_ops": _hlo_ops(compiled)}


def worker(args) -> None:
  tree = os.path.realpath(args.tree)
  t_worker = time.perf_counter()
  phases = {}

  def phase(name):
    phases[name] = round(time.perf_counter() - t_worker, 2)

  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import experiments  # pylint: disable=g-import-not-at-top
  import vae_jax  # pylint: disable=g-import-not-at-top
  from experiments.configs import vae as vae_config  # pylint: disable=g-import-not-at-top
  from vae_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from vae_jax.inference import iwae  # pylint: disable=g-import-not-at-top
  from vae_jax import tasks  # pylint: disable=g-import-not-at-top
  files = {"vae_jax": os.path.realpath(vae_jax.__file__),
           "experiments": os.path.realpath(experiments.__file__),
           "config": os.path.realpath(vae_config.__file__)}
  for name, path in files.items():
    if not path.startswith(tree + os.sep):
      raise SystemExit(f"{name} resolved to {path}, outside the tree {tree}")

  phase("imports")
  config = vae_config.get_config()
  shape = (28, 28, 1)
  model = tasks.build_vae(config.model, shape)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 784), jnp.float32))
  ds = data_lib.load_arrays("mnist_5k", None, binarize="static", seed=0)
  x = np.asarray(ds.eval_x[:args.iwae_images], np.float32)
  key = jax.random.PRNGKey(1)
  k = 5000

  def run_iwae():
    return iwae.evaluate_iwae(params, x, key, model=model, num_samples=k)

  t0 = time.perf_counter()
  first = run_iwae()                       # compiles
  warmup_s = time.perf_counter() - t0
  times = []
  for _ in range(args.iwae_repeats):
    t0 = time.perf_counter()
    est = run_iwae()
    times.append(time.perf_counter() - t0)
  phase("iwae_timed")
  if not np.array_equal(first, est):
    raise SystemExit("evaluate_iwae is not deterministic for a fixed key")

  # XLA's cost analysis of one jitted batch (B = 20), K = 5000 and K = one chunk.
  batch = iwae.DEFAULT_BATCH_SIZE
  chunk = iwae.default_chunk_size(batch)
  xb = jnp.asarray(x[:batch])
  xla = {}
  if args.xla:
    xla["iwae_batch"] = _compiled_info(iwae._iwae_batch, params, xb, key, model=model,  # pylint: disable=protected-access
                                       num_samples=k, chunk_size=chunk)
    xla["iwae_chunk"] = _compiled_info(iwae._iwae_batch, params, xb, key, model=model,  # pylint: disable=protected-access
                                       num_samples=chunk, chunk_size=chunk)

  phase("iwae_cost_analysis")
  # The training loss's value and gradient, as the trainer differentiates it.
  task = tasks.vae_task(config, shape, 4500)
  tparams = jax.jit(task.init_params)(jax.random.PRNGKey(0))
  xt = jnp.asarray(ds.train_x[:config.train.batch_size])
  step = jnp.zeros((), jnp.int32)
  grad_fn = jax.jit(jax.value_and_grad(task.loss_fn, has_aux=True))
  if args.xla:
    xla["train_grad"] = _compiled_info(grad_fn, tparams, xt, key, task.est_state, step)
  jax.block_until_ready(grad_fn(tparams, xt, key, task.est_state, step))
  keys = jax.random.split(jax.random.PRNGKey(2), args.grad_calls)
  blocks, out = [], None
  per_block = max(1, args.grad_calls // GRAD_BLOCKS)
  for b in range(0, args.grad_calls, per_block):
    t0 = time.perf_counter()
    for i in range(b, min(b + per_block, args.grad_calls)):
      out = grad_fn(tparams, xt, keys[i], task.est_state, step)
    jax.block_until_ready(out)
    blocks.append((time.perf_counter() - t0) * 1e3 / (min(b + per_block, args.grad_calls) - b))
  grad_ms = min(blocks)   # the least disturbed block: the load only adds time
  phase("grad")

  result = {
      "files": files, "jax": jax.__version__, "chunk_size": chunk, "batch": batch,
      "num_params": int(sum(np.size(a) for a in jax.tree_util.tree_leaves(params))),
      "param_shapes": sorted(f"{jax.tree_util.keystr(p)}:{tuple(a.shape)}" for p, a in
                             jax.tree_util.tree_flatten_with_path(params)[0]),
      "iwae_warmup_s": warmup_s,
      "iwae_ms_per_image": float(np.median(times)) * 1e3 / len(x),
      "iwae_ms_per_image_all": [t * 1e3 / len(x) for t in times],
      "iwae_estimates": [float(v) for v in est],
      "grad_ms": grad_ms, "loss": float(out[0][0]), "phases_s": phases,
      "xla": xla,
  }
  print(WORKER_RESULT + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------
# The driver.
# ---------------------------------------------------------------------------


def _git(*args, cwd=REPO) -> str:
  return subprocess.run(("git",) + args, cwd=cwd, check=True, capture_output=True,
                        text=True).stdout.strip()


def _env(tree: str, cache_dir: str | None) -> dict:
  env = dict(os.environ)
  env["PYTHONPATH"] = tree
  env.pop("PYTHONSTARTUP", None)
  for name in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
               "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"):
    env.pop(name, None)
  if cache_dir:
    # Compiled programs (and eagerly run ops) from the tree's earlier processes: less
    # start-up time; no timed quantity includes compilation.
    env["JAX_COMPILATION_CACHE_DIR"] = cache_dir
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
  return env


def _run(cmd, tree: str, timeout: float, cache_dir: str | None = None
         ) -> subprocess.CompletedProcess:
  proc = subprocess.run(cmd, cwd=tree, env=_env(tree, cache_dir), capture_output=True,
                        text=True, timeout=timeout)
  if proc.returncode != 0:
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
    raise RuntimeError(f"{' '.join(cmd[:4])} ... in {tree} exited {proc.returncode}:\n{tail}")
  return proc


def snapshot_worktree(dest: str) -> dict:
  """Copies this working tree's files (tracked and untracked, not ignored) to ``dest``.

  A copy, so that edits made in the working tree while the benchmark runs do not
  reach it. Returns HEAD and which files under vae_jax/ and experiments/ differ from it.
  """
  files = [f for f in _git("ls-files", "-z", "--cached", "--others", "--exclude-standard"
                           ).split("\0") if f]
  for f in files:
    src = os.path.join(REPO, f)
    if os.path.isfile(src):                       # a tracked file may be deleted
      os.makedirs(os.path.dirname(os.path.join(dest, f)), exist_ok=True)
      shutil.copy2(src, os.path.join(dest, f))
  changed = _git("status", "--porcelain", "--", "vae_jax", "experiments").splitlines()
  return {"commit": _git("rev-parse", "HEAD"), "given": "WORKTREE",
          "snapshot_of": REPO, "snapshot_time": time.strftime("%Y-%m-%dT%H:%M:%S"),
          "uncommitted_in_vae_jax_or_experiments": [l.strip() for l in changed]}


def check_imports(tree: str) -> dict:
  """What ``python -m experiments.main`` will import in this tree (same cwd, PYTHONPATH)."""
  code = ("import json, os, experiments, experiments.main as m, vae_jax; print(json.dumps("
          "{'vae_jax': os.path.realpath(vae_jax.__file__), 'experiments': "
          "os.path.realpath(experiments.__file__), 'main': os.path.realpath(m.__file__)}))")
  out = json.loads(_run([sys.executable, "-c", code, "--"], tree, 600).stdout.splitlines()[-1])
  real = os.path.realpath(tree)
  for name, path in out.items():
    if not path.startswith(real + os.sep):
      raise RuntimeError(f"in {tree}, {name} resolves to {path}")
  return out


def run_train(tree: str, num_steps: int, timeout: float, cache_dir: str | None) -> dict:
  workdir = tempfile.mkdtemp(prefix="bench_vs_commit_run_")
  try:
    cmd = ([sys.executable, "-m", "experiments.main"]
           + [a.format(n=num_steps) for a in RUNNER_ARGS] + [f"--workdir={workdir}"])
    t0 = time.perf_counter()
    _run(cmd, tree, timeout, cache_dir)
    wall = time.perf_counter() - t0
    with open(os.path.join(workdir, "summary.json")) as f:
      summary = json.load(f)
    sps = float(summary["steps_per_s"])
    return {"steps_per_s": sps, "ms_per_step": 1e3 / sps, "wall_s": wall,
            "eval_neg_elbo": summary.get("eval_neg_elbo")}
  finally:
    shutil.rmtree(workdir, ignore_errors=True)


def run_worker(tree: str, args, cache_dir: str | None, xla: bool) -> dict:
  cmd = [sys.executable, os.path.abspath(__file__), "--worker", f"--tree={tree}",
         f"--iwae_images={args.iwae_images}", f"--iwae_repeats={args.iwae_repeats}",
         f"--grad_calls={args.grad_calls}"] + (["--xla"] if xla else [])
  t0 = time.perf_counter()
  # The cost analysis is read from programs compiled in this process, never from the cache.
  proc = _run(cmd, tree, args.timeout, None if xla else cache_dir)
  lines = [l for l in proc.stdout.splitlines() if l.startswith(WORKER_RESULT)]
  out = json.loads(lines[-1][len(WORKER_RESULT):])
  out["wall_s"] = time.perf_counter() - t0
  return out


def _stats(values) -> dict:
  v = np.asarray(values, float)
  if not len(v):
    return {}
  return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()),
          "values": [round(float(a), 4) for a in v]}


def _paired(old, new) -> dict:
  r = np.asarray(new, float) / np.asarray(old, float)
  if not len(r):
    return {}
  q1, med, q3 = np.percentile(r, [25, 50, 75])
  return {"median": float(med), "q1": float(q1), "q3": float(q3), "min": float(r.min()),
          "max": float(r.max()), "per_round": [round(float(a), 4) for a in r],
          "within_5_percent": bool(med <= 1.05)}


def compare_time(results, key: str, what: str) -> dict:
  old = [r[key] for r in results["old"]]
  new = [r[key] for r in results["new"]]
  return {"what": what, "old": _stats(old), "new": _stats(new),
          "paired_ratio_new_over_old": _paired(old, new)}


def compare_xla(old_w: dict, new_w: dict) -> dict:
  out = {}
  for prog in old_w["xla"]:
    o, n = old_w["xla"][prog], new_w["xla"][prog]
    costs = {}
    for k in COST_KEYS:
      ratio = n["cost"][k] / o["cost"][k] if o["cost"][k] else float("nan")
      costs[k] = {"old": o["cost"][k], "new": n["cost"][k], "ratio_new_over_old": ratio,
                  "within_5_percent": bool(ratio <= 1.05)}
    ops = {op: {"old": o["hlo_ops"][op], "new": n["hlo_ops"][op]} for op in HLO_OPS
           if o["hlo_ops"][op] != n["hlo_ops"][op]}
    out[prog] = {"cost": costs, "hlo_op_counts_that_differ": ops,
                 "hlo_op_counts_old": o["hlo_ops"]}
  return out


def driver(args) -> None:
  t_start = time.perf_counter()
  info = machine.describe()
  train_rounds = args.rounds if args.train_rounds is None else args.train_rounds
  iwae_rounds = args.rounds if args.iwae_rounds is None else args.iwae_rounds
  ref_sha = _git("rev-parse", "--verify", f"{args.ref}^{{commit}}")
  tmp = tempfile.mkdtemp(prefix="bench_vs_commit_")
  old_tree = os.path.join(tmp, "ref")
  new_tree = os.path.join(tmp, "new")
  if args.new == "WORKTREE":
    new_info = snapshot_worktree(new_tree)
    worktrees = [old_tree]
  else:
    new_info = {"commit": _git("rev-parse", "--verify", f"{args.new}^{{commit}}"),
                "given": args.new}
    worktrees = [old_tree, new_tree]
  trees = {"old": old_tree, "new": new_tree}
  caches = {v: os.path.join(tmp, f"jax_cache_{v}") if args.compile_cache else None
            for v in trees}
  results = {"train": {"old": [], "new": []}, "worker": {"old": [], "new": []}}
  loads = []
  try:
    _git("worktree", "add", "--detach", old_tree, ref_sha)
    if args.new != "WORKTREE":
      _git("worktree", "add", "--detach", new_tree, new_info["commit"])
    imports = {v: check_imports(t) for v, t in trees.items()}
    for r in range(max(train_rounds, iwae_rounds)):
      order = ("old", "new") if r % 2 == 0 else ("new", "old")
      if r < train_rounds:
        for v in order:
          results["train"][v].append(run_train(trees[v], args.num_steps, args.timeout,
                                               caches[v]))
          loads.append(os.getloadavg()[0])
          print(f"round {r} train {v}: {results['train'][v][-1]['steps_per_s']:.2f} steps/s "
                f"({results['train'][v][-1]['wall_s']:.0f} s, load {loads[-1]:.1f})",
                file=sys.stderr, flush=True)
      if r < iwae_rounds:
        for v in order:
          results["worker"][v].append(run_worker(trees[v], args, caches[v],
                                                 xla=r == 0 or args.xla_every_round))
          loads.append(os.getloadavg()[0])
          w = results["worker"][v][-1]
          print(f"round {r} iwae {v}: {w['iwae_ms_per_image']:.1f} ms/image, grad "
                f"{w['grad_ms']:.2f} ms ({w['wall_s']:.0f} s, load {loads[-1]:.1f})",
                file=sys.stderr, flush=True)
  finally:
    for tree in worktrees:
      subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=REPO,
                     capture_output=True)
    subprocess.run(["git", "worktree", "prune"], cwd=REPO, capture_output=True)
    shutil.rmtree(tmp, ignore_errors=True)

  info["loadavg_end"] = [round(a, 2) for a in os.getloadavg()]
  info["loadavg_1min_during"] = _stats(loads)
  info["jax"] = results["worker"]["new"][0]["jax"] if results["worker"]["new"] else None
  out = {"ref": {"old": {"commit": ref_sha, "given": args.ref}, "new": new_info},
         "imports": imports, "machine": info,
         "settings": {"train_rounds": train_rounds, "iwae_rounds": iwae_rounds,
                      "num_steps": args.num_steps, "iwae_images": args.iwae_images,
                      "iwae_num_samples": 5000, "iwae_repeats": args.iwae_repeats,
                      "grad_calls": args.grad_calls,
                      "compile_cache_per_tree": args.compile_cache,
                      "order": "old,new in even rounds; new,old in odd rounds"}}
  quantities = {}
  if train_rounds:
    quantities["train_ms_per_step"] = compare_time(
        results["train"], "ms_per_step",
        "runner (python -m experiments.main, 1000 steps): 1000 / summary.json steps_per_s")
    quantities["train_ms_per_step"]["steps_per_s"] = {
        v: _stats([r["steps_per_s"] for r in results["train"][v]]) for v in ("old", "new")}
    quantities["train_ms_per_step"]["process_wall_s"] = {
        v: _stats([r["wall_s"] for r in results["train"][v]]) for v in ("old", "new")}
  if iwae_rounds:
    w = results["worker"]
    quantities["iwae5000_ms_per_image"] = compare_time(
        w, "iwae_ms_per_image",
        f"vae_jax.inference.iwae.evaluate_iwae, K=5000, {args.iwae_images} mnist_5k eval images, "
        "after one warm-up call")
    quantities["grad_ms_context"] = compare_time(
        w, "grad_ms", "jitted value_and_grad of task.loss_fn, batch 100 (no optimizer)")
    o, n = w["old"][0], w["new"][0]
    est_o, est_n = np.asarray(o["iwae_estimates"]), np.asarray(n["iwae_estimates"])
    out["numerics"] = {
        "same_param_shapes": o["param_shapes"] == n["param_shapes"],
        "num_params": {"old": o["num_params"], "new": n["num_params"]},
        "iwae_mean_log_px": {"old": float(est_o.mean()), "new": float(est_n.mean())},
        "iwae_max_abs_diff": float(np.max(np.abs(est_o - est_n))),
        "train_loss": {"old": o["loss"], "new": n["loss"]},
    }
    out["xla_cost"] = compare_xla(o, n)
    if args.xla_every_round:   # the cost analysis does not depend on the load
      out["xla_cost_same_every_round"] = all(
          r["xla"][p]["cost"] == w[v][0]["xla"][p]["cost"]
          for v in ("old", "new") for r in w[v] for p in r["xla"])
  out["quantities"] = quantities
  verdicts = {q: d["paired_ratio_new_over_old"].get("within_5_percent")
              for q, d in quantities.items() if q != "grad_ms_context"}
  for prog, d in out.get("xla_cost", {}).items():
    for k, c in d["cost"].items():
      verdicts[f"xla.{prog}.{k}"] = c["within_5_percent"]
  out["within_5_percent"] = verdicts
  out["elapsed_s"] = round(time.perf_counter() - t_start, 1)
  print(json.dumps(out, indent=1))


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--ref", default="6644f40", help="the old commit (any git revision)")
  p.add_argument("--new", default="WORKTREE",
                 help="the new code: WORKTREE (a copy of this working tree's files, tracked "
                      "and untracked but not ignored, taken at the start) or a git revision")
  p.add_argument("--rounds", type=int, default=3, help="rounds of old/new pairs, each quantity")
  p.add_argument("--train_rounds", type=int, default=None, help="override --rounds for train")
  p.add_argument("--iwae_rounds", type=int, default=None, help="override --rounds for iwae")
  p.add_argument("--num_steps", type=int, default=1000, help="runner training steps")
  p.add_argument("--iwae_images", type=int, default=40, help="eval images for IWAE-5000")
  p.add_argument("--iwae_repeats", type=int, default=3, help="timed evaluate_iwae calls per worker")
  p.add_argument("--grad_calls", type=int, default=200, help="timed value_and_grad calls")
  p.add_argument("--timeout", type=float, default=900, help="seconds per subprocess")
  p.add_argument("--xla_every_round", action="store_true",
                 help="cost analysis in every round's worker (default: the first round's)")
  p.add_argument("--no_compile_cache", dest="compile_cache", action="store_false",
                 help="no persistent JAX compilation cache between a tree's processes")
  p.add_argument("--xla", action="store_true", help=argparse.SUPPRESS)
  p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  p.add_argument("--tree", default=None, help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.worker:
    worker(args)
  else:
    driver(args)


if __name__ == "__main__":
  main()
