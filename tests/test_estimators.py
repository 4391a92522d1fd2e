"""Gradient estimators: the table's rules, unbiasedness against analytic gradients,
variance, VAE wiring.

Statistical checks use the measured standard error: |mean of R draws - exact|
<= 5 SE (+ a float32 floor). A biased estimator fails them (shown below with
a sample-dependent "baseline", which zeroes the score term). In the VAE, every
estimator's loss value, decoder gradient and encoder gradient are checked draw
by draw against a NumPy/SciPy recomputation of a linear Bernoulli VAE from the
same eps. Each rule of the table is checked through ``validate``: one
UserError per bad combination, the posterior's lack of a density first.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

import ml_collections

from tests.conftest import code_lines_matching, get_config
from vae_jax import models
from vae_jax.errors import UserError
from vae_jax.families import DiagNormal
from vae_jax.families.discrete import Bernoulli, Categorical
from vae_jax.inference import estimators as E
from vae_jax.inference import gradients as G
from vae_jax.inference import objectives
from vae_jax.models import discrete_vae
from vae_jax.models import vae as vae_model

R = 20000


def _check_unbiased(stats, exact, num_draws, floor=1e-3):
  """|mean - exact| <= 5 standard errors (+ floor), leaf by leaf."""
  for m, v, e in zip(jax.tree_util.tree_leaves(stats["mean"]),
                     jax.tree_util.tree_leaves(stats["variance"]),
                     jax.tree_util.tree_leaves(exact)):
    se = np.sqrt(np.asarray(v) / num_draws)
    err = np.abs(np.asarray(m) - np.asarray(e))
    assert np.all(err <= 5 * se + floor), (np.asarray(m), np.asarray(e), se)


# ----------------------------------------------------------------------------
# Gaussian q, quadratic f: E f = sum (mu - c)^2 + sigma^2.
# ----------------------------------------------------------------------------

MU = jnp.array([0.3, -0.5, 1.5])
LOG_SCALE = jnp.array([-0.2, 0.1, -0.7])
Q = DiagNormal(MU, LOG_SCALE)
C = 1.0
GENERIC = [n for n, e in E.ESTIMATORS.items() if e.expectation is not None]


def f_quadratic(z):
  return jnp.sum((z - C) ** 2, -1)


def exact_quadratic_grad():
  return (2 * (MU - C), 2 * jnp.exp(2 * LOG_SCALE))


@pytest.mark.parametrize("estimator,baseline", [("reparam", 0.0), ("score", 0.0),
                                                ("score_baseline", 3.0),
                                                ("score_loo", 0.0)])
def test_gaussian_estimators_are_unbiased(estimator, baseline):
  # The gradient comes back as a q of gradients: (loc, log_scale) in its leaves' order.
  grad_fn = jax.jit(lambda k: G.grad_estimate(estimator, Q, f_quadratic, k, 4, baseline)[1])
  stats = G.gradient_statistics(grad_fn, jax.random.key(0), R)
  _check_unbiased(stats, exact_quadratic_grad(), R)


def test_the_check_detects_a_biased_estimator():
  # A "baseline" equal to the sample's own f cancels the learning signal: biased (zero).
  def biased(k):
    def sur(q):
      z = jax.lax.stop_gradient(q.sample(k, (4,)))
      fz, log_q = f_quadratic(z), q.log_prob(z)
      return jnp.mean(fz + (fz - fz) * (log_q - jax.lax.stop_gradient(log_q)))
    return jax.grad(sur)(Q)
  stats = G.gradient_statistics(jax.jit(biased), jax.random.key(0), 2000)
  with pytest.raises(AssertionError):
    _check_unbiased(stats, exact_quadratic_grad(), 2000)


@pytest.mark.slow
def test_surrogate_value_is_the_monte_carlo_estimate():
  for est in GENERIC:
    value, _ = G.grad_estimate(est, Q, f_quadratic, jax.random.key(1), 20000, 1.0)
    exact = float(jnp.sum((MU - C) ** 2 + jnp.exp(2 * LOG_SCALE)))
    assert abs(float(value) - exact) < 0.1, (est, value, exact)


def test_variance_ordering_on_the_quadratic():
  def total_var(est, b=0.0):
    fn = jax.jit(lambda k: G.grad_estimate(est, Q, f_quadratic, k, 8, b)[1])
    return float(G.gradient_statistics(fn, jax.random.key(2), 4000)["total_variance"])
  reparam, score, loo = total_var("reparam"), total_var("score"), total_var("score_loo")
  good_baseline = total_var("score_baseline", float(jnp.sum((MU - C) ** 2
                                                            + jnp.exp(2 * LOG_SCALE))))
  assert reparam < loo < score
  assert good_baseline < score / 2


# ----------------------------------------------------------------------------
# Discrete q with a tabulated f: the score function is the only option.
# ----------------------------------------------------------------------------

LOGITS = jnp.array([0.5, -1.0, 0.2, 1.1])
TABLE = jnp.array([3.0, -2.0, 0.5, 1.0])


@pytest.mark.parametrize("estimator,baseline", [("score", 0.0), ("score_baseline", 1.0),
                                                ("score_loo", 0.0)])
def test_categorical_score_estimators_are_unbiased(estimator, baseline):
  p = jax.nn.softmax(LOGITS)
  exact = p * (TABLE - jnp.dot(p, TABLE))          # d/dlogits sum_k p_k f_k
  np.testing.assert_allclose(exact, jax.grad(lambda l: jnp.dot(jax.nn.softmax(l), TABLE))(LOGITS),
                             rtol=1e-6)
  grad_fn = jax.jit(lambda k: G.grad_estimate(estimator, Categorical(LOGITS), lambda z: TABLE[z],
                                              k, 4, baseline)[1].logits)
  stats = G.gradient_statistics(grad_fn, jax.random.key(3), R)
  _check_unbiased(stats, exact, R)


def test_bernoulli_score_is_unbiased():
  logits = jnp.array([0.3, -0.8, 1.2])
  w = jnp.array([1.0, -2.0, 0.5])
  f = lambda z: jnp.sum(z * w, -1) + jnp.prod(z, -1) * 3.0
  # E f = sum p_i w_i + 3 prod p_i.
  exact = jax.grad(lambda l: jnp.sum(jax.nn.sigmoid(l) * w)
                   + 3.0 * jnp.prod(jax.nn.sigmoid(l)))(logits)
  grad_fn = jax.jit(lambda k: G.grad_estimate("score_loo", Bernoulli(logits), f, k, 4)[1].logits)
  stats = G.gradient_statistics(grad_fn, jax.random.key(4), R)
  _check_unbiased(stats, exact, R)


def test_generic_estimators_refuse_what_q_lacks():
  with pytest.raises(UserError, match="reparametriz"):
    G.surrogate("reparam", Categorical(LOGITS), lambda z: TABLE[z], jax.random.key(0), 4)
  with pytest.raises(UserError, match="num_samples >= 2"):
    G.surrogate("score_loo", Q, f_quadratic, jax.random.key(0), 1)
  with pytest.raises(UserError, match="not an estimator of grad E_q"):
    G.surrogate("dreg", Q, f_quadratic, jax.random.key(0), 4)


@pytest.mark.slow
def test_discrete_distributions_draw_as_the_distributions_module():
  """Bernoulli and Categorical are vae_jax.distributions' draws and densities."""
  from vae_jax import distributions as D  # pylint: disable=g-import-not-at-top
  key, logits = jax.random.key(5), jnp.array([[0.3, -2.0, 1.0], [4.0, 0.0, -1.0]])
  z, log_q = Bernoulli(logits).sample_and_log_prob(key, (7,))
  np.testing.assert_array_equal(z, D.bernoulli_sample(key, logits, (7,)))
  np.testing.assert_array_equal(log_q, D.bernoulli_log_prob(z, logits))
  np.testing.assert_allclose(log_q, stats.bernoulli.logpmf(z, special.expit(logits)).sum(-1),
                             rtol=1e-5)
  k, log_p = Categorical(logits).sample_and_log_prob(key, (7,))
  np.testing.assert_array_equal(k, D.categorical_sample(key, logits, (7,)))
  assert k.shape == log_p.shape == (7, 2)
  np.testing.assert_allclose(log_p, np.take_along_axis(
      np.broadcast_to(special.log_softmax(logits, -1), (7, 2, 3)), np.asarray(k)[..., None],
      -1)[..., 0], rtol=1e-5)
  assert Bernoulli(logits).has_density and not Bernoulli(logits).reparametrized


