"""The VAE (``experiments/vae.py``): Burda et al. (2015)'s 1-stochastic-layer model.

  python -m experiments.main --config=experiments/configs/vae.py --workdir=/tmp/vae
  python -m experiments.main --config=experiments/configs/vae.py:conv --workdir=/tmp/conv
  python -m experiments.main --config=experiments/configs/vae.py \
      --config.model.latent_dim=20 --config.objective.estimator=iwae \
      --config.objective.num_samples=5 --workdir=/tmp/iwae

Variants (comma-separated after the colon, applied in order):
  tiny      seconds on the 8x8 digits (tests, smoke runs)
  conv      convolutional encoder/decoder, 16 latents, 10k steps
  gaussian  grey levels with a Gaussian p(x|z) (one learned scale)
  vem       variational EM: 5 encoder steps (E) then 1 decoder step (M) per cycle
  mnist_idx MNIST IDX files (set --config.data.data_dir=DIR)
"""

import ml_collections

from experiments.configs import common


def _conv(config):
  config.model.kind = "conv"
  config.model.latent_dim = 16
  config.train.num_steps = 10000


def _gaussian(config):
  config.data.binarize = "none"
  config.model.likelihood = "gaussian"


def _vem(config):
  config.objective.e_steps = 5
  config.objective.m_steps = 1


def _mnist_idx(config):
  config.data.dataset = "mnist_idx"


def _tiny(config):
  common.tiny_training(config)
  config.model.hidden_dims = (32,)
  config.model.latent_dim = 4


VARIANTS = {"tiny": _tiny, "conv": _conv, "gaussian": _gaussian, "vem": _vem,
            "mnist_idx": _mnist_idx}


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.experiment = "vae"
  config.seed = 0
  config.data = common.data_section()
  config.model = ml_collections.ConfigDict(dict(
      kind="mlp", likelihood="bernoulli", gaussian_scale="shared", latent_dim=50,
      hidden_dims=(200, 200), activation="relu"))
  config.objective = ml_collections.ConfigDict(dict(
      estimator="reparam", num_samples=1, e_steps=1, m_steps=1, baseline_decay=0.9))
  config.train = common.train_section()
  config.eval = ml_collections.ConfigDict(dict(batch_size=500, iw_samples=100))
  return common.apply_variants(config, arg, VARIANTS)
