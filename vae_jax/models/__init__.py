"""The trainable models, one module each, found by name: ``model.name=<name>`` is
``vae_jax.models.<name>``.

================  ===============================  ==============================  =========
``model.name``    module                           network                         log p(x)
================  ===============================  ==============================  =========
``vae``           ``vae_jax.models.vae``           ``networks.make_vae``           IWAE-K
``discrete_vae``  ``vae_jax.models.discrete_vae``  ``discrete_vae.DiscreteVAE``    exact
``made``          ``vae_jax.models.made``          ``made.MADE``                   exact
================  ===============================  ==============================  =========

A model module defines the same few names, which is all the runner, the
experiments, ``load_checkpoint`` and the evaluate experiment use:

* ``NLL_METHOD`` (``"iwae"`` or ``"exact"``);
* ``validate(config)``: every rule about the model's config, checked once
  (``UserError`` naming the key);
* ``validate_data(ds, config)``: what the model refuses in the data;
* ``build(config, image_shape, num_train) -> Task`` (``vae_jax.training.task``)
  for a validated config;
* ``log_likelihood(params, x, key, *, model, ...) -> [N]`` log p(x) per example.

Adding a model is one module with these names (``build`` marks it as one), one
config file in ``experiments/configs/`` and its tests (docs/extending.md).
``networks`` (the VAE's Flax modules) and ``common`` are helpers, not models.
"""

from __future__ import annotations

from types import ModuleType
from typing import Sequence

from vae_jax.errors import UserError
from vae_jax.registry import Registry
from vae_jax.models.networks import (ACTIVATIONS, GAUSSIAN_SCALES, LIKELIHOODS, VAE,
                                     ConvDecoder, ConvEncoder, LikelihoodHead, MLP, MLPDecoder,
                                     MLPEncoder, activation_fn, make_vae)

REGISTRY = Registry(__name__, "model", "config.model.name", marker="build")


def get(config) -> ModuleType:
  """The module of ``config.model.name``; UserError if the config trains no model."""
  if "model" not in config or "name" not in config.model:
    raise UserError(f"this config trains no model (it has no config.model.name); the "
                    f"trained models are {', '.join(REGISTRY.names())}.")
  return REGISTRY.get(config.model.name)


def build_task(config, image_shape: Sequence[int], num_train: int | None = None):
  """Validates ``config`` once and builds its model's ``Task`` (``vae_jax.training.task``)."""
  module = get(config)
  module.validate(config)
  return module.build(config, image_shape, num_train)
