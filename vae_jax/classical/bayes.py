"""Conjugate Bayes in closed form: MLE, MAP, posterior, evidence, predictives.

The lecture's quantities for a parameter theta and i.i.d. data X = {x_i}_1^N:

  MLE                    theta* = argmax_theta log p(X|theta)
  MAP                    theta* = argmax_theta [log p(X|theta) + log p(theta)]
  posterior              p(theta|X) = p(X|theta) p(theta) / p(X)
  evidence               p(X) = int p(X|theta) p(theta) dtheta
  posterior predictive   p(x|X) = int p(x|theta) p(theta|X) dtheta
  MAP (plug-in) predictive  p(x|X) ~= p(x|theta*)   (posterior replaced by a delta)

Three conjugate models, each a ``flax.struct.dataclass`` that holds the prior
hyperparameters and has the same methods:

  ``BetaBernoulli(a, b)``             theta ~ Beta(a, b),     x_i | theta ~ Bernoulli(theta)
  ``DirichletCategorical(alpha)``     theta ~ Dir(alpha),     x_i | theta ~ Categorical(theta)
  ``NormalNormal(mu0, tau2, sigma2)`` mu ~ N(mu0, tau2),      x_i | mu ~ N(mu, sigma2), sigma2 known

  mle(x), map(x)                       point estimates theta_hat
  posterior(x)                         the posterior, as a model of the same class: the
                                       posterior after X is the prior for the next batch
  log_evidence(x)                      log p(X) (of the sequence x_1..x_N), a scalar
  predictive_log_prob(x_new)           per-example log p(x_new) under these hyperparameters
  posterior_predictive_log_prob(x, x_new)  per-example log p(x_new | X), [M]
  plugin_log_prob(theta, x_new)        per-example log p(x_new | theta), [M]
  log_likelihood(theta, x), log_prior(theta)
  mean(), std(), mode()                of the distribution over theta (prior or posterior)
  posterior_std(x)                     std of p(theta|X) (concentration)
  sample(key, theta, shape), entropy(theta)  the data distribution p(x|theta)

Models compared by their evidence (a point null against one of these, the Bayes
factor): ``vae_jax.classical.evidence.log_bayes_factor(model, theta0, x)``,
log p(X | theta0) - log p(X) of a point null against the conjugate model.

Everything is in log space (``gammaln``/``xlogy``), in nats, and
jit-able: ``jax.jit(BetaBernoulli.log_evidence)(model, x)`` works because the
models are pytrees. Inputs are validated at every public method with a
``UserError`` (x not in {0, 1}, labels out of range, non-positive
hyperparameters, wrong rank); value checks need concrete arrays, so they are
skipped for traced values inside ``jit``/``vmap`` (shape checks still run).

MAP conventions when the posterior mode is not a unique interior point (only
possible when some posterior concentration is <= 1): components with
concentration < 1 have a density that diverges at theta_k = 0, so they get 0;
the rest get theta_k proportional to (concentration_k - 1), or are uniform if all
of those equal 1 (a flat density: every point is a mode). If every
concentration is < 1 there is no single mode (Beta(0.5, 0.5) peaks at both 0
and 1) and the MAP is NaN. With a prior a, b >= 1 (or alpha_k >= 1) and any
data, the MAP is the usual (n_k + alpha_k - 1) / (N + sum(alpha) - K).
"""

from __future__ import annotations

import math

import flax
import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln, xlog1py, xlogy
import numpy as np

from vae_jax.errors import UserError, check_positive

Array = jax.Array
LOG_2PI = math.log(2.0 * math.pi)

# ----------------------------------------------------------------------------
# Validation at the public boundary (value checks only for concrete arrays).
# ----------------------------------------------------------------------------


def _is_traced(x) -> bool:
  return isinstance(x, jax.core.Tracer)


def _float(x) -> Array:
  return jnp.asarray(x, dtype=jnp.result_type(float))


