"""What the trainable models share: config helpers, the dtype, metric and init glue.

Each model module (``vae``, ``discrete_vae``, ``made``) builds its
``Task`` (``vae_jax.training.task``) from these; nothing here knows a model by name.
"""

from __future__ import annotations


import jax.numpy as jnp

from vae_jax.inference import objectives
from vae_jax.errors import UserError, check_choice


def hidden_dims(value, name: str = "config.model.hidden_dims") -> tuple[int, ...]:
  """(200, 200), [200, 200] or '200,200' -> (200, 200); () or '' -> ()."""
  if isinstance(value, int):
    value = (value,)
  if isinstance(value, (list, tuple)):
    try:
      dims = tuple(int(v) for v in value)
    except (TypeError, ValueError):
      dims = None
  else:
    try:
      dims = tuple(int(v) for v in str(value or "").split(",") if v.strip())
    except ValueError:
      dims = None
  if dims is None or any(d <= 0 for d in dims):
    raise UserError(f"--{name} must be a tuple of positive integers like (200, 200), "
                    f"or () for a linear map; got {value!r}.")
  return dims


COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(config):
  """``train.compute_dtype`` as a dtype: float32 (default) or bfloat16."""
  name = config.train.compute_dtype
  return COMPUTE_DTYPES[check_choice(name, tuple(COMPUTE_DTYPES), "config.train.compute_dtype")]


def float32_only(config, what: str) -> None:
  if compute_dtype(config) != jnp.float32:
    raise UserError(f"--config.train.compute_dtype=bfloat16 is implemented for the VAE; "
                    f"{what} trains in float32.")


def elbo_metrics(aux: dict, dataset_size: int | None = None, bound: str = "elbo") -> dict:
  """Batch means of recon, kl and the training bound (``elbo``, or ``iwae_bound``
  for the IWAE-objective estimators), and the bound's full-data estimate."""
  out = {k: jnp.mean(aux[k]) for k in ("recon", "kl")}
  out[bound] = jnp.mean(aux["elbo"])
  if dataset_size:
    out[f"{bound}_full_data"] = objectives.full_data_elbo_estimate(aux["elbo"], dataset_size)
  return out


def no_step(loss_fn):
  """A (params, x, key, est_state) loss as the trainer's (..., step) loss."""
  return lambda params, x, key, est_state, step: loss_fn(params, x, key, est_state)


def init_fn(model, num_dims: int):
  return lambda key: model.init(key, jnp.zeros((1, num_dims), jnp.float32))
