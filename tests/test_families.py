"""Variational families and priors (``vae_jax.families``) against independent references.

* Flows: every log |det J| against ``slogdet`` of the autodiff Jacobian
  (``jax.jacfwd``); IAF's Jacobian is triangular with diagonal sigma; a flow
  posterior's density, inverted numerically in the test (bisection for planar
  maps, the sequential inverse for IAF), integrates to 1 on a 2-D grid and
  has the draws' moments; E_q[p_ref / q] = 1 in 3-D.
* Mixtures (mog, VampPrior): log p(z) against SciPy's logsumexp of
  ``scipy.stats.norm`` log-densities; the VampPrior's components are the
  encoder's Gaussians at the pseudo-inputs; a mixture's draws have its mean
  and covariance.
* DiagNormal / StandardNormal against SciPy and the written-out Gaussian KL.
* The ELBO's terms against NumPy recomputations on the same draws, and the
  reparametrized gradient reaching the flow heads.

Math runs in float64 (``jax.enable_x64``) where precision matters; the model
is built in float32 (its heads cast to float32) and its posterior cast to
float64 afterwards.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from numpy.testing import assert_allclose
import pytest
from scipy import special, stats

from vae_jax import models
from vae_jax.inference import estimators
from vae_jax.inference import objectives
from vae_jax.families import DiagNormal, DiagNormalMixture, FlowPosterior, StandardNormal
from vae_jax.families.posteriors import iaf, planar

IMAGE = (4, 4, 1)
D_IN = 16
# The posteriors the flow tests share (one model each, built once): L = 3 with three
# steps for the Jacobians and the importance identity, L = 2 with two for the grid.
BATCH = {3: 3, 2: 2}


@pytest.fixture
def x64():
  with jax.enable_x64(True):
    yield


def _np_softplus(a):
  return np.logaddexp(0.0, a)


def _vae(posterior="gaussian", latent_dim=3, flow_steps=0, prior="standard", components=0):
  return models.make_vae(image_shape=IMAGE, latent_dim=latent_dim, hidden_dims=(16,),
                         posterior=posterior, flow_steps=flow_steps, prior=prior,
                         prior_components=components)


def _data(seed, batch):
  rng = np.random.default_rng(seed)
  return jnp.asarray((rng.uniform(size=(batch, D_IN)) < 0.4).astype(np.float32))


def _random_params(model, x, seed, strength):
  """Random parameters in float32, drawn in NumPy for the shapes of ``model.init`` (no
  initializer is compiled): Dense kernels N(0, 1/fan_in) and small biases, with the
  flow heads far from their near-identity start (``strength`` scales how far) and the
  prior's components distinct."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)

  def draw(path, leaf):
    names = [getattr(p, "key", "") for p in path]
    shape, name, group = leaf.shape, names[-1], names[-2]
    normal = lambda sd: sd * rng.normal(size=shape)
    fan_in = shape[0] if len(shape) == 2 else 1
    if names[1] == "prior":
      return {"logits": normal(1.0), "loc": normal(1.5), "log_scale": rng.uniform(-0.7, 0.3, shape),
              "pseudo_inputs": normal(2.0)}[name]
    if group.startswith("iaf_") and group != "iaf_context":
      return {"w_in": normal(1.0 / np.sqrt(fan_in)), "w_context": normal(1.0 / np.sqrt(fan_in)),
              "b_in": normal(0.1), "w_m": normal(strength / np.sqrt(fan_in)),
              "b_m": normal(strength), "w_s": normal(strength / np.sqrt(fan_in)),
              "b_s": 1.0 + normal(0.5 * strength),
              "w_context_m": normal(strength / np.sqrt(fan_in)),
              "w_context_s": normal(strength / np.sqrt(fan_in))}[name]
    if group.startswith("planar_"):
      return normal((0.4 * strength if group == "planar_u" else 1.0) / np.sqrt(fan_in)
                    if name == "kernel" else strength)
    if group == "log_scale":
      return normal(0.1 / np.sqrt(fan_in) if name == "kernel" else 0.2)
    return normal(1.0 / np.sqrt(fan_in) if name == "kernel" else 0.1)

  params = jax.tree_util.tree_map_with_path(draw, shapes)
  return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), params)


