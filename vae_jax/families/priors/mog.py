r"""``mog``: a learned mixture of K diagonal Gaussians,
p(z) = sum_k pi_k N(z | mu_k, diag sigma_k^2).

Its parameters (``params["prior"]``): ``logits`` [K] (start equal), ``loc``
[K, L] (start N(0, 1)) and ``log_scale`` [K, L] (start 0), trained with the
decoder. No closed-form KL to a Gaussian q: the ELBO uses the Monte-Carlo KL.
"""

from __future__ import annotations

import flax.linen as nn

from vae_jax.errors import check_positive
from vae_jax.families.mixture import DiagNormalMixture

KEYS = ("prior_components",)
LEARNED = True
CLOSED_FORM_KL = False
TWO_LAYERS = False


def validate(model_config) -> None:
  check_positive(model_config.prior_components, "config.model.prior_components", integer=True)


class Prior(nn.Module):
  num_components: int
  latent_dim: int

  @nn.compact
  def __call__(self, encoder) -> DiagNormalMixture:
    del encoder
    k, l = self.num_components, self.latent_dim
    return DiagNormalMixture(self.param("logits", nn.initializers.zeros, (k,)),
                             self.param("loc", nn.initializers.normal(1.0), (k, l)),
                             self.param("log_scale", nn.initializers.zeros, (k, l)),
                             name="mog", description="z ~ the learned mixture prior")


def module(settings, input_dim: int) -> Prior:
  del input_dim
  return Prior(int(settings["prior_components"]), int(settings["latent_dim"]))
