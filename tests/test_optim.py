"""Adam and its learning-rate schedules, against the formulas written out."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vae_jax.training import optim
from vae_jax.errors import UserError


def _train(**kw):
  base = dict(learning_rate=1e-3, adam_eps=1e-8, lr_schedule="constant", lr_decay_rate=0.1,
              lr_decay_steps=100)
  base.update(kw)
  return ml_collections.ConfigDict(base)


def _rates(train_config, steps, steps_per_epoch=1):
  """The schedule's learning rate at each of ``steps``."""
  schedule = optim.learning_rate_schedule(train_config, steps_per_epoch)
  return np.array([float(schedule(t)) if callable(schedule) else schedule for t in steps])


def test_constant_and_exponential():
  np.testing.assert_allclose(_rates(_train(), [0, 10, 1000]), [1e-3] * 3)
  got = _rates(_train(lr_schedule="exponential"), [0, 50, 100, 250])
  np.testing.assert_allclose(got, 1e-3 * 0.1 ** (np.array([0, 50, 100, 250]) / 100), rtol=1e-6)


def test_burda_schedule_is_3_to_the_i_epochs_at_a_tenth_to_the_i_over_7():
  spe = 10                                        # steps per epoch
  steps, want = [], []
  start = 0
  for i in range(8):                              # stage i: 3^i epochs
    length = 3 ** i * spe
    for t in (start, start + length - 1):
      steps.append(t)
      want.append(1e-3 * 10 ** (-i / 7))
    start += length
  steps.append(start + 5000)                      # after 3,280 epochs: the last rate
  want.append(1e-3 * 10 ** (-7 / 7))
  assert start == 3280 * spe
  np.testing.assert_allclose(_rates(_train(lr_schedule="burda"), steps, spe), want, rtol=1e-5)


def test_adam_eps_reaches_the_update():
  """Adam's first update is -lr * g / (|g| + eps) (bias-corrected moments): with
  g = 1e-4 and eps = 1e-4 it is half the rate; with eps = 1e-8 nearly the rate."""
  params = {"w": jnp.zeros(())}
  grads = {"w": jnp.array(1e-4)}
  for eps, want in ((1e-4, 0.5e-3), (1e-8, 1e-3 * 1e-4 / (1e-4 + 1e-8))):
    tx = optim.make_optimizer(_train(adam_eps=eps))
    updates, _ = tx.update(grads, tx.init(params), params)
    assert float(updates["w"]) == pytest.approx(-want, rel=1e-5)


def test_schedule_drives_adam_steps():
  tx = optim.make_optimizer(_train(lr_schedule="exponential", lr_decay_steps=1,
                                   lr_decay_rate=0.5))
  params, state = {"w": jnp.zeros(())}, None
  state = tx.init(params)
  got = []
  for _ in range(3):
    updates, state = tx.update({"w": jnp.array(1.0)}, state, params)
    got.append(-float(updates["w"]))
  np.testing.assert_allclose(got, [1e-3, 0.5e-3, 0.25e-3], rtol=1e-4)


@pytest.mark.parametrize("kw,match", [
    (dict(lr_schedule="cosine"), "lr_schedule must be one of"),
    (dict(adam_eps=0.0), "config.train.adam_eps"),
    (dict(lr_schedule="exponential", lr_decay_steps=0), "config.train.lr_decay_steps"),
    (dict(lr_schedule="exponential", lr_decay_rate=-1.0), "config.train.lr_decay_rate"),
])
def test_bad_optimizer_settings(kw, match):
  with pytest.raises(UserError, match=match):
    optim.validate(_train(**kw))
