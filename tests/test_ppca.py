"""Probabilistic PCA, checked against scikit-learn, SciPy and NumPy in float64.

scikit-learn's ``PCA.score`` is the PPCA log-likelihood too, but its
covariance is built from ``explained_variance_`` (ddof=1), so it equals our
maximum-likelihood covariance C (ddof=0) times c = N / (N - 1) exactly. Hence
(both pinned below to ~1e-12):

* our log_prob with (W sqrt(c), c sigma^2) reproduces ``sk.score`` exactly;
* at the MLE, mean log p(x) = -1/2 (D log 2 pi + log|C| + D) and sklearn's
  score = -1/2 (D log 2 pi + log|C| + D log c + D / c), so ours minus
  sklearn's is D/2 (log c + 1/c - 1) ~ D / (4 N^2) > 0.
"""

import jax
import jax.numpy as jnp
import numpy as np
from numpy.testing import assert_allclose
import pytest
from scipy import stats
from sklearn.decomposition import PCA

from vae_jax.classical import ppca
from vae_jax.errors import UserError

N, D, M = 400, 8, 3


@pytest.fixture(autouse=True)
def x64():
  with jax.enable_x64(True):
    yield


def _true_params(seed=0, d=D, m=M, sigma2=0.25):
  rng = np.random.default_rng(seed)
  return ppca.PPCAParams(mean=jnp.asarray(rng.normal(size=d)),
                         W=jnp.asarray(2.0 * rng.normal(size=(d, m))),
                         sigma2=jnp.asarray(sigma2))


def _data(seed=0, n=N):
  rng = np.random.default_rng(seed)
  p = _true_params(seed)
  z = rng.normal(size=(n, M))
  return z @ np.asarray(p.W).T + np.asarray(p.mean) + np.sqrt(0.25) * rng.normal(size=(n, D))


def _cov(params):
  w = np.asarray(params.W)
  return w @ w.T + float(params.sigma2) * np.eye(w.shape[0])


# ----------------------------------------------------------------------------
# Closed-form fit.
# ----------------------------------------------------------------------------


def test_fit_matches_sklearn_pca_score():
  x = _data()
  params = ppca.fit(x, M)
  sk = PCA(n_components=M, svd_solver="full").fit(x)
  ours = float(np.mean(ppca.log_prob(params, x)))
  c = N / (N - 1)
  # The parameters are sklearn's up to the ddof factor c.
  assert_allclose(float(params.sigma2) * c, sk.noise_variance_, rtol=1e-12)
  assert_allclose(_cov(params) * c, sk.get_covariance(), rtol=0, atol=1e-11)
  assert_allclose(params.mean, sk.mean_, rtol=0, atol=1e-13)
  # Exactly sklearn's score with sklearn's (ddof=1) covariance.
  rescaled = params.replace(W=params.W * np.sqrt(c), sigma2=params.sigma2 * c)
  assert_allclose(np.mean(ppca.log_prob(rescaled, x)), sk.score(x), rtol=0, atol=1e-11)
  # And the MLE's own value differs from sklearn's by exactly D/2 (log c + 1/c - 1).
  assert_allclose(ours - sk.score(x), 0.5 * D * (np.log(c) + 1 / c - 1), rtol=1e-6, atol=1e-13)
  assert 0 < ours - sk.score(x) < 1e-4
  # Closed form at the MLE: -1/2 (D log 2 pi + sum log lambda_top + (D-M) log sigma^2 + D).
  evals = np.sort(np.linalg.eigvalsh(np.cov(x.T, bias=True)))[::-1]
  expected = -0.5 * (D * np.log(2 * np.pi) + np.sum(np.log(evals[:M]))
                     + (D - M) * np.log(np.mean(evals[M:])) + D)
  assert_allclose(ours, expected, rtol=1e-12)


def test_fit_is_the_maximum_likelihood():
  """Perturbing the closed-form solution in any direction lowers the likelihood."""
  x = _data(seed=1)
  params = ppca.fit(x, M)
  best = float(np.mean(ppca.log_prob(params, x)))
  rng = np.random.default_rng(1)
  for _ in range(5):
    w = params.W + 1e-2 * rng.normal(size=params.W.shape)
    for p in (params.replace(W=w), params.replace(sigma2=params.sigma2 * 1.01),
              params.replace(mean=params.mean + 1e-2 * rng.normal(size=D))):
      assert np.mean(ppca.log_prob(p, x)) < best


