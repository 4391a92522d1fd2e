"""The bridge from PPCA to the VAE.

A VAE with a linear encoder and a linear Gaussian decoder with one learned
variance is probabilistic PCA with an amortized diagonal q. Trained with the
ordinary VAE machinery (the trainer: Adam on the reparametrized ELBO),
its ELBO reaches the closed-form maximum log-likelihood of PPCA, here taken
from scikit-learn's PCA(n_components=M).score (an independent implementation).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from sklearn.decomposition import PCA

from tests.conftest import get_config
from vae_jax import data, tasks
from vae_jax.inference import objectives
from vae_jax.models import vae as vae_model
from vae_jax.training import trainer


@pytest.mark.parametrize("latent_dim", [4])
@pytest.mark.slow
def test_linear_vae_reaches_the_ppca_maximum_likelihood(tmp_path, latent_dim):
  ds = data.load_arrays("digits")
  mean = ds.train_x.mean(0)
  x = ds.train_x - mean                                   # small centred dataset: [1500, 64]
  centred = data.Dataset("digits_centred", x, ds.train_y, ds.eval_x - mean, ds.eval_y,
                         ds.image_shape)
  ppca_ll = PCA(n_components=latent_dim).fit(x).score(x)  # average max log-likelihood
  config = get_config("vae", "gaussian")
  config.data.dataset = "digits"
  config.model.update(gaussian_scale="shared", hidden_dims=(), latent_dim=latent_dim)
  config.train.update(batch_size=len(x), num_steps=4000, learning_rate=3e-3,
                      eval_every=10**6, checkpoint_every=10**6, log_every=1000)
  config.eval.iw_samples = 0
  task = vae_model.build(config, centred.image_shape, len(x))
  trainer.train(task, config, centred, str(tmp_path))
  model, state, _ = tasks.load_checkpoint(str(tmp_path))
  elbo_fn = jax.jit(functools.partial(objectives.elbo, model=model, num_samples=2000))
  _, aux = elbo_fn(state.params, jnp.asarray(x), jax.random.key(0))
  vae_elbo = float(np.mean(aux["elbo"]))

  # The VAE's own exact log-likelihood: x ~ N(b, W W^T + s^2 I).
  dec = state.params["params"]["decoder"]
  w = np.asarray(dec["mlp"]["dense_0"]["kernel"], np.float64).T      # [D, M]
  b = np.asarray(dec["mlp"]["dense_0"]["bias"], np.float64)
  s2 = float(np.exp(2 * np.asarray(dec["head"]["log_scale"])[0]))
  vae_ll = stats.multivariate_normal(b, w @ w.T + s2 * np.eye(64)).logpdf(x).mean()

  # ELBO <= log p_theta(x) <= max_theta log p_theta(x) (up to Monte-Carlo noise) ...
  assert vae_elbo <= vae_ll + 0.01
  assert vae_ll <= ppca_ll + 1e-3
  # ... and training closes both gaps: within 1% of the PPCA optimum.
  assert abs(vae_elbo - ppca_ll) <= 0.01 * abs(ppca_ll), (vae_elbo, vae_ll, ppca_ll)
