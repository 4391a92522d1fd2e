"""Tasks built from configs, and reloading a run from its workdir."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import get_config
from vae_jax import models, tasks
from vae_jax.models import made as autoregressive
from vae_jax.models import discrete_vae
from vae_jax.models import common
from vae_jax.models import vae as vae_model
from vae_jax.training import trainer
from vae_jax.errors import UserError


@pytest.mark.parametrize("value,want", [((200, 200), (200, 200)), ([7], (7,)), ((), ()),
                                        ("200,100", (200, 100)), ("", ()), (5, (5,))])
def test_hidden_dims_forms(value, want):
  assert common.hidden_dims(value) == want


@pytest.mark.parametrize("value", [(0,), (10, -1), "10,x", ("a",)])
def test_bad_hidden_dims_name_the_key(value):
  with pytest.raises(UserError, match="--config.model.hidden_dims must be a tuple"):
    common.hidden_dims(value)


@pytest.mark.parametrize("name,model_type", [("vae", models.VAE),
                                             ("discrete_vae", discrete_vae.DiscreteVAE),
                                             ("autoregressive", autoregressive.MADE)])
@pytest.mark.slow
def test_load_checkpoint_rebuilds_every_trained_model(tmp_path, name, model_type):
  config = get_config(name)
  config.train.num_steps = 20
  ds = tasks.load_data(config)
  task = tasks.build_task(config, ds.image_shape, len(ds.train_x))
  result = trainer.train(task, config, ds, str(tmp_path))
  model, state, saved = tasks.load_checkpoint(str(tmp_path))
  assert isinstance(model, model_type) and saved.experiment == name
  assert int(state.step) == 20
  for a, b in zip(jax.tree_util.tree_leaves(state.params),
                  jax.tree_util.tree_leaves(result.state.params), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # The rebuilt model computes what the trained one did.
  x = jnp.asarray(ds.eval_x[:8])
  np.testing.assert_array_equal(
      np.asarray(jax.tree_util.tree_leaves(model.apply(state.params, x))[0]),
      np.asarray(jax.tree_util.tree_leaves(task.model.apply(result.state.params, x))[0]))


def test_load_checkpoint_of_a_directory_that_is_not_a_run(tmp_path):
  with pytest.raises(UserError, match="holds no config.json"):
    tasks.load_checkpoint(str(tmp_path))


def test_bad_model_and_objective_settings_name_their_keys():
  for section, key, value, match in [
      ("model", "kind", "transformer", "--config.model.kind must be one of mlp, conv"),
      ("model", "likelihood", "poisson", "--config.model.likelihood"),
      ("model", "activation", "swish2", "--config.model.activation"),
      ("model", "latent_dim", 0, "--config.model.latent_dim"),
      ("objective", "estimator", "reinforce", "--config.objective.estimator"),
      ("objective", "e_steps", 0, "--config.objective.e_steps"),
      ("objective", "baseline_decay", 1.0, "--config.objective.baseline_decay")]:
    config = get_config("vae")
    config[section][key] = value
    with pytest.raises(UserError, match=match):
      vae_model.validate(config)
  config = get_config("vae")
  config.objective.update(estimator="vimco", num_samples=1)
  with pytest.raises(UserError, match="num_samples >= 2"):
    vae_model.validate(config)
  config = get_config("discrete_vae")
  config.objective.estimator = "reparam"
  with pytest.raises(UserError, match="reparametrization trick"):
    tasks.build_task(config, (8, 8, 1))


def test_conv_model_needs_sides_divisible_by_four():
  config = get_config("vae", "conv,tiny")
  ds = tasks.load_data(config)
  vae_model.validate_data(ds, config)          # 8x8 digits: fine
  bad = ds.__class__("odd", ds.train_x[:, :63], ds.train_y, ds.eval_x[:, :63], ds.eval_y,
                     (7, 9, 1))
  with pytest.raises(UserError, match="divisible by 4"):
    vae_model.validate_data(bad, config)


def test_activation_reaches_the_network():
  config = get_config("vae")
  outs = {}
  for act in ("relu", "tanh"):
    config.model.activation = act
    model = vae_model.build_network(config.model, (8, 8, 1))
    params = model.init(jax.random.key(0), jnp.zeros((1, 64)))
    outs[act] = model.apply(params, jnp.ones((1, 64)), method="encode").loc
  assert not np.allclose(outs["relu"], outs["tanh"])