def test_log_prob_matches_scipy():
  x = _data(seed=2, n=50)
  for params in (_true_params(seed=3), ppca.fit(x, M)):
    expected = stats.multivariate_normal(np.asarray(params.mean), _cov(params)).logpdf(x)
    got = ppca.log_prob(params, x)
    assert got.shape == (50,)
    assert_allclose(got, expected, rtol=1e-10)
    assert_allclose(ppca.log_prob(params, jnp.asarray(x)), expected, rtol=1e-10)


# ----------------------------------------------------------------------------
# The posterior.
# ----------------------------------------------------------------------------


def test_posterior_matches_textbook_formula_and_gaussian_conditioning():
  x = _data(seed=4, n=30)
  params = _true_params(seed=5)
  mean, cov = ppca.posterior(params, x)
  assert mean.shape == (30, M) and cov.shape == (M, M)
  w, mu, s2 = np.asarray(params.W), np.asarray(params.mean), float(params.sigma2)
  # PRML 12.42: p(z|x) = N(M^-1 W^T (x - mu), sigma^2 M^-1), M = W^T W + sigma^2 I.
  m_inv = np.linalg.inv(w.T @ w + s2 * np.eye(M))
  assert_allclose(mean, (x - mu) @ (m_inv @ w.T).T, rtol=1e-10, atol=1e-12)
  assert_allclose(cov, s2 * m_inv, rtol=1e-10, atol=1e-14)
  # Conditioning the joint N([z; x]) = N([0; mu], [[I, W^T], [W, C]]) on x.
  c_inv = np.linalg.inv(_cov(params))
  assert_allclose(mean, (x - mu) @ (w.T @ c_inv).T, rtol=1e-9, atol=1e-11)
  assert_allclose(cov, np.eye(M) - w.T @ c_inv @ w, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------
# EM.
# ----------------------------------------------------------------------------


@pytest.mark.slow
def test_em_is_monotone_and_converges_to_the_closed_form():
  x = _data(seed=6)
  closed = ppca.fit(x, M)
  best = float(np.mean(ppca.log_prob(closed, x)))
  for seed in range(2):
    params, history = ppca.em(x, M, jax.random.key(seed), num_iters=1000)
    assert history.shape == (1001,)
    assert np.all(np.diff(history) >= -1e-10), np.diff(history).min()
    assert history[-1] - history[0] > 1.0
    assert_allclose(history[-1], np.mean(ppca.log_prob(params, x)), rtol=0, atol=1e-12)
    assert history[-1] <= best + 1e-10
    assert_allclose(history[-1], best, rtol=0, atol=1e-6)
    assert_allclose(params.sigma2, closed.sigma2, rtol=1e-5)
    assert_allclose(params.W @ params.W.T, closed.W @ closed.W.T, rtol=0, atol=1e-2)
    assert_allclose(params.mean, closed.mean, rtol=0, atol=1e-12)


@pytest.mark.slow
def test_pca_em_recovers_the_principal_subspace():
  x = _data(seed=7)
  sk = PCA(n_components=M, svd_solver="full").fit(x)
  projector = sk.components_.T @ sk.components_
  for seed in range(2):
    q = np.asarray(ppca.pca_em(x, M, jax.random.key(seed), num_iters=50))
    assert q.shape == (D, M)
    assert_allclose(q.T @ q, np.eye(M), rtol=0, atol=1e-12)
    assert_allclose(q @ q.T, projector, rtol=0, atol=1e-8)
  # Not vacuous: a random M-dimensional subspace is far from it.
  r, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(D, M)))
  assert np.abs(r @ r.T - projector).max() > 0.1


