"""vae_jax: latent-variable generative models in JAX.

The library (experiments live in ``experiments/``), by what a reader looks for:

* ``models/``      the trainable models, one module each, behind one registry
  (``models.MODELS``): ``vae``, ``discrete_vae`` (Bernoulli latents), ``made``
  (the exact-likelihood baseline); ``networks`` the VAE's Flax modules.
* ``families/``    posteriors and priors as distribution objects: the Gaussian,
  planar and IAF flows, the mixture and VampPrior, two stochastic layers.
* ``inference/``   ``likelihoods`` p(x|z), ``objectives`` (the ELBO), ``iwae``
  (the streamed IWAE bound), ``estimators`` (score function, reparametrization,
  VIMCO, DReG, STL and their statistics), ``amortization`` (per-example q*,
  the gaps), ``evaluation``.
* ``training/``    the one ``trainer`` and its parts: ``step`` (the jitted
  train step), ``feed``, ``sharding``,
  ``distributed``, ``checkpointing``, ``workdir`` (run files), ``progress``,
  ``optim``.
* ``classical/``   exact models: ``bayes`` (conjugate: MLE, MAP, posterior,
  evidence, predictive), ``gmm`` and ``ppca`` (EM, posterior, ELBO identity).
* ``distributions`` the densities and KLs written out; ``data`` datasets and
  binarization; ``keys`` the run's named random streams; ``prng`` jax.random's
  threefry draws, unrolled for XLA:CPU; ``tasks`` a run's
  data and task from its config, ``load_checkpoint``; ``plots`` figures (the
  only module that imports matplotlib; not imported here); ``errors``.

Every module is also importable under its flat name of earlier versions
(``vae_jax.trainer``, ``vae_jax.gmm``, ``vae_jax.autoregressive``, ...).
"""

import sys as _sys

from vae_jax.distributions import (bernoulli_log_prob, bernoulli_sample,
                                   kl_normal_normal, kl_normal_std_normal,
                                   normal_log_prob, normal_sample)
from vae_jax.errors import UserError
from vae_jax.models import VAE, make_vae
from vae_jax.inference.objectives import elbo, iwae_bound, reconstruct, sample_prior
from vae_jax.data import Dataset, load_arrays
from vae_jax.training.step import train_step
from vae_jax.training.trainer import Task, TrainState, create_train_state, train
from vae_jax.tasks import build_task, load_checkpoint, load_data
from vae_jax import families, keys, models, prng, tasks
from vae_jax.classical import bayes, gmm, ppca
from vae_jax.inference import (amortization, estimators, evaluation, iwae, likelihoods,
                               objectives)
from vae_jax.models import discrete_vae
from vae_jax.models import made as autoregressive
from vae_jax.training import (checkpointing, distributed, feed, optim, progress, sharding,
                              trainer, workdir)

# Every module under the flat name it had before the subpackages (old imports work).
for _name, _module in dict(
    discrete_vae=discrete_vae, autoregressive=autoregressive, bayes=bayes, gmm=gmm,
    ppca=ppca, amortization=amortization, estimators=estimators, evaluation=evaluation,
    iwae=iwae, likelihoods=likelihoods, objectives=objectives, checkpointing=checkpointing,
    distributed=distributed, feed=feed, optim=optim, progress=progress, sharding=sharding,
    trainer=trainer, workdir=workdir).items():
  _sys.modules[f"vae_jax.{_name}"] = _module
del _name, _module

__version__ = "0.1.0"
