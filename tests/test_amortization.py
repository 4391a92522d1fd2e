"""Amortized vs per-example q on PPCA, where the exact posterior is known.

A linear Gaussian decoder set to the closed-form PPCA solution has the exact
posterior p(z|x) = N(M^-1 W^T (x - mu), sigma^2 M^-1) with a diagonal
covariance (the closed-form W has orthogonal columns). So both a per-example
diagonal Gaussian q and a linear encoder can reach log p(x) exactly: the
approximation and amortization gaps must vanish. Exact values come from
vae_jax.classical.ppca (closed-form ELBO and log p(x)), and from the analytic ELBO of
any Gaussian q written out below in NumPy, with log p(x) from SciPy,
independently of the Monte-Carlo code under test.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import special, stats

from vae_jax import data, models
from vae_jax.inference import amortization
from vae_jax.inference import iwae
from vae_jax.inference import objectives
from vae_jax.classical import ppca
from vae_jax.families.normal import DiagNormal
from vae_jax.errors import UserError

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


def _decoder(params):
  """(W [D, L], mu [D], sigma^2) of the VAE's linear Gaussian decoder, float64."""
  dec = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params["params"]["decoder"])
  return (dec["mlp"]["dense_0"]["kernel"].T, dec["mlp"]["dense_0"]["bias"],
          np.exp(2 * dec["head"]["log_scale"][0]))


def _closed_form_elbo(params, x, q_mean, q_log_scale):
  """Analytic ELBO [B] of q = N(m, diag v) under the linear Gaussian decoder,
  E_q log N(x; Wz + mu, s2 I) - KL(q || N(0, I)), and Var_q log p(x|z) [B]."""
  w, mu, s2 = _decoder(params)
  x, m = np.asarray(x, np.float64), np.asarray(q_mean, np.float64)
  v = np.exp(2 * np.asarray(q_log_scale, np.float64))
  e = x - m @ w.T - mu                                                    # [B, D]
  cov = np.einsum("dl,bl,el->bde", w, v, w)                               # Cov(Wz) [B, D, D]
  sq = np.sum(e**2, -1) + np.trace(cov, axis1=1, axis2=2)                 # E ||x - Wz - mu||^2
  recon = -0.5 * x.shape[1] * np.log(2 * np.pi * s2) - sq / (2 * s2)
  kl = 0.5 * np.sum(m**2 + v - 1.0 - np.log(v), -1)
  var_sq = 4 * np.einsum("bd,bde,be->b", e, cov, e) + 2 * np.sum(cov * cov, (1, 2))
  return recon - kl, var_sq / (4 * s2**2)


def _log_px(params, x):
  w, mu, s2 = _decoder(params)
  return stats.multivariate_normal(mu, w @ w.T + s2 * np.eye(len(mu))).logpdf(
      np.asarray(x, np.float64))


@pytest.mark.slow
def test_decoder_is_the_ppca_model(ppca_vae):
  model, params, fit, x = ppca_vae
  post_mean, post_cov = ppca.posterior(fit, x)
  np.testing.assert_allclose(np.asarray(post_cov), np.diag(np.diag(post_cov)), atol=1e-5)
  # With the exact posterior as proposal, log w = log p(x) for every z: the
  # importance-weighted estimate is exact whatever the number of samples.
  log_scale = jnp.broadcast_to(0.5 * jnp.log(jnp.diag(post_cov)), post_mean.shape)
  prior = model.apply(params, method="prior_distribution")
  log_px = iwae.iwae_terms_given_q(params, x, jax.random.key(1), DiagNormal(post_mean, log_scale),
                                   prior, model=model, num_samples=4)["iwae"]
  np.testing.assert_allclose(np.asarray(log_px), np.asarray(ppca.log_prob(fit, x)), rtol=0,
                             atol=2e-3)


@pytest.mark.slow
def test_per_example_q_reaches_log_px(ppca_vae):
  model, params, fit, x = ppca_vae
  key = jax.random.key(2)
  init_mean = jax.random.normal(key, (x.shape[0], LATENT))
  init_log_scale = jnp.zeros((x.shape[0], LATENT))
  before = _exact(fit, x, init_mean, init_log_scale)
  q, trace = amortization.optimize_local(
      params, x, jax.random.key(3), DiagNormal(init_mean, init_log_scale), model=model,
      num_steps=1500, num_samples=8, learning_rate=3e-2)
  after = _exact(fit, x, q.loc, q.log_scale)
  assert np.mean(before["kl"]) > 1.0                     # started far from the posterior
  assert np.mean(after["kl"]) < 5e-3, np.mean(after["kl"])   # gap -> 0
  np.testing.assert_allclose(after["elbo"] + after["kl"], after["log_px"], rtol=1e-10)
  assert trace[-1] > trace[0]


@pytest.mark.slow
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
  q = model.apply(trained, x, method="encode")
  out = _exact(fit, x, q.loc, q.log_scale)
  assert np.mean(out["kl"]) < 5e-3, np.mean(out["kl"])


