"""Amortization and approximation gaps (``experiments/amortization.py``).

The VAE of the ``data``/``model``/``objective``/``train`` sections is trained
(or resumed) in WORKDIR/vae; then ``amortization.examples`` held-out images
each get a per-example q* (``local_steps`` Adam steps from the encoder's q at
``local_lr``), and the amortized ELBO, the optimized ELBO (``eval_samples``
Monte-Carlo samples each) and the IWAE log p(x) (``iw_samples``) are compared
(Cremer et al., 2018).

  python -m experiments.main --config=experiments/configs/amortization.py --workdir=/tmp/gaps

One VAE per family of ``amortization.posteriors`` is trained, in
WORKDIR/vae_<family> (flows with ``amortization.flow_steps`` maps); leave
``model.posterior``, ``model.flow_steps`` and ``model.refine_steps`` unset.
With ``amortization.savae_refine_steps`` > 0, a semi-amortized VAE (Kim et
al., 2018) of the first family, the same encoder, refining each q by that many
steps of ``model.refine_lr`` (``model.refine_gradient``), is trained in
WORKDIR/savae_<family> and its gaps set beside the plain VAE's (summary.json
``savae``); 0 skips it.

Variants: tiny (seconds on the 8x8 digits); l2 (two latents: also draws
posterior_2d.png, the true posterior by quadrature beside each q).
"""

import ml_collections

from experiments.configs import common
from experiments.configs import vae


def _tiny(config):
  vae.VARIANTS["tiny"](config)
  # 500 local steps: the per-example optimum within 0.01 nats (summary.json savae's
  # local_convergence; 50 left the gaps 0.15 nats short, a third of the gap).
  config.amortization.update(examples=20, local_steps=500, eval_samples=50, iw_samples=50)


def _l2(config):
  config.model.latent_dim = 2


VARIANTS = {"tiny": _tiny, "l2": _l2}


def get_config(arg=None):
  config = vae.get_config()
  config.experiment = "amortization"
  # Compiled programs kept for the next run: default (~/.cache/vae_jax/xla, or
  # $VAE_JAX_COMPILATION_CACHE) | a folder | off (vae_jax.compilation_cache).
  config.compilation_cache = "default"
  config.amortization = ml_collections.ConfigDict(dict(
      examples=200, local_steps=1000, local_lr=1e-2, eval_samples=1000, iw_samples=1000,
      # One VAE per family (Cremer et al.); coupling: a flow with log q at any z.
      posteriors=("gaussian", "planar", "iaf", "coupling"),
      flow_steps=2,                                # maps of each flow family
      savae_refine_steps=5))                       # the SA-VAE's steps; 0: no SA-VAE
  return common.apply_variants(config, arg, VARIANTS)
