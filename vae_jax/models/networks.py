"""Flax Linen modules: encoders q(z|x, phi) and decoders p(x|z, theta).

Only modules live here; objectives are in ``vae_jax.inference.objectives``. All modules
are deterministic: randomness enters the objective through explicit keys.

Shapes: data are flat vectors ``x: [B, D]`` with ``D = H * W * C``; the
convolutional modules reshape to ``image_shape = (H, W, C)`` internally, so
every model has the same interface.

* Encoder ``__call__(x: [B, D]) -> q``, the posterior q(z|x) as a distribution
  object (``vae_jax.families``): a diagonal Gaussian, or one pushed through a
  planar or IAF flow (``posterior``, ``flow_steps``).
* Decoder ``__call__(z: [..., L]) -> dict`` of likelihood parameters:
  ``{"logits": [..., D]}`` (Bernoulli) or
  ``{"mean": [..., D], "log_scale": [..., D]}`` (Gaussian).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vae_jax.families import hierarchical
from vae_jax.families.mixture import DiagNormalMixture, uniform_logits
from vae_jax.families.normal import DiagNormal, StandardNormal

LIKELIHOODS = ("bernoulli", "gaussian")
# q(z|x): the encoder's family; p(z): the prior.
POSTERIORS = ("gaussian", "planar", "iaf")   # the flows: vae_jax.families.flows
PRIORS = ("standard", "mog", "vamp")
# Hidden units of each IAF step's MADE and the size of the encoder's context h.
IAF_HIDDEN_FACTOR = 2
IAF_CONTEXT_DIM = 64
GAUSSIAN_SCALES = ("shared", "per_pixel")
# What the encoder's ``log_scale`` head outputs: log_var, log sigma^2 (log sigma
# is half of it: Kingma & Welling's and pythae's choice, the configs' default,
# 1-1.5 nats better on mnist_5k: docs/vs_pythae.md) | log_scale, log sigma itself.
SCALE_HEADS = ("log_var", "log_scale")
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
  posterior: str = "gaussian"
  flow_steps: int = 0
  top_latent_dim: int = 0                  # > 0: a second stochastic layer z2 above z
  top_hidden_dims: Sequence[int] = ()
  scale_head: str = "log_scale"            # SCALE_HEADS: the head's output is log sigma^2 or log sigma

  @nn.compact
  def __call__(self, x):  # x: [B, D]
    h = x
    act = activation_fn(self.activation)
    for i, f in enumerate(self.hidden_dims):
      h = act(nn.Dense(f, dtype=self.dtype, name=f"hidden_{i}")(h))
    return posterior_head(self, h)


def posterior_head(encoder: nn.Module, h):
  """q(z|x) from an encoder's last features h: [B, F], in the encoder's scope.

  The Gaussian's heads are ``mean`` and ``log_scale`` (the names of every
  checkpoint written before the flows existed); a planar flow adds amortized
  ``planar_u``, ``planar_w`` ([B, T*L]) and ``planar_b`` ([B, T]) heads; IAF
  adds a ``iaf_context`` head and the MADE parameters ``iaf_<t>`` of each step.
  Called from the encoder's ``nn.compact`` method with the encoder itself
  (its ``latent_dim``, ``posterior``, ``flow_steps`` and ``dtype``).
  """
  latent_dim, posterior, flow_steps, dtype = (encoder.latent_dim, encoder.posterior,
                                              encoder.flow_steps, encoder.dtype)
  mean = nn.Dense(latent_dim, dtype=dtype, name="mean")(h)          # [B, L]
  log_scale = nn.Dense(latent_dim, dtype=dtype, name="log_scale")(h)  # [B, L]
  if encoder.scale_head == "log_var":   # the head reads log sigma^2: log sigma is half of it
    log_scale = 0.5 * log_scale
  base = DiagNormal(_float32(mean), _float32(log_scale))
  if encoder.top_latent_dim:           # q(z2 | z1) above the Gaussian q(z1 | x)
    net = encoder.param("layer2", hierarchical.init_gaussian_mlp, latent_dim,
                        tuple(encoder.top_hidden_dims), encoder.top_latent_dim)
    return hierarchical.TwoLayerPosterior(base, net)
  if posterior == "gaussian":
    return base
  # distrax bijectors: imported only for a flow posterior (seconds of start-up).
  from vae_jax.families import flows  # pylint: disable=g-import-not-at-top
  batch = h.shape[:-1]
  if posterior == "planar":
    zeros = nn.initializers.zeros
    def head(name, size, init=nn.initializers.lecun_normal()):
      out = nn.Dense(size, dtype=dtype, kernel_init=init, name=name)(h)
      return _float32(out).reshape(batch + (flow_steps, -1))
    u = head("planar_u", flow_steps * latent_dim, zeros)
    w = head("planar_w", flow_steps * latent_dim)
    b = head("planar_b", flow_steps, zeros)[..., 0]
    steps = tuple({"u": u[..., t, :], "w": w[..., t, :], "b": b[..., t]}
                  for t in range(flow_steps))
    return flows.FlowPosterior(base, steps, jnp.zeros(batch + (0,), jnp.float32), "planar")
  if posterior == "iaf":
    context = _float32(nn.Dense(IAF_CONTEXT_DIM, dtype=dtype, name="iaf_context")(h))
    hidden = IAF_HIDDEN_FACTOR * latent_dim
    steps = tuple(encoder.param(f"iaf_{t}", flows.init_iaf_step, latent_dim, hidden,
                               IAF_CONTEXT_DIM) for t in range(flow_steps))
    return flows.FlowPosterior(base, steps, context, "iaf")
  raise ValueError(f"posterior must be one of {POSTERIORS}, got {posterior!r}")


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
  posterior: str = "gaussian"
  flow_steps: int = 0
  top_latent_dim: int = 0                  # > 0: a second stochastic layer z2 above z
  top_hidden_dims: Sequence[int] = ()
  scale_head: str = "log_scale"            # SCALE_HEADS: the head's output is log sigma^2 or log sigma

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
    return posterior_head(self, h)


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


class PriorParameters(nn.Module):
  """The learned prior's parameters (none for ``standard``).

  ``mog``: ``logits`` [K] (start equal), ``loc`` [K, L] (start N(0, 1)) and
  ``log_scale`` [K, L] (start 0). ``vamp``: ``pseudo_inputs`` [K, D], the
  VampPrior's u_k = sigmoid(.) in (0, 1) like the data, starting near the
  average MNIST pixel (sigmoid(-2) = 0.12) with a little noise.
  ``two_layer``: ``net``, the MLP of p(z1 | z2) (``top_latent_dim`` -> the
  ``top_hidden_dims`` -> [mu, log sigma] of z1).
  """
  kind: str
  num_components: int
  latent_dim: int
  input_dim: int
  top_latent_dim: int = 0
  top_hidden_dims: Sequence[int] = ()

  @nn.compact
  def __call__(self):
    k, l = self.num_components, self.latent_dim
    if self.kind == "two_layer":
      return {"net": self.param("net", hierarchical.init_gaussian_mlp, self.top_latent_dim,
                                tuple(self.top_hidden_dims), l)}
    if self.kind == "mog":
      return {"logits": self.param("logits", nn.initializers.zeros, (k,)),
              "loc": self.param("loc", nn.initializers.normal(1.0), (k, l)),
              "log_scale": self.param("log_scale", nn.initializers.zeros, (k, l))}
    if self.kind == "vamp":
      init = lambda key, shape: -2.0 + 0.1 * jax.random.normal(key, shape)
      return {"pseudo_inputs": jax.nn.sigmoid(
          self.param("pseudo_inputs", init, (k, self.input_dim)))}
    raise ValueError(f"prior must be one of {PRIORS}, got {self.kind!r}")


class VAE(nn.Module):
  """Encoder, decoder and prior under one parameter tree.

  The tree's top-level keys are ``encoder`` (phi), ``decoder`` (theta) and,
  for a learned prior, ``prior`` (part of theta: variational EM moves it with
  the decoder). ``init`` traces every part; ``apply(..., method=...)`` runs one:

  * ``encode(x: [B, D]) -> q``: the posterior q(z|x) as a distribution object;
  * ``decode(z: [..., L]) -> dict``: the likelihood's parameters;
  * ``prior_distribution() -> p``: p(z) as a distribution object (``N(0, I)``,
    a mixture of Gaussians, or the VampPrior: the encoder's Gaussians at the
    pseudo-inputs, uniformly weighted; with two stochastic layers
    p(z2) p(z1 | z2) over z = concat(z1, z2), whose z1 the decoder reads).
  """
  encoder: nn.Module
  decoder: nn.Module
  latent_dim: int
  prior: nn.Module | None = None     # PriorParameters, None for N(0, I)
  decoder_dim: int = 0               # > 0: the decoder reads z[..., :decoder_dim] (z1)

  def __call__(self, x):
    q = self.encoder(x)
    return q, self.decode(q.point()), self.prior_distribution()

  def encode(self, x):
    return self.encoder(x)

  def decode(self, z):
    return self.decoder(z[..., :self.decoder_dim] if self.decoder_dim else z)

  def prior_distribution(self):
    if self.prior is None:
      return StandardNormal(self.latent_dim)
    p = self.prior()
    if self.prior.kind == "two_layer":
      return hierarchical.TwoLayerPrior(p["net"], self.prior.top_latent_dim)
    if self.prior.kind == "mog":
      return DiagNormalMixture(p["logits"], p["loc"], p["log_scale"], name="mog")
    q = self.encoder(p["pseudo_inputs"])                      # q(z | u_k), K components
    base = getattr(q, "base", q)                              # a flow's Gaussian
    return DiagNormalMixture(uniform_logits(self.prior.num_components), base.loc,
                             base.log_scale, name="vamp")


def make_vae(*, kind: str = "mlp", image_shape: Sequence[int] = (28, 28, 1),
             latent_dim: int = 50, hidden_dims: Sequence[int] = (200, 200),
             likelihood: str = "bernoulli", gaussian_scale: str = "shared",
             activation: str = "relu", dtype: Any = None, posterior: str = "gaussian",
             flow_steps: int = 0, prior: str = "standard", prior_components: int = 0,
             top_latent_dim: int = 0, top_hidden_dims: Sequence[int] = (),
             scale_head: str = "log_scale") -> VAE:
  """Builds the VAE of a run's ``config.model``.

  ``kind="mlp"``: the 1-stochastic-layer model of Burda et al. (2015) by
  default (two hidden layers of 200 units, 50 latents; the decoder mirrors
  the encoder's hidden sizes). ``kind="conv"``: convolutional encoder and
  decoder for 28x28x1 or 32x32x3 images. ``dtype`` (e.g. ``jnp.bfloat16``)
  is the networks' computation dtype; parameters and outputs stay float32.
  ``posterior`` (``gaussian``, ``planar``, ``iaf``) with ``flow_steps`` maps
  is q's family; ``prior`` (``standard``, ``mog``, ``vamp``) with
  ``prior_components`` K is p(z). ``top_latent_dim`` > 0 adds a second
  stochastic layer z2 (``top_hidden_dims`` between the layers; Burda et al.'s
  two-layer model: a Gaussian q and p(z2) = N(0, I) only; z = concat(z1, z2)).
  ``scale_head`` (``SCALE_HEADS``) is what q's ``log_scale`` head outputs:
  ``log_scale`` (here the default: log sigma) or ``log_var`` (log sigma^2, the
  configs' default).
  The config's values are checked once, by the model's ``validate``
  (``vae_jax.tasks``); here only the names.
  """
  for value, allowed, what in ((likelihood, LIKELIHOODS, "likelihood"),
                               (gaussian_scale, GAUSSIAN_SCALES, "gaussian_scale"),
                               (posterior, POSTERIORS, "posterior"), (prior, PRIORS, "prior"),
                               (scale_head, SCALE_HEADS, "scale_head"),
                               (kind, ("mlp", "conv"), "kind")):
    if value not in allowed:
      raise ValueError(f"{what} must be one of {allowed}, got {value!r}")
  output_dim = 1
  for s in image_shape:
    output_dim *= int(s)
  activation_fn(activation)
  family = dict(posterior=posterior, flow_steps=int(flow_steps) if posterior != "gaussian" else 0,
                top_latent_dim=int(top_latent_dim), top_hidden_dims=tuple(top_hidden_dims),
                scale_head=scale_head)
  if kind == "mlp":
    enc = MLPEncoder(tuple(hidden_dims), latent_dim, activation, dtype=dtype, **family)
    dec = MLPDecoder(tuple(reversed(tuple(hidden_dims))), output_dim,
                     likelihood, gaussian_scale, activation, dtype=dtype)
  else:
    enc = ConvEncoder(tuple(image_shape), latent_dim, activation=activation, dtype=dtype,
                      **family)
    dec = ConvDecoder(tuple(image_shape), likelihood, gaussian_scale, activation=activation,
                      dtype=dtype)
  if top_latent_dim:
    if posterior != "gaussian" or prior != "standard":
      raise ValueError("two stochastic layers take the gaussian posterior and standard prior")
    prior_params = PriorParameters("two_layer", 0, int(latent_dim), output_dim,
                                   int(top_latent_dim), tuple(top_hidden_dims))
    return VAE(encoder=enc, decoder=dec, latent_dim=int(latent_dim) + int(top_latent_dim),
               prior=prior_params, decoder_dim=int(latent_dim))
  prior_params = (None if prior == "standard" else
                  PriorParameters(prior, int(prior_components), int(latent_dim), output_dim))
  return VAE(encoder=enc, decoder=dec, latent_dim=int(latent_dim), prior=prior_params)
