"""Gaussian mixture model with EM: a categorical latent variable, exactly.

  p(z) = Categorical(pi),   p(x|z = k) = N(x | mu_k, Sigma_k),
  log p(x) = logsumexp_k [log pi_k + log N(x | mu_k, Sigma_k)],
  p(z = k|x) = exp(log pi_k + log N_k(x) - log p(x))   (responsibilities).

EM is block-coordinate ascent on the ELBO (the lecture's E- and M-steps):
``e_step`` sets q(z|x) to the exact posterior, ``m_step`` maximizes
ELBO(q, theta) over theta = (pi, mu, Sigma) in closed form. Everything is in
log space; the loop is a jitted ``lax.while_loop`` and restarts run in one
``vmap``.

Covariance types: ``"full"`` [K, D, D], ``"diag"`` [K, D], ``"spherical"`` [K].

Choosing K: ``bic(params, x)`` (with ``num_parameters``) for each fitted K, or
the held-out ``log_prob``.

Speed: every log pi_k N(x | mu_k, Sigma_k) is linear in the augmented features
phi(x) = [x_i x_j (i <= j), x, 1] (expand x^T Lambda x = <x x^T, Lambda>), so the
E-step is one [N, P] x [P, K] product with the stacked natural parameters and
the M-step's sufficient statistics are one [P, N] x [N, K] product; phi(X) is
computed once per fit. No [K, N, D] intermediate is ever built, and the ELBO
after the M-step comes from the statistics without another pass over the data.
Data are centred first (log-likelihoods are translation invariant) to keep the
expansion well conditioned. The expansion is used in float64 only; float32
data and full covariances with D > 48 take the direct per-component path
(centred differences, Cholesky solves), which is slower but keeps EM monotone
to float32 round-off.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np

from vae_jax.errors import UserError, check_data_matrix, check_positive

Array = jax.Array
LOG_2PI = math.log(2.0 * math.pi)
COVARIANCE_TYPES = ("full", "diag", "spherical")
INIT_METHODS = ("kmeans++", "random")
EXPANDED_MAX_DIM = 48


@flax.struct.dataclass
class GMMParams:
  """weights: [K]; means: [K, D]; covariances: [K, D, D] | [K, D] | [K]."""
  weights: Array
  means: Array
  covariances: Array
  covariance_type: str = flax.struct.field(pytree_node=False, default="full")

  @property
  def num_components(self) -> int:
    return self.weights.shape[0]


class FitTrace(NamedTuple):
  """Per-iteration trace of one EM run (fixed-size buffers, NaN past the end).

  log_likelihood[t]: mean log p(x | theta_t), computed in the E-step of
  iteration t (theta_0 is the initialization).
  elbo[t]: mean ELBO(q_t, theta_{t+1}) after the M-step of iteration t, with
  q_t the posterior under theta_t: log p(x|theta_t) <= elbo[t] <= log p(x|theta_{t+1}).
  num_iters: iterations run.
  """
  log_likelihood: Array
  elbo: Array
  num_iters: Array


# ----------------------------------------------------------------------------
# Component log-densities.
# ----------------------------------------------------------------------------


def _triu(d: int):
  """Row/column indices of the upper triangle (with diagonal) of a D x D matrix."""
  return np.triu_indices(d)


class Features(NamedTuple):
  """Augmented features phi(x) = [quadratic(x), x, 1]: [N, P], and their transpose [P, N].

  quadratic(x) is x_i x_j for i <= j ("full") or x_i^2 ("diag", "spherical").
  Every component log-density is linear in phi(x), so the E-step is phi @ A
  and the M-step statistics are phi^T @ resp (the transpose is stored once:
  XLA's CPU matmul is much faster on [P, N] @ [N, K] than on a transposed
  operand).
  """
  aug: Array
  aug_t: Array


def _features(x: Array, covariance_type: str) -> Features | None:
  """The augmented features for the expanded E/M-steps, or None for the direct path.

  The direct (centred, per-component) path is used for full covariances with
  D > 48 and for anything below float64: the expansion subtracts large
  numbers (E[x^2] - mu^2, x^2 / var - ...), which float32 cannot afford when
  a component is narrow (EM would then lose its monotonicity to round-off).
  """
  if x.dtype != jnp.float64:
    return None
  if covariance_type == "full":
    if x.shape[1] > EXPANDED_MAX_DIM:
      return None
    rows, cols = _triu(x.shape[1])
    quad = x[:, rows] * x[:, cols]                                         # [N, D(D+1)/2]
  else:
    quad = x * x                                                           # [N, D]
  aug = jnp.concatenate([quad, x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)
  return Features(aug, aug.T)


def _natural_params(params: GMMParams) -> Array:
  """A: [P, K] with log pi_k + log N(x | mu_k, Sigma_k) = phi(x) @ A[:, k].

  -0.5 (x - mu)^T Lambda (x - mu) = -0.5 <x x^T, Lambda> + x^T Lambda mu - 0.5 mu^T Lambda mu.
  """
  means, cov, ctype = params.means, params.covariances, params.covariance_type
  d = means.shape[1]
  if ctype == "full":
    chol = jnp.linalg.cholesky(cov)                                        # [K, D, D]
    eye = jnp.broadcast_to(jnp.eye(d, dtype=cov.dtype), cov.shape)
    prec = jax.scipy.linalg.cho_solve((chol, True), eye)                   # [K, D, D]
    prec = 0.5 * (prec + jnp.swapaxes(prec, -1, -2))
    logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), -1)
    pm = jnp.einsum("kij,kj->ki", prec, means)                             # [K, D]
    rows, cols = _triu(d)
    off_diag_twice = np.where(rows == cols, 1.0, 2.0).astype(cov.dtype)     # keep float32 float32
    quad = prec[:, rows, cols] * off_diag_twice                            # [K, F]
  else:
    var = cov if ctype == "diag" else jnp.broadcast_to(cov[:, None], means.shape)
    logdet = jnp.sum(jnp.log(var), -1)
    pm = means / var
    quad = 1.0 / var                                                       # [K, D]
  const = -0.5 * (d * LOG_2PI + logdet + jnp.sum(pm * means, -1)) + jnp.log(params.weights)
  return jnp.concatenate([-0.5 * quad, pm, const[:, None]], axis=1).T       # [P, K]


def _component_log_probs_cholesky(params: GMMParams, x: Array) -> Array:
  """log N(x | mu_k, Sigma_k) per component, centred: [N, K] (one component at a time)."""
  d = x.shape[1]
  if params.covariance_type != "full":
    var = (params.covariances if params.covariance_type == "diag"
           else jnp.broadcast_to(params.covariances[:, None], params.means.shape))

    def one_diag(mean, v):
      return -0.5 * (d * LOG_2PI + jnp.sum((x - mean) ** 2 / v, 1) + jnp.sum(jnp.log(v)))

    return jax.lax.map(lambda args: one_diag(*args), (params.means, var)).T
  chol = jnp.linalg.cholesky(params.covariances)

  def one(mean, l):
    y = jax.scipy.linalg.solve_triangular(l, (x - mean).T, lower=True)     # [D, N]
    return -0.5 * (d * LOG_2PI + jnp.sum(y * y, 0)) - jnp.sum(jnp.log(jnp.diag(l)))

  return jax.lax.map(lambda args: one(*args), (params.means, chol)).T


def component_log_probs(params: GMMParams, x: Array, feats: Features | None = None) -> Array:
  """log pi_k + log N(x_n | mu_k, Sigma_k): [N, K]."""
  if feats is None:
    feats = _features(x, params.covariance_type)
  if feats is None:
    return _component_log_probs_cholesky(params, x) + jnp.log(params.weights)
  return feats.aug @ _natural_params(params)


# ----------------------------------------------------------------------------
# E-step and M-step.
# ----------------------------------------------------------------------------


def e_step(params: GMMParams, x: Array, feats: Features | None = None) -> tuple[Array, Array]:
  """q(z|x) = p(z|x, theta): log responsibilities [N, K] and log p(x) [N]."""
  joint = component_log_probs(params, x, feats)
  log_px = jax.nn.logsumexp(joint, axis=1)
  return joint - log_px[:, None], log_px


class SufficientStats(NamedTuple):
  """Responsibility-weighted statistics of q: [P, K] = phi(X)^T resp, or for the
  Cholesky path (no features) only nk [K] and sum_x [K, D] (quad is None)."""
  nk: Array
  sum_x: Array
  sum_quad: Array | None      # [K, F]: sum_n r_nk quadratic(x_n)
  matrix: Array | None        # [P, K]: the three stacked, for the ELBO


def sufficient_stats(x: Array, resp: Array, feats: Features | None) -> SufficientStats:
  """sum_n r_nk phi(x_n) in one matrix product (nk gets sklearn's 10 eps floor)."""
  tiny = 10 * jnp.finfo(x.dtype).eps
  if feats is None:
    return SufficientStats(jnp.sum(resp, axis=0) + tiny, resp.T @ x, None, None)
  s = feats.aug_t @ resp                                                   # [P, K]
  d = x.shape[1]
  f = s.shape[0] - d - 1
  return SufficientStats(s[-1] + tiny, s[f:f + d].T, s[:f].T, s)


def m_step(x: Array, resp: Array, covariance_type: str, reg_covar: float,
           feats: Features | None = None, stats: SufficientStats | None = None) -> GMMParams:
  """theta = argmax_theta ELBO(q, theta) for responsibilities resp: [N, K].

  pi_k = N_k / N, mu_k = sum_n r_nk x_n / N_k, Sigma_k = weighted covariance
  + reg_covar I (as scikit-learn).
  """
  n, d = x.shape
  if stats is None:
    stats = sufficient_stats(x, resp, feats if feats is not None
                             else _features(x, covariance_type))
  nk = stats.nk
  means = stats.sum_x / nk[:, None]                                        # [K, D]
  if covariance_type == "full":
    if stats.sum_quad is None:
      def one(r, mu):
        xc = x - mu
        return (r[:, None] * xc).T @ xc
      cov = jax.lax.map(lambda a: one(*a), (resp.T, means)) / nk[:, None, None]
    else:
      rows, cols = _triu(d)
      upper = stats.sum_quad / nk[:, None]                                   # E[x_i x_j], i <= j
      second = jnp.zeros((nk.shape[0], d, d), x.dtype).at[:, rows, cols].set(upper)
      second = second.at[:, cols, rows].set(upper)
      cov = second - means[:, :, None] * means[:, None, :]
    cov = cov + reg_covar * jnp.eye(d, dtype=x.dtype)
  else:
    if stats.sum_quad is None:                                              # centred, two-pass
      var = jax.lax.map(lambda a: jnp.sum(a[0][:, None] * (x - a[1]) ** 2, 0),
                        (resp.T, means)) / nk[:, None]
    else:
      var = stats.sum_quad / nk[:, None] - means**2
    var = var + reg_covar                                                   # [K, D]
    cov = var if covariance_type == "diag" else jnp.mean(var, axis=1)
  return GMMParams(weights=nk / n, means=means, covariances=cov,
                   covariance_type=covariance_type)


def _elbo_sum_from_stats(params: GMMParams, stats: SufficientStats) -> Array:
  """sum_n sum_k q_nk log(pi_k N_k(x_n)) from the statistics of q (no pass over data)."""
  return jnp.sum(stats.matrix * _natural_params(params))


def expected_log_joint_minus_q(params: GMMParams, x: Array, q: Array,
                               feats: Features | None = None) -> Array:
  """ELBO(q, theta) per example = sum_k q_k (log pi_k + log N_k(x) - log q_k): [N]."""
  joint = component_log_probs(params, x, feats)
  return jnp.sum(q * joint - jax.scipy.special.xlogy(q, q), axis=1)


# ----------------------------------------------------------------------------
# EM loop.
# ----------------------------------------------------------------------------


def _em_loop(params: GMMParams, x: Array, feats, *, max_iters: int, tol: float,
             reg_covar: float) -> tuple[GMMParams, FitTrace]:
  ctype = params.covariance_type
  nan = jnp.full((max_iters,), jnp.nan, x.dtype)

  def cond(carry):
    _, it, prev, cur, _, _ = carry
    return (it < max_iters) & ((it < 2) | (jnp.abs(cur - prev) >= tol))

  def body(carry):
    params, it, _, cur, lls, elbos = carry
    log_resp, log_px = e_step(params, x, feats)               # E-step: q = posterior
    resp = jnp.exp(log_resp)
    ll = jnp.mean(log_px)
    if feats is None:                                         # M-step: argmax ELBO
      new = m_step(x, resp, ctype, reg_covar)
      elbo = jnp.mean(expected_log_joint_minus_q(new, x, resp))
    else:
      stats = sufficient_stats(x, resp, feats)
      new = m_step(x, resp, ctype, reg_covar, stats=stats)
      neg_entropy = jnp.sum(jnp.where(resp > 0, resp * log_resp, 0.0))
      elbo = (_elbo_sum_from_stats(new, stats) - neg_entropy) / x.shape[0]
    return (new, it + 1, cur, ll, lls.at[it].set(ll), elbos.at[it].set(elbo))

  init = (params, jnp.int32(0), jnp.array(-jnp.inf, x.dtype), jnp.array(jnp.inf, x.dtype),
          nan, nan)
  params, it, _, _, lls, elbos = jax.lax.while_loop(cond, body, init)
  return params, FitTrace(lls, elbos, it)


def _kmeans_pp_centers(key: Array, x: Array, k: int) -> Array:
  """k-means++ seeding (Arthur & Vassilvitskii, 2007): [K, D]."""
  n = x.shape[0]
  k0, key = jax.random.split(key)
  first = x[jax.random.randint(k0, (), 0, n)]
  centers = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(first)
  d2 = jnp.sum((x - first) ** 2, axis=1)

  def body(i, carry):
    centers, d2, key = carry
    key, sub = jax.random.split(key)
    idx = jax.random.categorical(sub, jnp.log(d2 + 1e-30))
    c = x[idx]
    return centers.at[i].set(c), jnp.minimum(d2, jnp.sum((x - c) ** 2, axis=1)), key

  centers, _, _ = jax.lax.fori_loop(1, k, body, (centers, d2, key))
  return centers


def _initial_resp(key: Array, x: Array, k: int, method: str, kmeans_iters: int = 10) -> Array:
  """Initial responsibilities: k-means++ then Lloyd iterations (hard), or random."""
  if method == "random":
    r = jax.random.uniform(key, (x.shape[0], k), x.dtype)
    return r / jnp.sum(r, axis=1, keepdims=True)
  centers = _kmeans_pp_centers(key, x, k)
  x2 = jnp.sum(x * x, 1)

  def assign(c):
    return jnp.argmin(x2[:, None] - 2 * x @ c.T + jnp.sum(c * c, 1), axis=1)

  def lloyd(c, _):
    onehot = jax.nn.one_hot(assign(c), k, dtype=x.dtype)
    counts = jnp.sum(onehot, 0)
    new = (onehot.T @ x) / jnp.maximum(counts, 1.0)[:, None]
    return jnp.where(counts[:, None] > 0, new, c), None

  centers, _ = jax.lax.scan(lloyd, centers, None, length=kmeans_iters)
  return jax.nn.one_hot(assign(centers), k, dtype=x.dtype)


@functools.partial(jax.jit, static_argnames=("num_components", "covariance_type", "max_iters",
                                             "init_method", "num_restarts"))
def _fit_restarts(key, x, *, num_components, covariance_type, max_iters, tol, reg_covar,
                  init_method, num_restarts):
  feats = _features(x, covariance_type)

  def one(k):
    resp = _initial_resp(k, x, num_components, init_method)
    params = m_step(x, resp, covariance_type, reg_covar, feats)
    return _em_loop(params, x, feats, max_iters=max_iters, tol=tol, reg_covar=reg_covar)

  params, traces = jax.vmap(one)(jax.random.split(key, num_restarts))
  final = jnp.mean(jax.vmap(lambda p: e_step(p, x, feats)[1])(params), axis=1)   # [R]
  best = jnp.argmax(jnp.where(jnp.isfinite(final), final, -jnp.inf))
  pick = lambda t: jax.tree_util.tree_map(lambda a: a[best], t)
  return pick(params), pick(traces), final


@functools.partial(jax.jit, static_argnames=("max_iters",))
def _fit_from(params, x, *, max_iters, tol, reg_covar):
  feats = _features(x, params.covariance_type)
  return _em_loop(params, x, feats, max_iters=max_iters, tol=tol, reg_covar=reg_covar)


def _check_params(params_tuple, k, d, covariance_type, dtype) -> GMMParams:
  try:
    weights, means, covs = params_tuple
  except (TypeError, ValueError):
    raise UserError("init must be a tuple (weights [K], means [K, D], covariances)") from None
  weights, means, covs = (jnp.asarray(a, dtype) for a in (weights, means, covs))
  want = {"full": (k, d, d), "diag": (k, d), "spherical": (k,)}[covariance_type]
  if weights.shape != (k,) or means.shape != (k, d) or covs.shape != want:
    raise UserError(f"init shapes must be weights {(k,)}, means {(k, d)}, covariances "
                    f"{want} for covariance_type={covariance_type!r}; got {weights.shape}, "
                    f"{means.shape}, {covs.shape}.")
  return GMMParams(weights, means, covs, covariance_type)


def _validate(x, num_components, covariance_type, init_method):
  x = check_data_matrix(x, "x")
  if covariance_type not in COVARIANCE_TYPES:
    raise UserError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}.")
  if init_method not in INIT_METHODS:
    raise UserError(f"init_method must be one of {INIT_METHODS}, got {init_method!r}.")
  if not isinstance(num_components, (int, np.integer)) or not 1 <= num_components <= x.shape[0]:
    raise UserError(f"num_components must be an integer in [1, N={x.shape[0]}], "
                    f"got {num_components!r}.")
  return jnp.asarray(x)