def test_gradient_statistics_on_a_known_distribution():
  scale, shift = jnp.array([1.0, 2.0, 3.0]), jnp.array([0.5, 0.0, -1.0])
  stats = G.gradient_statistics(lambda k: {"g": jax.random.normal(k, (3,)) * scale + shift},
                                jax.random.key(5), 40000)
  np.testing.assert_allclose(stats["variance"]["g"], scale**2, rtol=0.03)
  np.testing.assert_allclose(stats["mean"]["g"], shift, atol=0.05)
  np.testing.assert_allclose(float(stats["total_variance"]), 14.0, rtol=0.03)
  np.testing.assert_allclose(stats["snr"]["g"], np.abs(shift) / scale, atol=0.03)
  with pytest.raises(UserError):
    G.gradient_statistics(lambda k: jnp.zeros(2), jax.random.key(0), 1)


# ----------------------------------------------------------------------------
# In the VAE.
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_vae():
  model = models.make_vae(image_shape=(8, 8, 1), latent_dim=3, hidden_dims=(16,))
  x = (jax.random.uniform(jax.random.key(1), (6, 64)) > 0.5).astype(jnp.float32)
  params = model.init(jax.random.key(0), x)
  return model, params, x


def _grads(model, params, x, estimator, num_samples, key, state=None):
  loss_fn, state0 = E.make_vae_loss(model, estimator, num_samples)
  return jax.grad(lambda p: loss_fn(p, x, key, state if state is not None else state0)[0])(params)


