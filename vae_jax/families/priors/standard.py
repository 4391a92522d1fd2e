"""``standard``: p(z) = N(0, I), the lecture's fixed prior (no parameters).

With a Gaussian q the KL has the lecture's closed form.
"""

from __future__ import annotations

import flax.linen as nn

from vae_jax.families.normal import StandardNormal

KEYS = ()
LEARNED = False
CLOSED_FORM_KL = True
# Two stochastic layers replace it by p(z2) p(z1 | z2), p(z2) = N(0, I)
# (vae_jax.families.hierarchical).
TWO_LAYERS = True


def validate(model_config) -> None:
  del model_config


class Prior(nn.Module):
  latent_dim: int

  def __call__(self, encoder) -> StandardNormal:
    del encoder
    return StandardNormal(self.latent_dim)


def module(settings, input_dim: int) -> Prior:
  del input_dim
  return Prior(int(settings["latent_dim"]))
