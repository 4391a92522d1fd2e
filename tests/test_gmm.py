"""GMM and EM, checked against scikit-learn and SciPy in float64.

Iteration accounting (measured, then pinned below): scikit-learn's
``GaussianMixture(max_iter=T, tol=0)`` started from given parameters runs T
E-/M-step pairs, exactly like ``gmm.fit(max_iters=T, tol=0)``. So after it

* the fitted parameters agree,
* ``np.mean(gmm.log_prob(params, x)) == sk.score(x)`` (log-likelihood at theta_T),
* ``history[-1] == sk.lower_bound_`` (the last E-step's log-likelihood, at theta_{T-1}),
* ``gmm.fit(max_iters=T + 1).history[-1] == sk.score(x)``.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from numpy.testing import assert_allclose
import pytest
from scipy import special, stats
from sklearn.mixture import GaussianMixture

from vae_jax.classical import gmm
from vae_jax.errors import UserError

K, D = 3, 3
CTYPES = ("full", "diag", "spherical")
# Shapes and static options shared by most fits below, so jit compiles each once.
N_PER, ITERS = 40, 30


@pytest.fixture(autouse=True)
def x64():
  with jax.enable_x64(True):
    yield


def _blobs(seed=0, n_per=80, d=D):
  rng = np.random.default_rng(seed)
  centres = 3.0 * rng.normal(size=(K, d))
  scales = (0.6, 1.0, 1.5)
  return np.concatenate([c + s * rng.normal(size=(n_per, d)) for c, s in zip(centres, scales)])


def _init(ctype, d=D, seed=1):
  """A deliberately poor initialization, so EM has work to do."""
  rng = np.random.default_rng(seed)
  weights = np.array([0.2, 0.3, 0.5])
  means = 2.0 * rng.normal(size=(K, d))
  a = rng.normal(size=(K, d, d))
  full = a @ np.swapaxes(a, 1, 2) / d + np.eye(d)
  cov = {"full": full, "diag": 0.5 + rng.uniform(size=(K, d)),
         "spherical": 0.5 + rng.uniform(size=K)}[ctype]
  return weights, means, cov


def _params(weights, means, cov, ctype):
  return gmm.GMMParams(jnp.asarray(weights), jnp.asarray(means), jnp.asarray(cov), ctype)


def _scipy_joint(params, x):
  """log pi_k + log N(x | mu_k, Sigma_k) with scipy: [N, K]."""
  covs = np.asarray(gmm.full_covariances(params))
  return np.stack([np.log(w) + stats.multivariate_normal(m, c).logpdf(x)
                   for w, m, c in zip(np.asarray(params.weights), np.asarray(params.means), covs)],
                  axis=1)


def _sklearn(x, ctype, init, max_iter, reg_covar=1e-6):
  weights, means, cov = init
  prec = np.linalg.inv(cov) if ctype == "full" else 1.0 / cov
  sk = GaussianMixture(K, covariance_type=ctype, tol=0.0, max_iter=max_iter, reg_covar=reg_covar,
                       weights_init=weights, means_init=means, precisions_init=prec)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")          # ConvergenceWarning: tol=0 never "converges"
    return sk.fit(x)


# ----------------------------------------------------------------------------
# Against scikit-learn.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("ctype", CTYPES)
def test_em_matches_sklearn_from_the_same_init(ctype):
  x = _blobs(n_per=N_PER)
  init = _init(ctype)
  t = 5                                       # far from converged: iterations are distinguishable
  sk = _sklearn(x, ctype, init, max_iter=t)
  params, history = gmm.fit(jax.random.key(0), x, K, covariance_type=ctype, max_iters=t,
                            tol=0.0, init=init, reg_covar=1e-6)
  assert history.shape == (t,)
  assert_allclose(params.weights, sk.weights_, rtol=0, atol=1e-10)
  assert_allclose(params.means, sk.means_, rtol=0, atol=1e-10)
  assert_allclose(params.covariances, sk.covariances_, rtol=0, atol=1e-10)
  assert_allclose(np.mean(gmm.log_prob(params, x)), sk.score(x), rtol=0, atol=1e-10)
  assert_allclose(history[-1], sk.lower_bound_, rtol=0, atol=1e-10)
  # A longer run: its E-step t sees theta_t, so history[t] is sklearn's score
  # after t iterations ...
  _, long_history = gmm.fit(jax.random.key(0), x, K, covariance_type=ctype, max_iters=ITERS,
                            tol=0.0, init=init, reg_covar=1e-6)
  assert_allclose(long_history[:t], history, rtol=0, atol=1e-10)
  assert_allclose(long_history[t], sk.score(x), rtol=0, atol=1e-10)
  assert long_history[t] - history[-1] > 1e-4     # ... which the accounting can tell apart,
  # ... and its last entry is sklearn's score after ITERS - 1 iterations.
  sk_long = _sklearn(x, ctype, init, max_iter=ITERS - 1)
  assert_allclose(long_history[-1], sk_long.score(x), rtol=0, atol=1e-8)


@pytest.mark.slow
def test_cholesky_path_em_matches_sklearn():
  """Full covariances with D > 48 take the per-component Cholesky E- and M-steps."""
  d = gmm.EXPANDED_MAX_DIM + 2
  x = _blobs(seed=4, n_per=90, d=d)
  assert gmm._features(jnp.asarray(x), "full") is None
  init = _init("full", d=d, seed=5)
  sk = _sklearn(x, "full", init, max_iter=3, reg_covar=1e-3)
  params, history = gmm.fit(jax.random.key(0), x, K, covariance_type="full", max_iters=3,
                            tol=0.0, init=init, reg_covar=1e-3)
  assert_allclose(params.weights, sk.weights_, rtol=0, atol=1e-9)
  assert_allclose(params.means, sk.means_, rtol=0, atol=1e-9)
  assert_allclose(params.covariances, sk.covariances_, rtol=0, atol=1e-9)
  assert_allclose(np.mean(gmm.log_prob(params, x)), sk.score(x), rtol=1e-12)
  assert_allclose(history[-1], sk.lower_bound_, rtol=1e-12)


@pytest.mark.parametrize("ctype", CTYPES)
def test_bic_and_num_parameters_match_sklearn(ctype):
  x = _blobs(seed=6)
  sk = _sklearn(x, ctype, _init(ctype, seed=7), max_iter=10)
  params = _params(sk.weights_, sk.means_, sk.covariances_, ctype)
  assert gmm.num_parameters(params) == sk._n_parameters()
  assert_allclose(gmm.bic(params, x), sk.bic(x), rtol=1e-12)
  assert_allclose(gmm.bic(params, jnp.asarray(x)), sk.bic(x), rtol=1e-12)


@pytest.mark.parametrize("ctype,want", [("full", 4 * 6 + 12 + 3), ("diag", 4 * 3 + 12 + 3),
                                         ("spherical", 4 + 12 + 3)])
def test_num_parameters_counts_each_covariance_type(ctype, want):
  """K = 4, D = 3: 3 free weights, 12 means, and per component 6 (a symmetric 3 x 3), 3 or 1."""
  params = _params(np.full(4, 0.25), np.zeros((4, 3)),
                   {"full": np.tile(np.eye(3), (4, 1, 1)), "diag": np.ones((4, 3)),
                    "spherical": np.ones(4)}[ctype], ctype)
  assert gmm.num_parameters(params) == want
  x = _blobs(seed=2)[:50]
  want_bic = -2 * np.sum(special.logsumexp(_scipy_joint(params, x), axis=1)) + want * np.log(50)
  assert_allclose(gmm.bic(params, x), want_bic, rtol=1e-12)


def test_bic_of_data_with_other_columns_is_a_user_error():
  params = _params(*_init("full"), "full")
  with pytest.raises(UserError, match="x has 2 columns but the mixture has 3 dimensions"):
    gmm.bic(params, np.zeros((5, 2)))


def _sklearn_holding(params):
  """A GaussianMixture that holds our parameters (to score them with its own bic)."""
  cov = np.asarray(params.covariances)
  sk = GaussianMixture(params.num_components, covariance_type=params.covariance_type)
  sk.weights_, sk.means_ = np.asarray(params.weights), np.asarray(params.means)
  sk.covariances_ = cov
  sk.precisions_cholesky_ = (np.linalg.inv(np.linalg.cholesky(cov)).transpose(0, 2, 1)
                             if params.covariance_type == "full" else 1.0 / np.sqrt(cov))
  return sk


@pytest.mark.slow
@pytest.mark.parametrize("ctype", CTYPES)
def test_bic_chooses_the_true_k_and_agrees_with_sklearn_for_every_k(ctype):
  """Three spherical blobs: for K = 1..5 our BIC equals GaussianMixture.bic on scikit-learn's
  fit and on ours (1e-6 relative asked, 1e-10 held); each EM, scored by its own BIC, picks
  K = 3, and so does each one's held-out log-likelihood."""
  both = _blobs(seed=12, n_per=160)                   # the same three blobs, halved
  x, x_eval = both[::2], both[1::2]
  ks = range(1, 6)
  ours, theirs, held_out, sk_held_out = [], [], [], []
  for k in ks:
    params, _ = gmm.fit(jax.random.key(k), x, k, covariance_type=ctype, max_iters=200,
                        tol=1e-10, num_restarts=3)
    sk = GaussianMixture(k, covariance_type=ctype, n_init=3, tol=1e-10, max_iter=200,
                         random_state=k).fit(x)
    sk_params = _params(sk.weights_, sk.means_, sk.covariances_, ctype)
    assert_allclose(gmm.bic(sk_params, x), sk.bic(x), rtol=1e-10)
    assert_allclose(gmm.bic(params, x), _sklearn_holding(params).bic(x), rtol=1e-10)
    assert gmm.num_parameters(params) == sk._n_parameters()
    ours.append(gmm.bic(params, x))
    theirs.append(sk.bic(x))
    held_out.append(float(jnp.mean(gmm.log_prob(params, x_eval))))
    sk_held_out.append(sk.score(x_eval))
  # At K = 1 and the true K both EMs reach the one optimum (above it, local optima may differ).
  assert_allclose([ours[0], ours[K - 1]], [theirs[0], theirs[K - 1]], rtol=1e-6)
  assert ks[int(np.argmin(ours))] == ks[int(np.argmin(theirs))] == K
  assert ks[int(np.argmax(held_out))] == ks[int(np.argmax(sk_held_out))] == K