def test_fit_recovers_the_generating_model_up_to_rotation():
  true = _true_params(seed=8, sigma2=0.5)
  n = 50_000
  x = ppca.sample(jax.random.key(0), true, n)
  assert x.shape == (n, D)
  params = ppca.fit(x, M)
  wwt, wwt_true = np.asarray(params.W @ params.W.T), np.asarray(true.W @ true.W.T)
  # W itself is identifiable only up to rotation; W W^T is not.
  assert np.linalg.norm(wwt - wwt_true) / np.linalg.norm(wwt_true) < 0.03
  assert_allclose(params.sigma2, true.sigma2, rtol=0.03)
  assert_allclose(params.mean, true.mean, rtol=0, atol=4 * np.sqrt(_cov(true).max() / n))


# ----------------------------------------------------------------------------
# The ELBO identity.
# ----------------------------------------------------------------------------


def test_elbo_identity():
  x = jnp.asarray(_data(seed=9, n=20))
  params = ppca.fit(x, M)
  rng = np.random.default_rng(9)
  q_mean = jnp.asarray(rng.normal(size=(20, M)))
  a = rng.normal(size=(20, M, M))
  per_example_cov = jnp.asarray(a @ np.swapaxes(a, 1, 2) + 0.1 * np.eye(M))
  shared_cov = per_example_cov[0]
  for q_cov in (shared_cov, per_example_cov):
    out = ppca.elbo_decomposition(params, x, q_mean, q_cov)
    assert out["elbo"].shape == out["kl"].shape == out["log_px"].shape == (20,)
    assert_allclose(out["log_px"], out["elbo"] + out["kl"], rtol=0, atol=1e-10)
    assert np.all(np.asarray(out["kl"]) > 1e-3)
  post_mean, post_cov = ppca.posterior(params, x)
  out = ppca.elbo_decomposition(params, x, post_mean, post_cov)
  assert_allclose(out["kl"], 0.0, rtol=0, atol=1e-10)
  assert_allclose(out["elbo"], out["log_px"], rtol=0, atol=1e-10)
  assert_allclose(out["log_px"], stats.multivariate_normal(
      np.asarray(params.mean), _cov(params)).logpdf(np.asarray(x)), rtol=1e-10)


def test_elbo_kl_matches_scipy_gaussian_kl():
  """KL(q || p(z|x)) against the Gaussian KL from entropies computed by scipy."""
  x = jnp.asarray(_data(seed=10, n=5))
  params = _true_params(seed=10)
  rng = np.random.default_rng(10)
  q_mean = rng.normal(size=(5, M))
  a = rng.normal(size=(M, M))
  q_cov = a @ a.T + 0.2 * np.eye(M)
  out = ppca.elbo_decomposition(params, x, jnp.asarray(q_mean), jnp.asarray(q_cov))
  post_mean, post_cov = (np.asarray(t) for t in ppca.posterior(params, x))
  for n in range(5):
    # KL = -H[q] - E_q log p(z|x); E_q log N(z | m, S) in closed form.
    diff = q_mean[n] - post_mean[n]
    s_inv = np.linalg.inv(post_cov)
    cross = stats.multivariate_normal(post_mean[n], post_cov).logpdf(post_mean[n]) - 0.5 * (
        np.trace(s_inv @ q_cov) + diff @ s_inv @ diff)
    kl = -stats.multivariate_normal(q_mean[n], q_cov).entropy() - cross
    assert_allclose(out["kl"][n], kl, rtol=1e-10)


# ----------------------------------------------------------------------------
# dtypes and bad input.
# ----------------------------------------------------------------------------


def test_float32_input():
  x = _data(seed=11, n=100).astype(np.float32)
  params = ppca.fit(x, M)
  assert params.W.dtype == params.mean.dtype == params.sigma2.dtype == jnp.float32
  lp = ppca.log_prob(params, x)
  assert lp.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(lp)))
  expected = np.mean(ppca.log_prob(ppca.fit(x.astype(np.float64), M), x.astype(np.float64)))
  assert_allclose(np.mean(lp), expected, rtol=1e-5)


