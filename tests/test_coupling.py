"""The coupling posterior (``vae_jax.families.posteriors.coupling``): a flow with a density.

Unit tier, in float64 on a q built directly (random layers far from their
identity start): the density log q(z|x), from the chain inverted in closed form,
integrates to 1 on a 2-D grid and has the draws' mean; it equals the density
``sample_and_log_prob`` gives with each draw; the inverse maps a draw back to
its base draw; each log |det| equals ``slogdet`` of the autodiff Jacobian; q
starts as the encoder's Gaussian. Slow tier, through the runner on tiny data:
every estimator that needs a density trains it (with each prior), and a
coupling run resumes bit-exactly, evaluates and trains on two devices.
"""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from numpy.testing import assert_allclose
import pytest
from scipy import stats

from tests.conftest import config_path, failure_report, overrides, run_main
from vae_jax import tasks
from vae_jax.families import DiagNormal
from vae_jax.families.posteriors import coupling

BATCH = 3
CONTEXT = 5
HIDDEN = 8


@pytest.fixture
def x64():
  with jax.enable_x64(True):
    yield


def _q(latent_dim, steps, transform="spline", strength=0.3, seed=0):
  """A coupling q with batch [BATCH], random float64 layers (``strength`` scales how far
  from the identity their output layers are; at 1, some bins' slopes reach distrax's
  floor of 1e-4, spikes of density that no grid here resolves) and a random base and
  context."""
  rng = np.random.default_rng(seed)
  per_dim = coupling.PARAMS_PER_DIM[transform]
  layers = []
  for t in range(steps):
    layer = coupling.init_layer(jax.random.key(seed * 100 + t), latent_dim, HIDDEN, CONTEXT,
                                per_dim)
    layer = {k: np.asarray(v, np.float64) for k, v in layer.items()}
    layer["w_out"] = strength * rng.normal(size=layer["w_out"].shape) / np.sqrt(HIDDEN)
    layer["b_out"] = 0.5 * strength * rng.normal(size=layer["b_out"].shape)
    layers.append(jax.tree_util.tree_map(jnp.asarray, layer))
  base = DiagNormal(jnp.asarray(rng.normal(size=(BATCH, latent_dim))),
                    jnp.asarray(rng.uniform(-0.5, 0.3, size=(BATCH, latent_dim))))
  context = jnp.asarray(rng.normal(size=(BATCH, CONTEXT)))
  return coupling.posterior(base, layers, context, transform)


_log_prob = jax.jit(lambda q, z: q.log_prob(z))
_forward = jax.jit(lambda q, z: q.forward(z))
_inverse = jax.jit(lambda q, z: q.inverse(z))
_sample_and_log_prob = jax.jit(lambda q, key, n: q.sample_and_log_prob(key, (n,)),
                               static_argnums=2)
_base_sample = jax.jit(lambda q, key, n: q.base.sample(key, (n,)), static_argnums=2)


def test_the_family_declares_a_density_and_uses_the_shared_flow_key():
  assert coupling.HAS_DENSITY and not coupling.CLOSED_FORM_KL and not coupling.TWO_LAYERS
  assert coupling.KEYS == ("flow_steps",)


@pytest.mark.slow
def test_density_integrates_to_one_on_a_grid(x64):
  """L = 2, two layers (each coordinate moved once): log q on a grid covering the draws,
  from ``log_prob`` (the inverse in closed form), sums to 1 and has the draws' mean."""
  q = _q(2, 2)
  draws = np.asarray(_sample_and_log_prob(q, jax.random.key(0), 20_000)[0])  # [N, B, 2]
  lo, hi = draws.min(axis=(0, 1)) - 4.0, draws.max(axis=(0, 1)) + 4.0
  n = 400
  g0, g1 = np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n)
  cell = (g0[1] - g0[0]) * (g1[1] - g1[0])
  grid = np.stack(np.meshgrid(g0, g1, indexing="ij"), -1).reshape(-1, 1, 2)
  z = jnp.asarray(np.broadcast_to(grid, (n * n, BATCH, 2)))
  log_q = np.asarray(_log_prob(q, z))                                      # [G, B]
  dens = np.exp(log_q)
  assert_allclose(dens.sum(0) * cell, 1.0, atol=2e-4)
  grid_mean = np.einsum("gb,gl->bl", dens, grid[:, 0]) * cell
  draw_se = draws.std(0) / np.sqrt(draws.shape[0])
  assert np.all(np.abs(grid_mean - draws.mean(0)) < 5 * draw_se)
  # The layers do move the density: not the base Gaussian's.
  loc, scale = np.asarray(q.base.loc), np.exp(np.asarray(q.base.log_scale))
  base = stats.norm.logpdf(np.asarray(z), loc, scale).sum(-1)
  assert np.max(np.abs(log_q - base)[dens > 1e-3]) > 0.3


