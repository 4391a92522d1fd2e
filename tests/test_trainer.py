"""The one trainer: jitted step, variational-EM phases, guards, resume, for every task."""

import functools
import os
import re
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.conftest import get_config
from vae_jax import data, tasks
from vae_jax.training import optim
from vae_jax.training import trainer
from vae_jax.errors import UserError
from vae_jax.models import vae as vae_model
from vae_jax.training import feed as feed_lib
from vae_jax import sharding
from vae_jax.training import step as step_lib
from vae_jax.training import workdir as wd


def _setup(config):
  ds = tasks.load_data(config)
  task = tasks.build_task(config, ds.image_shape, len(ds.train_x))
  tx = optim.make_optimizer(config.train)
  state = trainer.create_train_state(jax.random.key(0), jax.random.key(1), task, tx)
  return ds, task, tx, state


def _step_fn(task, tx, **jit_kw):
  return jax.jit(functools.partial(step_lib.train_step, task=task, tx=tx), **jit_kw)


def _moved(a, b):
  return any(not np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a),
                                                      jax.tree_util.tree_leaves(b)))


def _assert_trees_equal(a, b):
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_train_step_under_jit_decreases_the_loss(tiny_vae):
  ds, task, tx, state = _setup(tiny_vae)
  step = _step_fn(task, tx, donate_argnums=0)
  x = jnp.asarray(ds.train_x[:50])
  losses = []
  for _ in range(40):
    state, m = step(state, x)
    losses.append(float(m["loss"]))
  assert int(state.step) == 40
  assert losses[-1] < losses[0] - 5
  for k in ("loss", "elbo", "recon", "kl", "grad_norm", "param_norm", "grad_norm_encoder",
            "grad_norm_decoder", "elbo_full_data"):
    assert np.isfinite(float(m[k])), k
  # The reparametrized loss is the negative batch-mean ELBO, and the full-data
  # estimate is n times the batch mean (all rows equal weight here).
  assert float(m["loss"]) == pytest.approx(-float(m["elbo"]), rel=1e-5)
  assert float(m["elbo_full_data"]) == pytest.approx(len(ds.train_x) * float(m["elbo"]),
                                                     rel=1e-5)


@pytest.mark.slow
def test_variational_em_updates_one_half_at_a_time(tiny_vae):
  tiny_vae.objective.e_steps, tiny_vae.objective.m_steps = 2, 3
  ds, task, tx, state = _setup(tiny_vae)
  step = _step_fn(task, tx)
  x = jnp.asarray(ds.train_x[:50])
  changed = []
  for _ in range(10):
    new, _ = step(state, x)
    changed.append((_moved(state.params["params"]["encoder"], new.params["params"]["encoder"]),
                    _moved(state.params["params"]["decoder"], new.params["params"]["decoder"])))
    state = new
  e, m = (True, False), (False, True)
  assert changed == [e, e, m, m, m] * 2


