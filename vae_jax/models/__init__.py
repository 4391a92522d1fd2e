"""The trainable models, one module each, and the one registry that finds them.

================  ===============================  ==============================  =========
``model.name``    module                           network                         log p(x)
================  ===============================  ==============================  =========
``vae``           ``vae_jax.models.vae``           ``networks.make_vae``           IWAE-K
``discrete_vae``  ``vae_jax.models.discrete_vae``  ``discrete_vae.DiscreteVAE``    exact
``made``          ``vae_jax.models.made``          ``made.MADE``                   exact
================  ===============================  ==============================  =========

Every model module exports the same few names, which is all the runner, the
experiments, ``load_checkpoint`` and the evaluate experiment use:

* ``NAME``; ``NLL_METHOD`` (``"iwae"`` or ``"exact"``);
* ``validate(config)``: every rule about the model's config, checked once
  (``UserError`` naming the key);
* ``validate_data(ds, config)``: what the model refuses in the data;
* ``build(config, image_shape, num_train) -> trainer.Task`` for a validated
  config;
* ``log_likelihood(params, x, key, *, model, ...) -> [N]`` log p(x) per example.

Adding a model is one module with these names, one entry in ``MODELS``, one
config file in ``experiments/configs/`` and its tests (README, "Adding a model").

The Flax networks of the VAE (``networks``) are re-exported here, so
``vae_jax.models.make_vae`` and friends keep their names.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Sequence

from vae_jax.errors import UserError
from vae_jax.models.networks import (ACTIVATIONS, GAUSSIAN_SCALES, LIKELIHOODS, VAE,
                                     ConvDecoder, ConvEncoder, LikelihoodHead, MLP, MLPDecoder,
                                     MLPEncoder, activation_fn, make_vae)

# model.name -> its module, vae_jax.models.<name> (imported when a run asks for it).
MODELS: tuple[str, ...] = ("vae", "discrete_vae", "made")


def module(name: str) -> ModuleType:
  """The module of the model ``name`` (one of ``MODELS``)."""
  if name not in MODELS:
    raise UserError(f"config.model.name={name!r} is not a model; the trained models are "
                    f"{', '.join(MODELS)}.")
  return importlib.import_module(f"vae_jax.models.{name}")


def get(config) -> ModuleType:
  """The module of ``config.model.name``; UserError if the config trains no model."""
  name = config.model.name if "model" in config and "name" in config.model else None
  if name not in MODELS:
    raise UserError(f"this config trains no model (config.model.name={name!r}); the "
                    f"trained models are {', '.join(MODELS)}.")
  return module(name)


def build_task(config, image_shape: Sequence[int], num_train: int | None = None):
  """Validates ``config`` once and builds its model's ``trainer.Task``."""
  module = get(config)
  module.validate(config)
  return module.build(config, image_shape, num_train)
