"""Gradient variance of every estimator (``experiments/estimator_variance.py``).

A VAE (the ``model``, ``data`` and ``train`` sections, trained with the
reparametrized ELBO) is checkpointed at each of ``variance.steps``; at each,
on one fixed held-out batch, every estimator's encoder gradient is drawn
``variance.draws`` times for S = ``variance.num_samples`` (all of them at the
last step, the first elsewhere). Each family of ``variance.posteriors`` (flows
with ``variance.flow_steps`` maps) gets its own VAE, measured the same way
beside it: ``coupling``, a flow with log q at any z, takes every estimator.

  python -m experiments.main --config=experiments/configs/estimator_variance.py --workdir=/tmp/var

Variants: digits (about a minute on the 8x8 digits), tiny (seconds).
"""

import ml_collections

from experiments.configs import common
from experiments.configs import vae


def _digits(config):
  config.data.dataset = "digits"
  config.data.binarize = "static"
  config.model.hidden_dims = (64,)
  config.model.latent_dim = 8
  config.train.batch_size = 50
  config.eval.batch_size = 100
  config.variance.steps = (0, 100, 300)
  config.variance.num_samples = (2, 8, 32)
  config.variance.draws = 32


def _tiny(config):
  vae.VARIANTS["tiny"](config)
  config.variance.update(estimators=("reparam", "score", "vimco"), num_samples=(2,),
                         steps=(0, 20), draws=4)


VARIANTS = {"digits": _digits, "tiny": _tiny}


def get_config(arg=None):
  config = vae.get_config()
  config.experiment = "estimator_variance"
  # Compiled programs kept for the next run: default (~/.cache/vae_jax/xla, or
  # $VAE_JAX_COMPILATION_CACHE) | a folder | off (vae_jax.compilation_cache).
  config.compilation_cache = "default"
  config.variance = ml_collections.ConfigDict(dict(
      estimators=("reparam", "score", "score_baseline", "score_loo", "stl", "iwae",
                  "vimco", "dreg"),
      num_samples=(2, 8, 32), steps=(0, 200, 1000, 3000), draws=64,
      # Families measured beside model.posterior's, one VAE each (() none), and the
      # number of maps of those that are flows.
      posteriors=("coupling",), flow_steps=2))
  return common.apply_variants(config, arg, VARIANTS)
