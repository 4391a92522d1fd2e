"""MADE (``experiments/autoregressive.py``): the exact-likelihood baseline beside the VAE.

  python -m experiments.main --config=experiments/configs/autoregressive.py --workdir=/tmp/made
  ... --config.model.hidden_dims='(500, 500)'   # () is the fully visible logistic model

Variants: tiny (seconds on the 8x8 digits).
"""

import ml_collections

from experiments.configs import common


def _tiny(config):
  common.tiny_training(config)
  config.model.hidden_dims = (64,)


VARIANTS = {"tiny": _tiny}


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.experiment = "autoregressive"
  # Compiled programs kept for the next run: default (~/.cache/vae_jax/xla, or
  # $VAE_JAX_COMPILATION_CACHE) | a folder | off (vae_jax.compilation_cache).
  config.compilation_cache = "default"
  config.seed = 0
  config.data = common.data_section()
  config.model = ml_collections.ConfigDict(dict(name="made", hidden_dims=(500,)))
  config.train = common.train_section()
  config.distributed = common.distributed_section()
  config.eval = ml_collections.ConfigDict(dict(batch_size=500))
  return common.apply_variants(config, arg, VARIANTS)
