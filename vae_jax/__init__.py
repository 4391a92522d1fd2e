"""vae_jax: latent-variable generative models in JAX.

The library (experiments live in ``experiments/``):

* ``models/``        the trainable models, one module each, behind one registry
  (``models.MODELS``): ``vae``, ``discrete_vae`` (Bernoulli latents), ``made``
  (the exact-likelihood baseline); ``networks`` holds the VAE's Flax modules.
* ``families/``      posteriors and priors as distribution objects: the
  Gaussian, planar and IAF flows, mixture and VampPrior, two stochastic layers.
* ``distributions``  the densities and KLs written out (diagonal Normal,
  Bernoulli, Categorical).
* ``likelihoods``    the decoder's p(x|z).
* ``objectives``     the ELBO, the importance-weighted bound, sampling helpers;
  ``iwae`` the streamed IWAE bound.
* ``estimators``     score-function / reparametrization / VIMCO / DReG / STL
  gradients and their statistics.
* ``bayes``          conjugate models: MLE, MAP, posterior, evidence, predictive.
* ``gmm``, ``ppca``  exact latent-variable models: EM, posterior, ELBO identity.
* ``amortization``   per-example q*, amortization and approximation gaps.
* ``data``           datasets (embedded, TFDS, IDX), binarization, batches.
* ``keys``           the run's named random streams.
* ``trainer``        the one training loop (train state, step, checkpoints,
  resume, NaN stop, metrics, TensorBoard, data parallelism); ``feed``,
  ``sharding``, ``distributed``, ``checkpointing``, ``workdir``, ``progress``,
  ``optim`` its parts.
* ``tasks``          a run's data and task from its config; ``load_checkpoint``.
* ``evaluation``     per-example averages over a split, bits/dim, active units.
* ``plots``          figures (the only module that imports matplotlib; not
  imported here).
* ``errors``         ``UserError`` and input checks.
"""

import sys as _sys

from vae_jax.distributions import (bernoulli_log_prob, bernoulli_sample,
                                   kl_normal_normal, kl_normal_std_normal,
                                   normal_log_prob, normal_sample)
from vae_jax.errors import UserError
from vae_jax.models import VAE, make_vae
from vae_jax.objectives import elbo, iwae_bound, reconstruct, sample_prior
from vae_jax.data import Dataset, load_arrays
from vae_jax.trainer import Task, TrainState, create_train_state, train, train_step
from vae_jax.tasks import build_task, load_checkpoint, load_data
from vae_jax import (amortization, bayes, estimators, evaluation, families, gmm, keys, models,
                     objectives, ppca, tasks, trainer)
from vae_jax.models import discrete_vae
from vae_jax.models import made as autoregressive

# The models' modules under the names they had before the registry (old imports work).
_sys.modules["vae_jax.discrete_vae"] = discrete_vae
_sys.modules["vae_jax.autoregressive"] = autoregressive

__version__ = "0.1.0"
