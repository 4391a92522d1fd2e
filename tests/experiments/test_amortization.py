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
  # The SA-VAE: the same encoder, refined by savae_refine_steps steps, beside the VAE.
  savae = on_disk["savae"]
  assert savae["refine_steps"] == config.amortization.savae_refine_steps > 0
  assert savae["vae"]["amortization_gap"] == on_disk["amortization_gap"]
  for name in ("vae", "savae"):
    assert np.isfinite(savae[name]["local_convergence"]), name
    assert savae[name]["amortization_gap"] > -3 * savae[name]["amortization_gap_stderr"], name
  assert savae["savae"]["refined_elbo"] == pytest.approx(
      savae["savae"]["optimized_elbo"] - savae["savae"]["refined_amortization_gap"])
  assert savae["amortization_gap_change"] == pytest.approx(
      savae["savae"]["amortization_gap"] - savae["vae"]["amortization_gap"], abs=1e-4)
  assert savae["refined_amortization_gap_change"] == pytest.approx(
      savae["savae"]["refined_amortization_gap"] - savae["vae"]["amortization_gap"], abs=1e-4)
  for key in ("amortization_gap_change_verdict", "refined_amortization_gap_change_verdict"):
    assert savae[key] in ("shrinks", "grows", "no change measured")
  saved = json.load(open(tmp_path / "savae_gaussian" / "config.json"))
  assert saved["model"]["refine_steps"] == savae["refine_steps"]
  assert "eval_neg_elbo_refined" in json.load(open(tmp_path / "savae_gaussian" / "summary.json"))


@pytest.mark.parametrize("key", ["examples", "local_steps", "eval_samples", "iw_samples",
                                 "local_lr", "savae_refine_steps"])
def test_bad_settings(tmp_path, key):
  config = get_config("amortization")
  config.amortization[key] = -1 if key == "savae_refine_steps" else 0 if key != "local_lr" else -1.0
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


def test_the_savae_needs_a_refinable_first_family(tmp_path, monkeypatch):
  from vae_jax.families.posteriors import REGISTRY  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(REGISTRY.get("gaussian"), "REFINABLE", False)
  config = get_config("amortization")
  with pytest.raises(UserError, match="--config.model.refine_steps=5 refines q's"):
    amortization.run(config, str(tmp_path))
  config.amortization.savae_refine_steps = 0           # no SA-VAE: nothing to refine
  amortization.validate(config)
  config.model.refine_steps = 2                        # the plain VAEs are plain
  with pytest.raises(UserError, match="config.model.refine_steps"):
    amortization.validate(config)


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