@pytest.mark.parametrize("fn", ["fit", "em", "pca_em"])
def test_bad_input_raises_user_error(fn):
  x = _data(n=20)
  call = {"fit": lambda x, m: ppca.fit(x, m),
          "em": lambda x, m: ppca.em(x, m, jax.random.key(0), num_iters=2),
          "pca_em": lambda x, m: ppca.pca_em(x, m, jax.random.key(0), num_iters=2)}[fn]
  bad_x = [np.where(np.arange(x.size).reshape(x.shape) == 3, np.nan, x),
           np.where(np.arange(x.size).reshape(x.shape) == 3, np.inf, x),
           x[:, 0], x[None], x[:0], x.astype(np.int32)]
  for bx in bad_x:
    with pytest.raises(UserError):
      call(bx, 2)
  for m in (0, -1, D, D + 1, 2.0, "2"):
    with pytest.raises(UserError):
      call(x, m)
  if fn == "fit":
    ppca.fit(x, D - 1)                             # the largest valid latent_dim works


# ----------------------------------------------------------------------------
# Choosing M by the evidence (Minka, 2000) against scikit-learn.
# ----------------------------------------------------------------------------


def _ppca_data(n, d, m, seed, noise=0.5):
  """N draws of a PPCA with true latent dimension m (NumPy only)."""
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(d, m)) * rng.uniform(1.0, 3.0, size=m)
  return rng.normal(size=(n, m)) @ w.T + noise * rng.normal(size=(n, d)) + rng.normal(size=d)


# (N, D, true M); the larger ones (and the digits) compile and loop more: slow tier.
KNOWN_M = [pytest.param((400, 8, 3), id="(400, 8, 3)"),
           pytest.param((300, 12, 1), id="(300, 12, 1)"),
           pytest.param((500, 20, 5), marks=pytest.mark.slow, id="(500, 20, 5)"),
           pytest.param((2000, 40, 11), marks=pytest.mark.slow, id="(2000, 40, 11)")]
DIGITS = pytest.param("digits", marks=pytest.mark.slow, id="digits")
RANK_4 = pytest.param("rank 4 of 10", marks=pytest.mark.slow, id="rank 4 of 10")


def _digits():
  from vae_jax.data import load_arrays  # pylint: disable=g-import-not-at-top
  return load_arrays("digits").train_x.astype(np.float64)              # 3 constant pixels


def _sklearn_curve(spectrum, n):
  """scikit-learn's log-likelihood of every rank (what PCA(n_components="mle") maximizes)."""
  from sklearn.decomposition._pca import _assess_dimension  # pylint: disable=g-import-not-at-top
  lam = np.asarray(spectrum, np.float64)
  return np.array([_assess_dimension(lam, m, n) for m in range(1, len(lam))])


@pytest.mark.parametrize("data", [*KNOWN_M, DIGITS])
def test_log_evidence_is_sklearns_assess_dimension_for_every_m(data):
  """Same eigenvalues: ours = sklearn's + the constant -N D/2 (log 2 pi + 1) it drops, at every
  M (and -inf at the same M). sklearn's own spectrum (ddof=1, c = N / (N - 1) times ours)
  lowers its value at every M by N D/2 log c (where v_M is not floored)."""
  x = _digits() if data == "digits" else _ppca_data(*data, seed=data[2])
  n, d = x.shape
  lam = np.asarray(ppca.spectrum(x))
  ours = np.asarray(ppca.log_evidence(lam, n))
  theirs = _sklearn_curve(lam, n)
  assert ours.shape == (d - 1,)
  assert np.array_equal(np.isfinite(ours), np.isfinite(theirs))
  assert np.all(ours[~np.isfinite(ours)] == -np.inf)
  finite = np.isfinite(ours)
  assert_allclose(ours[finite], theirs[finite] - n * d / 2 * (np.log(2 * np.pi) + 1), rtol=1e-12)
  if data == "digits":
    assert finite.sum() == 61                  # 3 pixels are constant: 61 directions remain

  sk_lam = PCA(svd_solver="full").fit(x).explained_variance_     # S / (N - 1), sklearn's SVD
  kept = lam > 1e-12
  assert_allclose(sk_lam[kept], lam[kept] * n / (n - 1), rtol=1e-9)
  theirs = _sklearn_curve(sk_lam, n)
  unfloored = finite & (np.cumsum(lam[::-1])[::-1][1:] / (d - np.arange(1, d)) > 1e-12)
  assert_allclose(ours[unfloored], theirs[unfloored] - n * d / 2 * (
      np.log(2 * np.pi) + 1 - np.log(n / (n - 1))), rtol=1e-10)


