"""Probabilistic PCA (Tipping & Bishop, 1999): an exact linear-Gaussian LVM.

  p(z) = N(0, I_M),   p(x|z) = N(W z + mu, sigma^2 I_D),
  p(x) = N(mu, C),    C = W W^T + sigma^2 I_D,
  p(z|x) = N(Minv W^T (x - mu), sigma^2 Minv),   M = W^T W + sigma^2 I_M.

Everything is computed with the M x M matrix M (Woodbury identity and the
matrix determinant lemma), never a D x D inverse:

  C^-1 = (I - W M^-1 W^T) / sigma^2,   log|C| = (D - M) log sigma^2 + log|M|.

Public API:

* ``fit(x, latent_dim)``: the closed-form maximum-likelihood solution,
  W = U_M (L_M - sigma^2 I)^(1/2), sigma^2 = mean of the discarded eigenvalues.
* ``log_prob(params, x) -> [N]``, ``posterior(params, x) -> (mean [N, M], cov [M, M])``.
* ``em(x, latent_dim, key, num_iters)``: EM with visible E- and M-steps.
* ``pca_em(x, latent_dim, key, num_iters)``: the sigma^2 -> 0 limit (Roweis, 1998).
* ``elbo_decomposition(params, x, q_mean, q_cov)``: log p(x), ELBO(q) and
  KL(q || p(z|x)), each computed from its own formula, per example.
* ``choose_latent_dim(x)``: the M of the largest Laplace-approximated evidence
  log p(X | M) (Minka, 2000), from ``spectrum(x)`` through ``log_evidence`` and
  ``max_log_likelihood`` (for every M at once, O(D^2) after the spectrum).
"""

from __future__ import annotations

import functools
import math

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np

from vae_jax.errors import UserError, check_data_matrix, check_positive

Array = jax.Array
LOG_2PI = math.log(2.0 * math.pi)


@flax.struct.dataclass
class PPCAParams:
  """mean: [D], W: [D, M], sigma2: [] (noise variance)."""
  mean: Array
  W: Array
  sigma2: Array

  @property
  def latent_dim(self) -> int:
    return self.W.shape[1]


def _as_data(x, latent_dim: int | None = None) -> Array:
  x = check_data_matrix(x, "x")
  x = jnp.asarray(x)
  if latent_dim is not None:
    if not isinstance(latent_dim, (int, np.integer)) or not 0 < latent_dim < x.shape[1]:
      raise UserError(f"latent_dim must be an integer in [1, D - 1] = [1, {x.shape[1] - 1}], "
                      f"got {latent_dim!r}.")
  return x


def _m_cholesky(params: PPCAParams) -> Array:
  """Cholesky factor of M = W^T W + sigma^2 I: [M, M] lower-triangular."""
  m = params.W.T @ params.W + params.sigma2 * jnp.eye(params.latent_dim, dtype=params.W.dtype)
  return jnp.linalg.cholesky(m)


def _solve_m(chol: Array, b: Array) -> Array:
  """M^-1 b for b: [M, ...] from the Cholesky factor of M."""
  return jax.scipy.linalg.cho_solve((chol, True), b)


@functools.partial(jax.jit, static_argnames=("latent_dim",))
def _fit(x: Array, latent_dim: int) -> PPCAParams:
  n = x.shape[0]
  mean = jnp.mean(x, axis=0)
  xc = x - mean
  cov = xc.T @ xc / n                                     # sample covariance S: [D, D]
  evals, evecs = jnp.linalg.eigh(cov)                     # ascending
  evals, evecs = evals[::-1], evecs[:, ::-1]
  sigma2 = jnp.mean(evals[latent_dim:])
  scale = jnp.sqrt(jnp.maximum(evals[:latent_dim] - sigma2, 0.0))
  return PPCAParams(mean=mean, W=evecs[:, :latent_dim] * scale, sigma2=sigma2)


