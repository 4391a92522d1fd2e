"""Gradient estimators: unbiasedness against analytic gradients, variance, VAE wiring.

Statistical checks use the measured standard error: |mean of R draws - exact|
<= 5 SE (+ a float32 floor). A biased estimator fails them (shown below with
a sample-dependent "baseline", which zeroes the score term). In the VAE, each
estimator's loss value and decoder gradient (and the score estimators' encoder
gradient) are checked draw by draw against a NumPy/SciPy recomputation of a
linear Bernoulli VAE from the same eps.
"""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from tests.conftest import get_config
from vae_jax.inference import estimators as E
from vae_jax import models
from vae_jax.inference import objectives
from vae_jax.errors import UserError

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
C = 1.0


def f_quadratic(z):
  return jnp.sum((z - C) ** 2, -1)


def exact_quadratic_grad():
  return (2 * (MU - C), 2 * jnp.exp(2 * LOG_SCALE))


@pytest.mark.parametrize("estimator,baseline", [("reparam", 0.0), ("score", 0.0),
                                                ("score_baseline", 3.0),
                                                ("score_loo", 0.0)])
def test_gaussian_estimators_are_unbiased(estimator, baseline):
  grad_fn = jax.jit(lambda k: E.grad_estimate(estimator, E.gaussian, f_quadratic,
                                              (MU, LOG_SCALE), k, 4, baseline)[1])
  stats = E.gradient_statistics(grad_fn, jax.random.key(0), R)
  _check_unbiased(stats, exact_quadratic_grad(), R)


def test_the_check_detects_a_biased_estimator():
  # A "baseline" equal to the sample's own f cancels the learning signal: biased (zero).
  def biased(k):
    def sur(phi):
      z = E.gaussian.sample(k, phi, 4)
      fz = f_quadratic(z)
      return E._score_term(fz, E.gaussian.log_prob(phi, z), fz)
    return jax.grad(sur)((MU, LOG_SCALE))
  stats = E.gradient_statistics(jax.jit(biased), jax.random.key(0), 2000)
  with pytest.raises(AssertionError):
    _check_unbiased(stats, exact_quadratic_grad(), 2000)


@pytest.mark.slow
def test_surrogate_value_is_the_monte_carlo_estimate():
  for est in E.GENERIC_ESTIMATORS:
    value, _ = E.grad_estimate(est, E.gaussian, f_quadratic, (MU, LOG_SCALE),
                               jax.random.key(1), 20000, 1.0)
    exact = float(jnp.sum((MU - C) ** 2 + jnp.exp(2 * LOG_SCALE)))
    assert abs(float(value) - exact) < 0.1, (est, value, exact)


def test_variance_ordering_on_the_quadratic():
  def total_var(est, b=0.0):
    fn = jax.jit(lambda k: E.grad_estimate(est, E.gaussian, f_quadratic, (MU, LOG_SCALE),
                                           k, 8, b)[1])
    return float(E.gradient_statistics(fn, jax.random.key(2), 4000)["total_variance"])
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
  grad_fn = jax.jit(lambda k: E.grad_estimate(estimator, E.categorical, lambda z: TABLE[z],
                                              LOGITS, k, 4, baseline)[1])
  stats = E.gradient_statistics(grad_fn, jax.random.key(3), R)
  _check_unbiased(stats, exact, R)


def test_bernoulli_score_is_unbiased():
  logits = jnp.array([0.3, -0.8, 1.2])
  w = jnp.array([1.0, -2.0, 0.5])
  f = lambda z: jnp.sum(z * w, -1) + jnp.prod(z, -1) * 3.0
  # E f = sum p_i w_i + 3 prod p_i.
  exact = jax.grad(lambda l: jnp.sum(jax.nn.sigmoid(l) * w)
                   + 3.0 * jnp.prod(jax.nn.sigmoid(l)))(logits)
  grad_fn = jax.jit(lambda k: E.grad_estimate("score_loo", E.bernoulli, f, logits, k, 4)[1])
  stats = E.gradient_statistics(grad_fn, jax.random.key(4), R)
  _check_unbiased(stats, exact, R)


@pytest.mark.slow
def test_reparam_refuses_discrete_and_loo_needs_two_samples():
  with pytest.raises(UserError, match="reparametriz"):
    E.surrogate("reparam", E.categorical, lambda z: TABLE[z], LOGITS, jax.random.key(0), 4)
  with pytest.raises(UserError, match="num_samples >= 2"):
    E.surrogate("score_loo", E.gaussian, f_quadratic, (MU, LOG_SCALE), jax.random.key(0), 1)


def test_gradient_statistics_on_a_known_distribution():
  scale, shift = jnp.array([1.0, 2.0, 3.0]), jnp.array([0.5, 0.0, -1.0])
  stats = E.gradient_statistics(lambda k: {"g": jax.random.normal(k, (3,)) * scale + shift},
                                jax.random.key(5), 40000)
  np.testing.assert_allclose(stats["variance"]["g"], scale**2, rtol=0.03)
  np.testing.assert_allclose(stats["mean"]["g"], shift, atol=0.05)
  np.testing.assert_allclose(float(stats["total_variance"]), 14.0, rtol=0.03)
  np.testing.assert_allclose(stats["snr"]["g"], np.abs(shift) / scale, atol=0.03)
  with pytest.raises(UserError):
    E.gradient_statistics(lambda k: jnp.zeros(2), jax.random.key(0), 1)


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
  if estimator == "score_baseline":
    state = {"baseline": jnp.float32(-40.0), "count": jnp.int32(1)}
  (loss, (aux, _)), grads = jax.value_and_grad(
      lambda p: loss_fn(p, x, key, state), has_aux=True)(params)
  ref = _numpy_vae(params, x, key, s)
  log_w = ref["log_lik"] + ref["log_prior"] - ref["log_q"]              # [S, B]
  if E.ESTIMATORS[estimator] == "iwae":
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
    fn = jax.jit(E.encoder_grad_fn(loss_fn, params, x, state))
    return E.gradient_statistics(fn, jax.random.key(9), draws)

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


def test_bad_estimator_settings_are_clear_errors():
  with pytest.raises(UserError, match="unknown --config.objective.estimator"):
    E.check_estimator("nope", 1)
  with pytest.raises(UserError, match=r"choose one of score, score_baseline\.$"):
    E.check_estimator("reparam", 1, allowed=("score", "score_baseline"))
  for est in ("score_loo", "vimco"):
    with pytest.raises(UserError, match=">= 2"):
      E.check_estimator(est, 1)
  for s in (0, 1.5, "two"):
    with pytest.raises(UserError, match="num_samples"):
      E.check_estimator("reparam", s)
  for decay in (-0.1, 1.0):
    with pytest.raises(UserError, match="baseline_decay"):
      E.check_estimator("score_baseline", 4, decay)
  model = models.make_vae(image_shape=(4, 4, 1), latent_dim=2, hidden_dims=())
  with pytest.raises(UserError, match=">= 2"):
    E.make_vae_loss(model, "vimco", 1)