@functools.lru_cache(maxsize=None)
def _setup(posterior, latent_dim, flow_steps=0, prior="standard", components=0, strength=0.7,
           seed=0):
  """(model, x, params, encode) in float32, built once per configuration."""
  with jax.enable_x64(False):
    model = _vae(posterior, latent_dim, flow_steps, prior, components)
    x = _data(seed, BATCH.get(latent_dim, 3))
    params = _random_params(model, x, seed, strength)
    encode = jax.jit(lambda p, v: model.apply(p, v, method="encode"))
  return model, x, params, encode


@functools.lru_cache(maxsize=None)
def _posterior_np(posterior, latent_dim, flow_steps, strength):
  model, x, params, encode = _setup(posterior, latent_dim, flow_steps, strength=strength)
  with jax.enable_x64(False):
    q = encode(params, x)
  return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), q)


def _posterior64(posterior, latent_dim=3, flow_steps=3, strength=0.7):
  """The shared flow posterior q(z|x) of ``_setup``, cast to float64 (call under x64)."""
  return jax.tree_util.tree_map(jnp.asarray,
                                _posterior_np(posterior, latent_dim, flow_steps, strength))


_forward = jax.jit(lambda q, z: q.forward(z))
_sample_and_log_prob = jax.jit(lambda q, key, n: q.sample_and_log_prob(key, (n,)),
                               static_argnums=2)


# ----------------------------------------------------------------------------
# 1. log-determinants against the autodiff Jacobian.
# ----------------------------------------------------------------------------


def _planar_inputs(seed, n=12, latent_dim=4):
  """Random (z, u, w, b), half of them with w.u < -1 and w.z + b near 0 (where
  1 + (1 - tanh^2) w.u < 0: the u' correction is what keeps the map invertible)."""
  rng = np.random.default_rng(seed)
  z = rng.normal(size=(n, latent_dim))
  w = rng.normal(size=(n, latent_dim))
  u = rng.normal(size=(n, latent_dim))
  b = rng.normal(size=(n,))
  half = n // 2
  w_sq = np.sum(w[:half] ** 2, -1, keepdims=True)
  u_perp = u[:half] - np.sum(u[:half] * w[:half], -1, keepdims=True) * w[:half] / w_sq
  u[:half] = -rng.uniform(1.5, 4.0, size=(half, 1)) * w[:half] / w_sq + u_perp
  b[:half] = -np.sum(w[:half] * z[:half], -1) + 0.1 * rng.normal(size=half)
  assert np.all(np.sum(w[:half] * u[:half], -1) < -1.0)
  return z, u, w, b


def _np_u_hat(u, w):
  """u' = u + (m(w.u) - w.u) w / |w|^2, m(a) = -1 + softplus(a) (Rezende & Mohamed, A.1)."""
  wu = np.sum(w * u, -1, keepdims=True)
  return u + (-1.0 + _np_softplus(wu) - wu) * w / np.sum(w * w, -1, keepdims=True)


@jax.jit
def _planar_jacobians(z, u, w, b):
  def one(zi, ui, wi, bi):
    jac = jax.jacfwd(lambda v: planar.planar_forward(v, ui, wi, bi)[0])(zi)
    return jnp.linalg.slogdet(jac), planar.planar_forward(zi, ui, wi, bi)[1]
  return jax.vmap(one)(z, u, w, b)


def test_planar_log_det_matches_jacobian(x64):
  z, u, w, b = _planar_inputs(0)
  (sign, logabs), log_det = _planar_jacobians(z, u, w, b)
  # Invertible everywhere, including where w.u < -1 (det > 0, not just != 0).
  np.testing.assert_array_equal(np.asarray(sign), 1.0)
  assert_allclose(log_det, logabs, rtol=1e-10, atol=1e-12)
  # The uncorrected map z + u tanh(w.z + b) is not invertible at these inputs:
  # they reach the regime where u' matters.
  raw = 1.0 + (1.0 - np.tanh(np.sum(w * z, -1) + b) ** 2) * np.sum(w * u, -1)
  assert np.sum(raw < 0) >= 3


def test_planar_forward_matches_numpy(x64):
  z, u, w, b = _planar_inputs(1)
  u_hat = _np_u_hat(u, w)
  want = z + u_hat * np.tanh(np.sum(w * z, -1) + b)[:, None]
  got, _ = jax.jit(planar.planar_forward)(z, u, w, b)
  assert_allclose(got, want, rtol=1e-12, atol=1e-12)
  assert np.all(np.sum(w * u_hat, -1) > -1.0)


