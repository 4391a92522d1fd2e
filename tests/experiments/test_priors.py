"""experiments/priors.py: one VAE per prior, each scored by the IWAE bound."""

import json
import os

import numpy as np
import pytest

from experiments import priors
from tests.conftest import get_config
from tests.test_workdir import read_tensorboard_scalars
from vae_jax.training import workdir as wd
from vae_jax.errors import UserError


@pytest.mark.slow
def test_priors_tiny(tmp_path):
  summary = priors.run(get_config("priors", "tiny"), str(tmp_path))
  table = summary["table"]
  assert set(table) == {"standard", "mog", "vamp"}
  for name, row in table.items():
    cfg = json.load(open(tmp_path / f"vae_{name}" / "config.json"))
    assert cfg["model"]["prior"] == name
    assert cfg["model"]["prior_components"] == (None if name == "standard" else 8)
    # IWAE-200 log p(x) is at least the ELBO, up to noise.
    assert row["log_px"] >= -row["neg_elbo"] - 0.5, (name, row)
    assert np.isfinite(row["vs_standard_stderr"])
  assert table["standard"]["vs_standard"] == 0.0
  assert table["vamp"]["paper"] == -85.57 and table["mog"]["paper"] is None
  assert os.path.getsize(tmp_path / "priors.png") > 0
  assert json.load(open(tmp_path / "summary.json")) == summary
  # Like every experiment: metrics.jsonl and TensorBoard, one series per prior.
  records = [r for r in wd.read_metrics(str(tmp_path)) if r["split"] == "priors"]
  assert sorted(r["prior"] for r in records) == ["mog", "standard", "vamp"]
  scalars = read_tensorboard_scalars(str(tmp_path))
  for r in records:
    assert r["log_px"] == pytest.approx(table[r["prior"]]["log_px"])
    assert scalars[f"priors/log_px/{r['prior']}"][r["step"]] == pytest.approx(r["log_px"],
                                                                               rel=1e-6)


def test_paper_numbers_are_pinned():
  config = get_config("priors", "")
  assert (config.paper.standard, config.paper.vamp) == (-88.56, -85.57)
  assert config.priors.components == 500 and config.priors.iw_samples == 5000
  assert (config.model.latent_dim, tuple(config.model.hidden_dims)) == (40, (300, 300))


@pytest.mark.parametrize("settings,key", [
    (dict(priors=("standard", "flow")), "config.priors.priors"),
    (dict(priors=()), "config.priors.priors"),
    (dict(components=0), "config.priors.components"),
    (dict(iw_samples=0), "config.priors.iw_samples")])
def test_bad_settings(tmp_path, settings, key):
  config = get_config("priors", "tiny")
  config.priors.update(**settings)
  with pytest.raises(UserError, match=key):
    priors.run(config, str(tmp_path))


def test_model_prior_is_refused(tmp_path):
  config = get_config("priors", "tiny")
  config.model.prior = "mog"
  config.model.prior_components = 3
  with pytest.raises(UserError, match="priors.priors"):
    priors.run(config, str(tmp_path))