@pytest.mark.slow
def test_joint_step_equals_adam_on_all_parameters(tiny_vae):
  """e = m = 1 is plain joint training: one Adam step on all parameters."""
  ds, task, tx, state = _setup(tiny_vae)
  x = jnp.asarray(ds.train_x[:50])
  new, _ = _step_fn(task, tx)(state, x)
  key = jax.random.fold_in(jax.random.wrap_key_data(state.key), 0)
  grads = jax.grad(lambda p: task.loss_fn(p, x, key, {}, state.step)[0])(state.params)
  ref_tx = optax.adam(tiny_vae.train.learning_rate)
  updates, _ = ref_tx.update(grads, ref_tx.init(state.params), state.params)
  want = optax.apply_updates(state.params, updates)
  for a, b in zip(jax.tree_util.tree_leaves(new.params), jax.tree_util.tree_leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_made_step_is_adam_on_the_exact_nll():
  config = get_config("autoregressive")
  ds, task, tx, state = _setup(config)
  x = jnp.asarray(ds.train_x[:50])
  new, m = _step_fn(task, tx)(state, x)
  # Independent reference: -mean log p(x) of MADE's logits written out with scipy's
  # Bernoulli log-pmf, and optax's own Adam.
  from scipy import stats  # pylint: disable=g-import-not-at-top
  logits = np.asarray(task.model.apply(state.params, x), np.float64)
  p = 1.0 / (1.0 + np.exp(-logits))
  nll = -stats.bernoulli.logpmf(np.asarray(x), p).sum(1).mean()
  assert float(m["nll"]) == pytest.approx(nll, rel=1e-5)
  assert float(m["bits_per_dim"]) == pytest.approx(nll / (64 * np.log(2)), rel=1e-5)
  grads = jax.grad(lambda prm: -jnp.mean(jnp.sum(
      x * jax.nn.log_sigmoid(task.model.apply(prm, x))
      + (1 - x) * jax.nn.log_sigmoid(-task.model.apply(prm, x)), -1)))(state.params)
  ref_tx = optax.adam(config.train.learning_rate)
  updates, _ = ref_tx.update(grads, ref_tx.init(state.params), state.params)
  want = optax.apply_updates(state.params, updates)
  for a, b in zip(jax.tree_util.tree_leaves(new.params), jax.tree_util.tree_leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("key,value,match", [
    ("train.learning_rate", 0.0, "config.train.learning_rate"),
    ("train.learning_rate", -1e-3, "config.train.learning_rate"),
    ("train.learning_rate", float("nan"), "config.train.learning_rate"),
    ("train.batch_size", 0, "config.train.batch_size"),
    ("train.num_steps", -5, "config.train.num_steps"),
    ("train.grad_stats_every", -1, "grad_stats_every"),
    ("eval.batch_size", 0, "config.eval.batch_size"),
])
def test_bad_train_settings_are_refused(tiny_vae, tmp_path, key, value, match):
  ds, task, _, _ = _setup(tiny_vae)
  section, name = key.split(".")
  tiny_vae[section][name] = value
  with pytest.raises(UserError, match=match):
    trainer.train(task, tiny_vae, ds, str(tmp_path))
  assert not os.path.exists(tmp_path / "config.json")



def test_gradient_statistics_need_two_draws(tiny_vae, tmp_path):
  ds, task, _, _ = _setup(tiny_vae)
  tiny_vae.train.update(grad_stats_every=10, grad_stats_draws=1)
  with pytest.raises(UserError, match=r"--config\.train\.grad_stats_draws must be an "
                                      r"integer >= 2 \(gradients per statistic"):
    trainer.train(task, tiny_vae, ds, str(tmp_path))
  tiny_vae.train.grad_stats_every = 0       # no statistics: the draws are not read
  trainer.validate_train_config(tiny_vae)

def test_batch_larger_than_dataset_is_refused(tiny_vae, tmp_path):
  tiny_vae.train.batch_size = 5000
  ds, task, _, _ = _setup(tiny_vae)
  with pytest.raises(UserError, match="batch_size"):
    trainer.train(task, tiny_vae, ds, str(tmp_path))


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_vae, tmp_path):
  workdir = str(tmp_path)
  tiny_vae.train.num_steps = 30
  ds, task, _, _ = _setup(tiny_vae)
  trainer.train(task, tiny_vae, ds, workdir)
  _, good, _ = tasks.load_checkpoint(workdir)
  tiny_vae.train.update(num_steps=200, learning_rate=1e30)
  with pytest.raises(trainer.NonFiniteLossError, match="last good checkpoint \\(step 30\\)"):
    trainer.train(task, tiny_vae, ds, workdir)
  assert sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints"))
                if s.isdigit()) == [30]
  _, again, _ = tasks.load_checkpoint(workdir)
  _assert_trees_equal(good, again)


