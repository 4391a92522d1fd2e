"""The training library: jitted steps, variational EM schedule, guards, resume."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vae_jax import data, train
from vae_jax.errors import UserError


def _setup(config):
  config = {**train.DEFAULT_CONFIG, **config}
  ds = data.load_arrays(config["dataset"], binarize="static")
  model = train.build_model(config, ds.image_shape)
  loss_fn, est0 = train.make_loss_fn(model, config)
  tx = train.make_optimizer(config["learning_rate"])
  state = train.create_train_state(jax.random.key(0), model, tx, ds.num_dims, est0)
  return config, ds, model, loss_fn, tx, state


def test_train_step_under_jit_decreases_the_loss(tiny_config):
  config, ds, _, loss_fn, tx, state = _setup(tiny_config)
  step = jax.jit(functools.partial(train.train_step, loss_fn=loss_fn, tx=tx, e_steps=1,
                                   m_steps=1), donate_argnums=0)
  x = jnp.asarray(ds.train_x[:50])
  losses = []
  for _ in range(40):
    state, m = step(state, x)
    losses.append(float(m["loss"]))
  assert int(state.step) == 40
  assert losses[-1] < losses[0] - 5
  for k in ("loss", "elbo", "recon", "kl", "grad_norm", "param_norm", "grad_norm_encoder",
            "grad_norm_decoder"):
    assert np.isfinite(float(m[k]))
  assert float(m["loss"]) == pytest.approx(-float(m["elbo"]), rel=1e-5)


def test_variational_em_updates_one_half_at_a_time(tiny_config):
  config, ds, _, loss_fn, tx, state = _setup(tiny_config)
  step = jax.jit(functools.partial(train.train_step, loss_fn=loss_fn, tx=tx, e_steps=2,
                                   m_steps=3))
  x = jnp.asarray(ds.train_x[:50])
  changed = []
  for _ in range(10):
    new, _ = step(state, x)
    enc_moved = any(not np.array_equal(a, b) for a, b in zip(
        jax.tree_util.tree_leaves(state.params["params"]["encoder"]),
        jax.tree_util.tree_leaves(new.params["params"]["encoder"])))
    dec_moved = any(not np.array_equal(a, b) for a, b in zip(
        jax.tree_util.tree_leaves(state.params["params"]["decoder"]),
        jax.tree_util.tree_leaves(new.params["params"]["decoder"])))
    changed.append((enc_moved, dec_moved))
    state = new
  e, m = (True, False), (False, True)
  assert changed == [e, e, m, m, m] * 2


def test_joint_step_equals_adam_on_both_halves(tiny_config):
  """k = m = 1 is plain joint training: one Adam step on all parameters."""
  config, ds, model, loss_fn, tx, state = _setup(tiny_config)
  x = jnp.asarray(ds.train_x[:50])
  new, _ = jax.jit(functools.partial(train.train_step, loss_fn=loss_fn, tx=tx, e_steps=1,
                                     m_steps=1))(state, x)
  key = jax.random.fold_in(jax.random.wrap_key_data(state.key), 0)
  grads = jax.grad(lambda p: loss_fn(p, x, key, {})[0])(state.params)
  ref_tx = optax.adam(config["learning_rate"])
  updates, _ = ref_tx.update(grads, ref_tx.init(state.params), state.params)
  want = optax.apply_updates(state.params, updates)
  for a, b in zip(jax.tree_util.tree_leaves(new.params), jax.tree_util.tree_leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("key,value,match", [
    ("learning_rate", 0.0, "learning_rate"), ("learning_rate", -1e-3, "learning_rate"),
    ("learning_rate", float("nan"), "learning_rate"), ("batch_size", 0, "batch_size"),
    ("num_steps", -5, "num_steps"), ("latent_dim", 0, "latent_dim"),
    ("hidden_dims", "200,abc", "hidden_dims"), ("hidden_dims", "200,-1", "hidden_dims"),
    ("e_steps", 0, "e_steps")])
def test_bad_config_values_are_refused(tiny_config, tmp_path, key, value, match):
  with pytest.raises(UserError, match=match):
    train.train_and_evaluate({**tiny_config, key: value}, str(tmp_path))


def test_batch_larger_than_dataset_is_refused(tiny_config, tmp_path):
  with pytest.raises(UserError, match="batch_size"):
    train.train_and_evaluate({**tiny_config, "batch_size": 5000}, str(tmp_path))


def test_bernoulli_on_data_outside_unit_interval_is_refused(tiny_config, tmp_path):
  ds = data.load_arrays("digits")
  centred = data.Dataset("digits_centred", ds.train_x - 0.5, ds.train_y, ds.eval_x - 0.5,
                         ds.eval_y, ds.image_shape)
  with pytest.raises(UserError, match="bernoulli needs data in \\[0, 1\\]"):
    train.train_and_evaluate(tiny_config, str(tmp_path), dataset=centred)
  # The Gaussian likelihood is fine with it.
  s = train.train_and_evaluate({**tiny_config, "likelihood": "gaussian", "num_steps": 20,
                                "binarize": "none"}, str(tmp_path / "g"), dataset=centred)
  assert np.isfinite(s["eval_neg_elbo"])


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_config, tmp_path):
  workdir = str(tmp_path)
  train.train_and_evaluate({**tiny_config, "num_steps": 30}, workdir)
  model, good, _ = train.load_checkpoint(workdir)
  with pytest.raises(train.NonFiniteLossError, match="last good checkpoint \\(step 30\\)"):
    train.train_and_evaluate({**tiny_config, "num_steps": 200, "learning_rate": 1e30}, workdir)
  assert sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints"))
                if s.isdigit()) == [30]
  _, again, _ = train.load_checkpoint(workdir)
  for a, b in zip(jax.tree_util.tree_leaves(good), jax.tree_util.tree_leaves(again)):
    np.testing.assert_array_equal(a, b)


def test_conflicting_workdir_is_refused(tiny_config, tmp_path):
  train.train_and_evaluate({**tiny_config, "num_steps": 10}, str(tmp_path))
  with pytest.raises(UserError, match="latent_dim: saved 4, now 6"):
    train.train_and_evaluate({**tiny_config, "latent_dim": 6}, str(tmp_path))
  with pytest.raises(UserError, match="dataset"):
    train.train_and_evaluate({**tiny_config, "dataset": "mnist_5k"}, str(tmp_path))


def test_resume_and_extension_are_bit_exact(tiny_config, tmp_path):
  """60 steps, then extended to 120, equals 120 steps in one go."""
  a, b = str(tmp_path / "a"), str(tmp_path / "b")
  train.train_and_evaluate({**tiny_config, "num_steps": 60}, a)
  sa = train.train_and_evaluate({**tiny_config, "num_steps": 120}, a)
  sb = train.train_and_evaluate({**tiny_config, "num_steps": 120}, b)
  _, state_a, _ = train.load_checkpoint(a)
  _, state_b, _ = train.load_checkpoint(b)
  assert int(state_a.step) == int(state_b.step) == 120
  for x, y in zip(jax.tree_util.tree_leaves(state_a), jax.tree_util.tree_leaves(state_b)):
    np.testing.assert_array_equal(x, y)
  assert sa["eval_neg_elbo"] == sb["eval_neg_elbo"]
