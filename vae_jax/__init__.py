"""vae_jax: latent-variable generative models in JAX.

Modules, one idea each:

* ``distributions``  diagonal Normal, Bernoulli, Categorical; analytic KLs.
* ``models``         Flax encoders/decoders and the VAE module.
* ``objectives``     the ELBO, the importance-weighted bound, sampling helpers.
* ``data``           datasets (embedded, TFDS, IDX), binarization, batches.
* ``train``          train state, jitted train/eval steps, train_and_evaluate.
* ``checkpointing``  orbax checkpoints with a safe restore.
* ``plots``, ``workdir``  figures and run outputs.
* ``bayes``, ``gmm``, ``ppca``  exact models: conjugate Bayes, EM.
* ``estimators``, ``amortization``, ``discrete_vae``  gradient estimators and
  variational EM.
"""

from vae_jax.distributions import (bernoulli_log_prob, bernoulli_sample,
                                   kl_normal_normal, kl_normal_std_normal,
                                   normal_log_prob, normal_sample)
from vae_jax.errors import UserError
from vae_jax.models import VAE, make_vae
from vae_jax.objectives import elbo, iwae_bound, reconstruct, sample_prior
from vae_jax.data import Dataset, load_arrays
from vae_jax.train import TrainState, create_train_state, train_and_evaluate, train_step

__version__ = "0.1.0"