def fit_with_trace(key: Array, x, num_components: int, *, covariance_type: str = "full",
                   max_iters: int = 100, tol: float = 1e-6, init=None, num_restarts: int = 1,
                   reg_covar: float = 1e-6, init_method: str = "kmeans++"
                   ) -> tuple[GMMParams, FitTrace]:
  """Like ``fit`` but returns the full ``FitTrace`` (log p(x) and ELBO per iteration)."""
  x = _validate(x, num_components, covariance_type, init_method)
  check_positive(max_iters, "max_iters", integer=True)
  check_positive(num_restarts, "num_restarts", integer=True)
  shift = jnp.mean(x, axis=0)            # centre: log-likelihoods are shift invariant
  xc = x - shift
  if init is not None:
    params = _check_params(init, num_components, x.shape[1], covariance_type, x.dtype)
    params = params.replace(means=params.means - shift)
    params, trace = _fit_from(params, xc, max_iters=max_iters, tol=tol, reg_covar=reg_covar)
  else:
    params, trace, _ = _fit_restarts(
        key, xc, num_components=num_components, covariance_type=covariance_type,
        max_iters=max_iters, tol=tol, reg_covar=reg_covar, init_method=init_method,
        num_restarts=num_restarts)
  return params.replace(means=params.means + shift), trace