def _iaf_step_and_inputs(seed, latent_dim=4, hidden=8, context_dim=5, batch=6):
  step = iaf.init_step(jax.random.key(seed), latent_dim, hidden, context_dim)
  rng = np.random.default_rng(seed)
  # Far from the near-identity start: every weight O(1), sigma spread over (0, 1).
  step = {k: jnp.asarray(np.asarray(v, np.float64) + rng.normal(size=v.shape))
          for k, v in step.items()}
  z = jnp.asarray(rng.normal(size=(batch, latent_dim)))
  context = jnp.asarray(rng.normal(size=(batch, context_dim)))
  return step, z, context


@functools.partial(jax.jit, static_argnums=0)
def _full_jacobian(f, *args):
  """jacfwd of f(*args) in its last argument; f a hashable (module-level) function."""
  return jax.jacfwd(lambda v: f(*args[:-1], v))(args[-1])


def _per_example(jac):
  """The per-example Jacobians [B, L, L] (diagonal blocks of a [B, L, B, L] Jacobian),
  after checking that examples do not interact."""
  jac = np.array(jac)
  batch = jac.shape[0]
  blocks = np.stack([jac[i, :, i, :] for i in range(batch)])
  for i in range(batch):
    jac[i, :, i, :] = 0.0
  np.testing.assert_array_equal(jac, 0.0)
  return blocks


def _iaf_out(step, context, z):
  return iaf.iaf_forward(step, z, context)[0]


def _flow_out(q, z):
  return q.forward(z)[0]


def _first_map_out(q, z):
  """The first step applied of q's chain of bijectors (the chain applies its last first)."""
  return q.bijector().bijectors[-1].forward_and_log_det(z)[0]


def _second_map_out(q, z):
  return q.bijector().bijectors[-2].forward_and_log_det(z)[0]


