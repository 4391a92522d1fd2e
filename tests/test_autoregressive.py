"""MADE: the autoregressive property, an exact normalized likelihood, ancestral
sampling, MLE, and the end-to-end baseline run."""

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from tests.conftest import get_config
from vae_jax import masks
from vae_jax.models import made as ar
from vae_jax.training import optim
from vae_jax.training import trainer
from vae_jax.training import step as step_lib


def _random_params(model, num_dims, seed, scale=1.0):
  """Every weight and bias ~ N(0, scale^2): far from the (zero-bias) init."""
  params = model.init(jax.random.key(seed), jnp.zeros((1, num_dims)))
  leaves, treedef = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
  return jax.tree_util.tree_unflatten(
      treedef, [scale * jax.random.normal(k, l.shape) for k, l in zip(keys, leaves)])


def _all_binary(num_dims):
  return np.array(list(itertools.product([0.0, 1.0], repeat=num_dims)), np.float32)


@pytest.mark.parametrize("hidden", [(13, 9), (4,), ()])
@pytest.mark.slow
def test_jacobian_of_logits_is_strictly_lower_triangular(hidden):
  d = 7
  model = ar.MADE(hidden_dims=hidden)
  params = _random_params(model, d, seed=0)
  x = jnp.asarray(np.random.default_rng(0).integers(0, 2, d), jnp.float32)
  jac = np.asarray(jax.jacfwd(lambda v: model.apply(params, v[None])[0])(x))  # [D, D]
  assert jac.shape == (d, d)
  np.testing.assert_array_equal(jac[np.triu_indices(d)], 0.0)
  # Not trivially zero: most x_j with j < i do move logit_i (some, when a
  # layer is narrower than D - 1 and drops degrees).
  lower = jac[np.tril_indices(d, -1)]
  assert np.mean(lower != 0.0) > (0.5 if min(hidden, default=d) >= d - 1 else 0.0)


def test_masks_connect_exactly_the_strict_past_when_layers_are_wide_enough():
  d = 6
  for hidden in [(5,), (12, 7), (5, 5, 5), ()]:
    path = functools.reduce(np.matmul, masks.made_masks(d, hidden))   # [D_in, D_out]
    np.testing.assert_array_equal(path.T > 0, np.tril(np.ones((d, d)), -1) > 0)


@pytest.mark.slow
def test_log_prob_is_normalized_over_all_binary_vectors():
  d = 8
  model = ar.MADE(hidden_dims=(16, 16))
  params = _random_params(model, d, seed=1, scale=1.5)
  lp = jax.jit(functools.partial(ar.log_prob, model=model))(params, _all_binary(d))
  assert lp.shape == (2 ** d,)
  assert float(jnp.std(lp)) > 1.0          # far from uniform, so the check bites
  assert abs(float(jax.scipy.special.logsumexp(lp))) < 1e-5


@pytest.mark.slow
def test_log_prob_equals_the_chain_rule_with_the_future_scrambled():
  d, b = 10, 16
  model = ar.MADE(hidden_dims=(20,))
  params = _random_params(model, d, seed=2)
  rng = np.random.default_rng(2)
  x = rng.integers(0, 2, (b, d)).astype(np.float32)
  expected = np.zeros(b)
  for i in range(d):
    # p(x_i | x_{1:i-1}): x_i and everything after it replaced by noise.
    x_past = x.copy()
    x_past[:, i:] = rng.integers(0, 2, (b, d - i))
    logit = np.asarray(model.apply(params, x_past), np.float64)[:, i]
    p1 = 1.0 / (1.0 + np.exp(-logit))
    expected += np.where(x[:, i] == 1.0, np.log(p1), np.log1p(-p1))
  got = jax.jit(functools.partial(ar.log_prob, model=model))(params, x)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)
  loss, aux = ar.nll_loss(params, x, model=model)
  np.testing.assert_allclose(float(loss), -expected.mean(), rtol=1e-5)
  assert aux["log_prob"].shape == (b,)


@pytest.mark.slow
def test_ancestral_samples_follow_the_model_distribution():
  d, n = 3, 200_000
  model = ar.MADE(hidden_dims=(8,))
  params = _random_params(model, d, seed=3, scale=1.5)
  outcomes = _all_binary(d)
  p = np.exp(np.asarray(ar.log_prob(params, outcomes, model=model), np.float64))
  # The law has real dependencies: far from the product of its marginals.
  marg = np.array([p[outcomes[:, i] == 1].sum() for i in range(d)])
  prod = np.prod(np.where(outcomes == 1, marg, 1 - marg), axis=1)
  assert np.sum(p * np.log(p / prod)) > 0.02

  draw = jax.jit(functools.partial(ar.sample, model=model, num_samples=n, num_dims=d))
  x = np.asarray(draw(jax.random.key(0), params))
  assert x.shape == (n, d) and set(np.unique(x)) <= {0.0, 1.0}
  counts = np.bincount((x @ np.array([4, 2, 1])).astype(int), minlength=2 ** d)
  chi2 = np.sum((counts - n * p) ** 2 / (n * p))
  assert chi2 < stats.chi2.ppf(0.999, df=2 ** d - 1), (counts / n, p)
  # A different key gives different samples.
  assert not np.array_equal(x, np.asarray(draw(jax.random.key(1), params)))


@pytest.mark.slow
def test_mle_reaches_the_entropy_of_a_markov_chain():
  d, n, flip = 4, 4000, 0.1
  rng = np.random.default_rng(4)
  x = np.zeros((n, d), np.float32)
  x[:, 0] = rng.uniform(size=n) < 0.3
  for i in range(1, d):
    x[:, i] = np.where(rng.uniform(size=n) < flip, 1 - x[:, i - 1], x[:, i - 1])
  # The MLE over all distributions on {0,1}^4 is the empirical law: the
  # training NLL is >= its entropy, with equality at the optimum.
  _, counts = np.unique(x, axis=0, return_counts=True)
  freq = counts / n
  h_emp = -np.sum(freq * np.log(freq))
  h_b = lambda q: -q * math.log(q) - (1 - q) * math.log(1 - q)
  assert h_emp == pytest.approx(h_b(0.3) + (d - 1) * h_b(flip), abs=0.05)

  # MADE through the one trainer's step (what experiments/autoregressive.py runs).
  config = get_config("autoregressive")
  config.model.hidden_dims = (32,)
  config.train.learning_rate = 0.03
  task = ar.build(config, (d, 1, 1))
  model, tx = task.model, optim.make_optimizer(config.train)
  state = trainer.create_train_state(jax.random.key(0), jax.random.key(1), task, tx)
  step = functools.partial(step_lib.train_step, task=task, tx=tx)
  xj = jnp.asarray(x)

  @jax.jit
  def fit(state):
    return jax.lax.scan(lambda s, _: step(s, xj), state, None, length=600)

  nll0 = float(ar.nll_loss(state.params, xj, model=model)[0])
  state, metrics = fit(state)
  nll = float(ar.nll_loss(state.params, xj, model=model)[0])
  assert nll0 > h_emp + 0.2
  assert h_emp - 1e-4 <= nll < h_emp + 0.01, (nll, h_emp)
  assert int(state.step) == 600 and float(metrics["finite"].min()) == 1.0