@pytest.mark.slow
def test_conflicting_workdir_is_refused(tiny_vae, tmp_path):
  tiny_vae.train.num_steps = 10
  ds, task, _, _ = _setup(tiny_vae)
  trainer.train(task, tiny_vae, ds, str(tmp_path))
  changed = tiny_vae.copy_and_resolve_references()
  changed.model.latent_dim = 6
  with pytest.raises(UserError, match="model.latent_dim: saved 4, now 6"):
    trainer.train(tasks.build_task(changed, ds.image_shape), changed, ds, str(tmp_path))
  # Settings outside data/model/objective/seed/batch size may change on resume.
  tiny_vae.train.update(num_steps=20, log_every=5)
  assert int(trainer.train(task, tiny_vae, ds, str(tmp_path)).state.step) == 20


@pytest.mark.parametrize("name", ["vae", "discrete_vae", "autoregressive"])
@pytest.mark.slow
def test_resume_and_extension_are_bit_exact(tmp_path, name):
  """30 steps, then extended to 60, equals 60 steps in one go, for every task."""
  config = get_config(name)
  ds, task, _, _ = _setup(config)
  a, b = str(tmp_path / "a"), str(tmp_path / "b")
  config.train.num_steps = 30
  trainer.train(task, config, ds, a)
  config.train.num_steps = 60
  ra = trainer.train(task, config, ds, a)
  rb = trainer.train(task, config, ds, b)
  assert ra.resumed_from == 30 and rb.resumed_from is None
  _, state_a, _ = tasks.load_checkpoint(a)
  _, state_b, _ = tasks.load_checkpoint(b)
  assert int(state_a.step) == int(state_b.step) == 60
  _assert_trees_equal(state_a, state_b)
  assert ra.final_eval == rb.final_eval


def test_the_cpu_tree_reduction_rewrite_is_off_on_cpu_only():
  """Chosen by the backend, not by a config key."""
  assert step_lib.step_compiler_options("cpu") == {
      "xla_disable_hlo_passes": "tree_reduction_rewriter"}
  assert step_lib.step_compiler_options("gpu") == step_lib.step_compiler_options("tpu") == {}
  assert "xla_cpu_tree_reduction" not in get_config("vae").train


@pytest.mark.slow
@pytest.mark.skipif(jax.default_backend() != "cpu", reason="an XLA:CPU option")
def test_the_tree_reduction_option_changes_the_program_not_the_result(tiny_vae, tmp_path):
  """The option reaches the step's compiled program (its HLO differs with the
  rewrite on and off) and changes only the order of its sums: 60 steps of the tiny
  VAE either way agree to float32 round-off amplified by training. The run
  records the options it compiled with in summary.json."""
  ds, task, tx, state = _setup(tiny_vae)
  stream = data.BatchStream(ds.train_x, int(tiny_vae.train.batch_size), 0)
  feed = feed_lib.make_feed("device", stream, sharding.make_shardings(
      {"config.train.batch_size": int(tiny_vae.train.batch_size)}), 2)
  key = jax.random.key_data(jax.random.key(2))
  programs, results = [], []
  for on in (False, True):
    options = {} if on else step_lib.step_compiler_options()
    fn = step_lib.jit_train_steps(task, tx, feed.batch, False, options)
    programs.append(fn.lower(state, feed.args(0, 2), key, 2).compile().as_text())
    with mock.patch.object(step_lib, "step_compiler_options", lambda: options):
      results.append(trainer.train(task, tiny_vae, ds, str(tmp_path / str(on))))
      trainer.run_summary(str(tmp_path / str(on)), results[-1], ds, tiny_vae)
  assert wd.read_json(str(tmp_path / "False" / "summary.json"))[
      "step_compiler_options"] == {"xla_disable_hlo_passes": "tree_reduction_rewriter"}
  body = lambda text: re.sub(r", metadata=\{[^}]*\}", "", text[text.find("\n%"):])
  assert body(programs[0]) != body(programs[1])
  off, on = (jax.tree_util.tree_leaves(r.state.params) for r in results)
  # train() compiles with the setting: some of the tiny VAE's sums that reach its
  # parameters are ones the rewrite splits, so the two runs are not bit-identical
  # (if a new XLA stops splitting them, pick a config whose numbers it changes).
  assert any(not np.array_equal(a, b) for a, b in zip(off, on))
  for a, b in zip(off, on, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-2, atol=1e-4)
  assert results[0].final_eval["neg_elbo"] == pytest.approx(results[1].final_eval["neg_elbo"],
                                                            rel=1e-3)


