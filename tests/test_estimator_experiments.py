"""estimator_variance and amortization experiments: the outputs other tools read."""

import json
import os

import numpy as np
import pytest

from vae_jax import estimator_experiments as X
from vae_jax import workdir as wd
from vae_jax.errors import UserError

from conftest import run_main

TINY = dict(dataset="digits", binarize="static", hidden_dims="32", latent_dim=4,
            batch_size=32, seed=0)


def test_estimator_variance(tmp_path):
  names = ["reparam", "score", "score_loo", "vimco"]
  X.run_estimator_variance(
      dict(TINY, variance_estimators=",".join(names), variance_num_samples="2,8",
           variance_steps="0,30", variance_draws=32), str(tmp_path))
  on_disk = json.load(open(tmp_path / "summary.json"))
  assert set(on_disk["variance"]) == set(names)
  assert all(v > 0 and np.isfinite(v) for v in on_disk["variance"].values())
  assert on_disk["num_samples"] == 2 and on_disk["step"] == 30
  # The lecture's claim: the score function is far noisier than reparametrization,
  # and a leave-one-out baseline recovers a large part of the difference.
  v = on_disk["variance"]
  assert v["score"] > 10 * v["reparam"]
  assert v["score_loo"] < v["score"]
  assert set(on_disk["variance_ratio"]) == {"2", "8"}
  assert set(on_disk["variance_by_step"]) == {"0", "30"}
  # More samples, less variance (1/S for the plain estimators).
  by_s = on_disk["variance_by_num_samples"]
  assert by_s["8"]["reparam"]["total_variance"] < by_s["2"]["reparam"]["total_variance"]
  assert os.path.getsize(tmp_path / "estimator_variance.png") > 0
  rows = [r for r in wd.read_metrics(str(tmp_path)) if r["split"] == "variance"]
  assert len(rows) == len(names) * (1 + 2)


def test_estimator_variance_bad_flags(tmp_path):
  with pytest.raises(UserError, match="unknown"):
    X.run_estimator_variance(dict(TINY, variance_estimators="reparam,nope"), str(tmp_path))
  with pytest.raises(UserError, match="S >= 2"):
    X.run_estimator_variance(dict(TINY, variance_estimators="score_loo",
                                  variance_num_samples="1,4"), str(tmp_path))


def test_amortization(tmp_path):
  summary = X.run_amortization(
      dict(TINY, num_steps=300, eval_every=300, checkpoint_every=300, eval_iw_samples=0,
           amortization_examples=40, amortization_local_steps=300,
           amortization_eval_samples=200, num_importance_samples=200), str(tmp_path))
  on_disk = json.load(open(tmp_path / "summary.json"))
  for key in ("amortized_elbo", "optimized_elbo", "log_likelihood_iw", "amortization_gap",
              "approximation_gap", "num_importance_samples"):
    assert key in on_disk and np.isfinite(on_disk[key]), key
  assert on_disk["num_importance_samples"] == 200
  # log p(x) >= ELBO(q*) >= ELBO(q_phi), up to Monte-Carlo error.
  assert on_disk["amortization_gap"] > -3 * on_disk["amortization_gap_stderr"]
  assert on_disk["approximation_gap"] > -3 * on_disk["approximation_gap_stderr"]
  assert on_disk["amortization_gap"] == pytest.approx(
      on_disk["optimized_elbo"] - on_disk["amortized_elbo"])
  assert os.path.exists(tmp_path / "vae" / "summary.json")          # the trained VAE
  assert os.path.getsize(tmp_path / "amortization_gaps.png") > 0
  assert summary == on_disk


def test_runner_estimator_variance_subprocess(tmp_path):
  proc = run_main(["--experiment=estimator_variance", "--dataset=digits",
                   "--binarize=static", "--hidden_dims=16", "--latent_dim=2",
                   "--batch_size=16", "--variance_estimators=reparam,score",
                   "--variance_num_samples=2", "--variance_steps=5",
                   "--variance_draws=8", f"--workdir={tmp_path}"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  summary = json.load(open(tmp_path / "summary.json"))
  assert set(summary["variance"]) == {"reparam", "score"}
