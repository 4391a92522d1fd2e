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
  planar    q(z|x): the Gaussian through 4 planar maps (Rezende & Mohamed, 2015)
  iaf       q(z|x): the Gaussian through 2 IAF steps (Kingma et al., 2016)
  coupling  q(z|x): the Gaussian through 4 spline coupling layers (Durkan et al., 2019),
            with log q(z|x) at any z: every estimator takes it
  mog       p(z): a learned mixture of 10 Gaussians
  vamp      p(z): the VampPrior with 500 pseudo-inputs (Tomczak & Welling, 2018)
  savae     semi-amortized inference (Kim et al., 2018): each example's q refined by
            5 gradient steps on its ELBO, the encoder trained through them
            (refine_steps=0 gives back exactly the default VAE)
"""

import ml_collections
from ml_collections import config_dict

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


def _planar(config):
  config.model.posterior = "planar"
  config.model.flow_steps = 4


def _iaf(config):
  config.model.posterior = "iaf"
  config.model.flow_steps = 2


def _coupling(config):
  config.model.posterior = "coupling"
  config.model.flow_steps = 4


def _savae(config):
  # Only these two keys: vae.py:savae --config.model.refine_steps=0 is the default VAE.
  config.model.refine_steps = 5
  config.model.refine_lr = 0.005


def _mog(config):
  config.model.prior = "mog"
  config.model.prior_components = 10


def _vamp(config):
  config.model.prior = "vamp"
  config.model.prior_components = 500


VARIANTS = {"tiny": _tiny, "conv": _conv, "gaussian": _gaussian, "vem": _vem,
            "mnist_idx": _mnist_idx, "planar": _planar, "iaf": _iaf,
            "coupling": _coupling, "mog": _mog, "vamp": _vamp, "savae": _savae}


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.experiment = "vae"
  # Compiled programs kept for the next run: default (~/.cache/vae_jax/xla, or
  # $VAE_JAX_COMPILATION_CACHE) | a folder | off (vae_jax.compilation_cache).
  config.compilation_cache = "default"
  config.seed = 0  # the root of every key of the run (vae_jax.keys)
  # mnist_5k | digits | mnist | binarized_mnist | fashion_mnist | cifar10 | mnist_idx;
  # data_dir: a prepared TFDS directory, or the IDX folder; binarize: dynamic
  # (redrawn every step) | static (drawn once) | none (grey levels).
  config.data = common.data_section()
  config.model = ml_collections.ConfigDict(dict(
      name="vae",               # the model (vae_jax.models.MODELS)
      kind="mlp",               # mlp | conv (28x28x1, 32x32x3: sides divisible by 4)
      likelihood="bernoulli",   # p(x|z): bernoulli (logits) | gaussian (learned scale)
      gaussian_scale="shared",  # gaussian: one log-scale | per_pixel
      latent_dim=50,            # L, the dimension of z
      hidden_dims=(200, 200),   # MLP encoder widths (the decoder mirrors them); () linear
      activation="relu",        # relu | tanh | elu | gelu | silu | softplus | leaky_relu | sigmoid
      # q(z|x): gaussian (diagonal) | planar | iaf | coupling (the Gaussian through
      # flow_steps maps; coupling also has log q at any z).
      posterior="gaussian",
      # What q's log_scale head outputs: log_var (log sigma^2; log sigma is half of
      # it) | log_scale (log sigma itself, vae_jax's default until 2026-12; 1-1.5
      # nats worse on mnist_5k at 5,000 steps: docs/vs_pythae.md).
      scale_head="log_var",
      flow_steps=config_dict.placeholder(int),        # flows only: number of maps, >= 1
      # p(z): standard N(0, I) | mog (learned mixture of Gaussians) | vamp (VampPrior).
      prior="standard",
      prior_components=config_dict.placeholder(int),  # mog / vamp only: K, >= 1
      # A second stochastic layer z2 above z (Burda et al.'s two-layer model, mlp only):
      # q(z|x) q(z2|z) and p(z2) p(z|z2), each conditional a Gaussian from an MLP with
      # top_hidden_dims tanh layers; z2's size (unset: one layer).
      top_latent_dim=config_dict.placeholder(int),
      top_hidden_dims=(),
      # Semi-amortized inference (Kim et al., 2018; vae_jax.inference.refinement): each
      # example's q, from the encoder, takes refine_steps gradient-ascent steps of size
      # refine_lr on that example's ELBO (decoder fixed) and the objective is evaluated at
      # the refined q. 0 steps: the plain VAE. refine_gradient: unrolled (the SA-VAE: the
      # encoder's gradient flows through the steps) | stopped (the refined q held fixed:
      # the decoder trains on it, the encoder on its own q's ELBO; "VAE + SVI").
      refine_steps=0,
      refine_lr=0.005,
      refine_gradient="unrolled"))
  config.objective = ml_collections.ConfigDict(dict(
      # The encoder's gradient. On the ELBO: reparam | score | score_baseline |
      # score_loo | stl; on the num_samples-sample IWAE bound: iwae | vimco | dreg.
      # The decoder always gets the direct gradient.
      estimator="reparam",
      num_samples=1,            # S, Monte-Carlo samples of z per example
      e_steps=1,                # variational EM: encoder steps per cycle ...
      m_steps=1,                # ... then decoder steps; 1 and 1 = joint updates
      baseline_decay=0.9,       # score_baseline: decay of the running-mean baseline
      kl_warmup_steps=0,        # KL warm-up: beta rises linearly 0 -> 1 over these steps
      free_bits=0.0))           # free bits: nats per latent dimension (0: off)
  # batch_size, num_steps (raise it to continue a finished run), learning_rate
  # and adam_eps (Adam), lr_schedule (constant | exponential: lr * lr_decay_rate **
  # (step / lr_decay_steps) | burda: 3^i epochs at lr * 10^(-i/7), i = 0..7),
  # periods of logging / evaluation / checkpoints, and gradient statistics every
  # grad_stats_every steps (0: never) over grad_stats_draws draws; compute_dtype
  # float32 | bfloat16 (mixed precision: the networks in bf16, parameters, optimizer
  # state and log-likelihood sums in float32, evaluation in float32); steps_per_jit:
  # steps per dispatch (one device loop; results do not depend on it); feed: auto |
  # device (the split on device, batches gathered and binarized there) | host.
  config.train = common.train_section()
  # Several processes (one per host; vae_jax.training.distributed): process 0's host:port
  # ("" = one process), how many, this one's id, and the wait for the others.
  config.distributed = common.distributed_section()
  config.eval = ml_collections.ConfigDict(dict(
      batch_size=500,           # evaluation batch (the last one is padded and masked)
      iw_samples=100))          # K of the final IWAE estimate of -log p(x); 0 skips it
  return common.apply_variants(config, arg, VARIANTS)