def _as_vector(x, name: str):
  """Returns x (array-like) with rank 1 checked; lists become NumPy arrays."""
  if not hasattr(x, "shape"):
    x = np.asarray(x)
  if len(x.shape) != 1:
    raise UserError(f"{name} must be a 1-D array of observations, shape [N], got shape "
                    f"{tuple(x.shape)}; flatten it, e.g. x.reshape(-1).")
  dtype = np.dtype(x.dtype)
  if not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
    raise UserError(f"{name} must be numeric, got dtype {dtype}.")
  return x


def _check_binary(x, name: str):
  x = _as_vector(x, name)
  if not _is_traced(x):
    arr = np.asarray(x)
    bad = arr[(arr != 0) & (arr != 1)]
    if bad.size:
      raise UserError(f"{name} must contain only 0 and 1 (Bernoulli outcomes), got "
                      f"{bad[:5].tolist()}; binarize it first, e.g. (x > 0.5).")
  return _float(x)


def _check_labels(x, num_classes: int, name: str):
  x = _as_vector(x, name)
  if not np.issubdtype(np.dtype(x.dtype), np.integer):
    raise UserError(f"{name} must hold integer class labels in [0, {num_classes}), got "
                    f"dtype {x.dtype}; convert it, e.g. x.astype(np.int32).")
  if not _is_traced(x):
    arr = np.asarray(x)
    bad = arr[(arr < 0) | (arr >= num_classes)]
    if bad.size:
      raise UserError(f"{name} has labels outside [0, {num_classes}) (K = len(alpha) = "
                      f"{num_classes}): {bad[:5].tolist()}; relabel the data or enlarge alpha.")
  return x


def _check_real(x, name: str):
  x = _as_vector(x, name)
  if not _is_traced(x) and not np.all(np.isfinite(np.asarray(x))):
    raise UserError(f"{name} contains NaN or Inf values; remove or impute them first.")
  return _float(x)


def _check_nonempty(x, name: str, what: str):
  if x.shape[0] == 0:
    raise UserError(f"{name} is empty: the {what} needs at least one observation "
                    f"(the MAP and the posterior are defined for N = 0).")


def _check_hyperparameter(value, name: str):
  """``errors.check_positive`` on a concrete hyperparameter (scalar or array)."""
  if not _is_traced(value):
    check_positive(value, name, meaning="a hyperparameter of the prior; all are > 0")


def _check_finite(value, name: str):
  if not _is_traced(value) and not np.all(np.isfinite(np.asarray(value, np.float64))):
    raise UserError(f"{name} must be finite, got {np.asarray(value).tolist()}.")


def _check_theta(theta, name: str = "theta"):
  """Checks a probability (vector) lies in [0, 1] (concrete values only)."""
  if not _is_traced(theta):
    arr = np.asarray(theta, np.float64)
    if not np.all((arr >= 0) & (arr <= 1)):
      raise UserError(f"{name} must be probabilities in [0, 1], got {arr.tolist()}.")


def _dirichlet_mode(conc: Array) -> Array:
  """argmax of the Dirichlet(conc) density on the simplex, with the module's conventions.

  Args:
    conc: [..., K] concentrations > 0.

  Returns:
    [..., K]: (conc - 1) / (sum(conc) - K) if all conc >= 1 (not all = 1); 0 for
    components with conc < 1, the others proportional to conc - 1 (uniform if
    they all equal 1); NaN if every component has conc < 1.
  """
  ge1 = conc >= 1
  w = jnp.where(ge1, conc - 1, 0.0)
  total = jnp.sum(w, axis=-1, keepdims=True)
  n_ge1 = jnp.sum(ge1, axis=-1, keepdims=True)
  peaked = w / jnp.where(total > 0, total, 1.0)
  flat = jnp.where(ge1, 1.0, 0.0) / jnp.maximum(n_ge1, 1)
  mode = jnp.where(total > 0, peaked, flat)
  return jnp.where(n_ge1 > 0, mode, jnp.nan)