def fit(key: Array, x, num_components: int, *, covariance_type: str = "full",
        max_iters: int = 100, tol: float = 1e-6, init=None, num_restarts: int = 1,
        reg_covar: float = 1e-6, init_method: str = "kmeans++") -> tuple[GMMParams, np.ndarray]:
  """Fits a GMM by EM.

  Args:
    key: PRNG key (initialization; unused when ``init`` is given).
    x: [N, D] data, NumPy or JAX, float32 or float64.
    num_components: K.
    covariance_type: "full", "diag" or "spherical".
    max_iters: maximum EM iterations.
    tol: stop when the average log-likelihood changes by less than this.
    init: optional (weights [K], means [K, D], covariances [K, D, D] | [K, D] | [K]).
    num_restarts: independent initializations run in one vmap; the best
      final log-likelihood wins.
    reg_covar: added to covariance diagonals in every M-step.
    init_method: "kmeans++" (seeding + 10 Lloyd steps) or "random".

  Returns:
    (params, history): history[t] is the average log p(x | theta_t) in the
    E-step of iteration t, one value per EM iteration run; EM never
    decreases it.
  """
  params, trace = fit_with_trace(key, x, num_components, covariance_type=covariance_type,
                                 max_iters=max_iters, tol=tol, init=init,
                                 num_restarts=num_restarts, reg_covar=reg_covar,
                                 init_method=init_method)
  n = int(trace.num_iters)
  return params, np.asarray(trace.log_likelihood)[:n]