@pytest.mark.slow
def test_zero_steps_evaluates_the_initialization(tiny_vae, tmp_path):
  tiny_vae.train.num_steps = 0
  ds, task, _, _ = _setup(tiny_vae)
  result = trainer.train(task, tiny_vae, ds, str(tmp_path))
  assert int(result.state.step) == 0 and np.isfinite(result.final_eval["neg_elbo"])
  init = task.init_params(jax.random.fold_in(jax.random.key(tiny_vae.seed), 0))  # "init" stream
  _assert_trees_equal(tasks.load_checkpoint(str(tmp_path))[1].params, init)


@pytest.mark.slow
def test_grad_stats_are_logged_per_group(tiny_vae, tmp_path):
  tiny_vae.train.update(grad_stats_every=30, grad_stats_draws=4)
  ds, task, _, _ = _setup(tiny_vae)
  trainer.train(task, tiny_vae, ds, str(tmp_path))
  from vae_jax.training import workdir as wd  # pylint: disable=g-import-not-at-top
  rows = [r for r in wd.read_metrics(str(tmp_path)) if r["split"] == "grad_stats"]
  assert [r["step"] for r in rows] == [30, 60]
  for r in rows:
    for half in ("encoder", "decoder"):
      assert r[f"grad_var_{half}"] > 0 and np.isfinite(r[f"grad_snr_{half}"])


def test_bernoulli_on_data_outside_unit_interval_is_refused(tiny_vae):
  ds = data.load_arrays("digits")
  centred = data.Dataset("digits_centred", ds.train_x - 0.5, ds.train_y, ds.eval_x - 0.5,
                         ds.eval_y, ds.image_shape)
  with pytest.raises(UserError, match="bernoulli needs data in \\[0, 1\\]"):
    vae_model.validate_data(centred, tiny_vae)
  tiny_vae.model.likelihood = "gaussian"
  vae_model.validate_data(centred, tiny_vae)   # the Gaussian likelihood is fine with it


def _encoder_kl_dims(task, params, x):
  """Per-dimension KL(q(z|x) || N(0, I)) written out in NumPy: [B, L]."""
  q = task.model.apply(params, x, method="encode")
  m, s = np.asarray(q.loc, np.float64), np.exp(np.asarray(q.log_scale, np.float64))
  return 0.5 * (m**2 + s**2 - 1.0) - np.log(s)


@pytest.mark.slow
def test_kl_warmup_weights_the_kl_in_the_loss_not_in_the_reported_elbo(tiny_vae):
  tiny_vae.objective.kl_warmup_steps = 4
  ds, task, tx, state = _setup(tiny_vae)
  x = jnp.asarray(ds.train_x[:50])
  step = _step_fn(task, tx)
  for t in range(6):
    new, m = step(state, x)
    beta = min(1.0, t / 4)
    # Reparam loss = -(recon - beta * KL): recon and KL from the same step's metrics.
    assert float(m["loss"]) == pytest.approx(-(float(m["recon"]) - beta * float(m["kl"])),
                                             rel=1e-5, abs=1e-4), t
    # The logged ELBO is the true one, whatever beta.
    assert float(m["elbo"]) == pytest.approx(float(m["recon"]) - float(m["kl"]), rel=1e-5)
    state = new


