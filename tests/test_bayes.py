"""Conjugate models (vae_jax.classical.bayes) against SciPy and numerical integration.

Every closed form is checked against an independent reference: scipy.stats /
scipy.special densities, quadrature of prior x likelihood (``quad``,
``dblquad`` over the 2-simplex), and numerical maximization for the MAP. All
math tests run in float64 (``jax.enable_x64``) with tight tolerances.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from numpy.testing import assert_allclose
import pytest
from scipy import integrate, optimize, special, stats

from vae_jax.classical.bayes import BetaBernoulli, DirichletCategorical, NormalNormal
from vae_jax.classical.evidence import log_bayes_factor
from vae_jax.errors import UserError

X_BIN = np.array([1, 0, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1])      # k = 8 ones, N = 12
BETA_PRIORS = [(2.5, 1.5), (0.7, 0.6), (1.0, 1.0)]
ALPHA = np.array([1.5, 2.0, 0.8])
LABELS = np.array([0, 2, 1, 0, 0, 2, 1, 0, 2, 0])             # counts (5, 2, 3)
MU0, TAU2, SIGMA2 = 0.3, 2.0, 0.7
X_REAL = np.array([1.9, 0.4, 1.1, 2.3, 0.8, 1.6, 1.2])


@pytest.fixture(autouse=True)
def x64():
  with jax.enable_x64(True):
    yield


def _f(x) -> np.ndarray:
  return np.asarray(x, np.float64)


def _dirichlet_log_density(theta, conc):
  """log Dir(theta | conc) written out with scipy.special (theta on the simplex)."""
  theta = np.asarray(theta, np.float64)
  return (np.sum(special.xlogy(conc - 1.0, theta), axis=-1)
          + special.gammaln(np.sum(conc)) - np.sum(special.gammaln(conc)))


def _simplex_integral(fn):
  """int over {t1, t2 >= 0, t1 + t2 <= 1} of fn(t1, t2, 1 - t1 - t2)."""
  value, _ = integrate.dblquad(lambda t2, t1: fn(t1, t2, max(1.0 - t1 - t2, 0.0)),
                               0.0, 1.0, 0.0, lambda t1: 1.0 - t1,
                               epsabs=0.0, epsrel=1e-12)
  return value


# ----------------------------------------------------------------------------
# Beta-Bernoulli.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("a,b", BETA_PRIORS)
def test_beta_bernoulli_evidence_matches_scipy_closed_forms(a, b):
  k, n = X_BIN.sum(), len(X_BIN)
  got = float(BetaBernoulli(a, b).log_evidence(X_BIN))
  assert_allclose(got, special.betaln(a + k, b + n - k) - special.betaln(a, b), rtol=1e-13)
  # The Beta-Binomial pmf of the count is C(N, k) times p(X) of one sequence.
  log_comb = special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)
  assert_allclose(got + log_comb, stats.betabinom.logpmf(k, n, a, b), rtol=1e-12)


@pytest.mark.parametrize("a,b", BETA_PRIORS)
def test_beta_bernoulli_evidence_and_predictive_by_quadrature(a, b):
  k, n = X_BIN.sum(), len(X_BIN)
  joint = lambda t: t**k * (1 - t)**(n - k) * stats.beta.pdf(t, a, b)
  quad = lambda f: integrate.quad(f, 0, 1, epsabs=0, epsrel=1e-13, limit=200)[0]
  evidence = quad(joint)
  p_one = quad(lambda t: t * joint(t)) / evidence       # int theta p(theta|X) dtheta
  model = BetaBernoulli(a, b)
  assert_allclose(float(model.log_evidence(X_BIN)), np.log(evidence), rtol=1e-10)
  pred = np.exp(_f(model.posterior_predictive_log_prob(X_BIN, np.array([0, 1]))))
  assert_allclose(pred, [1 - p_one, p_one], rtol=1e-10)
  assert_allclose(pred.sum(), 1.0, rtol=1e-14)


@pytest.mark.parametrize("a,b", BETA_PRIORS)
def test_beta_bernoulli_posterior_is_prior_times_likelihood_over_evidence(a, b):
  model = BetaBernoulli(a, b)
  k, n = X_BIN.sum(), len(X_BIN)
  post = model.posterior(X_BIN)
  assert_allclose([float(post.a), float(post.b)], [a + k, b + n - k], rtol=1e-15)
  t = np.linspace(0.05, 0.95, 7)
  bayes_rule = (stats.beta.logpdf(t, a, b) + stats.binom.logpmf(k, n, t) - np.log(special.comb(n, k))
                - float(model.log_evidence(X_BIN)))
  assert_allclose(stats.beta.logpdf(t, float(post.a), float(post.b)), bayes_rule, rtol=1e-12)
  ref = stats.beta(a + k, b + n - k)
  assert_allclose(float(post.mean()), ref.mean(), rtol=1e-14)
  assert_allclose(float(model.posterior_std(X_BIN)), ref.std(), rtol=1e-13)
  # The library's own log prior and likelihood agree with SciPy too.
  assert_allclose(_f(model.log_prior(t)), stats.beta.logpdf(t, a, b), rtol=1e-12)
  assert_allclose(float(model.log_likelihood(0.3, X_BIN)),
                  stats.binom.logpmf(k, n, 0.3) - np.log(special.comb(n, k)), rtol=1e-13)


@pytest.mark.parametrize("a,b", BETA_PRIORS)
def test_beta_bernoulli_map_and_mle_are_numerical_argmaxes(a, b):
  model = BetaBernoulli(a, b)
  k, n = X_BIN.sum(), len(X_BIN)
  neg_log_joint = lambda t: -(stats.beta.logpdf(t, a, b) + stats.binom.logpmf(k, n, t))
  res = optimize.minimize_scalar(neg_log_joint, bounds=(1e-9, 1 - 1e-9), method="bounded",
                                 options=dict(xatol=1e-12))
  assert_allclose(float(model.map(X_BIN)), res.x, atol=1e-7)
  assert_allclose(float(model.map(X_BIN)), (k + a - 1) / (n + a + b - 2), rtol=1e-14)
  res = optimize.minimize_scalar(lambda t: -stats.binom.logpmf(k, n, t), bounds=(1e-9, 1 - 1e-9),
                                 method="bounded", options=dict(xatol=1e-12))
  assert_allclose(float(model.mle(X_BIN)), res.x, atol=1e-7)


def test_beta_bernoulli_map_edge_conventions_and_infinite_plugin_loss():
  empty = np.zeros(0, np.int32)
  assert float(BetaBernoulli(1.0, 1.0).map(empty)) == 0.5          # flat: every point a mode
  assert float(BetaBernoulli(0.5, 3.0).map(empty)) == 0.0          # density diverges at 0
  assert float(BetaBernoulli(3.0, 1.0).map(empty)) == 1.0
  assert float(BetaBernoulli(0.5, 0.5).map(np.array([1]))) == 1.0  # Beta(1.5, 0.5)
  assert np.isnan(float(BetaBernoulli(0.5, 0.5).mode()))           # modes at 0 and 1
  # No data: the posterior is the prior and the evidence is 1.
  assert float(BetaBernoulli(2.0, 3.0).log_evidence(empty)) == 0.0
  assert_allclose(_f(BetaBernoulli(2.0, 3.0).posterior_predictive_log_prob(empty, np.array([1, 0]))),
                  np.log([0.4, 0.6]), rtol=1e-15)
  # The MLE after only zeros gives the unseen outcome probability 0: log-loss +inf, no NaN.
  model = BetaBernoulli(2.0, 2.0)
  theta = model.mle(np.zeros(3, np.int32))
  assert float(theta) == 0.0
  assert _f(model.plugin_log_prob(theta, np.array([0, 1]))).tolist() == [0.0, -np.inf]
  assert np.all(np.isfinite(_f(model.plugin_log_prob(model.map(np.zeros(3)), np.array([0, 1])))))


# ----------------------------------------------------------------------------
# Dirichlet-Categorical.
# ----------------------------------------------------------------------------


def test_dirichlet_categorical_evidence_closed_form_and_dblquad():
  model = DirichletCategorical(jnp.asarray(ALPHA))
  counts = np.bincount(LABELS, minlength=3)
  assert_allclose(_f(model.counts(LABELS)), counts)
  got = float(model.log_evidence(LABELS))
  post = ALPHA + counts
  closed = (special.gammaln(ALPHA.sum()) - special.gammaln(post.sum())
            + np.sum(special.gammaln(post) - special.gammaln(ALPHA)))
  assert_allclose(got, closed, rtol=1e-13)
  evidence = _simplex_integral(
      lambda *t: np.exp(_dirichlet_log_density(t, ALPHA) + np.sum(counts * np.log(t))))
  assert_allclose(got, np.log(evidence), rtol=1e-9)


@pytest.mark.slow
def test_dirichlet_categorical_posterior_and_predictive_match_scipy():
  model = DirichletCategorical(jnp.asarray(ALPHA))
  counts = np.bincount(LABELS, minlength=3)
  post = model.posterior(LABELS)
  assert_allclose(_f(post.alpha), ALPHA + counts, rtol=1e-15)
  rng = np.random.default_rng(0)
  thetas = rng.dirichlet([3.0, 3.0, 3.0], size=5)
  for theta in thetas:  # p(theta|X) = p(X|theta) p(theta) / p(X), with scipy's densities
    bayes_rule = (stats.dirichlet.logpdf(theta, ALPHA) + np.sum(counts * np.log(theta))
                  - float(model.log_evidence(LABELS)))
    assert_allclose(stats.dirichlet.logpdf(theta, ALPHA + counts), bayes_rule, rtol=1e-12)
    assert_allclose(float(model.log_prior(jnp.asarray(theta))),
                    stats.dirichlet.logpdf(theta, ALPHA), rtol=1e-12)
  assert_allclose(_f(post.mean()), stats.dirichlet.mean(ALPHA + counts), rtol=1e-14)
  assert_allclose(_f(model.posterior_std(LABELS)) ** 2, stats.dirichlet.var(ALPHA + counts),
                  rtol=1e-13)
  pred = np.exp(_f(model.posterior_predictive_log_prob(LABELS, np.arange(3))))
  assert_allclose(pred.sum(), 1.0, rtol=1e-14)
  assert_allclose(pred, stats.dirichlet.mean(ALPHA + counts), rtol=1e-14)
  # p(x = 0 | X) = int theta_0 p(X|theta) p(theta) dtheta / p(X), by quadrature.
  joint = lambda *t: np.exp(_dirichlet_log_density(t, ALPHA) + np.sum(counts * np.log(t)))
  p0 = _simplex_integral(lambda *t: t[0] * joint(*t)) / _simplex_integral(joint)
  assert_allclose(pred[0], p0, rtol=1e-9)
  log_comb = special.gammaln(len(LABELS) + 1) - np.sum(special.gammaln(counts + 1))
  theta = np.array([0.5, 0.2, 0.3])
  assert_allclose(float(model.log_likelihood(jnp.asarray(theta), LABELS)) + log_comb,
                  stats.multinomial.logpmf(counts, len(LABELS), theta), rtol=1e-13)


def test_dirichlet_categorical_map_and_mle_are_numerical_argmaxes():
  model = DirichletCategorical(jnp.asarray(ALPHA))
  counts = np.bincount(LABELS, minlength=3)

  def argmax(log_prior):
    def neg(z):
      theta = special.softmax(np.append(z, 0.0))
      return -(log_prior(theta) + np.sum(counts * np.log(theta)))
    res = optimize.minimize(neg, np.zeros(2), method="BFGS", options=dict(gtol=1e-11))
    return special.softmax(np.append(res.x, 0.0))

  assert_allclose(_f(model.map(LABELS)), argmax(lambda t: stats.dirichlet.logpdf(t, ALPHA)),
                  atol=1e-6)
  n = len(LABELS)
  assert_allclose(_f(model.map(LABELS)), (counts + ALPHA - 1) / (n + ALPHA.sum() - 3), rtol=1e-14)
  assert_allclose(_f(model.mle(LABELS)), argmax(lambda t: 0.0), atol=1e-6)
  assert_allclose(_f(model.mle(LABELS)), counts / n, rtol=1e-15)


def test_dirichlet_map_edge_conventions():
  mode = lambda alpha: _f(DirichletCategorical(jnp.asarray(alpha)).mode())
  assert_allclose(mode([1.0, 1.0, 1.0]), [1 / 3] * 3, rtol=1e-15)
  assert_allclose(mode([0.5, 3.0, 3.0]), [0.0, 0.5, 0.5], rtol=1e-15)
  assert_allclose(mode([0.5, 1.0, 1.0]), [0.0, 0.5, 0.5], rtol=1e-15)
  assert np.all(np.isnan(mode([0.5, 0.5, 0.9])))
  # Beta(a, b) is Dir(b, a) on (1 - theta, theta): the same conventions.
  for a, b in [(0.5, 3.0), (1.0, 1.0), (3.0, 0.2), (2.5, 1.5)]:
    assert float(BetaBernoulli(a, b).mode()) == mode([b, a])[1]


# ----------------------------------------------------------------------------
# Normal-Normal (known variance).
# ----------------------------------------------------------------------------


def _normal_joint(mu):
  return np.exp(stats.norm.logpdf(mu, MU0, np.sqrt(TAU2))
                + np.sum(stats.norm.logpdf(X_REAL, mu, np.sqrt(SIGMA2))))


def test_normal_normal_evidence_matches_full_covariance_and_quadrature():
  model = NormalNormal(MU0, TAU2, SIGMA2)
  n = len(X_REAL)
  cov = SIGMA2 * np.eye(n) + TAU2 * np.ones((n, n))
  got = float(model.log_evidence(X_REAL))
  assert_allclose(got, stats.multivariate_normal.logpdf(X_REAL, MU0 * np.ones(n), cov),
                  rtol=1e-12)
  evidence = integrate.quad(_normal_joint, -30, 30, points=[X_REAL.mean()], epsabs=0,
                            epsrel=1e-13, limit=200)[0]
  assert_allclose(got, np.log(evidence), rtol=1e-10)
  assert float(model.log_evidence(np.zeros(0))) == 0.0
  # Far from the prior mean (large xbar - mu0) the O(N) form stays exact.
  far = X_REAL + 1e4
  assert_allclose(float(model.log_evidence(far)),
                  stats.multivariate_normal.logpdf(far, MU0 * np.ones(n), cov), rtol=1e-12)


@pytest.mark.slow
def test_normal_normal_posterior_and_predictive_by_quadrature():
  model = NormalNormal(MU0, TAU2, SIGMA2)
  post = model.posterior(X_REAL)
  n = len(X_REAL)
  precision = 1 / TAU2 + n / SIGMA2
  assert_allclose(float(post.tau2), 1 / precision, rtol=1e-15)
  assert_allclose(float(post.mu0), (MU0 / TAU2 + X_REAL.sum() / SIGMA2) / precision, rtol=1e-14)
  assert float(post.sigma2) == SIGMA2
  mus = np.linspace(0.5, 2.0, 7)
  log_ev = float(model.log_evidence(X_REAL))
  bayes_rule = np.log([_normal_joint(m) for m in mus]) - log_ev
  assert_allclose(stats.norm.logpdf(mus, float(post.mu0), np.sqrt(float(post.tau2))), bayes_rule,
                  rtol=1e-12, atol=1e-13)
  assert_allclose(float(model.posterior_std(X_REAL)), np.sqrt(1 / precision), rtol=1e-15)
  x_new = np.array([-1.0, 0.7, 2.5])
  got = np.exp(_f(model.posterior_predictive_log_prob(X_REAL, x_new)))
  evidence = np.exp(log_ev)
  for value, x in zip(got, x_new):
    ref = integrate.quad(lambda m: stats.norm.pdf(x, m, np.sqrt(SIGMA2)) * _normal_joint(m),
                         -30, 30, points=[X_REAL.mean()], epsabs=0, epsrel=1e-13, limit=200)[0]
    assert_allclose(value, ref / evidence, rtol=1e-9)
  # Both predictives are normalized densities over x.
  for log_prob in (lambda x: model.posterior_predictive_log_prob(X_REAL, np.array([x])),
                   lambda x: model.plugin_log_prob(1.3, np.array([x]))):
    mass = integrate.quad(lambda x: np.exp(float(log_prob(x)[0])), -np.inf, np.inf,
                          epsabs=0, epsrel=1e-12)[0]
    assert_allclose(mass, 1.0, rtol=1e-10)


def test_normal_normal_map_and_mle_are_numerical_argmaxes():
  model = NormalNormal(MU0, TAU2, SIGMA2)
  res = optimize.minimize_scalar(lambda m: -np.log(_normal_joint(m)), bracket=(0.0, 2.0),
                                 method="brent", options=dict(xtol=1e-12))
  assert_allclose(float(model.map(X_REAL)), res.x, atol=1e-7)
  assert float(model.map(X_REAL)) == float(model.posterior(X_REAL).mean())
  assert_allclose(float(model.mle(X_REAL)), X_REAL.mean(), rtol=1e-15)
  assert_allclose(float(model.log_prior(1.1)), stats.norm.logpdf(1.1, MU0, np.sqrt(TAU2)),
                  rtol=1e-14)
  assert_allclose(_f(model.plugin_log_prob(1.1, X_REAL)),
                  stats.norm.logpdf(X_REAL, 1.1, np.sqrt(SIGMA2)), rtol=1e-14)


# ----------------------------------------------------------------------------
# Identities shared by all three models.
# ----------------------------------------------------------------------------

MODELS = [
    (BetaBernoulli(2.5, 1.5), X_BIN[:6], 0.3),
    (DirichletCategorical(np.asarray(ALPHA)), LABELS[:6], np.array([0.2, 0.3, 0.5])),
    (NormalNormal(MU0, TAU2, SIGMA2), X_REAL[:6], 0.4),
]
MODEL_IDS = ["beta_bernoulli", "dirichlet_categorical", "normal_normal"]


@pytest.mark.parametrize("model,x,theta", MODELS, ids=MODEL_IDS)
def test_log_evidence_is_the_sum_of_sequential_predictives(model, x, theta):
  """Chain rule: log p(X) = sum_i log p(x_i | x_<i); sequential updating = batch updating."""
  del theta
  post, total = model, 0.0
  for i in range(len(x)):
    total += float(post.predictive_log_prob(x[i:i + 1])[0])
    post = post.posterior(x[i:i + 1])
  assert_allclose(float(model.log_evidence(x)), total, rtol=1e-13)
  batch = model.posterior(x)
  for got, want in zip(jax.tree.leaves(post), jax.tree.leaves(batch)):
    assert_allclose(_f(got), _f(want), rtol=1e-14)
  split = model.posterior(x[:2]).log_evidence(x[2:]) + model.log_evidence(x[:2])
  assert_allclose(float(split), float(model.log_evidence(x)), rtol=1e-13)


@pytest.mark.parametrize("model,x,theta", MODELS, ids=MODEL_IDS)
def test_everything_runs_under_jit(model, x, theta):
  x_new = x[::-1]

  def all_outputs(m, x, x_new, theta):
    return (m.mle(x), m.map(x), m.posterior(x), m.log_evidence(x), m.posterior_std(x),
            m.posterior_predictive_log_prob(x, x_new), m.plugin_log_prob(theta, x_new))

  eager = all_outputs(model, x, x_new, theta)
  jitted = jax.jit(all_outputs)(model, jnp.asarray(x), jnp.asarray(x_new), jnp.asarray(theta))
  assert jax.tree.structure(eager) == jax.tree.structure(jitted)
  for got, want in zip(jax.tree.leaves(jitted), jax.tree.leaves(eager)):
    assert_allclose(_f(got), _f(want), rtol=1e-13)


def test_entropy_and_sampling_match_scipy():
  assert_allclose(float(BetaBernoulli(1.0, 1.0).entropy(0.3)), stats.bernoulli.entropy(0.3),
                  rtol=1e-14)
  p = np.array([0.2, 0.3, 0.5])
  assert_allclose(float(DirichletCategorical(np.ones(3)).entropy(p)), stats.entropy(p), rtol=1e-14)
  assert_allclose(float(NormalNormal(0.0, 1.0, SIGMA2).entropy()),
                  stats.norm.entropy(scale=np.sqrt(SIGMA2)), rtol=1e-14)
  key = jax.random.key(0)
  xb = np.asarray(BetaBernoulli(1.0, 1.0).sample(key, 0.3, (4000,)))
  assert set(np.unique(xb)) <= {0, 1} and abs(xb.mean() - 0.3) < 4 * np.sqrt(0.21 / 4000)
  xc = np.asarray(DirichletCategorical(np.ones(3)).sample(key, p, (2, 3000)))
  assert xc.shape == (2, 3000) and set(np.unique(xc)) == {0, 1, 2}


# ----------------------------------------------------------------------------
# Models compared by their evidence: the Bayes factor of a point null.
# ----------------------------------------------------------------------------


def _coin_log_evidence_by_quad(k, n, a, b):
  """log int theta^k (1 - theta)^(n - k) Beta(theta | a, b) d theta, scaled at its peak."""
  log_f = lambda t: special.xlogy(k, t) + special.xlog1py(n - k, -t) + stats.beta(a, b).logpdf(t)
  grid = np.linspace(1e-9, 1 - 1e-9, 20001)
  peak_at = grid[np.argmax(log_f(grid))]
  value, _ = integrate.quad(lambda t: np.exp(log_f(t) - log_f(peak_at)), 0.0, 1.0,
                            points=[peak_at], epsabs=0.0, epsrel=1e-12, limit=200)
  return log_f(peak_at) + np.log(value)


def _flips(n, theta):
  return np.asarray(np.random.default_rng(n).uniform(size=n) < theta, np.int32)


@pytest.mark.slow
@pytest.mark.parametrize("a,b", BETA_PRIORS)
@pytest.mark.parametrize("n,theta", [(12, 0.5), (300, 0.62), (5000, 0.51)])
def test_fair_coin_bayes_factor_matches_quadrature(a, b, n, theta):
  """log BF_01 = log p(X | 1/2) - log int p(X | theta) Beta(theta | a, b) d theta, the
  integral by scipy.integrate.quad (scaled: unscaled, it underflows for large n)."""
  x = _flips(n, theta)
  want = n * np.log(0.5) - _coin_log_evidence_by_quad(int(x.sum()), n, a, b)
  assert_allclose(float(log_bayes_factor(BetaBernoulli(a, b), 0.5, x)), want,
                  rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("a,b", BETA_PRIORS)
def test_fair_coin_bayes_factor_matches_scipys_beta_binomial(a, b):
  """Per sequence: p(X | H1) = BetaBinomial(k | n, a, b) / C(n, k) (SciPy); 0 at n = 0. The
  difference of two O(n) terms: absolute tolerance ~ n eps."""
  model = BetaBernoulli(a, b)
  assert float(log_bayes_factor(model, 0.5, np.zeros(0, np.int32))) == 0.0
  for n, theta in [(1, 0.5), (40, 0.3), (5000, 0.51)]:
    x = _flips(n, theta)
    k = int(x.sum())
    log_comb = special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)
    per_sequence = stats.betabinom(n, a, b).logpmf(k) - log_comb
    assert_allclose(float(log_bayes_factor(model, 0.5, x)), n * np.log(0.5) - per_sequence,
                    rtol=0, atol=1e-13 * n + 1e-12)


def test_bayes_factor_of_the_other_models_matches_scipy():
  """Normal: N(x | mu0 1, sigma2 I) over N(x | mu0 1, sigma2 I + tau2 1 1^T). Categorical: the
  uniform theta0 over SciPy's Dirichlet-multinomial (per sequence)."""
  n = len(X_REAL)
  want = (stats.multivariate_normal(np.full(n, MU0), SIGMA2 * np.eye(n)).logpdf(X_REAL)
          - stats.multivariate_normal(np.full(n, MU0), SIGMA2 * np.eye(n)
                                      + TAU2 * np.ones((n, n))).logpdf(X_REAL))
  assert_allclose(float(log_bayes_factor(NormalNormal(MU0, TAU2, SIGMA2), MU0, X_REAL)), want,
                  rtol=1e-12)
  counts = np.bincount(LABELS, minlength=3)
  coefficient = special.gammaln(len(LABELS) + 1) - special.gammaln(counts + 1).sum()
  want = (len(LABELS) * np.log(1 / 3)
          - (stats.dirichlet_multinomial(ALPHA, len(LABELS)).logpmf(counts) - coefficient))
  got = float(log_bayes_factor(DirichletCategorical(ALPHA), np.full(3, 1 / 3), LABELS))
  assert_allclose(got, want, rtol=1e-12)


