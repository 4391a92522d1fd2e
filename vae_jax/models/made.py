"""An exact-likelihood autoregressive baseline: MADE for binary images.

The lecture's recap writes the likelihood of x = (x_1, ..., x_m) as a chain:

    log p(x | theta) = sum_{i=1}^{m} log p(x_i | x_{1:i-1}, theta),

fits theta by maximum likelihood, and samples ancestrally,
x_1 ~ p(x_1), x_2 ~ p(x_2 | x_1), ..., x_m ~ p(x_m | x_{1:m-1}).

Here every conditional is a Bernoulli whose logit comes from MADE
(Germain et al., 2015): an MLP whose weight matrices are multiplied by binary
masks so that ``logit_i`` depends only on ``x_{1:i-1}`` (natural ordering).
One forward pass therefore gives all m conditionals and the exact log p(x);
sampling needs m sequential passes. D below is the lecture's m.

Masks are deterministic (no RNG): input i has degree i; hidden unit k of
every layer has degree ``k mod (D - 1) + 1`` (cycling 1..D-1); a hidden unit
sees inputs of degree <= its own, and output i sees hidden units of degree
< i. With every hidden layer at least D - 1 wide, each logit_i depends on all
of x_{1:i-1}.

MADE trains by maximum likelihood through the one trainer
(``build``); its exact held-out negative log-likelihood is
the number to compare with the VAE's -ELBO and IWAE bound:

  python -m experiments.main --config=experiments/configs/autoregressive.py --workdir=/tmp/made
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import distributions
from vae_jax.masks import made_masks
from vae_jax.inference import objectives
from vae_jax.training import task as task_lib
from vae_jax.models import common

# ----------------------------------------------------------------------------
# MADE.
# ----------------------------------------------------------------------------


class MaskedDense(nn.Module):
  """y = x @ (kernel * mask) + bias."""
  features: int

  @nn.compact
  def __call__(self, x: jax.Array, mask: np.ndarray) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    return x @ (kernel * jnp.asarray(mask, kernel.dtype)) + bias


class MADE(nn.Module):
  """Masked autoencoder for distribution estimation over binary vectors.

  Attributes:
    hidden_dims: widths of the ReLU hidden layers; () gives the fully visible
      logistic model (one strictly lower-triangular linear map).
  """
  hidden_dims: tuple[int, ...] = (500,)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [B, D] in {0, 1} -> Bernoulli logits [B, D]; logits[:, i] sees x[:, :i] only."""
    num_dims = x.shape[-1]
    masks = made_masks(num_dims, self.hidden_dims)
    widths = tuple(self.hidden_dims) + (num_dims,)
    h = x
    for i, (mask, width) in enumerate(zip(masks, widths)):
      h = MaskedDense(width, name=f"masked_dense_{i}")(h, mask)
      if i < len(masks) - 1:
        h = nn.relu(h)
    return h


# ----------------------------------------------------------------------------
# Likelihood, MLE objective, ancestral sampling.
# ----------------------------------------------------------------------------


def log_prob(params: Any, x: jax.Array, *, model: MADE) -> jax.Array:
  """Exact log p(x) = sum_i log Bernoulli(x_i | sigmoid(logit_i(x_{1:i-1}))).

  Args:
    params: MADE variables.
    x: [B, D] binary vectors (grey levels give the cross-entropy instead).

  Returns:
    [B] log-likelihoods in nats.
  """
  return distributions.bernoulli_log_prob(x, model.apply(params, x))


def nll_loss(params: Any, x: jax.Array, *, model: MADE) -> tuple[jax.Array, dict]:
  """The MLE objective: mean over the batch of -log p(x).

  Args:
    x: [B, D] batch.

  Returns:
    (scalar mean negative log-likelihood in nats, {"log_prob": [B]}).
  """
  lp = log_prob(params, x, model=model)
  return -jnp.mean(lp), {"log_prob": lp}


