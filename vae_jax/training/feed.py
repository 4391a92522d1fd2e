"""How training batches reach the step: gathered on device, or sent from the host.

Both feeds give step t the same batch, so a run's numbers do not depend on
the feed or on how many steps one dispatch runs (``train.steps_per_jit``):

* its rows are ``BatchStream.indices(t)`` of the training split (one NumPy
  permutation per epoch, from the run's ``data`` stream);
* with ``data.binarize == "dynamic"`` they are binarized on device,
  x ~ Bernoulli(pixels) from ``fold_in(binarize, t)`` (``data.binarize``,
  called by the step).

``DeviceFeed`` keeps the training split on every device; a dispatch of k
steps uploads nothing but, once per epoch, the epoch's permutation ([N]
int32), and the step gathers its rows (``jnp.take``). ``HostFeed`` gathers on
the host and uploads the dispatch's batches as one ``[k_max, B, D]`` array;
with several processes each process builds only its own slice of every
batch (``jax.make_array_from_process_local_data``). ``make_feed`` picks the
device feed whenever the training split fits (``train.feed=auto``).

A dispatch never crosses an epoch boundary (the trainer cuts it there), so
one permutation serves all its steps.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from vae_jax import data as data_lib
from vae_jax import sharding as sharding_lib
from vae_jax.errors import UserError, check_choice

FEEDS = ("auto", "device", "host")
CPU_DEVICE_DATA_BYTES = 2 << 30     # auto: the device feed up to 2 GiB of training data on CPU
DEVICE_DATA_FRACTION = 0.25         # and up to a quarter of an accelerator's memory


def device_budget_bytes() -> int:
  """Bytes of training data the device feed may hold on each device."""
  stats = jax.local_devices()[0].memory_stats() or {}
  limit = stats.get("bytes_limit")
  if limit:
    return int(DEVICE_DATA_FRACTION * limit)
  return CPU_DEVICE_DATA_BYTES


class DeviceFeed:
  """The training split on every device; each step gathers its rows there.

  ``args(step, n)`` is the dispatch's device input (the data and the epoch's
  permutation, uploaded once per epoch); ``batch(args, i, step)`` is the
  traced [B, D] batch of ``step`` inside the dispatch.
  """

  kind = "device"

  def __init__(self, stream: data_lib.BatchStream, shardings: sharding_lib.Shardings):
    self.stream = stream
    self.shardings = shardings
    self.x = sharding_lib.global_array(stream.x, shardings.replicated)
    self._epoch, self._perm = None, None

  def args(self, step: int, n: int) -> tuple[jax.Array, jax.Array]:
    epoch = step // self.stream.steps_per_epoch
    if (step + n - 1) // self.stream.steps_per_epoch != epoch:
      raise ValueError(f"a dispatch of steps {step}..{step + n - 1} crosses an epoch boundary.")
    if epoch != self._epoch:
      perm = self.stream.permutation(epoch).astype(np.int32)
      self._epoch, self._perm = epoch, sharding_lib.global_array(perm, self.shardings.replicated)
    return self.x, self._perm

  def rows(self, perm: jax.Array, step: jax.Array) -> jax.Array:
    """[B] the training rows of ``step``: its slice of the epoch's permutation."""
    b = self.stream.batch_size
    return jax.lax.dynamic_slice_in_dim(perm, (step % self.stream.steps_per_epoch) * b, b)

  def batch(self, args, i: jax.Array, step: jax.Array) -> jax.Array:
    del i
    x, perm = args
    return jax.lax.with_sharding_constraint(jnp.take(x, self.rows(perm, step), axis=0),
                                            self.shardings.batch)


class HostFeed:
  """Batches gathered on the host, ``max_steps`` per upload.

  ``args(step, n)`` uploads steps ``step .. step+n-1`` as one [max_steps, B, D]
  array sharded over the batch axis (zero-padded past n); each process
  gathers only the rows its devices hold.
  """

  kind = "host"

  def __init__(self, stream: data_lib.BatchStream, shardings: sharding_lib.Shardings,
               max_steps: int):
    self.stream = stream
    self.max_steps = int(max_steps)
    b, d = stream.batch_size, stream.x.shape[1]
    self.sharding = NamedSharding(shardings.batch.mesh, P(None, "data"))
    self.global_shape = (self.max_steps, b, d)
    self.rows = sharding_lib.process_rows(self.sharding, self.global_shape, axis=1)

  def args(self, step: int, n: int) -> jax.Array:
    lo, hi = self.rows
    local = np.zeros((self.max_steps, hi - lo, self.global_shape[2]), np.float32)
    for i in range(n):
      local[i] = self.stream.x[self.stream.indices(step + i)[lo:hi]]
    return jax.make_array_from_process_local_data(self.sharding, local, self.global_shape)

  def batch(self, args, i: jax.Array, step: jax.Array) -> jax.Array:
    del step
    return jax.lax.dynamic_index_in_dim(args, i, keepdims=False)


def make_feed(kind: str, stream: data_lib.BatchStream, shardings: sharding_lib.Shardings,
              steps_per_jit: int) -> Any:
  """The feed of ``train.feed``: device, host, or auto (device if the split fits).

  Raises:
    UserError: ``feed=device`` for a training split larger than the budget.
  """
  check_choice(kind, FEEDS, "config.train.feed")
  nbytes, budget = int(stream.x.nbytes), device_budget_bytes()
  if kind == "device" and nbytes > budget:
    raise UserError(f"--config.train.feed=device: the training split ({nbytes / 2**20:.0f} MiB) "
                    f"does not fit the device budget ({budget / 2**20:.0f} MiB); use "
                    f"--config.train.feed=host.")
  if kind == "device" or (kind == "auto" and nbytes <= budget):
    return DeviceFeed(stream, shardings)
  return HostFeed(stream, shardings, steps_per_jit)
