r"""``planar``: the encoder's Gaussian pushed through T planar maps (Rezende & Mohamed, 2015).

  f(z) = z + u' tanh(w.z + b),   log |det df/dz| = log(1 + (1 - tanh^2(w.z + b)) w.u'),

with amortized (u, w, b) per example from the encoder (heads ``planar_u``,
``planar_w``: [B, T*L], ``planar_b``: [B, T]) and u' = u + (m(w.u) - w.u) w / |w|^2,
m(a) = -1 + softplus(a), so that w.u' > -1 and f is invertible. A planar map has
no closed-form inverse: q has no log-density at an arbitrary z, only with its
own draws (the estimators that need one are refused).
"""

from __future__ import annotations


import flax.linen as nn
import jax
import jax.numpy as jnp

from vae_jax.families.posteriors import gaussian

Array = jax.Array
KEYS = ("flow_steps",)
HAS_DENSITY = False
CLOSED_FORM_KL = False
TWO_LAYERS = False
# Semi-amortized inference refines the base Gaussian and each map's (u, w, b), per example.
REFINABLE = True


def validate(model_config) -> None:
  gaussian.validate_flow(model_config)


def u_hat(u: Array, w: Array) -> Array:
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
  u_prime = u_hat(u, w)
  a = jnp.sum(w * z, -1) + b                                      # [...]
  h = jnp.tanh(a)
  out = z + u_prime * h[..., None]
  w_u_prime = jnp.sum(w * u_prime, -1)                             # > -1
  log_det = jnp.log1p((1.0 - jnp.square(h)) * w_u_prime)
  return out, log_det


def forward(t: int, step: dict, context: Array, z: Array) -> tuple[Array, Array]:
  """Step t of the flow (``FlowPosterior.forward_fn``): the planar map of ``step``."""
  del t, context
  return planar_forward(z, step["u"], step["w"], step["b"])


def posterior(base, steps):
  """The flow q of a Gaussian ``base`` and per-step {"u", "w": [B, L], "b": [B]}."""
  from vae_jax.families import flows  # pylint: disable=g-import-not-at-top  (distrax, lazily)
  batch = base.loc.shape[:-1]
  return flows.FlowPosterior(base, tuple(steps), jnp.zeros(batch + (0,), jnp.float32),
                             forward, "planar")


class Head(gaussian.FlowHead):
  """head(encoder, h) -> q: the Gaussian's heads, then (u, w, b) of each of T maps."""

  def __call__(self, encoder: nn.Module, h):
    base = self.gaussian(encoder, h)
    batch, steps = h.shape[:-1], self.flow_steps

    def dense(name, size, init=nn.initializers.lecun_normal()):
      out = nn.Dense(size, dtype=encoder.dtype, kernel_init=init, name=name)(h)
      return gaussian.float32(out).reshape(batch + (steps, -1))

    u = dense("planar_u", steps * self.latent_dim, nn.initializers.zeros)
    w = dense("planar_w", steps * self.latent_dim)
    b = dense("planar_b", steps, nn.initializers.zeros)[..., 0]
    return posterior(base, [{"u": u[..., t, :], "w": w[..., t, :], "b": b[..., t]}
                            for t in range(steps)])


def head(settings) -> Head:
  return Head.of(settings)