# ----------------------------------------------------------------------------
# Densities and the posterior against SciPy.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("ctype", CTYPES)
def test_log_prob_and_posterior_match_scipy(ctype):
  x = _blobs(seed=8, n_per=20)
  params = _params(*_init(ctype, seed=9), ctype)
  joint = _scipy_joint(params, x)
  log_px = special.logsumexp(joint, axis=1)
  assert_allclose(gmm.log_prob(params, x), log_px, rtol=1e-12)
  assert_allclose(gmm.log_prob(params, jnp.asarray(x)), log_px, rtol=1e-12)
  post = np.asarray(gmm.posterior(params, x))
  bayes = np.exp(joint) / np.sum(np.exp(joint), axis=1, keepdims=True)
  assert post.shape == (len(x), K)
  assert_allclose(post.sum(axis=1), 1.0, rtol=0, atol=1e-12)
  assert_allclose(post, bayes, rtol=0, atol=1e-12)


@pytest.mark.parametrize("d", [5, gmm.EXPANDED_MAX_DIM + 2])
@pytest.mark.slow
def test_expanded_and_cholesky_paths_agree_with_scipy(d):
  """log_prob takes the expanded (features) path for D <= 48 and the Cholesky
  path above; both are checked against SciPy, and against each other at small D."""
  rng = np.random.default_rng(d)
  params = _params(*_init("full", d=d, seed=d), "full")
  x = np.asarray(params.means)[rng.integers(K, size=40)] + rng.normal(size=(40, d))
  assert (gmm._features(jnp.asarray(x), "full") is None) == (d > gmm.EXPANDED_MAX_DIM)
  joint = _scipy_joint(params, x)
  assert_allclose(gmm.log_prob(params, x), special.logsumexp(joint, axis=1), rtol=1e-10)
  chol = jax.jit(gmm._component_log_probs_cholesky)(params, jnp.asarray(x))
  assert_allclose(chol + jnp.log(params.weights), joint, rtol=1e-10)
  expanded = jax.jit(gmm.component_log_probs)(params, jnp.asarray(x))
  assert_allclose(expanded, joint, rtol=1e-10)


