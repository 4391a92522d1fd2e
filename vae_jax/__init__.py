"""vae_jax: latent-variable generative models in JAX.

The library (experiments live in ``experiments/``), by what a reader looks for:

* ``models/``      the trainable models, one module each, found by name
  (``models.REGISTRY``): ``vae``, ``discrete_vae`` (Bernoulli latents), ``made``
  (the exact-likelihood baseline); ``networks`` the VAE's Flax modules.
* ``families/``    posteriors and priors as distribution objects, and the parts a
  config names (``posteriors/``: gaussian, planar, iaf, coupling; ``priors/``: standard,
  mog, vamp), each found by name; two stochastic layers.
* ``inference/``   ``likelihoods`` p(x|z), ``objectives`` (the ELBO), ``iwae``
  (the streamed IWAE bound), ``estimators`` (score function, reparametrization,
  VIMCO, DReG, STL and their statistics), ``amortization`` (per-example q*,
  the gaps), ``evaluation``.
* ``training/``    the one ``trainer`` and its parts: ``task`` (the ``Task`` a
  model hands the loop, its ``TrainState``), ``step`` (the jitted train step),
  ``feed``, ``sharding``, ``distributed``, ``checkpointing``, ``workdir`` (run
  files), ``progress``, ``optim``.
* ``classical/``   exact models: ``bayes`` (conjugate: MLE, MAP, posterior,
  evidence, predictive), ``gmm`` and ``ppca`` (EM, posterior, ELBO identity).
* ``distributions`` the densities and KLs written out; ``data`` datasets and
  binarization; ``keys`` the run's named random streams; ``prng`` jax.random's
  threefry draws, unrolled for XLA:CPU; ``tasks`` a run's data and task from
  its config, ``load_checkpoint``; ``compilation_cache`` JAX's persistent
  cache of compiled programs; ``plots`` figures (the only module that imports
  matplotlib); ``errors``.

``import vae_jax`` imports nothing heavy: each name below loads its module on
first use, so a run pays only for the modules its experiment uses. It turns
on JAX's persistent compilation cache (``vae_jax.compilation_cache``: a
re-run compiles nothing; ``VAE_JAX_COMPILATION_CACHE=off`` turns it off).
"""

import importlib as _importlib

from vae_jax import compilation_cache as _compilation_cache
from vae_jax.errors import UserError

__version__ = "0.1.0"

# The top-level API: name -> the module that defines it (imported on first use).
_API = {
    "bernoulli_log_prob": "vae_jax.distributions",
    "bernoulli_sample": "vae_jax.distributions",
    "kl_normal_normal": "vae_jax.distributions",
    "kl_normal_std_normal": "vae_jax.distributions",
    "normal_log_prob": "vae_jax.distributions",
    "normal_sample": "vae_jax.distributions",
    "VAE": "vae_jax.models.networks",
    "make_vae": "vae_jax.models.networks",
    "elbo": "vae_jax.inference.objectives",
    "iwae_bound": "vae_jax.inference.objectives",
    "reconstruct": "vae_jax.inference.objectives",
    "sample_prior": "vae_jax.inference.objectives",
    "Dataset": "vae_jax.data",
    "load_arrays": "vae_jax.data",
    "train_step": "vae_jax.training.step",
    "Task": "vae_jax.training.task",
    "TrainState": "vae_jax.training.task",
    "create_train_state": "vae_jax.training.trainer",
    "train": "vae_jax.training.trainer",
    "build_task": "vae_jax.tasks",
    "load_checkpoint": "vae_jax.tasks",
    "load_data": "vae_jax.tasks",
}


def __getattr__(name):
  if name in _API:
    value = getattr(_importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value
  raise AttributeError(f"module 'vae_jax' has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(_API))


_compilation_cache.enable_default()
