"""Optimizers: Adam with the learning-rate schedules of the literature.

``config.train`` keys: ``learning_rate``, ``adam_eps``, ``lr_schedule``
(constant | exponential | burda) and, for ``exponential``,
``lr_decay_rate`` and ``lr_decay_steps``.
"""

from __future__ import annotations

import optax

from vae_jax.errors import UserError, check_choice, check_positive

LR_SCHEDULES = ("constant", "exponential", "burda")


def learning_rate_schedule(train_config, steps_per_epoch: int):
  """The learning rate of ``train_config`` as a float or an optax schedule of the step.

  * ``constant``: ``learning_rate`` throughout;
  * ``exponential``: ``learning_rate * lr_decay_rate ** (step / lr_decay_steps)``;
  * ``burda``: Burda et al. (2015): 3^i epochs at ``learning_rate * 10^(-i/7)``
    for i = 0..7 (3,280 epochs in all; the last rate afterwards), with
    ``steps_per_epoch`` updates per epoch.
  """
  lr = float(train_config.learning_rate)
  kind = train_config.lr_schedule
  if kind == "constant":
    return lr
  if kind == "exponential":
    return optax.exponential_decay(lr, int(train_config.lr_decay_steps),
                                   float(train_config.lr_decay_rate))
  if kind == "burda":
    boundaries, epochs = {}, 0
    for i in range(1, 8):
      epochs += 3 ** (i - 1)
      boundaries[epochs * steps_per_epoch] = 10 ** (-1 / 7)   # a factor at each boundary
    return optax.piecewise_constant_schedule(lr, boundaries)
  raise UserError(f"--config.train.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, "
                  f"got {kind!r}.")


def make_optimizer(train_config, steps_per_epoch: int = 1) -> optax.GradientTransformation:
  """Adam with ``train.learning_rate`` (and its schedule) and ``train.adam_eps``."""
  return optax.adam(learning_rate_schedule(train_config, steps_per_epoch),
                    eps=float(train_config.adam_eps))


def validate(t) -> None:
  """Checks the optimizer keys of ``config.train``; UserError names the key."""
  check_positive(t.adam_eps, "config.train.adam_eps")
  kind = check_choice(t.lr_schedule, LR_SCHEDULES, "config.train.lr_schedule")
  if kind == "exponential":
    check_positive(t.lr_decay_steps, "config.train.lr_decay_steps", integer=True)
    check_positive(t.lr_decay_rate, "config.train.lr_decay_rate")
