"""Standard vs learned priors (``experiments/priors.py``): the VampPrior's claim on MNIST.

Tomczak & Welling (2018), "VAE with a VampPrior", report on dynamically
binarized MNIST that replacing the VAE's N(0, I) prior by the VampPrior (a
uniform mixture of the encoder's q at K = 500 learned pseudo-inputs) raises
the test log-likelihood of a one-stochastic-layer VAE (40 latents, two
hidden layers of 300 units, KL warm-up; IWAE with 5,000 samples) from
-88.56 to -85.57 nats. This recipe trains one VAE per prior of
``priors.priors`` (``standard``, ``mog``: a learned mixture of K Gaussians,
``vamp``) with everything else equal, in WORKDIR/vae_<prior>, and evaluates
each held-out split by the IWAE bound with ``priors.iw_samples`` = 5,000.

  python -m experiments.main --config=experiments/configs/priors.py:cpu --workdir=/tmp/priors

Differences from the paper, kept on purpose: ReLU MLP layers instead of gated
ones, Adam at 1e-3 instead of 5e-4 with early stopping; the full recipe needs
TFDS ``mnist`` (prepared with ``tfds build mnist --data_dir=DIR
--file_format=array_record``; pass ``--config.data.data_dir=DIR``) and an
accelerator. The MoG prior is this project's addition (the paper's tables
compare standard and VampPrior only).

Variants: cpu (the MNIST test images ``mnist_t10k``: 9,000 train / 1,000
held out, 20 epochs, K = 5,000 on 500 images; the files as for burda2015.py's
cpu forms: ``python scripts/download_mnist.py`` gets them), tiny (seconds on
the 8x8 digits).
"""

import ml_collections

from experiments.configs import burda2015
from experiments.configs import common
from experiments.configs import vae

# Tomczak & Welling (2018), Table 1, MNIST (dynamic), VAE with L = 1: test log p(x).
PAPER = {"standard": -88.56, "vamp": -85.57}
MNIST_TRAIN = 60000
CPU_EPOCHS = 20


def _cpu(config):
  config.data.update(dataset="mnist_t10k", data_dir=burda2015.mnist_dir())
  steps_per_epoch = 9000 // config.train.batch_size
  config.train.update(num_steps=CPU_EPOCHS * steps_per_epoch, eval_every=5 * steps_per_epoch,
                      checkpoint_every=5 * steps_per_epoch, log_every=steps_per_epoch)
  config.objective.kl_warmup_steps = 5 * steps_per_epoch
  config.priors.eval_examples = 500


def _tiny(config):
  config.data.update(dataset="digits", data_dir=None)
  vae.VARIANTS["tiny"](config)
  config.model.latent_dim = 4
  config.objective.kl_warmup_steps = 20
  config.priors.update(components=8, iw_samples=200, eval_examples=100)


VARIANTS = {"cpu": _cpu, "tiny": _tiny}


def get_config(arg=None):
  config = vae.get_config()
  config.experiment = "priors"
  # Compiled programs kept for the next run: default (~/.cache/vae_jax/xla, or
  # $VAE_JAX_COMPILATION_CACHE) | a folder | off (vae_jax.compilation_cache).
  config.compilation_cache = "default"
  config.data.update(dataset="mnist", binarize="dynamic")
  config.model.update(latent_dim=40, hidden_dims=(300, 300))
  config.objective.kl_warmup_steps = 100 * MNIST_TRAIN // 100     # 100 epochs, as the paper
  config.train.update(batch_size=100, num_steps=2000 * MNIST_TRAIN // 100,
                      eval_every=50 * MNIST_TRAIN // 100, checkpoint_every=10 * MNIST_TRAIN // 100,
                      log_every=MNIST_TRAIN // 100)
  config.eval.iw_samples = 0              # the recipe's own IWAE-5000 comes after training
  config.priors = ml_collections.ConfigDict(dict(
      priors=("standard", "mog", "vamp"),  # one VAE per prior, all else equal
      components=500,                      # K of mog and vamp (the paper's pseudo-inputs)
      iw_samples=5000,                     # K of the IWAE estimate of log p(x)
      eval_examples=10000))                # held-out images evaluated (the first ones)
  config.paper = ml_collections.ConfigDict(dict(
      table="Tomczak & Welling (2018), Table 1, MNIST, VAE (L = 1)",
      standard=PAPER["standard"], vamp=PAPER["vamp"]))
  return common.apply_variants(config, arg, VARIANTS)