# ----------------------------------------------------------------------------
# Densities, posterior, sampling, model selection.
# ----------------------------------------------------------------------------


@jax.jit
def log_prob(params: GMMParams, x: Array) -> Array:
  """log p(x) = logsumexp_k log pi_k N(x | mu_k, Sigma_k): [N]."""
  shift = jnp.mean(params.means, axis=0)
  return e_step(params.replace(means=params.means - shift), x - shift)[1]


@jax.jit
def posterior(params: GMMParams, x: Array) -> Array:
  """Exact p(z = k | x): [N, K] responsibilities (rows sum to 1)."""
  shift = jnp.mean(params.means, axis=0)
  return jnp.exp(e_step(params.replace(means=params.means - shift), x - shift)[0])


def elbo_decomposition(params: GMMParams, x: Array, q: Array) -> dict[str, Array]:
  """log p(x), ELBO(q) and KL(q || p(z|x)) per example for q: [N, K] probabilities.

  ELBO = sum_k q_k (log pi_k + log N_k(x) - log q_k) and
  KL = sum_k q_k (log q_k - log p(z = k|x)), each from its own formula.
  """
  log_resp, log_px = e_step(params, x)
  elbo = expected_log_joint_minus_q(params, x, q)
  kl = jnp.sum(jax.scipy.special.xlogy(q, q) - jnp.where(q > 0, q * log_resp, 0.0), axis=1)
  return {"log_px": log_px, "elbo": elbo, "kl": kl}