def fit(x, latent_dim: int) -> PPCAParams:
  """Closed-form maximum-likelihood PPCA (Tipping & Bishop 1999, eq. 7-8).

  Args:
    x: [N, D] data, NumPy or JAX, float32 or float64.
    latent_dim: M, 1 <= M < D.

  Returns:
    PPCAParams with mean the sample mean, W = U_M (Lambda_M - sigma^2 I)^(1/2)
    (top-M eigenvectors of the sample covariance, no rotation) and sigma^2 the
    mean of the D - M discarded eigenvalues.
  """
  x = _as_data(x, latent_dim)
  return _fit(x, int(latent_dim))


@jax.jit
def log_prob(params: PPCAParams, x: Array) -> Array:
  """Exact marginal log N(x | mu, W W^T + sigma^2 I): [N] in nats.

  Uses the Cholesky factor of the M x M matrix only:
  (x-mu)^T C^-1 (x-mu) = (|r|^2 - |L^-1 W^T r|^2) / sigma^2 with L L^T = M.
  """
  d = x.shape[-1]
  m = params.latent_dim
  chol = _m_cholesky(params)
  r = x - params.mean                                     # [N, D]
  v = jax.scipy.linalg.solve_triangular(chol, (r @ params.W).T, lower=True)  # [M, N]
  quad = (jnp.sum(r * r, axis=-1) - jnp.sum(v * v, axis=0)) / params.sigma2
  logdet = (d - m) * jnp.log(params.sigma2) + 2.0 * jnp.sum(jnp.log(jnp.diag(chol)))
  return -0.5 * (d * LOG_2PI + logdet + quad)


@jax.jit
def posterior(params: PPCAParams, x: Array) -> tuple[Array, Array]:
  """Exact p(z|x) = N(M^-1 W^T (x - mu), sigma^2 M^-1).

  Returns:
    (mean [N, M], cov [M, M]) — the covariance is shared by all examples.
  """
  chol = _m_cholesky(params)
  mean = _solve_m(chol, params.W.T @ (x - params.mean).T).T
  eye = jnp.eye(params.latent_dim, dtype=params.W.dtype)
  cov = params.sigma2 * _solve_m(chol, eye)
  return mean, cov


def sample(key: Array, params: PPCAParams, num_samples: int) -> Array:
  """Ancestral sampling z ~ N(0, I), x = W z + mu + sigma eps: [num_samples, D]."""
  kz, kx = jax.random.split(key)
  dtype = params.W.dtype
  z = jax.random.normal(kz, (num_samples, params.latent_dim), dtype)
  eps = jax.random.normal(kx, (num_samples, params.W.shape[0]), dtype)
  return z @ params.W.T + params.mean + jnp.sqrt(params.sigma2) * eps


# ----------------------------------------------------------------------------
# EM (Bishop, PRML 12.2.2) and the sigma^2 -> 0 limit (Roweis 1998).
# ----------------------------------------------------------------------------


def e_step(params: PPCAParams, xc: Array) -> tuple[Array, Array]:
  """q(z_n) = p(z_n | x_n): sufficient statistics E[z_n] and sum_n E[z_n z_n^T].

  Args:
    xc: [N, D] centred data.

  Returns:
    (ez [N, M], sum_ezz [M, M]).
  """
  chol = _m_cholesky(params)
  ez = _solve_m(chol, params.W.T @ xc.T).T                                   # [N, M]
  eye = jnp.eye(params.latent_dim, dtype=xc.dtype)
  sum_ezz = xc.shape[0] * params.sigma2 * _solve_m(chol, eye) + ez.T @ ez    # [M, M]
  return ez, sum_ezz


def m_step(mean: Array, xc: Array, ez: Array, sum_ezz: Array) -> PPCAParams:
  """theta = argmax_theta ELBO(q, theta) with q fixed (PRML eq. 12.56-12.57)."""
  n, d = xc.shape
  w = jnp.linalg.solve(sum_ezz.T, (xc.T @ ez).T).T                          # [D, M]
  sigma2 = (jnp.sum(xc * xc) - 2.0 * jnp.sum(ez * (xc @ w))
            + jnp.trace(sum_ezz @ (w.T @ w))) / (n * d)
  return PPCAParams(mean=mean, W=w, sigma2=sigma2)


