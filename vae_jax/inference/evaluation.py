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
from vae_jax.inference import objectives
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
    sharding: optional sharding of each batch (data parallelism, also over
      several processes).

  Returns:
    {name: float mean per example} plus the requested bits/dim keys.
  """
  totals = None
  for i, (xb, mb) in enumerate(data_lib.eval_batches(x, batch_size)):
    if sharding is not None:   # every process holds the split; each uploads its shards
      xb, mb = (sharding_lib.global_array(a, sharding) for a in (xb, mb))
    out = sharding_lib.wait(eval_fn(params, xb, mb, jax.random.fold_in(key, i)))
    totals = out if totals is None else jax.tree_util.tree_map(jnp.add, totals, out)
  totals = jax.device_get(totals)
  count = float(totals.pop("count"))
  result = {k: float(v) / count for k, v in totals.items()}
  for nats, bits in dict(bits_per_dim).items():
    if nats in result:
      result[bits] = float(objectives.bits_per_dim(result[nats], num_dims))
  return result


# Draws of z ~ q(z|x) that estimate E_q[z|x] where q has no closed-form mean (flows).
# Active units threshold Var_x(E_q[z_u|x]) at 0.01; a Monte-Carlo mean of S draws adds
# Var_q(z_u)/S of noise to that variance (all of it for a unit q ignores: ~1/S), so S
# keeps the noise a tenth of the threshold. Drawn in chunks of MEAN_CHUNK.
MEAN_SAMPLES = 1024
MEAN_CHUNK = 64


def encoder_statistics(params: Any, x: np.ndarray, *, model, batch_size: int = 500,
                       key: jax.Array | None = None
                       ) -> tuple[np.ndarray, np.ndarray | None]:
  """Means of q(z|x) and the per-dimension KL(q(z_l|x) || p(z_l)) of every row.

  Args:
    params: the VAE's parameters; x: [N, D]; model: the VAE.
    key: draws for E_q[z|x] of a flow posterior (``MEAN_SAMPLES`` per example;
      batch j uses fold_in(key, j)); a Gaussian q's mean is exact.

  Returns:
    (mean [N, L], kl [N, L] or None) as float64 NumPy arrays, KL in nats,
    from ``q.kl_per_dim(prior)``: KL_l = (mu_l^2 + sigma_l^2 - 1) / 2 - log sigma_l
    for a Gaussian q and p = N(0, I); None where the family has no closed form.
  """
  key = jax.random.key(0) if key is None else key

  @jax.jit
  def stats(xb, k):
    q = model.apply(params, xb, method="encode")
    prior = model.apply(params, method="prior_distribution")
    if hasattr(q, "mean"):
      mean = q.mean()
    else:   # sum MEAN_SAMPLES draws, MEAN_CHUNK at a time
      total = jax.lax.fori_loop(
          0, MEAN_SAMPLES // MEAN_CHUNK,
          lambda i, acc: acc + jnp.sum(q.sample(jax.random.fold_in(k, i), (MEAN_CHUNK,)), 0),
          jnp.zeros(q.point().shape, jnp.float32))
      mean = total / MEAN_SAMPLES
    kl = q.kl_per_dim(prior)
    return mean, (jnp.zeros_like(mean) if kl is None else kl), kl is not None

  means, kls, closed = [], [], True
  for j, (xb, mb) in enumerate(data_lib.eval_batches(x, min(batch_size, len(x)))):
    m, k, closed = jax.device_get(stats(xb, jax.random.fold_in(key, j)))
    means.append(m[mb > 0])
    kls.append(k[mb > 0])
  means = np.concatenate(means).astype(np.float64)
  return means, (np.concatenate(kls).astype(np.float64) if closed else None)


# Burda et al. (2015): unit u is active when Cov_x(E_q[z_u | x]) exceeds 1e-2.
ACTIVE_UNIT_THRESHOLD = 1e-2


def active_units(means: np.ndarray, threshold: float = ACTIVE_UNIT_THRESHOLD) -> np.ndarray:
  """Which latent units are active: Var over examples of E_q[z_u | x] > threshold.

  Args:
    means: [N, L] posterior means E_q[z | x_n] (``encoder_statistics``).

  Returns:
    [L] bool.
  """
  return np.var(np.asarray(means, np.float64), axis=0) > threshold


def mean_and_stderr(values: np.ndarray) -> tuple[float, float]:
  """The mean of per-example values and its standard error over examples."""
  v = np.asarray(values, np.float64)
  return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
