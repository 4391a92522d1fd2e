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


def _synchronous_cpu_dispatch(num_devices: int) -> None:
  """Several CPU "devices" share one small thread pool. With asynchronous
  dispatch a later program can take the thread that an all-reduce's other
  participant needs, and XLA aborts after its 40 s rendezvous timeout (seen
  on 2 loaded cores). Synchronous dispatch keeps one program in flight."""
  if (num_devices > 1 and jax.default_backend() == "cpu"
      and jax.config.values["jax_cpu_enable_async_dispatch"]):
    logging.info("%d CPU devices: dispatching synchronously (XLA:CPU collectives).",
                 num_devices)
    jax.config.update("jax_cpu_enable_async_dispatch", False)


def make_mesh() -> jax.sharding.Mesh:
  """A 1-D ``data`` mesh over every device, with an ``Auto`` axis."""
  n = jax.device_count()
  _synchronous_cpu_dispatch(n)
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