def full_covariances(params: GMMParams) -> Array:
  """Covariances as [K, D, D] whatever the covariance type."""
  d = params.means.shape[1]
  if params.covariance_type == "full":
    return params.covariances
  var = (params.covariances if params.covariance_type == "diag"
         else jnp.broadcast_to(params.covariances[:, None], params.means.shape))
  return var[:, :, None] * jnp.eye(d, dtype=var.dtype)


def sample(key: Array, params: GMMParams, num_samples: int) -> tuple[Array, Array]:
  """Ancestral sampling: z ~ Categorical(pi), x ~ N(mu_z, Sigma_z).

  Returns:
    (x [num_samples, D], z [num_samples]).
  """
  kz, kx = jax.random.split(key)
  z = jax.random.categorical(kz, jnp.log(params.weights), shape=(num_samples,))
  chol = jnp.linalg.cholesky(full_covariances(params))
  eps = jax.random.normal(kx, (num_samples, params.means.shape[1]), params.means.dtype)
  return params.means[z] + jnp.einsum("nij,nj->ni", chol[z], eps), z


def num_parameters(params: GMMParams) -> int:
  """Free parameters of a K-component mixture in D dimensions (what BIC counts).

    weights K - 1 (they sum to 1), means K D, covariances
    "full" K D (D + 1)/2 (symmetric), "diag" K D, "spherical" K,

  as ``sklearn.mixture.GaussianMixture._n_parameters`` counts them.
  """
  k, d = params.means.shape
  per_component = {"full": d * (d + 1) // 2, "diag": d, "spherical": 1}
  if params.covariance_type not in per_component:
    raise UserError(f"covariance_type must be one of {COVARIANCE_TYPES}, got "
                    f"{params.covariance_type!r}.")
  return int(k * per_component[params.covariance_type] + k * d + k - 1)


def bic(params: GMMParams, x) -> float:
  """Bayesian information criterion of the data set (lower is better), a float.

    BIC = -2 sum_n log p(x_n | theta) + P log N,   P = ``num_parameters(params)``,

  -2 times the Laplace approximation of log p(X | K) without its O(1) terms
  (Schwarz, 1978): the K with the lowest BIC has the highest approximate
  evidence. Equals ``sklearn.mixture.GaussianMixture.bic`` for the same
  parameters.

  Args:
    params: the mixture, usually fitted to ``x`` by EM.
    x: [N, D] data (float64 under ``jax.enable_x64`` for a BIC to ~1e-12 relative).
  """
  x = jnp.asarray(check_data_matrix(x, "x"))
  if x.shape[1] != params.means.shape[1]:
    raise UserError(f"x has {x.shape[1]} columns but the mixture has "
                    f"{params.means.shape[1]} dimensions.")
  total = float(jnp.sum(log_prob(params, x)))
  return -2.0 * total + num_parameters(params) * math.log(x.shape[0])
