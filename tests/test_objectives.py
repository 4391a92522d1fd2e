"""The ELBO on models whose terms are known in closed form, or recomputed in NumPy.

A VAE with a linear Gaussian decoder p(x|z) = N(Wz + b, s^2 I), p(z) = N(0, I)
has log p(x) = log N(x | b, WW^T + s^2 I) (computed here with SciPy), and for
any Gaussian q(z) = N(m, diag v) an analytic ELBO,

  E_q[log p(x|z)] = -D/2 log(2 pi s^2) - (||x - Wm - b||^2 + tr(W diag(v) W^T)) / (2 s^2),
  KL(q || p(z))   = 1/2 sum_l (m_l^2 + v_l - 1 - log v_l),

written out below in NumPy. When W has orthogonal columns its posterior is a
diagonal Gaussian, which the linear encoder can represent exactly: then
ELBO = log p(x) and the importance-weighted bound is exact for any K.
Monte-Carlo checks allow 5 standard errors, with the variance of log p(x|z)
under q also in closed form.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from numpy.testing import assert_allclose
import pytest
from scipy import special, stats

from vae_jax import models
from vae_jax.inference import objectives

D_X, L = 6, 2


def _linear_vae_params(rng, sigma=0.5, exact_posterior=True):
  q, _ = np.linalg.qr(rng.normal(size=(D_X, L)))
  w = q * np.array([2.0, 1.2])            # orthogonal columns
  b = rng.normal(size=D_X)
  m = w.T @ w + sigma**2 * np.eye(L)      # diagonal
  m_inv = np.linalg.inv(m)
  post_k = (m_inv @ w.T).T                # x -> M^-1 W^T (x - b): kernel [D, L]
  post_c = -b @ post_k
  post_log_scale = 0.5 * np.log(np.diag(sigma**2 * m_inv))
  if not exact_posterior:
    post_k = post_k + rng.normal(scale=0.3, size=post_k.shape)
    post_log_scale = post_log_scale + 0.4
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  params = {"params": {
      "encoder": {"mean": {"kernel": f32(post_k), "bias": f32(post_c)},
                  "log_scale": {"kernel": f32(np.zeros((D_X, L))), "bias": f32(post_log_scale)}},
      "decoder": {"mlp": {"dense_0": {"kernel": f32(w.T), "bias": f32(b)}},
                  "head": {"log_scale": f32([np.log(sigma)])}}}}
  cov = w @ w.T + sigma**2 * np.eye(D_X)
  return params, stats.multivariate_normal(b, cov)


def _np(tree):
  return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), tree)


def _closed_form_elbo(params, x):
  """Exact per-example terms of the linear Gaussian VAE, in float64 NumPy.

  Returns:
    dict of [B] arrays: ``recon`` (E_q log p(x|z)), ``kl``, ``elbo`` and
    ``recon_var`` (Var_q log p(x|z), for Monte-Carlo tolerances).
  """
  p = _np(params)["params"]
  enc, dec = p["encoder"], p["decoder"]
  x = np.asarray(x, np.float64)
  m = x @ enc["mean"]["kernel"] + enc["mean"]["bias"]                    # [B, L]
  v = np.exp(2 * (x @ enc["log_scale"]["kernel"] + enc["log_scale"]["bias"]))
  w, b = dec["mlp"]["dense_0"]["kernel"].T, dec["mlp"]["dense_0"]["bias"]  # [D, L], [D]
  s2 = np.exp(2 * dec["head"]["log_scale"][0])
  e = x - m @ w.T - b                                                    # [B, D]
  cov = np.einsum("dl,bl,el->bde", w, v, w)                               # Cov(Wz) [B, D, D]
  sq = np.sum(e**2, -1) + np.trace(cov, axis1=1, axis2=2)                 # E ||x - Wz - b||^2
  recon = -0.5 * x.shape[1] * np.log(2 * np.pi * s2) - sq / (2 * s2)
  # ||e - u||^2 with u ~ N(0, C): variance 4 e^T C e + 2 tr(C^2).
  var_sq = 4 * np.einsum("bd,bde,be->b", e, cov, e) + 2 * np.sum(cov * cov, (1, 2))
  kl = 0.5 * np.sum(m**2 + v - 1.0 - np.log(v), -1)
  return {"recon": recon, "kl": kl, "elbo": recon - kl, "recon_var": var_sq / (4 * s2**2)}


@pytest.fixture
def model():
  return models.make_vae(image_shape=(D_X, 1, 1), latent_dim=L, hidden_dims=(),
                         likelihood="gaussian", gaussian_scale="shared")


def test_param_tree_matches_the_hand_built_one(model, rng=np.random.default_rng(0)):
  params, _ = _linear_vae_params(rng)
  init = model.init(jax.random.key(0), jnp.zeros((1, D_X)))
  assert jax.tree_util.tree_structure(init) == jax.tree_util.tree_structure(params)
  for a, b in zip(jax.tree_util.tree_leaves(init), jax.tree_util.tree_leaves(params)):
    assert a.shape == b.shape


def test_elbo_matches_its_closed_form_below_log_px_and_tight_at_the_posterior(model):
  rng = np.random.default_rng(1)
  x = rng.normal(size=(16, D_X)).astype(np.float32) * 2
  num_samples = 20_000
  for exact in (True, False):
    params, mvn = _linear_vae_params(np.random.default_rng(1), exact_posterior=exact)
    log_px = mvn.logpdf(x)
    ref = _closed_form_elbo(params, x)
    elbo_fn = jax.jit(functools.partial(objectives.elbo, model=model, num_samples=num_samples))
    loss, aux = elbo_fn(params, jnp.asarray(x), jax.random.key(0))
    assert aux["elbo"].shape == aux["kl"].shape == aux["recon"].shape == (16,)
    se = np.sqrt(ref["recon_var"] / num_samples)                          # [B]
    assert_allclose(aux["kl"], ref["kl"], rtol=1e-5, atol=1e-5)
    assert np.all(np.abs(aux["recon"] - ref["recon"]) <= 5 * se + 1e-3), (aux["recon"], ref)
    assert np.all(np.abs(aux["elbo"] - ref["elbo"]) <= 5 * se + 1e-3)
    assert abs(float(loss) + np.mean(ref["elbo"])) <= 5 * np.sqrt(np.sum(se**2)) / 16 + 1e-3
    if exact:
      assert_allclose(ref["elbo"], log_px, atol=1e-5)   # float32-rounded posterior
      assert_allclose(aux["elbo"], log_px, atol=0.03)
    else:
      gap = log_px - ref["elbo"]                       # = KL(q || p(z|x)) > 0
      assert np.all(gap > 0.05), gap


def _np_mlp(layers, h):
  """Dense layers [(kernel, bias), ...] with relu between them (none after the last)."""
  for i, (k, b) in enumerate(layers):
    h = h @ k + b
    if i < len(layers) - 1:
      h = np.maximum(h, 0.0)
  return h


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_monte_carlo_elbo_matches_numpy_on_the_same_eps(likelihood, beta):
  # One-hidden-layer VAE; every term recomputed in NumPy/SciPy from the same eps.
  b, d, l, s = 5, 16, 3, 3
  model = models.make_vae(image_shape=(4, 4, 1), latent_dim=l, hidden_dims=(7,),
                          likelihood=likelihood)
  rng = np.random.default_rng(3)
  if likelihood == "bernoulli":
    x = (rng.uniform(size=(b, d)) < 0.4).astype(np.float32)
  else:
    x = rng.normal(size=(b, d)).astype(np.float32)
  params = model.init(jax.random.key(0), jnp.asarray(x))
  if likelihood == "gaussian":
    params["params"]["decoder"]["head"]["log_scale"] = jnp.array([-0.3], jnp.float32)
  key = jax.random.key(4)
  loss, aux = jax.jit(functools.partial(objectives.elbo, model=model, num_samples=s,
                                        beta=beta))(params, jnp.asarray(x), key)
  p = _np(params)["params"]
  enc, dec = p["encoder"], p["decoder"]
  h = np.maximum(x.astype(np.float64) @ enc["hidden_0"]["kernel"] + enc["hidden_0"]["bias"], 0.0)
  mean = h @ enc["mean"]["kernel"] + enc["mean"]["bias"]
  scale = np.exp(h @ enc["log_scale"]["kernel"] + enc["log_scale"]["bias"])
  eps = np.asarray(jax.random.normal(key, (s, b, l)), np.float64)        # z = mean + scale eps
  out = _np_mlp([(dec["mlp"][n]["kernel"], dec["mlp"][n]["bias"]) for n in ("dense_0", "dense_1")],
                mean + scale * eps)                                        # [S, B, D]
  if likelihood == "bernoulli":
    log_lik = stats.bernoulli.logpmf(x, special.expit(out)).sum(-1)
  else:
    log_lik = stats.norm.logpdf(x, out, np.exp(dec["head"]["log_scale"][0])).sum(-1)
  recon = log_lik.mean(0)
  kl = np.sum(np.log(1.0 / scale) + 0.5 * (scale**2 + mean**2) - 0.5, -1)
  assert_allclose(aux["recon"], recon, rtol=1e-5, atol=1e-5)
  assert_allclose(aux["kl"], kl, rtol=1e-5, atol=1e-6)
  assert_allclose(aux["elbo"], recon - kl, rtol=1e-5, atol=1e-5)
  assert_allclose(loss, -np.mean(recon - beta * kl), rtol=1e-5, atol=1e-5)


def test_minibatch_estimate_is_unbiased_for_the_full_data_elbo(model):
  # Doubly stochastic: a random mini-batch of B of the n examples and one z
  # each; (n / B) sum_b ELBO_b must average to sum_i ELBO_i (closed form).
  n, b, draws = 60, 6, 20_000
  params, _ = _linear_vae_params(np.random.default_rng(4), exact_posterior=False)
  data = np.random.default_rng(5).normal(size=(n, D_X)).astype(np.float32) * 2
  full = float(np.sum(_closed_form_elbo(params, data)["elbo"]))

  @jax.jit
  @jax.vmap
  def batch_elbos(k):
    k_batch, k_z = jax.random.split(k)
    idx = jax.random.choice(k_batch, n, (b,), replace=False)
    _, aux = objectives.elbo(params, jnp.asarray(data)[idx], k_z, model=model, num_samples=1)
    return aux["elbo"]

  elbos = batch_elbos(jax.random.split(jax.random.key(13), draws))        # [R, B]

  def check(estimates):
    estimates = np.asarray(estimates, np.float64)
    se = np.std(estimates) / np.sqrt(draws)
    assert abs(np.mean(estimates) - full) <= 5 * se, (np.mean(estimates), full, se)

  check(jax.vmap(lambda e: objectives.full_data_elbo_estimate(e, n))(elbos))
  # Wrong scalings fail the same check: the batch sum, the mean, n / (B - 1).
  for wrong in (lambda e: jnp.sum(e, -1), lambda e: jnp.mean(e, -1),
                lambda e: n / (b - 1) * jnp.sum(e, -1)):
    with pytest.raises(AssertionError):
      check(wrong(elbos))
  # With the whole data set as the batch the estimate is the sum itself.
  e = jnp.asarray(np.random.default_rng(6).normal(size=n), jnp.float32)
  assert_allclose(objectives.full_data_elbo_estimate(e, n), np.sum(np.asarray(e, np.float64)),
                  rtol=1e-5)


def test_iwae_bound_is_exact_at_the_posterior_and_tightens_with_k(model):
  rng = np.random.default_rng(2)
  x = rng.normal(size=(8, D_X)).astype(np.float32)
  params, mvn = _linear_vae_params(np.random.default_rng(2))
  iw = jax.jit(functools.partial(objectives.iwae_bound, model=model), static_argnames="num_samples")
  assert_allclose(iw(params, jnp.asarray(x), jax.random.key(0), num_samples=1), mvn.logpdf(x),
                  atol=1e-3)
  params, mvn = _linear_vae_params(np.random.default_rng(2), exact_posterior=False)
  log_px = mvn.logpdf(x)
  means = [np.mean([np.asarray(iw(params, jnp.asarray(x), jax.random.key(s), num_samples=k))
                    for s in range(20)], 0) for k in (1, 10, 1000)]
  assert np.all(means[0] < means[1]) and np.all(means[1] < means[2])
  assert np.all(means[2] < log_px + 0.01)   # Monte-Carlo noise of a near-exact bound
  assert np.all(log_px - means[2] < 0.5 * (log_px - means[0]))


def test_bernoulli_elbo_under_jit_and_grad_shapes():
  model = models.make_vae(image_shape=(4, 4, 1), latent_dim=3, hidden_dims=(8,))
  params = model.init(jax.random.key(0), jnp.zeros((1, 16)))
  x = (np.random.default_rng(0).uniform(size=(5, 16)) < 0.5).astype(np.float32)
  f = jax.jit(functools.partial(objectives.elbo, model=model, num_samples=3))
  (loss, aux), grads = jax.value_and_grad(f, has_aux=True)(params, x, jax.random.key(1))
  assert loss.shape == () and aux["elbo"].shape == (5,)
  assert np.all(np.asarray(aux["kl"]) >= 0)
  assert np.all(np.asarray(aux["recon"]) <= 0)
  assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(params)



def test_the_elbo_of_a_given_q_is_the_one_elbo():
  """elbo(q=...) is the same function: the encoder's q given explicitly gives the
  same bits, and with q given the encoder is not used (amortization's q*)."""
  model = models.make_vae(image_shape=(4, 4, 1), latent_dim=3, hidden_dims=(8,))
  params = model.init(jax.random.key(0), jnp.zeros((1, 16)))
  x = (np.random.default_rng(0).uniform(size=(5, 16)) < 0.5).astype(np.float32)
  key = jax.random.key(1)
  q = model.apply(params, x, method="encode")
  f = jax.jit(functools.partial(objectives.elbo, model=model, num_samples=3))
  own, given = f(params, x, key)[1], f(params, x, key, q=q)[1]
  for name in ("recon", "kl", "elbo"):
    np.testing.assert_array_equal(own[name], given[name])
  other_encoder = jax.tree_util.tree_map(lambda a: a + 1.0, params)
  other_encoder["params"]["decoder"] = params["params"]["decoder"]
  np.testing.assert_array_equal(f(other_encoder, x, key, q=q)[1]["elbo"], own["elbo"])
  assert not np.array_equal(f(other_encoder, x, key)[1]["elbo"], own["elbo"])

def test_sampling_and_reconstruction_helpers():
  model = models.make_vae(image_shape=(4, 4, 1), latent_dim=3, hidden_dims=(8,))
  params = model.init(jax.random.key(0), jnp.zeros((1, 16)))
  dec = objectives.sample_prior(jax.random.key(1), params, model=model, num_samples=7)
  assert dec["logits"].shape == (7, 16)
  x = objectives.decoder_sample(jax.random.key(2), dec)
  assert set(np.unique(np.asarray(x))) <= {0.0, 1.0}
  r = objectives.reconstruct(params, jnp.zeros((2, 16)), model=model)
  assert r.shape == (2, 16) and np.all((np.asarray(r) > 0) & (np.asarray(r) < 1))
  assert float(objectives.bits_per_dim(jnp.asarray(784 * np.log(2)), 784)) == pytest.approx(1.0)