@pytest.mark.slow
def test_iaf_log_det_matches_jacobian(x64):
  step, z, context = _iaf_step_and_inputs(2)
  blocks = _per_example(_full_jacobian(_iaf_out, step, context, z))
  sign, logabs = np.linalg.slogdet(blocks)
  _, log_det = jax.jit(iaf.iaf_forward)(step, z, context)
  np.testing.assert_array_equal(sign, 1.0)
  assert_allclose(log_det, logabs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("posterior", ["planar", "iaf"])
def test_flow_posterior_log_det_matches_jacobian(x64, posterior):
  q = _posterior64(posterior)
  assert isinstance(q, FlowPosterior) and len(q.steps) == 3
  z0 = jnp.asarray(np.random.default_rng(4).normal(size=(3, 3))) * 1.5
  blocks = _per_example(_full_jacobian(_flow_out, q, z0))
  sign, logabs = np.linalg.slogdet(blocks)
  z_t, log_det = _forward(q, z0)
  assert z_t.shape == (3, 3) and log_det.shape == (3,)
  np.testing.assert_array_equal(sign, 1.0)
  assert_allclose(log_det, logabs, rtol=1e-9, atol=1e-10)
  assert np.max(np.abs(logabs)) > 0.3          # not a near-identity flow


def test_planar_posterior_applies_steps_in_order(x64):
  """z_t = f_t(z_{t-1}), step 0 first (the docstring's order), written out in NumPy."""
  q = _posterior64("planar")
  z = np.random.default_rng(6).normal(size=(3, 3))
  z_t, _ = _forward(q, jnp.asarray(z))
  for s in q.steps:
    u, w, b = (np.asarray(s[k]) for k in ("u", "w", "b"))
    z = z + _np_u_hat(u, w) * np.tanh(np.sum(w * z, -1) + b)[:, None]
  assert_allclose(z_t, z, rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------
# 2. IAF's Jacobian is triangular with diagonal sigma.
# ----------------------------------------------------------------------------


def test_iaf_step_jacobian_is_lower_triangular_with_sigma_diagonal(x64):
  step, z, context = _iaf_step_and_inputs(7)
  blocks = _per_example(_full_jacobian(_iaf_out, step, context, z))
  latent_dim = z.shape[-1]
  upper = np.triu(np.ones((latent_dim, latent_dim), bool), k=1)
  np.testing.assert_array_equal(blocks[:, upper], 0.0)      # d z'_i / d z_j = 0, j > i
  assert np.all(np.abs(blocks[:, upper.T]) > 1e-8)           # autoregressive, not diagonal
  _, s = jax.jit(iaf.shift_and_logit)(step, z, context)
  assert_allclose(np.diagonal(blocks, axis1=1, axis2=2), special.expit(np.asarray(s)),
                  rtol=1e-12, atol=1e-14)


def test_iaf_second_step_is_triangular_in_reversed_order(x64):
  q = _posterior64("iaf")
  latent_dim = 3
  upper = np.triu(np.ones((latent_dim, latent_dim), bool), k=1)
  z0 = jnp.asarray(np.random.default_rng(9).normal(size=(3, latent_dim)))
  # Step 0: lower triangular in the natural order.
  j0 = _per_example(_full_jacobian(_first_map_out, q, z0))
  np.testing.assert_array_equal(j0[:, upper], 0.0)
  # Step 1 reverses its input first: z2_i depends on z1_k only for k >= L - 1 - i, i.e.
  # lower triangular with the input's order reversed, with diagonal sigma.
  z1 = jax.jit(_first_map_out)(q, z0)
  j1 = _per_example(_full_jacobian(_second_map_out, q, z1))
  j1_rev = j1[:, :, ::-1]
  np.testing.assert_array_equal(j1_rev[:, upper], 0.0)
  assert np.all(np.abs(j1_rev[:, upper.T]) > 1e-8)
  assert np.any(np.abs(j1[:, upper]) > 1e-3)                  # the reversal does happen
  _, s = jax.jit(iaf.shift_and_logit)(q.steps[1], z1[..., ::-1], q.context)
  assert_allclose(np.diagonal(j1_rev, axis1=1, axis2=2), special.expit(np.asarray(s)),
                  rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------
# 3. A flow posterior's density is normalized and belongs to its draws.
# ----------------------------------------------------------------------------


def _planar_inverse(z_t, steps, iters=52):
  """z_0 with f_T(...f_1(z_0)) = z_t, one planar map at a time from the last: a = w.z + b
  solves the scalar, increasing equation a + (w.u') tanh(a) = w.z' + b (bisection)."""
  z = np.asarray(z_t)
  for s in steps[::-1]:
    u, w, b = (np.asarray(s[k]) for k in ("u", "w", "b"))
    u_hat = _np_u_hat(u, w)
    w_u_hat = np.sum(w * u_hat, -1)                                    # [B], > -1
    c = np.sum(w * z, -1) + b                                          # [G, B]
    lo, hi = c - np.abs(w_u_hat) - 1.0, c + np.abs(w_u_hat) + 1.0
    for _ in range(iters):
      mid = 0.5 * (lo + hi)
      above = mid + w_u_hat * np.tanh(mid) > c
      hi, lo = np.where(above, mid, hi), np.where(above, lo, mid)
    z = z - u_hat * np.tanh(0.5 * (lo + hi))[..., None]
  return z


@jax.jit
def _iaf_inverse(q, z_t):
  """The sequential inverse of q's IAF chain: for each step from the last, coordinate i
  from z'_i = sigma_i z_i + (1 - sigma_i) m_i, with m_i, sigma_i known from z_<i."""
  y = z_t
  latent_dim = y.shape[-1]
  for t in reversed(range(len(q.steps))):
    x = jnp.zeros_like(y)
    for i in range(latent_dim):
      m, s = iaf.shift_and_logit(q.steps[t], x, q.context)
      sigma = jax.nn.sigmoid(s)
      x = x.at[..., i].set((y[..., i] - (1.0 - sigma[..., i]) * m[..., i]) / sigma[..., i])
    y = x[..., ::-1] if t > 0 else x                       # steps t >= 1 reversed their input
  return y


@pytest.mark.parametrize("posterior", ["planar", "iaf"])
@pytest.mark.slow
def test_flow_density_integrates_to_one_on_a_grid(x64, posterior):
  """L = 2, two steps: log q(z_T) = log N(z_0) - log |det| with z_0 = f^{-1}(z_T) found
  by the test, summed over a grid covering the draws."""
  batch = BATCH[2]
  q = _posterior64(posterior, latent_dim=2, flow_steps=2)
  draws, log_q_draws = _sample_and_log_prob(q, jax.random.key(0), 20_000)   # [N, B, 2]
  draws, log_q_draws = np.asarray(draws), np.asarray(log_q_draws)
  lo, hi = draws.min(axis=(0, 1)) - 4.0, draws.max(axis=(0, 1)) + 4.0
  n, n_check = 300, 200
  g0, g1 = np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n)
  cell = (g0[1] - g0[0]) * (g1[1] - g1[0])
  grid = np.stack(np.meshgrid(g0, g1, indexing="ij"), -1).reshape(-1, 1, 2)
  # The grid's points and, after them, some of the draws: one inversion for both.
  z_t = np.concatenate([np.broadcast_to(grid, (n * n, batch, 2)), draws[:n_check]])
  z0 = (_planar_inverse(z_t, q.steps) if posterior == "planar"
        else np.asarray(_iaf_inverse(q, jnp.asarray(z_t))))
  back, log_det = _forward(q, jnp.asarray(z0))
  assert_allclose(back, z_t, atol=1e-8)                                 # the inverse is one
  loc, scale = np.asarray(q.base.loc), np.exp(np.asarray(q.base.log_scale))
  log_q = stats.norm.logpdf(z0, loc, scale).sum(-1) - np.asarray(log_det)   # [G + n_check, B]
  # log q of the draws, from the sampler, is this change of variables.
  assert_allclose(log_q_draws[:n_check], log_q[n * n:], rtol=1e-8, atol=1e-8)
  dens, z_grid = np.exp(log_q[:n * n]), z_t[:n * n]
  assert_allclose(dens.sum(0) * cell, 1.0, atol=1e-5)
  # The density is the draws': its mean against theirs (Monte-Carlo error).
  grid_mean = np.einsum("gb,gbl->bl", dens, z_grid) * cell
  draw_se = draws.std(0) / np.sqrt(draws.shape[0])
  assert np.all(np.abs(grid_mean - draws.mean(0)) < 5 * draw_se)
  # The flow does change the density: not the base Gaussian's at z_t.
  base = stats.norm.logpdf(z_grid, loc, scale).sum(-1)
  assert np.max(np.abs(log_q[:n * n] - base)[dens > 1e-3]) > 0.3


@pytest.mark.parametrize("posterior", ["planar", "iaf"])
def test_flow_importance_identity(x64, posterior):
  """E_{z~q}[p_ref(z) / q(z)] = 1 for a normalized p_ref, with L = 3 and three steps:
  log q of the draws is a normalized density (an error c in log q moves the mean to e^-c)."""
  q = _posterior64(posterior)
  z, log_q = _sample_and_log_prob(q, jax.random.key(2), 100_000)
  z, log_q = np.asarray(z), np.asarray(log_q)
  pilot = z[:20_000]
  z, log_q = z[20_000:], log_q[20_000:]
  for b in range(z.shape[1]):
    # p_ref narrower than q (half the covariance of separate draws): p_ref / q stays bounded.
    ref = stats.multivariate_normal(pilot[:, b].mean(0), 0.5 * np.cov(pilot[:, b].T))
    ratio = np.exp(ref.logpdf(z[:, b]) - log_q[:, b])
    se = ratio.std() / np.sqrt(ratio.size)
    assert se < 0.006
    assert abs(ratio.mean() - 1.0) < 5 * se, (ratio.mean(), se)


# ----------------------------------------------------------------------------
# 4. Mixture priors: mog and the VampPrior.
# ----------------------------------------------------------------------------


def _np_mixture_log_prob(z, logits, loc, log_scale):
  """logsumexp_k [log softmax(logits)_k + sum_l log N(z_l | loc_kl, scale_kl)]."""
  z = np.asarray(z, np.float64)[..., None, :]                                # [..., 1, L]
  loc, log_scale = np.asarray(loc, np.float64), np.asarray(log_scale, np.float64)
  comp = stats.norm.logpdf(z, loc, np.exp(log_scale)).sum(-1)
  logits = np.asarray(logits, np.float64)
  return special.logsumexp(comp + logits - special.logsumexp(logits), axis=-1)


_log_prob = jax.jit(lambda p, z: p.log_prob(z))


def test_mixture_log_prob_matches_scipy(x64):
  rng = np.random.default_rng(20)
  k, l = 5, 3
  logits, loc = rng.normal(size=k), 2.0 * rng.normal(size=(k, l))
  log_scale = rng.uniform(-1.5, 0.8, size=(k, l))
  p = DiagNormalMixture(jnp.asarray(logits), jnp.asarray(loc), jnp.asarray(log_scale))
  assert p.num_components == k and p.latent_dim == l
  # Near the components, in the tails (log p ~ -1e3: logsumexp must not underflow),
  # and with sample and batch axes.
  z = np.concatenate([rng.normal(size=(50, l)) * 3, 15 + rng.normal(size=(10, l))])
  got = _log_prob(p, jnp.asarray(z))
  assert got.shape == (60,)
  assert_allclose(got, _np_mixture_log_prob(z, logits, loc, log_scale), rtol=1e-10, atol=1e-9)
  z3 = rng.normal(size=(4, 2, l))
  assert_allclose(_log_prob(p, jnp.asarray(z3)),
                  _np_mixture_log_prob(z3, logits, loc, log_scale), rtol=1e-10, atol=1e-10)


def test_mixture_sample_moments(x64):
  logits = np.array([0.0, 1.0, -0.5])
  loc = np.array([[-2.0, 1.0], [1.5, 0.5], [0.0, -3.0]])
  log_scale = np.log(np.array([[0.5, 1.0], [1.0, 0.3], [0.7, 0.7]]))
  p = DiagNormalMixture(jnp.asarray(logits), jnp.asarray(loc), jnp.asarray(log_scale))
  n = 200_000
  z = np.asarray(jax.jit(lambda p, k: p.sample(k, (n,)))(p, jax.random.key(21)))
  assert z.shape == (n, 2)
  pi = special.softmax(logits)
  mean = pi @ loc
  cov = (np.einsum("k,kl,km->lm", pi, loc, loc) + np.diag(pi @ np.exp(2 * log_scale))
         - np.outer(mean, mean))
  assert np.all(np.abs(z.mean(0) - mean) < 5 * np.sqrt(np.diag(cov) / n))
  centred = z - mean
  prods = centred[:, :, None] * centred[:, None, :]
  assert np.all(np.abs(prods.mean(0) - cov) < 5 * prods.std(0) / np.sqrt(n))
  # The weights: the fraction of draws below -1.8 in z_2 (mostly the third component).
  frac = np.mean(z[:, 1] < -1.8)
  want = sum(pi[j] * stats.norm.cdf(-1.8, loc[j, 1], np.exp(log_scale[j, 1])) for j in range(3))
  assert abs(frac - want) < 5 * np.sqrt(want * (1 - want) / n)


@pytest.mark.parametrize("posterior", ["gaussian", "planar"])
def test_vamp_prior_is_the_encoders_mixture_at_the_pseudo_inputs(posterior):
  k, l = 4, 3
  model, _, params, encode = _setup(posterior, l, 0 if posterior == "gaussian" else 3,
                                    "vamp", k)
  p = jax.jit(lambda v: model.apply(v, method="prior_distribution"))(params)
  assert isinstance(p, DiagNormalMixture) and p.name == "vamp" and p.num_components == k
  u = jax.nn.sigmoid(params["params"]["prior"]["pseudo_inputs"])
  q_u = encode(params, u)
  base = q_u.base if posterior == "planar" else q_u                  # a flow's Gaussian
  loc, log_scale = np.asarray(base.loc, np.float64), np.asarray(base.log_scale, np.float64)
  assert loc.shape == (k, l)
  assert np.ptp(loc, axis=0).max() > 0.1                             # distinct components
  z = np.random.default_rng(23).normal(size=(5, 3, l)) * 1.5
  comp = stats.norm.logpdf(z[..., None, :], loc, np.exp(log_scale)).sum(-1)  # [5, 3, K]
  want = special.logsumexp(comp, axis=-1) - np.log(k)                 # log-mean-exp
  assert_allclose(_log_prob(p, jnp.asarray(z, jnp.float32)), want, rtol=2e-5, atol=2e-4)


def test_mog_prior_from_the_model_matches_scipy():
  model, _, params, _ = _setup("iaf", 3, 3, "mog", 4)
  p = jax.jit(lambda v: model.apply(v, method="prior_distribution"))(params)
  assert isinstance(p, DiagNormalMixture) and p.name == "mog"
  pp = params["params"]["prior"]
  assert p.loc.shape == (4, 3)
  z = np.random.default_rng(25).normal(size=(7, 3, 3)) * 2
  want = _np_mixture_log_prob(z, pp["logits"], pp["loc"], pp["log_scale"])
  assert_allclose(_log_prob(p, jnp.asarray(z, jnp.float32)), want, rtol=2e-5, atol=2e-4)


# ----------------------------------------------------------------------------
# 5. DiagNormal and StandardNormal.
# ----------------------------------------------------------------------------


def _diag_normal(seed, batch=4, l=3):
  rng = np.random.default_rng(seed)
  loc, log_scale = rng.normal(size=(batch, l)), rng.uniform(-1.0, 0.7, size=(batch, l))
  return loc, log_scale, DiagNormal(jnp.asarray(loc), jnp.asarray(log_scale))


def test_diag_normal_log_prob_and_draws_match_scipy(x64):
  loc, log_scale, q = _diag_normal(30)
  scale = np.exp(log_scale)
  z = np.random.default_rng(31).normal(size=(5, 4, 3)) * 2
  assert_allclose(_log_prob(q, jnp.asarray(z)), stats.norm.logpdf(z, loc, scale).sum(-1),
                  rtol=1e-12)
  zs, lq = _sample_and_log_prob(q, jax.random.key(0), 50_000)
  zs, lq = np.asarray(zs), np.asarray(lq)
  assert zs.shape == (50_000, 4, 3) and lq.shape == (50_000, 4)
  assert_allclose(lq, stats.norm.logpdf(zs, loc, scale).sum(-1), rtol=1e-10, atol=1e-10)
  assert np.all(np.abs(zs.mean(0) - loc) < 5 * scale / np.sqrt(zs.shape[0]))
  assert_allclose(zs.std(0), scale, rtol=0.03)
  assert_allclose(q.entropy(), stats.norm.entropy(loc, scale).sum(-1), rtol=1e-12)


def test_diag_normal_kl_to_standard_normal(x64):
  loc, log_scale, q = _diag_normal(32)
  s = np.exp(log_scale)
  want_dims = 0.5 * (loc**2 + s**2 - 1.0 - 2.0 * log_scale)
  per_dim = jax.jit(lambda q: q.kl_per_dim(StandardNormal(3)))(q)
  assert per_dim.shape == (4, 3)
  assert_allclose(per_dim, want_dims, rtol=1e-10, atol=1e-12)
  kl = jax.jit(lambda q: q.kl_divergence(StandardNormal(3)))(q)
  assert_allclose(kl, want_dims.sum(-1), rtol=1e-10)
  # Monte Carlo with NumPy's own draws.
  n = 100_000
  z = loc + s * np.random.default_rng(33).normal(size=(n, 4, 3))
  diff = (stats.norm.logpdf(z, loc, s) - stats.norm.logpdf(z)).sum(-1)
  assert np.all(np.abs(diff.mean(0) - want_dims.sum(-1)) < 5 * diff.std(0) / np.sqrt(n))


def test_kl_has_no_closed_form_to_a_mixture_or_from_a_flow(x64):
  _, _, q = _diag_normal(34)
  mix = DiagNormalMixture(jnp.zeros(2), jnp.zeros((2, 3)), jnp.zeros((2, 3)))
  assert q.kl_divergence(mix) is None and q.kl_per_dim(mix) is None
  flow = _posterior64("planar")
  assert flow.kl_divergence(StandardNormal(3)) is None
  with pytest.raises(NotImplementedError):
    flow.log_prob(jnp.zeros((3, 3)))


def test_standard_normal_log_prob_and_draws(x64):
  z = np.random.default_rng(36).normal(size=(6, 5, 4)) * 3
  p = StandardNormal(4)
  assert_allclose(_log_prob(p, jnp.asarray(z)), stats.norm.logpdf(z).sum(-1), rtol=1e-6)
  draws = np.asarray(jax.jit(lambda k: p.sample(k, (40_000,)))(jax.random.key(3)))
  assert draws.shape == (40_000, 4)
  assert np.all(np.abs(draws.mean(0)) < 5 / np.sqrt(40_000))
  assert_allclose(np.cov(draws.T), np.eye(4), atol=0.03)


# ----------------------------------------------------------------------------
# 6. The ELBO's terms.
# ----------------------------------------------------------------------------


def _np_bernoulli_log_lik(x, logits):
  x, logits = np.asarray(x, np.float64), np.asarray(logits, np.float64)
  return np.sum(x * logits - _np_softplus(logits), -1)


@pytest.mark.parametrize("posterior,flow_steps,prior,components", [
    ("planar", 3, "standard", 0), ("iaf", 3, "mog", 4), ("gaussian", 0, "vamp", 4)])
def test_elbo_monte_carlo_kl_on_the_same_draws(posterior, flow_steps, prior, components):
  """No closed form: aux's KL is mean_s [log q(z_s) - log p(z_s)] on the ELBO's own
  draws, with log p(z) from SciPy and log p(x|z) from NumPy."""
  model, x, params, _ = _setup(posterior, 3, flow_steps, prior, components)
  s, key = 5, jax.random.key(41)

  @jax.jit
  def run(params):
    _, aux = objectives.elbo(params, x, key, model=model, num_samples=s)
    q = model.apply(params, x, method="encode")
    z, log_q = q.sample_and_log_prob(key, (s,))                         # [S, B, L], [S, B]
    return (aux, z, log_q, model.apply(params, method="prior_distribution"),
            model.apply(params, z, method="decode")["logits"])

  aux, z, log_q, p, logits = run(params)
  z64 = np.asarray(z, np.float64)
  if prior == "standard":
    log_p = stats.norm.logpdf(z64).sum(-1)
  else:
    log_p = _np_mixture_log_prob(z64, p.logits, p.loc, p.log_scale)
  want_kl = np.mean(np.asarray(log_q, np.float64) - log_p, 0)
  assert_allclose(aux["kl"], want_kl, rtol=1e-4, atol=1e-4)
  want_recon = np.mean(_np_bernoulli_log_lik(x, logits), 0)
  assert_allclose(aux["recon"], want_recon, rtol=1e-5, atol=1e-3)
  assert_allclose(aux["elbo"], want_recon - want_kl, rtol=1e-4, atol=2e-3)


def test_elbo_gaussian_standard_kl_is_closed_form():
  model, x, params, encode = _setup("gaussian", 3)
  elbo = jax.jit(lambda p, k: objectives.elbo(p, x, k, model=model, num_samples=2)[1])
  aux = elbo(params, jax.random.key(0))
  q = encode(params, x)
  mu, ls = np.asarray(q.loc, np.float64), np.asarray(q.log_scale, np.float64)
  want = 0.5 * np.sum(mu**2 + np.exp(2 * ls) - 1.0 - 2.0 * ls, -1)
  assert_allclose(aux["kl"], want, rtol=1e-5, atol=1e-6)
  # Exact, so the same with other draws (a Monte-Carlo KL would not be).
  np.testing.assert_array_equal(aux["kl"], elbo(params, jax.random.key(1))["kl"])


# ----------------------------------------------------------------------------
# 7. The reparametrized gradient reaches the flow's heads.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("posterior,heads", [
    ("planar", ("planar_u", "planar_w", "planar_b")),
    ("iaf", ("iaf_0", "iaf_1", "iaf_2", "iaf_context"))])
