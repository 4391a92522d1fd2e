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

from absl import logging
import jax
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
  return jax.default_backend() == "cpu" and jax.local_device_count() > 1


def wait(tree):
  """Blocks until ``tree`` is computed when ``one_program_at_a_time()``; returns it."""
  if one_program_at_a_time():
    jax.block_until_ready(tree)
  return tree


def make_mesh() -> jax.sharding.Mesh:
  """A 1-D ``data`` mesh over every device, with an ``Auto`` axis."""
  n = jax.device_count()
  if one_program_at_a_time():
    logging.info("%d CPU devices: one program in flight at a time (XLA:CPU collectives).", n)
  return jax.make_mesh((n,), ("data",), axis_types=(AxisType.Auto,))


def make_shardings(batch_sizes: dict[str, int]) -> tuple[NamedSharding, NamedSharding]:
  """(replicated, batch-sharded) shardings over every device.

  Args:
    batch_sizes: {config key as the user types it: batch size}; each must
      divide evenly over the devices.

  Raises:
    UserError: a batch size is not a multiple of the device count.
  """
  n = jax.device_count()
  for name, b in batch_sizes.items():
    if int(b) % n:
      raise UserError(f"--{name}={b} is not divisible by the {n} devices; use a "
                      f"multiple of {n}.")
  mesh = make_mesh()
  return NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
