"""Sections shared by the configs of the trained models, and variant parsing.

A config file's ``get_config(arg)`` takes variants as a comma-separated
``arg``: ``experiments/configs/vae.py:conv,tiny`` applies ``conv`` then
``tiny``. Every variant is a function that edits the ConfigDict in place.
"""

from __future__ import annotations

from typing import Callable

import ml_collections
from ml_collections import config_dict


class ConfigError(ValueError):
  """A config argument the user got wrong (an unknown variant); the runner prints
  its message alone as the ``error:`` line."""


def data_section(dataset: str = "mnist_5k", binarize: str = "dynamic") -> ml_collections.ConfigDict:
  """``data``: dataset name, its directory (TFDS or IDX; None for embedded data), binarization."""
  return ml_collections.ConfigDict(dict(
      dataset=dataset, data_dir=config_dict.placeholder(str), binarize=binarize))


def train_section(**overrides) -> ml_collections.ConfigDict:
  """``train``: optimization, logging, evaluation and checkpoint periods."""
  section = dict(batch_size=100, num_steps=5000, learning_rate=1e-3, adam_eps=1e-8,
                 compute_dtype="float32",
                 lr_schedule="constant", lr_decay_rate=0.1, lr_decay_steps=10000,
                 log_every=100, eval_every=1000, checkpoint_every=1000, grad_stats_every=0,
                 grad_stats_draws=16, steps_per_jit=50, feed="auto")
  section.update(overrides)
  return ml_collections.ConfigDict(section)


def distributed_section() -> ml_collections.ConfigDict:
  """``distributed``: several processes (hosts) via ``jax.distributed``; see
  ``vae_jax.training.distributed``. An empty coordinator_address runs one process."""
  return ml_collections.ConfigDict(dict(
      coordinator_address="",   # process 0's "host:port"; "" = one process
      num_processes=1,          # processes taking part (one per host)
      process_id=0,             # this process: 0 .. num_processes - 1
      timeout_s=120))           # wait this long for the coordinator and the others


def tiny_training(config: ml_collections.ConfigDict) -> None:
  """Seconds on the 8x8 digits (scikit-learn, offline): for tests and smoke runs.

  A dataset other than the default (set by an earlier variant) is kept.
  """
  if config.data.dataset == "mnist_5k":
    config.data.dataset = "digits"
  if config.data.binarize == "dynamic":
    config.data.binarize = "static"
  config.train.update(batch_size=50, num_steps=60, learning_rate=3e-3, log_every=10,
                      eval_every=30, checkpoint_every=30, grad_stats_draws=4)
  config.eval.batch_size = 128
  if "iw_samples" in config.eval:
    config.eval.iw_samples = 8


def apply_variants(config: ml_collections.ConfigDict, arg: str | None,
                   variants: dict[str, Callable[[ml_collections.ConfigDict], None]]
                   ) -> ml_collections.ConfigDict:
  """Applies the comma-separated variants of ``arg`` in order.

  Raises:
    ConfigError: an unknown variant (the runner prints it as one error line).
  """
  for name in [v.strip() for v in (arg or "").split(",") if v.strip()]:
    if name not in variants:
      raise ConfigError(f"unknown config variant {name!r}; this config has: "
                       f"{', '.join(sorted(variants)) or 'none'}.")
    variants[name](config)
  return config