@pytest.mark.slow
def test_reparam_gradient_equals_grad_of_the_elbo(tiny_vae):
  model, params, x = tiny_vae
  key = jax.random.key(7)
  ours = _grads(model, params, x, "reparam", 4, key)
  ref = jax.grad(lambda p: objectives.elbo(p, x, key, model=model, num_samples=4)[0])(params)
  for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(ref)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------
# A linear Bernoulli VAE recomputed in NumPy/SciPy from the same eps draws:
# encoder mean = x Km + bm, log_scale = x Ks + bs; decoder logits = z W + c.
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def linear_vae():
  model = models.make_vae(image_shape=(4, 4, 1), latent_dim=3, hidden_dims=())
  x = (jax.random.uniform(jax.random.key(21), (5, 16)) > 0.5).astype(jnp.float32)
  params = model.init(jax.random.key(20), x)
  return model, params, x


def _numpy_vae(params, x, key, num_samples):
  """Everything the estimators need, in float64 NumPy/SciPy, from the same eps.

  Returns a dict with x [B, D], mean/scale [B, L], eps/z [S, B, L],
  dlogits = x - sigmoid(logits) [S, B, D], log_lik/log_prior/log_q [S, B],
  kl [B] (analytic), dec_w [L, D].
  """
  p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)["params"]
  enc, dec = p["encoder"], p["decoder"]["mlp"]["dense_0"]
  x = np.asarray(x, np.float64)
  mean = x @ enc["mean"]["kernel"] + enc["mean"]["bias"]
  scale = np.exp(x @ enc["log_scale"]["kernel"] + enc["log_scale"]["bias"])
  # The documented draw of distributions.normal_sample: z = mean + scale * eps.
  eps = np.asarray(jax.random.normal(key, (num_samples,) + mean.shape), np.float64)
  z = mean + scale * eps
  logits = z @ dec["kernel"] + dec["bias"]
  return {
      "x": x, "mean": mean, "scale": scale, "eps": eps, "z": z, "dec_w": dec["kernel"],
      "dlogits": x - special.expit(logits),
      "log_lik": stats.bernoulli.logpmf(x, special.expit(logits)).sum(-1),
      "log_prior": stats.norm.logpdf(z).sum(-1),
      "log_q": stats.norm.logpdf(z, mean, scale).sum(-1),
      "kl": 0.5 * np.sum(mean**2 + scale**2 - 1.0 - np.log(scale**2), -1)}


