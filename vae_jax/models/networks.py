"""Flax Linen modules: encoders q(z|x, phi) and decoders p(x|z, theta).

Only modules live here; objectives are in ``vae_jax.inference.objectives``. All modules
are deterministic: randomness enters the objective through explicit keys.

Shapes: data are flat vectors ``x: [B, D]`` with ``D = H * W * C``; the
convolutional modules reshape to ``image_shape = (H, W, C)`` internally, so
every model has the same interface.

* Encoder ``__call__(x: [B, D]) -> q``: the encoder computes features h and its
  ``head``, the posterior family's (``vae_jax.families.posteriors``), turns them
  into q(z|x), a distribution object; the head's parameters live in the
  encoder's scope.
* Decoder ``__call__(z: [..., L]) -> dict`` of likelihood parameters:
  ``{"logits": [..., D]}`` (Bernoulli) or
  ``{"mean": [..., D], "log_scale": [..., D]}`` (Gaussian).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vae_jax.errors import UserError
from vae_jax.families import hierarchical
from vae_jax.families.posteriors import REGISTRY as POSTERIORS
from vae_jax.families.priors import REGISTRY as PRIORS

LIKELIHOODS = ("bernoulli", "gaussian")
GAUSSIAN_SCALES = ("shared", "per_pixel")
# Hidden-layer nonlinearities (``flax.linen`` functions of these names).
ACTIVATIONS = ("relu", "tanh", "elu", "gelu", "silu", "softplus", "leaky_relu", "sigmoid")


def _float32(x):
  """Network outputs leave in float32: likelihoods, KLs and their sums stay float32
  whatever the computation dtype."""
  return x.astype(jnp.float32)


def activation_fn(name: str):
  """The ``flax.linen`` activation called ``name`` (one of ``ACTIVATIONS``)."""
  if name not in ACTIVATIONS:
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")
  return getattr(nn, name)


class MLP(nn.Module):
  """Dense layers with ``activation`` between them (none after the last)."""
  features: Sequence[int]
  activation: str = "relu"
  dtype: Any = None      # computation dtype (bfloat16: mixed precision); params stay float32

  @nn.compact
  def __call__(self, x):
    act = activation_fn(self.activation)
    for i, f in enumerate(self.features):
      x = nn.Dense(f, dtype=self.dtype, name=f"dense_{i}")(x)
      if i < len(self.features) - 1:
        x = act(x)
    return x


class MLPEncoder(nn.Module):
  """Features of x from an MLP, turned into q(z|x) by the posterior family's ``head``.

  With ``hidden_dims=()`` the features are x itself (a linear encoder: the PPCA bridge).
  """
  hidden_dims: Sequence[int]
  head: Any                                # the family's head(encoder, h) -> q
  activation: str = "relu"
  dtype: Any = None

  @nn.compact
  def __call__(self, x):  # x: [B, D]
    h = x
    act = activation_fn(self.activation)
    for i, f in enumerate(self.hidden_dims):
      h = act(nn.Dense(f, dtype=self.dtype, name=f"hidden_{i}")(h))
    return self.head(self, h)


class LikelihoodHead(nn.Module):
  """Turns decoder features [..., D] into likelihood parameters."""
  likelihood: str = "bernoulli"
  gaussian_scale: str = "shared"

  @nn.compact
  def __call__(self, out):
    if self.likelihood == "bernoulli":
      return {"logits": out}
    if self.likelihood == "gaussian":
      d = out.shape[-1]
      shape = (1,) if self.gaussian_scale == "shared" else (d,)
      log_scale = self.param("log_scale", nn.initializers.zeros, shape,
                             out.dtype)
      return {"mean": out, "log_scale": jnp.broadcast_to(log_scale, out.shape)}
    raise ValueError(f"unknown likelihood {self.likelihood!r}; "
                     f"choose one of {LIKELIHOODS}")


class MLPDecoder(nn.Module):
  """p(x|z) with an MLP from z: [..., L] to the parameters of x: [..., D]."""
  hidden_dims: Sequence[int]
  output_dim: int
  likelihood: str = "bernoulli"
  gaussian_scale: str = "shared"
  activation: str = "relu"
  dtype: Any = None

  @nn.compact
  def __call__(self, z):
    out = MLP(tuple(self.hidden_dims) + (self.output_dim,),
              self.activation, dtype=self.dtype, name="mlp")(z)
    return LikelihoodHead(self.likelihood, self.gaussian_scale,
                          name="head")(_float32(out))


def check_conv_shape(image_shape, what: str = "the images") -> None:
  """The conv networks' rule, checked once where they are built (and by the VAE's
  ``validate_data``): two stride-2 layers need image sides divisible by 4."""
  h, w, _ = image_shape
  if h % 4 or w % 4:
    raise UserError(f"--config.model.kind=conv needs image sides divisible by 4; {what} are "
                    f"{tuple(image_shape)}. Use --config.model.kind=mlp.")


class ConvEncoder(nn.Module):
  """Two stride-2 convolutions then a dense layer (for 28x28x1 or 32x32x3), turned into
  q(z|x) by the posterior family's ``head``."""
  image_shape: Sequence[int]
  head: Any                                # the family's head(encoder, h) -> q
  channels: Sequence[int] = (32, 64)
  hidden_dim: int = 256
  activation: str = "relu"
  dtype: Any = None

  @nn.compact
  def __call__(self, x):  # x: [B, H*W*C]
    act = activation_fn(self.activation)
    h = x.reshape(x.shape[:-1] + tuple(self.image_shape))
    for i, c in enumerate(self.channels):
      h = act(nn.Conv(c, (4, 4), strides=(2, 2), padding="SAME", dtype=self.dtype,
                          name=f"conv_{i}")(h))
    h = h.reshape(h.shape[:-3] + (-1,))
    h = act(nn.Dense(self.hidden_dim, dtype=self.dtype, name="hidden")(h))
    return self.head(self, h)


