"""Distributions against SciPy, KLs against Monte Carlo."""

import jax
import jax.numpy as jnp
import numpy as np
from numpy.testing import assert_allclose
import pytest
from scipy import special, stats

from vae_jax import distributions as D


def _rng(seed=0):
  return np.random.default_rng(seed)


def test_normal_log_prob_matches_scipy():
  rng = _rng()
  x, m = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
  ls = rng.normal(scale=0.5, size=(5, 7))
  got = jax.jit(D.normal_log_prob)(x, m, ls)
  want = stats.norm.logpdf(x, m, np.exp(ls)).sum(-1)
  assert got.shape == (5,)
  assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_normal_log_prob_event_ndims():
  x = jnp.ones((2, 3, 4))
  assert D.normal_log_prob(x, 0.0, 0.0, event_ndims=2).shape == (2,)
  assert D.normal_log_prob(x, 0.0, 0.0, event_ndims=0).shape == (2, 3, 4)


def test_bernoulli_log_prob_matches_scipy():
  rng = _rng(1)
  logits = rng.normal(scale=3, size=(6, 9)).astype(np.float32)
  x = (rng.uniform(size=(6, 9)) < 0.5).astype(np.float32)
  got = jax.jit(D.bernoulli_log_prob)(x, logits)
  p = 1 / (1 + np.exp(-logits.astype(np.float64)))
  want = stats.bernoulli.logpmf(x, p).sum(-1)
  assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_bernoulli_log_prob_stable_for_extreme_logits():
  got = D.bernoulli_log_prob(jnp.array([[1.0, 0.0]]), jnp.array([[-200.0, 200.0]]))
  assert_allclose(got, [-400.0], rtol=1e-6)


def test_categorical_log_prob_matches_scipy():
  logits = jnp.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]])
  z = jnp.array([1, 0])
  p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  want = [np.log(p[0, 1]), np.log(p[1, 0])]
  assert_allclose(D.categorical_log_prob(z, logits), want, rtol=1e-6)


def test_samples_have_the_right_moments():
  key = jax.random.key(0)
  m, ls = jnp.array([1.0, -2.0]), jnp.log(jnp.array([0.5, 2.0]))
  z = D.normal_sample(key, m, ls, (200_000,))
  assert z.shape == (200_000, 2)
  assert_allclose(z.mean(0), m, atol=0.02)
  assert_allclose(z.std(0), jnp.exp(ls), rtol=0.01)
  b = D.bernoulli_sample(key, jnp.array([-1.0, 0.0, 2.0]), (100_000,))
  assert_allclose(b.mean(0), 1 / (1 + np.exp(-np.array([-1.0, 0.0, 2.0]))), atol=0.01)


def test_sampling_is_a_pure_function_of_the_key():
  k = jax.random.key(3)
  a = D.normal_sample(k, jnp.zeros(4), jnp.zeros(4))
  b = D.normal_sample(k, jnp.zeros(4), jnp.zeros(4))
  c = D.normal_sample(jax.random.key(4), jnp.zeros(4), jnp.zeros(4))
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)


def test_kl_std_normal_analytic_vs_monte_carlo():
  m = jnp.array([[0.5, -1.0, 2.0]])
  ls = jnp.array([[-0.3, 0.4, 0.0]])
  z = D.normal_sample(jax.random.key(1), m, ls, (400_000,))
  mc = jnp.mean(D.normal_log_prob(z, m, ls) - D.std_normal_log_prob(z))
  analytic = D.kl_normal_std_normal(m, ls)
  assert analytic.shape == (1,)
  assert_allclose(analytic[0], mc, atol=0.01)


def test_kl_normal_normal_analytic_vs_monte_carlo_and_special_case():
  m1, ls1 = jnp.array([0.3, -0.7]), jnp.array([0.2, -0.5])
  m2, ls2 = jnp.array([-0.4, 1.0]), jnp.array([0.6, 0.1])
  z = D.normal_sample(jax.random.key(2), m1, ls1, (400_000,))
  mc = jnp.mean(D.normal_log_prob(z, m1, ls1) - D.normal_log_prob(z, m2, ls2))
  assert_allclose(D.kl_normal_normal(m1, ls1, m2, ls2), mc, atol=0.01)
  assert_allclose(D.kl_normal_normal(m1, ls1, 0.0, 0.0), D.kl_normal_std_normal(m1, ls1),
                  rtol=1e-6)
  assert float(D.kl_normal_normal(m1, ls1, m1, ls1)) == pytest.approx(0.0, abs=1e-7)


def test_entropies_match_scipy():
  ls = np.array([0.3, -1.2])
  assert_allclose(D.normal_entropy(jnp.asarray(ls)), stats.norm(0, np.exp(ls)).entropy().sum(),
                  rtol=1e-6)
  logits = np.array([0.5, -2.0])
  assert_allclose(D.bernoulli_entropy(jnp.asarray(logits)),
                  stats.bernoulli(1 / (1 + np.exp(-logits))).entropy().sum(), rtol=1e-5)


def test_softplus_value_and_derivative_everywhere():
  """log(1 + e^x) and its derivative sigmoid(x), x = 0 and the extremes included."""
  x = np.array([-1e4, -50.0, -3.0, -1e-7, 0.0, 1e-7, 2.5, 40.0, 1e4], np.float32)
  want = np.logaddexp(0.0, x.astype(np.float64))
  np.testing.assert_allclose(D.softplus(jnp.asarray(x)), want, rtol=1e-6, atol=1e-30)
  grad = jax.vmap(jax.grad(D.softplus))(jnp.asarray(x))
  np.testing.assert_allclose(grad, special.expit(x.astype(np.float64)), rtol=1e-6, atol=1e-30)
