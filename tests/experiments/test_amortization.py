"""experiments/amortization.py: the gaps of a trained VAE, and its outputs."""

import json
import os

import numpy as np
import pytest

from experiments import amortization
from tests.conftest import get_config
from vae_jax.errors import UserError


@pytest.mark.slow
def test_amortization(tmp_path):
  config = get_config("amortization")
  config.train.update(num_steps=300, eval_every=300, checkpoint_every=300)
  config.eval.iw_samples = 0
  config.amortization.update(examples=40, local_steps=300, eval_samples=150, iw_samples=150,
                             posteriors=("gaussian",))
  summary = amortization.run(config, str(tmp_path))
  on_disk = json.load(open(tmp_path / "summary.json"))
  for key in ("amortized_elbo", "optimized_elbo", "log_likelihood_iw", "amortization_gap",
              "approximation_gap", "num_importance_samples"):
    assert key in on_disk and np.isfinite(on_disk[key]), key
  assert on_disk["num_importance_samples"] == 150 and on_disk["num_examples"] == 40
  # log p(x) >= ELBO(q*) >= ELBO(q_phi), up to Monte-Carlo error.
  assert on_disk["amortization_gap"] > -3 * on_disk["amortization_gap_stderr"]
  assert on_disk["approximation_gap"] > -3 * on_disk["approximation_gap_stderr"]
  assert on_disk["amortization_gap"] == pytest.approx(
      on_disk["optimized_elbo"] - on_disk["amortized_elbo"])
  # The VAE was trained by the VAE experiment in workdir/vae, checkpoints and all.
  vae_summary = json.load(open(tmp_path / "vae_gaussian" / "summary.json"))
  assert vae_summary["step"] == on_disk["vae_step"] == 300
  assert os.path.isdir(tmp_path / "vae_gaussian" / "checkpoints" / "300")
  assert os.path.getsize(tmp_path / "amortization_gaps.png") > 0
  assert summary == on_disk


@pytest.mark.parametrize("key", ["examples", "local_steps", "eval_samples", "iw_samples",
                                 "local_lr"])
def test_bad_settings(tmp_path, key):
  config = get_config("amortization")
  config.amortization[key] = 0 if key != "local_lr" else -1.0
  with pytest.raises(UserError, match=f"config.amortization.{key}"):
    amortization.run(config, str(tmp_path))


@pytest.mark.slow
def test_families_and_posterior_2d(tmp_path):
  """Every family trains in its own workdir and is measured; with L = 2 the
  true-posterior figure is drawn and each KL(q || p(z|x)) is >= 0 (quadrature
  log p(x) minus a Monte-Carlo ELBO of 20,000 draws: a few 0.01 nats of noise)."""
  config = get_config("amortization", "tiny,l2")
  summary = amortization.run(config, str(tmp_path))
  assert list(summary["families"]) == list(config.amortization.posteriors)
  assert {"gaussian", "coupling"} <= set(summary["families"])
  for f, fam in summary["families"].items():
    assert os.path.isdir(tmp_path / f"vae_{f}" / "checkpoints"), f
    assert fam["flow_steps"] == (None if f == "gaussian" else 2)
    assert fam["amortization_gap"] > -3 * fam["amortization_gap_stderr"], f
    assert np.isfinite(fam["log_likelihood_iw"]), f
    assert all(kl > -0.05 for kl in summary["posterior_2d_kl"][f]), (f, summary["posterior_2d_kl"])
  # The flows' configs differ from the Gaussian's only in the family.
  planar = json.load(open(tmp_path / "vae_planar" / "config.json"))
  assert planar["model"]["posterior"] == "planar" and planar["model"]["flow_steps"] == 2
  for name in ("posterior_2d.png", "amortization_families.png", "amortization_gaps.png"):
    assert os.path.getsize(tmp_path / name) > 0


@pytest.mark.parametrize("settings,key", [
    (dict(posteriors=("gaussian", "realnvp")), "config.amortization.posteriors"),
    (dict(posteriors=()), "config.amortization.posteriors"),
    (dict(flow_steps=0), "config.amortization.flow_steps")])
def test_bad_family_settings(tmp_path, settings, key):
  config = get_config("amortization")
  config.amortization.update(**settings)
  with pytest.raises(UserError, match=key):
    amortization.run(config, str(tmp_path))


def test_model_family_is_refused(tmp_path):
  config = get_config("amortization")
  config.model.posterior = "planar"
  config.model.flow_steps = 2
  with pytest.raises(UserError, match="amortization.posteriors"):
    amortization.run(config, str(tmp_path))
