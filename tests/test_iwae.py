"""The streamed IWAE bound against an independent NumPy reference and exact log p(x).

* On the same draws (reproduced here from the documented scheme: chunk i
  draws ``normal(fold_in(key, i), (C_i, B, L))``), the streamed bound equals
  log (1/K) sum_k w_k computed in float64 NumPy with all K samples in memory,
  whether or not the chunk divides K.
* On a linear-Gaussian VAE, p(x|z) = N(Wz + b, s^2 I), p(z) = N(0, I), log p(x)
  = log N(x | b, WW^T + s^2 I) exactly (SciPy). With an encoder that is not the
  posterior, the bound rises with K toward log p(x) and reaches it within
  Monte-Carlo error at K = 5000.
* Memory does not grow with K (XLA's own accounting of the compiled program).
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from numpy.testing import assert_allclose
import pytest
from scipy import special, stats

from vae_jax import UserError, models
from vae_jax.inference import iwae

D_X, L = 6, 3


# ----------------------------------------------------------------------------
# An independent reference: the decoder and the bound in float64 NumPy.
# ----------------------------------------------------------------------------


def _np(tree):
  return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), tree)


def _mlp(layers, h):
  """Dense layers ``dense_0 ... dense_n`` with ReLU between them."""
  n = len(layers)
  for i in range(n):
    h = h @ layers[f"dense_{i}"]["kernel"] + layers[f"dense_{i}"]["bias"]
    if i < n - 1:
      h = np.maximum(h, 0.0)
  return h


def _reference_draws(key, num_samples, chunk_size, batch, latent):
  """[K, B, L] eps, drawn as iwae.py's module docstring says."""
  c = min(chunk_size, num_samples)
  eps, i = [], 0
  while i * c < num_samples:
    size = min(c, num_samples - i * c)
    eps.append(np.asarray(jax.random.normal(jax.random.fold_in(key, i), (size, batch, latent))))
    i += 1
  return np.concatenate(eps).astype(np.float64)


def _reference_log_weights(params, x, eps, likelihood):
  """[K, B] log p(x|z) + log p(z) - log q(z|x) in float64 with all K samples at once."""
  p = _np(params)["params"]
  x = np.asarray(x, np.float64)
  enc = p["encoder"]
  h = x
  for i in range(len([k for k in enc if k.startswith("hidden_")])):
    h = np.maximum(h @ enc[f"hidden_{i}"]["kernel"] + enc[f"hidden_{i}"]["bias"], 0.0)
  mean = h @ enc["mean"]["kernel"] + enc["mean"]["bias"]
  log_scale = h @ enc["log_scale"]["kernel"] + enc["log_scale"]["bias"]
  z = mean + np.exp(log_scale) * eps                                     # [K, B, L]
  out = _mlp(p["decoder"]["mlp"], z)                                     # [K, B, D]
  if likelihood == "bernoulli":
    log_px_z = np.sum(x * out - np.logaddexp(0.0, out), axis=-1)
  else:
    scale = np.exp(p["decoder"]["head"]["log_scale"])
    log_px_z = np.sum(stats.norm.logpdf(x, out, scale), axis=-1)
  log_pz = np.sum(stats.norm.logpdf(z), axis=-1)
  log_qz = np.sum(stats.norm.logpdf(z, mean, np.exp(log_scale)), axis=-1)
  return log_px_z + log_pz - log_qz


def _small_vae(likelihood, seed=0):
  model = models.make_vae(kind="mlp", image_shape=(D_X,), latent_dim=L, hidden_dims=(8,),
                          likelihood=likelihood)
  params = model.init(jax.random.key(seed), jnp.zeros((1, D_X)))
  if likelihood == "gaussian":   # a non-zero decoder scale, so the test sees it
    params["params"]["decoder"]["head"]["log_scale"] = jnp.array([-0.3])
  rng = np.random.default_rng(seed)
  x = (rng.uniform(size=(5, D_X)) < 0.4).astype(np.float32)
  if likelihood == "gaussian":
    x = rng.normal(size=(5, D_X)).astype(np.float32)
  return model, params, x