@pytest.mark.parametrize("data", [*KNOWN_M, DIGITS, RANK_4])
def test_choose_latent_dim_is_sklearns_pca_mle(data):
  """The same M as PCA(n_components="mle") on its own SVD; the true M where it is known."""
  if data == "digits":
    x, true_m = _digits(), 61                   # the span of the data: v_61 = 0, floored
  elif data == "rank 4 of 10":
    x, true_m = _ppca_data(200, 10, 4, seed=3, noise=0.0), 4   # noise-free: rank exactly 4
  else:
    x, true_m = _ppca_data(*data, seed=data[2]), data[2]
  chosen, evidence = ppca.choose_latent_dim(x)
  assert chosen == PCA(n_components="mle", svd_solver="full").fit(x).n_components_ == true_m
  assert int(np.argmax(np.asarray(evidence))) + 1 == chosen
  if data == "rank 4 of 10":                   # beyond the rank: no evidence, unbounded likelihood
    ll = np.asarray(ppca.max_log_likelihood(ppca.spectrum(x), len(x)))
    assert np.all(np.asarray(evidence)[4:] == -np.inf) and np.all(ll[3:] == np.inf)


@pytest.mark.parametrize("m", [1, 3, 6])
def test_max_log_likelihood_is_the_gaussian_log_density_at_the_mle(m):
  """sum_n log N(x_n | mean, W W^T + sigma^2 I) at Tipping & Bishop's MLE, built with NumPy's
  eigendecomposition and SciPy's density (not ppca.fit)."""
  x = _data(seed=4)
  n, d = x.shape
  evals, evecs = np.linalg.eigh(np.cov(x, rowvar=False, ddof=0))
  evals, evecs = evals[::-1], evecs[:, ::-1]
  sigma2 = evals[m:].mean()
  w = evecs[:, :m] * np.sqrt(evals[:m] - sigma2)
  want = stats.multivariate_normal(x.mean(0), w @ w.T + sigma2 * np.eye(d)).logpdf(x).sum()
  got = np.asarray(ppca.max_log_likelihood(ppca.spectrum(x), n))
  assert_allclose(got[m - 1], want, rtol=1e-11)
  assert np.all(np.diff(got) > 0)              # more directions never fit worse


def test_spectrum_is_numpys_covariance_eigenvalues():
  x = _data(seed=5)
  want = np.sort(np.linalg.eigvalsh(np.cov(x, rowvar=False, ddof=0)))[::-1]
  assert_allclose(np.asarray(ppca.spectrum(x)), want, rtol=1e-11)
  wide = _data(seed=5, n=5)                    # N <= D: zeros past N - 1
  lam = np.asarray(ppca.spectrum(wide))
  assert lam.shape == (D,) and np.all(lam[4:] < 1e-15) and np.all(lam[:4] > 1e-3)


@pytest.mark.parametrize("call,match", [
    (lambda: ppca.log_evidence(np.array([1.0, 2.0, 0.5]), 10), "descending"),
    (lambda: ppca.log_evidence(np.array([[2.0, 1.0]]), 10), "1-D array"),
    (lambda: ppca.log_evidence(np.array([2.0]), 10), "D >= 2"),
    (lambda: ppca.log_evidence(np.array([2.0, np.nan]), 10), "finite"),
    (lambda: ppca.log_evidence(np.array([2.0, 1.0]), 1), "num_samples"),
    (lambda: ppca.max_log_likelihood(np.array([2.0, 1.0]), 2.5), "num_samples"),
    (lambda: ppca.choose_latent_dim(np.ones((20, 4))), "no direction with variance"),
    (lambda: ppca.choose_latent_dim(np.ones((20, 1))), "D >= 2"),
    (lambda: ppca.choose_latent_dim(np.zeros((20, 4), np.int32)), "float"),
], ids=["ascending", "rank 2", "D = 1", "nan", "N = 1", "N float", "constant", "D = 1 data",
        "int data"])
def test_evidence_bad_input_is_one_user_error(call, match):
  with pytest.raises(UserError, match=match):
    call()
