"""Interleaved timing, paired statistics and XLA's cost counts, shared by the
benchmarks that compare variants of a program.

On a shared machine the load drifts within a run, so a comparison of two
programs means little unless they alternate: ``interleaved`` runs every
variant once per round (the order rotated or shuffled), and
``paired_differences`` reads each variant against the baseline of the same
round, with a bootstrap interval of the median difference. ``xla_cost`` is
what load does not move: XLA's own counts of a compiled program, and
``hlo_body`` its code, to tell whether a variant changed it at all.

Imported by the scripts in this folder (``python scripts/benchmarks/X.py`` puts the
folder on ``sys.path``); not part of the library.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

_COST_KEYS = {"flops": "flops", "transcendentals": "transcendentals",
              "bytes accessed": "bytes_accessed"}


def xla_cost(compiled) -> dict[str, float]:
  """XLA's cost analysis of a compiled program: flops, transcendentals, bytes_accessed."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost   # older JAX: one per program
  return {v: float(cost[k]) for k, v in _COST_KEYS.items() if k in cost}


def hlo_body(hlo_text: str) -> str:
  """A compiled HLO module's computations without their metadata (source
  locations and name stacks): two programs that compile to the same code
  compare equal."""
  start = hlo_text.find("\n%")
  return re.sub(r", metadata=\{[^}]*\}", "", hlo_text[start:] if start >= 0 else hlo_text)


def copy_tree(tree: Any) -> Any:
  """A fresh copy of every array (a program that donates its input consumes it)."""
  return jax.tree_util.tree_map(jnp.copy, tree)


def interleaved(fns: dict[str, Callable[[], float]], rounds: int,
                shuffle_seed: int | None = None) -> dict[str, list[float]]:
  """Times each ``fns[name]()`` (returns seconds) once per round, the order
  rotated, or shuffled from ``shuffle_seed``: a rotation keeps each variant's
  predecessor, whose traces in the caches can bias it the same way every
  round; a shuffle does not."""
  names, secs = list(fns), {name: [] for name in fns}
  rng = None if shuffle_seed is None else np.random.default_rng(shuffle_seed)
  for r in range(rounds):
    order = (names[r % len(names):] + names[:r % len(names)] if rng is None
             else [names[i] for i in rng.permutation(len(names))])
    for name in order:
      secs[name].append(fns[name]())
  return secs


def median_interval(values, level: float = 0.9, resamples: int = 2000,
                    seed: int = 0) -> list[float]:
  """A percentile-bootstrap ``level`` interval of the median of ``values``."""
  v = np.asarray(values, np.float64)
  rng = np.random.default_rng(seed)
  medians = np.median(v[rng.integers(0, v.size, size=(resamples, v.size))], axis=1)
  tail = (1.0 - level) / 2 * 100
  return [float(q) for q in np.percentile(medians, [tail, 100 - tail])]


def paired_differences(values: dict[str, list[float]], base: str, level: float = 0.9,
                       floor: float = 0.0) -> dict:
  """Each variant minus ``base`` round by round: the median difference, its
  bootstrap interval, and a verdict: ``faster`` or ``slower`` when the
  interval excludes 0 and the median is beyond ``floor`` (the size of a
  difference that the same program compiled twice shows), else ``no change
  measured``."""
  b = np.asarray(values[base], np.float64)
  out = {}
  for name, v in values.items():
    if name == base:
      continue
    d = np.asarray(v, np.float64) - b
    lo, hi = median_interval(d, level)
    median = float(np.median(d))
    verdict = ("faster" if hi < 0 and median < -floor else
               "slower" if lo > 0 and median > floor else "no change measured")
    out[name] = {"median": median, "interval": [lo, hi], "level": level, "verdict": verdict}
  return out
