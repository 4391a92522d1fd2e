r"""``gaussian``: q(z|x) = N(mu(x), diag sigma(x)^2), the lecture's amortized posterior.

Two dense heads on the encoder's features h, named ``mean`` and ``log_scale`` in
the encoder's parameters (every checkpoint's names). ``scale_head`` says what the
second one outputs: ``log_var``, log sigma^2 (Kingma & Welling's and pythae's
choice, the configs' default: docs/vs_pythae.md) or ``log_scale``, log sigma.
The flows (``planar``, ``iaf``) start from this Gaussian (``base``).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp

from vae_jax.errors import check_choice, check_positive
from vae_jax.families.normal import DiagNormal

KEYS = ()
HAS_DENSITY = True
CLOSED_FORM_KL = True
# Can be q(z1 | x) under a second stochastic layer (vae_jax.families.hierarchical).
TWO_LAYERS = True
# Semi-amortized inference can refine q: its mean and log sigma, per example
# (vae_jax.inference.refinement).
REFINABLE = True
SCALE_HEADS = ("log_var", "log_scale")


def validate(model_config) -> None:
  check_choice(model_config.scale_head, SCALE_HEADS, "config.model.scale_head")


def float32(x):
  """Heads' outputs leave in float32 whatever the computation dtype."""
  return x.astype(jnp.float32)


def base(encoder: nn.Module, h, latent_dim: int, scale_head: str) -> DiagNormal:
  """The Gaussian's ``mean`` and ``log_scale`` heads on h: [B, F], in the encoder's scope."""
  mean = nn.Dense(latent_dim, dtype=encoder.dtype, name="mean")(h)              # [B, L]
  log_scale = nn.Dense(latent_dim, dtype=encoder.dtype, name="log_scale")(h)    # [B, L]
  if scale_head == "log_var":   # the head reads log sigma^2: log sigma is half of it
    log_scale = 0.5 * log_scale
  return DiagNormal(float32(mean), float32(log_scale))


@dataclasses.dataclass(frozen=True)
class Head:
  """head(encoder, h) -> the DiagNormal q(z|x)."""
  latent_dim: int
  scale_head: str

  def __call__(self, encoder: nn.Module, h) -> DiagNormal:
    return base(encoder, h, self.latent_dim, self.scale_head)


def head(settings) -> Head:
  return Head(int(settings["latent_dim"]), settings["scale_head"])


def validate_flow(model_config) -> None:
  """A flow on this Gaussian: the Gaussian's keys and ``flow_steps`` >= 1 maps."""
  validate(model_config)
  check_positive(model_config.flow_steps, "config.model.flow_steps", integer=True)


@dataclasses.dataclass(frozen=True)
class FlowHead:
  """What every flow's head reads: q's size, its scale head and the number of maps.
  A flow family's ``Head`` subclasses it and starts from ``self.gaussian(encoder, h)``."""
  latent_dim: int
  scale_head: str
  flow_steps: int

  @classmethod
  def of(cls, settings, **extra):
    """The head of ``settings`` (config.model or a mapping with its keys)."""
    return cls(int(settings["latent_dim"]), settings["scale_head"], int(settings["flow_steps"]),
               **extra)

  def gaussian(self, encoder: nn.Module, h) -> DiagNormal:
    """The Gaussian's heads on h, in the encoder's scope: the flow's base."""
    return base(encoder, h, self.latent_dim, self.scale_head)
