"""Two stochastic layers (vae_jax.families.hierarchical) against exact values.

With linear conditionals and a Gaussian decoder the two-layer model is a
linear-Gaussian model whose marginal is Gaussian:

  z2 ~ N(0, I),  z1 | z2 ~ N(A z2 + a, S),  x | z1 ~ N(W z1 + b, s^2 I)
  =>  x ~ N(W a + b, W (A A^T + S) W^T + s^2 I),

so log p(x) is exact (SciPy), and the two-layer IWAE bound must approach it
from below as K grows. The layers' densities are checked against SciPy too.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from experiments.configs import vae as vae_config
import optax

from vae_jax import models, tasks
from vae_jax.inference import estimators
from vae_jax.inference import iwae
from vae_jax.inference import objectives
from vae_jax.models import vae as vae_model
from vae_jax.errors import UserError
from vae_jax.families import hierarchical

L1, L2, D = 3, 2, 6


@pytest.fixture(scope="module")
def linear_model():
  """Linear conditionals; p(z1 | z2)'s log-scale does not depend on z2, so the
  model is linear-Gaussian; x drawn from the model itself."""
  model = models.make_vae(image_shape=(D, 1, 1), latent_dim=L1, hidden_dims=(),
                          likelihood="gaussian", top_latent_dim=L2, top_hidden_dims=())
  params = model.init(jax.random.key(0), jnp.zeros((1, D)))
  rng = np.random.default_rng(0)
  net = params["params"]["prior"]["net"]
  kernel = np.zeros((L2, 2 * L1))
  kernel[:, :L1] = rng.normal(size=(L2, L1))
  net[0]["kernel"] = jnp.asarray(kernel, jnp.float32)
  net[0]["bias"] = jnp.asarray(np.r_[rng.normal(size=L1), np.log([0.5, 0.8, 1.2])], jnp.float32)
  z = np.asarray(model.apply(params, method="prior_distribution").sample(
      jax.random.key(9), (5,)))
  a_map, a_off, s_diag, w, bias, s2 = _linear_gaussian(params)
  x = z[:, :L1] @ w.T + bias + np.sqrt(s2) * rng.normal(size=(5, D))
  return model, params, jnp.asarray(x, jnp.float32)


def _linear_gaussian(params):
  """(A, a, diag S, W, b, s^2) of the linear-Gaussian two-layer model, float64."""
  p = jax.tree_util.tree_map(lambda v: np.asarray(v, np.float64), params["params"])
  k, b = p["prior"]["net"][0]["kernel"], p["prior"]["net"][0]["bias"]
  w = p["decoder"]["mlp"]["dense_0"]["kernel"].T                           # [D, L1]
  return (k[:, :L1].T, b[:L1], np.exp(2 * b[L1:]), w, p["decoder"]["mlp"]["dense_0"]["bias"],
          np.exp(2 * p["decoder"]["head"]["log_scale"][0]))


@pytest.mark.slow
def test_two_layer_iwae_approaches_the_exact_log_likelihood(linear_model):
  model, params, x = linear_model
  a_map, a_off, s_diag, w, bias, s2 = _linear_gaussian(params)
  cov_z1 = a_map @ a_map.T + np.diag(s_diag)
  exact = stats.multivariate_normal(w @ a_off + bias, w @ cov_z1 @ w.T + s2 * np.eye(D)).logpdf(
      np.asarray(x, np.float64))
  # A proposal worth the name: fit q(z1|x) q(z2|z1) (the model fixed) by the ELBO.
  tx = optax.adam(3e-2)

  def loss(enc, k):
    p = {"params": {**params["params"], "encoder": enc}}
    return objectives.elbo(p, x, k, model=model, num_samples=16)[0]

  @jax.jit
  def fit(enc):
    def step(carry, t):
      enc, opt = carry
      g = jax.grad(loss)(enc, jax.random.fold_in(jax.random.key(5), t))
      u, opt = tx.update(g, opt, enc)
      return (optax.apply_updates(enc, u), opt), None
    return jax.lax.scan(step, (enc, tx.init(enc)), jnp.arange(1500))[0][0]

  fitted = {"params": {**params["params"], "encoder": fit(params["params"]["encoder"])}}
  bounds = {k: np.mean([np.asarray(iwae.iwae_bound_streamed(
      fitted, x, jax.random.key(r), model=model, num_samples=k)) for r in range(4)], 0)
            for k in (1, 100, 5000)}
  # Lower bounds (in expectation) that tighten with K and reach log p(x): the
  # diagonal q(z1|x) cannot be the exact (correlated) posterior, so K = 1 keeps a gap.
  gap = {k: float(np.mean(exact - v)) for k, v in bounds.items()}
  assert gap[1] > gap[100] > gap[5000] > -0.02, gap
  assert gap[5000] < 0.05 and gap[5000] < 0.2 * gap[1], gap


@pytest.mark.slow
def test_layer_densities_match_scipy(linear_model):
  model, params, x = linear_model
  q = model.apply(params, x, method="encode")
  p = model.apply(params, method="prior_distribution")
  z, log_q = q.sample_and_log_prob(jax.random.key(3), (7,))                 # [7, 5, L1 + L2]
  assert z.shape == (7, 5, L1 + L2)
  np.testing.assert_allclose(log_q, q.log_prob(z), rtol=1e-5, atol=1e-5)
  z64 = np.asarray(z, np.float64)
  q2 = hierarchical.gaussian_mlp(q.net, z[..., :L1])
  want_q = (stats.norm.logpdf(z64[..., :L1], q.q1.loc, np.exp(q.q1.log_scale)).sum(-1)
            + stats.norm.logpdf(z64[..., L1:], q2.loc, np.exp(q2.log_scale)).sum(-1))
  np.testing.assert_allclose(log_q, want_q, rtol=1e-4)
  p1 = hierarchical.gaussian_mlp(p.net, z[..., L1:])
  want_p = (stats.norm.logpdf(z64[..., L1:]).sum(-1)
            + stats.norm.logpdf(z64[..., :L1], p1.loc, np.exp(p1.log_scale)).sum(-1))
  np.testing.assert_allclose(p.log_prob(z), want_p, rtol=1e-4)
  # The decoder reads z1 only.
  dec = model.apply(params, z, method="decode")
  dec1 = model.apply(params, z.at[..., L1:].set(0.0), method="decode")
  np.testing.assert_array_equal(dec["mean"], dec1["mean"])


def test_prior_samples_have_the_ancestral_moments(linear_model):
  model, params, _ = linear_model
  p = model.apply(params, method="prior_distribution")
  z = np.asarray(p.sample(jax.random.key(4), (200000,)), np.float64)
  a_map, a_off, s_diag, *_ = _linear_gaussian(params)
  np.testing.assert_allclose(z[:, :L1].mean(0), a_off, atol=0.03)
  np.testing.assert_allclose(np.cov(z[:, :L1].T), a_map @ a_map.T + np.diag(s_diag), atol=0.06)
  np.testing.assert_allclose(z[:, L1:].mean(0), 0.0, atol=0.01)
  np.testing.assert_allclose(np.cov(z[:, L1:].T), np.eye(L2), atol=0.02)


@pytest.mark.parametrize("settings,key", [
    (dict(top_latent_dim=0), "config.model.top_latent_dim"),
    (dict(top_hidden_dims=(10,)), "config.model.top_hidden_dims"),
    (dict(top_latent_dim=3, kind="conv"), "kind=mlp"),
    (dict(top_latent_dim=3, posterior="planar", flow_steps=2), "posterior=gaussian"),
    (dict(top_latent_dim=3, prior="vamp", prior_components=4), "prior=standard"),
    (dict(top_latent_dim=3, top_hidden_dims=(0,)), "config.model.top_hidden_dims"),
])
def test_bad_two_layer_settings_are_one_clear_error(settings, key):
  config = vae_config.get_config("tiny")
  config.model.update(**settings)
  with pytest.raises(UserError, match=key.replace("(", "\\(")):
    vae_model.validate(config)


def test_free_bits_need_one_layer():
  config = vae_config.get_config("tiny")
  config.model.top_latent_dim = 3
  config.objective.free_bits = 0.1
  with pytest.raises(UserError, match="free_bits"):
    vae_model.validate(config)


@pytest.mark.slow
def test_the_s_sample_elbo_gradient_is_the_one_sample_gradient_in_expectation():
  """Two layers, MLP conditionals, Bernoulli decoder: the reparametrized
  S-sample ELBO gradient (Monte-Carlo KL) and the 1-sample one estimate the
  same gradient, so their means over many keys agree within their standard
  errors, parameter by parameter (a draw or log q mixed across the S axis or
  the batch would move them apart)."""
  config = vae_config.get_config("tiny")
  config.model.update(latent_dim=4, top_latent_dim=3, top_hidden_dims=(8,))
  task = tasks.build_task(config, (8, 8, 1), 100)
  params = task.init_params(jax.random.key(0))
  x = (jax.random.uniform(jax.random.key(5), (6, 64)) < 0.4).astype(jnp.float32)

  def gradient_mean(s, draws):
    loss_fn, state = estimators.make_vae_loss(task.model, "reparam", s)
    grad = jax.jit(jax.vmap(lambda k: jax.grad(lambda p: loss_fn(p, x, k, state)[0])(params)))
    g = grad(jax.random.split(jax.random.key(s), draws))
    flat = np.concatenate([np.asarray(a).reshape(draws, -1)
                           for a in jax.tree_util.tree_leaves(g)], 1)
    return flat.mean(0), flat.std(0) / np.sqrt(draws)

  m1, se1 = gradient_mean(1, 8000)
  m5, se5 = gradient_mean(5, 1600)
  z = (m1 - m5) / np.sqrt(se1**2 + se5**2 + 1e-12)
  # ~4,800 parameters: the largest of that many standard normals is below 5.
  assert np.abs(z).max() < 5.0, np.abs(z).max()
  assert np.abs(z).mean() < 1.0                   # 0.80 for exact agreement
