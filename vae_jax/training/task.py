"""What a model hands the training loop: a ``Task``, and the ``TrainState`` it trains.

A model module builds its ``Task`` (``vae_jax.models``: ``build(config,
image_shape, num_train)``) from its own parts; the loop
(``vae_jax.training.trainer``, ``vae_jax.training.step``) runs any ``Task``.
This module imports nothing from the loop, so the models depend on it and not
on the trainer.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import flax
import jax


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs (a pytree of arrays).

  Attributes:
    step: [] int32, number of updates done.
    params: model variables {"params": {...}}.
    opt_state: optimizer state; a dict {group: state} when the task has
      parameter groups (the VAE's encoder phi and decoder theta).
    est_state: estimator state (e.g. a running-mean baseline); {} if none.
    key: [2] uint32 key data of the ``noise`` stream; step t uses
      ``fold_in(key, t)``.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  est_state: Any
  key: jax.Array


@dataclasses.dataclass(frozen=True)
class Task:
  """The model-specific parts of training (built by each model's ``build``).

  Attributes:
    name: the model's name in logs.
    model: the Flax module.
    init_params: key -> model variables.
    loss_fn: (params, x [B, D], key, est_state, step) -> (loss, (aux,
      est_state)); aux holds per-example [B] terms. Its gradient is the
      training gradient; ``step`` (the number of updates so far) drives
      schedules such as KL warm-up.
    est_state: the estimator's initial state.
    train_metrics: aux -> {name: scalar} logged every step (device side).
    eval_step: (params, x [B, D], mask [B], key) -> {name: sum, "count"}.
    final_eval_step: the same for the final evaluation (e.g. with an
      importance-weighted bound); ``eval_step`` when None.
    bits_per_dim: {nats key: bits key} of the eval results.
    headline: train metrics shown in the progress line.
    eval_headline: the eval result shown in the log.
    groups: parameter groups under "params" with their own optimizer state;
      None: one optimizer state for all.
    phases: steps per group and cycle (variational EM: encoder steps, then
      decoder steps); groups past the last phase move with it (a learned
      prior is part of theta: it follows the decoder); None: every group at
      every step.
    eval_at_start: also evaluate the untrained model (step 0).
  """
  name: str
  model: Any
  init_params: Callable[[jax.Array], Any]
  loss_fn: Callable
  est_state: Any
  train_metrics: Callable[[dict], dict]
  eval_step: Callable
  final_eval_step: Callable | None = None
  bits_per_dim: Mapping[str, str] = dataclasses.field(default_factory=dict)
  headline: tuple[str, ...] = ("loss",)
  eval_headline: str = "neg_elbo"
  groups: tuple[str, ...] | None = None
  phases: tuple[int, ...] | None = None
  eval_at_start: bool = False
