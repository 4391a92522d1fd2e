"""experiments/ppca.py: closed form against NumPy/scikit-learn, EM invariants, outputs."""

import os

import numpy as np
import pytest
from sklearn.decomposition import PCA

from experiments import gmm
from experiments import ppca
from experiments.configs import ppca as ppca_config
from vae_jax import data
from vae_jax import plots
from vae_jax.training import workdir as wd
from vae_jax.errors import UserError

PNG = b"\x89PNG\r\n\x1a\n"


def _em_log_likelihood(workdir):
  return np.array([r["log_likelihood"] for r in wd.read_metrics(workdir)
                   if r["split"] == "em"])


@pytest.mark.slow
def test_tiny_matches_the_eigendecomposition_and_em_climbs_towards_it(tmp_path):
  config = ppca_config.get_config("tiny")
  summary = ppca.run(config, str(tmp_path))
  for name in ("em_bounds.png", "ppca_latent.png", "ppca_components.png", "ppca_evidence.png"):
    with open(tmp_path / name, "rb") as f:
      assert f.read(8) == PNG, name
  assert os.listdir(tmp_path / "tensorboard")
  assert wd.read_json(str(tmp_path / "config.json")) == wd.to_jsonable(config.to_dict())
  assert wd.read_json(str(tmp_path / "summary.json")) == wd.to_jsonable(summary)
  assert summary["dataset"] == "digits" and summary["latent_dim"] == 2

  x = data.load_arrays("digits").train_x.astype(np.float64)
  # sigma^2 is the mean discarded eigenvalue of the (ddof = 0) covariance, and
  # W W^T keeps the top-M eigenvalues minus sigma^2 (Tipping & Bishop, eq. 7-8).
  evals = np.linalg.eigvalsh(np.cov(x, rowvar=False, ddof=0))[::-1]
  assert summary["sigma2"] == pytest.approx(np.mean(evals[2:]), rel=1e-9)
  assert summary["explained_variance_fraction"] == pytest.approx(
      np.sum(evals[:2] - np.mean(evals[2:])) / np.sum(evals), rel=1e-9)
  # sklearn's PCA score uses sigma^2 and W with ddof = 1 (a factor N / (N - 1)):
  # equal up to D/2 (log c + 1/c - 1), c = N / (N - 1), which is tiny here.
  c = len(x) / (len(x) - 1)
  offset = x.shape[1] / 2 * (np.log(c) + 1 / c - 1)
  assert summary["closed_form_log_likelihood"] == pytest.approx(
      PCA(n_components=2).fit(x).score(x) + offset, abs=1e-6)

  ll = _em_log_likelihood(str(tmp_path))
  assert len(ll) == config.ppca.em_iters + 1
  assert np.all(np.diff(ll) >= -1e-10)                              # EM never decreases it
  assert ll[-1] <= summary["closed_form_log_likelihood"] + 1e-9     # nor beats the MLE
  assert ll[-1] == pytest.approx(summary["em_log_likelihood"], abs=1e-12)
  assert 0 <= summary["em_gap_to_closed_form"] < 0.5
  assert summary["pca_em_max_principal_angle_deg"] < 0.1            # same subspace
  assert summary["max_elbo_gap_at_posterior"] < 1e-9                # exact posterior: ELBO = log p

  # The latent dimension by its evidence: scikit-learn's PCA(n_components="mle") picks the
  # same M on the same images (61: three pixels of the digits are constant), and on the
  # data drawn from the fitted PPCA the evidence finds the M they were drawn with.
  evidence = summary["evidence"]
  assert evidence["chosen_latent_dim"] == PCA(n_components="mle", svd_solver="full").fit(
      x).n_components_ == evidence["rank"] == 61
  assert len(evidence["log_evidence"]) == len(evidence["max_log_likelihood"]) == 63
  assert np.all(np.asarray(evidence["log_evidence"][61:], float) == -np.inf)   # ("-inf" in JSON)
  assert evidence["sklearn"]["max_abs_diff"] < 1e-6 and 61 in evidence["sklearn"]["ranks"]
  simulated = evidence["simulated"]
  assert simulated["true_latent_dim"] == simulated["chosen_latent_dim"] == 2
  assert simulated["sklearn"]["max_abs_diff"] < 1e-6
  # The evidence is the maximum log-likelihood (the closed form's, summed) plus a
  # negative Occam term.
  n = summary["num_train"]
  assert evidence["max_log_likelihood"][1] == pytest.approx(
      n * summary["closed_form_log_likelihood"], rel=1e-12)
  assert all(e < ll for e, ll in zip(evidence["log_evidence"][:60],
                                     evidence["max_log_likelihood"][:60]))