def _decoder_grad_of_loss(ref, weights):
  """d/d(W, c) of -mean_b sum_s weights_sb log p(x_b|z_sb), z fixed: ([L, D], [D])."""
  b = ref["x"].shape[0]
  g = weights[..., None] * ref["dlogits"]                               # [S, B, D]
  return -np.einsum("sbl,sbd->ld", ref["z"], g) / b, -g.sum((0, 1)) / b


def _assert_tree_close(ours, ref, **tol):
  for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(ref)):
    np.testing.assert_allclose(np.asarray(a), b, **tol)


@pytest.mark.parametrize("estimator", list(E.ESTIMATORS))
@pytest.mark.slow
def test_vae_loss_value_and_decoder_gradient_match_numpy(linear_vae, estimator):
  model, params, x = linear_vae
  s, key = 4, jax.random.key(8)
  loss_fn, state = E.make_vae_loss(model, estimator, s)
  if "baseline" in state:
    state = {"baseline": jnp.float32(-40.0), "count": jnp.int32(1)}
  (loss, (aux, _)), grads = jax.value_and_grad(
      lambda p: loss_fn(p, x, key, state), has_aux=True)(params)
  ref = _numpy_vae(params, x, key, s)
  log_w = ref["log_lik"] + ref["log_prior"] - ref["log_q"]              # [S, B]
  if E.ESTIMATORS[estimator].objective == E.IWAE:
    # Value: the IWAE bound; decoder: sum_s w~_s grad log p(x|z_s), w~ normalized.
    per_example = special.logsumexp(log_w, 0) - np.log(s)
    value, weights = np.mean(per_example), special.softmax(log_w, 0)
  else:
    # Value: recon - analytic KL (stl: the MC ELBO mean_s log w_s, no analytic KL);
    # decoder: the direct gradient mean_s grad log p(x|z_s).
    per_example = ref["log_lik"].mean(0) - ref["kl"]
    value = np.mean(log_w) if estimator == "stl" else np.mean(per_example)
    weights = np.full_like(log_w, 1.0 / s)
  np.testing.assert_allclose(loss, -value, rtol=1e-5)
  np.testing.assert_allclose(aux["elbo"], per_example, rtol=1e-5)
  np.testing.assert_allclose(aux["kl"], ref["kl"], rtol=1e-5)
  np.testing.assert_allclose(aux["recon"], ref["log_lik"].mean(0), rtol=1e-5)
  gw, gc = _decoder_grad_of_loss(ref, weights)
  dec = grads["params"]["decoder"]["mlp"]["dense_0"]
  np.testing.assert_allclose(dec["kernel"], gw, rtol=1e-4, atol=1e-6, err_msg=estimator)
  np.testing.assert_allclose(dec["bias"], gc, rtol=1e-4, atol=1e-6, err_msg=estimator)


def _score_encoder_grad_of_loss(ref, baseline):
  """Encoder gradient of -mean_b [mean_s (f_sb - b_sb) log q(z_sb|x_b) - KL_b], z fixed.

  For q = N(mean, scale^2): d log q / d mean = eps / scale, d log q / d log_scale =
  eps^2 - 1; dKL / d mean = mean, dKL / d log_scale = scale^2 - 1. The linear
  encoder then gives d / d kernel = x^T (d / d output), d / d bias = sum_b.
  """
  b = ref["x"].shape[0]
  signal = (ref["log_lik"] - baseline)[..., None]                      # [S, B, 1]
  g_mean = -(np.mean(signal * ref["eps"] / ref["scale"], 0) - ref["mean"]) / b
  g_log_scale = -(np.mean(signal * (ref["eps"]**2 - 1.0), 0) - (ref["scale"]**2 - 1.0)) / b
  return {"log_scale": {"bias": g_log_scale.sum(0), "kernel": ref["x"].T @ g_log_scale},
          "mean": {"bias": g_mean.sum(0), "kernel": ref["x"].T @ g_mean}}


