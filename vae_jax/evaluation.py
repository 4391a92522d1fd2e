"""Evaluation over a whole split: per-example averages of summed terms.

Each model's eval step returns *sums* over the unmasked rows of one padded
batch (and their ``count``); ``evaluate`` adds them up over the split and
divides once, so the numbers are exact per-example means whatever the batch
size. The caller names which results are negative log-likelihoods (or
bounds) in nats, and gets their bits per dimension beside them.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import data as data_lib
from vae_jax import objectives
from vae_jax import sharding as sharding_lib


def evaluate(eval_fn: Callable, params: Any, x: np.ndarray, batch_size: int,
             key: jax.Array, num_dims: int, *, bits_per_dim: Mapping[str, str] = (),
             sharding=None) -> dict:
  """Per-example averages over every row of ``x`` (a fixed key: comparable numbers).

  Args:
    eval_fn: ``(params, x [B, D], mask [B], key) -> {name: sum over rows, "count"}``
      (jitted by the caller).
    params: model parameters.
    x: [N, D] the split.
    batch_size: B; the last batch is zero-padded and masked.
    key: evaluation key; batch i uses ``fold_in(key, i)``.
    num_dims: D, for bits per dimension.
    bits_per_dim: {nats key: bits key} for the results that are negative
      log-likelihoods or bounds in nats per example.
    sharding: optional sharding of each batch (data parallelism).

  Returns:
    {name: float mean per example} plus the requested bits/dim keys.
  """
  totals = None
  for i, (xb, mb) in enumerate(data_lib.eval_batches(x, batch_size)):
    xb, mb = jax.device_put((xb, mb), sharding) if sharding is not None else (xb, mb)
    out = sharding_lib.wait(eval_fn(params, xb, mb, jax.random.fold_in(key, i)))
    totals = out if totals is None else jax.tree_util.tree_map(jnp.add, totals, out)
  totals = jax.device_get(totals)
  count = float(totals.pop("count"))
  result = {k: float(v) / count for k, v in totals.items()}
  for nats, bits in dict(bits_per_dim).items():
    if nats in result:
      result[bits] = float(objectives.bits_per_dim(result[nats], num_dims))
  return result