def test_em_bound_figure_shows_the_first_iterations(tmp_path, monkeypatch):
  """PPCA's EM starts far below its maximum: every iteration is inside the axes,
  and an inset shows the approach to the maximum at its own scale."""
  figures = []
  monkeypatch.setattr(plots, "save", lambda fig, path, **kw: figures.append(fig) or path)
  ll = 0.15 - 10.3 * np.exp(-0.6 * np.arange(41))      # -10.15 ... 0.15
  elbo = ll[1:] - 0.5 * np.exp(-0.6 * np.arange(40))
  gmm.save_bound_plot(str(tmp_path / "em.png"), ll, elbo, reference=0.15)
  ax = figures[0].axes[0]
  low, high = ax.get_ylim()
  assert low < min(ll.min(), elbo.min()) and high > 0.15
  (inset,) = ax.child_axes
  assert inset.get_ylim()[0] > -4 and inset.get_ylim()[1] > 0.15
  # A steady climb (as GMM's often is) needs no inset.
  steady = np.linspace(-5.2, -3.9, 41)
  gmm.save_bound_plot(str(tmp_path / "em2.png"), steady, steady[1:] - 0.01)
  assert not figures[1].axes[0].child_axes


@pytest.mark.slow
def test_one_latent_dimension_writes_no_latent_scatter(tmp_path):
  config = ppca_config.get_config("tiny")
  config.ppca.update(latent_dim=1, em_iters=5)
  summary = ppca.run(config, str(tmp_path))
  assert summary["latent_dim"] == 1
  assert (tmp_path / "ppca_components.png").exists()
  assert not (tmp_path / "ppca_latent.png").exists()


def test_default_config_keeps_the_old_defaults():
  config = ppca_config.get_config()
  assert config.experiment == "ppca" and config.seed == 0
  assert config.data.to_dict() == dict(dataset="mnist_5k", data_dir=None)
  assert config.ppca.to_dict() == dict(latent_dim=2, em_iters=200)
  assert ppca_config.get_config("tiny").data.dataset == "digits"
  with pytest.raises(ValueError, match="unknown config variant"):
    ppca_config.get_config("mnist_pca")


@pytest.mark.parametrize("section,key,value,match", [
    ("ppca", "latent_dim", 64, r"--config\.ppca\.latent_dim must be below the data "
                               r"dimension 64"),
    ("ppca", "latent_dim", 0, r"config\.ppca\.latent_dim must be a positive integer"),
    ("ppca", "em_iters", 0, r"config\.ppca\.em_iters must be a positive integer"),
    ("data", "dataset", "nope", r"--config\.data\.dataset must be one of"),
    (None, "seed", None, r"--config\.seed must be an integer"),
], ids=["latent_dim>=D", "latent_dim=0", "em_iters=0", "dataset", "seed"])
def test_bad_config_is_a_user_error_naming_the_key(tmp_path, section, key, value, match):
  config = ppca_config.get_config("tiny")
  (config[section] if section else config)[key] = value
  with pytest.raises(UserError, match=match):
    ppca.run(config, str(tmp_path / "w"))
  assert not (tmp_path / "w" / "config.json").exists()