# ----------------------------------------------------------------------------
# Same draws, same number.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("num_samples,chunk_size", [(12, 4), (10, 4), (3, 8), (5, 1)])
def test_streamed_bound_equals_all_k_at_once_on_the_same_draws(likelihood, num_samples,
                                                               chunk_size):
  """Catches: a dropped or doubled last chunk, a missing -log K, a wrong running
  logsumexp, draws that do not follow the documented scheme."""
  model, params, x = _small_vae(likelihood)
  key = jax.random.key(42)
  terms = jax.jit(functools.partial(iwae.iwae_terms_streamed, model=model,
                                    num_samples=num_samples, chunk_size=chunk_size))
  got = jax.device_get(terms(params, x, key))
  eps = _reference_draws(key, num_samples, chunk_size, len(x), L)
  log_w = _reference_log_weights(params, x, eps, likelihood)            # [K, B]
  assert_allclose(got["iwae"], special.logsumexp(log_w, axis=0) - math.log(num_samples),
                  rtol=1e-5, atol=1e-5)
  assert_allclose(got["elbo"], np.mean(log_w, axis=0), rtol=1e-5, atol=1e-5)
  bound = jax.jit(functools.partial(iwae.iwae_bound_streamed, model=model,
                                    num_samples=num_samples, chunk_size=chunk_size))
  assert_allclose(bound(params, x, key), got["iwae"], rtol=0, atol=0)
  assert np.all(got["elbo"] <= got["iwae"] + 1e-5)   # Jensen, draw by draw


def test_chunk_sizes_cover_k_exactly():
  assert iwae.chunk_sizes(10, 4) == [4, 4, 2]
  assert iwae.chunk_sizes(12, 4) == [4, 4, 4]
  assert iwae.chunk_sizes(3, 8) == [3]
  assert sum(iwae.chunk_sizes(5000, 333)) == 5000


@pytest.mark.slow
def test_evaluate_iwae_pads_the_last_batch_and_keys_each_batch():
  """Catches: a lost last (padded) batch, padded rows returned, batch keys that are
  not ``fold_in(key, j)``, a reordering of the examples."""
  model, params, x = _small_vae("bernoulli")
  x = np.concatenate([x, x[:2] * 0 + 1])                                 # N = 7
  key = jax.random.key(7)
  got = iwae.evaluate_iwae(params, x, key, model=model, num_samples=9, chunk_size=4,
                           batch_size=3)
  assert isinstance(got, np.ndarray) and got.shape == (7,)
  want = []
  for j, start in enumerate(range(0, 7, 3)):
    xb = np.zeros((3, D_X), np.float32)
    rows = x[start:start + 3]
    xb[:len(rows)] = rows
    eps = _reference_draws(jax.random.fold_in(key, j), 9, 4, 3, L)
    log_w = _reference_log_weights(params, xb, eps, "bernoulli")
    want.append((special.logsumexp(log_w, axis=0) - math.log(9))[:len(rows)])
  assert_allclose(got, np.concatenate(want), rtol=1e-5, atol=1e-5)
  # A batch larger than the split is cut to N: the same numbers as one batch of 7.
  one = iwae.evaluate_iwae(params, x, key, model=model, num_samples=9, chunk_size=4,
                           batch_size=100)
  eps = _reference_draws(jax.random.fold_in(key, 0), 9, 4, 7, L)
  log_w = _reference_log_weights(params, x, eps, "bernoulli")
  assert_allclose(one, special.logsumexp(log_w, axis=0) - math.log(9), rtol=1e-5, atol=1e-5)


def test_evaluate_iwae_progress_counts_examples_and_changes_no_number():
  """Catches: a progress callback that alters the estimate (other keys or batches),
  counts that skip a batch or overshoot N, a missing final call."""
  model, params, x = _small_vae("bernoulli")
  x = np.concatenate([x, x[:2] * 0 + 1])                                 # N = 7
  kwargs = dict(model=model, num_samples=9, chunk_size=4, batch_size=3)
  plain = iwae.evaluate_iwae(params, x, jax.random.key(7), **kwargs)
  calls = []
  got = iwae.evaluate_iwae(params, x, jax.random.key(7), progress=calls.append, **kwargs)
  np.testing.assert_array_equal(got, plain)
  assert calls == [3, 6, 7]