@functools.partial(jax.jit, static_argnames=("num_iters",))
def _em(x: Array, w0: Array, sigma2_0: Array, num_iters: int):
  mean = jnp.mean(x, axis=0)
  xc = x - mean

  def body(params, _):
    ll = jnp.mean(log_prob(params, x))
    ez, sum_ezz = e_step(params, xc)                          # E-step: q = p(z|x, theta_t)
    new = m_step(mean, xc, ez, sum_ezz)                       # M-step: argmax ELBO(q, .)
    q_cov = params.sigma2 * jnp.linalg.inv(
        params.W.T @ params.W + params.sigma2 * jnp.eye(params.latent_dim, dtype=x.dtype))
    elbo = jnp.mean(elbo_decomposition(new, x, ez, q_cov)["elbo"])
    return new, (ll, elbo)

  params, (history, elbos) = jax.lax.scan(body, PPCAParams(mean, w0, sigma2_0), None,
                                          length=num_iters)
  return params, jnp.append(history, jnp.mean(log_prob(params, x))), elbos


def _em_init(x: Array, latent_dim: int, key: Array):
  scale = jnp.sqrt(jnp.mean(jnp.var(x, axis=0)))
  return scale * jax.random.normal(key, (x.shape[1], latent_dim), x.dtype), scale**2


def em(x, latent_dim: int, key: Array, num_iters: int = 100
       ) -> tuple[PPCAParams, np.ndarray]:
  """EM for PPCA from a random W and sigma^2 = 1 (scaled to the data).

  Args:
    x: [N, D] data.
    latent_dim: M.
    key: PRNG key for the initial W.
    num_iters: EM iterations.

  Returns:
    (params, history): history[t] is the average log-likelihood after t
    iterations, [num_iters + 1] (history[0] at the initialization). EM never
    decreases it.
  """
  params, history, _ = em_with_trace(x, latent_dim, key, num_iters)
  return params, history


def em_with_trace(x, latent_dim: int, key: Array, num_iters: int = 100
                  ) -> tuple[PPCAParams, np.ndarray, np.ndarray]:
  """``em`` that also returns the bound: (params, log_likelihood [T + 1], elbo [T]).

  elbo[t] = mean ELBO(q_t, theta_{t+1}) with q_t = p(z|x, theta_t), so
  log_likelihood[t] <= elbo[t] <= log_likelihood[t + 1] (the E-step closes
  the gap, the M-step raises the bound).
  """
  x = _as_data(x, latent_dim)
  w0, s0 = _em_init(x, latent_dim, key)
  params, history, elbos = _em(x, w0, s0, num_iters)
  return params, np.asarray(history), np.asarray(elbos)


@functools.partial(jax.jit, static_argnames=("num_iters",))
def _pca_em(x: Array, w0: Array, num_iters: int) -> Array:
  xc = (x - jnp.mean(x, axis=0)).T                          # [D, N]

  def body(w, _):
    z = jnp.linalg.solve(w.T @ w, w.T @ xc)                 # E-step: Z = (W^T W)^-1 W^T X
    w = jnp.linalg.solve(z @ z.T, z @ xc.T).T               # M-step: W = X Z^T (Z Z^T)^-1
    return w, None

  w, _ = jax.lax.scan(body, w0, None, length=num_iters)
  return w


def pca_em(x, latent_dim: int, key: Array, num_iters: int = 100) -> Array:
  """EM for PCA, the sigma^2 -> 0 limit of PPCA (Roweis, 1998).

  Returns:
    [D, M] orthonormal basis of the principal subspace found by EM (columns
    span the same subspace as the top-M eigenvectors; not ordered).
  """
  x = _as_data(x, latent_dim)
  w0 = jax.random.normal(key, (x.shape[1], latent_dim), x.dtype)
  q, _ = jnp.linalg.qr(_pca_em(x, w0, num_iters))
  return q


# ----------------------------------------------------------------------------
# The ELBO identity: log p(x) = ELBO(q) + KL(q || p(z|x)).
# ----------------------------------------------------------------------------