# ----------------------------------------------------------------------------
# EM invariants.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("ctype,init_method,restarts", [("full", "kmeans++", 1),
                                                        ("diag", "random", 4),
                                                        ("spherical", "random", 3)])
@pytest.mark.slow
def test_em_never_decreases_the_log_likelihood(ctype, init_method, restarts):
  for seed in range(3):
    x = _blobs(seed=seed, n_per=N_PER)
    _, history = gmm.fit(jax.random.key(seed), x, K, covariance_type=ctype, max_iters=ITERS,
                         tol=0.0, num_restarts=restarts, init_method=init_method)
    assert history.shape == (ITERS,)
    assert np.all(np.isfinite(history))
    assert np.all(np.diff(history) >= -1e-10), (seed, np.diff(history).min())
    assert history[-1] > history[0]


@pytest.mark.parametrize("ctype", CTYPES)
def test_trace_elbo_is_sandwiched_between_log_likelihoods(ctype):
  x = _blobs(seed=10, n_per=N_PER)
  params, trace = gmm.fit_with_trace(jax.random.key(1), x, K, covariance_type=ctype,
                                     max_iters=ITERS, tol=0.0, init=_init(ctype, seed=11))
  n = int(trace.num_iters)
  assert n == ITERS
  ll, elbo = np.asarray(trace.log_likelihood), np.asarray(trace.elbo)
  ll_next = np.append(ll[1:n], np.mean(gmm.log_prob(params, x)))
  assert np.all(ll[:n] <= elbo[:n] + 1e-10), (ll[:n] - elbo[:n]).max()
  assert np.all(elbo[:n] <= ll_next + 1e-10), (elbo[:n] - ll_next).max()
  # Strict somewhere: the E-step gap is not identically zero.
  assert np.max(ll_next - elbo[:n]) > 1e-4