class ConvDecoder(nn.Module):
  """Dense layer to a (H/4, W/4) feature map, then two stride-2 transposed convs."""
  image_shape: Sequence[int]
  likelihood: str = "bernoulli"
  gaussian_scale: str = "shared"
  channels: Sequence[int] = (64, 32)
  hidden_dim: int = 256
  activation: str = "relu"
  dtype: Any = None

  @nn.compact
  def __call__(self, z):  # z: [..., L]
    h_img, w_img, c_img = self.image_shape
    act = activation_fn(self.activation)
    lead = z.shape[:-1]
    h = z.reshape((-1, z.shape[-1]))
    h = act(nn.Dense(self.hidden_dim, dtype=self.dtype, name="hidden")(h))
    h = act(nn.Dense((h_img // 4) * (w_img // 4) * self.channels[0], dtype=self.dtype,
                     name="project")(h))
    h = h.reshape((-1, h_img // 4, w_img // 4, self.channels[0]))
    h = act(nn.ConvTranspose(self.channels[1], (4, 4), strides=(2, 2),
                             padding="SAME", dtype=self.dtype, name="deconv_0")(h))
    h = nn.ConvTranspose(c_img, (4, 4), strides=(2, 2), padding="SAME", dtype=self.dtype,
                         name="deconv_1")(h)
    out = h.reshape(lead + (h_img * w_img * c_img,))
    return LikelihoodHead(self.likelihood, self.gaussian_scale,
                          name="head")(_float32(out))


class VAE(nn.Module):
  """Encoder, decoder and prior under one parameter tree.

  The tree's top-level keys are ``encoder`` (phi), ``decoder`` (theta) and,
  for a learned prior, ``prior`` (part of theta: variational EM moves it with
  the decoder). ``init`` traces every part; ``apply(..., method=...)`` runs one:

  * ``encode(x: [B, D]) -> q``: the posterior q(z|x) as a distribution object;
  * ``decode(z: [..., L]) -> dict``: the likelihood's parameters;
  * ``prior_distribution() -> p``: p(z) as a distribution object, the prior
    module's (``vae_jax.families.priors``; with two stochastic layers
    p(z2) p(z1 | z2) over z = concat(z1, z2), whose z1 the decoder reads).
  """
  encoder: nn.Module
  decoder: nn.Module
  prior: nn.Module
  latent_dim: int
  decoder_dim: int = 0               # > 0: the decoder reads z[..., :decoder_dim] (z1)

  def __call__(self, x):
    q = self.encoder(x)
    return q, self.decode(q.point()), self.prior_distribution()

  def encode(self, x):
    return self.encoder(x)

  def decode(self, z):
    return self.decoder(z[..., :self.decoder_dim] if self.decoder_dim else z)

  def prior_distribution(self):
    return self.prior(self.encoder)


def make_vae(*, kind: str = "mlp", image_shape: Sequence[int] = (28, 28, 1),
             latent_dim: int = 50, hidden_dims: Sequence[int] = (200, 200),
             likelihood: str = "bernoulli", gaussian_scale: str = "shared",
             activation: str = "relu", dtype: Any = None, posterior: str = "gaussian",
             prior: str = "standard", top_latent_dim: int = 0,
             top_hidden_dims: Sequence[int] = (), scale_head: str = "log_scale",
             **family) -> VAE:
  """Builds the VAE of a run's ``config.model``.

  ``kind="mlp"``: the 1-stochastic-layer model of Burda et al. (2015) by
  default (two hidden layers of 200 units, 50 latents; the decoder mirrors
  the encoder's hidden sizes). ``kind="conv"``: convolutional encoder and
  decoder for 28x28x1 or 32x32x3 images. ``dtype`` (e.g. ``jnp.bfloat16``)
  is the networks' computation dtype; parameters and outputs stay float32.
  ``posterior`` names q's family (``vae_jax.families.posteriors``) and
  ``prior`` p(z)'s (``vae_jax.families.priors``); ``family`` holds their own
  settings (``flow_steps=T``, ``prior_components=K``). ``top_latent_dim`` > 0
  adds a second stochastic layer z2 (``top_hidden_dims`` between the layers;
  Burda et al.'s two-layer model over a Gaussian q(z1 | x); z = concat(z1, z2)).
  ``scale_head`` is what q's ``log_scale`` head outputs: ``log_scale`` (here
  the default: log sigma) or ``log_var`` (log sigma^2, the configs' default).
  A run's config is checked once, by the model's ``validate``
  (``vae_jax.models.vae``); here only the names.
  """
  for value, allowed, what in ((likelihood, LIKELIHOODS, "likelihood"),
                               (gaussian_scale, GAUSSIAN_SCALES, "gaussian_scale"),
                               (kind, ("mlp", "conv"), "kind")):
    if value not in allowed:
      raise ValueError(f"{what} must be one of {allowed}, got {value!r}")
  output_dim = 1
  for s in image_shape:
    output_dim *= int(s)
  activation_fn(activation)
  settings = dict(family, latent_dim=int(latent_dim), scale_head=scale_head)
  head = POSTERIORS.get(posterior).head(settings)
  prior_module = PRIORS.get(prior).module(settings, output_dim)
  total_latent_dim, decoder_dim = int(latent_dim), 0
  if top_latent_dim:
    head = hierarchical.Head(head, int(latent_dim), int(top_latent_dim), tuple(top_hidden_dims))
    prior_module = hierarchical.Prior(int(latent_dim), int(top_latent_dim),
                                      tuple(top_hidden_dims))
    total_latent_dim, decoder_dim = int(latent_dim) + int(top_latent_dim), int(latent_dim)
  if kind == "conv":
    check_conv_shape(image_shape)
  if kind == "mlp":
    enc = MLPEncoder(tuple(hidden_dims), head, activation, dtype=dtype)
    dec = MLPDecoder(tuple(reversed(tuple(hidden_dims))), output_dim,
                     likelihood, gaussian_scale, activation, dtype=dtype)
  else:
    enc = ConvEncoder(tuple(image_shape), head, activation=activation, dtype=dtype)
    dec = ConvDecoder(tuple(image_shape), likelihood, gaussian_scale, activation=activation,
                      dtype=dtype)
  return VAE(encoder=enc, decoder=dec, prior=prior_module, latent_dim=total_latent_dim,
             decoder_dim=decoder_dim)
