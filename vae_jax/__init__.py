"""vae_jax: latent-variable generative models in JAX.

Modules, one idea each:

* ``distributions``  diagonal Normal, Bernoulli, Categorical; analytic KLs.
* ``models``         Flax encoders/decoders and the VAE module.
* ``objectives``     the ELBO, the importance-weighted bound, sampling helpers.
* ``data``           datasets (embedded, TFDS, IDX), binarization, batches.
* ``train``          train state, jitted train/eval steps, train_and_evaluate.
* ``checkpointing``  orbax checkpoints with a safe restore.
* ``plots``, ``workdir``  figures and run outputs.
* ``bayes``          conjugate models: MLE, MAP, posterior, evidence, predictive.
* ``gmm``, ``ppca``  exact latent-variable models: EM, posterior, ELBO identity.
* ``estimators``     score-function / reparametrization / VIMCO / DReG / STL
  gradients and their statistics.
* ``amortization``   per-example q*, amortization and approximation gaps.
* ``discrete_vae``   a VAE with Bernoulli latents (score-function training).
* ``autoregressive`` MADE: the exact-likelihood baseline.
* ``lvm_experiments``, ``bayes_experiment``, ``estimator_experiments``:
  the runner's non-VAE experiments.
"""

from vae_jax.distributions import (bernoulli_log_prob, bernoulli_sample,
                                   kl_normal_normal, kl_normal_std_normal,
                                   normal_log_prob, normal_sample)
from vae_jax.errors import UserError
from vae_jax.models import VAE, make_vae
from vae_jax.objectives import elbo, iwae_bound, reconstruct, sample_prior
from vae_jax.data import Dataset, load_arrays
from vae_jax.train import TrainState, create_train_state, train_and_evaluate, train_step
from vae_jax import (amortization, autoregressive, bayes, discrete_vae, estimators, gmm,
                     objectives, ppca)

__version__ = "0.1.0"