@pytest.mark.slow
def test_trace_is_nan_past_the_stopping_iteration():
  x = _blobs(seed=12, n_per=N_PER)
  _, trace = gmm.fit_with_trace(jax.random.key(0), x, K, max_iters=ITERS, tol=1e-3)
  n = int(trace.num_iters)
  assert 2 <= n < ITERS
  assert np.all(np.isfinite(trace.log_likelihood[:n]))
  assert np.all(np.isnan(trace.log_likelihood[n:])) and np.all(np.isnan(trace.elbo[n:]))
  assert abs(trace.log_likelihood[n - 1] - trace.log_likelihood[n - 2]) < 1e-3
  history = gmm.fit(jax.random.key(0), x, K, max_iters=ITERS, tol=1e-3)[1]
  assert_allclose(history, trace.log_likelihood[:n], rtol=0, atol=1e-12)


def test_restarts_pick_the_best_run():
  """``_fit_restarts`` splits the key into one subkey per restart; rerunning each
  restart on its own (same initial responsibilities, then ``fit(init=...)``)
  gives R runs, and the restarted fit must return the best of them."""
  x = _blobs(seed=1, n_per=N_PER)
  shift = x.mean(axis=0)
  xc = jnp.asarray(x - shift)
  key, r, ctype = jax.random.key(1), 4, "diag"
  params, _ = gmm.fit(key, x, K, covariance_type=ctype, max_iters=ITERS, tol=0.0, num_restarts=r,
                      init_method="random")
  best = np.mean(gmm.log_prob(params, x))
  singles = []
  for sub in jax.random.split(key, r):
    p0 = gmm.m_step(xc, gmm._initial_resp(sub, xc, K, "random"), ctype, 1e-6)
    p, _ = gmm.fit(None, x, K, covariance_type=ctype, max_iters=ITERS, tol=0.0,
                   init=(p0.weights, p0.means + shift, p0.covariances))
    singles.append(float(np.mean(gmm.log_prob(p, x))))
  assert max(singles) - min(singles) > 1e-2          # the restarts really differ
  assert np.argmax(singles) != 0                     # and the first is not the best
  assert np.all(best >= np.array(singles) - 1e-9)
  assert_allclose(best, max(singles), rtol=0, atol=1e-9)