@pytest.mark.slow
def test_bayes_factor_rates_match_the_laplace_approximation():
  """Averaged exactly over k ~ Binomial(n, theta*) (SciPy weights): E log BF_01 -> the Laplace
  value -n KL(theta* || 1/2) + log(n / (2 pi theta*(1 - theta*)))/2 - log p(theta*) - 1/2
  under Beta(1, 1), to O(1/n); the fair coin's grows like log(n)/2."""
  model = BetaBernoulli(1.0, 1.0)
  log_bf = jax.jit(jax.vmap(lambda x: log_bayes_factor(model, 0.5, x)))
  for theta in (0.5, 0.6):
    kl = theta * np.log(2 * theta) + (1 - theta) * np.log(2 * (1 - theta))
    for n in (1000, 4000):
      k = np.arange(n + 1)
      flips = (np.arange(n)[None, :] < k[:, None]).astype(np.int32)   # one sequence per k
      expected = stats.binom(n, theta).pmf(k) @ np.asarray(log_bf(flips))
      laplace = -n * kl + 0.5 * np.log(n / (2 * np.pi * theta * (1 - theta))) - 0.5
      assert abs(expected - laplace) < 2 / n, (theta, n, expected, laplace)   # ~1/n here


# ----------------------------------------------------------------------------
# Validation at the public boundary.
# ----------------------------------------------------------------------------

