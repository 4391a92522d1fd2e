"""Semi-amortized inference (Kim et al., 2018): vae_jax.inference.refinement and its use.

refine_lr = 0 is the plain VAE to round-off (unrolled and stopped); refinement
raises each held-out example's ELBO; the unrolled gradient is the finite
difference of the loss; the config's keys are checked once; vae.py:savae with
refine_steps = 0 trains exactly the default VAE; an older workdir resumes.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import get_config
from vae_jax.errors import UserError
from vae_jax.families.posteriors import REGISTRY as POSTERIORS
from vae_jax.inference import amortization
from vae_jax.inference import estimators
from vae_jax.inference import refinement as R
from vae_jax.models import networks
from vae_jax.models import vae as vae_model

D = 16


def _model(posterior="gaussian", **settings):
  if POSTERIORS.get(posterior).KEYS:
    settings.setdefault("flow_steps", 2)
  return networks.make_vae(image_shape=(4, 4, 1), latent_dim=3, hidden_dims=(8,),
                           posterior=posterior, **settings)


def _data(n=6, seed=0):
  return jnp.asarray(np.random.default_rng(seed).random((n, D)) < 0.4, jnp.float32)


def _loss_and_grad(model, params, x, refinement, estimator="reparam", num_samples=1):
  loss_fn, state = estimators.make_vae_loss(model, estimator, num_samples,
                                            refinement=refinement)
  fn = jax.jit(jax.value_and_grad(lambda p: loss_fn(p, x, jax.random.key(3), state)[0]))
  return fn(params)


@pytest.mark.parametrize("posterior,settings", [
    ("gaussian", {}), ("iaf", {}), ("coupling", {}), ("planar", {}),
    ("gaussian", {"top_latent_dim": 2, "top_hidden_dims": (4,)})],
    ids=["gaussian", "iaf", "coupling", "planar", "two_layers"])
@pytest.mark.parametrize("unrolled", [True, False], ids=["unrolled", "stopped"])
@pytest.mark.slow
def test_refine_lr_zero_is_the_plain_vae(posterior, settings, unrolled):
  model = _model(posterior, **settings)
  x = _data()
  params = model.init(jax.random.key(0), x)
  loss0, grad0 = _loss_and_grad(model, params, x, None)
  loss1, grad1 = _loss_and_grad(model, params, x, R.Refinement(3, 0.0, unrolled=unrolled))
  assert float(loss1) == float(loss0)
  for a, b in zip(jax.tree_util.tree_leaves(grad0), jax.tree_util.tree_leaves(grad1)):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("estimator,num_samples", [("score_loo", 2), ("dreg", 3)])
@pytest.mark.slow
def test_refine_lr_zero_is_the_plain_vae_for_other_estimators(estimator, num_samples):
  model = _model()
  x = _data()
  params = model.init(jax.random.key(0), x)
  loss0, grad0 = _loss_and_grad(model, params, x, None, estimator, num_samples)
  for unrolled in (True, False):
    loss1, grad1 = _loss_and_grad(model, params, x, R.Refinement(2, 0.0, unrolled=unrolled),
                                  estimator, num_samples)
    assert float(loss1) == float(loss0)
    for a, b in zip(jax.tree_util.tree_leaves(grad0), jax.tree_util.tree_leaves(grad1)):
      np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_refine_keeps_the_shared_arrays_and_moves_the_per_example_ones():
  model = _model("iaf")
  x = _data()
  params = model.init(jax.random.key(0), x)
  q = model.apply(params, x, method="encode")
  q_ref, trace = R.refine(params, x, jax.random.key(1), q, model=model,
                          refinement=R.Refinement(2, 0.1))
  assert trace.shape == (2, 6)
  assert q_ref.steps is q.steps                       # IAF's MADE weights: the encoder's
  assert not np.allclose(q_ref.base.loc, q.base.loc)
  assert q_ref.base.loc.shape == q.base.loc.shape


@pytest.mark.slow
def test_scan_and_python_loops_agree():
  model = _model()
  x = _data()
  params = model.init(jax.random.key(0), x)
  out = {}
  for loop in ("scan", "python"):
    out[loop] = _loss_and_grad(model, params, x, R.Refinement(3, 0.1, loop=loop))
  np.testing.assert_allclose(out["scan"][0], out["python"][0], rtol=1e-6)
  for a, b in zip(*(jax.tree_util.tree_leaves(out[k][1]) for k in out)):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_the_unrolled_gradient_matches_a_finite_difference():
  """d loss / d params along random directions, by jax.grad through the K steps and by a
  central difference (float32: a few 1e-3 relative); the stopped gradient differs."""
  model = networks.make_vae(image_shape=(2, 2, 1), latent_dim=2, hidden_dims=(4,),
                            activation="tanh")
  x = _data(3)[:, :4]
  params = model.init(jax.random.key(0), x)
  refinement = R.Refinement(3, 0.2)
  loss_fn, _ = estimators.make_vae_loss(model, "reparam", 4, refinement=refinement)
  stopped_fn, _ = estimators.make_vae_loss(model, "reparam", 4,
                                           refinement=R.Refinement(3, 0.2, unrolled=False))

  def loss(p, fn=loss_fn):
    return fn(p, x, jax.random.key(5), {})[0]

  grad = jax.jit(jax.grad(loss))(params)
  grad_stopped = jax.jit(jax.grad(lambda p: loss(p, stopped_fn)))(params)
  loss = jax.jit(loss)
  leaves, tree = jax.tree_util.tree_flatten(params)
  for part in ("encoder", "decoder"):
    for seed in range(3):
      keys = jax.random.split(jax.random.key(10 + seed), len(leaves))
      v = jax.tree_util.tree_unflatten(tree, [jax.random.normal(k, l.shape)
                                              for k, l in zip(keys, leaves)])
      v = {"params": {k: (t if k == part else jax.tree_util.tree_map(jnp.zeros_like, t))
                      for k, t in v["params"].items()}}
      eps = 1e-2
      shift = lambda s: jax.tree_util.tree_map(lambda p, d: p + s * eps * d, params, v)
      fd = (float(loss(shift(1.0))) - float(loss(shift(-1.0)))) / (2 * eps)
      dot = lambda g: sum(float(jnp.vdot(a, b)) for a, b in
                          zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(v)))
      assert dot(grad) == pytest.approx(fd, rel=5e-3, abs=5e-3), (part, seed)
      if part == "encoder":      # through the steps, not the encoder's own ELBO's gradient
        assert abs(dot(grad_stopped) - fd) > 10 * abs(dot(grad) - fd), seed


@pytest.fixture(scope="module")
def trained_tiny(tmp_path_factory):
  """A tiny VAE trained on the 8x8 digits (vae.py:tiny, in this process)."""
  from experiments import vae  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path_factory.mktemp("tiny"))
  _, task, result, ds = vae.train(get_config("vae", "tiny"), workdir)
  return task.model, jax.device_get(result.state.params), ds


@pytest.mark.slow
def test_refinement_raises_each_held_out_examples_elbo(trained_tiny):
  model, params, ds = trained_tiny
  x = jnp.asarray(ds.eval_x[:40])
  q = model.apply(params, x, method="encode")
  q_ref, trace = R.refine(params, x, jax.random.key(1), q, model=model,
                          refinement=R.Refinement(20, 0.02, num_samples=8))
  elbo = jax.jit(lambda q_: amortization.elbo_estimate(params, x, jax.random.key(2), q_,
                                                       model=model, num_samples=2000))
  before, after = np.asarray(elbo(q)), np.asarray(elbo(q_ref))
  assert np.all(after > before), np.sort(after - before)[:5]
  assert trace.shape == (20, 40) and trace[-1].mean() > trace[0].mean()


@pytest.mark.slow
def test_the_refined_q_is_a_better_proposal_in_the_final_eval(trained_tiny):
  model, params, ds = trained_tiny
  x = jnp.asarray(ds.eval_x[:64])
  mask = jnp.ones(64)
  out = jax.jit(lambda p, xb, k: vae_model.eval_step(
      p, xb, mask, k, model=model, iw_samples=50,
      refinement=R.Refinement(20, 0.02)))(params, x, jax.random.key(0))
  plain = jax.jit(lambda p, xb, k: vae_model.eval_step(p, xb, mask, k, model=model,
                                                       iw_samples=50))(params, x,
                                                                       jax.random.key(0))
  for k in ("neg_elbo", "neg_log_likelihood_iw", "recon", "kl", "count"):
    np.testing.assert_allclose(out[k], plain[k], rtol=1e-6)
  assert out["neg_elbo_refined"] < out["neg_elbo"]
  assert out["neg_log_likelihood_iw_refined"] < out["neg_log_likelihood_iw"] + 0.05 * 64
  # log_likelihood with the refinement: the same bound, batch by batch.
  ll = vae_model.log_likelihood(params, np.asarray(x), jax.random.key(1), model=model,
                                num_samples=20, batch_size=32,
                                refinement=R.Refinement(20, 0.02))
  assert ll.shape == (64,) and np.all(np.isfinite(ll))


# ----------------------------------------------------------------------------
# The config: validated once, in the model's validate.


def _config(**model):
  config = get_config("vae", "tiny")
  config.model.update(model)
  return config


@pytest.mark.parametrize("settings,message", [
    ({"refine_steps": -1}, "--config.model.refine_steps must be an integer >= 0"),
    ({"refine_lr": -0.1}, "--config.model.refine_lr must be a finite number >= 0"),
    ({"refine_lr": float("nan")}, "--config.model.refine_lr must be a finite number >= 0"),
    ({"refine_gradient": "through"},
     "--config.model.refine_gradient must be one of unrolled, stopped, got 'through'"),
])
def test_bad_refinement_settings_name_the_key(settings, message):
  with pytest.raises(UserError, match=message.replace("(", r"\(").replace(".", r"\.")):
    vae_model.validate(_config(**settings))


def test_a_family_that_is_not_refinable_is_refused_once(monkeypatch):
  gaussian = POSTERIORS.get("gaussian")
  monkeypatch.setattr(gaussian, "REFINABLE", False)
  vae_model.validate(_config())                          # refine_steps = 0: nothing to refuse
  with pytest.raises(UserError, match=r"--config.model.refine_steps=3 refines q's per-example "
                                      r"parameters .* \(posterior=gaussian: its module does "
                                      r"not declare REFINABLE = True\)"):
    vae_model.validate(_config(refine_steps=3))


@pytest.mark.parametrize("name", POSTERIORS.names())
@pytest.mark.slow
def test_every_posterior_declares_whether_it_is_refinable(name):
  part = POSTERIORS.get(name)
  assert isinstance(getattr(part, "REFINABLE", None), bool), name
  if part.REFINABLE:                # refining needs the pathwise gradient of the ELBO
    model = _model(name)
    params = model.init(jax.random.key(0), _data(2))
    q = model.apply(params, _data(2), method="encode")
    assert getattr(q, "reparametrized", True)      # as estimators.surrogate reads it


def test_the_savae_variant_sets_only_the_two_keys():
  default, savae = get_config("vae", "").to_dict(), get_config("vae", "savae").to_dict()
  changed = {(s, k) for s in default if isinstance(default[s], dict)
             for k in default[s] if default[s][k] != savae[s][k]}
  assert changed == {("model", "refine_steps"), ("model", "refine_lr")} or changed == {
      ("model", "refine_steps")}
  assert default["model"]["refine_steps"] == 0
  assert R.from_config(get_config("vae", "").model) is None
  assert R.from_config(get_config("vae", "savae").model).steps == savae["model"]["refine_steps"]


# ----------------------------------------------------------------------------
# Through the trainer.


@pytest.mark.slow
def test_savae_with_zero_steps_trains_exactly_the_default_vae(tmp_path):
  from experiments import vae  # pylint: disable=g-import-not-at-top
  summaries = {}
  for name, variants in (("default", "tiny"), ("savae0", "tiny,savae")):
    config = get_config("vae", variants)
    if name == "savae0":
      config.model.refine_steps = 0
    summaries[name] = vae.train(config, str(tmp_path / name))
  (s0, _, r0, _), (s1, _, r1, _) = summaries["default"], summaries["savae0"]
  for a, b in zip(jax.tree_util.tree_leaves(r0.state.params),
                  jax.tree_util.tree_leaves(r1.state.params)):
    np.testing.assert_array_equal(a, b)
  assert {k: v for k, v in s0.items() if k.startswith("eval_")} == {
      k: v for k, v in s1.items() if k.startswith("eval_")}


@pytest.mark.slow
def test_an_older_workdir_resumes_without_the_keys_and_refuses_to_refine(tmp_path):
  from tests.conftest import config_path, run_main  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / "run")
  tiny = [f"--config={config_path('vae', 'tiny')}", "--config.train.num_steps=30"]
  assert run_main(tiny + [f"--workdir={workdir}"]).returncode == 0
  path = os.path.join(workdir, "config.json")
  with open(path) as f:
    saved = json.load(f)
  for key in ("refine_steps", "refine_lr", "refine_gradient"):
    del saved["model"][key]
  with open(path, "w") as f:
    json.dump(saved, f)
  proc = run_main([f"--config={config_path('vae', 'tiny')}", f"--workdir={workdir}"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  proc = run_main([f"--config={config_path('vae', 'tiny,savae')}", "--config.train.num_steps=90",
                   f"--workdir={workdir}"])
  assert proc.returncode == 2 and "model.refine_steps" in proc.stderr, proc.stderr[-3000:]


@pytest.mark.slow
def test_evaluate_reports_the_iwae_bound_with_both_proposals(tmp_path):
  from tests.conftest import config_path, run_main  # pylint: disable=g-import-not-at-top
  run, out = str(tmp_path / "run"), str(tmp_path / "eval")
  proc = run_main([f"--config={config_path('vae', 'tiny,savae')}",
                   "--config.train.num_steps=20", f"--workdir={run}"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(run, "summary.json")) as f:
    summary = json.load(f)
  assert {"eval_neg_elbo_refined", "eval_neg_log_likelihood_iw_refined",
          "eval_bits_per_dim_refined", "eval_bits_per_dim_iw_refined"} <= set(summary)
  proc = run_main([f"--config={config_path('evaluate', 'tiny')}", f"--config.checkpoint={run}",
                   "--config.max_examples=40", f"--workdir={out}"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(out, "evaluation.json")) as f:
    result = json.load(f)
  assert result["refine_steps"] == 5
  for key in ("nll_iw", "nll_iw_refined", "elbo_refined", "iw_gain_refined",
              "bits_per_dim_iw_refined"):
    assert np.isfinite(result[key]), key
  assert result["iw_gain_refined"] == pytest.approx(result["nll_iw"] - result["nll_iw_refined"])
