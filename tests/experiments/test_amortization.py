"""experiments/amortization.py: the gaps of a trained VAE, and its outputs."""

import json
import os

import numpy as np
import pytest

from experiments import amortization
from tests.conftest import get_config
from vae_jax.errors import UserError


def test_amortization(tmp_path):
  config = get_config("amortization")
  config.train.update(num_steps=300, eval_every=300, checkpoint_every=300)
  config.eval.iw_samples = 0
  config.amortization.update(examples=40, local_steps=300, eval_samples=150, iw_samples=150)
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
  vae_summary = json.load(open(tmp_path / "vae" / "summary.json"))
  assert vae_summary["step"] == on_disk["vae_step"] == 300
  assert os.path.isdir(tmp_path / "vae" / "checkpoints" / "300")
  assert os.path.getsize(tmp_path / "amortization_gaps.png") > 0
  assert summary == on_disk


@pytest.mark.parametrize("key", ["examples", "local_steps", "eval_samples", "iw_samples",
                                 "local_lr"])
def test_bad_settings(tmp_path, key):
  config = get_config("amortization")
  config.amortization[key] = 0 if key != "local_lr" else -1.0
  with pytest.raises(UserError, match=f"config.amortization.{key}"):
    amortization.run(config, str(tmp_path))
