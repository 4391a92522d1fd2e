r"""Flow posteriors: q(z|x) = a Gaussian pushed through T invertible maps.

  z_0 ~ N(mu(x), diag sigma(x)^2),   z_t = f_t(z_{t-1}),
  log q(z_T | x) = log N(z_0) - sum_t log |det df_t / dz_{t-1}|.

* ``planar`` (Rezende & Mohamed, 2015): f(z) = z + u' tanh(w.z + b), with
  amortized (u, w, b) per example from the encoder and u' = u + (m(w.u) - w.u)
  w / |w|^2, m(a) = -1 + softplus(a), so that w.u' > -1 and f is invertible;
  log |det| = log(1 + (1 - tanh^2(w.z + b)) w.u').
* ``iaf`` (Kingma et al., 2016): [m, s] = MADE(z, h) with the project's MADE
  masks (``vae_jax.models.made.made_masks``: m_i and s_i see only z_<i),
  h a context vector from the encoder; sigma = sigmoid(s),
  f(z) = sigma * z + (1 - sigma) * m, log |det| = sum_i log sigma_i. The
  order of z is reversed between steps.

Each map is a ``distrax.Bijector`` (``PlanarMap``, ``IAFStep``: their
``forward_and_log_det`` is written below) and the steps are one
``distrax.Chain``. Both are sampled with their density in one pass
(``sample_and_log_prob``).
Neither has log q at an arbitrary z here (planar maps have no closed-form
inverse; IAF's inverse is L sequential passes), so the estimators that need
one (the score-function family, STL, DReG) are refused for flows.
"""

from __future__ import annotations

from typing import Any

import distrax
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from vae_jax.families.normal import DiagNormal, NoClosedFormKL

Array = jax.Array

FLOWS = ("planar", "iaf")


# ----------------------------------------------------------------------------
# Planar.
# ----------------------------------------------------------------------------


def planar_u_hat(u: Array, w: Array) -> Array:
  """u' = u + (m(w.u) - w.u) w / |w|^2 with m(a) = -1 + softplus(a): w.u' = m(w.u) > -1."""
  wu = jnp.sum(w * u, -1, keepdims=True)
  m = -1.0 + jax.nn.softplus(wu)
  return u + (m - wu) * w / (jnp.sum(jnp.square(w), -1, keepdims=True) + 1e-12)


def planar_forward(z: Array, u: Array, w: Array, b: Array) -> tuple[Array, Array]:
  """One planar map and its log |det J|.

  Args:
    z: [..., L]; u, w: [..., L] (broadcast against z); b: [...].

  Returns:
    (f(z) [..., L], log |det df/dz| [...]).
  """
  u_hat = planar_u_hat(u, w)
  a = jnp.sum(w * z, -1) + b                                      # [...]
  h = jnp.tanh(a)
  out = z + u_hat * h[..., None]
  w_u_hat = jnp.sum(w * u_hat, -1)                                 # > -1
  log_det = jnp.log1p((1.0 - jnp.square(h)) * w_u_hat)
  return out, log_det


# ----------------------------------------------------------------------------
# IAF.
# ----------------------------------------------------------------------------


def iaf_masks(latent_dim: int, hidden_dim: int) -> tuple[np.ndarray, np.ndarray]:
  """MADE masks of one IAF step: input -> hidden [L, H] and hidden -> outputs [H, L]."""
  from vae_jax.models import made  # pylint: disable=g-import-not-at-top  (made imports the trainer)
  masks = made.made_masks(latent_dim, (hidden_dim,))
  return masks[0], masks[1]


def init_iaf_step(key: Array, latent_dim: int, hidden_dim: int, context_dim: int) -> dict:
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


def iaf_shift_and_logit(step: dict, z: Array, context: Array) -> tuple[Array, Array]:
  """MADE outputs (m, s) of one IAF step: m_i and s_i depend only on z_<i and the context.

  The context also reaches the outputs directly (unmasked: it is not z), so
  the first coordinate, which sees no hidden unit, still depends on x.

  Args:
    step: ``init_iaf_step``'s parameters.
    z: [..., B, L]; context: [B, C].
  """
  latent_dim, hidden_dim = step["w_in"].shape
  mask_in, mask_out = iaf_masks(latent_dim, hidden_dim)
  hidden = jax.nn.elu(z @ (step["w_in"] * mask_in) + context @ step["w_context"]
                      + step["b_in"])
  m = hidden @ (step["w_m"] * mask_out) + context @ step["w_context_m"] + step["b_m"]
  s = hidden @ (step["w_s"] * mask_out) + context @ step["w_context_s"] + step["b_s"]
  return m, s