def sample(key: jax.Array, params: Any, num_samples: int, *, model: MADE,
           num_dims: int) -> jax.Array:
  """Ancestral sampling: x_i ~ Bernoulli(sigmoid(logit_i(x_{1:i-1}))), i = 1..D.

  D sequential forward passes in a ``fori_loop``; pass i draws coordinate i
  with the key ``fold_in(key, i)``.

  Returns:
    [num_samples, num_dims] float32 samples in {0, 1}.
  """
  def body(i, x):
    logits = model.apply(params, x)                                   # [S, D]
    logit_i = jax.lax.dynamic_index_in_dim(logits, i, axis=1, keepdims=False)
    x_i = distributions.bernoulli_sample(jax.random.fold_in(key, i), logit_i)
    return jax.lax.dynamic_update_index_in_dim(x, x_i, i, axis=1)

  x0 = jnp.zeros((num_samples, num_dims), jnp.float32)
  return jax.lax.fori_loop(0, num_dims, body, x0)


def num_free_parameters(num_dims: int, hidden_dims: Sequence[int]) -> int:
  """Weights not masked out plus biases: the parameters that can move."""
  masks = made_masks(num_dims, hidden_dims)
  return int(sum(m.sum() + m.shape[1] for m in masks))


def eval_step(params: Any, x: jax.Array, mask: jax.Array, key: jax.Array | None = None, *,
              model: MADE) -> dict:
  """x: [B, D] (zero-padded), mask: [B] -> {"nll": sum of -log p(x), "count"}.

  ``key`` is unused (the likelihood is exact); it makes the signature the one
  ``vae_jax.inference.evaluation.evaluate`` calls.
  """
  del key
  lp = log_prob(params, x, model=model)
  return {"nll": -jnp.sum(lp * mask), "count": jnp.sum(mask)}


# ----------------------------------------------------------------------------
# The trainable model: validate, build, log p(x).
# ----------------------------------------------------------------------------

NAME = "made"
# How evaluation computes log p(x): exactly, one forward pass.
NLL_METHOD = "exact"


def build_network(model_config) -> MADE:
  return MADE(hidden_dims=common.hidden_dims(model_config.hidden_dims))


def _made_loss(params, x, key, est_state, step, *, model):
  del key, step
  loss, aux = nll_loss(params, x, model=model)
  return loss, ({"nll": -aux["log_prob"]}, est_state)


def _made_metrics(aux: dict, num_dims: int) -> dict:
  nll = jnp.mean(aux["nll"])
  return {"nll": nll, "bits_per_dim": objectives.bits_per_dim(nll, num_dims)}


def validate(config) -> None:
  """Checks MADE's settings once; UserError names the key."""
  common.float32_only(config, "MADE")
  common.hidden_dims(config.model.hidden_dims)


def validate_data(ds, config) -> None:
  del ds, config     # binary or grey levels in [0, 1]: the data loader checks the range


def build(config, image_shape: Sequence[int], num_train: int | None = None) -> task_lib.Task:
  """MADE trained by maximum likelihood (no noise: the key is unused)."""
  del num_train
  model = build_network(config.model)
  num_dims = int(np.prod(image_shape))
  return task_lib.Task(
      name="made", model=model, init_params=common.init_fn(model, num_dims),
      loss_fn=functools.partial(_made_loss, model=model), est_state={},
      train_metrics=functools.partial(_made_metrics, num_dims=num_dims),
      eval_step=functools.partial(eval_step, model=model),
      bits_per_dim={"nll": "bits_per_dim"}, headline=("nll", "bits_per_dim"),
      eval_headline="nll")


def log_likelihood(params: Any, x, key=None, *, model, batch_size: int = 500) -> np.ndarray:
  """Exact per-example log p(x) (the product of MADE's conditionals): [N] float64."""
  del key
  from vae_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  fn = jax.jit(lambda xb: log_prob(params, xb, model=model))
  parts = [np.asarray(jax.device_get(fn(xb)))[mb > 0]
           for xb, mb in data_lib.eval_batches(np.asarray(x), min(batch_size, len(x)))]
  return np.concatenate(parts).astype(np.float64)