# ----------------------------------------------------------------------------
# The ELBO identity.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("ctype", CTYPES)
def test_elbo_identity(ctype):
  rng = np.random.default_rng(13)
  x = jnp.asarray(_blobs(seed=13, n_per=10))
  params = _params(*_init(ctype, seed=14), ctype)
  q_random = rng.dirichlet(np.ones(K), size=len(x))
  q_onehot = np.eye(K)[rng.integers(K, size=len(x))]       # exact zeros: xlogy(0, 0) = 0
  decompose = jax.jit(gmm.elbo_decomposition)
  for q in (q_random, q_onehot):
    out = decompose(params, x, jnp.asarray(q))
    assert_allclose(out["log_px"], out["elbo"] + out["kl"], rtol=0, atol=1e-10)
    assert np.all(np.asarray(out["kl"]) >= 0)
    if q is q_random:                                       # not the posterior: a real gap
      assert np.all(np.asarray(out["kl"]) > 1e-6)
  out = decompose(params, x, gmm.posterior(params, x))
  assert_allclose(out["kl"], 0.0, rtol=0, atol=1e-10)
  assert_allclose(out["elbo"], out["log_px"], rtol=0, atol=1e-10)
  expected = special.logsumexp(_scipy_joint(params, np.asarray(x)), axis=1)
  assert_allclose(out["log_px"], expected, rtol=1e-12)


# ----------------------------------------------------------------------------
# Sampling, dtypes, input types.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("ctype", CTYPES)
def test_sample_matches_the_parameters(ctype):
  params = _params(*_init(ctype, seed=15), ctype)
  n = 20_000
  x, z = gmm.sample(jax.random.key(0), params, n)
  x, z = np.asarray(x), np.asarray(z)
  assert x.shape == (n, D) and z.shape == (n,)
  freq = np.bincount(z, minlength=K) / n
  w = np.asarray(params.weights)
  assert np.all(np.abs(freq - w) < 4 * np.sqrt(w * (1 - w) / n)), (freq, w)
  covs = np.asarray(gmm.full_covariances(params))
  for k in range(K):
    xk = x[z == k]
    se = np.sqrt(np.diag(covs[k]) / len(xk))
    assert np.all(np.abs(xk.mean(axis=0) - np.asarray(params.means[k])) < 5 * se)
    assert_allclose(np.cov(xk.T), covs[k], rtol=0, atol=0.1 * np.abs(covs[k]).max())


