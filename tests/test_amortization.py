"""Amortized vs per-example q on PPCA, where the exact posterior is known.

A linear Gaussian decoder set to the closed-form PPCA solution has the exact
posterior p(z|x) = N(M^-1 W^T (x - mu), sigma^2 M^-1) with a diagonal
covariance (the closed-form W has orthogonal columns). So both a per-example
diagonal Gaussian q and a linear encoder can reach log p(x) exactly: the
approximation and amortization gaps must vanish. Exact values come from
vae_jax.ppca (closed-form ELBO and log p(x)), independently of the
Monte-Carlo code under test.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vae_jax import amortization, data, models, objectives, ppca

LATENT = 3


@pytest.fixture(scope="module")
def ppca_vae():
  ds = data.load_arrays("digits")
  x = jnp.asarray(ds.train_x[:400], jnp.float32)
  fit = ppca.fit(x, LATENT)
  model = models.make_vae(image_shape=ds.image_shape, latent_dim=LATENT, hidden_dims=(),
                          likelihood="gaussian", gaussian_scale="shared")
  params = model.init(jax.random.key(0), x[:1])
  dec = params["params"]["decoder"]
  dec = jax.tree_util.tree_map(lambda a: a, dec)
  dec["mlp"]["dense_0"]["kernel"] = jnp.asarray(fit.W.T, jnp.float32)
  dec["mlp"]["dense_0"]["bias"] = jnp.asarray(fit.mean, jnp.float32)
  dec["head"]["log_scale"] = jnp.full_like(dec["head"]["log_scale"],
                                           0.5 * jnp.log(fit.sigma2))
  params = {"params": {**params["params"], "decoder": dec}}
  return model, params, fit, x


def _exact(fit, x, q_mean, q_log_scale):
  with jax.enable_x64(True):
    q_cov = jax.vmap(jnp.diag)(jnp.exp(2.0 * jnp.asarray(q_log_scale, jnp.float64)))
    out = ppca.elbo_decomposition(
        jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), fit),
        jnp.asarray(x, jnp.float64), jnp.asarray(q_mean, jnp.float64), q_cov)
  return {k: np.asarray(v) for k, v in out.items()}


def test_decoder_is_the_ppca_model(ppca_vae):
  model, params, fit, x = ppca_vae
  post_mean, post_cov = ppca.posterior(fit, x)
  np.testing.assert_allclose(np.asarray(post_cov), np.diag(np.diag(post_cov)), atol=1e-5)
  # With the exact posterior as proposal, log w = log p(x) for every z: the
  # importance-weighted estimate is exact whatever the number of samples.
  log_scale = jnp.broadcast_to(0.5 * jnp.log(jnp.diag(post_cov)), post_mean.shape)
  log_px = amortization.iw_log_likelihood(params, x, jax.random.key(1), post_mean, log_scale,
                                          model=model, num_samples=4)
  np.testing.assert_allclose(np.asarray(log_px), np.asarray(ppca.log_prob(fit, x)), rtol=0,
                             atol=2e-3)


def test_per_example_q_reaches_log_px(ppca_vae):
  model, params, fit, x = ppca_vae
  key = jax.random.key(2)
  init_mean = jax.random.normal(key, (x.shape[0], LATENT))
  init_log_scale = jnp.zeros((x.shape[0], LATENT))
  before = _exact(fit, x, init_mean, init_log_scale)
  q_mean, q_log_scale, trace = amortization.optimize_local(
      params, x, jax.random.key(3), init_mean, init_log_scale, model=model, num_steps=1500,
      num_samples=8, learning_rate=3e-2)
  after = _exact(fit, x, q_mean, q_log_scale)
  assert np.mean(before["kl"]) > 1.0                     # started far from the posterior
  assert np.mean(after["kl"]) < 5e-3, np.mean(after["kl"])   # gap -> 0
  np.testing.assert_allclose(after["elbo"] + after["kl"], after["log_px"], rtol=1e-10)
  assert trace[-1] > trace[0]


def test_amortized_linear_encoder_reaches_log_px(ppca_vae):
  model, params, fit, x = ppca_vae
  tx = optax.adam(optax.cosine_decay_schedule(1e-1, 3000, alpha=0.01))
  enc = params["params"]["encoder"]
  elbo_fn = functools.partial(objectives.elbo, model=model, num_samples=8)

  def loss(enc, k):
    return elbo_fn({"params": {**params["params"], "encoder": enc}}, x, k)[0]

  @jax.jit
  def run(enc):
    def step(carry, t):
      enc, opt = carry
      g = jax.grad(loss)(enc, jax.random.fold_in(jax.random.key(4), t))
      u, opt = tx.update(g, opt, enc)
      return (optax.apply_updates(enc, u), opt), None
    (enc, _), _ = jax.lax.scan(step, (enc, tx.init(enc)), jnp.arange(3000))
    return enc

  enc = run(enc)
  trained = {"params": {**params["params"], "encoder": enc}}
  q_mean, q_log_scale = model.apply(trained, x, method="encode")
  out = _exact(fit, x, q_mean, q_log_scale)
  assert np.mean(out["kl"]) < 5e-3, np.mean(out["kl"])


def test_gaps_on_ppca_vanish_and_bound_each_other(ppca_vae):
  model, params, fit, x = ppca_vae
  xs = x[:50]
  out = amortization.gaps(params, xs, jax.random.key(5), model=model, local_steps=1500,
                          local_learning_rate=3e-2, eval_samples=500, iw_samples=500)
  exact_log_px = np.asarray(ppca.log_prob(fit, xs))
  # The IW estimate of log p(x) is (near) exact with a (near) exact proposal.
  np.testing.assert_allclose(np.asarray(out["log_likelihood_iw"]), exact_log_px, atol=2e-2)
  assert abs(float(np.mean(out["log_likelihood_iw"] - exact_log_px))) < 2e-3
  assert abs(float(np.mean(out["approximation_gap"]))) < 5e-3
  # Untrained encoder: the amortization gap is large and positive.
  assert float(np.mean(out["amortization_gap"])) > 1.0
