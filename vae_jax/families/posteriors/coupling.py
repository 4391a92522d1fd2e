r"""``coupling``: the encoder's Gaussian pushed through T coupling layers (neural spline flows).

Each layer t keeps half of z and moves the other half by a monotone
rational-quadratic spline (Durkan et al., 2019) whose bins and slopes a
network computes from the kept half and a context vector c(x):

  z'_A = z_A,   z'_i = g(z_i; theta_i(z_A, c)) for i not in A,
  log |det dz'/dz| = sum_{i not in A} log g'(z_i; theta_i),

with A = the even coordinates at even t, the odd ones at odd t (alternating
masks: ``distrax.MaskedCoupling`` with ``distrax.RationalQuadraticSpline``,
``BINS`` bins on [-``BOUND``, ``BOUND``], the identity outside). The inverse is
in closed form (the kept half gives theta; g is inverted bin by bin, a
quadratic root), so q has log q(z|x) at any z: ``log_prob`` inverts the chain
and every estimator takes it (the score family, STL, DReG, VIMCO).

Parameters (in the encoder's scope, like IAF's): ``coupling_context``, a dense
head h -> c: [B, ``CONTEXT_DIM``]; ``coupling_<t>``, layer t's conditioner, a
one-hidden-layer network shared by every example (``init_layer``), whose
output layer starts at zero: every spline starts as the identity, and so does q
(the encoder's Gaussian). ``TRANSFORM = "affine"`` swaps each spline for
z_i exp(s_i) + m_i (RealNVP; Dinh et al., 2017): not a config key, kept for
``scripts/benchmarks/bench_vae_step.py``, which times both (docs/families.md).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from vae_jax.families.posteriors import gaussian

Array = jax.Array
KEYS = ("flow_steps",)
HAS_DENSITY = True
CLOSED_FORM_KL = False
TWO_LAYERS = False
# Semi-amortized inference refines the base Gaussian and the context, per example; the
# layers' conditioners, shared by every example, stay the encoder's.
REFINABLE = True
# Bins of each spline, and its interval [-BOUND, BOUND] (identity outside it).
BINS = 8
BOUND = 5.0
# Size of the context c(x) and hidden units of each conditioner (at least MIN_HIDDEN,
# HIDDEN_FACTOR per latent dimension above that).
CONTEXT_DIM = 64
HIDDEN_FACTOR = 2
MIN_HIDDEN = 32
# The transformer of the moved half: spline (the family) | affine (for the benchmark).
TRANSFORM = "spline"
PARAMS_PER_DIM = {"spline": 3 * BINS + 1, "affine": 2}


def validate(model_config) -> None:
  gaussian.validate_flow(model_config)


def init_layer(key: Array, latent_dim: int, hidden_dim: int, context_dim: int,
               params_per_dim: int) -> dict:
  """Parameters of one layer's conditioner (masked z and context -> each dimension's
  transformer parameters); the output layer is zero, so every layer starts as the
  identity (a spline with all-zero parameters is: equal bins, unit slopes)."""
  k1, k2 = jax.random.split(key)
  lecun = jax.nn.initializers.lecun_normal()
  return {"w_in": lecun(k1, (latent_dim, hidden_dim)),
          "w_context": lecun(k2, (context_dim, hidden_dim)),
          "b_in": jnp.zeros((hidden_dim,)),
          "w_out": jnp.zeros((hidden_dim, latent_dim * params_per_dim)),
          "b_out": jnp.zeros((latent_dim * params_per_dim,))}


def mask(t: int, latent_dim: int) -> Array:
  """[L] bool, True where layer t keeps z: the even coordinates at even t, the odd at odd t."""
  return jnp.arange(latent_dim) % 2 == t % 2


def conditioner(layer: dict, context: Array):
  """z_masked: [..., B, L] -> the transformers' parameters [..., B, L, P] (P per dimension)."""
  def fn(z_masked: Array) -> Array:
    hidden = jax.nn.elu(z_masked @ layer["w_in"] + context @ layer["w_context"]
                        + layer["b_in"])
    out = hidden @ layer["w_out"] + layer["b_out"]
    return out.reshape(out.shape[:-1] + (z_masked.shape[-1], -1))
  return fn


def _spline(params: Array):
  import distrax  # pylint: disable=g-import-not-at-top  (seconds: only when a flow is built)
  return distrax.RationalQuadraticSpline(params, -BOUND, BOUND, boundary_slopes="identity")


def _affine(params: Array):
  import distrax  # pylint: disable=g-import-not-at-top
  return distrax.ScalarAffine(shift=params[..., 0], log_scale=params[..., 1])


TRANSFORMERS = {"spline": _spline, "affine": _affine}


def coupling_layer(t: int, layer: dict, context: Array, transform: str = "spline"):
  """Layer t as a ``distrax.MaskedCoupling`` whose transformer is ``transform``'s."""
  import distrax  # pylint: disable=g-import-not-at-top
  return distrax.MaskedCoupling(mask(t, layer["w_in"].shape[0]), conditioner(layer, context),
                                TRANSFORMERS[transform])


def _maps(transform: str):
  """(forward, inverse) of the layers with ``transform`` (``FlowPosterior.forward_fn``,
  ``inverse_fn``): (t, layer, context, z [..., B, L]) -> (z', log |det| [..., B])."""
  def forward(t, layer, context, z):
    return coupling_layer(t, layer, context, transform).forward_and_log_det(z)

  def inverse(t, layer, context, y):
    return coupling_layer(t, layer, context, transform).inverse_and_log_det(y)

  return forward, inverse


# One pair of functions per transformer, made once: q's static fields stay equal between
# calls (so a q crosses jit and scan boundaries without recompiling).
MAPS = {name: _maps(name) for name in TRANSFORMERS}


def posterior(base, layers, context, transform: str = "spline"):
  """The flow q of a Gaussian ``base``, the layers' conditioners and the context [B, C]."""
  from vae_jax.families import flows  # pylint: disable=g-import-not-at-top  (distrax, lazily)
  forward, inverse = MAPS[transform]
  return flows.FlowPosterior(base, tuple(layers), context, forward, "coupling", shared=True,
                             inverse_fn=inverse)


@dataclasses.dataclass(frozen=True)
class Head(gaussian.FlowHead):
  """head(encoder, h) -> q: the Gaussian's heads, the context head and T coupling layers."""
  transform: str = "spline"

  def __call__(self, encoder: nn.Module, h):
    base = self.gaussian(encoder, h)
    context = gaussian.float32(
        nn.Dense(CONTEXT_DIM, dtype=encoder.dtype, name="coupling_context")(h))
    hidden = max(MIN_HIDDEN, HIDDEN_FACTOR * self.latent_dim)
    layers = [encoder.param(f"coupling_{t}", init_layer, self.latent_dim, hidden, CONTEXT_DIM,
                            PARAMS_PER_DIM[self.transform])
              for t in range(self.flow_steps)]
    return posterior(base, layers, context, self.transform)


def head(settings) -> Head:
  return Head.of(settings, transform=TRANSFORM)