def _log_beta(a, b) -> Array:
  """log B(a, b) = log Gamma(a) + log Gamma(b) - log Gamma(a + b).

  Not ``jax.scipy.special.betaln``: its approximation is only float32-accurate
  (jax PR #13288); in float64 it is off by up to ~1e-5 relative, e.g. at
  (8.9, 0.39), and by 5e-8 at (10.5, 5.5). This form is accurate to about
  eps * max|log Gamma|, e.g. ~1e-11 relative for a = 1e5, b = 3 in float64.
  """
  return gammaln(a) + gammaln(b) - gammaln(a + b)


def _normal_log_prob(x: Array, mean, var) -> Array:
  return -0.5 * (LOG_2PI + jnp.log(var) + jnp.square(x - mean) / var)


# ----------------------------------------------------------------------------
# Beta-Bernoulli.
# ----------------------------------------------------------------------------


class _Conjugate:
  """What every conjugate model derives from its posterior (same family as the prior).

  Subclasses define ``posterior(x)``, ``mode()`` and ``std()``.
  """

  def map(self, x) -> Array:
    """theta_MAP: the mode of the posterior. Beta-Bernoulli: (k + a - 1) / (N + a + b - 2);
    Dirichlet-Categorical: (n_k + alpha_k - 1) / (N + sum(alpha) - K), [K];
    Normal-Normal: the posterior mean."""
    return self.posterior(x).mode()

  def posterior_std(self, x) -> Array:
    """Posterior standard deviation of theta ([K] per component for the Dirichlet)."""
    return self.posterior(x).std()


@flax.struct.dataclass
class BetaBernoulli(_Conjugate):
  """theta ~ Beta(a, b), x_i | theta ~ Bernoulli(theta); theta = p(x = 1).

  Attributes:
    a: [] prior pseudo-count of ones (> 0).
    b: [] prior pseudo-count of zeros (> 0).
  Data x: [N] with values in {0, 1} (bool, int or float).
  """
  a: Array
  b: Array

  def _check(self):
    _check_hyperparameter(self.a, "a")
    _check_hyperparameter(self.b, "b")

  def _counts(self, x: Array):
    """(k, n): number of ones and of observations."""
    return jnp.sum(x), x.shape[0]

  def mle(self, x) -> Array:
    """theta_MLE = k / N, shape []. Needs N >= 1."""
    x = _check_binary(x, "x")
    _check_nonempty(x, "x", "MLE")
    return jnp.mean(x)

  def posterior(self, x) -> BetaBernoulli:
    """p(theta | X) = Beta(a + k, b + N - k)."""
    self._check()
    x = _check_binary(x, "x")
    k, n = self._counts(x)
    return BetaBernoulli(a=self.a + k, b=self.b + (n - k))

  def mean(self) -> Array:
    """E[theta] = a / (a + b), shape []."""
    return self.a / (self.a + self.b)

  def std(self) -> Array:
    """sqrt(Var[theta]) = sqrt(ab / ((a + b)^2 (a + b + 1))), shape []."""
    s = self.a + self.b
    return jnp.sqrt(self.a * self.b / (s * s * (s + 1.0)))

  def mode(self) -> Array:
    """argmax of the Beta(a, b) density: (a - 1) / (a + b - 2) for a, b >= 1.

    Edge cases (module docstring): a = b = 1 -> 0.5; a < 1 <= b -> 0;
    b < 1 <= a -> 1; a, b < 1 -> NaN (modes at both 0 and 1).
    """
    a, b = jnp.broadcast_arrays(_float(self.a), _float(self.b))
    return _dirichlet_mode(jnp.stack([a, b], axis=-1))[..., 0]

  def log_prior(self, theta) -> Array:
    """log Beta(theta | a, b), shape of theta."""
    self._check()
    theta = _float(theta)
    return (xlogy(self.a - 1.0, theta) + xlog1py(self.b - 1.0, -theta)
            - _log_beta(self.a, self.b))

  def plugin_log_prob(self, theta, x_new) -> Array:
    """Per-example log p(x_new | theta) = x log theta + (1 - x) log(1 - theta), [M].

    Gives -inf where theta is 0 or 1 and x_new disagrees (e.g. the MLE after
    seeing only zeros).
    """
    _check_theta(theta)
    x_new = _check_binary(x_new, "x_new")
    theta = _float(theta)
    return xlogy(x_new, theta) + xlog1py(1.0 - x_new, -theta)

  def log_likelihood(self, theta, x) -> Array:
    """log p(X | theta) = sum_i log p(x_i | theta), shape []."""
    return jnp.sum(self.plugin_log_prob(theta, x))

  def log_evidence(self, x) -> Array:
    """log p(X) = log B(a + k, b + N - k) - log B(a, b), shape [] (0 for N = 0)."""
    post = self.posterior(x)
    return _log_beta(post.a, post.b) - _log_beta(self.a, self.b)

  def predictive_log_prob(self, x_new) -> Array:
    """Per-example log p(x_new) = log E[theta^x (1 - theta)^(1-x)], [M].

    p(x = 1) = a / (a + b). For a posterior model this is log p(x_new | X).
    """
    self._check()
    x_new = _check_binary(x_new, "x_new")
    a, b = _float(self.a), _float(self.b)
    return jnp.where(x_new == 1, jnp.log(a), jnp.log(b)) - jnp.log(a + b)

  def posterior_predictive_log_prob(self, x, x_new) -> Array:
    """Per-example log p(x_new | X): p(1 | X) = (a + k) / (a + b + N), [M]."""
    return self.posterior(x).predictive_log_prob(x_new)

  def sample(self, key: Array, theta, shape) -> Array:
    """x ~ Bernoulli(theta), int32 in {0, 1} of the given shape."""
    return jax.random.bernoulli(key, theta, shape).astype(jnp.int32)

  def entropy(self, theta) -> Array:
    """Entropy of Bernoulli(theta) in nats, shape []."""
    theta = _float(theta)
    return -(xlogy(theta, theta) + xlog1py(1.0 - theta, -theta))