@pytest.mark.slow
def test_reparam_gradient_reaches_flow_heads(posterior, heads):
  model, x, params, _ = _setup(posterior, 3, 3)
  loss_fn, state = estimators.make_vae_loss(model, "reparam", 4)
  grads = jax.jit(jax.grad(lambda p: loss_fn(p, x, jax.random.key(51), state)[0]))(params)
  enc = grads["params"]["encoder"]
  for name in heads:
    leaves = jax.tree_util.tree_leaves(enc[name])
    assert all(np.all(np.isfinite(g)) for g in leaves), name
    norm = np.sqrt(sum(float(np.sum(np.square(g))) for g in leaves))
    assert norm > 1e-6, (name, norm)


@pytest.mark.slow
def test_iaf_context_reaches_every_coordinate():
  """The first coordinate sees no hidden unit (no z_<1): the context must reach m_1 and
  s_1 directly, or every example's first coordinate would get one global affine map."""
  step, z, context = _iaf_step_and_inputs(3)
  m, s = iaf.shift_and_logit(step, z, context)
  m2, s2 = iaf.shift_and_logit(step, z, context + 1.0)
  assert np.all(np.abs(np.asarray(m2 - m)) > 0) and np.all(np.abs(np.asarray(s2 - s)) > 0)


@pytest.mark.parametrize("posterior", ["planar", "iaf"])
@pytest.mark.slow
def test_active_units_of_a_flow_ignore_monte_carlo_noise(posterior):
  """A flow's E_q[z|x] is a Monte-Carlo mean; with an encoder blind to x (its first
  kernel zero) every unit is inactive, and the estimate's noise must not say otherwise."""
  from vae_jax.inference import evaluation  # pylint: disable=g-import-not-at-top
  model = models.make_vae(image_shape=(8, 8, 1), latent_dim=3, hidden_dims=(16,),
                          posterior=posterior, flow_steps=2)
  params = model.init(jax.random.key(0), jnp.zeros((1, 64)))
  enc = params["params"]["encoder"]
  enc["hidden_0"]["kernel"] = jnp.zeros_like(enc["hidden_0"]["kernel"])
  x = np.random.default_rng(0).uniform(size=(200, 64)).astype(np.float32)
  means, kl = evaluation.encoder_statistics(params, x, model=model, key=jax.random.key(1))
  assert kl is None and means.shape == (200, 3)
  assert not evaluation.active_units(means).any(), np.var(means, 0)