@jax.jit
def elbo_decomposition(params: PPCAParams, x: Array, q_mean: Array,
                       q_cov: Array) -> dict[str, Array]:
  """log p(x), ELBO(q) and KL(q || p(z|x)) for a Gaussian q(z|x) = N(m, S).

  Each term from its own closed form (the identity is then a real check):

    ELBO = E_q log p(x|z) + E_q log p(z) + H[q]
         = -D/2 log(2 pi s2) - (|x - mu - W m|^2 + tr(W^T W S)) / (2 s2)
           - M/2 log(2 pi) - (|m|^2 + tr S)/2 + M/2 (1 + log 2 pi) + log|S|/2
    KL   = KL(N(m, S) || N(m_post, S_post)), the Gaussian KL.

  Args:
    params: PPCA parameters.
    x: [N, D].
    q_mean: [N, M].
    q_cov: [M, M] (shared) or [N, M, M].

  Returns:
    dict of [N] arrays: ``log_px``, ``elbo``, ``kl``.
  """
  chex.assert_rank(x, 2)
  n, d = x.shape
  m_dim = params.latent_dim
  q_cov = jnp.broadcast_to(q_cov, (n, m_dim, m_dim))
  r = x - params.mean - q_mean @ params.W.T                                 # [N, D]
  wtw = params.W.T @ params.W
  tr_wtw_s = jnp.einsum("ij,nji->n", wtw, q_cov)
  e_log_lik = (-0.5 * d * (LOG_2PI + jnp.log(params.sigma2))
               - 0.5 * (jnp.sum(r * r, -1) + tr_wtw_s) / params.sigma2)
  tr_s = jnp.trace(q_cov, axis1=-2, axis2=-1)
  e_log_prior = -0.5 * m_dim * LOG_2PI - 0.5 * (jnp.sum(q_mean**2, -1) + tr_s)
  _, logdet_s = jnp.linalg.slogdet(q_cov)
  entropy = 0.5 * m_dim * (1.0 + LOG_2PI) + 0.5 * logdet_s
  elbo = e_log_lik + e_log_prior + entropy

  post_mean, post_cov = posterior(params, x)
  post_chol = jnp.linalg.cholesky(post_cov)
  prec_s = jax.scipy.linalg.cho_solve((post_chol, True), q_cov.transpose(1, 0, 2).reshape(
      m_dim, n * m_dim)).reshape(m_dim, n, m_dim).transpose(1, 0, 2)        # S_post^-1 S
  diff = post_mean - q_mean
  maha = jnp.sum(diff * jax.scipy.linalg.cho_solve((post_chol, True), diff.T).T, -1)
  logdet_post = 2.0 * jnp.sum(jnp.log(jnp.diag(post_chol)))
  kl = 0.5 * (jnp.trace(prec_s, axis1=-2, axis2=-1) + maha - m_dim + logdet_post - logdet_s)
  return {"log_px": log_prob(params, x), "elbo": elbo, "kl": kl}


# ----------------------------------------------------------------------------
# Choosing M by the evidence: Minka (2000), "Automatic choice of dimensionality
# for PCA", the Laplace approximation of p(X | M).
# ----------------------------------------------------------------------------

# sklearn's guard (sklearn.decomposition._pca._assess_dimension): an M whose
# M-th eigenvalue is below it gets -inf, and v_M is floored at it.
EVIDENCE_FLOOR = 1e-15


def spectrum(x) -> Array:
  """Eigenvalues of the maximum-likelihood sample covariance S = X_c^T X_c / N: [D], descending.

  From the singular values of the centred data (s^2 / N), which resolve small
  eigenvalues better than an eigendecomposition of S; zeros where N <= D.
  Call under ``jax.enable_x64`` for the evidence (float32 cannot resolve it).

  Args:
    x: [N, D] data.
  """
  x = check_data_matrix(x, "x")
  x = jnp.asarray(x)
  return _spectrum(x)


@jax.jit
def _spectrum(x: Array) -> Array:
  n, d = x.shape
  s = jnp.linalg.svd(x - jnp.mean(x, axis=0), compute_uv=False)            # [min(N, D)]
  return jnp.zeros(d, x.dtype).at[:s.shape[0]].set(s * s / n)


