"""The discrete-latent VAE: the Bernoulli KL, exact enumeration identities,
unbiased score-function gradients, the direct decoder gradient, and the run."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from tests.conftest import get_config
from vae_jax.models import discrete_vae as dv
from vae_jax import distributions as D
from vae_jax.families.discrete import Bernoulli
from vae_jax.inference import gradients
from vae_jax.errors import UserError

L, DIM, BATCH = 3, 6, 4
# The estimators a discrete z allows: the score function with each baseline.
SCORE_ESTIMATORS = ("score", "score_baseline", "score_loo")


@pytest.fixture(scope="module")
def tiny():
  """(model, params, x): L = 3 binary latents, D = 6 pixels, random weights."""
  model = dv.DiscreteVAE(hidden_dims=(8,), latent_dim=L, output_dim=DIM)

  @jax.jit
  def init(key):
    params = model.init(key, jnp.zeros((1, DIM)))
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
    # N(0, 1) weights and biases: q(z|x) and p(z|x) far from uniform.
    return jax.tree_util.tree_unflatten(
        treedef, [jax.random.normal(k, l.shape) for k, l in zip(keys, leaves)])

  params = init(jax.random.key(0))
  x = jnp.asarray(np.random.default_rng(0).integers(0, 2, (BATCH, DIM)), jnp.float32)
  return model, params, x


def _numpy_enumeration(model, params, x):
  """log p(x), ELBO and KL(q(z|x) || p(z|x)) per example, in float64 NumPy."""
  codes = np.array(list(itertools.product([0.0, 1.0], repeat=model.latent_dim)))  # [K, L]
  enc = np.asarray(model.apply(params, x, method="encode").logits, np.float64)     # [B, L]
  dec = np.asarray(model.apply(params, jnp.asarray(codes, jnp.float32),
                               method="decode")["logits"], np.float64)             # [K, D]
  xs = np.asarray(x, np.float64)
  pq, px = special.expit(enc), special.expit(dec)
  q = np.prod(np.where(codes[None] == 1, pq[:, None], 1 - pq[:, None]), -1)        # [B, K]
  lik = np.prod(np.where(xs[:, None] == 1, px[None], 1 - px[None]), -1)            # [B, K]
  prior = 0.5 ** model.latent_dim
  marginal = np.sum(lik * prior, -1)                                                # [B]
  posterior = lik * prior / marginal[:, None]
  elbo = np.sum(q * (np.log(lik) + np.log(prior) - np.log(q)), -1)
  kl_posterior = np.sum(q * (np.log(q) - np.log(posterior)), -1)
  return np.log(marginal), elbo, kl_posterior


def test_kl_bernoulli_uniform_matches_scipy():
  logits = np.array([[0.0, 1.5, -2.0, 7.0], [-40.0, 40.0, 0.3, -0.3]], np.float32)
  got = np.asarray(jax.jit(dv.kl_bernoulli_uniform)(jnp.asarray(logits)))
  p = special.expit(logits.astype(np.float64))
  want = np.sum(stats.entropy(np.stack([1 - p, p]), np.full((2,) + p.shape, 0.5), axis=0), -1)
  assert got.shape == (2,)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # Saturated bits cost log 2 each; the uniform q costs nothing.
  np.testing.assert_allclose(dv.kl_bernoulli_uniform(jnp.array([[60.0, -60.0]])),
                             [2 * math.log(2.0)], rtol=1e-6)
  np.testing.assert_allclose(dv.kl_bernoulli_uniform(jnp.zeros((1, 5))), [0.0], atol=1e-6)


def test_all_codes_enumerates_every_binary_vector_once():
  codes = np.asarray(dv.all_codes(4))
  np.testing.assert_array_equal(codes, np.array(list(itertools.product([0, 1], repeat=4))))


@pytest.mark.slow
def test_exact_log_marginal_is_elbo_plus_kl_to_the_posterior(tiny):
  model, params, x = tiny
  log_px = np.asarray(jax.jit(lambda p, v: dv.exact_log_marginal(p, v, model=model))(params, x))
  elbo = np.asarray(jax.jit(lambda p, v: dv.exact_elbo(p, v, model=model))(params, x))
  want_log_px, want_elbo, kl_posterior = _numpy_enumeration(model, params, x)
  assert log_px.shape == elbo.shape == (BATCH,)
  np.testing.assert_allclose(log_px, want_log_px, rtol=1e-5)
  np.testing.assert_allclose(elbo, want_elbo, rtol=1e-5)
  # log p(x) = ELBO + KL(q(z|x) || p(z|x)), with a gap that is not trivially 0.
  np.testing.assert_allclose(log_px, elbo + kl_posterior, rtol=1e-5, atol=1e-5)
  assert np.all(kl_posterior > 1e-2)
  assert np.all(elbo <= log_px)
  # The exact ELBO also splits as E_q[log p(x|z)] - KL(q || p(z)).
  logits = model.apply(params, x, method="encode").logits
  log_lik, log_q = dv._enumerate(params, x, model)
  np.testing.assert_allclose(
      elbo, jnp.sum(jnp.exp(log_q) * log_lik, -1) - dv.kl_bernoulli_uniform(logits),
      rtol=1e-5)


def _loss_and_state(model, estimator, num_samples):
  loss_fn, state = dv.make_loss(model, estimator, num_samples)
  if "baseline" in state:  # a nonzero, fixed baseline from "earlier steps"
    state = {"baseline": jnp.asarray(-3.0), "count": jnp.asarray(5, jnp.int32)}
  return loss_fn, state


def _flat(tree):
  return np.concatenate([np.ravel(l) for l in jax.tree_util.tree_leaves(tree)])


@pytest.fixture(scope="module")
def encoder_stats(tiny):
  """Exact encoder gradient, and gradient_statistics of every estimator (R draws)."""
  model, params, x = tiny
  num_draws, num_samples = 4000, 3

  @jax.jit
  def all_stats(key):
    out = {}
    for est in SCORE_ESTIMATORS:
      loss_fn, state = _loss_and_state(model, est, num_samples)
      out[est] = gradients.gradient_statistics(
          gradients.encoder_grad_fn(loss_fn, params, x, state), key, num_draws)
    exact = jax.grad(lambda p: -jnp.mean(dv.exact_elbo(p, x, model=model)))(params)
    return out, exact["params"]["encoder"]

  stats, exact = all_stats(jax.random.key(7))
  out = {"exact": _flat(exact), "num_draws": num_draws}
  for est, s in stats.items():
    out[est] = {"mean": _flat(s["mean"]), "variance": _flat(s["variance"]),
                "total_variance": float(s["total_variance"])}
  return out


@pytest.mark.parametrize("estimator", SCORE_ESTIMATORS)
@pytest.mark.slow
def test_every_estimator_is_unbiased_for_the_exact_encoder_gradient(encoder_stats, estimator):
  exact, s = encoder_stats["exact"], encoder_stats[estimator]
  se = np.sqrt(s["variance"] / encoder_stats["num_draws"])
  tol = 5 * se + 1e-5
  err = np.abs(s["mean"] - exact)
  assert np.all(err <= tol), (estimator, float(np.max(err / tol)))
  # The check has power: a 20% bias would be caught.
  assert np.any(0.2 * np.abs(exact) > tol)


def test_baselines_reduce_the_variance(encoder_stats):
  score = encoder_stats["score"]["total_variance"]
  loo = encoder_stats["score_loo"]["total_variance"]
  assert loo < 0.5 * score, (loo, score)


def test_decoder_gradient_is_the_direct_one(tiny):
  model, params, x = tiny
  num_samples, key = 4, jax.random.key(3)

  @jax.jit
  def surrogate_grads():
    out = {}
    for est in SCORE_ESTIMATORS:
      loss_fn, state = _loss_and_state(model, est, num_samples)
      out[est] = jax.value_and_grad(loss_fn, has_aux=True)(params, x, key, state)
    return out

  @jax.jit
  def direct_grad():
    logits = model.apply(params, x, method="encode").logits
    z = D.bernoulli_sample(key, logits, (num_samples,))                     # [S, B, L]

    def neg_recon(p):
      log_lik = D.bernoulli_log_prob(x, model.apply(p, z, method="decode")["logits"])
      return -jnp.mean(log_lik), log_lik

    (_, log_lik), grads = jax.value_and_grad(neg_recon, has_aux=True)(params)
    return log_lik, dv.kl_bernoulli_uniform(logits), grads

  log_lik, kl, want = direct_grad()
  for est, ((loss, (aux, _)), grads) in surrogate_grads().items():
    for g, w in zip(jax.tree_util.tree_leaves(grads["params"]["decoder"]),
                    jax.tree_util.tree_leaves(want["params"]["decoder"])):
      np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=est)
    # Value: the Monte-Carlo negative ELBO; aux per example [B] in nats.
    np.testing.assert_allclose(loss, -jnp.mean(log_lik) + jnp.mean(kl), rtol=1e-5)
    np.testing.assert_allclose(aux["recon"], jnp.mean(log_lik, 0), rtol=1e-5)
    np.testing.assert_allclose(aux["elbo"], aux["recon"] - aux["kl"], rtol=1e-6)
    assert aux["elbo"].shape == aux["kl"].shape == (BATCH,)


def test_running_baseline_is_updated_from_the_current_learning_signal(tiny):
  model, params, x = tiny
  loss_fn, state = dv.make_loss(model, "score_baseline", 2, baseline_decay=0.5)
  loss_fn = jax.jit(loss_fn)
  _, (aux, state1) = loss_fn(params, x, jax.random.key(0), state)
  np.testing.assert_allclose(state1["baseline"], jnp.mean(aux["recon"]), rtol=1e-6)
  _, (aux2, state2) = loss_fn(params, x, jax.random.key(1), state1)
  np.testing.assert_allclose(state2["baseline"],
                             0.5 * state1["baseline"] + 0.5 * jnp.mean(aux2["recon"]), rtol=1e-6)


@pytest.mark.parametrize("estimator,num_samples,match", [
    ("reparam", 4, "reparametrization.*discrete"),
    ("stl", 4, "reparametrization.*discrete"),
    ("iwae", 4, "reparametrization.*discrete"),
    ("dreg", 4, "reparametrization.*discrete"),
    ("vimco", 4, "trains the IWAE bound, which this model does not train"),
    ("bogus", 4, "unknown.*choose one of score, score_baseline, score_loo\\.$"),
    ("score_loo", 1, "num_samples >= 2"),
])
def test_bad_estimator_settings_are_user_errors(estimator, num_samples, match):
  config = get_config("discrete_vae", "tiny")
  config.objective.update(estimator=estimator, num_samples=num_samples)
  with pytest.raises(UserError, match=match):
    dv.validate(config)


def test_q_is_a_bernoulli_object(tiny):
  """The encoder returns q(z|x) as a distribution object, like every other family."""
  model, params, x = tiny
  q = model.apply(params, x, method="encode")
  assert isinstance(q, Bernoulli) and q.logits.shape == (BATCH, L)
  key = jax.random.key(2)
  np.testing.assert_array_equal(q.sample(key, (3,)), D.bernoulli_sample(key, q.logits, (3,)))
  np.testing.assert_array_equal(q.mode(), (q.logits > 0).astype(jnp.float32))
  for est in SCORE_ESTIMATORS:
    dv.validate(_config(est))


def _config(estimator):
  config = get_config("discrete_vae", "tiny")
  config.objective.estimator = estimator
  return config


def test_exact_enumeration_refuses_large_latents():
  model = dv.DiscreteVAE(hidden_dims=(), latent_dim=dv.MAX_EXACT_LATENT_DIM + 1, output_dim=4)
  params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 4)))
  with pytest.raises(UserError, match="enumeration"):
    jax.eval_shape(lambda p: dv.exact_log_marginal(p, jnp.zeros((1, 4)), model=model), params)
