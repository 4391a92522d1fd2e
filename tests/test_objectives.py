"""The ELBO on a model whose log p(x) is known in closed form.

A VAE with a linear Gaussian decoder p(x|z) = N(Wz + b, s^2 I), p(z) = N(0, I)
has log p(x) = log N(x | b, WW^T + s^2 I) (computed here with SciPy). When W
has orthogonal columns its posterior is a diagonal Gaussian, which the
linear encoder can represent exactly: then ELBO = log p(x) and the
importance-weighted bound is exact for any K.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from numpy.testing import assert_allclose
import pytest
from scipy import stats

from vae_jax import models, objectives

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


def test_elbo_is_below_log_px_and_tight_at_the_posterior(model):
  rng = np.random.default_rng(1)
  x = rng.normal(size=(16, D_X)).astype(np.float32) * 2
  for exact in (True, False):
    params, mvn = _linear_vae_params(np.random.default_rng(1), exact_posterior=exact)
    log_px = mvn.logpdf(x)
    elbo_fn = jax.jit(functools.partial(objectives.elbo, model=model, num_samples=20_000))
    loss, aux = elbo_fn(params, jnp.asarray(x), jax.random.key(0))
    assert aux["elbo"].shape == aux["kl"].shape == aux["recon"].shape == (16,)
    assert_allclose(loss, -np.mean(aux["elbo"]), rtol=1e-6)
    assert_allclose(aux["elbo"], aux["recon"] - aux["kl"], rtol=1e-6)
    if exact:
      assert_allclose(aux["elbo"], log_px, atol=0.03)
    else:
      gap = log_px - np.asarray(aux["elbo"])
      assert np.all(gap > 0.05), gap


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


def test_sampling_and_reconstruction_helpers():
  model = models.make_vae(image_shape=(4, 4, 1), latent_dim=3, hidden_dims=(8,))
  params = model.init(jax.random.key(0), jnp.zeros((1, 16)))
  dec = objectives.sample_prior(jax.random.key(1), params, model=model, num_samples=7,
                                latent_dim=3)
  assert dec["logits"].shape == (7, 16)
  x = objectives.decoder_sample(jax.random.key(2), dec)
  assert set(np.unique(np.asarray(x))) <= {0.0, 1.0}
  r = objectives.reconstruct(params, jnp.zeros((2, 16)), model=model)
  assert r.shape == (2, 16) and np.all((np.asarray(r) > 0) & (np.asarray(r) < 1))
  assert float(objectives.bits_per_dim(jnp.asarray(784 * np.log(2)), 784)) == pytest.approx(1.0)
