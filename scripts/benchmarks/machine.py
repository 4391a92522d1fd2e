"""What machine a measurement ran on: the label every benchmark and result carries.

Speeds mean little without the machine: the same runs measured 2.5-3x slower
on a machine whose float32 matrix products reach 146 GFLOP/s than on this
project's development machine. ``describe()`` says which CPU (or accelerator),
how many cores this process may use, the software versions, the load average
and the machine's own matrix-product rate, measured on the spot
(``matmul_gflops``), so that a rate can be read against it.

Imported by the scripts in this folder (``python scripts/benchmarks/X.py`` puts the
folder on ``sys.path``) and by ``scripts/results.py``; not part of the library.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import time


def cpu_model() -> str:
  """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def cores() -> int:
  """The cores this process may run on (its affinity), not the host's count."""
  if hasattr(os, "sched_getaffinity"):
    return len(os.sched_getaffinity(0))
  return os.cpu_count() or 1


def matmul_gflops(n: int = 1024, repeats: int = 10) -> float:
  """Best-of-``repeats`` GFLOP/s of one jitted float32 [n, n] x [n, n] product
  on the default JAX device: the machine's dense-arithmetic ceiling as XLA
  reaches it."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  product = jax.jit(jnp.matmul)
  product(a, b).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    product(a, b).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2 * n ** 3 / best / 1e9


def describe(measure: bool = True) -> dict:
  """The machine as a JSON-able dict; ``measure`` adds the load average and
  times ``matmul_gflops`` (conditions now, so only for a run happening now)."""
  # As the runner: JAX's INFO line for each platform it cannot open is noise.
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
  import jax  # pylint: disable=g-import-not-at-top
  device = jax.devices()[0]
  info = {"cpu": cpu_model(), "cores": cores(), "backend": jax.default_backend(),
          "device_kind": device.device_kind, "device_count": jax.device_count(),
          "platform": platform.platform(), "python": sys.version.split()[0],
          "jax": jax.__version__}
  if measure:
    info["load_average"] = [round(a, 2) for a in os.getloadavg()]
    info["matmul_gflops"] = round(matmul_gflops(), 1)
  return info


def label(info: dict) -> str:
  """One short line for a table: '2 cores (AMD EPYC 7B13), matmul 310 GFLOP/s'."""
  if info.get("backend", "cpu") != "cpu":
    where = f"{info['device_count']} x {info['device_kind']}"
  else:
    where = f"{info['cores']} cores ({info['cpu']})"
  if info.get("matmul_gflops") is not None:
    where += f", matmul {info['matmul_gflops']:.0f} GFLOP/s"
  return where
