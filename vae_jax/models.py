"""Flax Linen modules: encoders q(z|x, phi) and decoders p(x|z, theta).

Only modules live here; objectives are in ``vae_jax.objectives``. All modules
are deterministic: randomness enters the objective through explicit keys.

Shapes: data are flat vectors ``x: [B, D]`` with ``D = H * W * C``; the
convolutional modules reshape to ``image_shape = (H, W, C)`` internally, so
every model has the same interface.

* Encoder ``__call__(x: [B, D]) -> (mean [B, L], log_scale [B, L])``.
* Decoder ``__call__(z: [..., L]) -> dict`` of likelihood parameters:
  ``{"logits": [..., D]}`` (Bernoulli) or
  ``{"mean": [..., D], "log_scale": [..., D]}`` (Gaussian).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

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
  """q(z|x) = N(mean(x), diag(exp(log_scale(x))^2)) from an MLP.

  With ``hidden_dims=()`` the encoder is linear (used for the PPCA bridge).
  """
  hidden_dims: Sequence[int]
  latent_dim: int
  activation: str = "relu"
  dtype: Any = None

  @nn.compact
  def __call__(self, x):  # x: [B, D]
    h = x
    act = activation_fn(self.activation)
    for i, f in enumerate(self.hidden_dims):
      h = act(nn.Dense(f, dtype=self.dtype, name=f"hidden_{i}")(h))
    mean = nn.Dense(self.latent_dim, dtype=self.dtype, name="mean")(h)          # [B, L]
    log_scale = nn.Dense(self.latent_dim, dtype=self.dtype, name="log_scale")(h)  # [B, L]
    return _float32(mean), _float32(log_scale)


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


def _check_conv_shape(image_shape):
  h, w, _ = image_shape
  if h % 4 or w % 4:
    raise ValueError(f"conv models need height and width divisible by 4, "
                     f"got image_shape={tuple(image_shape)}; use --config.model.kind=mlp")


class ConvEncoder(nn.Module):
  """Two stride-2 convolutions then a dense layer; for 28x28x1 or 32x32x3."""
  image_shape: Sequence[int]
  latent_dim: int
  channels: Sequence[int] = (32, 64)
  hidden_dim: int = 256
  activation: str = "relu"
  dtype: Any = None

  @nn.compact
  def __call__(self, x):  # x: [B, H*W*C]
    _check_conv_shape(self.image_shape)
    act = activation_fn(self.activation)
    h = x.reshape(x.shape[:-1] + tuple(self.image_shape))
    for i, c in enumerate(self.channels):
      h = act(nn.Conv(c, (4, 4), strides=(2, 2), padding="SAME", dtype=self.dtype,
                          name=f"conv_{i}")(h))
    h = h.reshape(h.shape[:-3] + (-1,))
    h = act(nn.Dense(self.hidden_dim, dtype=self.dtype, name="hidden")(h))
    mean = nn.Dense(self.latent_dim, dtype=self.dtype, name="mean")(h)
    log_scale = nn.Dense(self.latent_dim, dtype=self.dtype, name="log_scale")(h)
    return _float32(mean), _float32(log_scale)


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
    _check_conv_shape(self.image_shape)
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
  """Encoder and decoder under one parameter tree: ``{"encoder", "decoder"}``.

  ``init`` traces both halves; use ``apply(..., method="encode")`` or
  ``method="decode"`` to run one of them. The parameter tree's top-level keys
  ("encoder" = phi, "decoder" = theta) are what the variational-EM code uses
  to split the gradient.
  """
  encoder: nn.Module
  decoder: nn.Module

  def __call__(self, x):
    mean, log_scale = self.encoder(x)
    return mean, log_scale, self.decoder(mean)

  def encode(self, x):
    return self.encoder(x)

  def decode(self, z):
    return self.decoder(z)


def make_vae(*, kind: str = "mlp", image_shape: Sequence[int] = (28, 28, 1),
             latent_dim: int = 50, hidden_dims: Sequence[int] = (200, 200),
             likelihood: str = "bernoulli", gaussian_scale: str = "shared",
             activation: str = "relu", dtype: Any = None) -> VAE:
  """Builds the VAE of a run's ``config.model``.

  ``kind="mlp"``: the 1-stochastic-layer model of Burda et al. (2015) by
  default (two hidden layers of 200 units, 50 latents; the decoder mirrors
  the encoder's hidden sizes). ``kind="conv"``: convolutional encoder and
  decoder for 28x28x1 or 32x32x3 images. ``dtype`` (e.g. ``jnp.bfloat16``)
  is the networks' computation dtype; parameters and outputs stay float32.
  """
  if likelihood not in LIKELIHOODS:
    raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
  if gaussian_scale not in GAUSSIAN_SCALES:
    raise ValueError(f"gaussian_scale must be one of {GAUSSIAN_SCALES}, "
                     f"got {gaussian_scale!r}")
  output_dim = 1
  for s in image_shape:
    output_dim *= int(s)
  activation_fn(activation)
  if kind == "mlp":
    enc = MLPEncoder(tuple(hidden_dims), latent_dim, activation, dtype=dtype)
    dec = MLPDecoder(tuple(reversed(tuple(hidden_dims))), output_dim,
                     likelihood, gaussian_scale, activation, dtype=dtype)
  elif kind == "conv":
    enc = ConvEncoder(tuple(image_shape), latent_dim, activation=activation, dtype=dtype)
    dec = ConvDecoder(tuple(image_shape), likelihood, gaussian_scale, activation=activation,
                      dtype=dtype)
  else:
    raise ValueError(f"kind must be 'mlp' or 'conv', got {kind!r}")
  return VAE(encoder=enc, decoder=dec)
