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
"""

from __future__ import annotations

import functools
import math

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np

from vae_jax.errors import UserError, check_data_matrix

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
