"""Evaluate any trained run (``experiments/evaluate.py``) at the literature's standard.

  python -m experiments.main --config=experiments/configs/evaluate.py \
      --config.checkpoint=RUN_WORKDIR --config.iw_samples=5000 --workdir=OUT

A VAE gets the importance-weighted bound with K = ``iw_samples`` (Burda et
al., 2015), streamed ``chunk_size`` samples at a time; the discrete VAE (L <=
12) and MADE get their exact log-likelihood. The data and binarization are the
run's own (its config.json).

Variants: tiny (K = 50: seconds).
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import common


def _tiny(config):
  config.iw_samples = 50
  config.chunk_size = 20           # K = 50 is no multiple of it: a shorter last chunk


VARIANTS = {"tiny": _tiny}


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.experiment = "evaluate"
  # Compiled programs kept for the next run: default (~/.cache/vae_jax/xla, or
  # $VAE_JAX_COMPILATION_CACHE) | a folder | off (vae_jax.compilation_cache).
  config.compilation_cache = "default"
  config.seed = 0                  # the evaluation's own keys (vae_jax.keys "eval" stream)
  config.checkpoint = ""           # the workdir of the run to evaluate (required)
  config.step = config_dict.placeholder(int)   # its checkpoint step; the newest when None
  config.split = "eval"            # eval | train (the run's own data and binarization)
  config.estimate = "auto"         # auto (exact where there is one, else iwae) | iwae | exact
  config.iw_samples = 5000         # K of the IWAE estimate
  config.chunk_size = config_dict.placeholder(int)  # IWAE samples per chunk (memory);
                                   # None: about 2,000 decoded rows per chunk (vae_jax.inference.iwae)
  config.batch_size = 20           # examples per jitted IWAE call
  config.elbo_samples = 10         # samples of the ELBO's reconstruction term (analytic KL)
  config.max_examples = 0          # evaluate the first N examples of the split (0: all)
  return common.apply_variants(config, arg, VARIANTS)