@pytest.mark.parametrize("x64_enabled", [True, False])
def test_float32_input(x64_enabled):
  x = _blobs(seed=16, n_per=N_PER).astype(np.float32)
  init = tuple(a.astype(np.float32) for a in _init("full", seed=16))
  with jax.enable_x64(x64_enabled):
    params, history = gmm.fit(jax.random.key(0), x, K, max_iters=ITERS, tol=0.0, init=init)
    assert params.means.dtype == params.covariances.dtype == params.weights.dtype == jnp.float32
    lp = gmm.log_prob(params, x)
    assert lp.dtype == jnp.float32
    assert np.all(np.isfinite(history)) and np.all(np.isfinite(np.asarray(lp)))
    assert np.all(np.diff(history) >= -1e-4)
  with jax.enable_x64(True):
    _, h64 = gmm.fit(jax.random.key(0), x.astype(np.float64), K, max_iters=ITERS, tol=0.0,
                     init=init)
  assert_allclose(history[-1], h64[-1], rtol=1e-4)


def test_numpy_and_jax_inputs_agree():
  x = _blobs(seed=17, n_per=N_PER)
  p_np, h_np = gmm.fit(jax.random.key(2), x, K, max_iters=ITERS)
  p_jx, h_jx = gmm.fit(jax.random.key(2), jnp.asarray(x), K, max_iters=ITERS)
  assert_allclose(h_np, h_jx, rtol=1e-12)
  assert_allclose(p_np.means, p_jx.means, rtol=1e-12)


# ----------------------------------------------------------------------------
# Bad input.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["nan", "inf", "1d", "3d", "int", "empty"])
def test_bad_data_raises_user_error(bad):
  x = _blobs(n_per=5)
  x = {"nan": np.where(np.arange(x.size).reshape(x.shape) == 7, np.nan, x),
       "inf": np.where(np.arange(x.size).reshape(x.shape) == 7, -np.inf, x),
       "1d": x[:, 0], "3d": x[None], "int": x.astype(np.int64), "empty": x[:0]}[bad]
  with pytest.raises(UserError):
    gmm.fit(jax.random.key(0), x, 2)
  if bad in ("nan", "1d"):
    params = _params(*_init("full"), "full")
    with pytest.raises(UserError):
      gmm.bic(params, x)


@pytest.mark.parametrize("kwargs", [dict(covariance_type="tied"), dict(num_components=0),
                                    dict(num_components=16), dict(num_components=2.0),
                                    dict(init_method="kmeans"), dict(max_iters=0),
                                    dict(num_restarts=0)])
def test_bad_options_raise_user_error(kwargs):
  x = _blobs(n_per=5)                                       # N = 15
  kwargs = {"num_components": 2, **kwargs}
  with pytest.raises(UserError):
    gmm.fit(jax.random.key(0), x, **kwargs)


@pytest.mark.parametrize("ctype", CTYPES)
def test_bad_init_shapes_raise_user_error(ctype):
  x = _blobs(n_per=5)
  w, m, c = _init(ctype)
  other = _init("diag" if ctype != "diag" else "full")[2]
  for init in [(w[:2], m, c), (w, m[:, :2], c), (w, m, c[:2]), (w, m, other), (w, m), 3]:
    with pytest.raises(UserError):
      gmm.fit(jax.random.key(0), x, K, covariance_type=ctype, init=init)
  gmm.fit(jax.random.key(0), x, K, covariance_type=ctype, init=(w, m, c), max_iters=2)


@pytest.mark.parametrize("covariance_type", ["diag", "full"])
@pytest.mark.slow
def test_float32_em_stays_monotone_on_narrow_components(covariance_type):
  # The first pixels of the 8x8 digits are almost constant: components collapse to
  # variances ~ reg_covar, where float32 arithmetic is most fragile (an expanded
  # E[x^2] - mu^2 M-step cancels catastrophically there). EM must stay monotone
  # to float32 round-off.
  from vae_jax import data
  x = data.load_arrays("digits").train_x[:, :10].astype(np.float32)
  with jax.enable_x64(False):
    _, history = gmm.fit(jax.random.key(0), x, 5, covariance_type=covariance_type,
                         num_restarts=2, max_iters=60)
  assert history.dtype == np.float32
  assert np.all(np.diff(history) >= -1e-5 * np.abs(history[1:])), np.diff(history).min()
