"""errors.check_positive, the one check of a count, size, rate or scale.

Each case is one value a user could pass and the one line they would read:
the name as they wrote it (a config key as its flag), the rule, the value.
"""

import numpy as np
import pytest

from vae_jax.errors import UserError, check_positive


@pytest.mark.parametrize("value,kwargs", [
    (3, dict(integer=True)), (np.int64(1), dict(integer=True)), (0.5, {}),
    (np.array([0.1, 2.0]), {}), (0, dict(integer=True, minimum=0)),
    (0.0, dict(minimum=0)), (2, dict(integer=True, minimum=2))])
def test_accepts_and_returns_the_value(value, kwargs):
  assert check_positive(value, "n", **kwargs) is value


@pytest.mark.parametrize("value,kwargs,message", [
    (0, dict(integer=True), "--config.train.batch_size must be a positive integer, got 0."),
    (-3, dict(integer=True), "--config.train.batch_size must be a positive integer, got -3."),
    (2.0, dict(integer=True), "--config.train.batch_size must be a positive integer, got 2.0."),
    (True, dict(integer=True), "--config.train.batch_size must be a positive integer, got True."),
    (None, dict(integer=True), "--config.train.batch_size must be a positive integer, got None."),
    (1, dict(integer=True, minimum=2),
     "--config.train.batch_size must be an integer >= 2, got 1."),
    (0.0, {}, "--config.train.batch_size must be a positive finite number, got 0.0."),
    (float("inf"), {}, "--config.train.batch_size must be a positive finite number, got inf."),
    ("x", {}, "--config.train.batch_size must be a positive finite number, got 'x'."),
    (-1e-3, dict(minimum=0), "--config.train.batch_size must be a finite number >= 0, "
                             "got -0.001."),
    (np.array([1.0, 0.0]), {},
     "--config.train.batch_size must be a positive finite number, got [1.0, 0.0]."),
])
def test_a_config_key_is_named_as_its_flag(value, kwargs, message):
  with pytest.raises(UserError) as err:
    check_positive(value, "config.train.batch_size", **kwargs)
  assert str(err.value) == message


def test_an_argument_is_named_as_it_is_with_its_meaning():
  with pytest.raises(UserError) as err:
    check_positive(0, "num_samples", integer=True, meaning="K, the draws per example")
  assert str(err.value) == ("num_samples must be a positive integer (K, the draws per "
                            "example), got 0.")
