"""Runs as data and tasks: the config's data, its model's task, a workdir reloaded.

What a notebook needs to rebuild a run: ``load_data(config)``,
``build_task(config, image_shape, num_train)`` (validates the model's config
once and builds its ``Task``, ``vae_jax.training.task``, through the registry
``vae_jax.models.REGISTRY``) and ``load_checkpoint(workdir)``. The model-specific
code lives in one module per model (``vae_jax.models.vae``, ``discrete_vae``,
``made``).
"""

from __future__ import annotations

import os
from typing import Sequence

import jax

from vae_jax.training import checkpointing
from vae_jax import data as data_lib
from vae_jax import keys
from vae_jax import models
from vae_jax.training import optim
from vae_jax.training import task as task_lib
from vae_jax.training import trainer
from vae_jax.training import workdir as wd
from vae_jax.errors import UserError, check_choice


def validate_data_config(config) -> None:
  check_choice(config.data.dataset, data_lib.DATASETS, "config.data.dataset")
  check_choice(config.data.binarize, data_lib.BINARIZATIONS, "config.data.binarize")


def load_data(config) -> data_lib.Dataset:
  """The run's data as ``config.data`` says; static binarization from the ``binarize`` stream."""
  validate_data_config(config)
  return data_lib.load_arrays(
      config.data.dataset, config.data.get("data_dir"), binarize=config.data.binarize,
      seed=keys.numpy_seed(keys.stream(keys.root(config.seed), "binarize")))


def build_task(config, image_shape: Sequence[int], num_train: int | None = None
               ) -> task_lib.Task:
  """The task of ``config.model.name`` for data of ``image_shape`` (validated once)."""
  return models.build_task(config, image_shape, num_train)


def read_run_config(workdir: str, defaults=None):
  """The saved ``config.json`` of a run as a ConfigDict; keys the run predates
  come from ``defaults`` (its config file's values; ``workdir.upgrade_config``)."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, wd.CONFIG_FILE)
  if not os.path.exists(path):
    raise UserError(f"{workdir} holds no {wd.CONFIG_FILE}; is it a vae_jax workdir?")
  return ml_collections.ConfigDict(wd.upgrade_config(wd.read_json(path), defaults))


def load_checkpoint(workdir: str, step: int | None = None, defaults=None):
  """Loads a trained model from its workdir (for notebooks, evaluation, tests).

  Args:
    workdir: a run's ``--workdir`` (VAE, discrete VAE or MADE).
    step: checkpoint step; the newest intact one when None.
    defaults: the config the run's config file gives today (a ConfigDict or
      dict): it fills the keys the run was written before.

  Returns:
    (model, state, config): the Flax module, the restored
    ``TrainState`` (``state.params`` are the model's variables) and
    the run's config (a ConfigDict).
  """
  config = read_run_config(workdir, defaults)
  spec_path = os.path.join(workdir, wd.DATA_SPEC_FILE)
  if not os.path.exists(spec_path):
    raise UserError(f"{workdir} holds no {wd.DATA_SPEC_FILE}; it is not a training run.")
  spec = wd.read_json(spec_path)
  task = build_task(config, tuple(spec["image_shape"]))
  tx = optim.make_optimizer(
      config.train, max(1, int(spec["num_train"]) // int(config.train.batch_size)))
  template = trainer.create_train_state(jax.random.key(0), jax.random.key(0), task, tx)
  manager = checkpointing.make_manager(workdir)
  try:
    if step is None:
      restored = checkpointing.restore_latest(manager, template)
      if restored is None:
        raise UserError(f"no checkpoint in {checkpointing.checkpoint_dir(workdir)}.")
      state = restored[0]
    else:
      state, _ = checkpointing.restore(manager, step, template)
  finally:
    checkpointing.close(manager)
  return task.model, state, config