BAD_CALLS = {
    "bernoulli value 2": lambda: BetaBernoulli(2.0, 2.0).posterior(np.array([0, 1, 2])),
    "bernoulli rank 2": lambda: BetaBernoulli(2.0, 2.0).log_evidence(np.array([[0, 1]])),
    "bernoulli new 0.5": lambda: BetaBernoulli(2.0, 2.0).posterior_predictive_log_prob(
        np.array([1]), np.array([0.5])),
    "a = 0": lambda: BetaBernoulli(0.0, 2.0).log_evidence(np.array([0, 1])),
    "b < 0": lambda: BetaBernoulli(2.0, -1.0).posterior(np.array([1])),
    "mle of no data": lambda: BetaBernoulli(2.0, 2.0).mle(np.zeros(0)),
    "theta > 1": lambda: BetaBernoulli(2.0, 2.0).plugin_log_prob(1.5, np.array([1])),
    "label = K": lambda: DirichletCategorical(np.ones(3)).posterior(np.array([0, 3])),
    "label < 0": lambda: DirichletCategorical(np.ones(3)).log_evidence(np.array([-1, 0])),
    "float labels": lambda: DirichletCategorical(np.ones(3)).posterior(np.array([0.0, 1.0])),
    "alpha has 0": lambda: DirichletCategorical(np.array([1.0, 0.0, 1.0])).log_evidence(
        np.array([0])),
    "alpha a list": lambda: DirichletCategorical([1.0, 1.0]).posterior(np.array([0])),
    "categorical mle of no data": lambda: DirichletCategorical(np.ones(3)).mle(
        np.zeros(0, np.int32)),
    "sigma2 = 0": lambda: NormalNormal(0.0, 1.0, 0.0).posterior(np.array([1.0])),
    "tau2 < 0": lambda: NormalNormal(0.0, -1.0, 1.0).log_evidence(np.array([1.0])),
    "mu0 nan": lambda: NormalNormal(np.nan, 1.0, 1.0).log_evidence(np.array([1.0])),
    "x inf": lambda: NormalNormal(0.0, 1.0, 1.0).posterior(np.array([1.0, np.inf])),
    "bayes factor theta0 > 1": lambda: log_bayes_factor(BetaBernoulli(1.0, 1.0), 1.5,
                                                        np.array([1])),
    "bayes factor x = 2": lambda: log_bayes_factor(BetaBernoulli(1.0, 1.0), 0.5, np.array([2])),
    "bayes factor of a non-model": lambda: log_bayes_factor((1.0, 1.0), 0.5, np.array([1])),
}


@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_bad_inputs_raise_user_error(name):
  with pytest.raises(UserError):
    BAD_CALLS[name]()


def test_user_error_messages_say_what_and_how():
  with pytest.raises(UserError, match=r"only 0 and 1.*\[2\]"):
    BetaBernoulli(2.0, 2.0).posterior(np.array([0, 1, 2]))
  with pytest.raises(UserError, match=r"outside \[0, 3\).*\[3\]"):
    DirichletCategorical(np.ones(3)).posterior(np.array([0, 3]))
  with pytest.raises(UserError, match=r"sigma2 must be a positive finite number \(a hyperparameter"):
    NormalNormal(0.0, 1.0, -2.0).map(np.array([1.0]))