# ----------------------------------------------------------------------------
# Dirichlet-Categorical.
# ----------------------------------------------------------------------------


@flax.struct.dataclass
class DirichletCategorical(_Conjugate):
  """theta ~ Dir(alpha), x_i | theta ~ Categorical(theta).

  Attributes:
    alpha: [K] prior pseudo-counts (> 0); K, the number of classes, is alpha's length.
  Data x: [N] integer labels in [0, K). theta: [K] probabilities.
  """
  alpha: Array

  @property
  def num_classes(self) -> int:
    return self.alpha.shape[-1]

  def _check(self):
    if not hasattr(self.alpha, "shape") or len(self.alpha.shape) != 1:
      raise UserError(f"alpha must be a 1-D array [K] of concentrations, got "
                      f"{self.alpha!r}; e.g. jnp.ones(K).")
    _check_hyperparameter(self.alpha, "alpha")

  def counts(self, x) -> Array:
    """n_k = #{i: x_i = k}, [K] floats.

    A one-hot comparison summed over the data ([N, K] booleans): unlike a
    scatter (``bincount``) it compiles fast for every new N and vectorizes well.
    """
    self._check()
    x = _check_labels(x, self.num_classes, "x")
    return _float(jnp.sum(x[:, None] == jnp.arange(self.num_classes), axis=0))

  def mle(self, x) -> Array:
    """theta_MLE = n_k / N, [K]. Needs N >= 1."""
    x = _check_labels(x, self.num_classes, "x")
    _check_nonempty(x, "x", "MLE")
    return self.counts(x) / x.shape[0]

  def posterior(self, x) -> DirichletCategorical:
    """p(theta | X) = Dir(alpha + n)."""
    return DirichletCategorical(alpha=self.alpha + self.counts(x))

  def mean(self) -> Array:
    """E[theta] = alpha / sum(alpha), [K]."""
    alpha = _float(self.alpha)
    return alpha / jnp.sum(alpha)

  def std(self) -> Array:
    """Per-component sqrt(Var[theta_k]) = sqrt(alpha_k (A - alpha_k) / (A^2 (A + 1))), [K]."""
    alpha = _float(self.alpha)
    total = jnp.sum(alpha)
    return jnp.sqrt(alpha * (total - alpha) / (total * total * (total + 1.0)))

  def mode(self) -> Array:
    """argmax of the Dir(alpha) density, [K]; conventions in the module docstring."""
    return _dirichlet_mode(_float(self.alpha))

  def log_prior(self, theta) -> Array:
    """log Dir(theta | alpha), shape [] (theta: [K] on the simplex)."""
    self._check()
    alpha = _float(self.alpha)
    return (jnp.sum(xlogy(alpha - 1.0, _float(theta)), axis=-1)
            + gammaln(jnp.sum(alpha)) - jnp.sum(gammaln(alpha)))

  def plugin_log_prob(self, theta, x_new) -> Array:
    """Per-example log p(x_new | theta) = log theta[x_new], [M] (-inf where theta = 0)."""
    _check_theta(theta)
    x_new = _check_labels(x_new, jnp.shape(theta)[-1], "x_new")
    return jnp.log(_float(theta))[x_new]

  def log_likelihood(self, theta, x) -> Array:
    """log p(X | theta) = sum_i log theta[x_i], shape []."""
    return jnp.sum(self.plugin_log_prob(theta, x))

  def log_evidence(self, x) -> Array:
    """log p(X) = log G(A) - log G(N + A) + sum_k [log G(n_k + alpha_k) - log G(alpha_k)].

    A = sum(alpha), G the Gamma function; shape [] (0 for N = 0).
    """
    alpha = _float(self.alpha)
    post = _float(self.posterior(x).alpha)
    return (gammaln(jnp.sum(alpha)) - gammaln(jnp.sum(post))
            + jnp.sum(gammaln(post) - gammaln(alpha)))

  def predictive_log_prob(self, x_new) -> Array:
    """Per-example log p(x_new = k) = log alpha_k - log sum(alpha), [M].

    For a posterior model: log (n_k + alpha_k) - log (N + sum(alpha)).
    """
    self._check()
    x_new = _check_labels(x_new, self.num_classes, "x_new")
    alpha = _float(self.alpha)
    return jnp.log(alpha)[x_new] - jnp.log(jnp.sum(alpha))

  def posterior_predictive_log_prob(self, x, x_new) -> Array:
    """Per-example log p(x_new | X) = log (n_k + alpha_k) - log (N + sum(alpha)), [M]."""
    return self.posterior(x).predictive_log_prob(x_new)

  def sample(self, key: Array, theta, shape) -> Array:
    """x ~ Categorical(theta), int32 labels of the given shape."""
    return jax.random.categorical(key, jnp.log(_float(theta)), shape=tuple(shape))

  def entropy(self, theta) -> Array:
    """Entropy of Categorical(theta) in nats, shape []."""
    theta = _float(theta)
    return -jnp.sum(xlogy(theta, theta), axis=-1)


