"""vae_jax: latent-variable generative models in JAX.

The library, one idea a module (experiments live in ``experiments/``):

* ``distributions``  diagonal Normal, Bernoulli, Categorical; analytic KLs.
* ``models``         Flax encoders/decoders and the VAE module.
* ``objectives``     the ELBO, the importance-weighted bound, sampling helpers.
* ``estimators``     score-function / reparametrization / VIMCO / DReG / STL
  gradients and their statistics.
* ``bayes``          conjugate models: MLE, MAP, posterior, evidence, predictive.
* ``gmm``, ``ppca``  exact latent-variable models: EM, posterior, ELBO identity.
* ``amortization``   per-example q*, amortization and approximation gaps.
* ``discrete_vae``   a VAE with Bernoulli latents (score-function training).
* ``autoregressive`` MADE: the exact-likelihood baseline.
* ``data``           datasets (embedded, TFDS, IDX), binarization, batches.
* ``keys``           the run's named random streams.
* ``trainer``        the one training loop (train state, step, checkpoints,
  resume, NaN stop, metrics, TensorBoard, data parallelism).
* ``tasks``          each trainable model as a trainer task built from a
  config; ``load_checkpoint``.
* ``evaluation``     per-example averages over a split, bits/dim.
* ``sharding``, ``checkpointing``, ``workdir``  devices, orbax, run files.
* ``plots``          figures (the only module that imports matplotlib; not
  imported here).
* ``errors``         ``UserError`` and input checks.
"""

from vae_jax.distributions import (bernoulli_log_prob, bernoulli_sample,
                                   kl_normal_normal, kl_normal_std_normal,
                                   normal_log_prob, normal_sample)
from vae_jax.errors import UserError
from vae_jax.models import VAE, make_vae
from vae_jax.objectives import elbo, iwae_bound, reconstruct, sample_prior
from vae_jax.data import Dataset, load_arrays
from vae_jax.trainer import Task, TrainState, create_train_state, train, train_step
from vae_jax.tasks import build_task, load_checkpoint, load_data
from vae_jax import (amortization, autoregressive, bayes, discrete_vae, estimators,
                     evaluation, gmm, keys, objectives, ppca, tasks, trainer)

__version__ = "0.1.0"
