"""The discrete-latent VAE (``experiments/discrete_vae.py``): L Bernoulli latents,
a score-function encoder gradient, exact ELBO and log p(x) by enumerating 2^L codes.

  python -m experiments.main --config=experiments/configs/discrete_vae.py --workdir=/tmp/dvae
  ... --config.objective.estimator=score_baseline --config.model.latent_dim=8

Variants: tiny (seconds on the 8x8 digits).
"""

import ml_collections

from experiments.configs import common


def _tiny(config):
  common.tiny_training(config)
  config.model.hidden_dims = (32,)
  config.model.latent_dim = 4
  config.train.grad_stats_every = 30


VARIANTS = {"tiny": _tiny}


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.experiment = "discrete_vae"
  # Compiled programs kept for the next run: default (~/.cache/vae_jax/xla, or
  # $VAE_JAX_COMPILATION_CACHE) | a folder | off (vae_jax.compilation_cache).
  config.compilation_cache = "default"
  config.seed = 0
  config.data = common.data_section()
  config.model = ml_collections.ConfigDict(dict(name="discrete_vae", hidden_dims=(200,),
                                                latent_dim=10))
  config.objective = ml_collections.ConfigDict(dict(
      estimator="score_loo", num_samples=4, baseline_decay=0.9))
  config.train = common.train_section(num_steps=10000, grad_stats_every=500)
  config.distributed = common.distributed_section()
  config.eval = ml_collections.ConfigDict(dict(batch_size=500))
  return common.apply_variants(config, arg, VARIANTS)
