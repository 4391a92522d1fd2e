"""The gmm and ppca runner experiments: outputs, invariants, bad input."""

import json
import os

import numpy as np
import pytest
from sklearn.decomposition import PCA

from vae_jax import data, lvm_experiments
from vae_jax import workdir as wd
from vae_jax.errors import UserError

from conftest import run_main


def _em_rows(workdir):
  return [r for r in wd.read_metrics(workdir) if r["split"] == "em"]


def test_gmm_toy2d(tmp_path):
  summary = lvm_experiments.run_gmm(dict(toy_num_points=600, num_restarts=2, em_iters=300),
                                    str(tmp_path))
  for name in ("config.json", "metrics.jsonl", "summary.json", "em_bounds.png",
               "gmm_components.png"):
    assert os.path.getsize(tmp_path / name) > 0, name
  rows = _em_rows(str(tmp_path))
  ll = np.array([r["log_likelihood"] for r in rows])
  elbo = np.array([r["elbo"] for r in rows if "elbo" in r])
  assert len(ll) == summary["num_iters"] + 1 and len(elbo) == summary["num_iters"]
  assert np.all(np.diff(ll) >= -1e-10)                      # EM never decreases log p(x)
  assert np.all(ll[:-1] <= elbo + 1e-10) and np.all(elbo <= ll[1:] + 1e-10)   # sandwich
  assert summary["max_elbo_gap_at_posterior"] < 1e-10        # E-step closes the gap
  # Five well-separated generating components: recovered, and the fitted
  # likelihood is at least the generating mixture's (it is the MLE).
  assert summary["adjusted_rand_index"] > 0.9
  assert summary["train_log_likelihood"] >= summary["true_params_log_likelihood"] - 1e-9
  assert json.load(open(tmp_path / "summary.json"))["bic"] == pytest.approx(summary["bic"])


def test_gmm_on_projected_digits(tmp_path):
  summary = lvm_experiments.run_gmm(
      dict(gmm_data="dataset", dataset="digits", num_components=10, gmm_pca_dim=5,
           num_restarts=2, em_iters=100, covariance_type="diag"), str(tmp_path))
  assert os.path.getsize(tmp_path / "gmm_means.png") > 0
  assert np.isfinite(summary["eval_log_likelihood"])
  assert summary["eval_log_likelihood"] < summary["train_log_likelihood"] + 1.0
  assert summary["dim"] == 5 and summary["covariance_type"] == "diag"


def test_ppca_closed_form_em_and_latent(tmp_path):
  summary = lvm_experiments.run_ppca(dict(dataset="digits", em_iters=60), str(tmp_path))
  for name in ("em_bounds.png", "ppca_latent.png", "ppca_components.png", "summary.json"):
    assert os.path.getsize(tmp_path / name) > 0, name
  ds = data.load_arrays("digits")
  x = ds.train_x.astype(np.float64)
  # sklearn's PCA score uses sigma^2 and W with ddof = 1 (a factor N / (N - 1)):
  # equal up to D/2 (log c + 1/c - 1), c = N / (N - 1), which is tiny here.
  c = len(x) / (len(x) - 1)
  offset = x.shape[1] / 2 * (np.log(c) + 1 / c - 1)
  assert summary["closed_form_log_likelihood"] == pytest.approx(
      PCA(n_components=2).fit(x).score(x) + offset, abs=1e-6)
  rows = _em_rows(str(tmp_path))
  ll = np.array([r["log_likelihood"] for r in rows])
  assert np.all(np.diff(ll) >= -1e-10)
  assert ll[-1] <= summary["closed_form_log_likelihood"] + 1e-9   # EM cannot beat the MLE
  assert 0 <= summary["em_gap_to_closed_form"] < 0.5
  assert summary["max_elbo_gap_at_posterior"] < 1e-9


@pytest.mark.parametrize("bad,match", [
    (dict(num_components=0), "num_components"),
    (dict(em_tol=-1.0), "em_tol"),
    (dict(gmm_data="nope"), "gmm_data"),
    (dict(gmm_data="dataset", dataset="digits", gmm_pca_dim=1000), "gmm_pca_dim"),
])
def test_gmm_bad_config(tmp_path, bad, match):
  with pytest.raises(UserError, match=match):
    lvm_experiments.run_gmm(bad, str(tmp_path))


def test_ppca_bad_latent_dim(tmp_path):
  with pytest.raises(UserError, match="ppca_latent_dim"):
    lvm_experiments.run_ppca(dict(dataset="digits", ppca_latent_dim=64), str(tmp_path))


def test_runner_gmm_subprocess(tmp_path):
  proc = run_main(["--experiment=gmm", "--toy_num_points=300", "--num_restarts=1",
                   f"--workdir={tmp_path}"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  config = json.load(open(tmp_path / "config.json"))
  assert config["experiment"] == "gmm" and config["toy_num_points"] == 300
  assert "hidden_dims" not in config          # VAE-only defaults are not passed on
  bad = run_main(["--experiment=gmm", "--num_components=0", f"--workdir={tmp_path}/b"])
  assert bad.returncode == 2 and "error: num_components" in bad.stderr
  assert "Traceback" not in bad.stderr