@pytest.mark.parametrize("estimator", ["score", "score_baseline", "score_loo"])
def test_score_encoder_gradient_uses_the_previous_baseline(linear_vae, estimator):
  # b_s is 0 (score), the leave-one-out mean (score_loo), or the running
  # baseline b_prev of the *previous* steps (score_baseline), not the value
  # updated with this step's f.
  model, params, x = linear_vae
  s, decay, key = 4, 0.5, jax.random.key(31)
  loss_fn, state = E.make_vae_loss(model, estimator, s, baseline_decay=decay)
  for t in range(2):                                     # two previous steps
    _, (_, state) = loss_fn(params, x, jax.random.key(100 + t), state)
  grad_fn = jax.jit(jax.grad(lambda p, st: loss_fn(p, x, key, st)[0]))
  ref = _numpy_vae(params, x, key, s)
  f = ref["log_lik"]
  if estimator == "score":
    baseline = 0.0
  elif estimator == "score_loo":
    baseline = (f.sum(0, keepdims=True) - f) / (s - 1)
  else:
    b_prev = float(state["baseline"])
    baseline = b_prev
    _, (_, new_state) = loss_fn(params, x, key, state)
    np.testing.assert_allclose(new_state["baseline"], decay * b_prev + (1 - decay) * f.mean(),
                               rtol=1e-5)
    assert abs(float(new_state["baseline"]) - b_prev) > 1.0   # "fresh b" would differ
  _assert_tree_close(grad_fn(params, state)["params"]["encoder"],
                     _score_encoder_grad_of_loss(ref, baseline), rtol=1e-4, atol=1e-6)
  if estimator == "score_baseline":
    # A known b, set by hand; and two baselines differ by exactly
    # (b1 - b2) / B * sum_b mean_s grad log q(z_sb) in the loss gradient.
    for b in (7.0, -25.0):
      st = {"baseline": jnp.float32(b), "count": jnp.int32(3)}
      _assert_tree_close(grad_fn(params, st)["params"]["encoder"],
                         _score_encoder_grad_of_loss(ref, b), rtol=1e-4, atol=1e-6)
    g1, g2 = (grad_fn(params, {"baseline": jnp.float32(b), "count": jnp.int32(3)})
              ["params"]["encoder"]["mean"]["bias"] for b in (7.0, -25.0))
    score_mean = np.sum(np.mean(ref["eps"] / ref["scale"], 0), 0) / x.shape[0]
    np.testing.assert_allclose(g1 - g2, (7.0 + 25.0) * score_mean, rtol=1e-4, atol=1e-6)


def _encoder_grad_of_loss(ref, d_mean, d_log_scale):
  """Encoder gradient of -mean_b sur_b from d sur_b / d(mean, log_scale): [B, L] each.

  The linear encoder gives d / d kernel = x^T (d / d output), d / d bias = sum_b.
  """
  g_mean, g_log_scale = -d_mean / ref["x"].shape[0], -d_log_scale / ref["x"].shape[0]
  return {"log_scale": {"bias": g_log_scale.sum(0), "kernel": ref["x"].T @ g_log_scale},
          "mean": {"bias": g_mean.sum(0), "kernel": ref["x"].T @ g_mean}}


def _numpy_encoder_grad(estimator, ref):
  """d sur_b / d(mean, log_scale) of each estimator, written from its formula.

  With z = mean + scale eps: dz/d mean = 1, dz/d log_scale = scale eps; at fixed z,
  d log q / d mean = eps / scale and d log q / d log_scale = eps^2 - 1; at fixed
  parameters, d log q / dz = -eps / scale. g = d log p(x, z) / dz.
  """
  eps, scale, mean = ref["eps"], ref["scale"], ref["mean"]
  s = eps.shape[0]
  g = ref["dlogits"] @ ref["dec_w"].T - ref["z"]                         # [S, B, L]
  log_w = ref["log_lik"] + ref["log_prior"] - ref["log_q"]               # [S, B]
  w = special.softmax(log_w, 0)[..., None]                               # [S, B, 1]
  path = lambda h, weights: (np.sum(weights * h, 0), np.sum(weights * h * scale * eps, 0))
  if estimator == "reparam":   # mean_s grad log p(x|z_s) along the path, - grad KL
    g_lik = ref["dlogits"] @ ref["dec_w"].T
    d_mean, d_ls = path(g_lik, 1.0 / s)
    return d_mean - mean, d_ls - (scale**2 - 1.0)
  if estimator == "stl":       # the path through log p(x, z) - log q(z) with q fixed
    return path(g + eps / scale, 1.0 / s)
  if estimator == "iwae":      # sum_s w~_s grad log w_s; log q(z(eps)) = -eps^2/2 - log scale
    d_mean, d_ls = path(g, w)
    return d_mean, d_ls + 1.0
  if estimator == "dreg":      # sum_s w~_s^2 times the path with q's parameters stopped
    return path(g + eps / scale, w**2)
  # vimco: z fixed; the bound's gradient through -log q plus the leave-one-out score term.
  others = (log_w.sum(0, keepdims=True) - log_w) / (s - 1)               # [S, B]
  bound = special.logsumexp(log_w, 0) - np.log(s)
  w_all = np.exp(log_w)
  baseline = np.log((w_all.sum(0, keepdims=True) - w_all + np.exp(others)) / s)
  signal = (bound[None] - baseline)[..., None] - w                       # [S, B, 1]
  return np.sum(signal * eps / scale, 0), np.sum(signal * (eps**2 - 1.0), 0)