def _check_spectrum(eigenvalues, num_samples):
  eigenvalues = jnp.asarray(eigenvalues)
  if eigenvalues.ndim != 1 or eigenvalues.shape[0] < 2:
    raise UserError(f"eigenvalues must be a 1-D array of D >= 2 covariance eigenvalues, "
                    f"got shape {tuple(eigenvalues.shape)}.")
  host = np.asarray(eigenvalues)
  if not np.all(np.isfinite(host)) or np.any(np.diff(host) > 0):
    raise UserError("eigenvalues must be finite and sorted in descending order (as "
                    "ppca.spectrum returns them).")
  check_positive(num_samples, "num_samples", integer=True, minimum=2,
                 meaning="N, the data set's size")
  return eigenvalues


def max_log_likelihood(eigenvalues, num_samples: int) -> Array:
  """The PPCA maximum log-likelihood of the whole data set for every M: [D - 1] (M = 1..D-1).

    log p(X | W_ML, sigma^2_ML) = -N/2 [D log 2 pi + sum_{j<=M} log lambda_j
                                        + (D - M) log v_M + D],
    v_M = sum_{j>M} lambda_j / (D - M)  (= sigma^2_ML),

  the sum over examples of ``log_prob(fit(x, M), x)``: at the maximum
  tr(C^-1 S) = D. It never decreases with M. Where v_M < 1e-15 (the data lie
  in M directions) it is +inf: sigma^2 -> 0 makes the likelihood unbounded.

  Args:
    eigenvalues: [D] of the ML covariance, descending (``spectrum(x)``).
    num_samples: N.
  """
  lam = _check_spectrum(eigenvalues, num_samples)
  return _evidence_terms(lam, int(num_samples))[0]


def log_evidence(eigenvalues, num_samples: int) -> Array:
  """Laplace-approximated log evidence log p(X | M) for M = 1..D-1: [D - 1] in nats.

  Minka (2000), eq. 30, with the constants it drops (the same for every M)
  put back, so that it is the maximum log-likelihood plus the log prior of the
  principal directions and the Laplace (Occam) terms:

    log p(X | M) ~= log p(X | theta_ML(M))                     (``max_log_likelihood``)
                    + log p(U) + (m + M)/2 log 2 pi - log|A_Z|/2 - M/2 log N,
    log p(U) = -M log 2 + sum_{i=1}^M [log Gamma((D - i + 1)/2) - (D - i + 1)/2 log pi]
               (the uniform density on the Stiefel manifold),
    m = D M - M (M + 1)/2                                      (free parameters of U),
    log|A_Z| = sum_{i=1}^M sum_{j=i+1}^D log[N (lambda_i - lambda_j)(1/lh_j - 1/lh_i)],
    lh_j = lambda_j for j <= M, v_M for j > M.

  It is scikit-learn's ``_assess_dimension`` (maximized by
  ``PCA(n_components="mle")``) plus -N D/2 (log 2 pi + 1): the same M wins.
  The guards are sklearn's too: -inf where lambda_M < 1e-15 (the data span
  fewer than M directions), and v_M is floored at 1e-15. Minka's lambda are
  the eigenvalues of S / N; sklearn passes those of S / (N - 1), which lowers
  its value at every M by the same N D/2 log(N / (N - 1)) (unless v_M is floored).

  Args:
    eigenvalues: [D] of the ML covariance, descending (``spectrum(x)``), float64
      (``jax.enable_x64``): the terms are of size N D, their differences O(1).
    num_samples: N.

  Returns:
    [D - 1]: entry M - 1 is log p(X | M).
  """
  lam = _check_spectrum(eigenvalues, num_samples)
  return _evidence_terms(lam, int(num_samples))[1]


