r"""The researcher's wait: a one-step run of the default config against the floor of any JAX program.

  python scripts/benchmarks/startup.py                    # 5 rounds, JSON on stdout
  python scripts/benchmarks/startup.py --rounds=3 --out=scripts/benchmarks/results/startup.json

Each round runs, one after the other, as separate processes (what a user waits
for, start-up included):

* ``floor``: ``import jax, flax, optax`` and jit one tiny function: the least
  any JAX program pays;
* ``cold``: ``python -m experiments.main --config.train.num_steps=1
  --config.eval.iw_samples=0`` with an empty compilation cache (the shipped
  digits already converted, as on every run after a machine's first);
* ``warm``: the same command again, its programs now in the cache;
* ``first``: the same with both caches empty (``XDG_CACHE_HOME`` new): a
  machine's very first run, which also converts the shipped digits.

Wall seconds are read for each process from outside; the ratios to the floor
are taken round by round (the floor measured in the same minute), and their
medians reported. The breakdown is the runner's own: ``summary.json``'s
``timings_s`` (imports, data, setup, first_step, train, final_eval, figures,
total; first_step holds the train step's compilation or cache read) and
``compilation_cache`` (programs made, cache hits and misses, seconds spent
tracing, lowering and compiling or reading them), medians over the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts", "benchmarks"))
import machine  # pylint: disable=g-import-not-at-top,wrong-import-position

FLOOR = ("import jax, flax, optax, jax.numpy as jnp; "
         "jax.jit(lambda x: x * 2 + 1)(jnp.ones(3)).block_until_ready()")
ONE_STEP = ["-m", "experiments.main", "--config.train.num_steps=1",
            "--config.eval.iw_samples=0"]


def timed(args: list[str], env: dict) -> float:
  """Wall seconds of one process; raises if it fails."""
  start = time.perf_counter()
  proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                        text=True, check=False)
  seconds = time.perf_counter() - start
  if proc.returncode != 0:
    raise RuntimeError(f"{' '.join(args)} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
  return seconds


def one_step(env: dict, workdir: str) -> tuple[float, dict]:
  """(wall seconds, summary.json) of a one-step run in a new ``workdir``."""
  seconds = timed(ONE_STEP + [f"--workdir={workdir}"], env)
  with open(os.path.join(workdir, "summary.json")) as f:
    return seconds, json.load(f)


def median_dict(dicts: list[dict]) -> dict:
  keys = [k for k in dicts[0] if all(isinstance(d.get(k), (int, float)) for d in dicts)]
  return {k: round(statistics.median(d[k] for d in dicts), 3) for k in keys}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--out", default=None, help="also write the JSON here")
  args = parser.parse_args()

  base = dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg")
  base.pop("VAE_JAX_COMPILATION_CACHE", None)
  rows = {"floor": [], "cold": [], "warm": [], "first": []}
  summaries = {"cold": [], "warm": [], "first": []}
  load_before = os.getloadavg()
  with tempfile.TemporaryDirectory() as tmp:
    data_home = os.path.join(tmp, "home")     # converted digits, kept across rounds
    timed(["-c", FLOOR], base)                 # warm the OS file cache; not counted
    timed(["-c", "from vae_jax import data; data.load_shipped('mnist_5k')"],
          dict(base, XDG_CACHE_HOME=data_home))  # convert the digits once, as a machine has
    for r in range(args.rounds):
      rows["floor"].append(timed(["-c", FLOOR], base))
      env = dict(base, XDG_CACHE_HOME=data_home,
                 VAE_JAX_COMPILATION_CACHE=os.path.join(tmp, f"xla{r}"))
      for kind in ("cold", "warm"):
        seconds, summary = one_step(env, os.path.join(tmp, f"{kind}{r}"))
        rows[kind].append(seconds)
        summaries[kind].append(summary)
      fresh = dict(base, XDG_CACHE_HOME=os.path.join(tmp, f"fresh{r}"))
      seconds, summary = one_step(fresh, os.path.join(tmp, f"first{r}"))
      rows["first"].append(seconds)
      summaries["first"].append(summary)
  ratios = {k: [s / f for s, f in zip(rows[k], rows["floor"])] for k in summaries}
  out = {
      "benchmark": "startup",
      "command": "python " + " ".join(ONE_STEP),
      "machine": {"cpu": machine.cpu_model(), "cores": machine.cores(),
                  "load_average_before": [round(x, 2) for x in load_before],
                  "load_average_after": [round(x, 2) for x in os.getloadavg()]},
      "rounds": args.rounds,
      "wall_s": {k: {"median": round(statistics.median(v), 3),
                     "min": round(min(v), 3), "max": round(max(v), 3)}
                 for k, v in rows.items()},
      "ratio_to_floor": {k: {"median": round(statistics.median(v), 2),
                             "min": round(min(v), 2), "max": round(max(v), 2)}
                         for k, v in ratios.items()},
      "breakdown_s": {k: median_dict([s["timings_s"] for s in v]) for k, v in summaries.items()},
      "compilation": {k: median_dict([s["compilation_cache"] for s in v])
                      for k, v in summaries.items()},
  }
  text = json.dumps(out, indent=2)
  print(text)
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  main()