@pytest.mark.parametrize("estimator", ["reparam", "stl", "iwae", "vimco", "dreg"])
def test_vae_encoder_gradient_matches_numpy(linear_vae, estimator):
  # The score-function estimators' encoder gradients are checked above.
  model, params, x = linear_vae
  s, key = 4, jax.random.key(12)
  loss_fn, state = E.make_vae_loss(model, estimator, s)
  grads = jax.jit(jax.grad(lambda p: loss_fn(p, x, key, state)[0]))(params)
  ref = _numpy_vae(params, x, key, s)
  want = _encoder_grad_of_loss(ref, *_numpy_encoder_grad(estimator, ref))
  _assert_tree_close(grads["params"]["encoder"], want, rtol=2e-4, atol=2e-6)


@pytest.mark.parametrize("estimator,reference", [("score", "reparam"),
                                                 ("score_baseline", "reparam"),
                                                 ("score_loo", "reparam"), ("stl", "reparam"),
                                                 ("vimco", "iwae"), ("dreg", "iwae")])
@pytest.mark.slow
def test_vae_encoder_gradients_agree_in_expectation(tiny_vae, estimator, reference):
  model, params, x = tiny_vae
  draws = 4000

  def stats(est):
    loss_fn, state0 = E.make_vae_loss(model, est, 4)
    state = ({"baseline": jnp.float32(-44.0), "count": jnp.int32(1)}
             if est == "score_baseline" else state0)
    fn = jax.jit(G.encoder_grad_fn(loss_fn, params, x, state))
    return G.gradient_statistics(fn, jax.random.key(9), draws)

  est, ref = stats(estimator), stats(reference)
  for m1, v1, m2, v2 in zip(*(jax.tree_util.tree_leaves(s[k]) for s in (est, ref)
                              for k in ("mean", "variance"))):
    se = np.sqrt((np.asarray(v1) + np.asarray(v2)) / draws)
    assert np.all(np.abs(np.asarray(m1) - np.asarray(m2)) <= 5 * se + 1e-3)


@pytest.mark.slow
def test_running_baseline_state_updates(tiny_vae):
  model, params, x = tiny_vae
  loss_fn, state = E.make_vae_loss(model, "score_baseline", 2, baseline_decay=0.5)
  _, (aux, s1) = loss_fn(params, x, jax.random.key(0), state)
  assert int(s1["count"]) == 1
  np.testing.assert_allclose(s1["baseline"], jnp.mean(aux["recon"]), rtol=1e-5)
  _, (aux2, s2) = loss_fn(params, x, jax.random.key(1), s1)
  np.testing.assert_allclose(s2["baseline"], 0.5 * s1["baseline"] + 0.5 * jnp.mean(aux2["recon"]),
                             rtol=1e-5)