def iaf_forward(step: dict, z: Array, context: Array) -> tuple[Array, Array]:
  """One IAF step: f(z) = sigma * z + (1 - sigma) * m, log |det| = sum log sigma."""
  m, s = iaf_shift_and_logit(step, z, context)
  sigma = jax.nn.sigmoid(s)
  return sigma * z + (1.0 - sigma) * m, jnp.sum(jax.nn.log_sigmoid(s), -1)


class PlanarMap(distrax.Bijector):
  """One planar map as a distrax bijector (no closed-form inverse)."""

  def __init__(self, u: Array, w: Array, b: Array):
    super().__init__(event_ndims_in=1)
    self.u, self.w, self.b = u, w, b

  def forward_and_log_det(self, x: Array) -> tuple[Array, Array]:
    return planar_forward(x, self.u, self.w, self.b)

  def inverse_and_log_det(self, y: Array):
    raise NotImplementedError("a planar map has no closed-form inverse")


class IAFStep(distrax.Bijector):
  """One IAF step as a distrax bijector; ``reverse`` first reverses z's order."""

  def __init__(self, params: dict, context: Array, reverse: bool):
    super().__init__(event_ndims_in=1)
    self.params, self.context, self.reverse = params, context, reverse

  def forward_and_log_det(self, x: Array) -> tuple[Array, Array]:
    if self.reverse:                        # a permutation: |det| = 1
      x = x[..., ::-1]
    return iaf_forward(self.params, x, self.context)

  def inverse_and_log_det(self, y: Array):
    raise NotImplementedError("IAF's inverse takes L sequential passes; not offered")


# ----------------------------------------------------------------------------
# The posterior.
# ----------------------------------------------------------------------------


@struct.dataclass
class FlowPosterior(NoClosedFormKL):
  """q(z|x): ``base`` pushed through ``len(steps)`` maps of ``kind``.

  Attributes:
    base: the encoder's Gaussian, batch [B], event [L].
    steps: per step, planar ``{"u": [B, L], "w": [B, L], "b": [B]}`` (amortized)
      or an IAF step's MADE parameters (shared over examples).
    context: [B, C] the IAF context (empty for planar).
    kind: ``planar`` or ``iaf``.
  """
  base: DiagNormal
  steps: tuple[Any, ...]
  context: Array
  kind: str = struct.field(pytree_node=False)
  has_density = False

  @property
  def shared_fields(self) -> tuple[str, ...]:
    """Arrays shared by every example (IAF's MADE weights), not per-example ones."""
    return ("steps",) if self.kind == "iaf" else ()

  @property
  def name(self) -> str:
    return self.kind

  @property
  def latent_dim(self) -> int:
    return self.base.latent_dim

  def bijector(self) -> distrax.Bijector:
    """The T maps as one ``distrax.Chain`` (which applies its last element first)."""
    if self.kind == "planar":
      maps = [PlanarMap(s["u"], s["w"], s["b"]) for s in self.steps]
    else:   # the autoregressive order alternates from step to step
      maps = [IAFStep(s, self.context, reverse=bool(t)) for t, s in enumerate(self.steps)]
    return distrax.Chain(maps[::-1])

  def forward(self, z0: Array) -> tuple[Array, Array]:
    """z_T and sum_t log |det J_t| for base draws z0: [..., B, L] -> ([..., B, L], [..., B])."""
    return self.bijector().forward_and_log_det(z0)

  def sample_and_log_prob(self, seed: Array, sample_shape: tuple[int, ...] = ()
                          ) -> tuple[Array, Array]:
    """(z_T, log q(z_T|x)) = (f(z_0), log N(z_0) - sum log |det|): [*S, B, L], [*S, B]."""
    z0, log_q0 = self.base.sample_and_log_prob(seed, sample_shape)
    z, log_det = self.forward(z0)
    return z, log_q0 - log_det

  def sample(self, seed: Array, sample_shape: tuple[int, ...] = ()) -> Array:
    return self.sample_and_log_prob(seed, sample_shape)[0]

  def log_prob(self, z: Array) -> Array:
    raise NotImplementedError(
        f"a {self.kind} flow posterior has no log q(z|x) at an arbitrary z here (only "
        f"with its own draws: sample_and_log_prob)")

  def point(self) -> Array:
    """The flow applied to the base mean: the z the figures decode, [B, L]."""
    return self.forward(self.base.loc)[0]
