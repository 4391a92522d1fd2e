r"""``iaf``: the encoder's Gaussian pushed through T inverse autoregressive steps (Kingma et al., 2016).

  [m, s] = MADE(z, h),  sigma = sigmoid(s),  f(z) = sigma * z + (1 - sigma) * m,
  log |det df/dz| = sum_i log sigma_i,

with MADE's masks (``vae_jax.masks``: m_i and s_i see only z_<i) and h a context
vector from the encoder (head ``iaf_context``, [B, 64]). Each step's MADE weights
(``iaf_<t>`` in the encoder's parameters) are shared by every example; the
order of z is reversed between steps. IAF's inverse takes L sequential passes
and is not offered: q has no log-density at an arbitrary z, only with its own
draws (the estimators that need one are refused).
"""

from __future__ import annotations


import flax.linen as nn
import jax
import jax.numpy as jnp

from vae_jax.families.posteriors import gaussian
from vae_jax.masks import made_masks

Array = jax.Array
KEYS = ("flow_steps",)
HAS_DENSITY = False
CLOSED_FORM_KL = False
TWO_LAYERS = False
# Semi-amortized inference refines the base Gaussian and the context, per example; the
# MADE weights, shared by every example, stay the encoder's.
REFINABLE = True
# Hidden units of each step's MADE (per latent dimension) and the size of the context h.
HIDDEN_FACTOR = 2
CONTEXT_DIM = 64


def validate(model_config) -> None:
  gaussian.validate_flow(model_config)


def init_step(key: Array, latent_dim: int, hidden_dim: int, context_dim: int) -> dict:
  """Parameters of one IAF step (a one-hidden-layer MADE with a context input).

  The bias of s starts at 1 (Kingma et al.'s forget-gate bias: sigma ~ 0.73, so
  each step starts near the identity).
  """
  k1, k2, k3, k4, k5, k6 = jax.random.split(key, 6)
  lecun = jax.nn.initializers.lecun_normal()
  return {"w_in": lecun(k1, (latent_dim, hidden_dim)),
          "w_context": lecun(k2, (context_dim, hidden_dim)),
          "b_in": jnp.zeros((hidden_dim,)),
          "w_m": lecun(k3, (hidden_dim, latent_dim)) * 0.1,
          "w_context_m": lecun(k5, (context_dim, latent_dim)) * 0.1,
          "b_m": jnp.zeros((latent_dim,)),
          "w_s": lecun(k4, (hidden_dim, latent_dim)) * 0.1,
          "w_context_s": lecun(k6, (context_dim, latent_dim)) * 0.1,
          "b_s": jnp.ones((latent_dim,))}


def shift_and_logit(step: dict, z: Array, context: Array) -> tuple[Array, Array]:
  """MADE outputs (m, s) of one step: m_i and s_i depend only on z_<i and the context.

  The context also reaches the outputs directly (unmasked: it is not z), so
  the first coordinate, which sees no hidden unit, still depends on x.

  Args:
    step: ``init_step``'s parameters.
    z: [..., B, L]; context: [B, C].
  """
  latent_dim, hidden_dim = step["w_in"].shape
  mask_in, mask_out = made_masks(latent_dim, (hidden_dim,))
  hidden = jax.nn.elu(z @ (step["w_in"] * mask_in) + context @ step["w_context"]
                      + step["b_in"])
  m = hidden @ (step["w_m"] * mask_out) + context @ step["w_context_m"] + step["b_m"]
  s = hidden @ (step["w_s"] * mask_out) + context @ step["w_context_s"] + step["b_s"]
  return m, s


def iaf_forward(step: dict, z: Array, context: Array) -> tuple[Array, Array]:
  """One IAF step: f(z) = sigma * z + (1 - sigma) * m, log |det| = sum log sigma."""
  m, s = shift_and_logit(step, z, context)
  sigma = jax.nn.sigmoid(s)
  return sigma * z + (1.0 - sigma) * m, jnp.sum(jax.nn.log_sigmoid(s), -1)


def forward(t: int, step: dict, context: Array, z: Array) -> tuple[Array, Array]:
  """Step t of the flow (``FlowPosterior.forward_fn``); every step after the first
  first reverses z's order (a permutation: |det| = 1)."""
  if t:
    z = z[..., ::-1]
  return iaf_forward(step, z, context)


def posterior(base, steps, context):
  """The flow q of a Gaussian ``base``, the steps' MADE weights and the context [B, C]."""
  from vae_jax.families import flows  # pylint: disable=g-import-not-at-top  (distrax, lazily)
  return flows.FlowPosterior(base, tuple(steps), context, forward, "iaf", shared=True)


class Head(gaussian.FlowHead):
  """head(encoder, h) -> q: the Gaussian's heads, the context head and T MADE steps."""

  def __call__(self, encoder: nn.Module, h):
    base = self.gaussian(encoder, h)
    context = gaussian.float32(
        nn.Dense(CONTEXT_DIM, dtype=encoder.dtype, name="iaf_context")(h))
    hidden = HIDDEN_FACTOR * self.latent_dim
    steps = [encoder.param(f"iaf_{t}", init_step, self.latent_dim, hidden, CONTEXT_DIM)
             for t in range(self.flow_steps)]
    return posterior(base, steps, context)


def head(settings) -> Head:
  return Head.of(settings)
