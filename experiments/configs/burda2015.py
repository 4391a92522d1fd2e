"""Burda, Grosse & Salakhutdinov (2015), Table 1: the models with 1 and 2 stochastic layers.

The architecture of the paper: x (784) - 200 - 200 - z (50) with tanh hidden
units, a diagonal Gaussian q(z|x), a Bernoulli p(x|z) mirroring it; with two
stochastic layers x - 200 - 200 - z1 (100) - 100 - 100 - z2 (50) for q, and
z2 - 100 - 100 - z1 - 200 - 200 - x for p, every conditional of z a diagonal
Gaussian and p(z2) = N(0, I) (the authors' experiments.py: latent_units
[100, 50], hidden_units_q [[200, 200], [100, 100]]); Adam with
beta = (0.9, 0.999) and eps = 1e-4, batches of 20, the learning rate
1e-3 * 10^(-i/7) for 3^i epochs, i = 0..7 (3,280 epochs); dynamically
binarized MNIST (60,000 training images); test NLL by the IWAE bound with
k = 5,000 and active units by Cov_x(E_q[z_u]) > 1e-2.

  python scripts/reproduce.py iwae_k5            # train, evaluate, print a table row
  python -m experiments.main --config=experiments/configs/burda2015.py:iwae_k5 --workdir=W

Checked against arXiv:1509.00519v4, Sec. 5.1, Table 1 and Appendix C. Two
differences remain: Flax's default initialization (LeCun normal) where the
paper used Glorot & Bengio's, and no data-mean initialization of the decoder's
output bias (the authors' code does it; the paper does not say).

Variants: vae_k1, vae_k5, vae_k50 (the ELBO with k samples), iwae_k1,
iwae_k5, iwae_k50 (the k-sample IWAE bound); vae2_k1 ... iwae2_k50 the same
with two stochastic layers. Each records the paper's NLL in ``config.paper``
(and, for one layer, its active units; the two-layer counts are not pinned:
we could not check them against the paper's table). The full recipes need TFDS ``mnist``
(prepared with ``tfds build mnist --data_dir=DIR --file_format=array_record``)
and an accelerator: 9.8 million steps. Add ``cpu`` (e.g. ``iwae_k5,cpu``) for a
few-minute form on the MNIST test images (``mnist_t10k``: 9,000 train / 1,000
held out), 20 epochs, read from ``mnist_dir()``: ``../shared/data/mnist`` on
development machines, else where ``python scripts/download_mnist.py`` puts them.
"""

import os

import ml_collections
from ml_collections import config_dict

from experiments.configs import common
from experiments.configs import vae

# Table 1, MNIST, one stochastic layer: (test NLL in nats, active units).
PAPER = {"vae_k1": (86.76, 19), "vae_k5": (86.47, 20), "vae_k50": (86.35, 20),
         "iwae_k1": (86.76, 19), "iwae_k5": (85.54, 22), "iwae_k50": (84.78, 25),
         # Two stochastic layers (test NLL only).
         "vae2_k1": (85.33, None), "vae2_k5": (85.01, None), "vae2_k50": (84.78, None),
         "iwae2_k1": (85.33, None), "iwae2_k5": (83.89, None), "iwae2_k50": (82.90, None)}
EPOCHS = 3280                     # sum of 3^i, i = 0..7
MNIST_TRAIN = 60000
SHARED_MNIST = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "..",
                                             "shared", "data", "mnist"))
CPU_EPOCHS = 20


def mnist_dir() -> str:
  """The cpu forms' MNIST test files: ``SHARED_MNIST`` beside the clone where it
  exists (development and CI machines), else the folder that
  ``python scripts/download_mnist.py`` fills (``vae_jax.mnist_files.default_dir()``)."""
  if os.path.isdir(SHARED_MNIST):
    return SHARED_MNIST
  from vae_jax import mnist_files  # pylint: disable=g-import-not-at-top
  return mnist_files.default_dir()


def _recipe(name):
  objective, k = name.split("_k")
  layers = 2 if objective.endswith("2") else 1
  objective = objective.rstrip("2")

  def apply(config):
    config.objective.estimator = "reparam" if objective == "vae" else "iwae"
    config.objective.num_samples = int(k)
    if layers == 2:
      config.model.update(latent_dim=100, hidden_dims=(200, 200), top_latent_dim=50,
                          top_hidden_dims=(100, 100))
    config.paper = ml_collections.ConfigDict(dict(
        table=f"Burda et al. (2015), Table 1, MNIST, {layers} stochastic layer"
              + ("s" if layers == 2 else ""),
        model=f"{objective.upper()} k={k}", nll=PAPER[name][0],
        active_units=PAPER[name][1], layers=layers))
  return apply


def _cpu(config):
  config.data.update(dataset="mnist_t10k", data_dir=mnist_dir())
  steps_per_epoch = 9000 // config.train.batch_size
  config.train.update(num_steps=CPU_EPOCHS * steps_per_epoch, eval_every=5 * steps_per_epoch,
                      checkpoint_every=5 * steps_per_epoch, log_every=steps_per_epoch)


VARIANTS = {name: _recipe(name) for name in PAPER}
VARIANTS["cpu"] = _cpu


def get_config(arg=None):
  config = vae.get_config()
  config.data.update(dataset="mnist", binarize="dynamic")
  config.model.update(kind="mlp", likelihood="bernoulli", latent_dim=50,
                      hidden_dims=(200, 200), activation="tanh")
  config.train.update(batch_size=20, learning_rate=1e-3, adam_eps=1e-4, lr_schedule="burda",
                      num_steps=EPOCHS * MNIST_TRAIN // 20, eval_every=100 * MNIST_TRAIN // 20,
                      checkpoint_every=10 * MNIST_TRAIN // 20, log_every=MNIST_TRAIN // 20)
  config.eval.update(batch_size=500, iw_samples=0)   # scripts/reproduce.py: k = 5000 after
  config.paper = ml_collections.ConfigDict(dict(
      table="", model="", nll=0.0, layers=1,
      active_units=config_dict.placeholder(int)))   # None: not pinned
  return common.apply_variants(config, arg, VARIANTS)