@pytest.mark.slow
def test_gaps_on_ppca_vanish_and_bound_each_other(ppca_vae):
  model, params, fit, x = ppca_vae
  xs = x[:50]
  eval_samples = 500
  out = amortization.gaps(params, xs, jax.random.key(5), model=model, local_steps=1500,
                          local_learning_rate=3e-2, eval_samples=eval_samples, iw_samples=500)
  exact_log_px = _log_px(params, xs)
  np.testing.assert_allclose(exact_log_px, np.asarray(ppca.log_prob(fit, xs)), atol=1e-3)
  # The untrained encoder's q is not the posterior: its ELBO is analytic and
  # well below the optimized one, itself at most log p(x).
  q_enc = model.apply(params, xs, method="encode")
  enc_mean, enc_log_scale = q_enc.loc, q_enc.log_scale
  amortized, var_a = _closed_form_elbo(params, xs, enc_mean, enc_log_scale)
  optimized, var_o = _closed_form_elbo(params, xs, out["q"].loc, out["q"].log_scale)
  np.testing.assert_allclose(amortized, _exact(fit, xs, enc_mean, enc_log_scale)["elbo"],
                             rtol=1e-4)
  assert np.all(amortized < optimized) and np.all(optimized <= exact_log_px + 1e-9)
  assert np.mean(optimized - amortized) > 1.0
  # The Monte-Carlo estimates agree with the closed forms within 5 standard
  # errors (log p(x|z) varies under q; a float32 floor of 2e-3).
  se_a, se_o = np.sqrt(var_a / eval_samples), np.sqrt(var_o / eval_samples)
  assert np.all(np.abs(out["amortized_elbo"] - amortized) <= 5 * se_a + 2e-3)
  assert np.all(np.abs(out["optimized_elbo"] - optimized) <= 5 * se_o + 2e-3)
  assert np.all(np.abs(out["amortization_gap"] - (optimized - amortized))
                <= 5 * (se_a + se_o) + 4e-3)
  # amortized <= optimized <= log p(x) per example, with the same slack.
  assert np.all(out["amortized_elbo"] <= out["optimized_elbo"] + 5 * (se_a + se_o))
  assert np.all(out["optimized_elbo"] <= exact_log_px + 5 * se_o + 2e-3)
  # The IW estimate of log p(x) is (near) exact with a (near) exact proposal.
  np.testing.assert_allclose(np.asarray(out["log_likelihood_iw"]), exact_log_px, atol=2e-2)
  assert abs(float(np.mean(out["log_likelihood_iw"] - exact_log_px))) < 2e-3
  assert abs(float(np.mean(out["approximation_gap"]))) < 5e-3


class _Recording:
  """The VAE with every decoded z recorded (through a host callback)."""

  def __init__(self, model):
    self.model, self.z = model, []

  def apply(self, params, *inputs, method):
    if method == "decode":
      jax.debug.callback(lambda z: self.z.append(np.asarray(z, np.float64)), inputs[0])
    return self.model.apply(params, *inputs, method=method)

  def recorded(self):
    jax.effects_barrier()
    return self.z


@pytest.mark.slow
def test_sample_counts_are_used_exactly(ppca_vae):
  # 150 samples with chunks of 100: exactly 150 draws (not 100), and the
  # estimates recomputed in NumPy/SciPy from those draws.
  model, params, _, x = ppca_vae
  xs = x[:5]
  q = model.apply(params, xs, method="encode")
  q_mean, q_log_scale = q.loc, q.log_scale
  w, mu, s2 = _decoder(params)

  def log_lik(z):                                                        # [S, B]
    return stats.norm.logpdf(np.asarray(xs), z @ w.T + mu, np.sqrt(s2)).sum(-1)

  rec = _Recording(model)
  elbo = amortization.elbo_estimate(params, xs, jax.random.key(6), q,
                                    model=rec, num_samples=150, chunk=100)
  z = np.concatenate(rec.recorded())
  assert z.shape[0] == 150
  m, v = np.asarray(q_mean, np.float64), np.exp(2 * np.asarray(q_log_scale, np.float64))
  kl = 0.5 * np.sum(m**2 + v - 1.0 - np.log(v), -1)
  np.testing.assert_allclose(elbo, log_lik(z).mean(0) - kl, rtol=1e-5)

  rec = _Recording(model)
  prior = model.apply(params, method="prior_distribution")
  iw = iwae.iwae_terms_given_q(params, xs, jax.random.key(7), q, prior, model=rec,
                               num_samples=150, chunk_size=100)["iwae"]
  # iwae.log_weights decodes a chunk as one [n * B, L] batch.
  z = np.concatenate([r.reshape(-1, len(xs), LATENT) for r in rec.recorded()])
  assert z.shape[0] == 150
  log_w = (log_lik(z) + stats.norm.logpdf(z).sum(-1)
           - stats.norm.logpdf(z, m, np.sqrt(v)).sum(-1))
  np.testing.assert_allclose(iw, special.logsumexp(log_w, 0) - np.log(150), rtol=1e-5)

  # gaps, one example at a time: local_steps x local_samples draws, then 150
  # for each ELBO and 150 for IW, for each of the 5 examples.
  rec = _Recording(model)
  amortization.gaps(params, xs, jax.random.key(8), model=rec, local_steps=2, local_samples=3,
                    eval_samples=150, iw_samples=150)
  rows = [z.reshape(-1, LATENT).shape[0] for z in rec.recorded()]
  assert sum(rows) == 5 * (2 * 3 + 3 * 150), rows


@pytest.mark.parametrize("bad", [dict(eval_samples=0), dict(iw_samples=0),
                                 dict(local_samples=-1), dict(local_steps=0)])
def test_gaps_refuse_counts_below_one(ppca_vae, bad):
  model, params, _, x = ppca_vae
  with pytest.raises(UserError, match="positive integer"):
    amortization.gaps(params, x[:2], jax.random.key(0), model=model, **bad)
