"""Probabilistic PCA: closed form, EM and PCA-EM (``experiments/ppca.py``).

  python -m experiments.main --config=experiments/configs/ppca.py --workdir=/tmp/ppca
  python -m experiments.main --config=experiments/configs/ppca.py \
      --config.ppca.latent_dim=10 --workdir=/tmp/ppca

The default fits mnist_5k (grey levels) with M = 2 and 200 EM iterations.

Variants (comma-separated after the colon, applied in order):
  tiny   the 8x8 scikit-learn digits, 60 EM iterations: seconds (tests, smoke runs)
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import common


def _tiny(config):
  config.data.dataset = "digits"
  config.ppca.em_iters = 60


VARIANTS = {"tiny": _tiny}


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.experiment = "ppca"
  # Compiled programs kept for the next run: default (~/.cache/vae_jax/xla, or
  # $VAE_JAX_COMPILATION_CACHE) | a folder | off (vae_jax.compilation_cache).
  config.compilation_cache = "default"
  config.seed = 0  # the root of every key of the run (vae_jax.keys)
  config.data = ml_collections.ConfigDict(dict(
      dataset="mnist_5k", data_dir=config_dict.placeholder(str)))  # grey levels
  config.ppca = ml_collections.ConfigDict(dict(
      latent_dim=2,    # M < D (the latent figure shows z_1, z_2)
      em_iters=200))   # iterations of EM and of PCA-EM from a random W
  return common.apply_variants(config, arg, VARIANTS)