# ----------------------------------------------------------------------------
# Normal-Normal with known observation variance.
# ----------------------------------------------------------------------------


@flax.struct.dataclass
class NormalNormal(_Conjugate):
  """mu ~ N(mu0, tau2), x_i | mu ~ N(mu, sigma2) with sigma2 known; theta = mu.

  Attributes:
    mu0: [] prior mean.
    tau2: [] prior variance tau_0^2 (> 0).
    sigma2: [] known observation variance (> 0); the posterior keeps it.
  Data x: [N] finite reals.
  """
  mu0: Array
  tau2: Array
  sigma2: Array

  def _check(self):
    _check_finite(self.mu0, "mu0")
    _check_hyperparameter(self.tau2, "tau2")
    _check_hyperparameter(self.sigma2, "sigma2")

  def mle(self, x) -> Array:
    """mu_MLE = mean(x), shape []. Needs N >= 1."""
    x = _check_real(x, "x")
    _check_nonempty(x, "x", "MLE")
    return jnp.mean(x)

  def posterior(self, x) -> NormalNormal:
    """p(mu | X) = N(mu_N, tau_N^2), 1/tau_N^2 = 1/tau2 + N/sigma2,
    mu_N = tau_N^2 (mu0/tau2 + sum(x)/sigma2)."""
    self._check()
    x = _check_real(x, "x")
    precision = 1.0 / self.tau2 + x.shape[0] / self.sigma2
    var = 1.0 / precision
    mean = var * (self.mu0 / self.tau2 + jnp.sum(x) / self.sigma2)
    return NormalNormal(mu0=mean, tau2=var, sigma2=self.sigma2)

  def mean(self) -> Array:
    """E[mu] = mu0, shape []."""
    return _float(self.mu0)

  def std(self) -> Array:
    """sqrt(Var[mu]) = sqrt(tau2), shape []."""
    return jnp.sqrt(_float(self.tau2))

  def mode(self) -> Array:
    """argmax of N(mu0, tau2) = mu0, shape []."""
    return _float(self.mu0)

  def log_prior(self, theta) -> Array:
    """log N(theta | mu0, tau2), shape of theta."""
    self._check()
    return _normal_log_prob(_float(theta), self.mu0, self.tau2)

  def plugin_log_prob(self, theta, x_new) -> Array:
    """Per-example log N(x_new | theta, sigma2), [M]."""
    self._check()
    _check_finite(theta, "theta")
    x_new = _check_real(x_new, "x_new")
    return _normal_log_prob(x_new, theta, self.sigma2)

  def log_likelihood(self, theta, x) -> Array:
    """log p(X | mu = theta) = sum_i log N(x_i | theta, sigma2), shape []."""
    return jnp.sum(self.plugin_log_prob(theta, x))

  def log_evidence(self, x) -> Array:
    """log p(X) = log N(x | mu0 1, sigma2 I + tau2 1 1^T) in O(N), shape [].

    Matrix determinant lemma and Sherman-Morrison, written with the sufficient
    statistics xbar and S = sum (x_i - xbar)^2 (no cancellation):
      log det = (N - 1) log sigma2 + log(sigma2 + N tau2),
      quad    = S / sigma2 + N (xbar - mu0)^2 / (sigma2 + N tau2).
    """
    self._check()
    x = _check_real(x, "x")
    n = x.shape[0]
    if n == 0:
      return jnp.zeros((), x.dtype)
    xbar = jnp.mean(x)
    s = jnp.sum(jnp.square(x - xbar))
    total_var = self.sigma2 + n * self.tau2
    log_det = (n - 1) * jnp.log(self.sigma2) + jnp.log(total_var)
    quad = s / self.sigma2 + n * jnp.square(xbar - self.mu0) / total_var
    return -0.5 * (n * LOG_2PI + log_det + quad)

  def predictive_log_prob(self, x_new) -> Array:
    """Per-example log N(x_new | mu0, sigma2 + tau2), [M].

    For a posterior model: log N(x_new | mu_N, sigma2 + tau_N^2) = log p(x_new | X).
    """
    self._check()
    x_new = _check_real(x_new, "x_new")
    return _normal_log_prob(x_new, self.mu0, self.sigma2 + self.tau2)

  def posterior_predictive_log_prob(self, x, x_new) -> Array:
    """Per-example log p(x_new | X) = log N(x_new | mu_N, sigma2 + tau_N^2), [M]."""
    return self.posterior(x).predictive_log_prob(x_new)

  def sample(self, key: Array, theta, shape) -> Array:
    """x ~ N(theta, sigma2) of the given shape."""
    return theta + jnp.sqrt(self.sigma2) * jax.random.normal(key, tuple(shape))

  def entropy(self, theta=None) -> Array:
    """Entropy of N(theta, sigma2) in nats, 0.5 log(2 pi e sigma2) (theta-free)."""
    del theta
    return 0.5 * (LOG_2PI + 1.0 + jnp.log(_float(self.sigma2)))