@pytest.mark.parametrize("transform", ["spline", "affine"])
def test_log_prob_of_a_draw_is_the_samplers(x64, transform):
  q = _q(4, 3, transform)
  z, log_q = _sample_and_log_prob(q, jax.random.key(1), 500)
  assert z.shape == (500, BATCH, 4) and log_q.shape == (500, BATCH)
  assert_allclose(_log_prob(q, z), log_q, rtol=1e-10, atol=1e-10)
  # and log q is the base's density at the inverse plus the inverse's log |det|.
  z0, log_det_inverse = _inverse(q, z)
  loc, scale = np.asarray(q.base.loc), np.exp(np.asarray(q.base.log_scale))
  want = stats.norm.logpdf(np.asarray(z0), loc, scale).sum(-1) + np.asarray(log_det_inverse)
  assert_allclose(log_q, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("transform", ["spline", "affine"])
def test_the_inverse_maps_a_draw_back_to_its_base_draw(x64, transform):
  q = _q(4, 3, transform)
  key = jax.random.key(2)
  z0 = _base_sample(q, key, 500)                       # the base draws under q's draws
  z, _ = _sample_and_log_prob(q, key, 500)
  forward, log_det = _forward(q, z0)
  np.testing.assert_array_equal(forward, z)
  back, log_det_inverse = _inverse(q, z)
  assert_allclose(back, z0, rtol=1e-9, atol=1e-9)
  assert_allclose(log_det_inverse, -log_det, rtol=1e-9, atol=1e-9)
  assert np.max(np.abs(np.asarray(z - z0))) > 0.3      # not a near-identity flow


@jax.jit
def _jacobians(q, z0):
  """Per-example Jacobians of the chain, [N, B, L, L], by jacfwd on one example at a time."""
  def one(zb, b):
    def f(v):
      return q.forward(zb.at[b].set(v))[0][b]
    return jax.jacfwd(f)(zb[b])
  per_row = lambda zb: jax.vmap(lambda b: one(zb, b))(jnp.arange(zb.shape[0]))
  return jax.vmap(per_row)(z0)


@pytest.mark.parametrize("transform", ["spline", "affine"])
def test_log_det_matches_the_autodiff_jacobian(x64, transform):
  """Three layers, L = 4: some points inside the splines' interval, some beyond
  ``BOUND`` (the identity tails; the affine layers' there would reach 1e9 and a
  Jacobian no slogdet resolves)."""
  q = _q(4, 3, transform)
  rng = np.random.default_rng(3)
  z0 = rng.normal(size=(6, BATCH, 4)) * 2.0
  if transform == "spline":                             # mostly beyond [-BOUND, BOUND]
    z0[:2] *= 4.0
  z0 = jnp.asarray(z0)
  sign, logabs = np.linalg.slogdet(np.asarray(_jacobians(q, z0)))
  np.testing.assert_array_equal(sign, 1.0)
  _, log_det = _forward(q, z0)
  assert_allclose(log_det, logabs, rtol=1e-9, atol=1e-10)
  assert np.max(np.abs(logabs)) > 0.3


@jax.jit
def _two_layers(q, z0):
  """(z1, z2): the first two layers applied one at a time (distrax's Chain applies its
  last element first)."""
  z1, _ = q.bijector().bijectors[-1].forward_and_log_det(z0)
  z2, _ = q.bijector().bijectors[-2].forward_and_log_det(z1)
  return z1, z2


def test_each_layer_keeps_its_half(x64):
  """Layer t leaves the coordinates of its mask (even at even t, odd at odd t) as they are."""
  q = _q(5, 2)
  z0 = jnp.asarray(np.random.default_rng(4).normal(size=(7, BATCH, 5)))
  z1, z2 = (np.asarray(z) for z in _two_layers(q, z0))
  z0 = np.asarray(z0)
  kept = np.asarray(coupling.mask(0, 5))
  np.testing.assert_array_equal(z1[..., kept], z0[..., kept])
  assert np.all(np.abs(z1 - z0)[..., ~kept] > 1e-6)
  np.testing.assert_array_equal(z2[..., ~kept], z1[..., ~kept])
  assert np.all(np.abs(z2 - z1)[..., kept] > 1e-6)


def test_q_starts_as_the_encoders_gaussian(x64):
  q = _q(3, 2, strength=0.0)                           # the output layers at their init, zero
  z, log_q = _sample_and_log_prob(q, jax.random.key(5), 100)
  assert_allclose(z, _base_sample(q, jax.random.key(5), 100), rtol=1e-12, atol=1e-12)
  assert_allclose(log_q, _log_prob(q.base, z), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------
# Through the runner (slow): the estimators that need a density, resume,
# evaluate, two devices.
# ----------------------------------------------------------------------------

SHORT = {"train.num_steps": 20, "model.flow_steps": 2}
# Each estimator that needs log q at a given z, with each prior in turn.
DENSITY_RUNS = [("score", ""), ("score_baseline", "mog"), ("score_loo", "vamp"),
                ("stl", ""), ("dreg", "mog"), ("vimco", "vamp")]


def _args(prior="", settings=None):
  variants = f"tiny,coupling,{prior}" if prior else "tiny,coupling"
  return [f"--config={config_path('vae', variants)}"] + overrides(dict(SHORT, **(settings or {})))


def _ok(args, **kwargs):
  proc = run_main(args, **kwargs)
  assert proc.returncode == 0, failure_report(proc)
  return proc


def _json(workdir, name="summary.json"):
  with open(os.path.join(workdir, name)) as f:
    return json.load(f)


@pytest.mark.slow
@pytest.mark.parametrize("estimator,prior", DENSITY_RUNS,
                         ids=[f"{e}-{p or 'standard'}" for e, p in DENSITY_RUNS])
def test_each_density_estimator_trains_the_coupling_posterior(tmp_path, estimator, prior):
  workdir = str(tmp_path / "run")
  _ok(_args(prior, {"objective.estimator": estimator, "objective.num_samples": 2})
      + [f"--workdir={workdir}"])
  summary = _json(workdir)
  assert summary["step"] == 20 and summary["estimator"] == estimator
  assert math.isfinite(summary["eval_neg_elbo"]), summary
  assert math.isfinite(summary["eval_neg_log_likelihood_iw"]), summary
  model = _json(workdir, "config.json")["model"]
  assert (model["posterior"], model["prior"]) == ("coupling", prior or "standard")
  # The estimator's gradient reached every layer: each left its identity start (zero output).
  _, state, _ = tasks.load_checkpoint(workdir)
  encoder = state.params["params"]["encoder"]
  for t in range(2):
    assert np.max(np.abs(np.asarray(encoder[f"coupling_{t}"]["w_out"]))) > 0, t
  assert np.max(np.abs(np.asarray(encoder["coupling_context"]["kernel"]))) > 0


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
  """vae.py:tiny,coupling,mog trained 40 steps in one go (shared below)."""
  workdir = str(tmp_path_factory.mktemp("clean"))
  _ok(_args("mog", {"train.num_steps": 40}) + [f"--workdir={workdir}"])
  return workdir


@pytest.mark.slow
def test_a_coupling_run_resumes_bit_exactly(tmp_path, clean_run):
  resumed = str(tmp_path / "resumed")
  _ok(_args("mog", {"train.num_steps": 20}) + [f"--workdir={resumed}"])
  proc = _ok(_args("mog", {"train.num_steps": 40}) + [f"--workdir={resumed}"])
  assert "Resumed from checkpoint at step 20" in proc.stderr
  _, a, _ = tasks.load_checkpoint(clean_run)
  _, b, _ = tasks.load_checkpoint(resumed)
  flat_a = jax.tree_util.tree_leaves_with_path(a.params)
  flat_b = jax.tree_util.tree_leaves_with_path(b.params)
  assert [p for p, _ in flat_a] == [p for p, _ in flat_b]
  for (path, x), (_, y) in zip(flat_a, flat_b):
    assert np.array_equal(np.asarray(x), np.asarray(y)), jax.tree_util.keystr(path)
  assert _json(clean_run)["eval_neg_elbo"] == _json(resumed)["eval_neg_elbo"]


@pytest.mark.slow
def test_a_coupling_run_evaluates(tmp_path, clean_run):
  out = str(tmp_path / "out")
  _ok([f"--config={config_path('evaluate', 'tiny')}", f"--config.checkpoint={clean_run}",
       "--config.max_examples=60", f"--workdir={out}"])
  result = _json(out, "evaluation.json")
  assert result["num_examples"] == 60
  assert math.isfinite(result["nll"]) and math.isfinite(result["elbo"]), result
  assert result["nll"] <= -result["elbo"] + 3 * result["nll_iw_stderr"] + 1, result
  assert result["kl_per_dim"] is None              # no closed form for a flow


@pytest.mark.slow
def test_a_coupling_run_over_two_devices_matches_one(tmp_path, clean_run):
  two = str(tmp_path / "two")
  _ok(_args("mog", {"train.num_steps": 40}) + [f"--workdir={two}"],
      env=dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2"))
  s1, s2 = _json(clean_run), _json(two)
  assert s1["device_count"] == 1 and s2["device_count"] == 2
  assert s2["eval_neg_elbo"] == pytest.approx(s1["eval_neg_elbo"], rel=1e-4)