@functools.partial(jax.jit, static_argnames=("n",))
def _evidence_terms(lam: Array, n: int) -> tuple[Array, Array]:
  """(max log-likelihood [D - 1], log evidence [D - 1]) for M = 1..D-1, all O(D^2)."""
  d = lam.shape[0]
  dtype = lam.dtype
  ms = jnp.arange(1, d, dtype=dtype)                                       # M: [D - 1]
  idx = jnp.arange(d)
  valid = lam[:-1] >= EVIDENCE_FLOOR                                       # lambda_M
  pos = jnp.where(lam >= EVIDENCE_FLOOR, lam, 1.0)                         # safe for logs
  tail = jnp.cumsum(lam[::-1])[::-1]                                       # sum_{j >= i}
  v_ml = tail[1:] / (d - ms)                                               # v_M = sigma^2_ML
  v = jnp.maximum(v_ml, EVIDENCE_FLOOR)
  sum_log_top = jnp.cumsum(jnp.log(pos))[:-1]                              # sum_{j<=M} log l_j
  log_lik = -0.5 * n * (d * LOG_2PI + sum_log_top + (d - ms) * jnp.log(v) + d)

  i_dims = d - jnp.arange(d, dtype=dtype)                                  # D - i + 1, i = 1..D
  log_pu = jnp.cumsum(jax.scipy.special.gammaln(i_dims / 2) - i_dims / 2 * math.log(math.pi)
                      )[:-1] - ms * math.log(2.0)
  m = d * ms - ms * (ms + 1) / 2
  upper = idx[:, None] < idx[None, :]                                      # i < j
  # log(lambda_i - lambda_j) summed over j > i, then over i <= M.
  diff = jnp.where(upper, lam[:, None] - lam[None, :], 1.0)
  rows = jnp.sum(jnp.where(upper, jnp.log(jnp.where(diff > 0, diff, 1.0)), 0.0), axis=1)
  a_diff = jnp.cumsum(rows)[:-1]
  # log(1/lambda_j - 1/lambda_i) for i < j <= M (both kept): column sums, then over j <= M.
  inv = 1.0 / pos
  gap = jnp.where(upper, inv[None, :] - inv[:, None], 1.0)
  cols = jnp.sum(jnp.where(upper, jnp.log(jnp.where(gap > 0, gap, 1.0)), 0.0), axis=0)
  a_kept = jnp.cumsum(cols)[:-1]
  # (D - M) log(1/v_M - 1/lambda_i) for i <= M (j > M, where lh_j = v_M).
  first = idx[None, :] < ms[:, None]                                       # [D - 1, D]: i <= M
  to_v = jnp.where(first, 1.0 / v[:, None] - inv[None, :], 1.0)
  a_tail = (d - ms) * jnp.sum(jnp.where(first, jnp.log(jnp.where(to_v > 0, to_v, 1.0)), 0.0),
                              axis=1)
  log_det_a = m * math.log(n) + a_diff + a_kept + a_tail
  evidence = (log_lik + log_pu + 0.5 * (m + ms) * LOG_2PI - 0.5 * log_det_a
              - 0.5 * ms * math.log(n))
  return (jnp.where(v_ml >= EVIDENCE_FLOOR, log_lik, jnp.inf),
          jnp.where(valid, evidence, -jnp.inf))


def choose_latent_dim(x) -> tuple[int, Array]:
  """The M with the largest Laplace evidence (Minka 2000), and the evidence of every M.

  Args:
    x: [N, D] data, D >= 2, N >= 2 (float64 under ``jax.enable_x64``).

  Returns:
    (M*, log_evidence [D - 1]): entry M - 1 is log p(X | M); M* is the first
    maximizer, as ``sklearn.decomposition.PCA(n_components="mle")`` picks it.

  Raises:
    UserError: bad data, or no M has a finite evidence (no direction of the
      data has variance above 1e-15).
  """
  x = check_data_matrix(x, "x")
  n, d = x.shape
  if d < 2 or n < 2:
    raise UserError(f"choosing the latent dimension needs N >= 2 examples of D >= 2 "
                    f"dimensions, got x of shape {tuple(x.shape)}.")
  evidence = log_evidence(spectrum(x), int(n))
  if not bool(jnp.any(jnp.isfinite(evidence))):
    raise UserError(f"x has no direction with variance above {EVIDENCE_FLOOR:g}: every "
                    "latent dimension has evidence -inf (is the data constant?).")
  return int(jnp.argmax(evidence)) + 1, evidence