@pytest.mark.slow
def test_training_with_score_estimators_and_grad_stats(tmp_path):
  # The running baseline's state and the multi-sample estimators through the trainer.
  from vae_jax import tasks  # pylint: disable=g-import-not-at-top
  from vae_jax.training import trainer  # pylint: disable=g-import-not-at-top
  from vae_jax.training import workdir as wd  # pylint: disable=g-import-not-at-top
  for est, s in (("score_baseline", 1), ("vimco", 2)):
    config = get_config("vae", "tiny")
    config.objective.update(estimator=est, num_samples=s)
    config.train.update(num_steps=20, log_every=10, eval_every=20, checkpoint_every=20,
                        grad_stats_every=10, grad_stats_draws=4)
    ds = tasks.load_data(config)
    task = tasks.build_task(config, ds.image_shape, len(ds.train_x))
    result = trainer.train(task, config, ds, str(tmp_path / est))
    assert np.isfinite(result.final_eval["neg_elbo"])
    rows = [r for r in wd.read_metrics(str(tmp_path / est)) if r["split"] == "grad_stats"]
    assert [r["step"] for r in rows] == [10, 20]
    assert all(r["grad_var_encoder"] > 0 and np.isfinite(r["grad_snr_encoder"]) for r in rows)


# ----------------------------------------------------------------------------
# The table and its rules, checked once by validate.
# ----------------------------------------------------------------------------

# The lecture's estimators: (bound, differentiable draws, needs log q at any z, least S,
# free bits apply, KL warm-up applies, keeps a running baseline).
LECTURE = {
    "reparam": (E.ELBO, True, False, 1, True, True, False),
    "score": (E.ELBO, False, True, 1, True, True, False),
    "score_baseline": (E.ELBO, False, True, 1, True, True, True),
    "score_loo": (E.ELBO, False, True, 2, True, True, False),
    "stl": (E.ELBO, True, True, 1, False, True, False),
    "iwae": (E.IWAE, True, False, 1, False, False, False),
    "vimco": (E.IWAE, False, True, 2, False, False, False),
    "dreg": (E.IWAE, True, True, 1, False, False, False),
}


def test_the_table_declares_what_each_estimator_needs():
  assert list(E.ESTIMATORS) == list(LECTURE)
  for name, e in E.ESTIMATORS.items():
    state = e.init_state()
    assert (e.objective, e.reparametrized, e.needs_density, e.min_samples, e.free_bits,
            e.kl_warmup, "baseline" in state) == LECTURE[name], name
    assert e.expectation is None or e.objective == E.ELBO


def _objective(**settings):
  base = dict(estimator="reparam", num_samples=4, baseline_decay=0.9, kl_warmup_steps=0,
              free_bits=0.0)
  return ml_collections.ConfigDict(dict(base, **settings))


GOOD_MODEL = dict(has_density=True, closed_form_kl=True)


@pytest.mark.parametrize("name", list(E.ESTIMATORS))
def test_each_entry_is_refused_exactly_where_its_rules_say(name):
  """One UserError per bad combination, naming the key; the rest pass."""
  e = E.ESTIMATORS[name]

  def outcome(model=GOOD_MODEL, **settings):
    try:
      settings = dict(dict(estimator=name, num_samples=max(e.min_samples, 4)), **settings)
      assert E.validate(_objective(**settings), **model) is e
      return None
    except UserError as err:
      assert str(err).count("\n") == 0
      return str(err)

  assert outcome() is None
  no_density = outcome(dict(GOOD_MODEL, has_density=False))
  assert (no_density is not None) == e.needs_density
  if e.needs_density:
    assert "needs log q(z|x) at a given z" in no_density and "reparam, iwae" in no_density
  discrete = outcome(dict(GOOD_MODEL, reparametrized=False, bounds=(E.ELBO,)))
  assert (discrete is None) == (not e.reparametrized and e.objective == E.ELBO)
  if e.reparametrized:
    assert "reparametrization trick" in discrete
  elif discrete:
    assert "trains the IWAE bound" in discrete
  few = outcome(num_samples=e.min_samples - 1) if e.min_samples > 1 else None
  assert (few is not None) == (e.min_samples > 1)
  if few:
    assert f"--config.objective.num_samples >= {e.min_samples}" in few
  warm = outcome(kl_warmup_steps=10)
  assert (warm is None) == e.kl_warmup
  if warm:
    assert "--config.objective.kl_warmup_steps needs an objective with a KL part" in warm
  free_bits = outcome(free_bits=0.1)
  assert (free_bits is None) == e.free_bits
  if free_bits:
    assert "--config.objective.free_bits needs the analytic KL term" in free_bits
  no_closed_form = outcome(dict(GOOD_MODEL, closed_form_kl=False, family="prior=vamp"),
                           free_bits=0.1)
  assert "needs a closed-form KL" in no_closed_form and "prior=vamp" in no_closed_form


