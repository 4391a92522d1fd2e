r"""A VAE with a discrete latent, trained with the score-function estimator.

Model (binary images x in {0, 1}^D, binary codes z in {0, 1}^L):

    p(z) = Bernoulli(1/2)^L,   p(x|z, theta) = Bernoulli(sigmoid(dec_theta(z))),
    q(z|x, phi) = Bernoulli(sigmoid(enc_phi(x)))   (independent over the L bits).

There is no differentiable path z = g(phi, eps) to a discrete z, so the
reparametrization trick does not apply. The ELBO is split as in the lecture,

    L(phi, theta) = E_q[log p(x|z, theta)] - KL(q(z|x, phi) || p(z)),

and each part gets the gradient it allows:

* grad_phi E_q[log p(x|z)]: the log-derivative trick,
  mean_s (f(z_s) - b_s) grad_phi log q(z_s|x), f = log p(x|z), z_s ~ q, the
  estimator's ``expectation`` (``vae_jax.inference.estimators``) on q, a
  ``vae_jax.families.discrete.Bernoulli``. The baseline b is 0
  (``score``), a running mean of f over previous steps (``score_baseline``)
  or the mean of f over the other S - 1 samples of the same x (``score_loo``).
* grad_phi KL: analytic (``kl_bernoulli_uniform``).
* grad_theta: direct, mean_s grad_theta log p(x|z_s) with the z_s held fixed.

For L <= ``MAX_EXACT_LATENT_DIM`` the 2^L codes can be enumerated, which gives
the exact ELBO and the exact log p(x) = logsumexp_z log p(x, z): the run
reports them next to the Monte-Carlo ELBO, and the tests use the exact ELBO's
gradient to check that every estimator is unbiased.

It trains through the one trainer (``build``):

  python -m experiments.main --config=experiments/configs/discrete_vae.py --workdir=/tmp/dvae
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import distributions as D
from vae_jax.families.discrete import Bernoulli
from vae_jax.inference import estimators
from vae_jax.inference import objectives
from vae_jax.training import task as task_lib
from vae_jax.models import common
from vae_jax.models import networks as models
from vae_jax.errors import UserError, check_positive

Array = jax.Array
sg = jax.lax.stop_gradient

# Exact enumeration over 2^L codes is offered up to this L (4,096 codes).
MAX_EXACT_LATENT_DIM = 12


# ----------------------------------------------------------------------------
# Model.
# ----------------------------------------------------------------------------


class DiscreteVAE(nn.Module):
  """MLP encoder x -> q(z|x), a Bernoulli, and MLP decoder z -> logits of p(x|z).

  Parameters live under ``{"encoder", "decoder"}`` (phi, theta) as in
  ``models.VAE``; the decoder mirrors the encoder's hidden sizes.

  Attributes:
    hidden_dims: ReLU hidden widths of the encoder.
    latent_dim: L, the number of binary latents.
    output_dim: D, the number of pixels.
  """
  hidden_dims: Sequence[int]
  latent_dim: int
  output_dim: int

  def setup(self):
    self.encoder = models.MLP(tuple(self.hidden_dims) + (self.latent_dim,))
    self.decoder = models.MLP(tuple(reversed(tuple(self.hidden_dims))) + (self.output_dim,))

  def __call__(self, x):
    q = self.encode(x)
    return q.logits, self.decode(q.mode())

  def encode(self, x) -> Bernoulli:
    """x: [B, D] -> q(z|x), independent Bernoullis with logits [B, L]."""
    return Bernoulli(self.encoder(x))

  def decode(self, z):
    """z: [..., L] in {0, 1} -> {"logits": [..., D]} of p(x|z)."""
    return {"logits": self.decoder(z)}


# ----------------------------------------------------------------------------
# KL, the surrogate objective, and exact enumeration.
# ----------------------------------------------------------------------------


def kl_bernoulli_uniform(logits: Array) -> Array:
  """KL(Bernoulli(sigmoid(logits)) || Bernoulli(1/2)) summed over the last axis.

  Per bit: log 2 - H(q) = log 2 - softplus(l) + sigmoid(l) * l.

  Args:
    logits: [..., L].

  Returns:
    [...] KL in nats, in [0, L log 2].
  """
  return logits.shape[-1] * math.log(2.0) - D.bernoulli_entropy(logits)


def _log_lik(params: Any, x: Array, z: Array, *, model: DiscreteVAE) -> Array:
  """log p(x|z): x [B, D], z [S, B, L] -> [S, B]."""
  return objectives.log_likelihood(x, model.apply(params, z, method="decode"))


def elbo_surrogate(params: Any, x: Array, key: Array, est_state: dict, *,
                   model: DiscreteVAE, estimator: str, num_samples: int,
                   baseline_decay: float = 0.9) -> tuple[Array, tuple[dict, dict]]:
  """Negative surrogate ELBO of one batch; its gradient is the chosen estimator.

  Value: -(1/B) sum_b [mean_s log p(x_b|z_bs) - KL(q(z|x_b) || p(z))], the
  Monte-Carlo negative ELBO. Gradient: encoder by the score-function estimator
  (the entry's ``expectation`` of f = log p(x|z) under q) plus the analytic KL
  gradient; decoder directly through log p(x|z_s) with the z_s fixed. The
  settings are those ``validate`` accepted.

  Args:
    params: {"params": {"encoder", "decoder"}}.
    x: [B, D] batch in {0, 1}.
    key: PRNG key for the S draws z_s ~ q(z|x): [S, B, L].
    est_state: {"baseline": [], "count": []} for score_baseline; {} otherwise.
    estimator: a score-function estimator of ``estimators.ESTIMATORS``.
    num_samples: S (>= 2 for score_loo).
    baseline_decay: decay of score_baseline's running mean of mean f.

  Returns:
    (loss, (aux, new_est_state)); aux holds per-example [B] ``recon``
    (mean_s log p(x|z_s)), ``kl`` and ``elbo`` = recon - kl, in nats.
  """
  q = model.apply(params, x, method="encode")                               # [B, L] logits
  kl = kl_bernoulli_uniform(q.logits)                                       # [B]
  # The draws the estimator makes from the same key (no gradient path).
  z = q.sample(key, (num_samples,))                                         # [S, B, L]
  log_lik = _log_lik(params, x, z, model=model)                             # [S, B]
  frozen = sg(params)
  f = lambda zs: _log_lik(frozen, x, zs, model=model)                       # [S, B] -> [S, B]
  # A running baseline comes from previous steps only (unbiased); this f updates it.
  encoder_term, new_state = estimators.ESTIMATORS[estimator].expectation(
      q, f, key, num_samples, est_state, baseline_decay)
  # Same value mean(log_lik); the decoder's gradient is the direct one.
  decoder_term = jnp.mean(log_lik) - sg(jnp.mean(log_lik))
  loss = -(encoder_term + decoder_term - jnp.mean(kl))
  recon = jnp.mean(sg(log_lik), 0)
  aux = {"recon": recon, "kl": sg(kl), "elbo": recon - sg(kl)}
  return loss, (aux, new_state)


def make_loss(model: DiscreteVAE, estimator: str, num_samples: int,
              baseline_decay: float = 0.9):
  """(loss_fn, est_state0): loss_fn(params, x, key, est_state) -> (loss, (aux, state)).

  The settings are those ``validate`` accepted."""
  loss_fn = functools.partial(elbo_surrogate, model=model, estimator=estimator,
                              num_samples=int(num_samples),
                              baseline_decay=float(baseline_decay))
  return loss_fn, estimators.ESTIMATORS[estimator].init_state()


def all_codes(latent_dim: int) -> Array:
  """Every z in {0, 1}^L as float32 rows: [2^L, L] (row k = binary digits of k)."""
  k = jnp.arange(2 ** latent_dim)[:, None]
  return ((k >> jnp.arange(latent_dim - 1, -1, -1)) & 1).astype(jnp.float32)


def _enumerate(params: Any, x: Array, model: DiscreteVAE) -> tuple[Array, Array]:
  """log p(x|z) and log q(z|x) for every code: x [B, D] -> ([B, K], [B, K]), K = 2^L."""
  if model.latent_dim > MAX_EXACT_LATENT_DIM:
    raise UserError(f"exact enumeration needs L <= {MAX_EXACT_LATENT_DIM} "
                    f"(2^L codes), got L = {model.latent_dim}.")
  codes = all_codes(model.latent_dim)                                      # [K, L]
  dec = model.apply(params, codes, method="decode")["logits"]               # [K, D]
  # sum_d x_d l_d - softplus(l_d), as one matmul instead of a [B, K, D] tensor.
  log_lik = x @ dec.T - jnp.sum(jax.nn.softplus(dec), -1)                   # [B, K]
  enc = model.apply(params, x, method="encode").logits                      # [B, L]
  log_q = enc @ codes.T - jnp.sum(jax.nn.softplus(enc), -1, keepdims=True)  # [B, K]
  return log_lik, log_q


def _exact_terms(params: Any, x: Array, model: DiscreteVAE) -> tuple[Array, Array]:
  """(log p(x), ELBO) per example [B], from one enumeration."""
  log_lik, log_q = _enumerate(params, x, model)
  log_prior = -model.latent_dim * math.log(2.0)
  log_marginal = jax.nn.logsumexp(log_lik, -1) + log_prior
  elbo = jnp.sum(jnp.exp(log_q) * (log_lik + log_prior - log_q), -1)
  return log_marginal, elbo


def exact_log_marginal(params: Any, x: Array, *, model: DiscreteVAE) -> Array:
  """log p(x) = logsumexp_z [log p(x|z) + log p(z)] over all 2^L codes: [B, D] -> [B]."""
  return _exact_terms(params, x, model)[0]


def exact_elbo(params: Any, x: Array, *, model: DiscreteVAE) -> Array:
  """sum_z q(z|x) [log p(x|z) + log p(z) - log q(z|x)] over all codes: [B, D] -> [B].

  Differentiable in the encoder and decoder: its gradient is the expectation
  every estimator's gradient should have.
  """
  return _exact_terms(params, x, model)[1]


# ----------------------------------------------------------------------------
# Training and evaluation.
# ----------------------------------------------------------------------------


def eval_step(params: Any, x: Array, mask: Array, key: Array, *, model: DiscreteVAE,
              exact: bool) -> dict:
  """Sums over the unmasked rows of one eval batch (x: [B, D], mask: [B]).

  Returns neg_elbo (one z ~ q per example), recon, kl, count and, when
  ``exact``, exact_neg_elbo and exact_nll by enumeration.
  """
  _, (aux, _) = elbo_surrogate(params, x, key, {}, model=model, estimator="score",
                               num_samples=1)
  out = {"neg_elbo": -jnp.sum(aux["elbo"] * mask), "recon": jnp.sum(aux["recon"] * mask),
         "kl": jnp.sum(aux["kl"] * mask), "count": jnp.sum(mask)}
  if exact:
    log_marginal, elbo = _exact_terms(params, x, model)
    out["exact_neg_elbo"] = -jnp.sum(elbo * mask)
    out["exact_nll"] = -jnp.sum(log_marginal * mask)
  return out


def sample_and_reconstruct(params: Any, key: Array, x: Array, *, model: DiscreteVAE,
                           num_samples: int = 100) -> tuple[Array, Array]:
  """Decoder means E[x|z] for z ~ p(z): [num_samples, D], and for x: [B, D] at
  the mode of q(z|x) (each bit 1 iff its logit > 0): [B, D]."""
  z = D.bernoulli_sample(key, jnp.zeros((num_samples, model.latent_dim)))
  z_mode = model.apply(params, x, method="encode").mode()
  mean = lambda v: jax.nn.sigmoid(model.apply(params, v, method="decode")["logits"])
  return mean(z), mean(z_mode)


# ----------------------------------------------------------------------------
# The trainable model: validate, build, log p(x).
# ----------------------------------------------------------------------------

NAME = "discrete_vae"
# How evaluation computes log p(x): exactly, by enumerating the 2^L codes.
NLL_METHOD = "exact"


def build_network(model_config, num_dims: int) -> DiscreteVAE:
  return DiscreteVAE(hidden_dims=common.hidden_dims(model_config.hidden_dims),
                                  latent_dim=int(model_config.latent_dim), output_dim=num_dims)


def validate(config) -> None:
  """Checks the discrete VAE's settings once; UserError names the key."""
  common.float32_only(config, "the discrete VAE")
  check_positive(config.model.latent_dim, "config.model.latent_dim", integer=True)
  common.hidden_dims(config.model.hidden_dims)
  # q(z|x) is a Bernoulli: log q at any z and a closed-form KL, but no path z = g(phi, eps);
  # the loss trains the ELBO.
  estimators.validate(config.objective, has_density=True, closed_form_kl=True,
                      reparametrized=False, bounds=(estimators.ELBO,),
                      family="Bernoulli: a discrete z")


def validate_data(ds, config) -> None:
  del ds, config     # binarized or grey levels in [0, 1]: the data loader checks the range


def build(config, image_shape: Sequence[int], num_train: int | None = None) -> task_lib.Task:
  """Bernoulli latents trained with a score-function estimator; exact eval when small."""
  num_dims = int(np.prod(image_shape))
  model = build_network(config.model, num_dims)
  o = config.objective
  loss_fn, est0 = make_loss(model, o.estimator, int(o.num_samples),
                                         float(o.baseline_decay))
  exact = model.latent_dim <= MAX_EXACT_LATENT_DIM
  return task_lib.Task(
      name="discrete_vae", model=model, init_params=common.init_fn(model, num_dims),
      loss_fn=common.no_step(loss_fn), est_state=est0,
      train_metrics=functools.partial(common.elbo_metrics, dataset_size=num_train),
      eval_step=functools.partial(eval_step, model=model, exact=exact),
      bits_per_dim={"neg_elbo": "bits_per_dim", "exact_nll": "exact_bits_per_dim"},
      headline=("loss", "recon", "kl"), eval_headline="exact_nll" if exact else "neg_elbo",
      groups=("encoder", "decoder"), eval_at_start=True)


def log_likelihood(params: Any, x, key=None, *, model, batch_size: int = 500) -> np.ndarray:
  """Exact per-example log p(x) by enumerating the 2^L codes: [N] float64."""
  del key
  if model.latent_dim > MAX_EXACT_LATENT_DIM:
    raise UserError(f"this discrete VAE has L = {model.latent_dim} latents; the exact "
                    f"log p(x) enumerates 2^L codes and is offered up to L = "
                    f"{MAX_EXACT_LATENT_DIM}.")
  fn = jax.jit(lambda xb: exact_log_marginal(params, xb, model=model))
  return _over_batches(fn, x, batch_size)


def exact_elbo_per_example(params: Any, x, *, model, batch_size: int = 500) -> np.ndarray:
  """The exact ELBO of every row (enumerating the codes): [N] float64."""
  fn = jax.jit(lambda xb: exact_elbo(params, xb, model=model))
  return _over_batches(fn, x, batch_size)


def _over_batches(fn, x, batch_size: int) -> np.ndarray:
  from vae_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  parts = [np.asarray(jax.device_get(fn(xb)))[mb > 0]
           for xb, mb in data_lib.eval_batches(np.asarray(x), min(batch_size, len(x)))]
  return np.concatenate(parts).astype(np.float64)
