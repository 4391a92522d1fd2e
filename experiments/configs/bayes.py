"""Conjugate Bayes on simulated data (``experiments/bayes.py``).

  python -m experiments.main --config=experiments/configs/bayes.py --workdir=/tmp/bayes
  python -m experiments.main --config=experiments/configs/bayes.py \
      --config.bayes.sizes='(1, 10, 100)' --config.bayes.trials=50 --workdir=/tmp/bayes

The default also compares the fair coin with Beta(1, 1)-Bernoulli by their
evidence, for a fair coin and one of bias 0.6.

Variants (comma-separated after the colon, applied in order):
  tiny   three sizes, 20 trials of 200 held-out points: seconds (tests, smoke runs)
"""

import ml_collections

from experiments.configs import common


def _tiny(config):
  config.bayes.sizes = (1, 5, 50)
  config.bayes.trials = 20
  config.bayes.heldout = 200


VARIANTS = {"tiny": _tiny}


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.experiment = "bayes"
  # Compiled programs kept for the next run: default (~/.cache/vae_jax/xla, or
  # $VAE_JAX_COMPILATION_CACHE) | a folder | off (vae_jax.compilation_cache).
  config.compilation_cache = "default"
  config.seed = 0  # the root of every key of the run (vae_jax.keys)
  config.bayes = ml_collections.ConfigDict(dict(
      # Training-set sizes n; trial t's training set of size n is the first n
      # points of one stream of max(sizes) points (nested prefixes).
      sizes=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
      trials=200,      # independent simulated data sets averaged per n
      heldout=1000,    # held-out examples per trial for the log-loss
      # The Bayes factor of the fair coin (theta = 1/2) against Beta-Bernoulli,
      # at every n of sizes, for coins of these true biases (() for none) ...
      factor_truths=(0.5, 0.6),
      factor_prior=(1.0, 1.0)))  # ... with theta ~ Beta(a, b) under Beta-Bernoulli
  return common.apply_variants(config, arg, VARIANTS)
