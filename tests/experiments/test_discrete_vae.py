"""experiments/discrete_vae.py: outputs, learning, exact evaluation, bad settings."""

import json
import os

import numpy as np
import pytest

from experiments import discrete_vae
from tests.conftest import get_config
from vae_jax.errors import UserError


@pytest.mark.parametrize("key,value,match", [
    ("model.latent_dim", 0, "config.model.latent_dim"),
    ("objective.estimator", "reparam", "reparametrization"),
    ("objective.num_samples", 1, "num_samples >= 2"),
    ("objective.baseline_decay", 1.0, "baseline_decay"),
])
def test_run_refuses_bad_config_before_training(tmp_path, key, value, match):
  config = get_config("discrete_vae")
  section, name = key.split(".")
  config[section][name] = value
  with pytest.raises(UserError, match=match):
    discrete_vae.run(config, str(tmp_path))
  assert not os.path.exists(tmp_path / "checkpoints")


@pytest.mark.slow
def test_run_on_digits_writes_outputs_and_learns(tmp_path):
  config = get_config("discrete_vae")
  config.model.latent_dim = 6
  config.train.update(num_steps=100, log_every=25, eval_every=50, checkpoint_every=50,
                      grad_stats_every=50)
  summary = discrete_vae.run(config, str(tmp_path))
  for name in ("config.json", "data_spec.json", "metrics.jsonl", "summary.json",
               "samples.png", "reconstructions.png", "training_curves.png"):
    assert os.path.getsize(tmp_path / name) > 0, name
  with open(tmp_path / "summary.json") as f:
    assert json.load(f) == json.loads(json.dumps(summary))
  records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  for r in records:
    for k, v in r.items():
      assert k == "split" or np.isfinite(v), (r, k)
  evals = [r for r in records if r["split"] == "eval"]
  assert [r["step"] for r in evals] == [0, 50, 100]
  assert sum(r["split"] == "train" for r in records) == 4
  assert [r["step"] for r in records if r["split"] == "grad_stats"] == [50, 100]
  assert summary["step"] == 100 and summary["estimator"] == "score_loo"
  assert summary["latent_dim"] == 6
  assert summary["eval_neg_elbo"] == evals[-1]["neg_elbo"]
  assert summary["eval_initial_exact_nll"] == evals[0]["exact_nll"]
  assert summary["eval_neg_elbo"] < evals[0]["neg_elbo"] - 5.0
  assert summary["eval_exact_nll"] <= summary["eval_exact_neg_elbo"]
  # The MC estimate is an unbiased estimate of the exact -ELBO.
  assert abs(summary["eval_neg_elbo"] - summary["eval_exact_neg_elbo"]) < 1.0
  stats = [r for r in records if r["split"] == "grad_stats"]
  assert summary["grad_var_encoder"] == stats[-1]["grad_var_encoder"] > 0
  assert summary["steps_per_s"] > 0
