"""The run's random streams: one root key, named streams by ``fold_in``.

Every run draws all its randomness from ``root(config.seed)``. Each use gets
its own stream, derived once here and nowhere else, so adding a use never
shifts the numbers of another and no code does arithmetic on seeds:

=============  ==============================================================
stream         what draws from it
=============  ==============================================================
``init``       parameter initialization (and EM / k-means initializations)
``data``       the order of training batches
``binarize``   static and dynamic binarization of the training images
``noise``      per-step Monte-Carlo noise: step t uses ``fold_in(noise, t)``
``eval``       evaluation noise (the same at every evaluation of a run)
``grad_stats`` gradient-variance measurements: ``fold_in(grad_stats, step)``
``figures``    samples drawn for figures
``local``      per-example optimization in the amortization experiment
``simulate``   simulated data sets (toy mixtures, conjugate-Bayes trials)
``variance``   the estimator-variance experiment's batch and gradient draws
=============  ==============================================================

A stream is a typed JAX key. NumPy code (the batch order) takes
``numpy_seed(stream)``, an integer drawn from the key.
"""

from __future__ import annotations

import jax
import numpy as np

STREAMS = ("init", "data", "noise", "eval", "grad_stats", "figures", "local", "simulate",
           "binarize", "variance")
_INDEX = {name: i for i, name in enumerate(STREAMS)}


def root(seed: int) -> jax.Array:
  """The run's root key from ``config.seed``."""
  return jax.random.key(int(seed))


def stream(root_key: jax.Array, name: str) -> jax.Array:
  """The named stream of a run: ``fold_in(root_key, index of name)``."""
  if name not in _INDEX:
    raise ValueError(f"unknown key stream {name!r}; the streams are {', '.join(STREAMS)}.")
  return jax.random.fold_in(root_key, _INDEX[name])


@jax.jit
def _seed_bits(key: jax.Array) -> jax.Array:
  return jax.random.bits(key, (2,), dtype=np.uint32)   # one program, not one per op


def numpy_seed(key: jax.Array) -> int:
  """A non-negative 63-bit integer drawn from ``key``, to seed NumPy generators."""
  bits = np.asarray(_seed_bits(key), np.uint64)
  return int((bits[0] << np.uint64(31)) ^ bits[1])


def run_streams(seed: int) -> dict[str, jax.Array]:
  """Every named stream of the run with this seed (for notebooks and tests)."""
  r = root(seed)
  return {name: stream(r, name) for name in STREAMS}