@pytest.mark.slow
def test_free_bits_value_and_gradient_match_the_formula(tiny_vae):
  """Loss = -mean recon + sum_l max(lambda, mean_b KL_bl) (Kingma et al. 2016); the
  gradient is that of the formula written with jnp.maximum."""
  ds, _, _, _ = _setup(tiny_vae)
  x = jnp.asarray(ds.train_x[:50])
  tiny_vae.objective.free_bits = 0.0
  _, plain, tx, state = _setup(tiny_vae)
  kl_dims = _encoder_kl_dims(plain, state.params, x).mean(0)          # [L]
  lam = float(np.median(kl_dims))          # some dimensions above it, some below
  assert (kl_dims > lam).any() and (kl_dims < lam).any()
  tiny_vae.objective.free_bits = lam
  _, task, _, _ = _setup(tiny_vae)
  key, step = jax.random.key(3), jnp.zeros((), jnp.int32)
  loss, (aux, _) = task.loss_fn(state.params, x, key, {}, step)
  want = -float(np.mean(aux["recon"])) + float(np.sum(np.maximum(lam, kl_dims)))
  assert float(loss) == pytest.approx(want, rel=1e-5)

  def reference(params):
    q = task.model.apply(params, x, method="encode")
    mean, log_scale = q.loc, q.log_scale
    kl_bd = 0.5 * (mean**2 + jnp.exp(2 * log_scale) - 1) - log_scale          # [B, L]
    neg_recon = plain.loss_fn(params, x, key, {}, step)[0] - jnp.mean(jnp.sum(kl_bd, -1))
    return neg_recon + jnp.sum(jnp.maximum(lam, jnp.mean(kl_bd, 0)))

  got = jax.grad(lambda p: task.loss_fn(p, x, key, {}, step)[0])(state.params)
  want_g = jax.grad(reference)(state.params)
  for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want_g)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("estimator,key,value,match", [
    ("iwae", "kl_warmup_steps", 10, "kl_warmup_steps needs an objective with a KL part"),
    ("stl", "free_bits", 0.5, "free_bits needs the analytic KL term"),
    ("reparam", "free_bits", -1.0, "free_bits must be a finite number >= 0"),
    ("reparam", "kl_warmup_steps", -2, "kl_warmup_steps must be an integer >= 0"),
])
def test_kl_options_refused_where_they_do_not_apply(tiny_vae, estimator, key, value, match):
  tiny_vae.objective.update({"estimator": estimator, "num_samples": 2, key: value})
  with pytest.raises(UserError, match=match):
    vae_model.validate(tiny_vae)


@pytest.mark.slow
def test_bfloat16_computes_in_bf16_and_trains_like_float32(tiny_vae, tmp_path):
  """Mixed precision: the step's matrix products run in bfloat16, parameters and
  optimizer state stay float32, and the tiny VAE ends within 1 nat of float32."""
  results = {}
  for name in ("float32", "bfloat16"):
    config = tiny_vae.copy_and_resolve_references()
    config.train.compute_dtype = name
    ds, task, tx, state = _setup(config)
    jaxpr = str(jax.make_jaxpr(functools.partial(step_lib.train_step, task=task, tx=tx))(
        state, jnp.asarray(ds.train_x[:50])))
    assert ("bf16" in jaxpr) == (name == "bfloat16")
    result = trainer.train(task, config, ds, str(tmp_path / name))
    leaves = jax.tree_util.tree_leaves((result.state.params, result.state.opt_state))
    assert all(l.dtype != jnp.bfloat16 for l in leaves)
    results[name] = result.final_eval["neg_elbo"]
  assert abs(results["bfloat16"] - results["float32"]) < 1.0, results
  assert results["bfloat16"] != results["float32"]


def test_bfloat16_is_refused_for_the_other_models():
  config = get_config("autoregressive")
  config.train.compute_dtype = "bfloat16"
  with pytest.raises(UserError, match="implemented for the VAE"):
    tasks.build_task(config, (8, 8, 1))
  config.train.compute_dtype = "float16"
  with pytest.raises(UserError, match="compute_dtype must be one of float32, bfloat16"):
    tasks.build_task(config, (8, 8, 1))