@pytest.mark.parametrize("settings,match", [
    (dict(estimator="nope"), "unknown --config.objective.estimator='nope'; choose one of "
                             "reparam, score"),
    (dict(num_samples=0), "--config.objective.num_samples must be a positive integer"),
    (dict(num_samples=1.5), "--config.objective.num_samples must be a positive integer"),
    (dict(num_samples="two"), "--config.objective.num_samples must be a positive"),
    (dict(baseline_decay=1.0), r"--config.objective.baseline_decay must be in \[0, 1\)"),
    (dict(baseline_decay=-0.1), "--config.objective.baseline_decay"),
    (dict(kl_warmup_steps=-2), "--config.objective.kl_warmup_steps must be an integer >= 0"),
    (dict(kl_warmup_steps=2.5), "--config.objective.kl_warmup_steps must be an integer >= 0"),
    (dict(free_bits=-1.0), "--config.objective.free_bits must be a finite number >= 0"),
])
def test_bad_values_are_clear_errors(settings, match):
  with pytest.raises(UserError, match=match):
    E.validate(_objective(**settings), **GOOD_MODEL)


def test_what_the_posterior_lacks_is_said_before_the_sample_count():
  """score_loo on an iaf posterior with S = 1: no S would make it work, so the
  missing density comes first (issue 26: it used to ask for more samples first)."""
  with pytest.raises(UserError, match="needs log q.*use one of reparam, iwae"):
    E.validate(_objective(estimator="score_loo", num_samples=1), has_density=False,
               closed_form_kl=False)
  config = get_config("vae", "tiny,iaf")
  config.objective.update(estimator="score_loo", num_samples=1)
  with pytest.raises(UserError) as err:
    vae_model.validate(config)
  assert str(err.value).startswith("--config.objective.estimator=score_loo needs log q(z|x) at "
                                   "a given z"), err.value
  assert "posterior=iaf" in str(err.value) and "num_samples" not in str(err.value)
  config.objective.num_samples = 4                     # enough samples: still the density
  with pytest.raises(UserError, match="needs log q"):
    vae_model.validate(config)
  # The discrete VAE: reparametrization is refused whatever S is.
  config = get_config("discrete_vae", "tiny")
  config.objective.update(estimator="stl", num_samples=0)
  with pytest.raises(UserError, match="reparametrization trick.*discrete z.*use one of "
                                      "score, score_baseline, score_loo"):
    discrete_vae.validate(config)


def test_the_models_validate_the_objective_once_and_the_losses_check_nothing():
  config = get_config("vae", "tiny")
  config.objective.update(estimator="vimco", num_samples=1)
  with pytest.raises(UserError, match="num_samples >= 2"):
    vae_model.validate(config)
  # The loss builder takes validated settings and checks nothing itself.
  model = models.make_vae(image_shape=(4, 4, 1), latent_dim=2, hidden_dims=())
  loss_fn, state = E.make_vae_loss(model, "vimco", 2)
  assert state == {} and loss_fn.keywords["estimator"] == "vimco"


def test_no_code_branches_on_an_estimator_name():
  """The table answers: no comparison of an estimator's name (``estimator == "score"``,
  ``ESTIMATORS[name] == "iwae"``) and no tuple of estimator names in the library or
  the experiments (their configs may list estimators to run)."""
  names = "|".join(n for n in E.ESTIMATORS if n != "iwae")   # "iwae" also names a bound
  every = "|".join(E.ESTIMATORS)
  pattern = re.compile(
      rf"""estimator\w*\s*[!=]=|ESTIMATORS\[[^]]*\]\s*[!=]=|[!=]=\s*["']({names})["']"""
      rf"""|["']({names})["']\s*[!=]=|\(\s*["']({every})["']\s*,\s*["']({every})["']""")
  found = code_lines_matching(pattern)
  assert not found, "\n".join(found)
