r"""EM for a full-covariance GMM: vae_jax.classical.gmm vs scikit-learn, same run, same init.

Both fit the same data (N x D, K well-separated random Gaussians) for a fixed
number of EM iterations (tol = 0, so every iteration runs) from the same
initial weights, means and covariances, in float64. vae_jax is timed twice:
"first call" includes tracing and XLA compilation (a fresh jit cache in this
process), "compiled" is the median of later calls.

  python scripts/benchmarks/bench_gmm.py                            # N=100000 D=10 K=16, 50 iters
  python scripts/benchmarks/bench_gmm.py --n=2000 --iters=5         # quick

Prints one JSON object.
"""

from __future__ import annotations

import json
import time
import warnings

from absl import app
from absl import flags
import jax
import numpy as np
import machine  # this folder (scripts/benchmarks/) is on sys.path

_N = flags.DEFINE_integer("n", 100_000, "Number of points.")
_D = flags.DEFINE_integer("d", 10, "Dimension.")
_K = flags.DEFINE_integer("k", 16, "Number of components.")
_ITERS = flags.DEFINE_integer("iters", 50, "EM iterations (fixed; tol = 0).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repeats of each fit; the median is reported.")
_SEED = flags.DEFINE_integer("seed", 0, "Data seed.")


def make_data(n, d, k, seed):
  rng = np.random.default_rng(seed)
  centers = rng.normal(scale=5.0, size=(k, d))
  z = rng.integers(0, k, size=n)
  a = rng.normal(size=(k, d, d)) / np.sqrt(d)
  x = centers[z] + np.einsum("nij,nj->ni", a[z], rng.normal(size=(n, d)))
  return x


def main(argv):
  del argv
  jax.config.update("jax_enable_x64", True)
  from sklearn.mixture import GaussianMixture  # pylint: disable=g-import-not-at-top
  from vae_jax.classical import gmm  # pylint: disable=g-import-not-at-top

  n, d, k, iters = _N.value, _D.value, _K.value, _ITERS.value
  x = make_data(n, d, k, _SEED.value)
  rng = np.random.default_rng(_SEED.value + 1)
  init_means = x[rng.choice(n, k, replace=False)]
  init_weights = np.full(k, 1.0 / k)
  init_covs = np.broadcast_to(np.cov(x.T), (k, d, d)).copy()
  precisions = np.linalg.inv(init_covs)

  def sk_fit():
    gm = GaussianMixture(k, covariance_type="full", max_iter=iters, tol=0.0, reg_covar=1e-6,
                         weights_init=init_weights, means_init=init_means,
                         precisions_init=precisions)
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      gm.fit(x)
    return gm

  def jax_fit():
    params, history = gmm.fit(jax.random.key(0), x, k, covariance_type="full", max_iters=iters,
                              tol=0.0, init=(init_weights, init_means, init_covs))
    jax.block_until_ready(params)
    return params, history

  t0 = time.perf_counter()
  params, history = jax_fit()
  first = time.perf_counter() - t0
  compiled = []
  for _ in range(_REPEATS.value):
    t0 = time.perf_counter()
    params, history = jax_fit()
    compiled.append(time.perf_counter() - t0)
  sk_times = []
  for _ in range(_REPEATS.value):
    t0 = time.perf_counter()
    gm = sk_fit()
    sk_times.append(time.perf_counter() - t0)
  jax_ll = float(np.mean(np.asarray(gmm.log_prob(params, x))))
  sk_ll = float(gm.score(x))
  jax_s, sk_s = float(np.median(compiled)), float(np.median(sk_times))
  print(json.dumps({
      "benchmark": "gmm_em_full_covariance", "n": n, "d": d, "k": k, "iters": iters,
      "dtype": "float64", "machine": machine.describe(),
      "vae_jax_first_call_s": first, "vae_jax_compiled_s": jax_s, "sklearn_s": sk_s,
      "speedup_compiled": sk_s / jax_s, "speedup_including_compile": sk_s / first,
      "vae_jax_iterations_run": int(len(history)),
      "vae_jax_final_avg_log_likelihood": jax_ll, "sklearn_final_avg_log_likelihood": sk_ll,
      "abs_log_likelihood_difference": abs(jax_ll - sk_ll),
  }, indent=2))


if __name__ == "__main__":
  app.run(main)
