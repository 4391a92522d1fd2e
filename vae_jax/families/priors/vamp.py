r"""``vamp``: the VampPrior (Tomczak & Welling, 2018), p(z) = (1/K) sum_k q(z | u_k).

The encoder's Gaussians at K learned pseudo-inputs u_k (``params["prior"]
["pseudo_inputs"]``: [K, D], u_k = sigmoid(.) in (0, 1) like the data, starting
near the average MNIST pixel, sigmoid(-2) = 0.12, with a little noise): the
aggregate posterior of K points. With a flow posterior the components are the
encoder's Gaussian before the flow. No closed-form KL: the ELBO uses the
Monte-Carlo KL.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from vae_jax.errors import check_positive
from vae_jax.families.mixture import DiagNormalMixture, uniform_logits

KEYS = ("prior_components",)
LEARNED = True
CLOSED_FORM_KL = False
TWO_LAYERS = False


def validate(model_config) -> None:
  check_positive(model_config.prior_components, "config.model.prior_components", integer=True)


def _init(key, shape):
  return -2.0 + 0.1 * jax.random.normal(key, shape)


class Prior(nn.Module):
  num_components: int
  input_dim: int

  @nn.compact
  def __call__(self, encoder) -> DiagNormalMixture:
    u = jax.nn.sigmoid(self.param("pseudo_inputs", _init, (self.num_components, self.input_dim)))
    q = encoder(u)                                            # q(z | u_k), K components
    base = getattr(q, "base", q)                              # a flow's Gaussian
    return DiagNormalMixture(uniform_logits(self.num_components), base.loc, base.log_scale,
                             name="vamp", description="z ~ the VampPrior")


def module(settings, input_dim: int) -> Prior:
  return Prior(int(settings["prior_components"]), int(input_dim))
