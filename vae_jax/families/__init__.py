"""Variational families and priors as distribution objects.

Every posterior q(z|x) and prior p(z) is a pytree of arrays with distrax's
interface (``sample``, ``sample_and_log_prob``, ``log_prob``) plus
``kl_divergence`` / ``kl_per_dim`` where a closed form exists, so every
objective (ELBO, IWAE, the gradient estimators, evaluation, the amortization
gaps) takes any family:

==============  =============================================  ===================
name            class                                          log q at any z
==============  =============================================  ===================
``gaussian``    ``normal.DiagNormal`` (distrax Normal)          yes
``planar``      ``flows.FlowPosterior`` (Rezende & Mohamed)    no: draws only
``iaf``         ``flows.FlowPosterior`` (Kingma et al.)        no: draws only
``standard``    ``normal.StandardNormal`` prior N(0, I)        --
``mog``         ``mixture.DiagNormalMixture`` (learned)        --
``vamp``        ``mixture.DiagNormalMixture`` (VampPrior)      --
==============  =============================================  ===================

The encoder builds q (``vae_jax.models.posterior_head``) and the VAE module
builds p (``VAE.prior_distribution``).
"""

from vae_jax.families.mixture import DiagNormalMixture
from vae_jax.families.normal import DiagNormal, StandardNormal

_FLOW_NAMES = ("FlowPosterior", "PlanarMap", "IAFStep")


def __getattr__(name):
  # The flows are distrax bijectors: distrax and TensorFlow Probability cost
  # seconds to import, so they load only when a flow is asked for.
  if name in _FLOW_NAMES:
    from vae_jax.families import flows  # pylint: disable=g-import-not-at-top
    return getattr(flows, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["DiagNormal", "StandardNormal", "DiagNormalMixture", "FlowPosterior", "PlanarMap",
           "IAFStep"]