@pytest.mark.slow
def test_default_chunk_decodes_about_decode_rows_latents(monkeypatch):
  """Catches a default chunk that ignores the batch, or one not used by both entry points."""
  assert iwae.default_chunk_size(20) == iwae.DECODE_ROWS // 20
  assert iwae.default_chunk_size(10 * iwae.DECODE_ROWS) == 1
  monkeypatch.setattr(iwae, "DECODE_ROWS", 12)                           # chunks [4, 4, 1]
  model, params, x = _small_vae("bernoulli")
  key = jax.random.key(3)
  eps = _reference_draws(key, 9, 4, 3, L)
  log_w = _reference_log_weights(params, x[:3], eps, "bernoulli")
  want = special.logsumexp(log_w, axis=0) - math.log(9)
  got = iwae.iwae_bound_streamed(params, x[:3], key, model=model, num_samples=9)
  assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  got = iwae.evaluate_iwae(params, x[:3], jax.random.key(5), model=model, num_samples=9,
                           batch_size=3)
  eps = _reference_draws(jax.random.fold_in(jax.random.key(5), 0), 9, 4, 3, L)
  log_w = _reference_log_weights(params, x[:3], eps, "bernoulli")
  assert_allclose(got, special.logsumexp(log_w, axis=0) - math.log(9), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_memory_grows_with_the_chunk_not_with_k():
  """Catches a bound that materializes all K decoder outputs [K, B, D]."""
  model = models.make_vae(kind="mlp", image_shape=(784,), latent_dim=8, hidden_dims=(32,))
  params = model.init(jax.random.key(0), jnp.zeros((1, 784)))
  x = jnp.zeros((4, 784))

  def temp_bytes(num_samples, chunk_size):
    fn = jax.jit(functools.partial(iwae.iwae_bound_streamed, model=model,
                                   num_samples=num_samples, chunk_size=chunk_size))
    return fn.lower(params, x, jax.random.key(0)).compile().memory_analysis().temp_size_in_bytes

  small, large = temp_bytes(100, 10), temp_bytes(10_000, 10)
  all_k = 10_000 * 4 * 784 * 4                                           # [K, B, D] float32
  assert large < 2 * small, (small, large)
  assert large < all_k / 50, (large, all_k)


# ----------------------------------------------------------------------------
# Exact log p(x): the linear-Gaussian VAE.
# ----------------------------------------------------------------------------

LIN_D, LIN_L = 5, 2


def _linear_gaussian(rng, sigma=0.6):
  """Decoder = the linear-Gaussian model exactly; encoder = a perturbed posterior."""
  w = rng.normal(size=(LIN_D, LIN_L))
  b = rng.normal(size=LIN_D)
  m_inv = np.linalg.inv(w.T @ w + sigma**2 * np.eye(LIN_L))
  post_k = (m_inv @ w.T).T                                                # [D, L]
  post_log_scale = 0.5 * np.log(np.diag(sigma**2 * m_inv))
  # Not the posterior: a perturbed mean map, too-wide scales, no correlations
  # (wider than the posterior, so the importance weights stay bounded).
  enc_k = post_k + rng.normal(scale=0.1, size=post_k.shape)
  enc_c = -b @ post_k + 0.2
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  params = {"params": {
      "encoder": {"mean": {"kernel": f32(enc_k), "bias": f32(enc_c)},
                  "log_scale": {"kernel": f32(np.zeros((LIN_D, LIN_L))),
                                "bias": f32(post_log_scale + 0.5)}},
      "decoder": {"mlp": {"dense_0": {"kernel": f32(w.T), "bias": f32(b)}},
                  "head": {"log_scale": f32([np.log(sigma)])}}}}
  marginal = stats.multivariate_normal(b, w @ w.T + sigma**2 * np.eye(LIN_D))
  return params, marginal


@pytest.mark.slow
def test_linear_gaussian_bound_rises_with_k_to_the_exact_log_likelihood():
  """Catches: a biased estimate (a missing -log K, a wrong log q or log p(z)), a
  bound that does not tighten with K, a decoder scale that is ignored."""
  model = models.make_vae(kind="mlp", image_shape=(LIN_D,), latent_dim=LIN_L, hidden_dims=(),
                          likelihood="gaussian", gaussian_scale="shared")
  rng = np.random.default_rng(3)
  params, marginal = _linear_gaussian(rng)
  template = model.init(jax.random.key(0), jnp.zeros((1, LIN_D)))
  assert (jax.tree_util.tree_structure(template) == jax.tree_util.tree_structure(params))
  x = marginal.rvs(size=200, random_state=rng).astype(np.float32)     # [N, D]
  exact = marginal.logpdf(x)                                            # [N]

  def estimate(k):
    return iwae.evaluate_iwae(params, x, jax.random.key(k), model=model, num_samples=k,
                              chunk_size=256, batch_size=100)

  means = [np.mean(estimate(k)) for k in (1, 10, 100, 1000)]
  assert np.all(np.diff(means) > 0), means
  assert means[0] < np.mean(exact) - 1.0, (means[0], np.mean(exact))   # the encoder is poor
  diff = estimate(5000) - exact                                         # paired: MC error only
  se = np.std(diff, ddof=1) / np.sqrt(len(diff))
  assert abs(np.mean(diff)) < 3 * se + 1e-4, (np.mean(diff), se)
  assert abs(np.mean(diff)) < 0.1 * (np.mean(exact) - means[0])        # the gap has closed


@pytest.mark.slow
def test_the_bound_with_q_given_is_the_models_bound():
  """iwae_terms_streamed is iwae_terms_given_q with the encoder's q and the prior:
  the same bits; with q given, the encoder is not used."""
  model, params, x = _small_vae("bernoulli")
  key = jax.random.key(3)
  q = model.apply(params, x, method="encode")
  prior = model.apply(params, method="prior_distribution")
  own = jax.jit(functools.partial(iwae.iwae_terms_streamed, model=model, num_samples=10,
                                  chunk_size=4))(params, x, key)
  given = jax.jit(functools.partial(iwae.iwae_terms_given_q, model=model, num_samples=10,
                                    chunk_size=4))
  for other in (params, {"params": {**params["params"], "encoder": jax.tree_util.tree_map(
      lambda a: a + 1.0, params["params"]["encoder"])}}):
    got = given(other, x, key, q, prior)
    np.testing.assert_array_equal(got["iwae"], own["iwae"])
    np.testing.assert_array_equal(got["elbo"], own["elbo"])


# ----------------------------------------------------------------------------
# Errors.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("num_samples,chunk_size,match", [
    (0, 4, "num_samples"), (-3, 4, "num_samples"), (2.5, 4, "num_samples"),
    (10, 0, "chunk_size"), (10, -1, "chunk_size"), (10, True, "chunk_size")])
def test_k_or_chunk_below_one_is_a_user_error(num_samples, chunk_size, match):
  model, params, x = _small_vae("bernoulli")
  with pytest.raises(UserError, match=match):
    iwae.iwae_bound_streamed(params, x, jax.random.key(0), model=model,
                             num_samples=num_samples, chunk_size=chunk_size)
  with pytest.raises(UserError, match=match):
    iwae.evaluate_iwae(params, x, jax.random.key(0), model=model, num_samples=num_samples,
                       chunk_size=chunk_size, batch_size=2)


def test_evaluate_iwae_rejects_bad_batches_and_data():
  model, params, x = _small_vae("bernoulli")
  with pytest.raises(UserError, match="batch_size"):
    iwae.evaluate_iwae(params, x, jax.random.key(0), model=model, num_samples=4, batch_size=0)
  with pytest.raises(UserError, match="NaN"):
    iwae.evaluate_iwae(params, np.full_like(x, np.nan), jax.random.key(0), model=model,
                       num_samples=4)
