r"""Two stochastic layers (Burda et al., 2015, Sec. 5.1): z = (z1, z2).

Generative model and posterior, each a chain of diagonal Gaussians:

  p(z2) = N(0, I),  p(z1 | z2) = N(mu_p(z2), sigma_p(z2)^2),  p(x | z1) (the decoder);
  q(z1 | x) = the encoder's Gaussian,  q(z2 | z1) = N(mu_q(z1), sigma_q(z1)^2).

mu and log sigma of each conditional come from one small MLP (``hidden``
tanh layers, then a linear layer to [mu, log sigma]) whose weights are plain
arrays inside the distribution object, so q and p stay pytrees and plug into
every objective: the latent vector the objectives see is concat(z1, z2), the
decoder reads z1. log q and log p at any z are closed-form sums of the two
layers' Gaussian densities (so every estimator applies); their KL is not
(the ELBO uses the Monte-Carlo KL).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from vae_jax.families.normal import DiagNormal, NoClosedFormKL, StandardNormal

Array = jax.Array


def init_gaussian_mlp(key: Array, in_dim: int, hidden: Sequence[int], out_dim: int) -> tuple:
  """Weights of an MLP in_dim -> hidden... -> [mu, log sigma] (2 * out_dim), LeCun-normal
  kernels and zero biases; the last layer starts small so log sigma starts near 0."""
  sizes = (in_dim,) + tuple(hidden) + (2 * out_dim,)
  keys = jax.random.split(key, len(sizes) - 1)
  lecun = jax.nn.initializers.lecun_normal()
  layers = []
  for i, (k, a, b) in enumerate(zip(keys, sizes[:-1], sizes[1:])):
    w = lecun(k, (a, b))
    layers.append({"kernel": w * (0.1 if i == len(sizes) - 2 else 1.0), "bias": jnp.zeros((b,))})
  return tuple(layers)


def gaussian_mlp(layers: Sequence[dict], h: Array) -> DiagNormal:
  """N(mu(h), sigma(h)^2) from ``init_gaussian_mlp``'s weights: h [..., in] -> batch [...]."""
  for i, layer in enumerate(layers):
    h = h @ layer["kernel"] + layer["bias"]
    if i < len(layers) - 1:
      h = jnp.tanh(h)
  loc, log_scale = jnp.split(h, 2, axis=-1)
  return DiagNormal(loc, log_scale)


@struct.dataclass
class TwoLayerPosterior(NoClosedFormKL):
  """q(z1, z2 | x) = q(z1 | x) q(z2 | z1), over z = concat(z1, z2).

  Attributes:
    q1: the encoder's Gaussian over z1, batch [B], event [L1].
    net: the MLP of q(z2 | z1) (shared by all examples).
  """
  q1: DiagNormal
  net: tuple
  name = "gaussian"
  has_density = True
  reparametrized = True
  shared_fields = ("net",)

  @property
  def latent_dim(self) -> int:
    return self.q1.latent_dim + self.net[-1]["bias"].shape[-1] // 2

  def sample_and_log_prob(self, seed: Array, sample_shape: tuple[int, ...] = ()
                          ) -> tuple[Array, Array]:
    """z1 ~ q(z1|x), z2 ~ q(z2|z1), reparametrized; (concat(z1, z2) [*S, B, L1 + L2], log q [*S, B])."""
    k1, k2 = jax.random.split(seed)
    z1, log_q1 = self.q1.sample_and_log_prob(k1, sample_shape)
    z2, log_q2 = gaussian_mlp(self.net, z1).sample_and_log_prob(k2)
    return jnp.concatenate([z1, z2], -1), log_q1 + log_q2

  def sample(self, seed: Array, sample_shape: tuple[int, ...] = ()) -> Array:
    return self.sample_and_log_prob(seed, sample_shape)[0]

  def log_prob(self, z: Array) -> Array:
    """log q(z1|x) + log q(z2|z1) at z = concat(z1, z2): [*S, B, L1 + L2] -> [*S, B]."""
    z1, z2 = z[..., :self.q1.latent_dim], z[..., self.q1.latent_dim:]
    return self.q1.log_prob(z1) + gaussian_mlp(self.net, z1).log_prob(z2)

  def point(self) -> Array:
    """(E_q[z1], E_q[z2 | z1 = E_q[z1]]): the z the figures decode, [B, L1 + L2]."""
    return jnp.concatenate([self.q1.loc, gaussian_mlp(self.net, self.q1.loc).loc], -1)


@struct.dataclass
class TwoLayerPrior:
  """p(z1, z2) = p(z2) p(z1 | z2) with p(z2) = N(0, I), over z = concat(z1, z2).

  Attributes:
    net: the MLP of p(z1 | z2).
    top_dim: L2, the dimension of z2.
  """
  net: tuple
  top_dim: int = struct.field(pytree_node=False)
  name = "two_layer"
  description = "z2 ~ N(0, I), then z1 ~ p(z1|z2)"

  @property
  def bottom_dim(self) -> int:
    return self.net[-1]["bias"].shape[-1] // 2

  @property
  def latent_dim(self) -> int:
    return self.bottom_dim + self.top_dim

  def log_prob(self, z: Array) -> Array:
    """log p(z2) + log p(z1 | z2): [..., L1 + L2] -> [...]."""
    z1, z2 = z[..., :self.bottom_dim], z[..., self.bottom_dim:]
    return StandardNormal(self.top_dim).log_prob(z2) + gaussian_mlp(self.net, z2).log_prob(z1)

  def sample(self, seed: Array, sample_shape: tuple[int, ...] = ()) -> Array:
    """Ancestral: z2 ~ N(0, I), z1 ~ p(z1 | z2): [*sample_shape, L1 + L2]."""
    k2, k1 = jax.random.split(seed)
    z2 = StandardNormal(self.top_dim).sample(k2, sample_shape)
    z1 = gaussian_mlp(self.net, z2).sample(k1)
    return jnp.concatenate([z1, z2], -1)


@dataclasses.dataclass(frozen=True)
class Head:
  """head(encoder, h) -> q(z1 | x) q(z2 | z1): ``inner``'s Gaussian q(z1 | x), then the
  MLP of q(z2 | z1) (``layer2`` in the encoder's parameters)."""
  inner: Any
  latent_dim: int
  top_latent_dim: int
  top_hidden_dims: tuple[int, ...]

  def __call__(self, encoder: nn.Module, h) -> TwoLayerPosterior:
    q1 = self.inner(encoder, h)
    net = encoder.param("layer2", init_gaussian_mlp, self.latent_dim, self.top_hidden_dims,
                        self.top_latent_dim)
    return TwoLayerPosterior(q1, net)


class Prior(nn.Module):
  """p(z2) p(z1 | z2): the MLP of p(z1 | z2) is ``params["prior"]["net"]``."""
  latent_dim: int
  top_latent_dim: int
  top_hidden_dims: tuple[int, ...]

  @nn.compact
  def __call__(self, encoder) -> TwoLayerPrior:
    del encoder
    net = self.param("net", init_gaussian_mlp, self.top_latent_dim, self.top_hidden_dims,
                     self.latent_dim)
    return TwoLayerPrior(net, self.top_latent_dim)
