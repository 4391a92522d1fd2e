"""Data parallelism over the local devices: a 1-D ``data`` mesh.

The train state is replicated and every batch is split along its first axis;
``jax.jit`` inserts the gradient all-reduce. With one device (the usual CPU
case) both shardings are trivial and cost nothing.

The mesh's axis is ``AxisType.Auto`` (GSPMD propagation). ``jax.make_mesh``
defaults to ``Explicit`` axes in current JAX, under which the models' reshapes
of a batch-sharded array (the conv decoder's ``[B*S, L] -> [B, S, H, W, C]``)
raise ``ShardingTypeError``; the models are written for any sharding, so the
compiler chooses.
"""

from __future__ import annotations

from typing import NamedTuple

from absl import logging
import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from vae_jax.errors import UserError


def one_program_at_a_time() -> bool:
  """Whether programs must not overlap: several CPU devices in one process.

  XLA:CPU runs each device's part of a program on a small shared thread pool
  and meets the parts at every all-reduce. When a later program (even an
  eager ``jnp.add`` of the step's metrics) is dispatched while a step's
  all-reduce is in flight, one device's part can wait behind the other
  program and never reach the rendezvous: the run hangs, or XLA aborts it
  after ``xla_cpu_collective_call_terminate_timeout_seconds`` (40 s). Seen on
  2 loaded cores, with asynchronous and with synchronous dispatch alike
  (a native stack: one pool thread in ``InProcessCommunicator::AllReduce``,
  the other idle, the main thread executing the next program). The trainer
  therefore waits for each such program (``wait``) before dispatching the next.
  """
  return jax.default_backend() == "cpu" and jax.device_count() > 1


def wait(tree):
  """Blocks until ``tree`` is computed when ``one_program_at_a_time()``; returns it."""
  if one_program_at_a_time():
    jax.block_until_ready(tree)
  return tree


class Shardings(NamedTuple):
  """The two shardings of data-parallel training."""
  replicated: NamedSharding    # the train state, parameters, the device feed's data
  batch: NamedSharding         # [B, ...] arrays split along B


def make_mesh() -> jax.sharding.Mesh:
  """A 1-D ``data`` mesh over every device of every process, with an ``Auto`` axis."""
  n = jax.device_count()
  if one_program_at_a_time():
    logging.info("%d CPU devices: one program in flight at a time (XLA:CPU collectives).", n)
  return jax.make_mesh((n,), ("data",), axis_types=(AxisType.Auto,))


def make_shardings(batch_sizes: dict[str, int]) -> Shardings:
  """(replicated, batch-sharded) shardings over every device of every process.

  Args:
    batch_sizes: {config key as the user types it: batch size}; each must
      divide evenly over the devices.

  Raises:
    UserError: a batch size is not a multiple of the device count.
  """
  n = jax.device_count()
  for name, b in batch_sizes.items():
    if int(b) % n:
      raise UserError(f"--{name}={b} is not divisible by the {n} devices"
                      + (f" of {jax.process_count()} processes" if jax.process_count() > 1
                         else "") + f"; use a multiple of {n}.")
  mesh = make_mesh()
  return Shardings(NamedSharding(mesh, P()), NamedSharding(mesh, P("data")))


def global_array(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """A global array from the host array ``x`` that every process holds whole.

  Each process uploads only the shards its own devices hold, so this works
  with one process and with several (unlike ``jax.device_put`` of a host
  array onto devices of other processes).
  """
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def process_rows(sharding: NamedSharding, shape: tuple[int, ...], axis: int = 0
                 ) -> tuple[int, int]:
  """The [lo, hi) range along ``axis`` that this process's devices hold."""
  spans = [idx[axis].indices(shape[axis])[:2]
           for idx in sharding.addressable_devices_indices_map(shape).values()]
  lo, hi = min(s for s, _ in spans), max(e for _, e in spans)
  return lo, hi
